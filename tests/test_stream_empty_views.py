"""SPEC §3.1 for views no event reaches: the streaming job writes an offline table for every view of the job, as
the DuckDB backfill does, also when no committed row reaches it (a filter no event passes; a source whose topic
gets no event): the same schema, no rows, committed as the others (``commit.DirCommitter.commit_empty``) once a
checkpoint of the run has completed (while an unbounded job runs) or at the run's end, and
``get_historical_features`` over it equals the backfill-based result; rows arriving later are added to it."""

from __future__ import annotations

import random
import time
import uuid

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore import datagen
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import JOB_TIMEOUT_S, assert_same_rows, create_topic, drop_project, offline_table, produce

T0_MS = 1_772_323_200_000  # 2026-03-01T00:00:00Z
SCHEMA = {"user_id": "string", "amount": "float64", "qty": "int64", "n": "int32", "flag": "bool", "tag": "string",
          "exp": "timestamp", "ts": "timestamp"}
QUIET_SCHEMA = {"user_id": "string", "score": "float32", "ts": "timestamp"}
DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={schema!r}, timestamp="ts", batch=ParquetFiles("data/events/*.parquet"),
                stream=KafkaTopic({topic!r}), watermark_delay="2s")
quiet = Source(schema={quiet_schema!r}, timestamp="ts", batch=ParquetFiles("data/quiet/*.parquet"),
                stream=KafkaTopic({quiet_topic!r}), watermark_delay="2s")

kept = FeatureView(entities=[user], source=events, filter="qty >= 0",
                   features=[Aggregation("amount", "sum", "1h", name="amount_1h"), Latest("tag")])
none_pass = FeatureView(
    entities=[user], source=events, filter="qty > 1000000",
    projections={{"twice": "qty * 2", "expiry": "exp", "half": "n", "label": "concat(tag, '-')"}},
    features=[Aggregation("amount", "sum", "1h", name="amount_1h"), Aggregation("twice", "max", None, name="top"),
              Aggregation("*", "count", "1d", name="n_1d"), Latest("expiry"), Latest("half"), Latest("label"),
              Latest("flag")],
)
silent = FeatureView(entities=[user], source=quiet, features=[Aggregation("score", "max", None, name="best"),
                                                             Latest("score")])
