"""The kernel's tile partials computed by DuckDB, vectorised, for materialize (GROUP BY entity, tile).

:func:`featurestore.kernel.batch.changes_from_tiles` builds a dense entity's stored state from the
partial row of every tile the store holds (and, for views with an unbounded window, the row of every
event before the cut and the top tiles). This module computes those rows in SQL, so Python never
touches a hot entity's events one by one: it forwards the stored text of each tile row, written by
DuckDB too (``row_text``: :mod:`featurestore.engines.duckdb_tile_text`), or decodes the row.

Two aggregations: per (entity, entry tile) from the events, then per (entity, level, tile), each
level from the level below. An event's entry tile is the tile of the lowest level that is kept among
those holding it (:func:`minute_levels`, counted first from the minutes' counts; a kept tile's parent
is kept too): so the events are grouped once by the tile they enter, a level groups its kept tiles
only (the level below's and the entries at its level), and the events of no kept tile are dropped
(most minutes hold an event or two: grouped per minute, the low levels had almost as many groups as
events). Each level's distinct sets of text are grouped from the events entering at or below it (no
join with the kept tiles). Slots are computed only at the levels whose rows hold them
(``Layout.levels``), and only tiles of more than ``TILE_MIN_EVENTS`` events are kept. Events are identified by ``__fs_r``,
their rank in event order (the order materialize's stored members are numbered in); the values of
first / last / latest are joined back from the events by that rank at the end.

The rows are bit for bit the rows :meth:`featurestore.kernel.partials.Layout.add` builds from the same
events in the same order, slot kind by slot kind:

* counts: ``count(*)``, ``count(x)`` (NaN is a value);
* integer sums (and sums of squares, from 32-bit halves of ``|x|``) as HUGEINT, exact; float sums and
  sums of squares: each double ``x`` is split into ``M * 2**E`` (``E`` from ``log2`` with one bit of
  margin, floored to a multiple of 8 so a tile holds few exponents; ``M`` an integer below ``2**62``;
  scaling by powers of two is exact), ``M`` (and the 31-bit halves of ``|M|`` squared and crossed)
  summed per exponent as HUGEINT, written as one text per tile, and Python joins the few exponents
  into one :class:`~featurestore.kernel.exact.ExactSum`; NaN and infinities are counted apart;
* min / max: DuckDB's order of doubles is the kernel's (NaN above every number); of equal values the
  kernel keeps the first added, which only shows for a zero (``-0.0`` vs ``0.0``): the first zero's
  rank and sign are kept (``2 * rank + sign``);
* first: the non-null value of least rank; last and latest: of greatest event order, the least rank
  among equal orders (key ``order rank * 2**32 + (2**32 - 1 - rank)``: one BIGINT max);
* distinct sets: ``list(DISTINCT x)`` per minute, ``list_distinct(flatten(...))`` per tile, a zero
  replaced by the first zero added (NaN is one value).

Nothing here holds meaning of its own: the kernel's Layout says which slots exist; the tests compare
every stored byte with the per-entity build (``tests/test_materialize_vector.py``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa

from featurestore.engines import duckdb_tile_text as dtext
from featurestore.kernel.exact import ExactSum, reduced
from featurestore.kernel.partials import Encoded, EncodedRow, Layout, _NAN_KEY

BASE_G = -(1 << 62)  # the group of the events before the cut (the base row)
_E_STEP = 8  # float sums: exponents grouped by multiples of this (mantissas then below 2**62)
MINUTE_MS = 60_000
_LOW = 4294967295  # 2**32 - 1


def _float(v: Any) -> Any:
    return None if v is None else float(v)


def tiles_sql(layout: Layout, table: str, cut: Optional[int], keep_base: bool, order_text: bool, tile_top: int,
              least: int, all_tops: bool, text_cols: frozenset = frozenset(),
              row_text: Optional[Tuple[bool, Optional[int]]] = None, pick_order: Optional[str] = None,
              levels: Optional[str] = None) -> str:
    """The rows :func:`featurestore.kernel.batch.changes_from_tiles` needs, from the events in ``table``
    (columns ``__fs_e``: entity number, ``__fs_d``: dense, ``__fs_ts`` ms, ``__fs_r`` rank in event
    order, ``__fs_o`` order rank, ``__fs_i<j>`` inputs, ``__fs_ord`` order text when ``order_text``):
    per entity, the base row (``__fs_l = -1``: the events before ``cut``, views with ``keep_base``) and,
    for dense entities, every tile (``__fs_l`` level <= ``tile_top``, ``__fs_g`` start, not before
    ``cut``) of more than ``least`` events (and with ``all_tops`` every top tile). Ordered by entity,
    level, start; read by :func:`decode_rows`. The distinct sets of inputs in ``text_cols`` (strings,
    integers, booleans: never floats) come as their encoded JSON text (``to_json(list_sort(...))``).
    ``row_text = (order_plain, merged_level)``: each row's stored text too, column ``__fs_txt``
    (:func:`featurestore.engines.duckdb_tile_text.row_text_sql`). ``pick_order``: the SQL of a picked
    event's order text over its row of ``table`` aliased ``__ALIAS__`` (default: its ``__fs_ord``).
    ``levels``: the table :func:`minute_levels` made of the same arguments: each event then enters the
    level rollup in its entry tile (module docstring) instead of its minute at level 0 (the same rows,
    far fewer groups); without it every minute enters at level 0 and every tile is built."""
    g0, where = _minute_sql(cut, keep_base)
    key = f"(__fs_o * {_LOW + 1} + ({_LOW} - __fs_r))"
    m_cols: List[str] = ["count(*) AS n"]  # per (entity, entry tile)
    # per column of the minutes: (name, merge of a level's children, highest level holding it, final form)
    merges: List[Tuple[str, str, int, str]] = [("n", "CAST(sum(n) AS BIGINT)", tile_top, "n")]
    picks: List[Tuple[int, str, Optional[int]]] = []  # (slot, rank column, input) of first/last/latest
    float_level: Dict[int, int] = {}
    texts: List[Tuple[int, str, int]] = []  # (slot, input, top level) of distinct sets written as JSON text
    for i, (kind, col) in enumerate(layout.slots):
        if kind in ("s", "q") and col in layout.float_cols:
            float_level[col] = max(float_level.get(col, -1), layout.levels[i])
    for i, (kind, col) in enumerate(layout.slots):
        x = f"__fs_i{col}" if col is not None else None
        fl = col in layout.float_cols
        lvl = layout.levels[i]
        if kind in ("*", "n"):
            m_cols.append(f"count({'*' if kind == '*' else x}) AS s{i}")
            merges.append((f"s{i}", f"CAST(sum(s{i}) AS BIGINT)", lvl, f"s{i}"))
        elif kind in ("s", "q") and fl:
            if f"nan{col}" not in " ".join(m_cols):
                for name, cond in (("nan", f"isnan({x})"), ("pinf", f"{x} = 'inf'::DOUBLE"),
                                   ("ninf", f"{x} = '-inf'::DOUBLE")):
                    m_cols.append(f"count(*) FILTER (WHERE {cond}) AS {name}{col}")
                    merges.append((f"{name}{col}", f"CAST(sum({name}{col}) AS BIGINT)", tile_top, f"{name}{col}"))
        elif kind == "s":
            m_cols.append(f"sum(CAST({x} AS HUGEINT)) AS s{i}")
            merges.append((f"s{i}", f"sum(s{i})", lvl, f"CAST(s{i} AS VARCHAR)"))
        elif kind == "q":  # an integer column: sum of squares from 32-bit halves of |x|
            a = f"abs(CAST({x} AS HUGEINT))"
            for name, term in (("h", f"({a} >> 32) * ({a} >> 32)"), ("k", f"({a} >> 32) * ({a} & {_LOW})"),
                               ("l", f"({a} & {_LOW}) * ({a} & {_LOW})")):
                m_cols.append(f"sum({term}) AS {name}{i}")
                merges.append((f"{name}{i}", f"sum({name}{i})", lvl, f"CAST({name}{i} AS VARCHAR)"))
        elif kind in ("<", ">"):
            agg = "min" if kind == "<" else "max"
            m_cols.append(f"{agg}({x}) AS s{i}")
            merges.append((f"s{i}", f"{agg}(s{i})", lvl, f"s{i}"))
            if fl:  # the first zero: 2 * rank + (1 if -0.0)
                m_cols.append(f"min(2 * __fs_r + CASE WHEN to_json({x}) = '-0.0' THEN 1 ELSE 0 END) "
                              f"FILTER (WHERE {x} = 0) AS z{i}")
                merges.append((f"z{i}", f"min(z{i})", lvl, f"z{i}"))
        elif kind == "d" and col in text_cols and not fl:
            texts.append((i, x, min(lvl, tile_top)))  # each level from the events: see below
        elif kind == "d":
            m_cols.append(f"list(DISTINCT {x}) FILTER (WHERE {x} IS NOT NULL) AS s{i}")
            merges.append((f"s{i}", f"list_distinct(flatten(list(s{i}) FILTER (WHERE s{i} IS NOT NULL)))", lvl, f"s{i}"))
            if fl:
                m_cols.append(f"min(2 * __fs_r + CASE WHEN to_json({x}) = '-0.0' THEN 1 ELSE 0 END) "
                              f"FILTER (WHERE {x} = 0) AS z{i}")
                merges.append((f"z{i}", f"min(z{i})", lvl, f"z{i}"))
        elif kind == "f":
            m_cols.append(f"min(__fs_r) FILTER (WHERE {x} IS NOT NULL) AS s{i}")
            merges.append((f"s{i}", f"min(s{i})", lvl, f"s{i}"))
            picks.append((i, f"a.s{i}", col))
        elif kind in ("l", "L"):
            m_cols.append(f"max({key})" + (f" FILTER (WHERE {x} IS NOT NULL)" if kind == "l" else "") + f" AS s{i}")
            merges.append((f"s{i}", f"max(s{i})", lvl, f"s{i}"))
            picks.append((i, f"({_LOW} - (a.s{i} & {_LOW}))", col))
        else:  # pragma: no cover
            raise ValueError(kind)
    keep = f"n > {int(least)}" + (f" OR __fs_l = {tile_top}" if all_tops else "")
    since = "" if cut is None else f" AND __fs_g >= {int(cut)}"
    used = sorted({col for _, col in layout.slots if col is not None})  # only what the aggregations read
    src = ", ".join(["__fs_e", "__fs_ts", "__fs_r", "__fs_o", *(f"__fs_i{c}" for c in used)])
    # __fs_g0: the event's group (its entry tile's start, or BASE_G), __fs_k: its entry level
    if levels is None:
        body = f"SELECT {src}, {g0} AS __fs_g0, 0 AS __fs_k FROM {table} WHERE {where}"
    else:  # the events of no kept tile dropped (base events kept: __fs_k NULL)
        body = (f"SELECT {src}, CASE WHEN __fs_m = {BASE_G} THEN __fs_m ELSE lv.__fs_g0 END AS __fs_g0, lv.__fs_k "
                f"FROM (SELECT {src}, {g0} AS __fs_m FROM {table} WHERE {where}) LEFT JOIN {levels} AS lv "
                f"USING (__fs_e, __fs_m) WHERE __fs_m = {BASE_G} OR lv.__fs_k IS NOT NULL")
    ctes = [f"__fs_src AS MATERIALIZED ({body})",
            f"__fs_min AS MATERIALIZED (SELECT __fs_e, __fs_g0, __fs_k, {', '.join(m_cols)} FROM __fs_src GROUP BY ALL)"]
    names = [m[0] for m in merges]
    finals = ", ".join(f"{final} AS {name}" for name, _, _, final in merges)
    outs = [f"SELECT __fs_e, -1 AS __fs_l, __fs_g0 AS __fs_g, {finals} FROM __fs_min WHERE __fs_g0 = {BASE_G}"]
    # level k merges the tiles of level k - 1 and the entries at k (work ~ tiles, not events x levels)
    ctes += _levels("__fs_t", "__fs_min", names, merges, tile_top, ["__fs_e"])
    for k in range(tile_top + 1):
        outs.append(f"SELECT __fs_e, {k} AS __fs_l, __fs_g, {finals} FROM __fs_t{k} WHERE ({keep.replace('__fs_l', str(k))}){since}")
    ctes.append(f"__fs_agg AS MATERIALIZED ({' UNION ALL '.join(outs)})")
    joins = []
    for col, flv in float_level.items():
        x = f"__fs_i{col}"
        e0 = f"greatest(CAST(floor(log2(abs({x}))) AS INTEGER) - 53, -1074)"
        e = f"({e0} - ((({e0}) % {_E_STEP}) + {_E_STEP}) % {_E_STEP})"  # a multiple of _E_STEP: few groups
        m = f"CAST(({x} * pow(2.0, (-__E) // 2)) * pow(2.0, -__E - ((-__E) // 2)) AS BIGINT)"
        ctes.append(
            f"__fs_fm{col} AS MATERIALIZED (SELECT __fs_e, __fs_g0, __fs_k, __E, sum(__M) AS sm, sum(__H * __H) AS sh, sum(__H * __L) AS sk, "
            f"sum(__L * __L) AS sl FROM (SELECT *, abs(__M) >> 31 AS __H, abs(__M) & {(1 << 31) - 1} AS __L FROM "
            f"(SELECT __fs_e, __fs_g0, __fs_k, __E, {m} AS __M FROM (SELECT __fs_e, __fs_g0, __fs_k, {x}, {e} AS __E FROM __fs_src "
            f"WHERE {x} IS NOT NULL AND isfinite({x}) AND {x} <> 0))) GROUP BY ALL)")
        fm = [(c, f"sum({c})", flv, c) for c in ("sm", "sh", "sk", "sl")]
        top = min(flv, tile_top)
        ctes += _levels(f"__fs_f{col}_", f"__fs_fm{col}", ["sm", "sh", "sk", "sl"], fm, top, ["__fs_e", "__E"])
        parts = [f"SELECT __fs_e, -1 AS __fs_l, __fs_g0 AS __fs_g, __E, sm, sh, sk, sl FROM __fs_fm{col} "
                 f"WHERE __fs_g0 = {BASE_G}"]
        parts += [f"SELECT __fs_e, {k} AS __fs_l, __fs_g, __E, sm, sh, sk, sl FROM __fs_f{col}_{k}" for k in range(top + 1)]
        ctes.append(
            # one text per group (read several times faster than five lists): exponent, sum, and the sum
            # of squares' three parts, per exponent, ascending (_text_sum)
            f"fx{col} AS (SELECT __fs_e, __fs_l, __fs_g, "
            f"string_agg(concat_ws(' ', __E, sm, sh, sk, sl), ' ' ORDER BY __E) AS fz{col} FROM "
            f"({' UNION ALL '.join(parts)}) SEMI JOIN __fs_agg USING (__fs_e, __fs_l, __fs_g) GROUP BY ALL)")
        joins.append(f" LEFT JOIN fx{col} USING (__fs_e, __fs_l, __fs_g)")
    # distinct sets as JSON text: each level's sets straight from the events entering at or below it
    # (one GROUP BY per level: ~2.5x less work than merging each level's lists from the level below);
    # a tile of them that is not stored (before the cut; every tile without ``levels``) is not joined
    for i, x, top in texts:
        parts = [f"SELECT __fs_e, -1 AS __fs_l, __fs_g0 AS __fs_g, list(DISTINCT {x}) FILTER (WHERE {x} IS NOT NULL) "
                 f"AS s FROM __fs_src WHERE __fs_g0 = {BASE_G} GROUP BY ALL"]
        for k in range(top + 1):
            size = MINUTE_MS << k
            parts.append(f"SELECT __fs_e, {k} AS __fs_l, __fs_g0 - (((__fs_g0 % {size}) + {size}) % {size}) AS __fs_g, "
                         f"list(DISTINCT {x}) FILTER (WHERE {x} IS NOT NULL) AS s FROM __fs_src "
                         f"WHERE __fs_g0 <> {BASE_G} AND __fs_k <= {k} GROUP BY ALL")
        ctes.append(f"dx{i} AS (SELECT __fs_e, __fs_l, __fs_g, to_json(list_sort(s)) AS s{i} FROM "
                    f"({' UNION ALL '.join(parts)}))")
        joins.append(f" LEFT JOIN dx{i} USING (__fs_e, __fs_l, __fs_g)")
    order = "__fs_ord" if order_text else "__fs_ts"
    sel = ["a.*"] + [f"fx{col}.fz{col}" for col in float_level]
    sel += [f"coalesce(dx{i}.s{i}, '[]') AS s{i}" for i, _, _ in texts]
    for n, (i, rank, col) in enumerate(picks):
        alias = f"__fs_p{n}"
        joins.append(f" LEFT JOIN {table} AS {alias} ON {alias}.__fs_e = a.__fs_e AND {alias}.__fs_r = {rank}")
        sel.append(f"{pick_order.replace('__ALIAS__', alias) if pick_order and order_text else alias + '.' + order} AS o{i}")
        cols = layout.latest_cols if layout.slots[i][0] == "L" else [col]
        for c in cols:
            v = f"{alias}.__fs_i{c}"
            sel.append(f"{'to_json(' + v + ')' if c in layout.float_cols else v} AS v{i}_{c}")
            if row_text is not None and c in layout.float_cols:
                sel.append(f"{v} AS w{i}_{c}")
    body = f"SELECT {', '.join(sel)} FROM __fs_agg AS a" + "".join(joins)
    if row_text is None:
        return f"WITH {', '.join(ctes)}\n{body} ORDER BY a.__fs_e, a.__fs_l, a.__fs_g"
    text = dtext.row_text_sql(layout, order_text, row_text[0], row_text[1], text_cols)
    return f"WITH {', '.join(ctes)}\nSELECT *, {text} AS __fs_txt FROM ({body}) ORDER BY __fs_e, __fs_l, __fs_g"


def _levels(prefix: str, entries: str, names: List[str], merges: List[Tuple[str, str, int, str]], top: int,
            by: List[str]) -> List[str]:
    """CTEs ``<prefix>0`` .. ``<prefix><top>``: the tiles of each level, ``__fs_g`` their start, from the
    entry tile rows of ``entries`` (``__fs_g0``, level ``__fs_k``; not the base group): a level's rows are
    the level below's merged and those entering at it (a kept tile's events all enter at or below it); a
    column above its highest level is NULL."""
    key = ", ".join(by)
    ctes = [f"{prefix}0 AS MATERIALIZED (SELECT {key}, __fs_g0 AS __fs_g, {', '.join(names)} FROM {entries} "
            f"WHERE __fs_g0 <> {BASE_G} AND __fs_k = 0)"]
    for k in range(1, top + 1):
        size = MINUTE_MS << k
        cols = ", ".join((merge if lvl >= k else "NULL") + f" AS {name}" for name, merge, lvl, _ in merges)
        # the entries at this level (their columns above this level NULL, as below)
        entering = ", ".join((name if lvl >= k else "NULL") + f" AS {name}" for name, _, lvl, _ in merges)
        rows = (f"(SELECT {key}, __fs_g, {', '.join(names)} FROM {prefix}{k - 1} UNION ALL SELECT {key}, __fs_g0, "
                f"{entering} FROM {entries} WHERE __fs_g0 <> {BASE_G} AND __fs_k = {k})")
        ctes.append(f"{prefix}{k} AS MATERIALIZED (SELECT {key}, __fs_g - (((__fs_g % {size}) + {size}) % {size}) AS __fs_g, "
                    f"{cols} FROM {rows} GROUP BY ALL)")
    return ctes


def _minute_sql(cut: Optional[int], keep_base: bool) -> Tuple[str, str]:
    """``(group, where)``: an event's group (its minute's start, or :data:`BASE_G` before ``cut``) and the
    events :func:`tiles_sql` reads."""
    minute = f"(__fs_ts - (((__fs_ts % {MINUTE_MS}) + {MINUTE_MS}) % {MINUTE_MS}))"
    if cut is None:
        g0, where = minute, "TRUE"
    else:
        g0 = f"CASE WHEN __fs_ts < {int(cut)} THEN {BASE_G} ELSE {minute} END"
        where = "TRUE" if keep_base else f"__fs_ts >= {int(cut)}"
    where += " AND (__fs_d" + ("" if cut is None else f" OR __fs_ts < {int(cut)}") + ")"
    return g0, where


def minute_levels(con, table: str, cut: Optional[int], keep_base: bool, tile_top: int, least: int, all_tops: bool,
                  out: str) -> str:
    """Temporary table ``out`` (``__fs_e, __fs_m, __fs_k, __fs_g0``) for :func:`tiles_sql` of the same
    arguments: per minute ``__fs_m`` of the events (not the base group) in a kept tile, the lowest level
    ``__fs_k`` at which the tile holding it is kept (more than ``least`` events, or a top tile with
    ``all_tops``) and that tile's start ``__fs_g0`` (its entry tile); a minute in no kept tile has no
    row. A tile's count is at least each child's, so the levels above it are kept too. Counted in
    numpy from the minutes' counts in (entity, minute) order."""
    g0, where = _minute_sql(cut, keep_base)
    counts = con.sql(f"SELECT __fs_e, __fs_g0, count(*) AS n FROM (SELECT __fs_e, {g0} AS __fs_g0 FROM {table} "
                     f"WHERE {where}) WHERE __fs_g0 <> {BASE_G} GROUP BY ALL ORDER BY ALL").to_arrow_table()
    e = counts.column("__fs_e").to_numpy().astype(np.int64)
    g = counts.column("__fs_g0").to_numpy().astype(np.int64)
    n = counts.column("n").to_numpy().astype(np.int64)
    k = np.full(len(n), tile_top + 1, dtype=np.int64)
    if len(n):
        same_e = np.concatenate(([False], e[1:] == e[:-1]))
        for level in range(tile_top + 1):
            tile = np.floor_divide(g, MINUTE_MS << level)
            starts = np.flatnonzero(~(same_e & np.concatenate(([False], tile[1:] == tile[:-1]))))
            kept = np.add.reduceat(n, starts) > least
            if all_tops and level == tile_top:
                kept[:] = True
            rows = np.repeat(kept, np.diff(np.append(starts, len(n))))
            k = np.where(rows & (k > level), level, k)
    kept = pa.array(k <= tile_top)
    start = g - np.mod(g, np.left_shift(np.int64(MINUTE_MS), np.minimum(k, tile_top)))
    con.register("__fs_lv_arrow", pa.table({"__fs_e": counts.column("__fs_e").filter(kept),
                                            "__fs_m": counts.column("__fs_g0").filter(kept),
                                            "__fs_k": pa.array(k, pa.int64()).filter(kept),
                                            "__fs_g0": pa.array(start, pa.int64()).filter(kept)}))
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT * FROM __fs_lv_arrow")
    finally:
        con.unregister("__fs_lv_arrow")
    return out


