"""``featurestore monitor``: check freshness, the stream, skew and drift; exit 1 with one line per breach."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from featurestore.cli_common import RepoOpt, _run, _store, _wide, err


def monitor(
    repo: Optional[Path] = RepoOpt,
    drift: Optional[List[str]] = typer.Option(
        None, "--drift", metavar="SERVICE=TRAINING_SET",
        help="Also compare the values SERVICE served (its serving log) with a saved training set: PSI and summary "
             "statistics per feature (repeatable). Recorded: /metrics and the catalog show the last report."),
    since: Optional[str] = typer.Option(
        None, "--since", help="With --drift: only lookups served since this time (ISO time with zone) or this "
                              "long ago (a duration: 1d, 6h). Default: every logged lookup."),
    as_json: bool = typer.Option(False, "--json", help="Print the checks and breaches as JSON."),
):
    """Check every view's freshness against its expected_freshness, the stream's lag and dead letters, each
    service's last verify run, and drift of served values; limits in featurestore.yaml monitor:. Exit 1
    with one line per breach (for cron or CI), 0 when all is within bounds."""

    def go():
        from featurestore import drift as drift_mod
        from featurestore import monitoring, verify
        from featurestore.errors import RequestError
        from featurestore.ui import ago, ms_time

        if since and not drift:
            raise RequestError("--since applies to --drift SERVICE=TRAINING_SET (which lookups to compare)")
        store = _store(repo)
        since_ms = _since(since) if since else None
        reports = []
        for spec in drift or []:
            service, sep, training_set = spec.partition("=")
            if not sep or not service or not training_set:
                raise RequestError(f"--drift {spec!r}: write SERVICE=TRAINING_SET")
            reports.append(drift_mod.drift(store, service, training_set, since=since_ms))
        now = int(time.time() * 1000)
        fresh = monitoring.freshness(store)
        stream = monitoring.stream_state(store)
        breaches = monitoring.breaches(store, now, reports, stream=stream)
        if as_json:
            print(json.dumps({
                "breaches": [{"kind": b.kind, "subject": b.subject, "text": b.text} for b in breaches],
                "freshness": {n: {"last_event_ms": f.last_event_ms, "age_ms": f.age_ms(now),
                                  "expected_ms": f.expected_ms, "online_loaded_ms": f.online_loaded_ms,
                                  "online_by": f.online_by} for n, f in fresh.items()},
                "stream": None if stream is None else {"lag": stream.lag, "sources": stream.sources,
                                                       "recent": {s: {"dead_letters": d, "events": e} for s, (d, e)
                                                                  in stream.recent.items()},
                                                       "window_ms": stream.window_ms},
                "skew": {s: (r[0] if r else None) for s in store.repo.services
                         for r in [verify.runs(store, s, last=1)]},
                "drift": [r.to_json() for r in reports]}, indent=2, default=str))
        else:
            table = Table(title="freshness")
            for c in ("view", "newest event (offline)", "age", "expected within", "online loaded", "by"):
                table.add_column(c)
            for n, f in fresh.items():
                age = f.age_ms(now)
                style = "red" if f.stale(now) else ("green" if f.expected_ms else "")
                table.add_row(n, ms_time(f.last_event_ms) or "no data",
                              f"[{style}]{ago(age / 1000)}[/]" if age is not None and style else
                              (ago(age / 1000) if age is not None else ""),
                              ago(f.expected_ms / 1000) if f.expected_ms else "-",
                              ms_time(f.online_loaded_ms), f.online_by or "")
            _wide().print(table)
            if stream is not None:
                t = Table(title=f"stream {stream.job or ''}")
                for c in ("topic / source", "lag", "events", "dead letters"):
                    t.add_column(c)
                for topic, lag in stream.lag.items():
                    t.add_row(topic, "?" if lag is None else f"{lag:,}", "", "")
                for source, m in stream.sources.items():
                    t.add_row(source, "", f"{m.get('events', 0):,}", f"{m.get('dead_letters', 0):,}")
                _wide().print(t)
            for report in reports:
                t = Table(title=f"drift of '{report.feature_service}' ({report.served_rows:,} served rows) against "
                                f"training set '{report.training_set}' ({report.training_rows:,} rows)")
                for c in ("feature", "PSI", "training mean", "served mean", "training nulls", "served nulls"):
                    t.add_column(c, justify="left" if c == "feature" else "right")
                for f, d in report.features.items():
                    t.add_row(f, "-" if d.psi is None else f"{d.psi:.4f}", _num(d.training.mean),
                              _num(d.served.mean), f"{d.training.nulls:,}", f"{d.served.nulls:,}")
                _wide().print(t)
        for b in breaches:
            err.print(f"breach: {b.text}", markup=False)
        if breaches:
            raise typer.Exit(1)
        if not as_json:
            print("no breach")

    _run(go, repo)


def _since(text: str) -> int:
    """``--since``: a duration ago, or a time."""
    from featurestore.errors import DefinitionError, RequestError
    from featurestore.model.durations import parse_duration
    from featurestore.sdk.timeutil import to_epoch_ms

    try:
        return int(time.time() * 1000) - parse_duration(text, "--since")
    except DefinitionError:
        pass
    try:
        return to_epoch_ms(text, "--since")
    except (RequestError, ValueError) as exc:
        raise RequestError(f"--since {text!r}: neither a duration (1d, 6h) nor a time with zone ({exc})") from None


def _num(x) -> str:
    return "" if x is None else f"{x:.4g}"


__all__ = ["monitor"]
