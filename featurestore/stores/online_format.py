"""Format 4 of the online store's values: how one raw event is stored, defined once.

Every writer of the online store (materialize's SQL, plain and vectorised, and its per-entity build;
the stream job's state operator; push; the batch -> stream hand-off seed) encodes a raw event with this
module, and every reader (lookups, push, a stream's rebuild from its seed) decodes it with this module.

A raw event's **member** (the ZSET member of ``fs:{project}:{view}:{<entity>}:r``, score = its time) is
one flat JSON array::

    [event id, ts, input 1, ..., input k, order value 1, ..., order value m]

* ``ts``: the event time, epoch ms (also the member's score);
* the ``k`` inputs: the view's input values, ``featurestore.online.input_columns`` order (floats in
  shortest round-trip form, float32 widened exactly, timestamps as epoch microseconds, null as ``null``);
* the ``m`` **order values**: the further order columns (:func:`order_columns`) the view's features can
  compare, null as ``null``, except those an input already holds (:func:`order_sources`: the input is
  that very column, of its type: its value is not repeated). Only first / last / latest compare events
  (to break ties of time), so a view without such features stores none (``m = 0``); a view with them
  stores the source's order columns after the time except its join keys, which are equal for every
  event of an entity and so never decide a comparison within one (float join keys are kept: ``-0.0``
  and ``0.0`` are one key).

Decoded (:class:`Members`, per view: :func:`members`), an event is ``(eid, order, inputs)`` with
``order = [ts, [v1] or [], ...]`` over every column of :func:`order_columns`
(:func:`featurestore.kernel.partials.order_of`), the form the kernel compares and tile rows hold for
first / last / latest.

Format 3 stored ``[id, [ts, every further order column as [] or [v]], [inputs]]``: every source column
in every member (~190 bytes an event in the example, 3-4x slower to parse). The version is in the view's
marker (``"v"``) and in each entity's meta (``"v"``): a lookup refuses a view or an entity of another
format with a one-line message naming the fix (``featurestore materialize --view V``), push refuses to
add to such an entity, and a stream job re-seeds views whose marker has another format (as it does a
view without one); nothing of another format is ever parsed as this one.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any, List, Sequence, Tuple

import orjson

from featurestore import dtypes as t

FORMAT_VERSION = 4  # 4: flat members, only the order columns the view compares (3: every column, nested)

_JSON = None  # the standard library's compact encoder (made on first use)


ORDER_KINDS = ("f", "l", "L")  # the partial-state slots that compare event orders (kernel.partials)


def compares_orders(layout) -> bool:
    """Whether a view's features ever compare event orders (first, last or latest features)."""
    return any(kind in ORDER_KINDS for kind, _ in layout.slots)


def order_columns(cv) -> Tuple[str, ...]:
    """The order columns after the time that the orders of ``cv``'s events (and tile rows) hold (see the
    module docstring)."""
    from featurestore.online import view_layout

    if not compares_orders(view_layout(cv)):
        return ()
    types = dict(cv.stored_columns)
    constant = {k for k in cv.join_keys if types.get(k) not in (t.FLOAT32, t.FLOAT64)}
    return tuple(c for c in cv.order_columns[1:] if c not in constant)


def order_sources(cv) -> Tuple[int, ...]:
    """Per order column of :func:`order_columns`: the index of the view's input that holds the very same
    value (the input is that column itself, of its type), which the member then does not repeat; -1 when
    the member stores the value."""
    from featurestore.online import input_columns

    types = dict(cv.stored_columns)
    projected = {name for name, _, _ in cv.projections}
    same = {}
    for j, (expr, dtype) in enumerate(input_columns(cv)):
        if expr in types and expr not in projected and dtype == types[expr] and dtype not in (t.FLOAT32, t.JSON):
            same.setdefault(expr, j)
    return tuple(same.get(c, -1) for c in order_columns(cv))


