"""Request feature views: what computing them costs online (per request) and offline (per training set).

    .venv/bin/python -m bench.request_features [--lookups 400] [--rounds 3] [--rows 100000]

Repo: 2,000 users x 12 events, one view ``stats`` (sum, mean, count over 1 h, a latest value), one request
source (``amount``, ``channel``) and three request views reading both: ``sql`` (three SQL expressions),
``row`` (the same three as a Python function, once per row) and ``pandas`` (the same, once per batch).

Online (needs the project's Redis; writes under ``bench_request_<pid>`` and deletes its keys): for 1 and
100 entity rows per lookup, ``get_online_features`` of the features the request views read (the baseline:
the lookup alone) and of each request view (the lookup, then the view), ``lookups`` calls per round,
rounds interleaved between contenders; p50/p99 per round, the median over rounds; the overhead is the
difference of p50s with the baseline. Also the evaluation alone (``request_eval.evaluate`` on 1 and 100
rows). Offline: ``get_historical_features`` over ``rows`` entity rows of the base features and of each
view (best of ``rounds``). Checks: the three views give the same values, online and offline.

Writes ``bench/results/request-features.{md,json}``. No timing is asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pandas as pd

from bench.common import DATA_ROOT, fmt_s, interleaved, loadavg, log, machine_notes, percentile, write_results

USERS, EVENTS = 2_000, 12
END = pd.Timestamp("2026-10-01T00:00:00Z")

DEFINITIONS = '''\
import pandas as pd

from featurestore import (Aggregation, Entity, FeatureView, Latest, ParquetFiles, RequestFeatureView, RequestSource,
                          Source)

user = Entity(join_keys=["user_id"])
tx = Source(schema={"user_id": "int64", "amount": "float64", "channel": "string", "ts": "timestamp"},
            timestamp="ts", batch=ParquetFiles("data/tx.parquet"))
stats = FeatureView(entities=[user], source=tx, features=[
    Aggregation("amount", "sum", "1h", name="sum_1h"), Aggregation("amount", "mean", "1h", name="mean_1h"),
    Aggregation("*", "count", "1h", name="n_1h"), Latest("channel", name="last_channel")])
req = RequestSource(schema={"amount": "float64", "channel": "string"})

sql = RequestFeatureView(sources=[req, stats], features={
    "ratio": "amount / nullif(mean_1h, 0)",
    "new_channel": "channel IS DISTINCT FROM last_channel",
    "n_after": "n_1h + 1",
})


def _row(r):
    m = r["mean_1h"]
    return {"ratio": None if m in (None, 0) or r["amount"] is None else r["amount"] / m,
            "new_channel": r["channel"] != r["last_channel"], "n_after": r["n_1h"] + 1}


row = RequestFeatureView(sources=[req, stats], function=_row, mode="row",
                         schema={"ratio": "float64", "new_channel": "bool", "n_after": "int64"})


def _frame(df):
    m = df["mean_1h"].where(df["mean_1h"] != 0)
    return pd.DataFrame({"ratio": df["amount"] / m,
                         "new_channel": df["channel"].fillna("\\0") != df["last_channel"].fillna("\\0"),
                         "n_after": df["n_1h"] + 1})


frame = RequestFeatureView(sources=[req, stats], function=_frame, mode="pandas",
                           schema={"ratio": "float64", "new_channel": "bool", "n_after": "int64"})
'''

BASE_REFS = ["stats:sum_1h", "stats:mean_1h", "stats:n_1h", "stats:last_channel"]
OUTPUTS = ("ratio", "new_channel", "n_after")
VIEWS = ("sql", "row", "frame")


def _repo() -> Path:
    root = DATA_ROOT / "request_features"
    (root / "definitions").mkdir(parents=True, exist_ok=True)
    (root / "definitions" / "defs.py").write_text(DEFINITIONS)
    (root / "featurestore.yaml").write_text(f"project: bench_request_{os.getpid()}\ndefinitions: definitions\n")
    data = root / "data" / "tx.parquet"
    if not data.exists():
        rng = np.random.default_rng(7)
        n = USERS * EVENTS
        df = pd.DataFrame({
            "user_id": np.repeat(np.arange(USERS, dtype="int64"), EVENTS),
            "amount": rng.uniform(1, 500, n).round(2),
            "channel": rng.choice(["web", "app", "pos"], n),
            "ts": END - pd.to_timedelta(rng.integers(0, 3_600_000, n), unit="ms"),
        })
        data.parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(data, index=False)
    return root


def _lookup_rounds(contenders: Dict[str, callable], lookups: int, rounds: int) -> Dict[str, dict]:
    per: Dict[str, List[dict]] = {k: [] for k in contenders}
    for r in range(rounds):
        for name, fn in contenders.items():
            fn()  # warm
            xs = []
            for _ in range(lookups):
                t0 = time.perf_counter()
                fn()
                xs.append(time.perf_counter() - t0)
            per[name].append({"p50_ms": percentile(xs, 50) * 1e3, "p99_ms": percentile(xs, 99) * 1e3})
            log(f"  {name}: p50 {per[name][-1]['p50_ms']:.3f} ms, p99 {per[name][-1]['p99_ms']:.3f} ms (round {r + 1})")
    return {k: {"p50_ms": statistics.median(x["p50_ms"] for x in v),
                "p99_ms": statistics.median(x["p99_ms"] for x in v), "rounds": v} for k, v in per.items()}


def run(lookups: int = 400, rounds: int = 3, rows: int = 100_000) -> Dict[str, object]:
    import pyarrow as pa

    from featurestore import dtypes
    from featurestore.sdk import request_eval
    from featurestore.sdk.request_features import compiled_request
    from featurestore.store import FeatureStore

    root = _repo()
    fs = FeatureStore(root)
    fs.backfill()
    fs.materialize()
    out: Dict[str, object] = {"online": {}, "evaluate": {}, "offline": {}, "checks": {}}
    q = END + pd.Timedelta("1min")
    rng = np.random.default_rng(1)
    try:
        for size in (1, 100):
            users = rng.integers(0, USERS, size).tolist()
            ents = [{"user_id": u} for u in users]
            data = {"amount": rng.uniform(1, 500, size).round(2).tolist(),
                    "channel": rng.choice(["web", "app"], size).tolist()}
            contenders = {"lookup only (baseline)":
                          lambda: fs.get_online_features(ents, features=BASE_REFS, request_time=q)}
            for v in VIEWS:
                contenders[f"lookup + {v}"] = (lambda v=v: fs.get_online_features(
                    ents, features=[f"{v}:{f}" for f in OUTPUTS], request_time=q, request_data=data))
            res = _lookup_rounds(contenders, lookups if size == 1 else max(50, lookups // 4), rounds)
            base = res["lookup only (baseline)"]["p50_ms"]
            for name, r in res.items():
                r["overhead_p50_ms"] = r["p50_ms"] - base
            out["online"][size] = res
            answers = [fs.get_online_features(ents, features=[f"{v}:{f}" for f in OUTPUTS], request_time=q,
                                              request_data=data).to_dict() for v in VIEWS]
            out["checks"][f"online, {size} rows: the three views agree"] = all(
                _same(answers[0][f], a[f]) for a in answers[1:] for f in OUTPUTS)
            # the evaluation alone, on the inputs of this lookup
            for v in VIEWS:
                crv = compiled_request(fs, v)
                base_vals = fs.get_online_features(ents, features=BASE_REFS, request_time=q,
                                                   full_feature_names=True).to_dict()
                cols = {"user_id": pa.array(users, pa.int64())}
                cols.update({c: pa.array(vals) for c, vals in data.items()})
                for ref in BASE_REFS:
                    view, feat = ref.split(":")
                    arr = pa.array(base_vals[f"{view}__{feat}"],
                                   type=dtypes.arrow_type(fs.compiled(view).feature_dtypes[feat]))
                    cols[f"{view}__{feat}"] = arr
                    cols[feat] = arr
                table = request_eval.input_table(crv, cols)
                xs = []
                for _ in range(max(50, lookups // 2)):
                    t0 = time.perf_counter()
                    request_eval.evaluate(crv, table)
                    xs.append(time.perf_counter() - t0)
                out["evaluate"][f"{v}, {size} rows"] = {"p50_ms": percentile(xs, 50) * 1e3,
                                                        "p99_ms": percentile(xs, 99) * 1e3}
        # offline
        ents = pd.DataFrame({"user_id": rng.integers(0, USERS, rows).astype("int64"),
                             "event_timestamp": q - pd.to_timedelta(rng.integers(0, 3_600_000, rows), unit="ms"),
                             "amount": rng.uniform(1, 500, rows).round(2), "channel": rng.choice(["web", "app"], rows)})
        contenders = {"base features only (baseline)": lambda: fs.get_historical_features(ents, features=BASE_REFS)}
        for v in VIEWS:
            contenders[f"base + {v}"] = (lambda v=v: fs.get_historical_features(
                ents, features=[f"{v}:{f}" for f in OUTPUTS]))
        first: Dict[str, object] = {}
        timings = interleaved(contenders, rounds, keep=lambda name, res: first.__setitem__(name, res))
        out["offline"] = {k: t.as_json() for k, t in timings.items()}
        frames = [first[f"base + {v}"] for v in VIEWS]
        out["checks"][f"offline, {rows:,} rows: the three views agree"] = all(
            _same(frames[0][f].tolist(), fr[f].tolist()) for fr in frames[1:] for f in OUTPUTS)
    finally:
        import shutil

        client = fs.online_store().client
        keys = list(client.scan_iter(match=f"*{fs.config.project}*"))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i:i + 500])
        shutil.rmtree(fs.config.offline_path / fs.config.project, ignore_errors=True)
    return out


def _same(a, b) -> bool:
    import math

    def norm(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return v.item() if hasattr(v, "item") else v

    return all((norm(x) is None and norm(y) is None) or
               (isinstance(norm(x), float) and math.isclose(norm(x), norm(y), rel_tol=1e-12)) or norm(x) == norm(y)
               for x, y in zip(a, b))


def markdown(doc: dict) -> str:
    lines = ["# Benchmarks: request feature views", "",
             f"Command: `{doc['command']}`. Started {doc['started']}; load average at start {doc['loadavg_start']}, "
             f"at end {doc['loadavg_end']} (a shared 2-core machine: read the differences against the baseline "
             "measured in the same run, not the absolute times).", "",
             _machine(doc["machine"]), "",
             "## Online: `get_online_features` (median over rounds of per-round p50/p99)", ""]
    for size, res in doc["result"]["online"].items():
        lines += [f"**{size} entity row{'s' if int(size) > 1 else ''} per lookup**", "",
                  "| contender | p50 | p99 | p50 overhead over the lookup |", "|---|---|---|---|"]
        for name, r in res.items():
            lines.append(f"| {name} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms | {r['overhead_p50_ms']:+.3f} ms |")
        lines.append("")
    lines += ["## The evaluation alone (`request_eval.evaluate`, inputs ready)", "", "| view, rows | p50 | p99 |",
              "|---|---|---|"]
    lines += [f"| {k} | {r['p50_ms']:.3f} ms | {r['p99_ms']:.3f} ms |" for k, r in doc["result"]["evaluate"].items()]
    lines += ["", "## Offline: `get_historical_features` (best and median of rounds)", "",
              "| contender | best | median |", "|---|---|---|"]
    lines += [f"| {k} | {fmt_s(t['best'])} | {fmt_s(t['median'])} |" for k, t in doc["result"]["offline"].items()]
    lines += ["", "## Checks", ""] + [f"- {k}: **{v}**" for k, v in doc["result"]["checks"].items()] + [""]
    return "\n".join(lines)


def _machine(m: dict) -> str:
    v = m.get("versions", {})
    git = m.get("git", {})
    return (f"Machine: {m.get('cores')} cores ({m.get('cpu')}), Python {m.get('python')}; duckdb {v.get('duckdb')}, "
            f"pyarrow {v.get('pyarrow')}, pandas {v.get('pandas')}; featurestore at {git.get('commit')}"
            + (" + uncommitted changes" if git.get("featurestore_dirty") else "") + ".")


def main(argv=None) -> int:
    import sys

    ap = argparse.ArgumentParser(description="request feature view benchmark")
    ap.add_argument("--lookups", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args(argv)
    doc = {"command": "python -m bench.request_features " + " ".join(argv if argv is not None else sys.argv[1:]),
           "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_start": loadavg(), "machine": machine_notes()}
    doc["result"] = run(args.lookups, args.rounds, args.rows)
    doc["loadavg_end"] = loadavg()
    path = write_results("request-features", doc, markdown(doc))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
