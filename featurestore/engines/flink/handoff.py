"""Batch -> stream hand-off: a fresh stream job on a topic that lost its first records (Kafka's retention
is shorter than the longest window) seeds its online state from the offline store, so its online values
are exact from the first lookup, with no gap and no double count. Design: docs/streaming.md, "Batch ->
stream hand-off".

* **Ownership is the identity of an event.** An offline table holds each event once: its batch face owns
  the ranges it backfilled (``batch_ranges``), the stream owns every other record, each once by Kafka
  offset (``stream.next_offsets``). The hand-off splits the online state by the same rule, against one
  table version ``V`` fixed at the start: the seed is every row of ``V``; the job adds a Kafka record
  only when ``V`` does not hold it: its offset is at or after ``V``'s next offset of its partition, and
  its event time lies outside ``V``'s batch ranges, or inside a *claimed* one (computed under the view's
  current definition, ``ViewSeed.claim``) beyond the rows ``V`` holds there with the same member content
  (``held``, counted per entity when the seed is written): the k-th such record of a content is added
  when ``k > held``, as the committer adds a streamed row inside a claimed range that the table lacks
  (``stores/offline_claimed.py``). So online = the offline table the committer goes on writing,
  whatever the order of records, late events and ties at a range's end.
* **The cut-over (offsets <-> event time).** Records before a partition's first retained offset are
  gone; the table holds them only if they are below its next offset (streamed before) or inside its
  batch ranges. Their event times are unknown, but the source's ``watermark_delay`` bounds lateness: a
  record produced before an on-time retained one (event time ``t``) has an event time at most ``t +
  watermark_delay``. The first retained record may itself be late (then it bounds nothing), so ``t`` is
  the latest event time among the first ``HEAD_RECORDS`` retained records (one of them on time is
  enough). So the cut-over of a partition is ``C = t + watermark_delay``, and a view hands off
  when one batch range ``[S, E)`` holds ``C`` (``S <= C < E``). Views with an unbounded window need
  ``S`` at the beginning of time; bounded views answer from ``S + retention`` on (their horizon).
  A partition with no retained record bounds nothing but the clock: ``C = now + event_time.max_future``.
* **Where the seed lives.** :func:`prepare` writes the seed (per view and entity, the rows of ``V`` as
  online-store members, ids ``-1, -2, ...``, trimmed to the view's retention as the job's state operator
  trims an entity: :func:`seed_record`) to an immutable SQLite file under the job's checkpoint
  root, materializes the same rows into Redis (so lookups are exact before the job reads anything), and
  only then records it in ``_handoff.json`` (``since``: when). The job's state operator reads an
  entity's seed whenever it builds the entity from keyed state (first sight, restore, cache eviction),
  so the seed is never copied into keyed state and a restore finds it again: a snapshot uses the entry
  recorded last before it was taken. A crash before the record leaves nothing in use (the next start
  is fresh again and redoes it); one after it restores a snapshot of this run or an older one, each
  with its own entry.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from featurestore.errors import FeatureStoreError, InfraError, RequestError
from featurestore.stores import time_ranges
from featurestore.stores.online_format import FORMAT_VERSION

log = logging.getLogger("featurestore.streaming")

HANDOFF_FILE = "_handoff.json"  # under the job's checkpoint root
SEEDS_DIR = "seeds"
KEEP_ENTRIES = 3  # older seed entries (and files) are deleted
SCAN_RECORDS = 1_000  # records read per partition looking for the first one with a readable event time
# readable records whose latest event time bounds a partition's lost records: the bound holds unless every
# one of them is late beyond the watermark delay (p^4 for a share p of late records); more would push the
# cut-over of a sparse partition later (the span of that many records), refusing hand-offs needlessly
HEAD_RECORDS = 4
OFFSET_MASK = (1 << 40) - 1
SEED_BATCH_ENTITIES = 1_000  # entities per batch written to the seed (each with its retention's members)


@dataclass
class ViewSeed:
    """How one view's online state is split between the seed (table version ``version``) and the stream."""

    view: str
    version: int
    ranges: List[List[int]]  # the version's batch ranges: Kafka records with an event time inside are the seed's
    next_offsets: Dict[int, int]  # per partition: Kafka records below are in the seed (streamed before)
    cut: Optional[int] = None  # seed and stream hold no event before it (bounded views; None: every event)
    horizon: Optional[int] = None  # requests before it are refused (cut + retention)
    # the batch ranges whose rows were computed under the view's current definition: a record inside one that
    # the version lacks is still added (the offline committer's rule: ``stores/offline_claimed.py``)
    claim: List[List[int]] = field(default_factory=list)

    def options(self) -> dict:
        return {"ranges": self.ranges, "next": {str(p): o for p, o in self.next_offsets.items()},
                "cut": self.cut, "horizon": self.horizon, "version": self.version, "claim": self.claim}


