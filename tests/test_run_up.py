"""`bash infra/run.sh up` (issue 12.6): set up and start the services only, idempotently: run again while
they are up (as in this test run, which `bash infra/run.sh test` started), it installs nothing, starts
nothing new and says how to use them; an unknown command is a usage line with exit 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(ROOT / "infra" / "run.sh"), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=dict(os.environ))


@pytest.mark.redis
@pytest.mark.kafka
@pytest.mark.slow
def test_run_sh_up_sets_up_and_starts_only_the_services():
    from featurestore.devinfra import services

    before = {name: services.service(name).status() for name in ("redis", "kafka")}
    assert all(before.values()), before  # infra/up.sh started them (the test command does)
    up = _run("up")
    assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
    assert "Redis and Kafka are up; in a shell: source infra/env.sh" in up.stdout
    assert "installing Python dependencies" not in up.stdout + up.stderr  # the venv is current: nothing reinstalled
    assert {name: services.service(name).status() for name in ("redis", "kafka")} == before  # the same processes
    bad = _run("nonsense")
    assert bad.returncode == 2 and "usage: bash infra/run.sh demo|test|up" in bad.stderr
