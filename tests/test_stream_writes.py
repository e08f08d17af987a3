"""The stream's online writes survive the loss of the state operator's buffer.

The state operator (``featurestore.engines.flink.online.OnlineState``) buffers its Redis writes outside
Flink state; an entity batch that leaves writes in the buffer registers a write timer for its entity, and
Flink checkpoints timers with the keyed state. Here the operator runs outside Flink with in-memory keyed
state and timers (the harness of ``bench/stream_online.py``): a run is "checkpointed" (keyed state and
pending timers copied) while writes sit in its buffer, then "killed" (the buffer is dropped, as a crash
drops it), and a new instance restored from the copy fires the restored timers. Redis must then hold what
an uninterrupted run writes, value for value. That Flink really checkpoints and restores the timers is
tested end to end by tests/test_stream.py (kill -9 mid-stream equals an uninterrupted run)."""

from __future__ import annotations

import copy
import shutil
import uuid

import pytest

from bench.stream_online import _Context, _Keyed, batches, online_rows
from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink.online import OnlineState
from featurestore.store import FeatureStore
from tests.conftest import REPO_DIR

pytestmark = [pytest.mark.redis]


class _Timers:
    def __init__(self, registered: list):
        self.registered = registered
        self.key = None

    def current_processing_time(self):
        return 1_796_000_000_000

    def register_processing_time_timer(self, t):
        self.registered.append((self.key, t))


class _Ctx:
    def __init__(self, keyed: _Keyed, registered: list):
        self.keyed = keyed
        self.timers = _Timers(registered)

    def timer_service(self):
        self.timers.key = self.keyed.key
        return self.timers

    def get_current_key(self):
        return self.keyed.key


def _dump(client, project: str) -> dict:
    """Every online value of the project (not TTLs: they follow the wall clock)."""
    out = {}
    for key in client.scan_iter(match=f"fs:{project}:*", count=1000):
        if b":_stream:" in key:
            continue
        kind = client.type(key)
        if kind == b"string":
            out[key] = client.get(key)
        elif kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        else:
            out[key] = client.lrange(key, 0, -1)
    return out


def _drop(client, project: str) -> None:
    keys = list(client.scan_iter(match=f"fs:{project}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


def _example_store(tmp_path, prefix: str):
    """The example repo's definitions under a project of its own: (store, project, the stream's online groups)."""
    project = f"{prefix}{uuid.uuid4().hex[:8]}"
    root = tmp_path / "repo"
    shutil.copytree(REPO_DIR / "definitions", root / "definitions")
    (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    store = FeatureStore(root)
    return store, project, [g.to_dict() for g in streaming.plan(store).online]


def _operator(store, groups, keyed, project):
    op = OnlineState(groups, 5_000, redis=streaming.redis_options(store.config),
                     progress_key=f"fs:{project}:_stream:_progress:test", write_ms=50, write_rows=10**9)
    op.open(_Context(keyed))
    return op


def test_a_restored_write_timer_rewrites_what_the_lost_buffer_held(tmp_path, redis_client):
    store, project, groups = _example_store(tmp_path, "t_writes_")
    work = batches(online_rows(1_500, hot=True), 500, 5_000)  # hot key: one user has 30% of the events
    half = len(work) // 2
    try:
        # uninterrupted
        keyed, timers = _Keyed(), []
        op, ctx = _operator(store, groups, keyed, project), _Ctx(keyed, timers)
        for key, text in work:
            keyed.key = key
            op.process_element((key, text), ctx)
        op.out.flush()
        op.close()  # (each operator closes: the last one gives the interpreter its GC settings back)
        expected = _dump(redis_client, project)
        assert len(expected) > 100
        _drop(redis_client, project)

        # the first half written, the second half left in the buffer; checkpoint; crash
        keyed, timers = _Keyed(), []
        op, ctx = _operator(store, groups, keyed, project), _Ctx(keyed, timers)
        for i, (key, text) in enumerate(work):
            if i == half:  # the first half's timers fire: their writes reach Redis
                for k, t in sorted(set(timers)):
                    keyed.key = k
                    op.on_timer(t, ctx)
                assert op.out.pending == 0
                timers.clear()
            keyed.key = key
            op.process_element((key, text), ctx)
        snapshot_state, snapshot_timers = copy.deepcopy(keyed.states), sorted(set(timers))
        assert op.out.pending > 0 and snapshot_timers  # writes only in the buffer, their timers pending
        op.out.buffer, op.out.keys = [], set()  # the crash: the buffer is gone
        op.close()
        assert _dump(redis_client, project) != expected

        # restore: a new instance, the checkpoint's keyed state; the restored timers fire
        keyed = _Keyed()
        keyed.states = snapshot_state
        restored = _operator(store, groups, keyed, project)
        ctx = _Ctx(keyed, [])
        for key, t in snapshot_timers:
            assert t & 1  # a write timer (heartbeats are even)
            keyed.key = key
            restored.on_timer(t, ctx)
        assert restored.stats["rewrites"] == len(snapshot_timers)
        assert _dump(redis_client, project) == expected
        restored.close()
    finally:
        _drop(redis_client, project)


def test_larger_catch_up_batches_write_the_same_online_values(tmp_path, redis_client):
    """A bounded run with a large backlog cuts its online rows into 15 s mini-batches instead of 5 s
    (``stream.bounded_flush_ms``): fewer, larger batches per entity, so fewer drains and writes. Redis must
    hold the same values whatever the batches, byte for byte (hot key, late and out-of-order events, the
    unbounded view's base), or the window size would change what a model is served."""
    assert streaming.bounded_flush_ms(streaming.LARGE_BACKLOG_RECORDS) == streaming.LARGE_BACKLOG_FLUSH_MS
    assert streaming.bounded_flush_ms(streaming.LARGE_BACKLOG_RECORDS - 1) == streaming.DEFAULT_BOUNDED_FLUSH_MS
    assert streaming.LARGE_BACKLOG_FLUSH_MS > streaming.DEFAULT_BOUNDED_FLUSH_MS
    store, project, groups = _example_store(tmp_path, "t_batches_")
    rows = online_rows(3_000, hot=True)
    images, counts = [], []
    try:
        for window_ms in (streaming.DEFAULT_BOUNDED_FLUSH_MS, streaming.LARGE_BACKLOG_FLUSH_MS, 200):
            work = batches(rows, 100, window_ms)  # 100 records/s: 500, 1,500 and 20 rows per window
            keyed, timers = _Keyed(), []
            op, ctx = _operator(store, groups, keyed, project), _Ctx(keyed, timers)
            for key, text in work:
                keyed.key = key
                op.process_element((key, text), ctx)
            op.out.flush()
            op.close()
            images.append(_dump(redis_client, project))
            counts.append(op.stats["batches"])
            _drop(redis_client, project)
        assert counts[1] < counts[0] < counts[2]  # the batches really differ
        assert len(images[0]) > 100
        assert images[1] == images[0]
        assert images[2] == images[0]
    finally:
        _drop(redis_client, project)
