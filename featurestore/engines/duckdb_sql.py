"""Render a :class:`CompiledView` as DuckDB SQL: the backfill query (the point-in-time query is in
:mod:`featurestore.engines.duckdb_pit`).

Times inside queries are epoch milliseconds (BIGINT): exact, cheap to compare, and the unit of
SPEC §2. Every window bound comes from :func:`featurestore.semantics.window_predicate_sql`.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from featurestore import dtypes
from featurestore.compiler.ir import CompiledView

SQL_TYPES = {
    dtypes.STRING: "VARCHAR",
    dtypes.INT32: "INTEGER",
    dtypes.INT64: "BIGINT",
    dtypes.FLOAT32: "FLOAT",
    dtypes.FLOAT64: "DOUBLE",
    dtypes.BOOL: "BOOLEAN",
    dtypes.TIMESTAMP: "TIMESTAMPTZ",
}
TS_MS = "__ts_ms"  # event time, epoch ms
REQ_ROW, REQ_Q = "__row", "__q_ms"


def q(name: str) -> str:
    """Quote an identifier."""
    return '"' + name.replace('"', '""') + '"'


def literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(float(value)) if isinstance(value, float) else str(value)
    return "'" + str(value).replace("'", "''") + "'"


def source_relation_sql(batch, repo_root) -> str:
    """The FROM clause reading a source's batch face."""
    from pathlib import Path

    from featurestore.model import DuckDBTable, ParquetFiles

    if isinstance(batch, ParquetFiles):
        path = Path(batch.path)
        path = path if path.is_absolute() else Path(repo_root) / path
        return f"read_parquet({literal(str(path))}, union_by_name = true)"
    if isinstance(batch, DuckDBTable):
        return batch.relation
    raise TypeError(f"unsupported batch face {batch!r}")


def _cast_column(name: str, dtype: str, ts_column: str) -> str:
    col = q(name)
    if name == ts_column:
        # Truncate to the millisecond (floor, also before 1970) and keep it UTC.
        return f"CAST(date_trunc('millisecond', CAST({col} AS TIMESTAMPTZ)) AS TIMESTAMPTZ) AS {col}"
    if dtype in (dtypes.FLOAT32, dtypes.FLOAT64):
        # NaN is null at ingestion: JSON cannot carry NaN, so both jobs agree on null.
        return f"CASE WHEN isnan(CAST({col} AS DOUBLE)) THEN NULL ELSE CAST({col} AS {SQL_TYPES[dtype]}) END AS {col}"
    return f"CAST({col} AS {SQL_TYPES[dtype]}) AS {col}"


def events_sql(cv: CompiledView, relation: str, start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> str:
    """Stored events of the view from a source relation, optionally for ``start_ms <= ts < end_ms``.

    Order of operations: cast and truncate, drop unusable rows (null time or key), filter (source
    columns only), then add projections (source columns only).
    """
    casts = ",\n    ".join(_cast_column(n, t, cv.ts_column) for n, t in cv.source_columns)
    ts = q(cv.ts_column)
    where = [f"{ts} IS NOT NULL", *(f"{q(k)} IS NOT NULL" for k in cv.join_keys)]
    if start_ms is not None:
        where.append(f"epoch_ms({ts}) >= {int(start_ms)}")
    if end_ms is not None:
        where.append(f"epoch_ms({ts}) < {int(end_ms)}")
    if cv.filter:
        where.append(f"({cv.filter}) IS TRUE")
    cols = [q(n) for n, _ in cv.source_columns]
    cols += [f"CAST(({e}) AS {SQL_TYPES[t]}) AS {q(n)}" for n, e, t in cv.projections]
    return (
        f"SELECT {', '.join(cols)}\nFROM (\n  SELECT\n    {casts}\n  FROM {relation}\n) AS src\n"
        f"WHERE {' AND '.join(where)}"
    )


def rejected_sql(cv: CompiledView, relation: str, start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> str:
    """Counts of source rows that cannot become events (null event time, null join key)."""
    ts = q(cv.ts_column)
    key_null = " OR ".join(f"{q(k)} IS NULL" for k in cv.join_keys)
    rng = []
    if start_ms is not None:
        rng.append(f"epoch_ms(CAST({ts} AS TIMESTAMPTZ)) >= {int(start_ms)}")
    if end_ms is not None:
        rng.append(f"epoch_ms(CAST({ts} AS TIMESTAMPTZ)) < {int(end_ms)}")
    in_range = " AND ".join(rng) or "TRUE"
    return (
        f"SELECT count(*) FILTER (WHERE {ts} IS NULL) AS null_time, "
        f"count(*) FILTER (WHERE {ts} IS NOT NULL AND ({key_null}) AND {in_range}) AS null_key FROM {relation}"
    )


def ties_sql(cv: CompiledView, relation: str, start_ms: Optional[int] = None, end_ms: Optional[int] = None) -> str:
    """Whether two stored events of the range share (join keys, ms time): one row, one boolean."""
    keys = ", ".join(q(k) for k in cv.join_keys)
    return (f"SELECT count(*) > 0 FROM (SELECT 1 FROM ({events_sql(cv, relation, start_ms, end_ms)}) "
            f"GROUP BY {keys}, {q(cv.ts_column)} HAVING count(*) > 1 LIMIT 1)")


def keys_eq(cv: CompiledView, left: str, right: str) -> str:
    """``left.k = right.k`` for every join key of ``cv``."""
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in cv.join_keys)


def requests_sql(cv: CompiledView, requests: str) -> str:
    """The request rows of a point-in-time join (``__row``, ``__q_ms``, the join keys cast to their type)."""
    keys = ", ".join(f"CAST({q(k)} AS {SQL_TYPES[t]}) AS {q(k)}" for k, t in cv.key_types.items())
    return f"SELECT {REQ_ROW}, {REQ_Q}, {keys} FROM {requests}"


def columns_list(names: Iterable[str]) -> str:
    return ", ".join(q(n) for n in names)


__all__: Sequence[str] = ("events_sql", "rejected_sql", "ties_sql", "source_relation_sql", "keys_eq", "requests_sql", "SQL_TYPES",
                          "q", "literal")
