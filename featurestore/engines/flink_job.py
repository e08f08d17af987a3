"""Build the streaming job: Kafka -> parse/validate -> filter/project -> Parquet sinks + Redis writer.

The SQL half comes from :mod:`featurestore.engines.flink_sql` (one statement set: Kafka sources, typed
views, the Parquet sinks of stored events and of dead letters). The online half is a DataStream of
the insert-only online query (one row per event and key group, keyed in the JVM) through the two
Python functions of :mod:`featurestore.engines.flink_online`: the per-entity kernel state (tiles,
prefixes, raw events; checkpointed) and the Redis writer (idempotent write scripts, pipelined).

The Python functions run in PyFlink's thread mode (embedded in the task manager) by default.
``run_backfill`` is ``backfill --engine flink``: the backfill's rows by a Flink batch job.

Late events (behind the watermark) are applied like any other: nothing waits for event time; a late
event updates the raw events and the tiles it belongs to.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from featurestore.engines.flink_online import OnlineState, RedisWriter, progress_key
from featurestore.engines.flink_sql import StreamPlan, qi

WRITER_FLUSH_MS = 50  # the Redis writer flushes its buffer at least this often (freshness)
LOW_LATENCY_BUFFER_MS = 20  # unbounded runs: network buffers flush at least this often (Flink: 100 ms)


# -- building the job -------------------------------------------------------------------------------------
@dataclass
class JobOptions:
    """How to run the streaming job (see featurestore.streaming for the defaults)."""

    job_name: str
    jars: Sequence[Path]
    checkpoint_dir: Path
    checkpoint_interval_ms: int
    bounded: bool = False
    parallelism: int = 1
    restore_path: Optional[Path] = None
    redis: dict = field(default_factory=dict)
    flush_ms: int = 500  # the online mini-batch window: an entity's events reach Python (and Redis) in batches
    flush_rows: int = 500
    slack_ms: int = 0
    progress_key: str = ""
    python_mode: str = "thread"
    idle_timeout_ms: int = 2_000
    barriers: bool = True
    online: bool = True
    extra_config: Dict[str, str] = field(default_factory=dict)


def _python_path() -> List[str]:
    """This interpreter's import path (site-packages, and the featurestore checkout)."""
    import site

    repo = str(Path(__file__).resolve().parents[2])
    paths = [*site.getsitepackages(), repo]
    return [p for i, p in enumerate(paths) if p and p not in paths[:i]]


def configuration(options: JobOptions):
    from pyflink.common import Configuration

    conf = Configuration()
    if options.jars:
        conf.set_string("pipeline.jars", ";".join(Path(j).resolve().as_uri() for j in options.jars))
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", str(options.parallelism))
    conf.set_string("pipeline.name", options.job_name)
    conf.set_string("pipeline.object-reuse", "true")  # no defensive copies between chained operators
    conf.set_string("execution.checkpointing.dir", Path(options.checkpoint_dir).resolve().as_uri())
    conf.set_string("execution.checkpointing.interval", f"{int(options.checkpoint_interval_ms)} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.externalized-checkpoint-retention", "RETAIN_ON_CANCELLATION")
    conf.set_string("execution.checkpointing.num-retained", "2")
    conf.set_string("table.exec.source.idle-timeout", f"{int(options.idle_timeout_ms)} ms")
    if not options.bounded:  # live: an event crosses two network exchanges before Redis; keep each short
        conf.set_string("execution.buffer-timeout.interval", f"{LOW_LATENCY_BUFFER_MS} ms")
    if options.python_mode == "thread":
        # Python runs embedded in the task manager (pemja): about twice the throughput of process mode
        # here. It imports from python.pythonpath, not from the interpreter's own path.
        conf.set_string("python.execution-mode", "thread")
        conf.set_string("python.pythonpath", os.pathsep.join(_python_path()))
    # Python keyed state: cache many entities' state on the Python side (default 1000 keys)
    conf.set_string("python.state.cache-size", "20000")
    conf.set_string("python.map-state.read-cache-size", "20000")
    conf.set_string("python.map-state.write-cache-size", "20000")
    conf.set_string("restart-strategy.type", "fixed-delay")
    conf.set_string("restart-strategy.fixed-delay.attempts", "3")
    conf.set_string("restart-strategy.fixed-delay.delay", "2 s")
    if options.restore_path is not None:
        conf.set_string("execution.state-recovery.path", Path(options.restore_path).resolve().as_uri())
    for k, v in options.extra_config.items():
        conf.set_string(k, v)
    return conf


@dataclass
class BuiltJob:
    env: object
    t_env: object
    statement_set: object
    plan: StreamPlan


