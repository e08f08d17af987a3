"""The streaming job on a remote Flink cluster: submitted with ``flink run`` (:func:`submit_remote`; on
Kubernetes the same entry point, :data:`JOB_SCRIPT` with :func:`job_args`), watched and stopped over
Flink's REST API (:class:`RemoteStreamHandle`) while the committer runs here."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from featurestore.engines.flink import rest as flink_rest
from featurestore.engines.flink.handle import STOP_TIMEOUT_S, TASKS_STARTING, StreamHandle, StreamResult
from featurestore.engines.flink.offsets import end_offsets, start_positions
from featurestore.engines.flink.stream import (DEFAULT_BOUNDED_CHECKPOINT_MS, DEFAULT_CHECKPOINT_MS, _prepare,
                                               checkpoint_root, job_name, plan, refuse_eviction, stream_views)
from featurestore.errors import InfraError, JobError
from featurestore.failures import job_error

log = logging.getLogger("featurestore.streaming")

_WORKER_ENV = ("WORKER_ID", "PIPELINE_OPTIONS", "SEMI_PERSISTENT_DIRECTORY", "LOGGING_API_SERVICE_DESCRIPTOR",
               "CONTROL_API_SERVICE_DESCRIPTOR")


def child_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """This process's environment for a child Python that runs PyFlink itself: once a local job has run
    here, PyFlink's loopback worker leaves ``PYFLINK_GATEWAY_*`` set, and a child inheriting them would
    refuse to start its own gateway (or talk to ours)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYFLINK_") and k not in _WORKER_ENV}
    env.update(extra or {})
    return env


def flink_cli() -> Path:
    import pyflink

    return Path(pyflink.__file__).parent / "bin" / "flink"


class RemoteStreamHandle(StreamHandle):
    """The streaming job on a remote cluster (submitted with ``flink run``), watched and stopped through the
    cluster's REST API; the committer thread runs here (the staging directories must be visible here)."""

    def __init__(self, store, names, name, job_id, address, committer, ckpt_root, bounded, ends,
                 restored_from, commit_interval_s, progress_key, start_offsets=None, checkpoint_interval_s=None):
        self.address = address
        self._job_id = job_id
        super().__init__(store, names, name, None, committer, ckpt_root, bounded, ends, restored_from,
                         commit_interval_s, progress_key, start_offsets=start_offsets,
                         checkpoint_interval_s=checkpoint_interval_s, rest_address=address)

    @property
    def job_id(self) -> str:
        return self._job_id

    def _rest(self, method: str, path: str, body: Optional[dict] = None) -> dict:
        return flink_rest.call(self.address, method, path, body)

    def status(self) -> str:
        return str(self._rest("GET", f"/jobs/{self._job_id}")["state"])

    def wait_online_flushed(self, since_ms: int, timeout: Optional[float] = None, poll_s: float = 0.3,
                            on_poll=None, read_all: bool = False) -> None:
        """As the local handle's, waiting for as many subtasks as the cluster runs the job at (its vertices'
        largest parallelism: ``flink run ... --parallelism N``, or a restored snapshot's), not only as many
        as this handle was told (else a bounded run could stop before a subtask wrote its last batches)."""
        try:
            vertices = self._rest("GET", f"/jobs/{self._job_id}").get("vertices") or []
            self.parallelism = max([self.parallelism] + [int(v["parallelism"]) for v in vertices])
        except Exception as exc:  # keep the handle's own parallelism
            log.warning("could not read the parallelism of job %s on %s: %s", self._job_id, self.address, exc)
        super().wait_online_flushed(since_ms, timeout, poll_s, on_poll, read_all)

    def _raise_job_failure(self, status: str) -> None:
        what = f"stream job {self.job_name} on {self.address} {status.lower()}"
        try:
            trace = flink_rest.last_exception(self.address, self._job_id)
        except Exception:
            trace = ""
        if not trace.strip():
            raise JobError(f"{what} (the cluster reported no exception)")
        raise job_error(self.store.config.state_path, what, trace)

    def stop(self, drain: bool = False) -> StreamResult:
        savepoint = None
        status = self.status()
        if status == "FAILED":
            self._raise_job_failure(status)
        if status not in ("FINISHED", "CANCELED"):
            savepoint = self._stop_with_savepoint_rest(drain, (self.checkpoint_root / "savepoints").resolve().as_uri())
            deadline = time.monotonic() + STOP_TIMEOUT_S
            while self.status() not in ("FINISHED", "CANCELED", "FAILED"):
                if time.monotonic() > deadline:
                    raise InfraError(f"stream job {self.job_name} did not end within {STOP_TIMEOUT_S} s of its savepoint")
                time.sleep(0.5)
        return self._finish(savepoint)

    def _stop_with_savepoint_rest(self, drain: bool, target: str) -> str:
        """Stop-with-savepoint over REST; like the local stop, retried while some tasks are still starting."""
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while True:
            trigger = self._rest("POST", f"/jobs/{self._job_id}/stop", {"targetDirectory": target, "drain": drain})
            while True:
                r = self._rest("GET", f"/jobs/{self._job_id}/savepoints/{trigger['request-id']}")
                if r.get("status", {}).get("id") == "COMPLETED":
                    break
                if time.monotonic() > deadline:
                    raise InfraError(f"stop-with-savepoint of {self.job_name}: no answer within {STOP_TIMEOUT_S} s")
                time.sleep(0.5)
            op = r.get("operation") or {}
            if "failure-cause" not in op:
                return op.get("location")
            cause = str(op["failure-cause"].get("stack-trace", ""))
            if TASKS_STARTING not in cause or time.monotonic() > deadline:
                raise job_error(self.store.config.state_path, f"stop-with-savepoint of {self.job_name} failed", cause)
            time.sleep(0.5)

    def cancel(self) -> None:
        self._stop.set()
        self._rest("PATCH", f"/jobs/{self._job_id}?mode=cancel")
        if self._thread is not None:
            self._thread.join()


