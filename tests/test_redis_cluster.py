"""The online store on a real Redis Cluster (``infra/redis-cluster.sh``: 3 masters + 3 replicas): a
failover under a live client, and what the client library must absorb (MOVED after the slot map
changed, NOSCRIPT on a promoted replica). The consistency tests themselves (online == offline ==
oracle, materialize, push, served == trained, the stream job) run on the cluster through the
``online_backend`` fixture in their own files."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pandas as pd
import pytest

from featurestore.config import load_config
from featurestore.store import FeatureStore
from featurestore.kernel import entity as kentity
from featurestore.stores import online_materialize
from featurestore.stores import online_redis as orr
from tests.compare import same_value
from tests.conftest import drop_project
from tests.randomrepo import BASE, random_events, random_requests, write_events, write_repo

pytestmark = [pytest.mark.redis]
KEYS = ["user_id", "shop"]


def _node_client(host: str, port: int):
    import redis

    return redis.Redis(host=host, port=port, socket_timeout=10)


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _fail_over(cluster, key: str) -> tuple:
    """Promote the replica of the master holding ``key``'s slot (``CLUSTER FAILOVER`` on the replica: the
    graceful, manual kind); returns (old master, new master) addresses once every node agrees."""
    master = cluster.get_node_from_key(key)
    old = (master.host, master.port)
    nodes = _node_client(*old).execute_command("CLUSTER NODES")  # {"host:port": {"node_id", "flags", ...}}
    node_id = next(n["node_id"] for n in nodes.values() if "myself" in n["flags"])
    replicas = [addr for addr, n in nodes.items() if n["master_id"] == node_id and "slave" in n["flags"]]
    assert replicas, "the master has no replica (infra/redis-cluster.sh runs one per master)"
    host, port = replicas[0].rsplit(":", 1)
    new = (host, int(port))
    _node_client(*new).execute_command("CLUSTER FAILOVER")

    every = [tuple(a.rsplit(":", 1)) for a in nodes]
    name = f"{new[0]}:{new[1]}"

    def promoted():  # the two swapped roles, and every node's view says so (later clients see one map)
        roles = [_node_client(*a).execute_command("ROLE")[0] for a in (old, new)]
        views = [_node_client(h, int(p)).execute_command("CLUSTER NODES") for h, p in every]
        agreed = all("master" in v.get(name, {}).get("flags", "") for v in views)
        states = [_node_client(h, int(p)).execute_command("CLUSTER INFO")["cluster_state"] == "ok" for h, p in every]
        return roles == [b"slave", b"master"] and agreed and all(states)

    _wait(promoted, 90, f"replica {new} to take over from {old}")
    return old, new


def _online(store, requests):
    got = []
    for r in requests.to_dict("records"):
        res = store.get_online_features([{k: r[k] for k in KEYS}], feature_service="everything",
                                        request_time=r["event_timestamp"])
        got.append(res.to_dict())
    return got


def test_lookups_materialize_and_push_ride_out_a_failover(tmp_path, redis_cluster_to_fail_over):
    """A failover moves a master's slots to its replica while the store's client still holds the old
    slot map: the next lookup is redirected (MOVED) and answers the same values; materialize and push
    then write through the promoted replica (which may not know the scripts: NOSCRIPT, loaded again)."""
    redis_cluster_url = redis_cluster_to_fail_over
    root = write_repo(tmp_path / "repo")
    project = f"t_cluster_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project,
                                                          redis_url=redis_cluster_url))
    events = random_events(4)
    history, later = events.iloc[:200], events.iloc[200:]
    write_events(store.repo_path, history)
    try:
        store.materialize()
        requests = random_requests(4, history).head(40)
        before = _online(store, requests)
        cluster = store.online_store().client
        key = orr.entity_base(project, "amount_stats", [requests["user_id"].dropna().iloc[0]])
        old, new = _fail_over(cluster, key)
        after = _online(store, requests)  # the same client, its slot map now stale
        assert cluster.get_node_from_key(key).port == new[1]
        for a, b in zip(after, before):
            assert a.keys() == b.keys()
            for col in a:
                assert all(same_value(x, y) for x, y in zip(a[col], b[col])), col
        # writes after the failover: a push of the later events, then the oracle of all of them online
        result = store.push("events", later, to="online")
        assert result.events == len(later) and not result.refusals
        from tests import oracle
        from tests.compare import assert_features_equal

        requests = random_requests(5, events)
        online = pd.DataFrame([{k: v[0] for k, v in row.items()} for row in _online(store, requests)])
        for view in store.repo.views.values():
            assert_features_equal(online, oracle.point_in_time(events, view, requests), view.feature_names,
                                  f"after a failover, view {view.name}")
        write_events(store.repo_path, events)
        store.materialize()  # rewrites every entity, some on the promoted master
        q = BASE + pd.Timedelta("10min")
        rows = [{k: r[k] for k in KEYS} for r in requests.head(30).to_dict("records")]
        assert not store.get_online_features(rows, feature_service="everything", request_time=q).refusals
    finally:
        drop_project(store.online_store().client, project)


def test_http_server_health_lookups_and_logged_lookups_on_a_cluster(tmp_path, monkeypatch, redis_cluster_url):
    """``featurestore serve`` on a cluster store: /health reads the markers there, a lookup of many
    entities equals the same lookup on the single Redis (same events materialized into both), and a
    logged lookup lands in the cluster's log stream and ships offline."""
    from fastapi.testclient import TestClient

    from featurestore import serving_log
    from featurestore.server import create_app

    root = write_repo(tmp_path / "repo")
    project = f"t_cluster_{uuid.uuid4().hex[:10]}"
    single = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project))
    cluster = FeatureStore(root, config=dataclasses.replace(single.config, redis_url=redis_cluster_url))
    events = random_events(6)
    write_events(root, events)
    # the cluster's vectorised build of kernel entities (members as arguments) however few their events
    monkeypatch.setattr(online_materialize, "VECTOR_EVENTS", 0)
    monkeypatch.setattr(kentity, "DENSE_EVENTS", 20)
    try:
        single.materialize()
        client = TestClient(create_app(cluster))
        assert client.get("/health").status_code == 503  # nothing in the cluster yet: refused, never defaults
        cluster.materialize()
        assert client.get("/health").json()["status"] == "ok"
        q = int((BASE + pd.Timedelta("4min")).value // 1_000_000)
        users = sorted(set(events["user_id"].dropna()))
        entities = {"user_id": users * 3, "shop": [i % 3 for i in range(len(users) * 3)]}
        res = client.post("/get-online-features", json={"feature_service": "everything", "entities": entities,
                                                        "request_time": q, "log": True})
        assert res.status_code == 200, res.text
        body = res.json()
        want = single.get_online_features([{"user_id": u, "shop": s} for u, s in zip(*entities.values())],
                                          feature_service="everything", request_time=q).to_dict()
        for name, values in want.items():
            got = body["results"][name]
            assert all(same_value(a, b) or (b != b and a is None) for a, b in zip(got, values)), name
        key = serving_log.stream_key(project, "everything")
        assert cluster.online_store().client.xlen(key) == 1
        (shipped,) = [r for r in cluster.ship_logs() if r.stream == "everything"]
        assert shipped.entries == 1 and shipped.rows == len(entities["user_id"])
        assert cluster.online_store().client.xlen(key) == 0
    finally:
        drop_project(single.online_store().client, project)
        drop_project(cluster.online_store().client, project)


def test_an_unreachable_cluster_is_one_line_naming_it(tmp_path):
    from featurestore.errors import InfraError

    root = write_repo(tmp_path / "repo")
    store = FeatureStore(root, config=dataclasses.replace(
        load_config(root), redis_url="redis+cluster://:s3cret@127.0.0.1:1,127.0.0.1:2"))
    with pytest.raises(InfraError) as info:
        store.get_online_features([{"user_id": "u0"}], features=["profile:last_tag"], request_time=BASE)
    text = str(info.value)
    assert text.startswith("cannot reach Redis at redis+cluster://:***@127.0.0.1:1,127.0.0.1:2: ") and "\n" not in text
    assert "s3cret" not in text and text.endswith("(run bash infra/redis-cluster.sh start)")


def test_a_master_that_lost_its_data_is_refused_never_read_as_absent(tmp_path, redis_cluster_url):
    """One master loses its data (here its keys of the project deleted: what a restart without
    persistence does) while
    the views' markers live on another: the entities of its slots are refused (their slots' sentinels
    are gone with them), never served as NOT_FOUND defaults; the others are answered; materialize
    brings everything back."""
    root = write_repo(tmp_path / "repo")
    project = f"t_cluster_{uuid.uuid4().hex[:10]}"
    store = FeatureStore(root, config=dataclasses.replace(load_config(root), project=project,
                                                          redis_url=redis_cluster_url))
    events = random_events(8)
    write_events(store.repo_path, events)
    q = BASE + pd.Timedelta("4min")
    users = sorted(set(events["user_id"].dropna()))
    rows = [{"user_id": u} for u in users]
    try:
        store.materialize()
        cluster = store.online_store().client
        before = store.get_online_features(rows, features=["amount_stats:events_all"], request_time=q)
        assert set(before.statuses()["events_all"]) == {"PRESENT"}
        markers_node = cluster.get_node_from_key(orr.views_key(project)).name
        on = {u: cluster.get_node_from_key(orr.entity_base(project, "amount_stats", [u])).name for u in users}
        victims = [u for u in users if on[u] != markers_node]
        assert victims, "every user's slot is on the markers' master: pick another seed"
        host, port = on[victims[0]].rsplit(":", 1)
        node = _node_client(host, int(port))  # this project's keys on that master, as a restart would lose
        pipe = node.pipeline(transaction=False)  # them (not FLUSHALL: the cluster may hold others' data)
        for key in node.scan_iter(match=f"fs:{project}:*", count=1000):
            pipe.delete(key)
        pipe.execute()
        lost = {u for u in users if on[u] == on[victims[0]]}
        got = store.get_online_features(rows, features=["amount_stats:events_all"], request_time=q)
        for u, status, value, was in zip(users, got.statuses()["events_all"], got.to_dict()["events_all"],
                                         before.to_dict()["events_all"]):
            assert (status, value) == (("REFUSED", None) if u in lost else ("PRESENT", was)), u
        assert any("a Redis Cluster master lost its data" in r for r in got.refusals), got.refusals
        store.materialize()
        again = store.get_online_features(rows, features=["amount_stats:events_all"], request_time=q)
        assert again.to_dict() == before.to_dict() and not again.refusals
    finally:
        drop_project(store.online_store().client, project)
