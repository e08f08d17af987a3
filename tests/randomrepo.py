"""A definitions repo exercising every aggregation, window and latest/TTL case, plus random events.

Shared by the batch-vs-oracle, online-vs-offline and stream-vs-batch tests.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, LoggingConfig, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
pair = Entity(join_keys=["user_id", "shop"])

events = Source(
    schema={"user_id": "string", "shop": "int64", "amount": "float64", "qty": "int64", "tag": "string",
            "flag": "bool", "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/events/*.parquet"),
)

FUNCS = ["count", "sum", "mean", "min", "max", "last", "first", "stddev", "variance", "count_distinct"]
WINDOWS = {"10s": "10s", "1m": "1m", "1h": "1h", "all": None}

amount_stats = FeatureView(
    entities=[user],
    source=events,
    features=[Aggregation("amount", f, w, name=f"amount_{f}_{label}") for f in FUNCS for label, w in WINDOWS.items()]
    + [Aggregation("*", "count", w, name=f"events_{label}") for label, w in WINDOWS.items()],
)

qty_stats = FeatureView(
    entities=[user],
    source=events,
    filter="flag",
    projections={"qty2": "qty * 2", "tag_len": "length(tag)"},
    features=[Aggregation("qty2", f, "1m", name=f"qty2_{f}_1m") for f in FUNCS if f not in ("count_distinct",)]
    + [Aggregation("tag", "count_distinct", "1m", name="tags_1m"),
       Aggregation("tag", "last", "1h", name="last_tag_1h"),
       Aggregation("tag", "first", None, name="first_tag"),
       Aggregation("qty", "sum", "30s", name="qty_sum_30s", default=-1),
       Aggregation("amount", "mean", "30s", name="amount_mean_30s", default=0.5),
       Aggregation("amount", "stddev", "30s", name="amount_std_30s", default=0.0),
       Aggregation("tag_len", "max", "1h", name="tag_len_max_1h")],
)

profile = FeatureView(
    entities=[user],
    source=events,
    features=[Latest("amount", name="last_amount"), Latest("tag", name="last_tag"),
              Latest("qty + 1", name="last_qty_plus_one")],
    ttl="45s",
)

profile_forever = FeatureView(
    entities=[user],
    source=events,
    features=[Latest("tag", name="tag_ever"), Latest("flag", name="flag_ever")],
)

pair_stats = FeatureView(
    entities=[pair],
    source=events,
    features=[Aggregation("amount", "sum", "1m", name="pair_sum_1m"), Latest("qty", name="pair_last_qty")],
    ttl="2m",
)

everything = FeatureService(features=[amount_stats, qty_stats, profile, profile_forever, pair_stats])

logged_model = FeatureService(
    features=[profile, amount_stats.select("amount_sum_1m", "amount_mean_1h", "events_all"), "qty_stats:tags_1m"],
    logging=LoggingConfig(enabled=True, sample_rate=1.0),
)
'''

BASE = pd.Timestamp("2026-03-01T00:00:00Z")


def write_repo(root: Path) -> Path:
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: rnd\ndefinitions: definitions\n")
    return root


def random_events(seed: int, n: int = 300, users: int = 6, span_s: int = 300) -> pd.DataFrame:
    """Bursty events with equal timestamps, nulls, sub-ms times, negative and repeated values."""
    rng = random.Random(seed)
    rows = []
    t = 0.0
    for i in range(n):
        if rng.random() < 0.3:  # burst / tie: same or nearly same time as the previous event
            t += rng.choice([0.0, 0.0, 0.0004, 0.001])
        else:
            t += rng.expovariate(n / span_s)
        ts = BASE + pd.Timedelta(microseconds=int(t * 1e6) + rng.choice([0, 0, 0, 123, 999]))
        rows.append({
            "user_id": f"u{min(int(rng.paretovariate(1.2)) - 1, users - 1)}",
            "shop": rng.randint(0, 2),
            "amount": None if rng.random() < 0.1 else round(rng.uniform(-50, 200), rng.choice([0, 2, 6])),
            "qty": None if rng.random() < 0.1 else rng.randint(-3, 9),
            "tag": None if rng.random() < 0.15 else rng.choice(["a", "b", "c", "dd", "é"]),
            "flag": None if rng.random() < 0.05 else rng.random() < 0.7,
            "ts": ts,
        })
    df = pd.DataFrame(rows)
    df["qty"] = df["qty"].astype("Int64")
    df["flag"] = df["flag"].astype("boolean")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)  # file order != time order


def write_events(root: Path, df: pd.DataFrame, files: int = 2) -> None:
    out = root / "data" / "events"
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.parquet"):
        old.unlink()
    for i, part in enumerate(np.array_split(np.arange(len(df)), files)):
        df.iloc[part].to_parquet(out / f"part-{i}.parquet", index=False)


def offset_events(seed: int, n: int = 500, hot_share: float = 0.6, span_s: int = 300) -> pd.DataFrame:
    """Events whose values have a large offset and a tiny spread (amounts in minor units, epoch-based
    columns): where a naive or Welford variance loses ``log10(|mean| / sigma)`` digits. One hot user
    (``u0``, ``hot_share`` of the events), bursts of equal timestamps, nulls. The offset is picked by the
    seed: 1e8, 1e15 or -1e15 plus a spread of 1e-3..1, or the event's own epoch ms (drifting with time)."""
    rng = random.Random(seed)
    kind = ["1e8", "1e15", "-1e15", "epoch_ms"][seed % 4]
    int_offset = [2**53, 10**15, -(2**52), 0][seed % 4]
    rows = []
    t = 0.0
    for _ in range(n):
        if rng.random() < 0.3:
            t += rng.choice([0.0, 0.0, 0.001])
        else:
            t += rng.expovariate(n / span_s)
        ts = BASE + pd.Timedelta(microseconds=int(t * 1e6))
        if kind == "epoch_ms":
            amount = float(ts.value // 1_000_000) + rng.choice([0.0, 0.25, 0.5])
        else:
            amount = float(kind) + rng.choice([1, -1]) * rng.randint(0, 999) * rng.choice([1e-3, 1e-2, 1.0])
        user = "u0" if rng.random() < hot_share else f"u{min(int(rng.paretovariate(1.2)), 5)}"
        rows.append({
            "user_id": user,
            "shop": rng.randint(0, 2),
            "amount": None if rng.random() < 0.1 else amount,
            "qty": None if rng.random() < 0.1 else int_offset + rng.randint(-3, 9),
            "tag": None if rng.random() < 0.15 else rng.choice(["a", "b", "c", "dd", "é"]),
            "flag": None if rng.random() < 0.05 else rng.random() < 0.7,
            "ts": ts,
        })
    df = pd.DataFrame(rows)
    df["qty"] = df["qty"].astype("Int64")
    df["flag"] = df["flag"].astype("boolean")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def random_requests(seed: int, events: pd.DataFrame, n: int = 120, users=None) -> pd.DataFrame:
    """Requests at random times, at exact event times, at exact window edges, for known and unknown users
    (``users``: the user ids to pick from, repeat one to weight it)."""
    users = users or ["u0", "u1", "u2", "u3", "u5", "nobody"]
    rng = random.Random(seed + 1000)
    times = list(events["ts"])
    rows = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            q = rng.choice(times).floor("ms")  # exactly at an event: that event is excluded
        elif kind < 0.6:
            q = rng.choice(times).floor("ms") + pd.Timedelta(rng.choice(["10s", "1min", "30s", "45s", "2min", "1h"]))
        else:
            q = BASE + pd.Timedelta(milliseconds=rng.randint(-5_000, 400_000))
        rows.append({"user_id": rng.choice(users), "shop": rng.randint(0, 2),
                     "event_timestamp": q, "label": rng.random()})
    rows.append(dict(rows[0]))  # a duplicate row stays a duplicate
    df = pd.DataFrame(rows)
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    return df


# -- extreme event times ------------------------------------------------------------------------------------
BASE_MS = BASE.value // 1_000_000
SUPPORTED_FROM_MS = -2_208_988_800_000  # 1900-01-01 (docs/semantics.md: the supported range)
SUPPORTED_UNTIL_MS = 7_258_118_400_000  # 2200-01-01, exclusive
HOUR_MS = 3_600_000
OUT_OF_RANGE, TOO_FAR_AHEAD = "out of range", "too far in the future"


def extreme_times(now_ms: int):
    """(kind, event time, what becomes of it: None = an event, else OUT_OF_RANGE / TOO_FAR_AHEAD with the
    default one-hour bound). Times are epoch ms (ints) or, for sub-millisecond digits, pandas Timestamps."""
    return [
        ("epoch_us", BASE_MS * 1000, OUT_OF_RANGE),  # a producer writing microseconds
        ("epoch_ns", BASE_MS * 1_000_000, OUT_OF_RANGE),  # ... or nanoseconds
        ("epoch_s", BASE_MS // 1000, None),  # seconds read as ms: 1970-01-21, indistinguishable, an event
        ("year_9999", 253_402_300_799_999, OUT_OF_RANGE),
        ("year_10000", 253_402_300_800_000, OUT_OF_RANGE),
        ("year_2100", 4_102_444_800_000, TOO_FAR_AHEAD),
        ("int64_max", 2**63 - 1, OUT_OF_RANGE),
        ("int64_min", -(2**63), OUT_OF_RANGE),
        ("range_min", SUPPORTED_FROM_MS, None),
        ("range_min_minus_1", SUPPORTED_FROM_MS - 1, OUT_OF_RANGE),
        ("range_max_minus_1", SUPPORTED_UNTIL_MS - 1, TOO_FAR_AHEAD),
        ("range_max", SUPPORTED_UNTIL_MS, OUT_OF_RANGE),
        ("in_2h", now_ms + 2 * HOUR_MS, TOO_FAR_AHEAD),
        ("in_30m", now_ms + HOUR_MS // 2, None),
        ("pre_1970_sub_ms", pd.Timestamp("1969-12-31T23:59:59.9995Z"), None),
        ("pre_1970_1ns", pd.Timestamp(-1, unit="ns", tz="UTC"), None),
        ("pre_1970_ns_digits", pd.Timestamp("1955-05-05T05:05:05.000000999Z"), None),
        ("ns_digits_round_up", BASE + pd.Timedelta(nanoseconds=999_999_700), None),  # floors, never rounds up
    ]


def extreme_events(seed: int, now_ms: int, users: int = 6) -> pd.DataFrame:
    """One event per :func:`extreme_times` kind (column ``kind``), on the random repo's users (the
    accepted near-future one on a user of its own, so it trims no one else's online history). ``ts`` is
    an object column: epoch-ms ints and pandas Timestamps."""
    rng = random.Random(seed + 77)
    rows = []
    for kind, ts, _ in extreme_times(now_ms):
        rows.append({
            "user_id": "u_future" if kind == "in_30m" else f"u{rng.randrange(users)}",
            "shop": rng.randint(0, 2), "amount": round(rng.uniform(-50, 200), 2), "qty": rng.randint(-3, 9),
            "tag": rng.choice(["a", "b", "é"]), "flag": rng.random() < 0.7, "ts": ts, "kind": kind,
        })
    df = pd.DataFrame(rows)
    df["qty"] = df["qty"].astype("Int64")
    df["flag"] = df["flag"].astype("boolean")
    df["ts"] = df["ts"].astype(object)
    return df


def write_batch_face(root: Path, events: pd.DataFrame, extremes: pd.DataFrame, files: int = 2) -> None:
    """The batch face of ``events`` plus ``extremes`` with every event time exact: pandas files
    (nanoseconds) for the random events and the extremes pandas can hold, a microsecond file for the
    integer times DuckDB can hold, a millisecond file for the rest (beyond DuckDB's range)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    is_int = extremes["ts"].map(lambda v: isinstance(v, int))
    ns = extremes[~is_int].drop(columns=["kind"]).copy()
    ns["ts"] = pd.to_datetime(ns["ts"], utc=True)
    write_events(root, pd.concat([events, ns], ignore_index=True), files=files)
    out = root / "data" / "events"
    ints = extremes[is_int].drop(columns=["kind"])
    limit = (2**63 - 1) // 1000
    for unit, part in (("us", ints[ints["ts"].map(lambda v: -limit <= v <= limit)]),
                       ("ms", ints[ints["ts"].map(lambda v: not -limit <= v <= limit)])):
        ts = [v * 1000 if unit == "us" else v for v in part["ts"]]
        table = pa.Table.from_pandas(part.drop(columns=["ts"]), preserve_index=False)
        table = table.append_column("ts", pa.array(ts, pa.int64()).cast(pa.timestamp(unit, tz="UTC")))
        pq.write_table(table, out / f"extreme-{unit}.parquet")


def assert_flink_backfill_equals_duckdb(root: Path, view: str = "qty_stats", ts: str = "ts") -> None:
    """The offline rows a Flink backfill left for ``view`` equal a DuckDB backfill's of the same repo (which
    then replaces them), compared row by row as text; at least one row."""
    from featurestore.store import FeatureStore

    flink_rows = FeatureStore(root).offline.table(view, ts).read().to_pandas()
    FeatureStore(root).backfill(views=[view])
    duck_rows = FeatureStore(root).offline.table(view, ts).read().to_pandas()
    key = list(duck_rows.columns)
    assert len(duck_rows) > 0
    assert (flink_rows.sort_values(key).astype(str).values.tolist()
            == duck_rows.sort_values(key).astype(str).values.tolist())
