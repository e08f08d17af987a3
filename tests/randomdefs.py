"""Random definition repos: random views (entities of one, one int64 and two join keys), filters,
projections, every aggregation over columns, projections and expressions, windows from 1 ms to unbounded,
TTLs, defaults; random events with hot keys, ties (equal ms, created-time ties and nulls), nulls in every
column, extreme values (int64 extremes, +-0.0, 5e-324, +-1e308, unicode) from a base time picked per seed
(1900, across 1970, 2000-02-29, 2026, the last minutes before 2200). Used by tests/test_random_definitions.py
(and good for longer fuzzing runs: ``check(seed)`` over many seeds). ``stream_topic`` gives the source a Kafka
face as well (tests/test_random_definitions_stream.py).
"""

from __future__ import annotations

import random
from typing import Optional

import pandas as pd

FUNCS = ["count", "sum", "mean", "min", "max", "last", "first", "stddev", "variance", "count_distinct"]
WINDOWS = ["1ms", "2ms", "999ms", "1s", "1001ms", "10s", "61s", "1m", "1h", "1d", "7d", "3650d", None, None]
FILTERS = ["a > 0", "n % 2 = 0", "b", "NOT b", "s IS NOT NULL", "s <> 'a'", "coalesce(a, 0) < 50",
           "length(s) > 1", "s LIKE 'é%'", "a BETWEEN -10 AND 10", "n IN (1, 2, 3)",
           "epoch_ms(ts) % 2 = 0", "b IS NULL OR a IS NULL", "ts >= TIMESTAMP '2026-03-01 00:01:00+00'",
           "g <> 1", "a IS DISTINCT FROM 0", "NOT (s = 'b')", "k < 'u3'"]
PROJ = {"p_a2": "a * 2", "p_n1": "n + 1", "p_absn": "abs(n)", "p_case": "CASE WHEN b THEN a ELSE -a END",
        "p_up": "upper(s)", "p_cat": "s || '|'", "p_div": "a / 3", "p_cs": "coalesce(s, 'none')",
        "p_nf": "n * 1.5", "p_amn": "a - n", "p_rnd": "round(a, 1)", "p_ms": "epoch_ms(ts) % 1000",
        "p_hr": "hour(ts)", "p_least": "least(a, 10)", "p_nd": "n::DOUBLE", "p_concat": "concat(s, n)",
        "p_bi": "b::INT", "p_len": "length(s)", "p_zero": "a / 0", "p_ts": "ts", "p_t2": "t2",
        "p_big": "big", "p_txt": "TRY_CAST(concat(n, s) AS INTEGER)", "p_txd": "CAST(n || 'e1' AS DOUBLE)",
        "p_same": "n IS NOT DISTINCT FROM g", "p_shift": "date_trunc('month', t2) - INTERVAL '1 month 1 hour'"}
NUMERIC = {"a", "n", "g", "big", "p_a2", "p_n1", "p_absn", "p_case", "p_div", "p_nf", "p_amn", "p_rnd", "p_ms",
           "p_hr", "p_least", "p_nd", "p_bi", "p_len", "p_zero", "p_txt", "p_txd", "a + n", "n * 3", "a * a"}
NONNUM_OK = {"count", "count_distinct", "min", "max", "last", "first"}
INT_INPUTS = {"n", "g", "big", "p_n1", "p_absn", "p_hr", "p_ms", "p_bi", "p_len", "p_txt", "n * 3"}  # no float default
SMALL_INTS = {"n", "g", "p_n1", "p_absn", "n * 3"}  # an int default
TEXTS = {"s", "p_up", "p_cat", "p_cs", "p_concat", "k"}
NO_SUM = {"big", "p_big", "g"}  # int64 extremes: a sum outside int64 is refused (tests/test_int64_values.py)
COLS = ["a", "n", "s", "b", "g", "t2", "big", "a + n", "n * 3", "a * a", "k"]
BASE = pd.Timestamp("2026-03-01T00:00:00Z")
KEYS = ["u1", "u2", "u3", "é", "", "a:b", "😀"]
CREATED_US = [0, 1, 2, 1000, 999_999]  # created-time offsets: ties and microsecond differences
# adversarial_text: strings that look like JSON, numbers or null, escapes, NUL, very long ones, RTL, line
# separators, and characters whose UTF-16 order differs from their code-point order (U+FF21 < U+1F600 by code
# point, the other way round in UTF-16 units); join keys with the Redis key layout's characters ({ } : *).
ADVERSARIAL_S = ['{"a":1}', '"q"', "a\\b", "\x00", "x" * 5000, "null", "1e5", "[1]", "NaN", "\u05d0\u05d1", "e\u0301",
                 " ", "\t", "'", "\u2028", "\uff21", "\ufffd", "\ue000", "\U0001F600", "\U0001F600a", "\uff21a"]
ADVERSARIAL_K = ["{x}", "a}{", "}", "null", "a\nb", "k" * 300, "a:b:c", "*", "\u05d0"]


