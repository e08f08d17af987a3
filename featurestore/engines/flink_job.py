"""Build the streaming job: Kafka -> parse/validate -> filter/project -> Parquet sinks + Redis writer.

The SQL half comes from :mod:`featurestore.engines.flink_sql` (one statement set: Kafka sources, typed
views, the Parquet sinks of stored events and of dead letters). The online half is a DataStream of
the insert-only online query (one row per event and key group) through two Python functions:

1. :class:`EntityState`, keyed by (key group, entity): keeps the entity's events in Flink keyed state
   (``MapState`` keyed by the Kafka (partition, offset) of the event, so a replay after a restore
   cannot add an event twice), trims what no request at or after the horizon can need (views with a
   bounded retention), and on a processing-time timer (``flush_ms`` after the entity changed, longer
   for big entities) emits the **whole** online value of each of its views: the same JSON the
   ``materialize`` job writes (:func:`featurestore.stores.online_redis.encode_state`), events in SPEC
   event order. State is checkpointed: after a crash the job restarts from the last checkpoint,
   Kafka offsets rewind with it, and replaying rebuilds the same state, hence the same values.
2. :class:`RedisWriter` (one instance): buffers those values in ``ListState`` (checkpointed, so a
   value emitted before a checkpoint is never lost) and writes them with one pipelined round trip
   per ``flush_rows`` values or 300 ms. Writes overwrite whole values: at-least-once delivery of
   idempotent writes, exactly-once in effect. It also stores the state operator's progress reports
   in Redis (after the values that preceded them), which is how a bounded run knows it is done.

The Python functions run in PyFlink's thread mode (embedded in the task manager) by default.
``run_backfill`` is ``backfill --engine flink``: the backfill's rows by a Flink batch job.

Nothing is aggregated in Flink: features are computed at read time from stored events (DuckDB
offline, :mod:`featurestore.online` online), so there are no windows, and a late event (behind the
watermark) is applied like any other.
"""

from __future__ import annotations

import json
import os
import sys
import time
from bisect import bisect_left
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from pyflink.datastream.functions import KeyedProcessFunction

from featurestore.engines.flink_sql import StreamPlan, qi

PARTITION_SHIFT = 40  # state key of an event: partition << 40 | offset
CACHE_KEYS = 20_000  # parsed entity states kept in Python (a cache of keyed state, never the truth)
FLUSH_MS_PER_EVENT = 0.5  # an entity of n events is rewritten at most every flush_ms + n * this ms
MAX_FLUSH_MS = 30_000
WRITER_FLUSH_MS = 50  # the Redis writer flushes its buffer at least this often (freshness)
LOW_LATENCY_BUFFER_MS = 20  # unbounded runs: network buffers flush at least this often (Flink: 100 ms)


# -- the Python functions ---------------------------------------------------------------------------------
PROGRESS = -1  # the pxat field of a progress report travelling from the state operator to the writer
HEARTBEAT_MS = 1_000


def log_stats(what: str, stats: Optional[dict]) -> None:
    """Where the Python side spent its time (logged when the operator closes)."""
    if stats:
        import logging

        logging.getLogger("featurestore.stream").info("%s: %s", what, json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}))


def progress_key(project: str, run_id: str) -> str:
    """Redis hash where a run's online path reports progress (field ``state:<instance>``: JSON ``at``,
    ``dirty``, ``emitted``, ``events``, seconds spent; field ``writer``: JSON ``at``, ``written``, ...)."""
    return f"fs:{project}:_stream:_progress:{run_id}"


def _subtask_index(runtime_context) -> int:
    """The operator's subtask index (PyFlink 2.3's thread mode lacks get_index_of_this_subtask)."""
    for get in (lambda: runtime_context.get_index_of_this_subtask(),
                lambda: runtime_context.get_task_info().get_index_of_this_subtask()):
        try:
            return int(get())
        except Exception:
            continue
    return 0


