"""`featurestore monitor` exits 1 on each kind of breach, constructed one at a time, and 0 (``no breach``)
once it is cleared (SPEC §8, docs/monitoring.md): freshness, stream lag (a real broker), the stream's dead
letters, Kafka unreachable, skew of a verify run, dead letters of pushes. Drift and backfill dead letters
have their own tests in test_monitor.py."""

from __future__ import annotations

import json
import time
import uuid

import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestore.cli import app as cli
from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink.commit import HOURS_SUFFIX
from featurestore.store import FeatureStore
from featurestore.verify import FeatureSkew, VerifyReport, save_run
from tests.served import drop_online

pytestmark = [pytest.mark.redis, pytest.mark.kafka]
runner = CliRunner()


def _events(root, age_s: float, n: int = 6):
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    ts = [now - pd.Timedelta(seconds=age_s + i) for i in range(n)]
    pd.DataFrame({"user_id": [f"u{i % 3}" for i in range(n)], "x": [float(i) for i in range(n)], "ts": ts}).to_parquet(
        root / "data" / "e.parquet")


def _repo(root, topic: str):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureService, FeatureView, KafkaTopic, ParquetFiles, Source\n"
        'user = Entity(join_keys=["user_id"])\n'
        'events = Source(schema={"user_id": "string", "x": "float64", "ts": "timestamp"}, timestamp="ts", '
        f'batch=ParquetFiles("data/*.parquet"), stream=KafkaTopic("{topic}", format="json"))\n'
        'spend = FeatureView(entities=[user], source=events, expected_freshness="1h", '
        'features=[Aggregation("x", "sum", "1h", name="s1h")])\n'
        "svc = FeatureService(features=[spend])\n")
    (root / "featurestore.yaml").write_text(f"project: mk_{uuid.uuid4().hex[:8]}\ndefinitions: definitions\n"
                                            "monitor:\n  max_stream_lag: 5\n  max_dead_letter_rate: 0.1\n"
                                            "  max_skew_rate: 0.0\n")


def monitor(root, env=None):
    """(exit code, breach kinds, output) of `featurestore monitor --json`."""
    res = runner.invoke(cli, ["monitor", "--repo", str(root), "--json"], env=env)
    kinds = sorted({b["kind"] for b in json.loads(res.stdout)["breaches"]}) if res.stdout.strip() else None
    return res.exit_code, kinds, res.output


def test_each_breach_kind_exits_1_and_clearing_it_exits_0(tmp_path):
    from confluent_kafka import Consumer, Producer, TopicPartition

    topic = f"mk_{uuid.uuid4().hex[:8]}"
    _repo(tmp_path, topic)
    _events(tmp_path, age_s=60)
    store = FeatureStore(tmp_path)
    store.apply()
    store.backfill()
    try:
        assert monitor(tmp_path)[:2] == (0, [])
        res = runner.invoke(cli, ["monitor", "--repo", str(tmp_path)])
        assert res.exit_code == 0 and "no breach" in res.output

        # freshness: the newest event older than expected_freshness
        _events(tmp_path, age_s=3 * 3600)
        store.backfill()
        assert monitor(tmp_path)[:2] == (1, ["freshness"])
        _events(tmp_path, age_s=60)
        store.backfill()
        assert monitor(tmp_path)[:2] == (0, [])

        # skew: a verify run with a mismatch, then a clean one
        save_run(store, VerifyReport("svc", 10, {"s1h": FeatureSkew("s1h", rows=10, mismatch=1)}, []))
        assert monitor(tmp_path)[:2] == (1, ["skew"])
        save_run(store, VerifyReport("svc", 10, {"s1h": FeatureSkew("s1h", rows=10)}, []))
        assert monitor(tmp_path)[:2] == (0, [])

        # the stream: its counters in Redis, its lag from the broker
        bootstrap = store.config.kafka_bootstrap
        producer = Producer({"bootstrap.servers": bootstrap})
        for i in range(10):
            producer.produce(topic, json.dumps({"i": i}).encode(), partition=0)
        producer.flush(30)
        group = streaming.job_name(store, ["spend"])

        def commit(offset):
            consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
            consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
            consumer.close()

        commit(10)
        client = store.online_store().client
        key = streaming.metrics_key(store.config.project, "events")
        hours = key + HOURS_SUFFIX  # per hour of commit: [dead letters, events] (what Committer.publish writes)
        hour = str(int(time.time() * 1000) // 3_600_000 * 3_600_000)
        client.hset(key, mapping={"dead_letters": 0, "null_key": 0, "events": 100})
        client.hset(hours, mapping={hour: "[0, 100]"})
        try:
            assert monitor(tmp_path)[:2] == (0, [])
            client.hset(key, mapping={"dead_letters": 20})
            client.hset(hours, mapping={hour: "[20, 100]"})  # 20 of 120 records
            assert monitor(tmp_path)[:2] == (1, ["dead_letters"])
            client.hset(key, mapping={"dead_letters": 0})
            client.hset(hours, mapping={hour: "[0, 100]"})
            commit(2)  # 8 records behind, over max_stream_lag 5
            assert monitor(tmp_path)[:2] == (1, ["lag"])
            commit(10)
            assert monitor(tmp_path)[:2] == (0, [])
            code, kinds, out = monitor(tmp_path, env={"FEATURESTORE_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
            assert (code, kinds) == (1, ["unreadable"]), out
        finally:
            client.delete(key, hours)

        # dead letters of pushes to a batch face (this source's pushes go through its topic, so its push
        # counters are written as a push to a batch face writes them)
        from featurestore.engines.backfill import add_pushed

        add_pushed(store, "events", 5, 10)
        assert monitor(tmp_path)[:2] == (1, ["dead_letters"])
        add_pushed(store, "events", 0, 1000)
        assert monitor(tmp_path)[:2] == (0, [])
    finally:
        drop_online(store)
