"""What every backfill engine (DuckDB, Flink) shares: routing the rows it computed, writing a view's range
and the sources' dead-letter tables, and the result it reports.

An engine computes, per view and in one pass over the batch face, rows tagged by ``__kind`` (see
``duckdb_sql.backfill_sql``): the view's stored events for the range, the source's dead letters (rows
with a reason: missing or unreadable event time, outside the supported range, too far in the future, a
value not of its column's type), its events without a join key and the events its filter, a projection or a
feature input fails on (dead letters of the view). :class:`BackfillRun` writes the
events with ``OfflineTable.write_range`` (the range is replaced atomically) and, once every view is
done, replaces each source's dead-letter table ``<offline root>/<project>/_backfill_dead_letters/<source>``
with what this run found: dead letters of a source are the same for every view of it, null-join-key rows
the same for views sharing their join keys, so each is taken from the first such view; a view's failing
events are its own (one dead letter per event and view, as the streaming job writes them).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pyarrow as pa
import pyarrow.compute as pc

from featurestore.engines.duckdb_sql import DEAD_LETTER, EVENT, KIND, NULL_KEY, REASON, ROW, VIEW_FAILED
from featurestore.errors import FeatureStoreError
from featurestore.semantics import NULL_KEY_PREFIX, missing_time_reason

BACKFILL_DEAD_LETTERS_DIR = "_backfill_dead_letters"
DEAD_LETTERS_TS = "backfill_time"
ALL_TIME = (-(2**62), 2**62)  # "all of history" as a write range (epoch ms)
DEAD_LETTER_SCHEMA = pa.schema([
    ("reason", pa.string()), ("row", pa.string()), ("event_time_ms", pa.int64()),
    ("backfill_start_ms", pa.int64()), ("backfill_end_ms", pa.int64()),
    (DEAD_LETTERS_TS, pa.timestamp("ms", tz="UTC")),
])
TS_MS = "__ts_ms"


@dataclass
class BackfillResult:
    view: str
    rows: int  # stored events written for the range
    dead_letters: int  # rows of the view's source in the range that are dead letters (same for its views)
    rejected_null_key: int  # events of the range without one of the view's join keys (not stored)
    version: Optional[int]
    seconds: float
    source: str = ""
    reasons: Dict[str, int] = field(default_factory=dict)  # dead letters by reason (the source's and the view's)
    failed: int = 0  # events of the range the view's filter, a projection or a feature input fails on (not stored)

    @property
    def rejected_null_time(self) -> int:
        """Dead letters without an event time (before dead letters had reasons this was the only kind)."""
        prefix = missing_time_reason("x").split("'")[0]
        return sum(n for r, n in self.reasons.items() if r.startswith(prefix))

    @property
    def events_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else float("inf")


def dead_letter_table(store, source: str):
    """The backfill's dead-letter table of ``source``: reason, row (the source row as read, JSON),
    event_time_ms, backfill_start_ms / backfill_end_ms (the run's range, null = open), backfill_time."""
    from featurestore.stores.offline import OfflineStore

    return OfflineStore(store._offline_root / BACKFILL_DEAD_LETTERS_DIR).table(source, ts_column=DEAD_LETTERS_TS)


class BackfillRun:
    """One backfill of ``names`` over ``[start_ms, end_ms)`` (None: open)."""

    def __init__(self, store, names: Sequence[str], start_ms: Optional[int], end_ms: Optional[int]):
        self.store, self.names = store, list(names)
        self.start_ms, self.end_ms = start_ms, end_ms
        self.now_ms = int(time.time() * 1000)  # the wall clock the future-time bound is checked against
        self.groups: Dict[Tuple[str, Tuple[str, ...]], List[str]] = {}
        self.sources: Dict[str, str] = {}
        for n in self.names:
            view = store.repo.views[n]
            self.sources[n] = view.source.name
            self.groups.setdefault((view.source.name, tuple(view.join_keys)), []).append(n)
        self.dead: Dict[str, List[dict]] = {s: [] for s in self.sources.values()}
        self.schemas = {store.repo.views[n].source.name: store.repo.views[n].source for n in self.names}
        self._taken: set = set()

    def key_group_views(self, view: str) -> List[str]:
        """The views of this run sharing ``view``'s source and join keys (named in null-key reasons)."""
        v = self.store.repo.views[view]
        return self.groups[(v.source.name, tuple(v.join_keys))]

    def write_view(self, view: str, routed: pa.RecordBatchReader, on_rows: Optional[Callable[[int], None]] = None,
                   started: Optional[float] = None, unique_on: Optional[List[str]] = None) -> BackfillResult:
        """Write the view's events of ``routed`` (rows tagged by ``__kind``) as its range, keep the dead letters.
        ``unique_on``: the caller checked that no two events share these columns and the time
        (``OfflineTable.write_range``)."""
        from featurestore.engines.duckdb_engine import arrow_schema

        t0 = time.perf_counter() if started is None else started
        cv = self.store.compiled(view)
        schema = arrow_schema(cv)
        names = schema.names
        source = self.sources[view]
        take_dead = ("source", source) not in self._taken
        group = (source, tuple(cv.join_keys))
        take_null_key = ("group", group) not in self._taken
        count = Counter()
        reasons: Counter = Counter()

        def events() -> Iterator[pa.RecordBatch]:
            for batch in routed:
                kind = batch.column(KIND)
                if batch.num_rows and (kind.null_count or pc.max(kind).as_py() != EVENT):
                    self._keep(batch, source, take_dead, take_null_key, count, reasons)
                    batch = batch.filter(pc.equal(kind, EVENT))
                batch = pa.Table.from_batches([batch.select(names)]).cast(schema)
                for b in batch.to_batches():
                    count[EVENT] += b.num_rows
                    if on_rows:
                        on_rows(b.num_rows)
                    yield b

        table = self.store.offline.table(view, ts_column=cv.ts_column)
        # no start: from the beginning of time; no end: up to the last event read (inclusive), so the events
        # after it stay the stream's (OfflineTable.write_range)
        lo, hi = ALL_TIME[0] if self.start_ms is None else self.start_ms, self.end_ms
        try:
            version = table.write_range(pa.RecordBatchReader.from_batches(schema, events()), lo, hi, unique_on,
                                        rows_key=cv.rows_fingerprint)
        except FeatureStoreError:
            raise
        except Exception as exc:  # the engine failed while computing rows: name the view, keep one line
            raise FeatureStoreError(f"backfill of view '{view}' failed: {_first_line(exc)}") from None
        self._taken.update({("source", source), ("group", group)})
        return BackfillResult(view, count[EVENT], count[DEAD_LETTER], count[NULL_KEY], version,
                              time.perf_counter() - t0, source, dict(reasons), count[VIEW_FAILED])

    def _keep(self, batch: pa.RecordBatch, source: str, take_dead: bool, take_null_key: bool, count: Counter,
              reasons: Counter) -> None:
        kind = batch.column(KIND)
        for k, take in ((DEAD_LETTER, take_dead), (NULL_KEY, take_null_key), (VIEW_FAILED, True)):
            rows = batch.filter(pc.equal(kind, k))
            if not rows.num_rows:
                continue
            count[k] += rows.num_rows
            reason = rows.column(REASON).to_pylist()
            if k != NULL_KEY:
                reasons.update(reason)
            if take:
                src = self.schemas[source]
                read = k == DEAD_LETTER  # not an event: its row as read (an event's: its record, dead_letter_row)
                for r, row, ts in zip(reason, rows.column(ROW).to_pylist(), rows.column(TS_MS).to_pylist()):
                    self.dead[source].append({"reason": r, "row": dead_letter_row(row, ts, src.schema, src.timestamp,
                                                                                  as_read=read),
                                              "event_time_ms": ts})

    def finish(self, results: Sequence[BackfillResult]) -> BackfillResults:
        """Replace each source's dead-letter table with what this run found; ``results`` with the reasons per
        source (dead letters and null join keys)."""
        import datetime as dt

        out: Dict[str, Counter] = {}
        at = dt.datetime.fromtimestamp(self.now_ms / 1000, tz=dt.timezone.utc)
        for source, rows in self.dead.items():
            out[source] = Counter(r["reason"] for r in rows)
            table = dead_letter_table(self.store, source)
            if not rows and table.version is None:
                continue  # never had a dead letter: no table
            data = pa.Table.from_pylist(
                [{**r, "backfill_start_ms": self.start_ms, "backfill_end_ms": self.end_ms, DEAD_LETTERS_TS: at}
                 for r in rows], schema=DEAD_LETTER_SCHEMA)
            table.write_range(data, *ALL_TIME)
        for source, reasons in out.items():
            dead = sum(n for r, n in reasons.items() if not r.startswith(NULL_KEY_PREFIX))
            record_ingest(self.store, source, "backfill", self.now_ms, dead, records_read(results, source))
        where = {s: str(dead_letter_table(self.store, s).path) for s in self.dead}
        return BackfillResults(results, out, where)


def dead_letter_row(text: Optional[str], ts_ms: Optional[int], schema: Sequence[Tuple[str, str]],
                    ts_column: str, as_read: bool = False) -> Optional[str]:
    """The source row of a backfill's dead letter that is an event (a view's part fails on it, or it has no join
    key; ``text``: the engine's JSON of the row as read) as the stream face's JSON record of the event
    (``datagen.to_json_record``), made here once for both engines (DuckDB's ``to_json`` writes a timestamp as text,
    Flink's ``JSON_OBJECT`` sorts the keys and writes raw integers): the declared columns in schema order,
    compact; the event time as epoch ms; a timestamp value as ISO-8601 UTC text with its microseconds (the Flink
    backfill reads it as epoch us); NaN null; JSON text as the value it holds. ``as_read`` (a row that is no event:
    a value or its time could not be read): the values as read, in schema order, but a time in the record form where
    the engine read it as one (:func:`featurestore.engines.read_times.read_time`: DuckDB writes its text, the Flink
    backfill a raw integer) and JSON text as the value it holds (DuckDB writes a nested column as an object, the Flink
    backfill as its text), so both backfills write one row."""
    import json

    import pandas as pd

    from featurestore import dtypes
    from featurestore.datagen_records import _us_text, time_value_text
    from featurestore.engines.read_times import read_time

    if text is None:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return text
    if not isinstance(raw, dict):
        return text
    out = {}
    for name, dtype in schema:
        value = raw.get(name)
        if as_read:  # read values as read; a time and JSON in one form for both engines (engines.read_times)
            if dtype == dtypes.TIMESTAMP and value is not None:
                value = read_time(value, name == ts_column, ts_ms)
            elif dtype == dtypes.JSON and isinstance(value, str):
                value = _json_value(value)
        elif name == ts_column and ts_ms is not None:
            value = int(ts_ms)
        elif isinstance(value, float) and value != value:
            value = None
        elif dtype == dtypes.TIMESTAMP and value is not None and name != ts_column:
            try:
                value = _us_text(value) if isinstance(value, int) else time_value_text(pd.Timestamp(value))
            except (ValueError, TypeError, OverflowError):
                pass
        elif dtype == dtypes.JSON and isinstance(value, str):
            value = _json_value(value)
        out[name] = value
    return json.dumps(out, separators=(",", ":"), ensure_ascii=False)


def _json_value(text: str):
    """JSON text as the value it holds; text that is no JSON as it is."""
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text


def records_read(results: Sequence[BackfillResult], source: str) -> int:
    """The rows of ``source`` a backfill read, each counted once: its dead letters plus the events of the view that
    kept the most (stored, without a join key, or failing in it: one event failing in two views is one record)."""
    views = [r for r in results if r.source == source]
    return max((r.dead_letters for r in views), default=0) + max(
        (r.rows + r.rejected_null_key + r.failed for r in views), default=0)


INGEST_DIR = "ingest"  # under the state folder: per source, the dead letters of its last backfill


def _ingest_path(store, source: str):
    return store.config.state_path / INGEST_DIR / f"{store.config.project}.{source}.json"


def record_ingest(store, source: str, by: str, at_ms: int, dead_letters: int, records: int) -> None:
    """Record the dead letters of the last ``by`` run over ``source`` (``monitor`` breaches on their share):
    the source's own plus one per (event, view) a view's filter, projection or feature input fails on.
    ``records``: the source rows the run read, each once, as far as it counts them (:func:`records_read`: a
    filter on every view makes it a lower bound, the share an upper one)."""
    import json
    import os

    path = _ingest_path(store, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"by": by, "at": at_ms, "dead_letters": int(dead_letters), "records": int(records)}))
    os.replace(tmp, path)  # a reader sees the old record or the new one, never half of one


