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


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_a_bounded_run_ends_when_some_online_instances_never_receive_a_row(tmp_path, redis_client, kafka_admin):
    """Parallelism 3 over two keys (one user at one shop: one key per key group), so at least one online
    operator instance never receives a mini-batch. The end of a bounded run waits for every instance's report
    after its checkpoint; an instance that never received a row used to never report at all, and the run hung
    until its timeout. Now each instance reports when it opens, and one that has still received nothing when
    the checkpoint completes has nothing to write."""
    topic = f"fs_idleinst_{uuid.uuid4().hex[:10]}"
    project = f"t_idleinst_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    events = events[(events["user_id"] == "u0") & (events["shop"] == 1)].reset_index(drop=True)
    assert len(events) >= 10
    root = make_repo(tmp_path / "repo", topic, project, events)
    create_topic(kafka_admin, topic)
    store = FeatureStore(root)
    try:
        produce(topic, arrival(events, SEED))
        result = streaming.run(store, bounded=True, timeout=180, parallelism=3, checkpoint_interval_ms=1000,
                               checkpoint_dir=tmp_path / "checkpoints")
        states = [d for k, d in result.online.items() if k.startswith("state:")]
        assert sorted({d["subtask"] for d in states}) == [0, 1, 2]  # every instance reported
        assert sum(d["events"] > 0 for d in states) <= 2  # (two keys: the others received nothing)
        assert_online_equals_oracle(store, events, "after a bounded run with idle online instances")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
