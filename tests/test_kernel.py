"""The aggregation kernel against the brute-force oracle: partial rows, tiles, prefixes, trims, late
events and the exact window decomposition, on random events with hot keys, ties, nulls and extreme
values, at every window edge (issue 11: "the kernel's decomposition equals the oracle").

The online store's Redis scripts are simulated here by :class:`FakeStore` (the same write and read
rules, in Python), so thousands of cases run in seconds; tests/test_online.py runs the real scripts.
"""

import math
import random

import pytest

from featurestore.kernel import entity as kentity
from featurestore.kernel.partials import Layout, order_of
from featurestore.kernel.tiles import TOP_LEVEL, UNIT_MS, cover, decompose, tile_id, tile_ms
from featurestore.online import FeaturePlan, compute, read_plan
from featurestore.online_reply import EntityReply
from tests import oracle

INPUTS = [("x", "float64"), ("k", "int64"), ("s", "string")]
FUNCS = ["count", "sum", "mean", "min", "max", "first", "last", "stddev", "variance", "count_distinct"]
WINDOWS = [1, 999, 60_000, 61_001, 3_600_000, 86_400_000, 7 * 86_400_000, None]


def make_layout():
    aggs = [("n", "count", None)] + [(f"{f}_{c}", f, c) for f in FUNCS for c in (0, 1, 2)
                                     if not (f in ("sum", "mean", "stddev", "variance") and c == 2)]
    return Layout(INPUTS, aggs, [0, 2]), aggs


def random_value(rng, col, offset):
    if rng.random() < 0.15:
        return None
    if col == 0:
        kind = rng.random()
        if kind < 0.02:
            return rng.choice([math.inf, -math.inf, math.nan])
        if kind < 0.1:
            return rng.choice([1e150, -1e150, 5e-324, -0.0, 0.0])
        return offset + rng.choice([0.001, 0.002, 0.125, 0.5]) * rng.randint(-3, 3)
    if col == 1:
        return rng.choice([rng.randint(-5, 5), rng.randint(-2**62, 2**62)])
    return rng.choice(["a", "b", "é", "", "zz"])


def random_events(rng, n, span_ms):
    offset = rng.choice([0.0, 123456789.123, 1.7e15, -3e8])
    t0 = 1_770_000_000_000 + rng.randint(0, 10**8)
    events = []
    for i in range(n):
        if events and rng.random() < 0.15:
            ts = rng.choice(events)[1][0]  # ties
        elif rng.random() < 0.1:
            ts = t0 + rng.randint(0, 30) * UNIT_MS  # exactly on tile edges
        else:
            ts = t0 + rng.randint(0, span_ms)
        order = order_of(ts, [rng.choice([None, rng.randint(0, 3)])])
        inputs = [random_value(rng, c, offset) for c in range(3)]
        events.append((i, order, inputs, repr((i, order, inputs))))
    return events


