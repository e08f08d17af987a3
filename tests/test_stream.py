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
* expressions: each whitelisted construct compiled to Flink SQL gives DuckDB's values (one batch job
  evaluates all of them), and unsupported constructs are plan-time errors with exact texts.

Needs ``bash infra/up.sh``; nothing is skipped when a service is down (the fixtures fail saying so).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Optional

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.engines.flink import commit as stream_commit
from featurestore.engines.flink import offsets as flink_offsets
from featurestore.engines.flink import remote as flink_remote
from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.engines.flink import exprs as flink_sql
from featurestore.errors import FeatureStoreError, RequestError
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal, same_engine_value, same_value
from tests.randomrepo import DEFINITIONS, random_events, random_requests, write_events, write_repo

REPO_DIR = Path(__file__).resolve().parents[1]
KAFKA = os.environ.get("FEATURESTORE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
SEED = 23
N_EVENTS = 400
SCHEMA = ["user_id", "shop", "amount", "qty", "tag", "flag", "ts"]
JOB_TIMEOUT_S = 300
KEYS = ["user_id", "shop"]


# -- services -------------------------------------------------------------------------------------------
# -- a streamed random repo -------------------------------------------------------------------------------
def stream_definitions(topic: str) -> str:
    defs = DEFINITIONS.replace("from featurestore import Aggregation,", "from featurestore import KafkaTopic, Aggregation,")
    out = defs.replace('batch=ParquetFiles("data/events/*.parquet"),',
                       f'batch=ParquetFiles("data/events/*.parquet"),\n    stream=KafkaTopic("{topic}"), watermark_delay="2s",')
    assert out != defs
    return out


def make_repo(root: Path, topic: str, project: str, events: pd.DataFrame, offline: Optional[tuple] = None) -> Path:
    """``offline``: (s3:// root, endpoint) for an offline root on object storage; None: the local default."""
    write_repo(root)
    (root / "definitions" / "features.py").write_text(stream_definitions(topic))
    extra = f"offline_store:\n  root: {offline[0]}\n  s3_endpoint: {offline[1]}\n" if offline else ""
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n{extra}")
    write_events(root, events)
    return root


BASE_MS = 1772323200000  # 2026-03-01T00:00:00Z (tests/randomrepo.BASE)
# (payload, reasons of the dead-letter rows it makes) beyond datagen.malformed_records
EXTRA_BAD = [
    (None, ["empty record (null value)"]),
    (b"", ["not a JSON object"]),
    (b'{"user_id": "u1", "shop": 1.5, "ts": 1772323200000}', ["column 'shop': not a int64"]),
    (b'{"user_id": "u1", "flag": "yes", "ts": 1772323200001}', ["column 'flag': not a bool"]),
    (b'{"user_id": "u1", "qty": "12x", "ts": 1772323200002}', ["column 'qty': not a int64"]),
    (b'{"user_id": "u1", "ts": 1772323200003.5}', ["event time 'ts': not an integer (epoch milliseconds)"]),
    (b'{"shop": 1, "amount": 5.0, "ts": 1772323201000}',
     ["null join key user_id (views amount_stats, qty_stats, profile, profile_forever)",
      "null join key user_id (views pair_stats)"]),
]
# An event with a user but no shop: an event of the user views, a null join key of pair_stats (both faces).
NULL_SHOP_EVENT = {"user_id": "u2", "shop": None, "amount": None, "qty": None, "tag": None, "flag": None,
                   "ts": pd.Timestamp("2026-03-01T00:00:02.000123Z")}


def stream_events() -> pd.DataFrame:
    events = random_events(SEED, n=N_EVENTS)
    extra = pd.DataFrame([NULL_SHOP_EVENT]).astype({"shop": "Int64", "qty": "Int64", "flag": "boolean",
                                                     "amount": "float64", "tag": "object"})
    out = pd.concat([events, extra], ignore_index=True)
    out["ts"] = pd.to_datetime(out["ts"], utc=True)
    return out
DATAGEN_REASONS = {
    "not_json": "not a JSON object", "truncated": "not a JSON object", "empty": "not a JSON object",
    "not_object": "not a JSON object", "missing_ts": "missing event time 'ts'",
    "ts_not_number": "event time 'ts': not an integer (epoch milliseconds)",
    "amount_not_number": "column 'amount': not a float64",
}


def bad_records():
    """(payload or None, [reasons]) of every malformed record sent."""
    out = [(payload, [DATAGEN_REASONS[kind]]) for kind, payload in datagen.malformed_records(14, SEED, with_kinds=True)]
    return out + EXTRA_BAD


def produce(topic: str, records, pause_every: int = 0, pause_s: float = 0.0):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 5, "enable.idempotence": True})
    errors = []
    for i, (key, value) in enumerate(records):
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _m: err and errors.append(err))
        if pause_every and i % pause_every == pause_every - 1:
            producer.flush(30)
            time.sleep(pause_s)
    assert producer.flush(60) == 0 and not errors, f"Kafka delivery failed: {errors[:3]}"


