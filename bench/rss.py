"""Peak memory of one point-in-time contender, run alone in a fresh interpreter.

    python -m bench.rss ours <repo> <entity_df.parquet> <view:feature,...>
    python -m bench.rss sql <entity_df.parquet> <query.sql>
    python -m bench.rss idle

Prints one JSON line: ``{"seconds": ..., "max_rss_gib": ..., "rows": ...}`` where ``max_rss_gib`` is the
process's high-water resident set (``VmHWM`` of /proc/self/status: DuckDB's buffers, Arrow and pandas
results, and the interpreter itself). Not ``ru_maxrss``: Linux carries the parent's high-water mark
across fork and exec into it, so every child would report at least the benchmark process's own peak. ``idle`` imports the same modules and runs nothing: the part of every figure that is
not the query. ``sql`` registers the entity frame as ``req`` and runs the query through the same
connection settings as ours (UTC, spill directory next to the entity file).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path


def main(argv) -> int:
    import pandas as pd

    from featurestore import FeatureStore
    from featurestore.engines.duckdb_engine import connect

    kind = argv[0]
    t0 = time.perf_counter()
    rows = 0
    if kind == "ours":
        repo, entity, features = argv[1], argv[2], argv[3].split(",")
        df = pd.read_parquet(entity)
        t0 = time.perf_counter()
        rows = len(FeatureStore(repo).get_historical_features(df, features=features))
    elif kind == "sql":
        entity, query = argv[1], Path(argv[2]).read_text()
        df = pd.read_parquet(entity)
        con = connect(temp_dir=Path(entity).parent / "duckdb-tmp")
        con.register("req", df)
        t0 = time.perf_counter()
        rows = con.sql(query).to_arrow_table().num_rows
    elif kind != "idle":
        raise SystemExit(f"unknown contender kind {kind!r}")
    seconds = time.perf_counter() - t0
    rss = _peak_rss_kib() / 1024 / 1024
    print(json.dumps({"seconds": round(seconds, 3), "max_rss_gib": round(rss, 3), "rows": rows}))
    return 0


def _peak_rss_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # not Linux: may include the parent's peak


def measure(args, timeout: float = 1800) -> dict:
    """Run ``python -m bench.rss <args>`` in a fresh interpreter; its JSON line (or the error)."""
    import subprocess

    from bench.common import ROOT

    try:
        done = subprocess.run([sys.executable, "-m", "bench.rss", *map(str, args)], cwd=ROOT, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"error": (done.stderr.strip().splitlines() or ["exit %d" % done.returncode])[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
