"""The online mini-batch operator (``OnlineBatches``, featurestore/engines/flink/java) holds events across a
savepoint: its operator state, not a window's keyed state.

A live run with an hour-long mini-batch interval (and idle time before an early emit) reads every record
and checkpoints it while the online rows still sit in the operator's buffers: the Python operator has seen
no batch. The run stops with a savepoint; a bounded run restored from it must emit the buffers and write
every entity's values exactly as the oracle computes them (nothing lost, nothing twice: Kafka's offsets
are past those events, so only the savepoint has them)."""

from __future__ import annotations

import uuid

import pytest

from featurestore.engines.flink import offsets as flink_offsets
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import assert_online_equals_oracle
from tests.test_stream import JOB_TIMEOUT_S, SEED, arrival, create_topic, drop_project, make_repo, produce, stream_events

HOUR_MS = 3_600_000


def _online_events(handle) -> int:
    """Events the online path's Python operator has processed (its progress reports)."""
    return sum(d.get("events", 0) for k, d in handle.online_progress().items() if k.startswith("state:"))


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_events_buffered_at_a_savepoint_reach_redis_after_the_restore(tmp_path, redis_client, kafka_admin):
    topic = f"fs_batches_{uuid.uuid4().hex[:10]}"
    project = f"t_batches_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    root = make_repo(tmp_path / "repo", topic, project, events)
    create_topic(kafka_admin, topic)
    records = arrival(events, SEED)
    produce(topic, records)
    store = FeatureStore(root)
    ckpt = tmp_path / "checkpoints"
    handle = streaming.start(store, bounded=False, checkpoint_dir=ckpt, checkpoint_interval_ms=500,
                             commit_interval_s=0.5, flush_ms=HOUR_MS, job_options={"batch_idle_ms": HOUR_MS})
    try:
        # caught up = every record read and its offsets committed by a completed checkpoint, while the online
        # rows still sit in the hour-long buffers: the Python operator has seen no batch
        handle.ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, [topic])
        handle.wait_caught_up(JOB_TIMEOUT_S)
        result = handle.stop()
        assert result.savepoint
        assert _online_events(handle) == 0, "the mini-batches left the operator before the savepoint"
        again = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                              checkpoint_interval_ms=500)
        assert again.restored_from is not None
        assert sum(d.get("events", 0) for k, d in again.online.items() if k.startswith("state:")) > 0
        assert_online_equals_oracle(store, events, "after a restore of buffered mini-batches")
    finally:
        if handle.status() not in ("FINISHED", "CANCELED", "FAILED"):
            handle.cancel()
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])



@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_a_bounded_run_ends_once_its_batches_leave_not_a_batch_interval_after_it_caught_up(tmp_path, redis_client,
                                                                                           kafka_admin):
    """A bounded run's last mini-batches leave the operator once no row arrived for its idle time (0.5 s): it has
    read its topic. Its end (``run_until_done``: caught up, then every online row written) waits for a checkpoint
    after that idle time (``wait_online_flushed(read_all=True)``), not after the mini-batch interval (15 s in a
    large catch-up: the benchmark's full job spent a third of its time there). With a mini-batch interval longer
    than the run's whole timeout the run must still end, with every online value written."""
    topic = f"fs_batch_end_{uuid.uuid4().hex[:10]}"
    project = f"t_batch_end_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    root = make_repo(tmp_path / "repo", topic, project, events)
    create_topic(kafka_admin, topic)
    produce(topic, arrival(events, SEED))
    store = FeatureStore(root)
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=tmp_path / "checkpoints",
                               checkpoint_interval_ms=500, flush_ms=(JOB_TIMEOUT_S + 60) * 1000)
        assert sum(d.get("events", 0) for k, d in result.online.items() if k.startswith("state:")) > 0
        assert_online_equals_oracle(store, events, "a bounded run with mini-batches longer than its timeout")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
