"""HTTP lookups: p50/p99 and requests/s of our feature server (without and with logging) and of Feast's
own Python feature server, on the same data in the same Redis.

    .venv/bin/python -m bench.http [--requests 2000] [--seconds 10] [--threads 8] [--entities 20000]
                                   [--no-feast] [--no-profile] [--name http]

Data and definitions are those of :mod:`bench.online` (numpy, seeded): ``--entities`` users, ~12 events
each, five views ``v0..v4`` of ten ``Latest`` float features (TTL 1 d); every request asks for all 50
features. Our repo is backfilled and ``materialize(end=END)``-ed into Redis under its own project; a
Feast 0.67 repo (``redis`` online store, same Redis) is ``materialize``-d from the same Parquet file.

Servers, each its own process (own session, killed by process group at the end), on 127.0.0.1:

* ours: ``featurestore serve --repo <tmp repo> --port P`` (uvicorn, 1 worker); request
  ``{"features": [50 refs], "entities": {"user_id": [...]}, "request_time": END+60 s, "log": false|true}``.
  ``request_time`` is fixed because the data ends at END and our reads enforce the 1 d TTL.
  ``"log": true`` appends one Redis Stream entry per request (log-and-wait) before answering.
* Feast: ``feast -c <repo> serve -w 1 --no-access-log --max-requests 0`` (gunicorn + one uvicorn
  worker, its ``get_app``; ``--max-requests 0`` turns off its default recycling of the worker every
  ~1000 requests, which would put restarts into the tail); request ``{"features": [50 refs],
  "entities": {"user_id": [...]}, "full_feature_names": true}``. Feast's Python server has no served
  feature logging (FIELD-NOTES), so ours-with-logging is compared with Feast without it.

Client: a separate process (``python -m bench.http --client spec.json``) with a small heap (gc frozen
after setup), ``httpx.Client`` with keep-alive, request bodies pre-encoded; a request's time is from
``post`` to the whole body read (status checked, JSON not parsed).
* latency: sequential requests, ``--requests`` per contender and size (1 and 100 entities), in
  ``--rounds`` rounds interleaved between contenders (order rotated), after a warm-up; p50/p99 over all
  of them pooled (per-round values in the JSON).
* throughput: ``--threads`` threads, each its own keep-alive client, for ``--seconds`` (and at most
  ``--max-throughput-requests``); requests/s = completed / wall time. Server CPU seconds (its process
  group, from /proc) and Redis CPU (INFO) over the window are recorded: 2 cores are shared by client,
  server and Redis, so these numbers say who was busy.

The logged contender's stream is UNLINKed between runs (untimed) so Redis memory stays bounded; its
length is checked against the number of logged requests first. Afterwards every key of both projects
is deleted. Where the time goes: an in-process cProfile of our ASGI app driven on one thread (threadpool
inlined), i.e. server work without the HTTP parsing/socket part.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from bench.common import (DATA_ROOT, ROOT, changed_files, loadavg, log, machine_notes, percentile, redis_version,
                          source_fingerprint, source_hashes, write_results)
from bench.http_report import COLS, FEAST, OURS, OURS_LOG, SIZES, VIEWS, markdown, observations

SEED = 4242
JSON_HEADERS = {"content-type": "application/json"}


# -- small helpers ------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _proc_group(pgid: int) -> List[int]:
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[2]) == pgid:
            out.append(int(d))
    return out


def group_cpu_seconds(pgid: int) -> float:
    """user+system CPU seconds of every live process in the group (threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _proc_group(pgid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])
    return total / tick


def group_rss_mib(pgid: int) -> float:
    total = 0
    for pid in _proc_group(pgid):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


def redis_cpu(client) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def pct(xs, p) -> float:
    return round(percentile(xs, p) * 1e3, 3)


