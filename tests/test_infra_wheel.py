"""The dev services from an installed wheel, no clone (issue 12.2): `featurestore infra up|status|down` of a
non-editable install of this checkout's wheel starts our own Redis and a single-node Kafka on the ports of
FEATURESTORE_REDIS_PORT / FEATURESTORE_KAFKA_PORT (spare ones here, so the project's services are not
touched), with their state under XDG_STATE_HOME; the starter then runs against them; a missing
redis-server or Java is one line saying how to get it.

The wheel is installed without dependencies into a venv that sees this environment's packages (a .pth
file), so nothing is downloaded; the package imported is the wheel's, never this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.services import free_port

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
REPO_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # the tracked (and new, unignored) files: the checkout gets no build/ folder
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO_DIR, check=True,
                           capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        f = REPO_DIR / name.decode()
        if f.is_file():
            (src / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            (src / name.decode()).write_bytes(f.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp / "dist"), str(src)], check=True, capture_output=True, timeout=600)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # this environment's packages (not its .pth files: the editable install of the checkout stays out)
    Path(purelib, "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    (wheel,) = (tmp / "dist").glob("featurestore-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, capture_output=True, timeout=600)
    where = subprocess.run([str(py), "-c", "import featurestore; print(featurestore.__file__)"], cwd=tmp,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(purelib), where  # the wheel's package, not the checkout's
    return venv


def _fs(venv: Path, args, env: dict, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([str(venv / "bin" / "featurestore"), *args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=600)
    if check:
        assert out.returncode == 0, f"{args}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def test_infra_up_status_down_from_a_wheel(wheel_venv, tmp_path):
    redis_port, kafka_port = free_port(), free_port()
    controller = free_port()
    while controller in (kafka_port, kafka_port + 1, redis_port):
        controller = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    env.update(FEATURESTORE_REDIS_PORT=str(redis_port), FEATURESTORE_KAFKA_PORT=str(kafka_port),
               FEATURESTORE_KAFKA_CONTROLLER_PORT=str(controller), XDG_STATE_HOME=str(tmp_path / "state"),
               FEATURESTORE_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
               FEATURESTORE_KAFKA_BOOTSTRAP=f"127.0.0.1:{kafka_port}",
               FEATURESTORE_KAFKA_START_TIMEOUT_S="240")  # generous on a loaded machine
    try:
        up = _fs(wheel_venv, ["infra", "up"], env, tmp_path)
        assert f"redis: started at redis://127.0.0.1:{redis_port}/0" in up.stdout
        assert f"kafka: started at 127.0.0.1:{kafka_port}" in up.stdout
        assert (tmp_path / "state" / "featurestore" / f"redis-{redis_port}" / "redis.conf").is_file()
        assert f"CONTROLLER://127.0.0.1:{controller}\n" in (
            tmp_path / "state" / "featurestore" / f"kafka-{kafka_port}" / "server.properties").read_text()

        import redis
        from confluent_kafka.admin import AdminClient

        assert redis.Redis(port=redis_port).ping()
        assert AdminClient({"bootstrap.servers": f"127.0.0.1:{kafka_port}"}).list_topics(timeout=30).brokers

        again = _fs(wheel_venv, ["infra", "up"], env, tmp_path)
        assert "redis: already running" in again.stdout and "kafka: already running" in again.stdout
        status = _fs(wheel_venv, ["infra", "status"], env, tmp_path)
        assert status.stdout.count("(featurestore infra, pid") == 2, status.stdout

        # the starter, from the wheel's CLI, against these services
        repo = tmp_path / "starter"
        _fs(wheel_venv, ["init", str(repo)], env, tmp_path)
        _fs(wheel_venv, ["generate", "-n", "2000", "--users", "30", "--merchants", "5", "--days", "1"], env, repo)
        for args in (["apply"], ["backfill"], ["materialize"]):
            _fs(wheel_venv, args, env, repo)
        assert redis.Redis(port=redis_port).dbsize() > 0
    finally:
        down = _fs(wheel_venv, ["infra", "down"], env, tmp_path, check=False)
    assert down.returncode == 0 and "kafka: stopped" in down.stdout and "redis: stopped" in down.stdout, down
    after = _fs(wheel_venv, ["infra", "status"], env, tmp_path, check=False)
    assert after.returncode == 1 and "featurestore infra up starts one" in after.stdout


def test_a_missing_redis_server_or_java_is_one_line(wheel_venv, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    env.update(PATH=str(wheel_venv / "bin"), XDG_STATE_HOME=str(tmp_path / "state"),
               FEATURESTORE_REDIS_PORT=str(free_port()), FEATURESTORE_KAFKA_PORT=str(free_port()))
    out = _fs(wheel_venv, ["infra", "up", "redis"], env, tmp_path, check=False)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.strip() == ("error: redis-server not found on PATH: install Redis (apt-get install -y "
                                  "redis-server, brew install redis) or point online_store.redis_url in "
                                  "featurestore.yaml at a Redis of your own")
    out = _fs(wheel_venv, ["infra", "up", "kafka"], env, tmp_path, check=False)
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: Java not found on PATH: Kafka runs on Java 17+")
    assert len(out.stderr.strip().splitlines()) == 1
    out = _fs(wheel_venv, ["infra", "up", "zookeeper"], env, tmp_path, check=False)
    assert out.returncode == 1 and "no service named 'zookeeper' (known: redis, kafka)" in out.stderr


def test_the_wheel_ships_the_streaming_jobs_java_function(wheel_venv, tmp_path):
    """A JRE is enough from a wheel: the job's Java function is in it, found with no javac on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    env.update(PATH=str(wheel_venv / "bin"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    out = subprocess.run([str(wheel_venv / "bin" / "python"), "-c",
                          "import featurestore, sys; from featurestore.engines.flink.udf import udf_jar; "
                          "print(udf_jar()); print(featurestore.__file__)"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    jar, package = out.stdout.split()
    assert jar.endswith("featurestore/engines/flink/java/featurestore-udf.jar") and jar.startswith(str(Path(package).parent))


