"""The streaming job's tables and queries as Flink SQL (expressions: :mod:`.exprs`).

:func:`plan_stream` builds every DDL statement and query of the streaming job: one raw
  Kafka table per source and a typed view that parses each record once and names the reason a record
  is a dead letter (:mod:`featurestore.engines.flink.ingest`: strict JSON, the supported event times),
  one Parquet sink per source (each stored event once: the source columns, per view a flag and its
  projections; the committer splits the files into each view's stored events exactly as the backfill
  writes them), one dead-letter sink per source, and one insert-only query per (source, join keys) group feeding the online (Redis)
  writer, which therefore never sees a dead letter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.engines.flink.exprs import ViewExprs, compile_view_exprs
from featurestore.engines.flink.sqltypes import (FLINK_TYPES, KAFKA_OFFSET, KAFKA_PARTITION, REASON,
                                                 DATE_PART_FUNCTION, DATE_TRUNC_FUNCTION, EPOCH_US_FUNCTION,
                                                 SHIFT_US_FUNCTION, STAGING_PARQUET_OPTIONS,
                                                 TS_MS, _with, lit, qi)

# -- the job's tables ---------------------------------------------------------------------------------
@dataclass
class OnlineView:
    """What the online writer needs to know about one view of a key group."""

    name: str
    key_prefix: str  # fs:{project}:{view}:
    fingerprint: str
    flag: int  # index in the event array of the view's "passes the filter" flag
    inputs: Tuple[int, ...]  # indexes of its input columns in the event array
    keep_base: bool  # featurestore.stores.online_redis.Retention
    window_ms: int
    expires: bool
    layout: dict = field(default_factory=dict)  # featurestore.kernel.partials.Layout arguments
    order: Tuple[int, ...] = ()  # indexes of its order columns (online_format.order_columns) in the event array
    order_sources: Tuple[int, ...] = ()  # online_format.order_sources: the inputs members do not repeat

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OnlineGroup:
    """Views of one source sharing join keys: one keyed stream, one state per entity.

    Rows of ``sql``: ``k`` (JSON array of the join-key values: the Flink key), ``v`` (JSON array: the
    event's id = Kafka partition << 40 | offset, its time in ms, the other order columns, one filter flag
    per view, the distinct input values)."""

    gid: int
    source: str
    join_keys: Tuple[str, ...]
    n_order: int
    views: List[OnlineView]
    sql: str = ""

    def to_dict(self) -> dict:
        return {"gid": self.gid, "source": self.source, "join_keys": list(self.join_keys), "n_order": self.n_order,
                "views": [v.to_dict() for v in self.views]}


@dataclass
class StreamPlan:
    """Every statement of the streaming job (DDL run first, then the inserts as one statement set) and the
    online groups. ``explain()`` prints it."""

    ddl: List[str] = field(default_factory=list)
    views: List[Tuple[str, str]] = field(default_factory=list)  # (name, SELECT): created in order
    # views materialized once each (a DataStream barrier). Without its barrier the parsed view is planned into
    # the typed one, with the parse function's call inlined into each of its uses (it is not deterministic: it
    # reads the clock)
    shared: List[str] = field(default_factory=list)
    inserts: List[Tuple[str, str]] = field(default_factory=list)  # (sink table, SELECT)
    online: List[OnlineGroup] = field(default_factory=list)
    sinks: Dict[str, str] = field(default_factory=dict)  # view, "_staged/<source>", "_dead_letters/<source>" -> dir
    staged: Dict[str, Tuple[str, dict]] = field(default_factory=dict)  # source -> (its sink, staged_layout)

    def explain(self) -> str:
        parts = [s.strip() + ";" for s in self.ddl]
        shared = "-- evaluated once per record (DataStream barrier), then shared\n"
        parts += [(shared if n in self.shared else "") + f"CREATE TEMPORARY VIEW {qi(n)} AS\n{q};"
                  for n, q in self.views]
        splits = {sink: layout for sink, layout in self.staged.values()}
        parts += [_split_comment(sink, splits[sink]) + f"INSERT INTO {sink}\n{sql};" if sink in splits
                  else f"INSERT INTO {sink}\n{sql};" for sink, sql in self.inserts]
        parts += [f"-- online group {g.gid} ({', '.join(v.name for v in g.views)}) -> per-entity mini-batches "
                  f"(Java OnlineBatches: the events of each entity joined per processing-time interval) -> kernel "
                  f"state (Python) -> Redis writer\n{g.sql};"
                  for g in self.online]
        return "\n\n".join(parts)


JSON_ARRAY_FUNCTION = "fs_json_array"  # the online rows' arrays (json_array_ddl)


def _split_comment(sink: str, layout: dict) -> str:
    """What the committer makes of a source's staged rows: each view's stored events (``commit.split_staged``)."""
    lines = [f"-- each event once; the committer splits the files of {sink} into the views' offline tables:"]
    for v in layout["views"]:
        renamed = [f"{qi(stored)} = {qi(staged)}" for stored, staged in v["columns"] if stored != staged]
        lines.append(f"--   view {v['name']}: rows where {qi(v['flag'])}" + (f"; {', '.join(renamed)}" if renamed else ""))
    return "\n".join(lines) + "\n"


def _table_name(kind: str, name: str) -> str:
    return f"fs_{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}"


def staged_layout(cvs: Sequence[CompiledView]) -> dict:
    """How the staged files of one source hold the events of its views ``cvs`` (in the job's order): the
    source columns under their names, per view a flag column (the event is one of the view's stored events)
    and its projections under staged names. The committer splits each staged file by it
    (:func:`featurestore.engines.flink.commit.split_staged`); it is written beside the files."""
    views = []
    for i, cv in enumerate(cvs):
        cols = [[n, n] for n, _ in cv.source_columns]
        cols += [[n, f"__v{i}_p{j}"] for j, (n, _, _) in enumerate(cv.projections)]
        views.append({"name": cv.name, "fingerprint": stream_fingerprint(cv), "flag": f"__v{i}", "columns": cols})
    return {"format": 1, "source_columns": [n for n, _ in cvs[0].source_columns], "views": views}


# Folded into the stream fingerprint of a view whose compiled SQL uses the exact integer functions (sqltypes.
# EXACT_FUNCTIONS: integer + - *, unary minus, abs, // and % NULL on an overflow). A job of JOB_FORMAT 5 before them
# compiled that arithmetic to Flink's own (wrapping) operators under the same definitions and JOB_FORMAT: its
# snapshots and offline rows are those of another job, so such a view streams as a changed definition would
# (a new job name: no restore; its offline table rebuilt). JOB_FORMAT itself is not bumped: every other view's
# restores stay valid. docs/streaming.md, "Job format and restores".
EXACT_ARITHMETIC = "exact integer arithmetic"
# Folded in too when a part of the view can fail DuckDB's evaluation (ViewExprs.raises): the stream made such an event
# one of the view's rows with a NULL value, now a dead letter of the view (view_failure_sql); same treatment.
FAILURES_DEAD_LETTERED = "failing events dead-lettered"
_STREAM_FINGERPRINTS: Dict[str, str] = {}


def uses_exact_arithmetic(cv: CompiledView) -> bool:
    """Whether the view's compiled Flink SQL (filter, projections, online inputs) calls an exact integer
    function."""
    from featurestore.engines.flink.sqltypes import EXACT_FUNCTIONS

    ve = compile_view_exprs(cv)
    sqls = [ve.filter or ""] + [sql for _, sql in ve.projections] + [sql for _, sql in ve.inputs]
    return any(f"{name}(" in sql for name in EXACT_FUNCTIONS.values() for sql in sqls)


def stream_fingerprint(cv: CompiledView) -> str:
    """What the streaming job's state and offline rows of the view are identified by (job name, staging folder,
    the offline table's ``stream`` record): the view's ``data_fingerprint``, with :data:`EXACT_ARITHMETIC`
    folded in when its SQL uses the exact integer functions and :data:`FAILURES_DEAD_LETTERED` when a part of it
    can fail. A view that cannot stream keeps its ``data_fingerprint`` (it is refused where a job is built)."""
    import hashlib

    from featurestore.engines.flink.sqltypes import StreamCompileError

    fp = _STREAM_FINGERPRINTS.get(cv.data_fingerprint)
    if fp is None:
        try:
            markers = [EXACT_ARITHMETIC] if uses_exact_arithmetic(cv) else []
            if compile_view_exprs(cv).raises:
                markers.append(FAILURES_DEAD_LETTERED)
        except StreamCompileError:
            markers = []
        fp = cv.data_fingerprint if not markers else \
            hashlib.sha256("\0".join([cv.data_fingerprint, *markers]).encode()).hexdigest()
        _STREAM_FINGERPRINTS[cv.data_fingerprint] = fp
    return fp


def _stored_where(join_keys: Sequence[str], flt: Optional[str], reason: bool = True) -> str:
    conds = [f"{qi(REASON)} IS NULL"] if reason else []
    conds += [f"{qi(k)} IS NOT NULL" for k in join_keys]
    if flt:
        conds.append(f"({flt}) IS TRUE")
    return " AND ".join(conds) or "TRUE"


def view_failure_sql(cv: CompiledView, ve: ViewExprs) -> Optional[str]:
    """Flink SQL over the typed view: why the event is a dead letter of the view, where DuckDB's evaluation of its
    filter, a projection or a feature input fails on it (``ViewExprs.raises``: an overflow, a CAST out of range;
    ``view 'v': <part>: <why>``, as both backfills word it), else NULL; None when no part of the view can fail.
    Each part where DuckDB evaluates it: the filter on the events with every join key, the rest on the events the
    view would store.
    The stream neither stores nor applies online such an event for the view, so its offline rows and its online
    state agree, and ``get_historical_features`` reads them as the online lookup does."""
    if not ve.raises:
        return None
    keyed = _stored_where(cv.join_keys, None, reason=False)
    stored = _stored_where(cv.join_keys, ve.filter, reason=False)
    from featurestore.engines.flink.exprs import view_failure_reason

    whens = [f"WHEN ({keyed if part.startswith('filter') else stored}) AND ({pred}) IS TRUE "
             f"THEN {lit(view_failure_reason(cv.name, part))}" for part, pred in ve.raises]
    return f"(CASE {' '.join(whens)} END)"


def _unless_failing(flag: str, failure: Optional[str]) -> str:
    return flag if failure is None else f"({flag}) AND {failure} IS NULL"


def json_array_ddl() -> str:
    """The DDL of ``fs_json_array`` (``java/.../JsonArrayText.java``): the text of ``JSON_ARRAY(... NULL ON
    NULL)``, byte for byte but for a negative zero (``-0.0``, not ``0.0``), without its per-row Jackson tree."""
    from featurestore.engines.flink.udf import JSON_ARRAY_CLASS

    return f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {JSON_ARRAY_FUNCTION} AS '{JSON_ARRAY_CLASS}' LANGUAGE JAVA"


def epoch_us_ddl() -> str:
    """The DDL of ``fs_epoch_us`` (``java/.../EpochMicros.java``): a TIMESTAMP as epoch microseconds, how the
    online store holds a timestamp value and orders events by it (``stores/online_format.py``)."""
    from featurestore.engines.flink.udf import EPOCH_MICROS_CLASS

    return f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {EPOCH_US_FUNCTION} AS '{EPOCH_MICROS_CLASS}' LANGUAGE JAVA"


def expression_function_ddl(statements: Sequence[str]) -> List[str]:
    """The DDL of the Java functions compiled expressions call (``fs_epoch_us``: a timestamp value online or in
    a date part; ``fs_date_part``: ``year(ts)``, ...; ``fs_add_exact`` ...: integer arithmetic; ``fs_text_int``
    ...: text to numbers; ``fs_shift_us``, ``fs_date_trunc``, ``fs_timestamp_us``: timestamp arithmetic) that
    ``statements`` (SQL texts of a job) use."""
    from featurestore.engines.flink.ingest import TIME_VALUE_FUNCTION
    from featurestore.engines.flink.udf import (DATE_PART_CLASS, DATE_TRUNC_CLASS, EXACT_CLASSES,
                                                MICROS_TIMESTAMP_CLASS, SHIFT_US_CLASS, TEXT_NUMBER_CLASSES)

    used = lambda name: any(f"{name}(" in sql for sql in statements)  # noqa: E731
    out = [epoch_us_ddl()] if used(EPOCH_US_FUNCTION) else []
    for name, cls in {DATE_PART_FUNCTION: DATE_PART_CLASS, SHIFT_US_FUNCTION: SHIFT_US_CLASS,
                      DATE_TRUNC_FUNCTION: DATE_TRUNC_CLASS, TIME_VALUE_FUNCTION: MICROS_TIMESTAMP_CLASS,
                      **EXACT_CLASSES, **TEXT_NUMBER_CLASSES}.items():
        if used(name):
            out.append(f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {name} AS '{cls}' LANGUAGE JAVA")
    return out


def _json_value(sql: str, dtype: str) -> str:
    """A value as JSON_ARRAY writes it losslessly (FLOAT widened exactly to DOUBLE). Inputs of a timestamp
    type are epoch microseconds already (``exprs``); an order column of one is made so here."""
    return f"CAST({sql} AS DOUBLE)" if dtype == t.FLOAT32 else sql


def _order_value(column: str, dtype: str) -> str:
    """An order column's value in the online rows: the online store's form (a timestamp, such as a created
    time, as epoch microseconds: ``online_format.order_value_sql``)."""
    return f"{EPOCH_US_FUNCTION}({qi(column)})" if dtype == t.TIMESTAMP else _json_value(qi(column), dtype)


TIMESTAMP_UTC = "TIMESTAMP_LTZ(6)"  # a stored timestamp value: microseconds, UTC (the job's time zone)


def stored_type(ts_column: str, column: str, dtype: str) -> str:
    """The Flink type of a stored column in a Parquet sink: the event time TIMESTAMP(3) (the committer stores
    it as the offline tables' ``timestamp[ms, UTC]``), any other timestamp TIMESTAMP_LTZ(6) in microseconds
    (the committer marks it UTC, ``commit.StreamIdentity.utc_columns``: the backfill's ``timestamp[us, UTC]``)."""
    return TIMESTAMP_UTC if dtype == t.TIMESTAMP and column != ts_column else FLINK_TYPES[dtype]


def stored_select(ts_column: str, column: str, dtype: str) -> str:
    """A source column as a Parquet sink stores it (:func:`stored_type`)."""
    if stored_type(ts_column, column, dtype) == TIMESTAMP_UTC:
        return f"CAST({qi(column)} AS {TIMESTAMP_UTC}) AS {qi(column)}"
    return qi(column)


def staging_options(path: str, ts_column: str, columns: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """A Parquet sink's options; ``columns`` (name, dtype) it stores. Its file holds one timestamp unit:
    microseconds when it stores a timestamp other than the event time (the committer stores the event time
    in ms), else milliseconds."""
    options = {"connector": "filesystem", "path": path, **STAGING_PARQUET_OPTIONS}
    if any(stored_type(ts_column, n, d) == TIMESTAMP_UTC for n, d in columns):
        options["parquet.timestamp.time.unit"] = "micros"
    return options


def online_group_sql(group: OnlineGroup, cvs: Sequence[CompiledView], exprs: Sequence[ViewExprs],
                     typed_view: str, columns: Dict[str, str]) -> Tuple[str, List[str]]:
    """The group's insert-only query, and the SQL of each slot of the event array (the key and the event are
    JSON arrays written by ``fs_json_array``: what ``JSON_ARRAY`` writes, byte for byte, but -0.0 kept)."""
    cv0 = cvs[0]
    eid = f"CAST({qi(KAFKA_PARTITION)} AS BIGINT) * {1 << 40} + {qi(KAFKA_OFFSET)}"  # online.PARTITION_SHIFT
    slots: List[str] = [eid, qi(TS_MS)]
    for c in cv0.order_columns[1:]:
        slots.append(_order_value(c, columns[c]))
    flags = []
    input_slots: Dict[str, int] = {}
    for ov, cv, ve in zip(group.views, cvs, exprs):
        flag = f"COALESCE(({ve.filter}) IS TRUE, FALSE)" if ve.filter else "TRUE"
        flag = _unless_failing(flag, view_failure_sql(cv, ve))
        flags.append(flag)
        ov.flag = len(slots)
        slots.append(flag)
    from featurestore.online import input_columns

    for ov, cv, ve in zip(group.views, cvs, exprs):
        idx = []
        for (expr, sql), (_, dtype) in zip(ve.inputs, input_columns(cv)):
            value = _json_value(sql, dtype)
            if value not in input_slots:
                input_slots[value] = len(slots)
                slots.append(value)
            idx.append(input_slots[value])
        ov.inputs = tuple(idx)
    key = f"{JSON_ARRAY_FUNCTION}(" + ", ".join(qi(k) for k in group.join_keys) + ")"
    where = _stored_where(group.join_keys, None)
    if all(f != "TRUE" for f in flags):
        where += " AND (" + " OR ".join(flags) + ")"
    sql = (f"SELECT {key} AS k,\n  {JSON_ARRAY_FUNCTION}({', '.join(slots)}) AS v\n"
           f"FROM {qi(typed_view)}\nWHERE {where}")
    return sql, slots


def plan_stream(project: str, cvs: Sequence[CompiledView], sources: Mapping[str, object], *, bootstrap: str,
                group_id: str, bounded: bool, staging: Mapping[str, str], dead_letter_staging: Mapping[str, str],
                staged: Mapping[str, str],
                online_views: Sequence[str] = (), kafka_options: Optional[Mapping[str, str]] = None,
                max_future_ms: Optional[int] = None) -> StreamPlan:
    """The streaming job of ``cvs`` (views whose source has a stream face).

    ``sources``: view name -> its Source; ``staging``: view -> its staging directory URI (the committer
    splits the source's staged files into it); ``staged``: source name -> directory URI of its Parquet sink;
    ``dead_letter_staging``: source name -> directory URI of its dead-letter sink; ``online_views``: the
    views written to Redis; ``max_future_ms``: the future-time bound (config ``event_time.max_future``)."""
    from featurestore.engines.flink import ingest as flink_ingest
    from featurestore.online import view_layout
    from featurestore.stores.online_format import order_columns, order_sources
    from featurestore.stores.online_redis import retention, view_prefix

    plan = StreamPlan()
    plan.ddl.extend(flink_ingest.function_ddl([sources[cv.name] for cv in cvs]))
    if online_views:
        plan.ddl.append(json_array_ddl())
    functions_at = len(plan.ddl)  # the expressions' Java functions go here, those the job's SQL uses
    by_source: Dict[str, List[CompiledView]] = {}
    for cv in cvs:
        by_source.setdefault(sources[cv.name].name, []).append(cv)
    gid = 0
    for source_name, views in by_source.items():
        source = sources[views[0].name]
        raw = _table_name("kafka", source_name)
        typed = _table_name("typed", source_name)
        parsed = _table_name("parsed", source_name)
        plan.ddl.append(flink_ingest.kafka_table_ddl(source, raw, bootstrap, group_id, bounded, kafka_options))
        plan.views.append((parsed, flink_ingest.parsed_select_sql(source, raw)))
        plan.views.append((typed, flink_ingest.typed_select_sql(source, parsed, max_future_ms)))
        plan.shared.extend([parsed, typed])
        columns = dict(source.schema)
        exprs = {cv.name: compile_view_exprs(cv) for cv in views}
        # offline: one Parquet sink per source: each stored event written once, with one flag column per
        # view (is it in the view) and each view's projections; the committer splits its files into the
        # views' staging directories (commit.split_staged). Not partitioned: a sink subtask then writes the
        # rows of each Kafka partition in offset order into files that become visible in order, which the
        # committer's exactly-once by offsets relies on (it splits the rows by date itself).
        layout = staged_layout(views)
        sink = _table_name("staged", source_name)
        ts_column = views[0].ts_column
        cols = [f"{qi(n)} {stored_type(ts_column, n, d)}" for n, d in views[0].source_columns]
        selects = [stored_select(ts_column, n, d) for n, d in views[0].source_columns]
        flags = []
        staged_columns = list(views[0].source_columns)
        for cv, lv in zip(views, layout["views"]):
            ve = exprs[cv.name]
            flag = _unless_failing(_stored_where(cv.join_keys, ve.filter, reason=False), view_failure_sql(cv, ve))
            flags.append(flag)
            selects.append(f"({flag}) AS {qi(lv['flag'])}")
            cols.append(f"{qi(lv['flag'])} BOOLEAN")
            staged_names = dict(lv["columns"])
            for (name, sql), (_, _, dtype) in zip(ve.projections, cv.projections):
                # only for the view's rows: a projection never runs on an event its view does not store
                stored = stored_type(ts_column, staged_names[name], dtype)  # a timestamp: microseconds, UTC
                value = f"CAST({sql} AS {stored})" if stored == TIMESTAMP_UTC else sql
                selects.append(f"CASE WHEN ({flag}) THEN {value} END AS {qi(staged_names[name])}")
                cols.append(f"{qi(staged_names[name])} {stored}")
                staged_columns.append((staged_names[name], dtype))
        cols += [f"{qi(KAFKA_PARTITION)} INT", f"{qi(KAFKA_OFFSET)} BIGINT"]
        selects += [qi(KAFKA_PARTITION), qi(KAFKA_OFFSET)]
        options = staging_options(staged[source_name], ts_column, staged_columns)
        plan.ddl.append(f"CREATE TEMPORARY TABLE {qi(sink)} (\n  " + ",\n  ".join(cols) + "\n) " + _with(options))
        where = f"{qi(REASON)} IS NULL AND (" + " OR ".join(f"({f})" for f in flags) + ")"
        plan.inserts.append((sink, f"SELECT {', '.join(selects)}\nFROM {qi(typed)}\nWHERE {where}"))
        plan.sinks[f"_staged/{source_name}"] = staged[source_name]
        plan.staged[source_name] = (sink, layout)
        for cv in views:
            plan.sinks[cv.name] = staging[cv.name]
        # key groups (views with the same join keys)
        groups: Dict[Tuple[str, ...], List[CompiledView]] = {}
        for cv in views:
            groups.setdefault(tuple(cv.join_keys), []).append(cv)
        dl = _table_name("dead_letters", source_name)
        options = {"connector": "filesystem", "path": dead_letter_staging[source_name], **STAGING_PARQUET_OPTIONS}
        plan.ddl.append(
            f"CREATE TEMPORARY TABLE {qi(dl)} (\n  payload STRING,\n  reason STRING,\n  kafka_partition INT,\n"
            f"  kafka_offset BIGINT,\n  kafka_timestamp TIMESTAMP(3),\n  ingest_time TIMESTAMP(3)\n) " + _with(options))
        failures = [f for cv in views if (f := view_failure_sql(cv, exprs[cv.name])) is not None]
        plan.inserts.append((dl, flink_ingest.dead_letters_select_sql(typed, [(k, [c.name for c in g])
                                                                              for k, g in groups.items()], failures)))
        plan.sinks[f"_dead_letters/{source_name}"] = dead_letter_staging[source_name]
        # online: one query per key group
        for keys, gviews in groups.items():
            gviews = [cv for cv in gviews if cv.name in online_views]
            if not gviews:
                continue
            ovs = []
            for cv in gviews:
                r = retention(cv)
                lay = view_layout(cv)
                ovs.append(OnlineView(cv.name, view_prefix(project, cv.name), cv.data_fingerprint, 0, (), r.keep_base,
                                      r.window_ms, r.expires,
                                      {"inputs": [list(x) for x in lay.inputs], "latest": lay.latest_cols,
                                       "aggs": [[a.name, a.function, [e for e, _ in lay.inputs].index(a.expr)
                                                 if a.expr is not None else None, a.window_ms]
                                                for a in cv.aggregations]},
                                      tuple(2 + gviews[0].order_columns[1:].index(c) for c in order_columns(cv)),
                                      order_sources(cv)))
            group = OnlineGroup(gid, source_name, keys, len(gviews[0].order_columns), ovs)
            group.sql, _ = online_group_sql(group, gviews, [exprs[cv.name] for cv in gviews], typed, columns)
            plan.online.append(group)
            gid += 1
    statements = [g.sql for g in plan.online] + [sql for _, sql in plan.inserts] + [sql for _, sql in plan.views]
    plan.ddl[functions_at:functions_at] = expression_function_ddl(statements)
    return plan


__all__ = ["plan_stream", "stream_fingerprint", "uses_exact_arithmetic", "EXACT_ARITHMETIC", "StreamPlan", "OnlineGroup", "OnlineView", "online_group_sql", "staged_layout",
           "JSON_ARRAY_FUNCTION", "json_array_ddl", "epoch_us_ddl", "expression_function_ddl", "stored_type", "stored_select",
           "staging_options"]
