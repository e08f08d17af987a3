"""The streaming job (SPEC §3.1, §3.2, §4) against the real services: Kafka -> PyFlink -> Redis + Parquet.

One random event set (tests/randomrepo.py, every aggregation/window/latest/TTL case) gets a stream face
on a topic of its own, is produced to Kafka as JSON (datagen.to_json_record) in shuffled arrival order
with malformed records interleaved, and is consumed by ONE bounded Flink job (launches are expensive:
10-30 s each). Then:

* batch = stream: every view's offline table equals the DuckDB backfill's (same rows as a multiset,
  same Arrow schema);
* online = offline = oracle: get_online_features at random request times equals get_historical_features
  and tests/oracle.py (views that trim their online state refuse requests before their horizon;
  the unbounded views never do);
* dead letters: every malformed record is in the dead-letter table with its reason, counted exactly;
* crash: a job killed with SIGKILL mid-stream (after a checkpoint) and restarted from its last
  checkpoint ends with the same offline rows, online values and dead letters as the uninterrupted run;
* the same job at parallelism 2, into a Redis Cluster, on a standalone cluster; the Flink backfill.

Split by concern: expressions in tests/test_stream_exprs.py, the live status in tests/test_stream_status.py,
the committer without Flink in tests/test_stream_commit_files.py; shared pieces in tests/stream_helpers.py.

Needs ``bash infra/up.sh``; nothing is skipped when a service is down (the fixtures fail saying so).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from featurestore.engines.flink import remote as flink_remote
from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal, same_value
from tests.randomrepo import random_requests
from tests.stream_helpers import (EXTRA_BAD, JOB_TIMEOUT_S, KEYS, N_EVENTS, REPO_DIR, SEED, _online_values,
                                   _wait_for, arrival, assert_same_rows, bad_records, create_topic, dead_letters,
                                   drop_project, expected_dead_letters, make_repo, offline_table, produce,
                                   stream_events)
# other test modules import these from here too (tests/stream_helpers.py holds them)
from tests.stream_helpers import KAFKA, SCHEMA, _flink_like_file, stream_definitions  # noqa: F401


@dataclasses.dataclass
class Streamed:
    root: Path
    topic: str
    project: str
    events: pd.DataFrame
    store: FeatureStore  # the streamed store
    ref: FeatureStore  # same repo, offline tables written by the DuckDB backfill
    result: streaming.StreamResult
    statuses: list  # the StreamStatus snapshots taken while the job ran (on_status)
    final: streaming.StreamStatus  # a snapshot after the job stopped


@pytest.fixture(scope="module")
def streamed(tmp_path_factory, redis_client, kafka_admin, s3_bucket):
    """The parity run: one bounded Flink job over the random event set. Its offline root is on object
    storage (``s3://``, the local S3 server of infra/s3.sh), the reference backfill's a local folder: batch
    = stream holds across the two kinds of root (the other stream tests run on local roots)."""
    topic = f"fs_stream_{uuid.uuid4().hex[:10]}"
    project = f"t_stream_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    endpoint, bucket = s3_bucket
    root = make_repo(tmp_path_factory.mktemp("streamed"), topic, project, events,
                     offline=(f"s3://{bucket}/{project}", endpoint))
    create_topic(kafka_admin, topic)
    produce(topic, arrival(events, SEED))
    store = FeatureStore(root)
    try:
        handle = streaming.start(store, bounded=True, checkpoint_interval_ms=1000)
        statuses = []
        result = handle.run_until_done(JOB_TIMEOUT_S, on_status=statuses.append, status_every_s=0.5)
        final = handle.snapshot(statuses[-1] if statuses else None)
        ref = FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(root / "ref_offline")))
        ref.backfill()
        yield Streamed(root, topic, project, events, store, ref, result, statuses, final)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_offline_tables_equal_backfill(streamed):
    import pyarrow as pa

    for view in streamed.store.repo.views:
        got, want = offline_table(streamed.store, view), offline_table(streamed.ref, view)
        assert got.schema == want.schema, f"{view}: {got.schema} != {want.schema}"
        assert got.schema.field("ts").type == pa.timestamp("ms", tz="UTC")
        assert_same_rows(got, want, f"view {view}, stream vs backfill")
    m = streamed.result.metrics["events"]
    assert m["events:amount_stats"] == len(streamed.events) == N_EVENTS + 1
    assert m["events:pair_stats"] == N_EVENTS  # the event without a shop is a null key there
    assert m["events:qty_stats"] == int((streamed.events["flag"] == True).sum())  # noqa: E712 (filter "flag")


# -- online = offline = oracle ----------------------------------------------------------------------------
@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_online_equals_offline_and_oracle(streamed):
    store, events = streamed.store, streamed.events
    requests = random_requests(SEED, events, n=150)
    offline = store.get_historical_features(requests, feature_service="everything")
    for view in store.repo.views.values():  # offline (from the streamed tables) = oracle
        assert_features_equal(offline, oracle.point_in_time(events, view, requests), view.feature_names,
                              f"offline vs oracle, view {view.name}")
    compared = Counter()
    refused = Counter()
    for i, r in enumerate(requests.to_dict("records")):
        for name, view in store.repo.views.items():
            refs = [f"{name}:{f}" for f in view.feature_names]
            res = store.get_online_features([{k: r[k] for k in KEYS}], features=refs,
                                            request_time=r["event_timestamp"])
            if res.refusals:
                (why,) = res.refusals
                assert "before the online store's retention horizon" in why, why
                assert set(res.statuses()[view.feature_names[0]]) == {"REFUSED"}
                refused[name] += 1
                continue
            got = res.to_dict()
            for f in view.feature_names:
                a, e = got[f][0], offline[f].iloc[i]
                assert same_value(a, e if not isinstance(e, float) or not math.isnan(e) else None), \
                    f"row {i} {name}.{f} at {r['event_timestamp']}: online {a!r}, offline {e!r}"
            compared[name] += 1
    # Views with an unbounded aggregation keep every event online: never refused.
    assert refused["amount_stats"] == 0 and refused["qty_stats"] == 0
    assert compared["amount_stats"] == len(requests)
    # Views with a bounded retention trim and refuse earlier requests; enough are still compared.
    for name in ("profile", "profile_forever", "pair_stats"):
        assert compared[name] >= 20, f"{name}: only {compared[name]} online requests at or after the horizon"


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_online_state_after_the_last_event_answers_every_feature(streamed):
    """At a request time after every event, no view refuses and all equal the oracle."""
    store, events = streamed.store, streamed.events
    q = events["ts"].max() + pd.Timedelta("1ms")
    users = sorted(events["user_id"].unique())
    rows = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": q} for u in users for s in (0, 1, 2)])
    rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
    online = store.get_online_features(rows[KEYS], feature_service="everything", request_time=q).to_df()
    for view in store.repo.views.values():
        assert_features_equal(online, oracle.point_in_time(events, view, rows), view.feature_names,
                              f"online at the end, view {view.name}")


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_lost_online_state_is_refused_then_reseeded_by_a_restart(streamed, tmp_path, redis_client):
    """Redis losing a stream's online state (here: its keys deleted) is never served as defaults; a
    restart of the stream re-seeds the lost views from the offline store, then goes on (issue 10.6)."""
    project = f"t_reseed_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "reseed", streamed.topic, project, streamed.events)
    store = FeatureStore(root)
    events = streamed.events
    q = events["ts"].max() + pd.Timedelta("1ms")
    rows = [{"user_id": u, "shop": s} for u in sorted(events["user_id"].dropna().unique()) for s in (0, 1, 2)]
    try:
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        before = store.get_online_features(rows, feature_service="everything", request_time=q)
        assert before.refusals == []
        drop_project(redis_client, project)
        lost = store.get_online_features(rows, feature_service="everything", request_time=q)
        assert {s for col in lost.statuses().values() for s in col} == {"REFUSED"}
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert result.restored_from is not None
        after = store.get_online_features(rows, feature_service="everything", request_time=q)
        assert after.refusals == [] and after.to_dict() == before.to_dict()
    finally:
        drop_project(redis_client, project)


# -- dead letters -----------------------------------------------------------------------------------------
@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_malformed_records_land_in_dead_letters_counted_exactly(streamed, redis_client):
    rows = dead_letters(streamed.store)
    got = Counter((r["payload"], r["reason"]) for r in rows)
    assert got == expected_dead_letters()
    offsets = [(r["kafka_partition"], r["kafka_offset"]) for r in rows if not r["reason"].startswith("null join key")]
    assert len(set(offsets)) == len(offsets)  # one row per malformed record
    assert all(r["kafka_timestamp"] is not None and r["ingest_time"] is not None for r in rows)
    malformed = sum(1 for r in rows if not r["reason"].startswith("null join key"))
    null_key = len(rows) - malformed
    m = streamed.result.metrics["events"]
    assert (m["dead_letters"], m["null_key"]) == (malformed, null_key) == (20, 3)
    published = redis_client.hgetall(streaming.metrics_key(streamed.project, "events"))
    assert int(published[b"dead_letters"]) == malformed and int(published[b"null_key"]) == null_key
    assert int(published[b"events:amount_stats"]) == N_EVENTS + 1


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_status_snapshots_of_a_bounded_run_count_exactly(streamed):
    """The parity run's snapshots: while it ran, every record is either lagging or consumed; once stopped,
    lag 0, every record consumed, the dead letters and stored events of the committed data, and the
    online writer's count."""
    produced = len(arrival(streamed.events, SEED))
    assert produced == N_EVENTS + 1 + 14 + len(EXTRA_BAD)
    live = streamed.statuses
    assert len(live) >= 3, f"on_status called {len(live)} times"
    assert live[0].topics[streamed.topic].events_per_s is None
    assert all(s.topics[streamed.topic].events_per_s is not None for s in live[1:])
    for s in live:
        t = s.topics[streamed.topic]
        assert s.problems == [] and s.status in ("CREATED", "INITIALIZING", "RUNNING"), (s.status, s.problems)
        assert (t.end, t.lag + t.consumed, t.committed) == (produced, produced, t.consumed)
    consumed = [s.topics[streamed.topic].consumed for s in live]
    assert consumed == sorted(consumed)
    final = streamed.final
    t = final.topics[streamed.topic]
    assert (t.end, t.committed, t.lag, t.consumed) == (produced, produced, 0, produced)
    assert final.status == "FINISHED" and final.problems == []
    malformed = sum(1 for _, reasons in bad_records() if not reasons[0].startswith("null join key"))
    assert final.dead_letters == malformed == 20
    assert final.metrics == streamed.result.metrics
    assert final.metrics["events"]["events:amount_stats"] == N_EVENTS + 1
    assert final.online_written == streamed.result.online["writer"]["written"] > 0


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_cli_stream_without_a_terminal_prints_status_lines_then_the_final_table(streamed):
    """`featurestore stream --bounded` on the parity run's repo: it restores that run's savepoint, has
    nothing new to read (lag 0, nothing consumed), prints a status line (stdout is not a terminal), then
    the final metrics."""
    from typer.testing import CliRunner

    from featurestore.cli import app

    res = CliRunner().invoke(app, ["stream", "--repo", str(streamed.root), "--bounded", "--status-every", "0.5",
                                   "--timeout", str(JOB_TIMEOUT_S)])
    assert res.exit_code == 0, res.output
    name = streamed.result.job_name
    lines = [ln for ln in res.output.splitlines() if ln.startswith(f"stream job {name}: ")]
    assert lines, res.output
    for line in lines:
        assert re.fullmatch(rf"stream job {name}: (CREATED|INITIALIZING|RUNNING), up \d+s; {streamed.topic}: lag 0, "
                            r"consumed 0, (-|0) events/s; dead letters 20; online values written \d+", line), line
    assert re.search(r"│ events +│ dead_letters +│ 20 +│", res.output)
    assert re.search(rf"│ events +│ events:amount_stats +│ {N_EVENTS + 1} +│", res.output)
    assert "restored from: " in res.output and "savepoint-" in res.output


# -- crash and restart ------------------------------------------------------------------------------------
@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_kill_and_restart_from_checkpoint_loses_and_duplicates_nothing(streamed, tmp_path, redis_client, kafka_admin):
    topic = f"fs_crash_{uuid.uuid4().hex[:10]}"
    project = f"t_crash_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "crash", topic, project, streamed.events)
    create_topic(kafka_admin, topic)
    records = arrival(streamed.events, SEED)
    first, rest = records[: len(records) // 3], records[len(records) // 3:]
    produce(topic, first)
    store = FeatureStore(root)
    ckpt = tmp_path / "checkpoints"
    log = open(tmp_path / "job.log", "w")
    proc = subprocess.Popen(
        [sys.executable, str(REPO_DIR / "jobs" / "stream.py"), "--repo", str(root), "--checkpoint-dir", str(ckpt),
         "--checkpoint-interval-ms", "1000"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(REPO_DIR), env=flink_remote.child_env())
    try:
        name = streaming.job_name(store, streaming.stream_views(store))
        committed = lambda: (streaming.Committer(store, streaming.stream_views(store)).metrics()["events"]
                             ["events:amount_stats"])
        _wait_for(lambda: committed() > 0 and streaming.latest_snapshot(ckpt / name) is not None, JOB_TIMEOUT_S,
                  "a first checkpoint with committed events", proc)
        produce(topic, rest[: len(rest) // 2], pause_every=25, pause_s=0.2)  # mid-stream...
        _wait_for(lambda: committed() > len(first) - 20, 60, "more events to be committed", proc)
        os.killpg(proc.pid, signal.SIGKILL)  # ...kill -9 the job (client, mini-cluster, Python workers)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        log.close()
    assert proc.returncode == -signal.SIGKILL
    produce(topic, rest[len(rest) // 2:])
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                               checkpoint_interval_ms=1000)
        assert result.restored_from is not None and "chk-" in result.restored_from
        # offline: identical to the uninterrupted run (which equals the backfill)
        for view in store.repo.views:
            got, want = offline_table(store, view), offline_table(streamed.store, view)
            assert_same_rows(got, want, f"view {view}, after a crash vs without")
        got = Counter((r["payload"], r["reason"]) for r in dead_letters(store))
        assert got == expected_dead_letters()
        assert result.metrics == streamed.result.metrics
        # online: the same values as the uninterrupted run, key for key
        assert _online_values(redis_client, project) == _online_values(redis_client, streamed.project)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_parallelism_two_writes_the_same_rows_and_online_values(streamed, tmp_path, redis_client, kafka_admin):
    """The parity run's topic again, with two subtasks per operator (keyed state split by entity, one
    Redis writer): the same offline rows, dead letters, metrics and online values, key for key."""
    project = f"t_par2_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "par2", streamed.topic, project, streamed.events)
    store = FeatureStore(root)
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, parallelism=2, checkpoint_interval_ms=1000)
        assert result.records == streamed.result.records
        for view in store.repo.views:
            assert_same_rows(offline_table(store, view), offline_table(streamed.store, view),
                             f"view {view}, parallelism 2 vs 1")
        assert Counter((r["payload"], r["reason"]) for r in dead_letters(store)) == expected_dead_letters()
        assert result.metrics == streamed.result.metrics
        states = [k for k in result.online if k.startswith("state:")]
        assert len({result.online[k]["instance"] for k in states}) == 2  # both subtasks reported
        assert sorted(result.online[k]["subtask"] for k in states) == [0, 1]  # each under its own index
        assert sum(result.online[k]["events"] for k in states) == sum(
            streamed.result.online[k]["events"] for k in streamed.result.online if k.startswith("state:"))
        assert _online_values(redis_client, project) == _online_values(redis_client, streamed.project)
    finally:
        drop_project(redis_client, project)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_a_redis_cluster_online_store_gets_the_same_online_values(streamed, tmp_path, redis_client,
                                                                 redis_cluster_url, monkeypatch):
    """The parity run's topic again, into a Redis Cluster (the job's writer pipelines each flush per
    master; metrics and progress hashes on the cluster too): the same online values, key for key, as
    the parity run's single Redis, and lookups answer from them."""
    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_cluster_url)
    project = f"t_clu_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "cluster", streamed.topic, project, streamed.events)
    store = FeatureStore(root)
    cluster = store.online_store().client
    assert store.online_store().cluster
    try:
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_interval_ms=1000)
        assert result.records == streamed.result.records
        assert result.metrics == streamed.result.metrics  # read back from the cluster's metrics hash
        assert result.online["writer"]["written"] > 0  # (how many flushes: timing; the values below: not)
        assert _online_values(cluster, project) == _online_values(redis_client, streamed.project)
        q = streamed.events["ts"].max() + pd.Timedelta("1ms")
        rows = [{k: r[k] for k in KEYS} for r in streamed.events.dropna(subset=KEYS).drop_duplicates(KEYS)
                .head(40).to_dict("records")]
        got = store.get_online_features(rows, feature_service="everything", request_time=q)
        want = streamed.store.get_online_features(rows, feature_service="everything", request_time=q)
        assert not got.refusals and got.statuses() == want.statuses()
        for col, values in want.to_dict().items():
            assert all(same_value(a, b) for a, b in zip(got.to_dict()[col], values)), col
    finally:
        drop_project(cluster, project)


# -- a real standalone cluster (the flink_cluster fixture: tests/conftest.py) ------------------------------
@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_same_job_on_a_standalone_cluster(streamed, flink_cluster, tmp_path, redis_client, kafka_admin):
    """`flink run -m <cluster> -py jobs/stream.py`: the unchanged job on a real cluster, watched over REST,
    committed from here; same offline rows and online values as the local run."""
    topic = f"fs_remote_{uuid.uuid4().hex[:10]}"
    project = f"t_remote_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "remote", topic, project, streamed.events)
    with open(root / "featurestore.yaml", "a") as f:  # the job's restart strategy holds on the cluster too
        f.write("flink:\n  restart_strategy:\n    type: failure-rate\n    max_failures: 7\n")
    create_topic(kafka_admin, topic)
    produce(topic, arrival(streamed.events, SEED))
    store = FeatureStore(root)
    try:
        handle = flink_remote.submit_remote(store, flink_cluster, bounded=True, checkpoint_interval_ms=1000)
        assert isinstance(handle, flink_remote.RemoteStreamHandle) and len(handle.job_id) == 32
        strategy = handle._rest("GET", f"/jobs/{handle.job_id}/config")["execution-config"]["restart-strategy"]
        assert strategy.startswith("Failure rate restart with maximum of 7 failures within interval PT10M"), strategy
        result = handle.run_until_done(JOB_TIMEOUT_S)
        assert result.savepoint and "savepoint-" in result.savepoint
        assert result.metrics == streamed.result.metrics
        for view in store.repo.views:
            assert_same_rows(offline_table(store, view), offline_table(streamed.store, view),
                             f"view {view}, cluster vs local run")
        assert _online_values(redis_client, project) == _online_values(redis_client, streamed.project)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


# -- backfill --engine flink ------------------------------------------------------------------------------
@pytest.mark.flink
@pytest.mark.slow
def test_flink_backfill_equals_duckdb_backfill(streamed, tmp_path):
    """The backfill's semantics as a Flink batch job over the Parquet batch face: same tables, and a
    partial range replaces exactly that range."""
    root = streamed.root
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(tmp_path / "offline")))
    results = {r.view: r for r in store.backfill(engine="flink")}
    ref = {r.view: r for r in streamed.ref.backfill()}  # (again: same rows, the counts to compare with)
    for view in store.repo.views:
        assert (results[view].rows, results[view].rejected_null_time, results[view].rejected_null_key,
                results[view].dead_letters, results[view].reasons) == \
            (ref[view].rows, ref[view].rejected_null_time, ref[view].rejected_null_key, ref[view].dead_letters,
             ref[view].reasons)
        assert_same_rows(offline_table(store, view), offline_table(streamed.ref, view), f"view {view}, Flink backfill")
    start = pd.Timestamp("2026-03-01T00:01:00Z")
    end = pd.Timestamp("2026-03-01T00:02:00Z")
    partial = {r.view: r for r in store.backfill(start, end, views=["amount_stats"], engine="flink")}
    in_range = int(((streamed.events["ts"].dt.floor("ms") >= start) & (streamed.events["ts"].dt.floor("ms") < end)).sum())
    assert partial["amount_stats"].rows == in_range > 0
    assert_same_rows(offline_table(store, "amount_stats"), offline_table(streamed.ref, "amount_stats"),
                     "amount_stats after a partial Flink backfill")
