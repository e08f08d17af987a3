"""A repo for log-and-wait tests: int64 keys beyond 2^53 (and at the int64 edges), a composite
(string, int64) key, nulls in keys and values, hot keys, ties; and random logged traffic over it.

Keys such as 2^53 and 2^53 + 1 are distinct int64 values but the same float64, so any place that lets a
key column pass through float (pandas' usual fate of an int column with a null) merges them.
"""

from __future__ import annotations

import random
import uuid
from pathlib import Path
from typing import List

import pandas as pd

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, LoggingConfig, ParquetFiles, Source

account = Entity(join_keys=["account_id"])
region_account = Entity(join_keys=["region", "account_id"])

payments = Source(
    schema={"account_id": "int64", "region": "string", "amount": "float64", "qty": "int64", "tag": "string",
            "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/payments/*.parquet"),
)

account_stats = FeatureView(
    entities=[account],
    source=payments,
    features=[Aggregation("*", "count", "1m", name="n_1m"),
              Aggregation("qty", "sum", "1m", name="qty_sum_1m"),
              Aggregation("qty", "max", None, name="qty_max"),
              Aggregation("amount", "sum", "1h", name="amount_sum_1h"),
              Aggregation("amount", "mean", "30s", name="amount_mean_30s", default=0.5),
              Aggregation("tag", "last", "1h", name="last_tag_1h"),
              Aggregation("tag", "count_distinct", None, name="tags_ever"),
              Latest("ts", name="last_seen"),
              Latest("account_id", name="echo_account")],
)

region_stats = FeatureView(
    entities=[region_account],
    source=payments,
    features=[Aggregation("*", "count", "10m", name="pair_n_10m"),
              Aggregation("qty", "sum", None, name="pair_qty_sum"),
              Latest("tag", name="pair_tag"),
              Latest("qty", name="pair_qty")],
    ttl="90s",
)

scoring = FeatureService(features=[account_stats, region_stats], logging=LoggingConfig(enabled=True, sample_rate=1.0))
'''

BASE = pd.Timestamp("2026-03-01T00:00:00Z")
TWO53 = 2 ** 53
# Distinct int64 keys that collide as float64 (2^53 and 2^53 + 1, 2^62 + 1 and 2^62), the int64 edges.
ACCOUNTS = [TWO53, TWO53 + 1, TWO53 + 2, TWO53 + 3, 2 ** 62, 2 ** 62 + 1, 2 ** 63 - 1, -(2 ** 63) + 1, 0, 7]
REGIONS = ["eu", "us", "é"]


def write_repo(root: Path) -> Path:
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: lg_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n")
    return root


def random_payments(seed: int, n: int = 250, span_s: int = 300) -> pd.DataFrame:
    """Hot keys (Pareto), bursts of equal times, nulls in keys and values."""
    rng = random.Random(seed)
    rows, t = [], 0.0
    for _ in range(n):
        t += 0.0 if rng.random() < 0.3 else rng.expovariate(n / span_s)
        hot = min(int(rng.paretovariate(1.1)) - 1, len(ACCOUNTS) - 1)
        rows.append({
            "account_id": None if rng.random() < 0.03 else ACCOUNTS[hot],
            "region": None if rng.random() < 0.05 else rng.choice(REGIONS),
            "amount": None if rng.random() < 0.1 else round(rng.uniform(-20, 900), rng.choice([0, 2, 6])),
            "qty": None if rng.random() < 0.15 else rng.choice([rng.randint(-3, 9), rng.randint(-3, 9), 2 ** 54 + 1]),
            "tag": None if rng.random() < 0.15 else rng.choice(["a", "b", "cc", "é"]),
            "ts": BASE + pd.Timedelta(microseconds=int(t * 1e6)),
        })
    df = pd.DataFrame(rows)
    for col in ("account_id", "qty"):  # exact: never through float
        df[col] = pd.array([r[col] for r in rows], dtype="Int64")
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def write_payments(root: Path, df: pd.DataFrame) -> None:
    out = root / "data" / "payments"
    out.mkdir(parents=True, exist_ok=True)
    half = len(df) // 2
    df.iloc[:half].to_parquet(out / "part-0.parquet", index=False)
    df.iloc[half:].to_parquet(out / "part-1.parquet", index=False)


def random_entity(rng: random.Random) -> dict:
    """An entity row of the scoring service: known, unknown or null keys, hot ones more often."""
    acct = rng.choice(ACCOUNTS[:4] * 3 + ACCOUNTS + [None, 12345])
    region = rng.choice(REGIONS + [None, "zz"]) if rng.random() < 0.9 else None
    return {"account_id": acct, "region": region}


def random_lookups(seed: int, events: pd.DataFrame, n: int = 40) -> List[dict]:
    """Lookups: 1-4 entity rows (repeats within a request included) at random times, at exact event
    times (ties: the event is excluded) and at window edges; some with a caller-chosen request id."""
    rng = random.Random(seed)
    times = [ts.floor("ms") for ts in events["ts"]]
    out = []
    for i in range(n):
        rows = [random_entity(rng) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.25:
            rows.append(dict(rng.choice(rows)))  # the same entity twice in one request
        kind = rng.random()
        if kind < 0.3:
            q = rng.choice(times)
        elif kind < 0.5:
            q = rng.choice(times) + pd.Timedelta(rng.choice(["30s", "1min", "90s", "10min"]))
        else:
            q = BASE + pd.Timedelta(milliseconds=rng.randint(0, 400_000))
        rid = f"req-{seed}-{i}" if rng.random() < 0.5 else None
        out.append({"rows": rows, "request_time": q, "request_id": rid})
    return out
