"""The streaming job's online path: Python functions between Flink's keyed stream and Redis.

0. In the JVM (``job.build``): the online rows of each key group (one JSON array per event:
   its id = Kafka partition << 40 | offset, its time and order columns, each view's filter flag, the
   input values) are collected per entity into **mini-batches** by the Java operator ``OnlineBatches``
   (every ``batch_ms`` of processing time: 200 ms live, 5 s in bounded catch-up runs, 15 s when one reads
   200k records or more: ``stream.bounded_flush_ms``), joined into one UTF-8 byte string, so Python is
   entered once per entity and batch, not once per event.
1. :class:`OnlineState`, keyed by (key group, entity): adds each batch to Flink keyed state as one entry
   (``MapState``: the batch's least event id -> its text; state is checkpointed with the Kafka offsets,
   so a restore never replays an event it holds) and, per view, what its cut folded away
   (``ValueState``: cut, base row, horizon). In Python it keeps each view's
   :class:`featurestore.kernel.entity.EntityState` (a cache rebuilt from keyed state on a miss): an
   event updates its minute tile; then, once per batch, the entity's tiles are settled, what no request
   at or after the horizon needs is trimmed (relative to the entity's latest event, never the wall
   clock) and the entity's *changes* — new raw events, changed tiles and prefixes — are written to Redis
   as the online store's write scripts (:func:`featurestore.stores.online_redis.write_args`) by the
   operator itself (:class:`RedisWrites`: one pipeline per ``write_rows`` writes or ``write_ms``).
   Per event the work is bounded and independent of the entity's history. After a rebuild (a restore,
   or a cache eviction) the entity's next flush rewrites its keys whole, so Redis always converges to
   the checkpointed state.
2. Exactly-once effect without buffering writes in Flink state: each entity batch that leaves writes in
   the operator's buffer registers a processing-time timer for its entity (``write_ms`` later; odd
   timestamps, heartbeats are even). Timers are checkpointed with the keyed state: when one fires, the
   buffer is written if that entity's writes are still in it; a timer this instance did not register
   (restored from a checkpoint, whose writes may have died with the buffer) rewrites its entity whole
   from keyed state. So every batch a checkpoint holds is in Redis, or its entity is rewritten after a
   restore. Every write is idempotent (whole tiles, raw events by id, removals by range): a restore
   replays events after the checkpoint and rewrites what they touch. Progress reports go to Redis in
   the same pipeline, after the writes that preceded them; that is how a bounded run knows it is done.
   (Before, a separate single writer operator buffered the writes in ``ListState``: two more
   JVM <-> Python crossings per write and every write's bytes through Flink state.)
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import time
from collections import OrderedDict
from operator import itemgetter
from typing import List, Optional, Tuple

import orjson

from pyflink.datastream.functions import KeyedProcessFunction

from featurestore.online_reply import may_hold_wide_integers
from featurestore.sdk import gc_pause
from featurestore.stores import online_format as ofmt

PARTITION_SHIFT = 40  # an event's id: Kafka partition << 40 | offset (computed in the JVM)
OFFSET_MASK = (1 << PARTITION_SHIFT) - 1
CACHE_KEYS = 20_000  # entities whose kernel state is kept in Python (a cache of keyed state, never the truth)
HEARTBEAT_MS = 200  # progress reports while running (a bounded run waits for one after its last batch)
# Without Flink's REST API (no checkpoint can be asked for), a report made at ``at`` is taken to cover every event
# that reached the JVM's mini-batch operator before ``at - batch_ms - BATCH_MARGIN_MS``: a guess that a late timer
# or a backlog before this operator breaks on a busy machine. With REST (always, locally and on a cluster),
# StreamHandle.wait_online_flushed waits on a checkpoint instead (OnlineBatches.prepareSnapshotPreBarrier).
BATCH_MARGIN_MS = 1_000
# The cyclic garbage collector: while the operator runs, automatic full collections are off and the heap
# as it was at open is frozen (featurestore.sdk.gc_pause.hold: the state makes no reference cycles, and is
# freed by reference counting when trimmed). A full collection runs from the heartbeat at most every
# GC_EVERY_MS and GC_SHARE of the time, then freezes what survived, so each one only traverses the objects
# made since the one before (one over a whole 300k-event state took 6 s).
GC_EVERY_MS = 300_000
GC_SHARE = 0.01
FLOAT_TYPES = ("float64", "float32")
NON_FINITE = {"NaN": float("nan"), "Infinity": float("inf"), "-Infinity": float("-inf")}  # JSON_ARRAY's texts
NON_FINITE_TEXTS = (b'"NaN"', b'Infinity"')


def log_stats(what: str, stats: Optional[dict]) -> None:
    """Where the Python side spent its time (logged when the operator closes)."""
    if stats:
        import logging

        logging.getLogger("featurestore.stream").info("%s: %s", what, json.dumps(
            {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}))


def progress_key(project: str, run_id: str) -> str:
    """Redis hash where a run's online path reports progress (field ``state:<instance>``: JSON ``at``,
    ``dirty``, ``emitted``, ``events``, ``written``, ``round_trips``, seconds spent, ...)."""
    return f"fs:{project}:_stream:_progress:{run_id}"


def _task_info(runtime_context, python_name: str, java_name: str) -> int:
    """A number of the operator's task (its subtask index, its attempt), named in its progress reports. PyFlink
    2.3's thread mode wraps the Java RuntimeContext, whose getters Flink 2 removed (its wrapper raises): ask its
    TaskInfo."""
    java = getattr(runtime_context, "_runtime_context", None)  # thread mode: the Java object (pemja)
    for get in (lambda: getattr(runtime_context, python_name)(),
                lambda: getattr(java.getTaskInfo(), java_name)()):
        try:
            return int(get())
        except Exception:
            continue
    raise RuntimeError(f"the online operator cannot tell its {java_name[3:]} "
                       f"(neither {python_name}() nor TaskInfo.{java_name}())")


def _subtask_index(runtime_context) -> int:
    return _task_info(runtime_context, "get_index_of_this_subtask", "getIndexOfThisSubtask")


def _attempt_number(runtime_context) -> int:
    """0 for the job's first run of this task, one more after each restart (a restore from a checkpoint)."""
    return _task_info(runtime_context, "get_attempt_number", "getAttemptNumber")


