"""The youngest generation's GC threshold during lookups: client CPU of 100-entity lookups with the
lookup pause's ``gc_pause.LOOKUP_YOUNG`` against CPython's 700, in one process, alternated.

Blocks of 20 lookups of the example's ``fraud_model_v1`` (100 random background (user, merchant) pairs
each, request times in the last hour; ``bench/online_many.py``'s data under a project of its own),
``LOOKUP_YOUNG`` set to 700 (the pause then leaves the young threshold alone) or to its value, block
by block; the client CPU per lookup (``time.process_time``), median and best block of each.

Usage: ``python -m bench.online_gc_young [--blocks 20]`` (Redis: ``FEATURESTORE_REDIS_URL``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

from bench.common import DATA_ROOT

PROJECT = "bench_gc_young"


def main() -> None:
    import numpy as np

    from bench import online_hot as oh
    from featurestore.sdk import gc_pause
    from featurestore.stores import online_redis as orr

    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=20)
    args = ap.parse_args()
    work = DATA_ROOT / "online-many"
    oh.generate(work / "data", (100, 1_000))
    fs = oh.open_store(oh.make_repo(work, work / "data"), PROJECT)
    if not orr.for_store(fs).client.hlen(orr.views_key(PROJECT)):
        fs.materialize(end=oh.MATERIALIZE_END_MS)
    rng = np.random.default_rng(oh.SEED + 4)
    n = 20 * args.blocks + 20
    qs = (oh.MATERIALIZE_END_MS + rng.integers(0, oh.HOUR_MS, n)).tolist()
    users, merchants = [f"u{i:04d}" for i in range(5000)], [f"m{i:04d}" for i in range(500)]
    batches = [[{"user_id": users[u], "merchant_id": merchants[m]}
                for u, m in zip(rng.integers(0, 5000, 100), rng.integers(0, 500, 100))] for _ in qs]
    for i in range(20):
        fs.get_online_features(batches[i], feature_service="fraud_model_v1", request_time=qs[i])
    gc.set_threshold(700, 10, 10)
    settings = (gc_pause.LOOKUP_YOUNG, 700)
    cpu = {s: [] for s in settings}
    load0, t0 = os.getloadavg(), time.time()
    for b in range(args.blocks):
        gc_pause.LOOKUP_YOUNG = settings[b % 2]
        c0 = time.process_time()
        for i in range(20 + 20 * b, 40 + 20 * b):
            fs.get_online_features(batches[i], feature_service="fraud_model_v1", request_time=qs[i])
        cpu[settings[b % 2]].append(1e3 * (time.process_time() - c0) / 20)
    gc_pause.LOOKUP_YOUNG = settings[0]
    print(f"Command: `python -m bench.online_gc_young --blocks {args.blocks}`; "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0))}, load average at start "
          f"{[round(x, 2) for x in load0]}, at end {[round(x, 2) for x in os.getloadavg()]}.\n")
    print("| young threshold during a lookup | blocks | client CPU per lookup, median block | best block |")
    print("|---|---|---|---|")
    for s in settings:
        print(f"| {s} | {len(cpu[s])} | {statistics.median(cpu[s]):.2f} ms | {min(cpu[s]):.2f} ms |")


if __name__ == "__main__":
    main()
