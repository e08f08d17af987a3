"""Run the streaming job: build it, start it (local mini-cluster or a remote cluster), commit its Parquet
files into the offline tables, stop it, restart it from its last checkpoint.

Used by ``FeatureStore.stream``, the CLI (``featurestore stream``) and ``jobs/stream.py``.

* **Which views**: every view whose source has a stream face (``KafkaTopic``); online views are also
  written to Redis. One job reads each topic once.
* **State and restarts**: checkpoints go to ``<repo>/.featurestore/checkpoints/<job>/`` (``<job>``
  names the project and a hash of the streamed definitions, so a definition change starts a new job
  with new state) and are retained when the job is cancelled or dies. Every start restores the newest
  snapshot there (checkpoint or savepoint): Kafka offsets, online state and the Parquet sinks'
  pending files come back together, so after ``kill -9`` and a restart no event is lost or counted
  twice. ``restore=False`` starts from the earliest offsets with empty state; the offline tables skip
  what they hold (see below).
* **Bounded runs** (``bounded=True``, tests, catch-up; local mini-cluster): the job reads until a
  completed checkpoint covers the end offsets the topics had when it started (Flink commits them to the
  consumer group), waits until the online writer has written every changed entity, then stops with a
  savepoint. A later run restores that savepoint and goes on from there. Flink's own
  ``scan.bounded.mode`` is not used: a job that *finishes* leaves finished operators in its last
  checkpoint (a restore would never read again), and in PyFlink 2.3 the end-of-input / drain watermark
  reaches Python timers only sometimes (measured: 1 run in 3), so nothing relies on event time.
* **Offline commits** (:mod:`featurestore.engines.flink.commit`): Flink's Parquet sinks write into
  ``<offline root>/_stream_staging/<view>/<fp>/``, each row with its Kafka partition and offset, and make
  a file visible when the checkpoint that covers it completes. The committer adds visible files to the
  view's :class:`~featurestore.stores.offline.OfflineTable` with ``commit_stream`` exactly once (an
  idempotency token and an intent file), and only the rows the table does not hold: none inside a
  backfilled range, none below the table's next offset of its partition. A view whose definition
  changed is rebuilt (its streamed rows swapped in once the re-read has caught up).
* **Metrics**: the Redis hash ``fs:{project}:_stream:{source}`` holds exact counts from committed data:
  ``dead_letters`` (malformed records), ``null_key`` (records without a join key, per key set),
  ``events:<view>`` (stored events committed to the view's offline table) and ``events`` (their sum
  over the source's views).
* **Status**: ``StreamHandle.snapshot`` (``run_until_done(on_status=...)``, the live view of ``featurestore
  stream``) reads the job's status, the topics' end offsets and the consumer group's committed offsets
  (lag, records consumed, events/s), the committer's metrics and the online writer's progress; what
  cannot be read is reported as unknown, never raised.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from featurestore.engines.flink import handoff as stream_handoff
from featurestore.engines.flink import rest as flink_rest
from featurestore.logs import kafka_logger
from featurestore.errors import FeatureStoreError, InfraError, JobError, RequestError
from featurestore.failures import job_error
from featurestore.engines.flink.handoff import check_history  # noqa: F401 (re-exported)
from featurestore.engines.flink.commit import (  # noqa: F401 (re-exported: the committer is part of this API)
    COMMITTER_PENDING, COMMITTER_STATE, NULL_KEY_PREFIX, Committer, DirCommitter)
from featurestore.engines.flink.status import (  # noqa: F401 (re-exported)
    STATUS_KAFKA_TIMEOUT_S, StreamStatus, TopicStatus, _StatusTicker, _unknown_topics, topic_statuses)

log = logging.getLogger("featurestore.streaming")

STAGING_DIR = "_stream_staging"
DEAD_LETTERS_DIR = "_dead_letters"
DEAD_LETTERS_TS = "kafka_timestamp"
DEFAULT_CHECKPOINT_MS = 10_000
DEFAULT_BOUNDED_CHECKPOINT_MS = 2_000
STOP_TIMEOUT_S = 300
TASKS_STARTING = "Not all required tasks are currently running"  # Flink's reason for refusing a savepoint
DEFAULT_FLUSH_MS = 200  # the online mini-batch window: an event reaches Python (then Redis) at most this much later
DEFAULT_BOUNDED_FLUSH_MS = 5_000  # bounded (catch-up) runs: bigger batches; the run waits for the last ones


# -- what to run ----------------------------------------------------------------------------------------------
def stream_views(store, views: Optional[Sequence[str]] = None) -> List[str]:
    """Views read by the streaming job: those whose source has a stream face (``views`` narrows)."""
    if views is None:
        names = [n for n, v in store.repo.views.items() if v.source.stream is not None]
    else:
        names = [views] if isinstance(views, str) else list(views)
        for n in names:
            if n not in store.repo.views:
                raise RequestError(f"unknown feature view '{n}'")
            if store.repo.views[n].source.stream is None:
                raise RequestError(f"feature view '{n}': source '{store.repo.views[n].source.name}' has no stream "
                                   "face (KafkaTopic); nothing to stream")
    if not names:
        raise RequestError("no feature view has a source with a stream face (KafkaTopic): nothing to stream")
    return names


def job_name(store, names: Sequence[str]) -> str:
    h = hashlib.sha256()
    for n in sorted(names):
        v = store.repo.views[n]
        h.update(f"{n}\0{store.compiled(n).data_fingerprint}\0{v.online}\0{v.source.stream.topic}\n".encode())
    return f"featurestore-{store.config.project}-{h.hexdigest()[:12]}"


def staging_root(store) -> Path:
    """Where the job's file sinks write Parquet files until the committer adds them to the offline tables:
    beside the tables on a local offline root; on an ``s3://`` root, the repo's state folder on this
    machine (the Flink file sink writes local files; the committer uploads them into the tables)."""
    from featurestore.stores.object_store import is_remote

    root = store._offline_root
    if is_remote(root):
        return store.config.state_path / STAGING_DIR / store.config.project
    return root / STAGING_DIR


def staging_dir(store, view: str) -> Path:
    return staging_root(store) / view / store.compiled(view).data_fingerprint[:12]


def dead_letter_staging_dir(store, source: str) -> Path:
    return staging_root(store) / DEAD_LETTERS_DIR / source


def dead_letter_table(store, source: str):
    """The dead-letter table of ``source``: payload, reason, kafka_partition, kafka_offset,
    kafka_timestamp (its time column), ingest_time."""
    from featurestore.stores.offline import OfflineStore

    return OfflineStore(store._offline_root / DEAD_LETTERS_DIR).table(source, ts_column=DEAD_LETTERS_TS)


def checkpoint_root(store, name: str, checkpoint_dir: Optional[os.PathLike] = None) -> Path:
    base = Path(checkpoint_dir) if checkpoint_dir else store.repo_path / ".featurestore" / "checkpoints"
    return base / name


def metrics_key(project: str, source: str) -> str:
    return f"fs:{project}:_stream:{source}"


def plan(store, views: Optional[Sequence[str]] = None, bounded: bool = False):
    """The StreamPlan (all SQL of the job) for ``views``; raises StreamCompileError for what cannot stream."""
    from featurestore.engines.flink import exprs as flink_sql

    names = stream_views(store, views)
    cvs = [store.compiled(n) for n in names]
    sources = {n: store.repo.views[n].source for n in names}
    name = job_name(store, names)
    return flink_sql.plan_stream(
        store.config.project, cvs, sources,
        bootstrap=store.config.kafka_bootstrap,
        group_id=name,
        bounded=False,  # bounded runs stop with a savepoint (see the module docstring)
        staging={n: staging_dir(store, n).resolve().as_uri() for n in names},
        dead_letter_staging={s.name: dead_letter_staging_dir(store, s.name).resolve().as_uri() for s in sources.values()},
        online_views=[n for n in names if store.repo.views[n].online],
        max_future_ms=store.config.max_future_ms,
    )


def explain(store, views: Optional[Sequence[str]] = None) -> str:
    """The streaming job as SQL text (``plan --explain``)."""
    return plan(store, views).explain()


# -- snapshots -------------------------------------------------------------------------------------------------
def latest_snapshot(root: Path) -> Optional[Path]:
    """The newest complete checkpoint or savepoint under ``root`` (a directory holding ``_metadata``)."""
    if not root.is_dir():
        return None
    best = None
    for meta in list(root.glob("*/chk-*/_metadata")) + list(root.glob("savepoints/*/_metadata")):
        try:
            mtime = meta.stat().st_mtime
        except FileNotFoundError:
            continue
        if best is None or mtime > best[0]:
            best = (mtime, meta.parent)
    return best[1] if best else None


# -- Kafka progress --------------------------------------------------------------------------------------------
def _end_offsets(bootstrap: str, topics: Sequence[str], timeout: float = 10) -> Dict[tuple, tuple]:
    """(topic, partition) -> (low, high) watermark offsets right now."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"featurestore-probe-{uuid.uuid4().hex[:8]}",
                         "logger": kafka_logger(),
                         "enable.auto.commit": False})
    try:
        out = {}
        meta = consumer.list_topics(timeout=timeout)
        for topic in topics:
            tmeta = meta.topics.get(topic)
            if tmeta is None or tmeta.error is not None:
                continue  # not created yet: nothing to read
            for p in tmeta.partitions:
                out[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
        return out
    except KafkaException as exc:
        raise InfraError(f"cannot reach Kafka at {bootstrap}: {exc} (run bash infra/up.sh)") from None
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, partitions: Sequence[tuple], timeout: float = 10) -> Dict[tuple, int]:
    """(topic, partition) -> the group's committed offset (negative: none committed)."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "logger": kafka_logger()})
    try:
        tps = consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=timeout)
        return {(tp.topic, tp.partition): tp.offset for tp in tps}
    finally:
        consumer.close()


def _caught_up(bootstrap: str, group: str, ends: Dict[tuple, tuple]) -> bool:
    todo = [tp for tp, (low, high) in ends.items() if high > low]
    if not todo:
        return True
    got = _committed(bootstrap, group, todo)
    return all(got.get(tp, -1) >= ends[tp][1] for tp in todo)


def _start_positions(bootstrap: str, group: str, ends: Dict[tuple, tuple], restored) -> Dict[tuple, int]:
    """Where a run starts reading each partition: the earliest offset (``scan.startup.mode``), or, when it
    restores a snapshot, the group's committed offsets (Flink commits a snapshot's offsets when it
    completes; a commit lost in a crash makes this one checkpoint early)."""
    start = {tp: low for tp, (low, _high) in ends.items()}
    if restored and start:
        try:
            for tp, offset in _committed(bootstrap, group, list(start)).items():
                start[tp] = max(start[tp], offset)
        except Exception as exc:  # only the status view's "consumed" count depends on it
            log.warning("could not read the committed offsets of %s: %s", group, exc)
    return start


# -- running ---------------------------------------------------------------------------------------------------
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


def _jars(store) -> List[Path]:
    """The connector jars (:func:`featurestore.devinfra.jars.connector_jars`) and the job's Java function."""
    from featurestore.devinfra.jars import connector_jars
    from featurestore.engines.flink.udf import udf_jar

    return connector_jars(store.config) + [udf_jar()]


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
        return _caught_up(self.store.config.kafka_bootstrap, self.job_name, self.ends)

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
                            on_poll: Optional[Callable[[], None]] = None) -> None:
        """Wait until the online path reports (through Redis, after the values it wrote) that every entity
        changed before ``since_ms`` (epoch ms) is written: each state operator's latest report is newer
        than ``since_ms`` and has no flush pending."""
        from featurestore.stores.online_redis import for_store

        online_views = [n for n in self.names if self.store.repo.views[n].online]
        if not online_views:
            return
        if self.committer is not None:
            self.committer.commit()
            totals = self.committer.metrics()
            if sum(m.get(f"events:{v}", 0) for m in totals.values() for v in online_views) == 0:
                return  # nothing reached the online path
        import redis

        client = for_store(self.store).client
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                raw = client.hgetall(self.progress_key)
            except redis.exceptions.ConnectionError:  # Redis restarting: the job's restart strategy rides it out
                raw = {}
            states = [json.loads(v) for k, v in raw.items() if k.decode().startswith("state:")]
            # one report per operator instance: every subtask must have reported "nothing pending" after
            # since_ms (instances of a failed attempt stop reporting and are ignored)
            # (events still in the JVM's mini-batch window: see flink_online.BATCH_MARGIN_MS)
            fresh = [d for d in states if d["at"] - d.get("pending_ms", 0) >= since_ms and d["dirty"] == 0]
            if len(fresh) >= self.parallelism:
                return
            status = self.status()
            if status in ("FAILED", "CANCELED", "FINISHED"):
                self._raise_job_failure(status)
            if deadline is not None and time.monotonic() > deadline:
                raise InfraError(f"stream job {self.job_name}: online writes still pending after {timeout} s "
                                 f"(progress {states})")
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
        return {k.decode(): json.loads(v) for k, v in raw.items()}

    def online_progress(self) -> Dict[str, dict]:
        """The online path's latest reports: per state subtask (``state:<n>``) and the ``writer`` (counts,
        seconds spent in Python)."""
        try:
            return self._progress()
        except Exception:
            return {}

    def _metrics_now(self) -> Dict[str, Dict[str, int]]:
        """The committer's metrics; without a committer here, the hash the committing process publishes."""
        if self.committer is not None:
            return self.committer.metrics()
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
            ends = _end_offsets(self.store.config.kafka_bootstrap, self.topics, STATUS_KAFKA_TIMEOUT_S)
            committed = _committed(self.store.config.kafka_bootstrap, self.job_name, list(ends), STATUS_KAFKA_TIMEOUT_S)
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
            self.wait_online_flushed(caught_up_ms, left, on_poll=ticker)
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


