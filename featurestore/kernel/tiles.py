"""Exact decomposition of a window into whole tiles and raw edge fragments (SPEC §2: no rounding).

Tiles are aligned intervals of time on a binary hierarchy: a tile of level ``k`` covers
``[i * 2**k * UNIT, (i + 1) * 2**k * UNIT)`` (``UNIT`` = one minute, epoch-aligned, UTC). Level 0 tiles
are minutes; every tile of level ``k + 1`` is exactly two of level ``k``, so a tile's partial state is the
merge of its two children's.

The window of a request at ``q``, ``[q - W, q)``, is covered exactly by:

* a raw **tail** fragment ``[q - W, ceil(q - W))`` and a raw **head** fragment ``[floor(q), q)`` (ceil and
  floor to the minute): events read one by one, at most a minute of them at each edge;
* whole tiles covering ``[ceil(q - W), floor(q))``, at most two per level (the aligned dyadic cover), so a
  7-day window reads at most ~26 partial states, whatever the number of events in it.

An unbounded window is a **base** partial (every event before a cut ``c``, a multiple of the top tile)
plus the cover of ``[c, q)``. Nothing here rounds an edge: the union of the pieces is exactly the window.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

UNIT_MS = 60_000  # level-0 tile: one minute
TOP_LEVEL = 14  # 2**14 minutes ~ 11.4 days: the largest tile


def tile_ms(level: int) -> int:
    return UNIT_MS << level


def tile_id(level: int, start_ms: int) -> str:
    """A tile's name: ``"<level>:<start in minutes>"``."""
    return f"{level}:{start_ms // UNIT_MS}"


def parse_tile_id(name: str) -> Tuple[int, int]:
    level, minute = name.split(":")
    return int(level), int(minute) * UNIT_MS


def floor_unit(ms: int) -> int:
    return ms - ms % UNIT_MS


def ceil_unit(ms: int) -> int:
    return -((-ms) // UNIT_MS) * UNIT_MS


def ancestors(minute_start_ms: int, top: int = TOP_LEVEL) -> Iterator[Tuple[int, int]]:
    """``(level, start_ms)`` of every tile containing the level-0 tile at ``minute_start_ms``, level 0
    first."""
    m = minute_start_ms // UNIT_MS
    for level in range(top + 1):
        yield level, (m >> level << level) * UNIT_MS


def children(level: int, start_ms: int) -> Tuple[Tuple[int, int], Tuple[int, int]]:
    half = tile_ms(level - 1)
    return (level - 1, start_ms), (level - 1, start_ms + half)


def cover(lo_ms: int, hi_ms: int, top: int = TOP_LEVEL) -> List[Tuple[int, int]]:
    """The aligned dyadic cover of ``[lo_ms, hi_ms)`` (both multiples of ``UNIT_MS``): ``(level, start_ms)``
    of disjoint tiles whose union is exactly the interval, at most two per level."""
    a, b = lo_ms // UNIT_MS, hi_ms // UNIT_MS
    out = []
    while a < b:
        level = (a & -a).bit_length() - 1 if a else top
        level = min(level, top)
        while a + (1 << level) > b:
            level -= 1
        out.append((level, a * UNIT_MS))
        a += 1 << level
    return out


class Pieces:
    """The exact decomposition of ``[lo, hi)``: raw fragments (half-open ms ranges) and whole tiles."""

    __slots__ = ("raw", "tiles", "base")

    def __init__(self, raw: List[Tuple[int, int]], tiles: List[Tuple[int, int]], base: bool):
        self.raw, self.tiles, self.base = raw, tiles, base

    def __repr__(self) -> str:
        return f"Pieces(raw={self.raw}, tiles={self.tiles}, base={self.base})"


def decompose(lo_ms: Optional[int], hi_ms: int, base_cut_ms: Optional[int] = None,
              top: int = TOP_LEVEL) -> Pieces:
    """Pieces of the window ``[lo_ms, hi_ms)``; ``lo_ms=None`` is unbounded and needs ``base_cut_ms`` (the
    base partial holds every event before it)."""
    base = False
    if lo_ms is None:
        if base_cut_ms is None:
            raise ValueError("an unbounded window needs the base cut")
        base = True
        lo_ms = base_cut_ms
        if hi_ms <= lo_ms:  # the request is before the cut: the base alone cannot answer it
            raise ValueError("request before the base cut")
    if hi_ms <= lo_ms:
        return Pieces([], [], base)
    a, b = ceil_unit(lo_ms), floor_unit(hi_ms)
    if a >= b:  # inside one or two minutes: raw only
        return Pieces([(lo_ms, hi_ms)], [], base)
    raw = []
    if lo_ms < a:
        raw.append((lo_ms, a))
    if b < hi_ms:
        raw.append((b, hi_ms))
    return Pieces(raw, cover(a, b, top), base)


__all__ = ["UNIT_MS", "TOP_LEVEL", "tile_ms", "tile_id", "parse_tile_id", "floor_unit", "ceil_unit", "ancestors",
           "children", "cover", "decompose", "Pieces"]