@dataclass
class HandOff:
    views: Dict[str, ViewSeed] = field(default_factory=dict)
    cutover: Dict[Tuple[str, int], Tuple[int, str]] = field(default_factory=dict)  # (topic, partition) -> (C ms, why)


# -- reading the topic ----------------------------------------------------------------------------------------
def first_event_times(bootstrap: str, topic: str, source, lows: Dict[int, Tuple[int, int]],
                      timeout: float = 60) -> Dict[int, Optional[Tuple[int, int]]]:
    """Per partition (``lows``: partition -> (first offset, end offset)), the (offset, event time ms) of the
    latest event time among the first ``HEAD_RECORDS`` retained records of ``source``'s stream face that
    have one (a JSON object with an integer event time, or an Avro datum of its writer schema) in the
    supported range; None when the first ``SCAN_RECORDS`` records (or all there are) have none. The
    latest, not the first: a late record at the head of the partition (behind the watermark delay) does
    not bound what was lost before it, the on-time records after it do (see the module docstring)."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    from featurestore.semantics import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS

    out: Dict[int, Optional[Tuple[int, int]]] = {p: None for p in lows}
    read_time = _event_time_reader(source)
    todo = {p for p, (low, high) in lows.items() if high > low}
    if not todo:
        return out
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"featurestore-probe-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        consumer.assign([TopicPartition(topic, p, lows[p][0]) for p in sorted(todo)])
        seen = {p: 0 for p in todo}
        readable = {p: 0 for p in todo}
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.partition() not in todo:
                continue
            p = msg.partition()
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:  # scanned every record
                    todo.discard(p)
                continue
            seen[p] += 1
            ts = read_time(msg.value())
            if ts is not None and MIN_EVENT_TIME_MS <= ts < MAX_EVENT_TIME_MS:
                readable[p] += 1
                if out[p] is None or ts > out[p][1]:
                    out[p] = (msg.offset(), ts)
            if (readable[p] < HEAD_RECORDS and seen[p] < SCAN_RECORDS + HEAD_RECORDS
                    and msg.offset() + 1 < lows[p][1]):
                continue
            todo.discard(p)
            consumer.pause([TopicPartition(topic, p)])  # done: the other partitions' records only
        if todo:
            raise InfraError(f"could not read the first records of topic '{topic}' within {timeout} s")
        return out
    except KafkaException as exc:
        raise InfraError(f"cannot read topic '{topic}' at {bootstrap}: {exc}") from None
    finally:
        consumer.close()


def _event_time_reader(source):
    """record value -> its event time (epoch ms) or None when unreadable, for the source's record format."""
    ts_column = source.timestamp
    if source.stream.is_avro:
        return _avro_event_time_reader(source)

    def read(value: Optional[bytes]) -> Optional[int]:
        try:
            doc = json.loads(value) if value else None
        except (ValueError, UnicodeDecodeError):
            return None
        ts = doc.get(ts_column) if isinstance(doc, dict) else None
        return ts if isinstance(ts, int) and not isinstance(ts, bool) else None

    return read


