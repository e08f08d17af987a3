"""Turning user-given times into epoch milliseconds (UTC, floored), with clear errors.

A request time (``request_time``, ``backfill`` / ``materialize`` bounds) is one of:

* a timezone-aware ``datetime`` or ``pandas.Timestamp`` (any zone; converted to UTC);
* an ISO-8601 string with a zone: ``"2026-11-01T00:00:00Z"``, ``"2026-11-01T01:00:00+01:00"``;
* an integer (``int`` or a numpy integer) of **epoch milliseconds** between 1973-03-03 (``10**11``) and
  2262-04-11 (the last millisecond pandas can hold). Outside that range the number is refused, and the
  message says which unit it probably is: epoch seconds (``time.time()``), microseconds or nanoseconds.

Everything else is refused with a one-line cause, in particular timezone-naive times (they would be
read in some zone silently), floats (``time.time()`` is float seconds) and bools.

>>> to_epoch_ms("2026-01-01T00:00:00Z")
1767225600000
>>> to_epoch_ms(1767225600)
Traceback (most recent call last):
...
featurestore.errors.RequestError: time: 1767225600 looks like epoch seconds; integer times are epoch milliseconds: pass 1767225600000 or a timezone-aware datetime
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Optional

from featurestore.errors import RequestError

_SUB_US = re.compile(r"(\.[0-9]{6})[0-9]+")  # digits after the microseconds of an ISO time
# "UTC+2" / "GMT-5": dateutil reads these the POSIX way (UTC+2 is two hours *behind* UTC), the opposite of
# what most people mean; refused rather than guessed
_POSIX_OFFSET = re.compile(r"\b(?:UTC|GMT)\s*[+-]\s*\d", re.IGNORECASE)
MIN_INT_MS = 10**11  # 1973-03-03T09:46:40Z: an integer below is not epoch milliseconds of a real request
MAX_INT_MS = 9_223_372_036_854  # 2262-04-11T23:47:16.854Z: pandas' last millisecond


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


_UNITS = (("ms", "epoch milliseconds", 1, 1), ("s", "epoch seconds", 1000, 1), ("us", "epoch microseconds", 1, 1000),
          ("ns", "epoch nanoseconds", 1, 1_000_000))


def probable_unit(value: int):
    """(unit code for pandas, unit name, value in ms) of an epoch integer, or None when no unit fits."""
    for code, unit, times, per in _UNITS:
        ms = value * times // per
        if MIN_INT_MS <= ms <= MAX_INT_MS:
            return code, unit, ms
    return None


def plausible_ms(value: int, what: str) -> int:
    """``value`` if it is epoch milliseconds in the accepted range, else RequestError naming the likely unit."""
    guess = probable_unit(value)
    if guess is not None and guess[0] == "ms":
        return value
    if guess is not None:
        raise RequestError(f"{what}: {value} looks like {guess[1]}; integer times are epoch milliseconds: "
                           f"pass {guess[2]} or a timezone-aware datetime")
    raise RequestError(f"{what}: {value} is not epoch milliseconds between {_iso(MIN_INT_MS)} and "
                       f"{_iso(MAX_INT_MS)}; pass a timezone-aware datetime")


def read_time_text(text: str, what: str):
    """``text`` as a pandas Timestamp (naive when it names no zone), or RequestError when its zone would be
    misread: a zone name pandas does not know (``PST``, ``CET``: pandas drops it and the time would be read in
    another zone) or a POSIX-style ``UTC+2`` (read as two hours behind UTC). Every user-written time goes here."""
    import warnings

    import pandas as pd

    if _POSIX_OFFSET.search(text):
        raise RequestError(f"{what}: {text!r} has a 'UTC+N'/'GMT-N' zone, which is read the POSIX way (UTC+2 as "
                           "two hours behind UTC); write the offset instead, e.g. '2026-01-01T00:00:00+02:00'")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ts = pd.Timestamp(text)
    for w in caught:
        dropped = re.search(r'un-recognized timezone "([^"]*)"', str(w.message))
        if dropped:
            raise RequestError(f"{what}: {text!r} names a time zone ('{dropped.group(1)}') that cannot be read (only "
                               "'Z', 'UTC' and offsets are); write the offset instead, e.g. '2026-01-01T00:00:00-08:00'")
    return ts


def to_epoch_ms(value, what: str = "time") -> Optional[int]:
    """``None`` stays None; see the module docstring for what is accepted."""
    if value is None:
        return None
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        raise RequestError(f"{what}: expected a timestamp, got {bool(value)!r}")
    if isinstance(value, int):
        return plausible_ms(int(value), what)

    if isinstance(value, np.integer):
        return plausible_ms(int(value), what)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        seconds = number == number and MIN_INT_MS <= number * 1000 <= MAX_INT_MS
        if seconds:
            raise RequestError(f"{what}: {number!r} is a float of epoch seconds (like time.time()); pass "
                               "int(t * 1000) epoch milliseconds or a timezone-aware datetime")
        raise RequestError(f"{what}: {number!r} is a float; pass int epoch milliseconds or a timezone-aware datetime")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        raise RequestError(f"{what}: {value!r} is a number in a string; pass epoch milliseconds as an integer, or an "
                           "ISO-8601 time with a zone (e.g. '2026-01-01T00:00:00Z')")
    import pandas as pd

    if not isinstance(value, (str, datetime, np.datetime64)):
        raise RequestError(f"{what}: expected a timezone-aware datetime, an ISO-8601 string with a zone or int "
                           f"epoch milliseconds, got {type(value).__name__}")
    try:
        ts = read_time_text(value, what) if isinstance(value, str) else pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        # nanosecond digits of a time beyond pandas' nanosecond range: microseconds floor to the same ms
        short = _SUB_US.sub(r"\1", value) if isinstance(value, str) else value
        try:
            ts = read_time_text(short, what) if short != value else None
        except (ValueError, TypeError, OverflowError):
            ts = None
        if ts is None:
            raise RequestError(f"{what}: cannot read {value!r} as a timestamp ({exc})") from None
    if ts is pd.NaT:
        raise RequestError(f"{what}: expected a timestamp, got {value!r}")
    if ts.tzinfo is None:
        raise RequestError(f"{what}: {value!r} is timezone-naive; give a UTC time (e.g. '2026-01-01T00:00:00Z')")
    return timestamp_ms(ts)


_US_PER = {"s": 1_000_000, "ms": 1_000, "us": 1}


def timestamp_us(ts) -> int:
    """A tz-aware (or UTC) pandas Timestamp as epoch microseconds, floored, read in its own unit: a time
    beyond pandas' nanosecond range (``'0001-01-01'``, ``'9999-12-31'``: a backfill over everything) has no
    ``.value`` (it raises OverflowError)."""
    raw = int(ts.asm8.view("i8"))  # UTC, in ts.unit
    unit = getattr(ts, "unit", "ns")
    return raw // 1000 if unit == "ns" else raw * _US_PER[unit]


def timestamp_ms(ts) -> int:
    """:func:`timestamp_us`, in epoch milliseconds (floored)."""
    return timestamp_us(ts) // 1000


def now_ms() -> int:
    return int(datetime.now(timezone.utc).timestamp() * 1000)
