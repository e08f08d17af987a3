"""Point-in-time joins in DuckDB: every feature of a view at every request row, exact (SPEC §2).

Two plans, chosen per entity key by the data's shape (docs/offline-store.md, Performance):

* **range join** (light keys): requests ``JOIN`` events on the key and ``q - W_max <= ts < q``, one
  ``FILTER`` per window, ``GROUP BY`` request. Its work is (requests x events) per key: the fastest
  plan while both are small, quadratic for a hot key.
* **sweep** (hot keys): events, distinct request times and one *marker* row per request and finite
  window (at ``q - W``) in one sequence per key, sorted by (time, kind): markers, then requests, then
  events, so a request at ``q`` precedes the events at ``q`` (exclusive) and a marker at ``q - W``
  precedes the events at ``q - W`` (inclusive edge). The window of a request is then exactly the rows
  from its marker to the row before it: a ``ROWS`` frame whose length is the difference of the two
  positions. ``ROWS`` frames are cheap (segment trees); DuckDB's ``RANGE`` frames cost 5-10x more
  here and grow faster than linearly on one long partition. Unbounded windows are a running aggregate.

A key is hot when its range-join work exceeds the sweep's rows times ``HOT_KEY_COST`` (measured on this
engine: a range-join pair costs ~50 ns, a sweep row ~1 us). ``point_in_time`` counts the requests and
events of every requested key, registers the hot ones, and runs one query: light keys through the range
join, hot keys through the sweep, unioned. Latest features use the ASOF plan whatever the shape.

Variance and stddev are exact in both plans (issue 9.1; a naive or Welford variance of values with a
large offset and a small spread loses ``log10(|mean| / sigma)`` digits):

* range join: each input is shifted by a value ``c`` inside the window (the latest non-null input
  before ``q``, found by an ASOF join: whenever the window has a value, that one is in it), then
  ``var = (fsum(y*y) - fsum(y)**2 / n) / (n - 1)`` with ``y = x - c`` (exact when the offset dominates,
  Sterbenz). With ``T = sum(y*y)`` and ``S = sum((y - mean_y)**2)``, Kahan sums and the rounding of the
  few operations bound the absolute error by ``10 u T`` (``u = 2**-53``), and ``T / S = 1 + n mean_y**2 / S``.
  As ``c`` is in the window, ``|mean_y| <= R`` (the window's range) while ``S >= R**2 / 2``, so
  ``T / S <= 1 + 2n``: the relative error is below ``~20 n u`` even for adversarial data (one outlier at
  ``c``, everything else equal) and ~``20 u`` for ordinary data. A key with more than
  ``EXACT_VARIANCE_EVENTS`` events goes through the sweep (exact) when the view has a variance, so a
  range-join variance has ``n <= 1e5`` values: relative error below 2.3e-10 (SPEC §3 allows 1e-9).
  Windows whose shifted sums are not finite (non-finite inputs, squares that overflow) are
  recomputed exactly (:mod:`featurestore.engines.duckdb_exact`).
* sweep: a frame cannot shift by a value of the *output* row, so the variances of hot keys come from
  exact prefix moments in Python (:mod:`featurestore.kernel.prefix`: bit-identical to the reference),
  joined in by (key, request time).

Float sums and means, in both plans: DuckDB's ``fsum`` (Kahan) is used where it is provably within
1e-9 of the exact value (always for inputs of one sign; else checked per window), non-finite inputs
follow IEEE in SQL, and the few windows where neither holds (cancellation such as ``1e16 + 1 - 1e16``,
overflow) are flagged by the query and recomputed exactly in Python
(:mod:`featurestore.engines.duckdb_exact`). Integer sums are exact ``HUGEINT`` sums.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa

from featurestore import dtypes
from featurestore.compiler.ir import AggSpec, CompiledView
from featurestore.engines import duckdb_exact as dx
from featurestore.engines.duckdb_sql import REQ_Q, REQ_ROW, SQL_TYPES, TS_MS, keys_eq, literal, q, requests_sql
from featurestore.errors import RequestError
from featurestore.semantics import (INT64_OVERFLOW, created_visible_sql, int64_overflow_sql, int64_sum_sql,
                                    time_value_checked_sql, window_predicate_sql)

ORD = "__ord"  # rank of an event in event order within its entity (range join: first/last)
HOT_KEY_COST = 20.0  # a key is hot when requests * events > HOT_KEY_COST * sweep rows
EXACT_VARIANCE_EVENTS = 100_000  # ... or, in a view with a variance, when it has more events than this
HOT, EXACT = "__fs_hot_keys", "__fs_exact_variances"
_VARIANCE = ("variance", "stddev")
OVERFLOW = "__ovf_"  # flag column of an integer sum outside int64, while refusing (see refusing_overflow)
_REFUSED: contextvars.ContextVar = contextvars.ContextVar("featurestore_refused_sums", default=None)


@contextlib.contextmanager
def refusing_overflow():
    """Within this block an integer sum outside int64 is a null value recorded as refused, not the
    one-line error (:func:`featurestore.semantics.int64_overflow_reason`): yields ``{(view, feature): set
    of request rows}`` that the queries fill. ``verify`` compares such cells with the served REFUSED
    (online serves null) and checks every other value."""
    refused: Dict[Tuple[str, str], set] = {}
    token = _REFUSED.set(refused)
    try:
        yield refused
    finally:
        _REFUSED.reset(token)


def _refusing() -> bool:
    return _REFUSED.get() is not None


def _refuses(a: AggSpec) -> bool:
    """An integer sum, while refusing (:func:`refusing_overflow`)."""
    return _refusing() and a.function == "sum" and _is_int(a)


def _overflow_flag(a: AggSpec, x: Optional[str], call) -> Optional[str]:
    """The flag SQL of an integer sum while refusing, else None."""
    if not _refuses(a):
        return None
    return int64_overflow_sql(call(f"sum({x})", False))


# -- shared pieces ------------------------------------------------------------------------------------
def _order_cols(cv: CompiledView, alias: str = "") -> List[str]:
    """Event order after ts (SPEC §2 ties): ascending, nulls first."""
    return [f"{alias}{q(c)} ASC NULLS FIRST" for c in cv.order_columns[1:]]


_ZERO = {
    dtypes.STRING: "''", dtypes.INT32: "0", dtypes.INT64: "0", dtypes.FLOAT32: "0.0", dtypes.FLOAT64: "0.0",
    dtypes.BOOL: "false", dtypes.JSON: "'null'", dtypes.TIMESTAMP: "TIMESTAMPTZ '1970-01-01 00:00:00+00'",
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


def _latest_struct(cv: CompiledView, alias: str = "") -> str:
    """The latest values of an event as one struct for ``arg_max``: ``l<i>`` per latest feature, and ``z<i>``
    the sign bit of a float one (arg_max over a struct, or by one, writes -0.0 as 0.0; a latest feature
    returns the value as it is: :func:`_latest_value`)."""
    parts = []
    for i, s in enumerate(cv.latest):
        v = f"{alias}{q('__l_' + s.name)}"
        parts.append(f"l{i} := {v}")
        if s.dtype in (dtypes.FLOAT32, dtypes.FLOAT64):
            parts.append(f"z{i} := signbit({v})")
    return f"struct_pack({', '.join(parts)})"


def _latest_value(struct: str, i: int, dtype: str) -> str:
    """Latest feature ``i`` of a :func:`_latest_struct` value, a zero with its sign."""
    v = f"{struct}.l{i}"
    if dtype not in (dtypes.FLOAT32, dtypes.FLOAT64):
        return v
    return f"(CASE WHEN {struct}.z{i} AND {v} = 0 THEN -{v} ELSE {v} END)"


def _inputs(cv: CompiledView) -> Dict[str, str]:
    """Each distinct aggregation input expression -> the event column that holds its value."""
    out: Dict[str, str] = {}
    for a in cv.aggregations:
        if a.expr is not None and a.expr not in out:
            out[a.expr] = f"__in{len(out)}"
    return out


def _value_sql(expr: str, dtype: str) -> str:
    """A feature input's SQL: a timestamp outside years 1 to 9999 fails the query on that event, as it fails
    materialize (:func:`~featurestore.semantics.time_value_checked_sql`); other types as written."""
    return time_value_checked_sql(expr) if dtype == dtypes.TIMESTAMP else f"({expr})"


def _is_int(a: AggSpec) -> bool:
    return a.input_dtype in dtypes.INTEGER


def _shifts(cv: CompiledView, inputs: Dict[str, str]) -> Dict[str, str]:
    """Input column of each variance/stddev -> the request column holding its shift (range join)."""
    out: Dict[str, str] = {}
    for a in cv.aggregations:
        if a.function in _VARIANCE and inputs[a.expr] not in out:
            out[inputs[a.expr]] = f"__c{len(out)}"
    return out


def _windows(cv: CompiledView, sweep: bool = False) -> List[int]:
    """Distinct finite windows (ms), in first-use order; ``sweep``: of the aggregations the sweep
    computes (variances of hot keys come from exact prefix moments instead)."""
    out: List[int] = []
    for a in cv.aggregations:
        if sweep and a.function in _VARIANCE:
            continue
        if a.window_ms is not None and a.window_ms not in out:
            out.append(a.window_ms)
    return out


def _needs_ord(cv: CompiledView) -> bool:
    return any(a.function in ("last", "first") for a in cv.aggregations)


def _in_reach(cv: CompiledView, ts: str) -> str:
    """Events of a hot key that some request of it can see: ``__lo <= ts < __hi`` (``__hi`` = its last
    request time, ``__lo`` = its first minus the longest window; no lower bound if one is unbounded)."""
    return f"{ts} < hk.__hi" + ("" if cv.max_window_ms is None else f" AND {ts} >= hk.__lo")


def _abs_inputs(cv: CompiledView, inputs: Dict[str, str], checked: Optional[Collection[str]]) -> Dict[str, str]:
    """Input column of each float sum/mean whose windows are checked (expressions in ``checked``, all when
    None) -> the event column holding its ``m(x)`` (see :mod:`featurestore.engines.duckdb_exact`)."""
    return {inputs[a.expr]: "__ab" + inputs[a.expr][len("__in"):] for a in cv.aggregations
            if dx.is_float_sum(a) and (checked is None or a.expr in checked)}


def _checked_sum(a: AggSpec, x: Optional[str], call, abs_cols: Dict[str, str], alias: str = ""):
    """(sum, flag) SQL of a float sum/mean whose windows are checked; None for any other aggregation."""
    col = None if x is None else abs_cols.get(x[len(alias):])
    if col is None or not dx.is_float_sum(a):
        return None
    s, b = call(f"fsum({x})", False), call(f"sum({alias}{col})", False)
    return dx.float_sum_sql(s, b), dx.float_sum_flag_sql(s, b)


def _agg_body(a: AggSpec, x: Optional[str], call, order: str, total: Optional[str] = None, view: str = "") -> str:
    """One aggregation over input ``x`` (None: count of events), each aggregate rendered by ``call``
    (``call(agg_sql, only_non_null_x)``: a FILTER or a window frame); variance is not rendered here.
    ``total``: the window's sum for a float sum or mean (each plan renders its own, see duckdb_exact).
    ``view``: the view's name, for the error of an integer sum outside int64 (:func:`int64_sum_sql`)."""
    f = a.function
    if f == "count":
        return call("count(*)" if x is None else f"count({x})", False)
    if f == "count_distinct":
        return call(f"count(DISTINCT {x})", False)
    if f in ("sum", "mean") and _is_int(a):  # exact HUGEINT sums; a mean rounds twice (2 ulp at most)
        total = call(f"sum({x})", False)
        n = call(f"count({x})", False)
        return int64_sum_sql(total, view, a.name, _refusing()) if f == "sum" else f"(CAST({total} AS DOUBLE) / NULLIF({n}, 0))"
    if f in ("sum", "mean"):  # float input: fsum, or the checked sum of duckdb_exact
        total = call(f"fsum({x})", False) if total is None else total
        return total if f == "sum" else f"({total} / NULLIF({call(f'count({x})', False)}, 0))"
    if f in ("min", "max"):
        return call(f"{f}({x})", False)
    if f in ("last", "first"):  # a FLOAT's arg_max/arg_min writes -0.0 as 0.0 (a DOUBLE's keeps it): pick doubles
        picked = f"CAST({x} AS DOUBLE)" if a.input_dtype == dtypes.FLOAT32 else x
        return call(f"{'arg_max' if f == 'last' else 'arg_min'}({picked}, {order})", True)
    raise ValueError(f"unknown aggregation function {f}")  # pragma: no cover - validation rejects these


