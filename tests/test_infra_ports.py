"""infra/ honours the documented ports: FEATURESTORE_KAFKA_CONTROLLER_PORT moves the KRaft controller
listener (it used to be the broker port + 1 whatever the variable said). A second broker is started in a
run directory of its own (FEATURESTORE_INFRA_RUN_DIR) on spare ports, so the project's broker is untouched."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests.services import free_port

REPO_DIR = Path(__file__).resolve().parents[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _kafka_sh(command: str, env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO_DIR / "infra" / "kafka.sh"), command], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.kafka
@pytest.mark.slow
def test_kafka_controller_listens_on_the_configured_port(tmp_path):
    from confluent_kafka.admin import AdminClient

    port = free_port()
    controller = free_port()
    while controller in (port, port + 1):
        controller = free_port()
    env = {"FEATURESTORE_KAFKA_PORT": str(port), "FEATURESTORE_KAFKA_CONTROLLER_PORT": str(controller),
           "FEATURESTORE_INFRA_RUN_DIR": str(tmp_path / "run")}
    try:
        started = _kafka_sh("start", env)
        assert started.returncode == 0, started.stderr[-3000:]
        props = (tmp_path / "run" / "kafka" / "server.properties").read_text()
        assert f"controller.quorum.voters=1@127.0.0.1:{controller}\n" in props
        assert f"CONTROLLER://127.0.0.1:{controller}\n" in props
        assert _accepts(controller)  # the controller listens where it was told
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        assert admin.list_topics(timeout=20).brokers  # and the broker, which reaches it there, works
    finally:
        _kafka_sh("stop", env)


@pytest.mark.parametrize("controller,message", [
    ("29999x", "FEATURESTORE_KAFKA_CONTROLLER_PORT must be a port number, got '29999x'"),
    ("{port}", "FEATURESTORE_KAFKA_CONTROLLER_PORT must differ from FEATURESTORE_KAFKA_PORT"),
])
def test_a_bad_controller_port_is_one_line(tmp_path, controller, message):
    port = free_port()
    env = {"FEATURESTORE_KAFKA_PORT": str(port), "FEATURESTORE_KAFKA_CONTROLLER_PORT": controller.format(port=port),
           "FEATURESTORE_INFRA_RUN_DIR": str(tmp_path / "run")}
    out = _kafka_sh("status", env, timeout=60)
    assert out.returncode != 0 and out.stderr.startswith(f"[infra] ERROR: {message}")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
