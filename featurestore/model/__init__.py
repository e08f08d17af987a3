"""The definition model: frozen, typed objects, importable without DuckDB, Flink or Redis."""

from featurestore.model.base import Definition
from featurestore.model.durations import format_duration, parse_duration
from featurestore.model.entity import Entity
from featurestore.model.features import Aggregation, Feature, Latest
from featurestore.model.request import RequestFeatureView, RequestSource, request_feature_view
from featurestore.model.service import FeatureService, LoggingConfig
from featurestore.model.source import DuckDBTable, KafkaTopic, ParquetFiles, Source
from featurestore.model.view import FeatureSelection, FeatureView

__all__ = [
    "Aggregation",
    "Definition",
    "DuckDBTable",
    "Entity",
    "Feature",
    "FeatureSelection",
    "FeatureService",
    "FeatureView",
    "KafkaTopic",
    "Latest",
    "LoggingConfig",
    "ParquetFiles",
    "RequestFeatureView",
    "RequestSource",
    "Source",
    "format_duration",
    "parse_duration",
    "request_feature_view",
]
