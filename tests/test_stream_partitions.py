"""The streaming job on a multi-partition topic written by a producer that does not key by entity (SPEC §2,
§3, §4): one entity's events on every partition, partitions days apart in event time, one partition idle
while the others advance and then written with events far behind them (SPEC §2: late events are applied
or counted, never dropped), then a kill -9 with events arriving during the downtime, a restart with
another parallelism after a metadata-only definition change (must restore, never start afresh), and a
value-changing change (detected: that view is rebuilt).

One random event set (tests/randomrepo.py: hot key, ties, nulls, sub-ms times), every check against the
DuckDB backfill (offline rows) and tests/oracle.py (online and offline values).
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.config import load_config
from featurestore.engines.flink import commit as stream_commit
from featurestore.engines.flink import remote as flink_remote
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal, same_value
from tests.randomrepo import random_events, random_requests, write_events
from tests.test_stream import (JOB_TIMEOUT_S, KEYS, REPO_DIR, SCHEMA, _wait_for, assert_same_rows, create_topic,
                               drop_project, make_repo, offline_table)

SEED = 41
PARTITIONS = 3
FAR_S = 2 * 86_400  # the early block's events are this much behind the rest


def partitioned(seed: int, n: int = 360):
    """(events, {partition: [rows]}): the random events split by time into three blocks; the first
    block moved two days back. Partition 0: the latest block, in time order; partition 1: the early
    block (days behind), shuffled; partition 2 (idle at first): the middle block, shuffled, produced
    after the others. Each entity has events on every partition (no key)."""
    rng = random.Random(seed)
    events = random_events(seed, n=n).sort_values("ts", kind="stable").reset_index(drop=True)
    third = len(events) // 3
    events.loc[: third - 1, "ts"] = events.loc[: third - 1, "ts"] - pd.Timedelta(seconds=FAR_S)
    rows = events.to_dict("records")
    parts = {1: rows[:third], 2: rows[third:2 * third], 0: rows[2 * third:]}
    rng.shuffle(parts[1])
    rng.shuffle(parts[2])
    return events, parts


def produce_to(topic: str, partition, rows, pause_every: int = 0, pause_s: float = 0.0):
    """``rows`` as JSON records (no key) to ``partition`` (one, or one per row)."""
    from confluent_kafka import Producer

    from tests.test_stream import KAFKA

    producer = Producer({"bootstrap.servers": load_config(REPO_DIR).kafka_bootstrap or KAFKA, "linger.ms": 5,
                         "enable.idempotence": True})
    errors = []
    for i, r in enumerate(rows):
        p = partition if isinstance(partition, int) else partition[i]
        producer.produce(topic, value=datagen.to_json_record(r, "ts", SCHEMA), partition=p,
                         on_delivery=lambda err, _m: err and errors.append(err))
        if pause_every and i % pause_every == pause_every - 1:
            producer.flush(30)
            time.sleep(pause_s)
    assert producer.flush(60) == 0 and not errors, f"Kafka delivery failed: {errors[:3]}"


def committed(store) -> int:
    return streaming.Committer(store, streaming.stream_views(store)).metrics()["events"].get("events:amount_stats", 0)


def assert_batch_equals_stream(root: Path, store: FeatureStore, what: str):
    ref = FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(root / f"ref_{what}")))
    ref.backfill()
    for view in store.repo.views:
        assert_same_rows(offline_table(store, view), offline_table(ref, view),
                         f"{what}: view {view}, stream vs backfill")


def assert_online_equals_oracle(store: FeatureStore, events: pd.DataFrame, seed: int, what: str):
    requests = random_requests(seed, events, n=150)
    later = events["ts"].max() + pd.Timedelta("1ms")
    tail = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": later, "label": 0.0}
                         for u in sorted(events["user_id"].unique()) for s in (0, 1, 2)])
    requests = pd.concat([requests, tail], ignore_index=True)
    requests["event_timestamp"] = pd.to_datetime(requests["event_timestamp"], utc=True)
    offline = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():
        assert_features_equal(offline, oracle.point_in_time(events, view, requests), view.feature_names,
                              f"{what}: offline vs oracle, view {view.name}")
    compared = Counter()
    for i, r in enumerate(requests.to_dict("records")):
        for name, view in store.repo.views.items():
            refs = [f"{name}:{f}" for f in view.feature_names]
            res = store.get_online_features([{k: r[k] for k in KEYS}], features=refs, request_time=r["event_timestamp"])
            if res.refusals:
                (why,) = res.refusals
                assert "before the online store's retention horizon" in why, why
                continue
            got = res.to_dict()
            for f in view.feature_names:
                a, e = got[f][0], offline[f].iloc[i]
                assert same_value(a, e if not isinstance(e, float) or not math.isnan(e) else None), \
                    f"{what}: row {i} {name}.{f} at {r['event_timestamp']}: online {a!r}, offline {e!r}"
            compared[name] += 1
    assert compared["amount_stats"] == len(requests), f"{what}: unbounded views refused requests"
    for name in store.repo.views:
        assert compared[name] >= len(tail), f"{what}: {name} compared only {compared[name]}"


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_unkeyed_partitions_idle_and_days_apart_then_restarts_and_definition_changes(tmp_path, redis_client,
                                                                                     kafka_admin):
    topic = f"fs_parts_{uuid.uuid4().hex[:10]}"
    project = f"t_parts_{uuid.uuid4().hex[:8]}"
    events, parts = partitioned(SEED)
    # the second wave (arrives while the job is down, then after its kill): fresh random events, unkeyed
    later, _ = partitioned(SEED + 1, n=180)
    later["ts"] = later["ts"] + pd.Timedelta("10min")
    later_rows = later.to_dict("records")
    everything = pd.concat([events, later], ignore_index=True)
    root = make_repo(tmp_path / "repo", topic, project, events)  # the batch face: what the topic holds
    create_topic(kafka_admin, topic, partitions=PARTITIONS)
    ckpt = tmp_path / "checkpoints"
    try:
        # 1. partitions 0 and 1 (days apart) while partition 2 is idle; then partition 2, behind both
        store = FeatureStore(root)
        produce_to(topic, 0, parts[0])
        produce_to(topic, 1, parts[1])
        handle = streaming.start(store, bounded=False, checkpoint_dir=ckpt, checkpoint_interval_ms=1000)
        try:
            _wait_for(lambda: committed(store) == len(parts[0]) + len(parts[1]), JOB_TIMEOUT_S,
                      "the first two partitions to be committed")
            time.sleep(5)  # partition 2 idle beyond the source's idle timeout
            produce_to(topic, 2, parts[2], pause_every=40, pause_s=0.2)
            _wait_for(lambda: committed(store) == len(events), JOB_TIMEOUT_S, "the idle partition's events")
            handle.wait_online_flushed(int(time.time() * 1000), timeout=JOB_TIMEOUT_S)
        finally:
            result = handle.stop()
        assert result.metrics["events"]["events:amount_stats"] == len(events)
        assert_batch_equals_stream(root, store, "idle partition")
        assert_online_equals_oracle(store, events, SEED, "idle partition")

        # 2. a metadata-only change, events during the downtime, a restart with parallelism 2, kill -9 mid-way
        defs = root / "definitions" / "features.py"
        text = defs.read_text()
        defs.write_text("# moved down by a comment\n\n" + text.replace(
            "amount_stats = FeatureView(\n", 'amount_stats = FeatureView(\n    description="spend statistics",\n'
        ).replace('    ttl="45s",\n)', '    ttl="45s",\n    owner="ml-team",\n    tags={"tier": "gold"},\n)'))
        assert defs.read_text() != text
        store = FeatureStore(root)
        name = streaming.job_name(store, streaming.stream_views(store))
        assert name == result.job_name, "a metadata-only change renamed the job (it would start afresh)"
        assert not stream_commit.rebuild_plan(store, streaming.stream_views(store), None)[0]
        downtime, rest = later_rows[: len(later_rows) // 2], later_rows[len(later_rows) // 2:]
        rng = random.Random(SEED)
        produce_to(topic, [rng.randrange(PARTITIONS) for _ in downtime], downtime)
        log = open(tmp_path / "job.log", "w")
        proc = subprocess.Popen(
            [sys.executable, str(REPO_DIR / "jobs" / "stream.py"), "--repo", str(root), "--checkpoint-dir", str(ckpt),
             "--checkpoint-interval-ms", "1000", "--parallelism", "2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(REPO_DIR),
            env=flink_remote.child_env())
        try:
            try:
                _wait_for(lambda: committed(store) >= len(events) + len(downtime) // 2, JOB_TIMEOUT_S,
                          "the downtime's events to be committed", proc)
            except AssertionError as exc:
                log.flush()
                lines = [x for x in (tmp_path / "job.log").read_text().splitlines() if not x.startswith("WARN")]
                raise AssertionError(f"{exc}: {lines[-15:]}") from None
            mid = rest[: len(rest) // 2]
            produce_to(topic, [rng.randrange(PARTITIONS) for _ in mid], mid, pause_every=15, pause_s=0.2)
            time.sleep(2)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            log.close()
        resumed = (tmp_path / "job.log").read_text()
        assert "the job resumes at parallelism 1, not 2" in resumed, "no warning that --parallelism 2 was not used"
        after = rest[len(rest) // 2:]
        produce_to(topic, [rng.randrange(PARTITIONS) for _ in after], after)
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                               checkpoint_interval_ms=1000)
        assert result.restored_from is not None, "the restart after a metadata-only change started afresh"
        write_events(root, everything)
        assert result.metrics["events"]["events:amount_stats"] == len(everything)
        assert_batch_equals_stream(root, store, "after kill -9")
        assert_online_equals_oracle(store, everything, SEED + 2, "after kill -9")

        # 3. a value-changing change is detected (no Flink launch: test_stream_once runs the rebuild itself)
        defs.write_text(defs.read_text().replace('filter="flag",', 'filter="flag AND qty > 0",'))
        changed = FeatureStore(root)
        names = streaming.stream_views(changed)
        assert streaming.job_name(changed, names) != name
        assert set(stream_commit.rebuild_plan(changed, names, None)[0]) == {"qty_stats"}
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
