"""The engines: DuckDB (embedded batch, ``duckdb_*``) and Flink (streaming and large batch, the ``flink`` package)."""
