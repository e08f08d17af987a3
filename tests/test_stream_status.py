"""The streaming job's live status without a job: lag, consumed and events/s from the consumer group's committed
offsets, per-topic sums over partitions, and the CLI's status table and line (the parity run's own snapshots:
tests/test_stream.py)."""

from __future__ import annotations

import dataclasses
import os
import re
import time
import uuid
from pathlib import Path

import pytest

from featurestore.engines.flink import offsets as flink_offsets
from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.store import FeatureStore

from tests.stream_helpers import (KAFKA, SEED, arrival, create_topic, drop_project, make_repo, produce,
                                   stream_events)


# -- live status ------------------------------------------------------------------------------------------
def _commit_group_offsets(group: str, offsets):
    """Commit ``{(topic, partition): offset}`` for ``group``, as Flink does on a checkpoint."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": KAFKA, "group.id": group, "enable.auto.commit": False})
    try:
        consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=False)
    finally:
        consumer.close()


def _idle_handle(store: FeatureStore, progress_key: str = "") -> streaming.StreamHandle:
    """A handle of the store's job that was never started (no Flink job, no committer)."""
    names = streaming.stream_views(store)
    name = streaming.job_name(store, names)
    topics = sorted({store.repo.views[n].source.stream.topic for n in names})
    ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, topics)
    return streaming.StreamHandle(store, names, name, None, None, Path("unused"), False, ends, None, 2.0, progress_key)


@pytest.mark.kafka
@pytest.mark.redis
def test_snapshot_lag_consumed_and_rate_follow_the_groups_committed_offsets(tmp_path, kafka_admin, redis_client):
    """No Flink: the topic's offsets and the job's consumer group (committed here as Flink would) on the real
    broker. Before anything is committed the lag is every record; a commit moves lag, consumed and
    events/s exactly; what cannot be read is unknown, never an exception."""
    topic = f"fs_status_{uuid.uuid4().hex[:10]}"
    project = f"t_status_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "status", topic, project, stream_events())
    create_topic(kafka_admin, topic)
    produce(topic, arrival(stream_events(), SEED)[:90])
    store = FeatureStore(root)
    try:
        handle = _idle_handle(store)
        first = handle.snapshot(None)
        t = first.topics[topic]
        assert (t.end, t.committed, t.lag, t.consumed, t.events_per_s) == (90, 0, 90, 0, None)
        assert first.status == "UNKNOWN" and first.problems[0].startswith("job status: ")
        assert (first.lag, first.metrics, first.dead_letters, first.online_written) == (90, {"events": {}}, 0, 0)
        ends = flink_offsets.end_offsets(KAFKA, [topic])
        part0 = ends[(topic, 0)][1]
        assert 0 < part0 < 90
        time.sleep(1.0)
        _commit_group_offsets(handle.job_name, {(topic, 0): part0})
        second = handle.snapshot(first)
        t = second.topics[topic]
        assert (t.end, t.committed, t.lag, t.consumed) == (90, part0, 90 - part0, part0)
        step = second.at - first.at
        assert t.events_per_s == pytest.approx(part0 / step)
        third = handle.snapshot(second)  # no new commit yet: the last step's rate
        assert third.at - second.at < 2 * step and third.topics[topic].events_per_s == pytest.approx(part0 / step)
        time.sleep(2 * step)
        idle = handle.snapshot(third)  # no step for twice the last step's time: idle
        assert (idle.topics[topic].events_per_s, idle.topics[topic].consumed) == (0.0, part0)
        # Kafka and Redis unreachable: unknown fields and the reasons, then the rate goes on from the last step
        down = FeatureStore(root, config=dataclasses.replace(load_config(root), kafka_bootstrap="127.0.0.1:1",
                                                             redis_url="redis://127.0.0.1:1/0"))
        blind = streaming.StreamHandle(store=down, names=handle.names, name=handle.job_name, job_client=None,
                                       committer=None, ckpt_root=Path("unused"), bounded=False, ends=handle.ends,
                                       restored_from=None, commit_interval_s=2.0, progress_key="fs:x:_progress")
        unknown = blind.snapshot(idle)
        t = unknown.topics[topic]
        assert (t.end, t.committed, t.lag, t.consumed, t.events_per_s) == (None,) * 5
        assert (unknown.lag, unknown.metrics, unknown.dead_letters, unknown.online_written) == (None,) * 4
        assert [p.split(":")[0] for p in unknown.problems] == ["job status", "Kafka", "metrics", "online progress"]
        _commit_group_offsets(handle.job_name, {(topic, 0): part0, (topic, 1): ends[(topic, 1)][1]})
        again = handle.snapshot(unknown)
        step = ends[(topic, 1)][1]
        assert again.topics[topic].consumed == part0 + step
        assert again.topics[topic].events_per_s == pytest.approx(step / (again.at - second.at))
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])


