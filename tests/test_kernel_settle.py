"""The stream's tiles are maintained by the drain's settle (each changed tile rebuilt from its two
children with ``Layout.pair``'s fast path): every tile must equal, byte for byte in its stored form, the
tile as defined — ``merge(merge(new(), left), right)`` over its kept slots, left child first (so of equal
but distinguishable values, 0.0 and -0.0, the earlier one is kept) — after any sequence of events,
drains, trims and late events.

Random events with hot minutes, ties, nulls, signed zeros, NaN, infinities, extreme values and times on
tile edges (``tests/test_kernel.random_events``), windowed layouts (slots kept only up to some level)."""

from __future__ import annotations

import json
import random

import pytest

from featurestore.kernel import entity as kentity
from featurestore.kernel.partials import Layout
from featurestore.kernel.tiles import TOP_LEVEL, UNIT_MS, tile_ms
from tests.test_kernel import FUNCS, INPUTS, make_layout, random_events


def windowed_layout(rng):
    windows = [None, 60_000, 61_001, 3_600_000, 86_400_000, 7 * 86_400_000]
    aggs = [("n", "count", None, rng.choice(windows))]
    for f in FUNCS:
        for c in (0, 1, 2):
            if f in ("sum", "mean", "stddev", "variance") and c == 2:
                continue
            if rng.random() < 0.6:
                aggs.append((f"{f}_{c}", f, c, rng.choice(windows)))
    return Layout(INPUTS, aggs, [0, 2] if rng.random() < 0.5 else [])


def stored(layout, row, level):
    return json.dumps(layout.encode(row, level))  # JSON text: -0.0 and 0.0 differ, as in Redis


def check_tiles(layout, tiles):
    """Every kept tile equals its children's merge (and holds as many events), and every ancestor of a
    kept minute at or after the floor is kept."""
    ref = {k: r for k, r in tiles.rows.items() if k[0] == 0}
    for level in range(1, tiles.top + 1):
        half = tile_ms(level - 1)
        kept = layout.kept(level)
        for lv, p in sorted(k for k in tiles.rows if k[0] == level):
            left, right = ref.get((level - 1, p)), ref.get((level - 1, p + half))
            assert left is not None or right is not None, (level, p)
            row = layout.new()
            for child in (left, right):
                if child is not None:
                    layout.merge(row, child, kept)
            ref[(level, p)] = row
            n = tiles.counts.get((level - 1, p), 0) + tiles.counts.get((level - 1, p + half), 0)
            assert tiles.counts[(level, p)] == n, (level, p)
    for key, row in tiles.rows.items():
        assert stored(layout, row, key[0]) == stored(layout, ref[key], key[0]), key
    for level, start in [k for k in tiles.rows if k[0] == 0]:
        m = start // UNIT_MS
        for up in range(1, tiles.top + 1):
            s = (m >> up << up) * UNIT_MS
            if tiles.floor is not None and s < tiles.floor:
                break
            assert (up, s) in tiles.rows, (up, s)


@pytest.mark.parametrize("seed", range(10))
def test_settled_tiles_equal_the_merge_of_their_children(seed):
    rng = random.Random(1100 + seed)
    layout = make_layout()[0] if seed % 2 else windowed_layout(rng)
    n = rng.choice([200, 600, 1500])
    span = rng.choice([2 * 3_600_000, 3 * 86_400_000, 30 * 86_400_000])
    events = random_events(rng, n, span)
    if seed % 3 == 0:  # a hot minute: a third of the events in one minute, many of them tied
        hot = events[0][1][0]
        events = [(e[0], [hot + rng.choice([0, 0, rng.randint(0, UNIT_MS - 1)]), *e[1][1:]], e[2], e[3])
                  if rng.random() < 0.33 else e for e in events]
    if seed % 4 == 1:  # mostly in time order, some very late
        events.sort(key=lambda e: e[1][0] + (rng.randint(0, 10 * 86_400_000) if rng.random() < 0.05 else 0))
    keep_base = rng.random() < 0.5
    state = kentity.EntityState(layout, keep_base, None, rng.choice([0, 10, 128]))
    drains = 0
    for i, ev in enumerate(events):
        state.add(*ev)
        if rng.random() < 0.03 and state.last_ts is not None:
            cut = state.last_ts - rng.choice([3_600_000, 2 * 86_400_000])
            if keep_base:
                cut -= cut % tile_ms(TOP_LEVEL)
            state.trim(cut, cut + 86_400_000)
        if rng.random() < 0.08 or i == len(events) - 1:
            state.drain()
            drains += 1
            if state.tiles is not None:
                check_tiles(layout, state.tiles)
    assert drains > 1


def test_a_parent_with_one_child_is_its_row_until_a_sibling_comes():
    """settle makes no copy for a parent with one child (most parents of a sparse minute): it is the child's
    row; a minute changed in place is settled again before a drain reads it, and a sibling makes the
    parent a new row, the exact merge of both."""
    layout = windowed_layout(random.Random(3))
    tiles = kentity.EntityTiles(layout)
    minute = 1_700_000_040_000 - 1_700_000_040_000 % tile_ms(3)  # a level-3 boundary: the sibling below is in it
    tiles.add([minute + 5], [1.5, 2, "a"])
    tiles.settle()
    assert tiles.top >= 3
    assert all(tiles.rows[(level, minute - minute % tile_ms(level))] is tiles.rows[(0, minute)]
               for level in range(1, tiles.top + 1))
    tiles.add([minute + 7], [-0.0, 3, "b"])  # in place: its parents are settled again
    tiles.settle()
    check_tiles(layout, tiles)
    tiles.add([minute + UNIT_MS + 1], [2.5, None, "c"])  # the level-1 sibling
    tiles.settle()
    assert tiles.rows[(1, minute)] is not tiles.rows[(0, minute)]
    assert tiles.rows[(2, minute)] is tiles.rows[(1, minute)]
    check_tiles(layout, tiles)


@pytest.mark.parametrize("seed", range(6))
def test_layout_add_of_every_slot_equals_each_slots_adder(seed):
    """``Layout.add`` of every slot (one generated function) builds the row each slot's own adder builds, byte
    for byte in its stored form, whatever the events (ties, nulls, signed zeros, NaN, infinities)."""
    rng = random.Random(1300 + seed)
    layout = make_layout()[0] if seed % 2 else windowed_layout(rng)
    one_call, per_slot = layout.new(), layout.new()
    for _, order, inputs, _ in random_events(rng, 400, 3 * 86_400_000):
        layout.add(one_call, order, inputs)
        for i, add in layout.adders(layout.all_slots):
            add(per_slot, i, order, inputs)
    assert stored(layout, one_call, None) == stored(layout, per_slot, None)