def _zero(z: Optional[int]) -> float:
    return -0.0 if z is not None and z & 1 else 0.0


def _exact(es: Optional[list], ms: list, nan: int, pinf: int, ninf: int) -> ExactSum:
    """The ExactSum of one group's per-exponent sums (exponents ``es`` ascending, sums ``ms`` as text)."""
    out = ExactSum(0, 0, nan, pinf, ninf)
    if es:
        s = max(0, -es[0])
        out.m = sum(int(m) << (e + s) for e, m in zip(es, ms))
        out.s = s
    return out


def _exact_square(es: Optional[list], hs: list, ks: list, ls: list, nan: int, pinf: int, ninf: int) -> ExactSum:
    """The ExactSum of the squares: x*x = M*M * 2**(2E); non-finite squares: NaN stays NaN, +-inf give +inf."""
    out = ExactSum(0, 0, nan, pinf + ninf, 0)
    if es:
        s = max(0, -2 * es[0])
        out.m = sum(((int(h) << 62) + (int(k) << 32) + int(lo)) << (2 * e + s) for e, h, k, lo in zip(es, hs, ks, ls))
        out.s = s
    return out


def decode_rows(layout: Layout, batch, order_text: bool, loads, text_cols: frozenset = frozenset(),
                merged_level: Optional[int] = None) -> List[Tuple[int, int, int, int, list]]:
    """``(entity, level, start, events, row)`` of each row of an Arrow batch of :func:`tiles_sql`
    (level -1: the base row): ``row`` equal, in the slots its level holds (the others empty), to the
    kernel row of the group's events (see the module docstring). The distinct sets of ``text_cols``
    stay :class:`~featurestore.kernel.partials.Encoded` text, except in the rows that are merged (the
    base row and those of ``merged_level``) and in text holding a ``\\u00`` escape (DuckDB writes
    ``\\u001F`` where Python writes ``\\u001f``): those are parsed into sets. A row with text
    (``__fs_txt``, :mod:`featurestore.engines.duckdb_tile_text`) is that text, an
    :class:`~featurestore.kernel.partials.EncodedRow` (only its exact float sums spliced in)."""
    cols = _Columns(batch)
    es, ls, gs, counts = cols["__fs_e"], cols["__fs_l"], cols["__fs_g"], cols["n"]
    getters: dict = {}

    def getter(i):  # made on first use: a column is converted only when a row reads it
        get = getters.get(i)
        if get is None:
            get = getters[i] = _getter(layout, i, cols, order_text, loads, text_cols, merged_level)
        return get

    plans: dict = {}  # level -> (slots, [(slot, getter)]) of the slots its rows hold
    texts = cols["__fs_txt"] if "__fs_txt" in batch.schema.names else None  # rows DuckDB wrote as text
    sums: dict = {}  # level -> getter of the exact float sums its rows hold (spliced into the text)
    splice = dtext.splice
    out = []
    for r in range(batch.num_rows):
        level = ls[r]
        if texts is not None and texts[r] is not None:
            gets = sums.get(level)
            if gets is None:
                gets = sums[level] = _sums_plan(layout, level, cols)
            text = splice(texts[r], gets(r))
            if text is not None:
                out.append((es[r], level, gs[r], counts[r], EncodedRow(text)))
                continue
        plan = plans.get(level)
        if plan is None:
            kept = layout.all_slots if level < 0 else layout.kept(level)
            plan = plans[level] = (kept, [(i, getter(i)) for i in kept])
        row = layout.shell(plan[0])
        for i, get in plan[1]:
            row[i] = get(r, level)
        out.append((es[r], level, gs[r], counts[r], row))
    return out


