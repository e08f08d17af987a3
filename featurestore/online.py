"""Request-time computation of online features (SPEC §2, §3.2): exact, from partial states.

The online state of an entity (:mod:`featurestore.kernel.entity`, stored by
:mod:`featurestore.stores.online_redis`) is a prefix partial, tiles and raw events. A request at ``q``
reads, for each distinct window ``W`` of the requested features (a latest feature's window is its
view's TTL), the exact decomposition of ``[q - W, q)`` (:func:`featurestore.kernel.tiles.decompose`):
raw edge events and whole tiles, or for an unbounded window the latest prefix at or before
``floor_top(q)`` plus the tiles after it. Their partial rows are merged and finished by
:class:`featurestore.kernel.partials.Layout`, the same code that built them. A sparse entity (no
tiles) is computed from its few raw events directly. So the cost of a lookup is O(tiles + edge
events) per window, never the entity's history, and every value is the oracle's: counts and integer
sums exact, float sums, means and variances correctly rounded from exact sums. The store's replies are
decoded by :mod:`featurestore.online_reply`.

``default`` replaces a null result (``COALESCE(agg, default)``, cast to the feature's type as the
offline SQL casts it); counts are never null. Each value comes with a status (:data:`STATUSES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import partial
from operator import itemgetter
from typing import Any, Dict, List, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.kernel.columnar import RawBatch, RawEvents, segment_rows, window_columns
from featurestore.kernel.partials import Layout
from featurestore.kernel.tiles import TOP_LEVEL, UNIT_MS, ceil_unit, cover, floor_unit, tile_id, tile_ms
from featurestore.online_reply import EntityReply
from featurestore.semantics import in_int64, int64_overflow_reason, time_value_reason, time_value_supported

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Statuses of served values (Feast's names; REFUSED is ours: the online store cannot answer exactly).
PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE, REFUSED = (
    "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "REFUSED")
STATUSES = (PRESENT, NULL_VALUE, NOT_FOUND, OUTSIDE_MAX_AGE, REFUSED)


# -- the stored columns ------------------------------------------------------------------------------
def input_columns(cv: CompiledView) -> List[Tuple[str, str]]:
    """The distinct feature input expressions of ``cv`` with their types, in the order the online state
    stores them: latest features first, then aggregations, each in definition order, first occurrence
    wins. ``count(*)`` has no input. The order is part of the online state format."""
    seen: Dict[str, str] = {}
    for s in cv.latest:
        seen.setdefault(s.expr, s.dtype)
    for a in cv.aggregations:
        if a.expr is not None:
            seen.setdefault(a.expr, a.input_dtype)
    return list(seen.items())


_LAYOUTS: Dict[str, Layout] = {}


def view_layout(cv: CompiledView) -> Layout:
    """The partial-state layout of every feature of ``cv`` (the stored rows' format; cached per
    definition fingerprint)."""
    layout = _LAYOUTS.get(cv.data_fingerprint)
    if layout is None:
        inputs = input_columns(cv)
        cols = {expr: i for i, (expr, _) in enumerate(inputs)}
        aggs = [(a.name, a.function, cols[a.expr] if a.expr is not None else None, a.window_ms)
                for a in cv.aggregations]
        layout = Layout(inputs, aggs, [cols[s.expr] for s in cv.latest])
        _LAYOUTS[cv.data_fingerprint] = layout
    return layout


def view_windows(cv: CompiledView) -> List[Optional[int]]:
    """Every window the view's features read (a latest feature reads its TTL; None is unbounded)."""
    ws: List[Optional[int]] = [a.window_ms for a in cv.aggregations]
    if cv.latest:
        ws.append(cv.ttl_ms)
    return list(dict.fromkeys(ws))


# -- per-feature plan -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FeaturePlan:
    """How to compute one feature."""

    name: str
    function: str  # "latest" or an aggregation function
    column: Optional[int]  # input column index; None for count(*)
    window_ms: Optional[int]  # the window; for latest, the view's TTL; None: unbounded
    empty: Any  # value of a null result: the cast default, 0 for counts, else None
    dtype: str  # output type


