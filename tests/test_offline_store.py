"""The offline store: versioned Parquet tables, replace-by-range, glob readers, concurrency, retention."""

from __future__ import annotations

import errno
import hashlib
import json
import multiprocessing
import os
import re
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featurestore.errors import FeatureStoreError, OfflineStoreError
from featurestore.stores import offline, offline_files
from featurestore.stores.offline import DAY_MS, TS_TYPE, OfflineStore, OfflineTable

H = 3_600_000
T0 = int(datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp() * 1000)  # 2024-01-01T00:00Z
PART_RE = re.compile(r"^date=\d{4}-\d{2}-\d{2}/part-\d{8}-[0-9a-f]{8}\.parquet$")


def events(rows, extra=None):
    """rows: [(id, ts_ms, value)] -> an events table (user_id, ts, value[, extra columns])."""
    cols = {
        "user_id": pa.array([r[0] for r in rows], pa.string()),
        "ts": pa.array([r[1] for r in rows], TS_TYPE),
        "value": pa.array([r[2] for r in rows], pa.float64()),
    }
    for name, values in (extra or {}).items():
        cols[name] = values
    return pa.table(cols)


def rows_of(table: pa.Table):
    """Sorted (id, ts_ms, value) tuples of an events table (any row order, any ts representation)."""
    ts = table.column("ts").cast(TS_TYPE).cast(pa.int64()).to_pylist()
    return sorted(zip(table.column("user_id").to_pylist(), ts, table.column("value").to_pylist()))


def glob_rows_duckdb(table_dir: Path):
    con = duckdb.connect()
    files = list(table_dir.glob("date=*/part-*.parquet"))
    if not files:
        return []
    t = con.sql(f"select user_id, ts, value, date from read_parquet('{table_dir}/date=*/part-*.parquet', "
                f"hive_partitioning=true)").to_arrow_table()
    return rows_of(t)


def glob_rows_pyarrow(table_dir: Path):
    t = pads.dataset(str(table_dir), format="parquet", partitioning="hive").to_table()
    return rows_of(t) if t.num_rows else []


def glob_rows_pandas(table_dir: Path):
    df = pd.read_parquet(table_dir)
    if df.empty:
        return []
    return rows_of(pa.Table.from_pandas(df[["user_id", "ts", "value"]], preserve_index=False))


def version_digest(table: OfflineTable, version: int) -> str:
    h = hashlib.sha256()
    for f in table.files(version):
        h.update(Path(f).read_bytes())
    return h.hexdigest()


def no_temp_files(table_dir: Path):
    return [p for p in table_dir.rglob(".tmp-*")] == []


@pytest.fixture
def table(tmp_path):
    return OfflineTable(tmp_path / "offline", "events")


# ------------------------------------------------------------------------------------------------
# basics
# ------------------------------------------------------------------------------------------------
def test_write_read_roundtrip_layout_and_manifest(table):
    assert table.version is None
    rows = [("a", T0 + 1, 1.0), ("b", T0 + 5 * H, 2.0), ("a", T0 + DAY_MS + 7, 3.0), ("c", T0 + 2 * DAY_MS, None)]
    v = table.write_range(events(rows), T0, T0 + 3 * DAY_MS)
    assert v == 1 and table.version == 1
    out = table.read()
    assert out.schema == pa.schema([("user_id", pa.string()), ("ts", TS_TYPE), ("value", pa.float64())])
    assert rows_of(out) == sorted(rows)
    assert rows_of(table.read(1)) == sorted(rows)
    assert table.read(columns=["ts"]).column_names == ["ts"]

    m = table.manifest()
    assert m["version"] == 1 and m["operation"] == "write_range" and m["range"] == [T0, T0 + 3 * DAY_MS]
    assert m["rows"] == 4
    assert m["schema"] == [["user_id", "string"], ["ts", "timestamp[ms, tz=UTC]"], ["value", "double"]]
    assert sorted(m["files"]) == m["files"] and len(m["files"]) == 3 and all(PART_RE.match(f) for f in m["files"])
    assert [f.split("/")[0] for f in m["files"]] == ["date=2024-01-01", "date=2024-01-02", "date=2024-01-03"]
    assert all(f.split("/")[1].startswith("part-00000001-") for f in m["files"])
    assert json.loads((table.path / "_log" / "00000001.json").read_text()) == m
    assert table.files() == [str(table.path / f) for f in m["files"]]
    assert table.history() == [m]
    assert no_temp_files(table.path)

    # the Parquet encoding readers rely on: zstd, ts as INT64 TIMESTAMP(MILLIS, isAdjustedToUTC=true)
    pf = pq.ParquetFile(table.files()[0])
    assert pf.metadata.row_group(0).column(0).compression == "ZSTD"
    ts_col = pf.schema.column(pf.schema_arrow.get_field_index("ts"))
    assert ts_col.physical_type == "INT64"
    assert "isAdjustedToUTC=true" in str(ts_col.logical_type) and "timeUnit=milliseconds" in str(ts_col.logical_type)
    assert "date" not in pf.schema_arrow.names  # the partition lives in the path only

    assert OfflineStore(table.root).tables() == ["events"]
    assert OfflineStore(table.root / "missing").tables() == []


