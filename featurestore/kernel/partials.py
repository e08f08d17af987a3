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
from operator import itemgetter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore.kernel.exact import ExactSum, sample_variance
from featurestore.kernel.tiles import UNIT_MS

_NAN_KEY = ("NaN",)  # every NaN is one distinct value (DuckDB's count(DISTINCT))


class Encoded(str):
    """A distinct-set slot already in its encoded form, as JSON text (the sorted values, encoded as
    :meth:`Layout.encode` and the stdlib's compact encoder would write them): built by an engine
    (materialize: ``featurestore.engines.duckdb_partials``), written as it is (:func:`dumps_row`), never
    merged or read."""

    __slots__ = ()


class EncodedRow(str):
    """A whole row already in its stored form (the JSON text :func:`dumps_row` would write of
    :meth:`Layout.encode` at the row's level), written by an engine (materialize's tile rows:
    ``featurestore.engines.duckdb_tile_text``): written as it is, never merged or read."""

    __slots__ = ()


_SPLICE = "\x00fs:encoded\x00"  # stands for an Encoded slot while the rest of the row is encoded


def dumps_row(row: list, dumps) -> str:
    """The JSON text of an encoded row (``dumps``: the compact encoder), :class:`Encoded` slots spliced:
    the row is encoded once with a placeholder in their place, then the placeholders are replaced (one
    encoder call per slot when a value of the row itself encodes like the placeholder)."""
    if type(row) is EncodedRow:
        return row
    at = [i for i, v in enumerate(row) if type(v) is Encoded]
    if not at:
        return dumps(row)
    parts = dumps([_SPLICE if type(v) is Encoded else v for v in row]).split(dumps(_SPLICE))
    if len(parts) != len(at) + 1:
        return "[" + ",".join(v if type(v) is Encoded else dumps(v) for v in row) + "]"
    out = [parts[0]]
    for k, i in enumerate(at):
        out += [row[i], parts[k + 1]]
    return "".join(out)

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


# A tile level above every real one: rows encoded at it (prefixes, read only by unbounded windows) keep
# only the slots an unbounded window reads.
PREFIX_LEVEL = 1 << 20


