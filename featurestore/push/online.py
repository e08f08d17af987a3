"""Pushed events into the online store: each touched entity's state, plus the new events, written back.

For every view of the push and every entity its new events touch, the entity's stored state is read
(raw events, the prefix at its cut, its horizon), rebuilt as the kernel's
:class:`~featurestore.kernel.entity.EntityState` — the code materialize and the stream job use — with the
new events added, and written back whole by the store's write script (one entity at a time is atomic).
Never a whole-view rewrite: the cost is the touched entities' states. The reads happen under ``WATCH``
of the touched keys and the writes in one ``MULTI``/``EXEC``: a concurrent writer of one of them (another
push, a materialize) makes the exchange start over, so no update is lost. On a Redis Cluster a
transaction covers the entities of one slot (their keys' hash tags), run on the master that holds it.

The new events' stored members are encoded by the same SQL as materialize's (``materialize_sql`` over
the view's stored events of the pushed rows), with event ids of their own (``"p<push id>:<n>"``) so they
never collide with the ids of materialized (negative ranks) or streamed (Kafka offsets) events.
"""

from __future__ import annotations

import time
import uuid
from typing import Dict, List, Optional, Tuple

import orjson

from featurestore.kernel.entity import DENSE_EVENTS, EntityState
from featurestore.online import view_layout
from featurestore.online_reply import loads, loads_exact
from featurestore.sdk.online_lookup import entity_state_refusal, view_refusal
from featurestore.stores import online_format as ofmt
from featurestore.stores import online_redis as orr

MAX_ATTEMPTS = 20
_REDIRECTS = ("MOVED", "ASK", "TRYAGAIN", "CLUSTERDOWN")


def new_events(con, cv, relation: str, push_id: str) -> Dict[tuple, List[Tuple[int, str]]]:
    """Per entity (its join-key values), the ``(ts, member)`` of the view's events in ``relation`` (a
    relation of the view's stored events), members encoded as materialize encodes them."""
    out: Dict[tuple, List[Tuple[int, str]]] = {}
    nkeys = len(cv.join_keys)
    reader = con.sql(orr.materialize_sql(cv, relation)).to_arrow_reader(10_000)
    for batch in reader:
        keys = [batch.column(i).to_pylist() for i in range(nkeys)]
        tss = batch.column(nkeys + 1).to_pylist()
        members = batch.column(nkeys + 2).to_pylist()
        for i in range(batch.num_rows):
            events = []
            for ts, member in zip(tss[i], members[i]):
                rank, rest = member[2:].split(",", 1)  # '[-<rank>,<ts>,...]' (online_format)
                events.append((ts, f'["p{push_id}:{rank}",{rest}'))
            out[tuple(k[i] for k in keys)] = events
    return out


def _state(cv, layout, ret, stored) -> EntityState:
    """The entity's state as stored (``stored``: meta, raw members, prefix members), ready for more events."""
    meta_raw, members, prefixes = stored
    meta = orjson.loads(meta_raw) if meta_raw else {}
    rows = sorted((loads_exact(p) for p in prefixes), key=lambda p: p[0])
    cut = rows[0][0] if rows and ret.keep_base else None
    state = EntityState(layout, ret.keep_base, cut, DENSE_EVENTS)
    if cut is not None:
        state.base = layout.decode(rows[0][1])
        state.prefixes = {cut: state.base}
    state.horizon = meta.get("h")
    codec = ofmt.members(cv)
    for m in members:
        text = m.decode() if isinstance(m, bytes) else m
        state.add(*codec.decode(loads(text)), text)
    return state


def apply(store, cv, events: Dict[tuple, List[Tuple[int, str]]], upsert: bool = False) -> Tuple[int, Optional[str]]:
    """Add ``events`` (per entity) to the online state of ``cv``; returns (entities written, refusal). A view
    or entity whose online state cannot take them (never loaded, written by another definition or in another
    format) is refused with the reason lookups give, and nothing is written. ``upsert``: an event identical (time, inputs and the
    order values the view stores: ``online_format``) to one the entity holds raw is not added again."""
    online = orr.for_store(store)
    online.check_eviction(store.config.redis_allow_eviction)
    marker = online.markers([cv.name]).get(cv.name)
    why = view_refusal(cv, marker, (marker.get("h") or 0) if marker is not None else 0, store)
    if why:
        return 0, why
    if not events:
        return 0, None
    layout = view_layout(cv)
    ret = orr.retention(cv)
    bases = {k: online.base(cv.name, list(k)) for k in events}
    written = 0
    for group in _slot_groups(online, bases):
        n, why = _apply_group(online, cv, layout, ret, events, group, upsert)
        if why:
            return written, why
        written += n
    return written, None


