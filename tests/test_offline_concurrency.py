"""SPEC §5 under concurrency: several *processes* write one view's offline table at once (overlapping range
backfills, open-ended backfills, pushes, expiry) while other processes build and save training sets from it and
re-create saved ones. Random interleavings, real processes (spawn), a few seconds per seed.

Checked, in every reader and at the end:

* no reader fails (a training set of the latest versions always builds; re-creating a saved one either gives
  the same Arrow table or names its expired version): a reader's file list is taken before DuckDB opens the
  files, and a concurrent commit archives superseded files in between (it failed with DuckDB's "No files
  found" / "Cannot open file" before ``stores/offline_reads.py``);
* every version a reader saw holds each event once, and its training set equals the brute-force oracle over
  that version's rows (no half-written file, no doubled or missing event);
* afterwards the table holds each event of the batch face and each pushed event exactly once, to the library
  and to a plain DuckDB glob; no temp file is left.
"""

from __future__ import annotations

import multiprocessing
import random
import traceback
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.compute  # noqa: F401 (pa.compute)
import pyarrow.parquet as pq
import pytest

from tests import oracle

DEFS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source
user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "eid": "int64", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
v = FeatureView(entities=[user], source=events,
                features=[Aggregation("qty", "sum", "6h", name="s_6h"), Aggregation("qty", "count", None, name="n"),
                          Latest("eid", name="last_eid")])
