"""Flink: the streaming job (Kafka -> Redis + Parquet) and the Flink backfill. Nothing here imports PyFlink
at module level; the modules, from the user's call down to the job:

Runs of the streaming job (the process that starts and watches it):

* :mod:`.stream`: the API (``plan``/``explain``/``start``/``run``/``commit``), which views, paths,
  restore or start afresh, the online markers; ``FeatureStore.stream``, the CLI and ``jobs/stream.py``.
* :mod:`.handle`: a running local job (status, caught up, online flushed, stop with a savepoint).
* :mod:`.remote`: a job on a remote cluster (``flink run``, REST), the job script's arguments.
* :mod:`.offsets`: the job's progress in Kafka (end and committed offsets, the group reset).
* :mod:`.status`: the live status view; :mod:`.rest`: Flink's REST API.
* :mod:`.commit`: the offline committer (the sinks' Parquet files into the tables, each event once).
* :mod:`.handoff`: a fresh stream on a topic that lost its first records, seeded from the offline store.

The job itself:

* :mod:`.sqltypes`: Flink SQL types, literals and DuckDB's casts; :mod:`.exprs`: the definitions'
  expressions in Flink SQL (and what cannot stream); :mod:`.ingest`: the Kafka tables and the parse
  (the Java function in ``java/``, built by :mod:`.udf`); :mod:`.tables`: every table and query.
* :mod:`.job`: the job graph; :mod:`.online`: its Python functions (kernel state, Redis writer).

:mod:`.backfill`: ``backfill --engine flink`` (a batch job over the batch face's files).
"""
