"""Avro stream faces, below the streaming job: the writer schema (derived or given) and its checks against
the source, and the Java decoder ``ParseAvroRecord`` run outside Flink (one JVM for every record) over
records fastavro wrote: random good records (nulls, int64 extremes, -0.0, infinities, NaN, non-ASCII
strings, the three time units, Confluent framing) decode to the values written; every kind of malformed
record gets its reason. The streaming job itself: tests/test_stream_avro.py."""

from __future__ import annotations

import base64
import io
import json
import math
import random
import struct
import subprocess
import time
from pathlib import Path

import pytest

from featurestore.errors import DefinitionError
from featurestore.model import KafkaTopic, ParquetFiles, Source
from featurestore.model import avro

fastavro = pytest.importorskip("fastavro")

SCHEMA = {"user_id": "string", "shop": "int64", "amount": "float64", "qty": "int32", "ratio": "float32",
          "tag": "string", "flag": "bool", "ts": "timestamp"}


def source(**stream) -> Source:
    return Source(name="tx", schema=SCHEMA, timestamp="ts", batch=ParquetFiles("tx.parquet"),
                  stream=KafkaTopic("tx", **{"format": "avro", **stream}))


def given(fields, name="Tx") -> dict:
    return {"type": "record", "name": name, "namespace": "shop.events", "fields": fields}


# -- the model: no JVM ------------------------------------------------------------------------------------------
def test_the_derived_schema_is_a_record_of_nullable_fields_in_schema_order():
    s = avro.derived_schema(source())
    assert s == {"type": "record", "name": "tx", "namespace": "featurestore", "fields": [
        {"name": "user_id", "type": ["null", "string"], "default": None},
        {"name": "shop", "type": ["null", "long"], "default": None},
        {"name": "amount", "type": ["null", "double"], "default": None},
        {"name": "qty", "type": ["null", "int"], "default": None},
        {"name": "ratio", "type": ["null", "float"], "default": None},
        {"name": "tag", "type": ["null", "string"], "default": None},
        {"name": "flag", "type": ["null", "boolean"], "default": None},
        {"name": "ts", "type": ["null", {"type": "long", "logicalType": "timestamp-millis"}], "default": None}]}
    fastavro.parse_schema(s)  # a valid Avro schema
    assert avro.column_readers(source())["ts"] == "ms"


def test_a_given_schema_is_checked_against_every_column():
    ok = given([{"name": "user_id", "type": {"type": "enum", "name": "U", "symbols": ["a", "b"]}},
                {"name": "shop", "type": "int"}, {"name": "amount", "type": ["float", "null"]},
                {"name": "qty", "type": "int"}, {"name": "ratio", "type": "float"}, {"name": "extra", "type": "bytes"},
                {"name": "tag", "type": "U"}, {"name": "flag", "type": "boolean"},
                {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}}])
    assert avro.column_readers(source(avro_schema=ok)) == {
        "user_id": "enum", "shop": "int", "amount": "float", "qty": "int", "ratio": "float", "tag": "enum",
        "flag": "boolean", "ts": "us"}
    fields = ok["fields"]

    def problem(i, typ):
        bad = given([*fields[:i], {"name": fields[i]["name"], "type": typ}, *fields[i + 1:]])
        (message,) = avro.problems(source(avro_schema=bad))
        return message

    assert problem(3, "long") == "source 'tx': Avro writer schema: column 'qty' (int32) is Avro long; expected int"
    assert "column 'amount' (float64) is Avro long; expected int or float or double" in problem(2, "long")
    assert "column 'ratio' (float32) is Avro double; expected float" in problem(4, "double")
    assert "column 'shop' (int64) is Avro int (date); expected int or long" in problem(
        1, {"type": "int", "logicalType": "date"})
    assert 'column \'flag\': a union other than ["null", T] (["null", "boolean", "int"])' in problem(
        7, ["null", "boolean", "int"])
    assert ("event time 'ts' is Avro long (local-timestamp-millis); expected long (epoch milliseconds) or long "
            "timestamp-millis/-micros/-nanos") in problem(8, {"type": "long", "logicalType": "local-timestamp-millis"})
    assert "event time 'ts' is Avro string" in problem(8, "string")
    assert avro.problems(source(avro_schema=given([f for f in fields if f["name"] != "tag"]))) == [
        "source 'tx': Avro writer schema: column 'tag' is not a field of the Avro record 'Tx' (fields: user_id, shop, "
        "amount, qty, ratio, extra, flag, ts)"]
    assert avro.problems(source()) == avro.problems(source(avro_schema=ok)) == []
    plain = given([*fields[:8], {"name": "ts", "type": "long"}])  # a plain long: epoch milliseconds
    assert avro.column_readers(source(avro_schema=plain))["ts"] == "ms"


