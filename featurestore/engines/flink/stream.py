"""Run the streaming job: build it, start it (local mini-cluster or a remote cluster), commit its Parquet
files into the offline tables, stop it, restart it from its last checkpoint.

Used by ``FeatureStore.stream``, the CLI (``featurestore stream``) and ``jobs/stream.py``.

* **Which views**: every view whose source has a stream face (``KafkaTopic``); online views are also
  written to Redis. One job reads each topic once.
* **State and restarts**: checkpoints go to ``<repo>/.featurestore/checkpoints/<job>/`` (``<job>``
  names the project and a hash of the streamed definitions, so a definition change starts a new job
  with new state) and are retained when the job is cancelled or dies. Every start restores the newest
  snapshot there (checkpoint or savepoint), at the parallelism it was taken at (:func:`restore_parallelism`):
  Kafka offsets, online state and the Parquet sinks' pending files come back together, so after ``kill -9``
  and a restart no event is lost or counted twice. ``restore=False`` starts from the earliest offsets with
  empty state; the offline tables skip what they hold (see below).
* **Bounded runs** (``bounded=True``, tests, catch-up; local mini-cluster): the job reads until a
  completed checkpoint covers the end offsets the topics had when it started (Flink commits them to the
  consumer group), waits until the online writer has written every changed entity, then stops with a
  savepoint. A later run restores that savepoint and goes on from there. Flink's own
  ``scan.bounded.mode`` is not used: a job that *finishes* leaves finished operators in its last
  checkpoint (a restore would never read again), and in PyFlink 2.3 the end-of-input / drain watermark
  reaches Python timers only sometimes (measured: 1 run in 3), so nothing relies on event time.
* **Offline commits** (:mod:`featurestore.engines.flink.commit`): Flink's Parquet sink of each source writes
  each stored event once (flags and projections per view), which the committer splits into
  ``<offline root>/_stream_staging/<view>/<fp>/``, each row with its Kafka partition and offset; Flink makes
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
import logging
import os
import uuid
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from featurestore.engines.flink import handoff
from featurestore.engines.flink import rest as flink_rest
from featurestore.engines.flink.commit import (  # noqa: F401 (re-exported: the committer is part of this API)
    COMMITTER_PENDING, COMMITTER_STATE, NULL_KEY_PREFIX, Committer, DirCommitter)
from featurestore.engines.flink.handle import StreamHandle, StreamResult
from featurestore.engines.flink.handoff import check_history  # noqa: F401 (re-exported)
from featurestore.engines.flink.offsets import end_offsets, forget_group, start_positions
from featurestore.engines.flink.status import StreamStatus, TopicStatus, topic_statuses  # noqa: F401 (re-exported)
from featurestore.engines.flink.udf import job_jars
from featurestore.errors import FeatureStoreError, RequestError
from featurestore.failures import job_error

log = logging.getLogger("featurestore.streaming")

STAGING_DIR = "_stream_staging"
DEAD_LETTERS_DIR = "_dead_letters"
STAGED_DIR = "_staged"  # the sources' Parquet sinks (split by the committer into the views' folders)
DEAD_LETTERS_TS = "kafka_timestamp"
DEFAULT_CHECKPOINT_MS = 10_000
DEFAULT_BOUNDED_CHECKPOINT_MS = 2_000
# The job's operator layout: a change whose snapshots the new job cannot restore (an operator's state gone
# or changed) bumps it, so the job starts afresh (as for a changed definition) instead of failing to
# restore. 2: the online state operator writes Redis itself (no writer operator with its ListState). 3: the
# online rows reach their mini-batch windows without a DataStream hop (the SQL operators' generated ids, the
# windows' among them, follow the job graph's shape: a checkpoint of format 2 would not map onto them). 4: one
# Parquet sink per source instead of one per view (the committer splits its files by view: commit.split_staged).
# 5: the online mini-batches come from the Java operator OnlineBatches (operator state) instead of a TUMBLE window.
JOB_FORMAT = 5
DEFAULT_FLUSH_MS = 200  # the online mini-batch interval: an event reaches Python (then Redis) at most this much later
DEFAULT_BOUNDED_FLUSH_MS = 5_000  # bounded (catch-up) runs: bigger batches
# A bounded run with a large backlog: 15 s windows, so an entity's events reach Python (and Redis) in fewer,
# larger batches: 20-25% less CPU per online row in the operator (uniform; 16% hot key; bench/stream_online.py,
# 60k events at 3,000 records/s), fewer crossings and write scripts. (The run's end does not wait for a window:
# the last batches leave once the operator's input is idle, StreamHandle.wait_online_flushed(read_all=True).)
LARGE_BACKLOG_RECORDS = 200_000
LARGE_BACKLOG_FLUSH_MS = 15_000


def bounded_flush_ms(backlog: int) -> int:
    """The online mini-batch interval of a bounded run that has ``backlog`` Kafka records to read."""
    return LARGE_BACKLOG_FLUSH_MS if backlog >= LARGE_BACKLOG_RECORDS else DEFAULT_BOUNDED_FLUSH_MS


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
    """The job's name: the project and a hash of the streamed definitions (each view's
    :func:`~featurestore.engines.flink.tables.stream_fingerprint`) and of :data:`JOB_FORMAT` (its consumer group
    and checkpoint folder: a new definition or job layout starts afresh)."""
    from featurestore.engines.flink.tables import stream_fingerprint

    h = hashlib.sha256()
    h.update(f"job format {JOB_FORMAT}\n".encode())
    for n in sorted(names):
        v = store.repo.views[n]
        h.update(f"{n}\0{stream_fingerprint(store.compiled(n))}\0{v.online}\0{v.source.stream.topic}\n".encode())
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
    from featurestore.engines.flink.tables import stream_fingerprint

    return staging_root(store) / view / stream_fingerprint(store.compiled(view))[:12]


def staged_dir(store, source: str, names: Sequence[str]) -> Path:
    """Where the job's Parquet sink of ``source`` writes (its views among ``names``, in the job's order):
    one folder per layout (:func:`featurestore.engines.flink.tables.staged_layout`), written beside the
    files, so the committer splits any run's files by the layout they were written with."""
    return staged_root(store, source) / staged_layout_id(staged_layout_of(store, source, names))