def _avro_event_time_reader(source):
    """The event time of an Avro record (the datum of the writer schema, behind Confluent's header with the
    pinned id for ``avro-confluent``), floored to ms from the field's unit; None when it does not decode to
    its last byte."""
    import copy
    import io

    from featurestore.extras import require
    from featurestore.model import avro

    fastavro = require("fastavro", f"the hand-off of Avro source '{source.name}'")
    writer = copy.deepcopy(avro.writer_schema(source))
    # Every timestamp field (a created column's too) as the raw long: fastavro would turn timestamp-* into
    # datetimes, and fail on one beyond year 9999 (a dead letter of the job, not a record without a time).
    times = {c for c, dtype in source.schema if dtype == "timestamp"}
    for field in writer["fields"]:
        if field["name"] in times:
            typ = field["type"]
            field["type"] = ([t if not isinstance(t, dict) else "long" for t in typ] if isinstance(typ, list)
                             else "long")
    schema = fastavro.parse_schema(writer)
    divisor = {"ms": 1, "us": 1_000, "ns": 1_000_000}[avro.column_readers(source)[source.timestamp]]
    stream = source.stream
    framed = stream.format == "avro-confluent"

    def read(value: Optional[bytes]) -> Optional[int]:
        if not value:
            return None
        if framed:
            if len(value) < 5 or value[0] != 0 or (
                    stream.avro_schema_id is not None and int.from_bytes(value[1:5], "big") != stream.avro_schema_id):
                return None
            value = value[5:]
        buf = io.BytesIO(value)
        try:
            rec = fastavro.schemaless_reader(buf, schema, None)
        except Exception:  # noqa: BLE001 - any decoding failure: not a record with an event time
            return None
        ts = rec.get(source.timestamp) if isinstance(rec, dict) and buf.tell() == len(value) else None
        return ts // divisor if isinstance(ts, int) and not isinstance(ts, bool) else None

    return read


# -- planning -------------------------------------------------------------------------------------------------
def plan(store, names: Sequence[str], ends: Dict[tuple, tuple], restored, partial_history: bool = False,
         first_times=None) -> Optional[HandOff]:
    """The hand-off of a fresh start (``restored`` None) on topics that lost their first records, or None
    when nothing was lost (or a snapshot is restored: it continues its own state). Refuses (RequestError)
    when a view's offline table does not cover the gap, unless ``partial_history``: then those views are
    built from what the topic still holds (the others still hand off)."""
    from featurestore.stores.online_redis import retention

    if restored is not None:
        return None
    lost = {tp: low for tp, (low, _high) in ends.items() if low > 0}
    topics = {t for t, _ in lost}
    views = [n for n in names if store.repo.views[n].online and store.repo.views[n].source.stream.topic in topics]
    if not views:
        return None
    first_times = {} if first_times is None else first_times
    handoff, problems = HandOff(), {}
    for n in views:
        seed = _view_seed(store, n, ends, first_times, handoff.cutover)
        if isinstance(seed, str):
            problems[n] = seed
        else:
            handoff.views[n] = seed
    if problems and not partial_history:
        (topic, part), low = sorted(lost.items())[0]
        needs = []
        for n in problems:
            r = retention(store.compiled(n))
            every = "every event (an unbounded window or a latest feature without TTL)"
            needs.append(f"{n}: {every if r.keep_base else _span(r.window_ms)}")
        raise RequestError(
            f"topic '{topic}' no longer holds its first records (partition {part} starts at offset {low}; "
            f"{len(lost)} partition(s) affected): a fresh stream job would build the online values of "
            f"{', '.join(problems)} from part of their history. They need {'; '.join(needs)}. No offline "
            f"history covers the gap: {'; '.join(f'{n}: {why}' for n, why in problems.items())}. Backfill the "
            "views from the batch face up to the topic's first records (then the job seeds its online state "
            "from the offline store), start with partial_history=True (CLI: --partial-history) if the records "
            "left on the topic cover what they need, or stream a topic that holds the whole history.")
    for n, why in problems.items():
        log.warning("view %s: built from part of its history (partial_history): %s", n, why)
    return handoff if handoff.views else None


