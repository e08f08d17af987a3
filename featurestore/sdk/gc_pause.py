"""Python's automatic full garbage collections held off while an online lookup runs.

A 100-entity lookup parses thousands of raw events into short-lived lists (freed by reference counting:
they make no cycles), enough allocations to trigger about one automatic *full* collection per lookup, and
a full collection traverses every container of the process (the loaded repo, DuckDB, pandas, the
caller's own data): a quarter of the lookup's CPU time on the example (bench/results/
small-online-many-gc.md: 25.8 ms with it, 18.9 ms without). So a lookup raises the oldest generation's
threshold while it runs (young collections stay: short-lived cycles are still collected) and puts it
back when it ends; a full collection that fell due meanwhile runs at the next allocation after, outside
the lookup. Lookups of several threads share one pause (a counter); a pause never lasts more than
``MAX_PAUSE_S`` even when lookups keep overlapping: the settings are then put back, and the next pause
waits for a moment without a lookup. (The stream job's operator does the same for its whole life:
``engines/flink/online.py``.)
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager

MAX_PAUSE_S = 5.0

_LOCK = threading.Lock()
_STATE = {"active": 0, "saved": None, "since": 0.0}  # saved: the thresholds while paused, else None


@contextmanager
def no_full_collections():
    """Hold automatic full collections off for the duration (see the module docstring)."""
    with _LOCK:
        _STATE["active"] += 1
        if _STATE["active"] == 1 and _STATE["saved"] is None and gc.isenabled():
            saved = _STATE["saved"] = gc.get_threshold()
            gc.set_threshold(saved[0], saved[1], 1_000_000_000)  # (counts young collections: never reached)
            _STATE["since"] = time.monotonic()
    try:
        yield
    finally:
        with _LOCK:
            _STATE["active"] -= 1
            saved = _STATE["saved"]
            if saved is not None and (_STATE["active"] == 0 or time.monotonic() - _STATE["since"] > MAX_PAUSE_S):
                if gc.get_threshold()[2] == 1_000_000_000:  # (unless the caller changed them meanwhile)
                    gc.set_threshold(*saved)
                _STATE["saved"] = None


__all__ = ["MAX_PAUSE_S", "no_full_collections"]