def plan_features(cv: CompiledView, names: Sequence[str]) -> List[FeaturePlan]:
    """Plans of ``names`` (features of ``cv``), in that order. Defaults are cast to the feature's type by
    DuckDB, with the same expression the offline SQL uses, so e.g. ``default=1`` of a float feature is
    ``1.0`` and ``default=0.5`` of an integer feature rounds like SQL."""
    cols = {expr: i for i, (expr, _) in enumerate(input_columns(cv))}
    latest = {s.name: s for s in cv.latest}
    aggs = {a.name: a for a in cv.aggregations}
    plans = []
    for name in names:
        if name in latest:
            s = latest[name]
            plans.append(FeaturePlan(name, "latest", cols[s.expr], cv.ttl_ms, None, s.dtype))
        else:
            a = aggs[name]
            col = cols[a.expr] if a.expr is not None else None
            empty = a.empty_value
            if empty is not None:
                empty = cast_value(empty, a.dtype)
            plans.append(FeaturePlan(name, a.function, col, a.window_ms, empty, a.dtype))
    return plans


def cast_value(value: Any, dtype: str) -> Any:
    """``CAST(value AS dtype)`` as DuckDB computes it (used once per feature for defaults)."""
    import duckdb

    from featurestore.engines.duckdb_sql import SQL_TYPES, literal

    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        sql_type = SQL_TYPES[dtype]
        if dtype == t.TIMESTAMP:
            ((v,),) = con.sql(f"SELECT epoch_us(CAST({literal(value)} AS {sql_type}))").fetchall()
        else:
            ((v,),) = con.sql(f"SELECT CAST({literal(value)} AS {sql_type})").fetchall()
    finally:
        con.close()
    return v


# -- what a request reads ----------------------------------------------------------------------------
@dataclass
class ReadPlan:
    """What to read of each entity of one view for a request at ``q``: the tiles and raw ranges of every
    window (dense entities), and ``cut`` (the top-tile boundary at or before ``q`` whose prefix an
    unbounded window starts from; None when no window is unbounded). ``pieces``: per window, the
    indexes of its tiles in ``tiles`` and of its raw ranges in ``ranges``."""

    q: int
    windows: List[Optional[int]]
    tiles: List[str]
    ranges: List[Tuple[int, int]]  # inclusive ms ranges of raw events (ZRANGEBYSCORE)
    cut: Optional[int]
    pieces: Dict[Optional[int], Tuple[List[int], List[int]]] = field(default_factory=dict)

    latest_only: bool = False  # the only window is read by latest features alone: sparse reads its latest time

    def script_args(self) -> list:
        """The read script's arguments: the cut, what an entity without tiles reads (the earliest finite
        window start, whether a window is unbounded, ``q - 1``, latest-only), then the tiles and ranges."""
        finite = [w for w in self.windows if w is not None]
        lo = self.q - max(finite) if finite else ""
        args: list = ["" if self.cut is None else self.cut, lo, "1" if None in self.windows else "", self.q - 1,
                      "1" if self.latest_only else "", len(self.tiles), *self.tiles]
        for lo, hi in self.ranges:
            args += [lo, hi]
        return args


_COVERS: Dict[Tuple[int, int, int], List[str]] = {}


def _cover_ids(lo: int, hi: int, top: int) -> List[str]:
    """Tile ids of the cover of ``[lo, hi)`` (cached: requests within one minute share their covers)."""
    key = (lo, hi, top)
    ids = _COVERS.get(key)
    if ids is None:
        if len(_COVERS) >= 4096:
            _COVERS.clear()
        ids = _COVERS[key] = [tile_id(level, start) for level, start in cover(lo, hi, top)]
    return ids


_PLANS: Dict[tuple, ReadPlan] = {}