def _output(a: AggSpec, body: str) -> str:
    return f"CAST({body} AS {SQL_TYPES[a.dtype]})"


# -- the range join (light keys) ----------------------------------------------------------------------
def _light_ctes(cv: CompiledView, inputs: Dict[str, str], hot: Optional[str], abs_cols: Dict[str, str]) -> List[str]:
    keys = ", ".join(q(k) for k in cv.join_keys)
    ctes = []
    req = "rq"
    if hot is not None:
        ctes.append(f"rql AS (SELECT rq.* FROM rq ANTI JOIN {hot} AS hk ON {keys_eq(cv, 'rq', 'hk')})")
        req = "rql"
    evl = "ev"
    if _needs_ord(cv):
        order = ", ".join([TS_MS, *_order_cols(cv)])
        src = "ev" if hot is None else f"(SELECT ev.* FROM ev ANTI JOIN {hot} AS hk ON {keys_eq(cv, 'ev', 'hk')})"
        ctes.append(f"evl AS (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS {ORD} FROM {src})")
        evl = "evl"
    # Variance: shift each input by the latest non-null value before q (inside every window that has one).
    shifts = _shifts(cv, inputs)
    int_inputs = {inputs[a.expr] for a in cv.aggregations if a.expr is not None and _is_int(a)}
    for i, (col, c) in enumerate(shifts.items()):
        cast = "HUGEINT" if col in int_inputs else "DOUBLE"
        ctes.append(
            f"rqc{i} AS (SELECT {req}.*, s.__c AS {c} FROM {req} ASOF LEFT JOIN "
            f"(SELECT {keys}, {TS_MS}, CAST({col} AS {cast}) AS __c FROM ev WHERE {col} IS NOT NULL) AS s "
            f"ON {keys_eq(cv, req, 's')} AND {req}.{REQ_Q} > s.{TS_MS})"
        )
        req = f"rqc{i}"
    aggs = []
    for a in cv.aggregations:
        cond = window_predicate_sql(f"e.{TS_MS}", f"r.{REQ_Q}", a.window_ms)
        x = None if a.expr is None else f"e.{inputs[a.expr]}"

        def call(agg: str, non_null: bool, cond=cond, x=x) -> str:
            return f"{agg} FILTER (WHERE {cond}{f' AND {x} IS NOT NULL' if non_null else ''})"

        if a.function in _VARIANCE:
            c = f"r.{shifts[inputs[a.expr]]}"
            y = f"CAST(CAST({x} AS HUGEINT) - {c} AS DOUBLE)" if _is_int(a) else f"(CAST({x} AS DOUBLE) - {c})"
            n, s1, s2 = call(f"count({x})", False), call(f"fsum({y})", False), call(f"fsum({y} * {y})", False)
            body = f"CASE WHEN {n} >= 2 THEN greatest({s2} - {s1} * {s1} / {n}, 0) / ({n} - 1) END"
            body = f"sqrt({body})" if a.function == "stddev" else body
            flag = dx.variance_flag_sql(n, s1, s2)
        else:
            total, flag = _checked_sum(a, x, call, abs_cols, "e.") or (None, None)
            body = _agg_body(a, x, call, f"e.{ORD}", total, cv.name)
        aggs.append(f"{_output(a, body)} AS {q('__a_' + a.name)}")
        if flag is not None:
            aggs.append(f"{flag} AS {q(dx.FLAG + a.name)}")
        overflow = _overflow_flag(a, x, call)
        if overflow is not None:
            aggs.append(f"{overflow} AS {q(OVERFLOW + a.name)}")
    join = window_predicate_sql(f"e.{TS_MS}", f"r.{REQ_Q}", cv.max_window_ms)
    ctes.append(
        f"agg_l AS (SELECT r.{REQ_ROW}, {', '.join(aggs)} FROM {req} AS r JOIN {evl} AS e "
        f"ON {keys_eq(cv, 'r', 'e')} AND {join} GROUP BY r.{REQ_ROW})"
    )
    return ctes