def test_topic_status_sums_partitions_and_events_per_second_follows_the_commit_steps():
    """Pure: offsets per partition in, per-topic lag / consumed / events/s out, over a sequence of
    snapshots (committed offsets advance in steps, on checkpoints every 10 s here)."""
    ends = {("t", 0): (0, 1000), ("t", 1): (5, 505)}
    start = {("t", 0): 0, ("t", 1): 5}

    def run(steps, interval_s):
        out, prev = [], None
        for committed, at in steps:
            topics = streaming.topic_statuses(ends, committed, start, ["t"], prev, at, interval_s)
            prev = streaming.StreamStatus("j", "RUNNING", at, at, topics, {}, 0)
            t = topics["t"]
            out.append((t.end, t.committed, t.lag, t.consumed, t.events_per_s))
        return out

    steps = [({("t", 1): 2}, 0.0),  # nothing committed on 0; 1 committed below its earliest offset: counts at 5
             ({}, 2.0),  # no step yet
             ({("t", 0): 300}, 30.0),  # the first step after an idle spell: one checkpoint interval's records
             ({("t", 0): 300}, 32.0),  # between steps: the last step's rate
             ({("t", 0): 500, ("t", 1): 105}, 40.0),  # the next step: 300 records in 10 s
             ({("t", 0): 500, ("t", 1): 105}, 61.0)]  # no step for more than twice the last one: idle
    assert run(steps, 10.0) == [(1505, 5, 1500, 0, None), (1505, 5, 1500, 0, 0.0), (1505, 305, 1200, 300, 30.0),
                                (1505, 305, 1200, 300, 30.0), (1505, 605, 900, 600, 30.0), (1505, 605, 900, 600, 0.0)]
    # without the checkpoint interval the first step spreads over the whole idle spell
    assert [r[4] for r in run(steps, None)] == [None, 0.0, 10.0, 10.0, 30.0, 0.0]


def test_status_view_renders_every_field_of_a_snapshot():
    """The live view's content, from a StreamStatus alone (no job)."""
    from rich.console import Console

    from featurestore.cli import STOPPING_TEXT, status_line, status_rows, status_table

    status = streaming.StreamStatus(
        job_name="featurestore-p-abc", status="RUNNING", uptime_s=3723.9, at=0.0,
        topics={"tx": streaming.TopicStatus("tx", end=12_500, committed=12_000, lag=500, consumed=11_000,
                                            events_per_s=1234.4),
                "late": streaming.TopicStatus("late", end=7, committed=7, lag=0, consumed=0),
                "gone": streaming.TopicStatus("gone")},
        metrics={"events": {"dead_letters": 20, "null_key": 3, "events:amount_stats": 401, "events:pair_stats": 400,
                            "events": 801}},
        online_written=65_432, problems=["Kafka: cannot reach Kafka"])
    assert status_rows(status) == [
        ("job", "status", "RUNNING"), ("job", "uptime", "1h 02m 03s"),
        ("tx", "Kafka lag", "500"), ("tx", "records consumed", "11,000"), ("tx", "events/s", "1,234"),
        ("late", "Kafka lag", "0"), ("late", "records consumed", "0"), ("late", "events/s", "-"),
        ("gone", "Kafka lag", "?"), ("gone", "records consumed", "?"), ("gone", "events/s", "?"),
        ("events", "dead letters", "20"), ("events", "null join key", "3"),
        ("amount_stats", "stored events", "401"), ("pair_stats", "stored events", "400"),
        ("online", "values written", "65,432"),
    ]
    assert status_line(status) == (
        "stream job featurestore-p-abc: RUNNING, up 1h 02m 03s; tx: lag 500, consumed 11,000, 1,234 events/s; "
        "late: lag 0, consumed 0, - events/s; gone: lag ?, consumed ?, ? events/s; dead letters 20; "
        "online values written 65,432 (Kafka: cannot reach Kafka)")
    console = Console(width=100, record=True, file=open(os.devnull, "w"), color_system=None)
    console.print(status_table(dataclasses.replace(status, stopping=True), " on host:8081"))
    text = console.export_text()
    assert "stream job featurestore-p-abc on host:8081" in text
    assert re.search(r"│ tx +│ records consumed +│ +11,000 │", text)
    assert re.search(r"│ online +│ values written +│ +65,432 │", text)
    assert " ".join(text.split()).count(f"{STOPPING_TEXT}; Kafka: cannot reach Kafka") == 1
    unknown = dataclasses.replace(status, metrics=None, online_written=None, uptime_s=59.0, problems=[])
    assert status_rows(unknown)[1] == ("job", "uptime", "59s")
    assert status_rows(unknown)[-2:] == [("sources", "dead letters, stored events", "?"),
                                         ("online", "values written", "?")]
    assert status_line(unknown).endswith("; dead letters ?; online values written ?")