def read_plan(windows: Sequence[Optional[int]], q: int, top: int = TOP_LEVEL, latest_only: bool = False) -> ReadPlan:
    """The exact decomposition (:func:`featurestore.kernel.tiles.decompose`) of every window at ``q``,
    shared pieces once. ``latest_only``: only latest features read the (single) window, so an entity
    without tiles returns just the events of its latest time in it.

    Inside one minute (``q`` not on its boundary) with whole-minute windows, every plan has the same tiles,
    pieces and cut; only the raw ranges move with ``q`` (``[q - W, ...]`` and ``[..., q - 1]``): such a
    plan is made once per minute and its ranges shifted (:func:`_shifted`; bounded cache)."""
    if q % UNIT_MS and all(w is None or w % UNIT_MS == 0 for w in windows):
        key = (tuple(windows), top, latest_only, q - q % UNIT_MS)
        made = _PLANS.get(key)
        if made is None:
            if len(_PLANS) >= 1024:
                _PLANS.clear()
            made = _PLANS[key] = _read_plan(windows, q, top, latest_only)
        return _shifted(made, q)
    return _read_plan(windows, q, top, latest_only)


def _shifted(plan: ReadPlan, q: int) -> ReadPlan:
    """``plan`` (made at ``plan.q``, in the same minute as ``q``, not on its boundary, whole-minute windows)
    at ``q``: a range starting at a window's start ``plan.q - W`` starts at ``q - W``, one ending at
    ``plan.q - 1`` ends at ``q - 1``; a range starting at the minute (``[b, q)``) and the tiles, pieces
    and cut stay."""
    d = q - plan.q
    if not d:
        return plan
    b, end = plan.q - plan.q % UNIT_MS, plan.q - 1
    ranges = [(x if x == b else x + d, y + d if y == end else y) for x, y in plan.ranges]
    return ReadPlan(q, plan.windows, plan.tiles, ranges, plan.cut, plan.pieces, plan.latest_only)


def _read_plan(windows: Sequence[Optional[int]], q: int, top: int, latest_only: bool) -> ReadPlan:
    cut = None
    tiles: Dict[str, int] = {}
    ranges: Dict[Tuple[int, int], int] = {}
    pieces: Dict[Optional[int], Tuple[List[int], List[int]]] = {}
    b = floor_unit(q)
    for w in windows:
        if w is None:
            cut = floor_top(q, top)
            lo = cut
            if q <= cut:
                pieces[w] = ([], [])
                continue
        else:
            lo = q - w
        a = ceil_unit(lo)
        if a >= b:  # inside one or two minutes: raw only
            raw = [(lo, q)] if lo < q else []
            ids: List[str] = []
        else:
            raw = ([(lo, a)] if lo < a else []) + ([(b, q)] if b < q else [])
            ids = _cover_ids(a, b, top)
        pieces[w] = ([tiles.setdefault(t, len(tiles)) for t in ids],
                     [ranges.setdefault((x, y - 1), len(ranges)) for x, y in raw])
    return ReadPlan(q, list(windows), list(tiles), list(ranges), cut, pieces, latest_only and len(windows) == 1)


def floor_top(ms: int, top: int = TOP_LEVEL) -> int:
    size = tile_ms(top)
    return ms - ms % size


def window_slots(layout: Layout, plans: Sequence[FeaturePlan]) -> Dict[Optional[int], Tuple[int, ...]]:
    """Per window, the slots its features read (a window's rows are built and merged on those only)."""
    out: Dict[Optional[int], Dict[int, None]] = {}
    for p in plans:
        out.setdefault(p.window_ms, {}).update(dict.fromkeys(layout.slots_of(p.function, p.column)))
    return {w: tuple(sorted(s)) for w, s in out.items()}


# -- request time ------------------------------------------------------------------------------------
def compute(layout: Layout, plans: Sequence[FeaturePlan], reply: Optional[EntityReply], q: int,
            top: int = TOP_LEVEL, slots: Optional[Dict[Optional[int], Tuple[int, ...]]] = None,
            times: Optional[List[Optional[int]]] = None) -> Tuple[List[Any], List[str]]:
    """Each planned feature's value at request time ``q`` (epoch ms) as a plain Python value, and its
    status. ``reply`` None: the entity has no state (no events within the retention). ``slots``:
    :func:`window_slots` of ``plans`` (computed when not given). ``times``: a list that receives each
    value's event time (:func:`_finish_feature`)."""
    values, statuses, when = compute_many(layout, plans, [reply], q, top, slots)[0]
    if times is not None:
        times.extend(when)
    return values, statuses


