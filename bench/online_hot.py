"""Online lookups of hot entities: latency as one entity's history grows, Redis memory per entity.

Data (``featurestore.datagen``, seeded), the example repo's definitions (``definitions/``: views
``user_spend``, ``user_profile``, ``merchant_activity``), all events in the 7 days before ``END``:

* a background population: 200k transactions of 5,000 users at 500 merchants (Zipf-skewed: its busiest
  merchants and users are dense, most users sparse);
* for every size N (100, 1k, 10k, 100k, 300k): a hot merchant ``m_hot_<N>`` with N transactions of up to
  100k users, and a hot user ``u_hot_<N>`` with N transactions at up to 1,000 merchants.

``materialize(end=END - 1h)`` loads Redis (the production form: what requests at or after its end need;
events after it are stored too), then requests are made at times uniform in ``[END - 1h, END)``:

* **hot merchant**: ``get_online_features`` of ``m_hot_<N>``, the 5 windowed features of
  ``merchant_activity`` (count 1h, sum 1d, count_distinct 1h, variance 7d, min 1d): every window's edges
  hold events (the head and tail fragments are read raw). Same request times for every size; sizes
  interleaved round by round.
  Also shown: the Redis part alone (the markers and read scripts ours sends, no decoding).
* **hot user**: the same for ``u_hot_<N>`` and the 10 features of ``user_spend`` (windows 10m..7d and
  the unbounded ``tx_count_lifetime``: a prefix plus tiles).
* **100 entities**: the ``fraud_model_v1`` service (14 features of the 3 views, windowed and latest) for
  100 (user, merchant) pairs of the background population; floor: one pipelined plain command per
  (view, entity) plus the markers (the least a constant-round-trip lookup sends).
* **memory**: ``MEMORY USAGE <key> SAMPLES 0`` summed over the entity's keys, per example view, for the
  entities with 1k and 100k events.
* **before**: the same data, lookups and memory with the code of commit ``bb50676`` (the last one before
  the partial-state rewrite), checked out in a temporary git worktree and run in a subprocess
  (``bench/online_before.py``); nothing of it is committed.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

from bench.common import DATA_ROOT, ROOT, drop_keys, log, percentile, redis_url, summarize, timed

SIZES = {"tiny": (100, 1_000, 10_000), "small": (100, 1_000, 10_000, 100_000, 300_000),
         "full": (100, 1_000, 10_000, 100_000, 300_000)}
LOOKUPS = {"tiny": 300, "small": 1_000, "full": 2_000}
ROUNDS = 3
SEED = 7311
END = pd.Timestamp("2026-11-01T00:00:00", tz="UTC")
END_MS = END.value // 1_000_000
HOUR_MS, DAY_MS = 3_600_000, 86_400_000
MATERIALIZE_END_MS = END_MS - HOUR_MS  # requests at or after it are answered; they fall in the last hour
BEFORE_COMMIT = "bb50676"
MEMORY_SIZES = (1_000, 100_000)
MERCHANT_FEATURES = ["merchant_tx_count_1h", "merchant_volume_1d", "merchant_distinct_users_1h",
                     "merchant_amount_var_7d", "merchant_min_amount_1d"]
SERVICE = "fraud_model_v1"


# -- data ---------------------------------------------------------------------------------------------
def generate(data_dir: Path, sizes: Sequence[int]) -> Dict[str, object]:
    """Write the transactions (see the module docstring) once; returns their shape."""
    from featurestore import datagen

    meta_path = data_dir / "shape.json"
    if meta_path.exists():
        shape = json.loads(meta_path.read_text())
        if shape.get("sizes") == list(sizes):
            return shape
    frames = [datagen.generate_transactions(events=200_000, users=5_000, merchants=500, days=7, seed=SEED, end=END)]
    frames[0]["event_id"] = "bg_" + frames[0]["event_id"]
    shape: Dict[str, object] = {"sizes": list(sizes), "background_events": len(frames[0]), "hot": {}}
    for n in sizes:
        m = datagen.generate_transactions(events=n, users=min(100_000, n), merchants=1, days=7, seed=SEED + n, end=END)
        m["merchant_id"] = f"m_hot_{n}"
        m["event_id"] = f"m{n}_" + m["event_id"]
        u = datagen.generate_transactions(events=n, users=1, merchants=min(1_000, n), days=7, seed=SEED + 7 * n,
                                          end=END)
        u["user_id"] = f"u_hot_{n}"
        u["event_id"] = f"u{n}_" + u["event_id"]
        frames += [m, u]
        shape["hot"][str(n)] = {"merchant_distinct_users": int(m["user_id"].nunique()),
                                "user_distinct_merchants": int(u["merchant_id"].nunique())}
    df = pd.concat(frames, ignore_index=True)
    shape["events"] = len(df)
    datagen.write_parquet(data_dir / "transactions", df=df, files=4)
    meta_path.write_text(json.dumps(shape))
    return shape


def make_repo(work: Path, data_dir: Path) -> Path:
    """A copy of the example repo whose batch face is the generated data."""
    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(ROOT / "definitions", repo / "definitions", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "transactions").symlink_to(data_dir / "transactions")
    (repo / "featurestore.yaml").write_text("project: bench_hot\ndefinitions: definitions\n")
    return repo


def open_store(repo: Path, project: str):
    from featurestore import FeatureStore
    from featurestore.config import load_config

    cfg = dataclasses.replace(load_config(repo), project=project, redis_url=redis_url())
    return FeatureStore(repo, config=cfg)


# -- measuring ----------------------------------------------------------------------------------------
def memory_of(client, project: str, view: str, entity: list) -> Dict[str, object]:
    """Bytes Redis uses for one entity of one view (MEMORY USAGE, every nested value sampled), and what
    its keys hold."""
    from featurestore.stores import online_redis as orr

    base = orr.entity_base(project, view, entity)
    out: Dict[str, object] = {"bytes": 0, "keys": {}}
    for key, kind in zip(orr.entity_keys(base), ("tiles", "raw", "prefixes")):
        used = client.execute_command("MEMORY", "USAGE", key, "SAMPLES", "0")
        if used is None:
            continue
        size = client.hlen(key) if kind == "tiles" else client.zcard(key)
        enc = client.object("encoding", key)
        out["keys"][kind] = {"bytes": int(used), "entries": int(size),
                             "encoding": enc.decode() if isinstance(enc, bytes) else enc}
        out["bytes"] += int(used)
    return out


# -- the run ------------------------------------------------------------------------------------------
def wall_and_cpu(fn, args: list, warmup: int = 100):
    """:func:`bench.common.latencies` (wall seconds of each call) and the client process's CPU seconds of
    each call (``time.process_time``: on a shared machine much steadier than the wall, which waits for the
    scheduler; the lookup's own cost, without Redis's)."""
    for a in args[:warmup]:
        fn(a)
    wall, cpu = [], []
    pc, pt = time.perf_counter, time.process_time
    for a in args:
        t0, c0 = pc(), pt()
        fn(a)
        cpu.append(pt() - c0)
        wall.append(pc() - t0)
    return wall, cpu


def run(scale: str, repeat: int = 3, profile: bool = True, before: bool = True) -> Dict[str, object]:
    import redis

    from featurestore import online as ol
    from featurestore.stores import online_redis as orr

    sizes = SIZES[scale]
    n_lookups = LOOKUPS[scale]
    work = DATA_ROOT / f"online-hot-{scale}"
    data_dir = work / "data"
    shape = generate(data_dir, sizes)
    repo = make_repo(work, data_dir)
    project = f"bench_hot_{os.getpid()}"
    client = redis.Redis.from_url(redis_url())
    client.ping()
    fs = open_store(repo, project)
    out: Dict[str, object] = {"scale": scale, "sizes": list(sizes), "shape": shape, "project": project,
                              "params": {"lookups": n_lookups, "rounds": ROUNDS, "seed": SEED, "end": str(END)}}
    try:
        t_mat, results = timed(lambda: fs.materialize(end=MATERIALIZE_END_MS))
        out["materialize"] = {"seconds": round(t_mat, 3),
                              "views": {r.view: {"entities": r.entities, "events": r.events, "tiled": r.tiled,
                                                 "seconds": round(r.seconds, 3)} for r in results}}
        log(f"online-hot: materialize(end=END) {t_mat:.1f}s: "
            + ", ".join(f"{r.view} {r.entities} entities ({r.tiled} tiled) {r.seconds:.1f}s" for r in results))
        # The floor of the hot view: the very keys, fields and members materialize wrote for
        # merchant_activity (read back, untimed), written again with pipelined plain commands.
        from bench.online import read_back, write_image

        image, value_bytes = read_back(client, f"{orr.view_prefix(project, 'merchant_activity')}*")
        t_floor, _ = timed(lambda: write_image(client, image))
        out["materialize"]["floor_merchant_activity"] = {"seconds": round(t_floor, 3), "keys": len(image),
                                                         "bytes": value_bytes}
        log(f"online-hot: floor of merchant_activity {t_floor:.1f}s ({len(image):,} keys, {value_bytes:,} bytes)")
        del image

        rng = np.random.default_rng(SEED)
        qs = (MATERIALIZE_END_MS + rng.integers(0, HOUR_MS, n_lookups)).tolist()
        merchant_refs = [f"merchant_activity:{f}" for f in MERCHANT_FEATURES]
        user_refs = [f"user_spend:{f}" for f in fs.repo.views["user_spend"].feature_names]
        online = orr.for_store(fs)

        def lookup(refs, key, entity):
            def fn(q):
                return fs.get_online_features([{key: entity}], features=refs, request_time=q).to_dict()
            return fn

        def redis_part(view, refs, entity):
            """What ours sends for this lookup (markers + one read script), executed, not decoded."""
            cv = fs.compiled(view)
            windows = sorted({p.window_ms for p in ol.plan_features(cv, [r.split(":")[1] for r in refs])},
                             key=lambda w: (w is None, w or 0))
            base = online.base(view, [entity])

            def fn(q):
                return online.read([view], [(base, ol.read_plan(windows, q).script_args())])
            return fn

        # values: every hot lookup is checked against get_historical_features at the same times
        out["checks"] = check_against_offline(fs, sizes, merchant_refs, user_refs, qs[:20])

        cases = {}
        for n in sizes:
            cases[("merchant", n, "ours")] = lookup(merchant_refs, "merchant_id", f"m_hot_{n}")
            cases[("merchant", n, "redis part alone")] = redis_part("merchant_activity", merchant_refs, f"m_hot_{n}")
            cases[("user", n, "ours")] = lookup(user_refs, "user_id", f"u_hot_{n}")
        rounds: Dict[tuple, List[List[float]]] = {k: [] for k in cases}
        cpu_rounds: Dict[tuple, List[List[float]]] = {k: [] for k in cases}
        for r in range(ROUNDS):
            for k, fn in cases.items():
                gc.collect()
                xs, cs = wall_and_cpu(fn, qs, warmup=20)
                rounds[k].append(xs)
                cpu_rounds[k].append(cs)
                log(f"  {k[0]} {k[1]:,} events {k[2]}: p50 {percentile(xs, 50) * 1e3:.3f} ms, "
                    f"p99 {percentile(xs, 99) * 1e3:.3f} ms (round {r + 1})")
        hot: Dict[str, Dict[str, Dict[str, object]]] = {}
        for (kind, n, name), rs in rounds.items():
            hot.setdefault(kind, {}).setdefault(str(n), {})[name] = summarize(rs)
            hot[kind][str(n)][name + " client CPU"] = summarize(cpu_rounds[(kind, n, name)])
        out["hot"] = hot

        out["many"] = many_entities(fs, client, project, n_lookups, qs)

        out["memory"] = {}
        for n in MEMORY_SIZES:
            if n not in sizes:
                continue
            out["memory"][str(n)] = {
                "merchant_activity": memory_of(client, project, "merchant_activity", [f"m_hot_{n}"]),
                "user_spend": memory_of(client, project, "user_spend", [f"u_hot_{n}"]),
                "user_profile": memory_of(client, project, "user_profile", [f"u_hot_{n}"]),
            }

        if profile:
            from bench.pit import cprofile

            big = sizes[-1]
            fn = cases[("merchant", big, "ours")]
            out["cprofile_merchant_largest"] = cprofile(lambda: [fn(q) for q in qs[:300]], top=30)
            fn_u = cases[("user", big, "ours")]
            out["cprofile_user_largest"] = cprofile(lambda: [fn_u(q) for q in qs[:300]], top=30)
        if before:
            out["before"] = run_before(repo, sizes, qs, merchant_refs)
    finally:
        out["keys_deleted_after"] = drop_keys(client, f"{orr.KEY_PREFIX}:{project}:*")
        client.close()
    return out


def check_against_offline(fs, sizes, merchant_refs, user_refs, qs) -> Dict[str, object]:
    """Online values of the hot entities equal get_historical_features at the same request times
    (floats to 1e-9 relative, SPEC §3)."""
    checks = {}
    for kind, key, refs in (("merchant", "merchant_id", merchant_refs), ("user", "user_id", user_refs)):
        ents = [f"{kind[0]}_hot_{n}" for n in sizes]
        entity_df = pd.DataFrame([{key: e, "event_timestamp": pd.Timestamp(q, unit="ms", tz="UTC")}
                                  for e in ents for q in qs])
        offline = fs.get_historical_features(entity_df, features=refs)
        bad = total = refused = 0
        for i, row in enumerate(entity_df.to_dict("records")):
            resp = fs.get_online_features([{key: row[key]}], features=refs, request_time=row["event_timestamp"])
            got = resp.to_dict()
            refused += sum(s == "REFUSED" for v in resp.statuses().values() for s in v)
            for ref in refs:
                name = ref.split(":")[1]
                a, b = got[name][0], offline[name].iloc[i]
                total += 1
                if not _same(a, b):
                    bad += 1
        checks[kind] = {"values": total, "mismatches": bad, "refused": refused}
    return checks


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and a != a):
        return b is None or (isinstance(b, float) and b != b) or pd.isna(b)
    if b is None or pd.isna(b):
        return False
    if isinstance(a, float) or isinstance(b, float):
        return abs(float(a) - float(b)) <= 1e-9 * max(abs(float(a)), abs(float(b)), 1e-300)
    return a == b


def many_entities(fs, client, project: str, n_lookups: int, qs: List[int]) -> Dict[str, object]:
    """``fraud_model_v1`` for 1 and 100 (user, merchant) pairs of the background population."""
    from featurestore.stores import online_redis as orr

    users = [f"u{i:04d}" for i in range(5_000)]
    merchants = [f"m{i:04d}" for i in range(500)]
    rng = np.random.default_rng(SEED + 1)
    out: Dict[str, object] = {}
    views = ["user_spend", "user_profile", "merchant_activity"]
    for size in (1, 100):
        count = n_lookups if size == 1 else max(100, n_lookups // 5)  # 100 entities: fewer lookups per round
        batches = [[{"user_id": users[u], "merchant_id": merchants[m]}
                    for u, m in zip(rng.integers(0, len(users), size), rng.integers(0, len(merchants), size))]
                   for _ in range(count)]
        arg = list(zip(batches, qs[:count]))

        def ours(a):
            rows, q = a
            return fs.get_online_features(rows, feature_service=SERVICE, request_time=q).to_dict()

        def floor(a):
            rows, _ = a
            pipe = client.pipeline(transaction=False)
            pipe.hmget(orr.views_key(project), views)
            for row in rows:
                for v in views:
                    key = row["merchant_id"] if v == "merchant_activity" else row["user_id"]
                    pipe.hmget(orr.entity_keys(orr.entity_base(project, v, [key]))[0], "_", "T")
            return pipe.execute()

        contenders = {"ours": ours, "floor: pipelined HMGET per (view, entity) + markers": floor}
        rounds = {k: [] for k in contenders}
        cpu_rounds = {k: [] for k in contenders}
        for r in range(ROUNDS):
            for name, fn in contenders.items():
                gc.collect()
                xs, cs = wall_and_cpu(fn, arg, warmup=20)
                rounds[name].append(xs)
                cpu_rounds[name].append(cs)
                log(f"  {size} entit{'y' if size == 1 else 'ies'} {SERVICE} {name}: "
                    f"p50 {percentile(xs, 50) * 1e3:.3f} ms, p99 {percentile(xs, 99) * 1e3:.3f} ms (round {r + 1})")
        out[str(size)] = {k: summarize(v) for k, v in rounds.items()}
        out[str(size)]["ours: client CPU"] = summarize(cpu_rounds["ours"])
    # how dense the background is (what the 100-entity lookups read)
    dense = {}
    for v, ids in (("user_spend", users), ("merchant_activity", merchants)):
        pipe = client.pipeline(transaction=False)
        for e in ids:
            pipe.hexists(orr.entity_keys(orr.entity_base(project, v, [e]))[0], "T")
        flags = pipe.execute()
        dense[v] = f"{sum(flags)} of {len(ids)} entities tiled"
    out["background_density"] = dense
    return out


# -- before: the old format, from a worktree of BEFORE_COMMIT ----------------------------------------
def run_before(repo: Path, sizes, qs: List[int], merchant_refs: List[str]) -> Dict[str, object]:
    wt = Path(f"/tmp/fs-bench-before-{os.getpid()}")
    try:
        subprocess.run(["git", "worktree", "add", "--detach", str(wt), BEFORE_COMMIT], cwd=ROOT, check=True,
                       capture_output=True)
        spec = {"repo": str(repo), "project": f"bench_hot_before_{os.getpid()}", "redis_url": redis_url(),
                "end_ms": MATERIALIZE_END_MS, "sizes": list(sizes), "memory_sizes": list(MEMORY_SIZES), "qs": qs,
                "merchant_refs": merchant_refs, "worktree": str(wt), "rounds": ROUNDS}
        env = dict(os.environ, PYTHONPATH=str(wt))
        proc = subprocess.run([sys.executable, str(ROOT / "bench" / "online_before.py"), json.dumps(spec)],
                              cwd=str(wt), env=env, capture_output=True, text=True, timeout=3600)
        if proc.returncode != 0:
            return {"error": proc.stderr[-3000:]}
        for line in proc.stderr.splitlines():
            log("  before: " + line)
        return json.loads(proc.stdout)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(wt)], cwd=ROOT, capture_output=True)


# -- rendering ----------------------------------------------------------------------------------------
def render(r: dict, targets: dict):
    if "error" in r:
        return [f"### Online, hot entities: FAILED: {r['error']}", ""], ["```", r.get("traceback", ""), "```"]
    met = lambda ok: "**met**" if ok else "**missed**"  # noqa: E731
    sizes = r["sizes"]
    shape = r["shape"]
    s = [f"### Online, hot entities: one entity with 100 to {sizes[-1]:,} events in its 7 days", ""]
    s += [f"Example repo definitions; {shape['events']:,} transactions (datagen, seeded): a background of "
          f"{shape['background_events']:,} (5,000 users, 500 merchants) plus, per size N, a merchant `m_hot_N` and "
          f"a user `u_hot_N` with N transactions each in the 7 days before END; `materialize(end=END - 1h)` "
          f"({r['materialize']['seconds']:.1f} s); {r['params']['lookups']:,} lookups per round at request times "
          f"uniform in [END - 1h, END), {r['params']['rounds']} rounds interleaved (p50/p99: median over "
          "rounds). Values checked against `get_historical_features` at 20 request times per entity: "
          + "; ".join(f"{k} {v['mismatches']} mismatches of {v['values']:,} ({v.get('refused')} refused)"
                      for k, v in r["checks"].items())
          + ".", ""]
    before = r.get("before") or {}
    bl = before.get("lookups", {})
    s += ["| entity | events | ours p50 | ours p99 | p50 / p50 at 100 | client CPU p50 / p99 | CPU p50 / CPU p50 at 100 "
          f"| Redis part alone p50 / p99 | before ({BEFORE_COMMIT}) p50 / p99 | target |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for kind, label in (("merchant", "merchant, 5 features (1h-7d)"),
                        ("user", "user, `user_spend` (10 features, 10m-7d + lifetime)")):
        tbl = r["hot"][kind]
        base = tbl[str(sizes[0])]["ours"]["p50_ms"]
        cbase = tbl[str(sizes[0])].get("ours client CPU", {}).get("p50_ms")
        for n in sizes:
            x = tbl[str(n)]["ours"]
            c = tbl[str(n)].get("ours client CPU")
            cpu = (f"{c['p50_ms']:.3f} / {c['p99_ms']:.3f} ms | {c['p50_ms'] / cbase:.2f}x" if c else " | ")
            rp = tbl[str(n)].get("redis part alone")
            b = bl.get(str(n)) if kind == "merchant" else None
            tgt = ""
            if kind == "merchant":
                ok1 = x["p99_ms"] <= targets["online_p99_1_ms"]
                tgt = f"p99 <= 1 ms: {met(ok1)}"
                if n == sizes[-1]:
                    ratio = targets["online_hot_ratio"]
                    tgt += f"; p50 <= {ratio:g}x of 100: {met(x['p50_ms'] <= ratio * base)}"
                    if c:
                        tgt += f" (by client CPU: {met(c['p50_ms'] <= ratio * cbase)})"
            s.append(f"| {label} | {n:,} | {x['p50_ms']:.3f} ms | {x['p99_ms']:.3f} ms | {x['p50_ms'] / base:.2f}x | "
                     + cpu + " | "
                     + (f"{rp['p50_ms']:.3f} / {rp['p99_ms']:.3f} ms" if rp else "") + " | "
                     + (f"{b['p50_ms']:.3f} / {b['p99_ms']:.3f} ms ({b['n']} lookups)" if b else "") + f" | {tgt} |")
    if before.get("error"):
        s += ["", f"Before: FAILED: {before['error'][-300:]}"]
    s.append("")
    m = r["many"]
    s += [f"**`{SERVICE}` (14 features of 3 views, windowed and latest), background entities** "
          f"({', '.join(f'{k}: {v}' for k, v in m['background_density'].items())})", "",
          "| entities per lookup | contender | p50 | p99 | best-round p99 | target |", "|---|---|---|---|---|---|"]
    for size in ("1", "100"):
        for name, x in m[size].items():
            tgt = ""
            if name.startswith("ours"):
                lim = targets["online_p99_1_ms"] if size == "1" else targets["online_p99_100_ms"]
                tgt = f"p99 <= {lim:g} ms: {met(x['p99_ms'] <= lim)}"
            s.append(f"| {size} | {name} | {x['p50_ms']:.3f} ms | {x['p99_ms']:.3f} ms | {x['best_p99_ms']:.3f} ms "
                     f"| {tgt} |")
    s.append("")
    if r.get("memory"):
        bm = before.get("memory", {})
        s += ["**Redis memory per entity** (`MEMORY USAGE ... SAMPLES 0`, summed over the entity's keys)", "",
              "| view | events | after: bytes | after: keys (entries, encoding) | before: bytes | after / before |",
              "|---|---|---|---|---|---|"]
        for n, views in r["memory"].items():
            for view, x in views.items():
                keys = "; ".join(f"{k} {v['entries']:,} ({v['encoding']})" for k, v in x["keys"].items())
                b = bm.get(n, {}).get(view)
                s.append(f"| {view} | {int(n):,} | {x['bytes']:,} | {keys} | "
                         + (f"{b:,} | {x['bytes'] / b:.2f}x |" if b else " | |"))
        s.append("")
    d = ["### Online, hot entities: details", ""]
    d += [f"Materialize per view: {json.dumps(r['materialize']['views'])}. Data shape per size: "
          f"{json.dumps(shape['hot'])}.", ""]
    fl = r["materialize"].get("floor_merchant_activity")
    if fl:
        ours = r["materialize"]["views"]["merchant_activity"]["seconds"]
        d += [f"Materialize of `merchant_activity` (the hot-entity view) {ours:.1f} s against {fl['seconds']:.1f} s "
              f"for its pipelined plain-command floor (DEL/HSET/ZADD/PEXPIREAT of the same {fl['keys']:,} keys, "
              f"{fl['bytes']:,} bytes of fields and members, measured right after): "
              f"{fl['seconds'] / ours:.2f}x the floor's speed (target >= 0.5x).", ""]
    if before.get("materialize_seconds") is not None:
        d += [f"Before ({BEFORE_COMMIT}): materialize(end=END - 1h) {before['materialize_seconds']:.1f} s.", ""]
    for k, title in (("cprofile_merchant_largest", "cProfile: hot merchant, largest size, 300 lookups"),
                     ("cprofile_user_largest", "cProfile: hot user, largest size, 300 lookups")):
        if k in r:
            d += [f"<details><summary>{title}</summary>", "", "```", r[k], "```", "</details>", ""]
    return s, d
