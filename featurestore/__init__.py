"""featurestore: one set of feature definitions, a DuckDB batch job and a Flink streaming job,
a Parquet offline store and a Redis online store, with point-in-time-correct training sets.

Definitions import from here without pulling in DuckDB, Flink or Redis::

    from featurestore import Entity, Source, ParquetFiles, KafkaTopic, FeatureView, Aggregation, Latest
    from featurestore import RequestSource, RequestFeatureView   # request-time features
"""

from featurestore.errors import FeatureStoreError
from featurestore.model import (
    Aggregation,
    DuckDBTable,
    Entity,
    FeatureService,
    FeatureView,
    KafkaTopic,
    Latest,
    LoggingConfig,
    ParquetFiles,
    RequestFeatureView,
    RequestSource,
    Source,
    request_feature_view,
)

__version__ = "0.1.0"

__all__ = [
    "Aggregation",
    "DuckDBTable",
    "Entity",
    "FeatureService",
    "FeatureStore",
    "FeatureStoreError",
    "FeatureView",
    "KafkaTopic",
    "Latest",
    "LoggingConfig",
    "ParquetFiles",
    "RequestFeatureView",
    "RequestSource",
    "Source",
    "request_feature_view",
]


def __getattr__(name):
    # FeatureStore pulls in DuckDB and friends; definitions files never need it.
    if name == "FeatureStore":
        from featurestore.store import FeatureStore

        return FeatureStore
    raise AttributeError(name)
