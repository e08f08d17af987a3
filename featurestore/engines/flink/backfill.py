"""``backfill --engine flink``: the DuckDB backfill's rows, dead letters and counts from a Flink batch job.

The same rules as ``duckdb_sql.checked_sql`` / ``backfill_sql``, rendered in Flink SQL: each declared
column cast to its type with DuckDB's cast rules (``sqltypes._cast_sql``; a value that does not convert
names the row's reason), the event time floored to the millisecond, float NaN as null, the reasons of
``semantics.row_reason_sql`` (the future bound checked against the run's start), then per view its
stored events for ``[start, end)`` (filter ``IS TRUE``, projections), the source's dead letters and its
events without a join key, routed by ``__kind``. :class:`~featurestore.engines.backfill.BackfillRun`
writes them exactly as it does for DuckDB.

Reading: every file of a Parquet batch face is a table of its own with **only the declared columns**
(other columns, of any type, are never read), each in the file's own types, so files may differ in
timestamp unit or integer width. The event time is read as the file's raw ``INT64`` (Flink's Parquet
timestamp reader rejects times before 1970 with sub-millisecond digits) and floored to milliseconds by
the file's unit. A timestamp column other than the event time is read as its raw ``INT64`` too and carried as
BIGINT epoch microseconds (``_time_value_us``: Flink's TIMESTAMP(3) would drop them), cast back to
``timestamp[us, UTC]`` when the output is written. What Flink cannot read is a one-line error naming the file
and the column. Where DuckDB's evaluation of a filter, a projection or a feature input fails (a CAST out of range,
an integer overflow), Flink's is NULL: such rows are flagged (``ExprCompiler.raises``) and become dead letters of
the view (``VIEW_FAILED``), as in the DuckDB backfill and the streaming job.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import pyarrow as pa

from featurestore import dtypes as t
from featurestore import semantics
from featurestore.compiler.ir import CompiledView
from featurestore.engines.duckdb_sql import DEAD_LETTER, EVENT, KIND, NULL_KEY, REASON, ROW, VIEW_FAILED
from featurestore.engines.flink.exprs import ViewExprs, compile_view_exprs, view_failure_reason
from featurestore.engines.flink.sqltypes import FLINK_TYPES, FLOATS, NULL, PARQUET_OPTIONS, TS_MS, FExpr, UnsupportedExpression, _cast_sql, _with, lit, qi
from featurestore.engines.flink.tables import expression_function_ddl
from featurestore.errors import FeatureStoreError

# Parquet/Arrow column type -> featurestore dtype it is read as
_ARROW_TO_DTYPE = {"string": t.STRING, "large_string": t.STRING, "int8": t.INT32, "int16": t.INT32, "int32": t.INT32,
                   "int64": t.INT64, "uint8": t.INT32, "uint16": t.INT32, "float": t.FLOAT32, "double": t.FLOAT64,
                   "bool": t.BOOL}
_UNIT_MS = {"ms": 1, "us": 1_000, "ns": 1_000_000}
RAW = "__raw_"  # prefix of a file's column as read, before the cast
RAISES = "__raises"  # why the view's part fails on the row (ViewExprs.raises: DuckDB's evaluation fails), or NULL
# Parquet codecs the Flink job reads (pyarrow's names; "LZ4" is LZ4_RAW): pyarrow's and DuckDB's default
# (SNAPPY), our own writers' and `featurestore generate`'s (ZSTD, through zstd-jni) and the others they
# write but BROTLI (its Java codec is not on Maven Central). tests/test_flink_codecs.py reads each one.
FLINK_CODECS = ("UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4")


def _bigint(value: int) -> str:
    return f"CAST({int(value)} AS BIGINT)"


def _file_columns(path: Path, source, skip: Sequence[str] = ()) -> Tuple[List[Tuple[str, str]], Dict[str, str],
                                                                         Optional[int]]:
    """The declared columns present in one file: [(name, Flink DDL type)], {name: dtype as read}, and the
    event time's unit divisor to milliseconds (None when the file has no event-time column). ``skip``: columns
    not read from the file (Hive partition keys: their folder gives the value)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    schema = meta.schema.to_arrow_schema()
    declared = {name for name, _ in source.schema}
    for rg in range(meta.num_row_groups):
        for i in range(meta.num_columns):
            col = meta.row_group(rg).column(i)
            if col.path_in_schema in declared and col.compression not in FLINK_CODECS:
                raise FeatureStoreError(
                    f"{path}: column '{col.path_in_schema}' is compressed with {col.compression}, which the Flink "
                    f"backfill cannot read ({', '.join(FLINK_CODECS)} it can); rewrite the file with another codec "
                    "or use the default engine (--engine duckdb)")
    ddl, dtypes, divisor = [], {}, None
    for name, declared in source.schema:
        if name not in schema.names or name in skip:
            continue
        arrow_type = schema.field(name).type
        if declared == t.JSON:  # a JSON value: JSON text as written, or a nested column as JSON_STRING of it
            nested = _flink_type(arrow_type) if _is_nested(arrow_type) else None
            if nested is None and _ARROW_TO_DTYPE.get(str(arrow_type)) != t.STRING:
                raise FeatureStoreError(f"{path}: column '{name}' of type {arrow_type} cannot be read as a JSON value "
                                        "by the Flink backfill (a struct, list or map of strings, numbers and booleans, "
                                        "or JSON text)")
            ddl.append((name, nested or "STRING"))
            dtypes[name] = JSON_NESTED if nested else JSON_TEXT
            continue
        if name == source.timestamp:
            if pa.types.is_timestamp(arrow_type):
                if arrow_type.unit not in _UNIT_MS:  # (Parquet has no seconds: pyarrow writes them as ms)
                    raise FeatureStoreError(f"{path}: column '{name}' has timestamp unit {arrow_type.unit}")
                divisor = _UNIT_MS[arrow_type.unit]
            elif pa.types.is_integer(arrow_type) and str(arrow_type) in ("int8", "int16", "int32", "int64",
                                                                         "uint8", "uint16", "uint32"):
                divisor = 1  # epoch milliseconds, as on the stream face
            else:
                raise FeatureStoreError(f"{path}: event-time column '{name}' of type {arrow_type} cannot be read by the "
                                        "Flink backfill (it reads timestamps and integers of epoch milliseconds)")
            ddl.append((name, "BIGINT"))  # the raw INT64: Flink's timestamp reader fails before 1970 (sub-ms)
            dtypes[name] = t.INT64
            continue
        if declared == t.TIMESTAMP and pa.types.is_timestamp(arrow_type):
            if arrow_type.unit not in _UNIT_MS:
                raise FeatureStoreError(f"{path}: column '{name}' has timestamp unit {arrow_type.unit}")
            ddl.append((name, "BIGINT"))  # the raw INT64 in the file's unit: microseconds exactly (_time_value_us)
            dtypes[name] = TIME_VALUE + arrow_type.unit
            continue
        dtype = _ARROW_TO_DTYPE.get(str(arrow_type))
        if dtype is None:
            raise FeatureStoreError(f"{path}: column '{name}' of type {arrow_type} cannot be read by the Flink backfill")
        ddl.append((name, FLINK_TYPES[dtype]))
        dtypes[name] = dtype
    return ddl, dtypes, divisor


