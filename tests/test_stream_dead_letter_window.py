"""The stream's dead letters are watched over ``monitor.dead_letter_window`` (by the hour of commit), as the
pushes' are: `featurestore monitor` exits 1 on an early burst of malformed records while it is recent, and 0
once the burst is out of the window. The counters were cumulative per job, so the stream's rate never forgot
a burst (a source with one bad hour breached for ever).

A real stream job (Kafka, Flink, Redis), two bounded runs: a burst (half the records malformed), then many
good records; the monitor's clock moved past the window stands in for the hours passing."""

from __future__ import annotations

import json
import time
import types
import uuid

import pandas as pd
import pytest
from typer.testing import CliRunner

from featurestore import datagen
from featurestore import monitoring
from featurestore.cli import app as cli
from featurestore.engines.flink import stream as streaming
from featurestore.store import FeatureStore
from tests.stream_helpers import JOB_TIMEOUT_S, create_topic, drop_project, produce

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]
runner = CliRunner()
SCHEMA = {"user_id": "string", "x": "float64", "ts": "timestamp"}
HOUR_MS = 3_600_000


def _repo(root, topic: str, project: str):
    (root / "definitions").mkdir(parents=True)
    (root / "data").mkdir()
    (root / "definitions" / "features.py").write_text(
        "from featurestore import Aggregation, Entity, FeatureView, KafkaTopic, ParquetFiles, Source\n"
        'user = Entity(join_keys=["user_id"])\n'
        f"events = Source(schema={SCHEMA!r}, timestamp='ts', batch=ParquetFiles('data/*.parquet'), "
        f"stream=KafkaTopic('{topic}', format='json'))\n"
        'spend = FeatureView(entities=[user], source=events, features=[Aggregation("x", "sum", "1h", name="s1h")])\n')
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n"
                                            "monitor:\n  max_dead_letter_rate: 0.1\n  dead_letter_window: 6h\n")


def _records(n_good: int, n_bad: int, start: int):
    now = pd.Timestamp.now(tz="UTC").floor("ms")
    good = [(None, datagen.to_json_record({"user_id": f"u{i % 5}", "x": float(i), "ts": now - pd.Timedelta(seconds=i)},
                                          "ts", SCHEMA)) for i in range(start, start + n_good)]
    bad = [(None, b"{not json " + str(i).encode()) for i in range(n_bad)]
    return [r for pair in zip(good, bad) for r in pair] + good[n_bad:]


def _monitor(root, monkeypatch, later_ms: int = 0):
    """(exit code, stream dead-letter breach texts) of `featurestore monitor --json`, its clock ``later_ms`` on."""
    clock = types.SimpleNamespace(time=lambda: time.time() + later_ms / 1000, monotonic=time.monotonic,
                                  sleep=time.sleep)
    from featurestore import cli_monitor

    monkeypatch.setattr(monitoring, "time", clock)
    monkeypatch.setattr(cli_monitor, "time", clock)
    try:
        res = runner.invoke(cli, ["monitor", "--repo", str(root), "--json"])
    finally:
        monkeypatch.undo()
    assert res.stdout.strip(), res.output
    found = [b["text"] for b in json.loads(res.stdout)["breaches"] if b["kind"] == "dead_letters"]
    return res.exit_code, found


def test_an_early_burst_of_dead_letters_breaches_while_recent_and_is_forgotten_after_the_window(
        tmp_path, monkeypatch, redis_client, kafka_admin):
    topic, project = f"dlw_{uuid.uuid4().hex[:8]}", f"dlw_{uuid.uuid4().hex[:8]}"
    _repo(tmp_path, topic, project)
    create_topic(kafka_admin, topic, partitions=1)
    try:
        produce(topic, _records(10, 10, 0))  # the burst: 10 dead letters of 20 records
        store = FeatureStore(tmp_path)
        first = streaming.run(store, bounded=True, checkpoint_interval_ms=1000, timeout=JOB_TIMEOUT_S)
        assert first.metrics["events"]["dead_letters"] == 10, first.metrics
        code, found = _monitor(tmp_path, monkeypatch)
        assert code == 1 and found == ["source 'events': 10 dead letters in the stream in the last 6h 0m, 50.000% "
                                       "of its records (limit 10.000%)"], found
        # the burst is forgotten once out of the window (it breached for ever: the counters were cumulative)
        assert _monitor(tmp_path, monkeypatch, later_ms=7 * HOUR_MS) == (0, [])
        # the window sums every commit in it, across runs of the job: 10 of 110 records is under the limit
        produce(topic, _records(90, 0, 10))
        second = streaming.run(store, bounded=True, checkpoint_interval_ms=1000, timeout=JOB_TIMEOUT_S)
        assert second.metrics["events"]["events"] == 100 and second.metrics["events"]["dead_letters"] == 10
        assert _monitor(tmp_path, monkeypatch) == (0, [])
        state = monitoring.stream_state(FeatureStore(tmp_path))
        assert state.recent == {"events": (10, 100)} and state.window_ms == 6 * HOUR_MS
        assert monitoring.stream_state(FeatureStore(tmp_path), now_ms=int(time.time() * 1000) + 7 * HOUR_MS).recent \
            == {"events": (0, 0)}
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
