"""The streaming job's intake: Kafka records -> typed rows with a dead-letter reason -> dead-letter sink.

Every record goes through the Java function ``ParseJsonRecord`` (``featurestore/engines/flink/java``, built by
:mod:`featurestore.engines.flink.udf`) once: one strict parse of the bytes gives the payload text, the
record's problem if any, and each schema column's value as canonical text already checked against its
type. The SQL around it (rendered here) then applies the rules of :mod:`featurestore.semantics` that
both jobs share: the supported event-time range and the future bound (``semantics.row_reason_sql``,
against the wall clock the function read the record at), so a record outside them never reaches a sink
or the online path.

A record is a dead letter, with the first reason in this order:

1. ``empty record (null value)`` (a tombstone), ``not valid UTF-8``, ``not a JSON object`` (not JSON,
   not an object, NaN/Infinity tokens, comments, ...), ``trailing data after the JSON object``,
   ``duplicate key '<key>'`` (in any object of the record);
2. ``missing event time 'ts'``, ``event time 'ts': not an integer (epoch milliseconds)``;
3. out of the supported range, too far in the future (``semantics``);
4. ``column '<c>': not a <type>``: the first schema column (in schema order) whose value is not of its
   type — a string column takes a JSON string, an integer column an integer literal within the type, a
   float column a number finite in the type, a bool column ``true``/``false``, a timestamp column other
   than the event time an integer of epoch milliseconds or an ISO-8601 string (``2026-03-01T12:00:00.123456Z``;
   no offset: UTC), within years 1 to 9999 UTC. Keys outside the schema are ignored; a missing key or JSON
   ``null`` is a null value.

Timestamp columns other than the event time (a Feast ``created_timestamp_column``, the usual tiebreak) keep
their **microseconds**, as the backfill does: the parse function reads them as epoch microseconds,
``fs_timestamp_us`` makes a ``TIMESTAMP(6)`` of them (:data:`TIME_VALUE_FUNCTION`), the views' Parquet sinks
write them in microseconds, and the online rows carry them as epoch microseconds (``tables.py``), so their
values and the event order they break ties by are the backfill's, to the microsecond.
"""

from __future__ import annotations

import json
from typing import List, Mapping, Optional, Sequence, Tuple

from featurestore import dtypes as t
from featurestore import semantics
from featurestore.engines.flink.sqltypes import FLINK_TYPES, KAFKA_OFFSET, KAFKA_PARTITION, KAFKA_TIMESTAMP, PAYLOAD, REASON, TS_MS, StreamCompileError, _with, lit, qi

FUNCTION = "fs_parse_json_record"
AVRO_FUNCTION = "fs_parse_avro_record"
TIME_VALUE_FUNCTION = "fs_timestamp_us"  # epoch microseconds -> TIMESTAMP(6) (MicrosTimestamp.java)
PARSED = "__p"  # the function's ARRAY<STRING> in the parsed view
VALUE = "__value"  # the Kafka record's value (BYTES)
# the stream-only reasons (what only a Kafka record can get wrong)
EMPTY_RECORD = "empty record (null value)"
NOT_UTF8 = "not valid UTF-8"
NOT_OBJECT = "not a JSON object"
TRAILING_DATA = "trailing data after the JSON object"
DUPLICATE_KEY = "duplicate key '{}'"
TIME_EXPECTED = "an integer (epoch milliseconds)"
# what only an Avro record can get wrong (the payload of its dead letter is the record's bytes in base64)
NOT_CONFLUENT = "not a Confluent Avro record (no magic byte 0 and 4-byte schema id)"
OTHER_SCHEMA_ID = "Confluent schema id {} is not the expected {}"
NOT_AVRO = "not an Avro record of the writer schema"
TRAILING_AVRO = "trailing data after the Avro record"
# 1-based positions in the function's result (see RecordFunction.java)
_PAYLOAD, _RECORD, _TIME, _COLUMN, _NOW, _FIRST_VALUE = 1, 2, 3, 4, 5, 6


