"""The DuckDB backfill's parts that cannot simply run under ``try``: a part calling a volatile function (DuckDB
refuses ``try`` around ``random()``: the call is evaluated once per row before it, the rest under ``try``) and a join
key made by a projection (evaluated on every event, before the filter). An event either fails on is a dead letter of
the view, as any failing part's (tests/test_stream_failing_exprs.py); neither stops the backfill. Was: the whole
backfill failed in one line on the first such event. Only the DuckDB backfill runs these views (the Flink jobs
refuse volatile functions and projected keys at plan time)."""

from __future__ import annotations

import math
import random
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.engines.flink.exprs import DIVISION_BY_ZERO, EVALUATION_FAILS, OVERFLOW
from featurestore.store import FeatureStore
from tests.stream_helpers import backfill_letters

T0_MS = 1_772_323_200_000
DEFINITIONS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
owner = Entity(join_keys=["k"])
events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
lucky = FeatureView(entities=[user], source=events, projections={"sq": "qty * qty + CAST(random() * 0 AS BIGINT)"},
                    features=[Latest("sq")])
drawn = FeatureView(entities=[user], source=events, filter="100 % qty <> 1 AND random() < 2",
                    features=[Latest("qty", name="drawn_qty")])
keyed = FeatureView(entities=[owner], source=events, projections={"k": "CAST(qty * qty AS VARCHAR)"},
                    features=[Latest("qty", name="keyed_qty")], filter="qty > 5")