def prepare_online(store, names: Sequence[str], restored, seed: Optional[dict] = None) -> List[str]:
    """Mark the stream's online views in Redis (the per-view marker lookups require) before the job runs.

    A fresh start owns its views' keys (each entity is rewritten whole at its first flush; a hand-off
    first seeded them, :mod:`featurestore.engines.flink.handoff`). A restart whose views lost their online
    state (no marker: Redis lost its data, or it was flushed; on a cluster, also a slot sentinel gone: a
    master lost its data) first re-seeds them from the offline store, which the committer has just
    brought up to the restored snapshot: ``materialize`` of those views, then the job goes on from the
    snapshot (entities it touches are rewritten from its own state). ``seed``: the run's hand-off seed
    (a seeded bounded view answers from its horizon on). Returns the views re-seeded."""
    from featurestore.stores.online_redis import for_store, materialize

    online = for_store(store)
    views = [n for n in names if store.repo.views[n].online]
    if not views:
        return []
    markers = online.markers(views)
    lost = restored is not None and online.slots_lost() > 0  # a cluster master lost its data
    reseed = [n for n in views if restored is not None and (markers.get(n) is None or lost)]
    if reseed:
        log.warning("online state of %s is missing (Redis lost its data?): re-seeding from the offline store",
                    ", ".join(reseed))
        materialize(store, views=reseed)
    online.write_slot_sentinels()
    seeded = (seed or {}).get("views", {})
    for n in views:
        online.write_marker(store.compiled(n), seeded.get(n, {}).get("horizon"), "stream")
    return reseed