def _text_sum(layout: Layout, i: int, cols: dict):
    """``get(r, level)``: the exact float sum of slot ``i`` in row ``r``, from the one text of the row's
    per-exponent sums (``fz<col>``: exponent, sum, and the sum of squares' three parts, per exponent)."""
    kind, col = layout.slots[i]
    nan, pinf, ninf, fz = cols[f"nan{col}"], cols[f"pinf{col}"], cols[f"ninf{col}"], cols[f"fz{col}"]
    if kind == "s":
        def total(r, level):
            v = fz[r].split() if fz[r] else ()
            return _exact([int(e) for e in v[0::5]], v[1::5], nan[r], pinf[r], ninf[r])
        return total

    def squares(r, level):
        v = fz[r].split() if fz[r] else ()
        return _exact_square([int(e) for e in v[0::5]], v[2::5], v[3::5], v[4::5], nan[r], pinf[r], ninf[r])
    return squares


def _encoded(m: int, s: int, nan: int, pinf: int, ninf: int) -> str:
    """``dtext.sum_text(ExactSum(m, s, nan, pinf, ninf))`` without the object (tile rows hold ~2 per row)."""
    if m:  # reduced(m, s), inlined
        tz = (m & -m).bit_length() - 1
        if tz > s:
            tz = s
        m >>= tz
        s -= tz
    else:
        s = 0
    if nan or pinf or ninf:
        return '["%x",%d,%d,%d,%d]' % (m, s, nan, pinf, ninf)
    return '["%x",%d]' % (m, s)


