"""A source's batch face as a DuckDB relation that no single value can break.

The relation holds the source's declared columns (as the files hold them: casting and checking is
``duckdb_sql.checked_sql``'s job) plus two columns computed from the event time:

* ``__ts_ms``: the event time as epoch milliseconds, floored (before 1970 too, and from nanosecond
  files exactly: DuckDB's own nanosecond -> microsecond cast rounds). An infinite timestamp reads as
  the largest / smallest BIGINT, so it is simply out of the supported range. NULL when the time is
  missing or cannot be read as a time.
* ``__ts_unreadable``: the time is present but is not a time (an unparseable string, an integer
  beyond BIGINT).

Event-time columns may be Parquet/DuckDB timestamps of any unit (time-zone-naive ones are UTC), dates,
ISO strings, or integers of epoch milliseconds (what the stream face carries).

Two traps of DuckDB's Parquet reader are avoided for ``ParquetFiles`` faces: ``union_by_name`` over
files of different timestamp units converts every file to the finest unit (so one event after 2262 in
a microsecond file fails the whole read once a nanosecond file is present), and a millisecond file
holding a value beyond DuckDB's microsecond range (year 294247) cannot be read at all. Files are
therefore read in groups of one timestamp unit (the usual case is one group: a single ``read_parquet``
as before), and a millisecond file whose statistics leave DuckDB's range is read through Arrow. Only
the declared columns are read: other columns of the files (of any type) are never touched.

A third trap depends on the DuckDB release: before 2.0 (the newest for Python 3.10 is 1.5.6) DuckDB reads a
Parquet ``TIMESTAMP(NANOS, UTC)`` column as a microsecond ``TIMESTAMPTZ``, truncating toward zero (-1 ns
becomes 00:00:00.000000, so a request at midnight would miss an event before it). Whatever the release, a
nanosecond file whose column DuckDB does not read as a nanosecond type (``DESCRIBE``, metadata only) is read
through Arrow, the event time as its raw epoch-ns integer, floored to milliseconds here.
"""

from __future__ import annotations

import glob
import itertools
from pathlib import Path
from typing import Collection, Dict, List, Optional, Sequence, Set, Tuple

from featurestore.engines.duckdb_sql import TS_MS, literal, q
from featurestore.errors import FeatureStoreError
from featurestore.dtypes import TIMESTAMP
from featurestore.semantics import floor_div_sql

TS_UNREADABLE = "__ts_unreadable"
INT64_MAX = 2**63 - 1
_MS_LIMIT = INT64_MAX // 1000  # a millisecond value DuckDB can hold as microseconds
_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
             "UHUGEINT")
_counter = itertools.count()


def batch_relation(con, source, repo_root, keys: Collection[str] = ()) -> str:
    """SQL of the relation described above for ``source``'s batch face (``con``: the DuckDB connection
    the relation is used on; Arrow-read files are registered on it). A declared column that none of the
    face's files holds is an error (``check_declared_columns``; ``keys``: the join keys exempt from it)."""
    from featurestore.model import DuckDBTable, ParquetFiles

    batch = source.batch
    if isinstance(batch, DuckDBTable):
        try:
            present = column_types(con, batch.relation)
        except Exception:  # noqa: BLE001 - unreadable: _with_time reports it in one line
            present = None
        if present is not None:
            check_declared_columns(source, [set(present)], keys, f"its batch face {batch.relation}")
        return _with_time(con, source, batch.relation)
    if not isinstance(batch, ParquetFiles):
        raise FeatureStoreError(f"source '{source.name}': unsupported batch face {batch!r}")
    files = parquet_files(batch, repo_root)
    if not files:
        raise FeatureStoreError(f"source '{source.name}': no files match {batch.path}")
    check_file_columns(source, files, keys)
    hive = bool(hive_keys(source, files))
    groups: Dict[Tuple[str, Tuple[str, ...]], List[Path]] = {}
    for f in files:  # by the event time's kind and the other timestamp columns' types (union_by_name's trap too)
        groups.setdefault((_time_kind(f, source.timestamp), _value_time_types(f, source)), []).append(f)
    for key in [k for k in groups if k[0] == "ns"]:
        if not _reads_ns_exactly(con, source, groups[key]):
            groups[("ns-raw", key[1])] = groups.pop(key)
    if len(groups) == 1 and not {"ms-wide", "ns-raw"} & {kind for kind, _ in groups}:
        return _with_time(con, source, _read_parquet(files, hive))
    parts = []
    for (kind, _), members in sorted(groups.items()):
        if kind in ("ms-wide", "ns-raw"):
            unit = "ns" if kind == "ns-raw" else "ms"
            parts.append(_with_time(con, source, _arrow_relation(con, source, members, hive), ts_as_text=True,
                                    int_unit=unit))
        else:
            parts.append(_with_time(con, source, _read_parquet(members, hive), ts_as_text=True))
    return "(\n" + "\nUNION ALL BY NAME\n".join(parts) + "\n)"


