"""The starter repo ``featurestore init`` writes: a config, one small valid definitions file over the
sample data ``featurestore generate`` writes, and ``example.py`` (a training set and online lookups)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import List

from featurestore.errors import FeatureStoreError

CONFIG = """\
# featurestore project config. Every key can be overridden by an environment variable
# (FEATURESTORE_REDIS_URL, FEATURESTORE_KAFKA_BOOTSTRAP, FEATURESTORE_OFFLINE_ROOT, ...).
project: {project}
definitions: definitions
registry: .featurestore/registry.json
offline_store:
  root: .featurestore/offline
online_store:
  redis_url: redis://127.0.0.1:6390/0
  tls: false
kafka:
  bootstrap_servers: 127.0.0.1:19092
"""

DEFINITIONS = '''\
"""Starter definitions: edit, then `featurestore plan` and `featurestore apply`.

`featurestore generate` writes sample transactions to data/transactions/ (this source's batch face).
"""

from featurestore import Aggregation, Entity, FeatureService, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])

transactions = Source(
    schema={
        "event_id": "string",
        "user_id": "string",
        "merchant_id": "string",
        "amount": "float64",
        "currency": "string",
        "country": "string",
        "channel": "string",
        "card_present": "bool",
        "ts": "timestamp",
    },
    timestamp="ts",
    batch=ParquetFiles("data/transactions/*.parquet"),
    stream=KafkaTopic("transactions", format="json"),
    watermark_delay="5s",
    tiebreak=("event_id",),
)

user_activity = FeatureView(
    entities=[user],
    source=transactions,
    features=[
        Aggregation("*", "count", "1h", name="tx_1h"),
        Aggregation("amount", "sum", "1d", name="amount_1d"),
        Aggregation("merchant_id", "count_distinct", "7d", name="merchants_7d"),
        Latest("amount", name="last_amount"),
    ],
    ttl="7d",
)

my_model = FeatureService(features=[user_activity])
'''

EXAMPLE = '''\
"""The starter's Python side: a point-in-time training set, then online lookups.

    featurestore generate && featurestore apply && featurestore backfill && featurestore materialize
    python example.py
"""

import pandas as pd

from featurestore import FeatureStore

store = FeatureStore(".")

# Training set: one row per (user, time); every feature as of that time (events strictly before it).
tx = pd.read_parquet("data/transactions", columns=["user_id", "ts"])
entities = tx.sample(n=min(1_000, len(tx)), random_state=1).rename(columns={"ts": "event_timestamp"})
training = store.get_historical_features(entities, feature_service="my_model", save_as="my_model_training")
print(f"training set: {len(training):,} rows x {training.shape[1]} columns, saved as 'my_model_training'")
print(training.head().to_string())

# Online: the same features for two users, from Redis (after `featurestore materialize`), at the end of
# the generated history.
users = entities["user_id"].drop_duplicates().head(2).tolist()
result = store.get_online_features([{"user_id": u} for u in users], feature_service="my_model",
                                   request_time=tx["ts"].max() + pd.Timedelta(seconds=1))
print("online:")
print(result.to_df().to_string())
'''

GITIGNORE = """\
.featurestore/
data/
"""


def write_starter(path: Path) -> List[Path]:
    """Write the starter files under ``path``; refuses to overwrite an existing repo."""
    path = Path(path)
    config = path / "featurestore.yaml"
    defs = path / "definitions" / "features.py"
    example = path / "example.py"
    ignore = path / ".gitignore"
    for existing in (config, defs, example):
        if existing.exists():
            raise FeatureStoreError(f"{existing} already exists; init does not overwrite a repo")
    defs.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(project=re.sub(r"[^A-Za-z0-9_]", "_", path.resolve().name) or "default"))
    defs.write_text(DEFINITIONS)
    example.write_text(EXAMPLE)
    written = [config, defs, example]
    if not ignore.exists():
        ignore.write_text(GITIGNORE)
        written.append(ignore)
    return written
