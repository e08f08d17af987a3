"""Render a :class:`CompiledView` as DuckDB SQL: the backfill query and the point-in-time query.

Times inside queries are epoch milliseconds (BIGINT): exact, cheap to compare, and the unit of
SPEC §2. Every window bound comes from :func:`featurestore.semantics.window_predicate_sql`.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Sequence

from featurestore import dtypes
from featurestore.compiler.ir import AggSpec, CompiledView
from featurestore.semantics import window_predicate_sql

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
ORD = "__ord"  # rank of an event in event order within its entity
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


# -- point in time ------------------------------------------------------------------------------------
def _keys_eq(cv: CompiledView, left: str, right: str) -> str:
    return " AND ".join(f"{left}.{q(k)} = {right}.{q(k)}" for k in cv.join_keys)


def _order_by(cv: CompiledView, desc: bool = False) -> str:
    """Event order (SPEC §2 ties): ts then tiebreak and other columns, ascending, nulls first."""
    parts = [f"{TS_MS}{' DESC' if desc else ''}"]
    for c in cv.order_columns[1:]:
        parts.append(f"{q(c)} {'DESC NULLS LAST' if desc else 'ASC NULLS FIRST'}")
    return ", ".join(parts)


def _agg_sql(a: AggSpec, cond: str) -> str:
    x = f"({a.expr})" if a.expr is not None else None
    f = a.function
    filt = f"FILTER (WHERE {cond})"
    if f == "count":
        body = f"count(*) {filt}" if x is None else f"count({x}) {filt}"
    elif f == "count_distinct":
        body = f"count(DISTINCT {x}) {filt}"
    elif f == "sum":
        body = f"CAST(sum({x}) {filt} AS BIGINT)" if a.dtype == dtypes.INT64 else f"fsum({x}) {filt}"
    elif f == "mean":
        body = f"(fsum(CAST({x} AS DOUBLE)) {filt} / NULLIF(count({x}) {filt}, 0))"
    elif f in ("min", "max"):
        body = f"{f}({x}) {filt}"
    elif f == "last":
        body = f"arg_max({x}, {ORD}) FILTER (WHERE {cond} AND {x} IS NOT NULL)"
    elif f == "first":
        body = f"arg_min({x}, {ORD}) FILTER (WHERE {cond} AND {x} IS NOT NULL)"
    elif f == "stddev":
        body = f"stddev_samp({x}) {filt}"
    elif f == "variance":
        body = f"var_samp({x}) {filt}"
    else:  # pragma: no cover - validation rejects unknown functions
        raise ValueError(f"unknown aggregation function {f}")
    return f"CAST({body} AS {SQL_TYPES[a.dtype]})"


_ZERO = {
    dtypes.STRING: "''", dtypes.INT32: "0", dtypes.INT64: "0", dtypes.FLOAT32: "0.0", dtypes.FLOAT64: "0.0",
    dtypes.BOOL: "false", dtypes.TIMESTAMP: "TIMESTAMPTZ '1970-01-01 00:00:00+00'",
}


def _order_key_struct(cv: CompiledView, alias: str = "") -> str:
    """Event order after ts as one comparable struct (SPEC §2 ties: ascending, nulls first). DuckDB
    ranks a NULL struct field above every value, so each column becomes (is_not_null, value or zero)."""
    types = dict(cv.source_columns)
    parts = []
    for i, c in enumerate(cv.order_columns[1:]):
        parts.append(f"n{i} := {alias}{q(c)} IS NOT NULL")
        parts.append(f"v{i} := coalesce({alias}{q(c)}, {_ZERO[types[c]]})")
    return f"struct_pack({', '.join(parts)})" if parts else "0"


def pit_sql(cv: CompiledView, events: str, requests: str, prefix: str = "") -> str:
    """Feature values of ``cv`` for every request row.

    ``events`` is a relation of stored events, ``requests`` one with ``__row``, ``__q_ms`` and the join
    keys. Returns ``__row`` plus one column per feature (named ``prefix + name``), one row per request.
    """
    needs_ord = any(a.function in ("last", "first") for a in cv.aggregations)
    exprs = [f"({s.expr}) AS {q('__l_' + s.name)}" for s in cv.latest]
    keys = ", ".join(q(k) for k in cv.join_keys)
    ord_col = f", row_number() OVER (PARTITION BY {keys} ORDER BY {_order_by(cv)}) AS {ORD}" if needs_ord else ""
    ctes = [
        f"ev AS (SELECT *, epoch_ms({q(cv.ts_column)}) AS {TS_MS}{ord_col}"
        + (", " + ", ".join(exprs) if exprs else "")
        + f" FROM {events})",
        f"rq AS (SELECT {REQ_ROW}, {REQ_Q}, "
        + ", ".join(f"CAST({q(k)} AS {SQL_TYPES[t]}) AS {q(k)}" for k, t in cv.key_types.items())
        + f" FROM {requests})",
    ]
    selects: List[str] = []
    joins: List[str] = []
    if cv.latest:
        # 1) ASOF on time alone gives each request the greatest ts < q of its entity (cheap: keys and
        # times only). 2) Only for the (entity, ts) pairs found, pick the greatest event in event order
        # (ties, SPEC §2): a join that probes the events against those pairs, then a small aggregate.
        values = ", ".join(f"l{i} := {q('__l_' + s.name)}" for i, s in enumerate(cv.latest))
        ctes.append(
            f"hit AS (SELECT rq.*, lat.{TS_MS} AS __lat_ts FROM rq ASOF LEFT JOIN "
            f"(SELECT {keys}, {TS_MS} FROM ev) AS lat ON {_keys_eq(cv, 'rq', 'lat')} AND rq.{REQ_Q} > lat.{TS_MS})"
        )
        ctes.append(f"pairs AS (SELECT DISTINCT {keys}, __lat_ts FROM hit WHERE __lat_ts IS NOT NULL)")
        ctes.append(
            f"pick AS (SELECT {', '.join('ev.' + q(k) for k in cv.join_keys)}, ev.{TS_MS}, "
            f"arg_max(struct_pack({values}), {_order_key_struct(cv, 'ev.')}) AS __v "
            f"FROM ev JOIN pairs ON {_keys_eq(cv, 'ev', 'pairs')} AND ev.{TS_MS} = pairs.__lat_ts "
            f"GROUP BY {', '.join('ev.' + q(k) for k in cv.join_keys)}, ev.{TS_MS})"
        )
        ctes.append(
            f"base AS (SELECT hit.*, pick.__v FROM hit LEFT JOIN pick ON {_keys_eq(cv, 'hit', 'pick')} "
            f"AND pick.{TS_MS} = hit.__lat_ts)"
        )
        visible = window_predicate_sql("base.__lat_ts", f"base.{REQ_Q}", cv.ttl_ms)
        for i, s in enumerate(cv.latest):
            selects.append(
                f"CAST(CASE WHEN {visible} THEN base.__v.l{i} END AS {SQL_TYPES[s.dtype]}) AS {q(prefix + s.name)}"
            )
    else:
        ctes.append("base AS (SELECT * FROM rq)")
    if cv.aggregations:
        outer = cv.max_window_ms
        join_cond = window_predicate_sql(f"ev.{TS_MS}", f"rq.{REQ_Q}", outer)
        aggs = []
        for a in cv.aggregations:
            cond = window_predicate_sql(f"ev.{TS_MS}", f"rq.{REQ_Q}", a.window_ms)
            aggs.append(f"{_agg_sql(a, cond)} AS {q('__a_' + a.name)}")
        ctes.append(
            f"agg AS (SELECT rq.{REQ_ROW}, {', '.join(aggs)} FROM rq JOIN ev ON {_keys_eq(cv, 'rq', 'ev')} "
            f"AND {join_cond} GROUP BY rq.{REQ_ROW})"
        )
        for a in cv.aggregations:
            col = f"agg.{q('__a_' + a.name)}"
            empty = a.empty_value
            value = f"COALESCE({col}, {literal(empty)})" if empty is not None else col
            selects.append(f"CAST({value} AS {SQL_TYPES[a.dtype]}) AS {q(prefix + a.name)}")
        joins.append(f"LEFT JOIN agg ON agg.{REQ_ROW} = base.{REQ_ROW}")
    return (
        "WITH " + ",\n".join(ctes) + f"\nSELECT base.{REQ_ROW}, " + ", ".join(selects) + "\nFROM base\n"
        + "\n".join(joins)
    )


def columns_list(names: Iterable[str]) -> str:
    return ", ".join(q(n) for n in names)


__all__: Sequence[str] = ("events_sql", "pit_sql", "rejected_sql", "source_relation_sql", "SQL_TYPES", "q", "literal")
