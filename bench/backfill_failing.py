"""What routing failing events costs the DuckDB backfill: a view whose projection and feature input can overflow
(``qty * qty``, ``qty * 1000000``) runs them under DuckDB's ``try`` (``duckdb_sql.backfill_sql``: an event they
fail on becomes a dead letter of the view), against the same view planned without ``try`` (``_can_fail`` forced
false: the plan of a view that cannot fail, which is what the backfill ran before; on these events nothing fails,
so both write the same rows, checked). One process, alternated round by round (the side going first alternating),
CPU seconds of the process (DuckDB's threads included) per backfill; medians and the ratio try / plain.

    .venv/bin/python -m bench.backfill_failing [--events 2000000] [--rounds 5] [--name backfill-failing]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DEFINITIONS = '''
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

user = Entity(join_keys=["user_id"])
events = Source(schema={"user_id": "string", "qty": "int64", "ts": "timestamp"}, timestamp="ts",
                batch=ParquetFiles("data/*.parquet"))
scaled = FeatureView(entities=[user], source=events, projections={"sq": "qty * qty"},
                     features=[Latest("sq"), Aggregation("qty * 1000000", "sum", "1h", name="big_1h")])
'''


def make_repo(root: Path, n: int) -> Path:
    """A repo of one view over ``n`` seeded events (10k users, qty in [-1000, 1000], one hour apart per 1k)."""
    if (root / "data" / "events.parquet").exists():
        return root
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "definitions" / "features.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text("project: bench_failing\ndefinitions: definitions\n")
    rng = np.random.default_rng(7)
    users = pa.array([f"u{i}" for i in rng.integers(0, 10_000, n)])
    qty = pa.array(rng.integers(-1000, 1000, n), pa.int64())
    ts = pa.array(1_772_323_200_000 + np.sort(rng.integers(0, 30 * 86_400_000, n)), pa.int64())
    pq.write_table(pa.table({"user_id": users, "qty": qty, "ts": ts.cast(pa.timestamp("ms", tz="UTC"))}),
                   root / "data" / "events.parquet")
    return root


def run_once(root: Path, tried: bool):
    """One backfill of the view, with or without ``try``: (CPU seconds, wall seconds, rows, table digest)."""
    from featurestore.engines import duckdb_sql
    from featurestore.store import FeatureStore

    original = duckdb_sql._can_fail
    if not tried:
        duckdb_sql._can_fail = lambda *args: False
    try:
        store = FeatureStore(root)
        c0, w0 = time.process_time(), time.perf_counter()
        (result,) = store.backfill()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        duckdb_sql._can_fail = original
    table = store.offline.table("scaled", ts_column="ts").read().sort_by([("ts", "ascending"), ("user_id", "ascending")])
    return cpu, wall, result.rows, hash(tuple(table.column("sq").to_pylist()[::997]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=2_000_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--name", default="backfill-failing")
    args = ap.parse_args()
    data = Path(os.environ.get("FS_BENCH_DATA", "/tmp/fs-bench")) / f"failing-{args.events}"
    root = make_repo(data, args.events)
    runs = {True: [], False: []}
    for side in (True, False):  # warm-up, untimed
        run_once(root, side)
    for r in range(args.rounds):
        for side in ((True, False) if r % 2 == 0 else (False, True)):
            runs[side].append(run_once(root, side))
    digests = {d for side in runs.values() for *_, d in side}
    rows = {n for side in runs.values() for _, _, n, _ in side}
    med = {side: statistics.median(c for c, *_ in v) for side, v in runs.items()}
    wall = {side: statistics.median(w for _, w, *_ in v) for side, v in runs.items()}
    load = os.getloadavg()
    lines = [f"# DuckDB backfill: failing parts under try vs the plain plan ({args.events:,} events)", "",
             f"Command: `.venv/bin/python -m bench.backfill_failing --events {args.events} --rounds {args.rounds}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
             f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (shared, noisy).", "",
             "View `scaled`: projection `qty * qty` and feature input `qty * 1000000` (both can overflow, so both run "
             "under `try`); nothing fails on these events. Rounds alternate the side going first.", "",
             "| side | CPU s per round | median CPU s | median wall s | rows |", "|---|---|---|---|---|"]
    for side, name in ((True, "try (this code)"), (False, "plain plan (no try)")):
        lines.append(f"| {name} | {', '.join(f'{c:.2f}' for c, *_ in runs[side])} | {med[side]:.2f} | "
                     f"{wall[side]:.2f} | {', '.join(map(str, sorted(rows)))} |")
    lines += ["", f"Ratio try / plain, median CPU: **{med[True] / med[False]:.2f}**; wall: {wall[True] / wall[False]:.2f}.",
              f"Same rows and values on both sides: {len(digests) == 1 and len(rows) == 1}."]
    out = Path(__file__).resolve().parent / "results" / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    (out.with_suffix(".json")).write_text(json.dumps({"events": args.events, "runs": {
        "try": runs[True], "plain": runs[False]}, "load": load}, default=str, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
