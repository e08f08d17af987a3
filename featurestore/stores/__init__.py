"""Storage backends: the offline store (Parquet) and the online store."""