def compute_many(layout: Layout, plans: Sequence[FeaturePlan], replies: Sequence[Optional[EntityReply]], q: int,
                 top: int = TOP_LEVEL, slots: Optional[Dict[Optional[int], Tuple[int, ...]]] = None
                 ) -> List[Tuple[List[Any], List[str], List[Optional[int]]]]:
    """:func:`compute` of several entities of one view at once: ``(values, statuses, event times)`` per
    reply (:func:`compute_columns`, per entity)."""
    columns = compute_columns(layout, plans, replies, q, top, slots)
    per = [list(zip(*(c[k] for c in columns))) if columns else [()] * len(replies) for k in range(3)]
    return [(list(v), list(s), list(t)) for v, s, t in zip(*per)]


def compute_columns(layout: Layout, plans: Sequence[FeaturePlan], replies: Sequence[Optional[EntityReply]], q: int,
                    top: int = TOP_LEVEL, slots: Optional[Dict[Optional[int], Tuple[int, ...]]] = None
                    ) -> List[Tuple[List[Any], List[str], List[Optional[int]]]]:
    """:func:`compute` of several entities of one view at once, per feature: ``(values, statuses, event
    times)`` over ``replies``. Every window of the entities without tiles (most of a many-entity lookup)
    is computed as slot columns (:func:`featurestore.kernel.columnar.window_columns`, no row per
    entity), the others' from their tiles and edge events as rows; each feature is then finished over all
    entities at once from the columns of the slots it reads (:func:`_finish_feature`)."""
    if slots is None:
        slots = window_slots(layout, plans)
    windows = list(slots)
    sparse = [e for e, r in enumerate(replies)
              if r is not None and not r.dense and r.prefix_tile is None and r.prefix_events is None]
    columns: Dict[Optional[int], Dict[int, list]] = {w: {i: [] for i in sl} for w, sl in slots.items()}
    if sparse:
        width = len(layout.inputs)
        groups = [replies[e].raw if replies[e].raw is not None else RawEvents.of(replies[e].events, width)
                  for e in sparse]
        spans = [[_sparse_span(replies[e], q, w) for w in windows] for e in sparse]
        finite = [k for k, w in enumerate(windows) if w is not None]  # (their values are never merged)
        for w, wcols in zip(windows, window_columns(layout, groups, spans, [slots[w] for w in windows], finite)):
            if w is None:  # an unbounded window: the prefix's row, plus the events after its boundary
                prefixed = [(j, replies[e].prefix[1]) for j, e in enumerate(sparse) if replies[e].prefix is not None]
                for i in slots[None]:
                    combine, col = layout._combiners[i], wcols[i]
                    for j, prow in prefixed:
                        col[j] = combine(col[j], prow[i])
            columns[w] = wcols
    chosen = set(sparse)
    others = [e for e, r in enumerate(replies) if r is not None and e not in chosen]
    if others:  # entities with tiles (or a prefix's top tile): rows
        rows_of: Dict[int, Dict[Optional[int], list]] = {e: {} for e in others}
        dense = [e for e in others if replies[e].dense]
        if dense:
            _dense_window_rows(layout, [replies[e] for e in dense], q, slots, dense, rows_of)
        for e in others:
            rows = rows_of[e]
            for w, sl in slots.items():
                if w not in rows:
                    rows[w] = _window_row(layout, replies[e], q, w, top, sl)
        for w, sl in slots.items():
            for i in sl:
                columns[w][i] += [rows_of[e][w][i] for e in others]
    order = sparse + others
    steps = _steps(layout, plans)
    live = [replies[e] for e in order]
    done = [_finish_feature(layout, step, columns[step[1]], live, q) for step in steps]
    if len(order) < len(replies):  # entities without state (every value its empty one, NOT_FOUND) last
        missing = [e for e, r in enumerate(replies) if r is None]
        for (values, statuses, times), value in zip(done, _values_without_state(layout, steps)):
            values += [value] * len(missing)
            statuses += [NOT_FOUND] * len(missing)
            times += [None] * len(missing)
        order += missing
    if order != list(range(len(replies))):  # back in the replies' order
        at = [0] * len(order)
        for j, e in enumerate(order):
            at[e] = j
        done = [tuple([col[j] for j in at] for col in d) for d in done]
    return done