def test_kafka_topic_arguments_are_checked():
    for kw, message in [
        (dict(format="json", avro_schema=given([])), "KafkaTopic avro_schema: only for format 'avro' or 'avro-confluent'"),
        (dict(format="avro", avro_schema="{not json"), "KafkaTopic avro_schema: not JSON"),
        (dict(format="avro", avro_schema={"type": "array", "items": "int"}), "must be an Avro record schema"),
        (dict(format="avro", avro_schema_id=3), "KafkaTopic avro_schema_id: a schema id (0 to 2^31-1) of format "
                                                "'avro-confluent', got 3 with format 'avro'"),
        (dict(format="avro-confluent", avro_schema_id=-1), "got -1"),
        (dict(format="protobuf"), "KafkaTopic format: 'protobuf' is not one of json, avro, avro-confluent"),
    ]:
        with pytest.raises(DefinitionError, match=".*" + message.replace("(", r"\(").replace(")", r"\)")
                           .replace("^", r"\^").replace("[", r"\[")):
            KafkaTopic("t", **kw)


def test_fingerprints_follow_the_writer_schema_and_leave_json_sources_alone():
    assert KafkaTopic("tx").canonical() == {"kind": "kafka", "topic": "tx", "format": "json"}  # as before Avro
    derived, confluent = source(), source(format="avro-confluent")
    schema = avro.derived_schema(derived)
    explicit = source(avro_schema=json.dumps(schema, indent=2))
    same = source(avro_schema=schema)
    assert explicit.stream.avro_schema == same.stream.avro_schema  # canonical text: formatting does not count
    assert len({derived.data_fingerprint, confluent.data_fingerprint, explicit.data_fingerprint,
                source(format="avro-confluent", avro_schema_id=7).data_fingerprint}) == 4
    assert explicit.data_fingerprint == same.data_fingerprint


# -- the decoder, outside Flink ---------------------------------------------------------------------------------
HARNESS = Path(__file__).parent / "fixtures" / "java" / "ParseRecords.java"