def _view_seed(store, name: str, ends, first_times: dict, cutover: dict):
    """The view's ViewSeed, or why its offline table does not cover what the topic lost."""
    from featurestore.engines.backfill import stale_rows
    from featurestore.engines.flink.commit import table_record, view_identity
    from featurestore.stores.online_redis import retention

    cv = store.compiled(name)
    source = store.repo.views[name].source
    table = store.offline.table(name, ts_column=cv.ts_column)
    if table.version is None:
        return "no offline table (never backfilled)"
    manifest = table.manifest()
    ranges = time_ranges.normalized(manifest.get("batch_ranges", []))
    record = table_record(table)
    ident = view_identity(store, name)
    if record is not None and (record.get("topic"), record.get("fingerprint")) != (ident.topic, ident.fingerprint):
        return "its offline table was streamed under another definition or topic (a rebuild needs the first records)"
    if stale_rows(manifest, cv) is not None:  # the streamed rows (above) are this definition's, the backfilled not
        return "its offline table was backfilled under another definition (backfill it again)"
    nexts = {int(p): int(o) for p, o in (record or {}).get("next_offsets", {}).items()}
    topic = source.stream.topic
    starts = []
    for (t, p), (low, high) in sorted(ends.items()):
        if t != topic or low <= nexts.get(p, 0):
            continue  # nothing lost, or every lost record is in the table already (streamed before)
        if (t, p) not in cutover:
            if topic not in first_times:
                parts = {q: span for (tt, q), span in ends.items() if tt == topic}
                first_times[topic] = first_event_times(store.config.kafka_bootstrap, topic, source, parts)
            first = first_times[topic].get(p)
            if first is None:  # no retained record with an event time: only the clock bounds the lost ones
                c = int(time.time() * 1000) + store.config.max_future_ms
                why = f"partition {p} holds no record with an event time (from offset {low})"
            else:
                c = first[1] + int(source.watermark_delay or 0)
                why = (f"the latest event time among the first {HEAD_RECORDS} records of partition {p} from offset "
                       f"{low} is {_iso(first[1])} (offset {first[0]}); plus the watermark delay "
                       f"{int(source.watermark_delay or 0)} ms")
            cutover[(t, p)] = (c, why)
        c, why = cutover[(t, p)]
        held = [r for r in ranges if r[0] <= c < r[1]]
        if not held:
            if not ranges:  # e.g. the table a stream created without rows for a view no event reached
                return f"no batch range (never backfilled) reaches the cut-over {_iso(c)} ({why})"
            got = ", ".join(f"[{_iso(s)}, {_iso(e)})" for s, e in ranges)
            return (f"its batch ranges ({got}) do not reach the cut-over {_iso(c)} "
                    f"({why})")
        starts.append(held[0][0])
    from featurestore.semantics import MIN_EVENT_TIME_MS
    from featurestore.stores.offline import MIXED_ROWS
    from featurestore.stores.offline_claimed import claimable

    claim = claimable(manifest, cv.rows_fingerprint, MIXED_ROWS)
    cut = max(starts, default=MIN_EVENT_TIME_MS)
    if cut <= MIN_EVENT_TIME_MS:  # the range starts before any supported event time: it holds every event
        return ViewSeed(name, int(table.version), ranges, nexts, claim=claim)
    if retention(cv).keep_base:
        return (f"its batch range holding the cut-over starts at {_iso(cut)}, but an unbounded window (or a latest "
                "feature without TTL) needs every event: backfill it without a start")
    return ViewSeed(name, int(table.version), ranges, nexts, cut, cut + retention_ms(store, name), claim)


def seedable(store, states: Dict[str, str]) -> Dict[str, str]:
    """Per online view whose next stream start is fresh (``states``: ``stream_commit.stream_states``, ``new``)
    and whose offline table holds a backfilled range: that range's end (ISO). A start on a topic that lost
    its records before it hands off (``plan``); ``featurestore plan`` says so. No Kafka call."""
    out = {}
    for n, state in states.items():
        if state != "new" or not store.repo.views[n].online:
            continue
        table = store.offline.table(n, ts_column=store.compiled(n).ts_column)
        if table.version is None:
            continue
        ranges = time_ranges.normalized(table.manifest().get("batch_ranges", []))
        if ranges:
            out[n] = _iso(ranges[-1][1])
    return out


