"""The columnar computation of many entities' windows (kernel/columnar.py, what a lookup uses for entities
without tiles) equals Layout.add event by event, slot for slot, and the oracle: random events with hot
keys, ties on time and on order, nulls, NaN and infinities, subnormal and huge floats, ints beyond 2**53."""

import math
import random
import struct
from fractions import Fraction

import pytest

from featurestore.kernel import columnar
from featurestore.kernel import entity as kentity
from featurestore.kernel.columnar import RawBatch, RawEvents, segment_rows, window_columns, window_rows
from featurestore.kernel.partials import Layout
from featurestore.kernel.tiles import TOP_LEVEL, tile_ms
from featurestore.online import compute_many, read_plan
from tests.test_kernel import INPUTS, WINDOWS, FakeStore, check, make_layout, plans_for, random_events


def _encoded(layout, row):
    return repr(layout.encode(row))  # NaN-safe comparison: canonical text


def _by_add(layout, events, lo, hi, slots):
    row = layout.new()
    for order, inputs in events:
        if order[0] < hi and (lo is None or order[0] >= lo):
            layout.add(row, order, inputs, slots)
    return row


@pytest.mark.parametrize("seed", range(40))
def test_window_rows_equal_layout_add_on_every_slot(seed):
    rng = random.Random(9000 + seed)
    layout, _ = make_layout()
    groups = []
    for _ in range(rng.choice([1, 3, 20])):
        n = rng.choice([0, 1, 2, 5, 40, 300])  # a hot entity among light ones
        evs = [(o, inp) for _, o, inp, _ in random_events(rng, n, rng.choice([60_000, 3_600_000, 9 * 86_400_000]))]
        evs.sort(key=lambda e: e[0][0])
        groups.append(evs)
    q = 1_770_000_000_000 + rng.randint(0, 10**8 + 10 * 86_400_000)
    if rng.random() < 0.5 and any(groups):  # at an event's time: the edge itself
        q = rng.choice([o[0] for g in groups for o, _ in g])
    spans = [[(None if w is None else q - w, q) for w in WINDOWS] for _ in groups]
    # every window reads every slot, or a random subset
    slot_sets = [tuple(sorted(rng.sample(range(len(layout.slots)), rng.randint(1, len(layout.slots)))))
                 if rng.random() < 0.3 else layout.all_slots for _ in WINDOWS]
    built = window_rows(layout, [RawEvents.of(g, 3) for g in groups], spans, slot_sets)
    for g, espans, rows in zip(groups, spans, built):
        for (lo, hi), sl, row in zip(espans, slot_sets, rows):
            want = _by_add(layout, g, lo, hi, sl)
            assert _encoded(layout, row) == _encoded(layout, want), (lo, hi)


@pytest.mark.parametrize("seed", range(40))
def test_segment_rows_equal_layout_add_of_their_slices(seed):
    """A dense entity's windows read slices of one batch of raw events (several per window where stored
    tiles cut it): each window's row equals Layout.add of its slices' events in order, slot for slot,
    though every window shares the batch's columns and prefix sums."""
    rng = random.Random(9300 + seed)
    layout, _ = make_layout()
    times, cols, orders = [], [[], [], []], []
    batch = RawBatch(times, cols, orders, lambda order: order)
    segments, expected = [], []
    for _ in range(rng.choice([1, 3, 12])):
        n = rng.choice([0, 1, 2, 5, 40, 300])
        evs = sorted(((o, inp) for _, o, inp, _ in random_events(rng, n, rng.choice([60_000, 9 * 86_400_000]))),
                     key=lambda e: e[0][0])
        base = len(times)
        for order, inputs in evs:
            times.append(order[0])
            orders.append(order)
            for c, v in zip(cols, inputs):
                c.append(v)
        # cut points where the time changes (a time's events never straddle two slices)
        cuts = [j for j in range(1, len(evs)) if evs[j][0][0] != evs[j - 1][0][0]]
        esegs, ewant = [], []
        for _ in WINDOWS[:-1]:
            bounds = [0] + sorted(rng.sample(cuts, min(len(cuts), rng.randint(0, 4)))) + [len(evs)]
            chunks = [(a, b) for a, b in zip(bounds, bounds[1:]) if rng.random() < 0.7]
            esegs.append([(base + a, base + b) for a, b in chunks])
            ewant.append([ev for a, b in chunks for ev in evs[a:b]])
        segments.append(esegs)
        expected.append(ewant)
    slot_sets = [tuple(sorted(rng.sample(range(len(layout.slots)), rng.randint(1, len(layout.slots)))))
                 if rng.random() < 0.3 else layout.all_slots for _ in WINDOWS[:-1]]
    built = segment_rows(layout, batch, segments, slot_sets)
    for ewant, rows in zip(expected, built):
        for evs, sl, row in zip(ewant, slot_sets, rows):
            want = _by_add(layout, evs, None, 1 << 62, sl)
            assert _encoded(layout, row) == _encoded(layout, want)


