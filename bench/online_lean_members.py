"""Would a leaner raw member pay? Format 4's members against the same members without their order values
(``[id, ts, inputs...]``: format 5's plan in docs/online-store.md), measured before building it.

The raw events of 100 random background (user, merchant) pairs of ``online_many``'s data (``--project``:
materialized by ``python -m bench.online_many``), each view's members as stored and cut after their
inputs, copied under scratch keys of their own (same scores), then read alternately, block by block:

* Redis: one pipelined ``ZRANGEBYSCORE -inf +inf`` per (view, entity) of the scratch keys, the server's
  CPU (``INFO cpu``: use a Redis of your own) per lookup's worth of members;
* client: what a lookup does with the replied members of a view (``online_reply.raw_events_many``: one
  parse, the input columns), then frees them; ``time.process_time``.

Usage: ``python -m bench.online_lean_members --project P [--blocks 20]``. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import orjson


def main() -> None:
    import numpy as np

    from bench import online_hot as oh
    from bench.common import DATA_ROOT
    from featurestore import online as ol
    from featurestore import online_reply as oreply
    from featurestore.stores import online_format as ofmt
    from featurestore.stores import online_redis as orr

    ap = argparse.ArgumentParser()
    ap.add_argument("--project", required=True)
    ap.add_argument("--blocks", type=int, default=20)
    args = ap.parse_args()
    work = DATA_ROOT / "online-many"
    fs = oh.open_store(oh.make_repo(work, work / "data"), args.project)
    client = orr.for_store(fs).client
    rng = np.random.default_rng(oh.SEED + 7)
    users = [f"u{i:04d}" for i in rng.integers(0, 5000, 100)]
    merchants = [f"m{i:04d}" for i in rng.integers(0, 500, 100)]
    views = {"user_spend": users, "user_profile": users, "merchant_activity": merchants}
    scratch = f"fs:{args.project}:_scratch_lean"
    keys = {"full": [], "lean": []}
    fmts = {}
    sizes = {"full": 0, "lean": 0}
    count = 0
    for view, ents in views.items():
        cv = fs.compiled(view)
        width = len(ol.view_layout(cv).inputs)
        fmts[view] = ofmt.members(cv)
        for e in ents:
            rows = client.zrange(orr.entity_base(args.project, view, [e]) + ":r", 0, -1, withscores=True)
            if not rows:
                continue
            for form in ("full", "lean"):
                key = f"{scratch}:{form}:{view}:{e}"
                client.delete(key)
                mapping = {(m if form == "full" else orjson.dumps(orjson.loads(m)[:2 + width])): s for m, s in rows}
                client.zadd(key, mapping)
                keys[form].append((view, key))
                sizes[form] += sum(map(len, mapping))
            count += len(rows)

    def redis_cpu():
        info = client.info("cpu")
        return info["used_cpu_user"] + info["used_cpu_sys"]

    def read(form):
        pipe = client.pipeline(transaction=False)
        for _, key in keys[form]:
            pipe.zrangebyscore(key, "-inf", "+inf")
        return pipe.execute()

    out = {f: {"redis": [], "client": []} for f in keys}
    load0, t0 = os.getloadavg(), time.time()
    for _ in range(args.blocks):
        for form in ("full", "lean"):
            r0 = redis_cpu()
            for _ in range(5):
                replies = read(form)
            out[form]["redis"].append(1e3 * (redis_cpu() - r0) / 5)
            blobs = {}
            for (view, _), members in zip(keys[form], replies):
                blobs.setdefault(view, []).append(b"\n".join(members))
            c0 = time.process_time()
            for _ in range(5):
                for view, bl in blobs.items():
                    got = oreply.raw_events_many(bl, fmts[view])
                    del got
            out[form]["client"].append(1e3 * (time.process_time() - c0) / 5)
    load1 = os.getloadavg()
    for form in keys:
        for _, key in keys[form]:
            client.delete(key)
    print(f"Command: `python -m bench.online_lean_members --project {args.project} --blocks {args.blocks}`; "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(t0))}, load average at start "
          f"{[round(x, 2) for x in load0]}, at end {[round(x, 2) for x in load1]}.\n")
    print(f"{count} members of {len(keys['full'])} (view, entity) pairs; {sizes['full']} bytes as stored, "
          f"{sizes['lean']} without order values ({sizes['full'] / max(sizes['lean'], 1):.2f}x).\n")
    print("| members | Redis CPU per read, median (best block) | client parse + columns + free, median (best block) |")
    print("|---|---|---|")
    for form in keys:
        r, c = out[form]["redis"], out[form]["client"]
        print(f"| {form} | {statistics.median(r):.2f} ms ({min(r):.2f}) | {statistics.median(c):.2f} ms ({min(c):.2f}) |")


if __name__ == "__main__":
    main()
