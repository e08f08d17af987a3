"""Partial rows of many entities' raw events at once: the rows :meth:`Layout.add` builds event by event,
computed from columns (a lookup's sparse entities, every window of a view in one pass), as rows
(:func:`window_rows`) or as one column per slot over the entities (:func:`window_columns`: what a lookup
finishes its features from, with no row per entity); and the rows of windows that are several slices of
one batch (:func:`segment_rows`: a lookup's entities with tiles, whose windows' raw pieces share one
parsed batch).

An online lookup of N entities reads, for each entity without tiles, its few raw events, and needs one
partial row per (entity, window). Adding each event to each window's row in Python (one call per event,
window and slot, exact sums bit by bit) was most of a 100-entity lookup's time. Here the events of all
entities of one view are laid end to end (each entity's sorted by time), every window of every entity
is a slice ``[a, b)`` of them (two bisections), and each slot is computed per slice with C-level
builtins or from prefix columns shared by all windows:

* counts (``*``, ``n``) and integer sums: prefix counts / sums, one difference per slice;
* float sums and sums of squares (``s``, ``q``): **exact** prefix sums. Each finite double is
  ``M * 2**E`` with an integer ``M`` of 53 bits (``numpy.frexp``); scaled to the smallest ``E`` of the
  request, the values are Python integers and their running sum (numpy over an object array: one C
  loop) is exact, so a slice's sum is an exact integer over a power of two: the same :class:`ExactSum`
  value the event-by-event path gives (non-finite values are counted apart, as ``ExactSum`` does);
* ``min``/``max``/``count_distinct``: ``min``/``max``/``set`` over the slice's non-null values (NaN
  above numbers for floats, one NaN distinct value), first of equals kept, as :meth:`Layout.add` does;
* ``first``/``last``/latest: the earliest / latest time of the slice with a (non-null) value, then the
  least / greatest event order among the events of that time (ties compared in full).

The result equals ``Layout.add`` of the slice's events in their stored order, value for value (the
property tests compare both with the brute-force oracle). Slots whose column holds other than floats
where floats are expected (never written by this library) fall back to ``Layout.add``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from functools import partial
from itertools import accumulate
from math import frexp, inf as _INF
from operator import is_not, lshift, mul
from typing import Any, Collection, Dict, List, Optional, Sequence, Tuple

import numpy as np

from featurestore.kernel.exact import ExactSum
from featurestore.kernel.partials import Layout

_NAN_KEY = ("NaN",)  # partials._NAN_KEY's value (sets hold it for every NaN)
_not_none = partial(is_not, None)

Event = Tuple[list, list]  # (order, inputs)
Span = Tuple[Optional[int], int]  # [lo, hi) in epoch ms; lo None: from the first event


class RawBatch:
    """The raw events of several entities parsed together (one view's sparse entities of a lookup): their
    times and input columns laid end to end, the parsed members, and how a member's order is built.
    Each entity's :class:`RawEvents` is a slice of it, which :func:`window_rows` reads in place."""

    __slots__ = ("times", "cols", "members", "loads")

    def __init__(self, times: List[int], cols: List[list], members: list, loads):
        self.times, self.cols, self.members, self.loads = times, cols, members, loads


class RawEvents:
    """One entity's raw events as columns, sorted by time: ``times``, ``cols[c]`` (input ``c``'s values),
    and each event's order on demand (:meth:`order`: only the candidates of first/last/latest are ever
    compared, so a lookup keeps the stored members, ``members``, as the reader gives them (flat parsed
    arrays of the online format) and ``loads`` builds the order of those few). Made from a
    :class:`RawBatch` (``batch``, events ``[lo, hi)`` of it), its columns are sliced only when asked for."""

    __slots__ = ("_times", "_cols", "_orders", "_members", "_loads", "batch", "lo", "hi")

    def __init__(self, times: Optional[List[int]] = None, cols: Optional[List[list]] = None,
                 orders: Optional[List[list]] = None, members: Optional[list] = None, loads=None,
                 batch: Optional[RawBatch] = None, lo: int = 0, hi: int = 0):
        self._times, self._cols = times, cols
        self._orders, self._members, self._loads = orders, members, loads
        self.batch, self.lo, self.hi = batch, lo, hi

    @classmethod
    def of(cls, events: Sequence[Event], width: int) -> "RawEvents":
        """From ``(order, inputs)`` pairs in any order (sorted here, stably)."""
        evs = sorted(events, key=lambda e: e[0][0])
        return cls([o[0] for o, _ in evs], [[inp[c] for _, inp in evs] for c in range(width)], [o for o, _ in evs])

    @property
    def times(self) -> List[int]:
        if self._times is None:
            self._times = self.batch.times[self.lo:self.hi]
        return self._times

    @property
    def cols(self) -> List[list]:
        if self._cols is None:
            self._cols = [c[self.lo:self.hi] for c in self.batch.cols]
        return self._cols

    def order(self, j: int) -> list:
        if self._orders is not None:
            return self._orders[j]
        if self.batch is not None:
            return self.batch.loads(self.batch.members[self.lo + j])
        return self._loads(self._members[j])  # the reader's order of a stored member (kept parsed or as text)

    def __len__(self) -> int:
        return self.hi - self.lo if self.batch is not None else len(self.times)


class _Columns:
    """The events of several entities laid end to end, their times, and per-column values and prefix
    columns computed on first use."""

    def __init__(self, layout: Layout, groups: Sequence[RawEvents]):
        self.layout = layout
        self.groups = list(groups)
        batch = self.groups[0].batch if self.groups else None
        if batch is not None and all(g.batch is batch for g in self.groups):  # slices of one parse: read in place
            self.batch = batch
            self.times = batch.times
            self.starts = [g.lo for g in self.groups]
            self.ends = [g.hi for g in self.groups]
        else:
            self.batch = None
            offsets = [0]
            self.times = []
            for g in self.groups:
                self.times.extend(g.times)
                offsets.append(len(self.times))
            self.offsets = offsets
            self.starts, self.ends = offsets[:-1], offsets[1:]
        self._values: Dict[int, list] = {}
        self._prefix: Dict[Tuple[str, int], Any] = {}
        self._orders: Dict[int, list] = {}

    def order(self, k: int) -> list:
        o = self._orders.get(k)
        if o is None:
            if self.batch is not None:
                o = self._orders[k] = self.batch.loads(self.batch.members[k])
            else:
                e = bisect_right(self.offsets, k) - 1
                o = self._orders[k] = self.groups[e].order(k - self.offsets[e])
        return o

    def values(self, col: int) -> list:
        v = self._values.get(col)
        if v is None:
            if self.batch is not None:
                v = self._values[col] = self.batch.cols[col]
            else:
                v = self._values[col] = [x for g in self.groups for x in g.cols[col]]
        return v

    def notnull_prefix(self, col: int) -> list:
        key = ("n", col)
        p = self._prefix.get(key)
        if p is None:
            p = self._prefix[key] = list(accumulate(map(_not_none, self.values(col)), initial=0))
        return p

    def int_prefix(self, col: int) -> list:
        key = ("i", col)
        p = self._prefix.get(key)
        if p is None:
            p = self._prefix[key] = list(accumulate((0 if x is None else x for x in self.values(col)), initial=0))
        return p

    def _mantissas(self, col: int):
        """``(mant, shift, emin, nan, pinf, ninf)`` of a float column (numpy arrays; once per column, for its
        sums and its sums of squares): each finite value is ``mant * 2**(emin + shift)`` with an integer
        ``|mant| < 2**53`` (``frexp``) and ``emin`` the smallest exponent of a non-zero value; nulls and
        non-finite values (flagged) are 0."""
        key = ("m", col)
        got = self._prefix.get(key)
        if got is None:
            vals = self.values(col)
            x = np.array(vals if None not in vals else [0.0 if v is None else v for v in vals], dtype=np.float64)
            nan = np.isnan(x)
            pinf = np.isposinf(x)
            ninf = np.isneginf(x)
            bad = nan | pinf | ninf
            if bad.any():
                x[bad] = 0.0
            m, e = np.frexp(x)
            mant = (m * 9007199254740992.0).astype(np.int64)  # m * 2**53: exact, |mant| < 2**53
            exp = e.astype(np.int64) - 53
            nz = mant != 0
            emin = int(exp[nz].min()) if nz.any() else 0
            got = self._prefix[key] = (mant, np.where(nz, exp - emin, 0), emin, nan, pinf, ninf)
        return got

    def exact_prefix(self, col: int, squares: bool):
        """``(P, scale, nan, pinf, ninf)``: ``P[i]`` the exact sum of the first ``i`` values (or squares)
        times ``2**scale``; non-finite counts as prefix arrays. None when the column holds a non-float."""
        key = ("q" if squares else "s", col)
        if key in self._prefix:
            return self._prefix[key]
        vals = self.values(col)
        out = None
        if not set(map(type, vals)) <= {float, type(None)}:
            pass
        elif len(vals) <= SMALL:
            out = _exact_prefix_small(vals, squares)
        else:
            mant, shift, emin, nan, pinf, ninf = self._mantissas(col)
            if squares:
                ms = mant.tolist()
                terms = map(lshift, map(mul, ms, ms), (2 * shift).tolist())
                scale = -2 * emin
                pinf = pinf | ninf  # (+-inf)**2 = +inf
                ninf = np.zeros_like(ninf)
            else:
                terms = map(lshift, mant.tolist(), shift.tolist())
                scale = -emin
            prefix = list(accumulate(terms, initial=0))  # (Python integers: exact)
            counts = [np.concatenate(([0], np.cumsum(a, dtype=np.int64))) for a in (nan, pinf, ninf)]
            out = (prefix, scale, *counts)
        self._prefix[key] = out
        return out


SMALL = 64  # columns of at most this many values: exact prefix sums in Python (numpy's fixed cost is ~25 us a column)
_SCALE53 = 9007199254740992.0  # 2**53


def _exact_prefix_small(vals: Sequence[Optional[float]], squares: bool):
    """:meth:`_Columns.exact_prefix` of a short column of floats and None, without numpy: the same
    mantissas and exponents (``frexp``), the same smallest exponent, so the very same integers."""
    mants: List[int] = []  # per value: its 53-bit integer mantissa (0: zero, null or not finite)
    exps: List[int] = []  # ... and its exponent
    nan, pinf, ninf = [0], [0], [0]
    a = b = c = 0
    for v in vals:
        m = e = 0
        if v is not None:
            if v != v:
                a += 1
            elif v == _INF:
                b += 1
            elif v == -_INF:
                c += 1
            else:
                f, e = frexp(v)
                m = int(f * _SCALE53)
                e -= 53
        mants.append(m)
        exps.append(e)
        nan.append(a)
        pinf.append(b)
        ninf.append(c)
    emin = min((e for m, e in zip(mants, exps) if m), default=0)
    if squares:
        terms = [(m * m) << 2 * (e - emin) if m else 0 for m, e in zip(mants, exps)]
        pinf = [x + y for x, y in zip(pinf, ninf)]  # (+-inf)**2 = +inf
        ninf = [0] * len(ninf)
        scale = -2 * emin
    else:
        terms = [m << (e - emin) if m else 0 for m, e in zip(mants, exps)]
        scale = -emin
    return list(accumulate(terms, initial=0)), scale, nan, pinf, ninf


def _exact(prefix, a: int, b: int) -> ExactSum:
    p, scale, nan, pinf, ninf = prefix
    m = p[b] - p[a]
    if scale < 0:
        m, scale = m << -scale, 0
    return ExactSum(m, scale, int(nan[b] - nan[a]), int(pinf[b] - pinf[a]), int(ninf[b] - ninf[a]))


def _exact_many(prefix, a_s: List[int], b_s: List[int]) -> List[ExactSum]:
    """:func:`_exact` of each slice ``[a, b)`` (the non-finite counts read only when the column has some)."""
    p, scale, nan, pinf, ninf = prefix
    if nan[-1] or pinf[-1] or ninf[-1]:
        return [_exact(prefix, a, b) for a, b in zip(a_s, b_s)]
    if scale < 0:
        return [ExactSum((p[b] - p[a]) << -scale, 0) for a, b in zip(a_s, b_s)]
    return [ExactSum(p[b] - p[a], scale) for a, b in zip(a_s, b_s)]


def window_rows(layout: Layout, groups: Sequence[RawEvents], spans: Sequence[Sequence[Span]],
                slot_sets: Sequence[Sequence[int]]) -> List[List[list]]:
    """``rows[e][k]``: the row of entity ``e``'s events (``groups[e]``) inside its
    ``k``-th span ``spans[e][k]`` on the slots ``slot_sets[k]`` (the others empty): what
    ``Layout.add`` of those events in their order gives. Each slot is computed for every entity of a
    window in one loop (its kind dispatched once per window, not per entity); rows are new (mutable)."""
    new, template = layout.new, layout._template
    out: List[List[list]] = [[] for _ in groups]
    for sl, (full, columns) in zip(slot_sets, _windows(layout, _Columns(layout, groups), spans, slot_sets)):
        # a row with events: a copy of the empty template, a fresh mutable value only where no slot of
        # ``sl`` replaces it (every slot of sl gets a new value of its own)
        kept = set(sl)
        fresh = [(i, make) for i, make in layout._fresh if i not in kept]
        rows: List[Optional[list]] = [None] * len(groups)
        for j, e in enumerate(full):
            row = template.copy()
            for i, make in fresh:
                row[i] = make()
            for i in sl:
                row[i] = columns[i][j]
            rows[e] = row
        for e, row in enumerate(rows):
            out[e].append(new() if row is None else row)
    return out


def segment_rows(layout: Layout, batch: RawBatch, segments: Sequence[Sequence[Sequence[Tuple[int, int]]]],
                 slot_sets: Sequence[Sequence[int]]) -> List[List[list]]:
    """``rows[e][k]``: the row of the events of ``batch`` in the slices ``segments[e][k]`` (``[a, b)``
    index ranges, in time order, none holding an event time another holds) on the slots
    ``slot_sets[k]`` (the others empty): what :func:`window_rows` gives for those events laid end to
    end. The batch's columns and prefix columns are built once for every ``k`` (a dense entity's
    windows are sub-ranges of one batch of raw events: no window rebuilds them); a row of several
    slices is their rows combined in time order (``Layout._combiners``: exact sums add exactly, ties of
    min/max/sets keep the earlier value, as one slice would)."""
    template, combiners = layout._template, layout._combiners
    cols = _Columns(layout, [RawEvents(batch=batch, lo=0, hi=len(batch.times))])
    slots = layout.slots
    out: List[List[list]] = [[] for _ in segments]
    for k, sl in enumerate(slot_sets):
        owners, a_s, b_s = [], [], []
        for e, esegs in enumerate(segments):
            for a, b in esegs[k]:
                if b > a:
                    owners.append(e)
                    a_s.append(a)
                    b_s.append(b)
        values = [(i, _slot_values(layout, cols, slots[i][0], slots[i][1], i, a_s, b_s)) for i in sl] if owners else []
        kept = set(sl)
        fresh = [(i, make) for i, make in layout._fresh if i not in kept]
        rows: List[Optional[list]] = [None] * len(segments)
        for j, e in enumerate(owners):
            row = rows[e]
            if row is None:
                row = rows[e] = template.copy()
                for i, make in fresh:
                    row[i] = make()
                for i, column in values:
                    row[i] = column[j]
            else:
                for i, column in values:
                    row[i] = combiners[i](row[i], column[j])
        for e, row in enumerate(rows):
            out[e].append(layout.new() if row is None else row)
    return out


def window_columns(layout: Layout, groups: Sequence[RawEvents], spans: Sequence[Sequence[Span]],
                   slot_sets: Sequence[Sequence[int]], timed: Collection[int] = ()) -> List[Dict[int, list]]:
    """:func:`window_rows` as columns: ``columns[k][i][e]`` is slot ``i`` of ``rows[e][k]``, without the
    rows (a lookup finishes each feature of all its entities from the columns of the slots it reads). A
    span without events holds the layout's empty values, shared: the columns are read only. For the span
    indexes ``k`` in ``timed``, a first / last / latest value holds its event's time alone in place of its
    order (``[[ts], value]``: all that finishing reads; such a value must never be merged or compared)."""
    template = layout._template
    out = []
    for sl, (full, columns) in zip(slot_sets, _windows(layout, _Columns(layout, groups), spans, slot_sets, timed)):
        if len(full) < len(groups):  # spans without events: the empty values
            for i in sl:
                column = [template[i]] * len(groups)
                for e, v in zip(full, columns[i]):
                    column[e] = v
                columns[i] = column
        out.append(columns)
    return out


def _windows(layout: Layout, cols: "_Columns", spans: Sequence[Sequence[Span]], slot_sets: Sequence[Sequence[int]],
             timed: Collection[int] = ()):
    """Per span index ``k``: ``(full, columns)``, the entities whose ``k``-th span holds events and, per slot
    of ``slot_sets[k]``, its value for each of them (in ``full``'s order; ``timed``: see
    :func:`window_columns`)."""
    times, starts, ends = cols.times, cols.starts, cols.ends
    slots = layout.slots
    for k, sl in enumerate(slot_sets):
        full, a_s, b_s = [], [], []  # the entities with events in their k-th span, and the span's events [a, b)
        for e, espans in enumerate(spans):
            lo, hi = espans[k]
            s, t = starts[e], ends[e]
            a = s if lo is None else bisect_left(times, lo, s, t)
            b = bisect_left(times, hi, a, t)
            if b > a:
                full.append(e)
                a_s.append(a)
                b_s.append(b)
        columns: Dict[int, list] = {}
        for i in sl:
            kind, col = slots[i]
            columns[i] = _slot_values(layout, cols, kind, col, i, a_s, b_s, k in timed) if full else []
        yield full, columns


def _slot_values(layout: Layout, cols: "_Columns", kind: str, col: Optional[int], i: int, a_s: List[int],
                 b_s: List[int], timed: bool = False) -> list:
    """Slot ``i``'s value of the events ``[a, b)`` of each ``a, b`` of ``a_s``, ``b_s`` (never empty), each
    value new (``timed``: see :func:`window_columns`)."""
    if kind == "*":
        return list(map(int.__sub__, b_s, a_s))
    if kind == "n" or (kind == "s" and col not in layout.float_cols):
        p = cols.notnull_prefix(col) if kind == "n" else cols.int_prefix(col)
        return [p[b] - p[a] for a, b in zip(a_s, b_s)]
    if kind in ("s", "q"):
        prefix = cols.exact_prefix(col, kind == "q")
        if prefix is not None:
            return _exact_many(prefix, a_s, b_s)
    if kind == "d":
        vals = cols.values(col)
        nan_aware = col in layout.float_cols
        out = []
        for a, b in zip(a_s, b_s):
            found = set(vals[a:b])
            found.discard(None)
            if nan_aware and any(x != x for x in found):
                found = {_NAN_KEY if x != x else x for x in found}
            out.append(found)
        return out
    if kind in ("f", "l", "L"):
        return [_edge(layout, cols, kind, col, a, b, timed) for a, b in zip(a_s, b_s)]
    return [_slot(layout, cols, kind, col, a, b, layout._empty(kind, col), i) for a, b in zip(a_s, b_s)]


def _slot(layout: Layout, cols: _Columns, kind: str, col: Optional[int], a: int, b: int, empty, i: int):
    if kind == "*":
        return b - a
    if kind == "n":
        p = cols.notnull_prefix(col)
        return p[b] - p[a]
    if kind in ("s", "q"):
        if kind == "s" and col not in layout.float_cols:
            p = cols.int_prefix(col)
            return p[b] - p[a]
        prefix = cols.exact_prefix(col, kind == "q")
        if prefix is None:
            return _by_events(layout, cols, a, b, empty, i)
        return _exact(prefix, a, b)
    if kind in ("<", ">"):
        vs = list(filter(_not_none, cols.values(col)[a:b]))
        if not vs:
            return None
        if col in layout.float_cols:
            nums = [v for v in vs if v == v]
            if len(nums) < len(vs):  # NaN is above every number
                if kind == ">" or not nums:
                    return next(v for v in vs if v != v)
                vs = nums
        return min(vs) if kind == "<" else max(vs)
    if kind == "d":
        found = set(cols.values(col)[a:b])
        found.discard(None)
        if col in layout.float_cols and any(x != x for x in found):
            found = {_NAN_KEY if x != x else x for x in found}
        return found
    if kind in ("f", "l", "L"):
        return _edge(layout, cols, kind, col, a, b)
    raise ValueError(kind)  # pragma: no cover


def _edge(layout: Layout, cols: _Columns, kind: str, col: Optional[int], a: int, b: int, timed: bool = False):
    """first (``f``) / last (``l``) non-null value, or the latest event (``L``), of the slice ``[a, b)``:
    the events of the earliest / latest time that qualifies, compared by their full order (``timed``: the
    value holds the event's time in place of its order)."""
    times = cols.times
    vals = cols.values(col) if col is not None else None
    step = 1 if kind == "f" else -1
    j = a if kind == "f" else b - 1
    if vals is not None:
        while a <= j < b and vals[j] is None:
            j += step
        if not a <= j < b:
            return None
    ts = times[j]
    best = j
    k = j + step
    while a <= k < b and times[k] == ts:
        if vals is None or vals[k] is not None:
            ok = cols.order(k)
            bo = cols.order(best)
            if (ok < bo) if kind == "f" else (ok > bo):
                best = k
            elif ok == bo and k < best:
                best = k  # equal orders: the first in stored order, as Layout.add keeps it
        k += step
    order = [ts] if timed else cols.order(best)
    if kind == "L":
        return [order, [cols.values(c)[best] for c in layout.latest_cols]]
    return [order, vals[best]]


def _by_events(layout: Layout, cols: _Columns, a: int, b: int, empty, i: int):
    row = [None] * len(layout.slots)
    row[i] = empty
    add = layout.adders((i,))[0][1]
    width = len(layout.inputs)
    for k in range(a, b):
        add(row, i, cols.order(k), [cols.values(c)[k] for c in range(width)])
    return row[i]


__all__ = ["RawBatch", "RawEvents", "segment_rows", "window_columns", "window_rows"]