'''
BASE = pd.Timestamp("2026-03-01T00:00:00Z")
DAYS = 5
FEATURES = ["v:s_6h", "v:n", "v:last_eid"]
PUSH_EID = 1_000_000  # pushed events' ids start here


def _store(root: str):
    from featurestore.stores import offline_files
    from featurestore.store import FeatureStore

    offline_files.DURABLE = False  # no fsync: the races are the same, the test is cheaper
    return FeatureStore(root)


def _at(rng: random.Random, lo_s: int = 0, hi_s: int = DAYS * 86400) -> pd.Timestamp:
    return BASE + pd.Timedelta(milliseconds=rng.randrange(lo_s * 1000, hi_s * 1000))


def _backfiller(root: str, seed: int, n: int) -> None:
    rng = random.Random(seed)
    fs = _store(root)
    for _ in range(n):
        a = rng.randrange(0, DAYS * 24)
        start = BASE + pd.Timedelta(hours=a)
        end = None if rng.random() < 0.25 else BASE + pd.Timedelta(hours=min(DAYS * 24, a + rng.randint(1, 60)))
        fs.backfill(start=start, end=end)


def _pusher(root: str, seed: int, n: int) -> None:
    rng = random.Random(seed)
    fs = _store(root)
    for i in range(n):
        rows = [{"user_id": f"u{rng.randrange(4)}", "eid": PUSH_EID + seed * 1000 + i * 10 + j,
                 "qty": rng.randint(-5, 9), "ts": _at(rng)} for j in range(rng.randint(1, 4))]
        fs.push("events", rows, to="offline")


def _expirer(root: str, seed: int, n: int) -> None:
    import time

    rng = random.Random(seed)
    table = _store(root).offline.table("v")
    for _ in range(n):
        time.sleep(rng.uniform(0.05, 0.3))
        table.expire(keep_last=rng.randint(3, 6))


def _materializer(root: str, seed: int, n: int) -> None:
    fs = _store(root)
    for _ in range(n):
        fs.materialize()


def _reader(root: str, seed: int, n: int, out) -> None:
    """Build and save training sets of the latest versions; check each against the oracle over the rows of
    the version it pinned; re-create every saved set at the end (Arrow-equal, or its version expired)."""
    from featurestore.errors import OfflineStoreError

    rng = random.Random(seed)
    fs = _store(root)
    problems, saved, checked = [], {}, 0
    for i in range(n):
        req = pd.DataFrame({"user_id": [f"u{rng.randrange(5)}" for _ in range(30)],
                            "event_timestamp": [_at(rng, 0, DAYS * 86400 + 7200) for _ in range(30)]})
        name = f"r{seed}_{i}"
        try:
            frame = fs.get_historical_features(req, features=FEATURES, save_as=name)
        except Exception as exc:  # noqa: BLE001 - every failure is a finding
            problems.append(f"build {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            continue
        version = frame.manifest["views"][0]["table_version"]
        saved[name] = (frame.to_arrow(), version)
        try:
            rows = fs.offline.table("v").read(version).to_pandas()
        except OfflineStoreError as exc:  # expired since: nothing to compare with
            assert "was expired" in str(exc), exc
            continue
        if rows["eid"].duplicated().any():
            problems.append(f"version {version}: events {sorted(rows['eid'][rows['eid'].duplicated()])[:5]} twice")
        want = oracle.point_in_time(rows, fs.repo.views["v"], req)
        for f in ("s_6h", "n", "last_eid"):
            got = frame[f].astype(object).where(frame[f].notna(), None).tolist()
            if got != list(want[f]):
                problems.append(f"{name} (version {version}): {f} differs from the oracle over its rows")
        checked += 1
    for name, (arrow, version) in saved.items():
        try:
            again = fs.recreate_training_set(name).to_arrow()
        except OfflineStoreError as exc:
            if f"version {version} was expired" not in str(exc):
                problems.append(f"recreate {name}: {str(exc).splitlines()[0][:300]}")
            continue
        except Exception as exc:  # noqa: BLE001
            problems.append(f"recreate {name}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
            continue
        if not again.equals(arrow):
            problems.append(f"recreate {name} (version {version}) differs")
    out.put(("reader", seed, problems, checked))


def _run(target, args, out, start=None):
    """``target(*args)`` in a worker process; ``start``: a barrier every worker meets once its imports are done,
    so the writers really overlap (a spawned process takes a second or more to import)."""
    try:
        if start is not None:
            import featurestore.store  # noqa: F401
            import featurestore.stores.offline  # noqa: F401

            start.wait(120)
        target(*args)
        out.put((target.__name__, args[1], [], 0))
    except Exception:  # noqa: BLE001
        out.put((target.__name__, args[1], [traceback.format_exc()[-1500:]], 0))


def _setup(root: Path, seed: int) -> pd.DataFrame:
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "featurestore.yaml").write_text("project: conc\ndefinitions: definitions\n")
    (root / "definitions" / "f.py").write_text(DEFS)
    rng = random.Random(seed)
    rows = []
    for eid in range(1500):
        ts = _at(rng) if rng.random() > 0.2 or not rows else rows[rng.randrange(len(rows))]["ts"]  # ties
        rows.append({"user_id": f"u{rng.randrange(4)}", "eid": eid, "qty": rng.randint(-5, 9), "ts": ts})
    frame = pd.DataFrame(rows)
    frame.iloc[:800].to_parquet(root / "data" / "a.parquet")
    frame.iloc[800:].to_parquet(root / "data" / "b.parquet")
    _store(str(root)).backfill()
    return frame


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1])
def test_processes_writing_and_reading_one_table_at_once(tmp_path, seed, use_offline_root):
    """On a local root and on an s3:// root (the environment the processes inherit points them there)."""
    root = tmp_path / "repo"
    batch = _setup(root, seed)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    k = 1 if isinstance(use_offline_root, Path) else 2  # object storage (a serial local server): fewer steps
    jobs = [(_backfiller, (str(root), seed * 10 + 1, 4 // k)), (_backfiller, (str(root), seed * 10 + 2, 4 // k)),
            (_pusher, (str(root), seed * 10 + 3, 3 // k)), (_pusher, (str(root), seed * 10 + 4, 3 // k)),
            (_expirer, (str(root), seed * 10 + 5, 4 // k))]
    procs = [ctx.Process(target=_run, args=(t, a, out)) for t, a in jobs]
    procs += [ctx.Process(target=_reader, args=(str(root), seed * 10 + 6 + i, 5 // k, out)) for i in range(2)]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    problems = [f"{who} {s}: {p}" for who, s, ps, _ in results for p in ps]
    assert problems == [], "\n".join(problems)
    assert sum(n for who, _, _, n in results if who == "reader") > 0, "no reader compared a version"
    assert all(p.exitcode == 0 for p in procs)

    fs = _store(str(root))
    table = fs.offline.table("v")
    from featurestore.push.offline import PushedLog

    pushed = sorted(PushedLog(fs, fs.repo.views["v"].source).table.read().column("eid").to_pylist())
    expected = sorted(batch["eid"].tolist() + pushed)
    got = sorted(table.read().column("eid").to_pylist())
    assert got == expected, "the table does not hold each batch and pushed event exactly once"
    if table.remote:  # the live objects, as an outside reader lists them
        live = pads.dataset(table.path.path, filesystem=table.filesystem, format="parquet", partitioning="hive")
        assert sorted(live.to_table(columns=["eid"]).column("eid").to_pylist()) == expected
    else:
        glob = duckdb.sql(f"SELECT eid FROM read_parquet('{table.path}/date=*/part-*.parquet') ORDER BY eid")
        assert [r[0] for r in glob.fetchall()] == expected
    assert not list(table._staging.rglob(".tmp-*"))
    # every kept version holds each event once
    for m in table.history():
        eids = table.read(m["version"]).column("eid")
        assert len(eids) == len(pa.compute.unique(eids)), f"version {m['version']} holds an event twice"


def test_a_writer_that_loses_a_race_to_a_push_leaves_no_temp_file(tmp_path, monkeypatch):
    """A backfill whose first commit attempt planned to add pushed rows (a push whose own commit had not
    reached the table yet) loses its version to that push's commit: on the winner's version nothing is left to
    add, and the rows it had written for them must go (they stayed as temp files until the process ended)."""
    from featurestore.stores import offline

    root = tmp_path / "repo"
    _setup(root, 3)
    fs = _store(str(root))
    real_follow_up = offline.OfflineTable.follow_up
    monkeypatch.setattr(offline.OfflineTable, "follow_up", lambda self: None)  # the push's commit is late
    fs.push("events", [{"user_id": "u1", "eid": PUSH_EID, "qty": 3, "ts": BASE + pd.Timedelta(days=4)}], to="offline")
    monkeypatch.setattr(offline.OfflineTable, "follow_up", real_follow_up)
    real_write = offline.OfflineTable._write_manifest
    raced = []

    def push_commits_first(self, version, manifest):
        if not raced:
            raced.append(version)
            assert _store(str(root)).offline.table("v").follow_up() == version  # takes this version number
        return real_write(self, version, manifest)

    monkeypatch.setattr(offline.OfflineTable, "_write_manifest", push_commits_first)
    fs.backfill(start=BASE, end=BASE + pd.Timedelta(days=1))  # no pushed event inside its range
    monkeypatch.setattr(offline.OfflineTable, "_write_manifest", real_write)
    table = fs.offline.table("v")
    assert raced and table.version == raced[0] + 1
    assert sorted(table.read().column("eid").to_pylist()).count(PUSH_EID) == 1
    assert not list(table.path.rglob(".tmp-*")), "a live writer left the files of a plan it dropped"


def test_two_savers_of_one_training_set_name_one_wins_whole(tmp_path, monkeypatch):
    """Two writers save a training set under the same name at the same moment (each past the "already exists"
    check): exactly one set is written, whole (its frame, its entity frame, its manifest), the other caller gets
    the one-line refusal. (Before, both "succeeded": the folder ended with one's files and the other's manifest,
    and the set no longer loaded or re-created another frame.)"""
    import threading

    from featurestore.errors import RequestError
    from featurestore.sdk import training_sets

    root = tmp_path / "repo"
    _setup(root, 4)
    barrier = threading.Barrier(2, timeout=60)
    real_dir = training_sets.training_set_dir

    def together(root_, name):  # both savers start writing the folder at once
        if threading.current_thread().name.startswith("saver"):
            barrier.wait()
        return real_dir(root_, name)

    monkeypatch.setattr(training_sets, "training_set_dir", together)
    results = {}

    def save(i):
        fs = _store(str(root))
        rng = random.Random(i)
        req = pd.DataFrame({"user_id": [f"u{rng.randrange(4)}" for _ in range(20 + i)],
                            "event_timestamp": [_at(rng) for _ in range(20 + i)]})
        try:
            results[i] = fs.get_historical_features(req, features=FEATURES, save_as="same").to_arrow()
        except RequestError as exc:
            results[i] = exc

    threads = [threading.Thread(target=save, args=(i,), name=f"saver{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.setattr(training_sets, "training_set_dir", real_dir)
    won = [i for i, r in results.items() if isinstance(r, pa.Table)]
    lost = [r for r in results.values() if isinstance(r, RequestError)]
    assert len(won) == 1 and len(lost) == 1, results
    assert "already exists" in str(lost[0]) and "\n" not in str(lost[0])
    again = _store(str(root)).recreate_training_set("same").to_arrow()
    assert again.equals(results[won[0]])
    folder = real_dir(_store(str(root))._offline_root, "same")
    assert pq.read_table(folder / "result.parquet").equals(results[won[0]])
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.redis
@pytest.mark.slow
def test_materialize_next_to_backfilling_processes(tmp_path, redis_client):
    """``materialize`` reads a version's files while two processes backfill overlapping ranges (it failed with
    DuckDB's "No files found" when a commit archived a listed file); afterwards online = offline."""
    import uuid

    from tests.conftest import drop_project

    root = tmp_path / "repo"
    _setup(root, 5)
    project = f"conc_{uuid.uuid4().hex[:8]}"
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    _store(str(root)).backfill()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    jobs = [(_backfiller, (str(root), 51, 6)), (_backfiller, (str(root), 52, 6)), (_materializer, (str(root), 53, 5))]
    procs = [ctx.Process(target=_run, args=(t, a, out)) for t, a in jobs]
    try:
        for p in procs:
            p.start()
        results = [out.get(timeout=600) for _ in procs]
        for p in procs:
            p.join(60)
        problems = [f"{who} {s}: {p}" for who, s, ps, _ in results for p in ps]
        assert problems == [], "\n".join(problems)
        fs = _store(str(root))
        fs.materialize()
        rng = random.Random(5)
        req = pd.DataFrame({"user_id": [f"u{i % 4}" for i in range(12)],
                            "event_timestamp": [_at(rng, 86400, DAYS * 86400) for _ in range(12)]})
        offline = fs.get_historical_features(req, features=FEATURES)
        for i in range(len(req)):
            got = fs.get_online_features([{"user_id": req["user_id"][i]}], features=FEATURES,
                                         request_time=req["event_timestamp"][i]).to_dict()
            want = offline.iloc[i]
            assert [got[f][0] for f in ("s_6h", "n", "last_eid")] == [want["s_6h"], want["n"], want["last_eid"]], i
    finally:
        drop_project(redis_client, project)


# -- the stream's commits among backfills and expiry (table level: no Flink needed) -------------------------------
ST_DAYS = 4
ST_H = 3_600_000
ST_T0 = BASE.value // 1_000_000


def _batch_events() -> pa.Table:
    """The batch face: a fixed set of events; a backfill of [a, b) writes exactly those with a <= ts < b."""
    rng = random.Random(99)
    ts = sorted(ST_T0 + rng.randrange(0, ST_DAYS * 24 * ST_H) for _ in range(400))
    return pa.table({"eid": pa.array(range(len(ts)), pa.int64()),
                     "ts": pa.array(ts, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))})


def _range_backfiller(root: str, seed: int, n: int) -> None:
    import time

    from featurestore.stores import offline_files
    from featurestore.stores.offline import OfflineTable

    offline_files.DURABLE = False
    rng = random.Random(seed)
    table, batch = OfflineTable(root, "t"), _batch_events()
    ts = batch.column("ts").cast(pa.int64()).to_numpy()
    for _ in range(n):
        a = ST_T0 + rng.randrange(0, ST_DAYS * 24) * ST_H
        b = a + rng.randint(1, 40) * ST_H
        time.sleep(rng.uniform(0, 0.1))
        table.write_range(batch.filter(pa.array((ts >= a) & (ts < b))), a, b)


def _committer(root: str, seed: int, n: int, staging: str) -> None:
    """The stream's committer: checkpoint k commits a file of Kafka records (partition, offset); every third
    checkpoint is committed twice (a restarted committer replaying its intent)."""
    import time

    from featurestore.stores import offline_files
    from featurestore.stores.offline import OfflineTable

    offline_files.DURABLE = False
    rng = random.Random(seed)
    table = OfflineTable(root, "t")
    offsets = {0: 0, 1: 0}
    for seq in range(1, n + 1):
        part = rng.randrange(2)
        k = rng.randint(5, 30)
        first = offsets[part] - (3 if offsets[part] >= 3 and rng.random() < 0.3 else 0)  # re-read records
        offs = list(range(first, offsets[part] + k))
        offsets[part] += k
        path = Path(staging) / f"c{seq}.parquet"
        pq.write_table(pa.table({
            "eid": pa.array([-(part * 10**6 + o) - 1 for o in offs], pa.int64()),  # a record's id: -(p, o)
            "ts": pa.array([_stream_ts(part, o) for o in offs], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "__kafka_partition": pa.array([part] * len(offs), pa.int32()),
            "__kafka_offset": pa.array(offs, pa.int64())}), path)
        time.sleep(rng.uniform(0, 0.08))
        for _ in range(2 if seq % 3 == 0 else 1):
            table.commit_stream([path], app_id="job", seq=seq, topic="tx", fingerprint="fp",
                                partition_column="__kafka_partition", offset_column="__kafka_offset")


def _stream_ts(part: int, offset: int) -> int:
    return ST_T0 + random.Random(part * 10**6 + offset).randrange(0, ST_DAYS * 24 * ST_H)


def _table_expirer(root: str, seed: int, n: int) -> None:
    import time

    from featurestore.stores.offline import OfflineTable

    rng = random.Random(seed)
    for _ in range(n):
        time.sleep(rng.uniform(0.05, 0.2))
        OfflineTable(root, "t").expire(keep_last=rng.randint(2, 4))


@pytest.mark.slow
def test_stream_commits_backfills_and_expiry_from_processes_keep_each_event_once(tmp_path):
    """The stream's committer (with replays and re-read records), two range backfillers and an expirer commit to
    one table from four processes; every kept version and the final table hold each event once: the batch
    face's events inside the ranges it owns, each Kafka record once outside them."""
    from featurestore.stores import time_ranges
    from featurestore.stores.offline import OfflineTable

    root = str(tmp_path / "offline")
    staging = tmp_path / "staging"
    staging.mkdir()
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    jobs = [(_committer, (root, 61, 12, str(staging))), (_range_backfiller, (root, 62, 6)),
            (_range_backfiller, (root, 63, 6)), (_table_expirer, (root, 64, 6))]
    start = ctx.Barrier(len(jobs))
    procs = [ctx.Process(target=_run, args=(t, a, out, start)) for t, a in jobs]
    for p in procs:
        p.start()
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
    problems = [f"{who} {s}: {p}" for who, s, ps, _ in results for p in ps]
    assert problems == [], "\n".join(problems)

    table = OfflineTable(root, "t")
    owned = table.manifest()["batch_ranges"]
    batch = _batch_events()
    bts = batch.column("ts").cast(pa.int64()).to_numpy()
    expected = sorted(batch.column("eid").to_numpy()[time_ranges.inside(bts, owned)].tolist())
    next_offsets = {int(p): o for p, o in table.manifest()["stream"]["next_offsets"].items()}
    for part, end in next_offsets.items():
        expected += [-(part * 10**6 + o) - 1 for o in range(end)
                     if not time_ranges.inside(pa.array([_stream_ts(part, o)]).to_numpy(), owned)[0]]
    got = table.read().column("eid").to_pylist()
    assert sorted(got) == sorted(expected), "the table does not hold each event once"
    for m in table.history():
        eids = table.read(m["version"]).column("eid")
        assert len(eids) == len(pa.compute.unique(eids)), f"version {m['version']} holds an event twice"
    assert not list(Path(root, "t").rglob(".tmp-*"))
