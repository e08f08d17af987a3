"""infra/k8s/ runs the streaming job as ``featurestore stream --flink-address`` does: the same entry point
(jobs/stream.py) with the same arguments (``featurestore.engines.flink.remote.job_args``), the same configuration (featurestore.yaml
plus the documented FEATURESTORE_* variables), the committer beside it, and the paths the image builds.
No cluster here: the manifests are parsed and checked against the code."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.util
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from featurestore.engines.flink import stream as streaming
from featurestore.engines.flink import remote as flink_remote
from featurestore.config import ENV_OVERRIDES, ProjectConfig, load_config
from featurestore.stores.object_store import S3Location

REPO_DIR = Path(__file__).resolve().parents[1]
K8S = REPO_DIR / "infra" / "k8s"
PROJECT = "/opt/featurestore"  # where the Dockerfile puts this project
FEATURE_REPO = "/opt/repo"  # ... and the feature repo
PYTHON = f"{PROJECT}/.venv/bin/python"


def docs(name: str) -> list:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def by_kind(kind: str) -> list:
    return [d for f in sorted(K8S.glob("*.yaml")) for d in docs(f.name) if d.get("kind") == kind]


@pytest.fixture(scope="module")
def deployment() -> dict:
    (dep,) = by_kind("FlinkDeployment")
    return dep


@pytest.fixture(scope="module")
def job_parser():
    spec = importlib.util.spec_from_file_location("stream_job", REPO_DIR / "jobs" / "stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_parser()


def containers(dep: dict, role: str) -> dict:
    return {c["name"]: c for c in dep["spec"][role]["podTemplate"]["spec"]["containers"]}


def test_every_manifest_is_applied_and_parses():
    listed = docs("kustomization.yaml")[0]["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    for name in listed:
        for d in docs(name):
            assert d["apiVersion"] and d["kind"] and d["metadata"]["name"], name


def test_the_job_is_the_entry_point_and_arguments_of_stream_flink_address(deployment, job_parser):
    job = deployment["spec"]["job"]
    flink = importlib.metadata.version("apache-flink")  # PyFlink's version: the cluster's must match
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["jarURI"] == f"local:///opt/flink/opt/flink-python-{flink}.jar"
    assert deployment["spec"]["flinkVersion"] == "v" + "_".join(flink.split(".")[:2])
    args = list(job["args"])
    # the interpreter flags `flink run` gets from submit_remote, with the image's Python
    assert args[:4] == ["-pyclientexec", PYTHON, "-pyexec", PYTHON]
    assert args[4] == "-py" and args[5] == f"{PROJECT}/{flink_remote.JOB_SCRIPT.relative_to(REPO_DIR)}"
    conf = deployment["spec"]["flinkConfiguration"]
    assert conf["python.executable"] == conf["python.client.executable"] == PYTHON
    # the script's arguments: exactly what submit_remote passes (less its per-run --run-id/--no-restore/
    # --views), for the feature repo of the image and its default checkpoint folder
    store = SimpleNamespace(repo_path=Path(FEATURE_REPO))
    checkpoints = streaming.checkpoint_root(store, "job").parent
    assert args[6:] == flink_remote.job_args(FEATURE_REPO, checkpoints)
    parsed = job_parser.parse_args(args[6:])
    assert parsed.submit_only and not parsed.commit_only and parsed.repo == FEATURE_REPO
    assert parsed.views is None  # every streamed view, as `featurestore stream` without --view


def test_the_committer_runs_beside_the_job_on_the_shared_state(deployment, job_parser):
    jm, tm = containers(deployment, "jobManager"), containers(deployment, "taskManager")
    committer = jm["committer"]
    assert committer["image"] == deployment["spec"]["image"]
    assert committer["command"][:2] == [PYTHON, f"{PROJECT}/jobs/stream.py"]
    parsed = job_parser.parse_args(committer["command"][2:])
    assert parsed.commit_only and parsed.repo == FEATURE_REPO
    # the state folder of the repo (checkpoints, savepoints, the stream's staging) is one volume for the
    # job manager, the committer and the task managers: the committer reads the files the sinks write
    state = str(ProjectConfig(repo_path=Path(FEATURE_REPO)).state_path)
    for c in (jm["flink-main-container"], committer, tm["flink-main-container"]):
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        assert mounts.get(state) == "state", c["name"]
        assert c["envFrom"] == jm["flink-main-container"]["envFrom"], c["name"]  # one configuration
    for role in ("jobManager", "taskManager"):
        volumes = {v["name"]: v for v in deployment["spec"][role]["podTemplate"]["spec"]["volumes"]}
        claim = volumes["state"]["persistentVolumeClaim"]["claimName"]
        (pvc,) = [p for p in by_kind("PersistentVolumeClaim") if p["metadata"]["name"] == claim]
        assert "ReadWriteMany" in pvc["spec"]["accessModes"]
    assert deployment["spec"]["flinkConfiguration"]["state.savepoints.dir"] == f"file://{state}/savepoints"


def test_the_configuration_is_the_documented_keys_and_reaches_the_services(deployment, tmp_path):
    (cm,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"] == "featurestore-config"]
    env = cm["data"]
    assert set(env) <= set(ENV_OVERRIDES.values()), set(env) - set(ENV_OVERRIDES.values())
    # the image's feature repo is the project's example repo (Dockerfile: FEATURE_REPO=.)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "featurestore.yaml").write_text((REPO_DIR / "featurestore.yaml").read_text())
    cfg = load_config(repo, env=env)
    assert cfg.redis_url == env["FEATURESTORE_REDIS_URL"] and cfg.sources["redis_url"] == "env"
    assert cfg.kafka_bootstrap == env["FEATURESTORE_KAFKA_BOOTSTRAP"]
    assert isinstance(cfg.offline_path, S3Location)
    assert cfg.offline_path.endpoint == env["FEATURESTORE_OFFLINE_S3_ENDPOINT"]
    # on an s3:// root the stream stages its files in the repo's state folder: the shared volume
    store = SimpleNamespace(config=dataclasses.replace(cfg, repo_path=Path(FEATURE_REPO)),
                            _offline_root=cfg.offline_path / cfg.project)
    assert str(streaming.staging_root(store)).startswith(f"{FEATURE_REPO}/.featurestore/")
    # the example Redis and Kafka serve the addresses the configuration names
    services = {s["metadata"]["name"]: {p["port"] for p in s["spec"]["ports"]} for s in by_kind("Service")}
    host, port = re.match(r"redis://([^:/]+):(\d+)", env["FEATURESTORE_REDIS_URL"]).groups()
    assert int(port) in services[host]
    host, port = env["FEATURESTORE_KAFKA_BOOTSTRAP"].split(":")
    assert int(port) in services[host]


def test_the_image_holds_what_the_manifests_run():
    text = (K8S / "Dockerfile").read_text()
    assert f"WORKDIR {PROJECT}" in text
    for part in ("featurestore", "jobs"):
        assert re.search(rf"^COPY {part} {part}$", text, re.M), part
    assert "python3.11 -m venv .venv" in text and "-c infra/requirements.lock ." in text
    assert f"FEATURESTORE_FLINK_JARS_DIR={PROJECT}/jars" in text
    # the jars are the pinned ones infra/setup.sh and `featurestore infra jars` fetch, by the same Python code
    # (SHA-256 checked), copied into FEATURESTORE_FLINK_JARS_DIR; no Maven in the build
    assert re.search(r"^RUN .*\n?.*\.venv/bin/python -m featurestore\.devinfra\.jars flink ", text, re.M)
    assert f"cp \"$(cat /tmp/fs-jars.dir)\"/*.jar {PROJECT}/jars/" in text
    assert "mvn" not in text and "maven:" not in text
    assert f"COPY ${{FEATURE_REPO}}/featurestore.yaml {FEATURE_REPO}/featurestore.yaml" in text
    assert "cp /opt/flink/opt/flink-python-*.jar /opt/flink/lib/" in text
    flink = importlib.metadata.version("apache-flink")
    assert f"ARG FLINK_IMAGE=flink:{flink}-" in text


def test_the_committer_sidecar_commits_the_staged_files_into_an_s3_root(tmp_path, s3_root):
    """The sidecar's command, run for real (no Flink: a file as the job's sink leaves it): it commits the
    staged file into the view's table on the s3:// root, and stops on SIGTERM after a last pass."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    from featurestore.store import FeatureStore
    from tests.test_stream import _flink_like_file, make_repo, stream_events

    root = make_repo(tmp_path / "repo", "fs_k8s_unused", "k8s_committer", stream_events(),
                     offline=(str(s3_root), s3_root.endpoint))
    store = FeatureStore(root)
    view = "amount_stats"
    assert view in streaming.stream_views(store)
    staged = streaming.staging_dir(store, view) / "part-a-0-0"
    assert str(staged).startswith(str(store.config.state_path))  # local, on the shared volume in the pod
    _flink_like_file(staged, [("u1", 1772323200000, 0, 0), ("u2", 1772323201000, 1, 0)])
    proc = subprocess.Popen([sys.executable, str(REPO_DIR / "jobs" / "stream.py"), "--repo", str(root),
                             "--commit-only", "--commit-every", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        table = store.offline.table(view, ts_column="ts")
        deadline = time.monotonic() + 120
        while table.version is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert table.version is not None, proc.stderr.read() if proc.poll() is not None else "no commit in 120 s"
        assert sorted(table.read().column("user_id").to_pylist()) == ["u1", "u2"]
        assert table.files()[0].startswith(str(s3_root))
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["committer"] == "stopped"
    assert not staged.exists()  # committed files leave the staging folder