# -- the sweep (hot keys) -----------------------------------------------------------------------------
def _hot_ctes(cv: CompiledView, inputs: Dict[str, str], hot: str, exact: Optional[str],
              abs_cols: Dict[str, str]) -> List[str]:
    windows = _windows(cv, sweep=True)
    aggs, names = [], []
    for a in cv.aggregations:
        if a.function in _VARIANCE:
            continue
        frame = "wall" if a.window_ms is None else f"w{windows.index(a.window_ms)}"
        x = "__one" if a.expr is None else inputs[a.expr]

        def call(agg: str, non_null: bool, frame=frame, x=x) -> str:
            return f"{agg}{f' FILTER (WHERE {x} IS NOT NULL)' if non_null else ''} OVER {frame}"

        total, flag = _checked_sum(a, x, call, abs_cols) or (None, None)
        aggs.append(f"{_output(a, _agg_body(a, x, call, '__p', total, cv.name))} AS {q('__a_' + a.name)}")
        names.append(f"sw.{q('__a_' + a.name)}")
        if flag is not None:
            aggs.append(f"{flag} AS {q(dx.FLAG + a.name)}")
            names.append(f"sw.{q(dx.FLAG + a.name)}")
        overflow = _overflow_flag(a, x, call)
        if overflow is not None:
            aggs.append(f"{overflow} AS {q(OVERFLOW + a.name)}")
            names.append(f"sw.{q(OVERFLOW + a.name)}")
    ctes = [f"pts AS (SELECT DISTINCT hk.__hk, rq.{REQ_Q} AS __rq FROM rq JOIN {hot} AS hk "
            f"ON {keys_eq(cv, 'rq', 'hk')})"]
    if aggs:
        ctes += _sweep_ctes(cv, inputs, hot, windows, aggs, abs_cols)
    else:  # only variances: they come from the exact table
        ctes.append("sw AS (SELECT __hk, __rq FROM pts)")
    exact_cols = [f"ex.{q('__a_' + a.name)}" for a in cv.aggregations if a.function in _VARIANCE]
    join_exact = f" LEFT JOIN {exact} AS ex ON ex.__hk = hk.__hk AND ex.__rq = rq.{REQ_Q}" if exact_cols else ""
    ctes.append(
        f"agg_h AS (SELECT rq.{REQ_ROW}, {', '.join(names + exact_cols)} FROM rq JOIN {hot} AS hk "
        f"ON {keys_eq(cv, 'rq', 'hk')} JOIN sw ON sw.__hk = hk.__hk AND sw.__rq = rq.{REQ_Q}{join_exact})"
    )
    return ctes


