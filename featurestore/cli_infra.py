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


RepoOpt = typer.Option(None, "--repo", "-r", show_default=False,
                       help="Repo whose local Redis and Kafka addresses give the ports when FEATURESTORE_REDIS_PORT / "
                            "FEATURESTORE_KAFKA_PORT are not set (default: the nearest featurestore.yaml upward).")
LOCAL = ("127.0.0.1", "localhost", "::1")


def _service_env(repo: Optional[Path]):
    """The environment the services run with, and the repo's config: FEATURESTORE_REDIS_PORT /
    FEATURESTORE_KAFKA_PORT as set, else the ports of the repo's Redis and Kafka addresses when they are on
    this machine (featurestore.yaml, FEATURESTORE_REDIS_URL / FEATURESTORE_KAFKA_BOOTSTRAP); outside a repo,
    the defaults."""
    import os
    from urllib.parse import urlparse

    from featurestore.config import load_config
    from featurestore.errors import ConfigError

    env = dict(os.environ)
    try:
        root = cli_support.find_repo(repo)
    except ConfigError:
        if repo is not None:
            raise
        root = Path.cwd()
    cfg = load_config(root)
    url = urlparse(cfg.redis_url)
    if not env.get("FEATURESTORE_REDIS_PORT") and url.scheme == "redis" and url.hostname in LOCAL and url.port:
        env["FEATURESTORE_REDIS_PORT"] = str(url.port)
    host, _, port = cfg.kafka_bootstrap.split(",")[0].rpartition(":")
    if not env.get("FEATURESTORE_KAFKA_PORT") and host.strip("[]") in LOCAL and port.isdigit():
        env["FEATURESTORE_KAFKA_PORT"] = port
    return env, cfg


@infra.command()
def up(services: Optional[List[str]] = ServicesArg, repo: Optional[Path] = RepoOpt):
    """Set up and start our own Redis and single-node Kafka (KRaft) on this machine, where the repo expects them.

    Ports: FEATURESTORE_REDIS_PORT and FEATURESTORE_KAFKA_PORT (its controller on the next port,
    FEATURESTORE_KAFKA_CONTROLLER_PORT), else those of the repo's local Redis and Kafka addresses, else 6390
    and 19092. Redis is redis-server from PATH; Kafka runs on Java 17 from pinned jars fetched into the user
    cache, and with the 'stream' extra the Flink connector jars are fetched too. Data and logs:
    ~/.local/state/featurestore/<service>-<port>; run from a clone, its infra/.run (where bash infra/up.sh keeps
    them); FEATURESTORE_INFRA_RUN_DIR instead. A no-op for a service that is already up."""
    import importlib.util

    from featurestore.devinfra import services as svc

    def go():
        names = _services(services)
        env, cfg = _service_env(repo)
        say = (lambda _t: None) if cli_support.quiet() else (lambda t: typer.echo(t, err=True))
        for name in names:
            console().print(svc.service(name, env, say=say).start(), markup=False, soft_wrap=True)
        if "kafka" in names and importlib.util.find_spec("pyflink") is not None:
            _fetch_flink_jars(say)
        p = svc.ports(env)
        exports = []
        redis_url, bootstrap = f"redis://{svc.HOST}:{p.redis}/0", f"{svc.HOST}:{p.kafka}"
        if "redis" in names and _ours("redis", cfg_address(cfg, "redis"), env) == "":
            exports.append(f"FEATURESTORE_REDIS_URL={redis_url}")
        if "kafka" in names and _ours("kafka", cfg_address(cfg, "kafka"), env) == "":
            exports.append(f"FEATURESTORE_KAFKA_BOOTSTRAP={bootstrap}")
        if exports:
            say(f"the repo's addresses are elsewhere: for featurestore commands, export {' '.join(exports)} "
                "(or set them in featurestore.yaml)")

    _run(go)


@infra.command()
def down(services: Optional[List[str]] = ServicesArg, repo: Optional[Path] = RepoOpt):
    """Stop the Redis and Kafka that infra up started on these ports (their data is kept)."""
    from featurestore.devinfra import services as svc

    def go():
        env, _cfg = _service_env(repo)
        for name in reversed(_services(services)):
            console().print(svc.service(name, env).stop(), markup=False, soft_wrap=True)

    _run(go)


def cfg_address(cfg, name: str) -> str:
    """``host:port`` of the repo's Redis or (first) Kafka broker."""
    from urllib.parse import urlparse

    if name == "redis":
        url = urlparse(cfg.redis_url)
        return f"{url.hostname or '127.0.0.1'}:{url.port or 6379}"
    return cfg.kafka_bootstrap.split(",")[0]


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


def _ours(name: str, address: str, env=None) -> str:
    """`` (featurestore infra, pid N)`` when the service at ``address`` is the one infra up started."""
    from featurestore.devinfra import services as svc
    from featurestore.errors import InfraError

    try:
        s = svc.service(name, env)
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
        from featurestore.devinfra.jars import connector_jars
        from featurestore.errors import FeatureStoreError

        env, cfg = _service_env(repo)  # not in a repo: the defaults and FEATURESTORE_* variables
        checks = []
        try:
            jars = connector_jars(cfg)
            checks.append(("flink jars", True, f"{len(jars)} in {jars[0].parent}"))
        except FeatureStoreError as exc:
            checks.append(("flink jars", False, str(exc)))
        java = _java()
        checks.append(("java", java is not None, java or "not on PATH (Java 17 runs the Flink jobs)"))
        for name in ("redis", "kafka"):
            at = cfg_address(cfg, name)
            up = _reachable(at)
            checks.append((name, up, at + (_ours(name, at, env) if up else " (featurestore infra up starts one)")))
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