def function_ddl(sources=()) -> List[str]:
    """The parse functions' DDL: the JSON one always (a JSON job's plan is what it was), the Avro one when a
    source needs it, ``fs_timestamp_us`` when a source has timestamp columns other than the event time."""
    from featurestore.engines.flink.udf import AVRO_UDF_CLASS, MICROS_TIMESTAMP_CLASS, UDF_CLASS

    out = [f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {FUNCTION} AS {lit(UDF_CLASS)} LANGUAGE JAVA"]
    if any(_is_avro(s) for s in sources):
        out.append(f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {AVRO_FUNCTION} AS {lit(AVRO_UDF_CLASS)} "
                   "LANGUAGE JAVA")
    if any(time_value_columns(s) for s in sources):
        out.append(f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {TIME_VALUE_FUNCTION} AS "
                   f"{lit(MICROS_TIMESTAMP_CLASS)} LANGUAGE JAVA")
    return out


def time_value_columns(source) -> List[str]:
    """The source's timestamp columns other than the event time (read in microseconds)."""
    return [name for name, dtype in source.schema if dtype == t.TIMESTAMP and name != source.timestamp]


def _time_value_spec(source) -> dict:
    """What the parse functions need to read timestamp values: their range (none without such columns, so
    the spec of other sources is what it was)."""
    if not time_value_columns(source):
        return {}
    return {"time_value_range": [semantics.MIN_TIME_VALUE_US, semantics.MAX_TIME_VALUE_US]}


def _is_avro(source) -> bool:
    return source.stream.is_avro


def kafka_table_ddl(source, table: str, bootstrap: str, group_id: str, bounded: bool,
                    extra: Optional[Mapping[str, str]] = None) -> str:
    """The raw Kafka table of a source: the record's value as bytes (decoded by the parse function, which
    tells invalid UTF-8 apart) and its partition, offset and timestamp. No watermark: nothing in the job
    depends on event time (late events are applied like any other), and an event time is only trusted
    after the checks."""
    options = {
        "connector": "kafka",
        "topic": source.stream.topic,
        "properties.bootstrap.servers": source.stream.bootstrap_servers or bootstrap,
        "properties.group.id": group_id,
        "scan.startup.mode": "earliest-offset",
        "value.format": "raw",
    }
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    options.update(extra or {})
    return (
        f"CREATE TEMPORARY TABLE {qi(table)} (\n"
        f"  {qi(VALUE)} BYTES,\n"
        f"  {qi(KAFKA_PARTITION)} INT METADATA FROM 'partition' VIRTUAL,\n"
        f"  {qi(KAFKA_OFFSET)} BIGINT METADATA FROM 'offset' VIRTUAL,\n"
        f"  {qi(KAFKA_TIMESTAMP)} TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL\n"
        f") {_with(options)}"
    )


def parse_spec(source) -> str:
    """The parse function's second argument: the columns (name, type, reason when a value is not of the
    type), which one is the event time, and every reason text it returns (for an Avro source also the
    writer schema, the framing and the event time's unit: ``avro_spec``)."""
    _check_columns(source)
    if _is_avro(source):
        return avro_spec(source)
    ts = source.timestamp
    return json.dumps({
        "time": ts,
        "columns": [[name, dtype, semantics.column_reason(name, dtype)] for name, dtype in source.schema],
        "reasons": {
            "empty_record": EMPTY_RECORD, "not_utf8": NOT_UTF8, "not_object": NOT_OBJECT,
            "trailing_data": TRAILING_DATA, "duplicate_key": DUPLICATE_KEY,
            "missing_time": semantics.missing_time_reason(ts),
            "time_not_integer": semantics.unreadable_time_reason(ts, TIME_EXPECTED),
        },
        **_time_value_spec(source),
    }, ensure_ascii=False, separators=(",", ":"))


def avro_spec(source) -> str:
    """``ParseAvroRecord``'s spec: the writer schema (featurestore/model/avro.py), Confluent framing and the
    schema id it pins, the columns, the event time's unit and the reasons."""
    from featurestore.model import avro

    try:
        readers = avro.column_readers(source)
    except avro.AvroSchemaError as exc:
        raise StreamCompileError(f"source '{source.name}': Avro writer schema: {exc}") from None
    stream = source.stream
    expected = stream.avro_schema_id
    return json.dumps({
        "time": source.timestamp,
        "time_unit": readers[source.timestamp],
        "writer": json.dumps(avro.writer_schema(source), separators=(",", ":"), ensure_ascii=False),
        "confluent": stream.format == "avro-confluent",
        "schema_id": expected,
        "columns": [[name, dtype, semantics.column_reason(name, dtype)] for name, dtype in source.schema],
        "reasons": {
            "empty_record": EMPTY_RECORD, "not_confluent": NOT_CONFLUENT,
            "other_schema_id": OTHER_SCHEMA_ID.format("{}", expected), "not_avro": NOT_AVRO,
            "trailing_data": TRAILING_AVRO, "missing_time": semantics.missing_time_reason(source.timestamp),
        },
        **_time_value_spec(source),
        **({"value_units": {c: readers[c] for c in time_value_columns(source)}} if time_value_columns(source) else {}),
    }, ensure_ascii=False, separators=(",", ":"))


def _check_columns(source) -> None:
    for name, dtype in source.schema:
        if dtype == t.JSON and _is_avro(source):  # ParseAvroRecord does not keep a nested value's text yet
            raise StreamCompileError(f"source '{source.name}' column '{name}': a JSON value (json) cannot be read "
                                     "from an Avro stream face yet; its views are computed by backfill and push")
        if dtype not in FLINK_TYPES:
            raise StreamCompileError(f"column '{name}': type {dtype} cannot be read from the stream")


def parsed_select_sql(source, raw_table: str) -> str:
    """One row per Kafka record: the parse function's result and the record's Kafka coordinates. The job
    evaluates this once per record (a DataStream barrier keeps the planner from inlining it into every
    sink)."""
    return (
        f"SELECT {AVRO_FUNCTION if _is_avro(source) else FUNCTION}({qi(VALUE)}, {lit(parse_spec(source))}) "
        f"AS {qi(PARSED)},\n"
        f"  {qi(KAFKA_PARTITION)}, {qi(KAFKA_OFFSET)}, CAST({qi(KAFKA_TIMESTAMP)} AS TIMESTAMP(3)) AS {qi(KAFKA_TIMESTAMP)}\n"
        f"FROM {qi(raw_table)}"
    )


def _item(i: int) -> str:
    return f"{qi(PARSED)}[{i}]"


def typed_select_sql(source, parsed_view: str, max_future_ms: Optional[int]) -> str:
    """From the parsed rows: the payload text, each schema column typed, the event time (ms and
    TIMESTAMP(3) UTC, the latter only inside the supported range) and ``__reason`` (NULL for an event)."""
    ts = source.timestamp
    typed = []
    ts_ms = None
    for i, (name, dtype) in enumerate(source.schema):
        value = _item(_FIRST_VALUE + i)
        if name == ts:
            ts_ms = f"TRY_CAST({value} AS BIGINT)"
            continue
        if dtype == t.TIMESTAMP:  # epoch microseconds (checked in range by the parse function)
            typed.append(f"{TIME_VALUE_FUNCTION}(TRY_CAST({value} AS BIGINT)) AS {qi(name)}")
            continue
        typed.append(f"TRY_CAST({value} AS {FLINK_TYPES[dtype]}) AS {qi(name)}")
    reason = semantics.row_reason_sql(
        ts, time_read_reason=_item(_TIME), ts_ms_sql=ts_ms, now_ms_sql=f"TRY_CAST({_item(_NOW)} AS BIGINT)",
        max_future_ms=max_future_ms, column_reason=_item(_COLUMN))
    event_time = (f"CASE WHEN {semantics.time_supported_sql(ts_ms)} "
                  f"THEN CAST(TO_TIMESTAMP_LTZ({ts_ms}, 3) AS TIMESTAMP(3)) END")
    cols = [f"{_item(_PAYLOAD)} AS {qi(PAYLOAD)}", qi(KAFKA_PARTITION), qi(KAFKA_OFFSET), qi(KAFKA_TIMESTAMP),
            f"{ts_ms} AS {qi(TS_MS)}", f"{event_time} AS {qi(ts)}", *typed,
            f"COALESCE({_item(_RECORD)}, {reason}) AS {qi(REASON)}"]
    return "SELECT " + ",\n  ".join(cols) + f"\nFROM {qi(parsed_view)}"


def dead_letters_select_sql(typed_view: str, groups: Sequence[Tuple[Tuple[str, ...], List[str]]],
                            failures: Sequence[str] = ()) -> str:
    """Records with a reason, (once per distinct join-key set) events with a null join key, and events a view's
    expressions fail on: ``failures``, per such view its ``tables.view_failure_sql``, one dead letter per (event,
    view) (a dead letter of a view, as the backfills write it)."""
    base = (f"SELECT {qi(PAYLOAD)} AS payload, {{reason}} AS reason, {qi(KAFKA_PARTITION)} AS kafka_partition, "
            f"{qi(KAFKA_OFFSET)} AS kafka_offset, {qi(KAFKA_TIMESTAMP)} AS kafka_timestamp, "
            f"CAST(CURRENT_TIMESTAMP AS TIMESTAMP(3)) AS ingest_time\nFROM {qi(typed_view)}\nWHERE {{where}}")
    parts = [base.format(reason=qi(REASON), where=f"{qi(REASON)} IS NOT NULL")]
    for keys, views in groups:
        null_key = " OR ".join(f"{qi(k)} IS NULL" for k in keys)
        reason = semantics.null_key_reason_sql(keys, views, qi)
        parts.append(base.format(reason=reason, where=f"{qi(REASON)} IS NULL AND ({null_key})"))
    for failed in failures:
        parts.append(base.format(reason=failed, where=f"{qi(REASON)} IS NULL AND {failed} IS NOT NULL"))
    return "\nUNION ALL\n".join(parts)


__all__ = ["function_ddl", "time_value_columns", "TIME_VALUE_FUNCTION", "kafka_table_ddl", "parse_spec", "parsed_select_sql", "typed_select_sql",
           "dead_letters_select_sql"]
