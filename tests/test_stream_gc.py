"""The online operator's garbage-collector settings (featurestore.engines.flink.online, GC_EVERY_MS): off
for automatic full collections while any operator of the interpreter runs (thread mode: subtasks share
one), given back when the last one closes; a periodic collection freezes what survives."""

from __future__ import annotations

import gc

from bench.stream_online import _Context, _Keyed
from featurestore.engines.flink.online import OnlineState


def test_the_last_operator_to_close_gives_the_interpreter_its_gc_settings_back():
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    a, b = OnlineState([], 1_000), OnlineState([], 1_000)
    a.open(_Context(_Keyed()))
    assert gc.get_threshold()[:2] == before[:2] and gc.get_threshold()[2] >= 10**9
    b.open(_Context(_Keyed()))
    a.close()
    assert gc.get_threshold()[2] >= 10**9  # b still runs
    junk = [[] for _ in range(1000)]
    for x in junk:
        x.append(x)  # cycles: the periodic collection frees them
    del junk, x
    b._collect()
    assert b.stats["gc"] == 1 and gc.get_freeze_count() > frozen
    b.close()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0 or frozen