def _sum_texts(col: int, cols: dict, kinds: Tuple[str, ...]):
    """``get(r)``: the encoded texts of float column ``col``'s exact sums in row ``r``, one per kind of
    ``kinds`` (``"s"`` the sum, ``"q"`` the sum of squares), the sums of :func:`_exact` and
    :func:`_exact_square` built straight from one split of the row's per-exponent text: no ExactSum."""
    nan, pinf, ninf, fz = cols[f"nan{col}"], cols[f"pinf{col}"], cols[f"ninf{col}"], cols[f"fz{col}"]
    want_s, want_q, both = "s" in kinds, "q" in kinds, len(kinds) > 1
    first = kinds[0] == "s"

    def get(r):
        z, n, p, q = fz[r], nan[r], pinf[r], ninf[r]
        m = m2 = s = 0
        if z:
            v = z.split()
            e0 = int(v[0])  # exponents ascending
            s = -e0 if e0 < 0 else 0
            for j in range(0, len(v), 5):
                e = int(v[j])
                if want_s:
                    m += int(v[j + 1]) << (e + s)
                if want_q:
                    m2 += ((int(v[j + 2]) << 62) + (int(v[j + 3]) << 32) + int(v[j + 4])) << (2 * (e + s))
        ts = _encoded(m, s, n, p, q) if want_s else None
        tq = _encoded(m2, 2 * s, n, p + q, 0) if want_q else None
        if both:
            return (ts, tq) if first else (tq, ts)
        return (ts,) if want_s else (tq,)
    return get


