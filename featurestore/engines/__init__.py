"""One module per engine: DuckDB (embedded batch) and Flink (streaming and large batch)."""