def file_columns(path: Path) -> List[str]:
    """The top-level column names of one Parquet file (its footer only)."""
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as exc:
        raise FeatureStoreError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None


def check_file_columns(source, files: Sequence[Path], keys: Collection[str] = ()) -> None:
    """``check_declared_columns`` over the files of a ``ParquetFiles`` face (footers only; the Hive partition
    keys of their folders count as columns)."""
    where = f"the {len(files)} file{'s' if len(files) != 1 else ''} of its batch face {source.batch.path}"
    check_declared_columns(source, [set(file_columns(f)) | set(hive_values(f)) for f in files], keys, where)


HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def hive_values(path: Path) -> Dict[str, Optional[str]]:
    """The Hive partition values in a file's folder names (``.../day=2026-01-01/part.parquet``), as DuckDB's
    ``hive_partitioning`` reads them: URL-decoded text, ``__HIVE_DEFAULT_PARTITION__`` as null."""
    from urllib.parse import unquote

    out: Dict[str, Optional[str]] = {}
    for part in Path(path).parent.parts:
        if "=" in part:
            key, value = part.split("=", 1)
            out[unquote(key)] = None if value == HIVE_NULL else unquote(value)
    return out


def hive_keys(source, files: Sequence[Path]) -> List[str]:
    """The declared columns that are Hive partition keys of the face's files: their value is the folder's
    (text cast to the declared type like any text column; over a column of the same name in the file, as
    DuckDB reads it), in every engine. Files partitioned by different keys: one error naming two of them."""
    declared = {n for n, _ in source.schema}
    found = [(f, set(hive_values(f)) & declared) for f in files]
    first_file, first = found[0]
    for f, got in found[1:]:
        if got != first:
            raise FeatureStoreError(
                f"source '{source.name}': the batch face's files are partitioned by different keys: {first_file} by "
                f"{sorted(first) or 'none'}, {f} by {sorted(got) or 'none'} (folders key=value); give every file the "
                "same partition folders")
    return sorted(first)


def check_declared_columns(source, present: Sequence[Set[str]], keys: Collection[str], where: str) -> None:
    """One line naming the source and every declared column that is in none of the batch face's parts
    (``present``: each file's column names): a misspelled column would otherwise read as all-null, its
    counts as zeros. A column some files hold (schema evolution) reads null in the others. Join keys
    (``keys``) are exempt: an event without its key is counted as ``rejected_null_key``."""
    seen = set().union(*present) if present else set()
    missing = [n for n, _ in source.schema if n not in seen and n not in keys and n != source.timestamp]
    if missing:
        names = ", ".join(f"'{n}'" for n in missing)
        have = ", ".join(sorted(seen)[:20]) + (", ..." if len(seen) > 20 else "") if seen else "none"
        raise FeatureStoreError(f"source '{source.name}': declared column{'s' if len(missing) > 1 else ''} {names} "
                                f"{'are' if len(missing) > 1 else 'is'} in none of {where} (columns there: {have})")


def source_keys(repo, source) -> Set[str]:
    """The join keys of every view of ``repo`` reading ``source`` (exempt from ``check_declared_columns``)."""
    return {k for v in repo.views.values() if v.source is not None and v.source.name == source.name
            for k in v.join_keys}



NS_TYPES = ("TIMESTAMP_NS", "TIMESTAMPTZ_NS", "TIMESTAMP WITH TIME ZONE NS")


def _reads_ns_exactly(con, source, files: Sequence[Path]) -> bool:
    """Whether this DuckDB reads the nanosecond event-time column of ``files`` as a nanosecond type."""
    try:
        types = column_types(con, _read_parquet(files))
    except Exception:  # noqa: BLE001 - unreadable here: _with_time reports it in one line
        return True
    return types.get(source.timestamp, "").upper() in NS_TYPES


def checked_relation(con, source, relation: str, max_future_ms: Optional[int]) -> str:
    """``duckdb_sql.checked_sql`` over any relation of ``source``'s columns (``relation`` SQL or a name
    registered on ``con``), e.g. pushed rows: the same typing and dead-letter rule as a batch face."""
    from featurestore.engines.duckdb_sql import checked_sql

    rel = _with_time(con, source, relation)
    return checked_sql(source.schema, source.timestamp, rel, max_future_ms, column_types(con, rel))