PUSH_BUCKET_MS = 3_600_000  # push counters are kept per hour, so monitor can watch a recent window
PUSH_KEEP_MS = 31 * 86_400_000  # hours older than this are dropped from the file (the totals stay)


def add_pushed(store, source: str, dead_letters: int, records: int, now_ms: Optional[int] = None) -> None:
    """Add one push's rows to ``source``'s push counters: totals since the first push (``/metrics`` exports
    them as Prometheus counters) and per hour (``monitor`` breaches on the dead letters' share over the last
    ``monitor.dead_letter_window``, so an old bad push stops breaching once it is out of the window). Pushes
    of several processes at once (server workers) each count once: the read-modify-write holds a ``flock``."""
    import fcntl
    import json
    import os

    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    path = _push_path(store, source)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        now = pushed(store, source) or {"dead_letters": 0, "records": 0, "hours": {}}
        hours = {h: c for h, c in now.get("hours", {}).items() if int(h) >= now_ms - PUSH_KEEP_MS}
        hour = str(now_ms // PUSH_BUCKET_MS * PUSH_BUCKET_MS)
        dead, rows = hours.get(hour, (0, 0))
        hours[hour] = [dead + int(dead_letters), rows + int(records)]
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"dead_letters": now["dead_letters"] + int(dead_letters),
                                   "records": now["records"] + int(records), "hours": hours}))
        os.replace(tmp, path)


