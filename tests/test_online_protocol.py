"""The online store's read protocol: a lookup of many entities and views is one pipelined round trip (on a
Redis Cluster one batch per master, all sent before any reply is read), one read-script call per view (per
view and slot on a cluster, at most ``online_read.CALL_ENTITIES`` entities a call), and every entity of a
call reads its own state. Needs the project's Redis (and the local cluster for the cluster cases).
"""

import pandas as pd
import pytest

from featurestore.stores import online_redis as orr
from tests.randomrepo import BASE, random_events, write_events
from tests.test_online import layout_mode, make_store  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.redis]


def test_one_round_trip_for_many_entities_and_views(make_store, monkeypatch):
    import redis

    store = make_store()
    write_events(store.repo_path, random_events(5))
    store.materialize()
    rows = [{"user_id": f"u{i}", "shop": i % 3} for i in range(6)] + [{"user_id": "nobody", "shop": 0}]
    q = BASE + pd.Timedelta("2min")
    store.get_online_features(rows, feature_service="everything", request_time=q)  # warm connection
    sent = []
    real = redis.connection.AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        sent.append(command)
        return real(self, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting)
    got = store.get_online_features(rows, feature_service="everything", request_time=q)
    assert len(sent) == 1, sent
    payload = b"".join(sent[0]) if isinstance(sent[0], list) else sent[0]
    # one script call per view, for all its entities (Redis parses the view's read plan once)
    assert payload.upper().count(b"EVALSHA") == len(store.repo.views)
    p = store.config.project
    for v in store.repo.views:  # every (view, entity) read: its three keys, once
        cv = store.compiled(v)
        bases = {f"fs:{p}:{v}:{{" + orr.encode_entity([row[k] for k in cv.join_keys]) + "}"
                 for row in rows}
        for base in bases:
            assert all(payload.count(f"{base}:{x}\r\n".encode()) == 1 for x in "trp"), base
    assert b"SCAN" not in payload.upper() and b"HMGET" in payload.upper()
    assert len(got) == len(rows)