def _values_without_state(layout: Layout, steps: list) -> List[Any]:
    """Each feature's value for an entity without state: None for latest features, else the aggregation
    of no event (or its default)."""
    template = layout._template
    values = []
    for latest, _, ix, f, out, empty, _ in steps:
        if latest:
            values.append(None)
            continue
        v = template[ix[0]] if f is None else f(*(template[i] for i in ix))
        values.append(out(empty if v is None else v))
    return values


def _steps(layout: Layout, plans: Sequence[FeaturePlan]) -> list:
    """Per plan: ``(latest, window, slots, f, output conversion, empty value, fits)``, ``(slots, f)`` its
    :meth:`Layout.value_finalizer`, ``fits`` None or whether a value can be served (:func:`refusal_reason`)."""
    return [(p.function == "latest", p.window_ms, *layout.value_finalizer(p.function, p.column), _converter(p.dtype),
             p.empty, _fits(p)) for p in plans]


def _fits(p: FeaturePlan):
    if p.dtype == t.TIMESTAMP:
        return time_value_supported
    return in_int64 if p.function == "sum" and p.dtype in t.INTEGER else None


def refusal_reason(view: str, p: FeaturePlan) -> str:
    """Why a computed value of feature ``p`` is REFUSED: an integer sum outside int64, or a stored timestamp
    outside years 1 to 9999 (never a Python OverflowError for one stored value)."""
    return time_value_reason(view, p.name) if p.dtype == t.TIMESTAMP else int64_overflow_reason(view, p.name)


def _finish_feature(layout: Layout, step, wcols: Dict[int, list], replies: Sequence[EntityReply], q: int):
    """``(values, statuses, event times)`` of one feature over ``replies`` (entities with state), from the
    columns of its window's slots. A value's event time (Feast's ``event_timestamps``): for a latest
    feature the time of the event it comes from; for an aggregation the request time (the value is the
    window ``[q - W, q)`` as of ``q``); None when there is no value (no event inside the TTL, refused)."""
    latest, w, ix, f, out, empty, fits = step
    n = len(replies)
    if latest:
        values, statuses, times = [], [], []
        for reply, slot in zip(replies, wcols[ix[0]]):
            if slot is None:
                values.append(None)
                statuses.append(OUTSIDE_MAX_AGE if w is not None and _any_before(layout, reply, q) else NULL_VALUE)
                times.append(None)
                continue
            v = f(slot)
            if v is None or fits is None or fits(v):
                times.append(int(slot[0][0]))
            else:  # refusal_reason
                values.append(None)
                statuses.append(REFUSED)
                times.append(None)
                continue
            if v is None:
                values.append(None)
                statuses.append(NULL_VALUE)
            else:
                values.append(out(v))
                statuses.append(PRESENT)
        return values, statuses, times
    raw = wcols[ix[0]] if f is None else list(map(f, *(wcols[i] for i in ix)))
    if empty is not None or None not in raw:
        raw = [empty if v is None else v for v in raw] if empty is not None else raw
        if fits is None or all(map(fits, raw)):  # (every value present)
            return list(map(out, raw)), [PRESENT] * n, [q] * n
    values, statuses, times = [], [], []
    for v in raw:
        if v is None:
            v = empty
        elif fits is not None and not fits(v):  # refusal_reason: never another value, never a traceback
            values.append(None)
            statuses.append(REFUSED)
            times.append(None)
            continue
        times.append(q)
        if v is None:
            values.append(None)
            statuses.append(NULL_VALUE)
        else:
            values.append(out(v))
            statuses.append(PRESENT)
    return values, statuses, times


