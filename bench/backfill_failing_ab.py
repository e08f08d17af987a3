"""The DuckDB backfill of ``bench.backfill_failing``'s view (parts under ``try``, nothing failing) from this tree
against another checkout of the code (``--base``, e.g. a ``git worktree`` of an earlier commit), alternated round
by round in fresh processes (the side going first alternating): CPU seconds of the backfill (DuckDB's threads
included), medians and the ratio this / base, and whether both wrote the same values.

    .venv/bin/python -m bench.backfill_failing_ab --base /tmp/base-tree [--events 1000000] [--rounds 4]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from pathlib import Path

from bench.common import run_in_tree

HERE = Path(__file__).resolve().parent.parent
ONE = ("import json, sys; from pathlib import Path; from bench.backfill_failing import run_once; "
       "print(json.dumps(run_once(Path(sys.argv[1]), True)))")


def run(tree: Path, root: Path):
    return run_in_tree(ONE, tree, str(root))


def main() -> None:
    from bench.backfill_failing import make_repo

    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--name", default="backfill-failing-ab")
    args = ap.parse_args()
    root = make_repo(Path(os.environ.get("FS_BENCH_DATA", "/tmp/fs-bench")) / f"failing-{args.events}", args.events)
    trees = {"this": HERE, "base": Path(args.base).resolve()}
    runs = {"this": [], "base": []}
    for r in range(args.rounds):
        for side in (("this", "base") if r % 2 == 0 else ("base", "this")):
            runs[side].append(run(trees[side], root))
    med = {s: statistics.median(c for c, *_ in v) for s, v in runs.items()}
    wall = {s: statistics.median(w for _, w, *_ in v) for s, v in runs.items()}
    same = len({d for v in runs.values() for *_, d in v}) == 1 and len({n for v in runs.values() for _, _, n, _ in v}) == 1
    load = os.getloadavg()
    lines = [f"# DuckDB backfill, parts under try, nothing failing: this tree vs a base tree ({args.events:,} events)", "",
             f"Command: `.venv/bin/python -m bench.backfill_failing_ab --base <worktree> --events {args.events} "
             f"--rounds {args.rounds}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other engineers, Python "
             f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.", "",
             "| side | CPU s per round | median CPU s | median wall s |", "|---|---|---|---|"]
    for side in ("this", "base"):
        lines.append(f"| {side} | {', '.join(f'{c:.2f}' for c, *_ in runs[side])} | {med[side]:.2f} | {wall[side]:.2f} |")
    lines += ["", f"Ratio this / base, median CPU: **{med['this'] / med['base']:.2f}**; wall: "
              f"{wall['this'] / wall['base']:.2f}. Same rows and values: {same}."]
    out = HERE / "bench" / "results" / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
