"""Online lookups on a Redis Cluster beside the single Redis: latency of 1 and 100 entities x 50 features.

    .venv/bin/python -m bench.online_cluster [--scale tiny|small] [--rounds 3]

The data and definitions of :mod:`bench.online` (int64 users, ~12 events each, five views of ten
``Latest`` features), materialized with ``end=END`` into both stores under one project name:

* single: the project's Redis (``FEATURESTORE_REDIS_URL``, ``bash infra/up.sh``);
* cluster: the local 3-master cluster of ``infra/redis-cluster.sh`` (started here if it is down).

The same lookups (same entity ids, same request time) go to both, rounds interleaved; per call
``perf_counter`` around ``get_online_features(...).to_dict()``; p50/p99 per round, reported as the median
over rounds. Both answers are checked equal before timing. Writes ``bench/results/online-cluster.{md,json}``.
On one machine the cluster's nodes share the cores with the client: what this shows is the client's
cost of the per-node pipeline (a round per master, in parallel), not a network's.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import time
from typing import Dict, List

import numpy as np

from bench.common import DATA_ROOT, ROOT, loadavg, log, machine_notes, write_results
from bench.online import END_MS, REQUEST_MS, SCALES, SEED, feature_refs, generate, latencies, make_store, summarize


def cluster_url() -> str:
    script = ROOT / "infra" / "redis-cluster.sh"
    subprocess.run(["bash", str(script), "start"], check=True, capture_output=True, timeout=180)
    return subprocess.run(["bash", str(script), "url"], check=True, capture_output=True, text=True).stdout.strip()


def run(scale: str = "small", rounds: int = 3) -> Dict[str, object]:
    from featurestore.store import FeatureStore
    from tests.conftest import drop_project

    p = SCALES[scale]
    work = DATA_ROOT / f"online-{scale}"
    path = work / "data" / "profile.parquet"
    n_events = generate(path, p["entities"], p["events_per_entity"])
    project = f"bench_cluster_{os.getpid()}"
    single = make_store(work, path, project)
    single.backfill()
    stores = {"single": single,
              "cluster": FeatureStore(single.repo_path, config=dataclasses.replace(single.config, redis_url=cluster_url()))}
    out: Dict[str, object] = {"scale": scale, "params": {**p, "events": n_events, "rounds": rounds},
                              "urls": {k: s.config.redis_url for k, s in stores.items()}, "project": project}
    try:
        out["materialize_s"] = {}
        for name, fs in stores.items():
            t0 = time.perf_counter()
            fs.materialize(end=END_MS)
            out["materialize_s"][name] = round(time.perf_counter() - t0, 2)
            log(f"online_cluster: materialize into {name} {out['materialize_s'][name]} s")
        refs = feature_refs()
        rng = np.random.default_rng(SEED + 1)
        n_l = p["lookups"]
        batches = {1: [rng.integers(0, p["entities"], 1).tolist() for _ in range(n_l)],
                   100: [rng.integers(0, p["entities"], 100).tolist() for _ in range(max(50, n_l // 10))]}

        def lookup(fs):
            return lambda ids: fs.get_online_features([{"user_id": k} for k in ids], features=refs,
                                                      request_time=REQUEST_MS).to_dict()

        check = batches[100][0]
        assert lookup(stores["single"])(check) == lookup(stores["cluster"])(check), "cluster answer differs"
        per: Dict[int, Dict[str, List[List[float]]]] = {n: {k: [] for k in stores} for n in batches}
        for r in range(rounds):
            for n, bs in batches.items():
                for name, fs in stores.items():
                    per[n][name].append(latencies(lookup(fs), bs, warmup=min(50, len(bs) // 2)))
                    log(f"  {n} entities, {name}: round {r + 1}/{rounds}")
        out["lookups"] = {str(n): {name: summarize(rs) for name, rs in by.items()} for n, by in per.items()}
    finally:
        for fs in stores.values():
            drop_project(fs.online_store().client, project)
    return out


def render(doc: dict) -> str:
    r = doc["result"]
    lines = [f"# Online lookups: Redis Cluster beside the single Redis ({r['scale']})", "",
             f"`{doc['command']}`, {doc['started']}; load average {doc['loadavg_start']} -> {doc['loadavg_end']}; "
             f"{r['params']['events']:,} events, {r['params']['entities']:,} entities, 5 views x 10 features.", "",
             "| lookup | single p50 / p99 ms | cluster (3 masters) p50 / p99 ms |", "|---|---|---|"]
    for n, by in r["lookups"].items():
        s, c = by["single"], by["cluster"]
        lines.append(f"| {n} entit{'y' if n == '1' else 'ies'} x 50 features | {s['p50_ms']} / {s['p99_ms']} | "
                     f"{c['p50_ms']} / {c['p99_ms']} |")
    lines += ["", f"materialize(end=END): single {r['materialize_s']['single']} s, cluster "
              f"{r['materialize_s']['cluster']} s.", "",
              "Same machine for client and every node (2 cores shared with other work): the cluster's numbers are "
              "the client's cost of one batch per master (packed by hand, sent to every master before any reply "
              "is read) plus three servers' scheduling, not a network's. Answers checked equal before timing.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=("tiny", "small"), default="small")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    doc = {"command": f"python -m bench.online_cluster --scale {args.scale} --rounds {args.rounds}",
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_notes(), "loadavg_start": loadavg()}
    doc["result"] = run(args.scale, args.rounds)
    doc["loadavg_end"] = loadavg()
    md = render(doc)
    path = write_results("online-cluster", doc, md)
    log(f"wrote {path}")
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
