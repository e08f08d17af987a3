"""Failures print one line: the root cause, and where the full trace was written (never a Py4J/Java
traceback of hundreds of lines on the terminal).

* root_cause on Java/Py4J/PyFlink trace texts (thread mode, process mode, suppressed blocks, wrappers);
* `featurestore backfill --engine flink` over a Parquet file with a corrupt data page (a real Java failure
  inside the Flink job);
* `featurestore stream --bounded` whose Redis goes away mid-run with restart strategy `none` (a real job
  failure from a Python function inside Flink);
* any unexpected exception of a command: one line, traceback in the same log folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from featurestore import failures
from tests.randomrepo import random_events, write_events, write_repo
from tests.services import RedisServer

REPO_DIR = Path(__file__).resolve().parents[1]
ONE_LINE = re.compile(r"^error: (?P<cause>.+) \(full trace: (?P<path>/\S+\.log)\)$")

THREAD_MODE = """org.apache.flink.runtime.client.JobExecutionException: Job execution failed.
\tat org.apache.flink.runtime.jobmaster.JobResult.toJobExecutionResult(JobResult.java:144)
Caused by: org.apache.flink.runtime.JobException: Recovery is suppressed by NoRestartBackoffTimeStrategy
\tat org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler.handleFailure(ExecutionFailureHandler.java:219)
\tSuppressed: java.lang.IllegalStateException: a suppressed close failure
\t\tat org.apache.flink.x.close(X.java:1)
\tCaused by: java.lang.Exception: suppressed cause
Caused by: java.lang.RuntimeException: Failed to close remote bundle
\tat org.apache.flink.streaming.api.runners.python.beam.BeamPythonFunctionRunner.finishBundle(X.java:1)
Caused by: pemja.core.PythonException: <class 'redis.exceptions.ConnectionError'>: Error 111 connecting to 127.0.0.1:6404. Connection refused.
\tat /venv/lib/python3.11/site-packages/redis/connection.py.connect(connection.py:363)
\t... 12 more
"""
PROCESS_MODE = """java.lang.RuntimeException: Error received from SDK harness for instruction 4: Traceback (most recent call last):
  File "/venv/lib/python3.11/site-packages/apache_beam/runners/worker/sdk_worker.py", line 295, in _execute
    response = task()
ValueError: column 'amount' is not a number

\tat org.apache.beam.runners.fnexecution.control.FnApiControlClient$ResponseStreamObserver.onNext(X.java:180)
"""
PY4J = """An error occurred while calling o447.execute.
: java.lang.IllegalStateException: MiniCluster is not yet running or has already been shut down.
\tat org.apache.flink.util.Preconditions.checkState(Preconditions.java:193)
"""


@pytest.mark.parametrize("text,cause", [
    (THREAD_MODE, "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:6404. Connection refused."),
    (PROCESS_MODE, "ValueError: column 'amount' is not a number"),
    (PY4J, "java.lang.IllegalStateException: MiniCluster is not yet running or has already been shut down."),
    ("Caused by: java.lang.RuntimeException: java.io.IOException: disk full\n\tat a\n"
     "Caused by: java.io.IOException: disk full\n\tat b", "java.io.IOException: disk full"),
    ("Caused by: java.io.IOException: can not read class PageHeader: MaxMessageSize reached\n\tat a\n"
     "Caused by: org.apache.thrift.TTransportException: MaxMessageSize reached\n\tat b",
     "java.io.IOException: can not read class PageHeader: MaxMessageSize reached"),
])
def test_root_cause_is_the_innermost_cause_in_one_line(text, cause):
    assert failures.root_cause(text) == cause


def test_job_error_writes_the_full_trace_and_names_it(tmp_path):
    err = failures.job_error(tmp_path / ".featurestore", "stream job x failed", THREAD_MODE)
    assert str(err).startswith("stream job x failed: redis.exceptions.ConnectionError: Error 111")
    assert err.log_path.parent == tmp_path / ".featurestore" / "logs" and str(err.log_path) in str(err)
    assert err.log_path.read_text().count("Caused by:") == THREAD_MODE.count("Caused by:")
    assert "\n" not in str(err)


def _cli(args, cwd: Path, timeout: float = 300, env=None) -> subprocess.CompletedProcess:
    from featurestore.engines.flink.remote import child_env

    return subprocess.run([sys.executable, "-m", "featurestore.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=child_env(env or {}))


def _assert_one_line(proc: subprocess.CompletedProcess, cause: str, repo: Path) -> Path:
    """Exit 1, exactly one error line (the last), no trace on the terminal (warnings logged while the job
    ran, e.g. Redis unreachable, may precede it)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], "\n".join(lines[:40])
    assert len(lines) <= 3 and not any(t in proc.stderr for t in ("Traceback", "\tat ", "Caused by")), proc.stderr[-3000:]
    m = ONE_LINE.match(lines[-1])
    assert m, lines[-1]
    assert cause in m["cause"], lines[-1]
    path = Path(m["path"])
    assert path.parent == repo.resolve() / ".featurestore" / "logs" and path.is_file()
    return path


