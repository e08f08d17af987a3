"""A running streaming job as the process that started it sees it: :class:`StreamHandle` (the local
mini-cluster's job and the committer thread beside it: status, restarts, waiting until caught up and
flushed online, stop with a savepoint, the live status snapshot) and the :class:`StreamResult` of a run.
The remote cluster's handle (:mod:`.remote`) is a subclass that speaks Flink's REST API instead."""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

from featurestore.engines.flink import rest as flink_rest
from featurestore.engines.flink import offsets
from featurestore.engines.flink.status import STATUS_KAFKA_TIMEOUT_S, StreamStatus, _StatusTicker, _unknown_topics, \
    topic_statuses
from featurestore.errors import FeatureStoreError, InfraError, JobError
from featurestore.failures import job_error

log = logging.getLogger("featurestore.streaming")

STOP_TIMEOUT_S = 300
TASKS_STARTING = "Not all required tasks are currently running"  # Flink's reason for refusing a savepoint


@dataclass
class StreamResult:
    job_name: str
    bounded: bool
    seconds: float
    restored_from: Optional[str]
    savepoint: Optional[str]
    metrics: Dict[str, Dict[str, int]]
    records: int  # Kafka records this run had to read as of its start: end offsets minus where it started
    online: Dict[str, dict] = field(default_factory=dict)  # the online path's last progress reports (stats)

    @property
    def records_per_second(self) -> float:
        return self.records / self.seconds if self.seconds > 0 else float("inf")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]



def _flush_after(report: dict, read_all: bool) -> int:
    """How long after a time ``t`` a checkpoint finds every online row that reached an operator instance before
    ``t`` sent on to Python (``OnlineBatches.prepareSnapshotPreBarrier``): its mini-batch interval, or, when no
    row arrives after ``t`` (``read_all``), its idle time if that is shorter."""
    batch = report.get("batch_ms", report.get("pending_ms", 0))
    if read_all and report.get("idle_ms"):
        return min(report["idle_ms"], batch)
    return batch


def _latest_by_subtask(reports: Dict[str, dict]) -> Dict[int, dict]:
    """Per subtask index, the latest report of the online operator's instances: of the latest attempt (an
    instance of a failed attempt stops reporting; the instance of the next attempt reports after it), then the
    latest made."""
    out: Dict[int, dict] = {}
    for d in reports.values():
        s = d.get("subtask", -1)
        if s not in out or (d.get("attempt", 0), d["at"]) > (out[s].get("attempt", 0), out[s]["at"]):
            out[s] = d
    return out


def _ever_busy(reports: Dict[str, dict]) -> set:
    """The subtasks an instance of which, in any attempt of this run, received a batch or a timer. A restored
    instance of such a subtask reports ``idle`` when it opens, before its restored timers run: not proof that
    it has nothing to write."""
    return {d.get("subtask", -1) for d in reports.values() if not d.get("idle")}


