"""Backfill throughput: ``FeatureStore.backfill()`` of the example's ``user_spend`` view.

Data: the project's own seeded transaction generator (``featurestore.datagen``: skewed users and
merchants, bursts, ties, sub-ms times, refunds), written as Parquet into a temp repo that carries a copy
of the example definitions (``definitions/``). Each repetition backfills into a fresh offline root, so
every run does the same work (a first version of the table).

Baseline in the same run: a hand-written DuckDB ``COPY (SELECT ... WHERE amount > 0 ...) TO ...
(PARTITION_BY (date))`` producing the same rows (same filter, projection, ms truncation), day-partitioned
zstd Parquet like the offline store. What ours adds: a second scan counting rejected rows, Arrow batches
through Python (cast to the stored schema), its own day-partitioned writer, fsync and a manifest.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Dict

import pyarrow.parquet as pq

from bench.common import DATA_ROOT, ROOT, duckdb_profile, interleaved, log, timed

SCALES = {
    "tiny": dict(events=200_000, users=5_000, merchants=500, days=14),
    "small": dict(events=1_000_000, users=25_000, merchants=2_500, days=30),
    "full": dict(events=10_000_000, users=250_000, merchants=25_000, days=30),
}
SEED = 7
VIEW = "user_spend"


def prepare(scale: str) -> Path:
    """A temp repo: example definitions + generated transactions (reused when present)."""
    from featurestore import datagen

    p = SCALES[scale]
    repo = DATA_ROOT / f"backfill-{scale}" / "repo"
    done = repo / "DATA_DONE"
    if not done.exists():
        if repo.exists():
            shutil.rmtree(repo)
        shutil.copytree(ROOT / "definitions", repo / "definitions",
                        ignore=shutil.ignore_patterns("__pycache__"))
        (repo / "featurestore.yaml").write_text("project: bench_backfill\ndefinitions: definitions\n")
        log(f"generating {p['events']:,} transactions (featurestore.datagen, seed {SEED})")
        _, df = timed(lambda: datagen.generate_transactions(p["events"], p["users"], p["merchants"], p["days"],
                                                            seed=SEED))
        t, _ = timed(lambda: datagen.write_parquet(repo / "data" / "transactions", df=df,
                                                   files=max(1, p["events"] // 1_000_000)))
        del df
        log(f"  written in {t:.1f}s")
        done.write_text("ok\n")
    return repo


def floor_sql(glob: str) -> str:
    return (
        "SELECT event_id, user_id, merchant_id, amount, currency, country, channel, card_present,\n"
        "  date_trunc('millisecond', ts) AS ts,\n"
        "  CASE WHEN currency = 'EUR' THEN amount * 1.08 ELSE amount END AS amount_usd,\n"
        "  strftime(ts, '%Y-%m-%d') AS date\n"
        f"FROM read_parquet('{glob}')\n"
        "WHERE amount > 0 AND ts IS NOT NULL AND user_id IS NOT NULL"
    )


def run(scale: str, repeat: int = 3, profile: bool = True) -> Dict[str, object]:
    from featurestore import FeatureStore
    from featurestore.config import load_config
    from featurestore.engines.duckdb_engine import connect

    repo = prepare(scale)
    glob = str(repo / "data" / "transactions" / "*.parquet")
    n_source = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted((repo / "data" / "transactions").glob("*.parquet")))
    runs = repo.parent / "runs"
    counter = {"i": 0}
    results = {}

    def fresh(name: str) -> Path:
        counter["i"] += 1
        d = runs / f"{name}-{counter['i']}"
        if runs.exists():
            for old in runs.iterdir():  # keep the disk clean: only the current run's output
                shutil.rmtree(old, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def ours():
        out = fresh("ours")
        fs = FeatureStore(repo, config=dataclasses.replace(load_config(repo), offline_root=str(out / "offline")))
        res = fs.backfill(views=[VIEW])[0]
        results["ours"] = res
        return res

    sql = floor_sql(glob)

    def floor():
        out = fresh("floor")
        con = connect(temp_dir=out / "tmp")
        con.execute(f"COPY ({sql}) TO '{out / 'table'}' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (date))")
        con.close()
        return None

    def copy_one_file():
        out = fresh("one")
        con = connect(temp_dir=out / "tmp")
        con.execute(f"COPY ({sql}) TO '{out / 'one.parquet'}' (FORMAT parquet, COMPRESSION zstd)")
        con.close()

    def query_only():
        con = connect()
        n = 0
        for b in con.sql(sql).to_arrow_reader(1_000_000):
            n += b.num_rows
        con.close()
        return n

    log(f"backfill: {n_source:,} source events, view {VIEW}")
    timings = interleaved({"ours (FeatureStore.backfill)": ours, "floor (DuckDB COPY ... PARTITION_BY)": floor,
                           "DuckDB COPY to one file (no partitions)": copy_one_file,
                           "DuckDB query to Arrow only (no write)": query_only}, repeat)
    res = results["ours"]
    con = connect()
    stored = con.sql(f"SELECT count(*) FROM ({sql})").fetchall()[0][0]
    out: Dict[str, object] = {
        "scale": scale, "params": {**SCALES[scale], "seed": SEED, "repeat": repeat, "view": VIEW},
        "source_events": n_source, "stored_rows_ours": res.rows, "stored_rows_floor": stored,
        "rows_equal": res.rows == stored,
        "timings": {k: v.as_json() for k, v in timings.items()},
        "events_per_second": {k: round(n_source / v.best) for k, v in timings.items()},
    }
    if profile:
        from featurestore.engines import duckdb_sql as dsql
        from featurestore.engines.duckdb_batch import batch_relation

        fs = FeatureStore(repo)
        cv = fs.compiled(VIEW)
        src = dsql.checked_sql(cv.source_columns, cv.ts_column, batch_relation(con, fs.repo.views[VIEW].source, repo),
                               fs.config.max_future_ms)
        out["profile_ours_backfill_sql"] = duckdb_profile(con, dsql.backfill_sql(cv, src, [VIEW]))
        from bench.pit import cprofile

        def one():
            o = fresh("prof")
            FeatureStore(repo, config=dataclasses.replace(load_config(repo), offline_root=str(o / "offline"))).backfill(
                views=[VIEW])

        out["cprofile_ours"] = cprofile(one, top=30)
    con.close()
    shutil.rmtree(runs, ignore_errors=True)
    return out
