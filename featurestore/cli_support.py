"""What every ``featurestore`` command shares: ``-h``, ``-q``/``-v``/``--log-level`` (on the group and on
each command), the repo found upward from the current folder, times on the command line read as UTC,
JSON output for scripts, and tables that are never cut when piped."""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer
from rich.console import Console

from featurestore import logs
from featurestore.errors import FeatureStoreError
from featurestore.errors import ConfigError

CONTEXT = {"help_option_names": ["-h", "--help"]}
UTC_HELP = "a date or ISO time; without a zone it is read as UTC (2026-11-20, 2026-11-20T08:30, ...+02:00)"
_verbosity = {"quiet": False, "verbose": 0, "level": None}


def with_verbosity(fn: Callable, reset: bool = False) -> Callable:
    """``fn`` with ``-q``, ``-v`` (repeatable) and ``--log-level`` added to its parameters: typer builds
    them into the command's options, and the values are kept for :func:`apply_verbosity`."""
    sig = inspect.signature(fn)
    kw = inspect.Parameter.KEYWORD_ONLY
    extra = [
        inspect.Parameter("quiet_", kw, annotation=bool, default=typer.Option(
            False, "-q", "--quiet", help="Only errors and the exit code (no tables, progress or notes; --json still prints).")),
        inspect.Parameter("verbose_", kw, annotation=int, default=typer.Option(
            0, "-v", "--verbose", count=True, show_default=False,
            help="More output: info messages, and what Java, Kafka and libraries print (otherwise in the "
                 "repo's .featurestore/logs/output.log). -vv: debug.")),
        inspect.Parameter("log_level_", kw, annotation=Optional[str], default=typer.Option(
            None, "--log-level", metavar="LEVEL", show_default=False,
            help="Level of featurestore's own messages on stderr: debug, info, warning (default), error.")),
    ]

    @functools.wraps(fn)
    def command(*args, quiet_: bool = False, verbose_: int = 0, log_level_: Optional[str] = None, **kwargs):
        if reset:  # the group's callback runs first: a new command line
            reset_verbosity()
        if quiet_:
            _verbosity["quiet"] = True
        if verbose_:
            _verbosity["verbose"] = max(int(_verbosity["verbose"] or 0), verbose_)
        if log_level_:
            if log_level_.lower() not in logs.LEVELS:
                raise typer.BadParameter(f"one of {', '.join(logs.LEVELS)}", param_hint="--log-level")
            _verbosity["level"] = log_level_.lower()
        return fn(*args, **kwargs)

    params = [p for p in sig.parameters.values()]
    command.__signature__ = sig.replace(parameters=params + extra)  # type: ignore[attr-defined]
    command.__annotations__ = {**getattr(fn, "__annotations__", {}), "quiet_": bool, "verbose_": int,
                               "log_level_": Optional[str]}
    return command


class Typer(typer.Typer):
    """typer.Typer whose commands and callback all take the verbosity options (-q, -v, --log-level)."""

    def command(self, *args, **kwargs):
        register = super().command(*args, **kwargs)

        def decorator(fn):
            register(with_verbosity(fn))
            return fn

        return decorator

    def callback(self, *args, **kwargs):
        register = super().callback(*args, **kwargs)

        def decorator(fn):
            register(with_verbosity(fn, reset=True))
            return fn

        return decorator


def apply_verbosity(announce) -> None:
    logs.configure(level=_verbosity["level"], verbosity=int(_verbosity["verbose"] or 0),
                   quiet=bool(_verbosity["quiet"]), announce=announce)


def check_port_free(host: str, port: int) -> None:
    """A FeatureStoreError naming the address when a server cannot listen there (in use, not an address of
    this machine, no permission), before anything starts."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise FeatureStoreError(f"cannot serve on {host}:{port}: unknown host ({exc.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            why = "address already in use (another process listens there; pass --port)" \
                if exc.errno in (98, 48, 10048) else (exc.strerror or str(exc))
            raise FeatureStoreError(f"cannot serve on {host}:{port}: {why}") from None


def click_exceptions():
    """The exceptions of the click that typer runs (this typer vendors its own copy)."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - a typer on the public click
        from click import exceptions
    return exceptions


def usage_line(exc, argv: List[str]) -> str:
    """One line for click's usage error ``exc``: what is wrong, the value given, and where help is."""
    command = exc.ctx.command_path if exc.ctx is not None else "featurestore"
    where = f" ({command} -h for help)"
    param = getattr(exc, "param", None)
    ex = click_exceptions()
    if isinstance(exc, ex.BadParameter) and not isinstance(exc, ex.MissingParameter) and param is not None:
        hint = exc.param_hint or "/".join(getattr(param, "opts", []) or [param.name or "?"])
        if isinstance(hint, (list, tuple)):
            hint = "/".join(hint)
        value = None
        for opt in getattr(param, "opts", []):
            for i, arg in enumerate(argv):
                if arg == opt and i + 1 < len(argv):
                    value = argv[i + 1]
                elif arg.startswith(opt + "="):
                    value = arg[len(opt) + 1:]
        reason = " ".join(str(exc.message).split())
        given = f" {value!r}" if value is not None else ""
        return f"invalid value{given} for {hint}: {reason}{where}"
    return " ".join(exc.format_message().split()) + where