def pushed(store, source: str, since_ms: Optional[int] = None) -> Optional[dict]:
    """What :func:`add_pushed` counted for ``source``: ``dead_letters`` and ``records`` since the first push
    (None: nothing pushed), or, with ``since_ms``, of the pushes in the hours from ``since_ms``'s on (a file
    of an older version, without hours, counts nothing in a window)."""
    import json

    try:
        data = json.loads(_push_path(store, source).read_text())
        if not (isinstance(data.get("dead_letters"), int) and isinstance(data.get("records"), int)):
            return None
        hours = data.get("hours") if isinstance(data.get("hours"), dict) else {}
        data["hours"] = {h: c for h, c in hours.items() if h.isdigit() and isinstance(c, list) and len(c) == 2}
    except (OSError, ValueError, AttributeError):
        return None
    if since_ms is None:
        return data
    first = since_ms // PUSH_BUCKET_MS * PUSH_BUCKET_MS
    inside = [c for h, c in data["hours"].items() if int(h) >= first]
    return {"dead_letters": sum(int(c[0]) for c in inside), "records": sum(int(c[1]) for c in inside)}


def _push_path(store, source: str):
    return store.config.state_path / INGEST_DIR / "push" / f"{store.config.project}.{source}.json"


def last_ingest(store, source: str) -> Optional[dict]:
    """What :func:`record_ingest` recorded last for ``source`` (None: no backfill recorded, or unreadable)."""
    import json

    try:
        data = json.loads(_ingest_path(store, source).read_text())
        return data if isinstance(data.get("dead_letters"), int) and isinstance(data.get("records"), int) else None
    except (OSError, ValueError, AttributeError):
        return None