def arrival(events: pd.DataFrame, seed: int):
    """Kafka (key, value) records: the events in shuffled order, malformed records interleaved."""
    rng = random.Random(seed)
    good = [(None if r["user_id"] is None else r["user_id"].encode(), datagen.to_json_record(r, "ts", SCHEMA))
            for r in events.sample(frac=1.0, random_state=seed).to_dict("records")]
    out = list(good)
    for payload, _ in bad_records():
        out.insert(rng.randrange(len(out) + 1), (None, payload))
    return out


def create_topic(admin, topic: str, partitions: int = 3):
    from confluent_kafka.admin import NewTopic

    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def drop_project(client, project: str):
    keys = list(client.scan_iter(match=f"fs:{project}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


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


def offline_table(store: FeatureStore, view: str, ts_column: str = "ts"):
    import pyarrow as pa

    table = store.offline.table(view, ts_column=ts_column)
    version = table.version
    assert version is not None, f"no offline table for view {view}"
    files = table.files(version)
    return pa.concat_tables([read_file(table, f) for f in files]) if files else None


def read_file(table, f: str):
    """One file of an offline table as stored, read as an outside reader would (pyarrow; on an s3:// root
    through the root's ``pyarrow.fs.S3FileSystem``)."""
    import pyarrow.parquet as pq

    if table.filesystem is not None:
        return pq.read_table(f.removeprefix("s3://"), filesystem=table.filesystem)
    return pq.read_table(f)


def sorted_table(t):
    return t.sort_by([(c, "ascending") for c in t.column_names])


def assert_same_rows(got, want, what: str):
    """Equal as multisets of rows; the message shows the rows only one side has."""
    if got.num_rows == want.num_rows and sorted_table(got).equals(sorted_table(want)):
        return
    a = Counter(tuple(sorted(r.items())) for r in got.to_pylist())
    b = Counter(tuple(sorted(r.items())) for r in want.to_pylist())
    extra, missing = list((a - b).elements()), list((b - a).elements())
    raise AssertionError(f"{what}: {got.num_rows} rows vs {want.num_rows}; only in the first: {extra[:5]}; "
                         f"only in the second: {missing[:5]}")


def dead_letters(store: FeatureStore, source: str = "events"):
    import pyarrow as pa

    table = streaming.dead_letter_table(store, source)
    files = table.files(table.version) if table.version is not None else []
    return pa.concat_tables([read_file(table, f) for f in files]).to_pylist() if files else []


def expected_dead_letters():
    out = Counter()
    for payload, reasons in bad_records():
        text = None if payload is None else payload.decode("utf-8", errors="replace")
        for reason in reasons:
            out[(text, reason)] += 1
    null_shop = datagen.to_json_record(NULL_SHOP_EVENT, "ts", SCHEMA).decode()
    out[(null_shop, "null join key shop (views pair_stats)")] += 1
    return out


# -- batch = stream ---------------------------------------------------------------------------------------
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


# -- live status ------------------------------------------------------------------------------------------
def _commit_group_offsets(group: str, offsets):
    """Commit ``{(topic, partition): offset}`` for ``group``, as Flink does on a checkpoint."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def _idle_handle(store: FeatureStore, progress_key: str = "") -> streaming.StreamHandle:
    """A handle of the store's job that was never started (no Flink job, no committer)."""
    names = streaming.stream_views(store)
    name = streaming.job_name(store, names)
    topics = sorted({store.repo.views[n].source.stream.topic for n in names})
    ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, topics)
    return streaming.StreamHandle(store, names, name, None, None, Path("unused"), False, ends, None, 2.0, progress_key)


@pytest.mark.kafka
@pytest.mark.redis
def test_snapshot_lag_consumed_and_rate_follow_the_groups_committed_offsets(tmp_path, kafka_admin, redis_client):
    """No Flink: the topic's offsets and the job's consumer group (committed here as Flink would) on the real
    broker. Before anything is committed the lag is every record; a commit moves lag, consumed and
    events/s exactly; what cannot be read is unknown, never an exception."""
    topic = f"fs_status_{uuid.uuid4().hex[:10]}"
    project = f"t_status_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "status", topic, project, stream_events())
    create_topic(kafka_admin, topic)
    produce(topic, arrival(stream_events(), SEED)[:90])
    store = FeatureStore(root)
    try:
        handle = _idle_handle(store)
        first = handle.snapshot(None)
        t = first.topics[topic]
        assert (t.end, t.committed, t.lag, t.consumed, t.events_per_s) == (90, 0, 90, 0, None)
        assert first.status == "UNKNOWN" and first.problems[0].startswith("job status: ")
        assert (first.lag, first.metrics, first.dead_letters, first.online_written) == (90, {"events": {}}, 0, 0)
        ends = flink_offsets.end_offsets(KAFKA, [topic])
        part0 = ends[(topic, 0)][1]
        assert 0 < part0 < 90
        time.sleep(1.0)
        _commit_group_offsets(handle.job_name, {(topic, 0): part0})
        second = handle.snapshot(first)
        t = second.topics[topic]
        assert (t.end, t.committed, t.lag, t.consumed) == (90, part0, 90 - part0, part0)
        step = second.at - first.at
        assert t.events_per_s == pytest.approx(part0 / step)
        third = handle.snapshot(second)  # no new commit yet: the last step's rate
        assert third.at - second.at < 2 * step and third.topics[topic].events_per_s == pytest.approx(part0 / step)
        time.sleep(2 * step)
        idle = handle.snapshot(third)  # no step for twice the last step's time: idle
        assert (idle.topics[topic].events_per_s, idle.topics[topic].consumed) == (0.0, part0)
        # Kafka and Redis unreachable: unknown fields and the reasons, then the rate goes on from the last step
        down = FeatureStore(root, config=dataclasses.replace(load_config(root), kafka_bootstrap="127.0.0.1:1",
                                                             redis_url="redis://127.0.0.1:1/0"))
        blind = streaming.StreamHandle(store=down, names=handle.names, name=handle.job_name, job_client=None,
                                       committer=None, ckpt_root=Path("unused"), bounded=False, ends=handle.ends,
                                       restored_from=None, commit_interval_s=2.0, progress_key="fs:x:_progress")
        unknown = blind.snapshot(idle)
        t = unknown.topics[topic]
        assert (t.end, t.committed, t.lag, t.consumed, t.events_per_s) == (None,) * 5
        assert (unknown.lag, unknown.metrics, unknown.dead_letters, unknown.online_written) == (None,) * 4
        assert [p.split(":")[0] for p in unknown.problems] == ["job status", "Kafka", "metrics", "online progress"]
        _commit_group_offsets(handle.job_name, {(topic, 0): part0, (topic, 1): ends[(topic, 1)][1]})
        again = handle.snapshot(unknown)
        step = ends[(topic, 1)][1]
        assert again.topics[topic].consumed == part0 + step
        assert again.topics[topic].events_per_s == pytest.approx(step / (again.at - second.at))
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


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


def test_topic_status_sums_partitions_and_events_per_second_follows_the_commit_steps():
    """Pure: offsets per partition in, per-topic lag / consumed / events/s out, over a sequence of
    snapshots (committed offsets advance in steps, on checkpoints every 10 s here)."""
    ends = {("t", 0): (0, 1000), ("t", 1): (5, 505)}
    start = {("t", 0): 0, ("t", 1): 5}

    def run(steps, interval_s):
        out, prev = [], None
        for committed, at in steps:
            topics = streaming.topic_statuses(ends, committed, start, ["t"], prev, at, interval_s)
            prev = streaming.StreamStatus("j", "RUNNING", at, at, topics, {}, 0)
            t = topics["t"]
            out.append((t.end, t.committed, t.lag, t.consumed, t.events_per_s))
        return out

    steps = [({("t", 1): 2}, 0.0),  # nothing committed on 0; 1 committed below its earliest offset: counts at 5
             ({}, 2.0),  # no step yet
             ({("t", 0): 300}, 30.0),  # the first step after an idle spell: one checkpoint interval's records
             ({("t", 0): 300}, 32.0),  # between steps: the last step's rate
             ({("t", 0): 500, ("t", 1): 105}, 40.0),  # the next step: 300 records in 10 s
             ({("t", 0): 500, ("t", 1): 105}, 61.0)]  # no step for more than twice the last one: idle
    assert run(steps, 10.0) == [(1505, 5, 1500, 0, None), (1505, 5, 1500, 0, 0.0), (1505, 305, 1200, 300, 30.0),
                                (1505, 305, 1200, 300, 30.0), (1505, 605, 900, 600, 30.0), (1505, 605, 900, 600, 0.0)]
    # without the checkpoint interval the first step spreads over the whole idle spell
    assert [r[4] for r in run(steps, None)] == [None, 0.0, 10.0, 10.0, 30.0, 0.0]


def test_status_view_renders_every_field_of_a_snapshot():
    """The live view's content, from a StreamStatus alone (no job)."""
    from rich.console import Console

    from featurestore.cli import STOPPING_TEXT, status_line, status_rows, status_table

    status = streaming.StreamStatus(
        job_name="featurestore-p-abc", status="RUNNING", uptime_s=3723.9, at=0.0,
        topics={"tx": streaming.TopicStatus("tx", end=12_500, committed=12_000, lag=500, consumed=11_000,
                                            events_per_s=1234.4),
                "late": streaming.TopicStatus("late", end=7, committed=7, lag=0, consumed=0),
                "gone": streaming.TopicStatus("gone")},
        metrics={"events": {"dead_letters": 20, "null_key": 3, "events:amount_stats": 401, "events:pair_stats": 400,
                            "events": 801}},
        online_written=65_432, problems=["Kafka: cannot reach Kafka"])
    assert status_rows(status) == [
        ("job", "status", "RUNNING"), ("job", "uptime", "1h 02m 03s"),
        ("tx", "Kafka lag", "500"), ("tx", "records consumed", "11,000"), ("tx", "events/s", "1,234"),
        ("late", "Kafka lag", "0"), ("late", "records consumed", "0"), ("late", "events/s", "-"),
        ("gone", "Kafka lag", "?"), ("gone", "records consumed", "?"), ("gone", "events/s", "?"),
        ("events", "dead letters", "20"), ("events", "null join key", "3"),
        ("amount_stats", "stored events", "401"), ("pair_stats", "stored events", "400"),
        ("online", "values written", "65,432"),
    ]
    assert status_line(status) == (
        "stream job featurestore-p-abc: RUNNING, up 1h 02m 03s; tx: lag 500, consumed 11,000, 1,234 events/s; "
        "late: lag 0, consumed 0, - events/s; gone: lag ?, consumed ?, ? events/s; dead letters 20; "
        "online values written 65,432 (Kafka: cannot reach Kafka)")
    console = Console(width=100, record=True, file=open(os.devnull, "w"), color_system=None)
    console.print(status_table(dataclasses.replace(status, stopping=True), " on host:8081"))
    text = console.export_text()
    assert "stream job featurestore-p-abc on host:8081" in text
    assert re.search(r"│ tx +│ records consumed +│ +11,000 │", text)
    assert re.search(r"│ online +│ values written +│ +65,432 │", text)
    assert " ".join(text.split()).count(f"{STOPPING_TEXT}; Kafka: cannot reach Kafka") == 1
    unknown = dataclasses.replace(status, metrics=None, online_written=None, uptime_s=59.0, problems=[])
    assert status_rows(unknown)[1] == ("job", "uptime", "59s")
    assert status_rows(unknown)[-2:] == [("sources", "dead letters, stored events", "?"),
                                         ("online", "values written", "?")]
    assert status_line(unknown).endswith("; dead letters ?; online values written ?")


# -- crash and restart ------------------------------------------------------------------------------------
def _wait_for(predicate, timeout: float, what: str, proc=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"stream job exited ({proc.returncode}) before {what}")
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _online_values(client, project: str):
    """What every online key of ``project`` holds, by key after the project (entity metas without the
    fingerprint: it names the topic; raw events without their ids), markers, slot sentinels and stream
    progress left out."""
    out = {}
    for key in client.scan_iter(match=f"fs:{project}:*", count=1000):
        k = key.decode()
        if ":_stream:" in k or k.endswith(":_views") or ":_slot:" in k:  # (slot sentinels: a cluster's)
            continue
        if client.type(key) == b"hash":
            value = {f.decode(): v.decode() for f, v in client.hgetall(key).items()}
            meta = json.loads(value.pop("_"))
            meta.pop("fp")
            value["_"] = meta
        else:  # raw events (without their ids: Kafka offsets differ between topics) and prefixes
            value = sorted((json.dumps(json.loads(m)[1:]), score) for m, score in client.zrange(key, 0, -1, withscores=True))
        out[k.split(":", 2)[2]] = value
    return out


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

# -- the committer (no Flink) -----------------------------------------------------------------------------
def _flink_like_file(path: Path, rows):
    """A view sink's file: (user_id, ts ms, kafka partition, kafka offset) rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    t = pa.table({"user_id": [r[0] for r in rows], "ts": pa.array([r[1] for r in rows], pa.timestamp("ms")),
                  "__kafka_partition": pa.array([r[2] for r in rows], pa.int32()),
                  "__kafka_offset": pa.array([r[3] for r in rows], pa.int64())})
    pq.write_table(t, path)


def test_committer_registers_each_file_exactly_once_across_crashes(tmp_path):
    from featurestore.stores.offline import OfflineStore

    staging = tmp_path / "staging"
    table = OfflineStore(tmp_path / "offline").table("v", ts_column="ts")
    _flink_like_file(staging / "part-a-0-0", [("u1", 1772323200000, 0, 0), ("u2", 1772323201000, 0, 1)])
    _flink_like_file(staging / ".part-b-0-1.inprogress.x", [("u3", 1772323202000, 0, 2)])
    c = streaming.DirCommitter(staging, table, stream_commit.StreamIdentity("t", "fp"))
    assert c.commit() == 2
    assert c.commit() == 0  # nothing new; the in-progress file is never taken
    assert table.manifest()["stream"] == {"topic": "t", "fingerprint": "fp", "next_offsets": {"0": 2}}
    # A crash after commit_stream committed but before the committer advanced: the pending intent is
    # replayed as a no-op (the table recorded the token) and the leftover file is deleted, not registered again.
    _flink_like_file(staging / "part-c-0-2", [("u4", 1772323203000, 0, 3)])
    state = json.loads((staging / streaming.COMMITTER_STATE).read_text())
    pending = {"seq": state["seq"] + 1, "files": ["part-c-0-2"], "rebuild": False, "restart": False}
    (staging / streaming.COMMITTER_PENDING).write_text(json.dumps(pending))
    c._commit_files(state, pending)
    assert c.commit() == 1
    assert not (staging / "part-c-0-2").exists()
    # A job started afresh re-reads the topic: its files repeat offsets the table holds, which are not added.
    _flink_like_file(staging / "part-d-0-0", [("u1", 1772323200000, 0, 0), ("u2", 1772323201000, 0, 1),
                                              ("u3", 1772323202000, 0, 2), ("u4", 1772323203000, 0, 3),
                                              ("u5", 1772323204000, 0, 4)])
    assert c.commit() == 1
    import pyarrow.parquet as pq

    rows = sorted(r["user_id"] for f in table.files(table.version) for r in pq.read_table(f).to_pylist())
    assert rows == ["u1", "u2", "u4", "u5"]  # u3 never left the in-progress file of the first run
    assert table.read().column_names == ["user_id", "ts"]  # the Kafka coordinates are not stored
    assert c.totals()["rows"] == 4


def test_streamed_rows_of_an_earlier_definition_are_never_read_as_this_ones(tmp_path):
    """The stream's committer records what its rows were computed under (the view's rows fingerprint): the
    history backfilled, the rest committed as the job commits it; reads equal the oracle. After a change to
    the view's filter and a backfill of the history under it, the streamed rows are still the old filter's:
    every reader refuses the table (one line: run the stream) instead of reading them as the new one's."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from featurestore.errors import OfflineStoreError

    root = make_repo(tmp_path / "r", "t_rows", "p_rows", pd.DataFrame())
    events = random_events(31).sort_values("ts", kind="stable").reset_index(drop=True)
    cut = events["ts"].iloc[200].floor("s")
    write_events(root, events[events["ts"] < cut])
    store = FeatureStore(root)
    store.backfill(end=cut, views=["qty_stats"])
    cv = store.compiled("qty_stats")
    later = events[events["ts"] >= cut]
    later = later[later["flag"] == True]  # noqa: E712 - the view's filter, as the job applies it
    data = pa.Table.from_pandas(later.assign(ts=later["ts"].dt.floor("ms")), preserve_index=False)
    for name, expr, dtype in cv.projections:  # the job's rows carry the projections
        values = oracle.sql_values(later.to_dict("records"), store.repo.views["qty_stats"].source, [expr])[0]
        data = data.append_column(name, pa.array([v[0] for v in values]))
    data = data.append_column("__kafka_partition", pa.array([0] * len(later), pa.int32()))
    data = data.append_column("__kafka_offset", pa.array(range(len(later)), pa.int64()))
    staging = tmp_path / "staging"
    staging.mkdir()
    pq.write_table(data, staging / "part-a-0-0")
    table = store.offline.table("qty_stats", ts_column=cv.ts_column)
    committer = streaming.DirCommitter(staging, table, stream_commit.view_identity(store, "qty_stats"))
    assert committer.commit() == len(later)
    requests = random_requests(31, events, n=60)
    view = store.repo.views["qty_stats"]
    got = store.get_historical_features(requests, features=[f"qty_stats:{f}" for f in view.feature_names])
    assert_features_equal(got, oracle.point_in_time(events, view, requests), view.feature_names, "batch + stream")

    defs = root / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace('filter="flag"', 'filter="NOT flag"'))
    store.reload()
    store.backfill(end=cut, views=["qty_stats"])  # the batch face's rows are the new filter's now, not the stream's
    with pytest.raises(OfflineStoreError, match="view 'qty_stats': its offline table holds rows streamed under an "
                                                "earlier definition"):
        store.get_historical_features(requests, features=["qty_stats:tags_1m"])


