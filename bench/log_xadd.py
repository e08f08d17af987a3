"""The serving log's write, by client CPU: redis-py's ``xadd`` (what a logged lookup uses) against the same
``XADD`` packed by hand with its reply read straight from the hiredis reader (the way the lookup's read
is sent: ``featurestore.stores.online_read``), alternated, one record of the example's size.

Usage: ``python -m bench.log_xadd [--rounds 6] [--writes 3000]`` (Redis: ``FEATURESTORE_REDIS_URL``).
Result: ``bench/results/log-xadd.md``: the two cost the same (the send and receive system calls are
nearly all of it), so the library keeps redis-py's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from bench.online_hot import redis_url


def main() -> None:
    import redis

    from featurestore.stores.online_read import _pack
    from featurestore.stores.online_redis import _replies, connect

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--writes", type=int, default=3000)
    args = ap.parse_args()
    client = connect(redis_url())
    key = "fs:bench_log_xadd:_log:fraud_model_v1"
    fields = {"r": '{"request_id":"0123456789abcdef0123456789abcdef","request_time":1700000000000,'
                   '"features":[{' + ",".join(f'"f{i}":{i}.25' for i in range(14)) + '}]}'}

    def redis_py():
        client.xadd(key, fields)

    def packed():
        cmd = [b"XADD", key.encode(), b"*"]
        for f, v in fields.items():
            cmd += [f.encode(), v.encode()]
        pool = client.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([b"*%d\r\n" % len(cmd) + _pack(cmd)])
            (reply,) = _replies(conn, 1)
        except BaseException:
            conn.disconnect()
            raise
        finally:
            pool.release(conn)
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply

    load0 = os.getloadavg()
    res = {"redis_py": [], "packed": []}
    for _ in range(args.rounds):
        for f in (redis_py, packed):
            t = time.thread_time()
            for _ in range(args.writes):
                f()
            res[f.__name__].append(1e6 * (time.thread_time() - t) / args.writes)
    client.delete(key)
    print(f"Command: `python -m bench.log_xadd --rounds {args.rounds} --writes {args.writes}`; "
          f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, load average {[round(x, 1) for x in load0]} "
          f"-> {[round(x, 1) for x in os.getloadavg()]} (2 shared cores).\n")
    print("| XADD | CPU per write, each round (us) | median | min |\n|---|---|---|---|")
    for name, v in res.items():
        print(f"| {name} | {', '.join(f'{x:.0f}' for x in v)} | {statistics.median(v):.1f} | {min(v):.1f} |")


if __name__ == "__main__":
    main()
