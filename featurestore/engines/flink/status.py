"""The live status of a streaming job: per-topic Kafka progress (lag, records consumed, events/s), the
committer's metrics and the online writer's progress (``StreamHandle.snapshot``, the live view of
``featurestore stream``). Everything here is computed from numbers read elsewhere; nothing raises."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

from featurestore.errors import RequestError

STATUS_KAFKA_TIMEOUT_S = 3.0  # a snapshot gives up on Kafka after this long (the field is then unknown)


@dataclass
class TopicStatus:
    """One topic of a running job, summed over its partitions; ``None`` = unknown (Kafka not reachable).
    A partition the job's consumer group never committed counts at its earliest offset."""

    topic: str
    end: Optional[int] = None  # end offsets (high watermarks) now
    committed: Optional[int] = None  # the consumer group's committed offsets (advance on checkpoints)
    lag: Optional[int] = None  # end - committed
    consumed: Optional[int] = None  # committed now - where this run started
    events_per_s: Optional[float] = None  # see _rate; None on the first snapshot
    rate_from: Optional[Tuple[int, float]] = field(default=None, repr=False, compare=False)  # (committed, at)
    last_move: Optional[Tuple[int, float]] = field(default=None, repr=False, compare=False)  # (committed, at)


@dataclass
class StreamStatus:
    """A snapshot of a running job (``StreamHandle.snapshot``): what the live view of ``featurestore
    stream`` shows. ``None`` in a field = could not be read this time (``problems`` says why)."""

    job_name: str
    status: str  # Flink's job status (RUNNING, ...); UNKNOWN when it could not be read
    uptime_s: float
    at: float  # time.monotonic() when taken
    topics: Dict[str, TopicStatus]
    metrics: Optional[Dict[str, Dict[str, int]]]  # per source, as Committer.metrics() (all runs of this job)
    online_written: Optional[int]  # online values the Redis writer wrote in this run
    problems: List[str] = field(default_factory=list)
    stopping: bool = False  # Ctrl-C came: stopping with a savepoint
    restarts: Optional[int] = None  # restarts after failures (restart strategy), None = unknown

    @property
    def lag(self) -> Optional[int]:
        lags = [t.lag for t in self.topics.values()]
        return None if any(x is None for x in lags) else sum(lags)

    @property
    def dead_letters(self) -> Optional[int]:
        return None if self.metrics is None else sum(m.get("dead_letters", 0) for m in self.metrics.values())


def _rate(prev: Optional[TopicStatus], committed: int, at: float, interval_s: Optional[float] = None):
    """(events/s, rate_from, last_move). Committed offsets advance in steps (on checkpoints): the rate is
    the records of the latest step over the time since the step before it (as the snapshots saw them);
    a step after an idle spell (or the first) is taken to span at most one checkpoint ``interval_s``.
    0 once no step came for twice that long (idle or stalled); None on the first snapshot."""
    if prev is None or prev.last_move is None:
        return None, (committed, at), (committed, at)
    base, moved = prev.rate_from, prev.last_move
    if committed != moved[0]:
        base, moved = moved, (committed, at)
        if interval_s and not prev.events_per_s:
            base = (base[0], max(base[1], at - interval_s))
    step = moved[1] - base[1]
    if step <= 0 or at - moved[1] > 2 * step:
        return 0.0, base, moved
    return (moved[0] - base[0]) / step, base, moved


def topic_statuses(ends: Dict[tuple, tuple], committed: Dict[tuple, int], start: Dict[tuple, int],
                   topics: Sequence[str], previous: Optional[StreamStatus], at: float,
                   interval_s: Optional[float] = None) -> Dict[str, TopicStatus]:
    """Per topic: offsets summed from (topic, partition) -> (low, high) ``ends``, ``committed`` offsets
    (negative: none) and the run's ``start`` positions; events/s from ``previous`` (see _rate)."""
    out = {}
    for topic in topics:
        tps = [tp for tp in ends if tp[0] == topic]
        pos = {tp: max(committed.get(tp, -1), ends[tp][0]) for tp in tps}
        done = sum(pos.values())
        prev = previous.topics.get(topic) if previous is not None else None
        rate, base, moved = _rate(prev, done, at, interval_s)
        out[topic] = TopicStatus(
            topic, end=sum(ends[tp][1] for tp in tps), committed=done,
            lag=sum(max(0, ends[tp][1] - pos[tp]) for tp in tps),
            consumed=sum(max(0, pos[tp] - start.get(tp, ends[tp][0])) for tp in tps),
            events_per_s=rate, rate_from=base, last_move=moved)
    return out


def _unknown_topics(topics: Sequence[str], previous: Optional[StreamStatus]) -> Dict[str, TopicStatus]:
    """Topics whose offsets could not be read (the rate bookkeeping carries over)."""
    prev = previous.topics if previous is not None else {}
    return {t: TopicStatus(t, rate_from=prev[t].rate_from if t in prev else None,
                           last_move=prev[t].last_move if t in prev else None) for t in topics}



class _StatusTicker:
    """Calls ``on_status`` with a fresh snapshot when one is due (the first at once, then every
    ``every_s`` seconds); does nothing without ``on_status``."""

    def __init__(self, handle, on_status, every_s: float):  # handle: a streaming.StreamHandle
        if on_status is not None and not every_s > 0:
            raise RequestError(f"status_every_s must be > 0 (got {every_s})")
        self.handle, self.on_status, self.every_s = handle, on_status, every_s
        self.last: Optional[StreamStatus] = None
        self.due = time.monotonic()

    def __call__(self) -> None:
        if self.on_status is None or time.monotonic() < self.due:
            return
        self.last = self.handle.snapshot(self.last)
        self.due = time.monotonic() + self.every_s
        self.on_status(self.last)

    def pause(self, most: float) -> float:
        """How long to sleep: ``most``, or less when a snapshot is due sooner."""
        if self.on_status is None:
            return most
        return min(most, max(0.05, self.due - time.monotonic()))

    def stopping(self) -> None:
        """Show the last snapshot once more, marked stopping (no I/O: the stop should start at once)."""
        if self.on_status is not None and self.last is not None:
            self.on_status(replace(self.last, stopping=True))


__all__ = ["StreamStatus", "TopicStatus", "topic_statuses", "STATUS_KAFKA_TIMEOUT_S"]
