"""The starter repo ``featurestore init`` writes: a config and one small, valid definitions file."""

from __future__ import annotations

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
"""Starter definitions: edit, then `featurestore plan` and `featurestore apply`."""

from featurestore import Aggregation, Entity, FeatureService, FeatureView, KafkaTopic, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])

events = Source(
    schema={"user_id": "string", "amount": "float64", "ts": "timestamp"},
    timestamp="ts",
    batch=ParquetFiles("data/events/*.parquet"),
    stream=KafkaTopic("events"),
    watermark_delay="5s",
)

user_activity = FeatureView(
    entities=[user],
    source=events,
    features=[
        Aggregation("*", "count", "1h", name="events_1h"),
        Aggregation("amount", "sum", "1d", name="amount_1d"),
        Latest("amount", name="last_amount"),
    ],
    ttl="7d",
)

my_model = FeatureService(features=[user_activity])
'''


def write_starter(path: Path) -> List[Path]:
    """Write the starter files under ``path``; refuses to overwrite an existing repo."""
    path = Path(path)
    config = path / "featurestore.yaml"
    defs = path / "definitions" / "features.py"
    for existing in (config, defs):
        if existing.exists():
            raise FeatureStoreError(f"{existing} already exists; init does not overwrite a repo")
    defs.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(CONFIG.format(project=path.resolve().name.replace("-", "_") or "default"))
    defs.write_text(DEFINITIONS)
    return [config, defs]