class _View:
    """What the operator knows of one online view of a key group (from ``OnlineView.to_dict``) and, after a
    hand-off, of its seed (``featurestore.engines.flink.handoff``: which Kafka records the seed holds)."""

    def __init__(self, spec: dict, n_order: int, seed: Optional[dict] = None):
        from featurestore.kernel.partials import Layout

        self.name = spec["name"]
        self.key_prefix = spec["key_prefix"]
        self.fingerprint = spec["fingerprint"]
        self.flag = spec["flag"]
        self.inputs = list(spec["inputs"])
        self.pick = _picker(self.inputs)  # an event array's input values (a tuple: never changed in place)
        self.keep_base = spec["keep_base"]
        self.window_ms = spec["window_ms"]
        self.expires = spec["expires"]
        lay = spec["layout"]
        self.layout = Layout([tuple(x) for x in lay["inputs"]], [tuple(x) for x in lay["aggs"]], lay["latest"])
        self.n_order = n_order
        # the inputs of a float type: a non-finite value of one arrives as the string JSON_ARRAY writes for it
        self.float_inputs = tuple(j for j, (_, dtype) in enumerate(self.layout.inputs) if dtype in FLOAT_TYPES)
        self.order = tuple(spec.get("order", ()))  # the event array's indexes of the view's order columns
        self.members = ofmt.Members(len(self.inputs), spec.get("order_sources", ()))  # how members are stored
        self.seeded = seed is not None
        seed = seed or {}
        self.seed_ranges = [tuple(r) for r in seed.get("ranges", [])]
        self.seed_next = {int(p): int(o) for p, o in seed.get("next", {}).items()}
        self.seed_cut = seed.get("cut")
        self.seed_horizon = seed.get("horizon")
        self.seed_claim = [tuple(r) for r in seed.get("claim", [])]  # (a seed recorded before: none)

    def in_seed(self, eid: int, ts: int) -> bool:
        """Whether the seed (the offline table version it was read from) holds this Kafka record: below the
        table's next offset of its partition, or with an event time inside a batch range of the table that
        the view does not claim (:meth:`in_claim`: there the seed holds it when it holds its content)."""
        if (eid & OFFSET_MASK) < self.seed_next.get(eid >> PARTITION_SHIFT, 0):
            return True
        return any(lo <= ts < hi for lo, hi in self.seed_ranges) and not self.in_claim(ts)

    def in_claim(self, ts: int) -> bool:
        """Whether ``ts`` lies in a batch range computed under the view's definition: a record there that the
        seed's version lacks (:meth:`OnlineState._held_back`) is added, as the offline committer adds it."""
        return any(lo <= ts < hi for lo, hi in self.seed_claim)

    def event(self, v: list, plain: bool = True, order: Optional[list] = None):
        """``(eid, order, inputs, member)`` of an event array ``[eid, ts, order columns..., flags...,
        inputs...]`` (the order over the values the view stores: ``online_format``; ``order``: its
        :func:`event_order` over :attr:`order`, made once for the views that share it), or None when the
        view's filter drops it, or the view's seed holds it."""
        if not v[self.flag]:
            return None
        if self.seeded and self.in_seed(v[0], v[1]):
            return None
        inputs = self.pick(v)
        if not plain:
            inputs = list(inputs)
            for j in self.float_inputs:
                if isinstance(inputs[j], str):
                    inputs[j] = NON_FINITE[inputs[j]]
        if order is None:
            order = event_order(v, self.order)
        return v[0], order, inputs, self.members.encode(v[0], order, inputs, plain)