def announce(handoff: HandOff) -> str:
    """One line: which topic partitions lost their first records, the cut-over, and which views are seeded."""
    (topic, part), (c, _why) = min(handoff.cutover.items()) if handoff.cutover else (("?", 0), (0, ""))
    more = f" (and {len(handoff.cutover) - 1} more partition(s))" if len(handoff.cutover) > 1 else ""
    views = ", ".join(f"{n} (table version {s.version})" for n, s in handoff.views.items())
    return (f"topic '{topic}' partition {part}{more} no longer holds its first records; cut-over {_iso(c)}: seeding the "
            f"online state of {views} from the offline store, then streaming the records those versions do not hold")


def retention_ms(store, name: str) -> int:
    """The view's retention ``R`` (largest finite window or TTL): a seeded bounded view's horizon is ``cut + R``."""
    from featurestore.stores.online_redis import retention

    return retention(store.compiled(name)).window_ms


def check_history(store, names: Sequence[str], ends: Dict[tuple, tuple], restored,
                  partial_history: bool = False) -> None:
    """Refuse a fresh start (no snapshot to restore) whose online views would be built from part of their
    history and whose offline tables do not cover the gap (see :func:`plan`): the stream builds each
    value from the records it reads, so on a topic whose first records Kafka's retention deleted it
    would serve windows and latest values that miss events, silently. ``partial_history=True`` accepts
    that (when the records still on the topic cover every window of those views)."""
    plan(store, names, ends, restored, partial_history)


