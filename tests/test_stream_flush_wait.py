"""``StreamHandle.wait_online_flushed(t)`` returns only once Redis holds every online row that reached the job
before ``t``, however late the online path is (SPEC §3.2: once the stream has consumed E, online = offline).

The wait used to trust a time margin: a report of the Python operator made ``batch_ms + 1 s`` after ``t`` was
taken to cover every row, so on a busy machine the mini-batches still queued before that operator (or held by
a late timer in the JVM's mini-batch operator) were read as written. Here the operator is slowed down on
purpose (``JobOptions.online_batch_delay_s``: each batch takes 0.25 s, ~7 s for one round of the repo's
entities, well past the margin) and every entity's values must be in Redis, equal to the oracle's, as soon as
the wait returns, the job running on. (A bounded run ends through the same wait, ``input_ended``: every bounded
stream test covers that path.)"""

from __future__ import annotations

import time
import uuid

import pytest

from featurestore.engines.flink import rest as flink_rest
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import JOB_TIMEOUT_S, SEED, arrival, assert_online_equals_oracle, create_topic, drop_project, \
    make_repo, produce, stream_events


# 3 s mini-batches (and idle time before an early emit): a burst of records leaves the JVM's mini-batch operator
# at once, ~25 batches that queue ~7 s before the slowed operator
SLOW = {"online_batch_delay_s": 0.25, "batch_idle_ms": 3_000}
FLUSH_MS = 3_000


def _wait_first_checkpoint(handle) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        got = flink_rest.call(handle.rest_address, "GET", f"/jobs/{handle.job_id}/checkpoints")
        if (got.get("counts") or {}).get("completed", 0) > 0:
            return
        time.sleep(0.2)
    raise AssertionError("no checkpoint completed")


def _wait_first_batch(handle, store) -> None:
    from featurestore.stores.online_redis import for_store

    client, deadline = for_store(store).client, time.monotonic() + JOB_TIMEOUT_S
    while not any(d.get("batches", 0) for d in handle._reports(client).values()):
        assert time.monotonic() < deadline, "no mini-batch reached the online operator"
        time.sleep(0.05)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_the_flush_wait_covers_rows_queued_before_a_slow_online_operator(tmp_path, redis_client, kafka_admin):
    topic = f"fs_flushwait_{uuid.uuid4().hex[:10]}"
    project = f"t_flushwait_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    root = make_repo(tmp_path / "repo", topic, project, events)
    create_topic(kafka_admin, topic)
    store = FeatureStore(root)
    handle = streaming.start(store, bounded=False, checkpoint_dir=tmp_path / "checkpoints",
                             checkpoint_interval_ms=200, commit_interval_s=0.5, flush_ms=FLUSH_MS, job_options=SLOW)
    try:
        _wait_first_checkpoint(handle)  # every task runs: the records below meet checkpoints every 200 ms
        produce(topic, arrival(events, SEED))
        # every row has reached the job once the first mini-batch left (3 s after a burst read in < 1 s): from
        # then on the slowed operator has ~7 s of batches queued
        _wait_first_batch(handle, store)
        handle.wait_online_flushed(int(time.time() * 1000), JOB_TIMEOUT_S)
        assert_online_equals_oracle(store, events, "as soon as wait_online_flushed returned (the job running on)")
    finally:
        handle.cancel()
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