JSON_NESTED, JSON_TEXT = "json:nested", "json:text"  # how a file holds a json column (``_file_columns``)
TIME_VALUE = "time:"  # + the file's unit: a timestamp column other than the event time, read as its raw INT64


def _time_value_us(raw: str, unit: str) -> Tuple[str, str]:
    """A timestamp value other than the event time, from its raw epoch integer in ``unit``: (SQL of its epoch
    microseconds, NULL outside years 1-9999; SQL true when it is present but outside them). Nanoseconds are
    floored, as by a push and the DuckDB backfill; milliseconds range-checked before scaling (no overflow).
    The job carries it as BIGINT microseconds (Flink's TIMESTAMP(3) would drop them); ``run_backfill``'s
    reader makes it ``timestamp[us, UTC]`` again."""
    lo, hi = semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US
    if unit == "ms":
        ok = f"({raw} >= {_bigint(lo // 1000)} AND {raw} < {_bigint(hi // 1000)})"
        us = f"{raw} * 1000"
    else:
        us = semantics.floor_div_sql(raw, 1000, "/") if unit == "ns" else raw
        ok = f"({us} >= {_bigint(lo)} AND {us} < {_bigint(hi)})"
    return f"CASE WHEN {ok} THEN {us} END", f"({raw} IS NOT NULL AND NOT {ok})"