def test_accepts_streams_frames_and_other_timestamp_types(table):
    rows = [("a", T0 + 10, 1.0), ("b", T0 + DAY_MS + 20, 2.0), ("c", T0 + 30, 3.0)]
    t = events(rows)
    reader = pa.RecordBatchReader.from_batches(t.schema, iter(t.to_batches(max_chunksize=1)))
    table.write_range(reader, T0, T0 + 2 * DAY_MS)
    assert rows_of(table.read()) == sorted(rows)
    # a generator of batches, a pandas frame (ns timestamps), microsecond naive timestamps (floored)
    table.write_range((b for b in t.to_batches(max_chunksize=2)), T0, T0 + 2 * DAY_MS)
    assert rows_of(table.read()) == sorted(rows)
    table.write_range(t.to_pandas(), T0, T0 + 2 * DAY_MS)
    assert rows_of(table.read()) == sorted(rows)
    us = pa.array([(T0 + 10) * 1000 + 999, (T0 + 20) * 1000 + 1], pa.timestamp("us"))
    table.write_range(pa.table({"user_id": ["a", "b"], "ts": us, "value": [1.0, 2.0]}), T0, T0 + DAY_MS)
    assert rows_of(table.read()) == sorted([("a", T0 + 10, 1.0), ("b", T0 + 20, 2.0), ("b", T0 + DAY_MS + 20, 2.0)])
    assert table.read().schema.field("ts").type == TS_TYPE


def test_rewrite_replaces_range_and_keeps_rows_outside_it(table):
    day1 = [("a", T0 + h * H, float(h)) for h in range(0, 24, 3)]
    day2 = [("b", T0 + DAY_MS + h * H, float(h)) for h in range(0, 24, 3)]
    day3 = [("c", T0 + 2 * DAY_MS + h * H, float(h)) for h in range(0, 24, 3)]
    table.write_range(events(day1 + day2 + day3), T0, T0 + 3 * DAY_MS)
    before = {f.split("/")[0]: f for f in table.manifest()["files"]}

    # [day1 10:00, day3 05:00): day2 fully inside, day1 and day3 partly covered
    start, end = T0 + 10 * H, T0 + 2 * DAY_MS + 5 * H
    new = [("z", T0 + 11 * H, 100.0), ("z", T0 + DAY_MS + 1, 101.0), ("z", T0 + 2 * DAY_MS + 4 * H, 102.0)]
    v = table.write_range(events(new), start, end)
    expected = sorted([r for r in day1 + day2 + day3 if not start <= r[1] < end] + new)
    assert rows_of(table.read()) == expected
    assert glob_rows_duckdb(table.path) == expected

    # re-running the same range with the same data: same rows, no duplicates
    v2 = table.write_range(events(new), start, end)
    assert v2 == v + 1
    assert rows_of(table.read()) == expected
    assert glob_rows_duckdb(table.path) == expected
    m = table.manifest()
    assert m["operation"] == "write_range" and m["range"] == [start, end] and m["rows"] == len(expected)
    # every original file was superseded (all three dates intersect the range) and archived
    assert all(not (table.path / f).exists() and (table._archive / f).exists() for f in before.values())

    # a range that touches a file without covering any of its rows keeps that file as is
    untouched = [f for f in m["files"] if f.startswith("date=2024-01-03")]
    table.write_range(events([]), T0 + 2 * DAY_MS + 23 * H + 1, T0 + 2 * DAY_MS + 23 * H + 2)
    assert set(untouched) <= set(table.manifest()["files"])


def test_data_outside_the_range_is_rejected_and_nothing_is_committed(table):
    table.write_range(events([("a", T0 + 1, 1.0)]), T0, T0 + DAY_MS)
    bad = events([("a", T0 + 2, 1.0), ("b", T0 + 4 * DAY_MS + 4 * H, 2.0), ("c", T0 - 1, 3.0)])
    with pytest.raises(OfflineStoreError) as e:
        table.write_range(bad, T0, T0 + DAY_MS)
    assert str(e.value) == ("offline table 'events': row with ts 2024-01-05T04:00:00.000Z is outside the write "
                            "range [2024-01-01T00:00:00.000Z, 2024-01-02T00:00:00.000Z)")
    assert isinstance(e.value, FeatureStoreError)
    # the first offending row in stream order, even when an earlier batch was already written
    batches = [events([("a", T0 + 5, 1.0)]).to_batches()[0], events([("x", T0 - 1, 1.0)]).to_batches()[0]]
    with pytest.raises(OfflineStoreError, match=r"row with ts 2023-12-31T23:59:59.999Z is outside"):
        table.write_range(iter(batches), T0, T0 + DAY_MS)
    assert table.version == 1 and rows_of(table.read()) == [("a", T0 + 1, 1.0)]
    assert no_temp_files(table.path)
    assert sorted(p.name for p in (table.path / "date=2024-01-01").iterdir()) == [
        Path(table.manifest()["files"][0]).name]


