"""Would packing a hot entity's raw events (one ZSET member per minute) save Redis memory, and at what
lookup cost? A measurement made before building it (docs/online-store.md, "Cost").

The raw events of the hottest merchant and user of ``bench/online_many``'s materialized data (format 4
members, as materialize wrote them) are resampled to N events uniform in 7 days (ids and times
rewritten, the rest of each member kept) and stored two ways under scratch keys of the same Redis:

* **per event** (format 4): score = event time, member = the event's flat JSON array;
* **per minute**: score = the minute's start, member = ``[e1,e2,...]``, the minute's events in time order
  (what a format 5 would store for entities above a threshold).

Reported: ``MEMORY USAGE key SAMPLES 0`` of each, and the work of reading a lookup's raw pieces of a
1 h and a 1 d window (the head and tail fragments, under a minute each, and the 1-minute tiles a
hot entity does not store, fewer than 16 events each: ``kernel.entity.TILE_MIN_EVENTS``): Redis' CPU
(``INFO commandstats``) and the client's CPU to parse them (``orjson``) and, packed, to drop the events
of a fragment's minute outside its range.

Usage: ``python -m bench.online_packing --project bench_many_<commit>`` (after ``bench.online_many``,
or any project of the example repo materialized from ``bench/online_hot`` data).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from bisect import bisect_left
from typing import Dict, List

import orjson

DAY_MS, MIN_MS = 86_400_000, 60_000


def _sample(client, project: str, view: str) -> List[list]:
    keys = list(client.scan_iter(match=f"fs:{project}:{view}:*:r".encode(), count=1000))
    if not keys:
        raise SystemExit(f"no raw events of {view} under project {project}: materialize it first")
    key = max(keys, key=client.zcard)
    return [orjson.loads(m) for m in client.zrange(key, 0, -1)]


def _resample(members: List[list], n: int, end_ms: int, rng: random.Random) -> List[list]:
    times = sorted(rng.randrange(end_ms - 7 * DAY_MS, end_ms) for _ in range(n))
    return [[-(k + 1), ts, *rng.choice(members)[2:]] for k, ts in enumerate(times)]


def _store(client, key_event: str, key_minute: str, events: List[list]) -> None:
    client.delete(key_event, key_minute)
    pipe = client.pipeline(transaction=False)
    for i in range(0, len(events), 5_000):
        pipe.zadd(key_event, {orjson.dumps(e): e[1] for e in events[i:i + 5_000]})
    minutes: Dict[int, List[bytes]] = {}
    for e in events:
        minutes.setdefault(e[1] // MIN_MS, []).append(orjson.dumps(e))
    items = {b"[" + b",".join(ms) + b"]": m * MIN_MS for m, ms in minutes.items()}
    packed = list(items.items())
    for i in range(0, len(packed), 5_000):
        pipe.zadd(key_minute, dict(packed[i:i + 5_000]))
    pipe.execute()


def _pieces(q: int, window: int, minute_tiles: bool) -> List[tuple]:
    """Inclusive ms ranges a lookup reads raw for one window: the head and tail fragments and, for a hot
    entity, the 1-minute tiles of the window's ends that hold too few events to be stored (two a side)."""
    lo = q - window
    a, b = -(-lo // MIN_MS) * MIN_MS, q // MIN_MS * MIN_MS
    out = [(lo, a - 1), (b, q - 1)]
    if minute_tiles:
        out += [(a, a + MIN_MS - 1), (a + MIN_MS, a + 2 * MIN_MS - 1), (b - MIN_MS, b - 1), (b - 2 * MIN_MS, b - MIN_MS - 1)]
    return out


def _usec(client) -> int:
    return sum(v["usec"] for k, v in client.info("commandstats").items() if k in ("cmdstat_zrangebyscore",))


def _lookups(client, key: str, packed: bool, qs: List[int], windows: List[int]) -> Dict[str, float]:
    """Redis' and the client's CPU per lookup reading every window's raw pieces of ``key``."""
    usec0, cpu = _usec(client), 0.0
    n_events = 0
    for q in qs:
        pipe = client.pipeline(transaction=False)
        ranges = [r for w in windows for r in _pieces(q, w, True)]
        for lo, hi in ranges:
            if packed:  # the minutes that hold the range: its own (ranges never cross a minute here)
                pipe.zrangebyscore(key, lo // MIN_MS * MIN_MS, hi // MIN_MS * MIN_MS)
            else:
                pipe.zrangebyscore(key, lo, hi)
        replies = pipe.execute()
        c0 = time.process_time()
        for (lo, hi), members in zip(ranges, replies):
            if not members:
                continue
            if packed:
                evs = orjson.loads(b"[" + b",".join(m[1:-1] for m in members) + b"]")
                times = [e[1] for e in evs]
                evs = evs[bisect_left(times, lo):bisect_left(times, hi + 1)]
            else:
                evs = orjson.loads(b"[" + b",".join(members) + b"]")
            n_events += len(evs)
        cpu += time.process_time() - c0
    return {"redis_us": (_usec(client) - usec0) / len(qs), "client_us": 1e6 * cpu / len(qs),
            "events": n_events / len(qs)}


def main() -> None:
    import redis

    ap = argparse.ArgumentParser()
    ap.add_argument("--project", required=True)
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--lookups", type=int, default=2000)
    args = ap.parse_args()
    client = redis.Redis.from_url(os.environ.get("FEATURESTORE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    rng = random.Random(7)
    end = 1_793_491_200_000
    load0 = os.getloadavg()
    print(f"`python -m bench.online_packing --project {args.project}`; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, "
          f"load {[round(x, 1) for x in load0]}, Redis {client.info('server')['redis_version']}\n")
    print("| view | events in 7 d | members per event / per minute | memory per event | per minute | "
          "lookup (1 h + 1 d raw pieces): Redis CPU per event / per minute | client CPU per event / per minute |")
    print("|---|---|---|---|---|---|---|")
    for view in ("merchant_activity", "user_spend"):
        sample = _sample(client, args.project, view)
        for n in (int(x) for x in args.sizes.split(",")):
            events = _resample(sample, n, end, rng)
            ke, km = f"fs:_packing_probe:{view}:e", f"fs:_packing_probe:{view}:m"
            _store(client, ke, km, events)
            mem_e = client.memory_usage(ke, samples=0)
            mem_m = client.memory_usage(km, samples=0)
            qs = [end - rng.randrange(0, 3_600_000) for _ in range(args.lookups)]
            a = _lookups(client, ke, False, qs, [3_600_000, DAY_MS])
            b = _lookups(client, km, True, qs, [3_600_000, DAY_MS])
            print(f"| `{view}` | {n:,} | {client.zcard(ke):,} / {client.zcard(km):,} | {mem_e / 1e6:.2f} MB | "
                  f"{mem_m / 1e6:.2f} MB ({mem_e / mem_m:.2f}x less) | {a['redis_us']:.0f} / {b['redis_us']:.0f} us | "
                  f"{a['client_us']:.0f} / {b['client_us']:.0f} us ({a['events']:.0f} events) |")
            client.delete(ke, km)
    print(f"\nload at end {[round(x, 1) for x in os.getloadavg()]}")


if __name__ == "__main__":
    main()
