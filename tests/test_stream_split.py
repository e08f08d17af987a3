"""The committer's split of a source's staged files (the job's one Parquet sink per source) into the views'
staging folders: each view gets exactly its rows (flag), its columns under their stored names, in the order
the job wrote them; a split repeated after a crash adds nothing twice. No Flink: files as the job writes them."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.engines.flink import commit as stream_commit
from featurestore.engines.flink.commit import STAGED_LAYOUT, DirCommitter, StreamIdentity, split_staged

LAYOUT = {"format": 1, "source_columns": ["user_id", "amount", "ts"], "views": [
    {"name": "a", "fingerprint": "fa" * 8, "flag": "__v0",
     "columns": [["user_id", "user_id"], ["amount", "amount"], ["ts", "ts"], ["usd", "__v0_p0"]]},
    {"name": "b", "fingerprint": "fb" * 8, "flag": "__v1",
     "columns": [["user_id", "user_id"], ["amount", "amount"], ["ts", "ts"]]},
]}


def _staged_file(path: Path, rows) -> None:
    """rows: (user_id, amount, ts ms, in a, in b, partition, offset), as the job's staged sink writes them."""
    cols = list(zip(*rows))
    pq.write_table(pa.table({
        "user_id": pa.array(cols[0], pa.string()), "amount": pa.array(cols[1], pa.float64()),
        "ts": pa.array(cols[2], pa.timestamp("ms", tz="UTC")),
        "__v0": pa.array(cols[3], pa.bool_()),
        "__v0_p0": pa.array([x * 1.08 if a else None for x, a in zip(cols[1], cols[3])], pa.float64()),
        "__v1": pa.array(cols[4], pa.bool_()),
        "__kafka_partition": pa.array(cols[5], pa.int32()), "__kafka_offset": pa.array(cols[6], pa.int64()),
    }), path)


def _random_rows(rng: random.Random, n: int, first_offset: int = 0):
    rows = []
    for i in range(n):
        a, b = rng.random() < 0.6, rng.random() < 0.7
        if not (a or b):  # the job writes only events some view stores
            b = True
        rows.append((rng.choice(["u1", "u2", None]) if not a else rng.choice(["u1", "u2"]),
                     rng.choice([0.0, -1.5, 1e300, float("nan"), 3.25]), 1772323200000 + rng.randrange(10**8),
                     a, b, i % 3, first_offset + i))
    return rows


def test_split_gives_each_view_exactly_its_rows_in_order(tmp_path):
    rng = random.Random(7)
    staged = tmp_path / "_staged" / "src" / "abc"
    staged.mkdir(parents=True)
    (staged / STAGED_LAYOUT).write_text(json.dumps(LAYOUT))
    rows1, rows2 = _random_rows(rng, 300), _random_rows(rng, 200, 300)
    _staged_file(staged / "part-x-0-0", rows1)
    _staged_file(staged / "part-x-0-1", rows2)
    _staged_file(staged / ".part-x-0-2.inprogress.y", _random_rows(rng, 5, 500))  # never split: not visible

    def view_dir(view, fp):
        return tmp_path / view / fp[:12]

    assert split_staged(staged, view_dir) == 2
    assert sorted(p.name for p in staged.iterdir()) == [".part-x-0-2.inprogress.y", STAGED_LAYOUT]
    for name, rows in (("part-x-0-0", rows1), ("part-x-0-1", rows2)):
        a = pq.read_table(view_dir("a", "fa" * 8) / name)
        assert a.column_names == ["user_id", "amount", "ts", "usd", "__kafka_partition", "__kafka_offset"]
        assert a.column("ts").type == pa.timestamp("ms", tz="UTC")
        want = [(r[0], _nan(r[1]), r[2], _nan(r[1] * 1.08), r[5], r[6]) for r in rows if r[3]]
        assert _rows(a) == want
        b = pq.read_table(view_dir("b", "fb" * 8) / name)
        assert b.column_names == ["user_id", "amount", "ts", "__kafka_partition", "__kafka_offset"]
        assert _rows(b) == [(r[0], _nan(r[1]), r[2], r[5], r[6]) for r in rows if r[4]]


def _nan(x):
    return "nan" if x != x else x


def _rows(table) -> list:
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_timestamp(col.type):
            cols.append([x.value for x in col])
        else:
            cols.append([_nan(x) if isinstance(x, float) else x for x in col.to_pylist()])
    return list(zip(*cols))


def test_a_split_repeated_after_a_crash_adds_no_row_twice(tmp_path):
    """A crash after a view's file was committed (and deleted) but before the staged file was deleted: the
    next pass splits it again into the same name; the view's table does not add its rows again."""
    from featurestore.stores.offline import OfflineStore

    rng = random.Random(11)
    staged = tmp_path / "_staged" / "src" / "abc"
    staged.mkdir(parents=True)
    (staged / STAGED_LAYOUT).write_text(json.dumps(LAYOUT))
    rows = _random_rows(rng, 400)
    _staged_file(staged / "part-x-0-0", rows)
    saved = (staged / "part-x-0-0").read_bytes()

    def view_dir(view, fp):
        return tmp_path / view / fp[:12]

    tables = {v: OfflineStore(tmp_path / "offline").table(v, ts_column="ts") for v in ("a", "b")}
    committers = {v: DirCommitter(view_dir(v, LAYOUT["views"][i]["fingerprint"]), tables[v],
                                  StreamIdentity("t", LAYOUT["views"][i]["fingerprint"]))
                  for i, v in enumerate(("a", "b"))}
    split_staged(staged, view_dir)
    assert committers["a"].commit() == sum(1 for r in rows if r[3])
    (staged / "part-x-0-0").write_bytes(saved)  # the crash: the staged file was never deleted
    split_staged(staged, view_dir)
    assert committers["a"].commit() == 0  # its rows are in the table already
    assert committers["b"].commit() == sum(1 for r in rows if r[4])
    assert committers["b"].commit() == 0
    for v, flag in (("a", 3), ("b", 4)):
        stored = tables[v].read()
        assert stored.num_rows == sum(1 for r in rows if r[flag])
        assert "__kafka_offset" not in stored.column_names
    assert stream_commit.split_staged(staged, view_dir) == 0


