"""Feast ``KafkaSource``s with a ``created_timestamp_column`` through the streaming job (SPEC §1, §2, §3), one
Flink launch.

A Feast repo (written with the ``feast`` package) declares two KafkaSources over Parquet batch faces with a
created column: ``tx`` (``JsonFormat``) and ``txa`` (``AvroFormat``, ``created`` as ``timestamp-micros``), each
read by a FeatureView of latest features (the created column and the event time listed as features, as Feast
serves them) and a StreamFeatureView of order-sensitive aggregations (last / first over several windows). The
events have many equal event times per entity and created times that differ by microseconds only (``tx``:
unique, so Feast's answer is defined), or are equal / null (``txa``: the full event order decides: time,
created, then every column); the Avro face's created times reach years 1 and 9999.

Every event is in the batch file; on Kafka each arrives once, in shuffled order, partly through
``FeatureStore.push`` (the product's wire form), partly as records spelling the created time in every
accepted way (ISO-8601 with ``Z``/``z``/an offset/no zone/a space/nine decimals, an integer of epoch
milliseconds), with malformed created values interleaved. Then:

* batch = stream: every view's offline table equals the DuckDB backfill's (same schema: ``created`` keeps its
  microseconds; same rows);
* online = offline = oracle (tests/oracle.py: ties by the created time to the microsecond) at requests on and
  around the tied event times, and Feast's own point-in-time join equals ours for ``tx`` (at ``q - 1 us``);
* each malformed created value is a dead letter ``column 'created': not a timestamp``, counted.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import io
import json
import math
import os
import random
import uuid
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from featurestore.config import load_config
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal, same_value
from tests.test_created_records import BAD_CREATED, MAX_US, MIN_US, NOT_A_TIMESTAMP, created_text
from tests.test_stream import (JOB_TIMEOUT_S, assert_same_rows, create_topic, dead_letters, drop_project,
                               offline_table, produce)

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow, pytest.mark.feast,
              pytest.mark.filterwarnings("ignore:fetch_arrow_table:DeprecationWarning")]

os.environ.setdefault("IS_TEST", "True")
os.environ.setdefault("FEAST_USAGE", "False")
feast = pytest.importorskip("feast")
fastavro = pytest.importorskip("fastavro")

KAFKA = os.environ.get("FEATURESTORE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
SEED = 61
US = 1_000
T0_MS = int(pd.Timestamp("2026-05-01 10:00:00", tz="UTC").value // 1_000_000)
CREATED0_US = int(pd.Timestamp("2026-05-02 00:00:00", tz="UTC").value // 1_000)
USERS = (-(2**63), 7, 42, 2**63 - 1)
AVRO_SCHEMA = {"type": "record", "name": "Tx", "namespace": "shop", "fields": [
    {"name": "user_id", "type": "long"},
    {"name": "f_float", "type": ["null", "double"], "default": None},
    {"name": "f_str", "type": ["null", "string"], "default": None},
    {"name": "event_timestamp", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "created", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}], "default": None},
]}

DEFINITIONS = '''\
"""Feast KafkaSources with a created_timestamp_column (tests/test_stream_created.py)."""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, KafkaSource, ValueType
from feast.aggregation import Aggregation
from feast.data_format import AvroFormat, JsonFormat
from feast.stream_feature_view import StreamFeatureView
from feast.types import Float64, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.INT64)

tx = KafkaSource(
    name="tx", kafka_bootstrap_servers={kafka!r}, topic={topic!r}, timestamp_field="event_timestamp",
    message_format=JsonFormat(schema_json="user_id bigint, f_float double, f_int bigint, f_str string, "
                              "event_timestamp timestamp, created timestamp"),
    batch_source=FileSource(name="tx_history", path={tx_path!r}, timestamp_field="event_timestamp",
                            created_timestamp_column="created"),
    watermark_delay_threshold=timedelta(seconds=5),
)
txa = KafkaSource(
    name="txa", kafka_bootstrap_servers={kafka!r}, topic={avro_topic!r}, timestamp_field="event_timestamp",
    message_format=AvroFormat(schema_json={avro_schema!r}),
    batch_source=FileSource(name="txa_history", path={txa_path!r}, timestamp_field="event_timestamp",
                            created_timestamp_column="created"),
    watermark_delay_threshold=timedelta(seconds=5),
)

tx_latest = FeatureView(
    name="tx_latest", entities=[user], ttl=timedelta(seconds=20), source=tx,
    schema=[Field(name="f_float", dtype=Float64), Field(name="f_int", dtype=Int64), Field(name="f_str", dtype=String),
            Field(name="created", dtype=UnixTimestamp)],
)
tx_stats = StreamFeatureView(
    name="tx_stats", entities=[user], source=tx, timestamp_field="event_timestamp", ttl=timedelta(days=1),
    schema=[Field(name="f_float", dtype=Float64), Field(name="f_int", dtype=Int64), Field(name="f_str", dtype=String)],
    aggregations=[Aggregation(column="f_float", function="last", time_window=timedelta(seconds=2)),
                  Aggregation(column="f_int", function="first", time_window=timedelta(seconds=10)),
                  Aggregation(column="f_str", function="last", time_window=None),
                  Aggregation(column="f_int", function="last", time_window=timedelta(minutes=10)),
                  Aggregation(column="f_float", function="sum", time_window=timedelta(seconds=5))],
)
txa_latest = FeatureView(
    name="txa_latest", entities=[user], ttl=None, source=txa,
    schema=[Field(name="f_float", dtype=Float64), Field(name="f_str", dtype=String),
            Field(name="created", dtype=UnixTimestamp), Field(name="event_timestamp", dtype=UnixTimestamp)],
)
txa_stats = StreamFeatureView(
    name="txa_stats", entities=[user], source=txa, timestamp_field="event_timestamp", ttl=timedelta(days=1),
    schema=[Field(name="f_float", dtype=Float64), Field(name="f_str", dtype=String)],
    aggregations=[Aggregation(column="f_float", function="last", time_window=timedelta(seconds=3)),
                  Aggregation(column="f_str", function="first", time_window=None),
                  Aggregation(column="f_str", function="last", time_window=timedelta(seconds=30)),
                  Aggregation(column="f_float", function="count", time_window=timedelta(seconds=3))],
)
'''

FEAST_YAML = """\
project: created_stream
registry: {repo}/data/registry.db
provider: local
offline_store:
  type: duckdb
