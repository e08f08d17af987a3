"""Many-entity online lookups, this code against an older commit, by client CPU per lookup.

On a shared machine wall-clock percentiles swing with the load; the CPU time a lookup costs the client
process (``time.process_time`` around ``get_online_features``) does much less, so this compares that,
with the two versions run alternately (A B A B ...) on the same Redis data.

Data: ``bench/online_hot.py``'s background population (200k transactions of 5,000 users at 500
merchants, Zipf-skewed, 7 days; plus its hot entities of 100 and 1,000 events), materialized once with
each version's code at ``END - 1h`` under a project of its own (each writes its own online format). Lookups: the example's
``fraud_model_v1`` service (14 features of 3 views: windowed, unbounded and latest) for 1 or 100
random (user, merchant) pairs at request times uniform in the last hour, 400 per run after 20 warm-up.

Usage: ``python -m bench.online_many [--base COMMIT] [--runs 3] [--entities 100]`` (Redis:
``FEATURESTORE_REDIS_URL``). Prints a Markdown table; results under ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import DATA_ROOT, ROOT, run_in_tree

PROJECT = "bench_many"
CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from bench import online_hot as oh
from bench.common import percentile
spec = json.loads(sys.argv[2])
repo = oh.make_repo(oh.Path(spec["work"]), oh.Path(spec["work"]) / "data")
fs = oh.open_store(repo, spec["project"])
if spec.get("materialize"):
    fs.materialize(end=oh.MATERIALIZE_END_MS)
    from featurestore.stores import online_redis as orr
    client = orr.for_store(fs).client  # (--check) some entities' meta hashes gone: their state is lost (refused)
    for view, key in [("user_spend", f"u{i:04d}") for i in range(0, 5000, 250)] + [
            ("merchant_activity", f"m{i:04d}") for i in range(0, 500, 50)] if spec.get("lose") else []:
        client.delete(orr.entity_base(spec["project"], view, [key]) + ":t")
    print(json.dumps({}))
    sys.exit()
if spec.get("check"):  # every value, status, event time and refusal of random lookups, one line each
    rng = np.random.default_rng(oh.SEED + 2)
    feats = [f"{v.name}:{f}" for v in fs.repo.views.values() if v.online for f in v.feature_names]
    users = [f"u{i:04d}" for i in range(5000)] + [f"u_hot_{n}" for n in (100, 1_000)] + ["nobody"]
    merchants = [f"m{i:04d}" for i in range(500)] + [f"m_hot_{n}" for n in (100, 1_000)] + ["nowhere"]
    with open(spec["check"], "w") as out:
        for i in range(spec["lookups"]):
            size = [1, 5, 100][i % 3]
            q = oh.MATERIALIZE_END_MS + int(rng.choice([rng.integers(0, oh.HOUR_MS), rng.integers(0, 10 * oh.DAY_MS),
                                                        rng.integers(30 * oh.DAY_MS, 40 * oh.DAY_MS)], p=[.6, .3, .1]))
            rows = [{"user_id": users[u], "merchant_id": merchants[m]}
                    for u, m in zip(rng.integers(0, len(users), size), rng.integers(0, len(merchants), size))]
            r = fs.get_online_features(rows, features=feats, request_time=q)
            out.write(repr((q, r.to_dict(), r.statuses(), r.event_times, sorted(r.refusals))) + "\n")
    print(json.dumps({}))
    sys.exit()
rng = np.random.default_rng(oh.SEED + 1)
n, size = spec["lookups"], spec["entities"]
qs = (oh.MATERIALIZE_END_MS + rng.integers(0, oh.HOUR_MS, n + 20)).tolist()
users = [f"u{i:04d}" for i in range(5000)]
merchants = [f"m{i:04d}" for i in range(500)]
batches = [[{"user_id": users[u], "merchant_id": merchants[m]}
            for u, m in zip(rng.integers(0, 5000, size), rng.integers(0, 500, size))] for _ in qs]
def one(i):
    return fs.get_online_features(batches[i], feature_service="fraud_model_v1", request_time=qs[i]).to_dict()
for i in range(20):
    one(i)
from featurestore.stores import online_redis as orr
client = orr.for_store(fs).client
def redis_cpu():  # the Redis server's CPU seconds (this bench's Redis serves no one else)
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]
r0 = redis_cpu()
wall, cpu = [], []
for i in range(20, n + 20):
    w0, c0 = time.perf_counter(), time.process_time()
    one(i)
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)
r1 = redis_cpu()
print(json.dumps({"redis_cpu_ms": 1e3 * (r1 - r0) / len(cpu), "cpu_mean_ms": 1e3 * sum(cpu) / len(cpu), "cpu_p50_ms": 1e3 * percentile(cpu, 50),
                  "cpu_p99_ms": 1e3 * percentile(cpu, 99),
                  "wall_p50_ms": 1e3 * percentile(wall, 50), "wall_p99_ms": 1e3 * percentile(wall, 99)}))
'''


def _child(root: Path, spec: dict) -> dict:
    return run_in_tree(CHILD, root, str(root), json.dumps(spec))


def main() -> None:
    from bench import online_hot as oh

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="origin/main", help="the commit to compare with")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--entities", type=int, default=100)
    ap.add_argument("--lookups", type=int, default=400)
    ap.add_argument("--check", type=int, default=0, help="first compare the versions' answers to this many "
                    "random lookups (1, 5 and 100 entities, unknown and hot ones, request times to 40 days "
                    "after, some entities' state lost) value by value, status by status")
    args = ap.parse_args()
    work = DATA_ROOT / "online-many"
    oh.generate(work / "data", (100, 1_000))
    base = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    wt = Path(f"/tmp/fs-bench-many-{os.getpid()}")
    subprocess.run(["git", "worktree", "add", "--detach", str(wt), base], cwd=ROOT, check=True, capture_output=True)
    try:
        spec = {"work": str(work), "lookups": args.lookups, "entities": args.entities}
        load0 = os.getloadavg()
        t0 = time.time()
        versions = ((head, ROOT), (base, wt))
        for name, root in versions:  # each version materializes in its own format, under its own project
            _child(root, dict(spec, project=f"{PROJECT}_{name}", materialize=True))
        if args.check:
            files = []
            for name, root in versions:
                files.append(work / f"check-{name}.txt")
                _child(root, dict(spec, project=f"{PROJECT}_{name}_check", materialize=True, lose=True))
                _child(root, dict(spec, project=f"{PROJECT}_{name}_check", check=str(files[-1]), lookups=args.check))
            a, b = (f.read_text().splitlines() for f in files)
            diff = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
            statuses = sum(line.count(f"'{s}'") for line in a
                           for s in ("PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "REFUSED"))
            counts = {s: sum(line.count(f"'{s}'") for line in a) for s in
                      ("PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE", "REFUSED")}
            print(f"check: {len(a)} lookups, {statuses} values {counts}: {diff} lookups differ", file=sys.stderr)
            if diff:
                raise SystemExit(f"the versions' answers differ in {diff} lookups: {files}")
        res = {head: [], base: []}
        for _ in range(args.runs):
            for name, root in versions:
                res[name].append(_child(root, dict(spec, project=f"{PROJECT}_{name}")))
                print(name, res[name][-1], file=sys.stderr)
        load1 = os.getloadavg()
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)
    print(f"Command: `python -m bench.online_many --base {args.base} --runs {args.runs} --entities {args.entities} "
          f"--lookups {args.lookups}`; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0))}, "
          f"load average at start {[round(x, 2) for x in load0]}, at end {[round(x, 2) for x in load1]}.\n")
    print(f"`fraud_model_v1`, {args.entities} entities per lookup, {args.lookups} lookups per run, runs alternated:\n")
    print("| code | run | client CPU mean | client CPU p50 | client CPU p99 | Redis CPU mean | wall p50 | wall p99 |")
    print("|---|---|---|---|---|---|---|---|")
    for name in (head, base):
        for i, r in enumerate(res[name]):
            print(f"| {name}{' (this)' if name == head else ''} | {i + 1} | {r['cpu_mean_ms']:.2f} ms | "
                  f"{r['cpu_p50_ms']:.2f} ms | {r['cpu_p99_ms']:.2f} ms | {r.get('redis_cpu_ms', float('nan')):.2f} ms | "
                  f"{r['wall_p50_ms']:.2f} ms | {r['wall_p99_ms']:.2f} ms |")
    if not args.runs:  # (--check alone)
        return
    best = {k: min(r["cpu_mean_ms"] for r in v) for k, v in res.items()}
    print(f"\nBest-run CPU mean: {head} {best[head]:.2f} ms, {base} {best[base]:.2f} ms "
          f"({best[base] / best[head]:.2f}x less CPU per lookup).")


if __name__ == "__main__":
    main()
