"""The kernel's minute partials computed by DuckDB: one GROUP BY (entity, minute) for materialize.

:mod:`featurestore.kernel.batch` builds a dense entity's tiles from the partial row of each minute it
has events in (and, for views with an unbounded window, the row of every event before the cut). This
module computes those rows in SQL, vectorised, so Python never touches a hot entity's events one by one:
it only decodes one row per (entity, minute) and merges and encodes tiles.

The rows are bit for bit the rows :meth:`featurestore.kernel.partials.Layout.add` builds from the same
events in the same order (``__fs_r``: the event's rank in event order, the order materialize's stored
members are numbered in), slot kind by slot kind:

* counts: ``count(*)``, ``count(x)`` (NaN is a value);
* integer sums: ``sum`` as HUGEINT (exact); float sums and sums of squares: each double ``x`` is split
  into ``M * 2**E`` (``M`` an integer below ``2**55``, found with ``log2`` and corrected by one bit
  of margin; multiplying by powers of two is exact), ``M`` (and the 27/28-bit halves of ``|M|``
  squared and crossed) summed per exponent as HUGEINT, and Python joins the few exponents of a minute
  into one :class:`~featurestore.kernel.exact.ExactSum`; NaN and infinities are counted apart;
* min / max: DuckDB's order of doubles is the kernel's (NaN above every number); of equal values the
  kernel keeps the first added, which only shows for a zero (``-0.0`` vs ``0.0``): the first zero by
  ``__fs_r`` is taken then;
* first: the non-null value of least ``__fs_r``; last and latest: of greatest event order, the least
  ``__fs_r`` among equal orders (``__fs_o``: the event's rank, equal for equal orders);
* distinct sets: ``list(DISTINCT x)``, a zero replaced by the first zero added (NaN is one value).

Nothing here holds meaning of its own: the kernel's Layout says which slots exist; the tests compare
every stored byte with the per-entity build (``tests/test_materialize_vector.py``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

from featurestore.kernel.exact import ExactSum
from featurestore.kernel.partials import Layout, _NAN_KEY

BASE_G = -(1 << 62)  # the group of the events before the cut (the base row)
MINUTE_MS = 60_000


def q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _float_parts(x: str) -> str:
    """``E`` and ``M`` with ``x = M * 2**E`` exactly, for finite non-zero ``x`` (see the module docs)."""
    e = f"greatest(CAST(floor(log2(abs({x}))) AS INTEGER) - 53, -1074)"
    return (f"SELECT __fs_e, __fs_g, __E, CAST(({x} * pow(2.0, (-__E) // 2)) * pow(2.0, -__E - ((-__E) // 2)) "
            f"AS BIGINT) AS __M FROM (SELECT __fs_e, __fs_g, {x}, {e} AS __E FROM __fs_src "
            f"WHERE {x} IS NOT NULL AND isfinite({x}) AND {x} <> 0)")


def _value(x: str, floats: bool) -> str:
    """A value picked by arg_min/arg_max: doubles as their JSON text (DuckDB's arg_min may return a
    -0.0 as 0.0; the text keeps the sign, and :func:`_float` reads it back)."""
    return f"to_json({x})" if floats else x


def _float(v: Any) -> Any:
    return None if v is None else float(v)


def partials_sql(layout: Layout, table: str, cut: Optional[int], keep_base: bool, order_text: bool) -> str:
    """One row per (``__fs_e``, ``__fs_g``) of the events in ``table`` (columns ``__fs_e``: entity number,
    ``__fs_ts`` ms, ``__fs_r`` rank in event order, ``__fs_o`` order rank, ``__fs_i<j>`` inputs,
    ``__fs_ord`` order text when ``order_text``), ``__fs_g`` the minute start or :data:`BASE_G` for
    events before ``cut``; ordered by entity then group (base first). Columns: ``__fs_n`` and per slot
    ``s<i>`` (and helpers ``z<i>``, ``o<i>``, ``nan<i>``, ...), read by :func:`decode_rows`."""
    minute = f"(__fs_ts - (((__fs_ts % {MINUTE_MS}) + {MINUTE_MS}) % {MINUTE_MS}))"
    if cut is None:
        g = minute
        where = "TRUE"
    else:
        g = f"CASE WHEN __fs_ts < {int(cut)} THEN {BASE_G} ELSE {minute} END"
        where = "TRUE" if keep_base else f"__fs_ts >= {int(cut)}"
    order = "__fs_ord" if order_text else "__fs_ts"
    cols: List[str] = ["count(*) AS __fs_n"]
    joins: List[Tuple[str, str]] = []
    done_float: Dict[int, str] = {}
    for i, (kind, col) in enumerate(layout.slots):
        x = f"__fs_i{col}" if col is not None else None
        fl = col in layout.float_cols
        if kind == "*":
            cols.append(f"count(*) AS s{i}")
        elif kind == "n":
            cols.append(f"count({x}) AS s{i}")
        elif kind in ("s", "q") and fl:
            if col not in done_float:
                name = done_float[col] = f"fx{col}"
                joins.append((name, f"SELECT __fs_e, __fs_g, list(struct_pack(e := __E, m := CAST(sm AS VARCHAR), "
                                    f"h := CAST(sh AS VARCHAR), k := CAST(sk AS VARCHAR), l := CAST(sl AS VARCHAR))) "
                                    f"AS {name} FROM (SELECT __fs_e, __fs_g, __E, sum(__M) AS sm, sum(__H * __H) AS sh, "
                                    f"sum(__H * __L) AS sk, sum(__L * __L) AS sl FROM (SELECT *, abs(__M) >> 28 AS __H, "
                                    f"abs(__M) & 268435455 AS __L FROM ({_float_parts(x)})) GROUP BY ALL) GROUP BY ALL"))
                cols.append(f"count(*) FILTER (WHERE isnan({x})) AS nan{col}, count(*) FILTER (WHERE {x} = 'inf'::DOUBLE) "
                            f"AS pinf{col}, count(*) FILTER (WHERE {x} = '-inf'::DOUBLE) AS ninf{col}")
        elif kind == "s":
            cols.append(f"CAST(sum(CAST({x} AS HUGEINT)) AS VARCHAR) AS s{i}")
        elif kind == "q":  # an integer column: sum of squares from 32-bit halves of |x|
            a = f"abs(CAST({x} AS HUGEINT))"
            cols.append(f"CAST(sum(({a} >> 32) * ({a} >> 32)) AS VARCHAR) AS h{i}, "
                        f"CAST(sum(({a} >> 32) * ({a} & 4294967295)) AS VARCHAR) AS k{i}, "
                        f"CAST(sum(({a} & 4294967295) * ({a} & 4294967295)) AS VARCHAR) AS l{i}")
        elif kind in ("<", ">"):
            cols.append(f"{'min' if kind == '<' else 'max'}({x}) AS s{i}")
            if fl:
                cols.append(f"arg_min(to_json({x}), __fs_r) FILTER (WHERE {x} = 0) AS z{i}")
        elif kind == "d":
            cols.append(f"list(DISTINCT {x}) FILTER (WHERE {x} IS NOT NULL) AS s{i}")
            if fl:
                cols.append(f"arg_min(to_json({x}), __fs_r) FILTER (WHERE {x} = 0) AS z{i}")
        elif kind == "f":
            cols.append(f"arg_min({_value(x, fl)}, __fs_r) FILTER (WHERE {x} IS NOT NULL) AS s{i}, "
                        f"arg_min({order}, __fs_r) FILTER (WHERE {x} IS NOT NULL) AS o{i}")
        elif kind == "l":
            key = "struct_pack(a := __fs_o, b := -__fs_r)"
            cols.append(f"arg_max({_value(x, fl)}, {key}) FILTER (WHERE {x} IS NOT NULL) AS s{i}, "
                        f"arg_max({order}, {key}) FILTER (WHERE {x} IS NOT NULL) AS o{i}")
        elif kind == "L":
            key = "struct_pack(a := __fs_o, b := -__fs_r)"
            cols.append(f"arg_max({order}, {key}) AS o{i}")
            for c in layout.latest_cols:
                cols.append(f"arg_max_null({_value(f'__fs_i{c}', c in layout.float_cols)}, {key}) AS v{i}_{c}")
        else:  # pragma: no cover
            raise ValueError(kind)
    src = f"SELECT *, {g} AS __fs_g FROM {table} WHERE {where}"
    ctes = [f"__fs_src AS ({src})", f"__fs_agg AS (SELECT __fs_e, __fs_g, {', '.join(cols)} FROM __fs_src GROUP BY ALL)"]
    ctes += [f"{name} AS ({sql})" for name, sql in joins]
    body = "SELECT * FROM __fs_agg" + "".join(f" LEFT JOIN {name} USING (__fs_e, __fs_g)" for name, _ in joins)
    return f"WITH {', '.join(ctes)}\n{body} ORDER BY __fs_e, __fs_g"


def _exact(parts: Optional[list], nan: int, pinf: int, ninf: int, square: bool) -> ExactSum:
    """The ExactSum of one group's per-exponent sums (:func:`partials_sql`'s float struct lists)."""
    if square:  # x*x = M*M * 2**(2E); non-finite squares: NaN stays NaN, +-inf give +inf
        out = ExactSum(0, 0, nan, pinf + ninf, 0)
    else:
        out = ExactSum(0, 0, nan, pinf, ninf)
    if not parts:
        return out
    if square:
        terms = [(2 * p["e"], (int(p["h"]) << 56) + (int(p["k"]) << 29) + int(p["l"])) for p in parts]
    else:
        terms = [(p["e"], int(p["m"])) for p in parts]
    s = max(0, max(-e for e, _ in terms))
    out.m = sum(m << (e + s) for e, m in terms)
    out.s = s
    return out


def decode_rows(layout: Layout, batch, order_text: bool, loads) -> List[Tuple[int, int, int, list]]:
    """``(entity, group, events, row)`` of each row of an Arrow batch of :func:`partials_sql`: ``row``
    equal to the kernel row of the group's events (see the module docstring)."""
    cols = {name: batch.column(name).to_pylist() for name in batch.schema.names}
    n = batch.num_rows
    es, gs, counts = cols["__fs_e"], cols["__fs_g"], cols["__fs_n"]
    slots = list(enumerate(layout.slots))
    float_cols = layout.float_cols
    out = []
    for r in range(n):
        row: list = []
        for i, (kind, col) in slots:
            if kind in ("*", "n"):
                row.append(cols[f"s{i}"][r])
            elif kind in ("s", "q") and col in float_cols:
                row.append(_exact(cols[f"fx{col}"][r], cols[f"nan{col}"][r], cols[f"pinf{col}"][r],
                                  cols[f"ninf{col}"][r], kind == "q"))
            elif kind == "s":
                v = cols[f"s{i}"][r]
                row.append(0 if v is None else int(v))
            elif kind == "q":
                h, k, lo = cols[f"h{i}"][r], cols[f"k{i}"][r], cols[f"l{i}"][r]
                m = 0 if h is None else (int(h) << 64) + (int(k) << 33) + int(lo)
                row.append(ExactSum(m, 0))
            elif kind in ("<", ">"):
                v = cols[f"s{i}"][r]
                if v is not None and col in float_cols and v == 0:
                    v = _float(cols[f"z{i}"][r])
                row.append(v)
            elif kind == "d":
                v = cols[f"s{i}"][r] or []
                if col in float_cols:
                    z = _float(cols[f"z{i}"][r])
                    v = {_NAN_KEY if x != x else (z if x == 0 else x) for x in v}
                else:
                    v = set(v)
                row.append(v)
            elif kind in ("f", "l"):
                v = cols[f"s{i}"][r]
                if col in float_cols:
                    v = _float(v)
                if v is None and cols[f"o{i}"][r] is None:
                    row.append(None)
                else:
                    row.append([_order(cols[f"o{i}"][r], order_text, loads), v])
            else:  # "L"
                o = cols[f"o{i}"][r]
                row.append(None if o is None else
                           [_order(o, order_text, loads), [_float(cols[f"v{i}_{c}"][r]) if c in float_cols
                                                           else cols[f"v{i}_{c}"][r] for c in layout.latest_cols]])
        out.append((es[r], gs[r], counts[r], row))
    return out


def _order(o: Any, order_text: bool, loads) -> list:
    return loads(o) if order_text else [o]


__all__ = ["BASE_G", "partials_sql", "decode_rows"]