def _raw_us(raw: str, unit: str) -> str:
    """A timestamp value's raw epoch integer in ``unit`` as epoch microseconds (NULL where that overflows)."""
    if unit == "ms":
        return f"CASE WHEN ABS({raw}) < {_bigint(2**63 // 1000)} THEN {raw} * 1000 END"
    return semantics.floor_div_sql(raw, 1000, "/") if unit == "ns" else raw


_FLINK_SCALARS = {"string": "STRING", "large_string": "STRING", "int32": "INT", "int64": "BIGINT", "float": "FLOAT",
                  "double": "DOUBLE", "bool": "BOOLEAN", "int8": "TINYINT", "int16": "SMALLINT"}


def _is_nested(arrow_type) -> bool:
    return pa.types.is_struct(arrow_type) or pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) \
        or pa.types.is_map(arrow_type)


def _flink_type(arrow_type) -> Optional[str]:
    """The Flink DDL type of a nested Parquet column (None: a type it cannot be read as)."""
    if pa.types.is_struct(arrow_type):
        fields = [(f.name, _flink_type(f.type)) for f in arrow_type]
        if any(ft is None for _, ft in fields):
            return None
        return "ROW<" + ", ".join(f"{qi(n)} {ft}" for n, ft in fields) + ">"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        inner = _flink_type(arrow_type.value_type)
        return None if inner is None else f"ARRAY<{inner}>"
    if pa.types.is_map(arrow_type):
        k, v = _flink_type(arrow_type.key_type), _flink_type(arrow_type.item_type)
        return None if k is None or v is None else f"MAP<{k}, {v}>"
    return _FLINK_SCALARS.get(str(arrow_type))


def _hive_literal(path: Path, name: str, dtype: str, text: Optional[str]) -> Tuple[str, bool]:
    """A Hive partition value (folder text) as the DuckDB backfill reads it: Flink SQL of the value cast by
    DuckDB's own rules (here, once per file), and whether the text is not of the type (a dead letter)."""
    import math

    from featurestore.dtypes import DUCKDB_TYPES

    if dtype == t.STRING or text is None:
        return (lit(text) if text is not None else f"CAST(NULL AS {FLINK_TYPES[dtype]})"), False
    if dtype == t.JSON:
        raise FeatureStoreError(f"{path}: json column '{name}' is a partition folder; the Flink backfill cannot read "
                                "it (use --engine duckdb)")
    con = _duck()
    if dtype == t.TIMESTAMP:
        us = con.execute("SELECT epoch_us(TRY_CAST($1 AS TIMESTAMPTZ))", [text]).fetchone()[0]
        ok = us is not None and semantics.time_value_supported(us)
        return (_bigint(us) if ok else "CAST(NULL AS BIGINT)"), not ok
    value = con.execute(f"SELECT TRY_CAST($1 AS {DUCKDB_TYPES[dtype]})", [text]).fetchone()[0]
    if value is None:
        return f"CAST(NULL AS {FLINK_TYPES[dtype]})", True
    if dtype in FLOATS:
        if math.isnan(value):  # NaN is null at ingestion
            return f"CAST(NULL AS {FLINK_TYPES[dtype]})", False
        if math.isinf(value):
            raise FeatureStoreError(f"{path}: partition folder {name}={text} is not finite; the Flink backfill cannot "
                                    "read it (use --engine duckdb)")
        return f"CAST({lit(float(value))} AS {FLINK_TYPES[dtype]})", False
    return (lit(value) if dtype == t.BOOL else f"CAST({int(value)} AS {FLINK_TYPES[dtype]})"), False


_DUCK = []


def _duck():
    """One DuckDB connection (UTC) for casting partition values as the DuckDB backfill does."""
    if not _DUCK:
        import duckdb

        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        _DUCK.append(con)
    return _DUCK[0]


