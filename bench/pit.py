"""Point-in-time join benchmarks: (a) latest features with a TTL, (b) exact sliding windows.

Data (numpy, seeded): ``events`` rows over 30 days for ``keys`` int64 driver ids (uniform), one Parquet
file with microsecond UTC timestamps that are whole milliseconds (Feast's duckdb store needs us; whole
ms means Feast's full-precision compare and our ms-floored compare see the same times). No two events
of a driver share a millisecond, so "latest" never depends on a tie rule (ours orders ties by every
column; an ASOF join picks any). ~2% of feature values are null. Request rows: 1% unknown drivers, 10%
exactly at one of the driver's event times (our exclusive ``ts < q`` matters there), the rest uniform.

Contenders, each timed from a pandas entity frame to a materialised result:

* ours: ``FeatureStore.get_historical_features`` on views whose offline tables were backfilled first
  (the backfill is not timed here; see ``bench/backfill.py``). Returns every row in input order.
* floor: a hand-written DuckDB query over the *same* offline-table Parquet files, pandas frame in,
  Arrow table out (no row order): ``ASOF LEFT JOIN ... ON key = key AND q > ts`` plus the TTL filter
  ``ts >= q - ttl`` for (a); a ``LEFT JOIN ... ON key = key AND ts >= q - 7d AND ts < q`` range join
  with ``FILTER`` per window for (b).
* Feast 0.67 (latest only; Feast does not compute window aggregations): ``get_historical_features(...)
  .to_df()`` with its ``duckdb`` and ``file`` offline stores, asked at ``q - 1 us`` (Feast is inclusive,
  ``ts <= q``), reading the raw events Parquet file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil
import textwrap
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bench.common import DATA_ROOT, as_float, compare_numeric, interleaved, log, timed

SCALES = {
    "tiny": dict(events=100_000, requests=10_000, keys=1_000),  # development only
    "small": dict(events=1_000_000, requests=100_000, keys=10_000),
    "full": dict(events=10_000_000, requests=1_000_000, keys=100_000),
}
SEED = 20261123
T0_MS = int(pd.Timestamp("2026-09-01T00:00:00Z").value // 1_000_000)
DAY_MS = 86_400_000
SPAN_MS = 30 * DAY_MS
LATEST = ("conv_rate", "acc_rate", "trips")
TIE_CORRECT = "hand-written with our tie rule (ASOF, then ties of matched (key, ts) only)"
WINDOWS = {"1h": 3_600_000, "1d": DAY_MS, "7d": 7 * DAY_MS}
WINDOW_FEATURES = [f"amount_{fn}_{w}" for w in WINDOWS for fn in ("count", "sum", "max")]

DEFINITIONS = '''\
"""Benchmark views over the synthetic driver events."""
from featurestore import Aggregation, Entity, FeatureView, Latest, ParquetFiles, Source

driver = Entity(join_keys=["driver_id"])

events = Source(
    schema={{"driver_id": "int64", "conv_rate": "float64", "acc_rate": "float64", "trips": "int64",
            "amount": "float64", "event_timestamp": "timestamp"}},
    timestamp="event_timestamp",
    batch=ParquetFiles({path!r}),
)

driver_latest = FeatureView(
    entities=[driver], source=events, ttl="1d",
    features=[Latest("conv_rate"), Latest("acc_rate"), Latest("trips")],
)

driver_windows = FeatureView(
    entities=[driver], source=events,
    features=[
        Aggregation("*", "count", "1h", name="amount_count_1h"),
        Aggregation("amount", "sum", "1h", name="amount_sum_1h"),
        Aggregation("amount", "max", "1h", name="amount_max_1h"),
        Aggregation("*", "count", "1d", name="amount_count_1d"),
        Aggregation("amount", "sum", "1d", name="amount_sum_1d"),
        Aggregation("amount", "max", "1d", name="amount_max_1d"),
        Aggregation("*", "count", "7d", name="amount_count_7d"),
        Aggregation("amount", "sum", "7d", name="amount_sum_7d"),
        Aggregation("amount", "max", "7d", name="amount_max_7d"),
    ],
)
'''

FEAST_DEFS = '''\
from datetime import timedelta
from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

driver = Entity(name="driver", join_keys=["driver_id"], value_type=ValueType.INT64)
driver_events = FileSource(name="driver_events", path={path!r}, timestamp_field="event_timestamp")
driver_latest = FeatureView(
    name="driver_latest", entities=[driver], ttl=timedelta(days=1), source=driver_events,
    schema=[Field(name="conv_rate", dtype=Float64), Field(name="acc_rate", dtype=Float64),
            Field(name="trips", dtype=Int64)],
)
'''

FEAST_YAML = """\
project: bench_pit_{kind}
registry: {repo}/registry.db
provider: local
offline_store:
  type: {kind}