def _sweep_ctes(cv: CompiledView, inputs: Dict[str, str], hot: str, windows: List[int], aggs: List[str],
                abs_cols: Dict[str, str]) -> List[str]:
    """Events, request points and window-start markers of the hot keys in one sorted sequence per key;
    each aggregate over a ``ROWS`` frame from the request's marker to the row before the request."""
    needs_ord = _needs_ord(cv)
    order_cols = [q(c) for c in cv.order_columns[1:]] if needs_ord else []
    cols = ", ".join(["1 AS __one", *inputs.values(), *abs_cols.values(), *order_cols])
    markers = "".join(
        f"\n    UNION ALL BY NAME SELECT __hk, __rq - {w} AS __t, -1 AS __kind, __rq, {j} AS __w FROM pts"
        for j, w in enumerate(windows)
    )
    order = ", ".join(["__t", "__kind", *(_order_cols(cv) if needs_ord else [])])
    ctes = [
        f"evh AS (SELECT hk.__hk, ev.* FROM ev JOIN {hot} AS hk ON {keys_eq(cv, 'ev', 'hk')} AND "
        f"{_in_reach(cv, f'ev.{TS_MS}')})",
        f"u AS (SELECT __hk, {TS_MS} AS __t, 1 AS __kind, {cols} FROM evh\n"
        f"    UNION ALL BY NAME SELECT __hk, __rq AS __t, 0 AS __kind, __rq FROM pts{markers})",
        f"up AS (SELECT *, row_number() OVER (PARTITION BY __hk ORDER BY {order}) AS __p FROM u)",
    ]
    frames = [f"w{j} AS (PARTITION BY __hk ORDER BY __p ROWS BETWEEN __n{j} PRECEDING AND 1 PRECEDING)"
              for j in range(len(windows))]
    if any(a.window_ms is None and a.function not in _VARIANCE for a in cv.aggregations):
        frames.append("wall AS (PARTITION BY __hk ORDER BY __p ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)")
    source = "up"
    if windows:
        last = [f"max(__p) FILTER (WHERE __w = {j}) AS __pw{j}" for j in range(len(windows))]
        spans = [f"coalesce(pos.__pr - pos.__pw{j}, 0) AS __n{j}" for j in range(len(windows))]
        ctes.append(
            f"pos AS (SELECT __hk, __rq, max(__p) FILTER (WHERE __kind = 0) AS __pr, {', '.join(last)} "
            "FROM up WHERE __kind <= 0 GROUP BY __hk, __rq)"
        )
        ctes.append(
            f"fr AS (SELECT up.*, {', '.join(spans)} FROM up LEFT JOIN pos "
            "ON up.__kind = 0 AND pos.__hk = up.__hk AND pos.__rq = up.__rq)"
        )
        source = "fr"
    select = ", ".join(["__hk", "__rq", "__kind", *aggs])
    ctes.append(f"sw AS (SELECT * FROM (SELECT {select} FROM {source} WINDOW {', '.join(frames)}) WHERE __kind = 0)")
    return ctes


