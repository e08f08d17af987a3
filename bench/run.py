"""Run the benchmarks and write ``bench/results/<name>.md`` (table + notes + profiles) and ``.json``.

    .venv/bin/python -m bench.run [--scale small|full] [--only pit,pit_hot,backfill,online,online_hot,stream]
                                  [--repeat 3]
                                  [--name NAME] [--no-feast] [--no-feast-file] [--no-profile]

``small`` (default) takes a few minutes; ``full`` is the issue's size (PIT: 10M events x 1M entity
rows, 100k keys; backfill: 10M events). Data is generated once (numpy, seeded) under
``$FS_BENCH_DATA`` (default /tmp/fs-bench) and reused. Redis must be up for ``online``
(``bash infra/up.sh``). Times are ratios against a baseline measured in the same run: the machine is
shared; absolute numbers move with its load (recorded at start and end).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Dict, List, Optional

from bench.common import DATA_ROOT, fmt_s, loadavg, log, machine_notes, redis_version, source_hashes, source_fingerprint, changed_files, write_results

ALL = ("pit", "pit_hot", "backfill", "online", "online_hot", "stream")
DEFAULT = ("pit", "pit_hot", "backfill", "online")  # stream (Kafka + Flink, minutes) runs with --only stream
TARGETS = {
    "pit_latest_ratio": 1.2,
    "pit_windows_ratio": 1.5,
    "pit_hot_ratio": 2.0,
    "backfill_events_per_s": 1_000_000,
    "online_p99_1_ms": 1.0,
    "online_p99_100_ms": 10.0,
    "materialize_floor_ratio": 0.5,  # ours' speed / the pipelined-write floor's speed, same bytes
    "online_hot_ratio": 2.0,  # p50 at 300k events / p50 at 100 events (one entity)
}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description="featurestore benchmarks")
    ap.add_argument("--scale", choices=("small", "full", "tiny"), default="small")
    ap.add_argument("--only", default=",".join(DEFAULT),
                    help="comma list of: pit, pit_hot, backfill, online, online_hot, stream "
                         "(default: pit, pit_hot, backfill, online)")
    ap.add_argument("--no-before", action="store_true",
                    help="online_hot: skip the measurement of the code before the partial-state rewrite")
    ap.add_argument("--repeat", type=int, default=3, help="repetitions per contender (best and median kept)")
    ap.add_argument("--name", help="result file name (default: <scale>[-<only>])")
    ap.add_argument("--no-feast", action="store_true", help="skip every Feast contender")
    ap.add_argument("--no-feast-file", action="store_true", help="skip Feast's file offline store (slow, heavy)")
    ap.add_argument("--no-profile", action="store_true", help="skip DuckDB/cProfile profiles")
    ap.add_argument("--stream-contenders", default="flink floor,offline path,full job",
                    help="stream: which contenders run (comma list)")
    ap.add_argument("--stream-loads", default="300,1000", help="stream: freshness loads in events/s ('' = none)")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in ALL]
    if bad:
        ap.error(f"unknown benchmark(s) {bad}; choose from {ALL}")
    name = args.name or (args.scale + ("" if set(only) == set(DEFAULT) else "-" + "-".join(only)))
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # ibis 12 on duckdb 2.0: fetch_arrow_table

    from featurestore.config import load_config

    from bench.common import ROOT

    url = load_config(ROOT).redis_url
    doc: Dict[str, object] = {
        "name": name, "scale": args.scale, "only": only,
        "command": "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_notes(),
        "loadavg_start": loadavg(), "data_dir": str(DATA_ROOT), "targets": TARGETS,
    }
    doc["machine"]["redis_server"] = redis_version(url)
    hashes = source_hashes()
    doc["source_fingerprint_start"] = source_fingerprint(hashes)
    log(f"{name}: load average {doc['loadavg_start']}")
    t0 = time.perf_counter()
    profile = not args.no_profile
    if "pit" in only:
        from bench import pit

        feast_file = False if args.no_feast_file else None
        if args.no_feast:
            doc["pit"] = _guard(lambda: _pit_no_feast(pit, args.scale, args.repeat, profile))
        else:
            doc["pit"] = _guard(lambda: pit.run(args.scale, repeat=args.repeat, feast_file=feast_file, profile=profile))
    if "pit_hot" in only:
        from bench import pit_hot

        doc["pit_hot"] = _guard(lambda: pit_hot.run(args.scale, repeat=args.repeat, profile=profile))
    if "backfill" in only:
        from bench import backfill

        doc["backfill"] = _guard(lambda: backfill.run(args.scale, repeat=args.repeat, profile=profile))
    if "online" in only:
        doc["online"] = _guard(lambda: _online(args, profile))
    if "online_hot" in only:
        from bench import online_hot

        doc["online_hot"] = _guard(lambda: online_hot.run(args.scale, repeat=args.repeat, profile=profile,
                                                          before=not args.no_before))
    if "stream" in only:
        from bench import stream

        doc["stream"] = _guard(lambda: stream.run(
            args.scale, loads=[int(x) for x in args.stream_loads.split(",") if x],
            contenders=[x.strip() for x in args.stream_contenders.split(",") if x.strip()]))
    doc["loadavg_end"] = loadavg()
    hashes_end = source_hashes()
    doc["source_fingerprint_end"] = source_fingerprint(hashes_end)
    doc["source_files_changed_during_run"] = changed_files(hashes, hashes_end)
    doc["machine"]["git_end"] = machine_notes()["git"]
    doc["wall_seconds"] = round(time.perf_counter() - t0, 1)
    md = render(doc)
    path = write_results(name, doc, md)
    log(f"wrote {path} and {path.with_suffix('.json')} ({doc['wall_seconds']} s)")
    print(md.split("\n## Details")[0])
    return 0


def _guard(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - a failing benchmark is reported, the others still run
        import traceback

        log(f"FAILED: {exc}")
        return {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()[-3000:]}


def _pit_no_feast(pit, scale, repeat, profile):
    import builtins

    real = builtins.__import__

    def no_feast(name, *a, **k):
        if name == "feast" or name.startswith("feast."):
            raise ImportError("skipped (--no-feast)")
        return real(name, *a, **k)

    builtins.__import__ = no_feast
    try:
        return pit.run(scale, repeat=repeat, feast_file=False, profile=profile)
    finally:
        builtins.__import__ = real


def _online(args, profile):
    """Run only when our Redis online store works (another engineer builds it): else a note."""
    try:
        from featurestore.stores import online_redis  # noqa: F401
        from featurestore.store import FeatureStore

        if not hasattr(FeatureStore, "get_online_features"):
            return {"skipped": "FeatureStore.get_online_features is missing"}
    except ImportError as exc:
        return {"skipped": f"featurestore/stores/online_redis.py not importable: {exc}"}
    from bench import online

    return online.run(args.scale if args.scale in online.SCALES else "small", repeat=args.repeat,
                      with_feast=not args.no_feast, profile=profile)


# -- rendering ------------------------------------------------------------------------------------------
def _ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}x" if base else "n/a"


def _met(ok: Optional[bool]) -> str:
    return "" if ok is None else ("**met**" if ok else "**missed**")


def render(doc: dict) -> str:
    m = doc["machine"]
    v = m["versions"]
    lines = [f"# Benchmarks: {doc['name']}", ""]
    lines += [f"Command: `.venv/bin/{doc['command']}`",
              f"Started {doc['started']}, wall {doc['wall_seconds']} s. Data: numpy-generated, seeded, under "
              f"`{doc['data_dir']}`.", ""]
    lines += ["Machine: " + f"{m['cores']} cores ({m.get('cpu')}), RAM {m['mem_gib'].get('MemTotal')} GiB "
              f"(available at start {m['mem_gib'].get('MemAvailable')} GiB); {m['platform']}; Python {m['python']}; "
              f"duckdb {v.get('duckdb')}, pyarrow {v.get('pyarrow')}, pandas {v.get('pandas')}, numpy {v.get('numpy')}, "
              f"feast {v.get('feast')}, ibis {v.get('ibis-framework')}, redis-py {v.get('redis')}, "
              f"Redis server {m.get('redis_server')}; featurestore at {m['git'].get('commit')}"
              + (f" + uncommitted {', '.join(m['git']['featurestore_uncommitted'])}"
                 if m['git'].get('featurestore_uncommitted') else "")
              + f" (source fingerprint {doc['source_fingerprint_start']})"
              + ("" if not doc["source_files_changed_during_run"] else
                 f". **Changed during the run (engineers commit concurrently), so those parts mix versions: "
                 f"{', '.join(doc['source_files_changed_during_run'])}**") + ".",
              f"Load average (1/5/15 min) at start {doc['loadavg_start']}, at end {doc['loadavg_end']}: the machine is "
              "shared, so compare the ratios (baseline measured in the same run, repetitions interleaved), "
              "not the absolute times.", ""]
    summary, details = [], []
    if "pit" in doc:
        s, d = _render_pit(doc["pit"])
        summary += s
        details += d
    if "pit_hot" in doc:
        from bench import pit_hot

        s, d = pit_hot.render(doc["pit_hot"], TARGETS["pit_hot_ratio"])
        summary += s
        details += d
    if "backfill" in doc:
        s, d = _render_backfill(doc["backfill"])
        summary += s
        details += d
    if "online" in doc:
        s, d = _render_online(doc["online"])
        summary += s
        details += d
    if "online_hot" in doc:
        from bench import online_hot

        s, d = online_hot.render(doc["online_hot"], TARGETS)
        summary += s
        details += d
    if "stream" in doc:
        from bench import stream

        s, d = stream.render(doc["stream"])
        summary += s
        details += d
    lines += ["## Results", ""] + summary + ["", "## Details", ""] + details
    return "\n".join(lines).rstrip() + "\n"


def _timing_table(timings: dict, base: str, target_name: Optional[str], target: Optional[float], extra=None):
    b = timings[base]["best"]
    rows = ["| contender | best | median | all runs | ratio to floor (best) | target |",
            "|---|---|---|---|---|---|"]
    for name, t in timings.items():
        ratio = t["best"] / b
        tgt = ""
        if name == target_name and target is not None:
            tgt = f"<= {target}x: {_met(ratio <= target)}"
        note = (extra or {}).get(name, "")
        rows.append(f"| {name}{note} | {fmt_s(t['best'])} | {fmt_s(t['median'])} | "
                    f"{', '.join(f'{x:.2f}' for x in t['seconds'])} | {ratio:.2f}x | {tgt} |")
    return rows


def _top_ops(prof: dict, k: int = 4) -> str:
    return "; ".join(f"{o['operator']} {o['seconds']:.2f}s ({o['info'][:70]})" for o in prof.get("top", [])[:k])


def _render_pit(r: dict):
    if "error" in r:
        return [f"### PIT join: FAILED: {r['error']}", ""], ["```", r.get("traceback", ""), "```"]
    p = r["params"]
    s = [f"### PIT join: {p['requests']:,} entity rows x {p['events_after_dedup']:,} events, "
         f"{p['keys']:,} keys (best of {p['repeat']})", ""]
    a = r["latest"]
    extra = {}
    for name, c in a["checks"].items():
        label = {"floor": "floor (DuckDB ASOF LEFT JOIN)", "floor over raw file": "floor over the raw events file",
                 "ours SQL only": "ours, compiled SQL only"}.get(name, name)
        if c.get("rows_missing"):
            extra[label] = (f" (dropped {c['rows_missing']:,} rows, {c.get('rows_missing_where_ours_has_a_value', 0):,} "
                            f"of them with a value; equal on the rows returned: {c['equal_on_returned_rows']})")
        else:
            extra[label] = f" (same values: {c['equal']})"
    extra["ours"] = " (reference for the checks)"
    s += ["**(a) 3 latest features, TTL 1 d** — baseline: hand-written DuckDB ASOF LEFT JOIN over the same "
          "offline-table files.", ""]
    s += _timing_table(a["timings"], "floor (DuckDB ASOF LEFT JOIN)", "ours", TARGETS["pit_latest_ratio"], extra)
    for k, e in (a.get("feast_errors") or {}).items():
        s.append(f"| Feast 0.67 ({k} store) | failed: {e} | | | | |")
    s.append("")
    nv = a["nonvacuous"]
    s.append(f"Rows with at least one value: {nv['rows_with_a_value']:,}; all-null (no event in the TTL, or unknown "
             f"key): {nv['rows_all_null']:,}.")
    s.append("")
    b = r["windows"]
    extra = {"floor (DuckDB range join)": f" (same values: {b['checks']['floor']['equal']})",
             "ours, compiled SQL only": f" (same values: {b['checks']['ours SQL only']['equal']})",
             "ours": " (reference)"}
    s += ["**(b) exact windows 1h / 1d / 7d x count, sum, max** — baseline: hand-written DuckDB range join "
          "(equi-join on the key, `q - 7d <= ts < q`, FILTER per window). Feast computes no aggregations.", ""]
    s += _timing_table(b["timings"], "floor (DuckDB range join)", "ours", TARGETS["pit_windows_ratio"], extra)
    nv = b["nonvacuous"]
    mem = b.get("peak_memory")
    if mem:
        s += ["", "Peak resident memory, each alone in a fresh interpreter (`bench/rss.py`): ours "
              f"{mem['ours'].get('max_rss_gib', mem['ours'].get('error'))} GiB, floor "
              f"{mem['floor'].get('max_rss_gib', mem['floor'].get('error'))} GiB, an idle interpreter with the same "
              f"imports {mem['idle interpreter (imports only)'].get('max_rss_gib')} GiB."]
    s += ["", f"Mean events per request in 7 d: {nv['mean_events_in_7d']}; rows with events in 1 h: "
              f"{nv['rows_with_events_in_1h']:,}. Sums compared with relative tolerance 1e-12 (ours: fsum; floor: sum); "
              f"largest relative difference seen: "
              f"{max(c['max_rel_diff'] for c in b['checks']['floor']['columns'].values()):.1e}.", ""]

    d = ["### PIT join details", ""]
    d += ["Request rows: 10% exactly at an event time of their key (where exclusive `ts < q` and Feast's inclusive "
          "`ts <= q` differ; Feast is asked at `q - 1 us`), 1% unknown keys. No two events of a key share a "
          "millisecond (so no tie rule is exercised; ours orders ties by every column, an ASOF join by none). "
          "Ours returns every row in input order (checked); the floors and Feast do not keep order and are "
          "compared by `row_id`. Backfill of the offline tables before the measurements: "
          f"{r['setup_backfill_seconds']} s (not timed here).", ""]
    for key, title in (("latest", "(a) latest"), ("windows", "(b) windows")):
        x = r[key]
        if "profile_ours_sql" in x:
            po, pf = x["profile_ours_sql"], x["profile_floor_sql"]
            d += [f"**{title}: DuckDB profile** (EXPLAIN ANALYZE numbers; operator times are summed over threads). "
                  f"Ours: query {po['total_seconds']:.2f} s, top operators: {_top_ops(po)}. "
                  f"Floor: query {pf['total_seconds']:.2f} s, top operators: {_top_ops(pf)}.", ""]
            pt = x.get("profile_tie_correct_sql")
            if pt:
                d += [f"Hand-written with our tie rule: query {pt['total_seconds']:.2f} s, top operators: {_top_ops(pt)}.",
                      ""]
            d += ["<details><summary>operator trees</summary>", "", "Ours:", "```", po["tree"], "```", "Floor:", "```",
                  pf["tree"], "```"] + (["Hand-written with our tie rule:", "```", pt["tree"], "```"] if pt else []) + [
                  "</details>", ""]
        if "cprofile_ours" in x:
            d += [f"<details><summary>{title}: cProfile of ours (get_historical_features)</summary>", "", "```",
                  x["cprofile_ours"], "```", "</details>", ""]
    d += ["Floor SQL (a):", "```sql", _short_sql(r["sql"]["floor_latest"]), "```", "Floor SQL (b):", "```sql",
          _short_sql(r["sql"]["floor_windows"]), "```", ""]
    if "tie_correct_latest" in r["sql"]:
        d += ["Hand-written (a) with our tie rule (informational):", "```sql", _short_sql(r["sql"]["tie_correct_latest"]),
              "```", ""]
    if "ours_latest" in r["sql"]:
        d += ["<details><summary>Our compiled SQL, (a) and (b)</summary>", "", "```sql", _short_sql(r["sql"]["ours_latest"]),
              "```", "```sql", _short_sql(r["sql"]["ours_windows"]), "```", "</details>", ""]
    return s, d


def _short_sql(sql: str) -> str:
    import re

    return re.sub(r"read_parquet\(\[[^\]]*\]\)", "read_parquet([<the view's offline-table files>])", sql)


def _render_backfill(r: dict):
    if "error" in r:
        return [f"### Backfill: FAILED: {r['error']}", ""], ["```", r.get("traceback", ""), "```"]
    t = r["timings"]
    base = "floor (DuckDB COPY ... PARTITION_BY)"
    s = [f"### Backfill throughput: `FeatureStore.backfill(views=['{r['params']['view']}'])`, "
         f"{r['source_events']:,} source events (best of {r['params']['repeat']})", ""]
    s += ["| contender | best | median | events/s (best) | ratio to floor | target |", "|---|---|---|---|---|---|"]
    for name, x in t.items():
        eps = r["events_per_second"][name]
        tgt = ""
        if name.startswith("ours"):
            tgt = f">= 1M events/s: {_met(eps >= TARGETS['backfill_events_per_s'])}"
        s.append(f"| {name} | {fmt_s(x['best'])} | {fmt_s(x['median'])} | {eps:,} | {x['best'] / t[base]['best']:.2f}x "
                 f"| {tgt} |")
    s += ["", f"Rows stored: ours {r['stored_rows_ours']:,}, floor {r['stored_rows_floor']:,} (equal: {r['rows_equal']}); "
              "the filter `amount > 0` drops refunds and zero-amount card tests.", ""]
    d = ["### Backfill details", ""]
    if "profile_ours_backfill_sql" in r:
        pe = r["profile_ours_backfill_sql"]
        d += [f"DuckDB profile of our backfill query alone (events, dead letters and null join keys in one pass; to a "
              f"result, no write): {pe['total_seconds']:.2f} s ({_top_ops(pe, 3)}).", ""]
        d += ["<details><summary>cProfile of ours (one backfill)</summary>", "", "```", r["cprofile_ours"], "```",
              "</details>", ""]
    return s, d


def _render_online(r: dict):
    if "skipped" in r:
        return [f"### Online: skipped: {r['skipped']}", ""], []
    if "error" in r:
        return [f"### Online: FAILED: {r['error']}", ""], ["```", r.get("traceback", ""), "```"]
    p = r["params"]
    s = [f"### Online lookups: {p['views']} views x {p['features_per_view']} latest features, {p['entities']:,} "
         f"entities, {p['events']:,} events; {p['lookups']:,} lookups per round, {p['rounds']} rounds "
         f"(p50/p99 = median over rounds)", ""]
    s += ["| entities per lookup | contender | p50 | p99 | best-round p99 | p99 ratio to floor | target |",
          "|---|---|---|---|---|---|---|"]
    from bench.online import FLOOR_READ as floor, FLOOR_WRITE as fl
    for size, tbl in r["lookups"].items():
        fb = tbl[floor]["p99_ms"]
        for name, x in tbl.items():
            tgt = ""
            if name == "ours":
                lim = TARGETS["online_p99_1_ms"] if size == "1" else TARGETS["online_p99_100_ms"]
                tgt = f"p99 <= {lim:g} ms: {_met(x['p99_ms'] <= lim)}"
            rounds = len(x["rounds"])
            s.append(f"| {size} | {name}{'' if rounds == p['rounds'] else f' ({rounds} round)'} | {x['p50_ms']:.3f} ms | "
                     f"{x['p99_ms']:.3f} ms | {x['best_p99_ms']:.3f} ms | {x['p99_ms'] / fb:.2f}x | {tgt} |")
    c = r.get("checks", {})
    s += ["", f"Online store used for Feast: {r.get('feast_online_store', 'none')}"
              + (f" (errors: {r['feast_errors']})" if r.get("feast_errors") else "")
              + f". Values: ours non-null {c.get('ours_nonnull_values')}; ours vs Feast on 200 entities: "
              f"{c.get('ours_vs_feast')}.", ""]
    mt = r["materialize"]
    s += [f"**Materialize** ({mt['keys']:,} keys, {mt['value_bytes_end_none'] / 2**20:.1f} MiB of fields and members with "
          "end=None)", "",
          "| contender | best | rows | rows/s (best) | ratio to floor | target |", "|---|---|---|---|---|---|"]
    for name, x in mt["timings"].items():
        rps = mt["rows_per_second"][name]
        tgt = ""
        if name == "ours materialize(end=None)":
            speed = mt["timings"][fl]["best"] / x["best"]
            tgt = (f">= {TARGETS['materialize_floor_ratio']}x the floor's speed: "
                   f"{_met(speed >= TARGETS['materialize_floor_ratio'])} ({speed:.2f}x)")
        s.append(f"| {name} | {fmt_s(x['best'])} | {mt['rows'][name]:,} | {rps:,} | "
                 f"{x['best'] / mt['timings'][fl]['best']:.2f}x | {tgt} |")
    fm = mt.get("feast_materialize")
    if fm:
        s.append(f"| Feast 0.67 materialize ({fm['online_store']}) | {fm['seconds']:.3f} s | {fm['source_rows']:,} "
                 f"source rows -> {fm['entity_rows_written']:,} written | {fm['source_rows_per_second']:,} source "
                 f"({fm['entity_rows_written_per_second']:,} written) | {fm['seconds'] / mt['timings'][fl]['best']:.2f}x | |")
    s += ["", f"Ours with end=END stores only the last TTL of events ({mt['rows']['ours materialize(end=END)']:,} rows) "
              f"but scans all: {mt['source_rows_per_second_end']:,} source rows/s. Feast keeps one row per entity "
              "and view; ours keeps every event inside the retention (exact windows need them).", ""]
    d = ["### Online details", ""]
    for k, title in (("cprofile_ours_1_entity_x1000", "cProfile: ours, 1 entity x 50 features, all lookups of a round"),
                     ("cprofile_ours_100_entities_x100", "cProfile: ours, 100 entities, 100 lookups"),):
        if k in r:
            d += [f"<details><summary>{title}</summary>", "", "```", r[k], "```", "</details>", ""]
    if "cprofile_ours_end_none" in mt:
        d += ["<details><summary>cProfile: ours materialize(end=None)</summary>", "", "```",
              mt["cprofile_ours_end_none"], "```", "</details>", ""]
    return s, d


if __name__ == "__main__":
    sys.exit(main())
