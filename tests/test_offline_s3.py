"""The offline store on object storage (an ``s3://`` root), against the local S3-compatible server that
``infra/s3.sh`` starts (moto): the real S3 API calls a user's bucket gets, no in-process mocking.

Commits there have no rename: data files are uploaded under unique names, then the version manifest is
created with a conditional put (``If-None-Match: *``). These tests check the server refuses the second
put of a name, that two writers racing for one version both end up committed once (the loser re-bases),
and that readers outside the product read a table."""

from __future__ import annotations

import random
import threading
import uuid

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from featurestore.errors import OfflineStoreError
from featurestore.stores import offline_log
from featurestore.stores.object_store import S3Location
from featurestore.stores.offline import OfflineStore, OfflineTable
from featurestore.stores.offline_files import DAY_MS, TS_TYPE
from tests.services import s3_client


def events(rng: random.Random, n: int, lo: int, hi: int, writer: int) -> pa.Table:
    ts = sorted(rng.randrange(lo, hi) for _ in range(n))
    return pa.table({"ts": pa.array(ts, pa.int64()).cast(TS_TYPE),
                     "id": pa.array([f"w{writer}-{i}-{uuid.uuid4().hex[:6]}" for i in range(n)]),
                     "x": pa.array([rng.choice([None, -1.5, 0.0, 2.0**60, rng.random()]) for _ in range(n)],
                                   pa.float64())})


def live_keys(table: OfflineTable) -> set:
    return {f"{loc.parent.name}/{loc.name}" for loc, _ in table.path.list_files() if loc.name.endswith(".parquet")}


def test_the_server_refuses_a_second_conditional_put(s3_bucket):
    endpoint, bucket = s3_bucket
    loc = S3Location(bucket, f"probe-{uuid.uuid4().hex}/_log/00000001.json", endpoint)
    assert loc.create_exclusive(b'{"v": 1}')
    assert not loc.create_exclusive(b'{"v": 2}')  # 412 Precondition Failed
    assert loc.read_bytes() == b'{"v": 1}'  # the first stays


def test_two_writers_racing_for_one_version_both_commit_once(s3_root, monkeypatch):
    """Both writers plan version 1 on the same (empty) base and put its manifest at the same moment:
    the store takes exactly one, the other re-bases on it and commits version 2 with its own files."""
    barrier = threading.Barrier(2, timeout=60)
    real = OfflineTable._write_manifest
    raced = []

    def racing(self, version, manifest):
        if version == 1:
            barrier.wait()  # both have uploaded their files and now put _log/00000001.json together
            raced.append(version)
        return real(self, version, manifest)

    monkeypatch.setattr(OfflineTable, "_write_manifest", racing)
    rng = random.Random(7)
    data = [events(rng, 50, 0, 3 * DAY_MS, w) for w in range(2)]
    versions, errors = {}, []

    def write(w):
        try:
            versions[w] = OfflineTable(s3_root, "v").append(data[w])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert raced == [1, 1]  # they did race for version 1
    assert sorted(versions.values()) == [1, 2]
    table = OfflineTable(s3_root, "v")
    got = sorted(table.read().column("id").to_pylist())
    assert got == sorted(data[0].column("id").to_pylist() + data[1].column("id").to_pylist())
    first = table.manifest(1)
    winner = 0 if versions[0] == 1 else 1
    assert sorted(OfflineTable(s3_root, "v").read(1).column("id").to_pylist()) == sorted(
        data[winner].column("id").to_pylist())
    # the loser's files of its lost attempt were deleted: the live tree is exactly the latest version
    assert live_keys(table) == set(table.manifest()["files"])
    assert set(first["files"]) <= set(table.manifest()["files"])


