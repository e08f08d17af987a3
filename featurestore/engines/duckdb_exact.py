"""Float sums and means of point-in-time joins: where DuckDB's compensated sum is trusted, and the exact
recomputation of the windows where it is not. Both plans of :mod:`featurestore.engines.duckdb_pit` render
their float ``sum``/``mean`` through :func:`float_sum_sql` and call :func:`repair` on their result.

The online store and the reference sum floats exactly (:mod:`featurestore.kernel.exact`: correctly
rounded from exact scaled-integer sums). DuckDB's ``fsum`` is Kahan summation, which misses that in two ways:

* **Non-finite inputs.** ``fsum(inf, 1.0)`` is NaN (its compensation computes ``inf - inf``). IEEE, and
  every other path here: any NaN, or +inf with -inf, gives NaN; otherwise the infinity wins.
* **Cancellation.** Its error is bounded by ``c u S`` with ``S = sum(|x|)`` and ``u = 2**-53``, not by the
  result: ``fsum(1e16, 1, -1e16)`` is 0. Relative to the result that is ``c u k``, ``k = S / |sum(x)|`` being
  the window's condition number. (``c`` is ~2 for one sequential Kahan sum. DuckDB also merges partial
  states, in segment trees and across threads, adding the other state's compensation with the wrong sign;
  each merge level adds a few ``u S``: ``c`` stays below ~30 for any realistic depth. Measured on random
  windows of up to 1e5 values with magnitudes over 15 decades: ``c`` < 0.3.)

Before the query, one scan of the events (:func:`checked_inputs`) finds the inputs whose values are all
finite, below ``CAP`` in magnitude and of one sign (amounts, durations, counts): every window of those
has ``k = 1``, so plain ``fsum`` is within ``c u`` of the exact sum and the query computes nothing more.
Every window of any other input computes, beside ``s = fsum(x)``, one plain ``b = sum(m(x))``, where
``m(x) = min(|x|, CAP)`` for a finite ``x`` and ``x`` itself otherwise (:func:`abs_sql`, per event):

* ``b`` not finite: some input is not finite (the finite part is at most ``n * CAP``, which cannot
  overflow), and ``b`` is the IEEE result itself: +inf only from +inf inputs without -inf or NaN, -inf
  likewise, NaN otherwise. Applied in SQL.
* ``b`` finite, ``s`` finite, ``b < CAP`` and ``b <= EXACT_CONDITION * |s|``: the compensated sum is within
  ``c u EXACT_CONDITION <= 30 * 2**-53 * 2**16 = 2.2e-10`` of the exact value, relatively (SPEC §3 allows
  1e-9). Used as it is.
* otherwise (cancellation, nonzero values summing to exactly 0, a value beyond ``CAP`` or an overflow):
  the window is *flagged* (a boolean column :data:`FLAG` + feature) and :func:`repair` recomputes it
  exactly in Python over just those windows (:class:`featurestore.kernel.prefix.PrefixMoments`), correctly
  rounded like the online store.

The range join's shifted variance is flagged the same way when its sums are not finite (squares that
overflow, non-finite inputs). Integer sums are exact in SQL (``HUGEINT``), integer means are rounded from
them. Cost (bench/README.md): nothing measurable for one-signed inputs; ~1.1-1.25x the query's CPU for
inputs with mixed signs or non-finite values (one more aggregate per window), plus the repair of the
flagged windows (linear in the events of their keys).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np
import pyarrow as pa

from featurestore import dtypes
from featurestore.compiler.ir import AggSpec, CompiledView
from featurestore.engines.duckdb_sql import REQ_Q, REQ_ROW, keys_eq, q
from featurestore.kernel.prefix import PrefixMoments, lower_bounds

EXACT_CONDITION = 2.0**16  # a compensated sum is used while sum(|x|) <= this * |sum(x)|
CAP = 2.0**960  # |x| above this (or an overflowing window) always goes to the exact recomputation
FLAG = "__fs_inexact:"  # prefix of the flag column of each float sum/mean/variance feature
_ROWS, _KEYS, _SPANS = "__fs_inexact_rows", "__fs_inexact_keys", "__fs_inexact_spans"
_INT64_MIN = np.iinfo(np.int64).min


# -- SQL ----------------------------------------------------------------------------------------------
def is_float_sum(a: AggSpec) -> bool:
    """A sum or mean of float inputs (computed by ``fsum`` and checked here)."""
    return a.function in ("sum", "mean") and a.input_dtype in (dtypes.FLOAT32, dtypes.FLOAT64)


def abs_sql(x: str) -> str:
    """``m(x)`` of the module docstring, per event: ``min(|x|, CAP)`` if finite, else ``x``."""
    d = f"CAST({x} AS DOUBLE)"
    return f"CASE WHEN isfinite({d}) THEN least(abs({d}), {CAP!r}) ELSE {d} END"


def _trusted(s: str, b: str) -> str:
    return f"isfinite({s}) AND {b} < {CAP!r} AND {b} <= {float(EXACT_CONDITION)!r} * abs({s})"


def float_sum_sql(s: str, b: str) -> str:
    """The sum of a window from its ``fsum`` ``s`` and ``sum(m(x))`` ``b``: the IEEE result when an
    input is not finite, ``s`` when trusted, else null (the window is flagged)."""
    return f"CASE WHEN NOT isfinite({b}) THEN {b} WHEN {_trusted(s, b)} THEN {s} END"


def float_sum_flag_sql(s: str, b: str) -> str:
    """True when the window's sum needs the exact recomputation (null for an empty window)."""
    return f"(isfinite({b}) AND NOT ({_trusted(s, b)}))"