def _order_key(n_order: int):
    def key(ev):
        return tuple((0, None) if x is None else (1, x) for x in ev[:n_order])
    return key


class EntityState(KeyedProcessFunction):
    """Keyed by ``"<group>" + <join-key JSON>``: the entity's events in state; emits whole online values,
    and progress reports (``dirty`` = entities with a flush pending) that the writer stores in Redis after
    the values emitted before them: a report with ``dirty == 0`` means everything this operator received
    until then is in Redis."""

    def __init__(self, groups: List[dict], flush_ms: int, slack_ms: int = 0,
                 ms_per_event: float = FLUSH_MS_PER_EVENT):
        self.groups = {g["gid"]: g for g in groups}
        self.flush_ms = max(1, int(flush_ms))
        self.slack_ms = int(slack_ms)
        self.ms_per_event = float(ms_per_event)

    def open(self, runtime_context):
        from pyflink.common import Types
        from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

        self.events = runtime_context.get_map_state(MapStateDescriptor("events", Types.LONG(), Types.STRING()))
        self.trimmed = runtime_context.get_state(ValueStateDescriptor("trimmed", Types.PICKLED_BYTE_ARRAY()))
        self.subtask = _subtask_index(runtime_context)
        self.instance = f"{self.subtask}:{os.getpid()}:{id(self):x}"  # distinct across subtasks and restarts
        self.cache: "OrderedDict[str, dict]" = OrderedDict()
        self.order_keys = {gid: _order_key(g["n_order"]) for gid, g in self.groups.items()}
        # Not state, only shortcuts: ``dirty`` = a flush timer is pending (timers are checkpointed; after a
        # restore a key missing here just gets one more timer); ``clean`` = flushed by this process and
        # unchanged since (a restored timer of a key not in it always flushes).
        self.dirty = set()
        self.clean = set()
        self.sizes: Dict[str, int] = {}  # events per entity at its last flush (a hint for the flush interval)
        self.heartbeat_at = None
        self.stats = {"events": 0, "flushes": 0, "values": 0, "flushed_events": 0, "element_s": 0.0, "flush_s": 0.0}

    def close(self):
        log_stats("online state", getattr(self, "stats", None))

    def process_element(self, row, ctx):
        t0 = time.perf_counter()
        key, p, o, v = row[0], row[1], row[2], row[3]
        ek = (int(p) << PARTITION_SHIFT) | int(o)
        self.events.put(ek, v)
        cached = self.cache.get(key)
        if cached is not None:
            cached[ek] = self._entry(key, ek, v)
        self.clean.discard(key)
        if key not in self.dirty:
            self.dirty.add(key)
            timers = ctx.timer_service()
            # Every value is rewritten whole: a big entity flushes less often (one rewrite per
            # FLUSH_MS_PER_EVENT * size at most), so catching up a backlog stays about linear. Times are
            # aligned to a grid of flush_ms, so pending flushes fire together.
            size = len(cached) if cached is not None else self.sizes.get(key, 0)
            every = min(MAX_FLUSH_MS, self.flush_ms + int(size * self.ms_per_event))
            every = (every + self.flush_ms - 1) // self.flush_ms * self.flush_ms
            timers.register_processing_time_timer((timers.current_processing_time() // every + 1) * every)
        self.stats["events"] += 1
        self.stats["element_s"] += time.perf_counter() - t0

    def on_timer(self, timestamp, ctx):
        key = ctx.get_current_key()
        if timestamp == self.heartbeat_at:
            self.heartbeat_at = None
        out = []
        if key not in self.clean:
            t0 = time.perf_counter()
            out = list(self._flush(key))
            self.dirty.discard(key)
            self.clean.add(key)
            self.stats["flushes"] += 1
            self.stats["values"] += len(out)
            self.stats["flush_s"] += time.perf_counter() - t0
        if not self.dirty:
            now = ctx.timer_service().current_processing_time()
            report = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items()}
            report.update(at=now, dirty=0, emitted=self.stats["values"], subtask=self.subtask, instance=self.instance)
            out.append(("", json.dumps(report), PROGRESS))
            if self.heartbeat_at is None:  # keep reporting while idle (on this key's timer)
                self.heartbeat_at = now + HEARTBEAT_MS
                ctx.timer_service().register_processing_time_timer(self.heartbeat_at)
        return out

    def _entry(self, key: str, ek: int, v: str) -> tuple:
        """A cached event: ``(order key, event key, event)``. The order key (SPEC event order) is computed
        once per event, so a flush sorts the tuples in C (the event keys are unique: ``e`` is never compared)."""
        e = json.loads(v)
        return self.order_keys[int(key[: key.index("[")])](e), ek, e

    def _load(self, key: str) -> dict:
        """The entity's events, ``event key -> _entry``, from the cache or (on a miss) from keyed state."""
        cached = self.cache.get(key)
        if cached is None:
            cached = {ek: self._entry(key, ek, v) for ek, v in self.events.items()}
            self.cache[key] = cached
            if len(self.cache) > CACHE_KEYS:
                self.cache.popitem(last=False)
        else:
            self.cache.move_to_end(key)
        return cached

    def _flush(self, key: str):
        from featurestore.stores.online_redis import SLACK_MS, encode_entity, encode_state

        gid = int(key[: key.index("[")])
        group = self.groups[gid]
        entity = encode_entity(json.loads(key[key.index("["):]))
        evs = self._load(key)
        ordered = [(ek, e) for _, ek, e in sorted(evs.values())]
        needed = set()
        before = self.trimmed.value() or []
        trimmed = set(before)
        now = int(time.time() * 1000)
        for vi, view in enumerate(group["views"]):
            flag = view["flag"]
            mine = [(ek, e) for ek, e in ordered if e[flag]]
            if not mine:
                continue
            horizon = None
            if not view["keep_all"]:
                cutoff = mine[-1][1][0] - view["window_ms"] - self.slack_ms
                i = bisect_left([e[0] for _, e in mine], cutoff)
                start = i - 1 if view["keep_last_before"] and i > 0 else i
                if start > 0:
                    trimmed.add(vi)
                mine = mine[start:]
                if vi in trimmed:
                    horizon = cutoff + view["window_ms"]
            needed.update(ek for ek, _ in mine)
            self.stats["flushed_events"] += len(mine)
            ts = [e[0] for _, e in mine]
            cols = [[e[i] for _, e in mine] for i in view["inputs"]]
            value = encode_state(view["fingerprint"], horizon, ts, cols)
            pxat = max(now, ts[-1]) + view["window_ms"] + SLACK_MS if view["expires"] else 0
            yield view["key_prefix"] + entity, value, pxat
        for ek in [ek for ek in evs if ek not in needed]:
            self.events.remove(ek)
            del evs[ek]
        self.sizes[key] = len(evs)
        if len(trimmed) != len(before):
            self.trimmed.update(sorted(trimmed))


class RedisWriter(KeyedProcessFunction):
    """One instance (keyed by a constant): buffers (key, value, pxat) in ListState; one pipelined write
    per ``flush_rows`` values or ``flush_ms``. Progress reports are stored in the progress hash in the same
    pipeline, after the values that preceded them."""

    def __init__(self, redis: dict, progress_key: str, flush_ms: int, flush_rows: int):
        self.redis = redis
        self.progress_key = progress_key
        self.flush_ms = max(1, int(flush_ms))
        self.flush_rows = max(1, int(flush_rows))

    def open(self, runtime_context):
        from pyflink.common import Types
        from pyflink.datastream.state import ListStateDescriptor

        from featurestore.stores.online_redis import connect

        self.buffer = runtime_context.get_list_state(
            ListStateDescriptor("buffer", Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG()])))
        password = self.redis.get("password") or os.environ.get("FEATURESTORE_REDIS_PASSWORD") or None
        self.client = connect(self.redis["url"], password, bool(self.redis.get("tls")))
        self.pending = 0  # values buffered since the last flush (a hint; restored ones flush on their timer)
        self.timer_at = None
        self.stats = {"values": 0, "writes": 0, "round_trips": 0, "bytes": 0, "flush_s": 0.0}

    def close(self):
        log_stats("redis writer", getattr(self, "stats", None))
        client = getattr(self, "client", None)
        if client is not None:
            client.close()

    def process_element(self, item, ctx):
        self.buffer.add(item)
        self.pending += 1
        if item[2] != PROGRESS:
            self.stats["values"] += 1
        if self.pending >= self.flush_rows:
            self._flush()
        elif self.timer_at is None:
            timers = ctx.timer_service()
            self.timer_at = timers.current_processing_time() + self.flush_ms
            timers.register_processing_time_timer(self.timer_at)

    def on_timer(self, timestamp, ctx):
        if timestamp == self.timer_at:
            self.timer_at = None
        self._flush()
        return ()

    def _flush(self):
        t0 = time.perf_counter()
        items = list(self.buffer.get() or [])
        self.pending = 0
        if not items:
            return
        latest, reports = {}, {}
        for k, v, pxat in items:
            if pxat == PROGRESS:
                doc = json.loads(v)
                reports[f"state:{doc['instance']}"] = v
            else:
                latest[k] = (v, pxat)  # a later value of a key replaces an earlier one
        pipe = self.client.pipeline(transaction=False)
        for k, (v, pxat) in latest.items():
            if pxat:
                pipe.set(k, v, pxat=int(pxat))
            else:
                pipe.set(k, v)
        self.stats["writes"] += len(latest)
        self.stats["flush_s"] += time.perf_counter() - t0
        self.stats["round_trips"] += 1
        self.stats["bytes"] += sum(len(v) for v, _ in latest.values())
        report = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items()}
        reports["writer"] = json.dumps({**report, "at": int(time.time() * 1000), "written": self.stats["writes"]})
        pipe.hset(self.progress_key, mapping=reports)
        pipe.expire(self.progress_key, 86_400)
        pipe.execute()
        self.buffer.clear()


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
    flush_ms: int = 500
    flush_rows: int = 500
    slack_ms: int = 0
    progress_key: str = ""
    python_mode: str = "thread"
    flush_ms_per_event: float = FLUSH_MS_PER_EVENT
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