class FakeStore:
    """One entity's keys as the write script leaves them (tiles hash, raw zset, prefix zset)."""

    def __init__(self, layout):
        self.layout = layout
        self.clear()

    def clear(self):
        self.meta, self.dense, self.tiles, self.raw, self.prefixes = None, False, {}, {}, {}

    def apply(self, ch):
        if ch.full:
            self.clear()
        if ch.full or ch.meta:
            self.meta = {"h": ch.horizon}
        if ch.full and ch.dense:
            self.dense = True
        if ch.raw_below is not None:
            self.raw = {m: s for m, s in self.raw.items() if s >= ch.raw_below}
        if ch.prefix_below is not None:
            self.prefixes = {b: r for b, r in self.prefixes.items() if b >= ch.prefix_below}
        self.tiles.update({k: _roundtrip(v) for k, v in ch.tiles_set.items()})
        for k in ch.tiles_del:
            self.tiles.pop(k, None)
        self.raw.update({m: ts for ts, m in ch.raw_add})
        self.prefixes.update({b: _roundtrip(r) for b, r in ch.prefix_set.items()})

    def read(self, plan, events_by_member):
        """What READ_LUA returns, decoded (featurestore.online_reply.decode_reply's output): a tile the hash
        does not hold is answered by its raw events."""
        dec = self.layout.decode

        def raw_in(lo, hi):  # inclusive, like ZRANGEBYSCORE
            return [events_by_member[m] for m, s in self.raw.items() if lo <= s <= hi]

        def tile_range(name):
            level, minute = map(int, name.split(":"))
            return minute * UNIT_MS, minute * UNIT_MS + tile_ms(level) - 1

        prefix = ptile = pevents = None
        if plan.cut is not None:
            below = [b for b in self.prefixes if b <= plan.cut]
            if below:
                b = max(below)
                prefix = (b, dec(self.prefixes[b]))
                if self.dense and b < plan.cut:
                    name = tile_id(TOP_LEVEL, b)
                    if name in self.tiles:
                        ptile = dec(self.tiles[name])
                    else:
                        pevents = raw_in(*tile_range(name))
        if not self.dense:
            events = [events_by_member[m] for m in self.raw]
            return EntityReply(self.meta, False, prefix, ptile, {}, events, None, prefix_events=pevents)
        tiles = {n: dec(self.tiles[n]) for n in plan.tiles if n in self.tiles}
        tile_events = {n: raw_in(*tile_range(n)) for n in plan.tiles if n not in self.tiles}
        range_events = [raw_in(lo, hi) for lo, hi in plan.ranges]
        events = [e for evs in list(tile_events.values()) + range_events for e in evs]
        return EntityReply(self.meta, True, prefix, ptile, tiles, events, plan, tile_events, range_events, pevents)


def _roundtrip(obj):
    import json

    return json.loads(json.dumps(obj))


def oracle_value(function, col, inside):
    """The oracle's value over ``inside``: the ``(order, inputs)`` of the events in the window."""
    if function == "latest":
        return oracle.latest((o, inp[col]) for o, inp in inside)
    values = [(o, 1 if col is None else inp[col]) for o, inp in inside]
    return oracle.aggregate(function, values, integer_input=col == 1)


def tuple_key(x):
    return tuple(x) if isinstance(x, list) else x


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b  # exact: correctly rounded on both sides
    return a == b and type(a) is type(b) or (a is None and b is None)


def plans_for(aggs, layout):
    plans = [FeaturePlan(name, f, c, w, 0 if f in ("count", "count_distinct") else None, "any")
             for name, f, c in aggs for w in WINDOWS]
    plans += [FeaturePlan(f"latest_{c}_{w}", "latest", c, w, None, "any") for c in (0, 2) for w in (60_000, None)]
    return plans


def check(layout, aggs, store, events, q):
    plans = plans_for(aggs, layout)
    by_member = {m: (o, inp) for _, o, inp, m in events}
    rplan = read_plan(sorted({p.window_ms for p in plans}, key=lambda w: (w is None, w or 0)), q)
    reply = store.read(rplan, by_member)
    values, _ = compute(layout, plans, reply, q)
    windows = {}
    for p, got in zip(plans, values):
        if p.window_ms not in windows:
            windows[p.window_ms] = [(tuple(map(tuple_key, o)), inp) for _, o, inp, _ in events
                                    if o[0] < q and (p.window_ms is None or o[0] >= q - p.window_ms)]
        want = oracle_value(p.function, p.column, windows[p.window_ms])
        if want is None and p.function in ("count", "count_distinct"):
            want = 0
        if isinstance(want, float) and isinstance(got, int) and p.function in ("min", "max", "first", "last"):
            got = float(got)
        assert same(got, want), (p, q, got, want)


@pytest.mark.parametrize("seed", range(12))
def test_state_equals_oracle_at_every_edge(seed):
    rng = random.Random(seed)
    layout, aggs = make_layout()
    dense = rng.choice([0, 5, 10_000])
    keep_base = True
    events = random_events(rng, rng.choice([30, 200, 600]), rng.choice([90_000, 3 * 3_600_000, 20 * 86_400_000]))
    state = kentity.EntityState(layout, keep_base, None, dense)
    store = FakeStore(layout)
    arrived = []
    for ev in rng.sample(events, len(events)):  # any arrival order: late events everywhere
        state.add(*ev)
        arrived.append(ev)
        if rng.random() < 0.05:
            store.apply(state.drain())
    store.apply(state.drain())
    times = sorted({o[0] for _, o, _, _ in events})
    qs = [t + d for t in rng.sample(times, min(8, len(times))) for d in (0, 1, -1)]
    qs += [t + w for t in rng.sample(times, 3) for w in WINDOWS if w] + [times[-1] + 10 * 86_400_000]
    for q in qs:
        check(layout, aggs, store, arrived, q)


