"""Flink SQL basics shared by the streaming job and the Flink backfill: featurestore types as Flink types,
identifiers and literals, DuckDB's result types and casts rendered in Flink SQL (:func:`_cast_sql`), the
hidden column names of the job's typed rows, and the Parquet sink options."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from featurestore import dtypes as t
from featurestore.errors import FeatureStoreError

FLINK_TYPES = {
    t.STRING: "STRING",
    t.INT32: "INT",
    t.INT64: "BIGINT",
    t.FLOAT32: "FLOAT",
    t.FLOAT64: "DOUBLE",
    t.BOOL: "BOOLEAN",
    t.TIMESTAMP: "TIMESTAMP(3)",
    t.JSON: "STRING",  # JSON text
}
# A timestamp column other than the event time keeps its microseconds in the streaming job (engines/flink/ingest.py)
EPOCH_US_FUNCTION = "fs_epoch_us"  # a TIMESTAMP as epoch microseconds, the online rows' form (tables.epoch_us_ddl)
DATE_PART_FUNCTION = "fs_date_part"  # DuckDB's date_part of epoch microseconds (DatePart.java; exprs_funcs.py)
SHIFT_US_FUNCTION = "fs_shift_us"  # DuckDB's ts +/- INTERVAL of epoch microseconds (ShiftMicros.java; exprs_time.py)
DATE_TRUNC_FUNCTION = "fs_date_trunc"  # DuckDB's date_trunc of epoch microseconds (DateTrunc.java; exprs_time.py)
# integer + - * of two INTs or two BIGINTs, NULL on an overflow (AddExact.java, ...; exprs.ExprCompiler._exact)
EXACT_FUNCTIONS = {"+": "fs_add_exact", "-": "fs_subtract_exact", "*": "fs_multiply_exact"}
# DuckDB's CAST(text AS INTEGER/BIGINT/DOUBLE/FLOAT), NULL where it fails (NumberText.java; exprs.ExprCompiler._Cast)
TEXT_NUMBER_FUNCTIONS = {t.INT32: "fs_text_int", t.INT64: "fs_text_bigint", t.FLOAT64: "fs_text_double",
                         t.FLOAT32: "fs_text_float"}
DECIMAL = "decimal"  # a DuckDB/Flink DECIMAL intermediate (decimal literals); never stored
NULL = "null"  # the type of a bare NULL literal
FLOATS = (t.FLOAT32, t.FLOAT64)
INTS = (t.INT32, t.INT64)
NUMERIC = (*INTS, *FLOATS, DECIMAL)

SUPPORTED_TEXT = ("supported: columns, literals, + - * / // %, comparisons, AND/OR/NOT, IS [NOT] NULL/TRUE/FALSE, "
                  "IS [NOT] DISTINCT FROM, CASE, IF, CAST/TRY_CAST, COALESCE, NULLIF, IN (list), BETWEEN, LIKE, "
                  "ILIKE, ||, lower, upper, length, abs, round, least, greatest, concat, concat_ws, date parts "
                  "(year(ts), ..., date_part, EXTRACT), epoch, epoch_ms, epoch_us, ts +/- INTERVAL, date_trunc)")

TS_MS = "__ts_ms"  # the event time as epoch ms (BIGINT) in the typed view
PAYLOAD, KAFKA_PARTITION, KAFKA_OFFSET, KAFKA_TIMESTAMP = "__payload", "__kafka_partition", "__kafka_offset", "__kafka_ts"
REASON = "__reason"


class UnsupportedExpression(Exception):
    """An expression the streaming job cannot evaluate with DuckDB's semantics (message: why)."""


class StreamCompileError(FeatureStoreError):
    """A definition cannot be compiled to the streaming job (names view and feature)."""


@dataclass(frozen=True)
class FExpr:
    """A rendered Flink SQL expression and its type (a featurestore dtype, DECIMAL or NULL)."""

    sql: str
    dtype: str