# -- Python ---------------------------------------------------------------------------------------------
class Members:
    """How one view's events are stored: ``width`` inputs and, per order column, its source
    (:func:`order_sources`)."""

    __slots__ = ("width", "sources", "stored", "plain_order")

    def __init__(self, width: int, sources: Sequence[int] = ()):
        self.width = width
        self.sources = tuple(sources)
        self.stored = tuple(k for k, s in enumerate(self.sources) if s < 0)  # order values in the member
        self.plain_order = all(s < 0 for s in self.sources)

    def encode(self, eid: Any, order: list, inputs: Sequence[Any], plain: bool = True) -> str:
        """The member of an event (``order``: ``[ts, [v] or [], ...]`` over :func:`order_columns`). orjson
        writes it ten times faster than ``json``, but writes NaN and infinities as ``null`` and refuses
        integers beyond 64 bits: ``plain=False`` (values orjson could not have parsed: a feature expression
        dividing by zero) goes through ``json`` (``NaN``/``Infinity`` tokens, which the readers accept)."""
        arr = [eid, order[0], *inputs]
        if self.stored:
            arr += [order[1 + k][0] if order[1 + k] else None for k in self.stored]
        if plain:
            return orjson.dumps(arr).decode()
        global _JSON
        if _JSON is None:
            import json

            _JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
        return _JSON(arr)

    def order_of(self, arr: list) -> list:
        """The order of a parsed member."""
        base = 2 + self.width
        if self.plain_order:
            order = [[] if v is None else [v] for v in arr[base:]]
            order.insert(0, arr[1])
            return order
        order = [arr[1]]
        k = base
        for s in self.sources:
            if s < 0:
                v = arr[k]
                k += 1
            else:
                v = arr[2 + s]
            order.append([] if v is None else [v])
        return order

    def decode(self, arr: list) -> Tuple[Any, list, list]:
        """``(eid, order, inputs)`` of a parsed member."""
        return arr[0], self.order_of(arr), arr[2:2 + self.width]

    def columns(self, arrs: List[list]) -> List[list]:
        """The inputs of parsed members as ``width`` columns (one list per input)."""
        # one C-level pass per input (a transposition with zip(*arrs) builds every column, order values too,
        # and was 8x slower on a lookup's 2,400 members)
        return [list(map(itemgetter(j), arrs)) for j in range(2, 2 + self.width)]


_MEMBERS: dict = {}


def members(cv) -> Members:
    """The :class:`Members` of ``cv`` (cached per definition fingerprint)."""
    out = _MEMBERS.get(cv.data_fingerprint)
    if out is None:
        from featurestore.online import input_columns

        out = _MEMBERS[cv.data_fingerprint] = Members(len(input_columns(cv)), order_sources(cv))
    return out


# -- SQL (DuckDB) ---------------------------------------------------------------------------------------
def json_sql(expr: str) -> str:
    """A value as JSON text, ``null`` for NULL."""
    return f"coalesce(to_json({expr}), 'null')"


def order_value_sql(col: str, dtype: str) -> str:
    """The SQL value an order column is stored and compared as (timestamps as epoch microseconds)."""
    return f"epoch_us({col})" if dtype == t.TIMESTAMP else col


def member_sql(rank: str, ts: str, inputs: Sequence[str], order: Sequence[str]) -> str:
    """The member's text: ``rank`` the event's positive rank (its id is ``-rank``), ``ts`` its time in
    ms, ``inputs`` the JSON text of each input, ``order`` the JSON text of each order value (none NULL)."""
    parts = [f"CAST({rank} AS VARCHAR)", f"CAST({ts} AS VARCHAR)", *inputs, *order]
    # one concat (no part is NULL): a chain of || copies the growing text once per part
    return "concat('[-', " + ", ',', ".join(parts) + ", ']')"


__all__ = ["FORMAT_VERSION", "ORDER_KINDS", "Members", "compares_orders", "member_sql", "members", "order_columns",
           "order_sources", "order_value_sql"]
