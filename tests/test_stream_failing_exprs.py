"""One rule for an event on which DuckDB's evaluation of a view's expression fails (an integer overflow in a feature
input such as ``qty * 1000000000`` or in a projection such as ``qty * qty``): both backfills fail in one line naming
the view (the Flink one naming the feature or the projection too), and the streaming job, which must not crash-loop
on one event, makes it a **dead letter of that view** with the same reason (``tables.view_failure_sql``): it is
neither stored in the view's offline table nor applied online, so online = offline holds on the stream's data and
no value DuckDB never computes (a NULL input silently skipped) is ever served. Other views of the same source keep
the event."""

from __future__ import annotations

import random
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import datagen
from featurestore.engines.flink import stream as streaming
from featurestore.errors import FeatureStoreError
from featurestore.store import FeatureStore
from tests.stream_helpers import (JOB_TIMEOUT_S, assert_online_equals_offline, assert_same_rows, create_topic,
                                  dead_letters, drop_project, offline_table, produce)

T0_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SCHEMA = {"user_id": "string", "qty": "int64", "ts": "timestamp"}
DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={schema!r}, timestamp="ts", batch=ParquetFiles("data/*.parquet"),
                stream=KafkaTopic({topic!r}), watermark_delay="2s")

plain = FeatureView(entities=[user], source=events,
                    features=[Aggregation("qty", "sum", "1h", name="qty_1h"), Aggregation("*", "count", "1h", name="n_1h")])
scaled = FeatureView(entities=[user], source=events,
                     features=[Latest("qty * 1000000000", name="nano"),
                               Aggregation("qty * 1000000000", "max", "1h", name="nano_1h"),
                               Aggregation("*", "count", "1h", name="m_1h")])
squared = FeatureView(entities=[user], source=events, projections={{"sq": "qty * qty"}},
                      features=[Latest("sq"), Aggregation("sq", "max", None, name="top")])
