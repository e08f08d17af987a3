"""Turning user-given times into epoch milliseconds (UTC, floored), with clear errors."""

from __future__ import annotations

from datetime import datetime
from typing import Optional

from featurestore.errors import RequestError


def to_epoch_ms(value, what: str = "time") -> Optional[int]:
    """``None`` stays None; datetimes/pandas Timestamps/ISO strings must carry a time zone; ints are ms."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise RequestError(f"{what}: expected a timestamp, got {value!r}")
    if isinstance(value, int):
        return value
    import pandas as pd

    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise RequestError(f"{what}: cannot read {value!r} as a timestamp ({exc})") from None
    if ts.tzinfo is None:
        raise RequestError(f"{what}: {value!r} is timezone-naive; give a UTC time (e.g. '2026-01-01T00:00:00Z')")
    return ts.value // 1_000_000


def now_ms() -> int:
    from datetime import timezone

    return int(datetime.now(timezone.utc).timestamp() * 1000)
