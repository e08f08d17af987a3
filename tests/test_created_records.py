"""Timestamp columns other than the event time (a Feast ``created_timestamp_column``) in a stream face's records,
below the streaming job: the Java parse functions run outside Flink (tests/fixtures/java/ParseRecords.java, one
JVM per call) over random JSON spellings and Avro units of random times across years 1 to 9999, the bad ones,
and the records ``push`` writes; the job's plan for such a source. End to end: tests/test_stream_created.py."""

from __future__ import annotations

import base64
import datetime
import json
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from featurestore import semantics
from featurestore.model import KafkaTopic, ParquetFiles, Source
from tests.test_avro_records import HARNESS, _write

fastavro = pytest.importorskip("fastavro")

SCHEMA = {"user_id": "int64", "f": "float64", "created": "timestamp", "ts": "timestamp"}
CREATED = 5 + list(SCHEMA).index("created")  # its value's index in the function's result
T0_MS = 1_772_323_200_000
MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
MAX_US = 253_402_300_800_000_000 - 1  # 9999-12-31T23:59:59.999999Z
NOT_A_TIMESTAMP = "column 'created': not a timestamp"
BAD_CREATED = ["2026-02-30T00:00:00Z", "2026-03-01T24:00:00Z", "2026-03-01T00:00:60Z", "yesterday", 1.5, True,
               {"a": 1}, "0000-12-31T23:59:59Z", "2026-03-01T00:00:00+19:00", "2026-03-01", 10**18,
               "9999-12-31T23:59:59.999999-01:00", "2026-03-01T00:00:00.Z", "２０２６-03-01T00:00:00Z", ""]


def created_text(us: int, rng: random.Random):
    """One of the accepted JSON spellings of the created time ``us`` (epoch microseconds)."""
    t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
    date = f"{t.year:04d}-{t:%m-%d}"
    if us % 1000 == 0 and rng.random() < 0.5:
        return us // 1000  # an integer: epoch milliseconds, the event time's unit
    frac = f".{t.microsecond:06d}"
    kind = rng.randrange(6)
    if kind in (3, 4) and not datetime.datetime(1, 1, 2) < t < datetime.datetime(9999, 12, 31):
        kind = 0  # an offset would move the local time out of years 1 to 9999
    if kind == 0:
        return f"{date}T{t:%H:%M:%S}{frac}Z"
    if kind == 1:
        return f"{date} {t:%H:%M:%S}{frac}"  # no zone: UTC
    if kind == 2:  # nine decimals: floored to the microsecond
        return f"{date}T{t:%H:%M:%S}{frac}{rng.randrange(1000):03d}z"
    if kind == 3:
        off = datetime.timedelta(hours=5, minutes=30)
        s = t + off
        return f"{s.year:04d}-{s:%m-%dT%H:%M:%S}{frac}+05:30"
    if kind == 4:
        s = t - datetime.timedelta(hours=8)
        return f"{s.year:04d}-{s:%m-%dT%H:%M:%S}{frac}-0800"
    return f"{date}T{t:%H:%M:%S}" + (frac.rstrip("0").rstrip(".") if us % 1_000_000 else "") + "Z"


def source(fmt: str = "json", avro_schema=None) -> Source:
    return Source(name="tx", schema=dict(SCHEMA), timestamp="ts", tiebreak=("created",),
                  batch=ParquetFiles("data/*.parquet"), stream=KafkaTopic("t", format=fmt, avro_schema=avro_schema))


@pytest.fixture(scope="module")
def parse(tmp_path_factory):
    """parse(source, [bytes or None, ...]) -> the source's parse function's result per record."""
    import pyflink

    from featurestore.config import load_config
    from featurestore.devinfra.jars import connector_jars
    from featurestore.engines.flink.ingest import parse_spec
    from featurestore.engines.flink.udf import AVRO_UDF_CLASS, UDF_CLASS, udf_jar

    jars = connector_jars(load_config(Path(__file__).resolve().parents[1]))
    cp = [str(Path(pyflink.__file__).parent / "lib" / "*"), str(udf_jar(jars)), *map(str, jars)]
    classes = tmp_path_factory.mktemp("harness")
    subprocess.run(["javac", "-nowarn", "-d", str(classes), "-cp", ":".join(cp), str(HARNESS)], check=True)

    def run(src: Source, records):
        lines = [parse_spec(src)] + ["-" if r is None else base64.b64encode(r).decode() for r in records]
        cls = AVRO_UDF_CLASS if src.stream.is_avro else UDF_CLASS
        out = subprocess.run(["java", "-cp", ":".join([str(classes), *cp]), "ParseRecords", cls],
                             input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-3000:]
        return [json.loads(line) for line in out.stdout.splitlines()]

    return run


def random_us(rng: random.Random) -> int:
    return rng.choice([MIN_US, MAX_US, 0, -1, 1, -1_000_001, rng.randrange(MIN_US, MAX_US),
                       rng.randrange(-10**15, 10**15), 1_777_680_000_000_000 + rng.randrange(10**4)])


