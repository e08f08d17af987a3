"""Redis's side of many-entity lookups: this checkout's read script against another commit's, per view.

The reads of ``--lookups`` lookups of the example's ``fraud_model_v1`` service (100 random background
(user, merchant) pairs each, request times uniform in the last hour; ``bench/online_many.py``'s data,
materialized once under a project of its own) are captured as the packed ``EVALSHA`` commands this
checkout sends, then replayed view by view with both scripts alternately, ``--rounds`` times, on the
same keys: Redis's CPU (``INFO cpu``, this Redis serving no one else) and the commands the scripts ran
(``INFO commandstats``) per lookup. Both versions must read the same stored format (the replies are not
decoded here: ``bench/online_many.py --check`` compares answers).

Usage: ``python -m bench.online_read_ab --base COMMIT [--lookups 100] [--rounds 5]`` (Redis:
``FEATURESTORE_REDIS_URL``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

from bench.common import DATA_ROOT, ROOT

PROJECT = "bench_read_ab"
VIEWS = ("user_spend", "user_profile", "merchant_activity")


def main() -> None:
    import numpy as np

    from bench import online_hot as oh
    from featurestore.stores import online_read
    from featurestore.stores import online_redis as orr

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True, help="the commit whose READ_LUA to compare with")
    ap.add_argument("--lookups", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    work = DATA_ROOT / "online-many"
    oh.generate(work / "data", (100, 1_000))
    fs = oh.open_store(oh.make_repo(work, work / "data"), PROJECT)
    store = orr.for_store(fs)
    r = store.client
    if not r.hlen(orr.views_key(PROJECT)):
        fs.materialize(end=oh.MATERIALIZE_END_MS)
    source = subprocess.run(["git", "show", f"{args.base}:featurestore/stores/online_read.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    scope: dict = {}
    exec(compile(source, f"{args.base}:online_read.py", "exec"), scope)
    shas = {"this": r.script_load(online_read.READ_LUA), args.base: r.script_load(scope["READ_LUA"])}
    shas = {k: v.encode() if isinstance(v, str) else v for k, v in shas.items()}

    captured = []  # (view, packed EVALSHA of this checkout's script)
    real = online_read._call_commands

    def capture(sha, reads, groups):
        out = real(sha, reads, groups)
        captured.extend(out)
        return out

    online_read._call_commands = capture
    rng = np.random.default_rng(oh.SEED + 3)
    users, merchants = [f"u{i:04d}" for i in range(5000)], [f"m{i:04d}" for i in range(500)]
    for q in (oh.MATERIALIZE_END_MS + rng.integers(0, oh.HOUR_MS, args.lookups)).tolist():
        rows = [{"user_id": users[u], "merchant_id": merchants[m]}
                for u, m in zip(rng.integers(0, 5000, 100), rng.integers(0, 500, 100))]
        fs.get_online_features(rows, feature_service="fraud_model_v1", request_time=q)
    online_read._call_commands = real
    own = store._read.encode() if isinstance(store._read, str) else store._read
    by_view = {v: [c for key, c in captured if f":{v}:".encode() in key] for v in VIEWS}

    def cpu() -> float:
        i = r.info("cpu")
        return i["used_cpu_user"] + i["used_cpu_sys"]

    def commands() -> int:
        return sum(s["calls"] for k, s in r.info("commandstats").items()
                   if k not in ("cmdstat_info", "cmdstat_evalsha"))

    pool = r.connection_pool
    conn = pool.get_connection()
    load0, t0 = os.getloadavg(), time.time()
    cpu_ms = {name: {v: [] for v in VIEWS} for name in shas}
    calls = {name: {} for name in shas}
    try:
        for _ in range(args.rounds):
            for name, sha in shas.items():
                for v in VIEWS:
                    batch = [c.replace(own, sha) for c in by_view[v]]
                    n0, c0 = commands(), cpu()
                    for c in batch:
                        conn.send_packed_command([c])
                        conn.read_response()
                    cpu_ms[name][v].append(1e3 * (cpu() - c0) / args.lookups)
                    calls[name][v] = (commands() - n0) / args.lookups
    finally:
        pool.release(conn)
    print(f"Command: `python -m bench.online_read_ab --base {args.base} --lookups {args.lookups} --rounds "
          f"{args.rounds}`; {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0))}, load average at start "
          f"{[round(x, 2) for x in load0]}, at end {[round(x, 2) for x in os.getloadavg()]}.\n")
    print("| script | view | Redis CPU per lookup, min | median | commands per lookup |")
    print("|---|---|---|---|---|")
    for name in shas:
        for v in VIEWS:
            d = cpu_ms[name][v]
            print(f"| {name} | `{v}` | {min(d):.2f} ms | {statistics.median(d):.2f} ms | {calls[name][v]:.0f} |")


if __name__ == "__main__":
    main()
