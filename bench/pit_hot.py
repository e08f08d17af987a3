"""Point-in-time join where one entity is hot: exact windows over ~100k events per request (issue 11).

Data (numpy, seeded), one Parquet file per shape, whole-millisecond UTC times, no two events of a key in
the same millisecond (so ``first``/``last`` need no tie rule and the floor's ``arg_max(x, t)`` is ours):

* **hot**: one driver with ``hot_events`` events uniform over 8 days; ``hot_requests`` requests uniform
  over the last day, 10% exactly at one of its event times (the exclusive edge). Each request's 7 days
  hold ~``hot_events * 7 / 8`` events (100k at the default size).
* **mixed**: the same hot driver plus ``light_keys`` drivers with ~``light_events`` events each over the
  same 8 days and one request each in the last day: one query that needs both plans.

Contenders, each from a pandas entity frame to a materialised result:

* ours: ``FeatureStore.get_historical_features`` on backfilled offline tables (input order kept);
* floor: the DuckDB window sweep the issue measured: events and requests ``UNION ALL``, then
  ``agg(x) OVER (PARTITION BY key ORDER BY t RANGE BETWEEN W PRECEDING AND 1 PRECEDING)`` on epoch ms,
  keeping the request rows (Arrow out, no order), over the same offline-table files.

Peak memory: each contender once more in a fresh interpreter (``bench/rss.py``), its ``ru_maxrss``.
"""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
import time
from pathlib import Path
from typing import Dict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - pa.compute
import pyarrow.parquet as pq

from bench.common import DATA_ROOT, as_float, compare_numeric, interleaved, log, timed

