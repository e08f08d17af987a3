"""Timestamp expressions in filters and projections (comparisons, BETWEEN, IN, CASE/COALESCE/NULLIF of
timestamps, ``TIMESTAMP '...'`` literals, ``CAST(... AS TIMESTAMP[TZ])``, timestamp projections, and feature
inputs comparing timestamps) run in the
streaming job and the Flink backfill with the DuckDB backfill's results, to the microsecond. The stream compiler
used to refuse them while the DuckDB backfill accepted them.

One random event set: timestamp values at years 1 and 9999, a microsecond either side of the event time and of
the literals, nulls; produced as JSON (``datagen.to_json_record``: ISO text with microseconds) in shuffled order
and consumed by ONE bounded Flink job. Then the stream's offline tables = the DuckDB backfill's = the Flink
backfill's, online = offline at random request times. What stays refused is one line at plan time."""

from __future__ import annotations

import random
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import datagen
from featurestore.engines.flink import exprs as flink_sql
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import (JOB_TIMEOUT_S, assert_online_equals_offline, assert_same_rows, create_topic,
                                  drop_project, offline_table, produce)

SEED = 71
T0_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
B_US = T0_MS * 1000 + 1  # TIMESTAMP '2026-03-01 00:00:00.000001'
MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253_402_300_800_000_000 - 1  # 9999-12-31T23:59:59.999999Z
SCHEMA = {"user_id": "string", "amount": "float64", "exp": "timestamp", "seen": "timestamp", "ts": "timestamp"}

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={schema!r}, timestamp="ts", batch=ParquetFiles("data/*.parquet"),
                stream=KafkaTopic({topic!r}), watermark_delay="2s")

