"""Pushed events in the offline store: the pushed log of a batch face, and each view table holding them once.

A source without a stream face takes pushed rows into its **pushed log**, an offline table beside the view
tables (``<offline root>/<project>/_pushed/<face>``: the source's columns plus ``__push_seq``, appended with
a compare-and-set on the last push's sequence number, so concurrent pushes get 1, 2, 3, ...). The log is
keyed by the batch face (its files and event-time column), so every source reading the same files — a
Feast ``FileSource`` and the ``PushSource`` over it — has the same pushed events: they are events of the
batch face, read with it wherever the face is read without a view table.

Each view table over that face holds every pushed event **once**, kept by one rule that every write
follows (:class:`Follow`, the table's ``follow``): the table records the last push sequence it holds
(``txns["push:<face>"]`` in its manifest). A backfill's data never contains pushed events; its commit
adds, inside the range it replaces, the pushed events up to the new sequence, and outside it those after
the recorded one. A push's own commit (``OfflineTable.follow_up``) adds those after the recorded one.
So a backfill racing a push, a push that crashed between its log and a view table, or two pushes racing
each other all leave each pushed event exactly once (the next write of the table catches up).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Callable, Iterator, List, Optional

import pyarrow as pa

from featurestore.engines import duckdb_sql as dsql
from featurestore.engines.duckdb_engine import parquet_relation, without_optimizer
from featurestore.stores.offline_log import CommitConflict

PUSHED_DIR = "_pushed"
SEQ = "__push_seq"
APP = "push"  # the pushed log's own app id (its appends are compare-and-set on the last seq)


def face_name(source) -> str:
    """The pushed log's table name for ``source``'s batch face: a readable part and a hash of the face."""
    canon = json.dumps([source.batch.canonical(), source.timestamp], sort_keys=True)
    digest = hashlib.sha1(canon.encode()).hexdigest()[:10]
    label = getattr(source.batch, "path", None) or getattr(source.batch, "relation", "") or "face"
    label = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label).rsplit("/", 1)[-1]).strip("._-")[:60] or "face"
    return f"{label}-{digest}"


def follow_app(source) -> str:
    """The app id under which a view table records the last push of ``source``'s face it holds."""
    return f"{APP}:{face_name(source)}"


class PushedLog:
    """The pushed events of one batch face (see the module docstring)."""

    def __init__(self, store, source):
        from featurestore.stores.offline import OfflineStore

        self.store = store
        self.source = source
        self.table = OfflineStore(store.config.offline_path / store.config.project / PUSHED_DIR).table(
            face_name(source), ts_column=source.timestamp)

    def seq(self) -> int:
        """The sequence number of the last committed push (0: none)."""
        return self.table.app_seq(APP) or 0

    def append(self, events: pa.Table) -> int:
        """Commit ``events`` (the source's columns) as the next push; returns its sequence number."""
        while True:
            last = self.table.app_seq(APP)
            seq = (last or 0) + 1
            data = events.append_column(SEQ, pa.array([seq] * events.num_rows, type=pa.int64()))
            try:
                self.table.append(data, app_id=APP, seq=seq, after_seq=last)
                return seq
            except CommitConflict:  # another push took this number: take the next
                continue

    def relation(self, con, upto: Optional[int] = None) -> Optional[str]:
        """SQL of the pushed rows (the source's declared columns and ``__push_seq``) with seq <= ``upto``
        (None: all), read through the latest manifest; None when nothing was pushed."""
        version = self.table.version
        if version is None:
            return None
        files = self.table.files(version)
        if not files:
            return None
        have = set(self.table.schema(version).names)
        cols = [dsql.q(c) if c in have else f"NULL AS {dsql.q(c)}" for c, _ in self.source.schema]
        relation = parquet_relation(con, files, self.table.filesystem, union_by_name=True,
                                    schema=self.table.schema(version) if self.table.remote else None)
        where = f" WHERE {dsql.q(SEQ)} <= {int(upto)}" if upto is not None else ""
        return f"(SELECT {', '.join(cols)}, {dsql.q(SEQ)} FROM {relation}{where})"


def logs_of(store, view_name: str) -> Optional[PushedLog]:
    """The pushed log of the view's batch face, when something was ever pushed to it."""
    source = store.repo.views[view_name].source
    if source.batch is None or source.stream is not None:
        return None
    log = PushedLog(store, source)
    return log if log.table.version is not None else None


def events_relation(store, con, cv, upto: Optional[int] = None) -> Optional[str]:
    """SQL of the view's stored events from its pushed rows (the backfill's SQL over them), or None."""
    log = logs_of(store, cv.name)
    rel = log.relation(con, upto) if log is not None else None
    return f"({_events_sql(con, log.source, cv, rel)})" if rel is not None else None


