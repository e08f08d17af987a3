"""Smoke test: the real local services and PyFlink 2.3 work together.

Needs `infra/up.sh` to have run (Redis, single-node Kafka, Flink connector jars). Nothing is skipped:
if a service is down the test fails and says to run infra/up.sh.

Addresses come from the environment (see infra/README.md), with the same defaults as infra/env.sh:
  FEATURESTORE_REDIS_URL        redis://127.0.0.1:6390/0
  FEATURESTORE_KAFKA_BOOTSTRAP  127.0.0.1:19092
  FEATURESTORE_FLINK_JARS_DIR   <repo>/infra/.cache/flink-jars
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections import defaultdict
from datetime import timezone
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("FEATURESTORE_REDIS_URL", "redis://127.0.0.1:6390/0")
KAFKA_BOOTSTRAP = os.environ.get("FEATURESTORE_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
FLINK_JARS_DIR = Path(
    os.environ.get("FEATURESTORE_FLINK_JARS_DIR", str(REPO_DIR / "infra" / ".cache" / "flink-jars"))
)
# Jar name prefixes the jobs below need; infra/setup.sh fetches them.
REQUIRED_JARS = (
    "flink-sql-connector-kafka-",
    "flink-sql-parquet-",
    "hadoop-client-api-",
    "hadoop-client-runtime-",
)
UP_HINT = "run infra/up.sh"

N_MESSAGES = 100
USERS = [f"user_{i}" for i in range(7)]
BASE_TS_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


# --- fixtures: one check per service, failing (never skipping) with the fix -----------------------


@pytest.fixture(scope="module")
def flink_jars() -> list[Path]:
    jars = sorted(FLINK_JARS_DIR.glob("*.jar")) if FLINK_JARS_DIR.is_dir() else []
    missing = [p for p in REQUIRED_JARS if not any(j.name.startswith(p) for j in jars)]
    if missing:
        pytest.fail(
            f"Flink jars missing in {FLINK_JARS_DIR}: {', '.join(m + '*.jar' for m in missing)}: {UP_HINT}",
            pytrace=False,
        )
    return jars


@pytest.fixture(scope="module")
def t_env(flink_jars):
    """One batch TableEnvironment for the module (the JVM gateway is started once per process)."""
    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    conf = Configuration()
    conf.set_string("pipeline.jars", ";".join(j.as_uri() for j in flink_jars))
    conf.set_string("python.executable", sys.executable)
    conf.set_string("table.local-time-zone", "UTC")
    conf.set_string("parallelism.default", "1")
    settings = EnvironmentSettings.new_instance().in_batch_mode().with_configuration(conf).build()
    return TableEnvironment.create(settings)


# --- data --------------------------------------------------------------------------------------


def make_events(n: int = N_MESSAGES) -> list[dict]:
    # Amounts are multiples of 0.25 (exact in binary floating point), so SUM is exact in any order.
    return [
        {
            "id": i,
            "user_id": USERS[(i * 3) % len(USERS)],
            "amount": ((i * 37) % 400) * 0.25,
            "ts_ms": BASE_TS_MS + i * 1_000,
        }
        for i in range(n)
    ]


def expected_per_user(events: list[dict]) -> dict[str, tuple[float, int, int]]:
    acc: dict[str, list] = defaultdict(lambda: [0.0, 0, 0])
    for e in events:
        a = acc[e["user_id"]]
        a[0] += e["amount"]
        a[1] += 1
        a[2] = max(a[2], e["ts_ms"])
    return {u: (s, c, m) for u, (s, c, m) in acc.items()}


def to_epoch_ms(value) -> int:
    """Naive datetimes are UTC wall-clock (table.local-time-zone=UTC, Parquet utc-timezone)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return round(value.timestamp() * 1000)


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.redis
def test_redis_roundtrip(redis_client):
    key = f"fs:smoke:{uuid.uuid4().hex}"
    try:
        redis_client.hset(key, mapping={"sum_amount": "12.5", "cnt": "3"})
        redis_client.expire(key, 60)
        assert redis_client.hgetall(key) == {b"sum_amount": b"12.5", b"cnt": b"3"}
    finally:
        redis_client.delete(key)
    assert redis_client.exists(key) == 0


