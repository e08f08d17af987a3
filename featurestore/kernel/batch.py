"""One entity's whole online state from all its events at once (materialize), without the stream's
event-by-event upkeep.

:class:`featurestore.kernel.entity.EntityState` keeps every tile of a dense entity (so the stream can
update any of them) and recomputes each ancestor of every changed minute: 14 levels per distinct
minute, most of them tiles of a few events the store never holds. Built in one go, only the tiles the
store holds need a row (more than ``TILE_MIN_EVENTS`` events), plus the top tiles a prefix is summed
from: each is the merge of its held children and the raw events of the others (at most
``TILE_MIN_EVENTS`` each), so every event is added once and every held tile merged once. The result
is the :class:`~featurestore.kernel.entity.Changes` of a full drain of the same events, the same bytes
(``tests/test_kernel.py`` checks it against ``EntityState`` on random events).
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Dict, List, Optional, Sequence, Tuple

from featurestore.kernel import entity as kentity
from featurestore.kernel.entity import Changes
from featurestore.kernel.partials import PREFIX_LEVEL, Layout
from featurestore.kernel.tiles import TOP_LEVEL, ceil_unit, tile_id, tile_ms

Event = Tuple[object, list, list, str]  # (eid, order, inputs, member)


def full_changes(layout: Layout, events: Sequence[Event], cut: Optional[int], keep_base: bool,
                 dense_events: Optional[int] = None, top: int = TOP_LEVEL) -> Changes:
    """What a full drain of ``kernel.entity.build(layout, events, cut, keep_base, dense_events, top)``
    writes (event ids unique). ``events`` in any order."""
    dense_events = kentity.DENSE_EVENTS if dense_events is None else dense_events
    evs = sorted(events, key=lambda e: e[1][0])  # stable: ties keep their order (raw_add's order)
    first = 0 if cut is None else bisect_left([e[1][0] for e in evs], cut)
    base = layout.new() if keep_base else None
    if base is not None:
        add = layout.add
        for _, order, inputs, _ in evs[:first]:
            add(base, order, inputs)
    raw = evs[first:]
    last_ts = evs[-1][1][0] if evs else None
    ch = Changes(True, None, len(raw) > dense_events, last_ts=last_ts, meta=True)
    ch.raw_add = [(order[0], member) for _, order, _, member in raw]
    if not ch.dense:
        if keep_base and cut is not None:
            ch.prefix_set = {cut: layout.encode(base, PREFIX_LEVEL)}
        return ch
    tile_top = min(top, layout.max_level)
    tiled = raw if cut is None else raw[bisect_left([e[1][0] for e in raw], ceil_unit(cut)):]
    rows, tops = _tiles(layout, tiled, tile_top, keep_base and tile_top == top, cut)
    least = kentity.TILE_MIN_EVENTS
    ch.tiles_set = {tile_id(level, start): layout.encode(row, level) for (level, start), (row, n) in rows.items()
                    if n > least}
    if keep_base:
        tops = tops if tile_top == top else []  # (never: an unbounded window needs every level)
        wanted = {s for s in tops if cut is None or s > cut}
        if cut is not None:
            wanted.add(cut)
        acc = base
        for b in sorted(wanted | set(tops)):
            if b in wanted:
                ch.prefix_set[b] = layout.encode(acc, PREFIX_LEVEL)
            tile = rows.get((tile_top, b))
            if tile is not None:
                layout.merge(acc, tile[0])
    return ch


def _tiles(layout: Layout, raw: List[Event], tile_top: int, all_tops: bool, cut: Optional[int]
           ) -> Tuple[Dict[Tuple[int, int], Tuple[list, int]], List[int]]:
    """``(level, start) -> (row, events)`` of every tile of more than ``TILE_MIN_EVENTS`` events up to
    ``tile_top`` (and, with ``all_tops``, of every top tile), and the starts of the top tiles holding an
    event. ``raw`` sorted by time. No tile starts before ``cut`` (as in the stream's state: no request
    at or after the horizon reads one; the events of the cut's minute stay raw only)."""
    times = [e[1][0] for e in raw]
    least = kentity.TILE_MIN_EVENTS
    add, merge, new = layout.add, layout.merge, layout.new
    rows: Dict[Tuple[int, int], Tuple[list, int]] = {}
    # the tiles of each level holding events: start -> (first event index, end index)
    spans: Dict[int, Tuple[int, int]] = {}
    size = tile_ms(0)
    i, n = 0, len(raw)
    while i < n:
        start = times[i] - times[i] % size
        j = bisect_left(times, start + size, i)
        spans[start] = (i, j)
        i = j
    tops: List[int] = []
    for level in range(0, tile_top + 1):
        if level:
            size = tile_ms(level)
            half = size // 2
            parents: Dict[int, Tuple[int, int]] = {}
            for start, (a, b) in spans.items():
                p = start - start % size
                if cut is not None and p < cut:
                    continue
                span = parents.get(p)
                parents[p] = (a, b) if span is None else (min(span[0], a), max(span[1], b))
            kept = layout.kept(level)
        else:
            parents, half, kept = spans, 0, None
        for start, (a, b) in parents.items():
            count = b - a
            if count <= least and not (all_tops and level == tile_top):
                continue
            row = new()
            if level == 0:
                for k in range(a, b):
                    add(row, raw[k][1], raw[k][2])
            else:
                for child in (start, start + half):
                    held = rows.get((level - 1, child))
                    if held is not None:
                        merge(row, held[0], kept)
                    else:  # few events (or none): its raw events
                        lo = bisect_left(times, child, a, b)
                        hi = bisect_left(times, child + half, lo, b)
                        for k in range(lo, hi):
                            add(row, raw[k][1], raw[k][2], kept)
            rows[(level, start)] = (row, count)
        if level == tile_top:
            tops = sorted(parents)
        spans = parents
    return rows, tops


def changes_from_tiles(layout: Layout, raw_add: List[Tuple[int, str]], last_ts: Optional[int],
                       base: Optional[list], tiles: Sequence[Tuple[int, int, int, list]], cut: Optional[int],
                       keep_base: bool, dense_events: Optional[int] = None, top: int = TOP_LEVEL) -> Changes:
    """:func:`full_changes` of the same events from partial rows computed elsewhere (by the engine, e.g.
    ``featurestore.engines.duckdb_partials``) instead of the events: ``raw_add`` the ``(ts, member)`` of
    the events at or after ``cut`` in event order, ``base`` the row of those before it (``keep_base``;
    None: no such event), ``tiles`` ``(level, start, events, row)`` of every tile :func:`_tiles` builds
    (levels up to ``min(top, layout.max_level)``, starts not before ``cut``, more than
    ``TILE_MIN_EVENTS`` events, and with ``keep_base`` every top tile), each row holding the slots of
    its level (``Layout.kept``) as :meth:`Layout.add` builds them."""
    dense_events = kentity.DENSE_EVENTS if dense_events is None else dense_events
    ch = Changes(True, None, len(raw_add) > dense_events, last_ts=last_ts, meta=True)
    ch.raw_add = raw_add
    if base is None and keep_base:
        base = layout.new()
    if not ch.dense:
        if keep_base and cut is not None:
            ch.prefix_set = {cut: layout.encode(base, PREFIX_LEVEL)}
        return ch
    tile_top = min(top, layout.max_level)
    least = kentity.TILE_MIN_EVENTS
    enc = layout.encode
    ch.tiles_set = {tile_id(level, start): enc(row, level) for level, start, n, row in tiles if n > least}
    if keep_base:
        top_rows = {start: row for level, start, _, row in tiles if level == tile_top} if tile_top == top else {}
        wanted = {s for s in top_rows if cut is None or s > cut}
        if cut is not None:
            wanted.add(cut)
        acc = base
        for b in sorted(wanted | set(top_rows)):
            if b in wanted:
                ch.prefix_set[b] = enc(acc, PREFIX_LEVEL)
            tile = top_rows.get(b)
            if tile is not None:
                layout.merge(acc, tile)
    return ch


__all__ = ["full_changes", "changes_from_tiles"]