def _online_rows_keyed(t_env, select: str):
    """The online rows ``(k, p, o, v)`` of the query ``select`` as a KeyedStream keyed by ``k``, keyed in
    the JVM.

    PyFlink's ``key_by`` computes the key in a Python operator (``AddKey``: one more JVM -> Python ->
    JVM crossing per row, about a third of the online path's per-row cost here). Its output is
    ``Row(key, value)`` (a RowTypeInfo) keyed by field 0 with the Java ``KeyByKeySelector``; SQL makes
    the same rows here, so the keyed Python operator downstream gets exactly what ``key_by`` gives it."""
    from pyflink.common import Types
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    value_type = Types.ROW_NAMED(["k", "p", "o", "v"], [Types.STRING(), Types.INT(), Types.LONG(), Types.STRING()])
    pairs = t_env.sql_query(f"SELECT k, ROW(k, p, o, v) AS r FROM (\n{select}\n)")
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
            f"SELECT '{g.gid}' || k AS k, p, o, v FROM (\n{g.sql}\n)" for g in plan.online)
        values = (
            _online_rows_keyed(t_env, union)
            .process(EntityState([g.to_dict() for g in plan.online], options.flush_ms, options.slack_ms,
                                 options.flush_ms_per_event),
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


__all__ = ["EntityState", "RedisWriter", "JobOptions", "BuiltJob", "build", "configuration", "run_backfill",
           "progress_key"]
