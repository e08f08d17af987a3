"""``FeatureStore.push``: rows become events of a source, in the chosen stores, through the path of any event.

* A source with a **stream face** (Kafka): the rows are produced to its topic as the face's JSON records,
  and the streaming job carries them into both stores exactly like any other record (its parse, dead
  letters, filters, projections, each-event-once commits). ``to`` must be ``"online_and_offline"``: the
  streaming job owns its views' online keys and offline rows, so one store alone cannot take them.
* A source **without** a stream face (a batch face, e.g. a Feast ``PushSource``): the rows are read by their
  declared types (:mod:`featurestore.push.rows`; a row that cannot be an event is a dead letter with a
  one-line reason, counted and kept in ``_push_dead_letters/<source>``), then

  - ``offline``: appended to the batch face's pushed log, and every view table over that face takes
    them once (:mod:`featurestore.push.offline`): the view's filter and projections by the backfill's own
    SQL. Later backfills keep them (they are events of the face);
  - ``online``: each touched entity's online state gets the new events (:mod:`featurestore.push.online`),
    the view's filter and inputs by materialize's own SQL; never a whole-view rewrite.

  ``online_and_offline`` does both, so online == offline holds after the push; ``online`` alone leaves
  the offline store without the events (the next materialize of the view drops them from Redis) and
  ``offline`` alone leaves Redis as it was until the next materialize (Feast's modes).

The views of a push are those of every source reading the same batch face (a Feast ``FileSource`` and the
``PushSource`` over it are one face: the same events).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import pyarrow as pa

from featurestore.errors import RequestError

MODES = ("online", "offline", "online_and_offline")
DEAD_LETTERS_DIR = "_push_dead_letters"


@dataclass
class PushResult:
    """What a push did: ``rows`` given, ``events`` taken (rows that are events of the source),
    ``dead_letters`` by reason, per view the ``online`` entities written and ``offline`` table versions,
    ``refusals`` (views whose online state could not take the events, and why), and for a streamed source
    the Kafka ``topic`` and ``offsets`` (partition -> last offset written)."""

    source: str
    to: str
    rows: int
    events: int
    dead_letters: Dict[str, int] = field(default_factory=dict)
    online: Dict[str, int] = field(default_factory=dict)
    offline: Dict[str, Optional[int]] = field(default_factory=dict)
    refusals: List[str] = field(default_factory=list)
    push_seq: Optional[int] = None
    topic: Optional[str] = None
    offsets: Dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"source": self.source, "to": self.to, "rows": self.rows, "events": self.events,
                "dead_letters": dict(self.dead_letters), "online": dict(self.online),
                "offline": dict(self.offline), "refusals": list(self.refusals), "push_seq": self.push_seq,
                "topic": self.topic, "offsets": {str(k): v for k, v in self.offsets.items()}}


def resolve_source(store, source, known=None):
    """The Source named ``source`` (or the Source object itself), or a RequestError naming close names
    (among ``known`` when given: the names the caller may see)."""
    if not isinstance(source, str):
        name = getattr(source, "name", None)
        if not isinstance(name, str):
            raise RequestError(f"push: source must be a source name or a Source, got {type(source).__name__}")
        source = name
    by_name = {s.name: s for s in store.repo.sources.values()}
    if source not in by_name:
        raise no_source(source, list(by_name if known is None else known))
    return by_name[source]


def no_source(name: str, known) -> RequestError:
    """A push to a source that does not exist (or that the caller may not know exists: the same answer),
    suggesting close names among ``known``."""
    import difflib

    close = difflib.get_close_matches(name, list(known), n=3)
    hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
    return RequestError(f"push: no source called '{name}'{hint}")


def push(store, source, rows: Any, to: str = "online_and_offline", views: Optional[List[str]] = None,
         upsert: bool = False) -> PushResult:
    """See the module docstring (and ``FeatureStore.push``). ``views`` restricts the push to some views of
    the source, and ``upsert`` skips an event identical to one the entity's online state holds (Feast's
    ``/write-to-online-store`` writes one view at a time, rows as upserts)."""
    from featurestore.push import rows as prow

    src = resolve_source(store, source)
    if not isinstance(to, str) and type(to).__name__ == "PushMode":  # Feast's enum: PushMode.ONLINE_AND_OFFLINE
        to = str(getattr(to, "name", to)).lower()
    if to not in MODES:
        raise RequestError(f"push: to={to!r} is not one of {', '.join(MODES)}")
    if src.stream is not None:
        from featurestore.push.kafka import produce

        if to != "online_and_offline":
            raise RequestError(
                f"push: source '{src.name}' has a stream face (topic '{src.stream.topic}'): pushed rows go through "
                "the topic and the streaming job carries them into both stores, so to='online_and_offline' is the "
                f"only mode (got to={to!r})")
        return produce(store, src, rows)
    if src.batch is None:  # pragma: no cover - a source has a batch or a stream face
        raise RequestError(f"push: source '{src.name}' has no face to push to")
    parsed = prow.parse(src, rows, max_future_ms=store.config.max_future_ms)
    n = len(parsed.index) + len(parsed.dead)
    from featurestore.push.offline import views_of_face

    targets = views_of_face(store, src)
    if views is not None:
        unknown = [v for v in views if v not in targets]
        if unknown:
            raise RequestError(f"push: feature view '{unknown[0]}' does not read source '{src.name}'")
        targets = list(views)
    failed = _view_failures(store, src, parsed.table, parsed.index, targets) if parsed.table.num_rows else []
    result = PushResult(src.name, to, n, parsed.table.num_rows, parsed.reasons())
    for _, reason, _ in failed:
        result.dead_letters[reason] = result.dead_letters.get(reason, 0) + 1
    if parsed.dead or failed:
        _keep_dead_letters(store, src, parsed.dead + failed)
    if n:
        from featurestore.engines.backfill import add_pushed

        add_pushed(store, src.name, len(parsed.dead) + len(failed), n)  # what monitor's dead-letter rate reads
    if to in ("offline", "online_and_offline") and parsed.table.num_rows:
        _offline(store, src, parsed.table, targets, result)
    if to in ("online", "online_and_offline") and parsed.table.num_rows:
        _online(store, parsed.table, targets, result, upsert)
    return result


_PUSH_ROW = "__push_row"  # a pushed event's index in the pushed rows, carried to its view's dead letters


def _view_failures(store, src, events: pa.Table, index: List[int], targets: List[str]) -> List[tuple]:
    """(row_index, reason, row) of each pushed event a view's filter, projection or feature input fails on, one
    per (event, view), as a backfill dead-letters it: no view takes it (``view_events_sql``), offline or online,
    whatever ``to`` says. ``index``: each event's index in the pushed rows (``row_index``)."""
    from types import SimpleNamespace

    from featurestore.engines import duckdb_sql as dsql
    from featurestore.engines.backfill import dead_letter_row
    from featurestore.engines.duckdb_batch import checked_relation
    from featurestore.engines.duckdb_engine import without_optimizer

    con = store._connect()
    con.register("__pushed", events.append_column(_PUSH_ROW, pa.array(index, pa.int64())))
    indexed = SimpleNamespace(name=src.name, timestamp=src.timestamp, schema=tuple(src.schema) + ((_PUSH_ROW, "int64"),))
    out = []
    with without_optimizer(con, dsql.NO_CSE):
        for n in targets:
            sql = dsql.view_failures_sql(store.compiled(n), checked_relation(con, indexed, "__pushed", None), [_PUSH_ROW])
            for reason, row, ts, at in con.sql(sql).fetchall():
                out.append((at, reason, dead_letter_row(row, ts, src.schema, src.timestamp)))
    con.unregister("__pushed")
    return sorted(out, key=lambda d: d[0])