online_store:
  type: sqlite
  path: {repo}/data/online.db
entity_key_serialization_version: 3
"""


# -- events ---------------------------------------------------------------------------------------------
def _tied_ms(rng: np.random.Generator, n: int) -> np.ndarray:
    """Event times (ms) with many ties: 40 distinct instants over 20 s."""
    return T0_MS + rng.choice(np.sort(rng.choice(20_000, 40, replace=False)), n)


def tx_events(rng: np.random.Generator, n: int = 240) -> pd.DataFrame:
    """The JSON face's events: created times unique (Feast's answer is defined) but packed into a few
    milliseconds, so a created time cut to the millisecond would tie and change the order."""
    created = CREATED0_US + rng.choice(6_000, n, replace=False)
    kind = rng.random(n)  # whole milliseconds and seconds (unique too): the integer and fraction-less forms
    index = np.arange(n)
    created = np.where(kind < 0.1, CREATED0_US + 10_000_000 + 1000 * index, created)
    created = np.where(kind > 0.95, CREATED0_US - 1_000_000 * (index + 1), created)
    df = pd.DataFrame({
        "user_id": rng.choice(np.array(USERS, dtype="int64"), n, p=[0.1, 0.4, 0.4, 0.1]),
        "f_float": pd.Series([None if rng.random() < 0.1 else float(round(v, 3)) for v in rng.normal(0, 100, n)], dtype=object),
        "f_int": pd.Series([None if rng.random() < 0.1 else int(v) for v in rng.integers(-(2**40), 2**40, n)], dtype=object),
        "f_str": pd.Series([None if rng.random() < 0.1 else str(v) for v in rng.choice(["a", "b", "ü", ""], n)], dtype=object),
        "ts_us": _tied_ms(rng, n) * US,
        "created_us": created,
    })
    assert df["created_us"].is_unique
    return df


def txa_events(rng: np.random.Generator, n: int = 200) -> pd.DataFrame:
    """The Avro face's events: created times equal (a few values microseconds apart) or null among equal event
    times, so the full event order decides; event times with sub-ms digits; created times in years 1 and 9999."""
    created = [None if rng.random() < 0.12 else int(CREATED0_US + 7 * rng.integers(0, 4)) for _ in range(n)]
    for i in rng.choice(n, 6, replace=False):
        created[i] = int(rng.choice([MIN_US, MAX_US]))
    return pd.DataFrame({
        "user_id": rng.choice(np.array(USERS[1:3], dtype="int64"), n),
        "f_float": pd.Series([None if rng.random() < 0.1 else float(v) for v in rng.integers(-3, 3, n)], dtype=object),
        "f_str": pd.Series([None if rng.random() < 0.1 else str(v) for v in rng.choice(["x", "y", "z"], n)], dtype=object),
        "ts_us": _tied_ms(rng, n) * US + np.where(rng.random(n) < 0.2, rng.integers(1, 999, n), 0),
        "created_us": pd.Series(created, dtype=object),
    })


def write_batch(path: Path, df: pd.DataFrame, columns) -> None:
    cols = {"user_id": pa.array(df["user_id"], pa.int64())}
    for c, typ in columns.items():
        cols[c] = pa.array(df[c].tolist(), typ)
    cols["event_timestamp"] = pa.array(df["ts_us"], pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    cols["created"] = pa.array(df["created_us"].tolist(), pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table(cols), path)


def rows_for_push(df: pd.DataFrame) -> pd.DataFrame:
    """Rows as a user pushes them: timestamps as pandas/datetime values."""
    out = df.drop(columns=["ts_us", "created_us"]).copy()
    out["event_timestamp"] = pd.to_datetime(df["ts_us"], unit="us", utc=True)
    out["created"] = [None if v is pd.NA or v is None else
                      datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(microseconds=int(v))
                      for v in df["created_us"].tolist()]
    return out


def json_record(row: dict, rng: random.Random) -> bytes:
    rec = {"user_id": int(row["user_id"]), "f_float": row["f_float"], "f_int": row["f_int"], "f_str": row["f_str"],
           "event_timestamp": int(row["ts_us"]) // US, "created": created_text(int(row["created_us"]), rng)}
    items = list(rec.items())
    rng.shuffle(items)
    return json.dumps(dict(items), ensure_ascii=False).encode()


def avro_record(row: dict) -> bytes:
    created = row["created_us"]
    rec = {"user_id": int(row["user_id"]), "f_float": row["f_float"], "f_str": row["f_str"],
           "event_timestamp": int(row["ts_us"]) // US,
           "created": None if created is pd.NA or created is None else int(created)}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(AVRO_SCHEMA), rec)
    return buf.getvalue()


def bad_json_records():
    return [json.dumps({"user_id": 7, "f_float": 1.0, "event_timestamp": T0_MS + i, "created": v}).encode()
            for i, v in enumerate(BAD_CREATED)]


def bad_avro_records():
    out = []
    for i, created in enumerate((MAX_US + 1, MIN_US - 1, 2**62)):
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, fastavro.parse_schema(AVRO_SCHEMA), {
            "user_id": 7, "f_float": 1.0, "f_str": "x", "event_timestamp": T0_MS + i, "created": created})
        out.append(buf.getvalue())
    return out


# -- the run --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Run:
    store: FeatureStore  # streamed
    ref: FeatureStore  # the same repo backfilled by DuckDB
    feast: object
    tx: pd.DataFrame
    txa: pd.DataFrame
    tx_path: Path
    txa_path: Path
    result: streaming.StreamResult


@pytest.fixture(scope="module")
def run(tmp_path_factory, redis_client, kafka_admin):
    root = tmp_path_factory.mktemp("created")
    feast_repo = root / "feast_repo"
    (feast_repo / "data").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    tx, txa = tx_events(rng), txa_events(rng)
    tx_path, txa_path = feast_repo / "data" / "tx.parquet", feast_repo / "data" / "txa.parquet"
    write_batch(tx_path, tx, {"f_float": pa.float64(), "f_int": pa.int64(), "f_str": pa.string()})
    write_batch(txa_path, txa, {"f_float": pa.float64(), "f_str": pa.string()})
    topic, avro_topic = f"fs_created_{uuid.uuid4().hex[:8]}", f"fs_created_avro_{uuid.uuid4().hex[:8]}"
    project = f"t_created_{uuid.uuid4().hex[:8]}"
    defs = DEFINITIONS.format(kafka=KAFKA, topic=topic, avro_topic=avro_topic, tx_path=str(tx_path),
                              txa_path=str(txa_path), avro_schema=json.dumps(AVRO_SCHEMA))
    (feast_repo / "defs.py").write_text(defs)
    (feast_repo / "feature_store.yaml").write_text(FEAST_YAML.format(repo=feast_repo))
    ours = root / "ours"
    ours.mkdir()
    (ours / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: {feast_repo}\n")
    for t in (topic, avro_topic):
        create_topic(kafka_admin, t)
    store = FeatureStore(ours)
    try:
        # a third of each face's events pushed (the product's wire form), the rest produced as records
        pick = random.Random(SEED)
        pushed_tx = [i for i in range(len(tx)) if pick.random() < 0.33]
        pushed_txa = [i for i in range(len(txa)) if pick.random() < 0.33]
        for name, df, idx in (("tx", tx, pushed_tx), ("txa", txa, pushed_txa)):
            res = store.push(name, rows_for_push(df.iloc[idx].reset_index(drop=True)))
            assert res.events == len(idx) and not res.dead_letters, res
        rest = tx.drop(index=pushed_tx).sample(frac=1.0, random_state=1).to_dict("records")
        records = [(None, json_record(r, pick)) for r in rest]
        for payload in bad_json_records():
            records.insert(pick.randrange(len(records) + 1), (None, payload))
        produce(topic, records)
        rest = txa.drop(index=pushed_txa).sample(frac=1.0, random_state=2).to_dict("records")
        records = [(None, avro_record(r)) for r in rest]
        for payload in bad_avro_records():
            records.insert(pick.randrange(len(records) + 1), (None, payload))
        produce(avro_topic, records)

        handle = streaming.start(store, bounded=True, checkpoint_interval_ms=1000)
        result = handle.run_until_done(JOB_TIMEOUT_S)
        ref = FeatureStore(ours, config=dataclasses.replace(load_config(ours), offline_root=str(root / "ref_offline")))
        ref.backfill()
        spec = importlib.util.spec_from_file_location("created_stream_defs", feast_repo / "defs.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        objects = [v for v in vars(module).values() if isinstance(v, (
            feast.Entity, feast.KafkaSource, feast.FeatureView, feast.StreamFeatureView))]
        fs = feast.FeatureStore(repo_path=str(feast_repo))
        fs.apply(objects)
        yield Run(store, ref, fs, tx, txa, tx_path, txa_path, result)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic, avro_topic])


def test_stream_offline_tables_equal_the_backfill_to_the_microsecond(run):
    for view in run.store.repo.views:
        got, want = offline_table(run.store, view, "event_timestamp"), offline_table(run.ref, view, "event_timestamp")
        assert got.schema == want.schema, f"{view}: {got.schema} != {want.schema}"
        assert got.schema.field("created").type == pa.timestamp("us", tz="UTC"), view
        assert_same_rows(got, want, f"view {view}, stream vs backfill")
    sub_ms = [v for v in offline_table(run.store, "tx_latest", "event_timestamp").column("created").cast(pa.int64())
              .to_pylist() if v is not None and v % 1000]
    assert len(sub_ms) > len(run.tx) // 2, "created times keep their microseconds"
    m = run.result.metrics
    assert m["tx"]["events:tx_latest"] == m["tx"]["events:tx_stats"] == len(run.tx), m
    assert m["txa"]["events:txa_latest"] == m["txa"]["events:txa_stats"] == len(run.txa), m
    assert (m["tx"]["dead_letters"], m["txa"]["dead_letters"]) == (len(BAD_CREATED), 3), m


def test_malformed_created_times_are_dead_letters(run):
    got = Counter(r["reason"] for r in dead_letters(run.store, "tx"))
    assert got == Counter({NOT_A_TIMESTAMP: len(BAD_CREATED)}), got
    got = Counter(r["reason"] for r in dead_letters(run.store, "txa"))
    assert got == Counter({NOT_A_TIMESTAMP: 3}), got


def requests(df: pd.DataFrame, rng: np.random.Generator, n: int = 70) -> pd.DataFrame:
    """(user, q): on tied event times and 1 ms after them, random times, after the last event."""
    ms = df["ts_us"] // US
    rows = []
    for i in rng.choice(len(df), n, replace=False):
        u, t = int(df["user_id"].iloc[i]), int(ms.iloc[i])
        rows += [(u, t), (u, t + 1)]
    rows += [(int(u), int(ms.max()) + 1 + int(d)) for u in df["user_id"].unique() for d in (0, 5000)]
    out = pd.DataFrame(rows, columns=["user_id", "q_ms"])
    out["q"] = pd.to_datetime(out["q_ms"], unit="ms", utc=True)
    return out.astype({"user_id": "int64"})


def _features(view) -> list:
    return [f.name for f in view.features]


def test_online_equals_offline_equals_the_oracle_with_ties_by_created(run):
    rng = np.random.default_rng(SEED + 1)
    store = run.store
    for source, df, path in (("tx", run.tx, run.tx_path), ("txa", run.txa, run.txa_path)):
        req = requests(df, rng)
        events = pq.read_table(path).to_pandas()
        for name in (f"{source}_latest", f"{source}_stats"):
            view = store.repo.views[name]
            names = _features(view)
            offline = pd.DataFrame(store.get_historical_features(req[["user_id", "q"]], timestamp_column="q",
                                                                 features=[f"{name}:{f}" for f in names]))
            expected = oracle.point_in_time(events, view, req[["user_id", "q"]], timestamp_col="q")
            assert_features_equal(offline, expected, names, f"offline (streamed tables) vs oracle, view {name}")
            compared = 0
            for i, r in enumerate(req.to_dict("records")):
                res = store.get_online_features([{"user_id": r["user_id"]}], features=[f"{name}:{f}" for f in names],
                                                request_time=r["q"])
                if res.refusals:
                    assert all("retention horizon" in why for why in res.refusals), res.refusals
                    continue
                got = res.to_dict()
                for f in names:
                    a, e = got[f][0], offline[f].iloc[i]
                    e = None if isinstance(e, float) and math.isnan(e) else e
                    assert same_value(_plain(a), _plain(e)), \
                        f"{name}.{f} user {r['user_id']} at {r['q']}: online {a!r}, offline {e!r}"
                compared += 1
            assert compared >= len(req) // 2, f"{name}: only {compared} of {len(req)} online requests compared"


def _plain(v):
    if v is None or v is pd.NaT:
        return None
    if isinstance(v, (pd.Timestamp, datetime.datetime)):
        return pd.Timestamp(v).tz_convert("UTC") if pd.Timestamp(v).tzinfo else pd.Timestamp(v).tz_localize("UTC")
    return v


def test_latest_features_equal_feast_on_the_json_face(run):
    """Feast's own point-in-time join over the same file (ties broken by the created time, which is unique here)
    equals ours at ``q - 1 us`` (Feast includes ``q``), the created column included."""
    rng = np.random.default_rng(SEED + 2)
    req = requests(run.tx, rng)
    names = _features(run.store.repo.views["tx_latest"])
    ours = pd.DataFrame(run.store.get_historical_features(req[["user_id", "q"]], timestamp_column="q",
                                                          features=[f"tx_latest:{f}" for f in names]))
    edf = req[["user_id"]].assign(event_timestamp=(req["q"] - pd.Timedelta("1us")).astype(
        "datetime64[us, UTC]"), row_id=np.arange(len(req)))
    theirs = run.feast.get_historical_features(entity_df=edf, features=[f"tx_latest:{f}" for f in names]).to_df()
    theirs = theirs.sort_values("row_id", kind="stable").reset_index(drop=True)
    assert_features_equal(ours, theirs, names, "ours at q vs Feast at q - 1 us, view tx_latest")
    assert ours["created"].notna().sum() > len(ours) // 2


def test_the_streams_raw_events_are_the_members_materialize_and_the_hand_off_seed_write(run, redis_client):
    """A hand-off seeds online state with materialize's members (DuckDB's ``epoch_us`` of the created time) and
    the state operator then orders them against the stream's events (``fs_epoch_us``): every raw event the stream
    wrote is, id aside, the member materialize writes for it from the batch face."""
    from featurestore.stores.online_redis import entity_base

    project = run.store.config.project
    other = project + "_m"
    ours = run.store.repo_path
    mat = FeatureStore(ours, config=dataclasses.replace(load_config(ours), project=other,
                                                        offline_root=str(Path(run.tx_path).parents[2] / "m_offline")))

    def members(proj: str) -> dict:
        out = {}
        for view in run.store.repo.views:
            for u in USERS:
                raw = redis_client.zrange(entity_base(proj, view, [int(u)]) + ":r", 0, -1)
                out[(view, int(u))] = sorted((json.loads(m)[1:] for m in raw), key=json.dumps)  # without the id
        return out

    try:
        mat.materialize()
        streamed, materialized = members(project), members(other)
        compared = 0
        for key, got in streamed.items():
            if not got:
                continue
            first = min(m[0] for m in got)  # the stream trims to the view's retention
            want = [m for m in materialized[key] if m[0] >= first]
            assert got == want, key
            compared += len(got)
        assert compared > (len(run.tx) + len(run.txa)) // 2, compared
    finally:
        drop_project(redis_client, other)
