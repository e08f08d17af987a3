"""The ``featurestore`` command line. Every command: readable output, non-zero exit and a one-line
cause on error (the full list of definition problems when there are several)."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import List, Optional, Tuple

import typer
from rich.console import Console
from rich.table import Table

from featurestore import cli_support
from featurestore.cli_support import UTC_HELP, print_json, utc_time
from featurestore.errors import FeatureStoreError, NotImplementedYet, ValidationError

app = cli_support.Typer(
    context_settings=cli_support.CONTEXT,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="Feature store: one set of definitions, a DuckDB backfill job and a Flink streaming job, "
    "a Parquet offline store and a Redis online store. Run in a feature repo (or a folder below it), or "
    "pass --repo. Times on the command line without a zone are UTC.",
)
console = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

RepoOpt = typer.Option(None, "--repo", "-r", show_default=False,
                       help="Repo root (holds featurestore.yaml and definitions/); default: the nearest folder "
                            "with a featurestore.yaml, from the current one upward.")
JsonOpt = typer.Option(False, "--json", help="Print JSON for scripts instead of a table.")


def _version(value: bool) -> None:
    if value:
        from featurestore import __version__

        console.print(f"featurestore {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="Print the version and exit.")) -> None:
    """Feature store: one set of definitions, a DuckDB backfill job and a Flink streaming job, a Parquet
    offline store and a Redis online store. Run in a feature repo (or a folder below it), or pass --repo.
    Times on the command line without a zone are UTC."""


def _store(repo: Optional[Path]):
    from featurestore import logs
    from featurestore.store import FeatureStore

    store = FeatureStore(cli_support.find_repo(repo))
    logs.to_output_log(store.config.state_path)  # library warnings, librdkafka: the repo's output log
    return store


def _note(text: str) -> None:
    if not cli_support.quiet():
        err.print(text, markup=False)


def _no_bar() -> bool:
    """No progress bar under -q or when stderr is not a terminal (a script, CI: a failure stays one line)."""
    return cli_support.quiet() or not err.is_terminal


_deferred: List[str] = []  # notes held back until the command succeeds (stderr not a terminal)


def _announce(text: str) -> None:
    """Where library output goes (featurestore.logs): at once on a terminal; for a script, after the command
    succeeded, so that a failure is its one error line."""
    if err.is_terminal:
        _note(text)
    else:
        _deferred.append(text)


def _fail(exc: Exception, code: int = 1) -> None:
    if isinstance(exc, ValidationError) and len(exc.problems) == 1 and not exc.hint:  # one problem: one line
        err.print(f"error: {exc.problems[0]}", markup=False)
    elif isinstance(exc, ValidationError):
        err.print(f"[red]error:[/red] {len(exc.problems)} problem(s) in definitions")
        for p in exc.problems:
            err.print(f"  {p}", markup=False)
        if exc.hint:
            err.print(exc.hint, markup=False)
    else:
        err.print("error: " + str(exc).replace("\n", " "), markup=False)
    raise typer.Exit(code)


def _run(fn, repo: Optional[Path] = None):
    """Run a command: a library error is one line (exit 1; 2 for not implemented); anything unexpected
    (a bug, a Java failure no layer translated) is one line too, with its traceback written under the
    repo's state folder (``.featurestore/logs/``) and the file's path printed."""
    import click

    from featurestore.extras import missing_extra

    cli_support.apply_verbosity(_announce)
    _deferred.clear()
    # -q: only errors (stderr) and the exit code; result tables and notes on stdout too. --json and a
    # token `auth create` prints are written to stdout directly and stay.
    for out in (console, cli_support.wide()):
        out.quiet = cli_support.quiet()
    try:
        out = fn()
        for text in _deferred:
            _note(text)
        return out
    except NotImplementedYet as exc:
        _fail(exc, 2)
    except FeatureStoreError as exc:
        _fail(exc)
    except (typer.Exit, click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
        raise  # typer.Exit is not click's Exit in this typer: a command's own exit code, not a failure
    except Exception as exc:
        from featurestore.failures import root_cause, save_trace

        unreachable = cli_support.unreachable_redis(exc, repo)
        if unreachable is not None:  # Redis down, whichever call met it first: the one line every command gives
            _fail(unreachable)
        if isinstance(exc, OSError) and exc.filename and exc.strerror:  # a path the user named or must fix
            _fail(FeatureStoreError(f"{exc.filename}: {exc.strerror}"))

        extra = missing_extra(exc, "this command")
        if extra is not None:
            _fail(extra)

        try:
            state = cli_support.find_repo(repo) / ".featurestore"
        except FeatureStoreError:
            state = Path(".").resolve() / ".featurestore"
        path = save_trace(state, "unexpected failure", exc)
        where = f" (full trace: {path})" if path is not None else ""
        err.print(f"error: {root_cause(exc)}{where}", markup=False)
        raise typer.Exit(1)


@app.command()
def init(path: Path = typer.Argument(Path("."), help="Folder to create the repo in.")):
    """Create a new feature repo: featurestore.yaml and a starter definitions/ folder."""
    from featurestore.templates import write_starter

    def go():
        written = write_starter(path)
        for f in written:
            console.print(f"created {f}")
        where = "" if Path(path).resolve() == Path.cwd().resolve() else f"cd {path} && "
        console.print(f"next: {where}featurestore generate && featurestore apply && featurestore backfill && "
                      "featurestore materialize && python example.py", markup=False)

    _run(go, path)


def _plan_json(plan, explain: Optional[dict] = None) -> dict:
    out = {"changes": [{"action": c.action, "kind": c.kind, "name": c.name, "fields": list(c.fields),
                        "file": c.file, "line": c.line} for c in plan.changes],
           "stages": [{"step": s.kind, "target": s.target, "why": s.reason} for s in plan.stages],
           "has_changes": plan.has_changes}
    if explain is not None:
        out["explain"] = explain
    return out


def _print_plan(plan, explain: Optional[dict]) -> None:
    from featurestore.plan import ADDED, CHANGED_DATA, CHANGED_META, REMOVED, UNCHANGED

    style = {ADDED: "green", REMOVED: "red", CHANGED_DATA: "yellow", CHANGED_META: "cyan", UNCHANGED: "dim"}
    label = {ADDED: "+ add", REMOVED: "- remove", CHANGED_DATA: "~ change (values)", CHANGED_META: "~ metadata only",
             UNCHANGED: "  unchanged"}
    table = Table(title="Definitions", show_lines=False)
    for col in ("", "kind", "name", "fields", "where"):
        table.add_column(col)
    for c in plan.changes:
        where = f"{c.file}:{c.line}" if c.line else c.file
        table.add_row(f"[{style[c.action]}]{label[c.action]}[/]", c.kind, c.name, ", ".join(c.fields), where)
    _wide().print(table)
    if plan.stages:
        stages = Table(title="Stages")
        for col in ("step", "target", "why"):
            stages.add_column(col)
        for s in plan.stages:
            stages.add_row(s.kind, s.target, s.reason)
        _wide().print(stages)
    else:
        console.print("No changes: the registry matches the definitions.")
    if explain is not None:
        from rich.syntax import Syntax

        for view, jobs in explain.items():
            for title, sql in jobs.items():
                console.rule(f"{view}: {title}")
                console.print(Syntax(sql, "sql", word_wrap=True, theme="ansi_dark"))


@app.command()
def plan(repo: Optional[Path] = RepoOpt,
         explain: bool = typer.Option(False, "--explain", help="Also print the compiled jobs."),
         as_json: bool = JsonOpt):
    """Show how the definitions differ from what was applied, and what would run."""
    def go():
        store = _store(repo)
        if as_json:
            print_json(_plan_json(store.plan(), store.explain() if explain else None))
            return
        _print_plan(store.plan(), store.explain() if explain else None)

    _run(go, repo)


@app.command()
def apply(repo: Optional[Path] = RepoOpt, as_json: bool = JsonOpt):
    """Record the definitions in the registry (run [bold]plan[/bold] first to see the diff)."""

    def go():
        p = _store(repo).apply()
        if as_json:
            print_json({**_plan_json(p), "applied": p.has_changes})
            return
        _print_plan(p, None)
        console.print("[green]applied[/green]" if p.has_changes else "nothing to apply")

    _run(go, repo)


@app.command()
def generate(
    repo: Optional[Path] = RepoOpt,
    events: int = typer.Option(200_000, "--events", "-n", help="How many transactions to generate."),
    users: int = typer.Option(5_000, help="Distinct users (skewed: a few are very active)."),
    merchants: int = typer.Option(500, help="Distinct merchants."),
    days: float = typer.Option(14.0, help="Days of history, ending at a fixed date (2026-11-01) so data is reproducible."),
    seed: int = typer.Option(7, help="Random seed: the same seed gives the same data."),
    kafka: bool = typer.Option(False, "--kafka", help="Also produce the events to the Kafka topic."),
):
    """Generate realistic, seeded card transactions into data/transactions/ (and optionally Kafka)."""

    def go():
        from featurestore import datagen
        from featurestore.extras import require

        store = _store(repo)
        if kafka:
            require("confluent_kafka", "generate --kafka")  # before writing anything
        out = datagen.write_parquet(store.repo_path / "data" / "transactions", events=events, users=users,
                                    merchants=merchants, days=days, seed=seed)
        console.print(f"wrote {out.rows:,} events ({out.malformed} malformed held back) to {out.path}")
        if kafka:
            sent = datagen.produce_kafka(store, events=events, users=users, merchants=merchants, days=days, seed=seed)
            console.print(f"produced {sent:,} records to Kafka")

    _run(go, repo)


def _later(name: str):
    def command(repo: Optional[Path] = RepoOpt, args: Optional[List[str]] = typer.Argument(None)):
        def go():
            raise NotImplementedYet(f"'{name}' is not implemented yet")

        _run(go, repo)

    command.__doc__ = f"{name.capitalize()}: not implemented yet (exits 2, does nothing)."
    return command


@app.command()
def backfill(
    repo: Optional[Path] = RepoOpt,
    start: Optional[str] = typer.Option(None, help=f"Range start: {UTC_HELP} (default: all history)."),
    end: Optional[str] = typer.Option(None, help=f"Range end, exclusive: {UTC_HELP} (default: just after the batch "
                                                 "face's last event; later events stay the stream's)."),
    view: Optional[List[str]] = typer.Option(None, "--view", help="Only these views (repeatable)."),
    engine: str = typer.Option("duckdb", help="duckdb (embedded) or flink (a Flink batch job, same semantics)."),
    as_json: bool = JsonOpt,
):
    """Recompute the offline store from the batch faces for [start, end): the range is replaced
    atomically as a new table version, whoever wrote it; re-running never duplicates. The range then
    belongs to the batch face: the streaming job adds no event inside it."""

    def go():
        if engine not in ("duckdb", "flink"):
            raise NotImplementedYet(f"backfill --engine {engine} is not implemented yet (use duckdb or flink)")
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        store = _store(repo)
        begin, until = utc_time(start, "--start"), utc_time(end, "--end")
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} rows"),
                      TimeElapsedColumn(), console=err, transient=True, disable=_no_bar()) as bar:
            def progress(view_name):
                task = bar.add_task(f"backfill {view_name}", total=None)
                return lambda n: bar.advance(task, n)

            results = store.backfill(start=begin, end=until, views=view or None, progress=progress, engine=engine)
        if as_json:
            print_json([{**r.__dict__, "events_per_second": r.events_per_second,
                         "dead_letters_table": getattr(results, "tables", {}).get(r.source)} for r in results])
            return
        table = Table(title="Backfill")
        for col in ("view", "rows", "dead letters / null key / failing", "version", "seconds", "rows/s"):
            table.add_column(col, justify="right" if col != "view" else "left")
        for r in results:  # failing: events the view's expressions fail on (dead letters of the view)
            table.add_row(r.view, f"{r.rows:,}", f"{r.dead_letters:,} / {r.rejected_null_key:,} / {r.failed:,}",
                          str(r.version), f"{r.seconds:.2f}", f"{r.events_per_second:,.0f}")
        _wide().print(table)
        for line in results.summary():
            console.print(line, highlight=False, soft_wrap=True)

    _run(go, repo)


@app.command()
def materialize(
    repo: Optional[Path] = RepoOpt,
    view: Optional[List[str]] = typer.Option(None, "--view", help="Only these views (repeatable)."),
    end: Optional[str] = typer.Option(
        None, help="Answer request times >= END exactly and keep only the events that needs (bounded "
                   f"memory); 'now' or {UTC_HELP}. Default: keep every event."),
    as_json: bool = JsonOpt,
):
    """Load the online store (Redis) from the offline store, e.g. after Redis lost its data."""

    def go():
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        store = _store(repo)
        when = utc_time(end, "--end")
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} events"),
                      TimeElapsedColumn(), console=err, transient=True, disable=_no_bar()) as bar:
            def progress(view_name):
                task = bar.add_task(f"materialize {view_name}", total=None)
                return lambda n: bar.advance(task, n)

            results = store.materialize(views=view or None, end=when, progress=progress)
        if as_json:
            print_json([{**r.__dict__, "events_per_second": r.rows_per_second} for r in results])
            return
        table = Table(title="Materialize")
        for col in ("view", "entities", "events", "deleted keys", "seconds", "events/s"):
            table.add_column(col, justify="left" if col == "view" else "right")
        for r in results:
            table.add_row(r.view, f"{r.entities:,}", f"{r.events:,}", f"{r.deleted:,}", f"{r.seconds:.2f}",
                          f"{r.rows_per_second:,.0f}")
        _wide().print(table)

    _run(go, repo)


@app.command()
def verify(
    service: str = typer.Argument(..., help="Feature service whose logged lookups to check."),
    repo: Optional[Path] = RepoOpt,
    threshold: float = typer.Option(0.0, min=0.0, max=1.0,
                                    help="Exit 1 when a feature's skew rate is above this (0..1)."),
    html: Optional[Path] = typer.Option(None, "--html", help="Also write an HTML report with plots here."),
    limit: Optional[int] = typer.Option(None, help="Check at most this many logged rows (a sample)."),
    as_json: bool = JsonOpt,
):
    """Recompute logged lookups offline and report online/offline skew per feature; gates CI."""

    def go():
        store = _store(repo)
        report = store.verify(service, limit=limit)
        bad = report.exceeds(threshold)
        if as_json:
            print_json({"feature_service": service, "rows": report.rows, "threshold": threshold, "exceeded": bad,
                        "features": {f: {"rows": s.rows, "mismatch": s.mismatch, "missing": s.missing,
                                         "extra": s.extra, "refused": s.refused, "refused_reason": s.refused_reason,
                                         "stale": s.stale,
                                         "skew_rate": s.skew_rate, "examples": s.examples}
                                     for f, s in report.features.items()}})
            if html is not None:
                html.write_text(report.to_html())
            if bad:
                raise typer.Exit(1)
            return
        table = Table(title=f"Skew of '{service}' over {report.rows:,} logged rows")
        for col in ("feature", "mismatch", "missing", "extra", "skew"):
            table.add_column(col, justify="left" if col == "feature" else "right")
        for f, s in report.features.items():
            style = "red" if s.skew_rate > threshold else ("yellow" if s.skew_rate else "green")
            table.add_row(f, f"{s.rate('mismatch'):.3%}", f"{s.rate('missing'):.3%}", f"{s.rate('extra'):.3%}",
                          f"[{style}]{s.skew_rate:.3%}[/]")
        _wide().print(table)
        for f, s in report.features.items():
            if s.refused_reason:
                console.print(f"  {f}: {s.refused} value(s) refused offline as online: {s.refused_reason}",
                              markup=False)
            if s.stale:
                console.print(f"  {f}: {s.stale} logged row(s) did not serve it (it joined the service later), "
                              "not checked", markup=False)
            for e in s.examples[:2]:
                console.print(f"  {f}: {e['kind']} at {e['request_time']} {e['entity']}: served {e['served']!r}, "
                              f"offline {e['offline']!r}", markup=False)
        if html is not None:
            html.write_text(report.to_html())
            console.print(f"wrote {html}")
        if bad:
            err.print(f"error: skew above {threshold:.3%} in {len(bad)} feature(s): {', '.join(bad)}", markup=False)
            raise typer.Exit(1)
        if report.rows == 0:
            console.print("no logged rows to check (log lookups with log=True or a logging feature service)")

    _run(go, repo)


# -- the catalog -----------------------------------------------------------------------------------------
def _wide() -> Console:
    """The console, or one wide enough that a table piped to a file or a tool is never cut at 80 columns."""
    return console if console.is_terminal else cli_support.wide()



@app.command("list")
def list_(
    kind: str = typer.Argument(..., help="entities, sources, views, features or services."),
    repo: Optional[Path] = RepoOpt,
    tag: Optional[str] = typer.Option(None, "--tag", help="Only objects with this tag: key=value, or key (any value)."),
    owner: Optional[str] = typer.Option(None, "--owner", help="Only objects owned by this owner."),
    search: Optional[str] = typer.Option(None, "--search", "-s",
                                         help="Only objects whose name, description, owner or tags contain every word."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records (one array) for scripts."),
):
    """List what the project defines (the catalog), filtered by tag, owner or search words."""
    from featurestore import catalog

    def go():
        store = _store(repo)
        tag_kv = catalog.parse_tag(tag) if tag else None
        rows = catalog.list_objects(store.repo, kind, tag_kv, owner, search)
        if as_json:
            import json

            print(json.dumps(rows, indent=2, default=str))
            return
        table = Table(title=f"{kind} ({len(rows)})")
        cols = catalog.columns_for(kind)
        for c in cols:
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(catalog.cell(r.get(c)) for c in cols))
        _wide().print(table)

    _run(go, repo)


@app.command()
def describe(
    name: str = typer.Argument(..., help="An entity, source, view, service, or a feature as view:feature."),
    repo: Optional[Path] = RepoOpt,
    as_json: bool = typer.Option(False, "--json", help="Print the JSON record for scripts."),
):
    """Describe one object of the catalog: definition, where it is defined, fingerprints and lineage."""
    from featurestore import catalog

    def go():
        rec = catalog.describe(_store(repo).repo, name)
        if as_json:
            import json

            print(json.dumps(rec, indent=2, default=str))
            return
        table = Table(title=f"{rec['kind']} {rec['name']}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value", overflow="fold")
        for k, v in rec.items():
            if k not in ("kind", "name"):
                table.add_row(k, catalog.cell(v))
        _wide().print(table)

    _run(go, repo)


# -- the live view of `stream` ----------------------------------------------------------------------------
STATUS_LINE_EVERY_S = 10.0  # without a terminal: one status line at most this often
STOPPING_TEXT = ("stopping with a savepoint... (Ctrl-C again abandons the stop: the next run resumes from the "
                 "last checkpoint)")


@app.command()
def search(
    query: str = typer.Argument(..., help="Words that must all appear in the name, description, owner or tags."),
    repo: Optional[Path] = RepoOpt,
    tag: Optional[str] = typer.Option(None, "--tag", help="Only objects with this tag: key=value, or key (any value)."),
    owner: Optional[str] = typer.Option(None, "--owner", help="Only objects owned by this owner."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON records (one array) for scripts."),
):
    """Search the catalog: objects of every kind whose name, description, owner or tags hold every word."""
    from featurestore import catalog

    def go():
        rows = catalog.search(_store(repo).repo, query, catalog.parse_tag(tag) if tag else None, owner)
        if as_json:
            print_json(rows)
            return
        table = Table(title=f"'{query}' ({len(rows)})")
        for c in ("kind", "name", "owner", "tags", "description", "defined_at"):
            table.add_column(c, overflow="fold")
        for r in rows:
            table.add_row(*(catalog.cell(r.get(c)) for c in ("kind", "name", "owner", "tags", "description",
                                                              "defined_at")))
        _wide().print(table)

    _run(go, repo)


def _count(value) -> str:
    return "?" if value is None else f"{value:,}"


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, m = s // 3600, s % 3600 // 60
    return f"{h}h {m:02d}m {s % 60:02d}s" if h else f"{m}m {s % 60:02d}s" if m else f"{s}s"


def _rate(t) -> str:
    """events/s of a TopicStatus: ? when unknown, - before the second snapshot."""
    if t.committed is None:
        return "?"
    return "-" if t.events_per_s is None else f"{t.events_per_s:,.0f}"


def status_rows(status) -> List[Tuple[str, str, str]]:
    """(what, metric, value) rows of the live view for a StreamStatus; ``?`` = could not be read."""
    rows = [("job", "status", status.status), ("job", "uptime", _duration(status.uptime_s))]
    if status.restarts is not None:  # restarts after failures: a job restarting in a loop still says RUNNING
        rows.append(("job", "restarts", f"{status.restarts:,}"))
    for t in status.topics.values():
        rows += [(t.topic, "Kafka lag", _count(t.lag)), (t.topic, "records consumed", _count(t.consumed)),
                 (t.topic, "events/s", _rate(t))]
    if status.metrics is None:
        rows.append(("sources", "dead letters, stored events", "?"))
    for source, m in (status.metrics or {}).items():
        rows += [(source, "dead letters", _count(m.get("dead_letters"))),
                 (source, "null join key", _count(m.get("null_key")))]
        rows += [(k.split(":", 1)[1], "stored events", _count(v)) for k, v in m.items() if k.startswith("events:")]
    rows.append(("online", "values written", _count(status.online_written)))
    return rows


def status_caption(status) -> str:
    return "; ".join(([STOPPING_TEXT] if status.stopping else []) + status.problems)


def status_table(status, where: str = "") -> Table:
    """The live view: a table of :func:`status_rows`; the caption says stopping and what could not be read."""
    table = Table(title=f"stream job {status.job_name}{where}", caption=status_caption(status) or None)
    for col in ("topic / source / view", "metric", "value"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for row in status_rows(status):
        table.add_row(*row)
    return table


def status_line(status) -> str:
    """The live view as one line (stdout is not a terminal)."""
    parts = [f"{status.status}, up {_duration(status.uptime_s)}"
             + (f", {status.restarts:,} restarts" if status.restarts is not None else "")]
    for t in status.topics.values():
        parts.append(f"{t.topic}: lag {_count(t.lag)}, consumed {_count(t.consumed)}, {_rate(t)} events/s")
    parts.append(f"dead letters {_count(status.dead_letters)}")
    parts.append(f"online values written {_count(status.online_written)}")
    caption = status_caption(status)
    return f"stream job {status.job_name}: " + "; ".join(parts) + (f" ({caption})" if caption else "")


class _StatusView:
    """``on_status`` of `stream`: a rich Live table on a terminal; otherwise a status line at most every
    STATUS_LINE_EVERY_S seconds (the first at once, and one when stopping)."""

    def __init__(self, where: str):
        self.where = where
        self.live = None
        self.next_line = 0.0

    def __enter__(self):
        if console.is_terminal and not console.is_dumb_terminal:
            from rich.live import Live

            self.live = Live(console=console, auto_refresh=False, transient=True)
            self.live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.stop()

    def __call__(self, status) -> None:
        if self.live is not None:
            self.live.update(status_table(status, self.where), refresh=True)
        elif status.stopping or time.monotonic() >= self.next_line:
            console.print(status_line(status), markup=False, soft_wrap=True)
            self.next_line = time.monotonic() + STATUS_LINE_EVERY_S


STREAM_HELP = (
    "Run the streaming job (Kafka -> Flink -> Redis + Parquet) on the local mini-cluster, or submit it to a "
    "cluster with --flink-address.\n\n"
    "While it runs, a live view shows the job's status and uptime; per topic the Kafka lag, the records consumed "
    "and events/s (from the offsets Flink commits on each checkpoint, so they move in steps); per source the dead "
    "letters; per view the stored events; and the online values written. Then the final metrics.\n\n"
    "Ctrl-C stops the job with a savepoint, and the next run resumes from it. A second Ctrl-C abandons the stop: "
    "the next run resumes from the last checkpoint (nothing lost or counted twice).")


def stream_options(parallelism: Optional[int], no_restore: bool, checkpoint_interval_ms: Optional[int],
                   slack_ms: int) -> dict:
    """The job options `stream` passes to ``FeatureStore.stream`` (only those given: the API's defaults stay
    the defaults), the same keywords locally and with --flink-address."""
    options = {"parallelism": parallelism, "checkpoint_interval_ms": checkpoint_interval_ms, "slack_ms": slack_ms or None}
    out = {k: v for k, v in options.items() if v is not None}
    if no_restore:
        out["restore"] = False
    return out


@app.command(help=STREAM_HELP)
def stream(
    repo: Optional[Path] = RepoOpt,
    view: Optional[List[str]] = typer.Option(None, "--view", help="Only these views (repeatable)."),
    bounded: bool = typer.Option(False, "--bounded", help="Stop once the topics are consumed (as of the start)."),
    flink_address: Optional[str] = typer.Option(None, "--flink-address",
                                                help="host:port of a remote Flink cluster to submit the job to."),
    checkpoint_dir: Optional[Path] = typer.Option(None, help="Checkpoints (default .featurestore/checkpoints)."),
    timeout: Optional[float] = typer.Option(None, help="Give up after this many seconds (bounded runs)."),
    status_every: float = typer.Option(
        2.0, "--status-every", min=0.0, metavar="SECONDS",
        help="Refresh the live view this often; 0 turns it off. Without a terminal: one line at most every 10 s."),
    partial_history: bool = typer.Option(
        False, "--partial-history",
        help="Start fresh even if the topic lost its first records to Kafka's retention and no backfilled offline "
             "table covers them (refused otherwise: the online values would miss that history; when a backfill "
             "covers them the job seeds its online state from it). Use when the records left cover every window."),
    parallelism: Optional[int] = typer.Option(
        None, "--parallelism", min=1, metavar="N",
        help="Run the job's operators N-wide (default 1). A restart keeps its snapshot's parallelism (warned): a new "
             "one takes effect with --no-restore."),
    no_restore: bool = typer.Option(
        False, "--no-restore",
        help="Start from scratch instead of restoring the latest checkpoint or savepoint (the online state is rebuilt "
             "from the topics' first records; the offline tables skip the events they hold)."),
    checkpoint_interval_ms: Optional[int] = typer.Option(
        None, "--checkpoint-interval-ms", min=1, metavar="MS",
        help="Checkpoint this often (default 10 s; bounded runs 2 s): offline files are committed per checkpoint."),
    slack_ms: int = typer.Option(
        0, "--slack-ms", min=0, metavar="MS", help="Keep online events this much longer than the views' retention."),
    as_json: bool = typer.Option(False, "--json", help="Print the final metrics as JSON (implies --status-every 0)."),
):
    """Run the streaming job; the help text is STREAM_HELP."""

    def go():
        store = _store(repo)
        where = f" on {flink_address}" if flink_address else ""
        watching = status_every > 0 and not as_json and not cli_support.quiet()
        with (_StatusView(where) if watching else contextlib.nullcontext()) as live:
            watch = {"on_status": live, "status_every_s": status_every or 2.0, "partial_history": partial_history,
                     **stream_options(parallelism, no_restore, checkpoint_interval_ms, slack_ms)}
            if flink_address:
                result = store.stream(views=view or None, bounded=bounded, flink_address=flink_address,
                                      checkpoint_dir=checkpoint_dir, timeout=timeout, **watch)
            else:
                result = store.stream(views=view or None, bounded=bounded, checkpoint_dir=checkpoint_dir,
                                      timeout=timeout, **watch)
        if as_json:
            print_json({"job_name": result.job_name, "records": result.records, "seconds": result.seconds,
                        "records_per_second": result.records_per_second, "restored_from": result.restored_from,
                        "savepoint": result.savepoint, "metrics": result.metrics})
            return
        table = Table(title=f"stream job {result.job_name}{where}")
        for col in ("source / view", "metric", "value"):
            table.add_column(col)
        for name, metrics in result.metrics.items():
            for k, v in metrics.items():
                table.add_row(name, k, f"{v:,}" if isinstance(v, int) else str(v))
        _wide().print(table)
        console.print(f"{result.records:,} Kafka records in {result.seconds:.1f}s "
                      f"({result.records_per_second:,.0f}/s); restored from: {result.restored_from or 'nothing'}")

    _run(go, repo)


@app.command()
def demo(repo: Optional[Path] = RepoOpt, events: int = typer.Option(200_000, help="Events to generate.")):
    """Run the demo on embedded defaults: generate data, plan and apply the example repo, backfill the
    offline store, build a point-in-time training set, materialize Redis and look features up online."""

    def go():
        from featurestore.demo import run_demo

        run_demo(_store(repo), events=events, console=console, print_plan=lambda p: _print_plan(p, None))

    _run(go, repo)


# `python -m featurestore.cli` runs this file as __main__: the sub-command modules below import the helpers
# above through cli_common from featurestore.cli, which must be this module, not a second copy of it
sys.modules.setdefault("featurestore.cli", sys.modules[__name__])
from featurestore.cli_infra import infra as _infra  # noqa: E402  (after _run, which it uses)
from featurestore.cli_auth import auth_app  # noqa: E402  (through cli_common: after the helpers above)
from featurestore.cli_monitor import monitor as _monitor  # noqa: E402
from featurestore.cli_serve import serve, serve_offline, ui  # noqa: E402,F401  (tests import ui's helpers here)

app.add_typer(_infra, name="infra")
app.add_typer(auth_app, name="auth")
app.command("monitor")(_monitor)
app.command()(serve)
app.command("serve-offline")(serve_offline)
app.command()(ui)


def main() -> None:
    """The ``featurestore`` command. A usage mistake (an unknown option, a value of the wrong type) is one
    line too, like every other error: ``error: ...`` naming the option and the value, exit 2."""
    ex = cli_support.click_exceptions()
    try:
        code = app(standalone_mode=False)
    except ex.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # a group run bare: its help, as typer shows it
            print(exc.ctx.get_help() if exc.ctx is not None else "")
            sys.exit(exc.exit_code)
        err.print(f"error: {cli_support.usage_line(exc, sys.argv[1:])}", markup=False)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)




if __name__ == "__main__":
    main()