def random_defs(rng: random.Random, stream_topic: Optional[str] = None) -> str:
    """The text of a definitions file: 2-4 views ``v0..`` of 3-12 features ``f<view>_<i>`` and a service
    ``everything`` of all of them; the source ``src`` also reads the Kafka topic ``stream_topic`` if given
    (the same views: the stream face changes no draw of ``rng``)."""
    views = []
    filters = FILTERS
    proj_names = sorted(PROJ)
    n_views = rng.randint(2, 4)
    for vi in range(n_views):
        ent = rng.choice(["user", "grp", "pair"])
        projs = rng.sample(proj_names, rng.randint(0, 4))
        filt = rng.choice([None, None] + filters)
        ttl = rng.choice([None, None, "1ms", "1s", "10s", "45s", "1h", "3650d"])
        feats = []
        cols = COLS + projs
        for fi in range(rng.randint(3, 12)):
            c = rng.choice(cols)
            f = rng.choice(FUNCS + ["latest"])
            if c not in NUMERIC and f not in NONNUM_OK and f != "latest":
                f = rng.choice(sorted(NONNUM_OK))
            if c in NO_SUM and f == "sum":
                f = "mean"
            w = rng.choice(WINDOWS)
            name = f"f{vi}_{fi}"
            if f == "latest":
                feats.append(f'Latest({c!r}, name={name!r})')
            else:
                d = ""
                if f not in ("count", "count_distinct") and rng.random() < 0.3:
                    if c in NUMERIC and c not in INT_INPUTS:
                        d = f", default={rng.choice([0.0, -1.5, 1e300])!r}"
                    elif c in SMALL_INTS and f in ("sum", "min", "max", "last", "first"):
                        d = f", default={rng.choice([0, -7])!r}"
                    elif c in TEXTS and f in ("min", "max", "last", "first"):
                        d = ", default='dflt'"
                col = "'*'" if (f == "count" and rng.random() < 0.3) else repr(c)
                feats.append(f'Aggregation({col}, {f!r}, {w!r}, name={name!r}{d})')
        if not any(x.startswith("Latest") for x in feats):
            ttl = None
        views.append(f'''
v{vi} = FeatureView(name="v{vi}", entities=[{ent}], source=src, filter={filt!r},
    projections={ {p: PROJ[p] for p in projs}!r}, ttl={ttl!r},
    features=[{", ".join(feats)}])''')
    return header(stream_topic) + "".join(views) + f'''
everything = FeatureService(name="everything", features=[{", ".join(f"v{i}" for i in range(n_views))}])
'''


def header(stream_topic: Optional[str] = None) -> str:
    """The definitions file's imports, entities ``user`` (k), ``grp`` (g), ``pair`` (k, g) and source ``src``
    (with a Kafka face on ``stream_topic`` if given)."""
    stream = "" if stream_topic is None else f", stream=KafkaTopic({stream_topic!r}), watermark_delay='2s'"
    return '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, KafkaTopic, Latest, ParquetFiles, Source
