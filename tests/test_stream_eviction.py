"""SPEC §5: a stream into a Redis that may evict keys is refused at its start, before anything is prepared: no
checkpoint folder, staging folder, staged layout, Flink log folder, Kafka topic, consumer group, online key or
job (tests/test_online_eviction.py: the refusal of the other writers). A Redis of the test's own (its settings
change); the project's Kafka."""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path

import pytest
import redis as redis_py

from featurestore.config import load_config
from featurestore.engines.flink import remote as flink_remote
from featurestore.errors import InfraError
from featurestore.store import FeatureStore
from tests.services import RedisServer
from tests.stream_helpers import make_repo, stream_events

pytestmark = [pytest.mark.redis, pytest.mark.kafka]


@pytest.fixture
def evicting_redis(tmp_path):
    srv = RedisServer(tmp_path / "redis").start()
    client = redis_py.Redis.from_url(srv.url)
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    yield srv, client
    client.close()
    srv.stop()


def _tree(*roots: Path) -> set:
    """Every file and folder under ``roots`` (relative to the filesystem root)."""
    out = set()
    for root in roots:
        for folder, dirs, files in os.walk(root):
            out.update(os.path.join(folder, n) for n in dirs + files)
    return out


def _assert_refused(err) -> None:
    line = str(err.value)
    assert "\n" not in line and "may evict keys" in line and "maxmemory-policy allkeys-lru" in line
    assert "online_store.allow_eviction" in line and "noeviction" in line


@pytest.mark.parametrize("how", ["local", "remote"])
def test_a_stream_into_a_redis_that_may_evict_is_refused_before_anything_is_prepared(tmp_path, evicting_redis,
                                                                                      kafka_admin, how):
    srv, client = evicting_redis
    topic = f"fs_evict_{uuid.uuid4().hex[:10]}"
    project = f"t_sevict_{uuid.uuid4().hex[:8]}"
    root = make_repo(tmp_path / "repo", topic, project, stream_events())
    cfg = dataclasses.replace(load_config(root), redis_url=srv.url)
    store = FeatureStore(root, config=cfg)
    offline = Path(cfg.offline_path)
    before = _tree(root, offline)
    topics_before = set(kafka_admin.list_topics(timeout=10).topics)
    groups_before = {g.group_id for g in kafka_admin.list_consumer_groups().result(timeout=10).valid}

    with pytest.raises(InfraError) as err:
        if how == "local":
            store.stream(bounded=True, timeout=60)
        else:  # refused before `flink run` (no cluster listens there)
            flink_remote.submit_remote(store, "127.0.0.1:9", bounded=True)
    _assert_refused(err)

    assert _tree(root, offline) == before  # no checkpoint, staging or log folder, no staged layout
    assert not (root / ".featurestore").exists()
    assert set(kafka_admin.list_topics(timeout=10).topics) == topics_before  # no topic (created or auto-created)
    assert {g.group_id for g in kafka_admin.list_consumer_groups().result(timeout=10).valid} == groups_before
    assert client.dbsize() == 0  # no marker, sentinel or key
