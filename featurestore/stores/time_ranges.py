"""Sets of event-time ranges: sorted, disjoint, non-adjacent ``[start_ms, end_ms)`` pairs (epoch ms).

The offline tables record which ranges the batch face owns (``batch_ranges`` in a manifest: the union of
every backfilled range); the stream never adds a row inside them.

>>> add([[0, 10]], 10, 20)
[[0, 20]]
>>> complement([[0, 10]])[0][1], covers([[0, 10]], 2, 9), touches([[0, 10]], 10, 12)
(0, True, False)
"""

from __future__ import annotations

from bisect import bisect_right
from typing import List, Sequence

import numpy as np

Ranges = List[List[int]]
MIN_MS, MAX_MS = -(2**63), 2**63 - 1  # int64: every timestamp of a file lies in [MIN_MS, MAX_MS)


def normalized(ranges: Sequence[Sequence[int]]) -> Ranges:
    """``ranges`` sorted, empty ones dropped, overlapping or adjacent ones merged."""
    out: Ranges = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if int(s) < int(e)):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def add(ranges: Sequence[Sequence[int]], start: int, end: int) -> Ranges:
    return normalized([*ranges, (start, end)])


def complement(ranges: Sequence[Sequence[int]]) -> Ranges:
    out: Ranges = []
    at = MIN_MS
    for start, end in normalized(ranges):
        if start > at:
            out.append([at, start])
        at = end
    if at < MAX_MS:
        out.append([at, MAX_MS])
    return out


def intersected(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> Ranges:
    """The times in a range of ``a`` and in a range of ``b``.

    >>> intersected([[0, 10], [20, 30]], [[5, 25]])
    [[5, 10], [20, 25]]
    """
    out: Ranges = []
    for s1, e1 in normalized(a):
        for s2, e2 in normalized(b):
            if max(s1, s2) < min(e1, e2):
                out.append([max(s1, s2), min(e1, e2)])
    return normalized(out)


def _index(ranges: Ranges, ms: int) -> int:
    """Index of the range with the greatest start <= ms, or -1."""
    return bisect_right([r[0] for r in ranges], ms) - 1


def covers(ranges: Sequence[Sequence[int]], lo: int, hi: int) -> bool:
    """Every time of ``[lo, hi]`` (inclusive: a file's min and max) lies in one range."""
    rs = normalized(ranges)
    i = _index(rs, lo)
    return i >= 0 and hi < rs[i][1]


def touches(ranges: Sequence[Sequence[int]], lo: int, hi: int) -> bool:
    """Some time of ``[lo, hi]`` (inclusive) lies in a range."""
    rs = normalized(ranges)
    i = _index(rs, hi)
    return i >= 0 and rs[i][1] > lo


def inside(ms: np.ndarray, ranges: Sequence[Sequence[int]]) -> np.ndarray:
    """Boolean mask: which of the epoch-ms values ``ms`` lie in a range."""
    rs = normalized(ranges)
    if not rs:
        return np.zeros(len(ms), dtype=bool)
    starts = np.array([r[0] for r in rs], dtype=np.int64)
    ends = np.array([r[1] for r in rs], dtype=np.int64)
    i = np.searchsorted(starts, ms, side="right") - 1
    return (i >= 0) & (ms < ends[np.maximum(i, 0)])


__all__ = ["Ranges", "normalized", "add", "complement", "covers", "touches", "inside", "MIN_MS", "MAX_MS"]
