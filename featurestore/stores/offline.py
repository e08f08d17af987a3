"""The offline store: one versioned, append/replace-by-range Parquet table of events per feature view.

Layout of a table (full description, readable without this library: ``docs/offline-store.md``)::

    <root>/<table>/date=YYYY-MM-DD/part-<version:08d>-<uuid8>.parquet   live files (hive partition, UTC)
    <root>/<table>/_log/<version:08d>.json                              one immutable manifest per version
    <root>/_archive/<table>/date=YYYY-MM-DD/part-....parquet            files superseded by a later version

The manifests are the source of truth: version N is exactly the files listed in ``_log/N.json``. A file
is never modified; when a version stops using a file, the file is moved (one atomic rename, after the
new manifest is committed) under ``<root>/_archive/<table>/`` with the same relative path, so a plain glob of
``date=*/part-*.parquet`` sees the latest version and old versions stay readable until :meth:`expire`.

Writers never show a half-written file: Parquet files are written under a dot-prefixed temp name in
their date directory and renamed; a version is committed by creating its manifest exclusively (a hard
link of a complete temp file, which fails if the name exists). Concurrent writers are optimistic: the
loser of a version number re-reads the latest version, redoes the part of its work that depended on it
and commits the next number, so every commit is equivalent to running the writes one after another in
version order (no lost update, no duplicate).
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import OfflineStoreError
from featurestore.stores.offline_files import (  # noqa: F401 (DAY_MS, TS_TYPE, ...: re-exported)
    DAY_MS, DEFAULT_TS_COLUMN, ORPHAN_GRACE_SECONDS, PARTITION_COLUMN, ROW_GROUP_ROWS, TMP_PREFIX, TS_TYPE, _NAME_RE,
    Data, _as_batches, _as_ms, _conform_batch, _day_of_rel, _day_str, _fsync_file, _iso, _NewFile,
    _PartitionedWriter, _schema_from_b64, _split_by_day, _storage_schema, _to_ts_type, _ts_ms, _Txn, _unlink)
from featurestore.stores.offline_log import Plan, TableLog, _app, _committed_app_version


class OfflineTable(TableLog):
    """One versioned table of events (see the module docstring and ``docs/offline-store.md``).

    >>> t = OfflineTable("/data/offline", "user_spend")                       # doctest: +SKIP
    >>> v = t.write_range(arrow_table, start_ms, end_ms)                      # doctest: +SKIP
    >>> t.read(v).num_rows, t.files(v)[:1]                                    # doctest: +SKIP
    """

    def _write_stream(self, txn: _Txn, schema: pa.Schema, batches: Iterator[pa.RecordBatch], ts_column: str,
                      rng: Optional[Tuple[int, int]]) -> List[_NewFile]:
        writer = _PartitionedWriter(self.path, schema, ts_column)
        ts_index = schema.get_field_index(ts_column)
        try:
            for batch in batches:
                batch = _conform_batch(batch, schema, ts_column, self._where)
                for day, part in _split_by_day(batch, ts_index, rng, self._where):
                    writer.add(day, part)
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        txn.files.extend(files)
        return files

    def _unify(self, base: Optional[dict], new: Optional[pa.Schema], ts_column: str) -> pa.Schema:
        old = _schema_from_b64(base["arrow_schema"]) if base else None
        if old is None and new is None:
            return pa.schema([pa.field(ts_column, TS_TYPE)])
        if old is None or new is None:
            return old if new is None else new
        for f in new:
            i = old.get_field_index(f.name)
            if i >= 0 and old.field(i).type != f.type and not pa.types.is_null(f.type) \
                    and not pa.types.is_null(old.field(i).type):  # a null-typed column (no values) fits any type
                raise OfflineStoreError(f"{self._where}: column '{f.name}' is {f.type} in the new data but "
                                        f"{old.field(i).type} in the table")
        return pa.unify_schemas([old, new])

    def _rewrite_outside(self, txn: _Txn, base: dict, rel: str, start: int, end: int) -> List[_NewFile]:
        """New file(s) with the rows of ``rel`` outside ``[start, end)`` (same schema, same date)."""
        ts_column = base.get("ts_column", DEFAULT_TS_COLUMN)
        with self._open(rel, base["version"]) as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow.remove_metadata()
            ts_index = schema.get_field_index(ts_column)
            writer = _PartitionedWriter(self.path, schema, ts_column)
            try:
                for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS // 4):
                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                    ms = _ts_ms(batch.column(ts_index))
                    keep = (ms < start) | (ms >= end)
                    if keep.any():
                        kept = batch.filter(pa.array(keep))
                        for day, part in _split_by_day(kept, ts_index, None, self._where):
                            writer.add(day, part)
                files = writer.close()
            except BaseException:
                writer.abort()
                raise
        txn.files.extend(files)
        return files

    def write_range(self, data: Data, start_ms: int, end_ms: int) -> int:
        """Replace every row with ``start_ms <= ts < end_ms`` by the rows of ``data``; returns the new version.

        ``data`` is streamed (a RecordBatchReader or an iterable of RecordBatches is never held in memory
        as a whole) and must lie in the range, else nothing is committed. Dates fully inside the range
        are dropped and rewritten; files of partly covered dates that straddle a range boundary are
        rewritten with their rows outside the range. Re-running a range is idempotent; empty ``data``
        commits a version without the range's rows."""
        start, end = _as_ms(start_ms, "start_ms"), _as_ms(end_ms, "end_ms")
        if start >= end:
            raise OfflineStoreError(f"{self._where}: empty write range [{_iso(start)}, {_iso(end)}): "
                                    f"start_ms must be before end_ms")
        txn = _Txn()
        try:
            schema_in, batches = _as_batches(data, self._where)
            ts_column = self._resolved_ts_column(self._latest_manifest())
            schema = _storage_schema(schema_in, ts_column, self._where) if schema_in is not None else None
            data_files = self._write_stream(txn, schema, batches, ts_column, (start, end)) if schema else []
            rewrites: dict = {}  # relative path of a base file -> its rows outside the range (new files)
            first_day, last_day = start // DAY_MS, (end - 1) // DAY_MS

            def build(base: Optional[dict]) -> Plan:
                unified = self._unify(base, schema, ts_column)
                if base is None:
                    return [], list(data_files), unified
                kept: List[str] = []
                new: List[_NewFile] = list(data_files)
                live = set(base["files"])
                for rel in list(rewrites):  # a concurrent commit replaced the file: drop our rewrite of it
                    if rel not in live:
                        txn.discard(rewrites.pop(rel))
                for rel in base["files"]:
                    day = _day_of_rel(rel)
                    if day < first_day or day > last_day:
                        kept.append(rel)
                        continue
                    if start <= day * DAY_MS and (day + 1) * DAY_MS <= end:
                        continue  # date fully inside the range
                    st = self._file_stats(base, rel)
                    if st["rows"] == 0 or st["max_ts"] < start or st["min_ts"] >= end:
                        kept.append(rel)
                    elif start <= st["min_ts"] and st["max_ts"] < end:
                        continue  # every row of the file is in the range
                    else:
                        if rel not in rewrites:
                            rewrites[rel] = self._rewrite_outside(txn, base, rel, start, end)
                        new.extend(rewrites[rel])
                return kept, new, unified

            return self._commit(txn, "write_range", build, rng=(start, end))
        finally:
            txn.abort()

    def append(self, data: Data, *, app_id: Optional[str] = None, seq: Optional[int] = None) -> int:
        """Add the rows of ``data`` (any timestamps); returns the new version.

        With ``app_id`` and ``seq`` the append is idempotent per application: when the table already
        recorded ``seq`` (or a later one) for ``app_id``, nothing is written and the version that recorded
        it is returned (what a checkpointed streaming sink needs to commit exactly once)."""
        app = _app(app_id, seq, self._where)
        txn = _Txn()
        try:
            base = self._latest_manifest()
            if app is not None:
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            schema_in, batches = _as_batches(data, self._where)
            ts_column = self._resolved_ts_column(base)
            schema = _storage_schema(schema_in, ts_column, self._where) if schema_in is not None else None
            new = self._write_stream(txn, schema, batches, ts_column, None) if schema else []

            def build(base: Optional[dict]) -> Plan:
                return (list(base["files"]) if base else []), list(new), self._unify(base, schema, ts_column)

            return self._commit(txn, "append", build, app=app)
        finally:
            txn.abort()

    def add_files(self, files: List[Union[Path, str]], *, app_id: Optional[str] = None,
                  seq: Optional[int] = None) -> int:
        """Register already-written Parquet files as a new version (the streaming sink's committed files).

        A file whose timestamp column is ``timestamp[ms, tz=UTC]`` and whose rows all fall on one UTC date
        is moved into that date's directory as is (a rename; a copy when it lies on another filesystem);
        any other file is rewritten into the layout (split by date, timestamps converted) and then
        deleted. On failure the files are left where they were. ``app_id``/``seq``: as for :meth:`append`."""
        app = _app(app_id, seq, self._where)
        txn = _Txn()
        sources_to_delete: List[Path] = []
        try:
            base = self._latest_manifest()
            if app is not None:
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            ts_column = self._resolved_ts_column(base)
            paths = [Path(p) for p in files]
            inspected = [self._inspect(p, ts_column) for p in paths]  # validate everything before moving
            schema: Optional[pa.Schema] = None
            for p, (file_schema, _, _, _) in zip(paths, inspected):
                stored = _storage_schema(file_schema, ts_column, f"{self._where}: {p}")
                if schema is None:
                    schema = stored
                else:
                    try:
                        schema = pa.unify_schemas([schema, stored])
                    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                        raise OfflineStoreError(f"{self._where}: {p} does not match the other files' schema: "
                                                f"{str(exc).splitlines()[0]}") from None
            self._unify(base, schema, ts_column)  # type conflicts with the table fail before anything moves
            new: List[_NewFile] = []
            for p, (file_schema, rows, lo, hi) in zip(paths, inspected):
                # rows > 0 means lo/hi are set (null timestamps were rejected)
                as_is = (lo is not None and hi is not None and file_schema.field(ts_column).type == TS_TYPE
                         and lo // DAY_MS == hi // DAY_MS)
                if rows == 0:
                    sources_to_delete.append(p)
                elif as_is and lo is not None and hi is not None:  # (mypy)
                    new.append(self._adopt(txn, p, file_schema, rows, lo, hi))
                    if not txn.files[-1].moved:
                        sources_to_delete.append(p)
                else:
                    with open(p, "rb") as f:
                        pf = pq.ParquetFile(f)
                        stored = _storage_schema(file_schema, ts_column, f"{self._where}: {p}")
                        new.extend(self._write_stream(txn, stored, pf.iter_batches(batch_size=ROW_GROUP_ROWS // 4),
                                                      ts_column, None))
                    sources_to_delete.append(p)

            def build(base: Optional[dict]) -> Plan:
                return (list(base["files"]) if base else []), list(new), self._unify(base, schema, ts_column)

            version = self._commit(txn, "add_files", build, app=app)
            if txn.committed:
                for p in sources_to_delete:
                    _unlink(p)
            return version
        finally:
            txn.abort()

    def _inspect(self, path: Path, ts_column: str) -> Tuple[pa.Schema, int, Optional[int], Optional[int]]:
        """(storage-checked arrow schema, rows, min ts ms, max ts ms) of a Parquet file to add."""
        where = f"{self._where}: {path}"
        try:
            with open(path, "rb") as f:
                pf = pq.ParquetFile(f)
                schema = pa.schema([fld.remove_metadata() for fld in pf.schema_arrow])
                _storage_schema(schema, ts_column, where)  # the checks; the file keeps its own ts type
                lo = hi = None
                nulls = 0
                for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=[ts_column]):
                    col = batch.column(0)
                    nulls += col.null_count
                    if len(col) and not col.null_count:
                        ms = _ts_ms(_to_ts_type(col) if col.type != TS_TYPE else col)
                        lo = int(ms.min()) if lo is None else min(lo, int(ms.min()))
                        hi = int(ms.max()) if hi is None else max(hi, int(ms.max()))
                rows = pf.metadata.num_rows
        except FileNotFoundError:
            raise OfflineStoreError(f"{where}: no such file") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise OfflineStoreError(f"{where}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        if nulls:
            raise OfflineStoreError(f"{where}: {nulls} row(s) have a null '{ts_column}'; every event needs a timestamp")
        return schema, rows, lo, hi

    def _adopt(self, txn: _Txn, path: Path, schema: pa.Schema, rows: int, lo: int, hi: int) -> _NewFile:
        day = lo // DAY_MS
        folder = self.path / f"{PARTITION_COLUMN}={_day_str(day)}"
        folder.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex
        nf = _NewFile(tmp=folder / f"{TMP_PREFIX}{uid}", day=day, uid=uid[:8], rows=rows, min_ts=lo, max_ts=hi,
                      size=path.stat().st_size, source=path)
        try:
            os.rename(path, nf.tmp)
            nf.moved = True
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            import shutil

            shutil.copyfile(path, nf.tmp)
            _fsync_file(nf.tmp)
        txn.files.append(nf)
        return nf



class OfflineStore:
    """The offline tables under one root directory (one per feature view)."""

    def __init__(self, root: Union[Path, str]):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"OfflineStore({str(self.root)!r})"

    def table(self, name: str, ts_column: Optional[str] = None) -> OfflineTable:
        """The table ``name`` (it need not exist yet: the first write creates it)."""
        return OfflineTable(self.root, name, ts_column=ts_column)

    def tables(self) -> List[str]:
        """Names of the tables that have at least one version, sorted."""
        try:
            entries = sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for name in entries:
            if _NAME_RE.match(name) and (self.root / name).is_dir():
                if OfflineTable(self.root, name).version is not None:
                    out.append(name)
        return out


__all__ = ["OfflineStore", "OfflineTable", "OfflineStoreError", "TS_TYPE", "DAY_MS"]
