"""Shared helpers: machine notes, repeated timing, equality checks, result files.

The machine is shared and noisy, so every benchmark reports a RATIO against a baseline measured in the
same run, interleaving the contenders' repetitions, and keeps every repetition's time in the JSON.
"""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DATA_ROOT = Path(os.environ.get("FS_BENCH_DATA", "/tmp/fs-bench"))

# Feast reads these at import; keep it quiet and offline.
os.environ.setdefault("FEAST_USAGE", "False")
os.environ.setdefault("IS_TEST", "True")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- machine notes ------------------------------------------------------------------------------------
def _meminfo() -> Dict[str, float]:
    out = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            k, v = line.split(":", 1)
            if k in ("MemTotal", "MemAvailable"):
                out[k] = round(int(v.split()[0]) / 1024 / 1024, 1)  # GiB
    except OSError:
        pass
    return out


def _version(mod: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:  # noqa: BLE001
        return None


def _git() -> Dict[str, object]:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "featurestore"], cwd=ROOT, capture_output=True,
                               text=True).stdout
        return {"commit": head, "featurestore_dirty": bool(dirty.strip()),
                "featurestore_uncommitted": [line[3:] for line in dirty.splitlines() if line.strip()]}
    except OSError:
        return {}


def source_hashes() -> Dict[str, str]:
    """sha256 (first 12) per featurestore/**/*.py: the code measured. Other engineers commit while
    benchmarks run; files that differ at the end mean the run mixed versions of them."""
    import hashlib

    return {str(f.relative_to(ROOT)): hashlib.sha256(f.read_bytes()).hexdigest()[:12]
            for f in sorted((ROOT / "featurestore").rglob("*.py"))}


def source_fingerprint(hashes: Dict[str, str]) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:12]


def changed_files(a: Dict[str, str], b: Dict[str, str]) -> List[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def redis_version(url: str) -> Optional[str]:
    try:
        import redis

        return redis.Redis.from_url(url, socket_connect_timeout=1).info("server")["redis_version"]
    except Exception:  # noqa: BLE001
        return None


def machine_notes() -> Dict[str, object]:
    cpu_model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "mem_gib": _meminfo(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("duckdb", "pyarrow", "pandas", "numpy", "feast", "ibis-framework",
                                               "redis", "dask")},
        "git": _git(),
    }


