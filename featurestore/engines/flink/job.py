"""Build the streaming job: Kafka -> parse/validate -> filter/project -> Parquet sinks + online state -> Redis.

The SQL half comes from :mod:`featurestore.engines.flink.tables` (one statement set: Kafka sources, typed
views, the Parquet sinks of stored events and of dead letters). The online half is a DataStream of
the insert-only online query (one row per event and key group, collected per entity into mini-batches by
the Java operator OnlineBatches, keyed in the JVM) through the
Python function of :mod:`featurestore.engines.flink.online`: the per-entity kernel state (tiles,
prefixes, raw events; checkpointed), which writes each entity batch's changes to Redis itself
(idempotent write scripts, pipelined; exactly once in effect, see that module).

The Python function runs in PyFlink's thread mode (embedded in the task manager) by default.
``backfill --engine flink`` is :mod:`featurestore.engines.flink.backfill`.

Late events (behind the watermark) are applied like any other: nothing waits for event time; a late
event updates the raw events and the tiles it belongs to.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from featurestore.config import RestartStrategy
from featurestore.engines.flink.online import OnlineState, progress_key
from featurestore.engines.flink.sqltypes import qi
from featurestore.engines.flink.tables import StreamPlan

WRITER_FLUSH_MS = 50  # buffered online writes reach Redis at most this much later (freshness)
BATCH_IDLE_MS = 500  # the online mini-batches also leave once no online row arrived for this long (OnlineBatches)
CHECKPOINT_WRITE_BUFFER = 1 << 20  # bytes, per state file being written
LOW_LATENCY_BUFFER_MS = 20  # unbounded runs: network buffers flush at least this often (Flink: 100 ms)


# -- building the job -------------------------------------------------------------------------------------
@dataclass
class JobOptions:
    """How to run the streaming job (see featurestore.engines.flink.stream for the defaults)."""

    job_name: str
    jars: Sequence[Path]
    checkpoint_dir: Path
    checkpoint_interval_ms: int
    bounded: bool = False
    parallelism: int = 1
    restore_path: Optional[Path] = None
    redis: dict = field(default_factory=dict)
    flush_ms: int = 500  # the online mini-batch interval: an entity's events reach Python (and Redis) in batches
    flush_rows: int = 500  # online writes per Redis pipeline, at most
    batch_idle_ms: int = BATCH_IDLE_MS  # ... or once no online row arrived for this long
    slack_ms: int = 0
    seed: Optional[dict] = None  # the online state's hand-off seed (featurestore.engines.flink.handoff.prepare)
    progress_key: str = ""
    python_mode: str = "thread"
    idle_timeout_ms: int = 2_000
    online: bool = True
    online_batch_delay_s: float = 0.0  # a pause per batch in the online operator: a busy machine, for tests (0 here)
    online_fail_file: str = ""  # tests: the online operator fails its task once this file appears (a restart)
    # restart-strategy.* options (featurestore.yaml flink.restart_strategy; config.RestartStrategy)
    restart: Dict[str, str] = field(default_factory=lambda: RestartStrategy().flink_options())
    extra_config: Dict[str, str] = field(default_factory=dict)


def _python_path() -> List[str]:
    """This interpreter's import path (site-packages, and the featurestore checkout)."""
    import site

    repo = str(Path(__file__).resolve().parents[3])
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
    # a checkpoint writes the online mini-batches' buffers (MBs) through this buffer: Flink's 4 KB made one
    # file write per 4 KB (~4% of the job's JVM samples in the checkpoints' thread)
    conf.set_string("execution.checkpointing.write-buffer-size", str(CHECKPOINT_WRITE_BUFFER))
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
    # Part of the job's own configuration, so it also holds on a remote cluster (job settings win there).
    for k, v in options.restart.items():
        conf.set_string(k, v)
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
    """The online state operator emits nothing; a DataStream branch needs a sink to be part of the job."""
    from pyflink.datastream.connectors.base import Sink
    from pyflink.java_gateway import get_gateway

    return Sink(get_gateway().jvm.org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink())