def _discarding_sink():
    """The Redis writer emits nothing; a DataStream branch needs a sink to be part of the job."""
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    return Sink(get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def _online_batches_keyed(t_env, select: str, batch_ms: int):
    """The online rows ``(k, v)`` of the query ``select`` collected per key into mini-batches, as a
    KeyedStream of ``(k, batch)`` keyed by ``k`` in the JVM.

    A processing-time tumbling window of ``batch_ms`` per key joins the event arrays of one key with commas
    (``ARRAY_AGG`` keeps them in a list state, ``ARRAY_JOIN`` concatenates once when the window fires:
    ``LISTAGG`` would copy its whole accumulator at every event, quadratic for a hot key). The window's
    state is checkpointed with the Kafka offsets, like every other operator's.

    PyFlink's ``key_by`` computes the key in a Python operator (``AddKey``: one more JVM -> Python -> JVM
    crossing per row). Its output is ``Row(key, value)`` (a RowTypeInfo) keyed by field 0 with the Java
    ``KeyByKeySelector``; SQL makes the same rows here, so the keyed Python operator downstream gets
    exactly what ``key_by`` gives it."""
    from pyflink.common import Types
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway
    from pyflink.table import Schema

    rows = t_env.to_data_stream(t_env.sql_query(select))
    timed = t_env.from_data_stream(rows, Schema.new_builder().column("k", "STRING").column("v", "STRING")
                                   .column_by_expression("__pt", "PROCTIME()").build())
    t_env.create_temporary_view("fs_online_rows", timed)
    seconds = f"{int(batch_ms) // 1000}.{int(batch_ms) % 1000:03d}"
    batches = (f"SELECT k, ARRAY_JOIN(ARRAY_AGG(v), ',') AS b\n"
               f"FROM TABLE(TUMBLE(TABLE fs_online_rows, DESCRIPTOR(`__pt`), INTERVAL '{seconds}' SECOND))\n"
               f"GROUP BY k, window_start, window_end")
    value_type = Types.ROW_NAMED(["k", "b"], [Types.STRING(), Types.STRING()])
    pairs = t_env.sql_query(f"SELECT k, ROW(k, b) AS r FROM (\n{batches}\n)")
    stream = t_env.to_append_stream(pairs, Types.ROW_NAMED(["k", "r"], [Types.STRING(), value_type]))
    j_keyed = stream._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                                          Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, value_type, stream)


def build(plan: StreamPlan, options: JobOptions) -> BuiltJob:
    """The job (not yet executed) for ``plan``: SQL sinks attached to the DataStream environment, plus the
    online writer. Execute with ``built.env.execute_async(options.job_name)``."""
    from pyflink.common import Types
    from pyflink.datastream import CheckpointingMode, StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

    env = StreamExecutionEnvironment.get_execution_environment(configuration(options))
    env.enable_checkpointing(int(options.checkpoint_interval_ms), CheckpointingMode.EXACTLY_ONCE)
    t_env = StreamTableEnvironment.create(env)
    for stmt in plan.ddl:
        t_env.execute_sql(stmt)
    for name, select in plan.views:
        table = t_env.sql_query(select)
        if options.barriers:
            # Materialize once: otherwise the planner inlines the view into every consumer and each sink
            # re-parses the JSON payload (measured: several times slower with five sinks).
            table = t_env.from_data_stream(t_env.to_data_stream(table))
        t_env.create_temporary_view(name, table)
    stmt_set = t_env.create_statement_set()
    for sink, select in plan.inserts:
        stmt_set.add_insert(qi(sink), t_env.sql_query(select))
    stmt_set.attach_as_datastream()
    if plan.online and options.online:
        union = "\nUNION ALL\n".join(
            f"SELECT '{g.gid}' || k AS k, v FROM (\n{g.sql}\n)" for g in plan.online)
        values = (
            _online_batches_keyed(t_env, union, options.flush_ms)
            .process(OnlineState([g.to_dict() for g in plan.online], options.flush_ms, options.slack_ms),
                     output_type=Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG()]))
            .name("online state").uid("fs-online-state")
        )
        written = (
            values.key_by(lambda x: 0, key_type=Types.INT())
            .process(RedisWriter(options.redis, options.progress_key, min(options.flush_ms, WRITER_FLUSH_MS),
                                 options.flush_rows))
            .name("redis writer").uid("fs-redis-writer").set_parallelism(1)
        )
        written.sink_to(_discarding_sink()).name("end of online path").uid("fs-online-end").set_parallelism(1)
    return BuiltJob(env, t_env, stmt_set, plan)


# -- backfill --engine flink ------------------------------------------------------------------------------
def _batch_files(store, view_name: str) -> List[Path]:
    from featurestore.errors import FeatureStoreError
    from featurestore.model import ParquetFiles

    batch = store.repo.views[view_name].source.batch
    if not isinstance(batch, ParquetFiles):
        raise FeatureStoreError(f"view '{view_name}': the Flink backfill reads Parquet batch faces only "
                                f"(source '{store.repo.views[view_name].source.name}' has {type(batch).__name__})")
    pattern = Path(batch.path)
    pattern = pattern if pattern.is_absolute() else store.repo_path / pattern
    import glob as _glob

    files = sorted(Path(f) for f in _glob.glob(str(pattern), recursive=True) if Path(f).is_file())
    return [f for f in files if not f.name.startswith((".", "_"))]