def _json(created) -> bytes:
    return json.dumps({"user_id": 1, "ts": T0_MS, "created": created}).encode()


@pytest.mark.flink
def test_every_json_spelling_of_a_created_time_reads_as_its_microseconds(parse):
    rng = random.Random(3)
    values = [random_us(rng) for _ in range(400)]
    texts = [created_text(us, rng) for us in values]
    assert {type(x) for x in texts} == {int, str}
    got = parse(source(), [_json(x) for x in texts])
    for us, text, out in zip(values, texts, got):
        assert out[1:4] == [None, None, None], (text, out)
        assert out[CREATED] == str(us), (text, us, out[CREATED])
    # the nine-decimal spelling is floored (before 1970 too), a zone-less text is UTC
    got = parse(source(), [_json(x) for x in ("1969-12-31T23:59:59.999999999Z", "1970-01-01 00:00:00.0000019",
                                              "0001-01-01T01:00:00+01:00", "9999-12-31T23:00:00.999999-00:59")])
    assert [g[CREATED] for g in got] == ["-1", "1", str(MIN_US), str(MAX_US - 59_000_000)]


@pytest.mark.flink
def test_a_created_value_that_is_not_a_timestamp_is_the_columns_dead_letter_reason(parse):
    got = parse(source(), [_json(x) for x in BAD_CREATED])
    for bad, out in zip(BAD_CREATED, got):
        assert out[3] == NOT_A_TIMESTAMP and out[CREATED] is None and out[1:3] == [None, None], (bad, out)