JOB_SCRIPT = Path(__file__).resolve().parents[3] / "jobs" / "stream.py"  # the job's entry point on any cluster


def job_args(repo: os.PathLike, checkpoint_dir: os.PathLike, *, bounded: bool = False, partial_history: bool = False,
             checkpoint_interval_ms: Optional[int] = None) -> List[str]:
    """The arguments of :data:`JOB_SCRIPT` that submit the streaming job to the cluster running it (the
    run-specific ``--run-id``/``--no-restore``/``--views`` aside): what ``featurestore stream
    --flink-address`` hands to ``flink run``, and what ``infra/k8s/flink-deployment.yaml`` gives the
    application cluster (``tests/test_k8s_manifests.py`` checks the two agree)."""
    args = ["--repo", str(repo), "--submit-only", "--checkpoint-dir", str(checkpoint_dir)]
    if bounded:
        args.append("--bounded")
    if partial_history:
        args.append("--partial-history")
    if checkpoint_interval_ms:
        args += ["--checkpoint-interval-ms", str(int(checkpoint_interval_ms))]
    return args


def submit_remote(store, flink_address: str, views: Optional[Sequence[str]] = None, *, bounded: bool = False,
                  checkpoint_dir: Optional[os.PathLike] = None, checkpoint_interval_ms: Optional[int] = None,
                  restore: bool = True, commit: bool = True, commit_interval_s: float = 2.0,
                  extra_args: Sequence[str] = (), partial_history: bool = False, parallelism: Optional[int] = None,
                  flush_ms: Optional[int] = None, slack_ms: int = 0) -> RemoteStreamHandle:
    """Submit the same job to a remote cluster (``flink run -m <address> -d -py jobs/stream.py
    --submit-only``) and return a handle that watches it over REST (``run_until_done``, ``stop``) and
    runs the committer here. ``parallelism``, ``flush_ms`` and ``slack_ms`` are the job's options as in
    :func:`featurestore.engines.flink.stream.start` (passed as its ``--parallelism``/``--flush-ms``/``--slack-ms``). The cluster must reach Kafka and Redis, and the staging and checkpoint
    directories must be the same paths on the cluster and here (one machine, or a shared mount)."""
    names = stream_views(store, views)
    refuse_eviction(store, names)
    name = job_name(store, names)
    plan(store, names)  # compile errors surface here, not in the cluster's client
    root = checkpoint_root(store, name, checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    topics = sorted({store.repo.views[n].source.stream.topic for n in names})
    ends = end_offsets(store.config.kafka_bootstrap, topics)
    # a hand-off is seeded by the submitting script's own start() (it runs here, before the job exists)
    restored, committer, _handoff = _prepare(store, names, name, root, ends, restore, partial_history, commit)
    start_offsets = start_positions(store.config.kafka_bootstrap, name, ends, restored)
    run_id = uuid.uuid4().hex[:12]
    cmd = [str(flink_cli()), "run", "-m", flink_address, "-d", "-pyclientexec", sys.executable, "-pyexec", sys.executable,
           "-py", str(JOB_SCRIPT), *job_args(store.repo_path, root.parent, bounded=bounded,
                                             partial_history=partial_history,
                                             checkpoint_interval_ms=checkpoint_interval_ms),
           "--run-id", run_id]
    if restored is None:  # also when a rebuild needs the topic from its first record (see _prepare)
        cmd.append("--no-restore")
    cmd += ["--views", ",".join(names)]
    for flag, value in (("--parallelism", parallelism), ("--flush-ms", flush_ms), ("--slack-ms", slack_ms or None)):
        if value is not None:
            cmd += [flag, str(int(value))]
    cmd += list(extra_args)
    out = subprocess.run(cmd, capture_output=True, text=True, env=child_env())
    text = out.stdout + out.stderr
    job_id = None
    for line in text.splitlines():
        if line.startswith("{") and '"job_id"' in line:
            try:
                job_id = json.loads(line)["job_id"]
            except ValueError:
                pass
    if out.returncode != 0 or not job_id:
        raise job_error(store.config.state_path, f"flink run against {flink_address} failed (exit {out.returncode})",
                        text)
    from featurestore.engines.flink import job as flink_job

    return RemoteStreamHandle(store, names, name, job_id, flink_address, committer, root, bounded, ends,
                              str(restored) if restored else None, commit_interval_s,
                              flink_job.progress_key(store.config.project, run_id), start_offsets,
                              (checkpoint_interval_ms or (DEFAULT_BOUNDED_CHECKPOINT_MS if bounded
                                                          else DEFAULT_CHECKPOINT_MS)) / 1000)


__all__ = ["submit_remote", "RemoteStreamHandle", "child_env", "flink_cli", "job_args", "JOB_SCRIPT"]
