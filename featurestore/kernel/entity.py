"""One entity's online state of one view, in kernel terms: raw events, tiles, prefixes.

The state answers every request at or after its horizon exactly (SPEC §2, §3.2):

* **raw events** with ``ts >= cut``: ``eid -> (order, inputs, member)`` — a unique event id (within the
  entity), its order (:func:`featurestore.kernel.partials.order_of`: time first), its input values and
  its stored form;
* **base**: the partial row of every event before ``cut`` (only for views with an unbounded window:
  ``keep_base``; other views drop those events, which no window at or after the horizon can see);
* **tiles** (a *dense* entity: more than ``DENSE_EVENTS`` raw events at the last drain): the rows of the
  tiles (:mod:`featurestore.kernel.tiles`) over the raw events that hold more than ``TILE_MIN_EVENTS``
  events, each with the slots its level needs (:attr:`featurestore.kernel.partials.Layout.levels`); a
  reader reads the raw events of any other tile. So a window reads O(tiles + edge events), and a tile
  costs memory only where it saves reading events;
* **prefixes** (``keep_base``): ``boundary -> row of every event before it``, at the cut and, for a dense
  entity, at the start of every top tile holding a raw event (what an unbounded window starts from).

:class:`EntityState` is maintained event by event (the stream job) or built in one go (materialize),
and :meth:`EntityState.drain` yields what changed since the last drain, or everything after a
:meth:`EntityState.rewrite`. The work per event is bounded: one minute tile, and at each drain the
ancestors of the minutes that changed (two children each), never the entity's history.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Set, Tuple

from featurestore.kernel.partials import PREFIX_LEVEL, Layout
from featurestore.kernel.tiles import TOP_LEVEL, UNIT_MS, tile_id, tile_ms

DENSE_EVENTS = 128  # more raw events than this: the entity keeps tiles
TILE_MIN_EVENTS = 16  # a dense entity's tile is stored when it holds more events than this


class _Id:
    """An event id in the time heap (ids of equal times are never compared: they may differ in type)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __lt__(self, other):
        return False


