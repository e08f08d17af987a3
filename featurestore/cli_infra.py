"""``featurestore infra up|down|status|jars``: the development services and what a Flink job needs on this
machine, set up by the installed package (featurestore/devinfra/), no clone needed: our own Redis
(``redis-server`` from PATH) and a single-node Kafka (pinned jars, a Java 17 runtime) on
``FEATURESTORE_REDIS_PORT`` / ``FEATURESTORE_KAFKA_PORT``, and the pinned Flink connector jars. A clone's
``infra/*.sh`` start the same services through the same code (featurestore/devinfra/services.py)."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import List, Optional

import typer

from featurestore import cli_support

infra = cli_support.Typer(
    context_settings=cli_support.CONTEXT, no_args_is_help=True,
    help="The development services and what the streaming job needs on this machine: our own Redis and a "
         "single-node Kafka (infra up|down), the pinned Flink connector jars (fetched from Maven Central into "
         "~/.cache/featurestore, FEATURESTORE_CACHE_DIR), Java 17, and whether the repo's Redis and Kafka answer.")


def _run(fn, repo=None):
    from featurestore.cli import _run as run_command

    return run_command(fn, repo)


def _services(names: Optional[List[str]]) -> List[str]:
    from featurestore.devinfra.services import SERVICES
    from featurestore.errors import InfraError

    names = list(dict.fromkeys(names or SERVICES))
    for n in names:
        if n not in SERVICES:
            raise InfraError(f"no service named {n!r} (known: {', '.join(SERVICES)})")
    return names


ServicesArg = typer.Argument(None, show_default=False, metavar="[redis|kafka]...",
                             help="Which services (default: both).")


@infra.command()
def up(services: Optional[List[str]] = ServicesArg):
    """Set up and start our own Redis and a single-node Kafka (KRaft) on 127.0.0.1:FEATURESTORE_REDIS_PORT (6390)
    and FEATURESTORE_KAFKA_PORT (19092; its controller on the next port, FEATURESTORE_KAFKA_CONTROLLER_PORT).
    Redis is redis-server from PATH; Kafka runs on Java 17 from pinned jars fetched into the user cache, and
    with the 'stream' extra the Flink connector jars are fetched too. Data and logs: ~/.local/state/featurestore
    (FEATURESTORE_INFRA_RUN_DIR). A no-op for a service that is already up."""
    import importlib.util

    from featurestore.devinfra import services as svc

    def go():
        names = _services(services)
        say = (lambda _t: None) if cli_support.quiet() else (lambda t: typer.echo(t, err=True))
        for name in names:
            console().print(svc.service(name, say=say).start(), markup=False, soft_wrap=True)
        if "kafka" in names and importlib.util.find_spec("pyflink") is not None:
            _fetch_flink_jars(say)
        p = svc.ports()
        exports = []
        if p.redis != svc.DEFAULTS["FEATURESTORE_REDIS_PORT"] and "redis" in names:
            exports.append(f"FEATURESTORE_REDIS_URL=redis://{svc.HOST}:{p.redis}/0")
        if p.kafka != svc.DEFAULTS["FEATURESTORE_KAFKA_PORT"] and "kafka" in names:
            exports.append(f"FEATURESTORE_KAFKA_BOOTSTRAP={svc.HOST}:{p.kafka}")
        if exports:  # a repo's default addresses are the default ports
            say(f"not the default ports: for featurestore commands, export {' '.join(exports)} "
                "(or set them in featurestore.yaml)")

    _run(go)


@infra.command()
def down(services: Optional[List[str]] = ServicesArg):
    """Stop the Redis and Kafka that infra up started on these ports (their data is kept)."""
    from featurestore.devinfra import services as svc

    def go():
        for name in reversed(_services(services)):
            console().print(svc.service(name).stop(), markup=False, soft_wrap=True)

    _run(go)


def console():
    from featurestore.cli import console as out

    return out


def _fetch_flink_jars(say) -> None:
    from featurestore.devinfra import jars as devjars

    d = devjars.fetch("flink", say=say)
    console().print(f"flink connector jars: {len(devjars.artifacts('flink'))} in {d}", markup=False, soft_wrap=True)


@infra.command()
def jars():
    """Fetch the pinned Flink connector jars into the user cache (each checked by SHA-256; kept when there)."""
    def go():
        _fetch_flink_jars((lambda _t: None) if cli_support.quiet() else (lambda t: typer.echo(t, err=True)))

    _run(go)


def _reachable(address: str, timeout: float = 2.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def _ours(name: str, address: str) -> str:
    """`` (featurestore infra, pid N)`` when the service at ``address`` is the one infra up started."""
    from featurestore.devinfra import services as svc
    from featurestore.errors import InfraError

    try:
        s = svc.service(name)
    except InfraError:
        return ""
    pid = s.status() if address in (f"{svc.HOST}:{s.port}", f"localhost:{s.port}") else None
    return f" (featurestore infra, pid {pid}, data in {s.dir})" if pid else ""


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
        kafka_at = cfg.kafka_bootstrap.split(",")[0]
        for name, at in (("redis", redis_at), ("kafka", kafka_at)):
            up = _reachable(at)
            checks.append((name, up, at + (_ours(name, at) if up else " (featurestore infra up starts one)")))
        ok = all(c[1] for c in checks)
        if as_json:
            cli_support.print_json({"checks": [{"what": w, "ok": good, "detail": d} for w, good, d in checks],
                                    "ok": ok})
        else:
            for what, good, detail in checks:
                console().print(f"{what:<11} {'ok' if good else 'MISSING'}  {detail}", markup=False, soft_wrap=True)
        if not ok:
            raise typer.Exit(1)

    _run(go, repo)