def _sum_text_getter(layout: Layout, i: int, cols: dict):
    """``get(r)``: the encoded text of :func:`_text_sum`'s sum of slot ``i`` in row ``r`` (:func:`_sum_texts`)."""
    kind, col = layout.slots[i]
    get = _sum_texts(col, cols, (kind,))
    return lambda r: get(r)[0]


def _sums_plan(layout: Layout, level: int, cols: dict):
    """``get(r)``: the encoded texts of the exact float sums a row of ``level`` holds, in slot order
    (:func:`dtext.float_slots`), each float column's per-exponent text split once per row."""
    by_col: Dict[int, List[Tuple[int, str]]] = {}
    slots = dtext.float_slots(layout, level)
    for i in slots:
        kind, col = layout.slots[i]
        by_col.setdefault(col, []).append((i, kind))
    gets, flat = [], []
    for col, ks in by_col.items():
        gets.append(_sum_texts(col, cols, tuple(k for _, k in ks)))
        flat += [i for i, _ in ks]
    perm = [flat.index(i) for i in slots]
    if perm == list(range(len(perm))):
        if len(gets) == 1:
            return gets[0]
        return lambda r: [t for get in gets for t in get(r)]

    def ordered(r):
        texts = [t for get in gets for t in get(r)]
        return [texts[j] for j in perm]
    return ordered


