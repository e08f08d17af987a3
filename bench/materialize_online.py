"""Materialize of ``bench/online.py``'s data against its plain-command floor, by wall and CPU seconds
(issue 11: target >= 0.5x the floor's speed).

The data of ``bench.online`` at ``--scale`` (5 views x ``entities`` x 12 events, uniform: every entity
plain, no tiles), backfilled once (setup, untimed). Interleaved ``--repeat`` times: ours
``materialize(end=None)`` (every event lands in Redis), then the floor: the very keys, fields and members
it wrote (read back, untimed) written again with pipelined plain commands (DEL, HSET/ZADD, PEXPIREAT,
500 keys per round trip). Per run: wall seconds, this process's CPU seconds (Python and DuckDB's
threads) and the Redis server's (``INFO cpu``). Ratio = floor / ours (1.0 = as fast as the floor).

    FEATURESTORE_REDIS_URL=redis://127.0.0.1:<port>/0 .venv/bin/python -m bench.materialize_online \\
        [--scale small] [--repeat 2] [--name materialize-online]
"""

from __future__ import annotations

import argparse
import os
import sys

from bench.common import DATA_ROOT, finish, log, measure_cpu, run_doc, run_header


def main(argv=None) -> int:
    import redis

    from bench.online import SCALES, drop_keys, generate, make_store, read_back, redis_url, write_image
    from featurestore.stores import online_redis as orr

    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=tuple(SCALES), default="small")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--name", default="materialize-online")
    args = ap.parse_args(argv)
    p = SCALES[args.scale]
    work = DATA_ROOT / f"online-{args.scale}"
    path = work / "data" / "profile.parquet"
    n_events = generate(path, p["entities"], p["events_per_entity"])
    project = f"bench_mato_{os.getpid()}"
    client = redis.Redis.from_url(redis_url())
    fs = make_store(work, path, project)
    doc = run_doc("bench.materialize_online", argv)
    runs = []
    pattern = f"{orr.KEY_PREFIX}:{project}:*"
    try:
        fs.backfill()
        for _ in range(args.repeat):
            drop_keys(client, pattern)
            ours, _ = measure_cpu(client, lambda: fs.materialize(end=None))
            image, nbytes = read_back(client, pattern)
            floor, _ = measure_cpu(client, lambda: write_image(client, image))
            runs.append({"ours": ours, "floor": floor, "keys": len(image), "bytes": nbytes})
            log(f"materialize {ours}, floor {floor}: {floor['seconds'] / ours['seconds']:.2f}x wall, "
                f"{(floor['cpu'] + floor['redis_cpu']) / (ours['cpu'] + ours['redis_cpu']):.2f}x cpu")
            del image
    finally:
        drop_keys(client, pattern)
    doc.update(events=n_events, views=5, runs=runs)
    return finish(args.name, doc, render)


def render(doc: dict) -> str:
    lines = run_header(doc, "Materialize of bench/online.py's data") + [
             f"Data: {doc['events']:,} events x {doc['views']} views (uniform, every entity plain). "
             "`materialize(end=None)` against the pipelined plain-command floor writing the same keys, fields "
             "and members. CPU = this process (Python + DuckDB threads) + the Redis server (INFO cpu).", "",
             "| run | keys | bytes | ours s | ours CPU s (client + redis) | floor s | floor CPU s | wall ratio | CPU ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(doc["runs"]):
        o, f = r["ours"], r["floor"]
        oc, fc = o["cpu"] + o["redis_cpu"], f["cpu"] + f["redis_cpu"]
        lines.append(f"| {i + 1} | {r['keys']:,} | {r['bytes'] / 2**20:.0f} MiB | {o['seconds']:.2f} | {oc:.2f} "
                     f"({o['cpu']:.2f} + {o['redis_cpu']:.2f}) | {f['seconds']:.2f} | {fc:.2f} ({f['cpu']:.2f} + "
                     f"{f['redis_cpu']:.2f}) | {f['seconds'] / o['seconds']:.2f}x | {fc / oc:.2f}x |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