def _online_batches_keyed(t_env, select: str, batch_ms: int, idle_ms: int):
    """The online rows ``(k, v)`` of the query ``select`` collected per key into mini-batches, as a KeyedStream
    of ``(k, batch)`` keyed by ``k`` in the JVM.

    The rows reach the Java operator ``OnlineBatches`` (java/featurestore/flink/OnlineBatches.java) as
    Flink's internal rows (no conversion of their strings), chained to the query in the source's thread: it
    appends each key's event arrays to one buffer (joined with commas) and emits every key's batch each
    ``batch_ms`` of processing time, once no row arrived for ``idle_ms`` (a catch-up run that has read its
    topic: its last batches reach Python at once), at a bounded input's end, or when its buffers grow
    large. A checkpoint stores each buffer as one byte array in raw operator state (written in bulk). (Before: a processing-time
    TUMBLE window with ``ARRAY_AGG``, whose list accumulators were merged and serialized per event at every
    checkpoint: the window's thread and the checkpoints' serialization were ~37% of the job's JVM samples.)

    A batch is the UTF-8 bytes of the joined arrays (``bytes`` in Python): a String would be read char by
    char by Flink's serializer at the exchange before the Python operator.

    PyFlink's ``key_by`` computes the key in a Python operator (``AddKey``: one more JVM -> Python -> JVM
    crossing per row). The batches are ``Row(key, value)`` (a RowTypeInfo) keyed by field 0 with the Java
    ``KeyByKeySelector``: exactly what ``key_by`` gives the keyed Python operator downstream."""
    from pyflink.common import Types
    from pyflink.datastream.data_stream import DataStream, KeyedStream
    from pyflink.java_gateway import get_gateway

    jvm = get_gateway().jvm
    j_table = t_env.sql_query(f"SELECT k, v FROM (\n{select}\n)")._j_table
    internal = j_table.getResolvedSchema().toPhysicalRowDataType().bridgedTo(
        jvm.org.apache.flink.table.data.RowData._java_lang_class)
    j_rows = t_env._j_tenv.toDataStream(j_table, internal)
    value_type = Types.ROW_NAMED(["k", "b"], [Types.STRING(), Types.PRIMITIVE_ARRAY(Types.BYTE())])
    out_type = Types.ROW_NAMED(["k", "r"], [Types.STRING(), value_type])
    batcher = jvm.featurestore.flink.OnlineBatches(int(batch_ms), int(idle_ms))
    j_batches = j_rows.transform("online mini-batches", out_type.get_java_type_info(), batcher).uid("fs-online-batches")
    j_keyed = j_batches.keyBy(jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info())
    return KeyedStream(j_keyed, value_type, DataStream(j_batches))


def _barrier(t_env, table):
    """``table`` through a DataStream and back (evaluated once, then shared by its consumers). The stream
    carries Flink's internal rows (``RowData``): PyFlink's ``to_data_stream``/``from_data_stream`` convert
    each row to a ``Row`` of Java objects and back, decoding and re-encoding every string (with the
    conversion a second time for the online query, translated apart from the statement set: 9% of the
    job's JVM samples, bench/results/small-stream-profile.md)."""
    from pyflink.java_gateway import get_gateway
    from pyflink.table import Table

    jvm = get_gateway().jvm
    j_table = table._j_table
    internal = j_table.getResolvedSchema().toPhysicalRowDataType().bridgedTo(
        jvm.org.apache.flink.table.data.RowData._java_lang_class)
    j_stream = t_env._j_tenv.toDataStream(j_table, internal)
    return Table(t_env._j_tenv.fromDataStream(j_stream), t_env)


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
        if name in plan.shared:
            # Materialize once: otherwise the planner inlines the view into every consumer and each sink
            # re-parses the JSON payload (measured: several times slower with five sinks); the online rows
            # take their processing time from here (no second DataStream hop for their windows).
            table = _barrier(t_env, table)
        t_env.create_temporary_view(name, table)
    stmt_set = t_env.create_statement_set()
    for sink, select in plan.inserts:
        stmt_set.add_insert(qi(sink), t_env.sql_query(select))
    stmt_set.attach_as_datastream()
    if plan.online and options.online:
        union = "\nUNION ALL\n".join(
            f"SELECT '{g.gid}' || k AS k, v FROM (\n{g.sql}\n)" for g in plan.online)
        written = (
            _online_batches_keyed(t_env, union, options.flush_ms, options.batch_idle_ms)
            .process(OnlineState([g.to_dict() for g in plan.online], options.flush_ms, options.slack_ms,
                                 options.seed, options.redis, options.progress_key,
                                 min(options.flush_ms, WRITER_FLUSH_MS), options.flush_rows,
                                 options.online_batch_delay_s, options.online_fail_file,
                                 idle_ms=options.batch_idle_ms),
                     output_type=Types.STRING())
            .name("online state -> redis").uid("fs-online-state")
        )
        written.sink_to(_discarding_sink()).name("end of online path").uid("fs-online-end")
    return BuiltJob(env, t_env, stmt_set, plan)


__all__ = ["OnlineState", "JobOptions", "BuiltJob", "build", "configuration",
           "progress_key"]