@pytest.mark.parametrize("seed", range(20))
def test_window_columns_are_the_window_rows_slots(seed):
    """The slot columns a lookup finishes its sparse entities from hold, slot for slot, the rows'
    values (spans without events: the empty ones; a timed span's first/last/latest: the time of the
    row's event, and its value)."""
    rng = random.Random(9500 + seed)
    layout, _ = make_layout()
    groups = [sorted(((o, inp) for _, o, inp, _ in random_events(rng, rng.choice([0, 1, 3, 40]), 3_600_000)),
                     key=lambda e: e[0][0]) for _ in range(rng.choice([1, 4, 15]))]
    q = 1_770_000_000_000 + rng.randint(0, 10**8 + 3_600_000)
    spans = [[(None if w is None else q - w, q) for w in WINDOWS] for _ in groups]
    slot_sets = [tuple(sorted(rng.sample(range(len(layout.slots)), rng.randint(1, len(layout.slots)))))
                 for _ in WINDOWS]
    raw = [RawEvents.of(g, 3) for g in groups]
    timed = {k for k in range(len(WINDOWS)) if rng.random() < 0.5}  # first/last/latest: the event's time, no order
    rows, columns = window_rows(layout, raw, spans, slot_sets), window_columns(layout, raw, spans, slot_sets, timed)
    for k, sl in enumerate(slot_sets):
        for e in range(len(groups)):
            got, want = layout.new(), layout.copy(rows[e][k])
            for i in sl:
                got[i] = columns[k][i][e]
                if k in timed and layout.slots[i][0] in ("f", "l", "L") and want[i] is not None:
                    want[i] = [[want[i][0][0]], want[i][1]]
            assert _encoded(layout, got) == _encoded(layout, want), (e, k)