@pytest.mark.kafka
@pytest.mark.flink
@pytest.mark.redis
@pytest.mark.slow
def test_kafka_to_flink_to_redis(kafka_admin, t_env, redis_client):
    """JSON events -> Kafka -> PyFlink SQL (bounded Kafka source) -> per-user aggregates -> Redis."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    topic = f"fs_smoke_{uuid.uuid4().hex[:12]}"
    futures = kafka_admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    futures[topic].result(timeout=15)

    events = make_events()
    delivered: list = []
    errors: list = []

    def on_delivery(err, msg):
        (errors if err is not None else delivered).append(err or msg.offset())

    producer = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "acks": "all", "linger.ms": 5})
    for e in events:
        producer.produce(topic, key=e["user_id"], value=json.dumps(e), on_delivery=on_delivery)
    assert producer.flush(timeout=30) == 0, "Kafka producer did not flush within 30 s"
    assert not errors, f"Kafka delivery errors: {errors[:3]}"
    assert len(delivered) == N_MESSAGES

    src = f"kafka_events_{topic}"
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE {src} (
            id INT,
            user_id STRING,
            amount DOUBLE,
            ts_ms BIGINT,
            event_time AS TO_TIMESTAMP_LTZ(ts_ms, 3)
        ) WITH (
            'connector' = 'kafka',
            'topic' = '{topic}',
            'properties.bootstrap.servers' = '{KAFKA_BOOTSTRAP}',
            'properties.group.id' = 'fs-smoke-{topic}',
            'scan.startup.mode' = 'earliest-offset',
            'scan.bounded.mode' = 'latest-offset',
            'format' = 'json',
            'json.fail-on-missing-field' = 'true',
            'json.ignore-parse-errors' = 'false'
        )
        """
    )
    result = t_env.execute_sql(
        f"""
        SELECT user_id, SUM(amount) AS sum_amount, COUNT(*) AS cnt,
               -- collect() cannot pickle TIMESTAMP_LTZ (java.time.Instant) in PyFlink 2.3:
               -- cast to TIMESTAMP(3), i.e. wall-clock time in table.local-time-zone (UTC).
               CAST(MAX(event_time) AS TIMESTAMP(3)) AS last_event_time
        FROM {src}
        GROUP BY user_id
        """
    )
    with result.collect() as rows:
        got = {r[0]: (r[1], r[2], to_epoch_ms(r[3])) for r in rows}

    expected = expected_per_user(events)
    assert got == expected

    # Write the Flink-computed features to our Redis and read them back.
    prefix = f"fs:smoke:{topic}"
    keys = [f"{prefix}:{u}" for u in got]
    try:
        pipe = redis_client.pipeline()
        for user, (sum_amount, cnt, last_ms) in got.items():
            pipe.hset(
                f"{prefix}:{user}",
                mapping={"sum_amount": repr(sum_amount), "cnt": cnt, "last_event_ms": last_ms},
            )
            pipe.expire(f"{prefix}:{user}", 300)
        pipe.execute()
        back = {}
        for user in got:
            h = redis_client.hgetall(f"{prefix}:{user}")
            back[user] = (float(h[b"sum_amount"]), int(h[b"cnt"]), int(h[b"last_event_ms"]))
        assert back == expected
    finally:
        redis_client.delete(*keys)
        kafka_admin.delete_topics([topic])


@pytest.mark.flink
@pytest.mark.slow
def test_flink_writes_parquet(t_env, tmp_path):
    """A Flink SQL filesystem sink (batch) writes Parquet that pyarrow reads back row for row."""
    import pyarrow.parquet as pq

    events = make_events(50)
    out_dir = tmp_path / "parquet_out"
    sink = f"parquet_sink_{uuid.uuid4().hex[:12]}"
    t_env.execute_sql(
        f"""
        CREATE TEMPORARY TABLE {sink} (
            id INT,
            user_id STRING,
            amount DOUBLE,
            ts_ms BIGINT,
            event_time TIMESTAMP_LTZ(3)
        ) WITH (
            'connector' = 'filesystem',
            'path' = '{out_dir.as_uri()}',
            'format' = 'parquet',
            'parquet.write.int64.timestamp' = 'true',
            'parquet.timestamp.time.unit' = 'millis',
            'parquet.utc-timezone' = 'true'
        )
        """
    )
    values = ",\n".join(
        f"({e['id']}, '{e['user_id']}', CAST({e['amount']!r} AS DOUBLE), CAST({e['ts_ms']} AS BIGINT))"
        for e in events
    )
    t_env.execute_sql(
        f"""
        INSERT INTO {sink}
        SELECT id, user_id, amount, ts_ms, TO_TIMESTAMP_LTZ(ts_ms, 3)
        FROM (VALUES {values}) AS t(id, user_id, amount, ts_ms)
        """
    ).wait(120_000)

    files = [p for p in out_dir.rglob("*") if p.is_file() and not p.name.startswith((".", "_"))]
    assert files, f"no Parquet files written under {out_dir}"
    table = pq.read_table(out_dir)
    rows = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in rows] == [e["id"] for e in events]
    for row, e in zip(rows, events):
        assert (row["user_id"], row["amount"], row["ts_ms"]) == (e["user_id"], e["amount"], e["ts_ms"])
        assert to_epoch_ms(row["event_time"]) == e["ts_ms"]
