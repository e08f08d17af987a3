"""Shared fixtures. Service-backed ones need the project's Redis and Kafka (``bash infra/up.sh``); when a
service is down they fail (never skip) with one line saying how to start it."""

import contextlib
import fcntl
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from featurestore.config import load_config
from featurestore.store import FeatureStore
from featurestore.stores import online_redis as orr
from tests.randomrepo import random_events, write_events, write_repo

REPO_DIR = Path(__file__).resolve().parents[1]
UP_HINT = "run bash infra/up.sh"
RUN_DIR = Path(os.environ.get("FEATURESTORE_INFRA_RUN_DIR") or REPO_DIR / "infra" / ".run")


@pytest.fixture(scope="session")
def redis_client():
    """A client of the project's Redis (featurestore.yaml + FEATURESTORE_* env: URL, password, TLS)."""
    import redis

    cfg = load_config(REPO_DIR)
    client = orr.connect(cfg.redis_url, cfg.redis_password, cfg.redis_tls)
    error = None
    try:
        client.ping()
    except redis.exceptions.RedisError as exc:
        error = str(exc)
    if error is not None:  # fail outside the except block: one clear line, no chained traceback
        pytest.fail(f"Redis not reachable at {orr.redact(cfg.redis_url)} ({error}): {UP_HINT}", pytrace=False)
    yield client
    client.close()