# -- the query ----------------------------------------------------------------------------------------
def pit_sql(cv: CompiledView, events: str, requests: str, prefix: str = "", hot: Optional[str] = None,
            exact: Optional[str] = None, checked: Optional[Collection[str]] = None, unique: bool = False) -> str:
    """Feature values of ``cv`` for every request row.

    ``events`` is a relation of stored events, ``requests`` one with ``__row``, ``__q_ms`` and the join
    keys. ``hot`` names a relation of the hot keys (see :func:`hot_keys_sql`) that go through the sweep;
    ``exact`` one of their variances (``__hk``, ``__rq`` = request time, and ``__a_<feature>`` per
    variance/stddev feature). ``checked``: the input expressions of float sums and means whose windows
    are checked and flagged (:mod:`featurestore.engines.duckdb_exact`; None: all of them). ``unique``: no
    two events share (join keys, ms time), so *latest* needs no tie rule (a plain ASOF join). Returns
    ``__row`` plus one column per feature (named ``prefix + name``) and the flag columns, one row per
    request, in no particular order.
    """
    inputs = _inputs(cv)
    types = {a.expr: a.input_dtype for a in cv.aggregations}
    extra = [f"{_value_sql(e, types[e])} AS {c}" for e, c in inputs.items()]
    extra += [f"{_value_sql(s.expr, s.dtype)} AS {q('__l_' + s.name)}" for s in cv.latest]
    keys = ", ".join(q(k) for k in cv.join_keys)
    ev = f"SELECT *, epoch_ms({q(cv.ts_column)}) AS {TS_MS}{''.join(', ' + x for x in extra)} FROM {events}"
    abs_cols = _abs_inputs(cv, inputs, checked)
    if abs_cols:
        ev = f"SELECT *, {', '.join(f'{dx.abs_sql(x)} AS {b}' for x, b in abs_cols.items())} FROM ({ev})"
    ctes = [
        f"ev AS ({ev})",
        f"rq AS ({requests_sql(cv, requests)})",
    ]
    selects: List[str] = []
    joins: List[str] = []
    if cv.latest and unique:
        # No two events of an entity share a time (recorded by the backfill, see point_in_time): the
        # event an ASOF join finds is the greatest in event order, so it carries the values itself.
        lat = ", ".join(q("__l_" + s.name) for s in cv.latest)
        ctes.append(
            f"base AS (SELECT rq.*, lat.{TS_MS} AS __lat_ts, {', '.join('lat.' + q('__l_' + s.name) for s in cv.latest)} "
            f"FROM rq ASOF LEFT JOIN (SELECT {keys}, {TS_MS}, {lat} FROM ev) AS lat "
            f"ON {keys_eq(cv, 'rq', 'lat')} AND rq.{REQ_Q} > lat.{TS_MS})"
        )
        values_of = [f"base.{q('__l_' + s.name)}" for s in cv.latest]
    elif cv.latest:
        # 1) ASOF on time alone gives each request the greatest ts < q of its entity (cheap: keys and
        # times only). 2) Only for the (entity, ts) pairs found, pick the greatest event in event order
        # (ties, SPEC §2): a join that probes the events against those pairs, then a small aggregate.
        ctes.append(
            f"hit AS (SELECT rq.*, lat.{TS_MS} AS __lat_ts FROM rq ASOF LEFT JOIN "
            f"(SELECT {keys}, {TS_MS} FROM ev) AS lat ON {keys_eq(cv, 'rq', 'lat')} AND rq.{REQ_Q} > lat.{TS_MS})"
        )
        ctes.append(f"pairs AS (SELECT DISTINCT {keys}, __lat_ts FROM hit WHERE __lat_ts IS NOT NULL)")
        ctes.append(
            f"pick AS (SELECT {', '.join('ev.' + q(k) for k in cv.join_keys)}, ev.{TS_MS}, "
            f"arg_max({_latest_struct(cv, 'ev.')}, {_order_key_struct(cv, 'ev.')}) AS __v "
            f"FROM ev JOIN pairs ON {keys_eq(cv, 'ev', 'pairs')} AND ev.{TS_MS} = pairs.__lat_ts "
            f"GROUP BY {', '.join('ev.' + q(k) for k in cv.join_keys)}, ev.{TS_MS})"
        )
        ctes.append(
            f"base AS (SELECT hit.*, pick.__v FROM hit LEFT JOIN pick ON {keys_eq(cv, 'hit', 'pick')} "
            f"AND pick.{TS_MS} = hit.__lat_ts)"
        )
        values_of = [_latest_value("base.__v", i, s.dtype) for i, s in enumerate(cv.latest)]
    if cv.latest:
        visible = window_predicate_sql("base.__lat_ts", f"base.{REQ_Q}", cv.ttl_ms)
        for v, s in zip(values_of, cv.latest):
            selects.append(f"CAST(CASE WHEN {visible} THEN {v} END AS {SQL_TYPES[s.dtype]}) AS {q(prefix + s.name)}")
    else:
        ctes.append("base AS (SELECT * FROM rq)")
    if cv.aggregations:
        ctes += _light_ctes(cv, inputs, hot, abs_cols)
        if hot is not None:
            ctes += _hot_ctes(cv, inputs, hot, exact, abs_cols)
            ctes.append("agg AS (SELECT * FROM agg_l UNION ALL BY NAME SELECT * FROM agg_h)")
        else:
            ctes.append("agg AS (SELECT * FROM agg_l)")
        for a in cv.aggregations:
            col = f"agg.{q('__a_' + a.name)}"
            empty = a.empty_value
            value = f"COALESCE({col}, {literal(empty)})" if empty is not None else col
            if _refuses(a):  # refused: null, never the default
                overflow = f"agg.{q(OVERFLOW + a.name)}"
                value = f"CASE WHEN {overflow} THEN NULL ELSE {value} END"
                selects.append(f"{overflow} AS {q(OVERFLOW + prefix + a.name)}")
            selects.append(f"CAST({value} AS {SQL_TYPES[a.dtype]}) AS {q(prefix + a.name)}")
            if (dx.is_float_sum(a) and inputs[a.expr] in abs_cols) or a.function in _VARIANCE:  # see duckdb_exact
                selects.append(f"agg.{q(dx.FLAG + a.name)} AS {q(dx.FLAG + prefix + a.name)}")
        joins.append(f"LEFT JOIN agg ON agg.{REQ_ROW} = base.{REQ_ROW}")
    return (
        "WITH " + ",\n".join(ctes) + f"\nSELECT base.{REQ_ROW}, " + ", ".join(selects) + "\nFROM base\n"
        + "\n".join(joins)
    )