SCALES = {
    "tiny": dict(hot_events=11_428, hot_requests=2_000, light_keys=1_000, light_events=10),  # development
    "small": dict(hot_events=114_286, hot_requests=20_000, light_keys=10_000, light_events=10),
}
SCALES["full"] = SCALES["small"]  # the size already
SEED = 20261130
T0_MS = int(pd.Timestamp("2026-09-01T00:00:00Z").value // 1_000_000)
DAY_MS = 86_400_000
SPAN_MS = 8 * DAY_MS
WINDOWS = {"1h": 3_600_000, "1d": DAY_MS, "7d": 7 * DAY_MS}
WINDOW_FEATURES = [f"amount_{fn}_{w}" for w in WINDOWS for fn in ("count", "sum", "max")]
# Every aggregation over 1 d, and an unbounded count.
ALL_FEATURES = {
    "n_1d": ("count", "*"), "shops_1d": ("count_distinct", "shop"), "sum_1d": ("sum", "amount"),
    "mean_1d": ("mean", "amount"), "min_1d": ("min", "amount"), "max_1d": ("max", "amount"),
    "first_amount_1d": ("first", "amount"), "last_shop_1d": ("last", "shop"), "std_1d": ("stddev", "amount"),
    "var_1d": ("variance", "amount"), "n_all": ("count", "*"),
}

DEFINITIONS = '''\
"""Benchmark views over one hot driver (and light drivers)."""
from featurestore import Aggregation, Entity, FeatureView, ParquetFiles, Source

driver = Entity(join_keys=["driver_id"])
SCHEMA = {{"driver_id": "int64", "amount": "float64", "shop": "int64", "event_timestamp": "timestamp"}}
hot_events = Source(schema=SCHEMA, timestamp="event_timestamp", batch=ParquetFiles({hot!r}))
mixed_events = Source(schema=SCHEMA, timestamp="event_timestamp", batch=ParquetFiles({mixed!r}))
WINDOWED = [Aggregation(c, f, w, name=f"amount_{{f}}_{{w}}") for w in ("1h", "1d", "7d")
            for f, c in (("count", "*"), ("sum", "amount"), ("max", "amount"))]
hot_windows = FeatureView(entities=[driver], source=hot_events, features=WINDOWED)
mixed_windows = FeatureView(entities=[driver], source=mixed_events, features=WINDOWED)
hot_all = FeatureView(entities=[driver], source=hot_events, features=[
{all_features}
])
'''


# -- data ---------------------------------------------------------------------------------------------
def _events(rng, keys: np.ndarray) -> tuple:
    """One event per entry of ``keys`` at a uniform time, unique per (key, ms), sorted by time."""
    off = rng.integers(0, SPAN_MS, len(keys), dtype=np.int64)
    _, first = np.unique(keys * SPAN_MS + off, return_index=True)
    keys, off = keys[first], off[first]
    order = np.argsort(off, kind="stable")
    return keys[order], off[order]


def _table(rng, keys, off) -> pa.Table:
    n = len(keys)
    return pa.table({
        "driver_id": pa.array(keys, pa.int64()),
        "amount": pa.array(np.round(rng.lognormal(3.0, 1.0, n), 2), pa.float64(), mask=rng.random(n) < 0.01),
        "shop": pa.array(rng.integers(0, 500, n), pa.int64(), mask=rng.random(n) < 0.01),
        "event_timestamp": pa.array((T0_MS + off) * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })


def _requests(rng, keys, off, req_keys) -> pd.DataFrame:
    """Requests of ``req_keys`` in the last day, 10% exactly at an event time of their key."""
    n = len(req_keys)
    q = T0_MS + 7 * DAY_MS + rng.integers(0, DAY_MS, n, dtype=np.int64)
    at_event = rng.random(n) < 0.10
    for k in np.unique(req_keys[at_event]):
        mine = np.flatnonzero(at_event & (req_keys == k))
        times = off[(keys == k) & (off >= 7 * DAY_MS)]
        if len(times):
            q[mine] = T0_MS + rng.choice(times, len(mine))
    return pd.DataFrame({"driver_id": req_keys, "event_timestamp": pd.to_datetime(q * 1000, unit="us", utc=True),
                         "row_id": np.arange(n, dtype=np.int64)})


def generate(data_dir: Path, hot_events: int, hot_requests: int, light_keys: int, light_events: int,
             seed: int = SEED) -> Dict[str, object]:
    data_dir.mkdir(parents=True, exist_ok=True)
    done = data_dir / "DONE"
    paths = {n: data_dir / f"{n}.parquet" for n in ("hot_events", "mixed_events", "hot_requests", "mixed_requests")}
    if not done.exists():
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        hk, ho = _events(rng, np.zeros(hot_events, np.int64))
        lk, lo = _events(rng, rng.integers(1, light_keys + 1, light_keys * light_events, dtype=np.int64))
        hot = _table(rng, hk, ho)
        pq.write_table(hot, paths["hot_events"])
        mk, mo = np.concatenate([hk, lk]), np.concatenate([ho, lo])
        order = np.argsort(mo, kind="stable")
        pq.write_table(pa.concat_tables([hot, _table(rng, lk, lo)]).take(order), paths["mixed_events"])
        _requests(rng, hk, ho, np.zeros(hot_requests, np.int64)).to_parquet(paths["hot_requests"])
        req_keys = np.concatenate([np.zeros(hot_requests, np.int64), np.arange(1, light_keys + 1, dtype=np.int64)])
        _requests(rng, mk, mo, req_keys).to_parquet(paths["mixed_requests"])
        done.write_text("ok\n")
        log(f"generated the hot-entity data in {time.perf_counter() - t0:.1f}s -> {data_dir}")
    return {k: str(v) for k, v in paths.items()}


def make_store(work: Path, paths: Dict[str, str]):
    from featurestore import FeatureStore
    from featurestore.config import load_config

    repo = work / "ours"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "definitions").mkdir(parents=True)
    feats = ",\n".join(f"    Aggregation({c!r}, {f!r}, {None if n == 'n_all' else '1d'!r}, name={n!r})"
                       for n, (f, c) in ALL_FEATURES.items())
    (repo / "definitions" / "bench_hot.py").write_text(
        DEFINITIONS.format(hot=paths["hot_events"], mixed=paths["mixed_events"], all_features=feats))
    (repo / "featurestore.yaml").write_text("project: bench_pit_hot\ndefinitions: definitions\n")
    return FeatureStore(repo, config=dataclasses.replace(load_config(repo)))


# -- the floor ----------------------------------------------------------------------------------------
def _sweep_sql(relation: str, selects: Dict[str, tuple], frames: Dict[str, str]) -> str:
    """Events and requests in one relation, window aggregates per request row (the issue's floor)."""
    cols = ", ".join(f"{expr} OVER {frame} AS {name}" for name, (expr, frame) in selects.items())
    wins = ", ".join(f"{n} AS (PARTITION BY k ORDER BY t {f})" for n, f in frames.items())
    return (
        "WITH r AS (SELECT row_id, driver_id AS k, epoch_ms(event_timestamp) AS q FROM req),\n"
        "u AS (SELECT NULL::BIGINT AS row_id, driver_id AS k, epoch_ms(event_timestamp) AS t, amount, shop, 1 AS one\n"
        f"      FROM {relation} UNION ALL SELECT row_id, k, q, NULL, NULL, NULL FROM r)\n"
        f"SELECT * FROM (SELECT row_id, {cols} FROM u WINDOW {wins}) WHERE row_id IS NOT NULL"
    )


def _range(ms: int) -> str:
    return f"RANGE BETWEEN {ms} PRECEDING AND 1 PRECEDING"  # q - W <= t <= q - 1: exclusive q, whole ms


def floor_windows_sql(relation: str) -> str:
    selects = {}
    for w in WINDOWS:
        selects[f"amount_count_{w}"] = ("count(one)", f"w{w}")
        selects[f"amount_sum_{w}"] = ("sum(amount)", f"w{w}")
        selects[f"amount_max_{w}"] = ("max(amount)", f"w{w}")
    return _sweep_sql(relation, selects, {f"w{w}": _range(ms) for w, ms in WINDOWS.items()})


def floor_all_sql(relation: str) -> str:
    """Every aggregation with DuckDB's own functions (``var_samp``/``stddev_samp``: Welford, inexact
    for large offsets; ``first``/``last`` by time, exact here because no key has two events in a ms)."""
    exprs = {
        "n_1d": "count(one)", "shops_1d": "count(DISTINCT shop)", "sum_1d": "sum(amount)", "mean_1d": "avg(amount)",
        "min_1d": "min(amount)", "max_1d": "max(amount)",
        "first_amount_1d": "arg_min(amount, t) FILTER (WHERE amount IS NOT NULL)",
        "last_shop_1d": "arg_max(shop, t) FILTER (WHERE shop IS NOT NULL)", "std_1d": "stddev_samp(amount)",
        "var_1d": "var_samp(amount)", "n_all": "count(one)",
    }
    selects = {n: (e, "wall" if n == "n_all" else "wd") for n, e in exprs.items()}
    return _sweep_sql(relation, selects, {"wd": _range(DAY_MS), "wall": "RANGE BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING"})


def offline_relation(fs, view: str) -> str:
    from featurestore.engines.duckdb_sql import literal

    files = fs.offline.table(view, ts_column="event_timestamp").files()
    return "read_parquet([" + ", ".join(literal(f) for f in files) + "])"


def run_floor(sql: str, entity_df: pd.DataFrame, temp_dir: Path) -> pa.Table:
    from featurestore.engines.duckdb_engine import connect

    con = connect(temp_dir=temp_dir)  # ours' settings: UTC, spill directory, default threads
    con.register("req", entity_df)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


# -- checks -------------------------------------------------------------------------------------------
def check(ours: pd.DataFrame, other: pa.Table, columns, tolerances: Dict[str, float]) -> dict:
    from bench.pit import by_row_id

    other = by_row_id(other)
    rid = other["row_id"].to_numpy()
    per = {c: compare_numeric(as_float(ours[c].to_numpy()[rid]), as_float(other[c]), rel_tol=tolerances.get(c, 0.0))
           for c in columns}
    ok = all(v["equal"] for v in per.values()) and other.num_rows == len(ours)
    log("  check: equal=" + str(ok) + " " + ", ".join(f"{c}:{v['mismatches']}" for c, v in per.items()))
    return {"equal": ok, "rows_returned": other.num_rows, "rows_expected": len(ours), "columns": per,
            "tolerances": tolerances}


# -- the benchmark ------------------------------------------------------------------------------------
def run(scale: str, repeat: int = 3, profile: bool = True) -> dict:
    from bench import rss

    p = SCALES[scale]
    work = DATA_ROOT / f"pit-hot-{scale}"
    paths = generate(work / "data", **p)
    temp_dir = work / "duckdb-tmp"
    fs = make_store(work, paths)
    t_bf, bf = timed(lambda: fs.backfill())
    log(f"backfill (setup, not measured): {sum(r.rows for r in bf):,} rows in {t_bf:.1f}s")
    out: Dict[str, object] = {"scale": scale, "params": {**p, "seed": SEED, "repeat": repeat},
                              "setup_backfill_seconds": round(t_bf, 2), "cases": {}}
    sum_tol = {c: 1e-12 for c in WINDOW_FEATURES if "_sum_" in c}
    cases = [
        ("hot", "hot_windows", WINDOW_FEATURES, floor_windows_sql, sum_tol),
        ("mixed", "mixed_windows", WINDOW_FEATURES, floor_windows_sql, sum_tol),
        ("hot, every aggregation", "hot_all", list(ALL_FEATURES), floor_all_sql,
         {"sum_1d": 1e-12, "mean_1d": 1e-12, "std_1d": 1e-6, "var_1d": 1e-6}),
    ]
    for name, view, feats, floor_fn, tol in cases:
        shape = "hot" if name.startswith("hot") else "mixed"
        entity_df = pd.read_parquet(paths[f"{shape}_requests"])
        refs = [f"{view}:{f}" for f in feats]
        floor_sql = floor_fn(offline_relation(fs, view))
        keep: Dict[str, object] = {}
        log(f"({name}) {len(entity_df):,} requests, view {view}")
        timings = interleaved({
            "ours": lambda: fs.get_historical_features(entity_df, features=refs),
            "floor (DuckDB window sweep, RANGE frames)": lambda: run_floor(floor_sql, entity_df, temp_dir),
        }, repeat, lambda n, r: keep.__setitem__(n, r))
        ours = pd.DataFrame(keep.pop("ours"))
        assert ours["row_id"].tolist() == entity_df["row_id"].tolist(), "ours did not keep input order"
        case = {"timings": {k: v.as_json() for k, v in timings.items()},
                "check": check(ours, keep.pop("floor (DuckDB window sweep, RANGE frames)"), feats, tol),
                "requests": len(entity_df), "floor_sql": floor_sql}
        count_col = "amount_count_7d" if "amount_count_7d" in feats else "n_1d"
        case["events_per_request"] = {"column": count_col, "mean": round(float(ours[count_col].mean()), 1),
                                      "max": int(ours[count_col].max())}
        case["plan"] = plan_summary(fs, view, entity_df)
        if name != "hot, every aggregation":
            entity_path = work / f"{shape}_entity.parquet"
            entity_df.to_parquet(entity_path)
            sql_path = work / f"{shape}_floor.sql"
            sql_path.write_text(floor_sql)
            case["peak_memory"] = {
                "ours": rss.measure(["ours", fs.repo_path, entity_path, ",".join(refs)]),
                "floor": rss.measure(["sql", entity_path, sql_path]),
                "idle interpreter (imports only)": rss.measure(["idle"]),
            }
            log(f"  peak memory: {case['peak_memory']}")
        if profile:
            from bench.pit import cprofile

            case["cprofile_ours"] = cprofile(lambda: fs.get_historical_features(entity_df, features=refs))
            case["profile_floor_sql"] = _profile(floor_sql, temp_dir, "req", entity_df)
            case["profile_ours_sql"] = profile_ours(fs, view, feats, entity_df, temp_dir)
        out["cases"][name] = case
    return out


def plan_summary(fs, view: str, entity_df: pd.DataFrame) -> dict:
    """How many keys and requests each plan got (the per-key choice of duckdb_pit)."""
    from featurestore.engines import duckdb_pit
    from featurestore.sdk.historical import request_times_ms

    cv = fs.compiled(view)
    con = fs._connect()
    con.register("__requests", pa.table({"__row": np.arange(len(entity_df)), "__q_ms": request_times_ms(
        entity_df, "event_timestamp").to_numpy(), "driver_id": entity_df["driver_id"].to_numpy()}))
    try:
        hot = con.sql(duckdb_pit.hot_keys_sql(cv, offline_relation(fs, view), "__requests")).to_arrow_table()
    finally:
        con.close()
    keys = entity_df["driver_id"].nunique()
    return {"hot_keys": hot.num_rows, "hot_requests": int(pa.compute.sum(hot["__r"]).as_py() or 0),
            "hot_events": int(pa.compute.sum(hot["__e"]).as_py() or 0), "light_keys": int(keys - hot.num_rows),
            "cost_factor": duckdb_pit.HOT_KEY_COST}


def _profile(sql: str, temp_dir: Path, name: str, table) -> dict:
    from bench.pit import profile_sql

    return profile_sql(sql, temp_dir, name, table)


def profile_ours(fs, view: str, feats, entity_df: pd.DataFrame, temp_dir: Path) -> dict:
    """DuckDB's profile of our main query (after the hot keys and exact variances are registered, as
    ``point_in_time`` does)."""
    from bench.common import duckdb_profile
    from featurestore.engines import duckdb_pit
    from featurestore.sdk.historical import request_times_ms

    cv = fs._restricted(view, list(feats))
    rel = offline_relation(fs, view)
    con = fs._connect()
    con.register("__requests", pa.table({"__row": np.arange(len(entity_df)), "__q_ms": request_times_ms(
        entity_df, "event_timestamp").to_numpy(), "driver_id": entity_df["driver_id"].to_numpy()}))
    try:
        hot = con.sql(duckdb_pit.hot_keys_sql(cv, rel, "__requests")).to_arrow_table()
        con.register(duckdb_pit.HOT, hot.select(["driver_id", "__hk", "__lo", "__hi"]))
        exact = None
        if any(a.function in ("variance", "stddev") for a in cv.aggregations):
            con.register(duckdb_pit.EXACT, duckdb_pit.exact_variances(con, cv, rel, "__requests", duckdb_pit.HOT))
            exact = duckdb_pit.EXACT
        return duckdb_profile(con, duckdb_pit.pit_sql(cv, rel, "__requests", hot=duckdb_pit.HOT, exact=exact))
    finally:
        con.close()


def render(r: dict, target: float):
    """(summary lines, detail lines) for bench/run.py."""
    from bench.common import fmt_s

    if "error" in r:
        return [f"### PIT join, one hot entity: FAILED: {r['error']}", ""], ["```", r.get("traceback", ""), "```"]
    p = r["params"]
    s = [f"### PIT join, one hot entity (best of {p['repeat']})", "",
         f"Shapes: **hot** = 1 driver, {p['hot_events']:,} events uniform over 8 days (no two in one ms), "
         f"{p['hot_requests']:,} requests uniform over the last day (10% exactly at one of its event times); "
         f"**mixed** = the same plus {p['light_keys']:,} light drivers with ~{p['light_events']} events each and "
         "one request each. Floor: DuckDB window sweep, `RANGE BETWEEN W PRECEDING AND 1 PRECEDING` on epoch ms, "
         "events and requests unioned (the issue's 0.9 s query), over the same offline-table files.", "",
         "| case | plan (keys hot / light) | events per request (mean, max) | ours best | floor best | ours / floor | "
         "target | peak RSS ours / floor / idle | same values |",
         "|---|---|---|---|---|---|---|---|---|"]
    for name, c in r["cases"].items():
        t = c["timings"]
        o, f = t["ours"]["best"], t["floor (DuckDB window sweep, RANGE frames)"]["best"]
        tgt = f"<= {target}x: {'**met**' if o / f <= target else '**missed**'}" if name != "hot, every aggregation" else "(info)"
        mem = c.get("peak_memory")
        mem_s = " / ".join(f"{mem[k].get('max_rss_gib', 'n/a')}" for k in ("ours", "floor", "idle interpreter (imports only)")) + " GiB" if mem else ""
        pl = c["plan"]
        e = c["events_per_request"]
        s.append(f"| {name} | {pl['hot_keys']} / {pl['light_keys']:,} | {e['mean']:,} / {e['max']:,} ({e['column']}) | "
                 f"{fmt_s(o)} | {fmt_s(f)} | {o / f:.2f}x | {tgt} | {mem_s} | {c['check']['equal']} |")
    s += ["", "Values are compared by `row_id`: counts and max exactly, sums and means to 1e-12 relative (ours: fsum), "
          "variance/stddev to 1e-6 (the floor's `var_samp` is Welford; ours is exact): largest relative "
          "difference " + ", ".join(
              f"{col} {v['max_rel_diff']:.1e}" for col, v in r["cases"]["hot, every aggregation"]["check"]["columns"].items()
              if col in ("var_1d", "std_1d", "sum_1d", "mean_1d")) + ".", ""]
    d = ["### PIT hot-entity details", ""]
    from bench.run import _top_ops

    for name, c in r["cases"].items():
        if "profile_ours_sql" in c:
            po, pf = c["profile_ours_sql"], c["profile_floor_sql"]
            d += [f"**({name}) DuckDB profiles** (operator times summed over threads). Ours (main query, after the "
                  f"hot-key count): {po['total_seconds']:.2f} s, top: {_top_ops(po)}. Floor: {pf['total_seconds']:.2f} s, "
                  f"top: {_top_ops(pf)}.", "",
                  "<details><summary>operator trees and cProfile of ours</summary>", "", "Ours:", "```", po["tree"], "```",
                  "Floor:", "```", pf["tree"], "```", "cProfile of ours (get_historical_features):", "```",
                  c["cprofile_ours"], "```", "</details>", ""]
    return s, d
