"""Seeded, realistic card transactions for the ``transactions`` source: Parquet history and Kafka events.

Everything here is deterministic: the same arguments (and the same ``seed``) give the same rows, the
same event ids, the same arrival order and the same malformed payloads. Time does not depend on the
clock either: without ``end`` the history ends at :data:`DEFAULT_END`.

What the data looks like (:func:`generate_transactions`):

* **Skew.** Users and merchants are drawn from Zipf-like (power-law) weights: a few users and merchants
  carry a large share of the events (top 1% of users > 10% of events at the defaults).
* **Bursts.** About 6% of events come in bursts of one user: *card testing* (seconds apart, tiny
  amounts including 0.00, web/app, random merchants, often from a foreign country) and *sprees*
  (about a minute apart, ordinary purchases).
* **Ties.** Some burst events share exactly the timestamp of the previous event of the same user, about
  1% of the other events copy the timestamp of an unrelated event (ties across users), and some
  timestamps are whole seconds. ``event_id`` is the tiebreak column and is unique.
* **Time.** Timestamps lie in ``[end - days, end)``, UTC, with a daily (UTC) rhythm. Most have millisecond
  precision, about 8% whole seconds and about 12% microsecond precision (sub-millisecond, so every
  engine must floor them to the millisecond). Nothing is finer than a microsecond.
* **Values.** Amounts are log-normal (user and merchant price levels), a few very large ones, a few
  refunds (negative) and card-testing amounts, all rounded to cents. ``country`` persists per user
  (a home country) with occasional foreign ones; ``currency`` (USD/EUR/GBP) follows the country;
  ``channel`` is web/pos/app by user preference; ``card_present`` is true for most ``pos`` events and
  false for most others. About 1% of ``country`` and of ``channel`` are null; no other column is.

The frame (:data:`COLUMNS`, schema order): strings as ``object`` (``None`` for null), ``amount``
float64, ``card_present`` bool, ``ts`` ``datetime64[ns, UTC]`` (values are whole microseconds), sorted
by ``ts`` then ``event_id``.

Batch face (:func:`write_parquet`): ``part-NNNNN.parquet`` files, consecutive time ranges, ``ts`` as
``timestamp[us, tz=UTC]`` (never ns: Feast's DuckDB offline store breaks on ns). Parquet is typed, so the
files hold valid rows only; ``WriteResult.malformed`` is the number of malformed records that go with
the same data on the stream (:func:`malformed_count`), i.e. held back from the files.

Stream face (:func:`to_json_record`, :func:`produce_kafka`): one JSON object per event, keys = the
schema columns in schema order; event time is carried as **epoch milliseconds** (an integer) under the
timestamp column's own name (``ts``); sub-millisecond precision is truncated (floored). Amounts are JSON
numbers, booleans JSON booleans, nulls JSON ``null``. The Kafka key is ``user_id``; the Kafka record
timestamp is left to the producer (create time), event time is only in the payload. Records arrive
mostly in event-time order, a fraction late (:func:`out_of_order`), with malformed payloads
(:func:`malformed_records`) interleaved; a consumer must reject those and carry on.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from json.encoder import encode_basestring  # what json.dumps(ensure_ascii=False) uses
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import FeatureStoreError

# The transactions source's schema (definitions/sources.py), in schema order.
COLUMNS: dict = {
    "event_id": "string",
    "user_id": "string",
    "merchant_id": "string",
    "amount": "float64",
    "currency": "string",
    "country": "string",
    "channel": "string",
    "card_present": "bool",
    "ts": "timestamp",
}
TIMESTAMP_COLUMN = "ts"
NULLABLE_COLUMNS = ("country", "channel")
DEFAULT_END = pd.Timestamp("2026-11-01T00:00:00", tz="UTC")
DEFAULT_EVENTS = 200_000
DEFAULT_USERS = 5_000
DEFAULT_MERCHANTS = 500
DEFAULT_DAYS = 14.0
DEFAULT_SEED = 7
DEFAULT_MAX_DELAY_MS = 5_000  # = the example source's watermark_delay
PROGRESS_THRESHOLD = 100_000

ARROW_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}

COUNTRIES = np.array(["US", "GB", "DE", "FR", "ES", "IT", "NL", "IE", "CA", "MX", "BR", "IN", "JP"], dtype=object)
COUNTRY_WEIGHTS = np.array([0.40, 0.12, 0.09, 0.08, 0.05, 0.05, 0.04, 0.02, 0.05, 0.03, 0.03, 0.02, 0.02])
CURRENCIES = np.array(["USD", "EUR", "GBP"], dtype=object)
_EURO = {"DE", "FR", "ES", "IT", "NL", "IE"}
# Currency of a transaction in each country (index into CURRENCIES): GBP in GB, EUR in the euro area, else USD.
COUNTRY_CURRENCY = np.array([2 if c == "GB" else 1 if c in _EURO else 0 for c in COUNTRIES], dtype=np.int64)
CHANNELS = np.array(["web", "pos", "app"], dtype=object)
CHANNEL_WEIGHTS = np.array([0.35, 0.45, 0.20])
_WEB, _POS, _APP = 0, 1, 2
# Relative activity per UTC hour (night trough, afternoon/evening peak).
HOURLY = np.array([0.45, 0.35, 0.25, 0.2, 0.2, 0.25, 0.35, 0.5, 0.65, 0.75, 0.85, 0.9,
                   0.95, 1.0, 1.0, 1.0, 0.95, 0.95, 1.0, 1.0, 0.9, 0.8, 0.7, 0.55])

USER_ZIPF = 0.8  # weight of the user ranked r: r ** -USER_ZIPF
MERCHANT_ZIPF = 1.0
BURST_SHARE = 0.06
CARD_TEST_SHARE = 0.6  # of bursts
SAME_USER_TIE_P = 0.15  # burst events with exactly the previous event's timestamp
CROSS_TIE_SHARE = 0.01  # other events copying an unrelated event's timestamp
SECOND_PRECISION_P = 0.08
MICRO_PRECISION_P = 0.12
NULL_P = 0.01
LARGE_P = 0.003
REFUND_P = 0.004
CURRENCY_NOISE_P = 0.02

MALFORMED_KINDS = ("not_json", "missing_ts", "ts_not_number", "amount_not_number", "truncated", "empty",
                   "not_object")

_US_PER_DAY = 86_400_000_000
_US_PER_HOUR = 3_600_000_000


# -- generation --------------------------------------------------------------------------------------


def _check_counts(events: int, users: int, merchants: int, days: float) -> None:
    if int(events) != events or events < 0:
        raise FeatureStoreError(f"events: expected a whole number >= 0, got {events!r}")
    if int(users) != users or users < 1:
        raise FeatureStoreError(f"users: expected a whole number >= 1, got {users!r}")
    if int(merchants) != merchants or merchants < 1:
        raise FeatureStoreError(f"merchants: expected a whole number >= 1, got {merchants!r}")
    if not (isinstance(days, (int, float)) and math.isfinite(days) and days > 0):
        raise FeatureStoreError(f"days: expected a positive number of days, got {days!r}")


def _seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise FeatureStoreError(f"seed: expected a whole number >= 0, got {seed!r}")
    return int(seed)


def _end_us(end: Any) -> int:
    """``end`` (None = DEFAULT_END; naive = UTC) as epoch microseconds, floored."""
    ts = DEFAULT_END if end is None else pd.Timestamp(end)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.value // 1_000


def _labels(prefix: str, n: int) -> np.ndarray:
    width = max(4, len(str(n - 1)))
    return np.array([f"{prefix}{i:0{width}d}" for i in range(n)], dtype=object)


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Power-law weights over ``n`` ids, ranks assigned in random order (busy ids are not the first ids)."""
    ranks = rng.permutation(n) + 1
    w = ranks.astype(np.float64) ** -exponent
    return w / w.sum()