# -- choosing the plan and running it -----------------------------------------------------------------
def hot_keys_sql(cv: CompiledView, events: str, requests: str, cost: Optional[float] = None) -> str:
    """The keys for the sweep: requests x events above ``cost`` x the sweep's rows (events plus, per
    request, itself and one marker per finite window). Columns: the join keys, ``__hk`` (an id),
    ``__lo``/``__hi`` (the events any request of the key can see: ``__lo <= ts < __hi``), ``__r`` and
    ``__e`` (the counts). In a view with a variance, keys with more than ``EXACT_VARIANCE_EVENTS`` events
    are hot too (the range join's shifted variance is within 1e-9 up to that many values).

    Since ``r * e > cost * e`` needs ``r > cost``, only keys with more requests than ``cost`` have their
    events counted (the counting is most of this query's time: 10M events, 100k keys: ~1 s), unless the
    view has a variance."""
    cost = HOT_KEY_COST if cost is None else cost
    keys = ", ".join(q(k) for k in cv.join_keys)
    per_request = 1 + len(_windows(cv, sweep=True))
    factor = repr(float(cost)) if math.isfinite(cost) else "CAST('infinity' AS DOUBLE)"
    lo = "CAST(NULL AS BIGINT)" if cv.max_window_ms is None else f"r.__qmin - {int(cv.max_window_ms)}"
    ev_keys = ", ".join("ev." + q(k) for k in cv.join_keys)
    if any(a.function in _VARIANCE for a in cv.aggregations):
        many, candidates, counted = f" OR e.__e > {int(EXACT_VARIANCE_EVENTS)}", "", f"{events} AS ev"
    else:  # a hash probe per event against few candidates is much cheaper than grouping all events
        many, candidates = "", f" HAVING count(*) > {factor}"
        counted = f"{events} AS ev SEMI JOIN r ON {keys_eq(cv, 'ev', 'r')}"
    return (
        f"WITH r AS (SELECT {keys}, count(*) AS __r, min({REQ_Q}) AS __qmin, max({REQ_Q}) AS __qmax "
        f"FROM ({requests_sql(cv, requests)}) GROUP BY ALL{candidates}),\n"
        f"e AS (SELECT {ev_keys}, count(*) AS __e FROM {counted} GROUP BY ALL)\n"
        f"SELECT {', '.join('r.' + q(k) for k in cv.join_keys)}, row_number() OVER () AS __hk, {lo} AS __lo, "
        "r.__qmax AS __hi, r.__r, e.__e "
        f"FROM r JOIN e ON {keys_eq(cv, 'r', 'e')} "
        f"WHERE r.__r * e.__e > {factor} * (e.__e + r.__r * {per_request}){many}"
    )