fresh = FeatureView(
    entities=[user], source=events, filter="exp IS NULL OR exp > ts",
    projections={{"exp2": "exp", "born": "ts", "first_seen": "COALESCE(seen, exp, ts)",
                  "gone": "NULLIF(exp, CAST(seen AS TIMESTAMPTZ))"}},
    features=[Latest("exp2"), Latest("born"), Latest("first_seen"), Latest("gone"),
              Aggregation("amount", "count", "1h", name="n_1h")],
)
late = FeatureView(
    entities=[user], source=events,
    filter="seen BETWEEN TIMESTAMP '2026-03-01 00:00:00.000001' AND COALESCE(exp, TIMESTAMP '9999-12-31 23:59:59.999999')",
    projections={{"when_late": "CASE WHEN exp >= seen THEN exp END",
                  "hit": "CASE WHEN exp IN (TIMESTAMPTZ '9999-12-31 23:59:59.999999+00', seen, ts) THEN 1 ELSE 0 END",
                  "at_ts": "IF(CAST(seen AS TIMESTAMP) = ts, 1, 0)",
                  "ancient": "CASE WHEN exp < TIMESTAMP '0001-01-01 00:00:00.000001' OR exp <= CAST(NULL AS TIMESTAMP) THEN 1 ELSE 0 END"}},
    features=[Latest("when_late"), Latest("exp > ts", name="exp_after"), Latest("COALESCE(seen, exp)", name="seen_or_exp"),
              Aggregation("CASE WHEN seen = ts THEN 1 ELSE 0 END", "sum", "1h", name="seen_at_ts_1h"),
              Aggregation("hit", "sum", "1h", name="hits_1h"),
              Aggregation("at_ts", "sum", None, name="at_ts_all"), Aggregation("ancient", "sum", None, name="ancient_all")],
)
'''


def _time_value(rng: random.Random, ts_ms: int):
    """Epoch us or None: near the event time (a us either side), near the literal B, the calendar's ends."""
    return rng.choice([None, MIN_US, MIN_US + 1, MAX_US, MAX_US - 1, B_US - 1, B_US, B_US + 1,
                       ts_ms * 1000 - 1, ts_ms * 1000, ts_ms * 1000 + 1, ts_ms * 1000 + rng.randrange(-10**9, 10**9),
                       rng.randrange(MIN_US, MAX_US)])


def random_events(seed: int, n: int = 300) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ts_ms = T0_MS - 600_000 + rng.randrange(1_800_000)
        if rng.random() < 0.15 and rows:
            ts_ms = rows[-1]["ts"]  # a tie
        exp = _time_value(rng, ts_ms)
        seen = exp if rng.random() < 0.1 else _time_value(rng, ts_ms)
        rows.append({"user_id": f"u{rng.randrange(6)}", "amount": rng.choice([None, rng.uniform(-100, 100)]),
                     "exp": exp, "seen": seen, "ts": ts_ms})
    return pd.DataFrame(rows, dtype=object)  # exact int64 microseconds (a float64 column would round them)


def _us_array(values) -> pa.Array:
    return pa.array([None if v is None or v != v else int(v) for v in values], pa.int64()).cast(
        pa.timestamp("us", tz="UTC"))


def make_repo(root: Path, topic: str, project: str, events: pd.DataFrame) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(schema=SCHEMA, topic=topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    pq.write_table(pa.table({
        "user_id": pa.array(events["user_id"].tolist(), pa.string()),
        "amount": pa.array([None if v is None or v != v else v for v in events["amount"].tolist()], pa.float64()),
        "exp": _us_array(events["exp"].tolist()), "seen": _us_array(events["seen"].tolist()),
        "ts": pa.array(events["ts"].tolist(), pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
        root / "data" / "part.parquet")
    return FeatureStore(root)


def records(events: pd.DataFrame, seed: int):
    out = []
    for r in events.to_dict("records"):
        row = {k: (None if r[k] is None or r[k] != r[k] else np.datetime64(int(r[k]), "us")) if k in ("exp", "seen")
               else r[k] for k in SCHEMA}
        row["amount"] = None if row["amount"] != row["amount"] else row["amount"]
        out.append((row["user_id"].encode(), datagen.to_json_record(row, "ts", list(SCHEMA))))
    random.Random(seed).shuffle(out)
    return out


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_timestamp_expressions_stream_equal_both_backfills_to_the_microsecond(tmp_path, redis_client, kafka_admin):
    events = random_events(SEED)
    topic, project = f"fs_time_{uuid.uuid4().hex[:10]}", f"t_time_{uuid.uuid4().hex[:8]}"
    store = make_repo(tmp_path / "stream", topic, project, events)
    assert flink_sql.check_repo(store.repo) == []  # accepted by the stream compiler
    duck = make_repo(tmp_path / "duck", topic, project + "d", events)
    flink = make_repo(tmp_path / "flinkb", topic, project + "f", events)
    create_topic(kafka_admin, topic)
    produce(topic, records(events, SEED))
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert result.metrics["events"]["dead_letters"] == 0
        duck.backfill()
        flink.backfill(engine="flink")
        for view in ("fresh", "late"):
            want = offline_table(duck, view)
            assert want.num_rows > 20, view
            for t in ("exp2", "born", "first_seen", "gone") if view == "fresh" else ("when_late",):
                assert want.schema.field(t).type == pa.timestamp("us", tz="UTC"), (view, t, want.schema)
            assert_same_rows(offline_table(store, view), want, f"{view}: stream vs DuckDB backfill")
            assert_same_rows(offline_table(flink, view), want, f"{view}: Flink vs DuckDB backfill")
        fresh = offline_table(duck, "fresh")  # the calendar's ends and the literals' edges reached
        us = {c: [v for v in fresh.column(c).cast(pa.int64()).to_pylist() if v is not None] for c in ("exp2", "first_seen")}
        assert max(us["exp2"]) == MAX_US and min(us["first_seen"]) == MIN_US
        late = offline_table(duck, "late")
        assert late.column("seen").cast(pa.int64()).to_pylist().count(B_US) > 0 and 1 in late.column("hit").to_pylist()
        # online = offline at random request times (after the last event too)
        rng = random.Random(SEED)
        times = sorted(int(t) for t in events["ts"].tolist())
        req = pd.DataFrame({"user_id": [f"u{rng.randrange(6)}" for _ in range(60)],
                            "event_timestamp": pd.to_datetime(
                                [rng.choice(times) + rng.choice([0, 1, 500, 3_600_000]) for _ in range(60)],
                                unit="ms", utc=True)})
        names = [f"{v}:{f}" for v in ("fresh", "late") for f in store.repo.views[v].feature_names]
        assert_online_equals_offline(store, req, names, at_least=20)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


@pytest.mark.parametrize("expr, reason", [
    ("ts > '2026-03-01'", "'>' mixes types string, timestamp (DuckDB and Flink convert them differently); add a CAST"),
    ("CAST(amount AS TIMESTAMP) > ts", "CAST of a float64 to a timestamp is not supported in the streaming job"),
    ("exp > TIMESTAMP '10000-01-01'", "CAST('10000-01-01' AS TIMESTAMP) is outside years 1 to 9999"),
    ("dayname(ts) = 'Monday'", "function dayname() is not supported in the streaming job"),
    ("CAST(exp AS VARCHAR) = 'x'", "CAST from timestamp to string is not supported in the streaming job"),
])
def test_what_stays_refused_is_one_line_at_plan_time(tmp_path, expr, reason):
    store = make_repo(tmp_path / "r", "unused", "t_time_refused", random_events(SEED, 5))
    defs = store.repo_path / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('filter="exp IS NULL OR exp > ts"', f'filter="{expr}"'))
    problems = flink_sql.check_repo(FeatureStore(store.repo_path).repo)
    assert len(problems) == 1 and reason in problems[0].message and "\n" not in problems[0].message, problems