# -- expressions ------------------------------------------------------------------------------------------
EXPR_COLUMNS = {"i": "int64", "j": "int64", "n": "int32", "x": "float64", "y": "float64", "f": "float32",
                "s": "string", "s2": "string", "b": "bool"}
EXPR_ROWS = [
    (1, 7, 2, 3, 2.5, -2.5, 1.5, "abc", "a%", True),
    (2, -7, 2, -3, 3.5, 0.0, -0.1, "É😀x", "_b%", False),
    (3, 0, 0, 0, 2.675, 1.005, 2.5, "", "", None),
    (4, None, 3, None, None, -0.5, None, None, "x", True),
    (5, 9223372036854775, -4, 2147483, -1234.5678, 0.285, 3.14159, "Hello World", "%World", False),
    (6, 5, -2, 7, 1e15 + 0.5, -3.5, -2.5, "ab\\c", "ab_", True),
    (7, -5, 3, -2147483647, 0.49999999999999994, 2.5, 0.5, "e\u0301t", "E%", None),
    (8, 15, 10, 1, -0.0, 1e-7, 7.0, "MiXeD", "mixed", True),
    (9, 2, -1, -1, 1.5, -0.0, 2.0, "ß", "SS", False),
]
EXPRESSIONS = [
    # arithmetic: DuckDB's types and rules (/ is a float division; // and % truncate on integers)
    "i + j", "i - j * 2", "j * n", "-j", "j / n", "j // n", "j % n", "x / y", "x // y", "f / 2", "f * 1.5",
    "x * 1.5", "j * 1.5", "j + 0.1 + 0.2", "x + f", "n + 1", "n / 0", "x / 0", "j // 0", "j % 0", "(j + n) * 2 - 1",
    "1e3 * j", "x - 0.5",
    # comparisons and logic (three-valued)
    "j > n", "x >= y", "s < s2", "s = 'abc'", "s <> s2", "b AND j > 0", "b OR j > 0", "NOT b", "s IS NULL",
    "s IS NOT NULL", "b IS TRUE", "b IS NOT TRUE", "b IS FALSE", "x * 2 > 5 AND NOT b", "j = x", "f < 1",
    # CASE / IF / COALESCE / NULLIF
    "CASE WHEN j > 0 THEN 'pos' WHEN j < 0 THEN 'neg' ELSE 'zero' END", "CASE n WHEN 2 THEN x WHEN 3 THEN y END",
    "CASE WHEN b THEN j ELSE 2.5 END", "if(b, j, n)", "coalesce(j, n)", "coalesce(x, j, 0)", "coalesce(s, 'none')",
    "nullif(j, 5)", "CASE WHEN b THEN NULL ELSE x END",
    # casts
    "CAST(x AS BIGINT)", "TRY_CAST(x * 1e5 AS INTEGER)", "TRY_CAST(j * 1000 AS INTEGER)", "CAST(y AS INTEGER)",
    "CAST(f AS BIGINT)", "CAST(j AS VARCHAR)", "CAST(b AS VARCHAR)", "CAST(j AS DOUBLE)", "CAST(n AS BOOLEAN)",
    "CAST(b AS INTEGER)", "x::FLOAT", "CAST(2.5 AS INTEGER)", "TRY_CAST(x AS INTEGER)", "CAST(n AS BIGINT)",
    # IN, BETWEEN, LIKE
    "n IN (2, 3)", "n NOT IN (2, NULL)", "s IN ('abc', 'MiXeD')", "x BETWEEN 0 AND 3", "j NOT BETWEEN -5 AND 5",
    "s LIKE 'a%'", "s LIKE s2", "s NOT LIKE '%x'", "s ILIKE 'mixed'", "s ILIKE s2",
    # functions
    "lower(s)", "upper(s)", "length(s)", "abs(j)", "abs(x)", "abs(f)", "round(x)", "round(-x)", "round(x / 1000, 2)",
    "round(x, 2)", "round(y, 2)", "round(x, -2)", "round(f, 1)", "round(j, -1)", "round(n)", "round(1.25, 1)",
    "s || s2", "s || 'z'", "length(s || s2)",
    # non-finite values (x / y is infinite where y is 0 or -0.0)
    "x / y", "round(x / y, 1)", "round(x / y)", "TRY_CAST(x / y AS BIGINT)", "abs(x / y)", "x / y > 1e300",
]
# Known differences (docs/streaming.md): Java upper-cases 'ß' to 'SS', DuckDB to 'ẞ'.
KNOWN_DIFFERENCES = {("upper(s)", 9)}