def _dense_window_rows(layout: Layout, replies: Sequence[EntityReply], q: int, slots, index: Sequence[int],
                       rows_of: list) -> None:
    """The rows of the finite windows of entities with tiles (``rows_of[index[e]][w]``), computed together:
    every window's raw events (its edge fragments and unstored tiles) are slices of the entities' one
    batch of raw pieces (:func:`featurestore.online_reply.dense_fragments`), whose columns and exact
    prefix sums are built once for all windows (:func:`featurestore.kernel.columnar.segment_rows`), then
    each window's stored tiles are merged in. (Unbounded windows, which start from a prefix, are left to
    :func:`_window_row`.)"""
    windows = [w for w in slots if w is not None]
    if not windows:
        return
    by_batch: Dict[int, Tuple[RawBatch, List[int]]] = {}
    fragments = _fragments(replies, len(layout.inputs))
    for e, (batch, _) in enumerate(fragments):
        by_batch.setdefault(id(batch), (batch, []))[1].append(e)
    orders: Dict[int, list] = {}  # per read plan (one for every entity of a lookup): its windows' pieces in time order
    for batch, group in by_batch.values():
        segments = []
        for e in group:
            r = replies[e]
            by_time = orders.get(id(r.plan))
            if by_time is None:
                by_time = orders[id(r.plan)] = [_pieces_by_time(r.plan, w) for w in windows]
            tmap, rlist = fragments[e][1]
            tiles = r.tiles
            segments.append([_window_segments(pieces, tmap, rlist, tiles) for pieces in by_time])
        built = segment_rows(layout, batch, segments, [slots[w] for w in windows])
        for e, rows in zip(group, built):
            r = replies[e]
            for w, row in zip(windows, rows):
                sl = slots[w]
                for j in r.plan.pieces[w][0]:
                    tile = r.tiles.get(r.plan.tiles[j])
                    if tile is not None:
                        layout.merge(row, tile, sl)
                rows_of[index[e]][w] = row


def _pieces_by_time(plan: ReadPlan, w: int) -> List[Tuple[Optional[str], int]]:
    """Window ``w``'s pieces in time order (the pieces of one window are disjoint in time): ``(tile id,
    -1)`` for a tile, ``(None, j)`` for raw range ``j``."""
    tile_ix, range_ix = plan.pieces[w]
    keyed = [(int(plan.tiles[j].partition(":")[2]) * 60_000, plan.tiles[j], -1) for j in tile_ix]
    keyed += [(plan.ranges[j][0], None, j) for j in range_ix]
    keyed.sort(key=itemgetter(0))
    return [(name, j) for _, name, j in keyed]


def _window_segments(pieces: List[Tuple[Optional[str], int]], tmap: Dict[str, RawEvents], rlist: List[RawEvents],
                     tiles: Dict[str, list]) -> List[Tuple[int, int]]:
    """A window's raw events as slices ``[a, b)`` of its entity's batch: those of its unstored tiles (``tmap``,
    by id) and raw ranges (``rlist``) of ``pieces`` (:func:`_pieces_by_time`), slices that follow each
    other in the batch joined."""
    out: List[Tuple[int, int]] = []
    for name, j in pieces:
        if name is None:
            f = rlist[j]
        else:
            f = tmap.get(name)
            if f is None or name in tiles:
                continue
        a, b = f.lo, f.hi
        if b > a:
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
    return out