def test_a_lookup_on_a_cluster_sends_each_master_one_batch(make_store, monkeypatch, redis_cluster_url):
    """A lookup of many entities on a Redis Cluster: one batch of commands per master, in one round
    (sent to every master before any reply is read), never one round trip per entity, never SCAN."""
    import redis

    monkeypatch.setenv("FEATURESTORE_REDIS_URL", redis_cluster_url)
    store = make_store()
    write_events(store.repo_path, random_events(5))
    store.materialize()
    rows = [{"user_id": f"u{i}", "shop": i % 3} for i in range(30)] + [{"user_id": "nobody", "shop": 0}]
    q = BASE + pd.Timedelta("2min")
    store.get_online_features(rows, feature_service="everything", request_time=q)  # warm connections
    events = []
    real_send = redis.connection.AbstractConnection.send_packed_command
    real_read = redis.connection.AbstractConnection.read_response

    def sending(self, command, check_health=True):
        events.append(("send", self.port, b"".join(command) if isinstance(command, list) else command))
        return real_send(self, command, check_health)

    def reading(self, *args, **kwargs):
        events.append(("read", self.port, b""))
        return real_read(self, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", sending)
    monkeypatch.setattr(redis.connection.AbstractConnection, "read_response", reading)
    got = store.get_online_features(rows, feature_service="everything", request_time=q)
    sends = [e for e in events if e[0] == "send"]
    assert len({port for _, port, _ in sends}) == len(sends) == 3, [e[:2] for e in events]  # one batch per master
    first_read = next(i for i, e in enumerate(events) if e[0] == "read")
    assert all(e[0] == "send" for e in events[:3]) and first_read == 3  # every batch sent before any read
    payload = b"".join(p for _, _, p in sends).upper()
    # one script call per (view, slot) of its entities: a script's keys share one slot
    from redis.crc import key_slot

    calls = 0
    for v in store.repo.views:
        cv = store.compiled(v)
        calls += len({key_slot(("{" + orr.encode_entity([row[k] for k in cv.join_keys]) + "}").encode())
                      for row in rows})
    assert payload.count(b"EVALSHA") == calls and b"SCAN" not in payload
    assert len(got) == len(rows)


@pytest.mark.parametrize("seed,online_backend", [(3, "single"), (3, "cluster")], indirect=["online_backend"])
def test_entities_split_over_several_script_calls_each_read_their_own_state(online_backend, make_store, seed,
                                                                           layout_mode, monkeypatch):
    """A view's entities are read by script calls of at most CALL_ENTITIES entities (on a cluster, per slot):
    with calls of 3, a lookup of many entities (some unknown, some lost, repeated rows) answers every row
    exactly as a lookup of that row alone, value by value, status by status."""
    from featurestore.stores import online_read

    store = make_store()
    events = random_events(seed)
    write_events(store.repo_path, events)
    store.materialize()
    client = store.online_store().client
    client.delete(orr.entity_base(store.config.project, "amount_stats", ["u1"]) + ":t")  # u1's state is lost
    rows = [{"user_id": f"u{i % 9}", "shop": i % 4} for i in range(23)] + [{"user_id": "nobody", "shop": 0}]
    monkeypatch.setattr(online_read, "CALL_ENTITIES", 3)
    for q in [BASE + pd.Timedelta("61s"), BASE + pd.Timedelta("299s")]:
        got = store.get_online_features(rows, feature_service="everything", request_time=q)
        values, statuses = got.to_dict(), got.statuses()
        assert "REFUSED" in statuses["events_all"] and any("is lost" in r for r in got.refusals)
        for i, row in enumerate(rows):
            alone = store.get_online_features([row], feature_service="everything", request_time=q)
            assert {k: v[i] for k, v in values.items()} == {k: v[0] for k, v in alone.to_dict().items()}, (q, row)
            assert {k: v[i] for k, v in statuses.items()} == {k: v[0] for k, v in alone.statuses().items()}, (q, row)


def test_a_dense_entity_reply_holds_each_raw_event_once(make_store, monkeypatch):
    """The raw pieces of an entity with tiles overlap across its windows (amount_stats' 10s, 1m and 1h
    windows and its unbounded one share their latest seconds; with no tile stored every piece is read raw):
    the read script merges them, so the reply holds each of the entity's events before ``q`` exactly once,
    and the values equal those of the same events read sparse."""
    from featurestore.kernel import entity
    from featurestore.stores import online_read

    store = make_store()
    write_events(store.repo_path, random_events(4))
    store.materialize()  # sparse: the reference values
    q = BASE + pd.Timedelta("170500ms")  # (u0's events end at ~172 s)
    features = [f"amount_stats:{f}" for f in store.repo.views["amount_stats"].feature_names]
    rows = [{"user_id": "u0", "shop": 0}]
    expected = store.get_online_features(rows, features=features, request_time=q).to_dict()
    monkeypatch.setattr(entity, "DENSE_EVENTS", 0)
    monkeypatch.setattr(entity, "TILE_MIN_EVENTS", 10**9)
    store.materialize()
    replies = []
    real = online_read.split_reply
    monkeypatch.setattr(online_read, "split_reply", lambda reply, n: replies.append(reply) or real(reply, n))
    got = store.get_online_features(rows, features=features, request_time=q).to_dict()
    assert got == expected
    (reply,) = replies
    assert reply.split(online_read.SEP)[1] == b"1"  # dense
    base = orr.entity_base(store.config.project, "amount_stats", ["u0"])
    members = store.online_store().client.zrangebyscore(base + ":r", "-inf", q.value // 1_000_000 - 1)
    assert len(members) > 20
    assert [m for m in members if reply.count(m) != 1] == []


def test_a_unix_socket_url_answers_as_tcp(make_store, redis_client):
    """``online_store.redis_url: unix:///path/redis.sock`` (a Redis on the same machine: no TCP in a
    lookup's round trips) reads the same keys to the same values, statuses and refusals, and logs."""
    import dataclasses

    from featurestore import FeatureStore

    sock = redis_client.config_get("unixsocket").get("unixsocket")
    if not sock:
        pytest.skip("this Redis listens on no unix socket (infra/redis.sh starts one that does)")
    tcp = make_store()
    write_events(tcp.repo_path, random_events(11))
    tcp.materialize()
    unix = FeatureStore(tcp.repo_path, config=dataclasses.replace(tcp.config, redis_url=f"unix://{sock}?db=0"))
    rows = [{"user_id": f"u{i}", "shop": i % 3} for i in range(6)] + [{"user_id": "nobody", "shop": 0}]
    for dt in ("-1h", "30s", "2min", "7min", "3d"):
        q = BASE + pd.Timedelta(dt)
        a = tcp.get_online_features(rows, feature_service="everything", request_time=q)
        b = unix.get_online_features(rows, feature_service="everything", request_time=q)
        assert repr((a.to_dict(), a.statuses(), a.event_times, a.refusals)) == \
            repr((b.to_dict(), b.statuses(), b.event_times, b.refusals)), dt
    logged = unix.get_online_features(rows[:2], feature_service="everything", request_time=q, log=True)
    assert logged.request_id
    stream = [k for k in redis_client.scan_iter(match=f"fs:{tcp.config.project}:_log:*")]
    assert stream and any(logged.request_id.encode() in repr(e).encode()
                          for s in stream for e in redis_client.xrange(s))