def _span(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size and ms % size == 0:
            return f"the last {ms // size}{unit}"
    return f"the last {ms} ms"


def _iso(ms: int) -> str:
    from featurestore.semantics import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS

    if ms < MIN_EVENT_TIME_MS:
        return "-inf"
    if ms >= MAX_EVENT_TIME_MS:
        return "+inf"
    import pandas as pd

    return pd.Timestamp(ms, unit="ms", tz="UTC").isoformat().replace("+00:00", "Z")


# -- the seed -------------------------------------------------------------------------------------------------
def _relation(con, store, seed: ViewSeed) -> str:
    from featurestore.engines import duckdb_sql as dsql
    from featurestore.engines.duckdb_engine import arrow_schema, parquet_relation

    cv = store.compiled(seed.view)
    table = store.offline.table(seed.view, ts_column=cv.ts_column)
    files = table.files(seed.version)
    if not files:
        con.register(f"__seed_empty_{seed.view}", arrow_schema(cv).empty_table())
        return f"__seed_empty_{seed.view}"
    # (an s3:// root: an Arrow dataset over the table's filesystem; DuckDB's own S3 reader is a download)
    rel = parquet_relation(con, files, table.filesystem, schema=table.schema(seed.version) if table.remote else None)
    if seed.cut is None:
        return rel
    return f"(SELECT * FROM {rel} WHERE epoch_ms({dsql.q(cv.ts_column)}) >= {int(seed.cut)})"


def entity_state(layout, keep_base: bool, codec, cut: Optional[int], horizon: Optional[int],
                 folded: Optional[dict], members: Sequence[str]):
    """An entity's kernel state (``featurestore.kernel.entity.EntityState``) as the stream's state operator
    builds it before the entity's batches from keyed state: from its folded entry (``folded``: ``cut``,
    ``h`` the horizon, ``base`` the encoded base row; keyed state's, else its seed record's), else the
    view's seed ``cut`` / ``horizon``; then the seed's ``members`` at or after the cut (those behind it are
    in the base). ``codec``: the view's ``online_format.Members``."""
    from featurestore.kernel.entity import EntityState
    from featurestore.online_reply import loads

    if folded:
        cut = folded["cut"]
    state = EntityState(layout, keep_base, cut)
    if folded:
        if folded["base"] is not None:
            state.base = layout.decode(folded["base"])
            if cut is not None:
                state.prefixes[cut] = state.base
        state.horizon = folded["h"]
    elif cut is not None:
        state.horizon = horizon
    for member in members:
        ev = loads(member)
        if cut is None or ev[1] >= cut:
            state.add(*codec.decode(ev), member)
    return state


def seed_record(cv, seed: ViewSeed, members: Sequence[str], slack_ms: int = 0) -> Tuple[List[str], Optional[dict]]:
    """What the seed file keeps of one entity: the entity as the state operator holds it after its first
    flush (built from every member, then trimmed to the view's retention relative to its latest event,
    ``kernel.entity.trim_to_retention``): the members at or after its cut, and its folded entry (cut,
    horizon, the base of the events behind the cut; None when nothing was cut). So a rebuild reads
    O(retention) members, never the entity's whole offline history, and builds the same state."""
    from featurestore.kernel.entity import trim_to_retention
    from featurestore.online import view_layout
    from featurestore.stores import online_format as ofmt
    from featurestore.stores.online_redis import retention

    layout, r = view_layout(cv), retention(cv)
    state = entity_state(layout, r.keep_base, ofmt.members(cv), seed.cut, seed.horizon, None, members)
    trim_to_retention(state, r.window_ms, slack_ms)
    kept = [member for _order, _inputs, member in state.events.values()]  # (insertion order: the seed's)
    if state.cut is None:
        return kept, None
    base = layout.encode(state.base) if state.base is not None else None
    return kept, {"cut": state.cut, "h": state.horizon, "base": base}


def write_seed(store, handoff: HandOff, path: Path, slack_ms: int = 0) -> Dict[str, int]:
    """The seed file (SQLite: ``seed(view, entity, members, folded)``, members one per line, ``folded`` the
    pickled entry of :func:`seed_record`) and, from the same rows, each view's online state in Redis
    (``materialize``); returns the seeded entities per view. ``slack_ms``: the job's (its trim keeps
    events that much longer)."""
    from featurestore.engines.flink.handoff_seed import held_rows, seed_rows
    from featurestore.stores.offline_reads import retry_moved
    from featurestore.stores.online_redis import encode_entity, for_store, retention

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    db = sqlite3.connect(tmp)
    counts: Dict[str, int] = {}
    con = store._connect()
    online = for_store(store)
    try:
        db.execute("CREATE TABLE seed (view TEXT NOT NULL, entity TEXT NOT NULL, members TEXT NOT NULL, "
                   "folded BLOB, PRIMARY KEY (view, entity)) WITHOUT ROWID")
        db.execute("CREATE TABLE held (view TEXT NOT NULL, entity TEXT NOT NULL, content INTEGER NOT NULL, "
                   "rows INTEGER NOT NULL, PRIMARY KEY (view, entity, content)) WITHOUT ROWID")
        db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")  # the members' online format (online_format)
        for name, seed in handoff.views.items():
            def seed_view(name=name, seed=seed):  # idempotent: run again when a commit archived a listed file
                cv = store.compiled(name)
                relation = _relation(con, store, seed)
                r = retention(cv)
                for rows in seed_rows(con, cv, seed, relation, r, slack_ms, SEED_BATCH_ENTITIES):
                    db.executemany("INSERT OR REPLACE INTO seed VALUES (?, ?, ?, ?)",
                                   [(name, encode_entity(keys), "\n".join(kept),
                                     pickle.dumps(folded) if folded is not None else None)
                                    for keys, kept, folded in rows])
                db.execute("DELETE FROM held WHERE view = ?", (name,))
                for rows in held_rows(con, cv, relation, seed.claim):
                    db.executemany("INSERT INTO held VALUES (?, ?, ?, ?)",
                                   [(name, encode_entity(list(keys)), h, n) for keys, h, n in rows])
                ((counts[name],),) = db.execute("SELECT count(*) FROM seed WHERE view = ?", (name,)).fetchall()
                online.materialize_view(con, cv, relation, seed.horizon)
            retry_moved(seed_view, store._offline_root, f"the hand-off seed of view '{name}'")
        db.commit()
    except BaseException:
        db.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    db.close()
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return counts


def read_seed(db, entity: str, folded: bool = True) -> Dict[str, Tuple[List[str], Optional[dict]]]:
    """One entity's seed records per view name (``entity``: ``online_redis.encode_entity``): its members and
    folded entry (:func:`seed_record`). ``folded=False``: a seed file written before seeds were trimmed
    (no such column; every member, no entry)."""
    query = f"SELECT view, members, {'folded' if folded else 'NULL'} FROM seed WHERE entity = ?"
    return {name: (members.split("\n") if members else [], pickle.loads(f) if f is not None else None)
            for name, members, f in db.execute(query, (entity,))}


def held(db, view: str, entity: str, content: int) -> int:
    """How many rows of the seed's table version inside its claimed ranges have this member content
    (``handoff_seed.content_key``); 0 in a seed file written before they were counted."""
    try:
        row = db.execute("SELECT rows FROM held WHERE view = ? AND entity = ? AND content = ?",
                         (view, entity, content)).fetchone()
    except sqlite3.OperationalError:  # no such table
        return 0
    return int(row[0]) if row else 0


def seed_has_folded(db) -> bool:
    return "folded" in {row[1] for row in db.execute("PRAGMA table_info(seed)")}


def _entries(root: Path) -> List[dict]:
    try:
        return json.loads((root / HANDOFF_FILE).read_text())["entries"]
    except FileNotFoundError:
        return []


def _record(root: Path, seed: Optional[dict]) -> None:
    """Append an entry (``seed``: the operator's options, None: no seed) taken by snapshots from now on."""
    from featurestore.engines.flink.commit import _write_json

    entries = _entries(root)
    if not entries and seed is None:
        return  # nothing to tell apart
    entries.append({"since": time.time(), "seed": seed})
    for old in entries[:-KEEP_ENTRIES]:
        if old.get("seed"):
            Path(old["seed"]["path"]).unlink(missing_ok=True)
    _write_json(root / HANDOFF_FILE, {"entries": entries[-KEEP_ENTRIES:]})


def recorded(root: Path, snapshot: Path) -> Optional[dict]:
    """The seed a snapshot's state was built on: the entry recorded last before it was taken."""
    try:
        taken = (Path(snapshot) / "_metadata").stat().st_mtime
    except FileNotFoundError:
        taken = time.time()
    best = None
    for entry in _entries(root):
        if entry["since"] < taken:
            best = entry
    return best.get("seed") if best else None


def _check_format(path: Path) -> None:
    """A restored run's seed file must hold members of this library's online format: never parsed as
    another (a seed written before format 4 has no user_version)."""
    if not path.exists():
        return  # (the operator says so when it opens it)
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0] or 3
    finally:
        db.close()
    if version != FORMAT_VERSION:
        raise FeatureStoreError(f"the stream's hand-off seed {path} holds online format {version} members, this "
                                f"library reads {FORMAT_VERSION}: start the stream afresh (--no-restore)")