# -- quoting ------------------------------------------------------------------------------------------
def qi(name: str) -> str:
    """A Flink SQL identifier."""
    return "`" + name.replace("`", "``") + "`"


def lit(value) -> str:
    """A Flink SQL literal for a Python value (str, bool, int, float, None)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value) if -(2**31) <= value < 2**31 else f"CAST({value} AS BIGINT)"
    if isinstance(value, float):
        return f"CAST({value!r} AS DOUBLE)"
    return "'" + str(value).replace("'", "''") + "'"


def _typed_null(dtype: str) -> str:
    if dtype in (NULL, DECIMAL):
        return "NULL"
    return f"CAST(NULL AS {FLINK_TYPES[dtype]})"


# -- types --------------------------------------------------------------------------------------------
def _numeric(e: FExpr) -> bool:
    return e.dtype in NUMERIC or e.dtype == NULL


def _arith_type(a: str, b: str) -> str:
    """DuckDB's result type of + - * (and the common type of CASE/COALESCE branches) for numerics."""
    kinds = {a, b} - {NULL}
    if not kinds:
        return t.INT32
    if t.FLOAT64 in kinds:
        return t.FLOAT64
    if t.FLOAT32 in kinds:
        return t.FLOAT32
    if DECIMAL in kinds:
        return DECIMAL
    return t.INT64 if t.INT64 in kinds else t.INT32


def _common_type(types: Sequence[str], what: str) -> str:
    kinds = [k for k in types if k != NULL]
    if not kinds:
        return NULL
    if all(k in NUMERIC for k in kinds):
        out = kinds[0]
        for k in kinds[1:]:
            out = _arith_type(out, k)
        return out
    if len(set(kinds)) == 1:
        return kinds[0]
    raise UnsupportedExpression(f"{what} mixes types {', '.join(sorted(set(kinds)))} (DuckDB and Flink convert "
                                "them differently); add a CAST")


def _cast_sql(e: FExpr, target: str) -> str:
    """``CAST(e AS target)`` with DuckDB's semantics (raises for casts whose results differ)."""
    src = e.dtype
    if src == target:
        return e.sql
    if src == NULL:
        return _typed_null(target)
    ft = FLINK_TYPES[target]
    if target == t.TIMESTAMP or src == t.TIMESTAMP:
        raise UnsupportedExpression(f"CAST from {src} to {target} is not supported in the streaming job")
    if target == t.STRING:
        if src in INTS:
            return f"CAST({e.sql} AS STRING)"
        if src == t.BOOL:
            return f"(CASE WHEN {e.sql} THEN 'true' WHEN NOT {e.sql} THEN 'false' END)"
        raise UnsupportedExpression(f"CAST of a {src} to a string formats numbers differently in DuckDB and Flink")
    if src == t.STRING and target == t.BOOL:
        # DuckDB reads exactly these texts, ASCII letters in any case, nothing around them; any other fails (NULL
        # here). Java's (?i) folds ASCII only; \z: the very end (a '$' would match before a final newline).
        return (f"(CASE WHEN REGEXP({e.sql}, '^(?i)(t|true|y|yes|1)\\z') THEN TRUE "
                f"WHEN REGEXP({e.sql}, '^(?i)(f|false|n|no|0)\\z') THEN FALSE END)")
    if src == t.STRING:
        return f"{TEXT_NUMBER_FUNCTIONS[target]}({e.sql})"  # DuckDB's reading of the text (NULL: its CAST fails)
    if target == t.BOOL:
        if src in INTS:
            return f"({e.sql} <> 0)"
        raise UnsupportedExpression(f"CAST of a {src} to a boolean is not supported in the streaming job")
    if src == t.BOOL:
        if target in INTS or target in FLOATS:
            return f"CAST(CASE WHEN {e.sql} THEN 1 WHEN NOT {e.sql} THEN 0 END AS {ft})"
    if target in INTS:
        lo, hi = _INT_RANGE[target]
        if src in FLOATS:
            x = f"CAST({e.sql} AS DOUBLE)"
            # DuckDB rounds half to even (nearbyint), then fails (TRY_CAST: NULL) outside the range;
            # Flink's CAST truncates and saturates. The stream never fails on a value: NULL.
            # (NaN and infinities fail the first range check: ROUND would throw on them.)
            r = f"(CASE WHEN {x} - FLOOR({x}) = 0.5 THEN 2 * ROUND({x} / 2, 0) ELSE ROUND({x}, 0) END)"
            return (f"(CASE WHEN {x} >= {lo} - 1 AND {x} <= {hi} + 1 AND {r} >= {lo} AND {r} <= {hi} "
                    f"THEN CAST({r} AS {ft}) END)")
        if src == DECIMAL:
            return f"CAST(ROUND({e.sql}, 0) AS {ft})"  # half away from zero, as DuckDB
        if src == t.INT64 and target == t.INT32:
            return f"(CASE WHEN {e.sql} >= -2147483648 AND {e.sql} <= 2147483647 THEN CAST({e.sql} AS INT) END)"
        return f"CAST({e.sql} AS {ft})"
    if target == t.FLOAT32 and src == t.FLOAT64:
        # DuckDB fails (TRY_CAST: NULL) where a finite double rounds to an infinite float; Java's cast gives +-inf.
        # The stream never fails on a value: NULL (ExprCompiler.raises tells where DuckDB fails: the Flink backfill
        # fails, the stream dead-letters the event for the view).
        x = f"CAST({e.sql} AS DOUBLE)"
        return f"(CASE WHEN ABS({x}) >= {FLOAT32_OVERFLOW} AND {x} - {x} = 0 THEN CAST(NULL AS FLOAT) ELSE CAST({x} AS FLOAT) END)"
    return f"CAST({e.sql} AS {ft})"