@contextlib.contextmanager
def _file_lock(name: str, exclusive: bool):
    """An advisory lock shared by the test processes of this checkout (``pytest -n``: one per worker)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / f"{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def _redis_cluster_started():
    """The local Redis Cluster (``infra/redis-cluster.sh``: 3 masters + 3 replicas on
    ``FEATURESTORE_REDIS_CLUSTER_PORT``..+5), started on first use (a no-op when it is up; one worker
    starts it, the others wait) and left running like the project's Redis (``bash infra/down.sh`` stops it)."""
    script = REPO_DIR / "infra" / "redis-cluster.sh"
    with _file_lock("redis-cluster-start", exclusive=True):
        done = subprocess.run(["bash", str(script), "start"], capture_output=True, text=True, timeout=180)
    if done.returncode != 0:
        pytest.fail(f"Redis Cluster did not start: {(done.stderr or done.stdout).strip().splitlines()[-1]}",
                    pytrace=False)
    return subprocess.run(["bash", str(script), "url"], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def redis_cluster_url(_redis_cluster_started):
    """The local Redis Cluster's URL, for one test: held shared, so that a test that fails a master over
    (:func:`redis_cluster_to_fail_over`) never runs beside it in another worker."""
    with _file_lock("redis-cluster-use", exclusive=False):
        yield _redis_cluster_started


@pytest.fixture
def redis_cluster_to_fail_over(_redis_cluster_started):
    """The local Redis Cluster's URL, held alone for one test that changes its roles (a failover)."""
    with _file_lock("redis-cluster-use", exclusive=True):
        yield _redis_cluster_started


@pytest.fixture(params=["single", "cluster"])
def online_backend(request, monkeypatch):
    """Runs a test against the project's single Redis and against the local Redis Cluster: the cluster's
    URL goes to ``FEATURESTORE_REDIS_URL``, so every FeatureStore the test configures (and the stream
    job it starts) uses it."""
    if request.param == "cluster":
        monkeypatch.setenv("FEATURESTORE_REDIS_URL", request.getfixturevalue("redis_cluster_url"))
    return request.param


def drop_project(client, project: str) -> None:
    """Delete every online key of a project (on a cluster: SCAN runs on every master)."""
    keys = list(client.scan_iter(match=f"{orr.KEY_PREFIX}:{project}:*", count=1000))
    for i in range(0, len(keys), 500):
        client.delete(*keys[i:i + 500])


@pytest.fixture(scope="session")
def kafka_admin():
    """An AdminClient of the project's Kafka broker."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    bootstrap = load_config(REPO_DIR).kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 3000})
    error = None
    try:
        admin.list_topics(timeout=5)
    except KafkaException as exc:
        error = str(exc)
    if error is not None:
        pytest.fail(f"Kafka not reachable at {bootstrap} ({error}): {UP_HINT}", pytrace=False)
    return admin


@pytest.fixture(scope="session")
def s3_bucket():
    """A fresh bucket on the local S3-compatible server (moto, ``infra/s3.sh``): (endpoint, bucket name).
    Sets test credentials in the environment (the server accepts any), as a user's would be."""
    import os

    from botocore.exceptions import BotoCoreError, ClientError

    from tests.services import S3_CREDENTIALS, s3_client, s3_endpoint

    for k, v in S3_CREDENTIALS.items():
        os.environ[k] = v
    endpoint = s3_endpoint()
    bucket = f"featurestore-tests-{uuid.uuid4().hex[:12]}"
    error = None
    try:
        s3_client(endpoint).create_bucket(Bucket=bucket)
    except (BotoCoreError, ClientError) as exc:
        error = str(exc).splitlines()[0]
    if error is not None:
        pytest.fail(f"S3 server not reachable at {endpoint} ({error}): {UP_HINT}", pytrace=False)
    return endpoint, bucket


@pytest.fixture
def s3_root(s3_bucket):
    """An empty ``s3://`` offline root of this test's own (a fresh prefix in the session's bucket)."""
    from featurestore.stores.object_store import S3Location

    endpoint, bucket = s3_bucket
    return S3Location(bucket, f"t-{uuid.uuid4().hex[:12]}", endpoint)


@pytest.fixture(params=["local", "s3"])
def offline_root(request, tmp_path):
    """An offline root, once a local folder and once an ``s3://`` location on the local S3 server: the
    strongest offline tests run on both."""
    if request.param == "local":
        return tmp_path / "offline"
    return request.getfixturevalue("s3_root")


@pytest.fixture
def use_offline_root(offline_root, monkeypatch):
    """Point the projects a test creates at :func:`offline_root` (through the environment, as a user would)."""
    from featurestore.stores.object_store import is_remote

    monkeypatch.setenv("FEATURESTORE_OFFLINE_ROOT", str(offline_root))
    if is_remote(offline_root):
        monkeypatch.setenv("FEATURESTORE_OFFLINE_S3_ENDPOINT", offline_root.endpoint)
    return offline_root


@pytest.fixture
def materialized_store(tmp_path):
    """A factory: the random repo with one seed's events, backfilled and materialized under a fresh
    project name; its Redis keys are deleted afterwards."""
    made = []

    def make(seed: int, events: int = 300) -> FeatureStore:
        root = write_repo(tmp_path / f"repo{len(made)}")
        project = f"t_{uuid.uuid4().hex[:8]}"
        (root / "featurestore.yaml").write_text(f"project: {project}\ndefinitions: definitions\n")
        fs = FeatureStore(root)
        write_events(root, random_events(seed, n=events))
        fs.backfill()
        fs.materialize()
        made.append(fs)
        return fs

    yield make
    for fs in made:
        drop_project(fs.online_store().client, fs.config.project)


# -- a real standalone Flink cluster -----------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def flink_cluster(tmp_path_factory):
    """A standalone Flink cluster from the apache-flink package (bin/start-cluster.sh): JobManager and one
    TaskManager (two slots) bound to localhost on free ports, small memory, its own conf/lib/log/pid
    directories (lib = the package's lib plus opt/flink-python, which a cluster running Python jobs
    needs). One per session (each start costs 30-60 s on a loaded machine; the tests that use it run
    bounded jobs one after the other); stopped at the end of the session."""
    import json
    import time

    import pyflink

    from featurestore.engines.flink import remote as flink_remote

    home = Path(pyflink.__file__).parent
    base = tmp_path_factory.mktemp("flink_cluster")
    conf, lib, logs = base / "conf", base / "lib", base / "log"
    for d in (conf, lib, logs):
        d.mkdir(parents=True)
    for f in (home / "conf").glob("log*"):
        (conf / f.name).write_bytes(f.read_bytes())
    for jar in [*(home / "lib").glob("*.jar"), *(home / "opt").glob("flink-python-*.jar")]:
        (lib / jar.name).symlink_to(jar)
    rest, rpc = _free_port(), _free_port()
    (conf / "workers").write_text("localhost\n")
    (conf / "masters").write_text(f"localhost:{rest}\n")
    opens = " ".join(f"--add-opens=java.base/{p}=ALL-UNNAMED" for p in (
        "java.lang", "java.net", "java.io", "java.nio", "sun.nio.ch", "java.lang.reflect", "java.text", "java.time",
        "java.util", "java.util.concurrent", "java.util.concurrent.atomic", "java.util.concurrent.locks"))
    (conf / "config.yaml").write_text("\n".join([
        f"env.java.opts.all: --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED {opens}",
        f"env.pid.dir: {base}",
        "jobmanager.bind-host: localhost", "jobmanager.rpc.address: localhost", f"jobmanager.rpc.port: {rpc}",
        "jobmanager.memory.process.size: 768m",
        "taskmanager.bind-host: localhost", "taskmanager.host: localhost", "taskmanager.numberOfTaskSlots: 2",
        "taskmanager.memory.process.size: 1536m",
        "rest.address: localhost", "rest.bind-address: localhost", f"rest.port: {rest}",
        "parallelism.default: 1", ""]))
    env = flink_remote.child_env({"FLINK_CONF_DIR": str(conf), "FLINK_LOG_DIR": str(logs), "FLINK_LIB_DIR": str(lib)})
    subprocess.run([str(home / "bin" / "start-cluster.sh")], env=env, check=True, capture_output=True, timeout=120)
    try:
        import urllib.request

        def ready():
            try:
                with urllib.request.urlopen(f"http://localhost:{rest}/overview", timeout=2) as r:
                    return json.loads(r.read())["slots-available"] >= 1
            except OSError:
                return False

        deadline = time.monotonic() + 90
        while not ready():
            assert time.monotonic() < deadline, "the standalone cluster did not register a TaskManager within 90 s"
            time.sleep(0.5)
        yield f"localhost:{rest}"
    finally:
        subprocess.run([str(home / "bin" / "stop-cluster.sh")], env=env, capture_output=True, timeout=120)