def _checked_select(path: Path, table: str, source, file_types: Dict[str, str], divisor: Optional[int],
                    now_ms: int, max_future_ms: Optional[int], hive: Optional[Dict[str, Optional[str]]] = None) -> str:
    """One file's rows: each declared column cast to its type, ``__ts_ms``, ``__reason`` and the raw
    columns (``__raw_<name>``, for the dead-letter row). ``hive``: the declared columns whose value is the
    file's partition folder (``duckdb_batch.hive_keys``)."""
    ts = source.timestamp
    cols, checks = [], []
    for name, dtype in source.schema:
        raw = qi(name)
        if hive and name in hive:
            if name == ts:
                raise FeatureStoreError(f"{path}: the event time '{ts}' is a partition folder; the Flink backfill "
                                        "reads it from the files only (use --engine duckdb)")
            value, bad = _hive_literal(path, name, dtype, hive[name])
            cols.append(f"{lit(hive[name]) if hive[name] is not None else 'CAST(NULL AS STRING)'} AS {qi(RAW + name)}")
            cols.append(f"{value} AS {qi(name)}")
            if bad:
                checks.append((name, dtype, "TRUE"))
            continue
        if file_types.get(name) in (JSON_NESTED, JSON_TEXT):  # the compact text of a nested value; JSON text kept
            text = f"JSON_STRING({raw})" if file_types[name] == JSON_NESTED else raw
            cols.append(f"{text} AS {qi(RAW + name)}")
            cols.append(f"CASE WHEN {text} IS JSON THEN {text} END AS {qi(name)}")
            checks.append((name, dtype, f"({text} IS NOT NULL AND NOT ({text} IS JSON))"))
            continue
        if file_types.get(name, "").startswith(TIME_VALUE):  # as epoch us (the dead-letter row: BackfillRun)
            cols.append(f"{_raw_us(raw, file_types[name][len(TIME_VALUE):])} AS {qi(RAW + name)}")
        else:
            cols.append(f"{raw} AS {qi(RAW + name)}" if name in file_types else f"CAST(NULL AS STRING) AS {qi(RAW + name)}")
        if name == ts:
            continue
        if dtype == t.TIMESTAMP:  # BIGINT epoch microseconds (_time_value_us)
            if not file_types.get(name, "").startswith(TIME_VALUE):
                if name in file_types:
                    raise FeatureStoreError(f"{path}: column '{name}' ({file_types[name]}) cannot be read as a timestamp "
                                            "by the Flink backfill (it reads Parquet timestamps; use --engine duckdb)")
                cols.append(f"CAST(NULL AS BIGINT) AS {qi(name)}")
                continue
            value, bad = _time_value_us(raw, file_types[name][len(TIME_VALUE):])
            cols.append(f"{value} AS {qi(name)}")
            checks.append((name, dtype, bad))
            continue
        src = FExpr(raw, file_types.get(name, NULL))
        try:
            cast = _cast_sql(src, dtype)
        except UnsupportedExpression as exc:
            raise FeatureStoreError(f"{path}: column '{name}' ({src.dtype}) cannot be read as {dtype} by the Flink "
                                    f"backfill: {exc}") from None
        # NaN is null at ingestion. Not "x = x": Calcite simplifies it to "x IS NOT NULL", keeping NaN a value.
        typed = f"CASE WHEN CAST({cast} AS STRING) <> 'NaN' THEN {cast} END" if dtype in FLOATS else cast
        cols.append(f"{typed} AS {qi(name)}")
        if src.dtype not in (dtype, NULL):
            checks.append((name, dtype, f"({raw} IS NOT NULL AND ({cast}) IS NULL)"))
    ts_ms = semantics.floor_div_sql(qi(ts), divisor, "/") if divisor else "CAST(NULL AS BIGINT)"
    cols.append(f"{ts_ms} AS {qi(TS_MS)}")
    cols.append(f"CASE WHEN {semantics.time_supported_sql(ts_ms)} THEN CAST(TO_TIMESTAMP_LTZ({ts_ms}, 3) AS TIMESTAMP(3)) "
                f"END AS {qi(ts)}")
    reason = semantics.row_reason_sql(
        ts, time_read_reason=semantics.time_read_reason_sql(ts, f"{ts_ms} IS NULL", "FALSE"), ts_ms_sql=ts_ms,
        now_ms_sql=_bigint(now_ms), max_future_ms=max_future_ms, column_reason=semantics.column_reason_sql(checks))
    cols.append(f"{reason} AS {qi(REASON)}")
    return f"SELECT {', '.join(cols)}\nFROM {qi(table)}"