# -- servers ------------------------------------------------------------------------------------------
class Server:
    """A server in its own session (process group), stopped by killing the group."""

    def __init__(self, name: str, cmd: List[str], cwd: Path, env: Dict[str, str], port: int, logfile: Path):
        self.name, self.cmd, self.port, self.logfile = name, cmd, port, logfile
        self._log = open(logfile, "wb")
        self.proc = subprocess.Popen(cmd, cwd=str(cwd), env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.pgid = self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 120.0) -> float:
        import httpx

        t0 = time.perf_counter()
        deadline = t0 + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.tail()}")
            try:
                r = httpx.get(self.base + "/health", timeout=2.0)
                if r.status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s: {self.tail()}")

    def tail(self, n: int = 1500) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-n:].replace("\n", " | ")
        except OSError:
            return ""

    def stop(self) -> Optional[int]:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.pgid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # children that outlived the leader (gunicorn worker): kill what is left of the group
        for _ in range(20):
            if not _proc_group(self.pgid):
                break
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        self._log.close()
        return self.proc.returncode


# -- request bodies -----------------------------------------------------------------------------------
def feature_refs() -> List[str]:
    return [f"v{i}:v{i}_f{j}" for i in range(VIEWS) for j in range(COLS)]


def feast_refs() -> List[str]:
    return [f"v{i}:f{j}" for i in range(VIEWS) for j in range(COLS)]


def body(kind: str, ids: List[int], request_ms: int, log_flag: bool = False) -> bytes:
    if kind == "feast":
        doc = {"features": feast_refs(), "entities": {"user_id": ids}, "full_feature_names": True}
    else:
        doc = {"features": feature_refs(), "entities": {"user_id": ids}, "request_time": request_ms,
               "log": log_flag}
    return json.dumps(doc, separators=(",", ":")).encode()


# -- client process -----------------------------------------------------------------------------------
def _post(client, url: str, payload: bytes):
    r = client.post(url, content=payload, headers=JSON_HEADERS)
    if r.status_code != 200:
        raise RuntimeError(f"{url}: HTTP {r.status_code}: {r.text[:300]}")
    return r