def test_a_committer_of_some_views_splits_the_files_of_a_job_of_all(tmp_path):
    """The layout is written when the job starts, whoever commits: a committer of one view (``stream.commit(fs,
    views=[...])``) splits the job's files for every view of the layout, and commits only its own."""
    from featurestore.engines.flink import stream as streaming
    from featurestore.store import FeatureStore
    from tests.test_stream import make_repo, stream_events

    store = FeatureStore(make_repo(tmp_path / "repo", "fs_split_unused", "split_subset", stream_events()))
    names = streaming.stream_views(store)
    source = store.repo.views[names[0]].source.name
    stream_commit.write_staged_layouts(store, names)  # what stream.start / submit_remote do before the job runs
    staged = streaming.staged_dir(store, source, names)
    layout = json.loads((staged / STAGED_LAYOUT).read_text())
    n = 4
    cols = {c: pa.nulls(n) for v in layout["views"] for _, c in v["columns"]}
    cols.update({v["flag"]: pa.array([True, False, True, True]) for v in layout["views"]})
    cols.update({"__kafka_partition": pa.array([0] * n, pa.int32()), "__kafka_offset": pa.array(range(n), pa.int64())})
    pq.write_table(pa.table(cols), staged / "part-a-0-0")
    assert stream_commit.Committer(store, [names[0]]).split() == 1
    for v in layout["views"]:
        split = pq.read_table(streaming.staging_dir(store, v["name"]) / "part-a-0-0")
        assert split.column("__kafka_offset").to_pylist() == [0, 2, 3]
    assert not (staged / "part-a-0-0").exists()


def test_old_layouts_folders_go_once_split_and_never_before(tmp_path):
    """After definition changes (new layouts), a source's earlier staged folders are removed by the committer once
    every file is split out; a folder with a file not yet split or a job's file in progress stays; a folder whose
    layout went (a crash mid-removal, or a job of that layout writing there again) is still split by the kept copy."""
    from featurestore.engines.flink import stream as streaming
    from featurestore.store import FeatureStore
    from tests.stream_helpers import make_repo, stream_events

    rng = random.Random(17)
    store = FeatureStore(make_repo(tmp_path / "repo", "fs_layouts_unused", "layouts", stream_events()))
    names = streaming.stream_views(store)
    source = store.repo.views[names[0]].source.name
    root = streaming.staged_root(store, source)
    committer = stream_commit.Committer(store, names)
    current = streaming.staged_dir(store, source, names)
    layouts = {}  # folder name -> its layout: earlier jobs' (other flags and views)
    for i in range(6):
        layout = json.loads(json.dumps(LAYOUT))
        for v in layout["views"]:
            v["name"], v["fingerprint"] = f"{v['name']}{i}", f"{i:02d}" * 8
        folder = root / f"old{i:09d}"
        folder.mkdir(parents=True)
        (folder / STAGED_LAYOUT).write_text(json.dumps(layout))
        layouts[folder.name] = layout
    _staged_file(root / "old000000000" / "part-a-0-0", _random_rows(rng, 50))  # split, then removed
    _staged_file(root / "old000000001" / ".part-b-0-0.inprogress.x", _random_rows(rng, 5))  # a job's, in progress
    (root / "old000000003" / STAGED_LAYOUT).unlink()  # nothing at all (a removal that crashed after the layout went)
    assert committer.split() == 1
    left = sorted(p.name for p in root.iterdir() if not p.name.startswith("_"))
    assert left == sorted([current.name, "old000000001"]), left
    assert (root / "old000000001" / STAGED_LAYOUT).exists() and (current / STAGED_LAYOUT).exists()
    assert pq.read_table(streaming.staging_root(store) / "a0" / ("00" * 6) / "part-a-0-0").num_rows > 0
    # a job of a removed layout writes there again (Flink makes the folder): split by the kept layout, then gone
    rows = _random_rows(rng, 80, 1000)
    (root / "old000000002").mkdir()
    _staged_file(root / "old000000002" / "part-c-0-0", rows)
    (root / "old000000005").mkdir()  # and one whose removal crashed after its layout was kept, before rmdir
    _staged_file(root / "old000000005" / "part-d-0-0", rows)
    assert committer.split() == 2
    for folder, view in (("old000000002", "b2"), ("old000000005", "b5")):
        got = pq.read_table(streaming.staging_root(store) / view / layouts[folder]["views"][1]["fingerprint"][:12]
                            / f"part-{'c' if folder.endswith('2') else 'd'}-0-0")
        assert got.column("__kafka_offset").to_pylist() == [r[6] for r in rows if r[4]]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith("_")) == sorted(
        [current.name, "old000000001"])