def window_level(window_ms: Optional[int]) -> int:
    """The highest tile level the exact decomposition of a window ``window_ms`` long can use (the tiles of
    ``[ceil(q - W), floor(q))`` are at most its length); -1 when it uses none, :data:`PREFIX_LEVEL` when
    unbounded."""
    if window_ms is None:
        return PREFIX_LEVEL
    return (window_ms // UNIT_MS).bit_length() - 1


class Layout:
    """The slots of one view and how each of its features is read from a row.

    ``inputs``: the view's input columns as ``(expr, dtype)`` (online.input_columns order);
    ``aggregations``: ``(name, function, col)`` or ``(name, function, col, window_ms)`` with ``function``
    an aggregation, ``col`` an input index (None for ``count(*)``), ``window_ms`` its window (None:
    unbounded); ``latest``: the input index of each latest feature (kept in the ``L`` slot's value list).

    ``levels[i]``: the highest tile level whose rows must hold slot ``i`` — the largest
    :func:`window_level` of the features reading it (:data:`PREFIX_LEVEL` for unbounded windows, latest
    features and aggregations given without a window). :meth:`encode` at a higher level writes the slot
    empty: no window that reads it ever reads such a tile (a 1 h ``count_distinct`` keeps its sets in
    tiles of at most 32 minutes, not in the day tiles a 7 d ``sum`` reads). ``max_level``: the highest
    level any slot needs (tiles above it hold nothing a request reads)."""

    def __init__(self, inputs: Sequence[Tuple[str, str]], aggregations: Sequence[Tuple],
                 latest: Sequence[int]):
        self.inputs = list(inputs)
        slots: List[Tuple[str, Optional[int]]] = []
        index: Dict[Tuple[str, Optional[int]], int] = {}
        levels: List[int] = []

        def slot(kind: str, col: Optional[int], level: int) -> int:
            if (kind, col) not in index:
                index[(kind, col)] = len(slots)
                slots.append((kind, col))
                levels.append(level)
            i = index[(kind, col)]
            levels[i] = max(levels[i], level)
            return i

        self.reads: Dict[Tuple[str, Optional[int]], Tuple[int, ...]] = {}
        for agg in aggregations:
            function, col = agg[1], agg[2]
            level = window_level(agg[3]) if len(agg) > 3 else PREFIX_LEVEL
            if col is None:
                ix: Tuple[int, ...] = (slot("*", None, level),)
            else:
                ix = tuple(slot(k, col, level) for k in NEEDS[function])
            self.reads[(function, col)] = tuple(dict.fromkeys(self.reads.get((function, col), ()) + ix))
        self.latest_cols = list(dict.fromkeys(latest))
        self.latest_slot = slot("L", None, PREFIX_LEVEL) if self.latest_cols else None
        self.slots = slots
        self.levels = levels
        self.max_level = max(levels, default=-1)
        self.float_cols = {i for i, (_, d) in enumerate(self.inputs) if d in (t.FLOAT32, t.FLOAT64)}
        self.all_slots = tuple(range(len(slots)))
        self._adders = [self._adder(k, c) for k, c in slots]
        self.add_all = self._compiled_adder()  # add_all(row, order, inputs): add(row, order, inputs), one call
        self._mergers = [self._merger(k, c) for k, c in slots]
        self._decoders = [self._decoder(k, c) for k, c in slots]
        self._kept: Dict[int, Tuple[int, ...]] = {}
        # new(): a template of the immutable empty values, and the slots that need a fresh mutable one
        # (tiles are built by the thousand in a catch-up: this is several times faster than a loop)
        self._template = [self._empty(kind, col) for kind, col in slots]
        self._fresh: List[Tuple[int, Any]] = [(i, type(v)) for i, v in enumerate(self._template)
                                              if isinstance(v, (ExactSum, set))]
        # pair(): how a slot's value is copied (None: shared, it is never changed in place)
        self._copiers = [type(v).copy if isinstance(v, (ExactSum, set)) else None for v in self._template]
        self._pair_plans: Dict[Tuple[int, ...], tuple] = {}
        self._shell_plans: Dict[Tuple[int, ...], list] = {}
        self._combiners = [self._combiner(k, c) for k, c in slots]
        self._finalizers: Dict[Tuple[str, Optional[int]], Any] = {}

    def slots_of(self, function: str, col: Optional[int]) -> Tuple[int, ...]:
        """The slots a feature reads (``function == "latest"``: the latest slot)."""
        if function == "latest":
            return (self.latest_slot,)
        return self.reads[(function, col)]

    def kept(self, level: int) -> Tuple[int, ...]:
        """The slots a row encoded at tile ``level`` holds (see ``levels``)."""
        out = self._kept.get(level)
        if out is None:
            out = self._kept[level] = tuple(i for i, lv in enumerate(self.levels) if lv >= level)
        return out

    # -- building ------------------------------------------------------------------------------------
    def new(self) -> list:
        """The row of no events."""
        row = self._template.copy()
        for i, make in self._fresh:
            row[i] = make()
        return row

    def shell(self, slots: Sequence[int]) -> list:
        """A row for a caller that sets every slot of ``slots`` (a tuple of :meth:`kept`): the others are
        empty, as in :meth:`new`, and only they get fresh mutable values."""
        plan = self._shell_plans.get(slots)
        if plan is None:
            kept = set(slots)
            plan = self._shell_plans[slots] = [(i, make) for i, make in self._fresh if i not in kept]
        row = self._template.copy()
        for i, make in plan:
            row[i] = make()
        return row

    def pair(self, a: list, b: Optional[list], slots: Sequence[int]) -> list:
        """A new row: ``merge(merge(new(), a, slots), b, slots)`` (``b`` may be None), faster: ``a``'s
        values are copied, not merged into empty ones. Slots outside ``slots`` are empty."""
        plan = self._pair_plans.get(slots)
        if plan is None:  # (slots are the tuples of kept(): a few distinct ones per layout)
            kept = set(slots)
            plan = self._pair_plans[slots] = (
                [(i, self._copiers[i]) for i in slots], [(i, self._combiners[i]) for i in slots],
                [(i, make) for i, make in self._fresh if i not in kept])
        copies, combines, fresh = plan
        row = self._template.copy()  # no new() here: its fresh values would be overwritten at once
        for i, make in fresh:
            row[i] = make()
        if b is None:
            for i, c in copies:
                row[i] = a[i] if c is None else c(a[i])
        else:  # one new value per slot, no copy then merge (tiles are paired by the thousand)
            for i, combine in combines:
                row[i] = combine(a[i], b[i])
        return row

    def copy(self, row: list) -> list:
        """A row equal to ``row`` that shares no mutable state with it (``merge(new(), row)``, faster)."""
        out = row.copy()
        for i, _ in self._fresh:
            out[i] = out[i].copy()
        return out

    def _empty(self, kind: str, col: Optional[int]):
        if kind in ("*", "n"):
            return 0
        if kind == "s":
            return ExactSum() if col in self.float_cols else 0
        if kind == "q":
            return ExactSum()
        if kind == "d":
            return set()
        return None

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

    def _compiled_adder(self):
        """``add_all(row, order, inputs)``: every slot's adder (``_adder``) in one generated function, slot by
        slot in order, the same statements (one call per event, not one per slot: a tile gets every event)."""
        env: Dict[str, Any] = {"_NAN_KEY": _NAN_KEY}
        lines = ["def add_all(row, order, inputs):"]
        for i, (kind, col) in enumerate(self.slots):
            floats = col in self.float_cols
            if kind == "*":
                lines.append(f"    row[{i}] += 1")
                continue
            if kind == "L":
                env[f"cols{i}"] = tuple(self.latest_cols)
                lines.append(f"    if row[{i}] is None or order > row[{i}][0]:")
                lines.append(f"        row[{i}] = [order, [inputs[c] for c in cols{i}]]")
                continue
            lines.append(f"    x = inputs[{col}]")
            if kind == "n":
                lines.append(f"    if x is not None: row[{i}] += 1")
            elif kind == "s":
                lines.append(f"    if x is not None: row[{i}]" + (".add(x)" if floats else " += x"))
            elif kind == "q":
                lines.append(f"    if x is not None: row[{i}].add_square(x)")
            elif kind in ("<", ">"):
                env[f"better{i}"] = _better(kind, floats)
                lines.append(f"    if x is not None and (row[{i}] is None or better{i}(x, row[{i}])): row[{i}] = x")
            elif kind in ("f", "l"):
                op = "<" if kind == "f" else ">"
                lines.append(f"    if x is not None and (row[{i}] is None or order {op} row[{i}][0]):")
                lines.append(f"        row[{i}] = [order, x]")
            elif kind == "d":
                value = "_NAN_KEY if x != x else x" if floats else "x"
                lines.append(f"    if x is not None: row[{i}].add({value})")
            else:  # pragma: no cover
                raise ValueError(kind)
        lines.append("    return row")
        exec(compile("\n".join(lines), f"<Layout add_all {self.slots}>", "exec"), env)
        return env["add_all"]

    def _merger(self, kind: str, col: Optional[int]):
        if kind in ("*", "n") or (kind == "s" and col not in self.float_cols):
            def merge(row, i, b):
                row[i] += b
        elif kind in ("s", "q"):
            def merge(row, i, b):
                row[i].merge(b)
        elif kind == "d":
            def merge(row, i, b):
                row[i] |= b
        elif kind in ("<", ">"):
            better = _better(kind, col in self.float_cols)

            def merge(row, i, b):
                if b is not None and (row[i] is None or better(b, row[i])):
                    row[i] = b
        elif kind == "f":
            def merge(row, i, b):
                if b is not None and (row[i] is None or b[0] < row[i][0]):
                    row[i] = b
        else:  # "l", "L"
            def merge(row, i, b):
                if b is not None and (row[i] is None or b[0] > row[i][0]):
                    row[i] = b
        return merge

    def _combiner(self, kind: str, col: Optional[int]):
        """``combine(a, b)``: a new slot value equal to merging ``b`` into a copy of ``a`` (see ``_merger``;
        neither is changed; ties keep ``a``'s value, as the merge does)."""
        if kind in ("*", "n") or (kind == "s" and col not in self.float_cols):
            return lambda a, b: a + b
        if kind in ("s", "q"):
            return ExactSum.plus
        if kind == "d":
            return lambda a, b: a | b  # a's elements first: of 0.0 and -0.0, a's is kept, as by |=
        if kind in ("<", ">"):
            better = _better(kind, col in self.float_cols)
            return lambda a, b: b if b is not None and (a is None or better(b, a)) else a
        if kind == "f":
            return lambda a, b: b if b is not None and (a is None or b[0] < a[0]) else a
        return lambda a, b: b if b is not None and (a is None or b[0] > a[0]) else a  # "l", "L"

    def add(self, row: list, order: list, inputs: Sequence[Any], slots: Optional[Sequence[int]] = None) -> list:
        """Add one event (its order and input values) to ``row`` in place (only ``slots``, default all);
        returns ``row``."""
        adders = self._adders
        if slots is None:
            return self.add_all(row, order, inputs)
        else:
            for i in slots:
                adders[i](row, i, order, inputs)
        return row

    def adders(self, slots: Sequence[int]) -> List[Tuple[int, Any]]:
        """``(slot, adder)`` of ``slots``: ``for i, add in adders: add(row, i, order, inputs)`` is
        :meth:`add` on those slots, without a method call per event (a lookup's loop over raw events)."""
        return [(i, self._adders[i]) for i in slots]

    def merge(self, row: list, other: list, slots: Optional[Sequence[int]] = None) -> list:
        """Merge ``other`` into ``row`` in place (only ``slots``, default all; ``other`` is not changed);
        returns ``row``."""
        mergers = self._mergers
        for i in (self.all_slots if slots is None else slots):
            mergers[i](row, i, other[i])
        return row

    # -- reading -------------------------------------------------------------------------------------
    def finalize(self, function: str, col: Optional[int], row: list) -> Any:
        """The value of one aggregation over the events ``row`` summarises (None = null; counts are
        ints). ``function == "latest"``: the value of input ``col`` in the greatest event."""
        return self.finalizer(function, col)(row)

    def finalizer(self, function: str, col: Optional[int]):
        """:meth:`finalize` of one aggregation as a function of the row alone (made once per aggregation:
        a many-entity lookup finishes a thousand values, one call each)."""
        key = (function, col)
        fin = self._finalizers.get(key)
        if fin is None:
            fin = self._finalizers[key] = self._make_finalizer(function, col)
        return fin

    def _make_finalizer(self, function: str, col: Optional[int]):
        ix, f = self.value_finalizer(function, col)
        if f is None:
            return itemgetter(ix[0])
        if len(ix) == 1:
            i = ix[0]
            return lambda row: f(row[i])
        get = itemgetter(*ix)
        return lambda row: f(*get(row))

    def value_finalizer(self, function: str, col: Optional[int]):
        """``(slots, f)``: :meth:`finalize` of one aggregation (or ``"latest"``) as ``f(*values of slots)``,
        f None when the value is the single slot's own (a lookup finishes a feature of all its entities
        from slot columns: ``map(f, *columns)``; :meth:`finalizer` is the same function of a row)."""
        key = ("values", function, col)
        hit = self._finalizers.get(key)
        if hit is None:
            hit = self._finalizers[key] = self._make_value_finalizer(function, col)
        return hit

    def _make_value_finalizer(self, function: str, col: Optional[int]):
        if function == "latest":
            at = self.latest_cols.index(col)
            return (self.latest_slot,), lambda v: None if v is None else v[1][at]
        ix = self.reads[(function, col)]
        if col is None or function in ("count", "min", "max"):
            return ix[:1], None
        if function == "count_distinct":
            return ix[:1], len
        if function in ("first", "last"):
            return ix[:1], lambda v: None if v is None else v[1]
        if function == "sum":
            def total(n, s):
                if n == 0:
                    return None
                return s.value() if isinstance(s, ExactSum) else s
            return ix[:2], total
        if function == "mean":
            def mean(n, s):
                if n == 0:
                    return None
                return s.mean(n) if isinstance(s, ExactSum) else _int_mean(s, n)
            return ix[:2], mean
        root = function != "variance"

        def spread(n, s, sq):
            if n == 0:
                return None
            var = sample_variance(n, s if isinstance(s, ExactSum) else ExactSum(s), sq)
            return var if var is None or not root else math.sqrt(var)
        return ix[:3], spread

    # -- storage -------------------------------------------------------------------------------------
    def encode(self, row: list, level: Optional[int] = None) -> list:
        """A JSON-able form of ``row`` (one entry per slot). At a tile ``level`` (or
        :data:`PREFIX_LEVEL`), the slots no reader of that level needs are written empty."""
        if type(row) is EncodedRow:
            return row
        out: list = []
        keep = self.levels if level is not None else None
        for i, ((kind, col), v) in enumerate(zip(self.slots, row)):
            if keep is not None and keep[i] < level:
                v = self._empty(kind, col)
            if kind in ("s", "q") and isinstance(v, ExactSum):
                out.append(v.encode())
            elif kind == "d":  # canonical: same set, same text
                if type(v) is Encoded:
                    out.append(v)
                elif _NAN_KEY in v:
                    out.append(sorted((_nan_out(x) for x in v), key=_distinct_order))
                else:  # the same order (NaN is the only value _distinct_order moves), without a key per value
                    out.append(sorted(v))
            else:
                out.append(v)
        return out

    def _decoder(self, kind: str, col: Optional[int]):
        if kind == "q" or (kind == "s" and col in self.float_cols):
            return ExactSum.decode
        if kind == "d":
            if col in self.float_cols:
                return lambda v: {_NAN_KEY if isinstance(x, float) and x != x else x for x in v}
            return set  # only floats can be NaN
        return None

    def decode(self, obj: list, slots: Optional[Sequence[int]] = None) -> list:
        """The row of an :meth:`encode`d form. With ``slots``, only those are decoded (the others are
        None: such a row is only read or merged with the same ``slots``)."""
        decoders = self._decoders
        if slots is None:
            return [v if dec is None else dec(v) for dec, v in zip(decoders, obj)]
        row: list = [None] * len(obj)
        for i in slots:
            dec = decoders[i]
            row[i] = obj[i] if dec is None else dec(obj[i])
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


__all__ = ["Encoded", "EncodedRow", "Layout", "NEEDS", "dumps_row", "PREFIX_LEVEL", "order_of", "window_level"]
