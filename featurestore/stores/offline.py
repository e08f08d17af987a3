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

import base64
import errno
import json
import operator
import os
import random
import re
import time
import uuid
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.errors import OfflineStoreError

FORMAT_VERSION = 1
DEFAULT_TS_COLUMN = "ts"
PARTITION_COLUMN = "date"  # hive partition key; reserved, never a column inside the files
TS_TYPE = pa.timestamp("ms", tz="UTC")
DAY_MS = 86_400_000

LOG_DIR = "_log"
ARCHIVE_DIR = "_archive"
TMP_PREFIX = ".tmp-"

ROW_GROUP_ROWS = 1_000_000  # rows per Parquet row group (the last one of a file may be smaller)
MAX_ROWS_PER_FILE = 16 * ROW_GROUP_ROWS  # a date's data rolls over to a new file past this
MAX_BUFFERED_BYTES = 256 << 20  # rows held in memory across all dates before a partial row group is flushed
MAX_OPEN_FILES = 64  # Parquet files open at once while partitioning a stream (LRU closed past this)
MAX_COMMIT_ATTEMPTS = 200
ORPHAN_GRACE_SECONDS = 3600.0
DURABLE = True  # fsync files and directories before a commit is reported (tests may turn it off)

PARQUET_OPTIONS = dict(
    compression="zstd",
    coerce_timestamps="ms",
    allow_truncated_timestamps=False,
    write_statistics=True,
    version="2.6",
)

_MANIFEST_RE = re.compile(r"^(\d{8,})\.json$")
_PART_RE = re.compile(r"^part-\d{8,}-[0-9a-f]{8}\.parquet$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")
_EPOCH = date(1970, 1, 1)
_EPOCH_DT = datetime(1970, 1, 1, tzinfo=timezone.utc)

Data = Union[pa.Table, pa.RecordBatch, pa.RecordBatchReader, Iterable[Union[pa.RecordBatch, pa.Table]]]
_ANY = object()  # "no condition" for append(after_seq=...), where None means "nothing recorded yet"


class CommitConflict(OfflineStoreError):
    """A conditional append found its application's position moved: another writer committed first."""


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def _iso(ms: int) -> str:
    """``2024-01-02T03:04:05.678Z`` for epoch ms (raw ms when outside datetime's range)."""
    try:
        return (_EPOCH_DT + timedelta(milliseconds=int(ms))).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except OverflowError:
        return f"{int(ms)} ms"


def _day_str(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).isoformat()


def _day_of_rel(rel: str) -> int:
    """The day number (days since 1970-01-01, UTC) of a relative file path ``date=YYYY-MM-DD/...``."""
    head = rel.split("/", 1)[0]
    return (date.fromisoformat(head[len(PARTITION_COLUMN) + 1:]) - _EPOCH).days


def _as_ms(value, what: str) -> int:
    try:
        return operator.index(value)
    except TypeError:
        raise OfflineStoreError(f"{what} must be an integer (epoch milliseconds), got {value!r}") from None


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fsync_file(path: Path) -> None:
    if not DURABLE:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    if not DURABLE:
        return
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories
        pass
    finally:
        os.close(fd)


