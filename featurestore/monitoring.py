"""How fresh and how consistent a project's features are (SPEC §8): what the web catalog shows, what
``/metrics`` exports and what ``featurestore monitor`` checks — computed here once, from numbers the stores
already keep.

- **Freshness** per view: the newest event time in its offline table (the latest version's file statistics)
  and when its online state was last loaded, and by what (materialize, stream, push). A view's optional
  ``expected_freshness`` bounds the age of its newest event.
- **Stream**: per source the dead letters and events the streaming job counted (published in Redis on each
  commit); per topic the lag of the job's consumer group (Kafka's end offsets minus the committed ones) —
  read only once a stream has run for the project.
- **Skew**: the runs of ``verify`` recorded per service (:func:`featurestore.verify.runs`).
- **Drift**: :mod:`featurestore.drift` (served values against a training set).

Nothing here raises for a store that cannot be read: the field is ``None`` and ``problems`` says why.

>>> [b.text for b in breaches(store)]            # doctest: +SKIP
["view 'user_spend': newest event 3h 12m old, expected within 1h"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

KAFKA_TIMEOUT_S = 2.0


@dataclass
class ViewFreshness:
    view: str
    offline_version: Optional[int] = None
    offline_written_at: Optional[str] = None  # ISO time of the latest version
    offline_rows: Optional[int] = None
    last_event_ms: Optional[int] = None  # the newest event in the offline table
    online: bool = True
    online_loaded_ms: Optional[int] = None  # when the online state was last (re)loaded
    online_by: Optional[str] = None  # by what: materialize, stream, push, ...
    expected_ms: Optional[int] = None  # the view's expected_freshness
    problems: List[str] = field(default_factory=list)

    def age_ms(self, now_ms: int) -> Optional[int]:
        return None if self.last_event_ms is None else now_ms - self.last_event_ms

    def stale(self, now_ms: int) -> bool:
        age = self.age_ms(now_ms)
        return self.expected_ms is not None and (age is None or age > self.expected_ms)


def offline_versions(store, view: str) -> List[dict]:
    """The kept versions of ``view``'s offline table, newest first: version, created_at, operation, rows,
    files added and removed, and the newest event time of the version."""
    table = store.offline.table(view)
    out = []
    for m in reversed(table.history()):
        out.append({"version": m["version"], "created_at": m.get("created_at"), "operation": m.get("operation"),
                    "rows": m.get("rows"), "files": len(m.get("files", [])), "added": len(m.get("added", [])),
                    "removed": len(m.get("removed", [])), "last_event_ms": _last_event(table, m)})
    return out


def _last_event(table, manifest: dict) -> Optional[int]:
    stats = manifest.get("file_stats") or {}
    highs = []
    for rel in manifest.get("files", []):
        st = stats.get(rel)
        if st is None:
            try:
                st = table._file_stats(manifest, rel)  # older manifests: read the time column
            except Exception:  # noqa: BLE001 - a file gone since: leave it out
                continue
        if st.get("max_ts") is not None:
            highs.append(int(st["max_ts"]))
    return max(highs) if highs else None


def freshness(store, views: Optional[Sequence[str]] = None) -> Dict[str, ViewFreshness]:
    """Per view (default: all), where its newest offline event is and when its online state was loaded."""
    names = list(views) if views is not None else list(store.repo.views)
    out = {}
    for n in names:
        v = store.repo.views[n]
        f = ViewFreshness(n, online=v.online, expected_ms=getattr(v, "expected_freshness", None))
        try:
            table = store.offline.table(n)
            if table.version is not None:
                m = table.manifest()
                f.offline_version, f.offline_written_at = m["version"], m.get("created_at")
                f.offline_rows = m.get("rows")
                f.last_event_ms = _last_event(table, m)
        except Exception as exc:  # noqa: BLE001 - shown, never raised
            f.problems.append(f"offline table: {_short(exc)}")
        out[n] = f
    online = [n for n in names if out[n].online]
    if online:
        try:
            markers = store.online_store().markers(online)
        except Exception as exc:  # noqa: BLE001
            markers = {}
            for n in online:
                out[n].problems.append(f"online store: {_short(exc)}")
        for n, m in markers.items():
            if m:
                out[n].online_loaded_ms, out[n].online_by = m.get("at"), m.get("by")
    return out


@dataclass
class StreamState:
    """The streaming job of the project (all streamed views, the default job of ``featurestore stream``)."""

    job: Optional[str]
    sources: Dict[str, Dict[str, int]]  # source -> dead_letters, null_key, events, events:<view> (since the start)
    lag: Dict[str, Optional[int]]  # topic -> records not yet consumed (None: unknown)
    problems: List[str] = field(default_factory=list)
    # source -> (dead letters, events) committed in the last ``window_ms`` (monitor.dead_letter_window, by the hour)
    recent: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    window_ms: int = 0

    def dead_letter_rate(self, source: str) -> float:
        """Dead letters over records (dead + stored) of ``source`` committed in the last ``window_ms``: an old
        burst stops counting once it is out of the window, as the pushes' do."""
        dead, events = self.recent.get(source, (0, 0))
        return dead / (dead + events) if dead + events else 0.0