def variance_flag_sql(n: str, s1: str, s2: str) -> str:
    """True when the range join's shifted variance has non-finite sums (overflowing squares, non-finite
    inputs): recomputed exactly."""
    return f"({n} >= 2 AND NOT (isfinite({s1}) AND isfinite({s2})))"


def checked_inputs(con, cv: CompiledView, events: str) -> Set[str]:
    """The input expressions of float sums and means whose windows must be checked: all but those whose
    every value is finite, below ``CAP`` in magnitude and of one sign (then every window has ``k = 1``:
    the compensated sum is within ``c u`` of the exact one, and checking would only cost time). One scan
    of the events (no grouping)."""
    exprs = list(dict.fromkeys(a.expr for a in cv.aggregations if is_float_sum(a)))
    if not exprs:
        return set()
    tests = []
    for e in exprs:
        lo, hi = f"min(CAST(({e}) AS DOUBLE))", f"max(CAST(({e}) AS DOUBLE))"
        tests.append(f"coalesce(({lo} >= 0 AND {hi} < {CAP!r}) OR ({hi} <= 0 AND {lo} > {-CAP!r}), true)")
    stable = con.sql(f"SELECT {', '.join(tests)} FROM {events}").fetchall()[0]
    return {e for e, ok in zip(exprs, stable) if not ok}


# -- the repair ---------------------------------------------------------------------------------------
def repair(con, cv: CompiledView, events: str, requests: str, table: pa.Table, prefix: str = "") -> pa.Table:
    """Recompute exactly the flagged windows of a point-in-time result and drop the flag columns.

    ``events`` is the relation of stored events, ``requests`` the SQL of the request rows (``__row``,
    ``__q_ms``, join keys), ``table`` the query's result (``__row``, ``prefix + feature``, flags)."""
    todo: List[Tuple[AggSpec, np.ndarray]] = []
    for a in cv.aggregations:
        flag = FLAG + prefix + a.name
        if flag not in table.column_names:
            continue
        mask = table[flag].fill_null(False).to_numpy(zero_copy_only=False)
        table = table.drop([flag])
        if mask.any():
            todo.append((a, np.flatnonzero(mask)))
    if not todo:
        return table
    rows = table[REQ_ROW].to_numpy()
    key_of, q_of = _points(con, cv, requests, np.unique(np.concatenate([rows[p] for _, p in todo])))
    groups: Dict[Tuple[str, str], List[Tuple[AggSpec, np.ndarray]]] = {}
    for a, pos in todo:
        cast = "BIGINT" if a.input_dtype in dtypes.INTEGER else "DOUBLE"
        groups.setdefault((a.expr, cast), []).append((a, pos))
    try:
        for (expr, cast), specs in groups.items():
            pk = [key_of(rows[pos]) for _, pos in specs]
            pq = [q_of(rows[pos]) for _, pos in specs]
            lo = [_starts(p, a.window_ms) for p, (a, _) in zip(pq, specs)]
            g, t, x = _events(con, cv, events, expr, cast, np.concatenate(pk), np.concatenate(lo), np.concatenate(pq))
            moments = PrefixMoments(x)
            for (a, pos), k, qs, starts in zip(specs, pk, pq, lo):
                ranges = lower_bounds(g, t, k, starts), lower_bounds(g, t, k, qs)
                table = _patch(table, prefix + a.name, pos, _values(a, moments, *ranges), a.empty_value)
    finally:
        for name in (_ROWS, _KEYS, _SPANS):
            try:
                con.unregister(name)
            except Exception:  # pragma: no cover - not registered
                pass
    return table


