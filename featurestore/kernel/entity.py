"""One entity's online state of one view, in kernel terms: a base partial, tiles, raw events.

The state answers every request at or after its horizon exactly (SPEC §2, §3.2):

* **raw events** with ``ts >= cut``: each as ``(eid, order, inputs)`` — a unique event id (within the
  entity), its order (:func:`featurestore.kernel.partials.order_of`: time first) and its input values;
* **base**: the partial row of every event before ``cut`` (kept only when the view has an unbounded
  aggregation or a latest feature without TTL; None otherwise);
* **tiles** (only for a *dense* entity, more than ``DENSE_EVENTS`` raw events): the partial row of every
  non-empty tile of :mod:`featurestore.kernel.tiles` over the raw events, so a window reads
  O(tiles + edge events) instead of every event. A sparse entity is read whole (a few events).

:class:`EntityTiles` maintains the tiles incrementally: events are added to their minute tile, and
:meth:`EntityTiles.settle` recomputes the ancestors of the minutes that changed from their two children,
so per event the work is bounded and independent of the entity's history. Materialize builds the
same state in one go (:func:`build`); the stream job keeps an :class:`EntityTiles` per entity.
"""

from __future__ import annotations

from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from featurestore.kernel.partials import Layout
from featurestore.kernel.tiles import TOP_LEVEL, UNIT_MS, floor_unit, tile_ms

DENSE_EVENTS = 128  # more raw events than this: the entity keeps tiles

Event = Tuple[str, list, list]  # (eid, order, inputs)


class EntityTiles:
    """The tiles of one entity (decoded rows by ``(level, start_ms)``), updated event by event."""

    def __init__(self, layout: Layout, top: int = TOP_LEVEL):
        self.layout = layout
        self.top = top
        self.rows: Dict[Tuple[int, int], list] = {}
        self._dirty: Set[int] = set()  # minute starts whose ancestors are out of date

    def add(self, order: list, inputs: Sequence) -> None:
        minute = floor_unit(order[0])
        row = self.rows.get((0, minute))
        if row is None:
            row = self.rows[(0, minute)] = self.layout.new()
        self.layout.add(row, order, inputs)
        self._dirty.add(minute)

    def settle(self) -> List[Tuple[int, int]]:
        """Recompute every ancestor of the changed minutes (each from its two children); returns the
        ``(level, start_ms)`` of every tile that changed, minutes included."""
        changed = [(0, m) for m in sorted(self._dirty)]
        level_starts = sorted(self._dirty)
        self._dirty.clear()
        for level in range(1, self.top + 1):
            size = tile_ms(level)
            parents = sorted({s - s % size for s in level_starts})
            half = size // 2
            for p in parents:
                left = self.rows.get((level - 1, p))
                right = self.rows.get((level - 1, p + half))
                if left is None and right is None:
                    self.rows.pop((level, p), None)
                    continue
                row = self.layout.new()
                if left is not None:
                    self.layout.merge(row, left)
                if right is not None:
                    self.layout.merge(row, right)
                self.rows[(level, p)] = row
                changed.append((level, p))
            level_starts = parents
        return changed

    def drop_before(self, cut_ms: int) -> List[Tuple[int, int]]:
        """Forget the tiles that end at or before ``cut_ms`` (nothing reads them any more); returns them."""
        gone = [k for k in self.rows if k[1] + tile_ms(k[0]) <= cut_ms]
        for k in gone:
            del self.rows[k]
        return gone


def needs_base(layout: Layout, windows: Iterable[Optional[int]]) -> bool:
    """Whether a view keeps a base partial: some window is unbounded (latest without TTL included)."""
    return any(w is None for w in windows)


def build(layout: Layout, events: Sequence[Event], cut_ms: Optional[int], keep_base: bool,
          dense_events: int = DENSE_EVENTS, top: int = TOP_LEVEL):
    """The state of one entity from all its events: ``(base row or None, raw events kept, tiles or None)``
    where the raw events are those with ``ts >= cut_ms`` (all when ``cut_ms`` is None) and ``tiles`` maps
    ``(level, start_ms)`` to a row when more than ``dense_events`` raw events are kept."""
    base = layout.new() if keep_base else None
    raw: List[Event] = []
    for ev in events:
        if cut_ms is not None and ev[1][0] < cut_ms:
            if base is not None:
                layout.add(base, ev[1], ev[2])
        else:
            raw.append(ev)
    tiles = None
    if len(raw) > dense_events:
        et = EntityTiles(layout, top)
        for _, order, inputs in raw:
            et.add(order, inputs)
        et.settle()
        tiles = et.rows
    return base, raw, tiles


def minute_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % UNIT_MS


__all__ = ["DENSE_EVENTS", "EntityTiles", "build", "needs_base", "minute_of", "Event"]
