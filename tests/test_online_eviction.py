"""SPEC §5: a lost online state is never served as defaults. An entity whose keys were *all* evicted reads
exactly like one without events, so a Redis that may evict keys under memory pressure (``maxmemory`` with a
policy other than ``noeviction``) is refused by every writer and reported by ``/health``, unless the
project accepts it (``online_store.allow_eviction``). A Redis of the test's own (its settings change)."""

import dataclasses
import uuid

import pandas as pd
import pytest
import redis as redis_py

from featurestore.config import load_config
from featurestore.errors import InfraError
from featurestore.store import FeatureStore
from tests.randomrepo import random_events, write_events, write_repo
from tests.services import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def server(tmp_path):
    srv = RedisServer(tmp_path / "redis").start()
    yield srv
    srv.stop()


def _store(root, url, **config):
    cfg = dataclasses.replace(load_config(root), project=f"t_evict_{uuid.uuid4().hex[:8]}", redis_url=url, **config)
    return FeatureStore(root, config=cfg)


def test_a_redis_that_may_evict_keys_is_refused_by_writers_and_health(tmp_path, server):
    from fastapi.testclient import TestClient

    from featurestore.server import create_app

    root = write_repo(tmp_path / "repo")
    events = random_events(3)
    write_events(root, events)
    client = redis_py.Redis.from_url(server.url)
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-lru")
    store = _store(root, server.url)
    with pytest.raises(InfraError) as err:
        store.materialize()
    line = str(err.value)
    assert "\n" not in line and "may evict keys" in line and "maxmemory-policy allkeys-lru" in line
    assert "online_store.allow_eviction" in line and "noeviction" in line
    assert client.dbsize() == 0  # nothing was loaded
    assert TestClient(create_app(store)).get("/health").json()["redis_eviction"].startswith("maxmemory-policy")

    # volatile-* policies evict too (every bounded view's keys carry a TTL): refused the same way
    client.config_set("maxmemory-policy", "volatile-ttl")
    with pytest.raises(InfraError, match="maxmemory-policy volatile-ttl"):
        _store(root, server.url).materialize()

    # the project accepts it knowingly: loaded and served; health does not fail on it
    accepting = _store(root, server.url, redis_allow_eviction=True)
    accepting.materialize()
    got = accepting.get_online_features([{"user_id": "u0", "shop": 1}], feature_service="everything",
                                        request_time=pd.Timestamp(events["ts"].max()) + pd.Timedelta("1s"))
    assert got.refusals == []
    assert TestClient(create_app(accepting)).get("/health").status_code == 200

    # noeviction with a limit, or a limit of 0 with any policy: nothing can be evicted, nothing refused
    for limit, policy in (("100mb", "noeviction"), ("0", "allkeys-lru")):
        client.config_set("maxmemory", limit)
        client.config_set("maxmemory-policy", policy)
        ok = _store(root, server.url)
        ok.materialize()
        assert TestClient(create_app(ok)).get("/health").status_code == 200
    client.close()


def test_push_into_a_redis_that_may_evict_keys_is_refused(tmp_path, server):
    root = write_repo(tmp_path / "repo")
    events = random_events(4)
    write_events(root, events.iloc[:150])
    store = _store(root, server.url)
    store.backfill()
    store.materialize()
    client = redis_py.Redis.from_url(server.url)
    client.config_set("maxmemory", "100mb")
    client.config_set("maxmemory-policy", "allkeys-random")
    before = client.dbsize()
    with pytest.raises(InfraError, match="maxmemory-policy allkeys-random"):
        _store(root, server.url).push("events", events.iloc[150:], to="online")
    assert client.dbsize() == before
    client.close()