def _pick(rng: np.random.Generator, weights: np.ndarray, size: int) -> np.ndarray:
    """Indexes drawn by ``weights`` (inverse CDF: fast for large ``size``)."""
    cdf = np.cumsum(weights)
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(weights) - 1)


def _diurnal_times(rng: np.random.Generator, n: int, start_us: int, span_us: int) -> np.ndarray:
    """``n`` offsets in ``[0, span_us)`` following the UTC hourly rhythm (vectorized rejection sampling)."""
    out: List[np.ndarray] = []
    have = 0
    accept_p = HOURLY / HOURLY.max()
    while have < n:
        m = int((n - have) * 1.6) + 64
        t = rng.integers(0, span_us, size=m, dtype=np.int64)
        hour = ((start_us + t) // _US_PER_HOUR) % 24
        keep = t[rng.random(m) < accept_p[hour]]
        out.append(keep)
        have += len(keep)
    return np.concatenate(out)[:n] if out else np.zeros(0, dtype=np.int64)


def _apply_precision(rng: np.random.Generator, t_abs: np.ndarray, lo: int) -> np.ndarray:
    """Floor most epoch-µs times to ms, some to whole seconds; keep some at µs precision. A time that
    flooring would move below ``lo`` (the window start) keeps its µs value."""
    r = rng.random(len(t_abs))
    t = t_abs.copy()
    sec = r < SECOND_PRECISION_P
    ms = r >= SECOND_PRECISION_P + MICRO_PRECISION_P
    t[sec] -= t[sec] % 1_000_000
    t[ms] -= t[ms] % 1_000
    below = t < lo
    t[below] = t_abs[below]
    return t


def _burst_sizes(rng: np.random.Generator, n: int) -> np.ndarray:
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    chunks, total = [], 0
    while total < n:
        s = np.minimum(2 + rng.geometric(0.3, size=n // 4 + 8), 40).astype(np.int64)
        chunks.append(s)
        total += int(s.sum())
    sizes = np.concatenate(chunks)
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, n))  # first burst reaching n events
    sizes = sizes[: k + 1].copy()
    sizes[-1] = n - (cs[k - 1] if k else 0)
    return sizes


def _event_ids(rng: np.random.Generator, n: int) -> Tuple[np.ndarray, np.ndarray]:
    """Unique, random-looking ids ``tx_<16 hex>``: a seeded bijection of 0..n-1 on 64 bits.

    Returns the ids and their 64-bit values (whose numeric order is the ids' string order)."""
    salt = rng.integers(0, 2**63, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) ^ salt
        x = x * np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(31)
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(29)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    be = x.astype(">u8").view(np.uint8).reshape(n, 8)  # big-endian bytes: hex order = numeric order
    chars = np.empty((n, 19), dtype=np.uint8)
    chars[:, :3] = np.frombuffer(b"tx_", dtype=np.uint8)
    chars[:, 3::2] = digits[be >> 4]
    chars[:, 4::2] = digits[be & 15]
    ids = chars.view("S19").ravel().astype("U19").astype(object)
    return ids, x


def generate_transactions(
    events: int = DEFAULT_EVENTS,
    users: int = DEFAULT_USERS,
    merchants: int = DEFAULT_MERCHANTS,
    days: float = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end: Any = None,
) -> pd.DataFrame:
    """``events`` card transactions of ``users`` users at ``merchants`` merchants over the ``days`` days
    before ``end`` (default :data:`DEFAULT_END`, never the clock). Same arguments, same frame.

    Columns are :data:`COLUMNS` in schema order; rows sorted by ``ts`` then ``event_id``, index 0..n-1.
    See the module docstring for the shape of the data."""
    _check_counts(events, users, merchants, days)
    events, users, merchants = int(events), int(users), int(merchants)
    end_us = _end_us(end)
    span_us = max(1, int(round(days * _US_PER_DAY)))
    start_us = end_us - span_us
    # Independent streams: the users' and merchants' traits depend on the seed and their counts only.
    user_ss, merchant_ss, event_ss = np.random.SeedSequence([_seed(seed), 0x7A5]).spawn(3)
    ur, mr, rng = (np.random.default_rng(s) for s in (user_ss, merchant_ss, event_ss))

    # Users: activity weight, home country, foreign-travel rate, channel preference, price level.
    user_w = _zipf_weights(ur, users, USER_ZIPF)
    home = _pick(ur, COUNTRY_WEIGHTS, users)
    foreign_rate = ur.beta(0.5, 15.0, size=users)
    chan_p = ur.dirichlet(CHANNEL_WEIGHTS * 3.0, size=users)
    chan_cdf = np.cumsum(chan_p, axis=1)
    user_scale = ur.lognormal(0.0, 0.5, size=users)
    # Merchants: popularity and price level.
    merchant_w = _zipf_weights(mr, merchants, MERCHANT_ZIPF)
    merchant_scale = mr.lognormal(0.0, 0.7, size=merchants)

    n_burst = int(round(events * BURST_SHARE)) if events >= 20 else 0
    n_base = events - n_burst

    # Ordinary events.
    b_user = _pick(rng, user_w, n_base)
    b_merchant = _pick(rng, merchant_w, n_base)
    b_t = _apply_precision(rng, start_us + _diurnal_times(rng, n_base, start_us, span_us), start_us)
    if n_base >= 2:  # ties across users: copy the timestamp of another (random) event
        m = max(1, int(round(n_base * CROSS_TIE_SHARE)))
        b_t[rng.choice(n_base, m, replace=False)] = b_t[rng.integers(0, n_base, size=m)]

    # Bursts: one user, several events seconds (card testing) or a minute (spree) apart.
    sizes = _burst_sizes(rng, n_burst)
    n_bursts = len(sizes)
    burst_of = np.repeat(np.arange(n_bursts), sizes)
    starts = np.cumsum(sizes) - sizes
    pos = np.arange(n_burst) - np.repeat(starts, sizes)
    card_test = rng.random(n_bursts) < CARD_TEST_SHARE
    burst_user = _pick(rng, np.sqrt(user_w), n_bursts)  # flatter than activity: any card can be tested
    gap_scale = np.where(card_test, 2e6, 60e6)[burst_of]
    zero_gap = (rng.random(n_burst) < SAME_USER_TIE_P) & (pos > 0)
    gaps = (rng.exponential(1.0, size=n_burst) * gap_scale).astype(np.int64) + 1
    gaps[(pos == 0) | zero_gap] = 0
    cum = np.cumsum(gaps)
    offset = cum - np.repeat(cum[starts], sizes) if n_burst else cum
    length = offset[starts + sizes - 1] if n_bursts else np.zeros(0, dtype=np.int64)
    burst_start = (rng.random(n_bursts) * np.maximum(span_us - length, 1)).astype(np.int64)
    u_t = np.minimum(burst_start[burst_of] + offset, span_us - 1) + start_us
    u_t = _apply_precision(rng, u_t, start_us)
    anchor = np.maximum.accumulate(np.where(zero_gap, 0, np.arange(n_burst))) if n_burst else pos
    u_t = u_t[anchor]  # exact same-user ties (the anchor is in the same burst: a burst starts with a gap)
    u_user = burst_user[burst_of]
    u_card_test = card_test[burst_of]
    u_merchant = np.where(u_card_test, rng.integers(0, merchants, size=n_burst), _pick(rng, merchant_w, n_burst))

    # All events.
    user = np.concatenate([b_user, u_user])
    merchant = np.concatenate([b_merchant, u_merchant])
    t_us = np.concatenate([b_t, u_t])
    testing = np.concatenate([np.zeros(n_base, dtype=bool), u_card_test])
    in_burst = np.concatenate([np.zeros(n_base, dtype=bool), np.ones(n_burst, dtype=bool)])
    n = events

    # Country: the user's home, sometimes abroad (card testing: half of the bursts, whole burst abroad).
    n_c = len(COUNTRIES)
    abroad_country = _pick(rng, COUNTRY_WEIGHTS, n)
    burst_abroad = rng.random(n_bursts) < 0.5
    burst_country = _pick(rng, COUNTRY_WEIGHTS, n_bursts)
    abroad = rng.random(n) < foreign_rate[user]
    if n_burst:
        abroad[n_base:] = np.where(u_card_test, burst_abroad[burst_of], abroad[n_base:])
        abroad_country[n_base:] = np.where(u_card_test, burst_country[burst_of], abroad_country[n_base:])
    country_idx = np.where(abroad, abroad_country, home[user])
    clash = abroad & (country_idx == home[user])
    country_idx[clash] = (country_idx[clash] + 1 + rng.integers(0, n_c - 1, size=int(clash.sum()))) % n_c

    # Currency follows the country (a few are priced in another currency).
    currency_idx = COUNTRY_CURRENCY[country_idx]
    noise = rng.random(n) < CURRENCY_NOISE_P
    currency_idx[noise] = rng.integers(0, len(CURRENCIES), size=int(noise.sum()))

    # Channel by user preference; card testing is card-not-present, mostly web.
    channel_idx = np.minimum((rng.random(n)[:, None] > chan_cdf[user]).sum(axis=1), 2)
    channel_idx[testing] = np.where(rng.random(int(testing.sum())) < 0.9, _WEB, _APP)
    r = rng.random(n)
    card_present = np.where(channel_idx == _POS, r < 0.97, np.where(channel_idx == _APP, r < 0.04, r < 0.002))
    card_present[testing] = False

    # Amount: log-normal x user x merchant price level; a few large; a few refunds; card tests tiny.
    amount = rng.lognormal(math.log(25.0), 0.9, size=n) * user_scale[user] * merchant_scale[merchant]
    large = rng.random(n) < LARGE_P
    amount[large] *= rng.lognormal(math.log(25.0), 0.6, size=int(large.sum()))
    amount = np.minimum(amount, 250_000.0)
    refund = (rng.random(n) < REFUND_P) & ~in_burst
    amount[refund] = -amount[refund]
    tiny = np.array([0.0, 0.5, 0.99, 1.0, 1.0, 1.99, 2.0, 4.99, 5.0])
    amount[testing] = tiny[rng.integers(0, len(tiny), size=int(testing.sum()))]
    amount = np.round(amount, 2)
    amount[(amount > -0.01) & (amount < 0.01) & ~testing] = 0.01

    # Nulls in the optional columns only.
    country = COUNTRIES[country_idx]
    country[rng.random(n) < NULL_P] = None
    channel = CHANNELS[channel_idx]
    channel[rng.random(n) < NULL_P] = None

    event_id, id_key = _event_ids(rng, n)
    order = np.lexsort((id_key, t_us))
    user_labels = _labels("u", users)
    merchant_labels = _labels("m", merchants)
    ts = pd.DatetimeIndex((t_us[order] * 1_000).view("datetime64[ns]")).tz_localize("UTC")
    return pd.DataFrame(
        {
            "event_id": event_id[order],
            "user_id": user_labels[user[order]],
            "merchant_id": merchant_labels[merchant[order]],
            "amount": amount[order],
            "currency": CURRENCIES[currency_idx[order]],
            "country": country[order],
            "channel": channel[order],
            "card_present": card_present[order].astype(bool),
            "ts": ts,
        }  # schema order (passing columns= would make pandas copy ts through Python objects)
    )


# -- arrival order -----------------------------------------------------------------------------------


def _epoch_ns(values: Any) -> np.ndarray:
    """A timestamp column as epoch ns (naive = UTC; NaT -> int64 min)."""
    s = pd.Series(values)
    if not isinstance(s.dtype, pd.DatetimeTZDtype):
        s = pd.to_datetime(s, utc=True)
    s = s.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
    return s.to_numpy().view(np.int64)


def out_of_order(df: pd.DataFrame, seed: int = DEFAULT_SEED, fraction: float = 0.05,
                 max_delay_ms: int = DEFAULT_MAX_DELAY_MS, ts_column: str = TIMESTAMP_COLUMN) -> pd.DataFrame:
    """The order in which the events of ``df`` reach the stream: by event time, except that about
    ``fraction`` of them arrive late, each delayed by 1 ms up to (not including) ``max_delay_ms``,
    log-uniformly (many a little late, some nearly the maximum). With ``max_delay_ms`` no larger than a
    source's watermark delay no event is behind the watermark when it arrives; pass more to exercise
    late-data handling. The rows themselves are unchanged and keep their index labels; events arriving
    at the same instant keep their order in ``df``."""
    if not 0 <= fraction <= 1:
        raise FeatureStoreError(f"fraction: expected a share between 0 and 1, got {fraction!r}")
    if max_delay_ms < 1:
        raise FeatureStoreError(f"max_delay_ms: expected at least 1, got {max_delay_ms!r}")
    n = len(df)
    rng = np.random.default_rng(np.random.SeedSequence([_seed(seed), 0x0D0]))
    ts_ns = _epoch_ns(df[ts_column])
    late = rng.random(n) < fraction
    delay_ms = np.exp(rng.uniform(0.0, math.log(max_delay_ms), size=n))
    arrival = ts_ns + np.where(late, (delay_ms * 1e6).astype(np.int64), 0)
    return df.iloc[np.argsort(arrival, kind="stable")]


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
    if isinstance(value, np.generic):
        return value.item()
    return value


def _key_order(names: Sequence[str], schema: Sequence[str]) -> List[str]:
    """Schema columns in schema order, then any other keys sorted."""
    present = set(names)
    return [c for c in schema if c in present] + sorted(present.difference(schema))


def _dumps(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def to_json_record(row: Any, ts_column: str = TIMESTAMP_COLUMN, schema: Sequence[str] = tuple(COLUMNS)) -> bytes:
    """The Kafka JSON encoding of one event (a mapping, a pandas row or a namedtuple).

    Keys: the schema columns present, in schema order (others after, sorted). ``ts_column`` becomes
    epoch milliseconds (an integer, floored: sub-millisecond precision is truncated); numbers stay
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
    if is_ts:
        out = list(map(str, (_epoch_ns(s) // 1_000_000).tolist()))
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


# -- batch face --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteResult:
    """What :func:`write_parquet` wrote: the directory, valid rows, Parquet files, and how many
    malformed records go with the same data on the stream (not in the files: Parquet is typed)."""

    path: Path
    rows: int
    files: int
    malformed: int


def _arrow_table(df: pd.DataFrame, columns: Mapping[str, str]) -> pa.Table:
    arrays, fields = [], []
    for name, dtype in columns.items():
        s = df[name]
        if dtype == "timestamp":
            s = pd.Series(pd.to_datetime(s, utc=True)).dt.floor("us")
        typ = ARROW_TYPES[dtype]
        arr = pa.array(s, from_pandas=True)
        arrays.append(arr.cast(typ) if arr.type != typ else arr)
        fields.append(pa.field(name, typ, nullable=True))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def write_parquet(
    path: Union[str, os.PathLike],
    events: int = DEFAULT_EVENTS,
    users: int = DEFAULT_USERS,
    merchants: int = DEFAULT_MERCHANTS,
    days: float = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    *,
    end: Any = None,
    files: int = 4,
    df: Optional[pd.DataFrame] = None,
) -> WriteResult:
    """Write :func:`generate_transactions` (or ``df``) as ``part-00000.parquet``... into the directory
    ``path`` (created), ``files`` files of consecutive rows (by time), ``ts`` as ``timestamp[us, UTC]``.

    Each file is written under a temporary name and moved into place with ``os.replace``; afterwards
    ``part-*.parquet`` files of an earlier run that are not part of this one are removed, so a rerun
    leaves exactly this data. ``malformed`` in the result is :func:`malformed_count` of the rows: the
    malformed records the stream carries with the same data, held back from the (typed) files."""
    if int(files) != files or files < 1:
        raise FeatureStoreError(f"files: expected a whole number >= 1, got {files!r}")
    if df is None:
        df = generate_transactions(events, users, merchants, days, seed, end=end)
    else:
        df = df.sort_values([TIMESTAMP_COLUMN, "event_id"], kind="stable").reset_index(drop=True)
    out_dir = Path(path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FeatureStoreError(f"cannot write Parquet files into {out_dir}: it is not a directory") from None
    table = _arrow_table(df, COLUMNS)
    rows = table.num_rows
    n_files = max(1, min(int(files), rows))
    bounds = np.linspace(0, rows, n_files + 1).astype(int)
    written = []
    for i in range(n_files):
        final = out_dir / f"part-{i:05d}.parquet"
        tmp = out_dir / f".part-{i:05d}.parquet.tmp-{os.getpid()}"
        try:
            pq.write_table(table.slice(bounds[i], bounds[i + 1] - bounds[i]), tmp, compression="zstd")
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(final.name)
    for old in out_dir.glob("part-*.parquet"):
        if old.name not in written:
            old.unlink(missing_ok=True)
    for stale in out_dir.glob(".part-*.parquet.tmp-*"):
        stale.unlink(missing_ok=True)
    return WriteResult(path=out_dir, rows=rows, files=n_files, malformed=malformed_count(rows))


# -- stream face -------------------------------------------------------------------------------------


def _resolve_stream(target: Any, source: Any, topic: Optional[str]) -> Tuple[str, str, str, Sequence[str], int]:
    """(bootstrap, topic, timestamp column, schema columns, watermark delay ms) from a store-like object
    or an address (no source: the transactions schema, no watermark delay known = 0)."""
    if isinstance(source, str):
        repo = getattr(target, "repo", None)
        if repo is None or source not in repo.sources:
            raise FeatureStoreError(f"source {source!r} not found")
        source = repo.sources[source]
    if source is None and hasattr(target, "repo"):
        sources = target.repo.sources
        if "transactions" not in sources:
            raise FeatureStoreError("no source named 'transactions' in the definitions: pass source=")
        source = sources["transactions"]
    ts_column, schema, watermark_ms = TIMESTAMP_COLUMN, tuple(COLUMNS), 0
    stream_bootstrap = None
    if source is not None:
        stream = getattr(source, "stream", None)
        if stream is None:
            raise FeatureStoreError(f"source {getattr(source, 'name', '?')!r} has no stream face (KafkaTopic)")
        topic = topic or stream.topic
        stream_bootstrap = getattr(stream, "bootstrap_servers", None)
        ts_column = source.timestamp
        schema = tuple(source.columns)
        watermark_ms = int(getattr(source, "watermark_delay", 0) or 0)
    if isinstance(target, str):
        bootstrap = target
    else:
        bootstrap = stream_bootstrap or getattr(getattr(target, "config", None), "kafka_bootstrap", None)
    if not bootstrap:
        raise FeatureStoreError("no Kafka address: pass a bootstrap string or a store with config.kafka_bootstrap")
    if not topic:
        raise FeatureStoreError("no Kafka topic: pass a source with a stream face or topic=")
    return bootstrap, topic, ts_column, schema, watermark_ms


def produce_kafka(
    target: Any,
    source: Any = None,
    df: Optional[pd.DataFrame] = None,
    *,
    events: int = DEFAULT_EVENTS,
    users: int = DEFAULT_USERS,
    merchants: int = DEFAULT_MERCHANTS,
    days: float = DEFAULT_DAYS,
    seed: int = DEFAULT_SEED,
    end: Any = None,
    include_malformed: bool = True,
    late_fraction: float = 0.05,
    max_delay_ms: Optional[int] = None,
    topic: Optional[str] = None,
    progress: Optional[bool] = None,
    producer_config: Optional[Mapping[str, Any]] = None,
    flush_timeout: float = 120.0,
) -> int:
    """Produce the events to Kafka as JSON (:func:`to_json_record`; an Avro stream face: the datum of its writer
    schema, :func:`featurestore.push.avro.keyed_records`), key = ``user_id``, in the
    :func:`out_of_order` arrival order, with :func:`malformed_count` malformed payloads interleaved at
    seeded positions (unkeyed). Returns the number of records delivered (events + malformed).

    ``target``: a FeatureStore-like object (``.config.kafka_bootstrap``, ``.repo.sources``) or a
    bootstrap address. ``source``: a Source (or its name in ``target.repo``); its stream face gives the
    topic (and its ``bootstrap_servers``, when set, wins over the config); default: the repo's
    ``transactions`` source. ``df``: events to send instead of generating them from the other arguments.
    ``max_delay_ms``: how late a late event may be; default the source's ``watermark_delay`` (5 s when
    unknown), so a correct streaming job drops none; pass more to test late-data handling.
    ``progress``: a tqdm bar on stderr; default: when more than 100k records."""
    from featurestore.extras import require

    require("confluent_kafka", "producing to Kafka")
    from featurestore.logs import kafka_logger
    from confluent_kafka import KafkaException, Producer

    bootstrap, topic, ts_column, schema, watermark_ms = _resolve_stream(target, source, topic)
    if max_delay_ms is None:
        max_delay_ms = watermark_ms or DEFAULT_MAX_DELAY_MS
    if df is None:
        df = generate_transactions(events, users, merchants, days, seed, end=end)
    arrival = out_of_order(df, seed, fraction=late_fraction, max_delay_ms=max_delay_ms, ts_column=ts_column)
    bad = malformed_records(malformed_count(len(df)), seed) if include_malformed else []
    total = len(arrival) + len(bad)
    rng = np.random.default_rng(np.random.SeedSequence([_seed(seed), 0x1E7]))
    bad_at = set(rng.choice(total, size=len(bad), replace=False).tolist()) if bad else set()

    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,  # retries never reorder or duplicate within a partition
        "linger.ms": 20,
        "compression.type": "lz4",
        "message.timeout.ms": 60_000,
        "client.id": "featurestore-datagen",
        "logger": kafka_logger(),
    }
    config.update(producer_config or {})
    errors: List[str] = []
    delivered = 0

    def on_delivery(err, _msg):
        nonlocal delivered
        if err is not None:
            errors.append(str(err))
        else:
            delivered += 1

    try:
        producer = Producer(config)
        producer.list_topics(timeout=10)  # fail fast when the broker is unreachable
    except KafkaException as exc:
        raise FeatureStoreError(f"cannot reach Kafka at {bootstrap}: {exc}") from None

    def send(key: Optional[str], value: bytes) -> None:
        k = key.encode("utf-8") if key is not None else None
        while True:
            try:
                producer.produce(topic, value=value, key=k, on_delivery=on_delivery)
                return
            except BufferError:  # local queue full: let deliveries drain
                producer.poll(0.5)

    from tqdm import tqdm

    show = total > PROGRESS_THRESHOLD if progress is None else progress
    bar = tqdm(total=total, unit="rec", desc=f"producing to {topic}", file=sys.stderr, disable=not show)
    repo_sources = getattr(getattr(target, "repo", None), "sources", {})
    face = source if source is None or not isinstance(source, str) else repo_sources.get(source)
    face = repo_sources.get("transactions") if source is None else face
    if getattr(getattr(face, "stream", None), "is_avro", False):  # the datum of its writer schema
        from featurestore.push.avro import keyed_records

        records = keyed_records(arrival, face)
    else:
        records = iter_json_records(arrival, ts_column=ts_column, schema=schema)
    bad_iter = iter(bad)
    try:
        for i in range(total):
            if i in bad_at:
                send(None, next(bad_iter))
            else:
                send(*next(records))
            if i % 1000 == 999:
                producer.poll(0)
                bar.update(1000)
        bar.update(total - bar.n)
        left = producer.flush(flush_timeout)
    finally:
        bar.close()
    if left or errors:
        first = f": {errors[0]}" if errors else ""
        raise FeatureStoreError(f"Kafka at {bootstrap}: {left + len(errors)} of {total} records to topic "
                                f"{topic!r} were not delivered{first}")
    return delivered