def parquet_files(batch, repo_root) -> List[Path]:
    """The files a ``ParquetFiles`` face names (a glob; ``**`` recurses), hidden files left out."""
    pattern = Path(batch.path)
    pattern = pattern if pattern.is_absolute() else Path(repo_root) / pattern
    found = sorted(Path(f) for f in glob.glob(str(pattern), recursive=True) if Path(f).is_file())
    return [f for f in found if not f.name.startswith((".", "_"))]


def _read_parquet(files: Sequence[Path], hive: bool = False) -> str:
    """``hive``: the partition values of the folders as text columns (``hive_keys``); else none (DuckDB would
    guess, and type them by their look: a DATE for ``day=2026-01-01``)."""
    return ("read_parquet([" + ", ".join(literal(str(f)) for f in files) + "], union_by_name = true, "
            f"hive_partitioning = {'true' if hive else 'false'}, hive_types_autocast = false)")


def _time_kind(path: Path, ts_column: str) -> str:
    """The event-time column's timestamp unit in one file (``ns``/``us``/``ms``; ``ms-wide`` when a value
    may lie beyond DuckDB's range; ``other`` for any other type or when the column is absent)."""
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as exc:
        raise FeatureStoreError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    schema = meta.schema
    for i in range(len(schema)):
        col = schema.column(i)
        if col.path != ts_column:
            continue
        logical = col.logical_type.to_json()
        if '"Type": "Timestamp"' not in logical:
            return "other"
        unit = "ns" if "nanoseconds" in logical else "us" if "microseconds" in logical else "ms"
        if unit != "ms":
            return unit
        for r in range(meta.num_row_groups):
            stats = meta.row_group(r).column(i).statistics
            if stats is None or not stats.has_min_max:
                return "ms-wide" if meta.row_group(r).num_rows else unit
            if not (-_MS_LIMIT <= stats.min_raw and stats.max_raw <= _MS_LIMIT):
                return "ms-wide"
        return unit
    return "other"


def _value_time_types(path: Path, source) -> Tuple[str, ...]:
    """The Arrow types of ``source``'s timestamp columns other than the event time in one file (``""``:
    absent): files of one group share them, so ``union_by_name`` never converts a microsecond value of
    year 2300 to nanoseconds (which fails the whole read)."""
    import pyarrow.parquet as pq

    names = [n for n, d in source.schema if d == TIMESTAMP and n != source.timestamp]
    if not names:
        return ()
    schema = pq.read_schema(path)
    return tuple(str(schema.field(n).type) if n in schema.names else "" for n in names)


def _arrow_relation(con, source, files: Sequence[Path], hive: bool = False) -> str:
    """Files DuckDB cannot read exactly (millisecond values beyond its range, nanoseconds where it reads
    microseconds): read through an Arrow dataset (streamed, as DuckDB scans it), the event time as its raw
    epoch integer in the file's unit (which ``_time_ms`` floors to milliseconds). The declared columns the
    files hold, their types unified as ``union_by_name`` would (absent in a file: NULL)."""
    import pyarrow as pa
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    keys = hive_keys(source, files) if hive else []
    declared = {n for n, _ in source.schema} - {source.timestamp} - set(keys)
    schemas = [pa.schema([f for f in pq.read_schema(path) if f.name in declared]) for path in files]
    schema = pa.unify_schemas(schemas, promote_options="permissive").append(pa.field(source.timestamp, pa.int64()))
    partitioning = None
    if keys:  # as text, as _read_parquet reads them
        parts = pa.schema([(k, pa.string()) for k in keys])
        partitioning = pds.partitioning(parts, flavor="hive")
        schema = pa.unify_schemas([schema, parts])
    name = f"__fs_batch_{next(_counter)}"
    con.register(name, pds.dataset([str(f) for f in files], schema=schema, format="parquet", partitioning=partitioning))
    return name


def column_types(con, relation: str) -> Dict[str, str]:
    """The relation's columns and their DuckDB types (DESCRIBE: reads metadata only)."""
    return {row[0]: row[1] for row in con.sql(f"DESCRIBE SELECT * FROM {relation}").fetchall()}