def prepare(store, root: Path, handoff: Optional[HandOff], restored, slack_ms: int = 0) -> Optional[dict]:
    """The seed options of this run's state operator (None: no seed): a restore's recorded seed, or for a
    fresh start with a hand-off a new seed file (and Redis materialized from it), recorded before the
    job starts."""
    if restored is not None:
        seed = recorded(root, restored)
        if seed is not None:
            _check_format(Path(seed["path"]))
        return seed
    if handoff is None:
        _record(root, None)
        return None
    for stale in (root / SEEDS_DIR).glob(".seed-*"):  # half-written by a start that was killed
        stale.unlink(missing_ok=True)
    path = root / SEEDS_DIR / f"seed-{uuid.uuid4().hex[:12]}.sqlite"
    log.warning("hand-off: %s", announce(handoff))
    t0 = time.perf_counter()
    counts = write_seed(store, handoff, path, slack_ms)
    seed = {"path": str(path.resolve()), "views": {n: s.options() for n, s in handoff.views.items()}}
    _record(root, seed)
    log.warning("hand-off: online state of %s seeded from the offline store (%s) in %.1f s; the stream adds the "
                "records those table versions do not hold", ", ".join(handoff.views),
                ", ".join(f"{n}: {c} entities" for n, c in counts.items()), time.perf_counter() - t0)
    return seed


__all__ = ["HandOff", "ViewSeed", "plan", "check_history", "seedable", "announce", "retention_ms", "prepare", "recorded", "write_seed",
           "first_event_times", "entity_state", "seed_record", "read_seed", "seed_has_folded"]
