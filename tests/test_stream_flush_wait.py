"""``StreamHandle.wait_online_flushed(t)`` returns only once Redis holds every online row that reached the job
before ``t``, however late the online path is (SPEC §3.2: once the stream has consumed E, online = offline).

The wait used to trust a time margin: a report of the Python operator made ``batch_ms + 1 s`` after ``t`` was
taken to cover every row, so on a busy machine the mini-batches still queued before that operator (or held by
a late timer in the JVM's mini-batch operator) were read as written. Here the operator is slowed down on
purpose (``JobOptions.online_batch_delay_s``: each batch takes 0.25 s, ~7 s for one round of the repo's
entities, well past the margin) and every entity's values must be in Redis, equal to the oracle's, as soon as
the wait returns, the job running on. (A bounded run ends through the same wait, ``input_ended``: every bounded
stream test covers that path.) The third test fails the task during the wait (a real restart from a checkpoint)."""

from __future__ import annotations

import time
import uuid

import pytest

import dataclasses

from featurestore.config import load_config
from featurestore.engines.flink import rest as flink_rest
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import JOB_TIMEOUT_S, SEED, arrival, assert_online_equals_oracle, assert_same_rows, \
    create_topic, drop_project, make_repo, offline_table, produce, stream_events


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


def _checkpoint_now(handle) -> None:
    """Trigger a checkpoint and wait until one completes (triggered again while tasks are starting)."""
    path, deadline = f"/jobs/{handle.job_id}/checkpoints", time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        trigger = flink_rest.call(handle.rest_address, "POST", path, {})["request-id"]
        while True:
            got = flink_rest.call(handle.rest_address, "GET", f"{path}/{trigger}")
            if (got.get("status") or {}).get("id") == "COMPLETED":
                break
            time.sleep(0.2)
        if (got.get("operation") or {}).get("checkpointId") is not None:
            return
        time.sleep(0.5)
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


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_the_flush_wait_outlasts_a_restart_during_it(tmp_path, redis_client, kafka_admin):
    """The online operator's task fails as the wait starts, with most mini-batches still queued before it; Flink
    restores the checkpoint taken before any record was read and replays the topic. The replayed rows reach the
    JVM's mini-batch operator after ``t``, so they are not due at the wait's checkpoint, and the restored instance
    opens ``idle``: the wait used to count it and return with most values missing. Now a report of a later attempt
    makes the wait start again once the topics are read again. Then each store holds every event once: online
    values = the oracle's, offline rows = a DuckDB backfill's."""
    topic = f"fs_flushrestart_{uuid.uuid4().hex[:10]}"
    project = f"t_flushrestart_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    root = make_repo(tmp_path / "repo", topic, project, events)
    ref_root = make_repo(tmp_path / "ref", topic, project, events)
    ref = FeatureStore(ref_root, config=dataclasses.replace(load_config(ref_root), offline_root=str(tmp_path / "ref_off")))
    ref.backfill()
    create_topic(kafka_admin, topic)
    store = FeatureStore(root)
    fail = tmp_path / "fail-now"
    # checkpoints only when asked (the wait asks): the restore goes back to the one taken before the records
    # 12 s mini-batches, 0.5 s per batch in the operator: the task fails 5 s into the wait, half the batches
    # applied; the rows replayed after the restart are not due at the checkpoint the wait takes 12 s after its start
    handle = streaming.start(store, bounded=False, checkpoint_dir=tmp_path / "checkpoints",
                             checkpoint_interval_ms=3_600_000, commit_interval_s=0.5, flush_ms=12_000,
                             job_options={"online_batch_delay_s": 0.5, "batch_idle_ms": 12_000,
                                          "online_fail_file": str(fail)})
    started = []

    def fail_once():
        if len(started) == 1 and time.monotonic() - started[0] >= 5:
            fail.touch()  # the operator's next batch fails its task
            started.append(None)

    try:
        _checkpoint_now(handle)  # every task runs; the restore point, before any record
        produce(topic, arrival(events, SEED))
        _wait_first_batch(handle, store)
        started.append(time.monotonic())
        handle.wait_online_flushed(int(time.time() * 1000), JOB_TIMEOUT_S, on_poll=fail_once)
        assert len(started) == 2, "the wait ended before the failure"
        assert not fail.exists(), "the injected failure did not happen"
        from featurestore.stores.online_redis import for_store

        instances = {d["instance"] for d in handle._reports(for_store(store).client).values()}
        assert len(instances) >= 2, f"the job did not restart: {instances}"  # (one subtask)
        assert_online_equals_oracle(store, events, "as soon as the wait returned after a restart during it")
        handle.stop()
    except BaseException:
        handle.cancel()
        raise
    try:
        assert_online_equals_oracle(store, events, "after the stop")
        for view in store.repo.views:
            assert_same_rows(offline_table(store, view), offline_table(ref, view), f"view {view} after a restart")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def test_the_checkpoint_of_a_wait_comes_after_the_batch_interval_or_when_all_is_read_after_the_idle_time():
    """A row that reached ``OnlineBatches`` before ``t`` leaves it by ``t`` + its mini-batch interval; when nothing
    arrives after ``t`` (``read_all``: a bounded run after its catch-up) also once it was idle that long, whichever
    comes first. A report without an idle time (an older job) keeps the interval."""
    from featurestore.engines.flink.handle import _flush_after

    assert _flush_after({"batch_ms": 15_000, "idle_ms": 500}, read_all=True) == 500
    assert _flush_after({"batch_ms": 15_000, "idle_ms": 500}, read_all=False) == 15_000
    assert _flush_after({"batch_ms": 200, "idle_ms": 3_600_000}, read_all=True) == 200
    assert _flush_after({"batch_ms": 5_000}, read_all=True) == 5_000
    assert _flush_after({"pending_ms": 6_000}, read_all=False) == 6_000
