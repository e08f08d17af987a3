"""The hot-entity measurements with an older featurestore (run by bench/online_hot.py in a subprocess).

    PYTHONPATH=<worktree of the old commit> python bench/online_before.py '<spec JSON>'

Imports ``featurestore`` from the worktree (checked), materializes the same repo into its own project
with the old single-key format (one JSON value per (view, entity): every event's inputs), measures
``get_online_features`` of the hot merchants at the same request times (fewer lookups when one is
slow: the old cost grows with the entity's events) and ``MEMORY USAGE`` of the old keys, prints JSON
on stdout and deletes its keys. Uses only APIs that commit bb50676 has.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import sys
import time

# Run as a script, this file's folder (bench/, whose http.py would shadow the standard library's) is
# first on sys.path: drop it.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def main(spec: dict) -> dict:
    import numpy as np
    import redis

    import featurestore
    from featurestore import FeatureStore
    from featurestore.config import load_config
    from featurestore.stores import online_redis as orr

    if not featurestore.__file__.startswith(spec["worktree"]):
        raise SystemExit(f"featurestore imported from {featurestore.__file__}, not the worktree")
    project = spec["project"]
    cfg = dataclasses.replace(load_config(spec["repo"]), project=project, redis_url=spec["redis_url"])
    fs = FeatureStore(spec["repo"], config=cfg)
    client = redis.Redis.from_url(spec["redis_url"])
    out = {"commit_featurestore": featurestore.__file__}
    try:
        t0 = time.perf_counter()
        fs.materialize(end=spec["end_ms"])
        out["materialize_seconds"] = round(time.perf_counter() - t0, 3)
        print(f"materialize {out['materialize_seconds']} s", file=sys.stderr, flush=True)
        refs = spec["merchant_refs"]
        qs = spec["qs"]
        lookups = {}
        for n in spec["sizes"]:
            def fn(q, _e=f"m_hot_{n}"):
                return fs.get_online_features([{"merchant_id": _e}], features=refs, request_time=q).to_dict()

            t0 = time.perf_counter()
            for q in qs[:3]:
                fn(q)
            each = (time.perf_counter() - t0) / 3
            count = int(max(5, min(len(qs), 6.0 / spec["rounds"] / max(each, 1e-6))))  # ~6 s per size
            rounds = []
            for _ in range(spec["rounds"]):
                gc.collect()
                xs = []
                for q in qs[:count]:
                    t = time.perf_counter()
                    fn(q)
                    xs.append(time.perf_counter() - t)
                rounds.append(xs)
            p50 = float(np.median([np.percentile(r, 50) for r in rounds])) * 1e3
            p99 = float(np.median([np.percentile(r, 99) for r in rounds])) * 1e3
            lookups[str(n)] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3), "n": count}
            print(f"m_hot_{n}: p50 {p50:.3f} ms p99 {p99:.3f} ms ({count} lookups x {spec['rounds']})",
                  file=sys.stderr, flush=True)
        out["lookups"] = lookups
        memory = {}
        for n in spec["memory_sizes"]:
            if n not in spec["sizes"]:
                continue
            memory[str(n)] = {}
            for view, entity in (("merchant_activity", f"m_hot_{n}"), ("user_spend", f"u_hot_{n}"),
                                 ("user_profile", f"u_hot_{n}")):
                used = client.execute_command("MEMORY", "USAGE", orr.entity_key(project, view, [entity]),
                                              "SAMPLES", "0")
                memory[str(n)][view] = int(used or 0)
        out["memory"] = memory
    finally:
        keys = list(client.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*", count=2000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i:i + 1000])
    return out


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