everything = FeatureService(name="everything", features=[kept, none_pass, silent])
'''
ARROW = {"string": pa.string(), "float64": pa.float64(), "float32": pa.float32(), "int64": pa.int64(),
         "int32": pa.int32(), "bool": pa.bool_()}


def _events(seed: int, n: int = 60):
    rng = random.Random(seed)
    return [{"user_id": f"u{rng.randrange(4)}", "amount": rng.choice([None, rng.uniform(-9, 9)]),
             "qty": rng.choice([None, rng.randrange(-5, 10)]), "n": rng.choice([None, rng.randrange(-3, 3)]),
             "flag": rng.choice([None, True, False]), "tag": rng.choice([None, "", "a"]),
             "exp": rng.choice([None, T0_MS * 1000 + rng.randrange(10**9)]), "ts": T0_MS + rng.randrange(3_600_000)}
            for _ in range(n)]


def _table(rows, schema):
    cols = {}
    for c, d in schema.items():
        values = [r[c] for r in rows]
        if d == "timestamp":
            unit = "ms" if c == "ts" else "us"
            cols[c] = pa.array(values, pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
        else:
            cols[c] = pa.array(values, ARROW[d])
    return pa.table(cols)


def _repo(root, topic: str, quiet_topic: str, project: str, rows, quiet_rows=()) -> FeatureStore:
    (root / "definitions").mkdir(parents=True)
    (root / "data" / "events").mkdir(parents=True)
    (root / "data" / "quiet").mkdir(parents=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS.format(
        schema=SCHEMA, quiet_schema=QUIET_SCHEMA, topic=topic, quiet_topic=quiet_topic))
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    pq.write_table(_table(rows, SCHEMA), root / "data" / "events" / "part.parquet")
    pq.write_table(_table(list(quiet_rows), QUIET_SCHEMA), root / "data" / "quiet" / "part.parquet")  # none: no events
    return FeatureStore(root)


def _records(rows):
    return [(r["user_id"].encode(), datagen.to_json_record(
        {**r, "exp": None if r["exp"] is None else np.datetime64(r["exp"], "us")}, "ts", list(SCHEMA)))
        for r in rows]


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_views_no_event_reaches_get_the_backfills_empty_table(tmp_path, redis_client, kafka_admin):
    rows = _events(11)
    suffix = uuid.uuid4().hex[:10]
    topic, quiet_topic, project = f"fs_empty_{suffix}", f"fs_quiet_{suffix}", f"t_empty_{suffix[:8]}"
    store = _repo(tmp_path / "stream", topic, quiet_topic, project, rows)
    duck = _repo(tmp_path / "duck", topic, quiet_topic, project + "d", rows)
    create_topic(kafka_admin, topic)
    create_topic(kafka_admin, quiet_topic, partitions=1)
    produce(topic, _records(rows))
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert result.metrics["events"]["dead_letters"] == 0
        duck.backfill()
        assert_same_rows(offline_table(store, "kept"), offline_table(duck, "kept"), "kept: stream vs backfill")
        for view in ("none_pass", "silent"):
            streamed, backfilled = (s.offline.table(view, ts_column="ts") for s in (store, duck))
            assert streamed.version is not None, f"{view}: the stream wrote no offline table"
            assert streamed.schema().equals(backfilled.schema()), (view, streamed.schema(), backfilled.schema())
            assert streamed.read().num_rows == 0 == backfilled.read().num_rows
            assert streamed.read().schema.equals(backfilled.read().schema)
            assert streamed.manifest()["stream"]["topic"] == store.repo.views[view].source.stream.topic
        assert result.metrics["events"]["events:none_pass"] == 0 and result.metrics["quiet"]["events"] == 0

        users = [f"u{k}" for k in range(5)]
        req = pd.DataFrame({"user_id": users * 2, "event_timestamp": pd.to_datetime(
            [T0_MS + 1_800_000] * 5 + [T0_MS + 7_200_000] * 5, unit="ms", utc=True)})
        got = store.get_historical_features(req, feature_service="everything", full_feature_names=True).to_df()
        want = duck.get_historical_features(req, feature_service="everything", full_feature_names=True).to_df()
        pd.testing.assert_frame_equal(got, want)

        # a second run (restored from the savepoint) leaves the empty tables as they are: no new version
        versions = {v: store.offline.table(v, ts_column="ts").version for v in ("none_pass", "silent")}
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert {v: store.offline.table(v, ts_column="ts").version for v in versions} == versions
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic, quiet_topic])


def _wait_for(predicate, what: str, handle) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not predicate():
        assert handle.status() == "RUNNING", f"the job is {handle.status()} before {what}"
        assert time.monotonic() < deadline, f"timed out after {JOB_TIMEOUT_S} s waiting for {what}"
        time.sleep(0.3)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
def test_unbounded_job_creates_the_empty_tables_after_a_checkpoint_then_adds_rows(tmp_path, redis_client,
                                                                                  kafka_admin):
    """While an unbounded job runs (not only when it stops): once a checkpoint has completed, a view no event
    reached has the backfill's empty table; events for it arriving later are added as a later version, and the
    table then holds exactly them (the backfill over every event)."""
    first = [r for r in _events(12) if r["qty"] is None or r["qty"] < 1000]
    later = [{**r, "qty": 2_000_000 + k} for k, r in enumerate(_events(13, n=7))]  # these pass none_pass's filter
    quiet = [{"user_id": f"u{k % 3}", "score": k * 0.5 - 1, "ts": T0_MS + 60_000 * k} for k in range(5)]
    suffix = uuid.uuid4().hex[:10]
    topic, quiet_topic, project = f"fs_empty_{suffix}", f"fs_quiet_{suffix}", f"t_emptyu_{suffix[:8]}"
    store = _repo(tmp_path / "stream", topic, quiet_topic, project, first)
    duck = _repo(tmp_path / "duck", topic, quiet_topic, project + "d", first)
    duck_all = _repo(tmp_path / "duck_all", topic, quiet_topic, project + "a", first + later, quiet)
    create_topic(kafka_admin, topic)
    create_topic(kafka_admin, quiet_topic, partitions=1)
    produce(topic, _records(first))
    handle = streaming.start(store, bounded=False, checkpoint_dir=tmp_path / "checkpoints",
                             checkpoint_interval_ms=500, commit_interval_s=0.5)
    try:
        duck.backfill()
        tables = {v: store.offline.table(v, ts_column="ts") for v in ("none_pass", "silent")}
        _wait_for(lambda: all(t.version is not None for t in tables.values()),
                  "the empty tables while the job runs", handle)
        empty_versions = {}
        for view, streamed in tables.items():
            backfilled = duck.offline.table(view, ts_column="ts")
            assert streamed.schema().equals(backfilled.schema()), (view, streamed.schema(), backfilled.schema())
            assert streamed.read().num_rows == 0 == backfilled.read().num_rows, view
            assert streamed.read().schema.equals(backfilled.read().schema), view
            empty_versions[view] = streamed.version

        produce(topic, _records(later))
        produce(quiet_topic, [(r["user_id"].encode(), datagen.to_json_record(r, "ts", list(QUIET_SCHEMA)))
                              for r in quiet])
        duck_all.backfill()
        tables["kept"] = store.offline.table("kept", ts_column="ts")
        want = {v: duck_all.offline.table(v, ts_column="ts").read().num_rows for v in tables}
        assert want["none_pass"] == len(later) and want["silent"] == len(quiet), want
        _wait_for(lambda: all(t.version is not None and t.read().num_rows == want[v] for v, t in tables.items()),
                  "the later events' rows while the job runs", handle)
        for view in ("kept", "none_pass", "silent"):
            streamed = store.offline.table(view, ts_column="ts")
            if view in empty_versions:
                assert streamed.version > empty_versions[view], view
            assert_same_rows(streamed.read(), duck_all.offline.table(view, ts_column="ts").read(),
                             f"{view}: stream while running vs backfill over every event")
        handle.stop()
    finally:
        if handle.status() not in ("FINISHED", "CANCELED", "FAILED"):
            handle.cancel()
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic, quiet_topic])


@pytest.mark.redis
def test_the_committer_creates_empty_tables_the_pass_after_a_checkpoint_of_its_run(tmp_path, redis_client):
    """Without Flink, when a non-final pass creates the empty tables: not for the restored (older) snapshot; not on
    the pass that first sees a checkpoint of this run (Flink renames its files one by one), but on the next; only
    for views without a table that are not being rebuilt; once (later passes add no version)."""
    import os

    from featurestore.engines.duckdb_engine import arrow_schema
    from featurestore.engines.flink import commit as stream_commit
    from tests.test_stream import make_repo, stream_events

    project = f"t_emptyp_{uuid.uuid4().hex[:8]}"
    store = FeatureStore(make_repo(tmp_path / "repo", "fs_empty_unused", project, stream_events()))
    names = streaming.stream_views(store)
    backfilled, rebuilt, fresh = names[0], names[1], names[2:]
    assert fresh, names
    store.backfill(views=[backfilled])
    root = tmp_path / "checkpoints"
    restored = root / "former-job" / "chk-7" / "_metadata"
    restored.parent.mkdir(parents=True)
    restored.write_bytes(b"")
    os.utime(restored, (time.time() - 60,) * 2)
    try:
        c = stream_commit.Committer(store, names, rebuilding={rebuilt: {"topic": "fs_empty_other", "fingerprint": "x",
                                                                         "next_offsets": {}}}, checkpoint_root=root)
        tables = {n: store.offline.table(n, ts_column=store.compiled(n).ts_column) for n in names}
        versions = lambda: {n: t.version for n, t in tables.items()}  # noqa: E731
        before = versions()
        c.commit()
        assert versions() == before, "created on a restored snapshot, before a checkpoint of this run"
        taken = root / "this-job" / "chk-1" / "_metadata"
        taken.parent.mkdir(parents=True)
        taken.write_bytes(b"")
        c.commit()
        assert versions() == before, "created on the pass that first saw the checkpoint"
        c.commit()
        after = versions()
        assert after[backfilled] == before[backfilled] and after[rebuilt] is None, after
        for n in fresh:
            assert after[n] is not None and tables[n].read().num_rows == 0, n
            assert tables[n].read().schema.equals(arrow_schema(store.compiled(n))), n
        c.commit()
        assert versions() == after, "a later pass added a version"
    finally:
        drop_project(redis_client, project)


@pytest.mark.kafka
@pytest.mark.redis
def test_a_standalone_commit_pass_creates_empty_tables_once_the_jobs_group_has_committed_offsets(
        tmp_path, redis_client, kafka_admin):
    """``stream.commit`` beside a job it did not start (a remote cluster's) cannot see the job's checkpoints: it
    asks the job's consumer group, whose offsets Flink commits only when a checkpoint completes. Before any: no
    table; after: each view without a table gets the backfill's empty one, once."""
    from confluent_kafka import Consumer, TopicPartition

    from featurestore.engines.duckdb_engine import arrow_schema
    from tests.test_stream import make_repo, stream_events

    suffix = uuid.uuid4().hex[:10]
    topic, project = f"fs_emptys_{suffix}", f"t_emptys_{suffix[:8]}"
    store = FeatureStore(make_repo(tmp_path / "repo", topic, project, stream_events()))
    names = streaming.stream_views(store)
    backfilled, fresh = names[0], names[1:]
    assert fresh, names
    store.backfill(views=[backfilled])
    create_topic(kafka_admin, topic, partitions=2)
    tables = {n: store.offline.table(n, ts_column=store.compiled(n).ts_column) for n in names}
    versions = lambda: {n: t.version for n, t in tables.items()}  # noqa: E731
    before = versions()
    try:
        streaming.commit(store)
        assert versions() == before, "created before the job completed a checkpoint"
        group = streaming.job_name(store, names)
        consumer = Consumer({"bootstrap.servers": store.config.kafka_bootstrap, "group.id": group,
                             "enable.auto.commit": False})
        try:  # what Flink's Kafka source does when a checkpoint completes
            consumer.commit(offsets=[TopicPartition(topic, 0, 0)], asynchronous=False)
        finally:
            consumer.close()
        streaming.commit(store)
        after = versions()
        assert after[backfilled] == before[backfilled], "a table that exists was touched"
        for n in fresh:
            assert after[n] is not None and tables[n].read().num_rows == 0, n
            assert tables[n].read().schema.equals(arrow_schema(store.compiled(n))), n
            assert tables[n].manifest()["stream"]["topic"] == topic, n
        streaming.commit(store)
        assert versions() == after, "a later pass added a version"
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
