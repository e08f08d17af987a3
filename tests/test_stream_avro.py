"""Avro stream faces end to end (SPEC §1, §3): the same guarantees as JSON records, in one Flink launch.

Two sources stream in one job: the random repo's ``events`` as ``KafkaTopic(format="avro")`` with the
schema derived from the source (fastavro writes every record with it), and a Feast ``KafkaSource`` with
``AvroFormat(schema_json)`` translated into a ``KafkaTopic(format="avro", avro_schema=...)`` (fields in
another order, an extra field, ``timestamp-micros``, an ``int`` into an int64 column). Among the events:
one of every extreme-time kind, NaN and infinite amounts, a null join key; interleaved malformed records
(a tombstone, empty and truncated bytes, trailing bytes, a bad union index, a JSON record, invalid UTF-8
in a key and in a value, a null event time, another schema). Then: offline rows = the DuckDB backfill of
the same events, every dead letter with its reason and its bytes (base64), counted; online = the oracle;
offline (from the streamed tables) = the oracle. The decoder alone: tests/test_avro_records.py.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
import random
import time
import uuid
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from featurestore import datagen
from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.engines.backfill import dead_letter_table
from featurestore.errors import RequestError
from featurestore.model import avro
from featurestore.store import FeatureStore
from tests import oracle
from tests.compare import assert_features_equal, same_value
from tests.randomrepo import BASE, BASE_MS, extreme_events, extreme_times, random_events, write_batch_face
from tests.test_event_times import REASONS, extreme_requests
from tests.test_stream import (JOB_TIMEOUT_S, KEYS, assert_same_rows, create_topic, dead_letters, drop_project,
                               make_repo, offline_table, produce)

fastavro = pytest.importorskip("fastavro")

SEED = 43
N_EVENTS = 200
NOT_AVRO = "not an Avro record of the writer schema"
PAYMENTS_SCHEMA = {"type": "record", "name": "Payment", "namespace": "shop.events", "fields": [
    {"name": "note", "type": ["null", "string"], "default": None},  # no column of the source: decoded, ignored
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
    {"name": "merchant_id", "type": "string"},
    {"name": "amount", "type": ["null", "double"]},
    {"name": "n", "type": "int"},
]}
FEAST_DEFINITIONS = '''
from datetime import timedelta

from feast import Entity, Field, FileSource, KafkaSource, ValueType
from feast.aggregation import Aggregation
from feast.data_format import AvroFormat
from feast.stream_feature_view import StreamFeatureView
from feast.types import Float64, Int64

merchant = Entity(name="merchant", join_keys=["merchant_id"], value_type=ValueType.STRING)
payments = KafkaSource(name="payments", topic=TOPIC, timestamp_field="ts",
                       message_format=AvroFormat(schema_json=SCHEMA_JSON),
                       batch_source=FileSource(path="data/payments/*.parquet", timestamp_field="ts"),
                       watermark_delay_threshold=timedelta(seconds=1))
payment_stats = StreamFeatureView(
    name="payment_stats", entities=[merchant], source=payments, timestamp_field="ts",
    schema=[Field(name="merchant_id", dtype=String), Field(name="amount", dtype=Float64), Field(name="n", dtype=Int64)],
    aggregations=[Aggregation(column="amount", function="sum", time_window=timedelta(minutes=1)),
                  Aggregation(column="amount", function="max", time_window=timedelta(hours=1)),
                  Aggregation(column="n", function="count_distinct", time_window=timedelta(minutes=5)),
                  Aggregation(column="n", function="last", time_window=timedelta(seconds=10))])
'''.replace("from feast.types import Float64, Int64", "from feast.types import Float64, Int64, String")


def _write(schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def _b64(payload):
    return None if payload is None else base64.b64encode(payload).decode()


def _event_record(schema: dict, row: dict) -> bytes:
    # NaN stays NaN (Avro carries it; the job makes it null, as the batch face's reader does)
    rec = {k: v if isinstance(v, float) and math.isnan(v) else None if datagen._is_null(v) else v
           for k, v in row.items() if k != "kind"}
    rec["ts"] = datagen.to_epoch_ms(row["ts"])
    for k in ("shop", "qty"):
        rec[k] = None if rec[k] is None else int(rec[k])
    rec["flag"] = None if rec["flag"] is None else bool(rec["flag"])
    return _write(schema, rec)


def malformed(schema: dict):
    """(payload, reason) of every kind of bad Avro record of the events source."""
    good = {"user_id": "u1", "shop": 1, "amount": 2.5, "qty": 3, "tag": "ab", "flag": True, "ts": BASE_MS + 5}
    ok = _write(schema, good)
    return [
        (None, "empty record (null value)"),
        (b"", NOT_AVRO),
        (ok[:-2], NOT_AVRO),
        (ok + b"\x00", "trailing data after the Avro record"),
        (b"\x06" + ok[1:], NOT_AVRO),  # union branch 3 of 2
        (datagen.to_json_record({**good}, "ts", list(good)), NOT_AVRO),  # JSON produced into the Avro topic
        (_write({"type": "record", "name": "Other", "fields": [{"name": "x", "type": "string"}]}, {"x": "hello"}),
         NOT_AVRO),
        (_write(schema, {**good, "user_id": "u\u00e9"}).replace("u\u00e9".encode(), b"u\xff\xfe"),
         "column 'user_id': not a string"),
        (_write(schema, {**good, "tag": "\u00e9"}).replace("\u00e9".encode(), b"\xc3("), "column 'tag': not a string"),
        (_write(schema, {**good, "ts": None}), "missing event time 'ts'"),
        (_write(schema, {**good, "ts": BASE_MS * 1000, "tag": "\u00e9"}).replace("\u00e9".encode(), b"\xc3("),
         REASONS["out of range"]),  # the time's problem before a column's
    ]


def special_events() -> pd.DataFrame:
    """Values only a binary format carries: NaN (null at ingestion, as in the batch face) and infinities;
    a null join key of the pair view."""
    rows = [{"user_id": "u_nan", "shop": 0, "amount": math.nan, "qty": 1, "tag": "n", "flag": True, "ts": BASE + pd.Timedelta("3s")},
            {"user_id": "u_inf", "shop": 1, "amount": math.inf, "qty": 2, "tag": "i", "flag": True, "ts": BASE + pd.Timedelta("4s")},
            {"user_id": "u_inf", "shop": 1, "amount": -math.inf, "qty": 3, "tag": "i", "flag": False, "ts": BASE + pd.Timedelta("5s")},
            {"user_id": "u2", "shop": None, "amount": None, "qty": None, "tag": None, "flag": None,
             "ts": BASE + pd.Timedelta("2.000123s")}]
    df = pd.DataFrame(rows)
    return df.astype({"shop": "Int64", "qty": "Int64", "flag": "boolean", "amount": "float64", "tag": "object"})


def payment_events(seed: int, n: int = 150) -> pd.DataFrame:
    rng = random.Random(seed)
    rows, t = [], 0
    for _ in range(n):
        t += rng.choice([0, 0, 1, 250, 999, 4_000_000, 20_000_000])  # microseconds: ties, sub-ms digits
        rows.append({"merchant_id": f"m{rng.randrange(4)}", "amount": None if rng.random() < 0.1 else
                     round(rng.uniform(-20, 500), 2), "n": rng.randrange(-3, 6), "note": rng.choice([None, "x"]),
                     "ts": BASE + pd.Timedelta(microseconds=t)})
    return pd.DataFrame(rows)


@dataclasses.dataclass
class Run:
    root: Path
    store: FeatureStore
    now_ms: int
    events: pd.DataFrame  # every event of the events source (good, special and extreme), as the batch face has them
    extremes: pd.DataFrame
    payments: pd.DataFrame
    want_dead: Counter
    want_payment_dead: Counter
    result: streaming.StreamResult


@pytest.fixture(scope="module")
def run(tmp_path_factory, redis_client, kafka_admin):
    topic, pay_topic = f"fs_avro_{uuid.uuid4().hex[:10]}", f"fs_avro_pay_{uuid.uuid4().hex[:8]}"
    project = f"t_avro_{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    rng = random.Random(SEED)
    events = pd.concat([random_events(SEED, n=N_EVENTS), special_events()], ignore_index=True)
    extremes = extreme_events(SEED, now)
    root = tmp_path_factory.mktemp("avro")
    make_repo(root, topic, project, events)
    defs = root / "definitions" / "features.py"
    defs.write_text(defs.read_text().replace(f'KafkaTopic("{topic}")', f'KafkaTopic("{topic}", format="avro")'))
    (root / "definitions" / "feast_payments.py").write_text(
        f"TOPIC = {pay_topic!r}\nSCHEMA_JSON = {json.dumps(PAYMENTS_SCHEMA)!r}\n" + FEAST_DEFINITIONS)
    write_batch_face(root, events, extremes)
    payments = payment_events(SEED)
    (root / "data" / "payments").mkdir(parents=True)
    payments.drop(columns=["note"]).to_parquet(root / "data" / "payments" / "part-0.parquet", index=False)

    store = FeatureStore(root)
    schema = avro.writer_schema(store.repo.sources["events"])
    records = [_event_record(schema, r) for r in events.to_dict("records")]
    records += [_event_record(schema, r) for r in extremes.to_dict("records")]
    rng.shuffle(records)
    want_dead = Counter()
    for payload, reason in malformed(schema):
        records.insert(rng.randrange(len(records) + 1), payload)
        want_dead[(_b64(payload), reason)] += 1
    for row in extremes.to_dict("records"):
        fate = next(f for k, _, f in extreme_times(now) if k == row["kind"])
        if fate:
            want_dead[(_b64(_event_record(schema, row)), REASONS[fate])] += 1
    null_shop = special_events().iloc[-1].to_dict()
    want_dead[(_b64(_event_record(schema, null_shop)), "null join key shop (views pair_stats)")] += 1

    pay_records = []
    for r in payments.to_dict("records"):
        pay_records.append(_write(PAYMENTS_SCHEMA, {**r, "amount": None if pd.isna(r["amount"]) else r["amount"],
                                                    "ts": r["ts"].value // 1000}))
    bad_payments = [(None, "empty record (null value)"), (pay_records[0][:3], NOT_AVRO),
                    (pay_records[1] + b"\x01", "trailing data after the Avro record"),
                    (_write(PAYMENTS_SCHEMA, {"note": None, "ts": 2 ** 62, "merchant_id": "m1", "amount": 1.0, "n": 1}),
                     "event time 'ts' out of range (supported: 1900-01-01 to 2199-12-31 UTC)")]
    want_payment_dead = Counter((_b64(p), r) for p, r in bad_payments)
    for payload, _ in bad_payments:
        pay_records.insert(rng.randrange(len(pay_records) + 1), payload)

    create_topic(kafka_admin, topic)
    create_topic(kafka_admin, pay_topic, partitions=2)
    produce(topic, [(None, r) for r in records])
    produce(pay_topic, [(None, r) for r in pay_records])
    try:
        result = streaming.run(store, bounded=True, checkpoint_interval_ms=1000, timeout=JOB_TIMEOUT_S)
        yield Run(root, store, now, events, extremes, payments, want_dead, want_payment_dead, result)
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic, pay_topic])


def _ref(root: Path, name: str) -> FeatureStore:
    return FeatureStore(root, config=dataclasses.replace(load_config(root), offline_root=str(root / name)))


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_avro_stream_equals_the_duckdb_backfill_and_dead_letters_are_exact(run):
    ref = _ref(run.root, "ref_offline")
    results = {r.view: r for r in ref.backfill()}
    assert set(run.store.repo.views) >= {"amount_stats", "pair_stats", "payment_stats"}
    for view in run.store.repo.views:
        assert_same_rows(offline_table(run.store, view), offline_table(ref, view), f"view {view}, stream vs backfill")
    got = Counter((r["payload"], r["reason"]) for r in dead_letters(run.store))
    assert got == run.want_dead
    assert Counter((r["payload"], r["reason"]) for r in dead_letters(run.store, "payments")) == run.want_payment_dead
    m = run.result.metrics
    assert m["events"]["dead_letters"] == sum(n for (_, r), n in run.want_dead.items() if not r.startswith("null join"))
    assert m["events"]["null_key"] == 1
    assert m["payments"]["dead_letters"] == len(run.want_payment_dead)
    assert m["payments"]["events:payment_stats"] == len(run.payments) == results["payment_stats"].rows
    # the extreme times are dead letters with the same reasons in both jobs
    batch = Counter(r["reason"] for r in dead_letter_table(ref, "events").read().to_pylist())
    assert batch == Counter([*(REASONS[f] for _, _, f in extreme_times(run.now_ms) if f),
                             "null join key shop (views pair_stats)"])
    # NaN is null in both; the infinities are values in both
    amounts = dict(zip(*[offline_table(run.store, "amount_stats").column(c).to_pylist() for c in ("user_id", "amount")]))
    assert amounts["u_nan"] is None and math.isinf(amounts["u_inf"])


def _online(store, row: dict, refs, q):
    try:
        res = store.get_online_features([row], features=refs, request_time=q)
    except RequestError as exc:
        assert "before the online store's retention horizon" in str(exc), str(exc)
        return None
    statuses = res.statuses() if hasattr(res, "statuses") else {}
    if any("REFUSED" in s for s in statuses.values()):
        return None
    return res.to_dict()


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_avro_online_and_offline_equal_the_oracle(run):
    store = run.store
    everything = pd.concat([run.events.astype({"ts": object}), run.extremes], ignore_index=True)
    requests = extreme_requests(SEED, run.events.iloc[:N_EVENTS], run.now_ms)
    extra = pd.DataFrame([{"user_id": u, "shop": s, "event_timestamp": BASE + pd.Timedelta(d), "label": 0.0}
                          for u in ("u_nan", "u_inf") for s in (0, 1) for d in ("3.5s", "4.5s", "6s", "2min")])
    requests = pd.concat([requests, extra], ignore_index=True)
    pay_requests = pd.DataFrame([{"merchant_id": f"m{i % 5}", "event_timestamp": t}
                                 for i, t in enumerate(sorted(run.payments["ts"].sample(60, random_state=1)) +
                                                       [BASE + pd.Timedelta(s, unit="s") for s in range(0, 400, 13)])])
    pay_requests["event_timestamp"] = pd.to_datetime(pay_requests["event_timestamp"], utc=True).dt.floor("ms")
    compared = Counter()
    for view in store.repo.views.values():
        if view.source.name == "payments":
            events, reqs, keys = run.payments.drop(columns=["note"]), pay_requests, ["merchant_id"]
        else:
            events, reqs, keys = everything, requests, KEYS
        expected = oracle.point_in_time(events, view, reqs, now_ms=run.now_ms)
        refs = [f"{view.name}:{f}" for f in view.feature_names]
        for i, r in enumerate(reqs.to_dict("records")):
            got = _online(store, {k: r[k] for k in keys}, refs, r["event_timestamp"])
            if got is None:
                continue
            for f in view.feature_names:
                e = expected[f].iloc[i]
                assert same_value(got[f][0], e), f"{view.name}.{f} {r}: online {got[f][0]!r}, oracle {e!r}"
            compared[view.name] += 1
        offline = store.get_historical_features(reqs, features=refs)
        assert_features_equal(offline, expected, view.feature_names, f"offline vs oracle, view {view.name}")
    assert compared["payment_stats"] >= 60 and compared["profile"] >= 20, compared


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_a_fresh_restart_rereads_every_avro_record_and_adds_only_the_new_ones(run, kafka_admin):
    """Exactly once across runs: a run with fresh state (``restore=False``) reads the topic from its first
    record again, decoding every Avro record a second time; the offline tables and dead letters gain only
    the records produced since, and the rebuilt online state equals the oracle over everything."""
    store = run.store
    topic = store.repo.sources["events"].stream.topic
    schema = avro.writer_schema(store.repo.sources["events"])
    more = random_events(SEED + 1, n=60)
    bad = malformed(schema)[:4]
    produce(topic, [(None, _event_record(schema, r)) for r in more.to_dict("records")] + [(None, p) for p, _ in bad])
    before = run.result.metrics
    second = streaming.run(store, bounded=True, restore=False, checkpoint_interval_ms=1000, timeout=JOB_TIMEOUT_S)
    after = second.metrics
    assert after["events"]["events:amount_stats"] == before["events"]["events:amount_stats"] + len(more)
    assert after["events"]["dead_letters"] == before["events"]["dead_letters"] + len(bad)
    assert after["payments"] == before["payments"]
    want = run.want_dead + Counter((_b64(p), r) for p, r in bad)
    assert Counter((r["payload"], r["reason"]) for r in dead_letters(store)) == want
    events = pd.concat([run.events, more], ignore_index=True)
    write_batch_face(run.root, events, run.extremes)
    ref = _ref(run.root, "ref_offline_2")
    ref.backfill()
    for view in store.repo.views:
        assert_same_rows(offline_table(store, view), offline_table(ref, view), f"view {view}, after a fresh restart")
    everything = pd.concat([events.astype({"ts": object}), run.extremes], ignore_index=True)
    requests = extreme_requests(SEED + 1, more, run.now_ms).sample(80, random_state=2).reset_index(drop=True)
    for name in ("amount_stats", "qty_stats", "pair_stats"):
        view = store.repo.views[name]
        expected = oracle.point_in_time(everything, view, requests, now_ms=run.now_ms)
        refs = [f"{name}:{f}" for f in view.feature_names]
        for i, r in enumerate(requests.to_dict("records")):
            got = _online(store, {k: r[k] for k in KEYS}, refs, r["event_timestamp"])
            for f in view.feature_names if got is not None else ():
                assert same_value(got[f][0], expected[f].iloc[i]), f"{name}.{f} {r}: online {got[f][0]!r}"