# The smallest double that rounds to an infinite float (FLT_MAX plus half its ulp: ties round to even, i.e. up).
FLOAT32_OVERFLOW = "CAST(3.4028235677973366E38 AS DOUBLE)"
# Inclusive bounds of the rounded double that fits the integer type (DuckDB's range check).
_INT_RANGE = {
    t.INT32: ("CAST(-2147483648 AS DOUBLE)", "CAST(2147483647 AS DOUBLE)"),
    t.INT64: ("CAST(-9.223372036854775808E18 AS DOUBLE)", "CAST(9.223372036854774784E18 AS DOUBLE)"),
}


_TYPE_NAMES = {
    "VARCHAR": t.STRING, "TEXT": t.STRING, "CHAR": t.STRING, "NVARCHAR": t.STRING, "NCHAR": t.STRING,
    "INT": t.INT32, "BIGINT": t.INT64, "DOUBLE": t.FLOAT64, "FLOAT": t.FLOAT32, "BOOLEAN": t.BOOL,
}


PARQUET_OPTIONS = {
    "format": "parquet",
    "parquet.write.int64.timestamp": "true",
    "parquet.timestamp.time.unit": "millis",
    "parquet.utc-timezone": "true",
}
# The streaming job's staging files: read once by the committer, which writes the offline table's own files
# (offline.OfflineTable.commit_stream), so they are written for the job's CPU, not for size: no dictionary
# encoding (its hash lookups per value were half of the Parquet writers' samples in a JFR of the job,
# bench/results/small-stream-profile.md) and no compression.
STAGING_PARQUET_OPTIONS = {
    **PARQUET_OPTIONS,
    "parquet.enable.dictionary": "false",
    "parquet.compression": "UNCOMPRESSED",
}


def _with(options: Mapping[str, str]) -> str:
    return "WITH (\n  " + ",\n  ".join(f"{lit(k)} = {lit(str(v))}" for k, v in options.items()) + "\n)"


__all__ = ["FLINK_TYPES", "FExpr", "UnsupportedExpression", "StreamCompileError", "qi", "lit", "PARQUET_OPTIONS",
           "STAGING_PARQUET_OPTIONS"]