class EntityTiles:
    """The tiles of one entity (decoded rows by ``(level, start_ms)``, and how many events each holds),
    updated event by event. Every tile up to the layout's ``max_level`` is kept here; only those
    :meth:`stored` go to the online store."""

    def __init__(self, layout: Layout, top: int = TOP_LEVEL):
        self.layout = layout
        self.top = min(top, layout.max_level)  # tiles above the layout's max level hold nothing anyone reads
        self.rows: Dict[Tuple[int, int], list] = {}
        self.counts: Dict[Tuple[int, int], int] = {}
        self.tops: Set[int] = set()  # starts of the top-level tiles in ``rows``
        # (start, level) of every tile created, least first, so a trim finds what it drops without a scan
        # of every tile (entries of tiles removed since are skipped)
        self._by_start: List[Tuple[int, int]] = []
        self._dirty: Set[int] = set()  # minute starts whose ancestors are out of date
        self.floor: Optional[int] = None  # no tile starting before it is kept (nothing reads one)

    def stored(self, key: Tuple[int, int]) -> bool:
        """Whether the online store holds this tile: when it has more than ``TILE_MIN_EVENTS`` events (a
        reader reads the raw events of any other tile instead: as exact, and as cheap)."""
        return bool(self.stored_among((key,)))

    def stored_among(self, keys) -> list:
        """The keys of ``keys`` whose tiles the store holds (see :meth:`stored`), in their order: one loop
        (a drain checks every tile it changed, most of them too small)."""
        counts, rows, top = self.counts, self.rows, self.top
        return [k for k in keys if counts.get(k, 0) > TILE_MIN_EVENTS and k[0] <= top and k in rows]

    def add(self, order: list, inputs: Sequence) -> None:
        ts = order[0]
        minute = ts - ts % UNIT_MS  # (floor_unit, inline: once per event)
        if self.floor is not None and minute < self.floor:
            return
        key = (0, minute)
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = self.layout.new()
            heapq.heappush(self._by_start, (minute, 0))
            if self.top == 0:
                self.tops.add(minute)
        self.layout.add_all(row, order, inputs)
        self.counts[key] = self.counts.get(key, 0) + 1
        self._dirty.add(minute)

    def settle(self) -> List[Tuple[int, int]]:
        """Recompute every ancestor of the changed minutes (each from its two children); returns the
        ``(level, start_ms)`` of every tile that changed, minutes included.

        A parent with one child *is* its child's row (no copy: most parents at the low levels of a sparse
        minute). That is exact because a row is only read through the slots of its level (:meth:`Layout.encode`
        at a level writes the others empty, :meth:`Layout.pair` reads only the slots it keeps, a prefix is
        encoded at ``PREFIX_LEVEL``, above every tile), and only a minute's row is ever changed in place
        (:meth:`add`), which marks the minute dirty: every parent sharing it is settled again before any
        drain reads it."""
        starts = sorted(self._dirty)
        changed = [(0, m) for m in starts]
        self._dirty.clear()
        layout, rows, counts, floor = self.layout, self.rows, self.counts, self.floor
        pair, get, count = layout.pair, rows.get, counts.get
        for level in range(1, self.top + 1):  # (the per-parent work is most of a drain's CPU: keys made once)
            size = tile_ms(level)
            parents = sorted({s - s % size for s in starts})
            half = size // 2
            below = level - 1
            kept = layout.kept(level)  # the slots a tile of this level holds (and its ancestors need)
            is_top = level == self.top
            for p in parents:
                if floor is not None and p < floor:
                    continue
                key, left_key, right_key = (level, p), (below, p), (below, p + half)
                left = get(left_key)
                right = get(right_key)
                if left is None and right is None:
                    rows.pop(key, None)
                    counts.pop(key, None)
                    if is_top:
                        self.tops.discard(p)
                    continue
                if left is None or right is None:  # one child: the parent is the same row (see settle)
                    row = right if left is None else left
                else:
                    row = pair(left, right, kept)
                if key not in rows:
                    heapq.heappush(self._by_start, (p, level))
                    if is_top:
                        self.tops.add(p)
                rows[key] = row
                counts[key] = count(left_key, 0) + count(right_key, 0)
                changed.append(key)
            starts = parents
        return changed

    def drop_before(self, cut_ms: int) -> List[Tuple[int, int]]:
        """Forget the tiles that start before ``cut_ms`` (no request at or after the horizon reads them),
        and keep none from now on; returns those of them the store held."""
        self.floor = cut_ms
        stored = []
        while self._by_start and self._by_start[0][0] < cut_ms:
            start, level = heapq.heappop(self._by_start)
            key = (level, start)
            if key in self.rows:
                if self.stored(key):
                    stored.append(key)
                del self.rows[key]
                self.counts.pop(key, None)
                if level == self.top:
                    self.tops.discard(start)
        return stored


@dataclass
class Changes:
    """What to write for one entity (``full``: replace everything it has)."""

    full: bool
    horizon: Optional[int]
    dense: bool
    tiles_set: Dict[str, list] = field(default_factory=dict)
    tiles_del: List[str] = field(default_factory=list)
    raw_add: List[Tuple[int, str]] = field(default_factory=list)  # (ts, member)
    raw_below: Optional[int] = None  # remove raw events with ts < this
    prefix_set: Dict[int, list] = field(default_factory=dict)
    prefix_below: Optional[int] = None  # remove prefixes with boundary < this
    last_ts: Optional[int] = None
    meta: bool = False  # the entity meta (horizon) changed

    @property
    def empty(self) -> bool:
        return not (self.full or self.meta or self.tiles_set or self.tiles_del or self.raw_add
                    or self.raw_below is not None or self.prefix_set or self.prefix_below is not None)


