"""Flink: the streaming job (Kafka -> Redis + Parquet) and the Flink backfill (docs/streaming.md)."""
