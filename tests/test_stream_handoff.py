"""Batch -> stream hand-off (issue 11.5, docs/streaming.md): a fresh stream job on a topic that lost its
first records seeds its online state from the offline store at a cut-over, so online values equal the
oracle over every event from the first lookup on, nothing doubled, and the offline table holds each
event once. When no offline history covers the gap the start is still refused.

The event set: random events (ties, bursts, nulls) produced to a two-partition topic in time order
(a little jitter, within the source's 2 s watermark delay), plus a few very late events; Kafka's retention
is played by ``delete_records`` (the first ~40% of each partition is gone). The batch face holds every
event before ``B + 20 s`` and is backfilled up to ``B`` (an event time shared by several events: a tie at
the range's end), so the events between the topic's first records and ``B`` are in both the offline table
and the topic. Two Flink launches: the hand-off run, then a restore after more events.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.engines.flink import handoff as stream_handoff
from featurestore.engines.flink import offsets as flink_offsets
from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.errors import RequestError
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal
from tests.randomrepo import random_events, write_events
from tests.test_stream import (JOB_TIMEOUT_S, KEYS, SCHEMA, assert_same_rows, create_topic, drop_project, make_repo,
                               offline_table, produce)

SEED = 41
BOUNDED = {"profile", "pair_stats"}  # views whose state is trimmed to a horizon (may refuse older requests)


def _records(events: pd.DataFrame, seed: int, late: pd.DataFrame = None):
    """Kafka (key, value) records in event-time order with jitter below the 2 s watermark delay, then
    ``late`` (events far behind the others) at the end."""
    rng = random.Random(seed)
    ordered = events.assign(_arrive=[t.value + rng.randint(0, 1_500) * 10**6 for t in events["ts"]])
    ordered = ordered.sort_values("_arrive", kind="stable").drop(columns="_arrive")
    out = [(r["user_id"].encode(), datagen.to_json_record(r, "ts", SCHEMA)) for r in ordered.to_dict("records")]
    if late is not None:
        out += [(r["user_id"].encode(), datagen.to_json_record(r, "ts", SCHEMA)) for r in late.to_dict("records")]
    return out


def _forget_first_records(kafka_admin, topic: str, bootstrap: str, share: float) -> dict:
    """Delete the first ``share`` of each partition's records (what retention does); returns the ends."""
    from confluent_kafka import TopicPartition

    ends = flink_offsets.end_offsets(bootstrap, [topic])
    cuts = [TopicPartition(topic, p, int(high * share)) for (_t, p), (_low, high) in sorted(ends.items())]
    for fut in kafka_admin.delete_records(cuts).values():
        fut.result(timeout=30)
    return flink_offsets.end_offsets(bootstrap, [topic])


def _tie_time(events: pd.DataFrame, after: pd.Timestamp) -> pd.Timestamp:
    """The first millisecond after ``after`` shared by two events (a tie at the backfilled range's end)."""
    ms = events["ts"].dt.floor("ms")
    counts = ms[ms > after].value_counts()
    return counts[counts > 1].index.min()


def _online_vs_oracle(store: FeatureStore, events: pd.DataFrame, times, what: str) -> Counter:
    """Every entity at every request time in ``times``: online equals the oracle over ``events``; a bounded
    view may refuse a request before an entity's horizon. Returns the comparisons per view."""
    users = sorted(events["user_id"].unique()) + ["nobody"]
    compared = Counter()
    for q in times:
        rows = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": q} for u in users for s in (0, 1, 2)])
        rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
        for name, view in store.repo.views.items():
            refs = [f"{name}:{f}" for f in view.feature_names]
            res = store.get_online_features(rows[KEYS], features=refs, request_time=q)
            want = oracle.point_in_time(events, view, rows)
            statuses = res.statuses()[view.feature_names[0]]
            keep = [i for i, s in enumerate(statuses) if s != "REFUSED"]
            if len(keep) < len(rows):
                assert name in BOUNDED, f"{what}: {name} refused at {q}: {res.refusals}"
                assert all("before the online store's retention horizon" in w for w in res.refusals), res.refusals
            if not keep:
                continue
            got = res.to_df().iloc[keep].reset_index(drop=True)
            assert_features_equal(got, want.iloc[keep].reset_index(drop=True), view.feature_names,
                                  f"{what}: online vs oracle, view {name}, q={q}")
            compared[name] += len(keep)
    return compared