@pytest.mark.flink
@pytest.mark.parametrize("unit", ["timestamp-millis", "timestamp-micros", "timestamp-nanos", None])
def test_avro_created_fields_of_every_unit_read_as_microseconds(parse, unit):
    created = {"type": "long", "logicalType": unit} if unit else "long"
    schema = {"type": "record", "name": "Tx", "fields": [
        {"name": "user_id", "type": "long"}, {"name": "f", "type": ["null", "double"], "default": None},
        {"name": "created", "type": ["null", created], "default": None},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}}]}
    src = source("avro", schema)
    scale = {"timestamp-millis": 1000, None: 1000, "timestamp-micros": 1, "timestamp-nanos": 0.001}[unit]
    rng = random.Random(len(unit or ""))
    raw = []
    for _ in range(200):  # the field's raw long, within what it can hold
        us = random_us(rng) if unit != "timestamp-nanos" else rng.randrange(-(2**63) // 1000, (2**63 - 1) // 1000)
        raw.append(int(us // scale) if scale >= 1 else us * 1000 + rng.randrange(1000))
    raw += [None, 2**62, -(2**62)]
    records = [_write(schema, {"user_id": 1, "f": 1.0, "created": r, "ts": T0_MS}) for r in raw]
    for r, out in zip(raw, parse(src, records)):
        if r is None:
            assert out[3] is None and out[CREATED] is None
            continue
        us = r * 1000 if scale == 1000 else r if scale == 1 else r // 1000
        if semantics.time_value_supported(us):
            assert out[3] is None and out[CREATED] == str(us), (unit, r, out)
        else:
            assert out[3] == NOT_A_TIMESTAMP and out[CREATED] is None, (unit, r, out)


@pytest.mark.flink
@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_pushed_records_carry_the_created_time_to_the_microsecond(parse, fmt):
    import pandas as pd

    from featurestore.push.kafka import records

    rng = random.Random(11)
    values = [random_us(rng) for _ in range(100)] + [None]
    rows = pd.DataFrame({"user_id": range(len(values)), "f": [0.5] * len(values),
                         "ts": pd.to_datetime([T0_MS] * len(values), unit="ms", utc=True),
                         "created": [None if us is None else _dt(us) for us in values]})
    src = source(fmt)
    got = parse(src, records(src, rows))
    for us, out in zip(values, got):
        assert out[1:4] == [None, None, None] and out[CREATED] == (None if us is None else str(us)), (us, out)


def _dt(us: int):
    import datetime

    return datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=us)


def test_the_stream_plan_of_a_source_with_a_created_column(tmp_path):
    """Was a plan error ("a timestamp other than the event time"): now the typed view makes it a TIMESTAMP(6)
    from epoch microseconds, the sink stores it in micros as TIMESTAMP_LTZ(6), and the online rows order ties
    by it as epoch microseconds."""
    from featurestore.engines.flink import stream as streaming
    from featurestore.store import FeatureStore

    (tmp_path / "definitions").mkdir()
    (tmp_path / "featurestore.yaml").write_text("project: created_plan\ndefinitions: definitions\n")
    (tmp_path / "definitions" / "features.py").write_text('''
from featurestore import Entity, FeatureView, KafkaTopic, Latest, Aggregation, ParquetFiles, Source
user = Entity(join_keys=["user_id"])
tx = Source(schema={"user_id": "int64", "f": "float64", "created": "timestamp", "ts": "timestamp"}, timestamp="ts",
            tiebreak=("created",), batch=ParquetFiles("data/*.parquet"), stream=KafkaTopic("tx"))
tx_view = FeatureView(entities=[user], source=tx, features=[Latest("f"), Latest("created"),
                      Aggregation("f", "last", "1h")])
''')
    store = FeatureStore(tmp_path)
    sql = streaming.explain(store)
    assert "fs_timestamp_us(TRY_CAST(`__p`[8] AS BIGINT)) AS `created`" in sql
    assert "CAST(`created` AS TIMESTAMP_LTZ(6)) AS `created`" in sql and "'parquet.timestamp.time.unit' = 'micros'" in sql
    assert "fs_epoch_us(`created`)" in sql


def _expected_us(value):
    """Epoch microseconds of a time value, computed apart from datagen (naive = UTC, digits below us floored)."""
    import numpy as np
    import pandas as pd

    if value is None or value is pd.NaT:
        return None
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        unit, _ = np.datetime_data(value.dtype)
        per_us = {"s": 10**-6, "ms": 10**-3, "us": 1, "ns": 1000}[unit]
        n = int(value.astype(np.int64))
        return n * round(1 / per_us) if per_us < 1 else n // per_us
    if isinstance(value, pd.Timestamp):
        return (value.tz_convert(None) if value.tzinfo else value).value // 1000
    if value.tzinfo is not None:
        value = value.astimezone(datetime.timezone.utc).replace(tzinfo=None)
    d = value - datetime.datetime(1970, 1, 1)
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def random_time_value(rng: random.Random):
    """A created time as a user's frame holds it: pandas/numpy/datetime, naive or zoned, ns digits, years 1-9999."""
    import numpy as np
    import pandas as pd

    kind = rng.randrange(6)
    us = random_us(rng)
    if kind == 0:  # pandas, ns digits (its range: 1677-2262)
        ns = rng.randrange(-(2**63) + 10**9, 2**63 - 10**9)
        ts = pd.Timestamp(ns, unit="ns")
        return ts.tz_localize("UTC").tz_convert("Asia/Kolkata") if rng.random() < 0.5 else ts
    if kind == 1:
        return np.datetime64(us, "us")
    if kind == 2:
        return np.datetime64(us // 1_000_000, "s")
    if kind == 3:  # a zoned datetime, away from the calendar's ends so the local time exists
        us = max(min(us, MAX_US - 86_400_000_000), MIN_US + 86_400_000_000)
        t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
        return t.replace(tzinfo=datetime.timezone.utc).astimezone(datetime.timezone(datetime.timedelta(hours=-7)))
    if kind == 4:
        return datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=us)
    return rng.choice([None, pd.NaT, np.datetime64("NaT", "us")])


def test_datagen_writes_time_values_as_their_microseconds():
    """``datagen.to_json_record`` raised TypeError on a timestamp value column; now ISO text in UTC with its
    microseconds, the same bytes row by row and column by column (iter_json_records)."""
    import pandas as pd

    from featurestore import datagen

    rng = random.Random(11)
    values = [random_time_value(rng) for _ in range(300)]
    for v in values:
        rec = json.loads(datagen.to_json_record({"user_id": 1, "ts": T0_MS, "created": v}, "ts", list(SCHEMA)))
        want = _expected_us(v)
        if want is None:
            assert rec["created"] is None, v
            continue
        t = datetime.datetime(1970, 1, 1) + datetime.timedelta(microseconds=want)
        assert rec["created"] == f"{t.year:04d}-{t:%m-%dT%H:%M:%S}.{t.microsecond:06d}Z", (v, rec)
    # a frame's datetime64 column (pandas' ns range, zoned or naive) gives the bytes of the row-by-row encoding
    ns = [None if rng.random() < 0.1 else rng.randrange(-(2**63) + 10**9, 2**63 - 10**9) for _ in range(200)]
    for col in (pd.to_datetime(pd.Series(ns, dtype="Int64"), unit="ns"),
                pd.to_datetime(pd.Series(ns, dtype="Int64"), unit="ns", utc=True).dt.tz_convert("America/Denver"),
                pd.Series([np.datetime64(random_us(rng), "us") for _ in range(200)], dtype="datetime64[us]")):
        df = pd.DataFrame({"user_id": 1, "ts": T0_MS, "created": col})
        rows = [datagen.to_json_record(r, "ts", list(SCHEMA)) for r in df.to_dict("records")]
        assert [p for _, p in datagen.iter_json_records(df, "ts", list(SCHEMA))] == rows


@pytest.mark.flink
def test_datagen_time_values_read_back_by_the_stream_to_the_microsecond(parse):
    from featurestore import datagen

    rng = random.Random(12)
    values = [random_time_value(rng) for _ in range(300)]
    records = [datagen.to_json_record({"user_id": 1, "ts": T0_MS, "created": v}, "ts", list(SCHEMA)) for v in values]
    for v, out in zip(values, parse(source(), records)):
        want = _expected_us(v)
        assert out[1:4] == [None, None, None] and out[CREATED] == (None if want is None else str(want)), (v, out)
