"""Materialize of hot data: an old commit against this checkout, alternated in one run (A/B).

The data and views of ``bench/materialize_hot.py`` (generated first if absent). The old commit is
checked out once as a git worktree under ``FS_BENCH_DATA``; each side runs in a process of its own
(its ``featurestore`` imported from its checkout; this checkout's bench code and definitions), both
warmed by one untimed materialize of each view, then ``--rounds`` rounds, each materializing every
view once with each side, the side going first alternating round by round. Per materialize: wall
seconds, the side's process CPU (client: Python and DuckDB threads) and the Redis server's CPU (one
Redis for both: use your own). Reported per view: every round's numbers, their medians and the ratio
new / old of the medians (below 1: the new code is cheaper). The first round also compares both sides'
Redis images byte for byte (:func:`bench.materialize_hot.dump_image`, SHA-256).

    .venv/bin/python -m bench.materialize_ab --old COMMIT [--rounds 3] [--views merchant_activity,user_spend]
                                             [--name materialize-hot-ab]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent  # this checkout


def worker(checkout: str, tag: str) -> int:
    """Serve materialize runs of ``checkout``'s code: one JSON command a line on stdin (``{"view": V,
    "digest": bool}``), one JSON result a line on stdout."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, checkout)
    import featurestore  # noqa: F401  (the checkout's: imported before this checkout's path goes first)
    sys.path.insert(0, str(HERE))
    import dataclasses

    import redis

    from bench.common import DATA_ROOT, measure_cpu
    from bench.materialize_hot import MATERIALIZE_END_MS, dump_image, make_repo
    from bench.online import drop_keys, read_back
    from featurestore import FeatureStore
    from featurestore.config import load_config
    from featurestore.stores import online_redis as orr

    assert Path(featurestore.__file__).resolve().is_relative_to(Path(checkout).resolve()), featurestore.__file__
    url = os.environ.get("FEATURESTORE_REDIS_URL",
                         f"redis://127.0.0.1:{os.environ.get('FEATURESTORE_REDIS_PORT', '6390')}/0")
    work = DATA_ROOT / "materialize-hot"
    repo = make_repo(DATA_ROOT / "materialize-ab" / tag, work / "data")
    project = f"bench_ab_{tag}_{os.getpid()}"
    fs = FeatureStore(repo, config=dataclasses.replace(load_config(repo), project=project, redis_url=url))
    client = redis.Redis.from_url(url)
    views = set()
    try:
        for line in sys.stdin:
            cmd = json.loads(line)
            view = cmd["view"]
            views.add(view)
            prefix = f"{orr.view_prefix(project, view)}*"
            drop_keys(client, prefix)
            cost, _ = measure_cpu(client, lambda: fs.materialize(views=[view], end=MATERIALIZE_END_MS))
            if cmd.get("digest"):
                image, _ = read_back(client, prefix)
                out = io.BytesIO()
                dump_image(image, project.encode(), out)
                cost["digest"] = hashlib.sha256(out.getvalue()).hexdigest()
                cost["keys"] = len(image)
                del image, out
            drop_keys(client, prefix)
            print(json.dumps(cost), flush=True)
    finally:
        if views:
            client.hdel(orr.views_key(project), *views)
    return 0


class Side:
    """A worker process of one checkout."""

    def __init__(self, name: str, checkout: Path):
        self.name = name
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", str(checkout), name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(checkout))

    def run(self, view: str, digest: bool = False) -> dict:
        self.proc.stdin.write(json.dumps({"view": view, "digest": digest}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} worker died (see its stderr above)")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)


def old_checkout(commit: str) -> Path:
    """A detached git worktree of ``commit`` under ``FS_BENCH_DATA`` (made once)."""
    from bench.common import DATA_ROOT

    sha = subprocess.run(["git", "rev-parse", "--verify", f"{commit}^{{commit}}"], cwd=HERE, check=True,
                         capture_output=True, text=True).stdout.strip()
    path = DATA_ROOT / f"ab-old-{sha[:12]}"
    if not path.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(path), sha], cwd=HERE, check=True,
                       capture_output=True)
    return path