def _fragments(replies: Sequence[EntityReply], width: int) -> List[Tuple[RawBatch, tuple]]:
    """Per reply, ``(batch, (unstored tiles' events by id, raw ranges' events))``: its ``fragments`` as read
    from the store; those of replies built by hand (their pieces' events listed) are laid, piece by
    piece, in one new batch."""
    out: List[Optional[Tuple[RawBatch, tuple]]] = [None] * len(replies)
    times: List[int] = []
    cols: List[list] = [[] for _ in range(width)]
    orders: list = []
    batch = RawBatch(times, cols, orders, _same)

    def lay(events) -> RawEvents:
        a = len(times)
        for order, inputs in sorted(events, key=lambda ev: ev[0][0]):
            times.append(order[0])
            orders.append(order)
            for c, v in zip(cols, inputs):
                c.append(v)
        return RawEvents(batch=batch, lo=a, hi=len(times))

    for e, r in enumerate(replies):
        if r.fragments is not None:
            tmap, rlist = r.fragments
            first = next(iter(tmap.values()), None) or next(iter(rlist), None)
            out[e] = (first.batch if first is not None else batch, r.fragments)
        else:
            tmap = {name: lay(evs) for name, evs in r.tile_events.items() if name not in r.tiles}
            out[e] = (batch, (tmap, [lay(evs) for evs in r.range_events]))
    return out


def _same(order: list) -> list:
    return order


def _sparse_span(reply: EntityReply, q: int, w: Optional[int]) -> Tuple[Optional[int], int]:
    """The raw events a window of an entity without tiles reads: ``[lo, q)`` (lo None: all before
    ``q``); an unbounded window starts at its prefix's boundary (the prefix row holds the rest)."""
    if w is not None:
        return q - w, q
    return (None if reply.prefix is None else reply.prefix[0]), q


def _any_before(layout: Layout, reply: EntityReply, q: int) -> bool:
    """Whether the entity has some event before ``q`` (a latest value outside the TTL exists)."""
    if reply.prefix is not None and reply.prefix[1][layout.latest_slot] is not None:
        return True
    if reply.before or any(order[0] < q for order, _ in reply.events):
        return True
    return reply.raw is not None and len(reply.raw) > 0 and reply.raw.times[0] < q


def _window_row(layout: Layout, reply: EntityReply, q: int, w: Optional[int], top: int, sl) -> list:
    row = layout.new()
    if w is None:
        lo = None
        cut = floor_top(q, top)
        if reply.prefix is not None:
            boundary, prow = reply.prefix
            layout.merge(row, prow, sl)
            if boundary < cut:
                # No event landed in [boundary + top tile, q): the top tile at the boundary is the rest.
                if reply.prefix_tile is not None:
                    layout.merge(row, reply.prefix_tile, sl)
                elif reply.prefix_events is not None:
                    _add_events(layout, row, reply.prefix_events, None, q, sl)
                elif not reply.dense:
                    _add_events(layout, row, reply.events, boundary, q, sl)
                return row
            lo = boundary
        if not reply.dense:
            _add_events(layout, row, reply.events, lo, q, sl)
            return row
    elif not reply.dense:
        _add_events(layout, row, reply.events, q - w, q, sl)
        return row
    plan = reply.plan
    tile_ix, range_ix = plan.pieces[w]
    adders = layout.adders(sl)
    for i in tile_ix:
        name = plan.tiles[i]
        tile = reply.tiles.get(name)
        if tile is not None:
            layout.merge(row, tile, sl)
        else:  # not stored (few events, or none): its raw events
            for order, inputs in reply.tile_events.get(name, ()):
                for k, add in adders:
                    add(row, k, order, inputs)
    for j in range_ix:
        for order, inputs in reply.range_events[j]:
            for k, add in adders:
                add(row, k, order, inputs)
    return row


def _add_events(layout: Layout, row: list, events, lo: Optional[int], hi: int, sl) -> None:
    adders = layout.adders(sl)
    for order, inputs in events:
        ts = order[0]
        if ts < hi and (lo is None or ts >= lo):
            for i, add in adders:
                add(row, i, order, inputs)


def to_output(value: Any, dtype: str) -> Any:
    """A stored or computed value as the plain Python value of the feature's type."""
    if value is None:
        return None
    if dtype in (t.FLOAT64, t.FLOAT32):
        return float(value)
    if dtype in t.INTEGER:
        return int(value)
    if dtype == t.BOOL:
        return bool(value)
    if dtype == t.STRING:
        return str(value)
    if dtype == t.TIMESTAMP:  # stored as epoch microseconds
        return _EPOCH + timedelta(microseconds=int(value))
    return value