def _schema_to_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def _schema_from_b64(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _ts_ms(arr: pa.Array) -> np.ndarray:
    """Epoch ms of a ``timestamp[ms, tz=UTC]`` array without nulls, as int64 numpy."""
    return arr.cast(pa.int64()).to_numpy(zero_copy_only=False)


_UNIT_PER_MS = {"us": 1_000, "ns": 1_000_000}


def _to_ts_type(arr: pa.Array) -> pa.Array:
    """A timestamp array of any unit/time zone as ``timestamp[ms, tz=UTC]``; sub-ms values are floored,
    naive values are taken as UTC (timestamps are instants: the time zone is only a display hint)."""
    unit = arr.type.unit
    raw = arr.cast(pa.int64())
    if unit == "ms":
        return raw.cast(TS_TYPE)
    if unit == "s":
        return pc.multiply_checked(raw, 1000).cast(TS_TYPE)
    factor = _UNIT_PER_MS[unit]
    mask = raw.is_null().to_numpy(zero_copy_only=False) if raw.null_count else None
    values = np.floor_divide(raw.fill_null(0).to_numpy(zero_copy_only=False), factor)
    return pa.array(values, pa.int64(), mask=mask).cast(TS_TYPE)


# ------------------------------------------------------------------------------------------------
# input normalisation
# ------------------------------------------------------------------------------------------------
def _as_batches(data, where: str) -> Tuple[Optional[pa.Schema], Iterator[pa.RecordBatch]]:
    """(schema or None when unknowable, stream of record batches) of any accepted ``data``."""
    if isinstance(data, pa.Table):
        return data.schema, iter(data.to_batches())
    if isinstance(data, pa.RecordBatch):
        return data.schema, iter([data])
    if isinstance(data, pa.RecordBatchReader):
        return data.schema, iter(data)
    try:
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            table = pa.Table.from_pandas(data, preserve_index=False)
            return table.schema, iter(table.to_batches())
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    try:
        it = iter(data)
    except TypeError:
        raise OfflineStoreError(
            f"{where}: data must be a pyarrow Table, RecordBatch, RecordBatchReader, pandas DataFrame or an "
            f"iterable of RecordBatches, got {type(data).__name__}") from None

    def flatten(item):
        if isinstance(item, pa.RecordBatch):
            yield item
        elif isinstance(item, pa.Table):
            yield from item.to_batches()
        else:
            raise OfflineStoreError(f"{where}: expected pyarrow RecordBatches, got a {type(item).__name__}")

    first = next(it, None)
    if first is None:
        return None, iter(())
    schema = first.schema if isinstance(first, (pa.RecordBatch, pa.Table)) else None
    if schema is None:
        list(flatten(first))  # raises the type error

    def gen():
        yield from flatten(first)
        for item in it:
            yield from flatten(item)

    return schema, gen()


def _storage_schema(schema: pa.Schema, ts_column: str, where: str) -> pa.Schema:
    """The schema files of this data are stored with: ts as ``timestamp[ms, tz=UTC]``, no metadata."""
    names = schema.names
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise OfflineStoreError(f"{where}: duplicate column names {dup}")
    if ts_column not in names:
        raise OfflineStoreError(f"{where}: data has no '{ts_column}' column (the table's timestamp column); "
                                f"columns: {names}")
    if PARTITION_COLUMN in names:
        raise OfflineStoreError(f"{where}: column '{PARTITION_COLUMN}' is reserved for the date partition "
                                f"of the Parquet layout; rename it")
    ts_type = schema.field(ts_column).type
    if not pa.types.is_timestamp(ts_type):
        raise OfflineStoreError(f"{where}: column '{ts_column}' must be a timestamp, got {ts_type}")
    fields = [pa.field(f.name, TS_TYPE, f.nullable) if f.name == ts_column else f.remove_metadata() for f in schema]
    return pa.schema(fields)


def _conform_batch(batch: pa.RecordBatch, schema: pa.Schema, ts_column: str, where: str) -> pa.RecordBatch:
    """``batch`` with exactly ``schema``: columns reordered, ts converted, other types cast (safely)."""
    names = batch.schema.names
    if names == schema.names and all(batch.column(i).type == f.type for i, f in enumerate(schema)):
        return pa.RecordBatch.from_arrays(batch.columns, schema=schema)
    if sorted(names) != sorted(schema.names):
        raise OfflineStoreError(f"{where}: a record batch has columns {names}, the data's schema has {schema.names}")
    cols = []
    for f in schema:
        col = batch.column(f.name)
        if col.type != f.type:
            try:
                if f.name == ts_column and pa.types.is_timestamp(col.type):
                    col = _to_ts_type(col)
                else:
                    col = col.cast(f.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                raise OfflineStoreError(f"{where}: column '{f.name}' of type {col.type} cannot be stored as "
                                        f"{f.type}: {str(exc).splitlines()[0]}") from None
        cols.append(col)
    return pa.RecordBatch.from_arrays(cols, schema=schema)


def _conform_table(table: pa.Table, schema: pa.Schema, num_rows: int) -> pa.Table:
    """``table`` (one file's columns) as ``schema``: missing columns (schema evolution) become nulls."""
    cols = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            if col.type != f.type:
                col = col.cast(f.type)
        else:
            col = pa.chunked_array([pa.nulls(num_rows, f.type)], type=f.type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


def _split_by_day(batch: pa.RecordBatch, ts_index: int, rng: Optional[Tuple[int, int]], where: str
                  ) -> Iterator[Tuple[int, pa.RecordBatch]]:
    """(day, rows of that UTC day) of one batch; checks ts is never null and lies in ``rng``."""
    if batch.num_rows == 0:
        return
    ts = batch.column(ts_index)
    if ts.null_count:
        raise OfflineStoreError(f"{where}: {ts.null_count} row(s) have a null '{batch.schema.names[ts_index]}'; "
                                f"every event needs a timestamp")
    ms = _ts_ms(ts)
    if rng is not None:
        bad = (ms < rng[0]) | (ms >= rng[1])
        if bad.any():
            first = int(ms[int(np.argmax(bad))])
            raise OfflineStoreError(f"{where}: row with {batch.schema.names[ts_index]} {_iso(first)} is outside "
                                    f"the write range [{_iso(rng[0])}, {_iso(rng[1])})")
    days = np.floor_divide(ms, DAY_MS)
    lo, hi = int(days.min()), int(days.max())
    if lo == hi:
        yield lo, batch
        return
    order = np.argsort(days, kind="stable")
    sorted_days = days[order]
    taken = batch.take(pa.array(order))
    cuts = np.flatnonzero(np.diff(sorted_days)) + 1
    starts = np.concatenate(([0], cuts))
    ends = np.concatenate((cuts, [len(sorted_days)]))
    for s, e in zip(starts.tolist(), ends.tolist()):
        yield int(sorted_days[s]), taken.slice(s, e - s)


# ------------------------------------------------------------------------------------------------
# writing files
# ------------------------------------------------------------------------------------------------
@dataclass
class _NewFile:
    """A data file this writer owns until its version is committed."""

    tmp: Path  # <table>/date=.../.tmp-<uuid>: invisible to readers
    day: int
    uid: str
    rows: int = 0
    min_ts: Optional[int] = None
    max_ts: Optional[int] = None
    size: int = 0
    final: Optional[Path] = None  # set while placed under its part-... name
    source: Optional[Path] = None  # add_files: where the file came from
    moved: bool = False  # add_files: the source itself was renamed to ``tmp`` (move it back on failure)

    def rel(self) -> str:
        assert self.final is not None
        return f"{PARTITION_COLUMN}={_day_str(self.day)}/{self.final.name}"

    def stats(self) -> dict:
        return {"rows": self.rows, "min_ts": self.min_ts, "max_ts": self.max_ts, "bytes": self.size}


class _PartitionedWriter:
    """Streams record batches into per-date Parquet files (temp names) with ~ROW_GROUP_ROWS row groups.

    Memory is bounded: rows are buffered per date until a full row group is ready, or until all
    buffers together pass MAX_BUFFERED_BYTES (then the largest is flushed as a smaller row group); at
    most MAX_OPEN_FILES writers are open (the least recently used is closed; its date continues in a
    new file)."""

    def __init__(self, table_dir: Path, schema: pa.Schema, ts_column: str):
        self.dir = table_dir
        self.schema = schema
        self.ts_column = ts_column
        self.buffers: dict = {}  # day -> [batches]
        self.buffered_rows: dict = {}
        self.buffered_bytes: dict = {}
        self.total_bytes = 0
        self.open: "OrderedDict[int, Tuple[pq.ParquetWriter, _NewFile]]" = OrderedDict()
        self.files: List[_NewFile] = []

    def add(self, day: int, batch: pa.RecordBatch) -> None:
        n = batch.num_rows
        if n == 0:
            return
        size = batch.nbytes
        self.buffers.setdefault(day, []).append(batch)
        self.buffered_rows[day] = self.buffered_rows.get(day, 0) + n
        self.buffered_bytes[day] = self.buffered_bytes.get(day, 0) + size
        self.total_bytes += size
        if self.buffered_rows[day] >= ROW_GROUP_ROWS:
            self._flush(day, full_groups_only=True)
        while self.total_bytes > MAX_BUFFERED_BYTES and self.buffers:
            self._flush(max(self.buffered_bytes, key=lambda d: self.buffered_bytes[d]))

    def _flush(self, day: int, full_groups_only: bool = False) -> None:
        batches = self.buffers.pop(day)
        rows = self.buffered_rows.pop(day)
        self.total_bytes -= self.buffered_bytes.pop(day)
        table = pa.Table.from_batches(batches, schema=self.schema)
        if full_groups_only:
            n = (rows // ROW_GROUP_ROWS) * ROW_GROUP_ROWS
            rest = table.slice(n)
            table = table.slice(0, n)
            if rest.num_rows:
                for b in rest.to_batches():
                    if b.num_rows:
                        self.buffers.setdefault(day, []).append(b)
                        self.buffered_rows[day] = self.buffered_rows.get(day, 0) + b.num_rows
                        self.buffered_bytes[day] = self.buffered_bytes.get(day, 0) + b.nbytes
                        self.total_bytes += b.nbytes
        if table.num_rows:
            self._write(day, table)

    def _write(self, day: int, table: pa.Table) -> None:
        entry = self.open.get(day)
        if entry is None:
            if len(self.open) >= MAX_OPEN_FILES:
                self._close(next(iter(self.open)))
            folder = self.dir / f"{PARTITION_COLUMN}={_day_str(day)}"
            folder.mkdir(parents=True, exist_ok=True)
            uid = uuid.uuid4().hex
            nf = _NewFile(tmp=folder / f"{TMP_PREFIX}{uid}", day=day, uid=uid[:8])
            self.files.append(nf)  # owned from now on: abort() deletes it
            entry = (pq.ParquetWriter(str(nf.tmp), self.schema, **PARQUET_OPTIONS), nf)
            self.open[day] = entry
        self.open.move_to_end(day)
        writer, nf = entry
        writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
        ms = _ts_ms(table.column(self.ts_column).combine_chunks())
        lo, hi = int(ms.min()), int(ms.max())
        nf.rows += table.num_rows
        nf.min_ts = lo if nf.min_ts is None else min(nf.min_ts, lo)
        nf.max_ts = hi if nf.max_ts is None else max(nf.max_ts, hi)
        if nf.rows >= MAX_ROWS_PER_FILE:
            self._close(day)

    def _close(self, day: int) -> None:
        writer, nf = self.open.pop(day)
        writer.close()
        _fsync_file(nf.tmp)
        nf.size = nf.tmp.stat().st_size

    def close(self) -> List[_NewFile]:
        for day in list(self.buffers):
            self._flush(day)
        for day in list(self.open):
            self._close(day)
        return self.files

    def abort(self) -> None:
        for day in list(self.open):
            writer, _ = self.open.pop(day)
            try:
                writer.close()
            except Exception:
                pass
        for nf in self.files:
            _unlink(nf.tmp)
        self.files = []


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False


# ------------------------------------------------------------------------------------------------
# the table
# ------------------------------------------------------------------------------------------------
class _Txn:
    """The files one write owns; deleted (or moved back) unless its version was committed."""

    def __init__(self):
        self.files: List[_NewFile] = []
        self.committed = False

    def discard(self, files: Iterable[_NewFile]) -> None:
        for nf in files:
            path = nf.final or nf.tmp
            if nf.moved and nf.source is not None:
                try:
                    os.rename(path, nf.source)
                    continue
                except OSError:
                    pass
            _unlink(path)

    def abort(self) -> None:
        if not self.committed:
            self.discard(self.files)
            self.files = []


Plan = Tuple[List[str], List[_NewFile], pa.Schema]  # (kept relative paths of the base, new files, schema)


class OfflineTable:
    """One versioned table of events (see the module docstring and ``docs/offline-store.md``).

    >>> t = OfflineTable("/data/offline", "user_spend")                       # doctest: +SKIP
    >>> v = t.write_range(arrow_table, start_ms, end_ms)                      # doctest: +SKIP
    >>> t.read(v).num_rows, t.files(v)[:1]                                    # doctest: +SKIP
    """

    def __init__(self, root: Union[Path, str], name: str, ts_column: Optional[str] = None):
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
            raise OfflineStoreError(f"invalid offline table name {name!r}: use letters, digits, '_', '-', '.' "
                                    f"(starting with a letter or digit, at most 200 characters)")
        self.root = Path(root)
        self.name = name
        self.path = self.root / name
        self._log = self.path / LOG_DIR
        # Outside the table folder, so no directory reader (dask included) ever sees superseded rows.
        self._archive = self.root / ARCHIVE_DIR / name
        self._ts_column = ts_column

    def __repr__(self) -> str:
        return f"OfflineTable({str(self.root)!r}, {self.name!r})"

    @property
    def _where(self) -> str:
        return f"offline table '{self.name}'"

    # -- versions and manifests ------------------------------------------------------------------
    def _versions(self) -> List[int]:
        try:
            names = os.listdir(self._log)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_MANIFEST_RE.match, names) if m)

    @property
    def version(self) -> Optional[int]:
        """The latest version, ``None`` when the table has never been written."""
        versions = self._versions()
        return versions[-1] if versions else None

    def app_seq(self, app_id: str) -> Optional[int]:
        """The ``seq`` the latest version recorded for ``app_id`` (see :meth:`append`); None if never."""
        return _recorded_seq(self._latest_manifest(), app_id)

    @property
    def ts_column(self) -> str:
        """The event-time column: recorded in the manifests; ``ts`` unless the table was created otherwise."""
        latest = self._latest_manifest()
        if latest is not None:
            return latest.get("ts_column", DEFAULT_TS_COLUMN)
        return self._ts_column or DEFAULT_TS_COLUMN

    def _manifest_path(self, version: int) -> Path:
        return self._log / f"{version:08d}.json"

    def _read_manifest(self, version: int) -> Optional[dict]:
        path = self._manifest_path(version)
        for attempt in range(10):
            try:
                with open(path, "rb") as f:
                    return json.loads(f.read())
            except FileNotFoundError:
                return None
            except json.JSONDecodeError:
                # only possible on filesystems without hard links, where the manifest is written in place
                time.sleep(0.01 * (attempt + 1))
        raise OfflineStoreError(f"{self._where}: manifest {path} is not valid JSON")

    def _latest_manifest(self) -> Optional[dict]:
        for v in reversed(self._versions()):
            m = self._read_manifest(v)
            if m is not None:
                return m
        return None

    def manifest(self, version: Optional[int] = None) -> dict:
        """The manifest of ``version`` (default: the latest) as stored in ``_log/<version>.json``."""
        if version is None:
            m = self._latest_manifest()
            if m is None:
                raise OfflineStoreError(f"{self._where} does not exist under {self.root} (never written)")
            return m
        version = _as_ms(version, "version")
        m = self._read_manifest(version)
        if m is None:
            versions = self._versions()
            if not versions:
                raise OfflineStoreError(f"{self._where} does not exist under {self.root} (never written)")
            if version < versions[0]:
                raise OfflineStoreError(f"{self._where}: version {version} was expired "
                                        f"(oldest kept version is {versions[0]})")
            raise OfflineStoreError(f"{self._where}: version {version} does not exist (latest is {versions[-1]})")
        return m

    def history(self) -> List[dict]:
        """The manifests of every version still kept, oldest first."""
        out = []
        for v in self._versions():
            m = self._read_manifest(v)
            if m is not None:
                out.append(m)
        return out

    def schema(self, version: Optional[int] = None) -> pa.Schema:
        """The Arrow schema of ``version`` (default: the latest)."""
        return _schema_from_b64(self.manifest(version)["arrow_schema"])

    # -- reading ------------------------------------------------------------------------------------
    def _locate(self, rel: str) -> Optional[Path]:
        for p in (self.path / rel, self._archive / rel):
            if p.exists():
                return p
        return None

    def _open(self, rel: str, version: int):
        # live path first, then the archive: a file moves (atomically) only from the former to the latter
        for p in (self.path / rel, self._archive / rel):
            try:
                return open(p, "rb")
            except FileNotFoundError:
                continue
        raise OfflineStoreError(f"{self._where}: file {rel} of version {version} is gone (was the version expired?)")

    def files(self, version: Optional[int] = None) -> List[str]:
        """Absolute paths of the files of ``version`` (default: the latest), each at its live path or,
        once superseded, under ``_archive/``. A later commit may archive a live file after this returns:
        read through :meth:`read`, or retry with ``files()`` again, when writers run concurrently."""
        m = self.manifest(version)
        out = []
        for rel in m["files"]:
            p = self._locate(rel)
            if p is None:
                raise OfflineStoreError(f"{self._where}: file {rel} of version {m['version']} is gone "
                                        f"(was the version expired?)")
            out.append(str(p.absolute()))
        return out

    def read(self, version: Optional[int] = None, columns: Optional[List[str]] = None) -> pa.Table:
        """All rows of ``version`` (default: the latest) as one Arrow table with the version's schema
        (row order unspecified). ``columns`` selects columns. An empty version gives an empty table."""
        m = self.manifest(version)
        schema = _schema_from_b64(m["arrow_schema"])
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise OfflineStoreError(f"{self._where}: unknown column(s) {unknown}; columns: {schema.names}")
            schema = pa.schema([schema.field(c) for c in columns])
        parts = []
        for rel in m["files"]:
            with self._open(rel, m["version"]) as f:
                pf = pq.ParquetFile(f)
                present = [c for c in schema.names if c in pf.schema_arrow.names]
                t = pf.read(columns=present)
                parts.append(_conform_table(t, schema, pf.metadata.num_rows))
        if not parts:
            return schema.empty_table()
        return pa.concat_tables(parts)

    # -- writing --------------------------------------------------------------------------------------
    def _resolved_ts_column(self, base: Optional[dict]) -> str:
        recorded = base.get("ts_column", DEFAULT_TS_COLUMN) if base else None
        if recorded and self._ts_column and recorded != self._ts_column:
            raise OfflineStoreError(f"{self._where}: its timestamp column is '{recorded}', "
                                    f"not '{self._ts_column}'")
        return recorded or self._ts_column or DEFAULT_TS_COLUMN

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

    def _file_stats(self, base: dict, rel: str) -> dict:
        st = base.get("file_stats", {}).get(rel)
        if st is not None:
            return st
        ts_column = base.get("ts_column", DEFAULT_TS_COLUMN)  # older/foreign manifests: compute them
        with self._open(rel, base["version"]) as f:
            pf = pq.ParquetFile(f)
            ts = pf.read(columns=[ts_column]).column(0).combine_chunks()
        ms = _ts_ms(ts)
        return {"rows": len(ms), "min_ts": int(ms.min()) if len(ms) else None,
                "max_ts": int(ms.max()) if len(ms) else None}

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

    def _place(self, files: List[_NewFile], version: int) -> None:
        """Give the new files their final names (they become visible to glob readers)."""
        dirs = set()
        for nf in files:
            name = f"part-{version:08d}-{nf.uid}.parquet"
            final = nf.tmp.parent / name
            while final.exists():  # astronomically unlikely: same version, same 8 hex digits, same date
                nf.uid = uuid.uuid4().hex[:8]
                final = nf.tmp.parent / f"part-{version:08d}-{nf.uid}.parquet"
            os.utime(nf.tmp)  # expire() leaves unreferenced files alone for a grace period from now
            os.rename(nf.tmp, final)
            nf.final = final
            dirs.add(final.parent)
        for d in dirs:
            _fsync_dir(d)

    def _unplace(self, files: List[_NewFile]) -> None:
        for nf in files:
            if nf.final is not None:
                os.rename(nf.final, nf.tmp)
                nf.final = None

    def _write_manifest(self, version: int, manifest: dict) -> None:
        """Create ``_log/<version>.json`` complete and exclusively; FileExistsError if another writer has it."""
        self._log.mkdir(parents=True, exist_ok=True)
        final = self._manifest_path(version)
        tmp = self._log / f"{TMP_PREFIX}{uuid.uuid4().hex}"  # no .json: never matches _log/*.json
        payload = json.dumps(manifest, indent=1).encode("utf-8")
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            if DURABLE:
                os.fsync(f.fileno())
        try:
            try:
                os.link(tmp, final)  # atomic and exclusive: fails with FileExistsError if the name is taken
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                                     errno.ENOSYS):
                    raise
                # no hard links on this filesystem: exclusive create, then write (readers retry on partial JSON)
                fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(fd, payload)
                    if DURABLE:
                        os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            _unlink(tmp)
        _fsync_dir(self._log)

    def _archive_files(self, rels: Iterable[str]) -> None:
        for rel in rels:
            src, dst = self.path / rel, self._archive / rel
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
            except FileNotFoundError:
                pass  # already archived (expire() repairs crashed commits too)
            except OSError as exc:  # the commit stands; expire() will archive it later
                warnings.warn(f"{self._where}: could not archive superseded file {rel}: {exc}")

    def _commit(self, txn: _Txn, operation: str, build: Callable[[Optional[dict]], Plan],
                rng: Optional[Tuple[int, int]] = None, app: Optional[Tuple[str, int]] = None,
                after: object = _ANY) -> int:
        """Commit the next version: optimistic, retried on the base that won until it succeeds."""
        delay = 0.002
        for _ in range(MAX_COMMIT_ATTEMPTS):
            base = self._latest_manifest()
            if app is not None:
                _check_after(base, app, after, self._where)
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            kept, new, schema = build(base)
            ts_column = self._resolved_ts_column(base)
            version = (base["version"] if base else 0) + 1
            if self._manifest_path(version).exists():  # lost already: do not even show our files
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.25)
                continue
            self._place(new, version)
            stats = {rel: self._file_stats(base, rel) for rel in kept} if base else {}
            for nf in new:
                stats[nf.rel()] = nf.stats()
            files = sorted(stats)
            removed = sorted(set(base["files"]) - set(files)) if base else []
            txns = dict(base.get("txns", {})) if base else {}
            if app is not None:
                txns[app[0]] = {"seq": app[1], "version": version}
            manifest = {
                "format": FORMAT_VERSION,
                "table": self.name,
                "version": version,
                "created_at": _now_iso(),
                "operation": operation,
                "range": list(rng) if rng is not None else None,
                "files": files,
                "rows": sum(s["rows"] for s in stats.values()),
                "schema": [[f.name, str(f.type)] for f in schema],
                "ts_column": ts_column,
                "partitioning": {"column": PARTITION_COLUMN, "by": f"UTC date of {ts_column}"},
                "added": sorted(nf.rel() for nf in new),
                "removed": removed,
                "file_stats": {rel: stats[rel] for rel in files},
                "arrow_schema": _schema_to_b64(schema),
                "txns": txns,
            }
            try:
                self._write_manifest(version, manifest)
            except FileExistsError:  # another writer committed this version first: re-base and retry
                self._unplace(new)
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.25)
                continue
            txn.committed = True
            self._archive_files(removed)
            return version
        raise OfflineStoreError(f"{self._where}: gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits")

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

    def append(self, data: Data, *, app_id: Optional[str] = None, seq: Optional[int] = None,
               after_seq: object = _ANY) -> int:
        """Add the rows of ``data`` (any timestamps); returns the new version.

        With ``app_id`` and ``seq`` the append is idempotent per application: when the table already
        recorded ``seq`` (or a later one) for ``app_id``, nothing is written and the version that recorded
        it is returned (what a checkpointed streaming sink needs to commit exactly once).

        ``after_seq`` makes it a compare-and-set: commit only if the seq last recorded for ``app_id`` is
        ``after_seq`` (``None``: nothing recorded yet), else raise :class:`CommitConflict`. Writers that
        each append the items after the recorded position then never append an item twice, however
        they race (the log shipper's use)."""
        app = _app(app_id, seq, self._where)
        if after_seq is not _ANY and app is None:
            raise OfflineStoreError(f"{self._where}: after_seq needs app_id and seq")
        txn = _Txn()
        try:
            base = self._latest_manifest()
            if app is not None:
                _check_after(base, app, after_seq, self._where)
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            schema_in, batches = _as_batches(data, self._where)
            ts_column = self._resolved_ts_column(base)
            schema = _storage_schema(schema_in, ts_column, self._where) if schema_in is not None else None
            new = self._write_stream(txn, schema, batches, ts_column, None) if schema else []

            def build(base: Optional[dict]) -> Plan:
                return (list(base["files"]) if base else []), list(new), self._unify(base, schema, ts_column)

            return self._commit(txn, "append", build, app=app, after=after_seq)
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

    # -- retention --------------------------------------------------------------------------------------
    def expire(self, keep_last: int, *, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> int:
        """Keep the last ``keep_last`` versions; delete older manifests and every file only they used.

        Older versions become unreadable. Also tidies up after crashed writers: a superseded file a
        crash left in the live tree is archived (or deleted), and uncommitted files and temp files older
        than ``grace_seconds`` are deleted. Returns the number of Parquet files deleted."""
        keep_last = _as_ms(keep_last, "keep_last")
        if keep_last < 1:
            raise OfflineStoreError(f"{self._where}: keep_last must be at least 1, got {keep_last}")
        versions = self._versions()
        if not versions:
            return 0
        manifests = {v: m for v in versions if (m := self._read_manifest(v)) is not None}
        if not manifests:
            return 0
        kept_versions = sorted(manifests)[-keep_last:]
        referenced = set().union(*(manifests[v]["files"] for v in kept_versions))
        latest_files = set(manifests[kept_versions[-1]]["files"])
        ever = set().union(*(m["files"] for m in manifests.values()))
        for v in sorted(manifests):
            if v < kept_versions[0]:
                _unlink(self._manifest_path(v))
        deleted = 0
        if self._archive.is_dir():
            for p in sorted(self._archive.glob(f"{PARTITION_COLUMN}=*/*")):
                rel = f"{p.parent.name}/{p.name}"
                if rel not in referenced and p.is_file() and _unlink(p):
                    deleted += 1
        now = time.time()

        def old(p: Path) -> bool:
            try:
                return now - p.stat().st_mtime > grace_seconds
            except FileNotFoundError:
                return False

        for folder in sorted(self.path.glob(f"{PARTITION_COLUMN}=*")):
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                rel = f"{folder.name}/{p.name}"
                if p.name.startswith(TMP_PREFIX):
                    if old(p):
                        _unlink(p)
                elif _PART_RE.match(p.name) and rel not in latest_files:
                    if rel in referenced:
                        self._archive_files([rel])  # superseded, but its writer died before archiving it
                    elif rel in ever or old(p):  # expired, or never committed (a writer died mid-commit)
                        if _unlink(p):
                            deleted += 1
        if self._log.is_dir():
            for p in self._log.glob(f"{TMP_PREFIX}*"):
                if old(p):
                    _unlink(p)
        return deleted


def _app(app_id: Optional[str], seq: Optional[int], where: str) -> Optional[Tuple[str, int]]:
    if app_id is None and seq is None:
        return None
    if not isinstance(app_id, str) or not app_id or seq is None:
        raise OfflineStoreError(f"{where}: app_id (a non-empty string) and seq (an integer) go together")
    return app_id, _as_ms(seq, "seq")


def _recorded_seq(base: Optional[dict], app_id: str) -> Optional[int]:
    rec = (base or {}).get("txns", {}).get(app_id)
    return None if rec is None else int(rec["seq"])


def _check_after(base: Optional[dict], app: Tuple[str, int], after: object, where: str) -> None:
    if after is _ANY:
        return
    recorded = _recorded_seq(base, app[0])
    if recorded != after:
        raise CommitConflict(f"{where}: {app[0]} is at seq {recorded}, not {after}: another writer committed first")


def _committed_app_version(base: Optional[dict], app: Tuple[str, int]) -> Optional[int]:
    rec = (base or {}).get("txns", {}).get(app[0])
    if rec is not None and rec["seq"] >= app[1]:
        return int(rec["version"])
    return None


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


__all__ = ["OfflineStore", "OfflineTable", "OfflineStoreError", "CommitConflict", "TS_TYPE", "DAY_MS"]