def _slot_groups(online, bases: Dict[tuple, str]) -> List[Dict[tuple, str]]:
    """The entities one transaction may cover: all of them on a single Redis; on a cluster, those whose
    keys share a slot (a transaction, and WATCH, cannot span slots). Each entity is written atomically
    either way; what a group shares is only the round trips."""
    if not online.cluster:
        return [bases]
    from redis.crc import key_slot

    groups: Dict[int, Dict[tuple, str]] = {}
    for k, b in bases.items():
        groups.setdefault(key_slot(b.encode()), {})[k] = b
    return list(groups.values())


def _connection(online, base: str):
    """The client a transaction on ``base``'s keys runs on: the store's client, or on a cluster the
    client of the master that holds the slot (looked up again after a redirection: see below)."""
    if not online.cluster:
        return online.client
    cluster = online.client
    return cluster.get_redis_connection(cluster.get_node_from_key(base))


def _apply_group(online, cv, layout, ret, events, bases: Dict[tuple, str], upsert: bool):
    import redis

    sha = online.write_sha()
    keys = [key for b in bases.values() for key in orr.entity_keys(b)]
    for _ in range(MAX_ATTEMPTS):
        client = _connection(online, next(iter(bases.values())))
        with client.pipeline(transaction=True) as tx:
            try:
                online._guard(tx.watch, *keys)
                reads = client.pipeline(transaction=False)
                for b in bases.values():
                    t_key, r_key, p_key = orr.entity_keys(b)
                    reads.hget(t_key, orr.META_FIELD)
                    reads.zrange(r_key, 0, -1)
                    reads.zrange(p_key, 0, -1)
                got = online._guard(reads.execute)
                tx.multi()
                now = int(time.time() * 1000)
                for i, (k, b) in enumerate(bases.items()):
                    stored = got[3 * i:3 * i + 3]
                    why = entity_state_refusal(cv, orjson.loads(stored[0])) if stored[0] is not None else None
                    if why:  # another definition or format (never parsed as this one), not the horizon
                        return 0, why
                    state = _state(cv, layout, ret, stored)
                    held = {orjson.dumps([o, i]) for o, i, _ in state.events.values()} if upsert else set()
                    for ts, member in events[k]:
                        eid, order, inputs = ofmt.members(cv).decode(loads(member))
                        if upsert and orjson.dumps([order, inputs]) in held:
                            continue
                        state.add(eid, order, inputs, member)
                    changes = state.drain()
                    at = max(now, changes.last_ts or now) + ret.window_ms + orr.SLACK_MS if ret.expires else None
                    tx.evalsha(sha, 3, *orr.entity_keys(b), *orr.write_args(changes, cv.data_fingerprint, at))
                online._guard(tx.execute)
                return len(bases), None
            except redis.exceptions.WatchError:
                continue
            except redis.exceptions.NoScriptError:  # a cluster node that never loaded it (promoted replica)
                client.script_load(orr.WRITE_LUA)
                continue
            except redis.exceptions.ResponseError as exc:
                # the slot moved (resharding, failover) since the client read the slot map: re-read it
                moved = (redis.exceptions.MovedError, redis.exceptions.AskError, redis.exceptions.TryAgainError,
                         redis.exceptions.ClusterDownError)
                if online.cluster and (isinstance(exc, moved) or str(exc).split(" ", 1)[0] in _REDIRECTS):
                    online.client.nodes_manager.initialize()
                    time.sleep(0.1)
                    continue
                raise
    raise orr.FeatureStoreError(f"feature view '{cv.name}': pushed events lost {MAX_ATTEMPTS} races with other "
                                "writers of the same entities; push again")


def push_id() -> str:
    return uuid.uuid4().hex[:12]


__all__ = ["apply", "new_events", "push_id"]
