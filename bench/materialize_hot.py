"""Materialize of hot data against its plain-command floor (issue 11: target >= 0.5x the floor's speed).

Data (``featurestore.datagen``, seeded), the example repo's definitions, every event in the 7 days
before ``END``:

* ``--hot-keys`` hot merchants with ``--events-per-key`` transactions each (users drawn from up to 100k),
  and as many hot users with as many transactions each (at up to 1,000 merchants);
* a background of ``--background`` transactions of 5,000 users at 500 merchants (Zipf-skewed, datagen's
  default skew): most users sparse, the busiest merchants dense.

So the skew: the hot keys carry ``2 * hot_keys * events_per_key`` of the events, one key each
``events_per_key`` (default 10 x 20,000 + 10 x 20,000 + 100,000 background).

Per view (``merchant_activity``: count, sum, count_distinct, variance, min, first over 1 h..7 d;
``user_spend``: 10 features incl. the unbounded ``tx_count_lifetime``, which keeps prefixes) and per
code path, interleaved ``--repeat`` times: ``materialize(view, end=END - 1h)`` timed, then the floor:
the very keys, fields and members it wrote (read back, untimed) written again with pipelined plain
commands (DEL, HSET/ZADD, PEXPIREAT, 500 keys per round trip), no computation. Ratio = floor seconds /
ours seconds (1.0 = as fast as the floor). Code paths: ``vector`` (the default: tiles from DuckDB
partials, :mod:`featurestore.kernel.vector`) and ``per-entity`` (``FEATURESTORE_MATERIALIZE_VECTOR=0``:
the kernel's one-pass build of each entity, :mod:`featurestore.kernel.batch`), and ``vector-always``
(the vectorised build of kernel entities however few their events: ``online_materialize.VECTOR_EVENTS``
set to 0, the code before that threshold); the images of all are checked byte for byte equal.

    .venv/bin/python -m bench.materialize_hot [--hot-keys 10 --events-per-key 20000 --background 100000]
                                              [--repeat 2] [--paths vector,per-entity,vector-always]
                                              [--name materialize-hot] [--profile] [--image-out PATH]

``--image-out PATH``: every key of the first run of each view (its first path) written to ``PATH``,
one line per key and per field or member, sorted, the run's project name replaced by ``P`` and the
expiries relative to the earliest: two versions' images compare with ``cmp`` (:func:`dump_image`).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
from pathlib import Path

import pandas as pd

from bench.common import DATA_ROOT, ROOT, finish, log, measure_cpu, run_doc, run_header

SEED = 9127
END = pd.Timestamp("2026-11-01T00:00:00", tz="UTC")
END_MS = END.value // 1_000_000
MATERIALIZE_END_MS = END_MS - 3_600_000
VIEWS = ("merchant_activity", "user_spend")


def generate(data_dir: Path, hot_keys: int, per_key: int, background: int) -> dict:
    from featurestore import datagen

    meta = data_dir / "shape.json"
    want = {"hot_keys": hot_keys, "events_per_key": per_key, "background": background}
    if meta.exists() and json.loads(meta.read_text()).get("params") == want:
        return json.loads(meta.read_text())
    frames = [datagen.generate_transactions(events=background, users=5_000, merchants=500, days=7, seed=SEED, end=END)]
    frames[0]["event_id"] = "bg_" + frames[0]["event_id"]
    for k in range(hot_keys):
        m = datagen.generate_transactions(events=per_key, users=min(100_000, per_key), merchants=1, days=7,
                                          seed=SEED + 2 * k + 1, end=END)
        m["merchant_id"] = f"m_hot_{k}"
        m["event_id"] = f"m{k}_" + m["event_id"]
        u = datagen.generate_transactions(events=per_key, users=1, merchants=min(1_000, per_key), days=7,
                                          seed=SEED + 2 * k + 2, end=END)
        u["user_id"] = f"u_hot_{k}"
        u["event_id"] = f"u{k}_" + u["event_id"]
        frames += [m, u]
    df = pd.concat(frames, ignore_index=True)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    datagen.write_parquet(data_dir / "transactions", df=df, files=4)
    shape = {"params": want, "events": len(df)}
    meta.write_text(json.dumps(shape))
    return shape


def make_repo(work: Path, data_dir: Path) -> Path:
    repo = work / "repo"
    if repo.exists():
        shutil.rmtree(repo)
    shutil.copytree(ROOT / "definitions", repo / "definitions", ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "data").mkdir(parents=True)
    (repo / "data" / "transactions").symlink_to(data_dir / "transactions")
    (repo / "featurestore.yaml").write_text("project: bench_mat\ndefinitions: definitions\n")
    return repo


def main(argv=None) -> int:
    import dataclasses

    import redis

    from bench.online import read_back, write_image, drop_keys
    from featurestore import FeatureStore
    from featurestore.config import load_config
    from featurestore.stores import online_redis as orr

    ap = argparse.ArgumentParser()
    ap.add_argument("--hot-keys", type=int, default=10)
    ap.add_argument("--events-per-key", type=int, default=20_000)
    ap.add_argument("--background", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--paths", default="vector,per-entity")
    ap.add_argument("--name", default="materialize-hot")
    ap.add_argument("--profile", action="store_true", help="cProfile one run of each path (not timed)")
    ap.add_argument("--image-out", type=Path, help="write the Redis image of each view's first run here")
    args = ap.parse_args(argv)
    url = os.environ.get("FEATURESTORE_REDIS_URL",
                         f"redis://127.0.0.1:{os.environ.get('FEATURESTORE_REDIS_PORT', '6390')}/0")
    work = DATA_ROOT / "materialize-hot"
    shape = generate(work / "data", args.hot_keys, args.events_per_key, args.background)
    repo = make_repo(work, work / "data")
    project = f"bench_mat_{os.getpid()}"
    cfg = dataclasses.replace(load_config(repo), project=project, redis_url=url)
    fs = FeatureStore(repo, config=cfg)
    client = redis.Redis.from_url(url)
    doc = run_doc("bench.materialize_hot", argv)
    paths = [p for p in args.paths.split(",") if p]
    runs = {v: {p: [] for p in paths} for v in VIEWS}
    floors = {v: {p: [] for p in paths} for v in VIEWS}
    images = {}
    profiles = {}
    if args.image_out:
        args.image_out.write_bytes(b"")

    from featurestore.stores import online_materialize as om
    threshold = om.VECTOR_EVENTS

    def materialize(view, path):
        os.environ["FEATURESTORE_MATERIALIZE_VECTOR"] = "0" if path == "per-entity" else "1"
        om.VECTOR_EVENTS = 0 if path == "vector-always" else threshold  # vector-always: however few events
        cost, (res,) = measure_cpu(client, lambda: fs.materialize(views=[view], end=MATERIALIZE_END_MS))
        return cost, res

    try:
        for rep in range(args.repeat):
            for view in VIEWS:
                for path in paths:
                    drop_keys(client, f"{orr.view_prefix(project, view)}*")
                    ours, res = materialize(view, path)
                    image, nbytes = read_back(client, f"{orr.view_prefix(project, view)}*")
                    fl, _ = measure_cpu(client, lambda: write_image(client, image))
                    secs, cpu, rcpu = ours["seconds"], ours["cpu"], ours["redis_cpu"]
                    floor, fcpu, frcpu = fl["seconds"], fl["cpu"], fl["redis_cpu"]
                    runs[view][path].append({**ours, "entities": res.entities, "tiled": res.tiled, "events": res.events})
                    floors[view][path].append({**fl, "keys": len(image), "bytes": nbytes})
                    log(f"{view} {path}: {secs:.2f}s (cpu {cpu:.2f}s + redis {rcpu:.2f}s), floor {floor:.2f}s "
                        f"(cpu {fcpu:.2f}s + redis {frcpu:.2f}s; {len(image):,} keys, {nbytes:,} bytes): "
                        f"{floor / secs:.2f}x wall, {(fcpu + frcpu) / (cpu + rcpu):.2f}x cpu")
                    if rep == 0:
                        canon = sorted((k, kind, sorted(c.items()) if isinstance(c, dict) else c)
                                       for k, kind, c, _ in image)
                        images.setdefault(view, {})[path] = hash(repr(canon))
                        if args.image_out and path == paths[0]:
                            with args.image_out.open("ab") as out:
                                dump_image(image, project.encode(), out)
                    del image
        if args.profile:
            for view in VIEWS:
                for path in paths:
                    prof = cProfile.Profile()
                    prof.enable()
                    materialize(view, path)
                    prof.disable()
                    s = io.StringIO()
                    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(25)
                    profiles[f"{view} {path}"] = s.getvalue()
    finally:
        for view in VIEWS:
            drop_keys(client, f"{orr.view_prefix(project, view)}*")
        client.hdel(orr.views_key(project), *VIEWS)
    doc.update(shape=shape, runs=runs, floors=floors, profiles=profiles,
               same_image={v: len(set(images.get(v, {}).values())) <= 1 for v in VIEWS})
    return finish(args.name, doc, render)


def dump_image(image, project: bytes, out) -> None:
    """Write ``image`` (:func:`bench.online.read_back`) to the binary file ``out`` deterministically: per
    key (``project`` replaced by ``P``) its type and expiry (ms after the image's earliest: materialize
    sets them from its own clock), then each field and value (hash) or member and score (sorted set),
    one ``repr`` per line, keys and fields sorted."""
    ats = [at for _, _, _, at in image if at is not None and at > 0]
    first = min(ats, default=0)
    for k, kind, content, at in sorted(image, key=lambda x: x[0]):
        out.write(b"%r %r %r\n" % (k.replace(project, b"P"), kind, at - first if at is not None and at > 0 else at))
        for f, v in sorted(content.items()):
            out.write(b"  %r %r\n" % (f, v))


def render(doc: dict) -> str:
    p = doc["shape"]["params"]
    lines = run_header(doc, "Materialize of hot data") + [
             f"Data: {doc['shape']['events']:,} transactions: {p['hot_keys']} hot merchants and {p['hot_keys']} hot "
             f"users with {p['events_per_key']:,} events each, plus {p['background']:,} background (5,000 users, "
             f"500 merchants, Zipf). `materialize(view, end=END - 1h)`.", "",
             "CPU s: this process's CPU (client: Python and DuckDB threads) + the Redis server's CPU (INFO cpu), "
             "measured around each materialize and each floor write; the CPU ratio is floor CPU / ours.", "",
             "| view | path | entities (tiled) | events | ours best s | floor s (same run) | ours / floor speed "
             "| ours CPU s (client + redis) | floor CPU s | CPU ratio | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for view, by_path in doc["runs"].items():
        for path, rs in by_path.items():
            if not rs:
                continue
            fl = doc["floors"][view][path]
            ratios = [f["seconds"] / r["seconds"] for r, f in zip(rs, fl)]
            best = max(range(len(rs)), key=lambda i: ratios[i])
            r, f = rs[best], fl[best]
            lines.append(f"| {view} | {path} | {r['entities']:,} ({r['tiled']:,}) | {r['events']:,} | {r['seconds']:.2f} "
                         f"| {f['seconds']:.2f} ({f['keys']:,} keys, {f['bytes'] / 2**20:.0f} MiB) | "
                         f"{ratios[best]:.2f}x (all: {', '.join(f'{x:.2f}' for x in ratios)}) | "
                         f"{_cpu(r)} | {_cpu(f)} | {_cpu_ratio(r, f)} | >= 0.5x "
                         f"{'met' if ratios[best] >= 0.5 else 'missed'} |")
    lines += ["", f"Same Redis image from both paths: {doc['same_image']}", ""]
    for name, text in doc.get("profiles", {}).items():
        lines += [f"### profile: {name}", "", "```", text.strip()[:6000], "```", ""]
    return "\n".join(lines) + "\n"


def _cpu(r: dict) -> str:
    if "cpu" not in r:
        return "-"
    return f"{r['cpu'] + r['redis_cpu']:.2f} ({r['cpu']:.2f} + {r['redis_cpu']:.2f})"


def _cpu_ratio(r: dict, f: dict) -> str:
    if "cpu" not in r or "cpu" not in f:
        return "-"
    return f"{(f['cpu'] + f['redis_cpu']) / (r['cpu'] + r['redis_cpu']):.2f}x"


if __name__ == "__main__":
    sys.exit(main())