@pytest.fixture(scope="module")
def decode(tmp_path_factory):
    """decode(source, [bytes or None, ...]) -> the function's result per record (one JVM per call)."""
    import pyflink

    from featurestore.config import load_config
    from featurestore.devinfra.jars import connector_jars
    from featurestore.engines.flink.ingest import parse_spec
    from featurestore.engines.flink.udf import udf_jar

    jars = connector_jars(load_config(Path(__file__).resolve().parents[1]))
    cp = [str(Path(pyflink.__file__).parent / "lib" / "*"), str(udf_jar(jars)), *map(str, jars)]
    classes = tmp_path_factory.mktemp("harness")
    subprocess.run(["javac", "-nowarn", "-d", str(classes), "-cp", ":".join(cp), str(HARNESS)], check=True)

    def run(src: Source, records):
        lines = [parse_spec(src)] + ["-" if r is None else base64.b64encode(r).decode() for r in records]
        out = subprocess.run(["java", "-cp", ":".join([str(classes), *cp]), "ParseRecords",
                              "featurestore.flink.ParseAvroRecord"], input="\n".join(lines) + "\n",
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return [json.loads(line) for line in out.stdout.splitlines()]

    return run


def _write(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def _random_record(rng: random.Random) -> dict:
    def maybe(v):
        return None if rng.random() < 0.15 else v

    return {
        "user_id": maybe(rng.choice(["u1", "u2", "é", "日本", "", "x" * 300])),
        "shop": maybe(rng.choice([0, 1, -1, 2 ** 63 - 1, -2 ** 63, rng.randrange(-10 ** 12, 10 ** 12)])),
        "amount": maybe(rng.choice([0.0, -0.0, 2.5, 1e-300, -1e308, math.inf, -math.inf, rng.uniform(-1e6, 1e6)])),
        "qty": maybe(rng.choice([0, 2 ** 31 - 1, -2 ** 31, rng.randrange(-1000, 1000)])),
        "ratio": maybe(rng.choice([0.1, -3.25, 1e38, rng.uniform(-10, 10)])),
        "tag": maybe(rng.choice(["a", "b\u0000c", "\U0001F600"])),
        "flag": maybe(rng.choice([True, False])),
        "ts": rng.choice([1_772_323_200_123, -2_208_988_800_000, 0, -1, rng.randrange(0, 2 * 10 ** 12)]),
    }


def _same(text, value, dtype) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return text is None
    if dtype == "float32":
        return struct.unpack("f", struct.pack("f", float(text)))[0] == struct.unpack("f", struct.pack("f", value))[0]
    if dtype == "float64":
        return float(text) == value and math.copysign(1, float(text)) == math.copysign(1, value)
    if dtype == "bool":
        return text == ("true" if value else "false")
    return text == str(value)


@pytest.mark.flink
def test_random_records_decode_to_the_values_written(decode):
    rng = random.Random(5)
    derived = source()
    schema = avro.derived_schema(derived)
    records = [_random_record(rng) for _ in range(300)]
    records[0].update(amount=math.nan, ratio=math.nan)  # NaN is null at ingestion (semantics)
    got = decode(derived, [_write(schema, r) for r in records])
    cols = list(SCHEMA)
    for rec, out in zip(records, got):
        assert out[1:4] == [None, None, None], (rec, out)
        assert base64.b64decode(out[0]) == _write(schema, rec)
        for i, c in enumerate(cols):
            assert _same(out[5 + i], rec[c], SCHEMA[c]), (c, rec[c], out[5 + i])


@pytest.mark.flink
def test_a_given_schema_with_other_units_promotions_and_confluent_framing(decode):
    schema = given([
        {"name": "extra", "type": {"type": "map", "values": {"type": "array", "items": "long"}}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "user_id", "type": {"type": "enum", "name": "U", "symbols": ["u1", "u2"]}},
        {"name": "shop", "type": "int"}, {"name": "amount", "type": ["float", "null"]},
        {"name": "qty", "type": "int"}, {"name": "ratio", "type": "float"}, {"name": "tag", "type": "string"},
        {"name": "flag", "type": "boolean"}, {"name": "fixed", "type": {"type": "fixed", "name": "F", "size": 3}}])
    src = source(format="avro-confluent", avro_schema=schema, avro_schema_id=42)
    rec = {"extra": {"a": [1, -2], "b": []}, "ts": -1_500, "user_id": "u2", "shop": -7, "amount": 0.1, "qty": 3,
           "ratio": 0.1, "tag": "t", "flag": False, "fixed": b"abc"}
    body = _write(schema, rec)
    good = b"\x00" + struct.pack(">i", 42) + body
    got = decode(src, [good, b"\x00" + struct.pack(">i", 43) + body, body, b"\x00\x00\x00", None])
    # micros floored to ms (before 1970 too); a float field of a float64 column widened exactly
    out = got[0]
    assert out[1:4] == [None] * 3 and out[5:7] + out[8:] == ["u2", "-7", "3", "0.1", "t", "false", "-2"]
    assert float(out[7]) == struct.unpack("f", struct.pack("f", 0.1))[0] != 0.1
    assert [g[1] for g in got[1:]] == [
        "Confluent schema id 43 is not the expected 42",
        "not a Confluent Avro record (no magic byte 0 and 4-byte schema id)",
        "not a Confluent Avro record (no magic byte 0 and 4-byte schema id)", "empty record (null value)"]
    assert got[4][0] is None and base64.b64decode(got[1][0]) == b"\x00" + struct.pack(">i", 43) + body


GOOD = {"user_id": "u1", "shop": 1, "amount": 2.5, "qty": 3, "ratio": 0.5, "tag": "a", "flag": True,
        "ts": 1_772_323_200_000}


@pytest.mark.flink
def test_every_malformed_record_gets_its_reason(decode):
    derived = source()
    schema = avro.derived_schema(derived)
    good = _write(schema, GOOD)
    other = given([{"name": "user_id", "type": "long"}, {"name": "ts", "type": "long"}])
    cases = [
        (good, None, None, None),
        (good + b"\x00", "trailing data after the Avro record", None, None),
        (good[:-1], "not an Avro record of the writer schema", None, None),
        (b"", "not an Avro record of the writer schema", None, None),
        (b"\x04" + good[1:], "not an Avro record of the writer schema", None, None),  # union index 2 of 2
        (b"\x02\x7f" + good[2:], "not an Avro record of the writer schema", None, None),  # string length -64
        (b"\x02\x7e" + good[2:], "not an Avro record of the writer schema", None, None),  # length 63 > bytes left
        (b"\x02" + b"\xff" * 11, "not an Avro record of the writer schema", None, None),  # varint too long
        (_write(other, {"user_id": 5, "ts": 1}), "not an Avro record of the writer schema", None, None),
        (_write(schema, {**GOOD, "ts": None}), None, "missing event time 'ts'", None),
        (_write(schema, {**GOOD, "ts": None, "tag": "ok"}), None, "missing event time 'ts'", None),
    ]
    ts_bytes = len(_write({"type": "long"}, GOOD["ts"]))
    flag_at = len(good) - ts_bytes - 2  # the boolean byte (then the time's union branch and varint)
    assert good[flag_at] == 1
    cases.append((good[:flag_at] + b"\x02" + good[flag_at + 1:], "not an Avro record of the writer schema",
                  None, None))
    bad_utf8 = _write(schema, {**GOOD, "tag": "\u00e9\u00e9"}).replace("\u00e9\u00e9".encode(), b"\xff\xfe\xfd\xfc")
    cases.append((bad_utf8, None, None, "column 'tag': not a string"))
    bad_user = _write(schema, {**GOOD, "user_id": "ab", "tag": "cd"}).replace(b"ab", b"\xed\xa0").replace(b"cd", b"\xc0\x80")
    cases.append((bad_user, None, None, "column 'user_id': not a string"))  # the first bad column in schema order
    got = decode(derived, [c[0] for c in cases])
    for (record, rec_reason, time_reason, col_reason), out in zip(cases, got):
        assert (out[1], out[2], out[3]) == (rec_reason, time_reason, col_reason), (record, out)
        assert base64.b64decode(out[0]) == record


@pytest.mark.flink
def test_corrupt_bytes_never_crash_the_decoder(decode):
    """Random truncations, bit flips and garbage of records with every Avro type: each gets a result (values or
    a reason), never an exception, a huge allocation or a loop."""
    schema = given([
        {"name": "ts", "type": ["null", "long"]}, {"name": "user_id", "type": ["null", "string"]},
        {"name": "blob", "type": "bytes"}, {"name": "m", "type": {"type": "map", "values": ["null", "string"]}},
        {"name": "a", "type": {"type": "array", "items": {"type": "record", "name": "R", "fields": [
            {"name": "x", "type": "double"}, {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["p"]}}]}}},
        {"name": "shop", "type": "long"}, {"name": "amount", "type": "double"}, {"name": "qty", "type": "int"},
        {"name": "ratio", "type": "float"}, {"name": "tag", "type": "string"}, {"name": "flag", "type": "boolean"}])
    src = source(avro_schema=schema)
    rng = random.Random(11)
    base = [_write(schema, {"ts": 5, "user_id": "u", "blob": b"\x00" * rng.randrange(4), "m": {"k": None, "j": "v"},
                            "a": [{"x": 1.5, "e": "p"}] * rng.randrange(3), "shop": 1, "amount": 2.0, "qty": 3,
                            "ratio": 1.0, "tag": "t", "flag": True}) for _ in range(10)]
    records = []
    for _ in range(400):
        b = bytearray(rng.choice(base))
        kind = rng.randrange(3)
        if kind == 0:
            b = b[:rng.randrange(len(b))]
        elif kind == 1:
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        else:
            b = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        records.append(bytes(b))
    got = decode(src, records)
    assert len(got) == len(records)
    reasons = {g[1] for g in got}
    assert reasons <= {None, "not an Avro record of the writer schema", "trailing data after the Avro record"}
    assert "not an Avro record of the writer schema" in reasons


def test_a_writer_schema_without_the_sources_columns_is_a_plan_problem_naming_source_and_column(tmp_path):
    from featurestore.engines.flink import stream as streaming
    from featurestore.engines.flink import exprs as flink_sql
    from featurestore.errors import FeatureStoreError
    from featurestore.store import FeatureStore
    from tests.randomrepo import write_repo
    from tests.test_stream import stream_definitions

    schema = {"type": "record", "name": "Tx", "fields": [
        {"name": "user_id", "type": "string"}, {"name": "shop", "type": "long"}, {"name": "amount", "type": "double"},
        {"name": "qty", "type": ["null", "double"]}, {"name": "flag", "type": "boolean"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    root = write_repo(tmp_path)
    (root / "definitions" / "features.py").write_text(stream_definitions("t").replace(
        'KafkaTopic("t")', f'KafkaTopic("t", format="avro", avro_schema={json.dumps(schema)!r})'))
    store = FeatureStore(root)
    first = ("streaming: source 'events': Avro writer schema: column 'qty' (int64) is Avro double; expected int or "
             "long")
    second = ("streaming: source 'events': Avro writer schema: column 'tag' is not a field of the Avro record 'Tx' "
              "(fields: user_id, shop, amount, qty, flag, ts)")
    problems = flink_sql.check_repo(store.repo)
    assert sorted({(p.obj, p.message) for p in problems}) == sorted(
        (v, m) for v in ("amount_stats", "qty_stats", "profile", "profile_forever", "pair_stats") for m in (first, second))
    assert all(p.file == "definitions/features.py" and p.line > 0 for p in problems)
    with pytest.raises(FeatureStoreError) as err:
        streaming.plan(store)
    assert str(err.value) == first.replace("streaming: ", "")
    # the derived schema streams: the plan reads every record once with the Avro parse function
    (root / "definitions" / "features.py").write_text(stream_definitions("t").replace(
        'KafkaTopic("t")', 'KafkaTopic("t", format="avro-confluent", avro_schema_id=12)'))
    store = FeatureStore(root)
    assert flink_sql.check_repo(store.repo) == []
    text = streaming.explain(store)
    assert "CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS fs_parse_avro_record AS " \
           "'featurestore.flink.ParseAvroRecord' LANGUAGE JAVA" in text
    assert text.count("fs_parse_avro_record(`__value`") == 1 and '"confluent":true,"schema_id":12' in text


@pytest.mark.flink
def test_pushed_rows_are_the_avro_records_the_job_reads(decode):
    """push to an Avro stream face encodes each row with the writer schema (Confluent header and id, the event
    time in the field's unit); the decoder reads back the values pushed. A value Avro cannot carry in its
    field is a one-line error naming row and column, and nothing is produced."""
    import pandas as pd

    from featurestore.errors import RequestError
    from featurestore.push.kafka import records

    rows = pd.DataFrame({"user_id": ["u1", None, "é"], "shop": [1, 2, -(2 ** 63)], "amount": [2.5, None, float("inf")],
                         "qty": pd.array([3, None, -7], dtype="Int64"), "ratio": [0.5, 1.0, None],
                         "tag": ["a", "b", None], "flag": [True, None, False],
                         "ts": pd.to_datetime(["2026-03-01T00:00:00.0015Z", "1969-12-31T23:59:59.9995Z",
                                               "2026-03-01T00:00:01.000Z"])})
    schema = given([
        {"name": "note", "type": "string", "default": "none"},  # not pushed: its default
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        *[f for f in avro.derived_schema(source())["fields"] if f["name"] != "ts"]])
    for src in (source(), source(format="avro-confluent", avro_schema=schema, avro_schema_id=9)):
        got = decode(src, records(src, rows))
        assert [g[1:4] for g in got] == [[None] * 3] * 3
        assert [g[5:] for g in got] == [
            ["u1", "1", "2.5", "3", "0.5", "a", "true", "1772323200001"],
            [None, "2", None, None, "1.0", "b", None, "-1"],
            ["é", str(-(2 ** 63)), "Infinity", "-7", None, None, "false", "1772323201000"]]
    for bad, message in [({"qty": ["3"]}, "row 0, column 'qty': not Avro int: '3' is not an integer"),
                         ({"flag": [1]}, "row 0, column 'flag': not Avro boolean: 1 is not a boolean"),
                         ({"ts": ["yesterday"]}, "row 0, column 'ts': not a time: 'yesterday'")]:
        with pytest.raises(RequestError) as err:
            records(source(), pd.DataFrame({"user_id": ["u1"], "ts": [1_772_323_200_000], **bad}))
        assert str(err.value) == f"push to source 'tx': {message}"
    with pytest.raises(RequestError, match=r"^push to source 'tx': its stream face is avro-confluent without "
                                           r"avro_schema_id; set the id"):
        records(source(format="avro-confluent"), rows)


@pytest.mark.kafka
def test_the_hand_off_reads_the_first_event_time_of_avro_records(kafka_admin):
    """The batch -> stream hand-off bounds the records a topic lost by the event times of the first retained
    records: for an Avro face it decodes the datum (Confluent header and pinned id, the field's unit)."""
    import uuid

    from featurestore.engines.flink import handoff as stream_handoff
    from featurestore.config import load_config
    from tests.test_stream import create_topic, produce

    topic = f"fs_avro_first_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_admin, topic, partitions=2)
    schema = given([{"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
                    *[f for f in avro.derived_schema(source())["fields"] if f["name"] != "ts"]])
    src = source(format="avro-confluent", avro_schema=schema, avro_schema_id=4)
    good = {"user_id": "u1", "shop": 1, "amount": 1.0, "qty": 1, "ratio": 1.0, "tag": "a", "flag": True}

    def framed(ts, schema_id=4):
        return b"\x00" + struct.pack(">i", schema_id) + _write(schema, {**good, "ts": ts})

    try:
        # partition 0: garbage, another schema id, a time out of range, then readable times (floored): the
        # latest of the head records bounds what the partition lost
        produce(topic, [(b"k", v) for v in (None, b"junk", framed(1_000, schema_id=5), framed(2 ** 62),
                                              framed(-1_500_500), framed(-2_000_000))])
        bootstrap = load_config(Path(__file__).resolve().parents[1]).kafka_bootstrap
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe"})
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in (0, 1)}
        c.close()
        got = stream_handoff.first_event_times(bootstrap, topic, src, ends)
        full = next(p for p, (low, high) in ends.items() if high > low)
        assert got == {full: (4, -1_501), 1 - full: None}
    finally:
        kafka_admin.delete_topics([topic])


@pytest.mark.kafka
def test_generate_produces_avro_records_to_an_avro_face(kafka_admin):
    """``featurestore generate --kafka`` (datagen.produce_kafka) on an Avro face: every event is one datum of
    the writer schema, keyed by user; the malformed records it interleaves are not."""
    import uuid

    from confluent_kafka import Consumer

    from featurestore import datagen
    from featurestore.config import load_config
    from tests.test_stream import create_topic

    topic = f"fs_avro_gen_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_admin, topic, partitions=1)
    src = Source(name="transactions", schema=datagen.COLUMNS, timestamp="ts", stream=KafkaTopic(topic, format="avro"))
    bootstrap = load_config(Path(__file__).resolve().parents[1]).kafka_bootstrap
    try:
        sent = datagen.produce_kafka(bootstrap, source=src, events=300, users=20, seed=3, progress=False)
        df = datagen.generate_transactions(300, 20, datagen.DEFAULT_MERCHANTS, datagen.DEFAULT_DAYS, 3)
        assert sent == 300 + datagen.malformed_count(300)
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex, "auto.offset.reset": "earliest"})
        c.subscribe([topic])
        msgs = []
        deadline = time.time() + 60
        while len(msgs) < sent and time.time() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                msgs.append(m)
        c.close()
        parsed = fastavro.parse_schema(avro.derived_schema(src))
        decoded = []
        for m in msgs:
            try:
                buf = io.BytesIO(m.value() or b"")
                rec = fastavro.schemaless_reader(buf, parsed, None)
                if buf.tell() == len(m.value()) and rec["event_id"] is not None:
                    decoded.append((m.key().decode(), rec))
            except Exception:  # noqa: BLE001 - the malformed records
                pass
        assert sorted(r["event_id"] for _, r in decoded) == sorted(df["event_id"])
        assert all(k == r["user_id"] for k, r in decoded)
    finally:
        kafka_admin.delete_topics([topic])
