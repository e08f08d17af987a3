"""Durations as written in definitions (``"10m"``, ``"1h"``, ``"7d"``), held as whole milliseconds.

Milliseconds are the unit of every time in the system (SPEC §2: event times are truncated to ms).

>>> parse_duration("1h30m")
5400000
>>> format_duration(604800000)
'7d'
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Optional, Union

from featurestore.errors import DefinitionError

UNITS_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
DurationLike = Union[str, int, timedelta]


def parse_duration(value: DurationLike, what: str = "duration") -> int:
    """Return a positive duration in milliseconds from ``"10m"``, a timedelta, or an int of ms."""
    if isinstance(value, bool):
        raise DefinitionError(f"{what}: expected a duration like '10m', got {value!r}")
    if isinstance(value, timedelta):
        ms = value // timedelta(milliseconds=1)
        if timedelta(milliseconds=ms) != value:
            raise DefinitionError(f"{what}: {value} is not a whole number of milliseconds")
    elif isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        pos, ms = 0, 0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            ms += int(match.group(1)) * UNITS_MS[match.group(2)]
            pos = match.end()
        if pos != len(text) or not text:
            raise DefinitionError(
                f"{what}: cannot parse {value!r}; write e.g. '500ms', '30s', '10m', '1h', '7d', '2w'"
            )
    else:
        raise DefinitionError(f"{what}: expected a duration like '10m', got {type(value).__name__}")
    if ms <= 0:
        raise DefinitionError(f"{what}: must be positive, got {value!r}")
    return ms


def parse_span(value: DurationLike, what: str) -> int:
    """A window or TTL: a duration (:func:`parse_duration`) no longer than ``semantics.MAX_SPAN_MS``."""
    from featurestore.semantics import MAX_SPAN_MS

    ms = parse_duration(value, what)
    if ms > MAX_SPAN_MS:
        raise DefinitionError(f"{what}: {value!r} is longer than any time between an event and a request (1900-01-01 "
                              f"to 2262-04-11, {MAX_SPAN_MS // 86_400_000} days); leave it out (None) for unbounded")
    return ms


def parse_optional_duration(value: Optional[DurationLike], what: str) -> Optional[int]:
    return None if value is None else parse_duration(value, what)


def format_duration(ms: Optional[int]) -> str:
    """Shortest exact label for a duration: 604800000 -> '7d'; None (unbounded) -> 'lifetime'."""
    if ms is None:
        return "lifetime"
    for unit in ("d", "h", "m", "s"):
        size = UNITS_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
