"""Quiet by default (issue 12.5): what Java (Flink, Hadoop), librdkafka and library warnings print goes to
``<repo>/.featurestore/logs/output.log``, the path printed once on stderr; ``-v`` (or
FEATURESTORE_VERBOSE=1) shows it on the terminal instead."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ANNOUNCE = "(output of Java, Kafka and library warnings: "

CHILD = textwrap.dedent("""
    import os, sys, warnings
    from pathlib import Path
    from featurestore import logs
    logs.configure(verbosity=int(sys.argv[2]), announce=lambda t: print(t, file=sys.stderr))
    state = Path(sys.argv[1])
    logs.to_output_log(state)
    warnings.warn("a library's deprecation", DeprecationWarning)
    with logs.quiet_output(state):
        os.system("echo child-stdout; echo child-stderr >&2")  # a JVM started here writes like this
        print("python-stdout", flush=True)
    print("after", flush=True)
""")


def _child(state: Path, verbosity: int, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, str(state), str(verbosity)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "FEATURESTORE_VERBOSE": "", **(env or {})})


def test_child_processes_and_warnings_go_to_the_output_log(tmp_path):
    out = _child(tmp_path, 0)
    assert out.returncode == 0, out.stderr
    log = (tmp_path / "logs" / "output.log").read_text()
    assert out.stdout == "after\n"
    assert out.stderr.count(ANNOUNCE) == 1 and str(tmp_path / "logs" / "output.log") in out.stderr
    assert [line for line in out.stderr.splitlines() if not line.startswith(ANNOUNCE)] == []
    for text in ("child-stdout", "child-stderr", "python-stdout", "a library's deprecation"):
        assert text in log, text


@pytest.mark.parametrize("verbosity,env", [(1, None), (0, {"FEATURESTORE_VERBOSE": "1"})])
def test_verbose_shows_it_on_the_terminal(tmp_path, verbosity, env):
    out = _child(tmp_path, verbosity, env)
    assert out.returncode == 0, out.stderr
    assert "child-stdout" in out.stdout and "python-stdout" in out.stdout and "child-stderr" in out.stderr
    assert "a library's deprecation" in out.stderr and ANNOUNCE not in out.stderr
    assert not (tmp_path / "logs" / "output.log").exists() or "child-stdout" not in (
        tmp_path / "logs" / "output.log").read_text()


@pytest.mark.flink
@pytest.mark.slow
def test_a_flink_command_prints_no_java_output(tmp_path):
    """`backfill --engine flink` from the CLI: Hadoop's INFO lines and the JVM's output are in the output
    log, the terminal has the table and the log's path once."""
    from tests.randomrepo import random_events, write_events, write_repo

    root = write_repo(tmp_path / "r")
    write_events(root, random_events(4))
    out = subprocess.run([sys.executable, "-m", "featurestore.cli", "backfill", "--engine", "flink", "--view",
                          "qty_stats"], cwd=root, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "FEATURESTORE_VERBOSE": ""})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert "qty_stats" in out.stdout
    assert [line for line in out.stderr.splitlines() if line.strip()] == [
        f"{ANNOUNCE}{root.resolve() / '.featurestore' / 'logs' / 'output.log'}; -v shows it)"]
    for noise in ("INFO", "WARN", "Deprecat", "log4j", "SLF4J"):
        assert noise not in out.stdout + out.stderr, noise
    assert "CodecPool" in (root / ".featurestore" / "logs" / "output.log").read_text()