def unreachable_redis(exc: Exception, repo: Optional[Path]) -> Optional[Exception]:
    """The online store's one-line error when ``exc`` (or its cause) is Redis unreachable, else None."""
    try:
        import redis
    except ImportError:  # pragma: no cover - redis is a core dependency
        return None
    seen = exc
    while seen is not None and not isinstance(seen, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return None
    try:
        from featurestore.store import FeatureStore

        return FeatureStore(find_repo(repo)).online_store().infra_error(seen)
    except Exception:  # noqa: BLE001 - no repo to name the address: the generic line
        return None


def quiet() -> bool:
    return bool(_verbosity["quiet"])


def reset_verbosity() -> None:
    """Forget the options of an earlier command run in this process (tests run many)."""
    _verbosity.update(quiet=False, verbose=0, level=None)


# -- the repo --------------------------------------------------------------------------------------------
MARKERS = ("featurestore.yaml", "feature_store.yaml")


def find_repo(explicit: Optional[Path], start: Optional[Path] = None) -> Path:
    """The repo a command works on: ``--repo`` when given (it must hold featurestore.yaml, Feast's
    feature_store.yaml or a definitions/ folder), else the nearest folder holding featurestore.yaml (or
    feature_store.yaml) from the current one upward, like git. No repo: a ConfigError saying so (never
    an empty project that plans to add or remove everything)."""
    if explicit is not None:
        root = Path(explicit).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise ConfigError(f"--repo {explicit}: is a file, not a repo folder; pass the folder holding "
                              "featurestore.yaml" + (f" ({root.parent})" if root.name in MARKERS else ""))
        if not root.is_dir():
            raise ConfigError(f"--repo {explicit}: no such folder")
        if not any((root / m).is_file() for m in MARKERS) and not (root / "definitions").is_dir():
            raise ConfigError(f"--repo {explicit}: no featurestore.yaml or definitions/ in {root} "
                              "(featurestore init creates a repo)")
        return root
    here = Path(start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if any((folder / m).is_file() for m in MARKERS):
            return folder
    if (here / "definitions").is_dir():
        return here
    raise ConfigError(f"no featurestore.yaml in {here} or any folder above it: run this in a feature repo, pass "
                      "--repo, or create one with featurestore init")


# -- times -----------------------------------------------------------------------------------------------
def utc_time(text: Optional[str], option: str):
    """A time given on the command line as a UTC pandas Timestamp: a date or ISO time, naive ones read
    as UTC (the Python API refuses naive times: docs/semantics.md); ``now`` is the current time."""
    if text is None:
        return None
    import pandas as pd

    from featurestore.errors import RequestError
    from featurestore.sdk.timeutil import read_time_text

    if text.strip().lower() == "now":
        return pd.Timestamp.now(tz="UTC")
    try:
        ts = read_time_text(text.strip(), option)
    except (ValueError, TypeError, OverflowError) as exc:
        raise RequestError(f"{option} {text!r}: not a date or ISO time ({exc})") from None
    if ts is pd.NaT:
        raise RequestError(f"{option} {text!r}: not a date or ISO time")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


# -- output ----------------------------------------------------------------------------------------------
_console: dict = {}


def wide() -> Console:
    """A console on stdout wide enough that a table piped to a file or a tool is never cut at 80 columns."""
    if "wide" not in _console:
        _console["wide"] = Console(highlight=False, width=400)
    return _console["wide"]


def print_json(value: Any) -> None:
    """One JSON document on stdout (times as ISO strings, dataclasses as objects)."""
    import dataclasses

    def default(o):
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return dataclasses.asdict(o)
        if hasattr(o, "isoformat"):
            return o.isoformat()
        if isinstance(o, Path):
            return str(o)
        return str(o)

    def finite(o):  # JSON has no Infinity or NaN: null
        if isinstance(o, float) and (o != o or o in (float("inf"), float("-inf"))):
            return None
        if isinstance(o, dict):
            return {k: finite(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [finite(v) for v in o]
        return o

    text = json.dumps(value, default=default)  # dataclasses and times to plain values first
    sys.stdout.write(json.dumps(finite(json.loads(text)), indent=2) + "\n")
    sys.stdout.flush()


__all__ = ["CONTEXT", "UTC_HELP", "Typer", "with_verbosity", "apply_verbosity", "reset_verbosity", "quiet", "find_repo", "utc_time",
           "wide", "print_json"]
