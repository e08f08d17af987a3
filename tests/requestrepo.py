"""A repo with request feature views of every kind, random events and random requests with request data,
and a brute-force evaluation of the request features (plain Python re-statements, independent of DuckDB
and of :mod:`featurestore.sdk.request_eval`) over base values from the oracle.

Request data carries nulls, extreme floats (1e300, -0.0, tiny), int64 and int32 edges, unicode and empty
strings, timestamps with microseconds; base features carry nulls (unknown entities, empty windows).
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pandas as pd

DEFINITIONS = '''
import pandas as pd
import pyarrow as pa

from featurestore import (Aggregation, Entity, FeatureService, FeatureView, Latest, LoggingConfig, ParquetFiles,
                          RequestFeatureView, RequestSource, Source, request_feature_view)

account = Entity(join_keys=["account_id"])

payments = Source(
    schema={"account_id": "int64", "amount": "float64", "qty": "int32", "tag": "string", "flag": "bool",
            "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/payments/*.parquet"),
)

acct = FeatureView(
    entities=[account],
    source=payments,
    features=[Aggregation("amount", "sum", "1h", name="amount_sum_1h"),
              Aggregation("*", "count", "10m", name="n_10m"),
              Aggregation("qty", "max", None, name="qty_max"),
              Latest("tag", name="last_tag"),
              Latest("ts", name="last_seen"),
              Latest("flag", name="last_flag")],
)

txn = RequestSource(schema={"amount": "float64", "channel": "string", "limit": "int64", "paid_at": "timestamp",
                            "vip": "bool", "score": "float32", "small": "int32"})

risk_sql = RequestFeatureView(
    sources=[txn, acct],
    features={
        "amount_vs_sum": "amount / nullif(amount_sum_1h, 0)",
        "over_limit": "amount > \\"limit\\"",
        "tag_channel": "coalesce(last_tag, '?') || '/' || channel",
        "since_seen_us": "epoch_us(paid_at) - epoch_us(last_seen)",
        "n_plus": "n_10m + small",
        "score_x2": "score * 2",
        "vip_or_flag": "vip OR coalesce(last_flag, false)",
        "later": "paid_at + INTERVAL 1 HOUR",
    },
)


@request_feature_view(sources=[txn, acct.select("amount_sum_1h", "last_tag")],
                      schema={"share": "float64", "bucket": "string", "has_tag": "bool"})
def risk_row(row):
    """Row mode: one dict in, one dict out."""
    total, amount = row["amount_sum_1h"], row["amount"]
    share = None if total in (None, 0) or amount is None else amount / total
    bucket = None if amount is None else ("big" if amount >= 1000 else "small")
    return {"share": share, "bucket": bucket, "has_tag": row["last_tag"] is not None}


def _columns(cols):
    return {"weighted": [None if a is None or q is None else a * q for a, q in zip(cols["amount"], cols["qty_max"])],
            "n_twice": [2 * n for n in cols["acct__n_10m"]]}


risk_cols = RequestFeatureView(sources=[txn, acct], function=_columns, mode="python",
                               schema={"weighted": "float64", "n_twice": "int64"})


def _frame(df):
    return pd.DataFrame({"amount_or_zero": df["amount"].fillna(0.0) + df["n_10m"],
                         "channel_len": df["channel"].str.len()})


risk_pd = RequestFeatureView(sources=[txn, acct.select("n_10m")], function=_frame, mode="pandas",
                             schema={"amount_or_zero": "float64", "channel_len": "int64"})

def _arrow(table):
    import pyarrow.compute as pc

    return pa.table({"abs_amount": pc.abs(table["amount"]), "tag_upper": pc.utf8_upper(table["last_tag"])})


risk_arrow = RequestFeatureView(sources=[txn, acct.select("last_tag")], function=_arrow, mode="arrow",
                                schema={"abs_amount": "float64", "tag_upper": "string"})

only_request = RequestFeatureView(sources=[txn], features={"amount_cents": "round(amount * 100)"})

scoring = FeatureService(features=[acct.select("n_10m"), risk_sql, risk_row, risk_cols, risk_pd, risk_arrow,
                                   "only_request:amount_cents"],
                         logging=LoggingConfig(enabled=True, sample_rate=1.0))
'''

SERVICE = "scoring"
BASE = pd.Timestamp("2026-03-01T00:00:00Z")
ACCOUNTS = [1, 2, 3, 4, 2 ** 53 + 1, 7, 8]
REQUEST_COLUMNS = ["amount", "channel", "limit", "paid_at", "vip", "score", "small"]
FEATURES = {
    "risk_sql": ["amount_vs_sum", "over_limit", "tag_channel", "since_seen_us", "n_plus", "score_x2", "vip_or_flag",
                 "later"],
    "risk_row": ["share", "bucket", "has_tag"],
    "risk_cols": ["weighted", "n_twice"],
    "risk_pd": ["amount_or_zero", "channel_len"],
    "risk_arrow": ["abs_amount", "tag_upper"],
    "only_request": ["amount_cents"],
}


def write_repo(root: Path) -> Path:
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: rq_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n")
    return root


def random_events(seed: int, n: int = 300, span_s: int = 3600) -> pd.DataFrame:
    rng = random.Random(seed)
    rows, t = [], 0.0
    for _ in range(n):
        t += 0.0 if rng.random() < 0.2 else rng.expovariate(n / span_s)
        hot = min(int(rng.paretovariate(1.2)) - 1, len(ACCOUNTS) - 2)  # the last account never has events
        rows.append({
            "account_id": ACCOUNTS[hot],
            "amount": None if rng.random() < 0.1 else rng.choice([round(rng.uniform(-50, 2000), 2), 0.0, 1e-3]),
            "qty": None if rng.random() < 0.1 else rng.randint(-5, 40),
            "tag": None if rng.random() < 0.2 else rng.choice(["a", "bé", "日本", ""]),
            "flag": None if rng.random() < 0.2 else rng.random() < 0.5,
            "ts": BASE + pd.Timedelta(microseconds=int(t * 1e6)),
        })
    df = pd.DataFrame(rows)
    df["account_id"] = df["account_id"].astype("int64")
    df["qty"] = pd.array([r["qty"] for r in rows], dtype="Int32")
    df["flag"] = pd.array([r["flag"] for r in rows], dtype="boolean")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def write_events(root: Path, df: pd.DataFrame) -> None:
    out = root / "data" / "payments"
    out.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out / "part-0.parquet", index=False)


def random_request_data(rng: random.Random) -> Dict[str, Any]:
    def maybe(v, p=0.12):
        return None if rng.random() < p else v

    return {
        "amount": maybe(rng.choice([round(rng.uniform(-100, 3000), 2), 0.0, -0.0, 1e300, -1e-300, 1000.0, 5e-324])),
        "channel": maybe(rng.choice(["web", "app", "é", "日本語", ""])),
        "limit": maybe(rng.choice([rng.randint(-10, 2000), 0, 2 ** 62, -(2 ** 63) + 1, 2 ** 63 - 1])),
        "paid_at": maybe(BASE + pd.Timedelta(microseconds=rng.randint(0, 7_200_000_000))),
        "vip": maybe(rng.random() < 0.5),
        "score": maybe(rng.choice([rng.uniform(-1, 1), 0.1, 3.4e38, -1.5])),
        "small": maybe(rng.choice([rng.randint(-100, 100), 2 ** 31 - 1, -(2 ** 31)])),
    }


def random_requests(seed: int, events: pd.DataFrame, n: int = 40) -> pd.DataFrame:
    """An entity frame: account, request time (event times exactly, window edges, random), request data."""
    rng = random.Random(seed)
    times = [ts.floor("ms") for ts in events["ts"]]
    rows = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.3:
            q = rng.choice(times)
        elif kind < 0.5:
            q = rng.choice(times) + pd.Timedelta(rng.choice(["10min", "1h", "1ms"]))
        else:
            q = BASE + pd.Timedelta(milliseconds=rng.randint(0, 4_000_000))
        rows.append({"account_id": rng.choice(ACCOUNTS), "event_timestamp": q, **random_request_data(rng)})
    return frame(rows)


def frame(rows: List[dict]) -> pd.DataFrame:
    """Request rows as an entity frame with exact column types (nullable ints, tz-aware times)."""
    df = pd.DataFrame(rows)
    df["account_id"] = df["account_id"].astype("int64")
    df["event_timestamp"] = pd.to_datetime(df["event_timestamp"], utc=True)
    df["limit"] = pd.array([r["limit"] for r in rows], dtype="Int64")
    df["small"] = pd.array([r["small"] for r in rows], dtype="Int32")
    df["vip"] = pd.array([r["vip"] for r in rows], dtype="boolean")
    df["paid_at"] = pd.to_datetime(pd.Series([r["paid_at"] for r in rows], dtype=object), utc=True)
    df["amount"] = pd.Series([r["amount"] for r in rows], dtype="float64")
    df["score"] = pd.Series([r["score"] for r in rows], dtype="float64")
    return df


# -- brute force -------------------------------------------------------------------------------------------
def _f32(x):
    return None if x is None else float(np.float32(x))


def _us(ts) -> int:
    return pd.Timestamp(ts).value // 1000


def brute_force(request: dict, base: dict) -> Dict[str, Any]:
    """Every request feature of one row, from its request data and its base values (the oracle's), by
    plain Python statements of the SQL and of the functions (SQL's three-valued logic and implicit casts
    written out)."""
    a, ch, lim, at, vip, score, small = (request[c] for c in REQUEST_COLUMNS)
    total, n, qmax, tag, seen, flag = (base[c] for c in ("amount_sum_1h", "n_10m", "qty_max", "last_tag",
                                                          "last_seen", "last_flag"))
    score = _f32(score)
    out: Dict[str, Any] = {}
    out["amount_vs_sum"] = None if a is None or total is None or total == 0 else a / total
    out["over_limit"] = None if a is None or lim is None else a > float(lim)  # BIGINT is cast to DOUBLE
    out["tag_channel"] = None if ch is None else (tag if tag is not None else "?") + "/" + ch
    out["since_seen_us"] = None if at is None or seen is None else _us(at) - _us(seen)
    out["n_plus"] = None if small is None else n + small
    with np.errstate(over="ignore"):  # FLOAT * 2 overflows to inf, as in DuckDB
        out["score_x2"] = None if score is None else float(np.float32(score) * np.float32(2))
    flag_or_false = flag if flag is not None else False
    out["vip_or_flag"] = True if (vip is True or flag_or_false) else (None if vip is None else False)
    out["later"] = None if at is None else pd.Timestamp(at).to_pydatetime() + timedelta(hours=1)
    out["share"] = None if total in (None, 0) or a is None else a / total
    out["bucket"] = None if a is None else ("big" if a >= 1000 else "small")
    out["has_tag"] = tag is not None
    out["weighted"] = None if a is None or qmax is None else a * qmax
    out["n_twice"] = 2 * n
    out["amount_or_zero"] = (a if a is not None else 0.0) + n
    out["channel_len"] = None if ch is None else len(ch)
    out["abs_amount"] = None if a is None else abs(a)
    out["tag_upper"] = None if tag is None else tag.upper()
    out["amount_cents"] = None if a is None else _round_half_away(a * 100)
    return out


def _round_half_away(x: float) -> float:
    """DuckDB's round() of a DOUBLE: to the nearest integer, halves away from zero (exact, unlike floor(x + 0.5))."""
    import math

    if not math.isfinite(x):
        return x
    m = abs(x)
    r = math.floor(m)
    if m - r >= 0.5:  # exact: m - floor(m) has no rounding error for a double
        r += 1
    return math.copysign(float(r), x)


def clean(v):
    """A frame value as a plain Python value (None for null)."""
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, pd.Timestamp):
        return v.to_pydatetime()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    return v


def request_dict(row: dict) -> Dict[str, Any]:
    return {c: clean(row[c]) for c in REQUEST_COLUMNS}
