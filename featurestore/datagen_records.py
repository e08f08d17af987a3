"""The stream face's records of generated transactions (:mod:`featurestore.datagen`): JSON records in
schema order, event time as epoch milliseconds, and seeded malformed payloads."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) uses
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from featurestore.datagen_events import (CHANNELS, COLUMNS, COUNTRIES, CURRENCIES, DEFAULT_END, DEFAULT_SEED,
                                         MALFORMED_KINDS, TIMESTAMP_COLUMN, _epoch_ns, _seed)

# -- stream encoding ---------------------------------------------------------------------------------


def _is_null(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if isinstance(v, float):
        return v != v
    if isinstance(v, (np.floating, np.datetime64, np.timedelta64)):
        return bool(np.isnan(v))
    return False


def to_epoch_ms(value: Any) -> Optional[int]:
    """Epoch milliseconds, floored (naive = UTC); an int is taken as already epoch ms; null -> None."""
    if _is_null(value):
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    ts = pd.Timestamp(value)
    return ts.value // 1_000_000  # .value is epoch ns, tz-aware or naive-as-UTC; // floors


def _py(value: Any) -> Any:
    if _is_null(value):
        return None
    if isinstance(value, (datetime, np.datetime64)):
        return time_value_text(value)
    if isinstance(value, np.generic):
        return value.item()
    return value


_EPOCH = datetime(1970, 1, 1)


def _us_text(us: int) -> str:
    """Epoch microseconds as the stream face's ISO-8601 text of a timestamp value, UTC, every digit kept."""
    try:
        d = _EPOCH + timedelta(microseconds=int(us))
    except OverflowError:
        raise ValueError(f"timestamp value {us} us after 1970 is outside years 1 to 9999") from None
    return f"{d.year:04d}-{d:%m-%dT%H:%M:%S}.{d.microsecond:06d}Z"