class _Columns(dict):
    """An Arrow batch's columns as Python lists, each converted when first read."""

    def __init__(self, batch):
        super().__init__()
        self.batch = batch

    def __missing__(self, name):
        out = self[name] = self.batch.column(name).to_pylist()
        return out


def _getter(layout: Layout, i: int, cols: dict, order_text: bool, loads, text_cols: frozenset,
            merged_level: Optional[int]):
    """``get(r, level)``: slot ``i``'s value in row ``r`` of the columns ``cols`` (see :func:`decode_rows`),
    made once per batch (no per-row dispatch on the slot's kind)."""
    kind, col = layout.slots[i]
    fl = col in layout.float_cols
    if kind in ("*", "n"):
        vs = cols[f"s{i}"]
        return lambda r, level: vs[r]
    if kind in ("s", "q") and fl:
        return _text_sum(layout, i, cols)
    if kind == "s":
        vs = cols[f"s{i}"]
        return lambda r, level: 0 if vs[r] is None else int(vs[r])
    if kind == "q":
        hs, ks, lows = cols[f"h{i}"], cols[f"k{i}"], cols[f"l{i}"]
        return lambda r, level: ExactSum(0 if hs[r] is None else (int(hs[r]) << 64) + (int(ks[r]) << 33) + int(lows[r]), 0)
    if kind in ("<", ">"):
        vs = cols[f"s{i}"]
        if not fl:
            return lambda r, level: vs[r]
        zs = cols[f"z{i}"]
        return lambda r, level: _zero(zs[r]) if vs[r] is not None and vs[r] == 0 else vs[r]
    if kind == "d":
        vs = cols[f"s{i}"]
        if fl:
            zs = cols[f"z{i}"]

            def floats(r, level):
                z = _zero(zs[r])
                return {_NAN_KEY if x != x else (z if x == 0 else x) for x in vs[r] or ()}
            return floats
        if col in text_cols:
            def texts(r, level):
                v = vs[r] or []
                if level < 0 or level == merged_level or "\\u00" in v:
                    return set(loads(v))
                return Encoded(v)
            return texts
        return lambda r, level: set(vs[r] or ())
    os_ = cols[f"o{i}"]
    if kind in ("f", "l"):
        vs = cols[f"v{i}_{col}"]
        if fl:
            return lambda r, level: None if os_[r] is None else [_order(os_[r], order_text, loads), _float(vs[r])]
        return lambda r, level: None if os_[r] is None else [_order(os_[r], order_text, loads), vs[r]]
    # "L": the latest event's values of every latest column
    latest = [(cols[f"v{i}_{c}"], c in layout.float_cols) for c in layout.latest_cols]
    return lambda r, level: None if os_[r] is None else [_order(os_[r], order_text, loads),
                                                         [_float(v[r]) if f else v[r] for v, f in latest]]


def _order(o: Any, order_text: bool, loads) -> list:
    return loads(o) if order_text else [o]


__all__ = ["BASE_G", "tiles_sql", "minute_levels", "decode_rows"]
