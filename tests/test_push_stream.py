"""push to a source with a stream face (Kafka): the rows are produced to its topic as the face's JSON records
and the streaming job carries them into both stores like any record (one Flink launch): the offline tables
equal a DuckDB backfill of every event, online equals the oracle, a bad row is the stream's dead letter.
"""

from __future__ import annotations

import dataclasses
import uuid

import pandas as pd
import pytest

from featurestore.engines.flink import stream as streaming
from featurestore.config import load_config
from featurestore.errors import RequestError
from featurestore.store import FeatureStore
from featurestore import datagen
from tests.test_stream import (JOB_TIMEOUT_S, SCHEMA, assert_same_rows, create_topic, dead_letters, drop_project,
                               make_repo, offline_table, produce, stream_events)
from tests.test_stream_once import _online_vs_oracle

pytestmark = [pytest.mark.flink, pytest.mark.kafka, pytest.mark.redis, pytest.mark.slow]


def test_push_to_a_streamed_source_goes_through_its_topic(tmp_path, redis_client, kafka_admin):
    topic = f"fs_push_{uuid.uuid4().hex[:10]}"
    project = f"t_pushs_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    cut = events["ts"].sort_values().iloc[len(events) // 2].floor("s")
    history, later = events[events["ts"] < cut], events[events["ts"] >= cut]
    root = make_repo(tmp_path / "repo", topic, project, history)
    ref_root = make_repo(tmp_path / "ref", topic, project, events)
    ref = FeatureStore(ref_root, config=dataclasses.replace(load_config(ref_root), offline_root=str(tmp_path / "ro")))
    ref.backfill()
    create_topic(kafka_admin, topic)
    # the topic holds the history too (the stream's state is every event of its topic), pushed rows come after
    produce(topic, [(None, datagen.to_json_record(r, "ts", SCHEMA)) for r in history.to_dict("records")])
    try:
        store = FeatureStore(root)
        store.apply()
        store.backfill()
        with pytest.raises(RequestError, match="has a stream face .* to='online_and_offline' is the only mode"):
            store.push("events", later, to="online")
        bad = {"user_id": "u1", "shop": 1, "amount": "abc", "ts": later["ts"].iloc[0]}
        result = store.push("events", later.to_dict("records") + [bad])
        assert result.topic == topic and result.rows == len(later) + 1 and result.offsets
        streaming.run(store, bounded=True, timeout=JOB_TIMEOUT_S, checkpoint_dir=tmp_path / "ckpt",
                      checkpoint_interval_ms=1000)
        for view in store.repo.views:
            assert_same_rows(offline_table(store, view), offline_table(ref, view), f"view {view}")
        _online_vs_oracle(store, events, "pushed through Kafka")
        reasons = [r["reason"] for r in dead_letters(store)]
        assert reasons.count("column 'amount': not a float64") == 1
    finally:
        drop_project(redis_client, project)
        kafka_admin.delete_topics([topic])