def exact_variances(con, cv: CompiledView, events: str, requests: str, hot: str) -> pa.Table:
    """Exact variance/stddev of every variance feature at every distinct (hot key, request time):
    columns ``__hk``, ``__rq`` and ``__a_<feature>`` (see :mod:`featurestore.kernel.prefix`)."""
    from featurestore.kernel.prefix import PrefixMoments, lower_bounds

    pts = con.sql(
        f"SELECT DISTINCT hk.__hk, rq.{REQ_Q} AS __rq FROM ({requests_sql(cv, requests)}) AS rq "
        f"JOIN {hot} AS hk ON {keys_eq(cv, 'rq', 'hk')}"
    ).to_arrow_table()
    pk, pq = (pts[c].to_numpy().astype(np.int64) for c in ("__hk", "__rq"))
    out = {"__hk": pa.array(pk, pa.int64()), "__rq": pa.array(pq, pa.int64())}
    keys = ", ".join(q(k) for k in cv.join_keys)
    by_input: Dict[Tuple[str, str], List[AggSpec]] = {}
    for a in cv.aggregations:
        if a.function in _VARIANCE:
            by_input.setdefault((a.expr, "BIGINT" if _is_int(a) else "DOUBLE"), []).append(a)
    floor = np.iinfo(np.int64).min
    for (expr, cast), specs in by_input.items():
        ev = con.sql(
            f"SELECT hk.__hk, e.__t, e.__x FROM (SELECT {keys}, epoch_ms({q(cv.ts_column)}) AS __t, "
            f"CAST(({expr}) AS {cast}) AS __x FROM {events} WHERE ({expr}) IS NOT NULL) AS e "
            f"JOIN {hot} AS hk ON {keys_eq(cv, 'e', 'hk')} AND {_in_reach(cv, 'e.__t')} ORDER BY 1, 2"
        ).to_arrow_table()
        g, t = (ev[c].to_numpy().astype(np.int64) for c in ("__hk", "__t"))
        moments = PrefixMoments(ev["__x"].to_numpy())
        hi = lower_bounds(g, t, pk, pq)
        for a in specs:
            starts = np.full(len(pq), floor) if a.window_ms is None else pq - a.window_ms
            var = moments.variances(lower_bounds(g, t, pk, starts), hi)
            if a.function == "stddev":
                var = [None if v is None else math.sqrt(v) for v in var]
            out["__a_" + a.name] = pa.array(var, pa.float64())
    return pa.table(out)