@pytest.mark.parametrize("seed", range(8))
def test_trims_and_very_late_events_keep_answers_after_the_horizon(seed):
    rng = random.Random(100 + seed)
    layout, aggs = make_layout()
    events = random_events(rng, 400, 30 * 86_400_000)
    events.sort(key=lambda e: e[1][0])
    state = kentity.EntityState(layout, True, None, rng.choice([0, 20]))
    store = FakeStore(layout)
    horizon = None
    for i, ev in enumerate(list(events)):
        state.add(*ev)
        if i % 50 == 49:
            top = tile_ms(TOP_LEVEL)
            cut = (ev[1][0] - 8 * 86_400_000) // top * top
            horizon = cut + 7 * 86_400_000
            state.trim(cut, horizon)
            # a very late event (behind the cut) still counts for the unbounded windows
            late = (10_000 + i, order_of(cut - 5, [None]), [1.5, 2, "late"], f"late{i}")
            state.add(*late)
            events.append(late)
            store.apply(state.drain())
    store.apply(state.drain())
    assert horizon is not None and store.meta == {"h": horizon}
    times = [o[0] for _, o, _, _ in events if o[0] >= horizon]
    for q in rng.sample(times, 10) + [horizon, times[-1] + 1]:
        check(layout, aggs, store, events, q)


def test_full_drain_after_rewrite_equals_incremental():
    rng = random.Random(7)
    layout, _ = make_layout()
    events = random_events(rng, 300, 3 * 86_400_000)
    state = kentity.EntityState(layout, True, None, 10)
    inc = FakeStore(layout)
    for ev in events:
        state.add(*ev)
        if rng.random() < 0.1:
            inc.apply(state.drain())
    inc.apply(state.drain())
    state.rewrite()
    full = FakeStore(layout)
    full.apply(state.drain())
    assert (inc.dense, inc.raw, inc.prefixes) == (full.dense, full.raw, full.prefixes)
    assert inc.tiles == full.tiles


@pytest.mark.parametrize("seed", range(4))
def test_incremental_writes_with_trims_equal_a_full_rewrite(seed):
    """Trims drop the tiles before the cut (found without scanning every tile): what the incremental
    writes leave in the store equals a full rewrite of the same state, tiles and prefixes included."""
    rng = random.Random(300 + seed)
    layout, _ = make_layout()
    events = random_events(rng, 500, 40 * 86_400_000)
    events.sort(key=lambda e: e[1][0])
    state = kentity.EntityState(layout, rng.random() < 0.5, None, rng.choice([0, 10]))
    inc = FakeStore(layout)
    for i, ev in enumerate(events):
        state.add(*ev)
        if i % 37 == 36:
            cut = ev[1][0] - 5 * 86_400_000
            if state.keep_base:
                cut -= cut % tile_ms(TOP_LEVEL)
            state.trim(cut, cut + 5 * 86_400_000)
            inc.apply(state.drain())
    inc.apply(state.drain())
    assert state.tiles is None or all(start >= state.cut for _, start in state.tiles.rows)
    state.rewrite()
    full = FakeStore(layout)
    full.apply(state.drain())
    assert (inc.dense, inc.raw, inc.prefixes, inc.meta) == (full.dense, full.raw, full.prefixes, full.meta)
    assert inc.tiles == full.tiles


def test_decomposition_is_exact_and_small():
    rng = random.Random(3)
    for _ in range(3000):
        q = rng.randint(0, 10**12)
        w = rng.choice([1, 59_999, 60_000, 3_600_001, 7 * 86_400_000, rng.randint(1, 30 * 86_400_000)])
        p = decompose(q - w, q)
        spans = sorted([(lo, hi) for lo, hi in p.raw] + [(s, s + tile_ms(lv)) for lv, s in p.tiles])
        assert spans[0][0] == q - w and spans[-1][1] == q
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, disjoint
        assert all(hi - lo < (UNIT_MS if p.tiles else 2 * UNIT_MS) for lo, hi in p.raw)
        if w <= 7 * 86_400_000:
            assert len(p.tiles) <= 2 * (TOP_LEVEL + 1)
    assert cover(0, 0) == []