def test_concurrent_writers_lose_no_update(s3_root):
    """Three writers, appends and range replacements interleaved freely: every version is the previous
    one plus that write (the equivalent serial order is the version order)."""
    n_writers, writes = 3, 3
    log, errors = [], []
    lock = threading.Lock()

    def writer(w):
        rng = random.Random(w)
        try:
            for i in range(writes):
                data = events(rng, rng.randrange(1, 30), 0, 4 * DAY_MS, w)
                table = OfflineTable(s3_root, "v")
                if rng.random() < 0.7:
                    v = table.append(data)
                    with lock:
                        log.append((v, "append", data, None))
                else:  # replace one whole day with these rows
                    day = rng.randrange(4)
                    rows = data.filter(pa.compute.equal(pa.compute.floor_temporal(data["ts"], unit="day"),
                                                        pa.scalar(day * DAY_MS, pa.int64()).cast(TS_TYPE)))
                    v = table.write_range(rows, day * DAY_MS, (day + 1) * DAY_MS)
                    with lock:
                        log.append((v, "replace", rows, day))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    log.sort(key=lambda e: e[0])
    assert [e[0] for e in log] == list(range(1, n_writers * writes + 1))  # no version taken twice
    expected: dict = {}
    table = OfflineTable(s3_root, "v")
    for v, kind, data, day in log:  # replay serially in version order
        if kind == "replace":
            expected = {k: t for k, t in expected.items() if t // DAY_MS != day}
        for k, t in zip(data.column("id").to_pylist(), data.column("ts").cast(pa.int64()).to_pylist()):
            expected[k] = t
        got = table.read(v)
        assert sorted(got.column("id").to_pylist()) == sorted(expected), f"version {v}"
    assert live_keys(table) == set(table.manifest()["files"])


def test_outside_readers_read_a_table(s3_root):
    """pyarrow (dataset over S3FileSystem, the hive layout) reads the live files = the latest version;
    DuckDB reads it through that dataset (its own httpfs reader is an extension it downloads)."""
    import duckdb

    rng = random.Random(3)
    table = OfflineTable(s3_root, "v")
    table.write_range(events(rng, 200, 0, 3 * DAY_MS, 0), 0, 3 * DAY_MS)
    table.write_range(events(rng, 40, DAY_MS, 2 * DAY_MS, 1), DAY_MS, 2 * DAY_MS)  # supersedes a day's file
    fs = s3_root.filesystem
    dataset = ds.dataset(f"{(s3_root / 'v').path}", filesystem=fs, format="parquet", partitioning="hive",
                         exclude_invalid_files=False, ignore_prefixes=["_", "."])
    got = dataset.to_table(columns=["ts", "id", "x"])
    want = table.read()
    key = lambda t: sorted(zip(t.column("id").to_pylist(), t.column("x").to_pylist()))  # noqa: E731
    assert key(got) == key(want)
    frame = pd.read_parquet((s3_root / "v").path, filesystem=fs, columns=["id", "x"])  # pandas, pyarrow engine
    assert sorted(zip(frame["id"], frame["x"].astype(object).where(frame["x"].notna(), None))) == key(want)
    one = pq.read_table(table.files()[0].removeprefix("s3://"), filesystem=fs)
    assert one.num_rows == table.manifest()["file_stats"][table.manifest()["files"][0]]["rows"]
    con = duckdb.connect()
    con.register("v", dataset)
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM v").fetchone() == (want.num_rows, want.num_rows)


def test_old_versions_stay_readable_and_expire_cleans_up(s3_root):
    rng = random.Random(5)
    table = OfflineTable(s3_root, "v")
    first = events(rng, 60, 0, 2 * DAY_MS, 0)
    table.write_range(first, 0, 2 * DAY_MS)
    table.write_range(events(rng, 10, 0, DAY_MS, 1), 0, DAY_MS)
    assert sorted(table.read(1).column("id").to_pylist()) == sorted(first.column("id").to_pylist())  # from _archive
    assert table.expire(1) == 1  # the superseded day-0 file of version 1
    with pytest.raises(OfflineStoreError, match="version 1 was expired"):
        table.read(1)
    assert table.read().num_rows == 10 + sum(1 for t in first.column("ts").cast(pa.int64()).to_pylist()
                                             if t >= DAY_MS)
    assert OfflineStore(s3_root).tables() == ["v"]


def test_a_store_that_ignores_conditional_puts_is_refused(s3_bucket, monkeypatch):
    """A store that answers 200 to a second ``If-None-Match: *`` put would let two writers both commit
    one version: the first commit in a process finds out (a probe) and refuses with one line."""
    from featurestore.stores import object_store

    endpoint, bucket = s3_bucket
    client = object_store._Client(endpoint, None)
    real_put = client.boto.put_object

    def ignoring(**kw):
        kw.pop("IfNoneMatch", None)
        return real_put(**kw)

    monkeypatch.setattr(client.boto, "put_object", ignoring)
    monkeypatch.setattr(object_store, "_client", lambda e, r: client)
    table = OfflineTable(S3Location(bucket, f"t-{uuid.uuid4().hex[:8]}", endpoint), "v")
    with pytest.raises(OfflineStoreError, match="ignores conditional writes"):
        table.append(events(random.Random(1), 3, 0, DAY_MS, 0))
    assert table.version is None


def test_a_bad_root_is_one_line(s3_bucket, tmp_path):
    endpoint, _ = s3_bucket
    with pytest.raises(OfflineStoreError, match="names no bucket"):
        OfflineStore("s3:///prefix")
    missing = OfflineTable(S3Location(f"no-such-bucket-{uuid.uuid4().hex[:8]}", "p", endpoint), "v")
    with pytest.raises(OfflineStoreError, match="cannot"):
        missing.append(events(random.Random(1), 3, 0, DAY_MS, 0))


def test_no_object_is_left_when_an_upload_fails(s3_root, monkeypatch):
    """A writer that fails after uploading some files (before its manifest) deletes what it uploaded."""
    calls = []
    real = S3Location.upload

    def flaky(self, local):
        calls.append(self)
        if len(calls) == 2:
            raise OfflineStoreError("network down")
        return real(self, local)

    monkeypatch.setattr(S3Location, "upload", flaky)
    table = OfflineTable(s3_root, "v")
    with pytest.raises(OfflineStoreError, match="network down"):
        table.append(events(random.Random(2), 30, 0, 3 * DAY_MS, 0))
    assert table.version is None
    assert live_keys(table) == set()
    assert not any(p.name.endswith(".parquet") for p in table._staging.rglob("*"))  # staged copies gone too


def test_the_root_and_endpoint_come_from_the_config(tmp_path):
    from featurestore.config import load_config

    (tmp_path / "featurestore.yaml").write_text("offline_store:\n  root: s3://bkt/some/prefix/\n"
                                                "  s3_endpoint: http://127.0.0.1:9\n")
    cfg = load_config(tmp_path, env={"FEATURESTORE_OFFLINE_S3_REGION": "eu-west-3"})
    assert cfg.offline_path == S3Location("bkt", "some/prefix", "http://127.0.0.1:9", "eu-west-3")
    assert str(cfg.offline_path / "proj" / "view") == "s3://bkt/some/prefix/proj/view"
    assert cfg.sources["offline_s3_endpoint"] == "file" and cfg.sources["offline_s3_region"] == "env"
    local = load_config(tmp_path, env={"FEATURESTORE_OFFLINE_ROOT": "data/offline"})
    assert local.offline_path == tmp_path / "data" / "offline"


def _racing_writer(root: S3Location, writer: int, barrier, out) -> None:
    """One writer process: appends its rows, putting the manifest of version 1 when the other does."""
    real = OfflineTable._write_manifest

    def racing(self, version, manifest):
        if version == 1:
            barrier.wait(60)
        return real(self, version, manifest)

    OfflineTable._write_manifest = racing
    data = events(random.Random(writer), 40, 0, 2 * DAY_MS, writer)
    out.put((writer, OfflineTable(root, "v").append(data), sorted(data.column("id").to_pylist())))


def test_two_writer_processes_racing_for_one_version(s3_root):
    """As above with two processes (each its own S3 clients, as two machines would be)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_racing_writer, args=(s3_root, w, barrier, out)) for w in range(2)]
    for p in procs:
        p.start()
    results = {}
    for _ in procs:
        writer, version, ids = out.get(timeout=180)
        results[writer] = (version, ids)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert sorted(v for v, _ in results.values()) == [1, 2]
    table = OfflineTable(s3_root, "v")
    assert sorted(table.read().column("id").to_pylist()) == sorted(results[0][1] + results[1][1])
    winner = next(w for w, (v, _) in results.items() if v == 1)
    assert sorted(table.read(1).column("id").to_pylist()) == results[winner][1]
    assert live_keys(table) == set(table.manifest()["files"])