def _offline(store, src, events: pa.Table, targets: List[str], result: PushResult) -> None:
    from featurestore.push.offline import PushedLog

    result.push_seq = PushedLog(store, src).append(events)
    for n in targets:
        table = store.offline.table(n, ts_column=store.compiled(n).ts_column)
        result.offline[n] = table.follow_up() or table.version


def _online(store, events: pa.Table, targets: List[str], result: PushResult, upsert: bool = False) -> None:
    from featurestore.engines import duckdb_sql as dsql
    from featurestore.engines.duckdb_batch import checked_relation
    from featurestore.engines.duckdb_engine import without_optimizer
    from featurestore.push import online as pon

    import duckdb

    from featurestore.sdk.historical import expression_failed

    con = store._connect()
    con.register("__pushed", events)
    pid = pon.push_id()
    encoded = []  # every view's members before any is written: an expression failing on an event writes nothing
    for n in targets:
        view = store.repo.views[n]
        if not view.online:
            continue
        cv = store.compiled(n)
        relation = f"({dsql.view_events_sql(cv, checked_relation(con, view.source, '__pushed', None))})"
        try:
            with without_optimizer(con, dsql.NO_CSE):
                encoded.append((n, cv, pon.new_events(con, cv, relation, pid)))
        except (duckdb.DataError, duckdb.InvalidInputException) as exc:
            raise RequestError(f"push: {expression_failed(n, exc)}") from None
    for n, cv, new in encoded:
        written, why = pon.apply(store, cv, new, upsert=upsert)
        result.online[n] = written
        if why:
            result.refusals.append(why)


def dead_letter_table(store, source: str):
    from featurestore.stores.offline import OfflineStore

    return OfflineStore(store.config.offline_path / store.config.project / DEAD_LETTERS_DIR).table(
        source, ts_column="push_time")


def _keep_dead_letters(store, src, dead: list) -> None:
    at = pa.array([int(time.time() * 1000)] * len(dead), type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    table = pa.table({"reason": [d[1] for d in dead], "row": [d[2] for d in dead],
                      "row_index": pa.array([d[0] for d in dead], type=pa.int64()), "push_time": at})
    dead_letter_table(store, src.name).append(table)


__all__ = ["push", "PushResult", "MODES", "resolve_source", "dead_letter_table"]
