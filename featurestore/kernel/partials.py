"""Mergeable partial states of every aggregation (SPEC §2), defined once.

A view's aggregations and latest features are computed from a **row** of partial states (a list, one
*slot* per distinct (kind, input column) the view needs). A row summarises any set of the view's
stored events: one event, a tile of time, a window. Rows are built with :meth:`Layout.add`, combined
with :meth:`Layout.merge` (associative, commutative: any grouping of events gives the same state) and
read with :meth:`Layout.finalize`. Every engine that aggregates — online lookups over tiles and raw
edges, the stream's tiles, materialize — goes through this module; the test oracle is its judge.

Slot kinds (``col`` indexes the view's input columns, :func:`featurestore.online.input_columns` order):

====== ============================================ ===============================================
kind   state                                        used by
====== ============================================ ===============================================
``*``  number of events                             ``count(*)``
``n``  non-null values of ``col``                   count, sum, mean, variance, stddev
``s``  exact sum (int, or :class:`ExactSum`)        sum, mean, variance, stddev
``q``  exact sum of squares (:class:`ExactSum`)     variance, stddev
``<``  least value (NaN above numbers), or None     min
``>``  greatest value, or None                      max
``f``  ``[order, value]`` of the least event        first
       (event order) with a non-null value
``l``  ``[order, value]`` of the greatest such      last
``d``  the set of distinct non-null values          count_distinct
``L``  ``[order, [values]]`` of the greatest event  latest features (values may be null)
====== ============================================ ===============================================

An event's **order** is ``[ts, c1, c2, ...]``: its time (epoch ms), then each further order column
(``CompiledView.order_columns``) as ``[]`` when null or ``[value]`` otherwise, so plain list comparison
is SPEC event order (ascending, nulls first) and the form survives JSON unchanged.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore.kernel.exact import ExactSum, sample_variance

_NAN_KEY = ("NaN",)  # every NaN is one distinct value (DuckDB's count(DISTINCT))

# which slot kinds each aggregation function reads
NEEDS = {
    "count": ("n",), "sum": ("n", "s"), "mean": ("n", "s"), "variance": ("n", "s", "q"),
    "stddev": ("n", "s", "q"), "min": ("<",), "max": (">",), "first": ("f",), "last": ("l",),
    "count_distinct": ("d",),
}


def order_of(ts: int, extras: Sequence[Any]) -> list:
    """An event's order (see the module docstring) from its time and its further order column values."""
    return [ts, *([] if v is None else [v] for v in extras)]


def _num_key(x: Any) -> Tuple[int, Any]:
    """DuckDB's order of floats: NaN above every number."""
    return (1, 0.0) if x != x else (0, x)


