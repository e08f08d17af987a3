"""The markdown report of bench/http.py: results tables, where our server spends time, observations."""

from __future__ import annotations

from typing import Dict, List

VIEWS, COLS = 5, 10  # as bench/online.py
SIZES = (1, 100)
OURS, OURS_LOG, FEAST = "ours", "ours + log", "Feast 0.67"


def _f(x, nd=2) -> str:
    return "–" if x is None else f"{x:,.{nd}f}"


def _code_line(doc: Dict[str, object]) -> str:
    def one(g):
        extra = g.get("featurestore_uncommitted") or []
        return f"commit `{g.get('commit')}`" + (f" + uncommitted featurestore files {extra}" if extra else "")

    start, end = doc["machine"].get("git", {}), doc.get("git_end") or {}
    line = f"Code measured: the working tree at {one(start)}"
    if end and end != start:
        line += f"; at the end {one(end)}"
    same = not doc.get("source_changed_during_run")
    return line + (" (same featurestore sources throughout: fingerprint unchanged)." if same else ".")


def markdown(doc: Dict[str, object], method: str) -> str:
    """The result page; ``method`` is the benchmark's description (bench/http.py's docstring)."""
    lat, thr = doc.get("latency", {}), doc.get("throughput", {})
    m = doc["machine"]
    names = [OURS, OURS_LOG, FEAST]
    lines = [f"# HTTP lookups: our server vs Feast {m['versions'].get('feast') or ''} Python feature server", "",
             f"Command: `{doc['command']}`  ", f"Started {doc['started']}, took {doc.get('wall_s', 0):.0f} s. "
             f"Source fingerprint `{doc.get('source_fingerprint')}`"
             + (f" (others edit the working tree meanwhile: featurestore files changed during the HTTP runs "
                f"{doc.get('source_changed_during_http_runs')} - the servers had loaded their code at start - and "
                f"before/during the in-process profile {doc.get('source_changed_before_or_during_profile')})"
                if doc.get("source_changed_during_run") else "") + ".", "",
             _code_line(doc), "",
             f"Machine: {m['cores']} cores ({m['cpu']}), Python {m['python']}, Redis {doc.get('redis_version')}; "
             f"load average at start {doc['loadavg_start']}, at end {doc['loadavg_end']}. **The machine is shared "
             "and noisy**: client, server and Redis share its 2 cores, absolute numbers move with the load; "
             "compare the ratios (contenders interleaved in the same run).", "",
             f"Data: {doc['params']['entities']:,} entities, {doc['params'].get('events', 0):,} events, "
             f"{VIEWS} views x {COLS} `Latest` features; every request asks for all {VIEWS * COLS} features. "
             "One uvicorn worker per server, loopback, keep-alive `httpx` client in its own process.", ""]
    if doc.get("feast_error"):
        lines += [f"**Feast's server could not be benchmarked**: {doc['feast_error']}", ""]
    eq = doc.get("equality")
    if eq:
        lines += [f"Same values from both servers: **equal: {eq['equal']}** ({eq['entities']} entities x "
                  f"{VIEWS * COLS} features = {eq['values']:,} values, {eq['mismatches']} mismatches, "
                  f"{eq['ours_nonnull']:,} non-null; one 1-entity request each equal: {eq['single_entity_equal']}; "
                  f"request row order kept: ours {eq['row_order_kept']['ours']}, Feast {eq['row_order_kept']['feast']}).",
                  ""]
    lc = doc.get("log_checks", [])
    if lc:
        ok = all(c["equal"] for c in lc)
        sizes = {}
        for c in lc:
            sizes.setdefault(c["where"].split()[1] if c["where"].startswith(("latency", "throughput", "warm-up")) else "?",
                             c["last_entry_bytes"])
        lines += [f"Logging: one Redis Stream entry per logged request, checked after every run: **{ok}** "
                  f"({sum(c['logged_requests'] for c in lc):,} logged requests); entry size "
                  + ", ".join(f"{k} entit{'y' if k == '1' else 'ies'}: {v:,} B" for k, v in sizes.items()) + ".", ""]
    lines += ["## Results", "",
              f"Latency: sequential requests, {doc['params']['requests']:,} per contender and size after "
              f"{doc['params']['warmup']} warm-up, {doc['params']['rounds']} interleaved rounds pooled. Throughput: "
              f"{doc['params']['threads']} client threads for {doc['params']['seconds']} s. Ratios: ours / Feast "
              "(latency: < 1 is faster; req/s: > 1 is more).", "",
              f"| contender | entities/request | p50 ms | p99 ms | req/s ({doc['params']['threads']} threads) | p50 vs Feast | p99 vs Feast | "
              "req/s vs Feast | server CPU ms/request |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in SIZES:
        L, T = lat.get(str(s), {}), thr.get(str(s), {})
        fl, ft = L.get(FEAST), T.get(FEAST)
        for name in names:
            if name not in L:
                continue
            a, t = L[name], T.get(name, {})
            r50 = a["p50_ms"] / fl["p50_ms"] if fl else None
            r99 = a["p99_ms"] / fl["p99_ms"] if fl else None
            rq = t.get("requests_per_s") / ft["requests_per_s"] if ft and t.get("requests_per_s") else None
            lines.append(f"| {name} | {s} | {_f(a['p50_ms'], 3)} | {_f(a['p99_ms'], 3)} | {_f(t.get('requests_per_s'), 0)} | "
                         f"{_f(r50) if name != FEAST else '1'} | {_f(r99) if name != FEAST else '1'} | "
                         f"{_f(rq) if name != FEAST else '1'} | {_f(t.get('server_cpu_ms_per_request'), 3)} |")
    lines += ["", "Throughput details (per run: wall, completed requests, latency under load, CPU over the window: "
              "server process group / Redis / client process; 2 cores = 2.0 s per wall second; Redis is shared with "
              "other engineers' jobs, so its CPU includes theirs):", "",
              "| contender | entities | requests | req/s | p50 / p99 ms under load | server CPU s/s | Redis CPU s | "
              "client CPU s | errors |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for s in SIZES:
        for name in names:
            t = thr.get(str(s), {}).get(name)
            if t:
                lines.append(f"| {name} | {s} | {t['requests']:,} | {_f(t['requests_per_s'], 0)} | "
                             f"{_f(t['p50_ms_under_load'], 1)} / {_f(t['p99_ms_under_load'], 1)} | "
                             f"{_f(t['server_cpu_s_per_wall_s'])} | {_f(t['redis_cpu_s'])} | {_f(t['client_cpu_s'])} | "
                             f"{'; '.join(t['errors']) or '–'} |")
    lines += ["", "Per-round latency (p50 / p99 ms), to see the noise:", "",
              "| contender | entities | rounds |", "|---|---:|---|"]
    for s in SIZES:
        for name in names:
            a = lat.get(str(s), {}).get(name)
            if a:
                lines.append(f"| {name} | {s} | " + ", ".join(f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}" for r in a["rounds"])
                             + " |")
    rb, bb = doc.get("response_bytes", {}), doc.get("body_bytes", {})
    if rb:
        lines += ["", "Bytes per request / response: " + "; ".join(
            f"{n}: " + ", ".join(f"{s} entit{'y' if s == '1' else 'ies'} {bb.get(n, {}).get(s, 0):,} / {v:,}"
                                 for s, v in rb[n].items()) for n in rb) + ".",
                  "Server RSS MiB (before / after the client): " + "; ".join(
                      f"{n} {v['before_client']} / {v['after_client']}" for n, v in doc.get("server_rss_mib", {}).items())
                  + "."]
    prof = doc.get("profile_ours")
    if prof:
        lines += ["", "## Where our server spends time", "",
                  "Our ASGI app driven in-process on one thread (FastAPI's threadpool inlined; no uvicorn HTTP "
                  "parsing, no sockets): per-request time unprofiled, and the share of cProfile time (cumulative) in "
                  "each part.", "",
                  "| case | in-process p50 ms | p99 ms | GC: collections, total ms, max pause ms | "
                  + " | ".join(next(iter(prof.values()))["share_of_profiled_time"])
                  + " |", "|---|---:|---:|---:|" + "---:|" * len(next(iter(prof.values()))["share_of_profiled_time"])]
        for name, p in prof.items():
            g = p.get("gc", {})
            lines.append(f"| {name} ({p['requests']} requests) | {p['in_process_p50_ms']:.3f} | {p['in_process_p99_ms']:.3f} | "
                         f"{g.get('collections')}, {g.get('total_ms')}, {g.get('max_pause_ms')} | "
                         + " | ".join(f"{v:.0%}" for v in p["share_of_profiled_time"].values()) + " |")
        for name in ("1 entity", "100 entities", "100 entities, log"):
            if name in prof:
                lines += ["", f"Top functions by own time, {name} ({prof[name]['requests']} requests, "
                          f"{prof[name]['profiled_ms_per_request']:.2f} ms/request under the profiler):", "", "```",
                          prof[name]["top_by_tottime"], "```"]
    if doc.get("observations"):
        lines += ["", "## Observations", ""] + [f"- {o}" for o in doc["observations"]]
    lines += ["", "## Method", "", method, "",
              "Servers: " + "; ".join(f"{n}: `{v['cmd']}`" for n, v in doc.get("servers", {}).items()) + ".",
              f"Cleanup: {doc.get('cleanup')}.", ""]
    return "\n".join(lines)


def observations(doc: Dict[str, object]) -> List[str]:
    """Plain facts computed from the numbers (the narrative goes in the final report)."""
    out = []
    lat, thr = doc.get("latency", {}), doc.get("throughput", {})
    for s in SIZES:
        L = lat.get(str(s), {})
        if OURS in L and OURS_LOG in L:
            out.append(f"{s} entit{'y' if s == 1 else 'ies'}: logging adds {L[OURS_LOG]['p50_ms'] - L[OURS]['p50_ms']:+.3f} ms "
                       f"at p50 and {L[OURS_LOG]['p99_ms'] - L[OURS]['p99_ms']:+.3f} ms at p99.")
        T = thr.get(str(s), {})
        busy = [f"{n} {t['server_cpu_s_per_wall_s']:.2f}" for n, t in T.items()]
        if busy:
            out.append(f"{s} entit{'y' if s == 1 else 'ies'} under {doc['params']['threads']} threads: server CPU "
                       f"(cores busy) " + ", ".join(busy) + " (one worker: 1.0 is its ceiling, GIL).")
    return out
