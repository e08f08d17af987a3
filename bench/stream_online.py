"""The stream job's online path outside Flink: the same Python operators fed the same kind of batches.

``python -m bench.stream_online [--events 300000] [--hot] [--rate 9000] [--batch-ms 5000] [--profile]``

A profiling aid for :mod:`featurestore.engines.flink.online` (not a contender of ``bench/stream.py``):
datagen transactions (as ``bench/stream.py`` produces them; ``--hot``: its hot-key topic) become the
online rows the JVM makes (``[eid, ts, order columns..., flags..., inputs...]`` per key group, see
``tables.OnlineGroup``), cut into mini-batches the way a catch-up run at ``--rate`` records/s with
``--batch-ms`` windows cuts them (every entity's events within one window of arrival form one batch),
and fed to :class:`OnlineState` with in-memory keyed state; it writes to the project's Redis as in the
job (one pipeline per 500 writes; ``--no-redis``: counted, not sent). Prints the seconds spent in each part and,
with ``--profile``, a cProfile listing; ``--dump FILE``: every write the operator made (entity base, script
arguments), pickled in order, under a fixed clock, so two trees' writes can be compared byte for byte
(``cmp``). Flink's own costs (keyed state serialisation, the crossings) are
not in these numbers: compare parts, and a change before/after, not with the job's wall time.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from collections import defaultdict
from typing import Dict, List


class _MapState:
    def __init__(self, key):
        self.key, self.data = key, {}

    def put(self, k, v):
        self.data[k] = v

    def items(self):
        return list(self.data.items())

    def remove(self, k):
        self.data.pop(k, None)


class _Value:
    def __init__(self):
        self.v = None

    def value(self):
        return self.v

    def update(self, v):
        self.v = v


class _List:
    def __init__(self):
        self.items = []

    def add(self, x):
        self.items.append(x)

    def get(self):
        return self.items

    def clear(self):
        self.items = []


class _Keyed:
    """Keyed state of one operator: one object per (state name, current key)."""

    def __init__(self):
        self.key = None
        self.states: Dict[tuple, object] = {}

    def _get(self, name, make):
        k = (name, self.key)
        if k not in self.states:
            self.states[k] = make()
        return self.states[k]


class _MapProxy:
    def __init__(self, keyed, name):
        self.keyed, self.name = keyed, name

    def __getattr__(self, attr):
        return getattr(self.keyed._get(self.name, lambda: _MapState(self.keyed.key)), attr)


class _ValueProxy:
    def __init__(self, keyed, name, make=_Value):
        self.keyed, self.name, self.make = keyed, name, make

    def __getattr__(self, attr):
        return getattr(self.keyed._get(self.name, self.make), attr)


class _Context:
    def __init__(self, keyed):
        self.keyed = keyed

    def get_map_state(self, desc):
        return _MapProxy(self.keyed, desc.get_name())

    def get_state(self, desc):
        return _ValueProxy(self.keyed, desc.get_name())

    def get_list_state(self, desc):
        return _ValueProxy(self.keyed, desc.get_name(), _List)

    def get_index_of_this_subtask(self):
        return 0

    def get_attempt_number(self):  # the operator names its task's attempt in its progress reports
        return 0


class _Timers:
    def current_processing_time(self):
        return int(time.time() * 1000)

    def register_processing_time_timer(self, t):
        pass


class _Ctx:
    def timer_service(self):
        return _Timers()


def online_rows(n: int, hot: bool) -> List[tuple]:
    """``(group key, event array JSON)`` per event and key group, in arrival order (datagen's Kafka order)."""
    from featurestore import datagen
    from bench.stream import hot_key

    df = datagen.generate_transactions(n)
    if hot:
        df = hot_key(df)
    df = datagen.out_of_order(df)
    out = []
    cols = ["event_id", "user_id", "merchant_id", "amount", "currency", "country", "channel", "card_present"]
    recs = df[cols].to_dict("records")
    ts = (df["ts"].astype("int64") // 1_000_000).tolist()
    for off, (r, t) in enumerate(zip(recs, ts)):
        r = {k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()}
        order = [off, t] + [r[c] for c in cols]
        amount = r["amount"]
        usd = amount * 1.08 if r["currency"] == "EUR" else amount
        if r["user_id"] is not None:
            v = order + [bool(amount > 0), True, usd, r["merchant_id"], r["country"], r["channel"], amount]
            out.append(("0" + json.dumps([r["user_id"]], separators=(",", ":")), json.dumps(v, separators=(",", ":"))))
        if r["merchant_id"] is not None:
            v = order + [True, amount, r["user_id"], r["country"]]
            out.append(("1" + json.dumps([r["merchant_id"]], separators=(",", ":")), json.dumps(v, separators=(",", ":"))))
    return out


def batches(rows: List[tuple], rate: float, batch_ms: int) -> List[tuple]:
    """The mini-batches a run reading ``rate`` records/s makes with ``batch_ms`` windows."""
    per_window = max(1, int(rate * batch_ms / 1000))
    out = []
    for i in range(0, len(rows), per_window):  # rows are ~2 per record; close enough
        groups: Dict[str, list] = defaultdict(list)
        for k, v in rows[i:i + per_window]:
            groups[k].append(v)
        out += [(k, ",".join(vs).encode()) for k, vs in groups.items()]  # UTF-8 bytes, as OnlineBatches emits them
    return out


class _FixedClock:
    """``time`` for the operator's module with ``time()`` fixed (the expiry of its writes follows the clock)."""

    def __init__(self, real, at: float):
        self.real, self.at = real, at

    def time(self):
        return self.at

    def __getattr__(self, name):
        return getattr(self.real, name)


def run(events: int, hot: bool, rate: float, batch_ms: int, redis: bool, profile: bool,
        dump: str = "") -> dict:
    from featurestore.engines.flink import stream as streaming
    from featurestore.config import load_config
    from featurestore.engines.flink.online import OnlineState
    from featurestore.store import FeatureStore
    from bench.common import ROOT

    t = time.perf_counter()
    store = FeatureStore(ROOT)
    plan = streaming.plan(store)
    rows = online_rows(events, hot)
    bs = batches(rows, rate, batch_ms)
    prep = time.perf_counter() - t
    keyed = _Keyed()
    cfg = load_config(ROOT)
    op = OnlineState([g.to_dict() for g in plan.online], batch_ms, redis={"url": cfg.redis_url} if redis else None,
                     progress_key="fs:bench_stream_online:_progress")
    op.open(_Context(keyed))
    ctx = _Ctx()
    written: list = []
    if dump:  # every write, in order, under a fixed clock
        from featurestore.engines.flink import online as online_module

        online_module.time = _FixedClock(time, 1_900_000_000.0)
        add = op.out.add

        def recording_add(key, writes):
            written.append((key, writes))
            add(key, writes)

        op.out.add = recording_add
    prof = cProfile.Profile(time.process_time) if profile else None  # CPU time: the machine is shared
    t0 = time.perf_counter()
    c0 = time.process_time()
    if prof:
        prof.enable()
    for key, text in bs:
        keyed.key = key
        op.process_element((key, text), ctx)
    op.out.flush()
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    out = {"events": events, "hot": hot, "rows": len(rows), "batches": len(bs), "rate": rate, "batch_ms": batch_ms,
           "prep_s": round(prep, 1), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
           "cpu_us_per_row": round(cpu / len(rows) * 1e6),
           "state": {k: round(v, 2) if isinstance(v, float) else v for k, v in op.stats.items()},
           "writes": {k: round(v, 2) if isinstance(v, float) else v for k, v in op.out.stats.items()}}
    if redis:
        client = op.out.store.client
        keys = list(client.scan_iter(match="fs:payments:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
        client.delete("fs:bench_stream_online:_progress")
    if dump:
        import pickle

        from featurestore.engines.flink import online as online_module

        online_module.time = time
        with open(dump, "wb") as f:
            pickle.dump(written, f, protocol=4)
    op.close()  # (gives back the garbage collector's settings: see online.GC_EVERY_MS)
    if prof:
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats(30)
        st.sort_stats("cumulative").print_stats(30)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--hot", action="store_true")
    ap.add_argument("--rate", type=float, default=9_000.0, help="records/s the simulated catch-up reads")
    ap.add_argument("--batch-ms", type=int, default=5_000)
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--dump", default="", help="pickle every write here (fixed clock), to compare two trees")
    a = ap.parse_args()
    print(json.dumps(run(a.events, a.hot, a.rate, a.batch_ms, not a.no_redis, a.profile, a.dump)))