def test_empty_data_deletes_the_range_and_empty_tables_keep_their_schema(table):
    rows = [("a", T0 + 1, 1.0), ("b", T0 + DAY_MS + 1, 2.0)]
    table.write_range(events(rows), T0, T0 + 2 * DAY_MS)
    v = table.write_range(events([]), T0, T0 + DAY_MS)
    assert v == 2 and rows_of(table.read()) == [("b", T0 + DAY_MS + 1, 2.0)]
    v = table.write_range(iter([]), T0, T0 + 2 * DAY_MS)  # no batches at all: still a version
    assert v == 3 and table.files() == [] and table.manifest()["rows"] == 0
    empty = table.read()
    assert empty.num_rows == 0 and empty.schema == events([]).schema
    assert glob_rows_duckdb(table.path) == [] and glob_rows_pyarrow(table.path) == []
    fresh = OfflineTable(table.root, "fresh")
    assert fresh.write_range(iter([]), T0, T0 + 1) == 1
    assert fresh.read().schema == pa.schema([("ts", TS_TYPE)])


def test_invalid_input_errors(table, tmp_path):
    for bad_name in ["", "a/b", "../x", "_log", ".hidden", "x" * 201]:
        with pytest.raises(OfflineStoreError, match="invalid offline table name"):
            OfflineTable(tmp_path, bad_name)
    with pytest.raises(OfflineStoreError, match=r"empty write range \[2024-01-01T00:00:00.000Z, "
                                                r"2024-01-01T00:00:00.000Z\): start_ms must be before end_ms"):
        table.write_range(events([]), T0, T0)
    with pytest.raises(OfflineStoreError, match=r"^offline table 'events': data has no 'ts' column"):
        table.write_range(pa.table({"x": [1]}), T0, T0 + 1)
    with pytest.raises(OfflineStoreError, match="column 'ts' must be a timestamp, got int64"):
        table.write_range(pa.table({"ts": [T0]}), T0, T0 + 1)
    with pytest.raises(OfflineStoreError, match="column 'date' is reserved for the date partition"):
        table.write_range(events([("a", T0, 1.0)], {"date": pa.array(["x"])}), T0, T0 + 1)
    with pytest.raises(OfflineStoreError, match=r"1 row\(s\) have a null 'ts'"):
        table.write_range(pa.table({"ts": pa.array([None], TS_TYPE)}), T0, T0 + 1)
    with pytest.raises(OfflineStoreError, match="data must be a pyarrow Table"):
        table.write_range(42, T0, T0 + 1)
    table.write_range(events([("a", T0, 1.0)]), T0, T0 + 1)
    with pytest.raises(OfflineStoreError, match="column 'value' is string in the new data but double in the table"):
        table.append(pa.table({"user_id": ["a"], "ts": pa.array([T0], TS_TYPE), "value": ["x"]}))
    with pytest.raises(OfflineStoreError, match=r"version 7 does not exist \(latest is 1\)"):
        table.read(7)
    with pytest.raises(OfflineStoreError, match=r"unknown column\(s\) \['nope'\]"):
        table.read(columns=["nope"])
    with pytest.raises(OfflineStoreError, match="never written"):
        OfflineTable(tmp_path, "nothing").read()
    assert table.version == 1 and no_temp_files(table.path)


def test_schema_evolution_adds_columns_as_nulls_for_old_rows(table):
    table.write_range(events([("a", T0 + 1, 1.0)]), T0, T0 + DAY_MS)
    table.write_range(events([("b", T0 + DAY_MS + 1, 2.0)], {"extra": pa.array([7], pa.int64())}),
                      T0 + DAY_MS, T0 + 2 * DAY_MS)
    out = table.read().sort_by("ts")
    assert out.column_names == ["user_id", "ts", "value", "extra"]
    assert out.column("extra").to_pylist() == [None, 7]
    assert table.read(columns=["extra"]).column("extra").to_pylist() in ([None, 7], [7, None])
    assert table.read(1).column_names == ["user_id", "ts", "value"]