def _prepare(store, names: Sequence[str], name: str, root: Path, ends: Dict[tuple, tuple], restore: bool,
             partial_history: bool, commit: bool):
    """(snapshot to restore or None, committer or None, hand-off or None) for a run of ``names``. A view
    whose definition changed since the stream wrote its offline table is rebuilt, which needs the topic
    from its first record: then a snapshot is restored only when it was taken by a run that started
    afresh for the rebuild (:func:`featurestore.engines.flink.commit.rebuild_plan`). A run that starts afresh
    also forgets the consumer group's committed offsets (a former run of the same definitions left them;
    they would make a bounded run stop at once). The committer first registers files a previous run made
    visible. A fresh start on a topic that lost its first records hands off from the offline tables (as
    they are after that commit) or is refused (:func:`featurestore.engines.flink.handoff.plan`)."""
    from featurestore.engines.flink import commit as stream_commit

    restored = latest_snapshot(root) if restore else None
    rebuilding, why_not = stream_commit.rebuild_plan(store, names, restored)
    if why_not:
        log.warning("not restoring the last snapshot: %s", why_not)
        restored = None
    if restored is None:
        _forget_group(store.config.kafka_bootstrap, name)
        stream_commit.begin_rebuilds(store, list(rebuilding))
    if rebuilding:
        log.warning("rebuilding the streamed rows of %s under the new definition: the offline table keeps the "
                    "old rows until the job has read past them, then swaps them in one commit",
                    ", ".join(sorted(rebuilding)))
    committer = None
    if commit:
        committer = Committer(store, names, name, rebuilding, {tp: low for tp, (low, _high) in ends.items()})
        committer.commit()  # files a previous run made visible but did not register
    return restored, committer, stream_handoff.plan(store, names, ends, restored, partial_history)


