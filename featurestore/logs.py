"""Quiet by default: what other programs print (the JVM of PyFlink, Hadoop's ``INFO CodecPool`` lines,
librdkafka, Python deprecation warnings of dependencies) goes to a log file under the repo's state folder,
``<repo>/.featurestore/logs/output.log``; the command prints that path once. ``-v`` (or
``FEATURESTORE_VERBOSE=1``) shows it on the terminal instead.

Our own messages go through :mod:`logging` (loggers under ``featurestore``): warnings and errors on
stderr by default, ``-v`` adds info, ``--log-level`` sets the level, ``-q`` leaves errors only.

Nothing here imports a third-party package: the infra commands use it without the core dependencies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

OUTPUT_LOG = "output.log"  # under <state>/logs/ (failures.LOGS_DIR)
MAX_LOG_BYTES = 20_000_000  # output.log is renamed to output.log.1 past this
LEVELS = ("debug", "info", "warning", "error")
VERBOSE_ENV = "FEATURESTORE_VERBOSE"

_state = {"verbose": os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false", "no"), "quiet": False,
          "announce": None, "announced": set(), "file_handler": None, "redirected": False}


def verbose() -> bool:
    """True when other programs' output is shown (``-v``, ``--log-level debug`` or ``FEATURESTORE_VERBOSE=1``)."""
    return bool(_state["verbose"])


def configure(level: Optional[str] = None, verbosity: int = 0, quiet: bool = False, announce=None) -> None:
    """Set up logging for a command: the ``featurestore`` loggers on stderr at ``level`` (default
    warning; ``verbosity`` 1 = info, 2 = debug; ``quiet`` = error); Python warnings are logged (to the
    output log, or stderr when verbose) instead of printed. ``announce(text)`` prints the output log's
    path the first time something is written there (default: stderr)."""
    if level is None:
        level = "error" if quiet else ("debug" if verbosity >= 2 else "info" if verbosity == 1 else "warning")
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    _state["verbose"] = verbosity > 0 or level == "debug" or _state["verbose"]
    _state["quiet"] = quiet
    _state["announce"] = announce
    root = logging.getLogger("featurestore")
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        if getattr(h, "_featurestore_console", False):
            root.removeHandler(h)
    console = logging.StreamHandler(sys.stderr)
    console._featurestore_console = True  # type: ignore[attr-defined]
    console.setLevel(getattr(logging, level.upper()))
    console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(console)
    root.propagate = False
    logging.captureWarnings(True)
    pyw = logging.getLogger("py.warnings")
    pyw.propagate = False
    if _state["verbose"]:
        pyw.handlers = [console]
        warnings.simplefilter("default")
    else:
        pyw.handlers = [logging.NullHandler()]  # until a repo's output log is known (quiet_output)


def output_log(state_dir: Path) -> Path:
    """``<state_dir>/logs/output.log`` (created; rolled to ``.1`` once it passes MAX_LOG_BYTES)."""
    path = Path(state_dir) / "logs" / OUTPUT_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if path.stat().st_size > MAX_LOG_BYTES:
            os.replace(path, path.with_name(OUTPUT_LOG + ".1"))
    except FileNotFoundError:
        pass
    return path


def _announce(path: Path) -> None:
    if _state["quiet"] or str(path) in _state["announced"]:
        return
    _state["announced"].add(str(path))
    text = f"(output of Java, Kafka and library warnings: {path}; -v shows it)"
    if _state["announce"] is not None:
        _state["announce"](text)


class _OutputLogHandler(logging.FileHandler):
    """The output log as a logging handler: the first record written prints the file's path once."""

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if not _state["redirected"]:
            _announce(Path(self.baseFilename))


def to_output_log(state_dir: Path) -> Optional[Path]:
    """Send Python warnings and the ``featurestore.kafka`` logger (librdkafka) of this process to the
    repo's output log (not when verbose). Its path, or None when verbose."""
    if verbose():
        return None
    path = output_log(state_dir)
    handler = _state["file_handler"]
    if handler is None or handler.baseFilename != str(path):
        handler = _OutputLogHandler(path, delay=True)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        _state["file_handler"] = handler
    for name in ("py.warnings", "featurestore.kafka"):
        lg = logging.getLogger(name)
        lg.handlers = [handler]
        lg.propagate = False
    logging.getLogger("featurestore.kafka").setLevel(logging.INFO)
    return path


@contextlib.contextmanager
def quiet_output(state_dir: Path) -> Iterator[Optional[Path]]:
    """Within the block, what this process and its children write to stdout and stderr (file descriptors
    1 and 2: a JVM started here inherits them for its life) goes to the repo's output log, unless
    verbose. Yields the log's path (None when verbose)."""
    if verbose():
        yield None
        return
    path = to_output_log(state_dir)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "ab") as f:
            f.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} pid {os.getpid()}\n".encode())
            f.flush()
            os.dup2(f.fileno(), 1)
            os.dup2(f.fileno(), 2)
        _state["redirected"] = True
        yield path
    finally:
        _state["redirected"] = False
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)
    _announce(path)


def start_jvm(state_dir: Path) -> None:
    """Start PyFlink's Java gateway (once per process) with its output in the repo's output log, Flink's
    own log files under ``<state>/logs/flink/`` (not inside site-packages), and deprecation warnings of
    its Python dependencies logged, not printed."""
    from pyflink import java_gateway

    if getattr(java_gateway, "_gateway", None) is not None or os.environ.get("PYFLINK_GATEWAY_PORT"):
        return
    flink_logs = Path(state_dir) / "logs" / "flink"
    flink_logs.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(flink_logs))
    with quiet_output(state_dir):
        java_gateway.get_gateway()


def kafka_logger() -> logging.Logger:
    """The logger librdkafka's messages go to (confluent_kafka's ``logger`` setting) instead of stderr."""
    return logging.getLogger("featurestore.kafka")


__all__ = ["configure", "verbose", "output_log", "to_output_log", "quiet_output", "start_jvm", "kafka_logger",
           "LEVELS"]