def client_main(spec_path: str, out_path: str) -> int:
    import httpx
    import redis

    spec = json.loads(Path(spec_path).read_text())
    contenders = spec["contenders"]  # [{name, url, kind, log, pgid}]
    rds = redis.Redis.from_url(spec["redis_url"])
    stream = spec["log_stream"]
    rng = np.random.default_rng(SEED + 7)
    n, rounds, warmup = spec["requests"], spec["rounds"], spec["warmup"]
    per_round = -(-n // rounds)
    ids = {s: [rng.integers(0, spec["entities"], s).tolist() for _ in range(per_round * rounds + warmup)]
           for s in SIZES}
    bodies = {c["name"]: {s: [body(c["kind"], x, spec["request_ms"], c["log"]) for x in ids[s]] for s in SIZES}
              for c in contenders}
    out: Dict[str, object] = {"latency": {}, "throughput": {}, "log_checks": [], "body_bytes": {},
                              "response_bytes": {}}
    for c in contenders:
        out["body_bytes"][c["name"]] = {str(s): len(bodies[c["name"]][s][0]) for s in SIZES}

    def check_and_drop_log(name: str, expected: int, where: str):
        xlen = rds.xlen(stream)
        entry = rds.xrevrange(stream, count=1)
        size = sum(len(v) for v in entry[0][1].values()) if entry else 0
        out["log_checks"].append({"where": where, "contender": name, "logged_requests": expected,
                                  "stream_entries": xlen, "equal": xlen == expected, "last_entry_bytes": size})
        rds.unlink(stream)

    gc.collect()
    gc.freeze()  # the client's own collector: nothing old left to scan during the timed loops

    # ---- latency: sequential, rounds interleaved ----
    pc = time.perf_counter
    clients = {c["name"]: httpx.Client(timeout=60.0) for c in contenders}
    try:
        for s in SIZES:
            samples: Dict[str, List[List[float]]] = {c["name"]: [] for c in contenders}
            for c in contenders:  # warm-up (connection, server caches, registry)
                cl, url = clients[c["name"]], c["url"]
                for b in bodies[c["name"]][s][-warmup:]:
                    r = _post(cl, url, b)
                out["response_bytes"].setdefault(c["name"], {})[str(s)] = len(r.content)
                if c["log"]:
                    check_and_drop_log(c["name"], warmup, f"warm-up {s}")
            for rnd in range(rounds):
                order = contenders[rnd % len(contenders):] + contenders[:rnd % len(contenders)]
                for c in order:
                    cl, url = clients[c["name"]], c["url"]
                    xs = []
                    todo = bodies[c["name"]][s][rnd * per_round:(rnd + 1) * per_round]
                    for b in todo:
                        t0 = pc()
                        r = cl.post(url, content=b, headers=JSON_HEADERS)
                        r.read()
                        dt = pc() - t0
                        if r.status_code != 200:
                            raise RuntimeError(f"{c['name']}: HTTP {r.status_code}: {r.text[:300]}")
                        xs.append(dt)
                    samples[c["name"]].append(xs)
                    print(f"[client] {s:>3} entit{'y' if s == 1 else 'ies'} {c['name']:<11} round {rnd + 1}: "
                          f"p50 {pct(xs, 50):.3f} ms p99 {pct(xs, 99):.3f} ms", file=sys.stderr, flush=True)
                    if c["log"]:
                        check_and_drop_log(c["name"], len(todo), f"latency {s} round {rnd + 1}")
            out["latency"][str(s)] = {
                name: {"n": sum(len(r) for r in rs), "p50_ms": pct(sum(rs, []), 50), "p90_ms": pct(sum(rs, []), 90),
                       "p99_ms": pct(sum(rs, []), 99), "max_ms": round(max(max(r) for r in rs) * 1e3, 3),
                       "mean_ms": round(float(np.mean(sum(rs, []))) * 1e3, 3),
                       "rounds": [{"p50_ms": pct(r, 50), "p99_ms": pct(r, 99)} for r in rs]}
                for name, rs in samples.items()}
    finally:
        for cl in clients.values():
            cl.close()

    # ---- throughput: concurrent threads, fixed wall time ----
    for s in SIZES:
        for c in contenders:
            res = throughput(c, bodies[c["name"]][s], spec["threads"], spec["seconds"], spec["max_throughput_requests"],
                             rds)
            out["throughput"].setdefault(str(s), {})[c["name"]] = res
            print(f"[client] {s:>3} entit{'y' if s == 1 else 'ies'} {c['name']:<11} throughput: "
                  f"{res['requests_per_s']:.0f} req/s (server CPU {res['server_cpu_s_per_wall_s']:.2f} core)",
                  file=sys.stderr, flush=True)
            if c["log"]:
                check_and_drop_log(c["name"], res["requests"] + res["warmup_requests"], f"throughput {s}")
    Path(out_path).write_text(json.dumps(out, indent=1))
    return 0


def throughput(c: dict, bodies: List[bytes], threads: int, seconds: float, cap: int, rds) -> Dict[str, object]:
    import httpx

    url = c["url"]
    clients = [httpx.Client(timeout=60.0) for _ in range(threads)]
    warm = 3
    for i, cl in enumerate(clients):  # open the connections
        for k in range(warm):
            _post(cl, url, bodies[(i * warm + k) % len(bodies)])
    barrier = threading.Barrier(threads + 1)
    deadline = [0.0]
    lat: List[List[float]] = [[] for _ in range(threads)]
    errors: List[str] = []
    ends = [0.0] * threads
    per_thread_cap = -(-cap // threads)

    def work(i: int):
        cl, xs, pc = clients[i], lat[i], time.perf_counter
        j = i
        barrier.wait()
        try:
            while len(xs) < per_thread_cap and pc() < deadline[0]:
                b = bodies[j % len(bodies)]
                j += threads
                t0 = pc()
                r = cl.post(url, content=b, headers=JSON_HEADERS)
                r.read()
                xs.append(pc() - t0)
                if r.status_code != 200:
                    errors.append(f"HTTP {r.status_code}")
                    break
        except Exception as exc:  # noqa: BLE001 - recorded, reported
            errors.append(f"{type(exc).__name__}: {exc}")
        ends[i] = pc()

    ts = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
    for t in ts:
        t.start()
    cpu0, rcpu0, my0 = group_cpu_seconds(c["pgid"]), redis_cpu(rds), os.times()
    deadline[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    barrier.wait()
    for t in ts:
        t.join(timeout=seconds + 120)
    wall = max(ends) - t0
    cpu1, rcpu1, my1 = group_cpu_seconds(c["pgid"]), redis_cpu(rds), os.times()
    for cl in clients:
        cl.close()
    allx = sum(lat, [])
    done = len(allx)
    return {"threads": threads, "requests": done, "warmup_requests": warm * threads, "wall_s": round(wall, 3),
            "requests_per_s": round(done / wall, 1) if wall > 0 else None, "errors": errors[:5],
            "p50_ms_under_load": pct(allx, 50) if allx else None, "p99_ms_under_load": pct(allx, 99) if allx else None,
            "server_cpu_s": round(cpu1 - cpu0, 2), "server_cpu_s_per_wall_s": round((cpu1 - cpu0) / wall, 2),
            "server_cpu_ms_per_request": round((cpu1 - cpu0) / done * 1e3, 3) if done else None,
            "redis_cpu_s": round(rcpu1 - rcpu0, 2),
            "client_cpu_s": round((my1.user - my0.user) + (my1.system - my0.system), 2),
            "loadavg_after": loadavg()}


# -- equality of the two servers ----------------------------------------------------------------------
def check_equal(ours_url: str, feast_url: str, entities: int, request_ms: int, sample: int = 200) -> Dict[str, object]:
    import httpx

    from bench.common import compare_numeric

    rng = np.random.default_rng(SEED + 3)
    ids = rng.choice(entities, sample, replace=False).tolist()
    mine: Dict[str, List] = {}
    theirs: Dict[str, List] = {}
    order_kept = {"ours": True, "feast": True}
    with httpx.Client(timeout=60.0) as cl:
        for lo in range(0, sample, 100):
            chunk = ids[lo:lo + 100]
            a = _post(cl, ours_url, body("ours", chunk, request_ms)).json()
            b = _post(cl, feast_url, body("feast", chunk, request_ms)).json()
            ra = a["results"]
            order_kept["ours"] &= ra["user_id"] == chunk
            for k, v in ra.items():
                mine.setdefault(k, []).extend(v)
            names = b["metadata"]["feature_names"]
            for name, col in zip(names, b["results"]):
                theirs.setdefault(name, []).extend(col["values"])
            order_kept["feast"] &= theirs["user_id"][lo:lo + 100] == chunk
        # one single-entity request each, too
        a1 = _post(cl, ours_url, body("ours", ids[:1], request_ms)).json()["results"]
        b1 = _post(cl, feast_url, body("feast", ids[:1], request_ms)).json()
    pos_a = {k: i for i, k in enumerate(mine["user_id"])}
    pos_b = {k: i for i, k in enumerate(theirs["user_id"])}
    per = []
    for i in range(VIEWS):
        for j in range(COLS):
            xa = [mine[f"v{i}_f{j}"][pos_a[k]] for k in ids]
            xb = [theirs[f"v{i}__f{j}"][pos_b[k]] for k in ids]
            per.append(compare_numeric([np.nan if x is None else x for x in xa],
                                       [np.nan if x is None else x for x in xb]))
    single = [a1[f"v{i}_f{j}"][0] for i in range(VIEWS) for j in range(COLS)]
    single_f = {n: col["values"][0] for n, col in zip(b1["metadata"]["feature_names"], b1["results"])}
    single_eq = single == [single_f[f"v{i}__f{j}"] for i in range(VIEWS) for j in range(COLS)]
    nonnull = sum(1 for i in range(VIEWS) for j in range(COLS) for x in mine[f"v{i}_f{j}"] if x is not None)
    return {"equal": all(c["equal"] for c in per) and single_eq, "entities": sample,
            "values": sample * VIEWS * COLS, "mismatches": sum(c["mismatches"] for c in per),
            "ours_nonnull": nonnull, "single_entity_equal": single_eq, "row_order_kept": order_kept}


# -- in-process profile of our ASGI app ---------------------------------------------------------------
def profile_ours(fs, entities: int, request_ms: int, n1: int = 400, n100: int = 60) -> Dict[str, object]:
    """Drive ``create_app(fs)`` on one thread (FastAPI's threadpool inlined) with and without the
    profiler: per-request server work without uvicorn's HTTP parsing and sockets, and where it goes."""
    import asyncio
    import cProfile
    import io
    import pstats

    import fastapi.routing as fr

    from featurestore import serving_log
    from featurestore.server import create_app

    orig = fr.run_in_threadpool

    async def inline(func, *args, **kwargs):
        return func(*args, **kwargs)

    fr.run_in_threadpool = inline
    rng = np.random.default_rng(SEED + 11)
    out: Dict[str, object] = {}
    try:
        app = create_app(fs)

        async def call(payload: bytes):
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/get-online-features", "raw_path": b"/get-online-features",
                     "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
                     "headers": [(b"content-type", b"application/json"),
                                 (b"content-length", str(len(payload)).encode())]}
            state = {"sent": False, "status": None}
            never = asyncio.Event()

            async def receive():
                if not state["sent"]:
                    state["sent"] = True
                    return {"type": "http.request", "body": payload, "more_body": False}
                await never.wait()

            async def send(msg):
                if msg["type"] == "http.response.start":
                    state["status"] = msg["status"]

            await app(scope, receive, send)
            if state["status"] != 200:
                raise RuntimeError(f"in-process call: HTTP {state['status']}")

        async def loop(payloads):
            for p in payloads:
                await call(p)

        for size, count in ((1, n1), (100, n100)):
            for log_flag in (False, True):
                name = f"{size} entit{'y' if size == 1 else 'ies'}{', log' if log_flag else ''}"
                payloads = [body("ours", rng.integers(0, entities, size).tolist(), request_ms, log_flag)
                            for _ in range(count)]
                asyncio.run(loop(payloads[: max(5, count // 10)]))  # warm-up
                times = []

                async def timed_loop():
                    for p in payloads:
                        t0 = time.perf_counter()
                        await call(p)
                        times.append(time.perf_counter() - t0)

                pauses: List[float] = []
                gc_t0 = [0.0]

                def on_gc(phase, info):
                    if phase == "start":
                        gc_t0[0] = time.perf_counter()
                    else:
                        pauses.append(time.perf_counter() - gc_t0[0])

                gc.collect()
                gc.callbacks.append(on_gc)
                try:
                    asyncio.run(timed_loop())
                finally:
                    gc.callbacks.remove(on_gc)
                prof = cProfile.Profile()
                gc.collect()
                prof.enable()
                asyncio.run(loop(payloads))
                prof.disable()
                st = pstats.Stats(prof)
                total = sum(v[2] for v in st.stats.values())  # total tottime = profiled time

                def cum(file_part: str, func: str) -> float:
                    return sum(v[3] for (f, _, fn), v in st.stats.items() if fn == func and file_part in f)

                parts = {
                    "FeatureStore.get_online_features (all)": cum("featurestore/store.py", "get_online_features"),
                    "lookup (in it)": cum("stores/online_redis.py", "lookup"),
                    "Redis MGET (in lookup)": cum("stores/online_redis.py", "get_many"),
                    "log: build_record": cum("serving_log.py", "build_record"),
                    "log: XADD": cum("serving_log.py", "write"),
                    "handler _json_safe": cum("featurestore/server.py", "_json_safe"),
                    "FastAPI: body read + validate": cum("starlette/requests.py", "body")
                    + cum("fastapi/dependencies/utils.py", "solve_dependencies"),
                    "FastAPI: response_model validate + JSON": cum("fastapi/routing.py", "serialize_response"),
                }
                s = io.StringIO()
                st.stream = s
                st.sort_stats("tottime").print_stats(18)
                table = "\n".join(line for line in s.getvalue().splitlines() if line.strip())
                table = table[table.find("ncalls"):] if "ncalls" in table else table
                out[name] = {"requests": count, "in_process_p50_ms": pct(times, 50), "in_process_p99_ms": pct(times, 99),
                             "in_process_max_ms": round(max(times) * 1e3, 3),
                             "gc": {"collections": len(pauses), "total_ms": round(sum(pauses) * 1e3, 2),
                                    "max_pause_ms": round(max(pauses, default=0.0) * 1e3, 2)},
                             "profiled_ms_per_request": round(total / count * 1e3, 3),
                             "share_of_profiled_time": {k: round(v / total, 3) for k, v in parts.items()},
                             "top_by_tottime": table}
        fs.online_store().client.unlink(serving_log.stream_key(fs.config.project, serving_log.ADHOC))
    finally:
        fr.run_in_threadpool = orig
    return out


# -- orchestration ------------------------------------------------------------------------------------
def run(args) -> Dict[str, object]:
    import contextlib
    import io
    import shutil
    import warnings

    import pandas as pd
    import redis

    from bench import online as bo
    from featurestore import serving_log
    from featurestore.stores import online_redis as orr

    warnings.filterwarnings("ignore", category=DeprecationWarning)
    url = bo.redis_url()
    pid = os.getpid()
    project, fproject = f"bench_http_{pid}", f"bench_http_feast_{pid}"
    base = DATA_ROOT / "http"
    path = base / "data" / f"profile-{args.entities}.parquet"
    work = base / f"run-{pid}"
    work.mkdir(parents=True, exist_ok=True)
    request_ms = bo.REQUEST_MS
    doc: Dict[str, object] = {"redis_url": url, "project": project, "feast_project": fproject,
                              "params": {"entities": args.entities, "events_per_entity": 12, "views": VIEWS,
                                         "features_per_view": COLS, "requests": args.requests, "rounds": args.rounds,
                                         "warmup": args.warmup, "threads": args.threads, "seconds": args.seconds,
                                         "max_throughput_requests": args.max_throughput_requests, "seed": SEED,
                                         "request_time_ms": request_ms}}
    rds = redis.Redis.from_url(url)
    rds.ping()
    servers: List[Server] = []
    feast_store = None
    env = dict(os.environ, FEATURESTORE_REDIS_URL=url, PYTHONUNBUFFERED="1")
    venv_bin = Path(sys.executable).parent
    try:
        n_events = bo.generate(path, args.entities, 12)
        doc["params"]["events"] = n_events
        fs = bo.make_store(work, path, project)
        t0 = time.perf_counter()
        fs.backfill()
        fs.materialize(end=bo.END_MS)
        doc["setup"] = {"ours_backfill_materialize_s": round(time.perf_counter() - t0, 2),
                        "ours_keys": sum(1 for _ in rds.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*", count=5000))}
        log(f"http: ours backfilled + materialized in {doc['setup']['ours_backfill_materialize_s']}s "
            f"({doc['setup']['ours_keys']:,} keys)")

        port = _free_port()
        ours_srv = Server(OURS, [str(venv_bin / "featurestore"), "serve", "--repo", str(work / "ours"), "--host",
                                 "127.0.0.1", "--port", str(port)], ROOT, env, port, work / "ours-server.log")
        servers.append(ours_srv)
        feast_srv = None
        if not args.no_feast:
            try:
                feast_store = bo.make_feast(work, path, fproject, "redis")
                t0 = time.perf_counter()
                with contextlib.redirect_stdout(io.StringIO()):
                    feast_store.materialize(
                        start_date=pd.Timestamp(bo.END_MS - 4 * bo.DAY_MS, unit="ms", tz="UTC").to_pydatetime(),
                        end_date=pd.Timestamp(bo.END_MS + 1000, unit="ms", tz="UTC").to_pydatetime())
                doc["setup"]["feast_materialize_s"] = round(time.perf_counter() - t0, 2)
                doc["setup"]["feast_keys"] = sum(1 for _ in rds.scan_iter(match=f"*{fproject}", count=5000))
                log(f"http: Feast materialized in {doc['setup']['feast_materialize_s']}s")
                port = _free_port()
                feast_srv = Server(FEAST, [str(venv_bin / "feast"), "-c", str(work / "feast_redis"), "serve", "-h",
                                           "127.0.0.1", "-p", str(port), "-w", "1", "--no-access-log",
                                           "--max-requests", "0"], work / "feast_redis", env, port,
                                   work / "feast-server.log")
                servers.append(feast_srv)
            except Exception as exc:  # noqa: BLE001 - report why, benchmark ours anyway
                doc["feast_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"
                log(f"http: Feast setup failed: {doc['feast_error']}")
        for srv in list(servers):
            try:
                doc.setdefault("server_start_s", {})[srv.name] = round(srv.wait_healthy(), 2)
            except RuntimeError as exc:
                if srv is ours_srv:
                    raise
                doc["feast_error"] = f"feast serve did not come up: {str(exc)[:600]}"
                log(f"http: {doc['feast_error']}")
                srv.stop()
                servers.remove(srv)
                feast_srv = None
        doc["servers"] = {s.name: {"cmd": " ".join(s.cmd[1:] if s.cmd[0].startswith(str(venv_bin)) else s.cmd),
                                   "pid": s.proc.pid} for s in servers}
        log(f"http: servers up {doc.get('server_start_s')}")

        ours_url = ours_srv.base + "/get-online-features"
        if feast_srv is not None:
            doc["equality"] = check_equal(ours_url, feast_srv.base + "/get-online-features", args.entities, request_ms)
            log(f"http: ours vs Feast values equal: {doc['equality']['equal']} ({doc['equality']['values']:,} values)")
        # a logged request: request_id back, one stream entry
        import httpx

        stream = serving_log.stream_key(project, serving_log.ADHOC)
        rds.unlink(stream)
        r = _post(httpx, ours_url, body("ours", [1, 2], request_ms, True)).json()
        doc["log_smoke"] = {"request_id": r.get("request_id"), "stream_entries": rds.xlen(stream)}
        rds.unlink(stream)

        contenders = [{"name": OURS, "url": ours_url, "kind": "ours", "log": False, "pgid": ours_srv.pgid},
                      {"name": OURS_LOG, "url": ours_url, "kind": "ours", "log": True, "pgid": ours_srv.pgid}]
        if feast_srv is not None:
            contenders.append({"name": FEAST, "url": feast_srv.base + "/get-online-features", "kind": "feast",
                               "log": False, "pgid": feast_srv.pgid})
        spec = {"contenders": contenders, "redis_url": url, "log_stream": stream, "entities": args.entities,
                "request_ms": request_ms, "requests": args.requests, "rounds": args.rounds, "warmup": args.warmup,
                "threads": args.threads, "seconds": args.seconds,
                "max_throughput_requests": args.max_throughput_requests}
        spec_path, out_path = work / "client-spec.json", work / "client-out.json"
        spec_path.write_text(json.dumps(spec))
        rss_before = {s.name: group_rss_mib(s.pgid) for s in servers}
        log(f"http: client process: {len(contenders)} contenders x sizes {SIZES}, {args.requests} requests each, "
            f"then {args.threads} threads x {args.seconds}s")
        t0 = time.perf_counter()
        cp = subprocess.run([sys.executable, "-m", "bench.http", "--client", str(spec_path), "--client-out",
                             str(out_path)], cwd=str(ROOT), env=env, timeout=3600)
        if cp.returncode != 0:
            raise RuntimeError(f"client process failed with {cp.returncode}")
        doc["client_wall_s"] = round(time.perf_counter() - t0, 1)
        doc.update(json.loads(out_path.read_text()))
        doc["server_rss_mib"] = {s.name: {"before_client": rss_before[s.name], "after_client": group_rss_mib(s.pgid)}
                                 for s in servers}
        doc["source_hashes_after_client"] = source_hashes()
        doc["server_exit"] = {}
        for srv in servers:
            doc["server_exit"][srv.name] = {"returncode": srv.stop(), "log_tail": srv.tail(600)}
        servers.clear()
        if not args.no_profile:
            log("http: in-process profile of our app (fresh process)")
            prof_out = work / "profile-out.json"
            cp = subprocess.run([sys.executable, "-m", "bench.http", "--profile-repo", str(work / "ours"),
                                 "--profile-out", str(prof_out), "--entities", str(args.entities),
                                 "--request-ms", str(request_ms)], cwd=str(ROOT), env=env, timeout=1800)
            if cp.returncode != 0:
                raise RuntimeError(f"profile process failed with {cp.returncode}")
            doc["profile_ours"] = json.loads(prof_out.read_text())
    finally:
        for srv in servers:
            srv.stop()
        cleanup = {}
        try:
            cleanup["ours_keys_deleted"] = bo.drop_keys(rds, f"{orr.KEY_PREFIX}:{project}:*")
            if feast_store is not None:
                try:
                    feast_store.teardown()
                except Exception as exc:  # noqa: BLE001
                    cleanup["feast_teardown_error"] = str(exc)[:200]
            cleanup["feast_keys_deleted_after_teardown"] = bo.drop_keys(rds, f"*{fproject}")
            cleanup["left"] = {"ours": sum(1 for _ in rds.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*", count=5000)),
                               "feast": sum(1 for _ in rds.scan_iter(match=f"*{fproject}", count=5000))}
        finally:
            rds.close()
            doc["cleanup"] = cleanup
            shutil.rmtree(work, ignore_errors=True)
    return doc


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="HTTP lookup benchmark: our server vs Feast's Python feature server")
    ap.add_argument("--requests", type=int, default=2000, help="sequential requests per contender and size")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved rounds the requests are split into")
    ap.add_argument("--warmup", type=int, default=200, help="warm-up requests per contender and size")
    ap.add_argument("--threads", type=int, default=8, help="client threads for the throughput runs")
    ap.add_argument("--seconds", type=float, default=10.0, help="wall time of each throughput run")
    ap.add_argument("--max-throughput-requests", type=int, default=100_000, help="cap per throughput run")
    ap.add_argument("--entities", type=int, default=20_000)
    ap.add_argument("--no-feast", action="store_true")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--name", default="http", help="result file name under bench/results")
    ap.add_argument("--client", help=argparse.SUPPRESS)
    ap.add_argument("--client-out", help=argparse.SUPPRESS)
    ap.add_argument("--profile-repo", help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    ap.add_argument("--request-ms", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.client:
        return client_main(args.client, args.client_out)
    if args.profile_repo:
        from featurestore import FeatureStore

        fs = FeatureStore(args.profile_repo)
        fs.repo  # noqa: B018 - load the definitions first, as `featurestore serve` does
        Path(args.profile_out).write_text(json.dumps(profile_ours(fs, args.entities, args.request_ms), indent=1))
        return 0

    def _term(signum, frame):  # SIGTERM -> SystemExit, so the finally blocks stop the servers
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _term)
    hashes = source_hashes()
    doc: Dict[str, object] = {"name": args.name, "command": " ".join(["python -m bench.http", *(
        argv if argv is not None else sys.argv[1:])]), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_notes(), "loadavg_start": loadavg(), "source_fingerprint": source_fingerprint(hashes)}
    from bench.online import redis_url

    doc["redis_version"] = redis_version(redis_url())
    t0 = time.perf_counter()
    doc.update(run(args))
    doc["wall_s"] = round(time.perf_counter() - t0, 1)
    doc["loadavg_end"] = loadavg()
    doc["git_end"] = machine_notes()["git"]
    mid = doc.pop("source_hashes_after_client", None) or hashes
    end = source_hashes()
    changed = changed_files(hashes, end)
    if changed:
        doc["source_changed_during_run"] = changed
        # the servers import the code when they start; the profile process after the HTTP runs
        doc["source_changed_during_http_runs"] = changed_files(hashes, mid)
        doc["source_changed_before_or_during_profile"] = changed_files(mid, end)
    doc["observations"] = observations(doc)
    path = write_results(args.name, doc, markdown(doc, method=(__doc__ or "").split("\n\n", 1)[1].strip()))
    log(f"http: wrote {path} and {path.with_suffix('.json')}")
    print(markdown(doc, method=""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