def _offline_is_the_backfill_of(events: pd.DataFrame, store: FeatureStore, tmp_path: Path, topic: str, project: str,
                                what: str):
    """Assert every offline table of ``store`` holds the rows a backfill of ``events`` writes (a reference repo
    of its own under ``tmp_path / "ref"``); returns (its root, its store)."""
    ref_root = make_repo(tmp_path / "ref", topic, project, events)
    ref = FeatureStore(ref_root, config=dataclasses.replace(load_config(ref_root),
                                                            offline_root=str(tmp_path / "ref_offline")))
    ref.backfill()
    for view in store.repo.views:
        assert_same_rows(offline_table(store, view), offline_table(ref, view), f"view {view}: {what}")
    return ref_root, ref


@dataclasses.dataclass
class World:
    events: pd.DataFrame  # every event (the topic's and the batch face's)
    store: FeatureStore
    topic: str
    b: pd.Timestamp  # the backfilled range ends here (exclusive)
    ends: dict  # the topic's (first, end) offsets after retention


def _world(tmp_path, kafka_admin, name: str, share: float = 0.4) -> World:
    topic = f"fs_handoff_{name}_{uuid.uuid4().hex[:8]}"
    project = f"t_handoff_{uuid.uuid4().hex[:8]}"
    events = random_events(SEED, n=400).sort_values("ts", kind="stable").reset_index(drop=True)
    b = _tie_time(events, events["ts"].iloc[260])
    late = events[events["ts"] < b - pd.Timedelta("60s")].sample(8, random_state=SEED)  # arrive after the others
    on_time = events.drop(late.index)
    root = make_repo(tmp_path / name, topic, project, events[events["ts"] < b + pd.Timedelta("20s")])
    create_topic(kafka_admin, topic, partitions=2)
    produce(topic, _records(on_time, SEED, late))
    store = FeatureStore(root)
    ends = _forget_first_records(kafka_admin, topic, store.config.kafka_bootstrap, share)
    return World(events, store, topic, b, ends)


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_hand_off_seeds_online_state_from_the_offline_store(tmp_path, kafka_admin, redis_client):
    pytest.importorskip("pyflink")
    w = _world(tmp_path, kafka_admin, "exact")
    store, events, b = w.store, w.events, w.b
    b_ms = b.value // 10**6
    ckpt = tmp_path / "checkpoints"
    try:
        assert all(low > 0 for low, _ in w.ends.values())
        names = streaming.stream_views(store)
        with pytest.raises(RequestError, match="No offline history covers the gap"):
            streaming.check_history(store, names, w.ends, None)  # nothing backfilled yet
        store.apply()
        store.backfill(end=b)  # the batch face owns (-inf, B): every event before B
        handoff = stream_handoff.plan(store, names, w.ends, None)
        assert set(handoff.views) == set(names)
        for (topic, part), (c, _why) in handoff.cutover.items():  # the cut-over lies inside the backfilled range
            assert topic == w.topic and c < b_ms, (part, c, b_ms)
        # Seeded, before any record is read: exact at request times up to B (every event before B is seeded).
        root = streaming.checkpoint_root(store, streaming.job_name(store, names), ckpt)
        (root / "seeds").mkdir(parents=True)
        (root / "seeds" / ".seed-killed.sqlite.0123abcd").write_text("half")  # a start killed while seeding
        seed = stream_handoff.prepare(store, root, handoff, None)
        assert [p.name for p in (root / "seeds").iterdir()] == [Path(seed["path"]).name]
        streaming.prepare_online(store, names, None, seed)
        _online_vs_oracle(store, events, [b - pd.Timedelta("30s"), b], "seeded, before the job")

        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                               checkpoint_interval_ms=1000)
        assert result.restored_from is None
        # offline: each event once (the backfilled range from the batch face, the rest from the topic)
        ref_root, ref = _offline_is_the_backfill_of(events, store, tmp_path, w.topic, store.config.project,
                                                    "after the hand-off")
        # online: every entity, right after the cut-over and after the last event
        last = events["ts"].max()
        times = [b - pd.Timedelta("1ms"), b, b + pd.Timedelta("1ms"), b + pd.Timedelta("1s"), b + pd.Timedelta("10s"),
                 b + pd.Timedelta("31s"), b + pd.Timedelta("61s"), last, last + pd.Timedelta("1ms"),
                 last + pd.Timedelta("40s")]
        compared = _online_vs_oracle(store, events, times, "after the hand-off run")
        for name in store.repo.views:
            assert compared[name] >= 6 * 3 * 2, (name, compared)

        # Restart from the savepoint after more events (a late one inside the streamed part too): the
        # restored state finds its seed again; still exact, still each event once.
        more = random_events(SEED + 1, n=60)
        more["ts"] = more["ts"] + (last - more["ts"].min()) + pd.Timedelta("1s")
        late_streamed = events[events["ts"] >= b].head(1).assign(ts=b + pd.Timedelta("2ms"), amount=7.25)
        produce(w.topic, _records(more, SEED + 1, late_streamed))
        all_events = pd.concat([events, more, late_streamed], ignore_index=True)
        result2 = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                                checkpoint_interval_ms=1000)
        assert result2.restored_from is not None
        assert stream_handoff.recorded(root, streaming.latest_snapshot(root)) is not None
        write_events(ref_root, all_events)
        ref.backfill()
        for view in store.repo.views:
            assert_same_rows(offline_table(store, view), offline_table(ref, view), f"view {view}: after the restore")
        last = all_events["ts"].max()
        times = [b, b + pd.Timedelta("3ms"), b + pd.Timedelta("61s"), last + pd.Timedelta("1ms")]
        _online_vs_oracle(store, all_events, times, "after the restore")
    finally:
        drop_project(redis_client, store.config.project)
        kafka_admin.delete_topics([w.topic])


