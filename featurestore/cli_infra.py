"""``featurestore infra jars|status``: what a Flink job needs on this machine, set up by the installed
package (featurestore/devinfra/), no clone needed. Redis and Kafka themselves: ``bash infra/up.sh`` in a
clone, or your own (``featurestore.yaml`` says where)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Optional

import typer

from featurestore import cli_support

infra = cli_support.Typer(
    context_settings=cli_support.CONTEXT, no_args_is_help=True,
    help="What the streaming job needs on this machine: the pinned Flink connector jars (fetched from Maven "
         "Central into ~/.cache/featurestore, FEATURESTORE_CACHE_DIR), Java 17, and the repo's Redis and Kafka.")


def _run(fn, repo=None):
    from featurestore.cli import _run as run_command

    return run_command(fn, repo)


@infra.command()
def jars():
    """Fetch the pinned Flink connector jars into the user cache (each checked by SHA-256; kept when there)."""
    from featurestore.devinfra import jars as devjars

    def go():
        say = (lambda _t: None) if cli_support.quiet() else (lambda t: typer.echo(t, err=True))
        d = devjars.fetch("flink", say=say)
        typer.echo(f"flink connector jars: {len(devjars.artifacts('flink'))} in {d}")

    _run(go)


def _reachable(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _java() -> Optional[str]:
    exe = shutil.which("java")
    if exe is None:
        return None
    out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=60)
    return (out.stderr or out.stdout).splitlines()[0] if (out.stderr or out.stdout) else exe


@infra.command()
def status(repo: Optional[Path] = typer.Option(None, "--repo", "-r", show_default=False,
                                             help="Repo whose Redis and Kafka to check (default: the nearest "
                                                  "featurestore.yaml upward; none: the defaults)."),
           as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts.")):
    """Whether the jars are there, Java runs, and the repo's Redis and Kafka answer; exit 1 when one is not."""

    def go():
        from urllib.parse import urlparse

        from featurestore.config import load_config
        from featurestore.devinfra.jars import connector_jars
        from featurestore.errors import ConfigError, FeatureStoreError

        try:
            root = cli_support.find_repo(repo)
        except ConfigError:
            if repo is not None:
                raise
            root = Path.cwd()  # not in a repo: the defaults and FEATURESTORE_* variables
        cfg = load_config(root)
        checks = []
        try:
            jars = connector_jars(cfg)
            checks.append(("flink jars", True, f"{len(jars)} in {jars[0].parent}"))
        except FeatureStoreError as exc:
            checks.append(("flink jars", False, str(exc)))
        java = _java()
        checks.append(("java", java is not None, java or "not on PATH (Java 17 runs the Flink jobs)"))
        url = urlparse(cfg.redis_url)
        redis_at = f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"
        checks.append(("redis", _reachable(redis_at), redis_at))
        kafka_at = cfg.kafka_bootstrap.split(",")[0]
        checks.append(("kafka", _reachable(kafka_at), kafka_at))
        ok = all(c[1] for c in checks)
        if as_json:
            cli_support.print_json({"checks": [{"what": w, "ok": good, "detail": d} for w, good, d in checks],
                                    "ok": ok})
        else:
            for what, good, detail in checks:
                typer.echo(f"{what:<11} {'ok' if good else 'MISSING'}  {detail}")
        if not ok:
            raise typer.Exit(1)

    _run(go, repo)