class EntityState:
    """The online state of one entity of one view (see the module docstring)."""

    def __init__(self, layout: Layout, keep_base: bool, cut: Optional[int] = None,
                 dense_events: Optional[int] = None, top: int = TOP_LEVEL):
        self.layout = layout
        self.keep_base = keep_base
        self.top = top
        self.dense_events = DENSE_EVENTS if dense_events is None else dense_events
        self.events: Dict[object, Tuple[list, list, str]] = {}
        self._by_time: List[Tuple[int, object]] = []  # heap of (ts, eid) of the raw events
        self.cut = cut
        self.base = layout.new() if keep_base else None
        self.horizon: Optional[int] = None
        self.tiles: Optional[EntityTiles] = None
        self.prefixes: Dict[int, list] = {}
        self.last_ts: Optional[int] = None
        self._full = True
        self._new: List[object] = []
        self._late: Optional[int] = None  # least time of a new event (prefixes after it change)
        self._raw_below: Optional[int] = None
        self._tiles_del: List[str] = []
        self._prefix_below: Optional[int] = None
        self._meta = True
        if cut is not None and keep_base:
            self.prefixes[cut] = self.base

    @property
    def dense(self) -> bool:
        return self.tiles is not None

    # -- events ----------------------------------------------------------------------------------
    def add(self, eid, order: list, inputs: list, member: str) -> bool:
        """Add one event; returns whether the state changed. A replayed ``eid`` is ignored while the event
        is kept raw; one behind the cut is folded into the base, so the caller must not deliver it twice
        (the stream job's state is checkpointed with its Kafka offsets, so a restore never replays one)."""
        if eid in self.events:
            return False
        ts = order[0]
        if self.last_ts is None or ts > self.last_ts:
            self.last_ts = ts
        if self.cut is not None and ts < self.cut:  # behind the cut: only the base can still see it
            if self.base is None:
                return False
            self.layout.add_all(self.base, order, inputs)  # every prefix includes it: they are recomputed
            self._late = ts if self._late is None else min(self._late, ts)
            return True
        self.events[eid] = (order, inputs, member)
        heapq.heappush(self._by_time, (ts, _Id(eid)))
        self._new.append(eid)
        if self.keep_base and self.dense and self.prefixes and ts < max(self.prefixes) \
                and (self._late is None or ts < self._late):
            self._late = ts  # a late event: the prefixes after it change
        if self.tiles is not None:
            self.tiles.add(order, inputs)
        return True

    def _fit_density(self) -> None:
        """Dense exactly when more than ``dense_events`` raw events are kept (decided at each drain, so
        the stored form depends only on the events, never on when drains happened); a change of form
        rewrites the entity."""
        dense = len(self.events) > self.dense_events
        if dense == (self.tiles is not None):
            return
        if dense:
            self.tiles = EntityTiles(self.layout, self.top)
            if self.cut is not None:
                self.tiles.floor = self.cut
            for order, inputs, _ in self.events.values():
                self.tiles.add(order, inputs)
        else:
            self.tiles = None
            self.prefixes = {self.cut: self.base} if self.keep_base and self.cut is not None else {}
        self._full = True

    def trim(self, cut: int, horizon: Optional[int]) -> List[object]:
        """Move the cut forward to ``cut`` (a top-tile boundary when the view keeps a base) — the first time
        only if a raw event is behind it: those events are folded into the base (``keep_base``) or
        dropped, and requests before ``horizon`` are no longer answered. Returns the ids of the events
        that left the raw set."""
        if self.cut is not None and cut <= self.cut:
            return []
        if self.cut is None and (not self._by_time or self._by_time[0][0] >= cut):
            return []  # nothing behind it yet: every request time stays answered
        # Once trimmed, the cut follows every call, so the state (horizon included) depends only on the
        # events seen and the last call, not on when earlier flushes happened.
        if self.keep_base and cut % tile_ms(self.top):
            raise ValueError("the cut of a view with a base must be a top tile boundary")
        old = []
        while self._by_time and self._by_time[0][0] < cut:
            _, eid = heapq.heappop(self._by_time)
            order, inputs, _ = self.events.pop(eid.value)
            old.append(eid.value)
            if self.base is not None:
                self.layout.add_all(self.base, order, inputs)
        self.cut = cut
        self.horizon = horizon
        self._meta = True
        self._raw_below = cut
        if self.tiles is not None:
            self._tiles_del += [tile_id(*k) for k in self.tiles.drop_before(cut)]
        if self.keep_base:
            for b in [b for b in self.prefixes if b < cut]:
                del self.prefixes[b]
            self.prefixes[cut] = self.base
            self._prefix_below = cut
            self._late = cut if self._late is None else min(self._late, cut)
        return old

    def rewrite(self) -> None:
        """The next drain returns the whole state (after a restore, or when the store may be stale)."""
        self._full = True

    # -- output ----------------------------------------------------------------------------------
    def drain(self) -> Changes:
        """What changed since the last drain (everything after :meth:`rewrite` or at first)."""
        self._fit_density()
        full = self._full
        ch = Changes(full, self.horizon, self.dense, last_ts=self.last_ts, meta=self._meta or full)
        changed_tiles: List[Tuple[int, int]] = self.tiles.settle() if self.tiles is not None else []
        if self.keep_base:
            changed_prefixes = self._update_prefixes(full)
        else:
            changed_prefixes = []
        enc = self.layout.encode
        if full:
            if self.tiles is not None:
                rows = self.tiles.rows
                ch.tiles_set = {tile_id(*k): enc(rows[k], k[0]) for k in self.tiles.stored_among(rows)}
            ch.raw_add = [(order[0], member) for order, _, member in self.events.values()]
            ch.prefix_set = {b: enc(r, PREFIX_LEVEL) for b, r in self.prefixes.items()}
        else:
            if self.tiles is not None:
                rows = self.tiles.rows
                ch.tiles_set = {tile_id(*k): enc(rows[k], k[0]) for k in self.tiles.stored_among(changed_tiles)}
            ch.tiles_del = list(dict.fromkeys(self._tiles_del))
            ch.raw_add = [(self.events[e][0][0], self.events[e][2]) for e in self._new if e in self.events]
            ch.raw_below = self._raw_below
            ch.prefix_set = {b: enc(self.prefixes[b], PREFIX_LEVEL) for b in changed_prefixes if b in self.prefixes}
            ch.prefix_below = self._prefix_below
        self._full = False
        self._new = []
        self._late = None
        self._raw_below = None
        self._tiles_del = []
        self._prefix_below = None
        self._meta = False
        return ch

    def _update_prefixes(self, full: bool) -> List[int]:
        """Recompute the prefixes a new or late event changed (and create those a new top tile needs);
        returns the boundaries that changed."""
        if self.tiles is None:  # sparse: the raw events are read whole; only the cut's prefix is kept
            return [self.cut] if self.cut is not None and (full or self._late is not None) else []
        tops = sorted(self.tiles.tops) if self.tiles.top == self.top else []
        wanted = set(s for s in tops if self.cut is None or s > self.cut)
        if self.cut is not None:
            wanted.add(self.cut)
        since = self._late
        missing = [b for b in wanted if b not in self.prefixes]
        if not full and since is None and not missing:
            return []
        acc = self.layout.new()
        if self.base is not None:
            self.layout.merge(acc, self.base)
        changed = []
        for b in sorted(wanted | set(tops)):
            if b in wanted and (full or b in missing or (since is not None and b > since) or b == self.cut):
                self.prefixes[b] = self.layout.decode(self.layout.encode(acc, PREFIX_LEVEL))
                changed.append(b)
            tile = self.tiles.rows.get((self.top, b))
            if tile is not None:
                self.layout.merge(acc, tile)
        return changed