def time_value_text(value: Any) -> str:
    """A timestamp value other than the event time (a created time) as the JSON stream face reads it: an ISO-8601
    string in UTC with its microseconds (``"2026-03-01T12:00:00.123456Z"``; naive = UTC; nanoseconds floored), so
    nothing is lost (an integer there would mean epoch milliseconds, the event time's unit)."""
    if isinstance(value, pd.Timestamp):
        value = value.to_datetime64()  # UTC when zoned, in the Timestamp's own unit
    if isinstance(value, datetime):
        if value.tzinfo is not None and value.utcoffset() is not None:
            delta = value.replace(tzinfo=None) - _EPOCH - value.utcoffset()
        else:
            delta = value - _EPOCH
        return _us_text((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    if isinstance(value, np.datetime64):
        return _us_text(int(value.astype("datetime64[us]").astype(np.int64)))  # floors finer units
    raise TypeError(f"not a time value: {value!r}")


def _key_order(names: Sequence[str], schema: Sequence[str]) -> List[str]:
    """Schema columns in schema order, then any other keys sorted."""
    present = set(names)
    return [c for c in schema if c in present] + sorted(present.difference(schema))


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def to_json_record(row: Any, ts_column: str = TIMESTAMP_COLUMN, schema: Sequence[str] = tuple(COLUMNS)) -> bytes:
    """The Kafka JSON encoding of one event (a mapping, a pandas row or a namedtuple).

    Keys: the schema columns present, in schema order (others after, sorted). ``ts_column`` becomes
    epoch milliseconds (an integer, floored: sub-millisecond precision is truncated); any other time value
    (a created time) an ISO-8601 UTC string with its microseconds (:func:`time_value_text`); numbers stay
    JSON numbers, booleans JSON booleans, missing values (None, NaN, NaT, NA) JSON null."""
    if isinstance(row, pd.Series):
        row = row.to_dict()
    elif hasattr(row, "_asdict"):
        row = row._asdict()
    elif not isinstance(row, Mapping):
        raise TypeError(f"to_json_record: expected a mapping or a pandas row, got {type(row).__name__}")
    out = {}
    for k in _key_order(list(row), schema):
        out[k] = to_epoch_ms(row[k]) if k == ts_column else _py(row[k])
    return _dumps(out)


def _column_fragments(s: pd.Series, is_ts: bool) -> List[str]:
    """Each value of a column as its JSON text, exactly as :func:`to_json_record` writes it."""
    null = s.isna().to_numpy()
    if is_ts and s.dtype.kind in "iu":  # already epoch ms, as to_json_record takes an integer
        out = list(map(str, s.tolist()))
    elif is_ts:
        out = list(map(str, (_epoch_ns(s) // 1_000_000).tolist()))
    elif s.dtype.kind == "M" or isinstance(s.dtype, pd.DatetimeTZDtype):  # another timestamp: ISO text, in us
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            s = s.dt.tz_convert("UTC").dt.tz_localize(None)
        us = s.to_numpy().astype("datetime64[us]").view(np.int64)
        out = ['"' + _us_text(v) + '"' for v in np.where(null, 0, us).tolist()]
    elif s.dtype == np.bool_:
        return ["true" if v else "false" for v in s.tolist()]
    elif s.dtype.kind in "iu":  # numpy ints, and pandas' nullable Int64 & co. (their nulls patched below)
        out = list(map(str, s.tolist()))
    elif s.dtype.kind == "f":
        values = s.to_numpy(dtype="float64", na_value=np.nan)
        if np.isinf(values).any():
            raise ValueError(f"column {s.name!r}: an infinite value cannot be written as JSON")
        out = list(map(float.__repr__, values.tolist()))  # what json writes for a finite float
    else:
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        uniques = list(uniques)
        if all(type(u) is str for u in uniques):
            frags = [encode_basestring(u) for u in uniques]
        else:  # mixed or non-string objects: one value at a time
            return [json.dumps(_py(v), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
                    for v in s.to_numpy(dtype=object)]
        return np.array(frags + ["null"], dtype=object)[codes].tolist()
    if null.any():
        for i in np.flatnonzero(null).tolist():
            out[i] = "null"
    return out


def iter_json_records(df: pd.DataFrame, ts_column: str = TIMESTAMP_COLUMN,
                      schema: Sequence[str] = tuple(COLUMNS)) -> Iterator[Tuple[Optional[str], bytes]]:
    """(user_id, JSON payload) for every row of ``df`` in its order: the same bytes as
    :func:`to_json_record`, with the conversions done column by column."""
    keys = _key_order([str(c) for c in df.columns], schema)
    template = "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":%s" for k in keys) + "}"
    cols = [_column_fragments(df[k], k == ts_column) for k in keys]
    if "user_id" in keys:
        users = [None if z else str(u) for u, z in zip(df["user_id"].tolist(), df["user_id"].isna().tolist())]
    else:
        users = [None] * len(df)
    for user, values in zip(users, zip(*cols)):
        yield user, (template % values).encode("utf-8")


# -- malformed records -------------------------------------------------------------------------------


def malformed_count(events: int) -> int:
    """How many malformed records accompany ``events`` events on the stream: 0.1%, at least one of
    each kind (none for no events)."""
    return 0 if events <= 0 else max(len(MALFORMED_KINDS), int(events) // 1000)


def malformed_records(n: int, seed: int = DEFAULT_SEED, with_kinds: bool = False) -> List[Any]:
    """``n`` raw payloads that a JSON stream parser for the transactions source must reject.

    Kinds (:data:`MALFORMED_KINDS`): non-JSON text, an object without ``ts``, ``ts`` a non-numeric
    string, ``amount`` the string ``"abc"``, a truncated object, an empty payload, JSON that is not an
    object. Every kind appears once before any repeats (shuffled). With ``with_kinds`` the items are
    ``(kind, payload)`` pairs."""
    rng = np.random.default_rng(np.random.SeedSequence([_seed(seed), 0xBAD]))
    k = len(MALFORMED_KINDS)
    picks = list(rng.permutation(k)[: min(n, k)]) + list(rng.integers(0, k, size=max(0, n - k)))
    end_ms = DEFAULT_END.value // 1_000_000
    out: List[Any] = []
    for i, pick in enumerate(picks):
        kind = MALFORMED_KINDS[int(pick)]
        rec = {
            "event_id": f"bad_{_seed(seed) & 0xFFFF:04x}{i:06d}",
            "user_id": f"u{int(rng.integers(0, 5000)):04d}",
            "merchant_id": f"m{int(rng.integers(0, 500)):04d}",
            "amount": round(float(rng.lognormal(3.2, 0.9)), 2),
            "currency": str(CURRENCIES[int(rng.integers(0, 3))]),
            "country": str(COUNTRIES[int(rng.integers(0, len(COUNTRIES)))]),
            "channel": str(CHANNELS[int(rng.integers(0, 3))]),
            "card_present": bool(rng.random() < 0.5),
            "ts": end_ms - int(rng.integers(0, 86_400_000)),
        }
        if kind == "not_json":
            texts = ("not json", "<html><body>502 Bad Gateway</body></html>",
                     f"{rec['event_id']},{rec['user_id']},{rec['amount']},{rec['ts']}", "{'ts': 1, 'amount': 2}",
                     "\x00\x01\x02garbage")
            payload = texts[int(rng.integers(0, len(texts)))].encode("utf-8")
        elif kind == "missing_ts":
            del rec["ts"]
            payload = _dumps(rec)
        elif kind == "ts_not_number":
            rec["ts"] = ("yesterday", "not-a-time", "n/a", "")[int(rng.integers(0, 4))]
            payload = _dumps(rec)
        elif kind == "amount_not_number":
            rec["amount"] = "abc"
            payload = _dumps(rec)
        elif kind == "truncated":
            full = _dumps(rec)
            payload = full[: int(rng.integers(1, len(full)))]
        elif kind == "empty":
            payload = b""
        else:  # not_object
            payload = _dumps(list(rec.values())) if rng.random() < 0.5 else b"null"
        out.append((kind, payload) if with_kinds else payload)
    return out
