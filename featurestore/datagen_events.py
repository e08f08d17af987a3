"""Generation of the seeded transactions (:mod:`featurestore.datagen`): the schema, the skewed users and
merchants, bursts, ties, times and values, and the order in which events reach the stream."""

from __future__ import annotations

import math
from typing import Any, List, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

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