def _untied(events: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` without those that share their user and millisecond with another event: two such events of a
    view storing neither's other columns are one member content online, two rows offline (docs/streaming.md,
    "Batch → stream hand-off", where the two identities differ)."""
    key = pd.Series(list(zip(events["user_id"], events["ts"].dt.floor("ms"))), index=events.index)
    counts = key.value_counts()
    return rows[[counts[k] == 1 for k in key[rows.index]]]


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_records_the_seeded_version_lacks_inside_its_backfilled_range_are_added_online_as_offline(
        tmp_path, kafka_admin, redis_client):
    """A hand-off whose topic holds, inside the backfilled range (after the cut-over), events the batch face
    lacked when it was backfilled (they reached the topic after it), and a second copy of an event the batch
    face holds (a producer's retry): the offline committer adds what the table lacks, by row identity; the
    online state must add the same records (not count them as the seed's), so online = offline = the
    oracle over every event the table holds. Fails when the job skips every record inside a batch range."""
    pytest.importorskip("pyflink")
    topic = f"fs_handoff_lack_{uuid.uuid4().hex[:8]}"
    project = f"t_handoff_{uuid.uuid4().hex[:8]}"
    events = random_events(SEED + 3, n=400).sort_values("ts", kind="stable").reset_index(drop=True)
    b = _tie_time(events, events["ts"].iloc[260])
    lacked = _untied(events, events.iloc[200:255:6])  # after the cut-over (40% of the records are gone)
    assert len(lacked) >= 5 and (lacked["ts"] < b).all()
    again = events.iloc[[233]]  # read twice from the topic, held once by the batch face
    assert again.index[0] not in lacked.index
    batch = events[events["ts"] < b + pd.Timedelta("20s")].drop(lacked.index)
    root = make_repo(tmp_path / "lack", topic, project, batch)
    create_topic(kafka_admin, topic, partitions=2)
    produce(topic, _records(events, SEED, again))
    all_events = pd.concat([events, again], ignore_index=True)
    store = FeatureStore(root)
    ends = _forget_first_records(kafka_admin, topic, store.config.kafka_bootstrap, 0.4)
    try:
        store.apply()
        store.backfill(end=b)
        handoff = stream_handoff.plan(store, streaming.stream_views(store), ends, None)
        assert handoff is not None and all(s.claim for s in handoff.views.values())
        cut_over = max(c for c, _why in handoff.cutover.values())
        assert cut_over < lacked["ts"].min().value // 10**6
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=tmp_path / "checkpoints",
                      checkpoint_interval_ms=1000)
        _offline_is_the_backfill_of(all_events, store, tmp_path, topic, project, "lacked records")
        last = all_events["ts"].max()
        times = [lacked["ts"].min() + pd.Timedelta("1ms"), lacked["ts"].max() + pd.Timedelta("1ms"),
                 b, b + pd.Timedelta("31s"), last + pd.Timedelta("1ms")]
        compared = _online_vs_oracle(store, all_events, times, "records the seed lacked")
        for name in store.repo.views:
            assert compared[name] >= 3 * 3 * 2, (name, compared)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


@pytest.mark.kafka
@pytest.mark.redis
def test_gap_not_covered_by_the_offline_store_is_refused(tmp_path, kafka_admin, redis_client):
    w = _world(tmp_path, kafka_admin, "gap")
    store = w.store
    names = streaming.stream_views(store)
    try:
        store.apply()
        first = w.events["ts"].iloc[0]
        # the batch face's range ends before the topic's first retained records
        store.backfill(start=first + pd.Timedelta("10s"), end=first + pd.Timedelta("60s"))
        with pytest.raises(RequestError) as info:
            streaming.start(store, bounded=True)  # refused before any Flink job is built
        msg = str(info.value)
        assert f"topic '{w.topic}' no longer holds its first records" in msg
        assert "No offline history covers the gap" in msg and "do not reach the cut-over" in msg, msg
        assert "amount_stats: every event (an unbounded window or a latest feature without TTL)" in msg
        assert "--partial-history" in msg
        assert stream_handoff.plan(store, names, w.ends, None, partial_history=True) is None  # accepted explicitly

        # Now the range reaches the cut-over, but an unbounded view needs it to start at the beginning of time.
        store.backfill(start=first + pd.Timedelta("30s"), end=w.b)
        with pytest.raises(RequestError) as info:
            stream_handoff.plan(store, names, w.ends, None)
        assert "backfill it without a start" in str(info.value)
        assert "pair_stats:" not in str(info.value).split("No offline history covers the gap")[1]
        handoff = stream_handoff.plan(store, names, w.ends, None, partial_history=True)
        assert set(handoff.views) == BOUNDED  # bounded views hand off, answering from cut + retention on
        for n in BOUNDED:
            ((start, _end),) = store.offline.table(n).manifest()["batch_ranges"]
            s = handoff.views[n]
            assert s.cut == start and s.horizon > s.cut

        # a view whose stored rows changed since its backfill (a filter now) is never seeded from the old rows
        defs = store.repo_path / "definitions" / "features.py"
        defs.write_text(defs.read_text().replace('ttl="2m"', 'ttl="2m", filter="flag"'))
        store.reload()
        handoff = stream_handoff.plan(store, names, w.ends, None, partial_history=True)
        assert set(handoff.views) == BOUNDED - {"pair_stats"}
        with pytest.raises(RequestError, match="pair_stats: its offline table was backfilled under another definition"):
            stream_handoff.plan(store, names, w.ends, None)
    finally:
        drop_project(redis_client, store.config.project)
        kafka_admin.delete_topics([w.topic])


def test_a_snapshot_restores_the_seed_recorded_before_it_was_taken(tmp_path):
    """Which seed a restore uses (kill -9 at any point of a hand-off): the entry recorded last before the
    snapshot was taken; an entry recorded after (a new run killed before its first checkpoint) is not it."""
    import os
    import time

    root = tmp_path / "ckpt"
    root.mkdir()

    def snapshot(name: str, at: float):
        d = root / "job" / name
        d.mkdir(parents=True)
        (d / "_metadata").write_text("x")
        os.utime(d / "_metadata", (at, at))
        return d

    old = snapshot("chk-1", time.time() - 100)  # a run before any hand-off
    assert stream_handoff.prepare(None, root, None, None) is None and not (root / "_handoff.json").exists()
    seeds = []
    for i in range(2):
        (root / f"seed-{i}.sqlite").write_text("")
        stream_handoff._record(root, {"path": str(root / f"seed-{i}.sqlite"), "views": {}})
        seeds.append(stream_handoff._entries(root)[-1]["seed"])
        time.sleep(0.05)
    mid = snapshot("chk-2", time.time())  # taken by the second hand-off's run
    time.sleep(0.05)
    stream_handoff._record(root, None)  # then a fresh start without a hand-off, killed before its first checkpoint
    assert stream_handoff.recorded(root, old) is None
    assert stream_handoff.recorded(root, mid) == seeds[1]
    assert stream_handoff.recorded(root, snapshot("chk-3", time.time() + 1)) is None
    for _ in range(2):  # older entries (and their files) go
        stream_handoff._record(root, None)
    assert len(stream_handoff._entries(root)) == stream_handoff.KEEP_ENTRIES
    assert not (root / "seed-0.sqlite").exists() and not (root / "seed-1.sqlite").exists()


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_bounded_views_hand_off_from_a_range_that_starts_later(tmp_path, kafka_admin, redis_client):
    """A batch range ``[S, B)`` that holds the cut-over: views with a bounded retention ``R`` hand off and
    answer exactly from ``S + R`` on (earlier requests refused); with ``partial_history`` the unbounded
    views are built from what the topic holds (not checked here)."""
    pytest.importorskip("pyflink")
    w = _world(tmp_path, kafka_admin, "later")
    store, events, b = w.store, w.events, w.b
    try:
        store.apply()
        s = (events["ts"].iloc[0] + pd.Timedelta("10s")).floor("ms")
        store.backfill(start=s, end=b)
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=tmp_path / "checkpoints",
                      checkpoint_interval_ms=1000, partial_history=True)
        users = sorted(events["user_id"].unique())
        last = events["ts"].max()
        for name in sorted(BOUNDED):
            view = store.repo.views[name]
            refs = [f"{name}:{f}" for f in view.feature_names]
            horizon = s + pd.Timedelta(milliseconds=stream_handoff.retention_ms(store, name))
            early = store.get_online_features([{"user_id": users[0], "shop": 0}], features=refs,
                                              request_time=horizon - pd.Timedelta("1ms"))
            assert early.refusals and "before the online store's retention horizon" in early.refusals[0]
            for q in [horizon, horizon + pd.Timedelta("1ms"), b, b + pd.Timedelta("30s"), last + pd.Timedelta("1ms")]:
                rows = pd.DataFrame([{"user_id": u, "shop": k, "event_timestamp": q} for u in users for k in (0, 1, 2)])
                rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
                res = store.get_online_features(rows[KEYS], features=refs, request_time=q)
                statuses = res.statuses()[view.feature_names[0]]
                keep = [i for i, st in enumerate(statuses) if st != "REFUSED"]
                assert q <= last or len(keep) == len(rows), (name, q, res.refusals)  # after every entity's horizon
                assert all("before the online store's retention horizon" in why for why in res.refusals)
                want = oracle.point_in_time(events, view, rows).iloc[keep].reset_index(drop=True)
                assert_features_equal(res.to_df().iloc[keep].reset_index(drop=True), want, view.feature_names,
                                      f"{name} at {q}")
    finally:
        drop_project(redis_client, store.config.project)
        kafka_admin.delete_topics([w.topic])


_SEEDER = r"""
import os, sys, time
from pathlib import Path
from featurestore.engines.flink import handoff as stream_handoff
from featurestore.engines.flink import offsets as flink_offsets
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr

repo, ckpt, signal = sys.argv[1:4]
store = FeatureStore(Path(repo))
names = streaming.stream_views(store)
ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, [store.repo.views[names[0]].source.stream.topic])
handoff = stream_handoff.plan(store, names, ends, None)
root = streaming.checkpoint_root(store, streaming.job_name(store, names), Path(ckpt))
done = []
real = orr.RedisOnlineStore.materialize_view

def materialize_view(self, *args, **kwargs):
    out = real(self, *args, **kwargs)
    done.append(1)
    if len(done) == 2:  # two views seeded into Redis, the seed file half written: wait for the kill
        Path(signal).write_text("seeding")
        time.sleep(600)
    return out

orr.RedisOnlineStore.materialize_view = materialize_view
stream_handoff.prepare(store, root, handoff, None)
"""


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_kill_9_while_seeding_then_restart_is_exact_each_event_once(tmp_path, kafka_admin, redis_client):
    """kill -9 of the starting process in the middle of the hand-off's seeding (two views already
    materialized into Redis, the seed file half written, nothing recorded): the restart is a fresh start
    again, throws the half-written seed away, seeds anew and streams (at parallelism 2: each subtask reads
    the seed of its entities). That job is killed -9 in turn after a checkpoint (the seed recorded, part
    of the topic read); more events arrive, the next start restores the checkpoint with the seed recorded
    before it: online equals the oracle over every event and the offline tables hold each event once."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from featurestore.engines.flink import remote as flink_remote

    pytest.importorskip("pyflink")
    w = _world(tmp_path, kafka_admin, "killseed")
    store, events, b = w.store, w.events, w.b
    ckpt = tmp_path / "checkpoints"
    repo_dir = Path(__file__).resolve().parents[1]
    try:
        store.apply()
        store.backfill(end=b)
        flag = tmp_path / "seeding"
        proc = subprocess.Popen([sys.executable, "-c", _SEEDER, str(store.repo_path), str(ckpt), str(flag)],
                                cwd=repo_dir, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 300
            while not flag.exists():
                assert proc.poll() is None, "the seeding process ended before it was killed"
                assert time.monotonic() < deadline, "seeding did not reach its second view"
                time.sleep(0.2)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=60)
        names = streaming.stream_views(store)
        root = streaming.checkpoint_root(store, streaming.job_name(store, names), ckpt)
        assert [p.name for p in (root / "seeds").iterdir() if p.name.startswith(".seed-")]  # half written
        assert stream_handoff._entries(root) == []  # nothing recorded: no run uses it

        # the restart (an unbounded job in a process of its own), killed -9 after a checkpoint
        log = open(tmp_path / "job.log", "w")
        job = subprocess.Popen(
            [sys.executable, str(repo_dir / "jobs" / "stream.py"), "--repo", str(store.repo_path), "--checkpoint-dir",
             str(ckpt), "--checkpoint-interval-ms", "1000", "--parallelism", "2"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=str(repo_dir),
            env=flink_remote.child_env())
        try:
            committed = lambda: streaming.Committer(store, names).metrics()["events"]["events:amount_stats"]  # noqa: E731
            deadline = time.monotonic() + JOB_TIMEOUT_S
            while not (streaming.latest_snapshot(root) is not None and committed() > 0):
                assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "no checkpoint with committed events"
                time.sleep(0.5)
        finally:
            os.killpg(job.pid, signal.SIGKILL)  # the client, the mini-cluster, the Python workers
            job.wait(timeout=60)
            log.close()
        assert not [p for p in (root / "seeds").iterdir() if p.name.startswith(".seed-")]
        assert len(stream_handoff._entries(root)) == 1 and stream_handoff._entries(root)[0]["seed"]

        last = events["ts"].max()
        more = random_events(SEED + 5, n=40)
        more["ts"] = more["ts"] + (last - more["ts"].min()) + pd.Timedelta("1s")
        produce(w.topic, _records(more, SEED + 5))
        all_events = pd.concat([events, more], ignore_index=True)
        result = streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=ckpt,
                               checkpoint_interval_ms=1000, parallelism=2)  # (entities split over two subtasks)
        assert result.restored_from is not None and "chk-" in result.restored_from
        assert stream_handoff.recorded(root, Path(result.restored_from)) == stream_handoff._entries(root)[0]["seed"]
        _offline_is_the_backfill_of(all_events, store, tmp_path, w.topic, store.config.project, "after the restarts")
        last = all_events["ts"].max()
        times = [b - pd.Timedelta("1ms"), b, b + pd.Timedelta("1s"), b + pd.Timedelta("31s"), last + pd.Timedelta("1ms")]
        compared = _online_vs_oracle(store, all_events, times, "after the killed seeding, a killed job and a restore")
        for name in store.repo.views:
            assert compared[name] >= 3 * 3 * 2, (name, compared)
    finally:
        drop_project(redis_client, store.config.project)
        kafka_admin.delete_topics([w.topic])


# -- cut-overs: late records at a partition's head, gaps covered in part --------------------------------------
def _produce_to(topic: str, records) -> dict:
    """Produce (key, value, partition or None) records; returns each partition's values in offset order."""
    from confluent_kafka import Producer

    from tests.test_stream import KAFKA

    producer = Producer({"bootstrap.servers": KAFKA, "linger.ms": 5, "enable.idempotence": True})
    errors, landed = [], {}

    def done(err, msg):
        if err:
            errors.append(err)
        else:
            landed.setdefault(msg.partition(), {})[msg.offset()] = msg.value()

    for key, value, part in records:
        kwargs = {} if part is None else {"partition": part}
        producer.produce(topic, key=key, value=value, on_delivery=done, **kwargs)
    assert producer.flush(60) == 0 and not errors, f"Kafka delivery failed: {errors[:3]}"
    return {p: [v for _o, v in sorted(by.items())] for p, by in landed.items()}


@pytest.mark.kafka
@pytest.mark.redis
def test_a_late_head_record_and_partly_covered_gaps_are_refused(tmp_path, kafka_admin, redis_client):
    """Partition 0's first retained record is a late one (its event time far behind the records around it):
    it bounds nothing, the on-time records after it bound what the partition lost. A backfill that reaches
    the late record's time + the watermark delay but not the lost records' is refused (it would leave the
    lost records between its end and their times in neither store). Then gaps covered in part: a range
    that holds partition 1's cut-over but not partition 0's is refused; two ranges with a hole before the
    cut-overs hand off only the bounded views (from the second range's start + their retention)."""
    from confluent_kafka import TopicPartition

    topic = f"fs_handoff_late_{uuid.uuid4().hex[:8]}"
    project = f"t_handoff_{uuid.uuid4().hex[:8]}"
    events = random_events(SEED + 3, n=300).sort_values("ts", kind="stable").reset_index(drop=True)
    late = events.iloc[[5]].assign(amount=1.0)  # produced again, late, at partition 0's new head
    root = make_repo(tmp_path / "late", topic, project, events)
    create_topic(kafka_admin, topic, partitions=2)
    recs = _records(events, SEED)
    k0 = 120  # partition 0: the on-time records, the late one at offset k0
    p0 = [(k, v, 0) for k, v in recs[0::2]]
    p0.insert(k0, (*_records(late, SEED)[0], 0))
    landed = _produce_to(topic, p0 + [(k, v, 1) for k, v in recs[1::2]])
    import json as _json

    lost_max = max(_json.loads(v)["ts"] for v in landed[0][:k0])  # the latest event partition 0 loses
    late_ms = _json.loads(landed[0][k0])["ts"]
    assert late_ms + 60_000 < lost_max
    cuts = [TopicPartition(topic, 0, k0), TopicPartition(topic, 1, 5)]
    for fut in kafka_admin.delete_records(cuts).values():
        fut.result(timeout=30)
    store = FeatureStore(root)
    ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, [topic])
    names = streaming.stream_views(store)
    ms = lambda t: pd.Timestamp(t, unit="ms", tz="UTC")  # noqa: E731
    c1 = max(_json.loads(v)["ts"] for v in landed[1][5:5 + stream_handoff.HEAD_RECORDS]) + 2_000
    end = max(late_ms + 10_000, c1 + 1)
    assert end + 60_000 < lost_max
    try:
        store.apply()
        # the range holds partition 1's cut-over and the late record's time + 2 s, not partition 0's lost records
        store.backfill(end=ms(end))
        with pytest.raises(RequestError) as info:
            stream_handoff.plan(store, names, ends, None)
        gap = str(info.value).split("No offline history covers the gap")[1]
        assert "records of partition 0 from offset" in gap and "partition 1" not in gap, gap
        plan = stream_handoff.plan(store, names, ends, None, partial_history=True)
        assert plan is None or not plan.views

        # every cut-over inside a second range [Y, E) after a hole: bounded views only, from Y on
        y = ms(lost_max - 30_000).floor("ms")
        store.backfill(start=y, end=ms(lost_max + 60_000))
        ranges = store.offline.table("profile").manifest()["batch_ranges"]
        assert len(ranges) == 2 and ranges[1][0] == y.value // 10**6, ranges
        with pytest.raises(RequestError, match="backfill it without a start"):
            stream_handoff.plan(store, names, ends, None)
        handoff = stream_handoff.plan(store, names, ends, None, partial_history=True)
        assert set(handoff.views) == BOUNDED
        for n in BOUNDED:
            s = handoff.views[n]
            assert s.cut == y.value // 10**6 and s.horizon == s.cut + stream_handoff.retention_ms(store, n)
        c0 = handoff.cutover[(topic, 0)][0]
        assert c0 >= lost_max  # (the late record alone said late_ms + 2 s)
    finally:
        drop_project(redis_client, store.config.project)
        kafka_admin.delete_topics([topic])


# -- several partitions, parallelism 2, a standalone cluster ---------------------------------------------------
def _spread_records(events: pd.DataFrame, seed: int, partitions: int, spread: str):
    """(key, value, partition or None) records in event-time order (jitter below the watermark delay): the
    events of ``spread`` (the hot user) go to random partitions (one entity's events on every partition,
    as a producer without keys, or keyed by something else, makes them); the others are keyed by user
    (partition None: the producer's partitioner puts each user on one partition)."""
    rng = random.Random(seed)
    out = []
    for key, value in _records(events, seed):
        out.append((key, value, rng.randrange(partitions) if key.decode() == spread else None))
    return out


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_hand_off_on_a_standalone_cluster_with_parallelism_two_and_an_entity_on_every_partition(
        flink_cluster, tmp_path, kafka_admin, redis_client):
    """The hand-off of a three-partition topic whose partitions lost different shares of their first records
    (so three different cut-overs), the hot user's events spread over every partition and the others keyed
    by user, late events older than every cut-over (the seed's) and one late event after the backfilled
    range (the stream's): submitted with ``flink run`` to a standalone cluster at parallelism 2 (the seed
    written here, read by the cluster's Python workers). Each partition's cut-over is the latest event time
    of its first retained records plus the watermark delay; offline tables = the backfill of every event; online =
    the oracle over every event from right after the cut-over to after the last event, every entity."""
    import json as _json

    from featurestore.engines.flink import remote as flink_remote

    pytest.importorskip("pyflink")
    topic = f"fs_handoff_par_{uuid.uuid4().hex[:8]}"
    project = f"t_handoff_{uuid.uuid4().hex[:8]}"
    events = random_events(SEED + 7, n=500).sort_values("ts", kind="stable").reset_index(drop=True)
    hot = events["user_id"].value_counts().index[0]
    assert (events["user_id"] == hot).mean() > 0.4  # a hot key
    b = _tie_time(events, events["ts"].iloc[340])
    late = events[events["ts"] < events["ts"].iloc[40]].sample(5, random_state=SEED)  # older than every cut-over
    late_streamed = events[events["ts"] >= b].head(2).assign(ts=b + pd.Timedelta("3ms"), amount=-3.5)
    all_events = pd.concat([events, late_streamed], ignore_index=True)
    root = make_repo(tmp_path / "par", topic, project, all_events[all_events["ts"] < b + pd.Timedelta("20s")])
    create_topic(kafka_admin, topic, partitions=3)
    records = _spread_records(events.drop(late.index), SEED, 3, hot)
    records += [(k, v, 2) for k, v in _records(late, SEED)]  # late records, all on one partition
    records += [(k, v, 0) for k, v in _records(late_streamed, SEED)]
    landed = _produce_to(topic, records)
    on = {p: {_json.loads(v)["user_id"] for v in vs} for p, vs in landed.items()}
    assert all(hot in on[p] for p in range(3))  # the hot entity's events on every partition
    store = FeatureStore(root)
    bootstrap = store.config.kafka_bootstrap
    from confluent_kafka import TopicPartition

    ends = flink_offsets.end_offsets(bootstrap, [topic])
    shares = {0: 0.45, 1: 0.2, 2: 0.33}
    cuts = [TopicPartition(topic, p, int(high * shares[p])) for (_t, p), (_l, high) in sorted(ends.items())]
    for fut in kafka_admin.delete_records(cuts).values():
        fut.result(timeout=30)
    ends = flink_offsets.end_offsets(bootstrap, [topic])
    try:
        store.apply()
        store.backfill(end=b)
        names = streaming.stream_views(store)
        handoff = stream_handoff.plan(store, names, ends, None)
        assert set(handoff.views) == set(names)
        head = stream_handoff.HEAD_RECORDS  # the latest time of each partition's head records + the delay
        want_cuts = {p: max(_json.loads(v)["ts"] for v in landed[p][low:low + head]) + 2_000
                     for (_t, p), (low, _h) in ends.items()}
        assert {p: c for (_t, p), (c, _why) in handoff.cutover.items()} == want_cuts
        assert len(set(want_cuts.values())) == 3 and max(want_cuts.values()) < b.value // 10**6

        handle = flink_remote.submit_remote(store, flink_cluster, bounded=True, checkpoint_dir=tmp_path / "ckpt",
                                            checkpoint_interval_ms=1000, extra_args=["--parallelism", "2"])
        result = handle.run_until_done(JOB_TIMEOUT_S)
        assert handle.parallelism == 2  # the end waited for both subtasks' last writes, not for one
        states = [k for k in result.online if k.startswith("state:")]
        assert len({result.online[k]["instance"] for k in states}) == 2  # both subtasks reported
        _offline_is_the_backfill_of(all_events, store, tmp_path, topic, project, "cluster, parallelism 2")
        first_cut = pd.Timestamp(min(want_cuts.values()), unit="ms", tz="UTC")
        last = all_events["ts"].max()
        times = [first_cut, first_cut + pd.Timedelta("1ms"), b - pd.Timedelta("1ms"), b, b + pd.Timedelta("3ms"),
                 b + pd.Timedelta("4ms"), b + pd.Timedelta("31s"), last, last + pd.Timedelta("1ms"),
                 last + pd.Timedelta("40s")]
        compared = _online_vs_oracle(store, all_events, times, "cluster, parallelism 2")
        for name in store.repo.views:
            assert compared[name] >= 6 * 3 * 2, (name, compared)
        users = sorted(all_events["user_id"].unique()) + ["nobody"]
        rows = pd.DataFrame([{"user_id": u, "shop": k, "event_timestamp": q} for q in times for u in users
                             for k in (0, 1, 2)])
        rows["event_timestamp"] = pd.to_datetime(rows["event_timestamp"], utc=True)
        offline = store.get_historical_features(rows, feature_service="everything")  # offline = oracle too
        for view in store.repo.views.values():
            assert_features_equal(offline, oracle.point_in_time(all_events, view, rows), view.feature_names,
                                  f"offline vs oracle, view {view.name}, cluster, parallelism 2")
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