@pytest.mark.parametrize("seed", range(16))
def test_many_entities_at_once_equal_each_alone_and_the_oracle(seed):
    """compute_many of a lookup's mix of entities (without state, sparse, with tiles, with prefixes; hot
    keys, ties, nulls, every aggregation and window, trimmed history) gives each entity what it gives it alone, and that is
    the oracle's value (tests/test_kernel.check): slot columns, rows and the finish over all entities at
    once put every value back on its own entity."""
    rng = random.Random(9700 + seed)
    layout, aggs = make_layout()
    plans = plans_for(aggs, layout)
    t_end = 1_770_000_000_000 + 10**8
    entities = []  # (store, events) or None (no state)
    horizon = 0  # the request times are at or after every entity's retention horizon
    for _ in range(rng.choice([2, 6, 14])):
        if rng.random() < 0.15:
            entities.append(None)
            continue
        trimmed = rng.random() < 0.4  # history trimmed into the prefix: unbounded windows start from it
        span = 20 * 86_400_000 if trimmed else rng.choice([90_000, 3 * 3_600_000, 9 * 86_400_000])
        events = random_events(rng, rng.choice([1, 4, 30, 200]), span)
        state = kentity.EntityState(layout, True, None, rng.choice([0, 5, 10_000, 10_000]))  # tiles above 0 or 5 events
        store = FakeStore(layout)
        events = rng.sample(events, len(events))  # any arrival order (the oracle breaks full ties by it too)
        for ev in events:
            state.add(*ev)
            if rng.random() < 0.05:
                store.apply(state.drain())
        store.apply(state.drain())
        if trimmed:
            times = sorted(o[0] for _, o, _, _ in events)
            cut = times[len(times) // 2] // tile_ms(TOP_LEVEL) * tile_ms(TOP_LEVEL)
            state.trim(cut, cut + 7 * 86_400_000)
            store.apply(state.drain())
            horizon = max(horizon, cut + 7 * 86_400_000)
        entities.append((store, events))
    times = [o[0] for ent in entities if ent for _, o, _, _ in ent[1] if o[0] >= horizon] or [horizon]
    for q in [rng.choice(times) + d for d in (0, 1, 3_600_000)] + [max(t_end, horizon) + 10 * 86_400_000]:
        rplan = read_plan(sorted({p.window_ms for p in plans}, key=lambda w: (w is None, w or 0)), q)
        replies = [None if ent is None else ent[0].read(rplan, {m: (o, inp) for _, o, inp, m in ent[1]})
                   for ent in entities]
        together = compute_many(layout, plans, replies, q)
        for ent, reply, got in zip(entities, replies, together):
            assert repr(got) == repr(compute_many(layout, plans, [reply], q)[0]), q
            if ent is not None:
                check(layout, aggs, ent[0], ent[1], q)


def test_extreme_floats_sum_exactly():
    layout = Layout([("x", "float64")], [("s", "sum", 0), ("v", "variance", 0)], [])
    xs = [1e308, 1e308, -1e308, 5e-324, -5e-324, 2.0 ** -1074 * 3, 1e-300, -1e-300, 0.1, 0.2, -0.0]
    evs = [([i], [x]) for i, x in enumerate(xs)] + [([20], [None])]
    (row,), = window_rows(layout, [RawEvents.of(evs, 1)], [[(None, 100)]], [layout.all_slots])
    want = _by_add(layout, evs, None, 100, layout.all_slots)
    assert _encoded(layout, row) == _encoded(layout, want)
    assert layout.finalize("sum", 0, row) == float(sum(map(Fraction, xs)))


def test_non_float_values_in_a_float_column_fall_back_to_adding_events():
    layout = Layout([("x", "float64")], [("s", "sum", 0)], [])
    evs = [([1], [2**60 + 1]), ([2], [0.5]), ([3], [None])]
    (row,), = window_rows(layout, [RawEvents.of(evs, 1)], [[(None, 100)]], [layout.all_slots])
    assert _encoded(layout, row) == _encoded(layout, _by_add(layout, evs, None, 100, layout.all_slots))


def _random_double(rng):
    k = rng.random()
    if k < 0.08:
        return None
    if k < 0.16:
        return rng.choice([math.nan, math.inf, -math.inf, -0.0, 0.0, 5e-324, -5e-324, 1.7976931348623157e308,
                           -1.7976931348623157e308, 2.2250738585072014e-308])
    if k < 0.4:  # any bit pattern: subnormals, huge, NaN payloads
        return struct.unpack("<d", struct.pack("<Q", rng.getrandbits(64)))[0]
    return round(rng.uniform(-1e4, 1e4), rng.randint(0, 6)) * 10.0 ** rng.randint(-30, 30)


@pytest.mark.parametrize("seed", range(10))
def test_short_columns_exact_prefix_sums_are_numpys_integers(seed):
    """Columns of at most ``SMALL`` values take the exact prefix sums in Python (numpy's fixed cost): the very
    integers, scale and non-finite counts of the numpy path, for sums and sums of squares, and so the same
    ``ExactSum`` of every slice."""
    rng = random.Random(7100 + seed)
    for _ in range(300):
        vals = [_random_double(rng) for _ in range(rng.randint(0, columnar.SMALL))]
        for squares in (False, True):
            cols = columnar._Columns(Layout([("x", "float64")], [], []), [RawEvents.of([([i], [v]) for i, v in
                                                                                       enumerate(vals)], 1)])
            small = cols.exact_prefix(0, squares)
            cols._prefix.clear()
            saved, columnar.SMALL = columnar.SMALL, -1
            try:
                wide = cols.exact_prefix(0, squares)
            finally:
                columnar.SMALL = saved
            assert small[1] == wide[1]
            for got, want in zip((small[0], *small[2:]), (wide[0], *wide[2:])):
                assert list(got) == [int(x) for x in want], (vals, squares)
            for _ in range(5):
                a = rng.randint(0, len(vals))
                b = rng.randint(a, len(vals))
                x, y = columnar._exact(small, a, b), columnar._exact(wide, a, b)
                assert (x.m, x.s, x.nan, x.pinf, x.ninf) == (y.m, y.s, y.nan, y.pinf, y.ninf)


@pytest.mark.parametrize("seed", range(6))
def test_long_columns_exact_prefix_sums_are_the_python_paths_integers(seed):
    """Columns longer than ``SMALL`` (frexp once per column for its sums and sums of squares, the terms
    shifted and summed as Python integers): the very integers, scale and non-finite counts of the
    value-by-value path, and ``_exact_many`` (non-finite counts read only when the column has some) the
    ``ExactSum`` of ``_exact`` on every slice, with and without nulls and non-finite values."""
    rng = random.Random(7300 + seed)
    for _ in range(12):
        n = rng.randint(columnar.SMALL + 1, 3000)
        kind = rng.random()
        if kind < 0.4:  # amounts: finite, some nulls
            vals = [None if rng.random() < 0.05 else round(rng.uniform(-1e4, 1e4), rng.randint(0, 4))
                    for _ in range(n)]
        elif kind < 0.6:  # finite, no null, zeros of both signs
            vals = [rng.choice([0.0, -0.0, rng.uniform(0, 500)]) for _ in range(n)]
        else:  # anything
            vals = [_random_double(rng) for _ in range(n)]
        cols = columnar._Columns(Layout([("x", "float64")], [], []), [RawEvents.of([([i], [v]) for i, v in
                                                                                   enumerate(vals)], 1)])
        for squares in (False, True):
            wide = cols.exact_prefix(0, squares)
            want = columnar._exact_prefix_small(vals, squares)
            assert wide[1] == want[1]
            for got, exp in zip((wide[0], *wide[2:]), (want[0], *want[2:])):
                assert [int(x) for x in got] == list(exp), (kind, squares)
            a_s = sorted(rng.randint(0, n) for _ in range(200))
            b_s = [rng.randint(a, n) for a in a_s]
            many = columnar._exact_many(wide, a_s, b_s)
            one = [columnar._exact(want, a, b) for a, b in zip(a_s, b_s)]
            assert [(x.m, x.s, x.nan, x.pinf, x.ninf) for x in many] == [(y.m, y.s, y.nan, y.pinf, y.ninf) for y in one]


def test_inputs_are_the_kernel_tests_inputs():
    assert [d for _, d in INPUTS] == ["float64", "int64", "string"]  # the float/int/string paths above
    assert check  # the oracle comparison of compute() (sparse replies go through window_rows)
