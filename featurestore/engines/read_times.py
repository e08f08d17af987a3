"""Times in a backfill dead letter's row that is no event (a value or its time could not be read), in one form for
both engines: DuckDB's JSON of a row writes a timestamp as its TIMESTAMPTZ text (``2250-01-01 00:00:00+00``,
``10000-01-01 00:00:00.005+00``, ``0001-12-30 (BC) 23:59:59+00``), the Flink backfill as a raw integer (the event
time in epoch ms, a timestamp value in epoch us). Both become the stream face's record form (what the streaming job
shows: the record as produced), for any year: the event time as epoch ms, a timestamp value as ISO-8601 UTC text with
its microseconds. The Gregorian calendar repeats every 400 years, so a year outside Python's 1-9999 is shifted by
whole cycles, formatted, and shifted back."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Optional

_EPOCH = datetime(1970, 1, 1)
_CYCLE_US = 146_097 * 86_400 * 1_000_000  # 400 Gregorian years
_DUCKDB_TIME = re.compile(r"^(\d{4,})-(\d\d)-(\d\d)( \(BC\))? (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?\+00$")


def duckdb_time_ns(text: str) -> Optional[int]:
    """Epoch nanoseconds of DuckDB's text of a TIMESTAMPTZ in UTC (any year, ``(BC)`` too), None for other text."""
    m = _DUCKDB_TIME.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    year = int(m.group(1))
    year = 1 - year if m.group(4) else year  # 1 BC is year 0
    cycles = (year - 2000) // 400
    try:
        d = datetime(year - 400 * cycles, int(m.group(2)), int(m.group(3)), int(m.group(5)), int(m.group(6)),
                     int(m.group(7)))
    except ValueError:
        return None
    us = (d - _EPOCH) // timedelta(microseconds=1) + cycles * _CYCLE_US
    return us * 1000 + int((m.group(8) or "").ljust(9, "0"))


def us_text(us: int) -> str:
    """Epoch microseconds as the stream face's text of a timestamp value (``2026-03-01T00:00:00.001000Z``), any
    year (``10000-01-01T...``, ``-0001-...`` for 2 BC)."""
    cycles = (int(us) - 30 * 365 * 86_400 * 1_000_000) // _CYCLE_US  # about 2000
    d = _EPOCH + timedelta(microseconds=int(us) - cycles * _CYCLE_US)
    year = d.year + 400 * cycles
    return f"{year:04d}-{d:%m-%dT%H:%M:%S}.{d.microsecond:06d}Z" if year >= 0 else \
        f"{year:05d}-{d:%m-%dT%H:%M:%S}.{d.microsecond:06d}Z"


def read_time(value, event_time: bool, ts_ms: Optional[int]):
    """A time of a row that is no event in the record form (see the module docstring): ``event_time`` (with its
    epoch ms ``ts_ms`` as read) as epoch ms when DuckDB's text is that whole millisecond (finer digits, which no
    record carries, stay as read); a timestamp value (DuckDB's text or the Flink backfill's epoch us) as ISO text.
    Any other value (a text the engine could not read as a time) as read."""
    ns = duckdb_time_ns(value) if isinstance(value, str) else None
    if event_time:
        return int(ts_ms) if ns is not None and ts_ms is not None and ns == int(ts_ms) * 1_000_000 else value
    if isinstance(value, int) and not isinstance(value, bool):
        return us_text(value)
    return us_text(ns // 1000) if ns is not None and ns % 1000 == 0 else value