class StreamHandle:
    """A running streaming job (local mini-cluster) and its committer thread."""

    def __init__(self, store, names, name, job_client, committer, ckpt_root, bounded, ends, restored_from,
                 commit_interval_s, progress_key="", parallelism=1, start_offsets=None, checkpoint_interval_s=None,
                 rest_address: Optional[str] = None):
        self.store = store
        self.rest_address = rest_address  # Flink's REST endpoint serving this job (web UI, metrics), if known
        self.names = names
        self.job_name = name
        self.job_client = job_client
        self.committer = committer
        self.checkpoint_root = ckpt_root
        self.bounded = bounded
        self.ends = ends
        self.restored_from = restored_from
        self.progress_key = progress_key
        self.parallelism = max(1, int(parallelism))
        self.topics = sorted({store.repo.views[n].source.stream.topic for n in names})
        self.start_offsets = dict(start_offsets) if start_offsets is not None else \
            {tp: low for tp, (low, _high) in ends.items()}
        self.checkpoint_interval_s = checkpoint_interval_s
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._error: Optional[BaseException] = None
        self._ended: Optional[str] = None  # local job stopped or cancelled through this handle
        self._thread = None
        if committer is not None:
            self._thread = threading.Thread(target=self._commit_loop, args=(commit_interval_s,), daemon=True,
                                            name=f"committer-{name}")
            self._thread.start()

    @property
    def job_id(self) -> str:
        return str(self.job_client.get_job_id())

    def status(self) -> str:
        """Flink's job status name (RUNNING, FINISHED, FAILED, ...); once stopped here, how it ended (the
        mini-cluster that ran it is gone)."""
        if self._ended is not None:
            return self._ended
        try:
            status = self.job_client.get_job_status().result()  # a pyflink JobStatus enum: str() is "JobStatus.X"
        except Exception:
            # the local mini-cluster shuts down once its job ended (e.g. FAILED): ask the job's result instead
            result = self.job_client.get_job_execution_result()
            if not result.done():
                raise
            return "FAILED" if result.exception() is not None else "FINISHED"
        return getattr(status, "name", str(status))

    def restarts(self) -> Optional[int]:
        """How many times Flink restarted the job after a failure since it started (its ``numRestarts``
        metric, region failovers included: the job's status stays RUNNING through those); None when
        there is no REST endpoint to ask."""
        if not self.rest_address or self._ended is not None:
            return None
        return flink_rest.restarts(self.rest_address, self.job_id)

    def _commit_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.committer.commit()
            except Exception as exc:  # keep the job running; surfaced by stop()/wait()
                log.error("offline commit failed: %s", exc)
                self._error = exc

    def caught_up(self) -> bool:
        return offsets.caught_up(self.store.config.kafka_bootstrap, self.job_name, self.ends)

    def wait_caught_up(self, timeout: Optional[float] = None, poll_s: float = 0.5,
                       on_poll: Optional[Callable[[], None]] = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.caught_up():
            status = self.status()
            if status in ("FAILED", "CANCELED", "FINISHED"):
                self._raise_job_failure(status)
            if deadline is not None and time.monotonic() > deadline:
                raise InfraError(f"stream job {self.job_name} did not catch up with Kafka within {timeout} s")
            if on_poll is not None:
                on_poll()
            time.sleep(poll_s)

    def wait_online_flushed(self, since_ms: int, timeout: Optional[float] = None, poll_s: float = 0.3,
                            on_poll: Optional[Callable[[], None]] = None, read_all: bool = False) -> None:
        """Wait until every online row that reached the job before ``since_ms`` (epoch ms) is written to Redis.

        ``read_all``: the job had read every record it will read before ``since_ms`` (a bounded run after
        :meth:`wait_caught_up`): the mini-batch operator then sends everything once no row arrived for its idle
        time, so the checkpoint is triggered after ``since_ms`` plus that (0.5 s), not plus the mini-batch
        interval (15 s in a large catch-up).

        With Flink's REST endpoint (``rest_address``: always locally, and on a cluster): once ``since_ms`` plus
        the mini-batch interval has passed, a checkpoint is triggered; its barrier finds those rows due in the
        mini-batch operator (their batch's time is up, whatever arrived since), which sends them first
        (OnlineBatches.prepareSnapshotPreBarrier), so when it completes the Python operator has applied them. Then every operator instance must report once more: a report follows the
        writes of everything applied before it. No time margin: a late timer or a backlog before the Python
        operator only makes the wait longer. An instance whose latest report is still the one it made when it opened
        (``idle``) had received no row when the checkpoint's barrier passed it (more subtasks than keys): it has
        nothing to write, unless an instance of its subtask received something before in this run (a restored
        one: its restored timers may not have run yet). If the job restarts during the wait (an instance of a
        later attempt reports), the wait starts again once a checkpoint covers the topics' ends as of then: rows
        replayed from Kafka are read again after ``since_ms``. Without REST, a report's ``pending_ms`` margin is
        all there is (online.BATCH_MARGIN_MS)."""
        from featurestore.stores.online_redis import for_store

        online_views = [n for n in self.names if self.store.repo.views[n].online]
        if not online_views:
            return
        if self.bounded and self.committer is not None:
            # (caught up: the committed files cover every row read; a live run's last checkpoint may not)
            self.committer.commit()
            totals = self.committer.metrics()
            if sum(m.get(f"events:{v}", 0) for m in totals.values() for v in online_views) == 0:
                return  # nothing reached the online path
        client = for_store(self.store).client
        deadline = None if timeout is None else time.monotonic() + timeout
        n = self.parallelism
        if not self.rest_address:
            def done(states: Dict[str, dict]) -> bool:
                now_ms = time.time() * 1000
                return sum(1 for d in _latest_by_subtask(states).values()
                           if (d["at"] - d.get("pending_ms", 0) >= since_ms and d["dirty"] == 0)
                           or (d.get("idle") and now_ms - d.get("pending_ms", 0) >= since_ms)) >= n
            self._wait_reports(client, done, timeout, deadline, poll_s, on_poll)
            return
        while not self._flush_pass(client, since_ms, timeout, deadline, poll_s, on_poll, read_all):
            # The job restarted during the wait: rows it had read may be replayed from Kafka (read again later
            # than since_ms, their mini-batches not due at the pass's checkpoint) and writes buffered by a
            # failed instance are redone by its restored timers. Wait again, from a time when the topics are
            # read up to their ends as of now.
            log.info("stream job %s restarted during the online flush wait: waiting again", self.job_name)
            since_ms = self._caught_up_again(timeout, deadline, poll_s, on_poll)

    def _flush_pass(self, client, since_ms: int, timeout: Optional[float], deadline: Optional[float], poll_s: float,
                    on_poll: Optional[Callable[[], None]], read_all: bool = False) -> bool:
        """One pass of the wait with a checkpoint (see wait_online_flushed); False if the job restarted (an
        instance of a later attempt reported) before every instance had reported as needed."""
        n = self.parallelism
        # every instance has reported once (each reports the job's mini-batch interval; at open, if nothing else)
        states = self._wait_reports(client, lambda st: len(_latest_by_subtask(st)) >= n, timeout, deadline,
                                    poll_s, on_poll)
        attempts = {s: d.get("attempt", 0) for s, d in _latest_by_subtask(states).items()}
        after = max(_flush_after(d, read_all) for d in states.values())
        self._checkpoint_after(since_ms + after, timeout, deadline, poll_s, on_poll)
        seen = {s: d["at"] for s, d in _latest_by_subtask(self._reports(client)).items()}

        def restarted(states: Dict[str, dict]) -> bool:
            return any(d.get("attempt", 0) != attempts.get(s) for s, d in _latest_by_subtask(states).items())

        def done(states: Dict[str, dict]) -> bool:
            # a report after the checkpoint with nothing unwritten, or still the opening report of a subtask
            # that never received anything in this run: it had received no row when its barrier passed
            # (OnlineState._report_busy)
            busy = _ever_busy(states)
            return restarted(states) or sum(
                1 for s, d in _latest_by_subtask(states).items()
                if (d["at"] > seen.get(s, -1) and d["dirty"] == 0) or (d.get("idle") and s not in busy)) >= n
        return not restarted(self._wait_reports(client, done, timeout, deadline, poll_s, on_poll))

    def _caught_up_again(self, timeout: Optional[float], deadline: Optional[float], poll_s: float,
                         on_poll: Optional[Callable[[], None]]) -> int:
        """After a restart: trigger checkpoints until one covers the topics' end offsets as they are now (every
        row replayed from Kafka has been read again; a completed checkpoint commits the offsets); the time then
        (epoch ms)."""
        bootstrap = self.store.config.kafka_bootstrap
        ends = offsets.end_offsets(bootstrap, self.topics)
        while not offsets.caught_up(bootstrap, self.job_name, ends):
            self._checkpoint_after(0, timeout, deadline, poll_s, on_poll)
            time.sleep(poll_s)  # the offsets are committed after the checkpoint completed
        return int(time.time() * 1000)

    def _reports(self, client) -> Dict[str, dict]:
        """The online operator instances' latest progress reports (``state:<instance>`` -> report)."""
        import redis

        try:
            raw = client.hgetall(self.progress_key)
        except redis.exceptions.ConnectionError:  # Redis restarting: the job's restart strategy rides it out
            raw = {}
        return {k.decode(): json.loads(v) for k, v in raw.items() if k.decode().startswith("state:")}

    def _wait_reports(self, client, done: Callable[[Dict[str, dict]], bool], timeout: Optional[float],
                      deadline: Optional[float], poll_s: float, on_poll: Optional[Callable[[], None]]) -> Dict[str, dict]:
        """Poll the progress reports until ``done(reports)`` (instances of a failed attempt stop reporting and
        are outnumbered by the new ones); raise if the job stopped or ``deadline`` passed."""
        while True:
            states = self._reports(client)
            if done(states):
                return states
            self._check_running(timeout, deadline, f"online writes still pending (progress {list(states.values())})")
            if on_poll is not None:
                on_poll()
            time.sleep(poll_s)

    def _check_running(self, timeout: Optional[float], deadline: Optional[float], what: str) -> None:
        status = self.status()
        if status in ("FAILED", "CANCELED", "FINISHED"):
            self._raise_job_failure(status)
        if deadline is not None and time.monotonic() > deadline:
            raise InfraError(f"stream job {self.job_name}: {what} after {timeout} s")

    def _checkpoint_after(self, at_ms: int, timeout: Optional[float], deadline: Optional[float], poll_s: float,
                          on_poll: Optional[Callable[[], None]]) -> None:
        """Trigger a checkpoint once the clock has passed ``at_ms`` (epoch ms) and wait until one completes
        (triggered again if it fails or is declined, e.g. while tasks are still starting)."""
        while time.time() * 1000 < at_ms:
            self._check_running(timeout, deadline, "waiting for the online mini-batches")
            if on_poll is not None:
                on_poll()
            time.sleep(min(poll_s, max(0.0, at_ms / 1000 - time.time())))
        path = f"/jobs/{self.job_id}/checkpoints"
        while True:
            trigger = None
            try:
                trigger = flink_rest.call(self.rest_address, "POST", path, {}).get("request-id")
            except Exception as exc:  # e.g. the job restarting: try again below
                log.debug("checkpoint trigger for %s declined: %s", self.job_name, exc)
            while trigger is not None:
                got = flink_rest.call(self.rest_address, "GET", f"{path}/{trigger}")
                if (got.get("status") or {}).get("id") == "COMPLETED":
                    # Flink 2.3 names a failure "failureCause" (the trigger's operation is done either way): only
                    # a checkpoint id is success
                    operation = got.get("operation") or {}
                    if operation.get("checkpointId") is not None:
                        return
                    log.debug("checkpoint of %s failed: %s", self.job_name,
                              str(operation.get("failureCause") or operation.get("failure-cause") or operation)[:300])
                    break
                self._check_running(timeout, deadline, "a checkpoint did not complete")
                if on_poll is not None:
                    on_poll()
                time.sleep(poll_s)
            self._check_running(timeout, deadline, "no checkpoint completed")
            if on_poll is not None:
                on_poll()
            time.sleep(poll_s)

    def _raise_job_failure(self, status: str) -> None:
        try:
            self.job_client.get_job_execution_result().result()
        except Exception as exc:
            raise job_error(self.store.config.state_path, f"stream job {self.job_name} {status.lower()}", exc) \
                from None
        raise JobError(f"stream job {self.job_name} stopped unexpectedly ({status})")

    def stop(self, drain: bool = False) -> StreamResult:
        """Stop with a savepoint, then commit the last files. Pending online flushes are in the savepoint
        (their timers fire as soon as the next run restores it). ``drain`` also advances event time to
        the end (nothing here depends on it)."""
        savepoint = None
        status = self.status()
        if status in ("FAILED",):
            self._raise_job_failure(status)
        if status not in ("FINISHED", "CANCELED"):
            savepoint = self._stop_with_savepoint(drain, (self.checkpoint_root / "savepoints").resolve().as_uri())
            try:
                self.job_client.get_job_execution_result().result()
            except Exception:  # a stopped job may report its end as an exception
                pass
        self._ended = "FINISHED" if status not in ("FINISHED", "CANCELED") else status
        return self._finish(savepoint)

    def _stop_with_savepoint(self, drain: bool, target: str) -> str:
        """Flink's stop-with-savepoint; retried while some tasks are still starting (a run stopped right
        after its start: Flink refuses to snapshot until every task runs, and the job goes on)."""
        from pyflink.java_gateway import get_gateway

        gw = get_gateway()
        fmt = gw.jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while True:
            fut = self.job_client._j_job_client.stopWithSavepoint(drain, target, fmt)
            try:
                return str(fut.get(STOP_TIMEOUT_S, gw.jvm.java.util.concurrent.TimeUnit.SECONDS))
            except Exception as exc:
                if TASKS_STARTING not in str(exc) or time.monotonic() > deadline:
                    raise job_error(self.store.config.state_path, f"stop-with-savepoint of {self.job_name} failed",
                                    exc) from None
            time.sleep(0.5)

    def cancel(self) -> None:
        """Cancel without a savepoint (the last checkpoint is retained); no final commit."""
        self._stop.set()
        self.job_client.cancel().result()
        self._ended = "CANCELED"
        if self._thread is not None:
            self._thread.join()

    def _finish(self, savepoint: Optional[str]) -> StreamResult:
        self._stop.set()
        metrics = {}
        if self._thread is not None:
            self._thread.join()
            self.committer.commit(final=True)
            metrics = self.committer.metrics()
        if self._error is not None:
            raise FeatureStoreError(f"offline commit failed: {self._error}")
        records = sum(max(0, high - self.start_offsets.get(tp, low)) for tp, (low, high) in self.ends.items())
        return StreamResult(self.job_name, self.bounded, time.perf_counter() - self.started, self.restored_from,
                            savepoint, metrics, records, self.online_progress())

    def _progress(self) -> Dict[str, dict]:
        from featurestore.stores.online_redis import for_store

        if not self.progress_key:
            return {}
        raw = for_store(self.store).client.hgetall(self.progress_key)
        out = {k.decode(): json.loads(v) for k, v in raw.items()}
        states = [d for k, d in out.items() if k.startswith("state:")]
        if states:  # the writes of every state instance (each writes its own entities), this run's attempts
            out["writer"] = {"written": sum(d.get("written", 0) for d in states),
                             "round_trips": sum(d.get("round_trips", 0) for d in states),
                             "write_s": round(sum(d.get("write_s", 0.0) for d in states), 3),
                             "at": max(d.get("at", 0) for d in states)}
        return out

    def online_progress(self) -> Dict[str, dict]:
        """The online path's latest reports: per state operator instance (``state:<instance>``: counts,
        seconds spent in Python, its writes) and ``writer``, their writes summed (``written``, ``at``: the
        latest report that reached Redis)."""
        try:
            return self._progress()
        except Exception:
            return {}

    def _metrics_now(self) -> Dict[str, Dict[str, int]]:
        """The committer's metrics; without a committer here, the hash the committing process publishes."""
        if self.committer is not None:
            return self.committer.metrics()
        from featurestore.engines.flink.stream import metrics_key
        from featurestore.stores.online_redis import for_store

        client = for_store(self.store).client
        sources = sorted({self.store.repo.views[n].source.name for n in self.names})
        return {s: {k.decode(): int(v) for k, v in client.hgetall(metrics_key(self.store.config.project, s)).items()}
                for s in sources}

    def snapshot(self, previous: Optional[StreamStatus] = None) -> StreamStatus:
        """The job's status now (``previous``: the last snapshot, for events/s). Never raises: what cannot
        be read (Kafka, Redis, the job's status) is ``None`` / ``UNKNOWN`` and named in ``problems``."""
        problems: List[str] = []
        try:
            status = self.status()
        except Exception as exc:
            status = "UNKNOWN"
            problems.append(f"job status: {_short(exc)}")
        at = time.monotonic()
        try:
            ends = offsets.end_offsets(self.store.config.kafka_bootstrap, self.topics, STATUS_KAFKA_TIMEOUT_S)
            committed = offsets.committed(self.store.config.kafka_bootstrap, self.job_name, list(ends), STATUS_KAFKA_TIMEOUT_S)
            topics = topic_statuses(ends, committed, self.start_offsets, self.topics, previous, at,
                                    self.checkpoint_interval_s)
        except Exception as exc:
            topics = _unknown_topics(self.topics, previous)
            problems.append(f"Kafka: {_short(exc)}")
        try:
            metrics = self._metrics_now()
        except Exception as exc:
            metrics = None
            problems.append(f"metrics: {_short(exc)}")
        try:
            written = self._progress().get("writer", {}).get("written", 0)
        except Exception as exc:
            written = None
            problems.append(f"online progress: {_short(exc)}")
        try:
            restarts = self.restarts()
        except Exception as exc:
            restarts = None
            problems.append(f"restarts: {_short(exc)}")
        return StreamStatus(self.job_name, status, time.perf_counter() - self.started, at, topics, metrics, written,
                            problems, restarts=restarts)

    def run_until_done(self, timeout: Optional[float] = None,
                       on_status: Optional[Callable[[StreamStatus], None]] = None,
                       status_every_s: float = 2.0) -> StreamResult:
        """Bounded: wait until caught up, then stop with a savepoint. Unbounded: block until interrupted
        (Ctrl-C), then stop the same way. ``on_status`` gets a fresh snapshot at once and then every
        ``status_every_s`` seconds while waiting, and the last one marked ``stopping`` on Ctrl-C.

        A second Ctrl-C during the stop abandons it (KeyboardInterrupt propagates): no new offline commit
        starts; a savepoint is restored only once Flink wrote its ``_metadata``, so the next run restores
        the newest complete checkpoint or savepoint, as after a crash (nothing lost or counted twice)."""
        ticker = _StatusTicker(self, on_status, status_every_s)
        if self.bounded:
            start = time.monotonic()
            self.wait_caught_up(timeout, on_poll=ticker)
            caught_up_ms = int(time.time() * 1000)
            left = None if timeout is None else max(1.0, timeout - (time.monotonic() - start))
            self.wait_online_flushed(caught_up_ms, left, on_poll=ticker, read_all=True)
            return self.stop()
        try:
            while True:
                status = self.status()
                if status in ("FAILED", "CANCELED", "FINISHED"):
                    self._raise_job_failure(status)
                ticker()
                time.sleep(ticker.pause(1.0))
        except KeyboardInterrupt:
            ticker.stopping()
            try:
                return self.stop()
            except KeyboardInterrupt:
                self._stop.set()  # the committer starts no new pass; the one under way is crash-safe anyway
                log.warning("stop of %s abandoned: the next run restores the newest complete checkpoint or savepoint",
                            self.job_name)
                raise


__all__ = ["StreamHandle", "StreamResult", "STOP_TIMEOUT_S"]