def stream_state(store, kafka_timeout: float = KAFKA_TIMEOUT_S, now_ms: Optional[int] = None) -> Optional[StreamState]:
    """The stream's counters (``recent``: those of the last ``monitor.dead_letter_window`` before ``now_ms``)
    and lag; None when no view streams or no stream has run for the project."""
    import json

    from featurestore.engines.backfill import PUSH_BUCKET_MS
    from featurestore.engines.flink import stream as streaming
    from featurestore.engines.flink import offsets as flink_offsets
    from featurestore.engines.flink.commit import HOURS_SUFFIX

    streamed = [n for n, v in store.repo.views.items() if v.source.stream is not None]
    if not streamed:
        return None
    sources = sorted({store.repo.views[n].source.name for n in streamed})
    problems: List[str] = []
    window = store.config.monitor.dead_letter_window_ms
    first = ((int(time.time() * 1000) if now_ms is None else now_ms) - window) // PUSH_BUCKET_MS * PUSH_BUCKET_MS
    try:
        client = store.online_store().client
        metrics, recent = {}, {}
        for s in sources:
            key = streaming.metrics_key(store.config.project, s)
            metrics[s] = {k.decode(): int(v) for k, v in client.hgetall(key).items()}
            inside = [json.loads(c) for h, c in client.hgetall(key + HOURS_SUFFIX).items() if h.isdigit() and int(h) >= first]
            recent[s] = (sum(int(c[0]) for c in inside), sum(int(c[1]) for c in inside))
    except Exception as exc:  # noqa: BLE001
        return StreamState(None, {}, {}, [f"stream metrics (Redis): {_short(exc)}"])
    metrics = {s: m for s, m in metrics.items() if m}
    if not metrics:
        return None
    recent = {s: recent[s] for s in metrics}
    topics = sorted({store.repo.views[n].source.stream.topic for n in streamed})
    lag: Dict[str, Optional[int]] = {t: None for t in topics}
    job = None
    try:
        from featurestore.engines.flink.status import topic_statuses

        job = streaming.job_name(store, streamed)
        ends = flink_offsets.end_offsets(store.config.kafka_bootstrap, topics, timeout=kafka_timeout)
        committed = flink_offsets.committed(store.config.kafka_bootstrap, job, list(ends), timeout=kafka_timeout)
        for t, st in topic_statuses(ends, committed, {}, topics, None, time.monotonic()).items():
            lag[t] = st.lag
    except Exception as exc:  # noqa: BLE001
        problems.append(f"stream lag (Kafka): {_short(exc)}")
    return StreamState(job, metrics, lag, problems, recent, window)


@dataclass(frozen=True)
class Breach:
    kind: str  # freshness, lag, dead_letters, skew, drift, unreadable
    subject: str
    text: str