def stale_kind(manifest: dict, cv) -> Optional[str]:
    """Whether the rows of a view's offline table (its ``manifest``) are not the rows of the compiled view
    ``cv`` (their filter, projections, join keys or source columns changed since): ``"mixed"`` / ``"batch"``
    (backfilled under two / an earlier definition), ``"stream"`` (streamed under an earlier one), else None."""
    from featurestore.stores.offline import MIXED_ROWS

    key = manifest.get("batch_rows_key")
    if key is not None and key != cv.rows_fingerprint:
        return "mixed" if key == MIXED_ROWS else "batch"
    streamed = (manifest.get("stream") or {}).get("rows_key")
    if streamed is not None and streamed != cv.rows_fingerprint:
        return "stream"
    return None


def stale_rows(manifest: dict, cv) -> Optional[str]:
    """Why the rows of a view's offline table (its ``manifest``) are not the rows of the compiled view ``cv``
    (:func:`stale_kind`), else None."""
    kind = stale_kind(manifest, cv)
    if kind in ("mixed", "batch"):
        what = ("holds rows backfilled under two definitions (a part of its range was backfilled after its "
                "filter, projections or source changed)" if kind == "mixed" else
                "was backfilled under an earlier definition (its filter, projections or source, or the config's "
                "event_time.max_future, changed since)")
        return (f"view '{cv.name}': its offline table {what}; backfill it again (featurestore backfill --view "
                f"{cv.name}, the whole range) before reading it")
    if kind == "stream":
        return (f"view '{cv.name}': its offline table holds rows streamed under an earlier definition (its "
                "filter, projections or source, or event_time.max_future, changed since); run the stream (it "
                "rebuilds them under this one) before reading it")
    return None


