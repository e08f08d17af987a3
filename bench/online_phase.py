"""One phase of many-entity lookups, this code against an older commit, by client CPU.

``bench/online_many.py``'s lookups (``fraud_model_v1``, 100 random background (user, merchant) pairs
per lookup, request times in the last hour; both versions read the data ``online_many --base COMMIT``
materialized with COMMIT's code, ``--project``: run that first; both must read its online format), with a function of ``featurestore.online`` wrapped to add up the
CPU (``time.process_time``) spent inside it: ``_dense_window_rows`` (the finite windows of entities with
tiles) and ``compute_columns`` (every window and feature of a view, the dense rows included). Both
versions must have those names. The versions run alternately in subprocesses, ``--runs`` times each;
a phase's CPU moves much less with the machine's load than a whole lookup's.

Usage: ``python -m bench.online_phase --base COMMIT [--runs 4] [--lookups 300] [--project P]`` (Redis:
``FEATURESTORE_REDIS_URL``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import ROOT, run_in_tree

CHILD = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from bench import online_hot as oh
from featurestore import online as ol
spec = json.loads(sys.argv[2])
work = oh.Path(spec["work"])
fs = oh.open_store(oh.make_repo(work, work / "data"), spec["project"])
spent = {"_dense_window_rows": 0.0, "compute_columns": 0.0}
def timed(name, f):
    def run(*a, **k):
        c0 = time.process_time()
        try:
            return f(*a, **k)
        finally:
            spent[name] += time.process_time() - c0
    return run
for name in spent:
    setattr(ol, name, timed(name, getattr(ol, name)))
rng = np.random.default_rng(oh.SEED + 1)
n = spec["lookups"]
qs = (oh.MATERIALIZE_END_MS + rng.integers(0, oh.HOUR_MS, n + 20)).tolist()
users = [f"u{i:04d}" for i in range(5000)]
merchants = [f"m{i:04d}" for i in range(500)]
batches = [[{"user_id": users[u], "merchant_id": merchants[m]}
            for u, m in zip(rng.integers(0, 5000, 100), rng.integers(0, 500, 100))] for _ in qs]
for i in range(n + 20):
    if i == 20:
        spent = dict.fromkeys(spent, 0.0)
        c0 = time.process_time()
    fs.get_online_features(batches[i], feature_service="fraud_model_v1", request_time=qs[i])
total = time.process_time() - c0
print(json.dumps({"lookup_ms": 1e3 * total / n, **{k: 1e3 * v / n for k, v in spent.items()}}))
'''


def _child(root: Path, spec: dict) -> dict:
    return run_in_tree(CHILD, root, str(root), json.dumps(spec))


def main() -> None:
    from bench.common import DATA_ROOT
    from bench.online_many import PROJECT

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--lookups", type=int, default=300)
    ap.add_argument("--project", help="the online data both read (default: online_many's of --base)")
    args = ap.parse_args()
    rev = lambda c: subprocess.run(["git", "rev-parse", "--short", c], cwd=ROOT, capture_output=True, text=True,
                                   check=True).stdout.strip()
    head, base = rev("HEAD"), rev(args.base)
    wt = Path(f"/tmp/fs-bench-phase-{os.getpid()}")
    subprocess.run(["git", "worktree", "add", "--detach", str(wt), base], cwd=ROOT, check=True, capture_output=True)
    res = {head: [], base: []}
    load0, t0 = os.getloadavg(), time.time()
    try:
        for _ in range(args.runs):
            for name, root in ((head, ROOT), (base, wt)):
                spec = {"work": str(DATA_ROOT / "online-many"), "project": args.project or f"{PROJECT}_{base}",
                        "lookups": args.lookups}
                res[name].append(_child(root, spec))
                print(name, res[name][-1], file=sys.stderr)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)
    load1 = os.getloadavg()
    print(f"Command: `python -m bench.online_phase --base {args.base} --runs {args.runs} --lookups {args.lookups}`; "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0))}, load average at start "
          f"{[round(x, 2) for x in load0]}, at end {[round(x, 2) for x in load1]}.\n")
    print("| code | run | lookup CPU | `compute_columns` CPU | `_dense_window_rows` CPU |")
    print("|---|---|---|---|---|")
    for name in (head, base):
        for i, r in enumerate(res[name]):
            print(f"| {name}{' (this)' if name == head else ''} | {i + 1} | {r['lookup_ms']:.2f} ms | "
                  f"{r['compute_columns']:.2f} ms | {r['_dense_window_rows']:.2f} ms |")


if __name__ == "__main__":
    main()