def _coordinator_moving() -> tuple:
    from confluent_kafka import KafkaError

    return (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.COORDINATOR_LOAD_IN_PROGRESS)


def _forget_group(bootstrap: str, group: str, timeout: float = 10) -> None:
    """Delete the consumer group's committed offsets (none: nothing to do)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": kafka_logger()})
    deadline = time.monotonic() + 6 * timeout  # a broker just started has no group coordinator yet
    while True:
        try:
            admin.delete_consumer_groups([group], request_timeout=timeout)[group].result(timeout=timeout)
            return
        except KafkaException as exc:
            if "GROUP_ID_NOT_FOUND" in str(exc) or "not found" in str(exc).lower():
                return
            error = exc.args[0] if exc.args else None
            transient = error is not None and (error.retriable() or error.code() in _coordinator_moving())
            if not transient or time.monotonic() > deadline:
                raise InfraError(f"cannot reset the consumer group {group} at {bootstrap}: {exc}") from None
            time.sleep(0.5)


def redis_options(cfg) -> dict:
    """How the job's Redis writer connects (``online_redis.connect(url, password, tls)``): the config's
    URL with its TLS settings (private CA, client certificate) in the query."""
    from featurestore.stores.online_redis import connection_url

    return {"url": connection_url(cfg), "password": cfg.redis_password, "tls": cfg.redis_tls}


def start(store, views: Optional[Sequence[str]] = None, *, bounded: bool = False,
          checkpoint_dir: Optional[os.PathLike] = None, checkpoint_interval_ms: Optional[int] = None,
          restore: bool = True, parallelism: int = 1, flush_ms: Optional[int] = None, flush_rows: int = 500,
          slack_ms: int = 0, commit_interval_s: float = 2.0, extra_config: Optional[Dict[str, str]] = None,
          commit: bool = True, job_options: Optional[dict] = None, run_id: Optional[str] = None,
          partial_history: bool = False, rest_port: Optional[int] = 0) -> StreamHandle:
    """Start the streaming job (local mini-cluster in this process, or the cluster of ``flink run``) and,
    unless ``commit=False``, the committer thread. A fresh start on a topic that lost its first records
    seeds its online state from the offline store when that covers what the topic lost, else is refused
    unless ``partial_history`` (:mod:`featurestore.engines.flink.handoff`).

    The local mini-cluster serves Flink's REST API and web UI on 127.0.0.1 at ``rest_port`` (0: a free
    port; ``StreamHandle.rest_address``), which is where restarts are counted. ``rest_port=None`` leaves
    REST alone: the job is submitted by ``flink run`` to a cluster that has its own."""
    from featurestore.engines.flink import job as flink_job
    from featurestore.stores.online_redis import for_store

    names = stream_views(store, views)
    name = job_name(store, names)
    stream_plan = plan(store, names)
    jars = _jars(store)
    online = for_store(store)
    online._guard(online.client.ping)
    topics = sorted({store.repo.views[n].source.stream.topic for n in names})
    ends = _end_offsets(store.config.kafka_bootstrap, topics)
    root = checkpoint_root(store, name, checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    restored, committer, handoff = _prepare(store, names, name, root, ends, restore, partial_history, commit)
    start_offsets = _start_positions(store.config.kafka_bootstrap, name, ends, restored)
    seed = stream_handoff.prepare(store, root, handoff, restored)
    prepare_online(store, names, restored, seed)
    interval = checkpoint_interval_ms or (DEFAULT_BOUNDED_CHECKPOINT_MS if bounded else DEFAULT_CHECKPOINT_MS)
    if flush_ms is None:
        flush_ms = DEFAULT_BOUNDED_FLUSH_MS if bounded else DEFAULT_FLUSH_MS
    progress_key = flink_job.progress_key(store.config.project, run_id or uuid.uuid4().hex[:12])
    conf = dict(extra_config or {})
    if rest_port is not None and "rest.bind-port" not in conf:
        conf.update(flink_rest.local_options(rest_port or flink_rest.free_port()))
    rest_address = f"127.0.0.1:{conf['rest.bind-port']}" if rest_port is not None else None
    options = flink_job.JobOptions(
        job_name=name, jars=jars, checkpoint_dir=root, checkpoint_interval_ms=interval, bounded=bounded,
        progress_key=progress_key,
        parallelism=parallelism, restore_path=restored,
        redis=redis_options(store.config),
        flush_ms=flush_ms, flush_rows=flush_rows, slack_ms=slack_ms, restart=store.config.restart.flink_options(),
        seed=seed,
        extra_config=conf,
        **(job_options or {}),
    )
    try:
        built = flink_job.build(stream_plan, options)
        job_client = built.env.execute_async(name)
    except FeatureStoreError:
        raise
    except Exception as exc:  # a Java exception from planning or submitting the job: one line, trace in a file
        raise job_error(store.config.state_path, f"stream job {name} could not start", exc) from None
    log.info("stream job %s started (%s)%s", name, job_client.get_job_id(),
             f", restored from {restored}" if restored else "")
    return StreamHandle(store, names, name, job_client, committer, root, bounded, ends,
                        str(restored) if restored else None, commit_interval_s, progress_key, parallelism,
                        start_offsets, interval / 1000, rest_address=rest_address)


def run(store, views: Optional[Sequence[str]] = None, *, bounded: bool = False, timeout: Optional[float] = None,
        on_status: Optional[Callable[[StreamStatus], None]] = None, status_every_s: float = 2.0,
        **kwargs) -> StreamResult:
    """Start the job locally and run it: bounded until caught up with the topics (then stop with a
    savepoint), unbounded until Ctrl-C. Offline files are committed while it runs and at the end.
    ``on_status``: see :meth:`StreamHandle.run_until_done`."""
    handle = start(store, views, bounded=bounded, **kwargs)
    return handle.run_until_done(timeout, on_status=on_status, status_every_s=status_every_s)


def commit(store, views: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, int]]:
    """One committer pass (e.g. next to a job running on a remote cluster); returns the metrics."""
    names = stream_views(store, views)
    c = Committer(store, names, job_name(store, names))
    c.commit()
    return c.metrics()


# -- remote clusters -------------------------------------------------------------------------------------------
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
                  extra_args: Sequence[str] = (), partial_history: bool = False) -> RemoteStreamHandle:
    """Submit the same job to a remote cluster (``flink run -m <address> -d -py jobs/stream.py
    --submit-only``) and return a handle that watches it over REST (``run_until_done``, ``stop``) and
    runs the committer here. The cluster must reach Kafka and Redis, and the staging and checkpoint
    directories must be the same paths on the cluster and here (one machine, or a shared mount)."""
    names = stream_views(store, views)
    name = job_name(store, names)
    plan(store, names)  # compile errors surface here, not in the cluster's client
    root = checkpoint_root(store, name, checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    topics = sorted({store.repo.views[n].source.stream.topic for n in names})
    ends = _end_offsets(store.config.kafka_bootstrap, topics)
    # a hand-off is seeded by the submitting script's own start() (it runs here, before the job exists)
    restored, committer, _handoff = _prepare(store, names, name, root, ends, restore, partial_history, commit)
    start_offsets = _start_positions(store.config.kafka_bootstrap, name, ends, restored)
    run_id = uuid.uuid4().hex[:12]
    cmd = [str(flink_cli()), "run", "-m", flink_address, "-d", "-pyclientexec", sys.executable, "-pyexec", sys.executable,
           "-py", str(JOB_SCRIPT), *job_args(store.repo_path, root.parent, bounded=bounded,
                                             partial_history=partial_history,
                                             checkpoint_interval_ms=checkpoint_interval_ms),
           "--run-id", run_id]
    if restored is None:  # also when a rebuild needs the topic from its first record (see _prepare)
        cmd.append("--no-restore")
    cmd += ["--views", ",".join(names)]
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


__all__ = ["start", "run", "commit", "plan", "explain", "stream_views", "job_name", "latest_snapshot", "StreamHandle",
           "StreamResult", "StreamStatus", "TopicStatus", "topic_statuses", "Committer", "DirCommitter",
           "dead_letter_table", "metrics_key", "submit_remote",
           "RemoteStreamHandle", "child_env"]