def online_fix(store, cv) -> str:
    """The exact commands that make the online state of ``cv`` answer again, for a refusal's message: materialize
    the view, after backfilling it first when its offline table holds rows of an earlier definition (materialize
    reads that table and would refuse it), or the stream when the stream wrote those rows."""
    materialize = f"'featurestore materialize --view {cv.name}'"
    kind = None
    if store is not None:
        from featurestore.errors import FeatureStoreError

        try:
            table = store.offline.table(cv.name, ts_column=cv.ts_column)
            version = table.version
            kind = stale_kind(table.manifest(version), cv) if version is not None else None
        except (FeatureStoreError, OSError):  # the refusal stands; its fix names the usual step
            kind = None
    if kind in ("mixed", "batch"):
        return (f"run 'featurestore backfill --view {cv.name}' (the whole range: its offline table holds rows of "
                f"an earlier definition), then {materialize}")
    if kind == "stream":
        return (f"run 'featurestore stream --view {cv.name}' (its offline table holds rows streamed under an "
                "earlier definition: the stream rebuilds them and the online state)")
    return f"run {materialize}"


class BackfillResults(list):
    """One :class:`BackfillResult` per view (a list), plus ``dead_letters``: per source of the run, the
    reasons of the rows it did not store (dead letters and null-join-key rows) and ``tables``: where each
    source's dead letters are."""

    def __init__(self, results: Sequence[BackfillResult], dead_letters: Dict[str, Counter], tables: Dict[str, str]):
        super().__init__(results)
        self.dead_letters = dead_letters
        self.tables = tables

    def summary(self) -> List[str]:
        """One line per source with dead letters or rows without a join key (nothing when all went in)."""
        return [summary_line(s, reasons, self.tables[s]) for s, reasons in self.dead_letters.items() if reasons]


def summary_line(source: str, reasons: Counter, where: str) -> str:
    """One line per source: how many dead letters (and null-join-key rows) a backfill found, by reason."""
    dead = {r: n for r, n in reasons.items() if not r.startswith(NULL_KEY_PREFIX)}
    null_key = sum(n for r, n in reasons.items() if r.startswith(NULL_KEY_PREFIX))
    parts = ", ".join(f"{n} {r}" for r, n in sorted(dead.items(), key=lambda x: (-x[1], x[0])))
    text = f"source '{source}': {sum(dead.values()):,} dead letter{'s' if sum(dead.values()) != 1 else ''}"
    text += f" ({parts})" if parts else ""
    if null_key:
        text += f", {null_key:,} row{'s' if null_key != 1 else ''} without a join key"
    return text + f" -> {where}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["BackfillResult", "BackfillResults", "BackfillRun", "dead_letter_table", "summary_line", "ALL_TIME",
           "BACKFILL_DEAD_LETTERS_DIR", "DEAD_LETTER_SCHEMA"]