def _duck_values(exprs):
    import duckdb

    from featurestore.validation import Binder

    duck = {"string": "VARCHAR", "int32": "INTEGER", "int64": "BIGINT", "float32": "FLOAT", "float64": "DOUBLE",
            "bool": "BOOLEAN"}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET error_on_division_by_zero = false")  # where DuckDB would fail, the stream yields NULL
    con.execute("CREATE TABLE samples (id BIGINT, " + ", ".join(f"{c} {duck[d]}" for c, d in EXPR_COLUMNS.items()) + ")")
    con.executemany("INSERT INTO samples VALUES (" + ", ".join("?" * (len(EXPR_COLUMNS) + 1)) + ")", EXPR_ROWS)
    binder = Binder(EXPR_COLUMNS, "samples")
    types = [binder.dtype(e) for e in exprs]
    sql = "SELECT id, " + ", ".join(f"CAST(({e}) AS {duck[t]})" for e, t in zip(exprs, types)) + " FROM samples"
    return types, {r[0]: r[1:] for r in con.sql(sql).fetchall()}


@pytest.mark.flink
@pytest.mark.slow
def test_whitelisted_expressions_equal_duckdb():
    """Every construct the streaming job accepts, on sample values (nulls, negatives, ties at .5, zero
    divisors, -0.0, infinities, non-ASCII), gives DuckDB's value: one Flink batch job for all of them."""
    from pyflink.common import Configuration
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    types, duck = _duck_values(EXPRESSIONS)
    comp = flink_sql.ExprCompiler({c: flink_sql.FExpr(flink_sql.qi(c), d) for c, d in EXPR_COLUMNS.items()})
    selects = [f"{flink_sql._cast_sql(comp.compile(e), t)} AS e{k}" for k, (e, t) in enumerate(zip(EXPRESSIONS, types))]
    conf = Configuration()
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", "1")
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())
    ft = {"string": DataTypes.STRING(), "int32": DataTypes.INT(), "int64": DataTypes.BIGINT(),
          "float32": DataTypes.FLOAT(), "float64": DataTypes.DOUBLE(), "bool": DataTypes.BOOLEAN()}
    schema = DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT())]
                           + [DataTypes.FIELD(c, ft[d]) for c, d in EXPR_COLUMNS.items()])
    t_env.create_temporary_view("samples", t_env.from_elements(EXPR_ROWS, schema))
    with t_env.execute_sql("SELECT id, " + ", ".join(selects) + " FROM samples").collect() as rows:
        flink = {r[0]: tuple(r)[1:] for r in rows}
    problems = []
    for k, (expr, dtype) in enumerate(zip(EXPRESSIONS, types)):
        for rid in sorted(duck):
            if (expr, rid) in KNOWN_DIFFERENCES:
                continue
            if not same_engine_value(duck[rid][k], flink[rid][k], dtype):
                problems.append(f"{expr!r} row {rid}: DuckDB {duck[rid][k]!r}, Flink {flink[rid][k]!r}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:30])


UNSUPPORTED = [
    ("hour(ts)", "function hour() is not supported in the streaming job (" + flink_sql.SUPPORTED_TEXT + ")"),
    ("regexp_matches(tag, 'a.')", "function regexp_matches() is not supported in the streaming job ("
     + flink_sql.SUPPORTED_TEXT + ")"),
    ("CAST(amount AS VARCHAR)", "CAST of a float64 to a string formats numbers differently in DuckDB and Flink"),
    ("CAST(tag AS BIGINT)", "CAST of a string to int64 parses differently in DuckDB and Flink"),
    ("amount % 2", "'%' is supported on integers only in the streaming job"),
    ("tag = 1", "'=' mixes types int32, string (DuckDB and Flink convert them differently); add a CAST"),
    ("ts > ts", "'>' on timestamps is not supported in the streaming job"),
    ("tag LIKE 'a\\%'", "LIKE patterns with a backslash are not supported in the streaming job"),
    ("CAST(qty AS DECIMAL(10, 2))", "CAST to DECIMAL(10, 2) is not supported in the streaming job "
     "(use VARCHAR, INTEGER, BIGINT, FLOAT, DOUBLE or BOOLEAN)"),
]


@pytest.mark.parametrize("expr,reason", UNSUPPORTED)
def test_unsupported_expression_is_a_plan_time_error_naming_view_and_feature(tmp_path, expr, reason):
    defs = stream_definitions("t").replace(
        'Latest("qty + 1", name="last_qty_plus_one")', f'Latest({expr!r}, name="bad_feature")')
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(defs)
    store = FeatureStore(root)
    message = f"expression {expr!r} cannot run in the streaming job: {reason}"
    problems = flink_sql.check_repo(store.repo)
    assert [(p.obj, p.message) for p in problems] == [("profile.bad_feature", f"streaming: feature 'bad_feature': {message}")]
    assert problems[0].file == "definitions/features.py" and problems[0].line > 0
    with pytest.raises(FeatureStoreError) as err:
        streaming.plan(store)
    assert str(err.value) == f"feature view 'profile', feature 'bad_feature': {message}"


def test_unsupported_filter_and_projection_are_reported_together(tmp_path):
    defs = stream_definitions("t").replace('filter="flag",', 'filter="regexp_matches(tag, \'a\')",').replace(
        '"tag_len": "length(tag)"', '"tag_len": "strlen(tag)"')
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(defs)
    problems = flink_sql.check_repo(FeatureStore(root).repo)
    fn = "is not supported in the streaming job (" + flink_sql.SUPPORTED_TEXT + ")"
    assert [(p.obj, p.message) for p in problems] == [
        ("qty_stats", f"streaming: filter: expression \"regexp_matches(tag, 'a')\" cannot run in the streaming job: "
                      f"function regexp_matches() {fn}"),
        ("qty_stats", f"streaming: projection 'tag_len': expression 'strlen(tag)' cannot run in the streaming job: "
                      f"function strlen() {fn}"),
    ]


def test_views_without_a_stream_face_are_not_checked_and_cannot_stream(tmp_path):
    root = write_repo(tmp_path)  # the plain random repo: no stream face anywhere
    defs = DEFINITIONS.replace('Latest("qty + 1", name="last_qty_plus_one")', 'Latest("hour(ts)", name="h")')
    (root / "definitions" / "features.py").write_text(defs)
    store = FeatureStore(root)
    assert flink_sql.check_repo(store.repo) == []
    with pytest.raises(RequestError) as err:
        store.stream(bounded=True)
    assert str(err.value) == "no feature view has a source with a stream face (KafkaTopic): nothing to stream"


def test_explain_prints_every_statement_of_the_job(tmp_path):
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(stream_definitions("tx_topic"))
    text = streaming.explain(FeatureStore(root))
    assert "'topic' = 'tx_topic'" in text and "fs_parse_json_record(`__value`, " in text
    assert "INSERT INTO fs_staged_events" in text  # each event once; the committer splits it by view
    for view in ("amount_stats", "qty_stats", "profile", "profile_forever", "pair_stats"):
        assert f"--   view {view}: rows where `__v" in text
    assert "INSERT INTO fs_dead_letters_events" in text
    assert text.count("-> Redis writer") == 2  # two key groups: (user_id) and (user_id, shop)


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