def breaches(store, now_ms: Optional[int] = None, drift_reports: Sequence = (), stream=None) -> List[Breach]:
    """Everything out of bounds, one line each: views older than their ``expected_freshness``, a stream
    lag over ``monitor.max_stream_lag``, dead letters over ``monitor.max_dead_letter_rate`` of a source's
    events (the stream's counters, each source's last backfill and the pushes to its batch face in the last
    ``monitor.dead_letter_window``), the last verify run of a service over ``monitor.max_skew_rate`` for a
    feature, and drift over ``monitor.max_psi`` in the given drift reports."""
    from featurestore import verify
    from featurestore.ui import ago

    limits = store.config.monitor
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out: List[Breach] = []
    for n, f in freshness(store).items():
        if f.stale(now_ms):
            age = f.age_ms(now_ms)
            what = f"newest event {ago(age / 1000)} old" if age is not None else "no offline event at all"
            out.append(Breach("freshness", n, f"view '{n}': {what}, expected within {ago(f.expected_ms / 1000)}"))
    stream = stream_state(store, now_ms=now_ms) if stream is None else stream
    if stream is not None:
        for p in stream.problems:
            out.append(Breach("unreadable", "stream", f"stream: {p}"))
        for t, lag in stream.lag.items():
            if limits.max_stream_lag is not None and lag is not None and lag > limits.max_stream_lag:
                out.append(Breach("lag", t, f"topic '{t}': the stream is {lag:,} records behind (limit "
                                            f"{limits.max_stream_lag:,})"))
        for s in stream.sources:
            rate = stream.dead_letter_rate(s)
            if rate > limits.max_dead_letter_rate:
                out.append(Breach("dead_letters", s, f"source '{s}': {stream.recent[s][0]:,} dead letters in the "
                                                     f"stream in the last {ago(stream.window_ms / 1000)}, {rate:.3%} "
                                                     f"of its records (limit {limits.max_dead_letter_rate:.3%})"))
    from featurestore.engines.backfill import last_ingest, pushed

    for s in dict.fromkeys(v.source.name for v in store.repo.views.values()):  # the batch face's, last backfill
        run = last_ingest(store, s)
        if run and run["records"] and run["dead_letters"] / run["records"] > limits.max_dead_letter_rate:
            out.append(Breach("dead_letters", s, f"source '{s}': {run['dead_letters']:,} dead letters in its last "
                                                 f"backfill, {run['dead_letters'] / run['records']:.3%} of its rows "
                                                 f"(limit {limits.max_dead_letter_rate:.3%})"))
    window = limits.dead_letter_window_ms
    for s in dict.fromkeys(src.name for src in store.repo.sources.values()):  # pushes to batch faces, recent ones
        got = pushed(store, s, since_ms=now_ms - window)
        if got and got["records"] and got["dead_letters"] / got["records"] > limits.max_dead_letter_rate:
            out.append(Breach("dead_letters", s, f"source '{s}': {got['dead_letters']:,} dead letters among its "
                                                 f"rows pushed in the last {ago(window / 1000)}, "
                                                 f"{got['dead_letters'] / got['records']:.3%} of them "
                                                 f"(limit {limits.max_dead_letter_rate:.3%})"))
    for svc in store.repo.services:
        last = verify.runs(store, svc, last=1)
        if not last:
            continue
        for feat in last[0]["features"]:
            rate = verify.skew_rate(last[0], feat)
            if rate > limits.max_skew_rate:
                out.append(Breach("skew", f"{svc}:{feat}", f"service '{svc}' feature '{feat}': skew {rate:.3%} in the "
                                                           f"last verify run (limit {limits.max_skew_rate:.3%})"))
    for report in drift_reports:
        for feat, d in report.features.items():
            if d.psi is not None and d.psi > limits.max_psi:
                out.append(Breach("drift", f"{report.feature_service}:{feat}",
                                  f"service '{report.feature_service}' feature '{feat}': PSI {d.psi:.3f} of served "
                                  f"values against training set '{report.training_set}' (limit {limits.max_psi})"))
    return out


def lines_backwards(path, block: int = 1 << 16):
    """The non-blank lines of a history file, last first, read from its end: the verify and drift histories
    only grow, and a page or a scrape wants their last records, not the whole file."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        pos, tail = fh.tell(), b""
        while pos > 0:
            step = min(block, pos)
            pos -= step
            fh.seek(pos)
            parts = (fh.read(step) + tail).split(b"\n")
            tail = parts.pop(0)  # may continue in the previous block
            for raw in reversed(parts):
                if raw.strip():
                    yield raw.decode("utf-8", "replace")
        if tail.strip():
            yield tail.decode("utf-8", "replace")


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


__all__ = ["ViewFreshness", "StreamState", "Breach", "freshness", "offline_versions", "stream_state", "breaches",
           "lines_backwards"]
