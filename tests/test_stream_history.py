"""A fresh stream job on a topic that lost its first records is refused (the stream builds its online
values from what it reads; missing history would be served silently)."""

from __future__ import annotations

import shutil
import uuid

import pytest

from featurestore import datagen
from featurestore.engines.flink import offsets as flink_offsets
from featurestore.engines.flink import stream as streaming
from featurestore.errors import RequestError
from featurestore.store import FeatureStore
from tests.test_stream import REPO_DIR, create_topic, drop_project

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def _example_repo(root, topic: str, project: str) -> FeatureStore:
    shutil.copytree(REPO_DIR / "definitions", root / "definitions")
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    sources = root / "definitions" / "sources.py"
    sources.write_text(sources.read_text().replace('KafkaTopic("transactions"', f'KafkaTopic("{topic}"'))
    return FeatureStore(root)


def test_fresh_start_on_a_topic_that_lost_its_first_records_is_refused(tmp_path, kafka_admin, redis_client):
    from confluent_kafka import TopicPartition

    topic = f"fs_history_{uuid.uuid4().hex[:10]}"
    project = f"t_hist_{uuid.uuid4().hex[:8]}"
    create_topic(kafka_admin, topic, partitions=1)
    store = _example_repo(tmp_path / "repo", topic, project)
    try:
        sent = datagen.produce_kafka(store, "transactions", df=datagen.generate_transactions(20), include_malformed=False,
                                     progress=False)
        assert sent == 20
        names = streaming.stream_views(store)
        ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, [topic])
        streaming.check_history(store, names, ends, None)  # nothing lost yet: accepted

        for fut in kafka_admin.delete_records([TopicPartition(topic, 0, 5)]).values():
            fut.result(timeout=30)  # what Kafka's retention does to old segments
        with pytest.raises(RequestError) as info:
            streaming.start(store, bounded=True)  # refused before any Flink job is built
        msg = str(info.value)
        assert f"topic '{topic}' no longer holds its first records (partition 0 starts at offset 5" in msg
        assert "user_spend: every event (an unbounded window or a latest feature without TTL)" in msg
        assert "merchant_activity: the last 7d" in msg
        assert "user_profile: the last 30d" in msg
        assert "--partial-history" in msg

        from typer.testing import CliRunner

        from featurestore.cli import app

        res = CliRunner().invoke(app, ["stream", "--repo", str(store.repo_path), "--bounded", "--status-every", "0"])
        assert res.exit_code != 0 and "no longer holds its first records" in res.output, res.output

        ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, [topic])
        streaming.check_history(store, names, ends, None, partial_history=True)  # accepted explicitly
        streaming.check_history(store, names, ends, tmp_path / "a-snapshot")  # a restore continues its own state
        streaming.check_history(store, ["user_spend"], {(f"{topic}-other", 0): (7, 9)}, None)  # another topic
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