@pytest.mark.parametrize("seed", range(8))
def test_windowed_layout_stores_each_slot_and_tile_only_where_read(seed):
    """A layout that knows each aggregation's window keeps a slot only in tiles its windows can read
    (and in prefixes only what unbounded windows read), stores only tiles of more than
    TILE_MIN_EVENTS events, and still answers every window exactly (tiles not stored are read raw)."""
    from featurestore.kernel.partials import PREFIX_LEVEL, window_level

    rng = random.Random(500 + seed)
    aggs = [("n", "count", None, rng.choice(WINDOWS))]
    for f in FUNCS:
        for c in (0, 1, 2):
            if not (f in ("sum", "mean", "stddev", "variance") and c == 2) and rng.random() < 0.5:
                aggs.append((f"{f}_{c}", f, c, rng.choice(WINDOWS)))
    layout = Layout(INPUTS, aggs, [0, 2])
    for i, (kind, col) in enumerate(layout.slots):
        readers = [w for _, f, c, w in aggs if (kind, col) in [layout.slots[j] for j in layout.reads[(f, c)]]]
        want = PREFIX_LEVEL if kind == "L" else max(window_level(w) for w in readers)
        assert layout.levels[i] == want
    plans = [FeaturePlan(name, f, c, w, 0 if f in ("count", "count_distinct") else None, "any")
             for name, f, c, w in aggs]
    plans += [FeaturePlan(f"latest_{c}", "latest", c, w, None, "any") for c in (0, 2) for w in (3_600_000, None)]
    events = random_events(rng, rng.choice([300, 900]), rng.choice([3 * 3_600_000, 9 * 86_400_000]))
    state = kentity.EntityState(layout, True, None, 0)
    store = FakeStore(layout)
    events = rng.sample(events, len(events))  # any arrival order (the oracle breaks full ties by it too)
    for ev in events:
        state.add(*ev)
        if rng.random() < 0.02:
            store.apply(state.drain())
    store.apply(state.drain())
    times = sorted(o[0] for _, o, _, _ in events)
    empty = layout.encode(layout.new())
    assert store.tiles
    for name, row in store.tiles.items():
        level, minute = map(int, name.split(":"))
        n = sum(1 for t in times if minute * UNIT_MS <= t < minute * UNIT_MS + tile_ms(level))
        assert n > kentity.TILE_MIN_EVENTS and level <= layout.max_level, name
        for i, v in enumerate(row):
            if layout.levels[i] < level:
                assert v == _roundtrip(empty[i]), (name, layout.slots[i])
    for row in store.prefixes.values():
        assert all(v == _roundtrip(empty[i]) for i, v in enumerate(row) if layout.levels[i] < PREFIX_LEVEL)
    by_member = {m: (o, inp) for _, o, inp, m in events}
    qs = [t + d for t in rng.sample(times, 10) for d in (0, 1, -1)] + [times[-1] + 86_400_000]
    for q in qs:
        rplan = read_plan(sorted({p.window_ms for p in plans}, key=lambda w: (w is None, w or 0)), q)
        values, _ = compute(layout, plans, store.read(rplan, by_member), q)
        for p, got in zip(plans, values):
            inside = [(tuple(map(tuple_key, o)), inp) for _, o, inp, _ in events
                      if o[0] < q and (p.window_ms is None or o[0] >= q - p.window_ms)]
            want = oracle_value(p.function, p.column, inside)
            if want is None and p.function in ("count", "count_distinct"):
                want = 0
            if isinstance(want, float) and isinstance(got, int) and p.function in ("min", "max", "first", "last"):
                got = float(got)
            assert same(got, want), (p, q, got, want)