user = Entity(name="user", join_keys=["k"])
grp = Entity(name="grp", join_keys=["g"])
pair = Entity(name="pair", join_keys=["k", "g"])
src = Source(name="src", schema={"k": "string", "g": "int64", "a": "float64", "n": "int64", "s": "string",
                     "b": "bool", "t2": "timestamp", "big": "int64", "cr": "timestamp", "ts": "timestamp"},
             timestamp="ts", tiebreak=["cr"], batch=ParquetFiles("data/events/*.parquet")''' + stream + """)
"""


def adversarial_text(events: pd.DataFrame, seed: int) -> pd.DataFrame:
    """``events`` with ~30% of ``s`` and ~20% of the non-hot ``k`` replaced by :data:`ADVERSARIAL_S` /
    :data:`ADVERSARIAL_K` (an rng of its own: the other columns are the seed's usual ones)."""
    rng = random.Random(seed + 1000)
    s, k = events["s"].tolist(), events["k"].tolist()
    for i in range(len(events)):
        if rng.random() < 0.3:
            s[i] = rng.choice(ADVERSARIAL_S)
        if rng.random() < 0.2 and k[i] not in (None, "u0"):
            k[i] = rng.choice(ADVERSARIAL_K)
    return events.assign(s=s, k=k)


def random_events(rng: random.Random, n: int = 300, base: pd.Timestamp = BASE) -> pd.DataFrame:
    """Events from ``base``: bursts of equal ms, hot key ``u0``/``0``, nulls in every column, extremes."""
    rows, t = [], 0
    for _ in range(n):
        r = rng.random()
        if r < 0.3:
            t += rng.choice([0, 0, 1])
        else:
            t += rng.choice([1, 999, 1000, 1001, rng.randint(0, 20000), rng.randint(0, 2000)])
        hot = rng.random() < 0.5
        rows.append(dict(
            k=None if rng.random() < 0.03 else ("u0" if hot else rng.choice(KEYS)),
            g=None if rng.random() < 0.03 else (0 if hot else rng.choice([1, 2, -1, 2**62, -(2**63)])),
            a=None if rng.random() < 0.1 else rng.choice([0.0, -0.0, 1.5, -2.25, 1e308, -1e308, 5e-324, 1e16, 1.0,
                                                          round(rng.uniform(-100, 100), rng.choice([0, 3, 9]))]),
            n=None if rng.random() < 0.1 else rng.choice([0, 1, 2, 3, -1, rng.randint(-100, 100), 2**40]),
            s=None if rng.random() < 0.1 else rng.choice(["a", "b", "é", "éa", "", "😀", "a\u0301", "Z", "zz"]),
            b=None if rng.random() < 0.1 else rng.random() < 0.5,
            t2=None if rng.random() < 0.1 else base + pd.Timedelta(microseconds=rng.randint(-10**12, 10**12)),
            big=None if rng.random() < 0.1 else rng.choice([2**63 - 1, -(2**63), 2**53 + 1, -(2**53) - 1, 0, 5]),
            cr=None if rng.random() < 0.2 else base + pd.Timedelta(
                microseconds=rng.choice(CREATED_US + [rng.randint(0, 10**9)])),
            ts=base + pd.Timedelta(milliseconds=t) + pd.Timedelta(microseconds=rng.choice([0, 0, 1, 999])),
        ))
    df = pd.DataFrame(rows)
    df["g"] = pd.array([r["g"] for r in rows], dtype="Int64")
    df["n"] = pd.array([r["n"] for r in rows], dtype="Int64")
    df["big"] = pd.array([r["big"] for r in rows], dtype="Int64")
    df["b"] = df["b"].astype("boolean")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    df["t2"] = pd.to_datetime(df["t2"], utc=True)
    df["cr"] = pd.to_datetime(df["cr"], utc=True)
    return df.sample(frac=1.0, random_state=rng.randint(0, 10**6)).reset_index(drop=True)


def random_requests(rng: random.Random, events: pd.DataFrame, n: int = 100) -> pd.DataFrame:
    """Requests at events (excluded), at and next to window/TTL edges, at random, for unknown and null
    keys, sub-ms digits; the first row repeated."""
    times = list(events["ts"])
    rows = []
    for _ in range(n):
        t = rng.choice(times).floor("ms")
        kind = rng.random()
        if kind < 0.3:
            q = t
        elif kind < 0.7:
            q = t + pd.Timedelta(milliseconds=rng.choice([1, 2, 999, 1000, 1001, 10000, 10001, 45000, 60000, 61000,
                                                          3_600_000, 86_400_000, 86_400_001, 7 * 86_400_000]))
        else:
            q = t + pd.Timedelta(milliseconds=rng.randint(-5000, 30000))
        q += pd.Timedelta(microseconds=rng.choice([0, 0, 1, 999]))
        e = events.iloc[rng.randrange(len(events))]
        k = e["k"] if rng.random() < 0.9 else "nobody"
        g = e["g"] if rng.random() < 0.9 else 99
        rows.append(dict(k=None if pd.isna(k) else k, g=None if pd.isna(g) else int(g), event_timestamp=q))
    rows.append(dict(rows[0]))
    df = pd.DataFrame(rows)
    df["g"] = pd.array(df["g"].tolist(), dtype="Int64")
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


def write(root, events: pd.DataFrame, files: int = 2) -> None:
    """The batch face: ``events`` in ``files`` Parquet files (their old files removed)."""
    out = root / "data" / "events"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    step = max(1, len(events) // files)
    for i in range(files):
        part = events.iloc[i * step: (i + 1) * step if i < files - 1 else len(events)]
        part.to_parquet(out / f"p{i}.parquet", index=False)


BASES = [BASE, pd.Timestamp("1969-12-31T23:59:30Z"), pd.Timestamp("1900-01-01T00:00:00Z"),
         pd.Timestamp("2199-12-31T23:50:00Z"), pd.Timestamp("2000-02-29T00:00:00Z")]


def write_repo(root, seed: int, stream_topic: Optional[str] = None, project: Optional[str] = None,
               adversarial: bool = False) -> tuple:
    """A random repo under ``root`` (``event_time.max_future: none``, so events up to 2199 are events) and its
    events on the batch face; returns (rng, events) for the caller's requests. ``stream_topic``:
    see :func:`random_defs`; ``project``: the project name (default ``rdefs<seed>``); ``adversarial``: the
    events' texts through :func:`adversarial_text`."""
    rng = random.Random(seed)
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(random_defs(rng, stream_topic))
    (root / "featurestore.yaml").write_text(f"project: {project or f'rdefs{seed}'}\ndefinitions: definitions\n"
                                            "event_time:\n  max_future: none\n")
    events = random_events(rng, base=BASES[seed % len(BASES)])
    if adversarial:
        events = adversarial_text(events, seed)
    write(root, events)
    return rng, events
