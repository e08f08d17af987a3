"""Serving logs in Kafka (SPEC §7 "durably (to Redis Streams or Kafka)"): a service with
``LoggingConfig(destination="kafka")`` logs each lookup to its Kafka topic (not to Redis: the setting was
accepted and ignored before), and the shipper copies each record to the offline log table exactly once,
whatever ships concurrently or again; the training set from logs holds exactly the served values and verify
finds no skew. Random entities and request times; needs the project's Redis and Kafka."""

from __future__ import annotations

import random
import threading
import uuid

import pandas as pd
import pytest

from featurestore import serving_log, serving_log_kafka
from featurestore.store import FeatureStore
from tests.conftest import drop_project

pytestmark = [pytest.mark.redis, pytest.mark.kafka]

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureService, FeatureView, Latest, LoggingConfig, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "amount": "float64", "qty": "int64", "ts": "timestamp"},
                timestamp="ts", batch=ParquetFiles("data/*.parquet"))
spend = FeatureView(entities=[user], source=events, features=[
    Aggregation("amount", "sum", "10m", name="amount_10m"), Aggregation("qty", "count", None, name="n"),
    Latest("amount", name="last_amount")])
to_kafka = FeatureService(features=[spend], logging=LoggingConfig(destination="kafka"))
'''
BASE = pd.Timestamp("2026-06-01T00:00:00Z")


@pytest.fixture
def store(tmp_path):
    root = tmp_path / "repo"
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: lk_{uuid.uuid4().hex[:10]}\ndefinitions: definitions\n")
    rng = random.Random(5)
    pd.DataFrame([{"user_id": f"u{rng.randrange(6)}", "amount": round(rng.uniform(-50, 500), 2),
                   "qty": rng.randrange(10), "ts": BASE + pd.Timedelta(seconds=rng.randrange(3600))}
                  for _ in range(300)]).to_parquet(root / "data" / "e.parquet")
    fs = FeatureStore(root)
    fs.materialize()
    yield fs
    drop_project(fs.online_store().client, fs.config.project)


def test_lookups_logged_to_kafka_ship_once_and_are_the_training_set(store):
    rng = random.Random(9)
    served = []
    for i in range(25):
        users = rng.sample([f"u{k}" for k in range(8)], rng.randint(1, 3))
        when = BASE + pd.Timedelta(seconds=rng.randrange(4000))
        res = store.get_online_features([{"user_id": u} for u in users], feature_service="to_kafka", request_time=when)
        assert res.request_id is not None
        data = res.to_dict()
        served += [{"request_id": res.request_id, "user_id": u, "event_timestamp": when, "label": i,
                    **{c: data[c][j] for c in ("amount_10m", "n", "last_amount")}} for j, u in enumerate(users)]
    client = store.online_store().client
    assert not client.exists(serving_log.stream_key(store.config.project, "to_kafka"))  # not in Redis
    # several shippers at once, then again: every record once
    threads = [threading.Thread(target=store.ship_logs) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.ship_logs()
    logged = serving_log.log_table(store, "to_kafka").read()
    assert logged.num_rows == len(served)
    assert len(set(zip(logged.column("stream_id").to_pylist(), logged.column("row").to_pylist()))) == len(served)
    labels = pd.DataFrame(served)[["request_id", "user_id", "event_timestamp", "label"]].sample(frac=1.0, random_state=2)
    got = store.training_set_from_logs(labels, "to_kafka").sort_values(["label", "user_id"]).reset_index(drop=True)
    want = pd.DataFrame(served).sort_values(["label", "user_id"]).reset_index(drop=True)
    assert got["_from_log"].all()
    for c in ("amount_10m", "n", "last_amount"):
        assert [None if pd.isna(v) else v for v in got[c]] == [None if pd.isna(v) else v for v in want[c]], c
    report = store.verify("to_kafka")
    assert report.rows == len(served) and report.clean
    assert serving_log_kafka.topic(store.config.project, "to_kafka").startswith("fs_lk_")


def _traffic(store, n, rng):
    """n logged lookups of 1-3 users to the Kafka-logged service; the (request id, row) of each served row."""
    served = set()
    for _ in range(n):
        users = rng.sample([f"u{k}" for k in range(8)], rng.randint(1, 3))
        res = store.get_online_features([{"user_id": u} for u in users], feature_service="to_kafka",
                                        request_time=BASE + pd.Timedelta(seconds=rng.randrange(4000)))
        served.update((res.request_id, j) for j in range(len(users)))
    return served


@pytest.mark.slow
def test_kafka_shippers_killed_or_racing_lose_and_duplicate_nothing(store, tmp_path):
    """The Kafka sink under the Redis sink's faults (tests/test_log_shipping.py): shipper processes SIGKILLed
    with a batch written but not committed, committed, and at random times, and three shippers racing while
    lookups go on; afterwards the log table holds every served row exactly once."""
    import signal
    import time

    from tests.test_log_shipping import worker

    rng = random.Random(4)
    served = _traffic(store, 20, rng)
    for point in ("before_commit", "after_commit"):
        proc = worker(store, "crash", point, 6)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, err[-2000:])
        served |= _traffic(store, 10, rng)
    for _ in range(3):
        served |= _traffic(store, 30, rng)
        proc = worker(store, "ship", "-", rng.choice([2, 5]))
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
    stop = tmp_path / "stop"
    procs = [worker(store, "loop", stop, b) for b in (3, 7, 10_000)]
    try:
        served |= _traffic(store, 60, rng)
    finally:
        stop.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    store.ship_logs()
    logged = serving_log.log_table(store, "to_kafka").read()
    pairs = list(zip(logged.column("request_id").to_pylist(), logged.column("row").to_pylist()))
    assert len(pairs) == len(set(pairs)), f"{len(pairs) - len(set(pairs))} duplicated rows"
    assert set(pairs) == served


def _logged_pairs(store, service="to_kafka"):
    logged = serving_log.log_table(store, service).read()
    return list(zip(logged.column("request_id").to_pylist(), logged.column("row").to_pylist()))


def test_a_service_switched_from_kafka_to_redis_ships_both(store):
    """Records a service logged to Kafka before its destination became Redis Streams are shipped too, each
    served row once (before: ship read only the topics of services logging to Kafka today: the Kafka rows
    never reached the table)."""
    rng = random.Random(21)
    served = _traffic(store, 12, rng)
    (store.repo_path / "definitions" / "features.py").write_text(
        DEFINITIONS.replace('LoggingConfig(destination="kafka")', "LoggingConfig()"))
    switched = FeatureStore(store.repo_path)
    assert switched.repo.services["to_kafka"].logging.destination == "redis"
    served |= _traffic(switched, 9, rng)
    assert switched.online_store().client.exists(serving_log.stream_key(switched.config.project, "to_kafka"))
    for _ in range(2):
        switched.ship_logs()
        pairs = _logged_pairs(switched)
        assert len(pairs) == len(set(pairs)) and set(pairs) == served


def test_a_recreated_topic_is_shipped_from_its_start(store, kafka_admin):
    """A log topic deleted and created again (offsets from 0 again) is shipped: its records land once, beside
    the earlier incarnation's (before: the table's position, an offset of the old topic, skipped them)."""
    import time

    rng = random.Random(22)
    served = _traffic(store, 15, rng)
    store.ship_logs()
    name = serving_log_kafka.topic(store.config.project, "to_kafka")
    kafka_admin.delete_topics([name])[name].result(30)
    deadline = time.time() + 60
    while name in kafka_admin.list_topics(timeout=10).topics and time.time() < deadline:
        time.sleep(0.5)
    fresh = FeatureStore(store.repo_path)  # a new process's store: it creates the topic again
    served |= _traffic(fresh, 6, rng)
    for _ in range(2):
        fresh.ship_logs()
        pairs = _logged_pairs(fresh)
        assert len(pairs) == len(set(pairs)) and set(pairs) == served
