"""Where a 1-entity lookup's wall time goes beyond its CPU: round trips, Redis's own time, the wait.

One process, the data of ``bench/online_many.py`` (materialized once under its own project), the example's
``fraud_model_v1`` (logged: one read round trip plus the log's ``XADD``) and the same 14 features by
list (not logged: the read alone), for 1 entity at request times in the last hour. Per lookup it reports
wall and client CPU percentiles, the wall of the read exchange (send to last reply) and of the log's
``XADD``, and from Redis's ``INFO commandstats`` the commands it ran and their server time (``redis_us``:
the read scripts' and the ``XADD``'s; the commands a script calls are listed too, and are inside its time). Run the
process under ``strace -f -c`` to count system calls; ``--url`` (e.g. ``unix:///path/redis.sock``)
compares a second way to reach the same Redis, alternated with the default in the same run.

Usage: ``python -m bench.online_wall [--lookups 2000] [--rounds 3] [--url unix:///...]``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from bench.common import DATA_ROOT, percentile

PROJECT = "bench_wall"


def _commandstats(client) -> dict:
    return {k: (v["calls"], v["usec"]) for k, v in client.info("commandstats").items()}


def measure(fs, features, service, batches, qs, client) -> dict:
    """Wall/CPU per lookup, with the read exchange's and the log's wall, and Redis's command time."""
    from featurestore import serving_log

    online = fs.online_store()
    phase = {"read": [], "xadd": []}
    exchange, write = online._exchange, serving_log.write

    def timed(fn, key):
        def call(*a):
            t = time.perf_counter()
            try:
                return fn(*a)
            finally:
                phase[key].append(time.perf_counter() - t)
        return call

    online._exchange, serving_log.write = timed(exchange, "read"), timed(write, "xadd")
    try:
        for i in range(20):
            fs.get_online_features(batches[i], features=features, feature_service=service, request_time=qs[i])
        phase = {"read": [], "xadd": []}
        s0 = _commandstats(client)
        wall, cpu = [], []
        for i in range(20, len(qs)):
            w, c = time.perf_counter(), time.process_time()
            fs.get_online_features(batches[i], features=features, feature_service=service, request_time=qs[i])
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        s1 = _commandstats(client)
    finally:
        online._exchange, serving_log.write = exchange, write
    n = len(wall)
    cmds = {k.replace("cmdstat_", ""): ((c - s0.get(k, (0, 0))[0]) / n, (u - s0.get(k, (0, 0))[1]) / n)
            for k, (c, u) in s1.items() if c != s0.get(k, (0, 0))[0]}
    cmds.pop("info", None)
    ms = lambda xs, p: 1e3 * percentile(xs, p) if xs else 0.0  # noqa: E731
    return {"wall_p50": ms(wall, 50), "wall_p99": ms(wall, 99), "cpu_p50": ms(cpu, 50), "cpu_p99": ms(cpu, 99),
            "read_p50": ms(phase["read"], 50), "read_p99": ms(phase["read"], 99),
            "xadd_p50": ms(phase["xadd"], 50), "xadd_p99": ms(phase["xadd"], 99),
            # the scripts' time holds their inner commands' (counted again under their own names): not summed
            "redis_us": sum(u for k, (_, u) in cmds.items() if k in ("evalsha", "xadd")),
            "commands": {k: [round(c, 2), round(u, 1)] for k, (c, u) in sorted(cmds.items())}}


def main() -> None:
    import numpy as np

    from bench import online_hot as oh

    ap = argparse.ArgumentParser()
    ap.add_argument("--lookups", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--entities", type=int, default=1)
    ap.add_argument("--url", default=None, help="a second URL of the same Redis, alternated with the default")
    args = ap.parse_args()
    work = DATA_ROOT / "online-wall"
    oh.generate(DATA_ROOT / "online-many" / "data", (100, 1_000))
    repo = oh.make_repo(work, DATA_ROOT / "online-many" / "data")
    stores = {"tcp": oh.open_store(repo, PROJECT)}
    if args.url:
        os.environ["FEATURESTORE_REDIS_URL"] = args.url
        stores["url"] = oh.open_store(repo, PROJECT)
    fs = stores["tcp"]
    client = fs.online_store().client
    if not client.hget(f"fs:{PROJECT}:_views", "user_spend"):
        fs.materialize(end=oh.MATERIALIZE_END_MS)
    rng = np.random.default_rng(oh.SEED + 1)
    qs = (oh.MATERIALIZE_END_MS + rng.integers(0, oh.HOUR_MS, args.lookups + 20)).tolist()
    batches = [[{"user_id": f"u{u:04d}", "merchant_id": f"m{m:04d}"}
                for u, m in zip(rng.integers(0, 5000, args.entities), rng.integers(0, 500, args.entities))]
               for _ in qs]
    from featurestore.sdk.refs import resolve_features

    feats = [f"{v}:{f}" for v, names in resolve_features(fs.repo, None, "fraud_model_v1").items() for f in names]
    load0 = os.getloadavg()
    for r in range(args.rounds):
        for name, store in stores.items():
            for mode, kw in (("logged", dict(features=None, service="fraud_model_v1")),
                             ("unlogged", dict(features=feats, service=None))):
                res = measure(store, kw["features"], kw["service"], batches, qs, client)
                print(json.dumps(dict(round=r + 1, conn=name, mode=mode, **res)), flush=True)
    print(json.dumps({"load_start": load0, "load_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