def test_streaming_writes_bound_row_groups_and_open_files(table, monkeypatch):
    monkeypatch.setattr(offline_files, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(offline_files, "MAX_ROWS_PER_FILE", 3000)
    monkeypatch.setattr(offline_files, "MAX_OPEN_FILES", 2)
    monkeypatch.setattr(offline_files, "MAX_BUFFERED_BYTES", 64 << 10)
    n = 20_000

    def batches():  # 4 dates interleaved, 500 rows a batch: never all in memory
        for i in range(0, n, 500):
            ids = range(i, i + 500)
            yield events([(f"u{j}", T0 + (j % 4) * DAY_MS + j, float(j)) for j in ids]).to_batches()[0]

    v = table.write_range(batches(), T0, T0 + 4 * DAY_MS)
    out = table.read()
    assert out.num_rows == n and sorted(out.column("value").to_pylist()) == [float(j) for j in range(n)]
    files = table.files(v)
    assert len(files) > 4  # LRU closing and rollover made several files per date
    for f in files:
        md = pq.ParquetFile(f).metadata
        assert md.num_rows <= 3000 + 1000
        assert all(md.row_group(i).num_rows <= 1000 for i in range(md.num_row_groups))
    stats = table.manifest()["file_stats"]
    assert sum(s["rows"] for s in stats.values()) == n
    for rel, s in stats.items():
        t = pq.read_table(table.path / rel)
        ms = t.column("ts").cast(pa.int64()).to_pylist()
        assert (s["rows"], s["min_ts"], s["max_ts"]) == (len(ms), min(ms), max(ms))
        assert all(m // DAY_MS == offline._day_of_rel(rel) for m in ms)


def test_a_custom_timestamp_column_is_recorded(tmp_path):
    t = OfflineStore(tmp_path).table("tx", ts_column="event_time")
    data = pa.table({"k": ["a", "b"], "event_time": pa.array([T0 + 1, T0 + DAY_MS], TS_TYPE)})
    t.write_range(data, T0, T0 + 2 * DAY_MS)
    assert t.manifest()["ts_column"] == "event_time" and len(t.files()) == 2
    assert OfflineTable(tmp_path, "tx").ts_column == "event_time"  # later handles read it from the manifest
    assert OfflineTable(tmp_path, "tx").write_range(data, T0, T0 + 2 * DAY_MS) == 2
    with pytest.raises(OfflineStoreError, match="its timestamp column is 'event_time', not 'ts'"):
        OfflineTable(tmp_path, "tx", ts_column="ts").write_range(data, T0, T0 + 2 * DAY_MS)
    with pytest.raises(OfflineStoreError, match=r"row with event_time 2024-01-02T00:00:00.000Z is outside the"):
        t.write_range(data, T0, T0 + DAY_MS)


def test_commits_without_hard_links_are_still_exclusive(table, monkeypatch):
    def no_link(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(offline.os, "link", no_link)
    assert table.write_range(events([("a", T0, 1.0)]), T0, T0 + 1) == 1
    with pytest.raises(FileExistsError):
        table._write_manifest(1, {"version": 1})
    assert table.manifest(1)["rows"] == 1 and table.append(events([("b", T0, 2.0)])) == 2
    assert [p.name for p in (table.path / "_log").iterdir() if p.name.startswith(".")] == []


# ------------------------------------------------------------------------------------------------
# versions, archive, expire
# ------------------------------------------------------------------------------------------------
def test_versions_stay_readable_and_bit_identical_until_expired(table):
    v1_rows = [("a", T0 + h * H, float(h)) for h in range(48)]
    table.write_range(events(v1_rows), T0, T0 + 2 * DAY_MS)
    digest1, files1 = version_digest(table, 1), table.manifest(1)["files"]

    table.write_range(events([("b", T0 + 5 * H, 9.0)]), T0, T0 + DAY_MS)  # replaces day 1
    table.write_range(events([("c", T0 + DAY_MS + 30, 8.0)]), T0 + DAY_MS, T0 + DAY_MS + H)  # splits day 2
    v4 = table.append(events([("d", T0 + 3 * DAY_MS, 7.0)]))
    assert v4 == 4 and [m["version"] for m in table.history()] == [1, 2, 3, 4]
    assert [m["operation"] for m in table.history()] == ["write_range", "write_range", "write_range", "append"]

    # version 1: every file was superseded and moved to _archive, the bytes and rows are unchanged
    assert all((table._archive / f).exists() and not (table.path / f).exists() for f in files1)
    assert all("/_archive/" in f for f in table.files(1))
    assert version_digest(table, 1) == digest1
    assert rows_of(table.read(1)) == sorted(v1_rows)
    assert rows_of(table.read(2)) == sorted([("b", T0 + 5 * H, 9.0)] + [r for r in v1_rows if r[1] >= T0 + DAY_MS])
    latest = sorted([("b", T0 + 5 * H, 9.0), ("c", T0 + DAY_MS + 30, 8.0), ("d", T0 + 3 * DAY_MS, 7.0)]
                    + [r for r in v1_rows if r[1] >= T0 + DAY_MS + H])
    assert rows_of(table.read()) == latest
    assert glob_rows_duckdb(table.path) == latest

    # expire: keep versions 3 and 4
    live_and_archived = set(table.path.rglob("part-*.parquet")) | set(table._archive.rglob("part-*.parquet"))
    needed = {table.path / f for v in (3, 4) for f in table.manifest(v)["files"]}
    needed_archived = {table._archive / f for v in (3, 4) for f in table.manifest(v)["files"]}
    deleted = table.expire(keep_last=2)
    remaining = {p for p in table.path.rglob("part-*.parquet")}
    assert remaining == {p for p in live_and_archived if p in needed or p in needed_archived}
    assert deleted == len(live_and_archived) - len(remaining) > 0
    assert sorted(p.name for p in (table.path / "_log").iterdir()) == ["00000003.json", "00000004.json"]
    with pytest.raises(OfflineStoreError, match=r"^offline table 'events': version 1 was expired "
                                                r"\(oldest kept version is 3\)$"):
        table.read(1)
    assert rows_of(table.read()) == latest
    assert rows_of(table.read(3)) == sorted(r for r in latest if r[0] != "d")
    assert table.expire(keep_last=2) == 0
    assert table.expire(keep_last=1) == 0  # version 4 (an append) still uses every file of version 3
    assert [m["version"] for m in table.history()] == [4]
    assert not list((table._archive).rglob("*.parquet"))  # the latest version has only live files
    with pytest.raises(OfflineStoreError, match="keep_last must be at least 1"):
        table.expire(0)


def test_a_reader_of_a_version_finds_files_moved_to_the_archive_mid_read(table, monkeypatch):
    table.write_range(events([("a", T0 + 1, 1.0), ("b", T0 + DAY_MS, 2.0)]), T0, T0 + 2 * DAY_MS)
    files = table.manifest(1)["files"]
    real_open = offline.OfflineTable._open

    def open_after_a_commit(self, rel, version):  # a writer archives the file between manifest and open
        if not (self.path / "_archive" / rel).exists() and rel == files[0]:
            monkeypatch.setattr(offline.OfflineTable, "_open", real_open)
            OfflineTable(self.root, self.name).write_range(events([]), T0, T0 + 2 * DAY_MS)
        return real_open(self, rel, version)

    monkeypatch.setattr(offline.OfflineTable, "_open", open_after_a_commit)
    assert rows_of(table.read(1)) == [("a", T0 + 1, 1.0), ("b", T0 + DAY_MS, 2.0)]
    assert table.version == 2 and table.read().num_rows == 0


def test_expire_tidies_up_after_crashed_writers(table):
    table.write_range(events([("a", T0 + 1, 1.0)]), T0, T0 + DAY_MS)
    table.write_range(events([("b", T0 + 2, 2.0)]), T0, T0 + DAY_MS)
    day = table.path / "date=2024-01-01"
    # crash after commit 2, before archiving: put version 1's file back in the live tree
    (rel1,) = table.manifest(1)["files"]
    os.rename(table._archive / rel1, table.path / rel1)
    # crash mid-commit: an uncommitted part file and temp files, some old, some fresh
    old = time.time() - 2 * offline.ORPHAN_GRACE_SECONDS
    stale_part, fresh_part = day / "part-00000003-0badc0de.parquet", day / "part-00000003-00c0ffee.parquet"
    stale_tmp, fresh_tmp = day / ".tmp-aaaa", day / ".tmp-bbbb"
    stale_log = table.path / "_log" / ".tmp-cccc"
    for p in (stale_part, fresh_part, stale_tmp, fresh_tmp, stale_log):
        p.write_bytes(b"x")
    for p in (stale_part, stale_tmp, stale_log):
        os.utime(p, (old, old))
    assert table.expire(keep_last=2) == 1  # the stale uncommitted part
    assert (table._archive / rel1).exists() and not (table.path / rel1).exists()
    assert not stale_part.exists() and not stale_tmp.exists() and not stale_log.exists()
    assert fresh_part.exists() and fresh_tmp.exists()  # may belong to a writer committing right now
    assert rows_of(table.read(1)) == [("a", T0 + 1, 1.0)] and rows_of(table.read()) == [("b", T0 + 2, 2.0)]
    os.rename(table._archive / rel1, table.path / rel1)
    assert table.expire(keep_last=1) == 1  # version 1's file, left live by a crash, now expired
    assert not (table.path / rel1).exists()


# ------------------------------------------------------------------------------------------------
# readers that do not use this library
# ------------------------------------------------------------------------------------------------
def test_glob_and_dataset_readers_see_exactly_the_current_rows(table):
    model = []
    steps = [
        ("range", [("a", T0 + h * H, float(h)) for h in range(0, 72, 5)], T0, T0 + 3 * DAY_MS),
        ("range", [("b", T0 + 20 * H, 1.0), ("b", T0 + 30 * H, 2.0)], T0 + 12 * H, T0 + 36 * H),
        ("append", [("c", T0 + 4 * DAY_MS, 3.0), ("c", T0 + 10 * H, 4.0)], None, None),
        ("range", [], T0 + DAY_MS, T0 + 2 * DAY_MS),
        ("range", [("d", T0 + 50 * H, 5.0)], T0, T0 + 5 * DAY_MS),
    ]
    for kind, rows, start, end in steps:
        if kind == "range":
            table.write_range(events(rows), start, end)
            model = [r for r in model if not start <= r[1] < end] + rows
        else:
            table.append(events(rows))
            model = model + rows
        expected = sorted(model)
        assert rows_of(table.read()) == expected
        assert glob_rows_duckdb(table.path) == expected
        assert glob_rows_pyarrow(table.path) == expected
        assert glob_rows_pandas(table.path) == expected
    # the hive partition column is the UTC date of ts
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    bad = con.sql(f"select count(*) from read_parquet('{table.path}/date=*/part-*.parquet', hive_partitioning=true) "
                  f"where cast(date as date) <> cast(ts as date)").fetchall()
    assert bad == [(0,)]
    # an old version through DuckDB with the manifest only (docs/offline-store.md)
    m = json.loads((table.path / "_log" / "00000001.json").read_text())
    paths = [str(table.path / r) if (table.path / r).exists() else str(table._archive / r)
             for r in m["files"]]
    got = con.sql(f"select user_id, ts, value from read_parquet({paths!r})").to_arrow_table()
    assert rows_of(got) == sorted(steps[0][1])
    # ... and in SQL alone: the live and archived files, kept when the manifest lists them
    con.execute(f"SET VARIABLE files = (SELECT files FROM read_json('{table.path}/_log/00000002.json'))")
    got = con.sql(f"""
        SELECT user_id, ts, value FROM read_parquet(
            ['{table.path}/date=*/part-*.parquet', '{table._archive}/date=*/part-*.parquet'],
            filename = true, hive_partitioning = true)
        WHERE list_contains(getvariable('files'), regexp_extract(filename, 'date=[^/]+/part-[^/]+[.]parquet$'))
    """).to_arrow_table()
    assert rows_of(got) == rows_of(table.read(2))
    log = f"{table.path}/_log/*.json"
    history = con.sql(f"SELECT version, operation, rows FROM read_json('{log}') ORDER BY 1").fetchall()
    assert history == [(m["version"], m["operation"], m["rows"]) for m in table.history()]
    # dask (Feast's file offline store) with the glob (the archive is outside the table folder)
    import dask.dataframe as dd

    got = dd.read_parquet(f"{table.path}/date=*/part-*.parquet").compute()
    assert rows_of(pa.Table.from_pandas(got[["user_id", "ts", "value"]], preserve_index=False)) == sorted(model)


# ------------------------------------------------------------------------------------------------
# streaming sink: append / add_files, idempotent per app
# ------------------------------------------------------------------------------------------------
def test_append_and_add_files_are_idempotent_per_app(table, tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    one_day = staging / "a.parquet"
    pq.write_table(events([("a", T0 + 1, 1.0), ("a", T0 + 2, 2.0)]), one_day)
    us = pa.table({"user_id": ["b", "b"], "ts": pa.array([(T0 + 5) * 1000, (T0 + DAY_MS + 5) * 1000],
                                                        pa.timestamp("us", "UTC")), "value": [3.0, 4.0]})
    two_days = staging / "b.parquet"
    pq.write_table(us, two_days)
    inode = one_day.stat().st_ino

    v = table.add_files([one_day, two_days], app_id="stream-job", seq=1)
    assert v == 1 and table.manifest()["operation"] == "add_files"
    assert rows_of(table.read()) == sorted([("a", T0 + 1, 1.0), ("a", T0 + 2, 2.0), ("b", T0 + 5, 3.0),
                                            ("b", T0 + DAY_MS + 5, 4.0)])
    assert not one_day.exists() and not two_days.exists()
    moved = [f for f in table.files() if os.stat(f).st_ino == inode]
    assert len(moved) == 1 and "date=2024-01-01/part-00000001-" in moved[0]  # moved as is, not rewritten
    assert all(PART_RE.match(f) for f in table.manifest()["files"]) and len(table.files()) == 3
    assert table.manifest()["txns"] == {"stream-job": {"seq": 1, "version": 1}}

    # a restarted job re-commits checkpoint 1: nothing happens, its files are left alone
    pq.write_table(events([("z", T0 + 9, 9.0)]), one_day)
    assert table.add_files([one_day], app_id="stream-job", seq=1) == 1
    assert table.version == 1 and one_day.exists()
    assert table.append(events([("z", T0 + 9, 9.0)]), app_id="stream-job", seq=1) == 1
    assert table.append(events([("e", T0 + 3, 5.0)]), app_id="stream-job", seq=2) == 2
    assert table.append(events([("e", T0 + 3, 5.0)]), app_id="stream-job", seq=2) == 2
    assert table.append(events([("f", T0 + 4, 6.0)]), app_id="other", seq=1) == 3
    assert table.manifest()["txns"] == {"stream-job": {"seq": 2, "version": 2}, "other": {"seq": 1, "version": 3}}
    assert table.read().num_rows == 6

    # a bad file: nothing moves, nothing commits
    broken = staging / "broken.parquet"
    broken.write_bytes(b"not parquet")
    with pytest.raises(OfflineStoreError, match=r"broken.parquet: not a readable Parquet file"):
        table.add_files([one_day, broken])
    assert one_day.exists() and table.version == 3
    with pytest.raises(OfflineStoreError, match="app_id .* and seq .* go together"):
        table.append(events([]), app_id="x")


# ------------------------------------------------------------------------------------------------
# concurrency
# ------------------------------------------------------------------------------------------------
def test_compare_and_set_appends_never_commit_an_item_twice(table):
    """Writers that each append "the items after the recorded position" with ``after_seq`` (the log
    shipper's protocol) commit every item exactly once however they race; the plain idempotent ``seq``
    alone would not (a writer holding items 1..5 commits after another committed 1..3)."""
    import random as _random

    items = [("k", T0 + i, float(i)) for i in range(1, 121)]
    conflicts, errors = [], []

    def writer(seed):
        rng = _random.Random(seed)
        try:
            while True:
                pos = table.app_seq("q")
                start = pos or 0
                if start >= len(items):
                    return
                end = min(len(items), start + rng.randint(1, 9))
                time.sleep(rng.uniform(0, 0.003))
                try:
                    table.append(events(items[start:end]), app_id="q", seq=end, after_seq=pos)
                except offline.CommitConflict:
                    conflicts.append(seed)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(rows_of(table.read())) == sorted(items)  # each exactly once
    assert table.app_seq("q") == len(items) and conflicts  # they did collide
    with pytest.raises(offline.CommitConflict, match="q is at seq 120, not 7"):
        table.append(events(items[:1]), app_id="q", seq=121, after_seq=7)
    assert table.app_seq("never") is None and table.read().num_rows == len(items)


def test_a_losing_writer_rebases_on_the_winner(table, monkeypatch):
    """Deterministic conflict: while A commits, B commits a change to the same date first."""
    base = [("a", T0 + h * H, float(h)) for h in range(24)]
    table.write_range(events(base), T0, T0 + DAY_MS)
    real_write_manifest = offline.OfflineTable._write_manifest
    calls = []

    def interleave(self, version, manifest):
        calls.append(version)
        if len(calls) == 1:  # B (same date, overlapping range) sneaks in before A's first attempt
            monkeypatch.setattr(offline.OfflineTable, "_write_manifest", real_write_manifest)
            other = OfflineTable(self.root, self.name)
            other.write_range(events([("b", T0 + 7 * H, 70.0), ("b", T0 + 15 * H, 150.0)]), T0 + 6 * H, T0 + 16 * H)
            monkeypatch.setattr(offline.OfflineTable, "_write_manifest", interleave)
        return real_write_manifest(self, version, manifest)

    monkeypatch.setattr(offline.OfflineTable, "_write_manifest", interleave)
    v = table.write_range(events([("a2", T0 + 12 * H, 120.0)]), T0 + 10 * H, T0 + 20 * H)
    assert calls == [2, 3] and v == 3
    # equivalent to B then A, one after the other
    after_b = [r for r in base if not T0 + 6 * H <= r[1] < T0 + 16 * H] + [("b", T0 + 7 * H, 70.0),
                                                                           ("b", T0 + 15 * H, 150.0)]
    expected = sorted([r for r in after_b if not T0 + 10 * H <= r[1] < T0 + 20 * H] + [("a2", T0 + 12 * H, 120.0)])
    assert rows_of(table.read()) == expected
    assert glob_rows_duckdb(table.path) == expected
    assert no_temp_files(table.path)
    assert [p.name for p in (table.path / "_log").iterdir() if p.name.startswith(".")] == []


def _check_serial_history(table: OfflineTable, writes: dict):
    """Each version's rows equal the previous version's with that commit's range replaced by its data."""
    history = table.history()
    assert [m["version"] for m in history] == list(range(1, len(history) + 1))
    model = []
    for m in history:
        start, end = m["range"]
        model = [r for r in model if not start <= r[1] < end] + writes[(start, end)]
        assert rows_of(table.read(m["version"])) == sorted(model)
    return sorted(model)


def test_threads_writing_different_and_overlapping_ranges(table):
    n_threads, per_thread = 6, 3
    writes, errors = {}, []

    def work(i):
        try:
            for k in range(per_thread):
                day = i * per_thread + k
                start = T0 + day * DAY_MS
                rows = [(f"t{i}", start + j * H, float(k)) for j in range(5)]
                assert OfflineTable(table.root, table.name).write_range(events(rows), start, start + DAY_MS) > 0
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    for i in range(n_threads):
        for k in range(per_thread):
            start = T0 + (i * per_thread + k) * DAY_MS
            writes[(start, start + DAY_MS)] = [(f"t{i}", start + j * H, float(k)) for j in range(5)]
    threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert table.version == n_threads * per_thread
    expected = _check_serial_history(table, writes)
    assert len(expected) == n_threads * per_thread * 5
    assert glob_rows_duckdb(table.path) == expected and glob_rows_pyarrow(table.path) == expected

    # overlapping: every thread replaces the same partly-covered range; the last committer wins
    keep = [("keep", T0 + h * H, -1.0) for h in range(0, 24, 2)]
    table.write_range(events(keep), T0, T0 + DAY_MS)
    start, end = T0 + 5 * H, T0 + 17 * H
    barrier = threading.Barrier(n_threads)
    versions = {}

    def overlap(i):
        try:
            rows = [(f"w{i}", start + j * H, float(i)) for j in range(3)]
            barrier.wait()
            versions[i] = OfflineTable(table.root, table.name).write_range(events(rows), start, end)
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=overlap, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(versions.values()) == list(range(table.version - n_threads + 1, table.version + 1))
    winner = max(versions, key=versions.get)
    expected_day = sorted([r for r in keep if not start <= r[1] < end]
                          + [(f"w{winner}", start + j * H, float(winner)) for j in range(3)])
    assert [r for r in rows_of(table.read()) if r[1] < T0 + DAY_MS] == expected_day
    assert [r for r in glob_rows_duckdb(table.path) if r[1] < T0 + DAY_MS] == expected_day
    assert no_temp_files(table.path)


def _process_writer(root: str, name: str, worker: int, days: int, durable: bool):
    offline_files.DURABLE = durable
    t = OfflineTable(root, name)
    out = []
    for k in range(days):
        start = T0 + (worker * days + k) * DAY_MS
        rows = [(f"p{worker}", start + j * 1000, float(k)) for j in range(50)]
        out.append(t.write_range(events(rows), start, start + DAY_MS))
        out.append(t.append(events([(f"p{worker}-append", start + DAY_MS // 2, float(k))])))
    return out


def test_processes_writing_different_ranges_at_once(table):
    workers, days = 4, 3
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        results = pool.starmap(_process_writer, [(str(table.root), table.name, w, days, offline_files.DURABLE)
                                                 for w in range(workers)])
    versions = sorted(v for r in results for v in r)
    assert versions == list(range(1, workers * days * 2 + 1))  # every commit got its own version
    assert all(r == sorted(r) for r in results)  # strictly increasing per writer
    expected = sorted((f"p{w}", T0 + (w * days + k) * DAY_MS + j * 1000, float(k))
                      for w in range(workers) for k in range(days) for j in range(50))
    expected = sorted(expected + [(f"p{w}-append", T0 + (w * days + k) * DAY_MS + DAY_MS // 2, float(k))
                                  for w in range(workers) for k in range(days)])
    assert rows_of(table.read()) == expected  # no lost update
    assert glob_rows_duckdb(table.path) == expected
    assert no_temp_files(table.path)
    assert table.manifest()["rows"] == len(expected)


# ------------------------------------------------------------------------------------------------
# property: any sequence of writes equals a simple in-memory model
# ------------------------------------------------------------------------------------------------
HOURS = 4 * 24
op_strategy = st.one_of(
    st.tuples(st.just("range"), st.integers(0, HOURS - 1), st.integers(1, HOURS),
              st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 10_000), st.integers(0, 9)), max_size=8)),
    st.tuples(st.just("append"), st.just(0), st.just(0),
              st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, HOURS * H - 1), st.integers(0, 9)),
                       max_size=4)),
    st.tuples(st.just("expire"), st.integers(1, 3), st.just(0), st.just([])),
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op_strategy, min_size=1, max_size=7))
def test_random_writes_match_an_in_memory_model(ops):
    durable, offline_files.DURABLE = offline_files.DURABLE, False
    try:
        with tempfile.TemporaryDirectory() as d:
            table = OfflineTable(d, "prop")
            model, snapshots, kept_from = [], {}, 1
            for kind, a, b, raw in ops:
                if kind == "range":
                    start = T0 + a * H
                    end = min(T0 + HOURS * H, start + b * H)
                    span = end - start
                    rows = [(u, start + (x * span) // 10_001, float(val)) for u, x, val in raw]
                    v = table.write_range(events(rows), start, end)
                    model = [r for r in model if not start <= r[1] < end] + rows
                elif kind == "append":
                    rows = [(u, T0 + x, float(val)) for u, x, val in raw]
                    v = table.append(events(rows))
                    model = model + rows
                else:
                    if table.version is not None:
                        table.expire(keep_last=a)
                        kept_from = max(kept_from, table.version - a + 1)
                    continue
                snapshots[v] = sorted(model)
                assert rows_of(table.read()) == snapshots[v]
            for v, expected in snapshots.items():
                if v >= kept_from:
                    assert rows_of(table.read(v)) == expected
                else:
                    with pytest.raises(OfflineStoreError, match="was expired"):
                        table.read(v)
            if snapshots:
                assert glob_rows_duckdb(table.path) == sorted(model)
                assert table.manifest()["rows"] == len(model)
            assert no_temp_files(table.path)
    finally:
        offline_files.DURABLE = durable