@pytest.mark.parametrize("seed", range(6))
def test_batch_build_equals_the_event_by_event_state(seed):
    """Materialize builds an entity in one go (kernel.batch: only the tiles the store holds, and the top
    tiles prefixes need): the same tiles, raw events and prefixes, byte for byte, as a full drain of
    the stream's event-by-event state, with and without a cut, base, windowed layouts and hot minutes."""
    from featurestore.kernel import batch

    rng = random.Random(900 + seed)
    if seed % 2:
        layout, _ = make_layout()
    else:
        aggs = [("n", "count", None, rng.choice(WINDOWS))]
        aggs += [(f"{f}_{c}", f, c, rng.choice(WINDOWS)) for f in FUNCS for c in (0, 1, 2)
                 if not (f in ("sum", "mean", "stddev", "variance") and c == 2) and rng.random() < 0.5]
        layout = Layout(INPUTS, aggs, [0, 2] if rng.random() < 0.5 else [])
    events = random_events(rng, rng.choice([50, 400, 1500]), rng.choice([20 * 60_000, 3 * 86_400_000, 30 * 86_400_000]))
    if rng.random() < 0.5:  # a hot minute
        t = events[0][1][0]
        events += [(len(events) + i, order_of(t + rng.randint(0, 59_999), [None]), [1.5, i, "h"], f"hot{i}")
                   for i in range(rng.randint(20, 200))]
    events.sort(key=lambda e: e[1][0])
    times = [e[1][0] for e in events]
    for keep_base in (False, True):
        for dense_events in (0, 10, 128):
            cut = None if rng.random() < 0.3 else times[len(times) // 3]
            if cut is not None and keep_base:
                cut -= cut % tile_ms(TOP_LEVEL)
            want = kentity.build(layout, events, cut, keep_base, dense_events).drain()
            got = batch.full_changes(layout, events, cut, keep_base, dense_events)
            assert (got.full, got.dense, got.horizon, got.last_ts, got.meta) == \
                (want.full, want.dense, want.horizon, want.last_ts, want.meta)
            assert sorted(got.raw_add) == sorted(want.raw_add)
            assert _roundtrip(got.tiles_set) == _roundtrip(want.tiles_set)
            assert _roundtrip({str(k): v for k, v in got.prefix_set.items()}) == \
                _roundtrip({str(k): v for k, v in want.prefix_set.items()})


def test_read_plans_kept_per_minute_equal_fresh_ones_at_every_request_time():
    """read_plan keeps one plan per (windows, minute) and shifts its raw ranges within the minute: every
    field and the script's arguments equal a plan made afresh, for request times inside minutes, on their
    boundaries (never kept: empty edge ranges vanish there), one millisecond either side, and later ones
    (decay by request time: a new minute, a new plan); the cache stays bounded."""
    from featurestore import online

    def fields(p):
        return (p.q, p.windows, p.tiles, p.ranges, p.cut, p.pieces, p.latest_only, p.script_args())

    rng = random.Random(11)
    choices = [None, UNIT_MS, 2 * UNIT_MS, 5 * UNIT_MS, 60 * UNIT_MS, 1440 * UNIT_MS, 7 * 1440 * UNIT_MS,
               30 * 1440 * UNIT_MS, 90_000, 1_000]
    checked = kept = 0
    for _ in range(300):
        windows = rng.sample(choices, rng.randint(1, 4))
        top = rng.choice([TOP_LEVEL, 6])
        latest_only = rng.random() < 0.2
        m = rng.randrange(-10**7, 10**8) * UNIT_MS
        qs = [m, m + 1, m - 1, m + UNIT_MS - 1, m + rng.randrange(1, UNIT_MS), m + rng.randrange(1, UNIT_MS),
              m + rng.randrange(UNIT_MS, 40 * 1440 * UNIT_MS), m + tile_ms(top), m + tile_ms(top) + 7]
        for q in qs:
            got = read_plan(windows, q, top, latest_only)
            want = online._read_plan(windows, q, top, latest_only)
            assert fields(got) == fields(want), (windows, top, latest_only, q)
            checked += 1
            kept += q % UNIT_MS != 0 and all(w is None or w % UNIT_MS == 0 for w in windows)
    assert kept > checked // 3  # the kept path was exercised
    assert len(online._PLANS) <= 1024