def _corrupt_a_data_page(path: Path) -> None:
    """Flip bytes inside the first data page of column 2: the footer (schema) stays readable."""
    offset = pq.ParquetFile(path).metadata.row_group(0).column(2).data_page_offset
    data = bytearray(path.read_bytes())
    for i in range(offset + 20, offset + 60):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.flink
@pytest.mark.slow
def test_a_failing_flink_backfill_prints_one_line_and_logs_the_trace(tmp_path):
    root = write_repo(tmp_path / "repo")
    (root / "featurestore.yaml").write_text("project: broken\ndefinitions: definitions\n")
    write_events(root, random_events(3))
    _corrupt_a_data_page(root / "data" / "events" / "part-1.parquet")
    proc = _cli(["backfill", "--engine", "flink"], cwd=root)
    log = _assert_one_line(proc, "MaxMessageSize reached", root)
    assert "backfill --engine flink failed: java.io.IOException" in proc.stderr
    text = log.read_text()
    assert text.count("Caused by:") >= 3 and "\tat org.apache.flink" in text  # the whole Java trace is there


@pytest.mark.flink
@pytest.mark.kafka
@pytest.mark.redis
@pytest.mark.slow
def test_a_failing_stream_job_prints_one_line_and_logs_the_trace(tmp_path, kafka_admin):
    from tests.test_stream import SEED, arrival, create_topic, make_repo, produce, stream_events

    redis = RedisServer(tmp_path / "redis").start()
    topic = f"fs_fail_{uuid.uuid4().hex[:10]}"
    project = f"t_fail_{uuid.uuid4().hex[:8]}"
    events = stream_events()
    root = make_repo(tmp_path / "repo", topic, project, events)
    with open(root / "featurestore.yaml", "a") as f:
        f.write(f"online_store:\n  redis_url: {redis.url}\nflink:\n  restart_strategy:\n    type: none\n")
    create_topic(kafka_admin, topic)
    produce(topic, arrival(events, SEED)[:100])
    env = {"FEATURESTORE_REDIS_URL": ""}  # the file's Redis (the shared test Redis is in the environment)
    proc = subprocess.Popen([sys.executable, "-m", "featurestore.cli", "stream", "--bounded", "--status-every", "0"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env, **{k: "" for k in os.environ if k.startswith("PYFLINK_")}})
    try:
        import redis as redis_py

        client = redis_py.Redis.from_url(redis.url)
        deadline = time.monotonic() + 240
        while not list(client.scan_iter(match=f"fs:{project}:_stream:_progress:*")):  # the job writes to Redis
            assert proc.poll() is None, proc.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the stream job never wrote to Redis"
            time.sleep(0.3)
        client.close()
        produce(topic, arrival(events, SEED)[100:])  # more to write...
        redis.stop()  # ...to a Redis that is gone: the Redis writer fails, and restart strategy none fails the job
        out, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        redis.stop()
        kafka_admin.delete_topics([topic])
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    log = _assert_one_line(done, "redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1", root)
    assert re.search(r"error: stream job featurestore-t_fail_\w+-\w+ failed: ", err), err
    text = log.read_text()
    assert "Recovery is suppressed by NoRestartBackoffTimeStrategy" in text and "\tat " in text


def test_an_unexpected_error_of_any_command_is_one_line_with_the_trace_in_a_file(tmp_path, monkeypatch):
    """A bug (here injected: plan() raises a KeyError deep inside) is one line naming it, the traceback in
    the repo's .featurestore/logs/."""
    from typer.testing import CliRunner

    from featurestore import cli
    from featurestore.store import FeatureStore

    root = write_repo(tmp_path / "repo")
    (root / "featurestore.yaml").write_text("project: odd\ndefinitions: definitions\n")

    def broken(self):
        return {}["no such key"]

    monkeypatch.setattr(FeatureStore, "plan", broken)
    result = CliRunner().invoke(cli.app, ["plan", "--repo", str(root)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and ONE_LINE.match(lines[0]), result.output
    assert ONE_LINE.match(lines[0])["cause"] == "KeyError: 'no such key'"
    log = Path(ONE_LINE.match(lines[0])["path"])
    assert log.parent == root.resolve() / ".featurestore" / "logs"
    assert "Traceback (most recent call last)" in log.read_text() and "in broken" in log.read_text()


def test_a_registry_that_is_not_json_text_is_one_clear_line(tmp_path):
    from featurestore.errors import RegistryError
    from featurestore.registry import read_registry

    path = tmp_path / "registry.json"
    for content, why in ((b"\xff\xfe not json", "codec can't decode"), (b"[1, 2]", "a JSON list, not an object")):
        path.write_bytes(content)
        with pytest.raises(RegistryError, match=f"registry {path} is unreadable: .*{why}"):
            read_registry(path, "p")