def test_infra_up_starts_redis_where_the_repo_expects_it(wheel_venv, tmp_path):
    """No FEATURESTORE_REDIS_PORT: the port of the repo's own (local) redis_url, from a folder below the repo."""
    port = free_port()
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "featurestore.yaml").write_text(f"project: p\nonline_store:\n  redis_url: redis://localhost:{port}/0\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    env.update(XDG_STATE_HOME=str(tmp_path / "state"))
    try:
        up = _fs(wheel_venv, ["infra", "up", "redis"], env, repo / "sub")
        assert f"redis: started at redis://127.0.0.1:{port}/0" in up.stdout and "export" not in up.stderr, up
        status = _fs(wheel_venv, ["infra", "status"], env, repo / "sub", check=False)
        line = next(x for x in status.stdout.splitlines() if x.startswith("redis"))
        assert line.startswith(f"redis       ok  localhost:{port} (featurestore infra, pid"), status.stdout
    finally:
        down = _fs(wheel_venv, ["infra", "down", "redis"], env, repo / "sub", check=False)
    assert down.returncode == 0 and "redis: stopped" in down.stdout, down


@pytest.mark.flink
def test_a_flink_job_runs_from_the_wheel_with_jars_from_infra_jars(wheel_venv, tmp_path):
    """`stream` / `backfill --engine flink` need no clone: `featurestore infra jars` of the wheel fetches the pinned
    connector jars into a fresh user cache (from a file:// mirror of them here, so no network), and a Flink job
    run by the wheel's CLI finds them there; its rows equal the DuckDB backfill's."""
    from featurestore.devinfra import jars
    from tests.randomrepo import assert_flink_backfill_equals_duckdb, random_events, write_events, write_repo

    mirror = tmp_path / "mirror"
    for a in jars.artifacts("flink"):
        cached = jars.jars_dir("flink") / a.file_name
        if not cached.is_file():
            pytest.skip("the pinned Flink jars are not in this machine's user cache (bash infra/up.sh fetches them)")
        (mirror / a.repo_path).parent.mkdir(parents=True)
        (mirror / a.repo_path).symlink_to(cached)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATURESTORE_")}
    env.update(PATH=f"{wheel_venv / 'bin'}:{env.get('PATH', '')}", FEATURESTORE_CACHE_DIR=str(tmp_path / "cache"),
               FEATURESTORE_MAVEN_URL=mirror.as_uri(), FEATURESTORE_M2_REPO=str(tmp_path / "m2"))
    fetched = _fs(wheel_venv, ["infra", "jars"], env, tmp_path)
    assert f"flink connector jars: {len(jars.artifacts('flink'))} in {tmp_path / 'cache' / 'jars'}" in fetched.stdout
    root = write_repo(tmp_path / "r")
    write_events(root, random_events(4))
    _fs(wheel_venv, ["backfill", "--engine", "flink", "--view", "qty_stats"], env, root)
    assert_flink_backfill_equals_duckdb(root)