'''
FEATURE_FAILS = 10**10  # qty * 1e9 overflows BIGINT (and qty * qty)
PROJECTION_FAILS = 4 * 10**9  # qty * qty overflows, qty * 1e9 does not
FEATURE_PART = "feature 'nano', 'nano_1h' (qty * 1000000000): an integer overflow"
SCALED_REASON = f"view 'scaled': {FEATURE_PART}"
SQUARED_REASON = "view 'squared': projection 'sq' (qty * qty): an integer overflow"


def _events(n: int = 80):
    rng = random.Random(3)
    out = []
    for i in range(n):
        qty = rng.choice([None, rng.randrange(-50, 50)])
        if i % 11 == 4:
            qty = PROJECTION_FAILS
        elif i % 13 == 6:
            qty = FEATURE_FAILS
        out.append({"user_id": f"u{rng.randrange(4)}", "qty": qty, "ts": T0_MS + rng.randrange(3_600_000)})
    return out


def _repo(root, topic: str, project: str, events) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(schema=SCHEMA, topic=topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    pq.write_table(pa.table({"user_id": [e["user_id"] for e in events], "qty": pa.array([e["qty"] for e in events],
                                                                                         pa.int64()),
                             "ts": pa.array([e["ts"] for e in events], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "part.parquet")
    return FeatureStore(root)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_the_stream_dead_letters_what_both_backfills_fail_on(tmp_path, redis_client, kafka_admin):
    events = _events()
    fails_feature = [e for e in events if e["qty"] == FEATURE_FAILS]
    fails_projection = [e for e in events if e["qty"] == PROJECTION_FAILS]
    assert fails_feature and fails_projection
    suffix = uuid.uuid4().hex[:10]
    topic, project = f"fs_failing_{suffix}", f"t_failing_{suffix[:8]}"
    store = _repo(tmp_path / "stream", topic, project, events)
    create_topic(kafka_admin, topic, partitions=2)
    produce(topic, [(e["user_id"].encode(), datagen.to_json_record(e, "ts", list(SCHEMA))) for e in events])
    try:
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        # each failing event is one dead letter naming the view and the part (the first failing view names it)
        letters = dead_letters(store)
        assert len(letters) == len(fails_feature) + len(fails_projection), letters
        for row in letters:
            assert row["reason"].startswith((SCALED_REASON, SQUARED_REASON)), row["reason"]
        by_reason = sorted(r["reason"].startswith(SQUARED_REASON) for r in letters)
        assert by_reason.count(True) >= len(fails_projection)
        # the views store exactly the events their expressions do not fail on; another view keeps them all
        stored = {v: sorted(r["ts"] for r in offline_table(store, v).to_pylist()) for v in ("plain", "scaled", "squared")}
        ts = lambda rows: sorted(pd.Timestamp(e["ts"], unit="ms", tz="UTC") for e in rows)  # noqa: E731
        assert stored["plain"] == ts(events)
        assert stored["scaled"] == ts(e for e in events if e["qty"] != FEATURE_FAILS)
        assert stored["squared"] == ts(e for e in events if e["qty"] not in (FEATURE_FAILS, PROJECTION_FAILS))
        # SPEC 3.2 on the stream's data: online = offline, the failing events in neither
        users = sorted({e["user_id"] for e in events})
        times = [T0_MS + k * 600_000 for k in range(1, 8)]
        requests = pd.DataFrame({"user_id": [u for u in users for _ in times], "event_timestamp": pd.to_datetime(
            [q for _ in users for q in times], unit="ms", utc=True)})
        names = ["plain:qty_1h", "plain:n_1h", "scaled:nano", "scaled:nano_1h", "scaled:m_1h", "squared:sq", "squared:top"]
        assert_online_equals_offline(store, requests, names, at_least=len(requests) // 2)
        # the DuckDB backfill of the same events fails in one line on both views; of the other view it equals the stream
        duck = _repo(tmp_path / "duck", topic, project + "d", events)
        for view in ("scaled", "squared"):
            with pytest.raises(FeatureStoreError) as err:
                duck.backfill(views=[view])
            message = str(err.value)
            assert message.startswith(f"backfill of view '{view}' failed: ") and "\n" not in message, message
            assert "overflow" in message.lower(), message
            assert duck.offline.table(view, ts_column="ts").version is None  # nothing written
        duck.backfill(views=["plain"])
        assert_same_rows(offline_table(store, "plain"), offline_table(duck, "plain"), "plain: stream vs backfill")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def test_the_duckdb_backfill_fails_in_one_line_on_a_failing_feature_input_of_a_stored_event(tmp_path):
    """Not only a later read: the backfill evaluates each computed feature input on the events it stores."""
    events = _events()
    store = _repo(tmp_path / "d", "unused", "t_failingd", events)
    with pytest.raises(FeatureStoreError) as err:
        store.backfill(views=["scaled"])
    message = str(err.value)
    assert message.startswith("backfill of view 'scaled' failed: ") and "\n" not in message, message
    assert "overflow" in message.lower() and store.offline.table("scaled", ts_column="ts").version is None, message
    (got,) = store.backfill(views=["plain"])
    assert got.rows == len(events)


@pytest.mark.flink
@pytest.mark.slow
def test_the_flink_backfill_fails_in_one_line_on_a_failing_feature_input(tmp_path):
    """As the DuckDB backfill (above): on the stored events only, so a filter that keeps the failing events out
    keeps the backfill whole."""
    events = _events()
    store = _repo(tmp_path / "f", "unused", "t_failingf", events)
    with pytest.raises(FeatureStoreError) as err:
        store.backfill(views=["scaled"], engine="flink")
    message = str(err.value)
    assert message.startswith(f"backfill of view 'scaled' failed: {FEATURE_PART}") and "\n" not in message, message
    assert store.offline.table("scaled", ts_column="ts").version is None
    defs = tmp_path / "f" / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('scaled = FeatureView(entities=[user], source=events,',
                                             'scaled = FeatureView(entities=[user], source=events, filter="qty < 1000",'))
    for engine in ("flink", "duckdb"):
        fs = FeatureStore(tmp_path / "f")
        (got,) = fs.backfill(views=["scaled"], engine=engine)
        assert got.rows == sum(1 for e in events if e["qty"] is not None and e["qty"] < 1000), engine