def main(argv=None) -> int:
    from bench.common import DATA_ROOT, finish, log, run_doc
    from bench.materialize_hot import VIEWS, generate

    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="the commit to compare with (a git revision)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--views", default=",".join(VIEWS))
    ap.add_argument("--name", default="materialize-hot-ab")
    args = ap.parse_args(argv)
    views = [v for v in args.views.split(",") if v]
    doc = run_doc("bench.materialize_ab", argv)
    shape = generate(DATA_ROOT / "materialize-hot" / "data", 10, 20_000, 100_000)
    old_path = old_checkout(args.old)
    sides = {"old": Side("old", old_path), "new": Side("new", HERE)}
    runs = {v: {"old": [], "new": []} for v in views}
    digests = {}
    try:
        for v in views:  # warm-up: definitions compiled, files cached (not timed)
            for side in sides.values():
                side.run(v)
        for r in range(args.rounds):
            order = ["old", "new"] if r % 2 == 0 else ["new", "old"]
            for v in views:
                for name in order:
                    res = sides[name].run(v, digest=r == 0)
                    if "digest" in res:
                        digests.setdefault(v, {})[name] = (res.pop("digest"), res.pop("keys"))
                    res["load"] = os.getloadavg()[0]
                    runs[v][name].append(res)
                    log(f"round {r} {v} {name}: {res['seconds']:.2f} s wall, cpu {res['cpu']:.2f} s + redis "
                        f"{res['redis_cpu']:.2f} s (load {res['load']:.1f})")
    finally:
        for side in sides.values():
            side.close()
    doc.update(shape=shape, old=subprocess.run(["git", "rev-parse", "--short", args.old], cwd=HERE, capture_output=True,
                                               text=True).stdout.strip(), runs=runs, digests=digests,
               same_image={v: len({d for d, _ in digests[v].values()}) == 1 for v in digests})
    return finish(args.name, doc, render)


def _median(rs: list, key: str) -> float:
    return statistics.median(r[key] for r in rs)


def render(doc: dict) -> str:
    from bench.common import run_header

    p = doc["shape"]["params"]
    git = doc["machine"].get("git", {})
    lines = run_header(doc, "Materialize of hot data, old and new code alternated (A/B)") + [
        f"Old: {doc['old']} (a git worktree); new: {git.get('commit')} (dirty: {git.get('featurestore_dirty')}). "
        f"Data: {doc['shape']['events']:,} transactions ({p['hot_keys']} hot merchants and {p['hot_keys']} hot users "
        f"of {p['events_per_key']:,} events, {p['background']:,} background); `materialize(view, end=END - 1h)`.", "",
        "Each side a process of its own, warmed by one untimed materialize per view; per round each view once "
        "per side, the first side alternating. CPU s: the side's process (client: Python and DuckDB threads); "
        "Redis: the server's CPU (INFO cpu). Ratio: new / old of the medians (below 1: new cheaper).", "",
        "| view | measure | old (per round) | new (per round) | old median | new median | new / old |",
        "|---|---|---|---|---|---|---|"]
    for v, by in doc["runs"].items():
        for key, label in (("cpu", "client CPU s"), ("redis_cpu", "Redis CPU s"), ("seconds", "wall s")):
            o, n = _median(by["old"], key), _median(by["new"], key)
            lines.append(f"| {v} | {label} | {', '.join(f'{r[key]:.2f}' for r in by['old'])} | "
                         f"{', '.join(f'{r[key]:.2f}' for r in by['new'])} | {o:.2f} | {n:.2f} | "
                         f"{n / o:.2f}x |")
    loads = [r["load"] for by in doc["runs"].values() for rs in by.values() for r in rs]
    lines += ["", f"Load average (1 min) at each materialize: {min(loads):.1f}-{max(loads):.1f}." if loads else "", ""]
    for v, d in doc["digests"].items():
        lines.append(f"Redis image of {v} (round 0, {d['old'][1]:,} keys): old {d['old'][0][:16]}, new {d['new'][0][:16]}: "
                     f"{'byte-identical' if doc['same_image'][v] else '**DIFFERENT**'}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2], sys.argv[3]))
    sys.path.insert(0, str(HERE))
    sys.exit(main())