'''
LUCKY = f"view 'lucky': projection 'sq' (qty * qty + CAST(random() * 0 AS BIGINT)): {EVALUATION_FAILS}"
DRAWN = f"view 'drawn': filter (100 % qty <> 1 AND random() < 2): {EVALUATION_FAILS}"
KEYED = f"view 'keyed': projection 'k' (CAST(qty * qty AS VARCHAR)): {OVERFLOW}"
BIG = 4 * 10**9  # qty * qty overflows BIGINT


def _repo(root):
    rng = random.Random(5)
    events = [{"user_id": f"u{i % 3}", "qty": [None, 0, BIG, -BIG, rng.randrange(-50, 50)][i % 5] if i % 2 else
               rng.randrange(-50, 50), "ts": T0_MS + 1000 * i} for i in range(60)]
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: t_parts\ndefinitions: definitions\n")
    pq.write_table(pa.table({"user_id": [e["user_id"] for e in events], "qty": pa.array([e["qty"] for e in events], pa.int64()),
                             "ts": pa.array([e["ts"] for e in events], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "part.parquet")
    return FeatureStore(root), events


def test_a_volatile_part_and_a_projected_key_dead_letter_the_events_they_fail_on(tmp_path):
    store, events = _repo(tmp_path / "p")
    got = {r.view: r for r in store.backfill()}
    big = [e for e in events if e["qty"] in (BIG, -BIG)]
    zero = [e for e in events if e["qty"] == 0]
    want = Counter({(LUCKY, e["ts"]): 1 for e in big})
    want.update({(DRAWN, e["ts"]): 1 for e in zero})
    want.update({(KEYED, e["ts"]): 1 for e in big})  # the key fails before the filter (qty > 5) is asked
    nulls = [e for e in events if e["qty"] is None]
    want.update({("null join key k (views keyed)", e["ts"]): 1 for e in nulls})
    assert backfill_letters(store) == want and big and zero
    assert (got["lucky"].rows, got["lucky"].failed) == (len(events) - len(big), len(big))
    drawn = [e for e in events if e["qty"] and math.fmod(100, e["qty"]) != 1]
    assert (got["drawn"].rows, got["drawn"].failed) == (len(drawn), len(zero))
    keyed = [e for e in events if e["qty"] is not None and e["qty"] not in (BIG, -BIG) and e["qty"] > 5]
    assert (got["keyed"].rows, got["keyed"].failed, got["keyed"].rejected_null_key) == (len(keyed), len(big), len(nulls))
    stored = store.offline.table("keyed", "ts").read().to_pylist()
    assert sorted((r["k"], r["qty"]) for r in stored) == sorted((str(e["qty"] ** 2), e["qty"]) for e in keyed)
    assert [r["sq"] for r in store.offline.table("lucky", "ts").read().to_pylist()] and all(
        r["sq"] == (r["qty"] ** 2 if r["qty"] is not None else None)
        for r in store.offline.table("lucky", "ts").read().to_pylist())


PUSH_DEFINITIONS = '''
from featurestore import Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
plain = FeatureView(entities=[user], source=events, features=[Latest("qty")])
squared = FeatureView(entities=[user], source=events, projections={"sq": "qty * qty"}, features=[Latest("sq")])
modded = FeatureView(entities=[user], source=events, features=[Latest("7 % qty", name="mod")])
'''
SQUARED = f"view 'squared': projection 'sq' (qty * qty): {OVERFLOW}"
READ_FAILS = "feature view '{}': an expression of its filter, projections or features fails on an event: {}"


def _push_repo(root, events):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(PUSH_DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: t_pushfail_{random.randrange(10**8)}\ndefinitions: definitions\n")
    pq.write_table(pa.table({"user_id": [e["user_id"] for e in events], "qty": pa.array([e["qty"] for e in events], pa.int64()),
                             "ts": pa.array([e["ts"] for e in events], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "part.parquet")
    return FeatureStore(root)


def test_a_pushed_event_a_view_fails_on_is_a_dead_letter_of_that_view(tmp_path):
    """A push is an ingestion like the jobs (docs/push.md): an event a view's part fails on is a dead letter of that
    view (in the push's dead letters, counted, its row as the stream face's record), the view's table never takes
    it, the other views do; later reads and backfills of the view read fine. Was: the push failed in one line after
    its rows were in the pushed log, so every later read of the view failed on them."""
    from featurestore import datagen
    from featurestore.push import dead_letter_table

    store = _push_repo(tmp_path / "p", [{"user_id": "u1", "qty": 3, "ts": T0_MS}])
    store.backfill()
    rows = [{"user_id": "u1", "qty": 4, "ts": T0_MS + 1000}, {"user_id": "u2", "qty": BIG, "ts": T0_MS + 2000}]
    res = store.push("events", rows, to="offline")
    assert res.events == 2 and res.dead_letters == {SQUARED: 1}
    (letter,) = dead_letter_table(store, "events").read().to_pylist()
    assert (letter["reason"], letter["row"]) == (SQUARED, datagen.to_json_record(rows[1], "ts", ["user_id", "qty", "ts"]).decode())
    for _ in range(2):  # pushed, then backfilled again: the same rows
        got = {v: sorted((r["user_id"], r["qty"]) for r in store.offline.table(v, "ts").read().to_pylist())
               for v in ("plain", "squared")}
        assert got == {"plain": [("u1", 3), ("u1", 4), ("u2", BIG)], "squared": [("u1", 3), ("u1", 4)]}
        store.backfill()
    import pandas as pd

    requests = pd.DataFrame({"user_id": ["u1", "u2"], "event_timestamp": pd.to_datetime([T0_MS + 5000] * 2, unit="ms",
                                                                                        utc=True)})
    frame = store.get_historical_features(requests, features=["squared:sq", "plain:qty"])
    assert frame["sq"].tolist()[0] == 16 and pd.isna(frame["sq"].tolist()[1]) and frame["qty"].tolist() == [4, BIG]


def test_a_pushed_event_a_view_fails_on_keeps_its_index_in_the_push(tmp_path):
    """A view's dead letter of a pushed event carries the event's index in the pushed rows (``row_index``), as a
    row that is no event does, one letter per failing view, in row order. Was: ``row_index`` null."""
    from featurestore.push import dead_letter_table

    store = _push_repo(tmp_path / "p", [{"user_id": "u1", "qty": 3, "ts": T0_MS}])
    rows = [{"user_id": "u1", "qty": 0, "ts": T0_MS + 1000}, {"user_id": "u1", "qty": 2, "ts": None},
            {"user_id": "u1", "qty": 4, "ts": T0_MS + 2000}, {"user_id": "u2", "qty": BIG, "ts": T0_MS + 3000}]
    res = store.push("events", rows, to="offline")
    assert res.events == 3 and sum(res.dead_letters.values()) == 3
    kept = sorted((r["row_index"], r["reason"]) for r in dead_letter_table(store, "events").read().to_pylist())
    assert kept == sorted([(0, f"view 'modded': feature 'mod' (7 % qty): {DIVISION_BY_ZERO} or {OVERFLOW}"),
                           (1, "missing event time 'ts'"), (3, SQUARED)])


@pytest.mark.redis
def test_a_read_failing_on_an_event_names_the_view_the_part_and_the_event(tmp_path, redis_client):
    """A read computed from the batch face (a view never backfilled) records no dead letter, so an event a view's
    part fails on stops it: one line naming the view, the part and the event, and what to do (backfill the view);
    so does a read or a materialize of a table an earlier version stored without checking its feature inputs.
    Was: DuckDB's message (no part, no event)."""
    import pandas as pd

    from featurestore.engines.duckdb_engine import arrow_schema
    from featurestore.errors import RequestError

    store = _push_repo(tmp_path / "r", [{"user_id": "u1", "qty": 3, "ts": T0_MS}, {"user_id": "u2", "qty": BIG,
                                                                                  "ts": T0_MS + 1000}])
    requests = pd.DataFrame({"user_id": ["u1"], "event_timestamp": pd.to_datetime([T0_MS + 5000], unit="ms", utc=True)})
    row = '{"user_id":"u2","qty":4000000000,"ts":1772323201000}'
    face = f"on the event {row} of the batch face (a read records no dead letter: backfill the view, which " \
           "dead-letters such events)"
    with pytest.raises(RequestError) as err:
        store.get_historical_features(requests, features=["squared:sq"])
    assert str(err.value) == READ_FAILS.format("squared", f"projection 'sq' (qty * qty): {OVERFLOW}, {face}")
    with pytest.raises(RequestError) as err:
        store.materialize(views=["squared"])
    assert str(err.value) == "materialize: " + READ_FAILS.format("squared", f"projection 'sq' (qty * qty): {OVERFLOW}, {face}")
    # a table stored unchecked (as before backfills evaluated feature inputs): the stored event named
    cv = store.compiled("modded")
    stored = pa.table({"user_id": ["u1", "u3"], "qty": pa.array([0, 5], pa.int64()), "ts": pa.array(
        [T0_MS + 2000, T0_MS + 3000], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))})
    store.offline.table("modded", ts_column="ts").write_range(stored.cast(arrow_schema(cv)), T0_MS, None,
                                                             rows_key=cv.rows_fingerprint)
    why = (f"feature 'mod' (7 % qty): {DIVISION_BY_ZERO} or {OVERFLOW}, on the event "
           '{"user_id":"u1","qty":0,"ts":1772323202000} stored (its table was written before backfills checked feature '
           "inputs: backfill the view again)")
    with pytest.raises(RequestError) as err:
        store.get_historical_features(requests, features=["modded:mod"])
    assert str(err.value) == READ_FAILS.format("modded", why)
    with pytest.raises(RequestError) as err:
        store.materialize(views=["modded"])
    assert str(err.value) == "materialize: " + READ_FAILS.format("modded", why)