def trim_to_retention(state: EntityState, window_ms: Optional[int], slack_ms: int = 0) -> bool:
    """The stream's trim of an entity after new events (relative to its latest event, never the wall clock):
    the cut moves to ``last_ts - window_ms - slack_ms`` (floored to a top tile when the view keeps a base),
    requests from ``cut + window_ms`` on stay answered. Shared by the stream job's state operator and the
    hand-off's seed (which stores each entity as the operator would hold it after a flush). Returns whether
    events left the raw set (folded into the base, or dropped)."""
    if state.last_ts is None or window_ms is None:
        return False
    cut = state.last_ts - window_ms - slack_ms
    if state.keep_base:
        cut -= cut % tile_ms(TOP_LEVEL)
    return bool(state.trim(cut, cut + window_ms))


def build(layout: Layout, events: Sequence[Tuple[object, list, list, str]], cut: Optional[int], keep_base: bool,
          dense_events: Optional[int] = None, top: int = TOP_LEVEL) -> EntityState:
    """The state of one entity from all its events ``(eid, order, inputs, member)``, cut at ``cut``."""
    state = EntityState(layout, keep_base, cut, dense_events, top)
    for eid, order, inputs, member in events:
        state.add(eid, order, inputs, member)
    return state


__all__ = ["DENSE_EVENTS", "TILE_MIN_EVENTS", "EntityTiles", "EntityState", "Changes", "build", "trim_to_retention"]