def created_filtered_sql(cv: CompiledView, events: str, requests: str, created: str, prefix: str = "") -> str:
    """Latest features of ``cv`` when an event is also hidden until its ``created`` time (Feast's
    ``filter_by_created_timestamp=True``, :func:`~featurestore.semantics.created_visible_sql`): among the
    events with ``ts < q``, ``created < q`` (and within the TTL) the greatest in event order. A range join
    per key (requests x events), for this opt-in only; the ASOF plan of :func:`pit_sql` cannot skip the
    events created after ``q``."""
    lat = ", ".join(f"{_value_sql(s.expr, s.dtype)} AS {q('__l_' + s.name)}" for s in cv.latest)
    order = f"struct_pack(t := ev.{TS_MS}, o := {_order_key_struct(cv, 'ev.')})"
    visible = window_predicate_sql(f"ev.{TS_MS}", f"rq.{REQ_Q}", cv.ttl_ms)
    return (
        f"WITH ev AS (SELECT *, epoch_ms({q(cv.ts_column)}) AS {TS_MS}, {lat} FROM {events}),\n"
        f"rq AS ({requests_sql(cv, requests)}),\n"
        f"pick AS (SELECT rq.{REQ_ROW}, arg_max({_latest_struct(cv, 'ev.')}, {order}) AS __v FROM rq JOIN ev "
        f"ON {keys_eq(cv, 'rq', 'ev')} AND {visible} AND {created_visible_sql('ev.' + q(created), 'rq.' + REQ_Q)} "
        f"GROUP BY rq.{REQ_ROW})\n"
        f"SELECT rq.{REQ_ROW}, "
        + ", ".join(f"CAST({_latest_value('pick.__v', i, s.dtype)} AS {SQL_TYPES[s.dtype]}) AS {q(prefix + s.name)}"
                    for i, s in enumerate(cv.latest))
        + f"\nFROM rq LEFT JOIN pick ON pick.{REQ_ROW} = rq.{REQ_ROW}"
    )


def _arrow(con, sql: str) -> pa.Table:
    """Run ``sql``; an integer sum outside int64 (:func:`int64_sum_sql`) is its one-line RequestError."""
    import duckdb

    try:
        return con.sql(sql).to_arrow_table()
    except duckdb.InvalidInputException as exc:
        text = str(exc)
        if INT64_OVERFLOW not in text:
            raise
        line = text[text.index("feature view '"):] if "feature view '" in text else text
        raise RequestError(line.splitlines()[0]) from None


def point_in_time(con, cv: CompiledView, events: str, requests: str, prefix: str = "", unique: bool = False,
                  created: Optional[str] = None) -> pa.Table:
    """Run the point-in-time query of ``cv`` (see :func:`pit_sql`), with the plan picked per key.
    ``unique``: the events are known to hold no two with the same (join keys, ms time) (the offline
    table's ``unique_on``, recorded by the backfill). ``created``: hide each event until this column's time
    too (:func:`created_filtered_sql`; latest features only)."""
    if created is not None:
        if cv.aggregations:
            raise ValueError(f"view '{cv.name}': a created-time filter applies to latest features only")
        return con.sql(created_filtered_sql(cv, events, requests, created, prefix)).to_arrow_table()
    hot = None
    if cv.aggregations:
        keys = con.sql(hot_keys_sql(cv, events, requests)).to_arrow_table()
        if keys.num_rows:
            hot = keys.select([*cv.join_keys, "__hk", "__lo", "__hi"])
    checked = dx.checked_inputs(con, cv, events)
    if hot is None:
        table = _arrow(con, pit_sql(cv, events, requests, prefix, checked=checked, unique=unique))
        return dx.repair(con, cv, events, requests_sql(cv, requests), _record_refused(cv, table, prefix), prefix)
    registered = [HOT]
    con.register(HOT, hot)
    try:
        exact = None
        if any(a.function in _VARIANCE for a in cv.aggregations):
            con.register(EXACT, exact_variances(con, cv, events, requests, HOT))
            registered.append(EXACT)
            exact = EXACT
        sql = pit_sql(cv, events, requests, prefix, hot=HOT, exact=exact, checked=checked, unique=unique)
        table = _arrow(con, sql)
    finally:
        for name in registered:
            con.unregister(name)
    return dx.repair(con, cv, events, requests_sql(cv, requests), _record_refused(cv, table, prefix), prefix)


def _record_refused(cv: CompiledView, table: pa.Table, prefix: str) -> pa.Table:
    """While refusing (:func:`refusing_overflow`): record the request rows of each flagged integer sum and
    drop the flag columns."""
    refused = _REFUSED.get()
    if refused is None:
        return table
    for a in cv.aggregations:
        flag = OVERFLOW + prefix + a.name
        if flag in table.column_names:
            mask = table[flag].fill_null(False).to_numpy(zero_copy_only=False)
            if mask.any():
                rows = table[REQ_ROW].to_numpy()[mask]
                refused.setdefault((cv.name, a.name), set()).update(int(r) for r in rows)
            table = table.drop([flag])
    return table


__all__: Sequence[str] = ("pit_sql", "point_in_time", "hot_keys_sql", "exact_variances", "HOT_KEY_COST",
                          "refusing_overflow")