def loadavg() -> List[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- timing -------------------------------------------------------------------------------------------
@dataclass
class Timing:
    name: str
    seconds: List[float] = field(default_factory=list)
    peak_rss_gib: Optional[float] = None

    @property
    def best(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def as_json(self) -> dict:
        return {"name": self.name, "seconds": [round(s, 4) for s in self.seconds], "best": round(self.best, 4),
                "median": round(self.median, 4)}


def timed(fn: Callable[[], object]):
    """(seconds, result) of one call, after a collection so earlier garbage is not billed to it."""
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def interleaved(contenders: Dict[str, Callable[[], object]], repeat: int, keep=None) -> Dict[str, Timing]:
    """Run every contender ``repeat`` times, round-robin (noise hits all of them alike). ``keep(name,
    result)`` sees the first result of each contender (for equality checks); results are dropped after."""
    timings = {name: Timing(name) for name in contenders}
    for r in range(repeat):
        for name, fn in contenders.items():
            s, out = timed(fn)
            timings[name].seconds.append(s)
            log(f"  {name}: {s:.3f}s (rep {r + 1}/{repeat})")
            if r == 0 and keep is not None:
                keep(name, out)
            del out
    return timings


def percentile(xs, p: float) -> float:
    return float(np.percentile(np.asarray(xs, dtype=float), p))


# -- equality -----------------------------------------------------------------------------------------
def compare_numeric(a, b, rel_tol: float = 0.0) -> Dict[str, object]:
    """Element-wise comparison of two numeric columns (null == null). Returns counts and the first
    mismatching positions; ``rel_tol`` > 0 allows relative differences (compensated vs naive sums)."""
    a = np.asarray(a, dtype="float64")
    b = np.asarray(b, dtype="float64")
    if a.shape != b.shape:
        return {"equal": False, "reason": f"lengths {a.shape} vs {b.shape}"}
    na, nb = np.isnan(a), np.isnan(b)
    both = ~na & ~nb
    diff = np.zeros_like(a)
    diff[both] = np.abs(a[both] - b[both])
    scale = np.maximum(np.abs(a), np.abs(b))
    rel = np.zeros_like(a)
    nz = both & (scale > 0)
    rel[nz] = diff[nz] / scale[nz]
    bad = (na != nb) | (both & (rel > rel_tol))
    out = {"equal": not bad.any(), "mismatches": int(bad.sum()), "nulls": int(na.sum()),
           "max_rel_diff": float(rel.max()) if len(rel) else 0.0}
    if bad.any():
        out["first_mismatch_positions"] = np.flatnonzero(bad)[:5].tolist()
    return out


def as_float(col) -> np.ndarray:
    """An Arrow/pandas column as float64 with NaN for null."""
    import pyarrow as pa

    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return np.asarray(col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype="float64")
    import pandas as pd

    return pd.to_numeric(pd.Series(col), errors="coerce").astype("float64").to_numpy()


# -- online lookups (bench/online.py, online_hot.py, online_cluster.py) -----------------------------
def redis_url() -> str:
    return os.environ.get("FEATURESTORE_REDIS_URL", "redis://127.0.0.1:6390/0")


def latencies(fn, args: list, warmup: int = 100) -> List[float]:
    """Wall seconds of ``fn(a)`` for each ``a`` of ``args``, after ``fn`` ran on the first ``warmup``."""
    for a in args[:warmup]:
        fn(a)
    out = []
    pc = time.perf_counter
    for a in args:
        t0 = pc()
        fn(a)
        out.append(pc() - t0)
    return out


def summarize(rounds: List[List[float]]) -> Dict[str, object]:
    """p50 / p99 (ms, medians over rounds), the best round's p99 and each round's figures."""
    per = [{"p50_ms": percentile(r, 50) * 1e3, "p99_ms": percentile(r, 99) * 1e3, "max_ms": max(r) * 1e3,
            "n": len(r)} for r in rounds]
    med = lambda k: float(np.median([p[k] for p in per]))  # noqa: E731
    return {"p50_ms": round(med("p50_ms"), 3), "p99_ms": round(med("p99_ms"), 3),
            "best_p99_ms": round(min(p["p99_ms"] for p in per), 3),
            "rounds": [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in p.items()} for p in per]}


def drop_keys(client, pattern: str) -> int:
    """Delete every Redis key matching ``pattern`` (SCAN, 1,000 per DEL); returns how many."""
    n, batch = 0, []
    for k in client.scan_iter(match=pattern, count=2000):
        batch.append(k)
        if len(batch) >= 1000:
            n += client.delete(*batch)
            batch = []
    if batch:
        n += client.delete(*batch)
    return n


# -- results ------------------------------------------------------------------------------------------
def write_results(name: str, doc: dict, markdown: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    path = RESULTS / f"{name}.md"
    path.write_text(markdown)
    return path


def redis_cpu(client) -> float:
    """The Redis server's CPU seconds so far (``INFO cpu``: user + sys)."""
    info = client.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def measure_cpu(client, fn: Callable[[], object]):
    """``({"seconds", "cpu", "redis_cpu"}, fn())``: wall seconds, this process's CPU seconds (Python and
    its native threads) and the Redis server's, around one call (the materialize benchmarks' basis)."""
    t0, c0, r0 = time.perf_counter(), time.process_time(), redis_cpu(client)
    out = fn()
    return {"seconds": round(time.perf_counter() - t0, 3), "cpu": round(time.process_time() - c0, 3),
            "redis_cpu": round(redis_cpu(client) - r0, 3)}, out


def run_doc(module: str, argv) -> dict:
    """The start of a result document: command, start time, machine notes, load average at start
    (:func:`finish` adds the load at the end)."""
    return {"command": f"python -m {module} " + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_notes(),
            "load_start": list(os.getloadavg())}


def run_header(doc: dict, title: str) -> List[str]:
    """Markdown lines heading a result: title and start, command, machine, load at start and end."""
    return [f"# {title} ({doc['started']})", "", f"Command: `{doc['command']}`", "",
            f"Machine: {json.dumps(doc['machine'], default=str)[:600]}", "",
            f"Load average (1, 5, 15 min) at start: {[round(x, 2) for x in doc.get('load_start', [])]}, at end: "
            f"{[round(x, 2) for x in doc['load_end']]}", ""]


def finish(name: str, doc: dict, render: Callable[[dict], str]) -> int:
    """Record the load at the end, write ``<name>.json`` and ``<name>.md`` (``render(doc)``) under
    bench/results and print the markdown."""
    doc["load_end"] = list(os.getloadavg())
    markdown = render(doc)
    write_results(name, doc, markdown)
    print(markdown)
    return 0


@contextmanager
def peak_rss():
    """Yields a dict that gets 'gib': the process's peak RSS (ru_maxrss, monotone: a high-water mark)."""
    import resource

    box = {}
    yield box
    box["gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024, 2)


def fmt_s(s: float) -> str:
    return f"{s:.3f} s" if s >= 0.01 else f"{s * 1000:.2f} ms"


# -- DuckDB profiles ----------------------------------------------------------------------------------
_INFO_KEYS = ("Join Type", "Conditions", "Aggregates", "Groups", "Projections", "Expression", "Function",
              "Order By", "Total Files Read")


def duckdb_profile(con, sql: str) -> Dict[str, object]:
    """Run ``sql`` with DuckDB's profiler (what EXPLAIN ANALYZE prints) and return a compact operator
    tree (one line per operator: type, seconds, rows, key details) plus the top operators by time."""
    import json as _json
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    con.execute("PRAGMA enable_profiling = 'json'")
    con.execute(f"PRAGMA profiling_output = '{out}'")
    try:
        con.sql(sql).to_arrow_table()
    finally:
        con.execute("PRAGMA disable_profiling")
    doc = _json.loads(Path(out).read_text())
    os.unlink(out)
    lines: List[str] = []
    flat: List[tuple] = []

    def walk(node, depth):
        info = node.get("extra_info") or {}
        bits = []
        for k in _INFO_KEYS:
            if k in info:
                v = info[k]
                v = ", ".join(v) if isinstance(v, list) else str(v)
                v = " ".join(v.split())
                bits.append(f"{k}: {v[:140]}{'…' if len(v) > 140 else ''}")
        t = float(node.get("timing") or 0.0)
        rows = node.get("intermediate_rows", node.get("operator_cardinality"))
        lines.append(f"{'  ' * depth}{node.get('type')}  {t:.3f}s  rows={rows}" + (f"  [{'; '.join(bits)}]" if bits else ""))
        flat.append((t, node.get("type"), rows, "; ".join(bits)[:160]))
        for c in node.get("children", []):
            walk(c, depth + 1)

    for top in doc.get("operator", []):
        walk(top, 0)
    flat.sort(reverse=True)
    q = doc.get("query", {})
    return {"total_seconds": q.get("total_time"), "cpu_seconds": q.get("cpu_time"), "tree": "\n".join(lines),
            "top": [{"seconds": round(t, 3), "operator": ty, "rows": r, "info": i} for t, ty, r, i in flat[:6]],
            "peak_buffer_memory_mb": round((doc.get("system", {}).get("peak_buffer_memory") or 0) / 2**20, 1),
            "peak_temp_dir_mb": round((doc.get("system", {}).get("peak_temp_dir_size") or 0) / 2**20, 1)}


def run_in_tree(code: str, tree: Path, *args: str) -> dict:
    """Run ``python -c code args`` with ``tree`` (a checkout or worktree) first on the import path and as the
    working folder; return the JSON object of its last output line (the A/B benches' child processes)."""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=str(tree), capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(tree)))
    return json.loads(out.stdout.strip().splitlines()[-1])
