"""The streaming job under transient faults, against real services: Redis restarts while the job runs.

A 24/7 job meets transient faults forever; a restart budget that never resets (Flink's fixed-delay) kills
it at its Nth fault ever. The configured restart strategy (featurestore.yaml ``flink.restart_strategy``,
here exponential-delay with a small budget per burst and a short reset) must keep it running through more
faults than that budget, as long as they are spread out, and the data must come out exact.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections import Counter

import pandas as pd
import pytest

from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink import offsets as flink_offsets
from featurestore.config import load_config
from featurestore.engines.flink import rest as flink_rest
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.services import RedisServer
from tests.test_stream import (JOB_TIMEOUT_S, KEYS, SEED, arrival, assert_same_rows, create_topic, dead_letters,
                               expected_dead_letters, make_repo, offline_table, produce, stream_events)

MAX_ATTEMPTS = 4  # restarts allowed in one burst of failures
OUTAGES = MAX_ATTEMPTS + 1  # more outages than that budget (and than the old fixed budget, 3 ever)
DOWN_S = 2.0  # long enough that the job's Redis writes fail (redis-py retries for ~0.2 s)
RESET_S = 3  # reset_after: failures further apart than this start a fresh budget
# One outage costs at most 2 restarts however fast the machine restarts the job: the first delay (1 s)
# and the second (2 s) add up to more than the outage, so the third attempt meets Redis up again.
RESTART_YAML = f"""
flink:
  restart_strategy:
    type: exponential-delay
    initial_delay: 1s
    max_delay: 2s
    reset_after: {RESET_S}s
    jitter: 0
    max_attempts: {MAX_ATTEMPTS}
"""


def _restarts(handle) -> int:
    try:
        return handle.restarts()
    except OSError:  # the mini-cluster's REST endpoint is not up yet
        return -1


def _all_running(handle, since_ms: int) -> bool:
    """Every task of the job runs, and the Redis writer wrote after ``since_ms`` (so the next outage hits a
    job that writes to Redis, and fails it)."""
    try:
        job = flink_rest.call(handle.rest_address, "GET", f"/jobs/{handle.job_id}", timeout=5)
        writer = handle.online_progress().get("writer", {})
    except OSError:
        return False
    return (job["state"] == "RUNNING" and all(v["status"] == "RUNNING" for v in job["vertices"])
            and writer.get("at", 0) > since_ms)


def _wait(predicate, timeout: float, what: str, handle):
    deadline = time.monotonic() + timeout
    seen = []
    while not predicate():
        status = handle.status()
        if not seen or seen[-1] != (status, _restarts(handle)):
            seen.append((status, _restarts(handle)))
        assert status not in ("FAILED", "CANCELED", "FINISHED"), f"the job is {status} while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}: {seen}"
        time.sleep(0.1)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_stream_survives_more_spaced_redis_restarts_than_a_fixed_budget_and_stays_exact(tmp_path, kafka_admin):
    redis = RedisServer(tmp_path / "redis").start()
    try:
        _run_with_outages(tmp_path, redis, kafka_admin)
    finally:
        redis.stop()


def _run_with_outages(tmp_path, redis, kafka_admin):
    topic = f"fs_faults_{uuid.uuid4().hex[:10]}"
    project = f"t_faults_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    root = make_repo(tmp_path / "repo", topic, project, events)
    with open(root / "featurestore.yaml", "a") as f:
        f.write(RESTART_YAML)
    # the environment's FEATURESTORE_REDIS_URL (the shared test Redis) would win over the file
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), redis_url=redis.url))
    assert store.config.restart.max_attempts == MAX_ATTEMPTS and store.config.restart.reset_after_ms == RESET_S * 1000
    create_topic(kafka_admin, topic)
    records = arrival(events, SEED)
    parts = [records[i * len(records) // (OUTAGES + 2):(i + 1) * len(records) // (OUTAGES + 2)]
             for i in range(OUTAGES + 2)]
    produce(topic, parts[0])
    handle = streaming.start(store, checkpoint_interval_ms=500, commit_interval_s=0.5)
    try:
        _wait(lambda: _restarts(handle) == 0 and _all_running(handle, 0), JOB_TIMEOUT_S, "the job to run", handle)
        for i in range(OUTAGES):
            produce(topic, parts[i + 1])
            time.sleep(1.0)
            before = _restarts(handle)
            redis.restart(DOWN_S)
            up_ms = int(time.time() * 1000)
            # the outage made the job fail, and Flink restarted it from its last checkpoint (numRestarts is
            # refreshed every few seconds)
            _wait(lambda: _restarts(handle) > before and _all_running(handle, up_ms), 90,
                  f"a restart after outage {i + 1}", handle)
            time.sleep(RESET_S + 1)  # spread out: the next failure starts a fresh budget
            assert handle.status() == "RUNNING", f"after outage {i + 1}"
        # more failures than one burst's budget (and the old fixed budget, 3 ever) allow
        assert handle.restarts() >= OUTAGES > MAX_ATTEMPTS >= 3
        produce(topic, parts[-1])
        # finish like a bounded run: caught up with every record produced, online writes flushed, savepoint
        handle.ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, [topic])
        handle.wait_caught_up(JOB_TIMEOUT_S)
        handle.wait_online_flushed(int(time.time() * 1000), JOB_TIMEOUT_S)
        result = handle.stop()
    finally:
        if handle.status() not in ("FINISHED", "CANCELED", "FAILED"):
            handle.cancel()
        kafka_admin.delete_topics([topic])
    assert result.savepoint
    # offline: every event exactly once, as the DuckDB backfill of the same events writes it
    ref = FeatureStore(root, config=dataclasses.replace(store.config, offline_root=str(root / "ref_offline")))
    ref.backfill()
    for view in store.repo.views:
        assert_same_rows(offline_table(store, view), offline_table(ref, view), f"view {view}, after {OUTAGES} "
                         "Redis restarts vs the backfill")
    assert Counter((r["payload"], r["reason"]) for r in dead_letters(store)) == expected_dead_letters()
    # online: every feature of every entity equals the oracle after the last event
    q = events["ts"].max() + pd.Timedelta("1ms")
    rows = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": q}
                         for u in sorted(events["user_id"].unique()) for s in (0, 1, 2)])
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    online = store.get_online_features(rows[KEYS], feature_service="everything", request_time=q).to_df()
    for view in store.repo.views.values():
        assert_features_equal(online, oracle.point_in_time(events, view, rows), view.feature_names,
                              f"online after {OUTAGES} Redis restarts, view {view.name}")
