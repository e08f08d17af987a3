"""What one entity rebuild reads from the batch -> stream hand-off's seed (issue 11.5): the seed file keeps
each entity as the stream's state operator holds it after a flush (members from its cut on, the folded
base of the rest: ``featurestore.engines.flink.handoff.seed_record``), where it used to keep every offline
row of the entity, read whole at each rebuild (first sight, restore, cache eviction).

Data (``featurestore.datagen``, seeded): one hot user and one hot merchant with ``--events`` transactions
each over ``--days`` days, plus a background of 20,000 transactions; the example repo's definitions
(``user_spend``: windows 10 min .. 7 d and the unbounded ``tx_count_lifetime``; ``user_profile``: TTL 30 d;
``merchant_activity``: 1 h .. 7 d). Per view, for the hot entity: the members a rebuild reads (count and
bytes) and the Python heap it allocates (tracemalloc peak) and its CPU seconds (``time.process_time``),
from the whole history (before) and from the seed record (after); the two states are checked equal.
Needs Redis (the seed writer materializes the same rows).

    .venv/bin/python -m bench.handoff_seed [--events 50000 --days 60] [--name handoff-seed]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import time
import tracemalloc
from pathlib import Path

import pandas as pd

from bench.common import DATA_ROOT, RESULTS, ROOT, log, machine_notes

END = pd.Timestamp("2026-11-01T00:00:00", tz="UTC")
HOT = {"user_spend": ["u_hot"], "user_profile": ["u_hot"], "merchant_activity": ["m_hot"]}


def _measure(fn):
    tracemalloc.start()
    t0 = time.process_time()
    out = fn()
    cpu = time.process_time() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, cpu, peak


def main(argv=None) -> int:
    import sqlite3

    from featurestore import FeatureStore, datagen
    from featurestore.config import load_config
    from featurestore.engines.flink import handoff
    from featurestore.kernel.entity import trim_to_retention
    from featurestore.online import view_layout
    from featurestore.stores import online_format as ofmt
    from featurestore.stores.online_redis import encode_entity, materialize_sql, retention

    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--days", type=float, default=60)
    ap.add_argument("--name", default="handoff-seed")
    args = ap.parse_args(argv)
    work = DATA_ROOT / "handoff-seed"
    if work.exists():
        shutil.rmtree(work)
    frames = [datagen.generate_transactions(events=20_000, users=2_000, merchants=200, days=args.days, seed=71, end=END)]
    u = datagen.generate_transactions(events=args.events, users=1, merchants=100, days=args.days, seed=72, end=END)
    u["user_id"], u["event_id"] = "u_hot", "u_" + u["event_id"]
    m = datagen.generate_transactions(events=args.events, users=5_000, merchants=1, days=args.days, seed=73, end=END)
    m["merchant_id"], m["event_id"] = "m_hot", "m_" + m["event_id"]
    frames += [u, m]
    repo = work / "repo"
    shutil.copytree(ROOT / "definitions", repo / "definitions", ignore=shutil.ignore_patterns("__pycache__"))
    datagen.write_parquet(repo / "data" / "transactions", df=pd.concat(frames, ignore_index=True), files=4)
    project = f"bench_seed_{os.getpid()}"
    (repo / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
    store = FeatureStore(repo, config=dataclasses.replace(load_config(repo), project=project))
    store.apply()
    store.backfill(views=list(HOT))
    plan = handoff.HandOff()
    for name in HOT:
        version = store.offline.table(name, ts_column=store.compiled(name).ts_column).version
        plan.views[name] = handoff.ViewSeed(name, int(version), [[-2**62, 2**62]], {})
    path = work / "seed.sqlite"
    t0 = time.process_time()
    handoff.write_seed(store, plan, path)
    write_cpu = time.process_time() - t0
    writer = {}  # per view: the seed writer's Python heap peak (tracemalloc; DuckDB's memory is native) and CPU
    for name, seed in plan.views.items():
        one = handoff.HandOff()
        one.views[name] = seed
        t0 = time.process_time()
        handoff.write_seed(store, one, work / f"seed-{name}.sqlite")
        cpu = time.process_time() - t0
        tracemalloc.start()
        handoff.write_seed(store, one, work / f"seed-{name}-traced.sqlite")
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        writer[name] = {"cpu_s": round(cpu, 2), "heap_peak_mb": round(peak / 2**20, 2)}
        log(f"seed writer, {name}: {writer[name]}")
    db = sqlite3.connect(path)
    con = store._connect()
    rows = []
    for name, entities in HOT.items():
        cv = store.compiled(name)
        layout, r, codec = view_layout(cv), retention(cv), ofmt.members(cv)
        rel = handoff._relation(con, store, plan.views[name])
        key = cv.join_keys[0]
        for entity in entities:
            (members,) = con.sql(f"SELECT __fs_members FROM ({materialize_sql(cv, rel)}) "
                                 f"WHERE \"{key}\" = '{entity}'").fetchall()[0]

            def before():
                state = handoff.entity_state(layout, r.keep_base, codec, None, None, None, members)
                trim_to_retention(state, r.window_ms)
                return state

            record = handoff.read_seed(db, encode_entity([entity]))[name]

            def after():
                return handoff.entity_state(layout, r.keep_base, codec, None, None, record[1], record[0])

            old, cpu_old, peak_old = _measure(before)
            new, cpu_new, peak_new = _measure(after)
            old.rewrite(), new.rewrite()
            assert dataclasses.asdict(old.drain()) == dataclasses.asdict(new.drain()), (name, entity)
            rows.append({"view": name, "entity": entity, "history_members": len(members),
                         "history_bytes": sum(map(len, members)), "seed_members": len(record[0]),
                         "seed_bytes": sum(map(len, record[0])), "cpu_before_s": round(cpu_old, 4),
                         "cpu_after_s": round(cpu_new, 4), "heap_before_mb": round(peak_old / 2**20, 2),
                         "heap_after_mb": round(peak_new / 2**20, 2)})
            log(json.dumps(rows[-1]))
    db.close()
    con.close()
    client = store.online_store().client
    for k in client.scan_iter(match=f"fs:{project}:*", count=1000):
        client.delete(k)
    notes = machine_notes()
    out = {"args": vars(args), "seed_file_mb": round(path.stat().st_size / 2**20, 2), "write_cpu_s": round(write_cpu, 2),
           "rows": rows, "writer": writer, "machine": notes, "load_end": list(os.getloadavg())}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(out, indent=2))
    lines = [f"# Hand-off seed: one entity rebuild ({args.events} events per hot entity over {args.days:g} days)", "",
             f"Seed file {out['seed_file_mb']} MB, written in {out['write_cpu_s']} CPU-s (materialize into Redis included). "
             f"Load average {os.getloadavg()[0]:.1f} (2 cores).", "",
             "| view | entity | members read before | after | bytes before | after | heap before MB | after MB "
             "| CPU-s before | after |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['view']} | {r['entity']} | {r['history_members']} | {r['seed_members']} | "
                     f"{r['history_bytes']} | {r['seed_bytes']} | {r['heap_before_mb']} | {r['heap_after_mb']} | "
                     f"{r['cpu_before_s']} | {r['cpu_after_s']} |")
    lines += ["", "The seed writer per view (its Python heap peak under tracemalloc, a second write; CPU of the first, "
              "materialize into Redis included):", "", "| view | writer heap peak MB | writer CPU-s |", "|---|---|---|"]
    lines += [f"| {name} | {w['heap_peak_mb']} | {w['cpu_s']} |" for name, w in writer.items()]
    (RESULTS / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