def run_backfill(store, start=None, end=None, views=None, parallelism: int = 1):
    """``backfill --engine flink``: the backfill's rows computed by a Flink batch job over the Parquet batch
    faces (every rule of ``duckdb_sql.events_sql``, rendered by ``flink_sql.batch_events_sql``), then
    written like the DuckDB backfill (``OfflineTable.write_range``: the range is replaced atomically).
    Returns one ``BackfillResult`` per view (the rejected-row counts come from DuckDB's ``rejected_sql``)."""
    import shutil
    import tempfile

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    from featurestore.engines import duckdb_sql as dsql
    from featurestore.engines import flink_sql
    from featurestore.engines.duckdb_engine import ALL_TIME, BackfillResult, arrow_schema
    from featurestore.errors import FeatureStoreError, RequestError
    from featurestore.sdk.timeutil import to_epoch_ms
    from featurestore.streaming import _jars

    t0 = time.perf_counter()
    names = list(store.repo.views) if views is None else list(views)
    for n in names:
        if n not in store.repo.views:
            raise RequestError(f"unknown feature view '{n}'")
    start_ms, end_ms = to_epoch_ms(start, "start"), to_epoch_ms(end, "end")
    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(j.resolve().as_uri() for j in _jars(store)))
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", str(parallelism))
    t_env = TableEnvironment.create(EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build())
    (store.repo_path / ".featurestore").mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="flink-backfill-", dir=store.repo_path / ".featurestore"))
    try:
        stmts = t_env.create_statement_set()
        outputs = {}
        for n in names:
            cv = store.compiled(n)
            files = _batch_files(store, n)
            if not files:
                raise FeatureStoreError(f"view '{n}': no files match the batch face")
            schema = pq.read_schema(files[0])
            file_cols = [(f.name, *flink_sql.arrow_column_type(f.name, f.type)) for f in schema]
            file_types = {c: d for c, d, _ in file_cols}
            parts = []
            for i, f in enumerate(files):
                if pq.read_schema(f).remove_metadata() != schema.remove_metadata():
                    raise FeatureStoreError(f"view '{n}': {f.name} has another schema than {files[0].name}; "
                                            "the Flink backfill reads files of one schema")
                table = f"fs_batch_{n}_{i}"
                t_env.execute_sql(flink_sql.parquet_table_ddl(table, f.resolve().as_uri(), [(c, d) for c, _, d in file_cols]))
                parts.append(f"SELECT * FROM {flink_sql.qi(table)}")
            relation = "(\n" + "\nUNION ALL\n".join(parts) + "\n)"
            select = flink_sql.batch_events_sql(cv, flink_sql.compile_view_exprs(cv), relation, file_types, start_ms, end_ms)
            out = tmp / n
            sink = f"fs_backfill_{n}"
            cols = ",\n  ".join(f"{flink_sql.qi(c)} {flink_sql.FLINK_TYPES[d]}" for c, d in cv.stored_columns)
            t_env.execute_sql(f"CREATE TEMPORARY TABLE {flink_sql.qi(sink)} (\n  {cols}\n) "
                              + flink_sql._with({"connector": "filesystem", "path": out.resolve().as_uri(),
                                                 **flink_sql.PARQUET_OPTIONS}))
            stmts.add_insert(flink_sql.qi(sink), t_env.sql_query(select))
            outputs[n] = out
        stmts.execute().wait()
        con = store._connect()
        results = []
        lo, hi = ALL_TIME[0] if start_ms is None else start_ms, end_ms  # no end: up to the last event read
        for n in names:
            cv = store.compiled(n)
            v0 = time.perf_counter()
            files = sorted(p for p in outputs[n].rglob("*") if p.is_file() and not p.name.startswith((".", "_")))
            schema = arrow_schema(cv)
            rows = 0

            def batches(files=files, schema=schema):
                nonlocal rows
                for f in files:
                    for b in pq.ParquetFile(f).iter_batches():
                        b = pa.Table.from_batches([b]).cast(pa.schema([
                            pa.field(fl.name, pa.timestamp("ms") if fl.name == cv.ts_column else fl.type)
                            for fl in schema])).to_batches()
                        for x in b:
                            rows += x.num_rows
                            yield x

            table = store.offline.table(n, ts_column=cv.ts_column)
            reader_schema = pa.schema([pa.field(f.name, pa.timestamp("ms") if f.name == cv.ts_column else f.type)
                                       for f in schema])
            version = table.write_range(pa.RecordBatchReader.from_batches(reader_schema, batches()), lo, hi)
            relation = store._source_relation(n)
            null_time, null_key = con.sql(dsql.rejected_sql(cv, relation, start_ms, end_ms)).fetchall()[0]
            results.append(BackfillResult(n, rows, int(null_time), int(null_key), version,
                                          time.perf_counter() - v0 + (v0 - t0) / len(names)))
        return results
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["OnlineState", "RedisWriter", "JobOptions", "BuiltJob", "build", "configuration", "run_backfill",
           "progress_key"]