class Layout:
    """The slots of one view and how each of its features is read from a row.

    ``inputs``: the view's input columns as ``(expr, dtype)`` (online.input_columns order);
    ``features``: ``(name, function, col, window_ms)`` with ``function`` an aggregation or ``"latest"``,
    ``col`` an input index (None for ``count(*)``); ``latest_cols``: the input index of each latest feature
    in the ``L`` slot's value list."""

    def __init__(self, inputs: Sequence[Tuple[str, str]], aggregations: Sequence[Tuple[str, str, Optional[int]]],
                 latest: Sequence[int]):
        self.inputs = list(inputs)
        slots: List[Tuple[str, Optional[int]]] = []
        index: Dict[Tuple[str, Optional[int]], int] = {}

        def slot(kind: str, col: Optional[int]) -> int:
            if (kind, col) not in index:
                index[(kind, col)] = len(slots)
                slots.append((kind, col))
            return index[(kind, col)]

        self.reads: Dict[Tuple[str, Optional[int]], Tuple[int, ...]] = {}
        for _name, function, col in aggregations:
            if col is None:
                self.reads[(function, col)] = (slot("*", None),)
            else:
                self.reads[(function, col)] = tuple(slot(k, col) for k in NEEDS[function])
        self.latest_cols = list(dict.fromkeys(latest))
        self.latest_slot = slot("L", None) if self.latest_cols else None
        self.slots = slots
        self.float_cols = {i for i, (_, d) in enumerate(self.inputs) if d in (t.FLOAT32, t.FLOAT64)}
        self._adders = [self._adder(k, c) for k, c in slots]
        self._betters = {i: _better(k, c in self.float_cols) for i, (k, c) in enumerate(slots) if k in ("<", ">")}
        # new(): a template of the immutable empty values, and the slots that need a fresh mutable one
        # (tiles are built by the thousand in a catch-up: this is several times faster than a loop)
        self._template: list = []
        self._fresh: List[Tuple[int, Any]] = []
        for i, (kind, col) in enumerate(slots):
            if kind in ("*", "n") or (kind == "s" and col not in self.float_cols):
                self._template.append(0)
            elif kind in ("s", "q"):
                self._template.append(None)
                self._fresh.append((i, ExactSum))
            elif kind == "d":
                self._template.append(None)
                self._fresh.append((i, set))
            else:
                self._template.append(None)

    # -- building ------------------------------------------------------------------------------------
    def new(self) -> list:
        """The row of no events."""
        row = self._template.copy()
        for i, make in self._fresh:
            row[i] = make()
        return row

    def copy(self, row: list) -> list:
        """A row equal to ``row`` that shares no mutable state with it (``merge(new(), row)``, faster)."""
        out = row.copy()
        for i, _ in self._fresh:
            out[i] = out[i].copy()
        return out

    def _adder(self, kind: str, col: Optional[int]):
        if kind == "*":
            def add(row, i, order, inputs):
                row[i] += 1
        elif kind == "n":
            def add(row, i, order, inputs):
                if inputs[col] is not None:
                    row[i] += 1
        elif kind == "s":
            if col in self.float_cols:
                def add(row, i, order, inputs):
                    x = inputs[col]
                    if x is not None:
                        row[i].add(x)
            else:
                def add(row, i, order, inputs):
                    x = inputs[col]
                    if x is not None:
                        row[i] += x
        elif kind == "q":
            def add(row, i, order, inputs):
                x = inputs[col]
                if x is not None:
                    row[i].add_square(x)
        elif kind in ("<", ">"):
            better = _better(kind, col in self.float_cols)

            def add(row, i, order, inputs):
                x = inputs[col]
                if x is not None and (row[i] is None or better(x, row[i])):
                    row[i] = x
        elif kind == "f":
            def add(row, i, order, inputs):
                x = inputs[col]
                if x is not None and (row[i] is None or order < row[i][0]):
                    row[i] = [order, x]
        elif kind == "l":
            def add(row, i, order, inputs):
                x = inputs[col]
                if x is not None and (row[i] is None or order > row[i][0]):
                    row[i] = [order, x]
        elif kind == "d":
            nan_aware = col in self.float_cols

            def add(row, i, order, inputs):
                x = inputs[col]
                if x is not None:
                    row[i].add(_NAN_KEY if nan_aware and x != x else x)
        elif kind == "L":
            cols = self.latest_cols

            def add(row, i, order, inputs):
                if row[i] is None or order > row[i][0]:
                    row[i] = [order, [inputs[c] for c in cols]]
        else:  # pragma: no cover
            raise ValueError(kind)
        return add

    def add(self, row: list, order: list, inputs: Sequence[Any]) -> list:
        """Add one event (its order and input values) to ``row`` in place; returns ``row``."""
        for i, add in enumerate(self._adders):
            add(row, i, order, inputs)
        return row

    def merge(self, row: list, other: list) -> list:
        """Merge ``other`` into ``row`` in place (``other`` is not changed); returns ``row``."""
        for i, (kind, col) in enumerate(self.slots):
            b = other[i]
            if kind in ("*", "n"):
                row[i] += b
            elif kind == "s":
                if isinstance(b, ExactSum):
                    row[i].merge(b)
                else:
                    row[i] += b
            elif kind == "q":
                row[i].merge(b)
            elif kind == "d":
                row[i] |= b
            elif b is None:
                continue
            elif kind in ("<", ">"):
                a = row[i]
                if a is None or self._betters[i](b, a):
                    row[i] = b
            elif kind == "f":
                if row[i] is None or b[0] < row[i][0]:
                    row[i] = b
            else:  # "l", "L"
                if row[i] is None or b[0] > row[i][0]:
                    row[i] = b
        return row

    # -- reading -------------------------------------------------------------------------------------
    def finalize(self, function: str, col: Optional[int], row: list) -> Any:
        """The value of one aggregation over the events ``row`` summarises (None = null; counts are
        ints). ``function == "latest"``: the value of input ``col`` in the greatest event."""
        if function == "latest":
            slot = row[self.latest_slot]
            return None if slot is None else slot[1][self.latest_cols.index(col)]
        ix = self.reads[(function, col)]
        if col is None:
            return row[ix[0]]
        if function in ("count",):
            return row[ix[0]]
        if function == "count_distinct":
            return len(row[ix[0]])
        if function in ("min", "max"):
            return row[ix[0]]
        if function in ("first", "last"):
            slot = row[ix[0]]
            return None if slot is None else slot[1]
        n = row[ix[0]]
        if n == 0:
            return None
        s = row[ix[1]]
        if function == "sum":
            return s.value() if isinstance(s, ExactSum) else s
        if function == "mean":
            return s.mean(n) if isinstance(s, ExactSum) else _int_mean(s, n)
        s1 = s if isinstance(s, ExactSum) else ExactSum(s)
        var = sample_variance(n, s1, row[ix[2]])
        if var is None or function == "variance":
            return var
        return math.sqrt(var)

    # -- storage -------------------------------------------------------------------------------------
    def encode(self, row: list) -> list:
        """A JSON-able form of ``row`` (one entry per slot)."""
        out: list = []
        for (kind, col), v in zip(self.slots, row):
            if kind in ("s", "q") and isinstance(v, ExactSum):
                out.append(v.encode())
            elif kind == "d":  # canonical: same set, same text
                if _NAN_KEY in v:
                    out.append(sorted((_nan_out(x) for x in v), key=_distinct_order))
                else:  # the same order (NaN is the only value _distinct_order moves), without a key per value
                    out.append(sorted(v))
            else:
                out.append(v)
        return out

    def decode(self, obj: list) -> list:
        row: list = []
        for (kind, col), v in zip(self.slots, obj):
            if kind == "q" or (kind == "s" and col in self.float_cols):
                row.append(ExactSum.decode(v))
            elif kind == "d":
                row.append({_NAN_KEY if isinstance(x, float) and x != x else x for x in v})
            else:
                row.append(v)
        return row


def _nan_out(x: Any) -> Any:
    return math.nan if x is _NAN_KEY or x == _NAN_KEY else x


def _distinct_order(x: Any):
    return (1, 0.0) if isinstance(x, float) and x != x else (0, x)


def _int_mean(total: int, n: int) -> float:
    return total / n  # int / int is correctly rounded


def _better(kind: str, floats: bool):
    if floats:
        if kind == "<":
            return lambda x, best: _num_key(x) < _num_key(best)
        return lambda x, best: _num_key(x) > _num_key(best)
    if kind == "<":
        return lambda x, best: x < best
    return lambda x, best: x > best


__all__ = ["Layout", "NEEDS", "order_of"]
