"""The streaming job's online path: Python functions between Flink's keyed stream and Redis.

1. :class:`OnlineState`, keyed by (key group, entity): keeps the entity's raw events in Flink keyed state
   (``MapState`` keyed by the Kafka (partition, offset) of the event, so a replay after a restore cannot
   add an event twice) and, per view, what its cut folded away (``ValueState``: cut, base row, horizon).
   In Python it keeps each view's :class:`featurestore.kernel.entity.EntityState` (a cache rebuilt
   from keyed state on a miss): an event updates its minute tile; a flush (a processing-time timer,
   ``flush_ms`` after the entity changed) settles the tiles, trims what no request at or after the
   horizon needs (relative to the entity's latest event, never the wall clock) and emits the entity's
   *changes* — new raw events, changed tiles and prefixes — as the online store's write-script
   arguments (:func:`featurestore.stores.online_redis.write_args`). Per event the work is bounded and
   independent of the entity's history. After a rebuild (a restore, or a cache eviction) the entity's
   next flush rewrites its keys whole, so Redis always converges to the checkpointed state.
2. :class:`RedisWriter` (one instance): buffers those writes in ``ListState`` (checkpointed, so a write
   emitted before a checkpoint is never lost) and runs them as one pipeline of write scripts per
   ``flush_rows`` or ``flush_ms``. Every write is idempotent (whole tiles, raw events by id, removals by
   range): at-least-once delivery, exactly-once effect. It also stores the state operator's progress
   reports (after the writes that preceded them), which is how a bounded run knows it is done.
"""

from __future__ import annotations

import json
import os
import pickle
import time
from collections import OrderedDict
from typing import Dict, List, Optional

from pyflink.datastream.functions import KeyedProcessFunction

PARTITION_SHIFT = 40  # state key of an event: partition << 40 | offset
CACHE_KEYS = 20_000  # entities whose kernel state is kept in Python (a cache of keyed state, never the truth)
FLUSH_MS_PER_EVENT = 0.05  # an entity that received n events since its last flush waits at most this much more
MAX_FLUSH_MS = 30_000
HEARTBEAT_MS = 1_000
PROGRESS = -1  # the third field of a progress report travelling from the state operator to the writer


def log_stats(what: str, stats: Optional[dict]) -> None:
    """Where the Python side spent its time (logged when the operator closes)."""
    if stats:
        import logging

        logging.getLogger("featurestore.stream").info("%s: %s", what, json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}))


def progress_key(project: str, run_id: str) -> str:
    """Redis hash where a run's online path reports progress (field ``state:<instance>``: JSON ``at``,
    ``dirty``, ``emitted``, ``events``, seconds spent; field ``writer``: JSON ``at``, ``written``, ...)."""
    return f"fs:{project}:_stream:_progress:{run_id}"


def _subtask_index(runtime_context) -> int:
    """The operator's subtask index (PyFlink 2.3's thread mode lacks get_index_of_this_subtask)."""
    for get in (lambda: runtime_context.get_index_of_this_subtask(),
                lambda: runtime_context.get_task_info().get_index_of_this_subtask()):
        try:
            return int(get())
        except Exception:
            continue
    return 0


class _View:
    """What the operator knows of one online view of a key group (from ``OnlineView.to_dict``)."""

    def __init__(self, spec: dict, n_order: int):
        from featurestore.kernel.partials import Layout

        self.name = spec["name"]
        self.key_prefix = spec["key_prefix"]
        self.fingerprint = spec["fingerprint"]
        self.flag = spec["flag"]
        self.inputs = list(spec["inputs"])
        self.keep_base = spec["keep_base"]
        self.window_ms = spec["window_ms"]
        self.expires = spec["expires"]
        lay = spec["layout"]
        self.layout = Layout([tuple(x) for x in lay["inputs"]], [tuple(x) for x in lay["aggs"]], lay["latest"])
        self.n_order = n_order

    def event(self, eid: int, v: list):
        """``(order, inputs, member)`` of an event of this view (None when the view's filter drops it)."""
        if not v[self.flag]:
            return None
        order = [v[0], *([] if x is None else [x] for x in v[1:self.n_order])]
        inputs = [v[i] for i in self.inputs]
        return order, inputs, json.dumps([eid, order, inputs], separators=(",", ":"), ensure_ascii=False)