def _routed_select(cv: CompiledView, ve: ViewExprs, checked: str, source, group_views: Sequence[str],
                   start_ms: Optional[int], end_ms: Optional[int]) -> str:
    """``duckdb_sql.backfill_sql`` in Flink SQL over one file's checked rows."""
    ts_ms, reason = qi(TS_MS), qi(REASON)
    key_null = " OR ".join(f"{qi(k)} IS NULL" for k in cv.join_keys)
    rng = ([f"{ts_ms} >= {_bigint(start_ms)}"] if start_ms is not None else []) + \
        ([f"{ts_ms} < {_bigint(end_ms)}"] if end_ms is not None else [])
    in_range = " AND ".join(rng) or "TRUE"
    flt = f"({ve.filter}) IS TRUE" if ve.filter else "TRUE"
    row = "JSON_OBJECT(" + ", ".join(f"KEY {lit(n)} VALUE {qi(RAW + n)}" for n, _ in source.schema) + " NULL ON NULL)"
    kind = f"CASE WHEN {reason} IS NOT NULL THEN {DEAD_LETTER} WHEN {key_null} THEN {NULL_KEY} ELSE {EVENT} END"
    # where DuckDB's evaluation fails (a CAST out of range, an overflow): the filter on the events, the projections
    # and feature inputs on the events the view would store; such an event is a dead letter of the view
    # (VIEW_FAILED), worded as the streaming job words it
    stored = f"{KIND} = {EVENT} AND {flt}"
    whens = [f"WHEN {f'{KIND} = {EVENT}' if part.startswith('filter') else stored} AND ({pred}) IS TRUE "
             f"THEN {lit(view_failure_reason(cv.name, part))}" for part, pred in ve.raises]
    fails = f"CASE {' '.join(whens)} END" if whens else "CAST(NULL AS STRING)"
    flt_fails = [pred for part, pred in ve.raises if part.startswith("filter")]
    if flt_fails:  # the rows the filter fails on are routed too, as dead letters of the view
        flt = f"({flt} OR ({' OR '.join(flt_fails)}) IS TRUE)"
    failed = f"{qi(RAISES)} IS NOT NULL"
    cols = [qi(n) for n, _ in cv.source_columns] + [f"{sql} AS {qi(n)}" for n, sql in ve.projections] + [
        f"CASE WHEN {failed} THEN {VIEW_FAILED} ELSE {KIND} END AS {KIND}",
        f"CASE {KIND} WHEN {DEAD_LETTER} THEN {reason} WHEN {NULL_KEY} THEN "
        f"{semantics.null_key_reason_sql(cv.join_keys, group_views, qi)} ELSE {qi(RAISES)} END AS {REASON}",
        f"CASE WHEN {KIND} <> {EVENT} OR {failed} THEN {row} END AS {ROW}",
        ts_ms,
    ]
    where = (f"CASE {KIND} WHEN {DEAD_LETTER} THEN ({ts_ms} IS NULL OR {in_range}) WHEN {NULL_KEY} THEN {in_range}\n"
             f"  ELSE {in_range} AND {flt} END")
    routed = f"SELECT *, {fails} AS {qi(RAISES)}\nFROM (SELECT *, {kind} AS {KIND} FROM (\n{checked}\n))\nWHERE {where}"
    return f"SELECT {', '.join(cols)}\nFROM ({routed})"


def _files(store, view_name: str) -> List[Path]:
    from featurestore.engines.duckdb_batch import check_file_columns, parquet_files, source_keys
    from featurestore.model import ParquetFiles

    source = store.repo.views[view_name].source
    if not isinstance(source.batch, ParquetFiles):
        raise FeatureStoreError(f"view '{view_name}': the Flink backfill reads Parquet batch faces only "
                                f"(source '{source.name}' has {type(source.batch).__name__})")
    files = parquet_files(source.batch, store.repo_path)
    if not files:
        raise FeatureStoreError(f"view '{view_name}': no files match the batch face {source.batch.path}")
    check_file_columns(source, files, source_keys(store.repo, source))
    return files


def _environment(store, parallelism: int):
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from featurestore.engines.flink.udf import job_jars as _jars

    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(j.resolve().as_uri() for j in _jars(store)))
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", str(parallelism))
    return TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())