def _picker(indexes: list):
    """``pick(v)``: the values of ``v`` at ``indexes``, as a sequence (one C call for two or more)."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    if indexes:
        i = indexes[0]
        return lambda v: (v[i],)
    return lambda v: ()


def event_order(v: list, columns: tuple) -> list:
    """The order ``[ts, [value] or [], ...]`` of an event array over its order ``columns`` (indexes). Never
    changed once made: the views of a key group with the same order columns share one."""
    order = [v[1]]
    for i in columns:  # (a loop: half the CPU of a starred generator)
        x = v[i]
        order.append([] if x is None else [x])
    return order


def parse_batch(text) -> Tuple[list, bool]:
    """The events of one mini-batch (the JVM joined their JSON arrays with commas: UTF-8 bytes; ``str`` in
    the keyed state of a checkpoint taken before the batches were bytes), and whether they are
    plain: False when they were read by ``json``, not orjson (an integer orjson would read as a float without
    raising, beyond 64 bits: ``online_reply.may_hold_wide_integers``; or a text orjson refuses) or a value may
    be a non-finite float, which ``JSON_ARRAY`` writes as a string (``"NaN"``, ``"Infinity"``, ``"-Infinity"``;
    :meth:`_View.event` makes it the float again, and the members go through ``json``:
    :meth:`featurestore.stores.online_format.Members.encode`)."""
    if type(text) is str:
        text = text.encode()
    doc = b"[" + text + b"]"
    if may_hold_wide_integers(text):
        return json.loads(doc), False
    try:
        events = orjson.loads(doc)
    except orjson.JSONDecodeError:
        return json.loads(doc), False
    return events, not any(marker in text for marker in NON_FINITE_TEXTS)


class OnlineState(KeyedProcessFunction):
    """Keyed by ``"<group>" + <join-key JSON>``; each element is one **mini-batch** of the entity's events
    (``(key, events)``: every event of the key that reached the JVM's mini-batch operator, its JSON arrays
    joined with commas), so Python is entered once per entity and batch, not per event. A batch is added
    to keyed state as one entry (``MapState``: the batch's least event id -> its text), folded into the
    entity's kernel states and flushed at once: the entity's changes go to the operator's Redis buffer
    (see the module docstring for why that is exactly once in effect). Progress reports (``dirty`` = 0:
    everything received until then was written) go to Redis on a heartbeat timer. Emits nothing.

    ``redis``: how to connect (``stream.redis_options``; None: writes are counted, not sent, for
    ``bench/stream_online.py --no-redis``); ``progress_key``: the run's progress hash."""

    def __init__(self, groups: List[dict], batch_ms: int, slack_ms: int = 0, seed: Optional[dict] = None,
                 redis: Optional[dict] = None, progress_key: str = "", write_ms: int = 50, write_rows: int = 500,
                 batch_delay_s: float = 0.0, fail_file: str = "", idle_ms: int = 0):
        self.groups = groups
        self.batch_ms = max(1, int(batch_ms))
        self.idle_ms = int(idle_ms)  # OnlineBatches sends everything once no row arrived for this long
        self.batch_delay_s = float(batch_delay_s)  # JobOptions.online_batch_delay_s (tests: a slow operator)
        self.fail_file = fail_file  # JobOptions.online_fail_file (tests: a task failure when that file appears)
        self.slack_ms = int(slack_ms)
        self.seed = seed  # a hand-off's seed: {"path": SQLite file, "views": {view: options}} (handoff.py)
        self.redis = redis
        self.progress_key = progress_key
        self.write_ms = max(1, int(write_ms))
        self.write_rows = max(1, int(write_rows))

    def open(self, runtime_context):
        from pyflink.common import Types
        from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor

        seeds = (self.seed or {}).get("views", {})
        self.views = {g["gid"]: [_View(v, g["n_order"], seeds.get(v["name"])) for v in g["views"]]
                      for g in self.groups}
        # per key group, its views' distinct order columns (an event's order is made once per entry) and,
        # per view, the index of its own
        self.orders = {gid: list(dict.fromkeys(v.order for v in views)) for gid, views in self.views.items()}
        self.order_at = {gid: [self.orders[gid].index(v.order) for v in views] for gid, views in self.views.items()}
        self.seed_db = None
        if self.seed:
            import sqlite3

            self.seed_db = sqlite3.connect(f"file:{self.seed['path']}?mode=ro&immutable=1", uri=True,
                                           check_same_thread=False)
            from featurestore.engines.flink.handoff import seed_has_folded

            self.seed_folded = seed_has_folded(self.seed_db)
        self.batches = runtime_context.get_map_state(
            MapStateDescriptor("batches", Types.LONG(), Types.PICKLED_BYTE_ARRAY()))
        self.folded = runtime_context.get_state(ValueStateDescriptor("folded", Types.PICKLED_BYTE_ARRAY()))
        self.subtask = _subtask_index(runtime_context)
        self.attempt = _attempt_number(runtime_context)
        self.instance = f"{self.subtask}:{os.getpid()}:{id(self):x}"  # distinct across subtasks and restarts
        # key -> (kernel states per view, {batch id: greatest event time}): a cache of keyed state
        self.cache: "OrderedDict[str, tuple]" = OrderedDict()
        self.heartbeat_at = None
        self.stats = {"events": 0, "batches": 0, "writes": 0, "rebuilds": 0, "rewrites": 0, "element_s": 0.0,
                      "flush_s": 0.0}
        self.out = RedisWrites(self.redis, self.progress_key)
        self.write_timers = set()  # (key, time) of the write timers this instance registered
        self.busy = False  # whether this instance has received a batch or a timer (then it reports on a heartbeat)
        self._report_opened()
        gc_pause.hold()
        self.gc_tuned = True
        self.gc_at = time.monotonic() + GC_EVERY_MS / 1000

    def close(self):
        if getattr(self, "gc_tuned", False):  # the interpreter outlives the operator
            self.gc_tuned = False
            gc_pause.release()
        log_stats("online state", getattr(self, "stats", None))
        if getattr(self, "out", None) is not None:
            log_stats("online writes", self.out.stats)
            self.out.close()
        if getattr(self, "seed_db", None) is not None:
            self.seed_db.close()

    # -- events -------------------------------------------------------------------------------------
    def process_element(self, row, ctx):
        if self.batch_delay_s:
            time.sleep(self.batch_delay_s)
        if self.fail_file:
            self._fail_if_asked()
        if not self.busy:
            self._report_busy()
        t0 = time.perf_counter()
        key, text = row[0], row[1]
        events, plain = parse_batch(text)
        cached = self.cache.get(key)
        if cached is None:
            states, index, held = self._load(key)  # rebuilt from keyed state (then rewritten whole)
        else:
            self.cache.move_to_end(key)
            states, index, held = cached
        bid = min(e[0] for e in events)
        self.batches.put(bid, text)
        index[bid] = max(e[1] for e in events)
        folded = False
        gid = _gid(key)
        views, columns = self.views[gid], self.orders[gid]
        targets = list(zip(views, states, self.order_at[gid]))
        for v in events:
            orders = [event_order(v, c) for c in columns]
            for view, state, at in targets:
                e = view.event(v, plain, orders[at])
                if e is not None:
                    if view.seed_claim and view.in_claim(v[1]) and self._held_back(key, view, held, e[3]):
                        continue
                    if state.base is not None and state.cut is not None and v[1] < state.cut:
                        folded = True  # a late event behind the cut changes the folded base
                    state.add(*e)
        self.stats["events"] += len(events)
        self.stats["batches"] += 1
        t1 = time.perf_counter()
        self.stats["element_s"] += t1 - t0
        out = list(self._flush(key, states, index, folded))
        self.stats["writes"] += len(out)
        self.stats["flush_s"] += time.perf_counter() - t1
        timers = ctx.timer_service()
        if out:
            self.out.add(key, out)
            if self.out.pending >= self.write_rows:
                self.out.flush()
            else:  # checkpointed with this batch: the writes reach Redis, or a restore rewrites the entity
                at = (timers.current_processing_time() + self.write_ms) | 1
                if (key, at) not in self.write_timers:
                    self.write_timers.add((key, at))
                    timers.register_processing_time_timer(at)
        if self.heartbeat_at is None:
            self.heartbeat_at = _even(timers.current_processing_time() + HEARTBEAT_MS)
            timers.register_processing_time_timer(self.heartbeat_at)
        return ()

    def _fail_if_asked(self) -> None:
        """Tests: fail the task (Flink restarts the job from its last checkpoint) once ``fail_file`` exists."""
        try:
            os.remove(self.fail_file)
        except FileNotFoundError:
            return
        raise RuntimeError(f"injected task failure ({self.fail_file})")

    def _load(self, key: str) -> tuple:
        """The entity's kernel states and batch index, rebuilt from keyed state (after a restore, or a cache
        eviction); a rebuilt entity is rewritten whole at its next flush."""
        from featurestore.engines.flink.handoff import entity_state

        views = self.views[_gid(key)]
        folded = self.folded.value()
        folded = pickle.loads(folded) if folded else {}
        seeds = self._seed_of(key, views)
        states = []
        for i, view in enumerate(views):
            # keyed state's folded entry, else the seed's: a state built on the seed never cuts before it
            members, seed_folded = seeds.get(view.name, ((), None))
            states.append(entity_state(view.layout, view.keep_base, view.members, view.seed_cut, view.seed_horizon,
                                       folded.get(i) or seed_folded, members))
        index = {}
        held: dict = {}  # (view, member content) -> the seed's rows of it still to match (_held_back)
        for bid, text in self.batches.items():
            events, plain = parse_batch(text)
            index[bid] = max(e[1] for e in events)
            for v in events:
                for view, state in zip(views, states):
                    if state.cut is None or v[1] >= state.cut:
                        e = view.event(v, plain)
                        if e is not None and not (view.seed_claim and view.in_claim(v[1])
                                                  and self._held_back(key, view, held, e[3])):
                            state.add(*e)
        for state in states:
            state.rewrite()
        self.cache[key] = (states, index, held)
        if len(self.cache) > CACHE_KEYS:
            self.cache.popitem(last=False)
        self.stats["rebuilds"] += 1
        return states, index, held

    def _held_back(self, key: str, view: _View, held: dict, member: str) -> bool:
        """Whether a record the view claims (:meth:`_View.in_claim`, at or after the seed's next offset) is the
        seed's: the first ``held`` records of each member content are (the seed's version holds that many
        rows of it in its claimed ranges), the rest are added, as the offline committer adds them
        (``stores/offline_claimed.py``). ``held``: the entity's counts still to match, rebuilt with it."""
        from featurestore.engines.flink.handoff import held as seed_held
        from featurestore.engines.flink.handoff_seed import content_key
        from featurestore.stores.online_redis import encode_entity

        k = (view.name, content_key(member))
        left = held.get(k)
        if left is None:
            left = seed_held(self.seed_db, view.name, encode_entity(json.loads(key[key.index("["):])), k[1])
        held[k] = max(0, left - 1)
        return left > 0

    def _seed_of(self, key: str, views: list) -> dict:
        """The entity's seed per view name: (stored members, ids -1, -2, ...; its folded entry or None), from
        the seed file (trimmed to the view's retention when written: ``handoff.seed_record``)."""
        if self.seed_db is None or not any(v.seeded for v in views):
            return {}
        from featurestore.engines.flink.handoff import read_seed
        from featurestore.stores.online_redis import encode_entity

        return read_seed(self.seed_db, encode_entity(json.loads(key[key.index("["):])), self.seed_folded)

    # -- flushes ------------------------------------------------------------------------------------
    def on_timer(self, timestamp, ctx):
        if not self.busy:  # (a restored instance: its timers may run before any batch)
            self._report_busy()
        if timestamp & 1:  # a write timer
            key = ctx.get_current_key()
            key = key if isinstance(key, str) else key[0]
            if (key, timestamp) in self.write_timers:
                self.write_timers.discard((key, timestamp))
                if key in self.out.keys:
                    self.out.flush()
            else:  # restored: the writes of the batches before it may never have reached Redis
                self._rewrite(key)
            return ()
        now = ctx.timer_service().current_processing_time()
        if timestamp != self.heartbeat_at:  # a heartbeat of an earlier attempt, restored with the state
            if self.heartbeat_at is None:
                # A restored instance that received no batch yet starts its own heartbeat here, and reports only
                # from it: restored timers are all due at once and fire in time order, so a report from this
                # one would precede the rewrites of the restored write timers behind it. Its own is later than
                # every restored timer (those fired at most write_ms after the checkpoint, before the restore).
                self.heartbeat_at = _even(now + HEARTBEAT_MS)
                ctx.timer_service().register_processing_time_timer(self.heartbeat_at)
            return []
        self.heartbeat_at = _even(now + HEARTBEAT_MS)  # keep reporting while idle
        if time.monotonic() >= self.gc_at:
            self._collect()
        ctx.timer_service().register_processing_time_timer(self.heartbeat_at)
        self.out.flush(self._report(now, dirty=0))  # after every write buffered until now
        return ()

    # -- progress reports (read by StreamHandle.wait_online_flushed) ---------------------------------
    def _report(self, at: int, dirty: int, **extra) -> dict:
        """This instance's progress report as of ``at`` (epoch ms), as the progress hash's field."""
        report = {k: round(v, 3) if isinstance(v, float) else v for k, v in self.stats.items()}
        report.update({k: round(v, 3) if isinstance(v, float) else v for k, v in self.out.stats.items()})
        report.update(at=at, dirty=dirty, emitted=self.stats["writes"], subtask=self.subtask, attempt=self.attempt,
                      instance=self.instance,
                      pending_ms=self.batch_ms + BATCH_MARGIN_MS, batch_ms=self.batch_ms, idle_ms=self.idle_ms,
                      **extra)
        return {f"state:{self.instance}": json.dumps(report)}

    def _report_opened(self) -> None:
        """Report once at open, ``idle``: an instance that never receives a batch (more subtasks than keys) has
        no heartbeat timer (timers are keyed), so without this the flush wait never heard from it."""
        if self.redis is None or not self.progress_key:
            return
        try:
            self.out.flush(self._report(int(time.time() * 1000), dirty=0, idle=True))
        except Exception:  # Redis restarting: the wait then waits for this instance's first batch, as before
            import logging

            logging.getLogger("featurestore.stream").warning("online operator %s: opening report failed",
                                                             self.instance, exc_info=True)

    def _report_busy(self) -> None:
        """Before the first batch or timer of this instance: a report that it is no longer ``idle`` (``dirty``:
        its heartbeat reports what it wrote), written before the batch is applied, so before any checkpoint
        barrier behind that batch completes: a flush wait that sees an instance still ``idle`` once its
        checkpoint completed knows no row before the barrier reached it."""
        self.busy = True
        if self.redis is not None and self.progress_key:
            self.out.flush(self._report(int(time.time() * 1000), dirty=1))

    def _collect(self) -> None:
        """A full garbage collection of what was made since the last one (see GC_EVERY_MS), the next one after
        at least 1 / GC_SHARE of its time."""
        t0 = time.monotonic()
        gc.collect()
        gc.freeze()  # what survived is state (or frozen garbage of a cycle made before: not ours)
        took = time.monotonic() - t0
        self.stats["gc"] = self.stats.get("gc", 0) + 1
        self.stats["gc_s"] = self.stats.get("gc_s", 0.0) + took
        self.gc_at = time.monotonic() + max(GC_EVERY_MS / 1000, took / GC_SHARE)

    def _rewrite(self, key: str) -> None:
        """Write the entity whole from its state (a write timer restored from a checkpoint)."""
        cached = self.cache.get(key)
        states, index, _held = cached if cached is not None else self._load(key)
        for state in states:
            state.rewrite()
        self.out.add(key, list(self._flush(key, states, index, False)))
        self.out.flush()
        self.stats["rewrites"] += 1

    def _flush(self, key: str, states: list, index: dict, folded_changed: bool):
        from featurestore.kernel.entity import trim_to_retention
        from featurestore.stores.online_redis import SLACK_MS, write_args

        views = self.views[_gid(key)]
        entity = json.loads(key[key.index("["):])
        now = int(time.time() * 1000)
        for i, (view, state) in enumerate(zip(views, states)):
            if trim_to_retention(state, view.window_ms, self.slack_ms):
                folded_changed = True
            changes = state.drain()
            if changes.empty:
                continue
            at = None
            if view.expires and changes.last_ts is not None:
                at = max(now, changes.last_ts) + view.window_ms + SLACK_MS
            yield entity_base_from_prefix(view.key_prefix, entity), write_args(changes, view.fingerprint, at)
        # A batch leaves keyed state once every view's cut is past its last event (a view that holds raw
        # events and never cut keeps everything; one that holds none needs none); events behind a cut live
        # on in the folded base (or are dropped with it).
        cuts = [s.cut for s in states if s.cut is not None]
        if cuts and not any(s.cut is None and s.events for s in states):
            low = min(cuts)
            for bid in [b for b, last in index.items() if last < low]:
                self.batches.remove(bid)
                del index[bid]
        if folded_changed:
            self.folded.update(pickle.dumps({
                i: {"cut": s.cut, "h": s.horizon, "base": v.layout.encode(s.base) if s.base is not None else None}
                for i, (v, s) in enumerate(zip(views, states)) if s.cut is not None}))


def entity_base_from_prefix(key_prefix: str, entity: list) -> str:
    """``fs:{project}:{view}:{<entity>}`` from the view's key prefix (see online_redis.entity_base)."""
    from featurestore.stores.online_redis import encode_entity

    return key_prefix + "{" + encode_entity(entity) + "}"


def _even(ms: int) -> int:
    return ms - (ms & 1)


def _gid(key: str) -> int:
    return int(key[: key.index("[")])


class RedisWrites:
    """The online path's connection to Redis and its buffer of writes: :meth:`flush` runs the buffered write
    scripts (and progress reports, after them) as one pipeline and returns once Redis answered. Single
    Redis or Redis Cluster (redis-py's cluster pipeline splits by master); a script Redis lost (a restart,
    a flush) is loaded again. ``redis=None``: writes are only counted."""

    def __init__(self, redis: Optional[dict], progress_key: str):
        from featurestore.stores.online_redis import RedisOnlineStore

        self.progress_key = progress_key
        self.store = None
        if redis is not None:
            password = redis.get("password") or os.environ.get("FEATURESTORE_REDIS_PASSWORD") or None
            self.store = RedisOnlineStore("", redis["url"], password, bool(redis.get("tls")))
        self.buffer: list = []  # (entity base, write-script args)
        self.keys: set = set()  # the operator keys whose writes are in the buffer
        self.stats = {"written": 0, "round_trips": 0, "write_s": 0.0}  # (no byte count: 7% of the operator's CPU)

    @property
    def pending(self) -> int:
        return len(self.buffer)

    def add(self, key: str, writes: list) -> None:
        if writes:
            self.buffer.extend(writes)
            self.keys.add(key)

    def close(self) -> None:
        if self.store is not None and self.store._client is not None:
            self.store._client.close()

    def flush(self, reports: Optional[dict] = None) -> None:
        """Write the buffer, then ``reports`` (progress hash fields)."""
        writes = self.buffer
        if not writes and not reports:
            return
        import redis

        from featurestore.stores.online_redis import entity_keys

        t0 = time.perf_counter()
        if self.store is not None and (self.store.cluster or not self._send_packed(writes, reports)):
            for attempt in (0, 1):
                sha = self.store.write_sha()
                pipe = self.store.client.pipeline(transaction=False)
                for base, args in writes:
                    # (not pipe.evalsha: redis-py's cluster pipeline refuses it, and the job may write a cluster)
                    pipe.execute_command("EVALSHA", sha, 3, *entity_keys(base), *args)
                if reports:
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
        self.buffer = []
        self.keys = set()
        self.stats["written"] += len(writes)
        self.stats["round_trips"] += 1
        self.stats["write_s"] += time.perf_counter() - t0

    def _send_packed(self, writes: list, reports: Optional[dict]) -> bool:
        """:meth:`flush` on a single Redis, the commands packed here (RESP bytes, one format per argument)
        and sent on one connection: redis-py's pipeline packs each argument through several calls, which
        was most of the writes' CPU. False when the caller must write through the pipeline instead (the
        script is not loaded, or the connection failed: every write is idempotent, so sending one again
        is harmless)."""
        import redis

        from featurestore.stores.online_redis import _bulk, _pack, entity_keys

        try:
            head = _bulk(b"EVALSHA") + _bulk(self.store.write_sha().encode()) + _bulk(b"3")
            parts = []
            for base, args in writes:
                keys = entity_keys(base)
                parts.append(b"*%d\r\n" % (6 + len(args)) + head + _pack(keys) + _pack(args))
            if reports:
                fields = [x for kv in reports.items() for x in kv]
                parts.append(b"*%d\r\n" % (2 + len(fields)) + _pack(["HSET", self.progress_key, *fields]))
                parts.append(b"*3\r\n" + _pack(["EXPIRE", self.progress_key, 86_400]))
            out = self.store._exchange(b"".join(parts), len(parts))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
            return False
        errors = [r for r in out if isinstance(r, redis.exceptions.ResponseError)]
        if errors:
            if isinstance(errors[0], redis.exceptions.NoScriptError):
                self.store._write = None
                return False
            raise errors[0]
        return True


__all__ = ["OnlineState", "RedisWrites", "progress_key", "log_stats", "PARTITION_SHIFT"]