def _points(con, cv: CompiledView, requests: str, rows: np.ndarray):
    """Key id and request time of each flagged request row (as two lookups ``row -> value``); registers
    the flagged keys with their ids as ``_KEYS``."""
    keys = ", ".join(q(k) for k in cv.join_keys)
    con.register(_ROWS, pa.table({REQ_ROW: pa.array(rows, pa.int64())}))
    pts = con.sql(
        f"SELECT rq.{REQ_ROW}, rq.{REQ_Q}, dense_rank() OVER (ORDER BY {keys}) AS __k, {keys} "
        f"FROM ({requests}) AS rq SEMI JOIN {_ROWS} AS f ON f.{REQ_ROW} = rq.{REQ_ROW} ORDER BY rq.{REQ_ROW}"
    ).to_arrow_table()
    con.register(_KEYS, pts.select(["__k", *cv.join_keys]).group_by(["__k", *cv.join_keys]).aggregate([]))
    order = pts[REQ_ROW].to_numpy()
    kid, qms = pts["__k"].to_numpy().astype(np.int64), pts[REQ_Q].to_numpy().astype(np.int64)
    return (lambda r: kid[np.searchsorted(order, r)]), (lambda r: qms[np.searchsorted(order, r)])


def _starts(q_ms: np.ndarray, window_ms: Optional[int]) -> np.ndarray:
    return np.full(len(q_ms), _INT64_MIN) if window_ms is None else q_ms - window_ms


def _events(con, cv: CompiledView, events: str, expr: str, cast: str, k: np.ndarray, lo: np.ndarray,
            hi: np.ndarray):
    """Non-null input values of the flagged keys inside the union of the flagged windows ``[lo, hi)``,
    sorted by (key id, time). Each event is matched to the window with the greatest start at or before
    it (an ASOF join) and kept if it is before the latest end of the windows starting up to there: so
    the work is linear in the events of the flagged keys, whatever the windows' overlap."""
    con.register(_SPANS, pa.table({"__k": pa.array(k, pa.int64()), "__lo": pa.array(lo, pa.int64()),
                                   "__hi": pa.array(hi, pa.int64())}))
    out = con.sql(
        f"WITH sp AS (SELECT __k, __lo, max(__hi) OVER (PARTITION BY __k ORDER BY __lo) AS __reach FROM {_SPANS}),\n"
        f"e AS (SELECT kt.__k, epoch_ms(ev.{q(cv.ts_column)}) AS __t, CAST(({expr}) AS {cast}) AS __x "
        f"FROM {events} AS ev JOIN {_KEYS} AS kt ON {keys_eq(cv, 'ev', 'kt')} WHERE ({expr}) IS NOT NULL)\n"
        "SELECT e.__k, e.__t, e.__x FROM e ASOF JOIN sp ON e.__k = sp.__k AND e.__t >= sp.__lo "
        "WHERE e.__t < sp.__reach ORDER BY 1, 2"
    ).to_arrow_table()
    return (out["__k"].to_numpy().astype(np.int64), out["__t"].to_numpy().astype(np.int64),
            out["__x"].to_numpy(zero_copy_only=False))


def _values(a: AggSpec, moments: PrefixMoments, lo: np.ndarray, hi: np.ndarray) -> List[Optional[float]]:
    if a.function == "sum":
        return moments.sums(lo, hi)
    if a.function == "mean":
        return moments.means(lo, hi)
    var = moments.variances(lo, hi)
    return var if a.function == "variance" else [None if v is None else math.sqrt(v) for v in var]


def _patch(table: pa.Table, name: str, pos: np.ndarray, values: Sequence[Optional[float]], default) -> pa.Table:
    """``table[name][pos] = values`` (a null value takes the feature's default, as in SQL)."""
    col = table[name]
    arr = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
    valid = col.is_valid().to_numpy(zero_copy_only=False).copy()
    values = [default if v is None else v for v in values]
    arr[pos] = [math.nan if v is None else float(v) for v in values]
    valid[pos] = [v is not None for v in values]
    return table.set_column(table.schema.get_field_index(name), name, pa.array(arr, col.type, mask=~valid))


__all__: Sequence[str] = ("EXACT_CONDITION", "CAP", "FLAG", "abs_sql", "checked_inputs", "float_sum_sql", "float_sum_flag_sql",
                          "variance_flag_sql",
                          "is_float_sum", "repair")