online_store:
  type: sqlite
  path: {repo}/online.db
entity_key_serialization_version: 3
"""


# -- data ---------------------------------------------------------------------------------------------
def _nullable(rng, values: np.ndarray, p: float, typ) -> pa.Array:
    return pa.array(values, typ, mask=rng.random(len(values)) < p)


def generate(data_dir: Path, events: int, requests: int, keys: int, seed: int = SEED) -> Dict[str, object]:
    """Write ``events.parquet`` and ``requests.parquet`` into ``data_dir`` (reused when present)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ev_path, rq_path, done = data_dir / "events.parquet", data_dir / "requests.parquet", data_dir / "DONE"
    if done.exists():
        return {"events_path": ev_path, "requests_path": rq_path, "generated": False,
                "events": pq.ParquetFile(ev_path).metadata.num_rows}
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    key = rng.integers(0, keys, events, dtype=np.int64)
    off = rng.integers(0, SPAN_MS, events, dtype=np.int64)
    # One event per (driver, ms): no ties.
    _, first = np.unique(key * SPAN_MS + off, return_index=True)
    key, off = key[first], off[first]
    order = np.argsort(off, kind="stable")  # files are in time order, as history usually is
    key, off = key[order], off[order]
    n = len(key)
    table = pa.table({
        "driver_id": pa.array(key, pa.int64()),
        "conv_rate": _nullable(rng, rng.random(n).round(6), 0.02, pa.float64()),
        "acc_rate": _nullable(rng, rng.random(n).round(6), 0.02, pa.float64()),
        "trips": _nullable(rng, rng.integers(0, 1000, n), 0.02, pa.int64()),
        "amount": _nullable(rng, np.round(rng.lognormal(3.0, 1.0, n), 2), 0.01, pa.float64()),
        "event_timestamp": pa.array((T0_MS + off) * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
    })
    pq.write_table(table, ev_path, row_group_size=1_000_000, compression="zstd")

    # Requests: 10% exactly at an event time of that driver, 1% unknown drivers, the rest uniform.
    r_key = rng.integers(0, keys, requests, dtype=np.int64)
    r_q = T0_MS + DAY_MS + rng.integers(0, SPAN_MS, requests, dtype=np.int64)
    at_event = rng.random(requests) < 0.10
    pick = rng.integers(0, n, int(at_event.sum()))
    r_key[at_event], r_q[at_event] = key[pick], T0_MS + off[pick]
    unknown = rng.random(requests) < 0.01
    r_key[unknown] = keys + rng.integers(0, keys, int(unknown.sum()))
    req = pa.table({
        "row_id": pa.array(np.arange(requests), pa.int64()),
        "driver_id": pa.array(r_key, pa.int64()),
        "q_ms": pa.array(r_q, pa.int64()),
        "label": pa.array(rng.integers(0, 2, requests), pa.int64()),
    })
    pq.write_table(req, rq_path)
    done.write_text("ok\n")
    log(f"generated {n:,} events, {requests:,} requests in {time.perf_counter() - t0:.1f}s -> {data_dir}")
    return {"events_path": ev_path, "requests_path": rq_path, "generated": True, "events": n}


def entity_frames(rq_path: Path):
    """(ours, feast) entity frames: ours at q (ms), Feast at q - 1 us (its join is inclusive)."""
    req = pq.read_table(rq_path).to_pandas()
    q_us = req["q_ms"].to_numpy() * 1000
    ts = pd.to_datetime(q_us, unit="us", utc=True)
    ours = pd.DataFrame({"driver_id": req["driver_id"], "event_timestamp": ts, "row_id": req["row_id"],
                         "label": req["label"]})
    feast_df = pd.DataFrame({"driver_id": req["driver_id"],
                             "event_timestamp": pd.to_datetime(q_us - 1, unit="us", utc=True).astype(
                                 "datetime64[us, UTC]"),
                             "row_id": req["row_id"], "label": req["label"]})
    return ours, feast_df


# -- our store ----------------------------------------------------------------------------------------
def make_store(work: Path, events_path: Path):
    from featurestore import FeatureStore
    from featurestore.config import load_config

    repo = work / "ours"
    if repo.exists():
        shutil.rmtree(repo)
    (repo / "definitions").mkdir(parents=True)
    (repo / "definitions" / "bench_views.py").write_text(DEFINITIONS.format(path=str(events_path)))
    (repo / "featurestore.yaml").write_text("project: bench_pit\ndefinitions: definitions\n")
    return FeatureStore(repo, config=dataclasses.replace(load_config(repo)))


def offline_relation(fs, view: str) -> str:
    from featurestore.engines import duckdb_sql as dsql

    cv = fs.compiled(view)
    files = fs.offline.table(view, ts_column=cv.ts_column).files()
    return "read_parquet([" + ", ".join(dsql.literal(f) for f in files) + "])"


# -- floors -------------------------------------------------------------------------------------------
def floor_latest_sql(relation: str) -> str:
    """The floor for (a). Times as epoch ms (as fast as or faster than TIMESTAMPTZ compares here), ASOF on
    ``q > ts`` (ours is exclusive), TTL ``ts >= q - 1d`` (ours is inclusive at the lower edge)."""
    cols = ", ".join(f"CASE WHEN e.t >= r.q - {DAY_MS} THEN e.{c} END AS {c}" for c in LATEST)
    return (f"SELECT r.row_id, {cols}\n"
            "FROM (SELECT row_id, driver_id, epoch_ms(event_timestamp) AS q FROM req) r\n"
            f"ASOF LEFT JOIN (SELECT driver_id, {', '.join(LATEST)}, epoch_ms(event_timestamp) AS t FROM {relation}) e\n"
            "  ON r.driver_id = e.driver_id AND r.q > e.t")


_ZERO = {"string": "''", "int32": "0", "int64": "0", "float32": "0.0", "float64": "0.0", "bool": "false"}


def tie_correct_latest_sql(fs, relation: str) -> str:
    """A hand-written variant WITH our tie rule (informational): ASOF join on (key, ts) only, then break
    ties among the events of each matched (key, ts) - one hash join of the requests' matches with the
    events, instead of deduplicating every (key, ts) of the whole event table first. Order key = our
    event order after ts (``CompiledView.order_columns``), each column as (is not null, value)."""
    cv = fs.compiled("driver_latest")
    types = dict(cv.source_columns)
    parts = []
    for i, c in enumerate(cv.order_columns[1:]):
        parts += [f"n{i} := ev.{c} IS NOT NULL", f"v{i} := coalesce(ev.{c}, {_ZERO[types[c]]})"]
    order = f"struct_pack({', '.join(parts)})" if parts else "0"
    values = ", ".join(f"l{i} := ev.{c}" for i, c in enumerate(LATEST))
    cols = ", ".join(f"w.v.l{i} AS {c}" for i, c in enumerate(LATEST))
    return (
        f"WITH ev AS (SELECT *, epoch_ms(event_timestamp) AS t FROM {relation}),\n"
        "r AS (SELECT row_id, driver_id, epoch_ms(event_timestamp) AS q FROM req),\n"
        "m AS (SELECT r.row_id, r.driver_id, r.q, e.t FROM r ASOF LEFT JOIN (SELECT driver_id, t FROM ev) e\n"
        "      ON r.driver_id = e.driver_id AND r.q > e.t),\n"
        f"w AS (SELECT m.row_id, arg_max(struct_pack({values}), {order}) AS v\n"
        "      FROM m JOIN ev ON ev.driver_id = m.driver_id AND ev.t = m.t\n"
        f"      WHERE m.t >= m.q - {DAY_MS} GROUP BY m.row_id)\n"
        f"SELECT m.row_id, {cols} FROM m LEFT JOIN w ON w.row_id = m.row_id"
    )


def floor_windows_sql(relation: str) -> str:
    """The floor for (b): one equi + range join on the largest window, FILTER per window, then the
    requests without events added back (count 0). The fastest of the forms tried (a LEFT JOIN range
    join with GROUP BY, TIMESTAMPTZ with INTERVALs: 1.1-1.9x slower at small scale)."""
    aggs = []
    for w, ms in WINDOWS.items():
        cond = f"e.t >= r.q - {ms}"
        aggs += [f"count(*) FILTER (WHERE {cond}) AS amount_count_{w}",
                 f"sum(e.amount) FILTER (WHERE {cond}) AS amount_sum_{w}",
                 f"max(e.amount) FILTER (WHERE {cond}) AS amount_max_{w}"]
    outer = max(WINDOWS.values())
    cols = []
    for w in WINDOWS:
        cols += [f"COALESCE(a.amount_count_{w}, 0) AS amount_count_{w}", f"a.amount_sum_{w}", f"a.amount_max_{w}"]
    return (
        "WITH r AS (SELECT row_id, driver_id, epoch_ms(event_timestamp) AS q FROM req),\n"
        f"a AS (SELECT r.row_id, {', '.join(aggs)}\n"
        f"  FROM r JOIN (SELECT driver_id, amount, epoch_ms(event_timestamp) AS t FROM {relation}) e\n"
        f"    ON r.driver_id = e.driver_id AND e.t >= r.q - {outer} AND e.t < r.q\n"
        "  GROUP BY r.row_id)\n"
        f"SELECT r.row_id, {', '.join(cols)} FROM r LEFT JOIN a ON a.row_id = r.row_id"
    )


def run_floor(sql: str, entity_df: pd.DataFrame, temp_dir: Path) -> pa.Table:
    from featurestore.engines.duckdb_engine import connect

    con = connect(temp_dir=temp_dir)  # same settings as ours: UTC, spill directory, default threads
    con.register("req", entity_df)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()


def profile_sql(sql: str, temp_dir: Path, register_as: str, table) -> dict:
    """DuckDB's profile (the EXPLAIN ANALYZE numbers) of one query, compact."""
    from bench.common import duckdb_profile
    from featurestore.engines.duckdb_engine import connect

    con = connect(temp_dir=temp_dir)
    con.register(register_as, table)
    try:
        return duckdb_profile(con, sql)
    finally:
        con.close()


def ours_pit_sql(fs, view: str, features) -> str:
    """Our point-in-time SQL when no key is hot (the range-join plan; the uniform data has no hot key)."""
    from featurestore.engines import duckdb_pit

    return duckdb_pit.pit_sql(fs._restricted(view, list(features)), offline_relation(fs, view), "__requests")


def ours_sql_only(fs, view: str, features, entity_df: pd.DataFrame):
    """Our point-in-time queries alone (the per-key plan choice and the query; requests registered as
    Arrow, Arrow out, no reorder): the share of ours that is DuckDB, for the breakdown."""
    from featurestore.engines import duckdb_pit

    req = requests_arrow(entity_df)
    con = fs._connect()
    con.register("__requests", req)
    try:
        return duckdb_pit.point_in_time(con, fs._restricted(view, list(features)), offline_relation(fs, view),
                                        "__requests")
    finally:
        con.close()


def requests_arrow(entity_df):
    from featurestore.engines import duckdb_sql as dsql
    from featurestore.sdk.historical import request_times_ms

    return pa.table({dsql.REQ_ROW: pa.array(np.arange(len(entity_df)), pa.int64()),
                     dsql.REQ_Q: pa.array(request_times_ms(entity_df, "event_timestamp").to_numpy(), pa.int64()),
                     "driver_id": pa.array(entity_df["driver_id"].to_numpy(), pa.int64())})


# -- Feast ---------------------------------------------------------------------------------------------
def make_feast(work: Path, kind: str, events_path: Path):
    import warnings

    import feast

    # ibis 12 on duckdb 2.0 calls the deprecated fetch_arrow_table(); importing feast resets filters.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    repo = work / f"feast_{kind}"
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    defs = repo / "bench_defs.py"
    defs.write_text(FEAST_DEFS.format(path=str(events_path)))
    (repo / "feature_store.yaml").write_text(FEAST_YAML.format(kind=kind, repo=repo))
    spec = importlib.util.spec_from_file_location(f"bench_feast_defs_{kind}", defs)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    store = feast.FeatureStore(repo_path=str(repo))
    store.apply([module.driver, module.driver_events, module.driver_latest])
    return store


# -- checks -------------------------------------------------------------------------------------------
def by_row_id(table: pa.Table) -> pa.Table:
    return table.take(pc.sort_indices(table["row_id"]))


def check_latest(ours: pd.DataFrame, other: pa.Table, n: int, name: str) -> dict:
    """Compare ``other`` (row_id + feature columns, any order, maybe missing rows) to ours (input order,
    row_id == position)."""
    other = by_row_id(other)
    rid = other["row_id"].to_numpy()
    out: Dict[str, object] = {"rows_returned": other.num_rows, "rows_expected": n}
    missing = np.setdiff1d(np.arange(n), rid, assume_unique=False)
    out["rows_missing"] = int(len(missing))
    if len(missing):
        has_value = np.zeros(len(missing), dtype=bool)
        for c in LATEST:
            has_value |= ~np.isnan(as_float(ours[c].to_numpy()[missing]))
        out["rows_missing_where_ours_has_a_value"] = int(has_value.sum())
    per = {}
    for c in LATEST:
        per[c] = compare_numeric(as_float(ours[c].to_numpy()[rid]), as_float(other[c]))
    out["columns"] = per
    out["equal"] = all(v["equal"] for v in per.values()) and other.num_rows == n and not len(missing)
    out["equal_on_returned_rows"] = all(v["equal"] for v in per.values())
    log(f"  check {name}: equal={out['equal']} missing={out['rows_missing']} "
        + ", ".join(f"{c}:{v['mismatches']}" for c, v in per.items()))
    return out


def check_windows(ours: pd.DataFrame, other: pa.Table, n: int) -> dict:
    other = by_row_id(other)
    rid = other["row_id"].to_numpy()
    per = {}
    for c in WINDOW_FEATURES:
        tol = 1e-12 if "_sum_" in c else 0.0  # ours: compensated fsum; floor: DuckDB's sum
        per[c] = compare_numeric(as_float(ours[c].to_numpy()[rid]), as_float(other[c]), rel_tol=tol)
    ok = all(v["equal"] for v in per.values()) and other.num_rows == n
    log(f"  check windows: equal={ok} " + ", ".join(f"{c}:{v['mismatches']}" for c, v in per.items()))
    return {"equal": ok, "rows_returned": other.num_rows, "rows_expected": n, "columns": per,
            "sum_tolerance": "relative 1e-12 (ours sums with fsum, the floor with sum); counts and max exact"}


def nonvacuous_latest(ours: pd.DataFrame, n: int) -> dict:
    found = np.zeros(n, dtype=bool)
    for c in LATEST:
        found |= ~np.isnan(as_float(ours[c].to_numpy()))
    return {"rows_with_a_value": int(found.sum()), "rows_all_null": int((~found).sum())}


# -- the benchmark ------------------------------------------------------------------------------------
def run(scale: str, repeat: int = 3, feast_file: Optional[bool] = None, profile: bool = True) -> dict:
    p = SCALES[scale]
    work = DATA_ROOT / f"pit-{scale}"
    data = generate(work / "data", p["events"], p["requests"], p["keys"])
    ev_path = data["events_path"]
    temp_dir = work / "duckdb-tmp"
    fs = make_store(work, ev_path)
    t_bf, bf = timed(lambda: fs.backfill(views=["driver_latest", "driver_windows"]))
    log(f"backfill (setup, not the measured part): {sum(r.rows for r in bf):,} rows in {t_bf:.1f}s")
    ours_df, feast_df = entity_frames(data["requests_path"])
    n = len(ours_df)
    out: Dict[str, object] = {
        "scale": scale, "params": {**p, "events_after_dedup": data["events"], "seed": SEED, "repeat": repeat},
        "setup_backfill_seconds": round(t_bf, 2),
    }

    # ---- (a) latest ----
    lat_feats = [f"driver_latest:{c}" for c in LATEST]
    rel_lat = offline_relation(fs, "driver_latest")
    floor_sql = floor_latest_sql(rel_lat)
    tie_sql = tie_correct_latest_sql(fs, rel_lat)
    keep: Dict[str, object] = {}

    def keep_first(name, result):
        keep[name] = result

    contenders = {
        "ours": lambda: fs.get_historical_features(ours_df, features=lat_feats),
        "floor (DuckDB ASOF LEFT JOIN)": lambda: run_floor(floor_sql, ours_df, temp_dir),
        "ours, compiled SQL only": lambda: ours_sql_only(fs, "driver_latest", LATEST, ours_df),
        "floor over the raw events file": lambda: run_floor(floor_latest_sql(f"read_parquet('{ev_path}')"), ours_df,
                                                            temp_dir),
        TIE_CORRECT: lambda: run_floor(tie_sql, ours_df, temp_dir),
    }
    log(f"(a) latest: {n:,} entity rows x {data['events']:,} events")
    timings = interleaved(contenders, repeat, keep_first)
    ours_res = pd.DataFrame(keep.pop("ours"))
    assert ours_res["row_id"].tolist() == ours_df["row_id"].tolist(), "ours did not keep input order"
    checks = {
        "floor": check_latest(ours_res, keep.pop("floor (DuckDB ASOF LEFT JOIN)"), n, "floor"),
        "floor over raw file": check_latest(ours_res, keep.pop("floor over the raw events file"), n, "floor raw"),
        TIE_CORRECT: check_latest(ours_res, keep.pop(TIE_CORRECT), n, "tie-correct"),
    }
    sql_only = keep.pop("ours, compiled SQL only")
    sql_only = sql_only.rename_columns(["row_id" if c == "__row" else c for c in sql_only.column_names])
    checks["ours SQL only"] = check_latest(ours_res, sql_only, n, "ours SQL only")
    del sql_only
    a = {"timings": {k: v.as_json() for k, v in timings.items()}, "checks": checks,
         "nonvacuous": nonvacuous_latest(ours_res, n)}

    # Feast
    try:
        import feast  # noqa: F401

        feast_ok = True
    except ImportError as exc:  # pragma: no cover
        feast_ok = False
        a["feast_error"] = f"cannot import feast: {exc}"
    if feast_ok:
        run_file = feast_file if feast_file is not None else True
        kinds = ["duckdb"] + (["file"] if run_file else [])
        for kind in kinds:
            name = f"Feast 0.67 ({kind} store)"
            try:
                store = make_feast(work, kind, ev_path)
                reps = repeat if not (kind == "file" and scale == "full") else 1
                fk: Dict[str, object] = {}
                t = interleaved({name: lambda: store.get_historical_features(
                    entity_df=feast_df, features=lat_feats).to_df()}, reps,
                    lambda _n, r: fk.__setitem__("r", r))
                a["timings"][name] = t[name].as_json()
                res = fk.pop("r")
                tbl = pa.Table.from_pandas(res[["row_id", *LATEST]], preserve_index=False)
                del res
                checks[name] = check_latest(ours_res, tbl, n, name)
            except Exception as exc:  # noqa: BLE001 - report, do not hide
                a.setdefault("feast_errors", {})[kind] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                log(f"  Feast {kind} failed: {a['feast_errors'][kind]}")
        if not run_file:
            a["feast_file_skipped"] = "skipped at this scale (--no-feast-file)"
    if profile:
        a["profile_ours_sql"] = profile_sql(ours_pit_sql(fs, "driver_latest", LATEST), temp_dir, "__requests",
                                            requests_arrow(ours_df))
        a["profile_floor_sql"] = profile_sql(floor_sql, temp_dir, "req", ours_df)
        a["profile_tie_correct_sql"] = profile_sql(tie_sql, temp_dir, "req", ours_df)
        a["cprofile_ours"] = cprofile(lambda: fs.get_historical_features(ours_df, features=lat_feats))
    out["latest"] = a
    del ours_res

    # ---- (b) windows ----
    win_feats = [f"driver_windows:{c}" for c in WINDOW_FEATURES]
    rel_win = offline_relation(fs, "driver_windows")
    wsql = floor_windows_sql(rel_win)
    keep.clear()
    contenders = {
        "ours": lambda: fs.get_historical_features(ours_df, features=win_feats),
        "floor (DuckDB range join)": lambda: run_floor(wsql, ours_df, temp_dir),
        "ours, compiled SQL only": lambda: ours_sql_only(fs, "driver_windows", WINDOW_FEATURES, ours_df),
    }
    log(f"(b) windows: {n:,} entity rows x {data['events']:,} events")
    timings = interleaved(contenders, repeat, keep_first)
    ours_res = pd.DataFrame(keep.pop("ours"))
    b = {"timings": {k: v.as_json() for k, v in timings.items()},
         "checks": {"floor": check_windows(ours_res, keep.pop("floor (DuckDB range join)"), n)}}
    sql_only = keep.pop("ours, compiled SQL only")
    sql_only = sql_only.rename_columns(["row_id" if c == "__row" else c for c in sql_only.column_names])
    b["checks"]["ours SQL only"] = check_windows(ours_res, sql_only, n)
    b["peak_memory"] = peak_memory(fs, work, ours_df, win_feats, wsql)
    b["nonvacuous"] = {"rows_with_events_in_7d": int((ours_res["amount_count_7d"] > 0).sum()),
                       "rows_with_events_in_1h": int((ours_res["amount_count_1h"] > 0).sum()),
                       "mean_events_in_7d": round(float(ours_res["amount_count_7d"].mean()), 2)}
    if profile:
        b["profile_ours_sql"] = profile_sql(ours_pit_sql(fs, "driver_windows", WINDOW_FEATURES), temp_dir,
                                            "__requests", requests_arrow(ours_df))
        b["profile_floor_sql"] = profile_sql(wsql, temp_dir, "req", ours_df)
        b["cprofile_ours"] = cprofile(lambda: fs.get_historical_features(ours_df, features=win_feats))
    out["windows"] = b
    out["sql"] = {"floor_latest": floor_sql, "floor_windows": wsql, "tie_correct_latest": tie_sql,
                  "ours_latest": ours_pit_sql(fs, "driver_latest", LATEST),
                  "ours_windows": ours_pit_sql(fs, "driver_windows", WINDOW_FEATURES)}
    return out


def peak_memory(fs, work: Path, entity_df: pd.DataFrame, features, floor_sql: str) -> dict:
    """Ours and the floor once more, each alone in a fresh interpreter: peak resident memory."""
    from bench import rss

    entity_path, sql_path = work / "windows_entity.parquet", work / "windows_floor.sql"
    entity_df.to_parquet(entity_path)
    sql_path.write_text(floor_sql)
    out = {"ours": rss.measure(["ours", fs.repo_path, entity_path, ",".join(features)]),
           "floor": rss.measure(["sql", entity_path, sql_path]),
           "idle interpreter (imports only)": rss.measure(["idle"])}
    log(f"  peak memory: {out}")
    return out


def cprofile(fn, top: int = 25) -> str:
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(top)
    text = textwrap.dedent(s.getvalue())
    import re

    from bench.common import ROOT

    text = text.replace(str(ROOT) + "/.venv/lib/python3.11/site-packages/", "").replace(str(ROOT) + "/", "")
    text = re.sub(r"\S*/lib/python3\.\d+/", "", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines() if line.strip()) + "\n"
