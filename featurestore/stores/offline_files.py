"""Parquet writing for the offline store: the layout's constants, input normalisation (any Arrow/pandas input
as record batches of the table's storage schema), the streaming per-date writer and the files a write
owns until its version commits. The table and its manifests: :mod:`featurestore.stores.offline_log`
and :mod:`featurestore.stores.offline`; the format: ``docs/offline-store.md``."""

from __future__ import annotations

import base64
import operator
import os
import re
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from featurestore.errors import OfflineStoreError
from featurestore.stores import writers

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

# No coerce_timestamps: the event-time column is already timestamp[ms] (the storage schema), and another
# timestamp column (a Feast ``created`` column, a timestamp feature) keeps its unit: coercing it to ms
# refused every sub-millisecond value (a backfill or push of such a row failed).
PARQUET_OPTIONS = dict(
    compression="zstd",
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


def _stored_stream_rows(batch: pa.RecordBatch, schema: pa.Schema, ts_column: str, where: str, keep_offsets: bool,
                        offset_columns: Sequence[str], count_column: Optional[str],
                        counts: Dict[str, int]) -> pa.RecordBatch:
    """Streamed rows as the table stores them: the Kafka partition and offset columns dropped unless the table keeps
    them, conformed to ``schema``; each row counted per ``count_column`` value into ``counts``."""
    if not keep_offsets:
        batch = batch.drop_columns(list(offset_columns))
    batch = _conform_batch(batch, schema, ts_column, where)
    if count_column is not None:
        for value, n in Counter(batch.column(count_column).to_pylist()).items():
            counts[str(value)] = counts.get(str(value), 0) + n
    return batch


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
            nf = _NewFile(tmp=_tmp_path(self.dir, folder, uid), day=day, uid=uid[:8])
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


def _tmp_path(table_dir: Path, folder: Path, uid: str) -> Path:
    """A temp file name in ``folder`` of ``table_dir`` that names this process as its writer
    (``.tmp-<writer token>.<uid>``: see :mod:`featurestore.stores.writers`)."""
    return folder / f"{TMP_PREFIX}{writers.register(table_dir)}.{uid}"


def _native(path: Union[Path, str]) -> "pa.NativeFile":
    """A local file opened by Arrow itself, for ``pq.ParquetFile``: read through a Python file object,
    pyarrow 16 makes the process abort at exit now and then ("terminate called without an active
    exception", exit code 134, after everything succeeded)."""
    return pa.OSFile(str(path))


def _unlink(path: Path) -> bool:
    try:
        os.unlink(path)
        return True
    except FileNotFoundError:
        return False



class _Txn:
    """The files one write owns; deleted (or moved back) unless its version was committed."""

    def __init__(self):
        self.files: List[_NewFile] = []
        self.committed = False

    def discard(self, files: Iterable[_NewFile]) -> None:
        for nf in files:
            if nf.final is not None and not isinstance(nf.final, Path):  # uploaded to object storage
                nf.final.delete()
                nf.final = None
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