def _converter(dtype: str):
    """:func:`to_output` of one type as a function of the value (None stays None)."""
    if dtype in (t.FLOAT64, t.FLOAT32):
        return lambda v: None if v is None else float(v)
    if dtype in t.INTEGER:
        return lambda v: None if v is None else int(v)
    if dtype == t.BOOL:
        return lambda v: None if v is None else bool(v)
    if dtype == t.STRING:
        return lambda v: None if v is None else str(v)
    return partial(to_output, dtype=dtype)


# -- the response --------------------------------------------------------------------------------------
class OnlineResponse:
    """Feature values of an online lookup: ``to_dict()`` -> ``{column: [value per entity row]}`` (the
    entity rows' join keys first, then the features in request order; Feast style), ``statuses()`` ->
    the same shape with each value's status, ``refusals`` (one line per refused view and why),
    ``to_df()``, ``to_arrow()``, ``event_times`` (per feature column, each value's event time in epoch ms:
    :func:`_finish_feature`) and ``request_id`` (set when the lookup was logged). JSON values (``json_columns``)
    are their text inside (``raw_dict()``, what the serving log holds) and Python values in ``to_dict()`` /
    ``to_df()`` (:mod:`featurestore.sdk.json_values`)."""

    def __init__(self, columns: Dict[str, List[Any]], request_id: Optional[str] = None,
                 request_time_ms: Optional[int] = None, statuses: Optional[Dict[str, List[str]]] = None,
                 refusals: Optional[List[str]] = None, event_times: Optional[Dict[str, List[Optional[int]]]] = None):
        self._columns = columns
        self._statuses = statuses or {}
        self.event_times = event_times or {}  # feature column -> event time (epoch ms) of each value, or None
        self.refusals = list(refusals or [])
        self.request_id = request_id
        self.request_time_ms = request_time_ms
        self.json_columns: frozenset = frozenset()
        self.column_types = None  # set by the lookup: a callable -> {column: declared type} (for to_arrow)

    def raw_dict(self) -> Dict[str, List[Any]]:
        """Like ``to_dict()``, JSON values as their stored text."""
        return {k: list(v) for k, v in self._columns.items()}

    def to_dict(self) -> Dict[str, List[Any]]:
        if not self.json_columns:
            return self.raw_dict()
        from featurestore.sdk.json_values import decode_list

        return {k: decode_list(v) if k in self.json_columns else list(v) for k, v in self._columns.items()}

    def statuses(self) -> Dict[str, List[str]]:
        """``{feature column: [status per entity row]}`` (:data:`STATUSES`)."""
        return {k: list(v) for k, v in self._statuses.items()}

    def to_df(self):
        import pandas as pd

        return pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in self.to_dict().items()})

    def to_arrow(self):
        """The values as a ``pyarrow.Table`` (Feast's ``to_arrow``): each column of its declared type (an int64
        column with nulls stays int64, timestamps ``timestamp[us, UTC]``, JSON its text), as
        ``get_historical_features(...).to_arrow()`` gives them."""
        import pyarrow as pa

        types = self.column_types() if self.column_types is not None else {}
        return pa.table({k: pa.array(v, type=t.arrow_type(types[k]) if k in types else None)
                         for k, v in self._columns.items()})

    def __len__(self) -> int:
        return len(next(iter(self._columns.values()), []))

    def __repr__(self) -> str:
        return f"OnlineResponse({len(self)} rows, columns={list(self._columns)})"


__all__ = ["FeaturePlan", "input_columns", "view_layout", "view_windows", "plan_features", "compute", "compute_many",
           "compute_columns",
           "read_plan",
           "ReadPlan", "window_slots", "to_output", "cast_value",
           "OnlineResponse", "STATUSES",
           "PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "REFUSED"]
