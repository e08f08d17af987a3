"""Materialize's tile rows written as text by DuckDB (``featurestore.engines.duckdb_tile_text``) are the
very bytes Python's encoder writes of the same rows (``Layout.encode`` + ``dumps_row``).

* the SQL of a value's text against the encoder, value by value: random doubles over every bit pattern
  (subnormals, huge, ``1e16`` and beyond, ``-0.0``), NaN, infinities, integers to int64's ends,
  booleans, unicode and escaped strings;
* the vectorised build with row texts against the per-entity build (every event parsed and added by
  the kernel), byte for byte, on random events with hot keys and extreme values in every kind of slot
  (sums, sums of squares beyond 128 bits, min/max of floats and strings, first/last/latest of floats,
  strings, booleans and integers, distinct sets of strings, integers and booleans), and most rows are
  checked to come as text (the test exercises the text, not only its fallback).
"""

import json
import math
import random
import struct

import duckdb
import pandas as pd
import pytest

from featurestore import dtypes as t
from featurestore.engines import duckdb_tile_text as dtext
from featurestore.kernel import entity as kentity
from featurestore.kernel.partials import EncodedRow
from featurestore.online import view_layout
from featurestore.store import FeatureStore
from featurestore.stores import online_materialize as om
from featurestore.stores import online_redis as orr
from tests.randomrepo import write_events
from tests.test_materialize_vector import Capture, _bytes

ENC = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
STRINGS = ["é", "日本", "a\"b", "back\\slash", "new\nline", "tab\tx", "\x01ctl", "emoji 😀", "/slash", "\u2028", "",
           "\x7f", "\x1fus", "\x0bvt", "plain", "\U0010ffff"]


def _doubles(rng: random.Random, n: int) -> list:
    out = [struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0] for _ in range(n)]
    out += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-330, 308) for _ in range(n)]
    out += [0.0, -0.0, math.nan, math.inf, -math.inf, 5e-324, -5e-324, 2.2250738585072014e-308, 1e16, -1e16,
            9999999999999998.0, 1e15, 1e-4, 9.999999999999999e-05, 1.7976931348623157e308, 123456789012345678.0]
    return out


def test_sql_value_text_is_the_encoders():
    rng = random.Random(7)
    con = duckdb.connect()
    doubles = _doubles(rng, 20_000)
    ints = [0, 1, -1, 2**63 - 1, -(2**63), *(rng.randint(-(2**63), 2**63 - 1) for _ in range(2_000))]
    strings = STRINGS + ["".join(chr(rng.choice([rng.randint(0, 0x7f), rng.randint(0x80, 0xd7ff),
                                                 rng.randint(0xe000, 0x10ffff)])) for _ in range(rng.randint(0, 6)))
                         for _ in range(2_000)]
    for dtype, sql_type, values in ((t.FLOAT64, "DOUBLE", doubles), (t.INT64, "BIGINT", ints),
                                    (t.BOOL, "BOOLEAN", [True, False]), (t.STRING, "VARCHAR", strings)):
        values = [*values, None]
        con.execute(f"CREATE OR REPLACE TABLE v (i INTEGER, x {sql_type})")
        con.executemany("INSERT INTO v VALUES (?, ?)", list(enumerate(values)))
        got = dict(con.sql(f"SELECT i, {dtext.value_text('x', dtype)} FROM v").fetchall())
        used = 0
        for i, x in enumerate(values):
            want = ENC(x)
            if got[i] is None:  # not written by SQL: only strings whose escapes DuckDB writes otherwise
                assert dtype == t.STRING and "\\u00" in want, (dtype, x)
                continue
            used += 1
            assert got[i] == want, (dtype, x, got[i], want)
        assert used > 0.9 * len(values) or dtype == t.STRING and used > 0.5 * len(values)
    # order values stored as to_json text are parsed back (online_materialize._pick_order_sql): exactly
    got = con.sql("SELECT i, CAST(to_json(x) AS DOUBLE), to_json(x) FROM (SELECT i, CAST(x AS DOUBLE) AS x FROM "
                  "(SELECT unnest(range(?)) AS i, unnest(?::DOUBLE[]) AS x))", params=[len(doubles), doubles]).fetchall()
    for i, back, text in got:
        assert struct.pack("<d", back) == struct.pack("<d", doubles[i]) or (back != back and doubles[i] != doubles[i])
        assert json.loads(text) == back or back != back



def test_sum_text_straight_from_exponent_groups_is_the_exact_sums_encoding():
    """``duckdb_partials._sum_text_getter`` (and ``_sum_texts``, both sums at once) writes a tile's exact float sum (and sum of squares) straight
    from its per-exponent text: the very text of the ExactSum's encoding (odd mantissa, bounded shift,
    non-finite counts), on random exponents (one or several groups), signs, zeros and sizes."""
    from featurestore.engines import duckdb_partials as dpart

    class TwoSlots:  # slot 0: a sum of float column 0, slot 1: its sum of squares
        slots = [("s", 0), ("q", 0)]

    rng = random.Random(11)
    rows = []
    for _ in range(20_000):
        e = rng.choice([rng.randint(-1100, 1000), -8, 0, 8, -1080, rng.randint(-70, 70)])
        e -= e % 8
        parts = []
        for j in range(rng.choice([0, 1, 1, 1, 2, 3])):
            m = rng.choice([0, rng.randint(-2**70, 2**70), rng.randint(-5, 5) << rng.randint(0, 64)])
            parts += [e + 8 * j, m, *(rng.choice([0, rng.getrandbits(rng.randint(1, 90))]) for _ in range(3))]
        fz = " ".join(map(str, parts)) if parts else rng.choice([None, ""])
        rows.append((fz, rng.choice([0, 0, 3]), rng.choice([0, 0, 2]), rng.choice([0, 0, 1])))
    cols = {name: [r[k] for r in rows] for k, name in enumerate(("fz0", "nan0", "pinf0", "ninf0"))}
    for slot in (0, 1):
        slow, fast = dpart._text_sum(TwoSlots, slot, cols), dpart._sum_text_getter(TwoSlots, slot, cols)
        for r in range(len(rows)):
            assert fast(r) == dtext.sum_text(slow(r, 0)), (slot, rows[r])
    for kinds in (("s", "q"), ("q", "s")):  # both sums of a column from one split of its text
        both = dpart._sum_texts(0, cols, kinds)
        for r in range(len(rows)):
            assert both(r) == tuple(dtext.sum_text(dpart._text_sum(TwoSlots, "sq".index(k), cols)(r, 0)) for k in kinds)

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])