def staged_root(store, source: str) -> Path:
    return staging_root(store) / STAGED_DIR / source


def staged_layout_of(store, source: str, names: Sequence[str]) -> dict:
    from featurestore.engines.flink.tables import staged_layout

    return staged_layout([store.compiled(n) for n in names if store.repo.views[n].source.name == source])


def staged_layout_id(layout: dict) -> str:
    import json

    return hashlib.sha256(json.dumps(layout, sort_keys=True).encode()).hexdigest()[:12]


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
    from featurestore.engines.flink import tables

    names = stream_views(store, views)
    cvs = [store.compiled(n) for n in names]
    sources = {n: store.repo.views[n].source for n in names}
    name = job_name(store, names)
    return tables.plan_stream(
        store.config.project, cvs, sources,
        bootstrap=store.config.kafka_bootstrap,
        group_id=name,
        bounded=False,  # bounded runs stop with a savepoint (see the module docstring)
        staging={n: staging_dir(store, n).resolve().as_uri() for n in names},
        dead_letter_staging={s.name: dead_letter_staging_dir(store, s.name).resolve().as_uri() for s in sources.values()},
        staged={s.name: staged_dir(store, s.name, names).resolve().as_uri() for s in sources.values()},
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


def snapshot_parallelism(snapshot: Path) -> Optional[int]:
    """The parallelism a checkpoint or savepoint was taken at (the largest of its operators'; Flink's own
    ``_metadata``, read in the JVM); None when it cannot be read."""
    try:
        from pyflink.java_gateway import get_gateway

        jvm = get_gateway().jvm
        meta = jvm.java.io.DataInputStream(jvm.java.io.FileInputStream(str(Path(snapshot) / "_metadata")))
        try:
            loader = jvm.java.lang.Thread.currentThread().getContextClassLoader()
            md = jvm.org.apache.flink.runtime.checkpoint.Checkpoints.loadCheckpointMetadata(
                meta, loader, str(Path(snapshot).resolve()))
        finally:
            meta.close()
        return max((int(s.getParallelism()) for s in md.getOperatorStates()), default=None)
    except Exception as exc:  # an unreadable snapshot: Flink's restore reports it
        log.warning("could not read the parallelism of snapshot %s: %s", snapshot, exc)
        return None


def restore_parallelism(restored: Optional[Path], parallelism: int) -> int:
    """The parallelism to run at: ``parallelism``, or the restored snapshot's when it differs. Flink derives
    the ids of the operators it cannot name (the SQL planner's and the filesystem sinks') from the job
    graph's chaining, which a parallelism change alters (the sinks' committers run at parallelism 1): such
    a snapshot could not be restored at all. A changed parallelism takes effect on a fresh start
    (``restore=False``, ``--no-restore``: the topic is re-read, the offline tables skip what they hold)."""
    if restored is None:
        return parallelism
    taken = snapshot_parallelism(restored)
    if taken is None or taken == parallelism:
        return parallelism
    log.warning("the snapshot %s was taken at parallelism %d: the job resumes at parallelism %d, not %d (Flink "
                "cannot restore it at another; a fresh start with --no-restore runs at any)", restored, taken, taken,
                parallelism)
    return taken


def refuse_eviction(store, names: Sequence[str]) -> None:
    """Reach Redis and refuse one that may evict keys when ``names`` has an online view
    (``RedisOnlineStore.check_eviction``): called first by every start, before anything is prepared (no
    checkpoint folder, staged layout, consumer group change, committer pass or job)."""
    from featurestore.stores.online_redis import for_store

    online = for_store(store)
    online._guard(online.client.ping)
    if any(store.repo.views[n].online for n in names):
        online.check_eviction(store.config.redis_allow_eviction)


def prepare_online(store, names: Sequence[str], restored, seed: Optional[dict] = None) -> List[str]:
    """Mark the stream's online views in Redis (the per-view marker lookups require) before the job runs.

    A fresh start owns its views' keys (each entity is rewritten whole at its first flush; a hand-off
    first seeded them, :mod:`featurestore.engines.flink.handoff`). A restart whose views lost their online
    state (no marker: Redis lost its data, or it was flushed; on a cluster, also a slot sentinel gone: a
    master lost its data) first re-seeds them from the offline store, which the committer has just
    brought up to the restored snapshot: ``materialize`` of those views, then the job goes on from the
    snapshot (entities it touches are rewritten from its own state). ``seed``: the run's hand-off seed
    (a seeded bounded view answers from its horizon on). Returns the views re-seeded."""
    from featurestore.stores.online_format import FORMAT_VERSION
    from featurestore.stores.online_redis import for_store, materialize

    online = for_store(store)
    views = [n for n in names if store.repo.views[n].online]
    if not views:
        return []
    online.check_eviction(store.config.redis_allow_eviction)  # checked once per store: refuse_eviction did
    markers = online.markers(views)
    lost = restored is not None and online.slots_lost() > 0  # a cluster master lost its data
    # a marker of another format (online_format: this library upgraded under a running job) is re-seeded
    # too: the entities the job does not touch would keep the old format (refused by lookups, never misread)
    reseed = [n for n in views if restored is not None
              and (markers.get(n) is None or markers[n].get("v") != FORMAT_VERSION or lost)]
    if reseed:
        log.warning("online state of %s is missing or of another format (Redis lost its data? an upgrade?): "
                    "re-seeding from the offline store", ", ".join(reseed))
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
        forget_group(store.config.kafka_bootstrap, name)
        stream_commit.begin_rebuilds(store, list(rebuilding))
    if rebuilding:
        log.warning("rebuilding the streamed rows of %s under the new definition: the offline table keeps the "
                    "old rows until the job has read past them, then swaps them in one commit",
                    ", ".join(sorted(rebuilding)))
    stream_commit.write_staged_layouts(store, names)  # how the committer (here or elsewhere) splits the job's files
    committer = None
    if commit:
        committer = Committer(store, names, name, rebuilding, {tp: low for tp, (low, _high) in ends.items()}, root)
        committer.commit()  # files a previous run made visible but did not register
    return restored, committer, handoff.plan(store, names, ends, restored, partial_history)

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
    from featurestore.logs import start_jvm

    names = stream_views(store, views)
    refuse_eviction(store, names)  # before anything is prepared: a refused start leaves no trace
    start_jvm(store.config.state_path)  # Flink's logs in the repo's state folder
    name = job_name(store, names)
    stream_plan = plan(store, names)
    jars = job_jars(store)
    topics = sorted({store.repo.views[n].source.stream.topic for n in names})
    ends = end_offsets(store.config.kafka_bootstrap, topics)
    root = checkpoint_root(store, name, checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    restored, committer, handoff_plan = _prepare(store, names, name, root, ends, restore, partial_history, commit)
    start_offsets = start_positions(store.config.kafka_bootstrap, name, ends, restored)
    parallelism = restore_parallelism(restored, parallelism)
    seed = handoff.prepare(store, root, handoff_plan, restored, slack_ms)
    prepare_online(store, names, restored, seed)
    interval = checkpoint_interval_ms or (DEFAULT_BOUNDED_CHECKPOINT_MS if bounded else DEFAULT_CHECKPOINT_MS)
    if flush_ms is None:
        backlog = sum(max(0, high - start_offsets.get(tp, low)) for tp, (low, high) in ends.items())
        flush_ms = bounded_flush_ms(backlog) if bounded else DEFAULT_FLUSH_MS
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


__all__ = ["start", "run", "commit", "plan", "explain", "stream_views", "job_name", "latest_snapshot", "StreamHandle",
           "StreamResult", "StreamStatus", "TopicStatus", "topic_statuses", "Committer", "DirCommitter",
           "dead_letter_table", "metrics_key", "redis_options", "refuse_eviction", "prepare_online",
           "check_history"]