def _with_time(con, source, relation: str, ts_as_text: bool = False, int_unit: str = "ms") -> str:
    """``relation``'s declared columns (NULL where absent), ``__ts_ms`` and ``__ts_unreadable``. With
    ``ts_as_text`` the event-time column itself becomes its text (groups of different timestamp types
    then union without a conversion that could fail). ``int_unit``: the unit of an integer event time
    (``ms`` as on the stream face; ``ns`` for a nanosecond file read as raw integers)."""
    try:
        types = column_types(con, relation)
    except Exception as exc:
        raise FeatureStoreError(f"source '{source.name}': cannot read the batch face: {str(exc).splitlines()[0]}") \
            from None
    ts = source.timestamp
    if ts not in types:
        raise FeatureStoreError(f"source '{source.name}': the batch face has no event-time column '{ts}'")
    ms = _time_ms(source, q(ts), types[ts], int_unit)
    cols = []
    for name, dtype in source.schema:
        if name == ts and ts_as_text and int_unit == "ns":  # raw UTC nanoseconds as DuckDB 2 shows them (dead letters)
            cols.append(f"CAST(make_timestamp_ns(TRY_CAST({q(name)} AS BIGINT)) AS VARCHAR) || '+00' AS {q(name)}")
        elif name == ts and ts_as_text:
            cols.append(f"CAST({q(name)} AS VARCHAR) AS {q(name)}")
        elif name != ts and name in types and dtype == TIMESTAMP and types[name].upper() in NS_TYPES:
            cols.append(f"{_ns_to_us(q(name))} AS {q(name)}")
        else:
            cols.append(q(name) if name in types else f"NULL AS {q(name)}")
    cols.append(f"{ms} AS {TS_MS}")
    cols.append(f"({q(ts)} IS NOT NULL AND ({ms}) IS NULL) AS {TS_UNREADABLE}")
    return f"(SELECT {', '.join(cols)} FROM {relation})"


def _ns_to_us(col: str) -> str:
    """SQL: a nanosecond timestamp value (not the event time) as a microsecond TIMESTAMPTZ, floored as a push
    and the Flink backfill floor it (DuckDB's own cast rounds half away from zero). DuckDB reads the INT64
    extremes (pandas' Timestamp.max/min) as +-infinity: they are those times, as every other reader has them."""
    us = f"(CASE WHEN epoch_ns({col}) IS NOT NULL THEN {floor_div_sql(f'epoch_ns({col})', 1000, '//')} " \
         f"WHEN {col} IS NULL THEN NULL WHEN CAST({col} AS VARCHAR) LIKE '-%' THEN CAST({-(INT64_MAX // 1000) - 1} " \
         f"AS BIGINT) ELSE CAST({INT64_MAX // 1000} AS BIGINT) END)"
    return f"make_timestamptz({us})"


def _time_ms(source, col: str, dtype: str, int_unit: str = "ms") -> str:
    """SQL: epoch ms (floored) of the event-time column of DuckDB type ``dtype``; infinities as the BIGINT
    extremes; NULL when missing or not a time. An integer is epoch ``int_unit`` (milliseconds, as on the
    stream face, or the raw nanoseconds of a file read through Arrow)."""
    t = dtype.upper()
    if t in _INTEGERS:
        return floor_div_sql(f"TRY_CAST({col} AS BIGINT)", {"ms": 1, "ns": 1_000_000}[int_unit], "//")
    if t in NS_TYPES:
        return _finite(col, f"epoch_ns({col})", 1_000_000)
    if t in ("TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return _finite(col, f"epoch_us({col})", 1_000)
    if t in ("TIMESTAMP_MS", "TIMESTAMP_S"):
        return _finite(col, f"epoch_ms({col})", 1)
    if t == "DATE":
        return _finite(col, f"epoch_us(CAST({col} AS TIMESTAMP))", 1_000)
    if t == "VARCHAR":
        parsed = f"TRY_CAST({col} AS TIMESTAMPTZ)"
        return _finite(parsed, f"epoch_us({parsed})", 1_000)
    raise FeatureStoreError(f"source '{source.name}': event-time column '{source.timestamp}' is {dtype} in the batch "
                            "face; expected a timestamp, a date, an ISO string or an integer of epoch milliseconds")


def _finite(ts_sql: str, epoch_sql: str, divisor: int) -> str:
    """Floored epoch ms from an epoch count; an infinite time (the epoch function gives NULL) as a BIGINT extreme."""
    return (f"CASE WHEN ({epoch_sql}) IS NOT NULL THEN {floor_div_sql(f'({epoch_sql})', divisor, '//')} "
            f"WHEN {ts_sql} IS NULL THEN NULL "
            f"WHEN CAST({ts_sql} AS VARCHAR) LIKE '-%' THEN CAST({-INT64_MAX} AS BIGINT) "
            f"ELSE CAST({INT64_MAX} AS BIGINT) END")


__all__ = ["batch_relation", "check_declared_columns", "check_file_columns", "checked_relation", "hive_keys",
           "hive_values", "source_keys", "column_types", "parquet_files", "TS_MS", "TS_UNREADABLE"]
