"""The columnar computation of many entities' windows (kernel/columnar.py, what a lookup uses for entities
without tiles) equals Layout.add event by event, slot for slot, and the oracle: random events with hot
keys, ties on time and on order, nulls, NaN and infinities, subnormal and huge floats, ints beyond 2**53."""

import random
from fractions import Fraction

import pytest

from featurestore.kernel.columnar import RawEvents, window_rows
from featurestore.kernel.partials import Layout
from tests.test_kernel import INPUTS, WINDOWS, check, make_layout, random_events


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


def test_inputs_are_the_kernel_tests_inputs():
    assert [d for _, d in INPUTS] == ["float64", "int64", "string"]  # the float/int/string paths above
    assert check  # the oracle comparison of compute() (sparse replies go through window_rows)