class OnlineState(KeyedProcessFunction):
    """Keyed by ``"<group>" + <join-key JSON>``: the entity's events in state; emits its online writes and
    progress reports (``dirty`` = entities with a flush pending) that the writer stores in Redis after
    the writes emitted before them: a report with ``dirty == 0`` means everything this operator received
    until then is in Redis."""

    def __init__(self, groups: List[dict], flush_ms: int, slack_ms: int = 0,
                 ms_per_event: float = FLUSH_MS_PER_EVENT):
        self.groups = groups
        self.flush_ms = max(1, int(flush_ms))
        self.slack_ms = int(slack_ms)
        self.ms_per_event = float(ms_per_event)

    def open(self, runtime_context):
        from pyflink.common import Types
        from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

        self.views = {g["gid"]: [_View(v, g["n_order"]) for v in g["views"]] for g in self.groups}
        self.events = runtime_context.get_map_state(MapStateDescriptor("events", Types.LONG(), Types.STRING()))
        self.folded = runtime_context.get_state(ValueStateDescriptor("folded", Types.PICKLED_BYTE_ARRAY()))
        self.subtask = _subtask_index(runtime_context)
        self.instance = f"{self.subtask}:{os.getpid()}:{id(self):x}"  # distinct across subtasks and restarts
        self.cache: "OrderedDict[str, list]" = OrderedDict()
        # Not state, only shortcuts: ``dirty`` = a flush timer is pending (timers are checkpointed; after a
        # restore a key missing here just gets one more timer).
        self.dirty = set()
        self.pending: Dict[str, int] = {}  # events since the key's last flush (a hint for the flush interval)
        self.heartbeat_at = None
        self.stats = {"events": 0, "flushes": 0, "writes": 0, "rebuilds": 0, "element_s": 0.0, "flush_s": 0.0}

    def close(self):
        log_stats("online state", getattr(self, "stats", None))

    # -- events -------------------------------------------------------------------------------------
    def process_element(self, row, ctx):
        t0 = time.perf_counter()
        key, p, o, v = row[0], row[1], row[2], row[3]
        eid = (int(p) << PARTITION_SHIFT) | int(o)
        self.events.put(eid, v)
        states = self.cache.get(key)
        if states is None:
            self._load(key)  # rebuilt from keyed state, this event included
        else:
            self.cache.move_to_end(key)
            ev = json.loads(v)
            for view, state in zip(self.views[_gid(key)], states):
                e = view.event(eid, ev)
                if e is not None:
                    state.add(eid, *e)
        n = self.pending.get(key, 0) + 1
        self.pending[key] = n
        if key not in self.dirty:
            self.dirty.add(key)
            timers = ctx.timer_service()
            # Times are aligned to a grid of flush_ms, so pending flushes fire together.
            every = min(MAX_FLUSH_MS, self.flush_ms + int(n * self.ms_per_event))
            every = (every + self.flush_ms - 1) // self.flush_ms * self.flush_ms
            timers.register_processing_time_timer((timers.current_processing_time() // every + 1) * every)
        self.stats["events"] += 1
        self.stats["element_s"] += time.perf_counter() - t0

    def _load(self, key: str) -> list:
        """The entity's kernel states, from the cache or (on a miss) rebuilt from keyed state; a rebuilt
        entity is rewritten whole at its next flush."""
        from featurestore.kernel.entity import EntityState

        states = self.cache.get(key)
        if states is not None:
            self.cache.move_to_end(key)
            return states
        views = self.views[_gid(key)]
        folded = self.folded.value()
        folded = pickle.loads(folded) if folded else {}
        states = []
        for i, view in enumerate(views):
            f = folded.get(i)
            cut = f["cut"] if f else None
            state = EntityState(view.layout, view.keep_base, cut)
            if f:
                if f["base"] is not None:
                    state.base = view.layout.decode(f["base"])
                    if cut is not None:
                        state.prefixes[cut] = state.base
                state.horizon = f["h"]
            states.append(state)
        for eid, v in self.events.items():
            ev = json.loads(v)
            for view, state in zip(views, states):
                e = view.event(eid, ev)
                if e is not None and (state.cut is None or e[0][0] >= state.cut):
                    state.add(eid, *e)
        for state in states:
            state.rewrite()
        self.cache[key] = states
        if len(self.cache) > CACHE_KEYS:
            self.cache.popitem(last=False)
        self.stats["rebuilds"] += 1
        return states

    # -- flushes ------------------------------------------------------------------------------------
    def on_timer(self, timestamp, ctx):
        key = ctx.get_current_key()
        if timestamp == self.heartbeat_at:
            self.heartbeat_at = None
        out = []
        if key in self.dirty or key not in self.cache:  # a restored timer of an unknown key always flushes
            t0 = time.perf_counter()
            out = list(self._flush(key))
            self.dirty.discard(key)
            self.pending.pop(key, None)
            self.stats["flushes"] += 1
            self.stats["writes"] += len(out)
            self.stats["flush_s"] += time.perf_counter() - t0
        if not self.dirty:
            now = ctx.timer_service().current_processing_time()
            report = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items()}
            report.update(at=now, dirty=0, emitted=self.stats["writes"], subtask=self.subtask, instance=self.instance)
            out.append(("", json.dumps(report), PROGRESS))
            if self.heartbeat_at is None:  # keep reporting while idle (on this key's timer)
                self.heartbeat_at = now + HEARTBEAT_MS
                ctx.timer_service().register_processing_time_timer(self.heartbeat_at)
        return out

    def _flush(self, key: str):
        from featurestore.kernel.tiles import TOP_LEVEL, tile_ms
        from featurestore.stores.online_redis import SLACK_MS, write_args

        views = self.views[_gid(key)]
        states = self._load(key)
        entity = json.loads(key[key.index("["):])
        now = int(time.time() * 1000)
        left = set()
        folded_changed = False
        for i, (view, state) in enumerate(zip(views, states)):
            if state.last_ts is not None and view.window_ms is not None:
                cut = state.last_ts - view.window_ms - self.slack_ms
                if view.keep_base:
                    cut -= cut % tile_ms(TOP_LEVEL)
                gone = state.trim(cut, cut + view.window_ms)
                if gone:
                    left.update(gone)
                    folded_changed = True
            changes = state.drain()
            if changes.empty:
                continue
            at = None
            if view.expires and changes.last_ts is not None:
                at = max(now, changes.last_ts) + view.window_ms + SLACK_MS
            base = entity_base_from_prefix(view.key_prefix, entity)
            yield base, json.dumps(write_args(changes, view.fingerprint, at)), 0
        for eid in left:
            if not any(eid in s.events for s in states):
                self.events.remove(eid)
        if folded_changed:
            self.folded.update(pickle.dumps({
                i: {"cut": s.cut, "h": s.horizon, "base": v.layout.encode(s.base) if s.base is not None else None}
                for i, (v, s) in enumerate(zip(views, states)) if s.cut is not None}))


def entity_base_from_prefix(key_prefix: str, entity: list) -> str:
    """``fs:{project}:{view}:{<entity>}`` from the view's key prefix (see online_redis.entity_base)."""
    from featurestore.stores.online_redis import encode_entity

    return key_prefix + "{" + encode_entity(entity) + "}"


def _gid(key: str) -> int:
    return int(key[: key.index("[")])


class RedisWriter(KeyedProcessFunction):
    """One instance (keyed by a constant): buffers ``(entity base, write-script args JSON, kind)`` in
    ListState; one pipelined round trip per ``flush_rows`` writes or ``flush_ms``. Progress reports are
    stored in the progress hash in the same pipeline, after the writes that preceded them."""

    def __init__(self, redis: dict, progress_key: str, flush_ms: int, flush_rows: int):
        self.redis = redis
        self.progress_key = progress_key
        self.flush_ms = max(1, int(flush_ms))
        self.flush_rows = max(1, int(flush_rows))

    def open(self, runtime_context):
        from pyflink.common import Types
        from pyflink.datastream.state import ListStateDescriptor

        from featurestore.stores.online_redis import RedisOnlineStore

        self.buffer = runtime_context.get_list_state(
            ListStateDescriptor("buffer", Types.TUPLE([Types.STRING(), Types.STRING(), Types.LONG()])))
        password = self.redis.get("password") or os.environ.get("FEATURESTORE_REDIS_PASSWORD") or None
        self.store = RedisOnlineStore("", self.redis["url"], password, bool(self.redis.get("tls")))
        self.pending = 0  # writes buffered since the last flush (a hint; restored ones flush on their timer)
        self.timer_at = None
        self.stats = {"values": 0, "writes": 0, "round_trips": 0, "bytes": 0, "flush_s": 0.0}

    def close(self):
        log_stats("redis writer", getattr(self, "stats", None))
        store = getattr(self, "store", None)
        if store is not None and store._client is not None:
            store._client.close()

    def process_element(self, item, ctx):
        self.buffer.add(item)
        self.pending += 1
        if item[2] != PROGRESS:
            self.stats["values"] += 1
        if self.pending >= self.flush_rows:
            self._flush()
        elif self.timer_at is None:
            timers = ctx.timer_service()
            self.timer_at = timers.current_processing_time() + self.flush_ms
            timers.register_processing_time_timer(self.timer_at)

    def on_timer(self, timestamp, ctx):
        if timestamp == self.timer_at:
            self.timer_at = None
        self._flush()
        return ()

    def _flush(self):
        import redis

        from featurestore.stores.online_redis import entity_keys

        t0 = time.perf_counter()
        items = list(self.buffer.get() or [])
        self.pending = 0
        if not items:
            return
        for attempt in (0, 1):
            sha = self.store.write_sha()
            pipe = self.store.client.pipeline(transaction=False)
            reports = {}
            writes = 0
            size = 0
            for base, args, kind in items:
                if kind == PROGRESS:
                    doc = json.loads(args)
                    reports[f"state:{doc['instance']}"] = args
                else:
                    pipe.evalsha(sha, 3, *entity_keys(base), *json.loads(args))
                    writes += 1
                    size += len(args)
            report = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items()}
            reports["writer"] = json.dumps({**report, "at": int(time.time() * 1000),
                                            "written": self.stats["writes"] + writes})
            pipe.hset(self.progress_key, mapping=reports)
            pipe.expire(self.progress_key, 86_400)
            try:
                pipe.execute()
            except redis.exceptions.NoScriptError:  # Redis restarted or was flushed: load the script again
                self.store._write = None
                if attempt:
                    raise
                continue
            break
        self.stats["writes"] += writes
        self.stats["bytes"] += size
        self.stats["round_trips"] += 1
        self.stats["flush_s"] += time.perf_counter() - t0
        self.buffer.clear()


__all__ = ["OnlineState", "RedisWriter", "progress_key", "log_stats", "PROGRESS", "PARTITION_SHIFT"]