def _events_sql(con, source, cv, relation: str) -> str:
    """The view's stored events from pushed rows (already checked when pushed; the backfill's rule: an event a
    part of the view fails on is left out, the push dead-lettered it). Run with ``dsql.NO_CSE``."""
    from featurestore.engines.duckdb_batch import checked_relation

    return dsql.view_events_sql(cv, checked_relation(con, source, relation, None))


@dataclass
class FollowPlan:
    """What one commit of a view table adds: the stored events of pushes (``batches()``), and the push
    sequence the table then holds (recorded under ``app_id``)."""

    key: str
    app_id: str
    seq: int
    rows: int
    schema: pa.Schema
    batches: Callable[[], Iterator[pa.RecordBatch]]


class Follow:
    """The ``follow`` of one view table (see the module docstring and ``OfflineTable.write_range``)."""

    def __init__(self, store, view_name: str, log: PushedLog):
        self.store = store
        self.view = view_name
        self.log = log

    def plan(self, base: Optional[dict], drop) -> Optional[FollowPlan]:
        from featurestore.engines.duckdb_engine import arrow_schema

        app = follow_app(self.log.source)
        rec = ((base or {}).get("txns") or {}).get(app)
        held = int(rec["seq"]) if rec else 0
        latest = max(held, self.log.seq())
        if latest == 0:
            return None
        seq_col = dsql.q(SEQ)
        ts = f"epoch_ms({dsql.q(self.log.source.timestamp)})"
        inside = " OR ".join(f"({ts} >= {int(a)} AND {ts} < {int(b)})" for a, b in drop) or "FALSE"
        # inside the replaced ranges: every push up to `latest` (the new data has none); outside: the new pushes
        cond = f"(({inside}) OR {seq_col} > {held})"
        if held == latest and not drop:
            return None
        cv = self.store.compiled(self.view)
        con = self.store._connect()
        rel = self.log.relation(con, latest)
        schema = arrow_schema(cv)
        if rel is None:
            return FollowPlan(json.dumps([held, latest, drop]), app, latest, 0, schema, lambda: iter(()))
        filtered = f"(SELECT * FROM {rel} WHERE {cond})"
        sql = _events_sql(con, self.log.source, cv, filtered)
        with without_optimizer(con, dsql.NO_CSE):
            (count,), = con.sql(f"SELECT count(*) FROM ({sql})").fetchall()
        if count == 0 and held == latest:
            return None

        def batches() -> Iterator[pa.RecordBatch]:
            with without_optimizer(con, dsql.NO_CSE):  # restored once the result is drained
                for batch in con.sql(sql).to_arrow_reader(100_000):
                    yield from pa.Table.from_batches([batch]).cast(schema).to_batches()

        return FollowPlan(json.dumps([held, latest, drop]), app, latest, int(count), schema, batches)

    def last_time(self) -> Optional[int]:
        """The latest pushed event time (epoch ms; pushed rows hold checked times), None when nothing was
        pushed: an open-ended backfill replaces the table up to it, so no pushed row of an earlier definition
        outlives a re-backfill."""
        con = self.store._connect()
        rel = self.log.relation(con)
        if rel is None:
            return None
        (value,), = con.sql(f"SELECT max(epoch_ms({dsql.q(self.log.source.timestamp)})) FROM {rel}").fetchall()
        return None if value is None else int(value)

    def held_outside(self, base: Optional[dict], ranges) -> bool:
        """Whether the table (``base``) holds pushed rows whose time lies outside ``ranges``: rows a write
        over ``ranges`` leaves as they were computed."""
        rec = ((base or {}).get("txns") or {}).get(follow_app(self.log.source))
        held = int(rec["seq"]) if rec else 0
        if held == 0:
            return False
        con = self.store._connect()
        rel = self.log.relation(con, held)
        if rel is None:
            return False
        ts = f"epoch_ms({dsql.q(self.log.source.timestamp)})"
        inside = " OR ".join(f"({ts} >= {int(a)} AND {ts} < {int(b)})" for a, b in ranges) or "FALSE"
        (n,), = con.sql(f"SELECT count(*) FROM {rel} WHERE NOT ({inside})").fetchall()
        return n > 0


def follower(store) -> Callable[[str], Optional[Follow]]:
    """``OfflineStore(follower=...)`` of a FeatureStore: the :class:`Follow` of each view table whose batch
    face has pushed events."""

    def follow(name: str) -> Optional[Follow]:
        if name not in store.repo.views:
            return None
        log = logs_of(store, name)
        return Follow(store, name, log) if log is not None else None

    return follow


def views_of_face(store, source) -> List[str]:
    """Every view reading ``source``'s batch face (through any source with the same face and time column)."""
    name = face_name(source)
    return [n for n, v in store.repo.views.items()
            if v.source.batch is not None and v.source.stream is None and face_name(v.source) == name]


__all__ = ["PushedLog", "Follow", "FollowPlan", "follower", "events_relation", "views_of_face", "face_name",
           "PUSHED_DIR", "SEQ"]
