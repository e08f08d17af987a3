"""What DuckDB's common-subexpression pass being off (``duckdb_sql.NO_CSE``) costs a read of a view without an
offline table: ``get_historical_features`` of ``bench.backfill_failing``'s view (projection ``qty * qty`` and feature
input ``qty * 1000000``, both run under ``try`` for the pushed events) computed from its batch face plus a pushed
log, with the pass off (this code) against the pass on (``duckdb_engine.without_optimizer`` made a no-op). One
process, alternated round by round (the side going first alternating), CPU seconds of the process (DuckDB's
threads included) per read; medians, the ratio off / on, and whether both returned the same values.

    .venv/bin/python -m bench.pit_no_table_cse [--events 1000000] [--requests 300000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_repo(root: Path, n: int) -> Path:
    """``bench.backfill_failing``'s repo (``n`` events, never backfilled) plus 1,000 pushed events (offline)."""
    from bench.backfill_failing import make_repo as events_repo
    from featurestore.store import FeatureStore

    fresh = not (root / "data" / "events.parquet").exists()
    events_repo(root, n)
    if fresh:
        rng = np.random.default_rng(11)
        ts = pd.to_datetime(1_772_323_200_000 + rng.integers(0, 30 * 86_400_000, 1000), unit="ms", utc=True)
        FeatureStore(root).push("events", pd.DataFrame({
            "user_id": [f"u{i}" for i in rng.integers(0, 10_000, 1000)],
            "qty": rng.integers(-1000, 1000, 1000), "ts": ts}), to="offline")
    return root


def requests(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame({"user_id": [f"u{i}" for i in rng.integers(0, 10_000, n)],
                         "event_timestamp": pd.to_datetime(1_772_323_200_000 + rng.integers(0, 31 * 86_400_000, n),
                                                           unit="ms", utc=True)})


def run_once(root: Path, entity_df: pd.DataFrame, cse_off: bool):
    """One read: (CPU seconds, wall seconds, digest of the values)."""
    from featurestore.engines import duckdb_engine
    from featurestore.store import FeatureStore

    original = duckdb_engine.without_optimizer
    if not cse_off:
        duckdb_engine.without_optimizer = lambda con, name: contextlib.nullcontext(con)
    try:
        store = FeatureStore(root)
        assert store.offline.table("scaled", ts_column="ts").version is None, "the view must have no table"
        c0, w0 = time.process_time(), time.perf_counter()
        frame = store.get_historical_features(entity_df, features=["scaled:sq", "scaled:big_1h"])
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    finally:
        duckdb_engine.without_optimizer = original
    frame = pd.DataFrame(frame)
    return cpu, wall, hash(tuple(pd.util.hash_pandas_object(frame[["sq", "big_1h"]], index=True)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--requests", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--name", default="pit-no-table-cse")
    args = ap.parse_args()
    root = make_repo(Path(os.environ.get("FS_BENCH_DATA", "/tmp/fs-bench")) / f"pit-cse-{args.events}", args.events)
    entity_df = requests(args.requests)
    runs = {True: [], False: []}
    for side in (True, False):  # warm-up, untimed
        run_once(root, entity_df, side)
    for r in range(args.rounds):
        for side in ((True, False) if r % 2 == 0 else (False, True)):
            runs[side].append(run_once(root, entity_df, side))
    same = len({d for v in runs.values() for *_, d in v}) == 1
    med = {s: statistics.median(c for c, *_ in v) for s, v in runs.items()}
    wall = {s: statistics.median(w for _, w, _ in v) for s, v in runs.items()}
    load = os.getloadavg()
    lines = [f"# get_historical_features of a view without a table: CSE off vs on ({args.requests:,} requests, "
             f"{args.events:,} events + 1,000 pushed)", "",
             f"Command: `.venv/bin/python -m bench.pit_no_table_cse --events {args.events} --requests {args.requests} "
             f"--rounds {args.rounds}`", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other engineers, Python "
             f"{platform.python_version()}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.", "",
             "View `scaled` (bench/backfill_failing.py): latest `qty * qty`, 1h sum of `qty * 1000000`, never "
             "backfilled, so the read computes its events from the batch face and the pushed log. One process, "
             "rounds alternate the side going first.", "",
             "| side | CPU s per round | median CPU s | median wall s |", "|---|---|---|---|"]
    for side, name in ((True, "CSE off (disabled_optimizers)"), (False, "CSE on")):
        lines.append(f"| {name} | {', '.join(f'{c:.2f}' for c, *_ in runs[side])} | {med[side]:.2f} | "
                     f"{wall[side]:.2f} |")
    lines += ["", f"Ratio off / on, median CPU: **{med[True] / med[False]:.2f}**; wall: {wall[True] / wall[False]:.2f}. "
              f"Same values on both sides: {same}."]
    out = Path(__file__).resolve().parent / "results" / f"{args.name}.md"
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps({"events": args.events, "requests": args.requests, "runs": {
        "cse_off": runs[True], "cse_on": runs[False]}, "load": load}, default=str, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