def run_backfill(store, names: Sequence[str], start_ms: Optional[int], end_ms: Optional[int], parallelism: int = 1):
    """Backfill ``names`` for ``[start_ms, end_ms)`` with one Flink batch job; returns a ``BackfillResults``
    like the DuckDB backfill's (the written data passes through this process, see docs/streaming.md)."""
    import pyarrow.parquet as pq

    from featurestore.engines.backfill import BackfillRun
    from featurestore.engines.duckdb_batch import hive_keys, hive_values

    t0 = time.perf_counter()
    run = BackfillRun(store, names, start_ms, end_ms)
    t_env = _environment(store, parallelism)
    (store.repo_path / ".featurestore").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="flink-backfill-", dir=store.repo_path / ".featurestore"))
    try:
        stmts = t_env.create_statement_set()
        outputs = {}
        for n in names:
            cv = store.compiled(n)
            source = store.repo.views[n].source
            ve = compile_view_exprs(cv, online=False)  # rows only: features are read from them
            for ddl in expression_function_ddl([ve.filter or "", *(sql for _, sql in ve.projections),
                                                *(pred for _, pred in ve.raises)]):
                t_env.execute_sql(ddl)  # the Java functions its expressions call (a date part)
            parts = []
            files = _files(store, n)
            keys = hive_keys(source, files)
            for i, f in enumerate(files):
                ddl, file_types, divisor = _file_columns(f, source, keys)
                hive = {k: v for k, v in hive_values(f).items() if k in keys}
                table = f"fs_batch_{n}_{i}"
                # the path as written, not percent-encoded (as_uri): Flink's Path does not decode a folder such
                # as day%3D1 back to day=1 (a Hive partition folder)
                options = {"connector": "filesystem", "path": "file://" + str(f.resolve()), "format": "parquet",
                           "parquet.utc-timezone": "true"}
                t_env.execute_sql(f"CREATE TEMPORARY TABLE {qi(table)} (\n  "
                                  + ",\n  ".join(f"{qi(c)} {d}" for c, d in ddl) + f"\n) {_with(options)}")
                checked = _checked_select(f, table, source, file_types, divisor, run.now_ms, store.config.max_future_ms,
                                          hive)
                for ddl in expression_function_ddl([checked]):
                    t_env.execute_sql(ddl)  # a file column read as text for a numeric schema column: fs_text_bigint ...
                parts.append(_routed_select(cv, ve, checked, source, run.key_group_views(n), start_ms, end_ms))
            out = tmp / n
            sink = f"fs_backfill_{n}"
            cols = [f"{qi(c)} {'BIGINT' if d == t.TIMESTAMP and c != cv.ts_column else FLINK_TYPES[d]}"
                    for c, d in cv.stored_columns]  # timestamp values: epoch us, write_view casts them back
            cols += [f"{KIND} INT", f"{REASON} STRING", f"{ROW} STRING", f"{TS_MS} BIGINT"]
            t_env.execute_sql(f"CREATE TEMPORARY TABLE {qi(sink)} (\n  " + ",\n  ".join(cols) + "\n) "
                              + _with({"connector": "filesystem", "path": out.resolve().as_uri(), **PARQUET_OPTIONS}))
            stmts.add_insert(qi(sink), t_env.sql_query("\nUNION ALL\n".join(parts)))
            outputs[n] = out
        stmts.execute().wait()  # a Java failure: FeatureStore.backfill reports its root cause, the trace in a file
        setup = (time.perf_counter() - t0) / max(1, len(names))
        results = []
        for n in names:
            files = sorted(p for p in outputs[n].rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
            batches = (b for f in files for b in pq.ParquetFile(f).iter_batches())
            schema = pq.read_schema(files[0]) if files else _empty_schema(store.compiled(n))
            v0 = time.perf_counter()
            results.append(run.write_view(n, pa.RecordBatchReader.from_batches(schema, batches), started=v0 - setup))
        return run.finish(results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _empty_schema(cv: CompiledView) -> pa.Schema:
    from featurestore.engines.duckdb_engine import arrow_schema

    base = arrow_schema(cv)
    return pa.schema(list(base) + [pa.field(KIND, pa.int32()), pa.field(REASON, pa.string()),
                                   pa.field(ROW, pa.string()), pa.field(TS_MS, pa.int64())])


__all__ = ["run_backfill"]