events = Source(
    schema={"user_id": "string", "shop": "int64", "amount": "float64", "qty": "int64", "tag": "string",
            "flag": "bool", "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/events/*.parquet"),
)

floats = FeatureView(
    entities=[user],
    source=events,
    features=[Aggregation("amount", f, w, name=f"amount_{f}_{label}")
              for f in ["count", "sum", "mean", "min", "max", "first", "last", "variance"]
              for label, w in {"2m": "2m", "1h": "1h", "2d": "2d"}.items()]
    + [Aggregation("*", "count", "30m", name="events_30m")],
)

mixed = FeatureView(
    entities=[user],
    source=events,
    features=[Aggregation("qty", f, "1h", name=f"qty_{f}_1h")
              for f in ["sum", "stddev", "min", "max", "first", "last", "count_distinct"]]
    + [Aggregation("tag", f, w, name=f"tag_{f}_{w}") for f in ["min", "max", "first", "last", "count_distinct"]
       for w in ["5m", "1d"]]
    + [Aggregation("flag", "count_distinct", "1h", name="flags_1h"), Aggregation("flag", "last", "1d", name="flag_1d")],
)

latest = FeatureView(
    entities=[user],
    source=events,
    features=[Latest("amount", name="last_amount"), Latest("tag", name="last_tag"), Latest("flag", name="last_flag"),
              Latest("qty", name="last_qty")],
)
'''

QTYS = [0, 1, -1, 2**62, -(2**62), 2**62 + 12345, 2**40, -(2**40), 7]


def _events(seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    span = [900, 8 * 3600, 3 * 86_400][seed % 3]
    n = 2_500
    base = pd.Timestamp("2026-03-01T00:00:00Z")
    doubles = _doubles(rng, 200) + [0.5, 12.25, -3.0, 100.0]
    rows, at = [], 0.0
    for _ in range(n):
        at += 0.0 if rng.random() < 0.2 else rng.expovariate(n / span)
        rows.append({
            "user_id": "hot" if rng.random() < 0.5 else f"u{rng.randint(0, 6)}",
            "shop": rng.randint(0, 2),
            "amount": None if rng.random() < 0.1 else rng.choice(doubles),
            "qty": None if rng.random() < 0.1 else (rng.choice(QTYS) if rng.random() < 0.1 else rng.randint(-9, 99)),
            "tag": None if rng.random() < 0.1 else rng.choice(STRINGS + ["a", "b", "c"] * 4),
            "flag": None if rng.random() < 0.1 else rng.random() < 0.5,
            "ts": base + pd.Timedelta(microseconds=int(at * 1e6)),
        })
    df = pd.DataFrame(rows)
    df["qty"] = df["qty"].astype("Int64")
    df["flag"] = df["flag"].astype("boolean")
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


@pytest.mark.parametrize("seed", range(3))
def test_tile_texts_equal_the_per_entity_build(tmp_path, monkeypatch, seed):
    monkeypatch.setattr(kentity, "DENSE_EVENTS", 8)
    monkeypatch.setattr(kentity, "TILE_MIN_EVENTS", 2)
    events = _events(seed)
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: txt\ndefinitions: definitions\n")
    write_events(root, events)
    store = FeatureStore(root)
    con = store._connect()
    times = sorted(int(x.value // 1_000_000) for x in events["ts"])
    texts = decoded = 0
    for name in ("floats", "mixed", "latest"):
        cv = store.compiled(name)
        relation = store._view_input(con, cv).events_relation
        layout = view_layout(cv)
        ret = orr.retention(cv)
        for end in (None, times[len(times) // 3]):
            cut = orr.cut_for(cv, end)
            con.execute(om.hot_sql(cv, relation, None, cut, ret.keep_base))
            vec, ref = Capture(), Capture()
            om._kernel(con, cv, relation, layout, cut, ret.keep_base, vec, None)
            om._plain(con, cv, relation, None, layout, cut, ret, ref, None, only=om.HOT)
            assert sorted(vec.got) == sorted(ref.got), (name, end)
            for key, (last, want) in ref.got.items():
                got = vec.got[key][1]
                assert _bytes(got) == _bytes(want), (name, end, key)
                for row in got.tiles_set.values():
                    texts += type(row) is EncodedRow
                    decoded += type(row) is not EncodedRow
    assert texts > 500 and texts > decoded, (texts, decoded)  # (escapes and 2**62 squares: decoded)
