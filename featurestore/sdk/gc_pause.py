"""Python's automatic full garbage collections held off while the library's hot paths run: one piece of
code for online lookups (:func:`no_full_collections`, a short pause) and the stream job's online operator
(:func:`hold` / :func:`release`, for the operator's life).

A 100-entity lookup parses thousands of raw events into short-lived lists (freed by reference counting:
they make no cycles), enough allocations to trigger about one automatic *full* collection per lookup, and
a full collection traverses every container of the process (the loaded repo, DuckDB, pandas, the
caller's own data): a quarter of the lookup's CPU time on the example (bench/results/
small-online-many-gc.md: 25.8 ms with it, 18.9 ms without). The operator's heap is millions of
long-lived containers (tile rows, exact sums, raw events) that each full collection would traverse again
(two thirds of its CPU in a catch-up run: bench/results/small-stream-profile.md).

So while any of them runs, the oldest generation's threshold is raised (young collections stay:
short-lived cycles are still collected) and put back when the last one ends; a lookup's pause also raises
the youngest generation's threshold to ``LOOKUP_YOUNG`` allocations (from CPython's 700), so the parsed
events, dead again by the lookup's end, are mostly never traversed by a young collection (1.13x less
CPU per 100-entity lookup: bench/online_gc_young.py, bench/results/small-online-many-merged.md); a full collection that fell
due meanwhile runs at the next allocation after. Lookups of several threads share one pause (a counter);
a lookups-only pause never lasts more than ``MAX_PAUSE_S`` even when lookups keep overlapping (the
settings are then put back, and the next pause waits for a moment without a lookup). An operator's hold
also freezes the heap as it was at open (``gc.freeze``: outside every collection) and lasts until the last
operator of the interpreter closes (thread mode: subtasks share one); the operator runs its own periodic
collections (``engines/flink/online.py``, ``GC_EVERY_MS``). A caller's own settings are respected: nothing
is changed while the collector is disabled, and thresholds the caller set during a pause are kept.
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

MAX_PAUSE_S = 5.0
LOOKUP_YOUNG = 20_000  # the youngest generation's threshold during a lookups-only pause (never lowered)
PAUSED = 1_000_000_000  # the oldest generation's threshold while paused (counts young collections: never reached)

_LOCK = threading.Lock()
# active: lookups running; operators: operators holding; saved: the thresholds while paused, else None
_STATE = {"active": 0, "operators": 0, "saved": None, "since": 0.0}


def _pause(young: int = 0) -> None:  # (under _LOCK)
    if _STATE["saved"] is None and gc.isenabled():
        saved = _STATE["saved"] = gc.get_threshold()
        gc.set_threshold(max(saved[0], young), saved[1], PAUSED)
        _STATE["since"] = time.monotonic()


def _resume() -> None:  # (under _LOCK)
    saved = _STATE["saved"]
    if saved is not None:
        if gc.get_threshold()[2] == PAUSED:  # (unless the caller changed them meanwhile)
            gc.set_threshold(*saved)
        _STATE["saved"] = None


@contextmanager
def no_full_collections():
    """Hold automatic full collections off for the duration of a lookup (see the module docstring)."""
    with _LOCK:
        _STATE["active"] += 1
        if _STATE["active"] == 1:
            _pause(LOOKUP_YOUNG)
    try:
        yield
    finally:
        with _LOCK:
            _STATE["active"] -= 1
            if _STATE["operators"] == 0 and _STATE["saved"] is not None and (
                    _STATE["active"] == 0 or time.monotonic() - _STATE["since"] > MAX_PAUSE_S):
                _resume()


def hold() -> None:
    """An online operator opens: full collections off and the heap frozen until the last one closes
    (:func:`release`)."""
    with _LOCK:
        _STATE["operators"] += 1
        if _STATE["operators"] == 1:
            gc.freeze()
            _pause()


def release() -> None:
    """An online operator closes (the last one gives the settings back and unfreezes the heap)."""
    with _LOCK:
        n = _STATE["operators"]
        _STATE["operators"] = max(0, n - 1)
        if n == 1:
            gc.unfreeze()
            if _STATE["active"] == 0:
                _resume()


__all__ = ["LOOKUP_YOUNG", "MAX_PAUSE_S", "PAUSED", "hold", "no_full_collections", "release"]
