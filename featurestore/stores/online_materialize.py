"""``materialize`` of one view into the online store: the events' stored form, tiles and prefixes.

Each pass reads its events once: :func:`ranked_sql` ranks them in event order within their entity into
a temporary table, from which every query below reads. Entities fall in two groups, decided in SQL per pass:

* **plain** (most): at most ``DENSE_EVENTS`` kept events and no prefix. DuckDB encodes each kept event's
  stored member and packs it as the bytes Redis receives, the events listed in entity and rank order
  (:func:`packed_members_sql`, :mod:`featurestore.stores.online_packed`); Python takes each entity's
  bytes as one slice (:class:`~featurestore.stores.online_packed.EntityRuns`) and builds its write call
  around them at once (:meth:`_Writer.add_plain`). On a Redis Cluster, and as the per-entity
  reference, :func:`~featurestore.stores.online_redis.materialize_sql` lists the members instead.
* **kernel** entities: dense ones (more kept events: they store tiles) and, for views with an unbounded
  window, those with events before the cut (a prefix). Their events (entity numbered) go to a temporary
  table; DuckDB then computes, vectorised, the members, the partial row of every tile the store holds
  (GROUP BY entity, level, tile; distinct sets of strings and integers as their JSON text, spliced) and
  the base row (:mod:`featurestore.engines.duckdb_partials`), and the members packed likewise (taken in
  chunks of at most ``STAGE_ITEMS``); DuckDB also writes each tile row's stored text (:mod:`featurestore.engines.
  duckdb_tile_text`): Python splices the exact float sums into it, decodes only the rows SQL cannot
  write and those merged into prefixes, and sums prefixes from the top tiles
  (:func:`featurestore.kernel.batch.changes_from_tiles`), never touching an event.
  ``FEATURESTORE_MATERIALIZE_VECTOR=0`` builds them event by event instead
  (:func:`featurestore.kernel.batch.full_changes`, the reference the tests compare with); a DuckDB error
  of the vectorised build (an integer sum of squares beyond 128 bits) falls back to it, and so do passes
  whose kernel entities hold fewer than ``VECTOR_EVENTS`` events (the tiles query's fixed cost is more
  than the per-entity build's on so few).

Each entity is replaced by one write, pipelined: on a single node a transaction of plain commands
(:func:`online_packed.write_calls`), on a cluster the write script (large entities in chunks swapped in at once:
:mod:`featurestore.stores.online_staged`). Large views are processed in ``ceil(rows / PASS_ROWS)``
passes over disjoint hash ranges of the keys.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator, List, Optional, Tuple

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from featurestore import dtypes as t
from featurestore.compiler.ir import CompiledView
from featurestore.engines import duckdb_partials as dpart
from featurestore.engines import duckdb_sql as dsql
from featurestore.engines import duckdb_tile_text as dtext
from featurestore.errors import FeatureStoreError
from featurestore.kernel import batch as kbatch
from featurestore.kernel import entity as kentity
from featurestore.kernel.entity import Changes
from featurestore.kernel.partials import Layout
from featurestore.kernel.tiles import TOP_LEVEL
from featurestore.online import input_columns, view_layout
from featurestore.online_reply import loads
from featurestore.stores import online_redis as orr
from featurestore.stores import online_format as ofmt
from featurestore.stores.online_packed import EntityRuns, PackedRaw, Transaction, entity_blocks, packed_sql

HOT, HOT_EVENTS, HOT_LEVELS, RANKED = "__fs_mat_hot", "__fs_mat_hev", "__fs_mat_hlv", "__fs_mat_rnk"


# Fewer kernel entities' events than this in a pass: they are built entity by entity (the vectorised
# build's fixed cost, its tiles query, is more than the per-entity build's on so few events).
VECTOR_EVENTS = 10_000


# Events per Arrow batch of packed members (each read as runs of whole entities: online_packed.entity_blocks).
EVENT_ROWS = 65_536


# Tile rows' stored text written by DuckDB (duckdb_tile_text); False: every row decoded and encoded in
# Python (the reference the tests compare with).
TILE_TEXT = True


def vector_enabled() -> bool:
    return os.environ.get("FEATURESTORE_MATERIALIZE_VECTOR", "1") != "0"


def _hot_events(con) -> int:
    """The events of the pass's kernel entities (table :data:`HOT`)."""
    ((n,),) = con.sql(f"SELECT coalesce(sum(__fs_all), 0) FROM {HOT}").fetchall()
    return int(n)


class _Writer:
    """Entities' full writes, batched into pipelined round trips (large ones staged)."""

    def __init__(self, store, cv: CompiledView, now: int):
        self.store, self.cv, self.now = store, cv, now
        ret = orr.retention(cv)
        self.expires, self.ttl_extra = ret.expires, ret.window_ms + orr.SLACK_MS
        self.pending: List[Tuple[str, list]] = []
        self.commands: List[bytes] = []  # packed transactions of plain entities (add_plain)
        self.size = 0
        self.entities = self.events = self.tiled = 0
        self.written: set = set()  # every entity base written (the rest of the view's online keys go)
        self._plain_meta: Optional[bytes] = None

    def add(self, keys: list, last: int, changes: Changes) -> None:
        base = orr.entity_base(self.store.project, self.cv.name, keys)
        at = max(self.now, last) + self.ttl_extra if self.expires else None
        self.written.add(base)
        self.entities += 1
        self.tiled += changes.dense
        self.events += len(changes.raw_add)
        items = len(changes.raw_add) + len(changes.tiles_set) + len(changes.prefix_set)
        if items <= orr.STAGE_ITEMS:
            self.pending.append((base, orr.write_args(changes, self.cv.data_fingerprint, at)))
            self.size += items
        else:  # a hot entity: bounded chunks to its staging keys, then one swap
            self.store.write_staged(base, changes, self.cv.data_fingerprint, at, self.now)
        if len(self.pending) >= orr.CHUNK_ENTITIES or self.size >= 4 * orr.STAGE_ITEMS:
            self.flush()

    def add_plain(self, keys: list, last: int, count: int, data: bytes) -> None:
        """A plain entity (no tiles, no prefix: a full write of its ``count`` raw members, ``data`` as
        :func:`online_packed.packed_sql` packs them): its transaction's bytes built here at once (single
        node), the very ones :meth:`add` would send (``transaction(write_calls(...))``)."""
        if self._plain_meta is None:  # the HSET of the meta: one per view
            meta = orr.write_args(Changes(True, None, False), self.cv.data_fingerprint, None)[1].encode()
            self._plain_meta = b"$1\r\n_\r\n$%d\r\n%s\r\n" % (len(meta), meta)
        base = orr.entity_base(self.store.project, self.cv.name, keys)
        self.written.add(base)
        key = base.encode()
        k = len(key) + 2  # one format for the whole call: the bulk strings of the keys, expiry and count
        call = (b"*1\r\n$5\r\nMULTI\r\n*4\r\n$6\r\nUNLINK\r\n$%d\r\n%s:t\r\n$%d\r\n%s:r\r\n$%d\r\n%s:p\r\n"
                b"*4\r\n$4\r\nHSET\r\n$%d\r\n%s:t\r\n%s*%d\r\n$4\r\nZADD\r\n$%d\r\n%s:r\r\n%s"
                % (k, key, k, key, k, key, k, key, self._plain_meta, 2 + 2 * count, k, key, data))
        if self.expires:
            at = b"%d" % (max(self.now, last) + self.ttl_extra)
            call += b"".join(b"*3\r\n$9\r\nPEXPIREAT\r\n$%d\r\n%s:%s\r\n$%d\r\n%s\r\n" % (k, key, s, len(at), at)
                             for s in (b"t", b"r"))
        call = Transaction(call + b"*1\r\n$4\r\nEXEC\r\n")
        call.replies = 7 if self.expires else 5
        self.commands.append(call)
        self.entities += 1
        self.events += count
        self.size += count
        if len(self.commands) >= orr.CHUNK_ENTITIES or self.size >= 4 * orr.STAGE_ITEMS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.store.write_entities(self.pending)
        if self.commands:
            self.store._write_packed(self.commands)
        self.pending, self.commands, self.size = [], [], 0


def materialize_view(store, con, cv: CompiledView, relation: str, end_ms: Optional[int] = None,
                     on_rows: Optional[Callable[[int], None]] = None,
                     now_ms: Optional[int] = None) -> "orr.MaterializeResult":
    """``RedisOnlineStore.materialize_view``: see the module docstring."""
    t0 = time.perf_counter()
    ret = orr.retention(cv)
    layout = view_layout(cv)
    cut = orr.cut_for(cv, end_ms)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    try:
        ((total,),) = con.sql(f"SELECT count(*) FROM {relation}").fetchall()
    except Exception as exc:
        raise _error(cv, exc) from None
    passes = max(1, -(-int(total) // orr.PASS_ROWS))
    writer = _Writer(store, cv, now)
    vector = vector_enabled()
    packed = vector and not store.cluster  # members packed by DuckDB (online_packed): single node
    for part in range(passes):
        part_arg = (part, passes) if passes > 1 else None
        hot = None
        if vector:
            try:  # the pass's events read and ranked once (ranked_sql): the plain and kernel entities' source
                con.execute(f"CREATE OR REPLACE TEMP TABLE {RANKED} AS {ranked_sql(cv, relation, part_arg)}")
                con.execute(hot_sql(cv, RANKED, None, cut, ret.keep_base))
                hot = HOT
            except duckdb.Error:
                con.execute(f"DROP TABLE IF EXISTS {RANKED}")
                hot = None
        if hot is not None and packed:
            _plain_packed(con, cv, part_arg, cut, writer, on_rows)
        else:
            _plain(con, cv, relation, part_arg, layout, cut, ret, writer, on_rows, exclude=hot)
        if hot is not None:
            try:
                if _hot_events(con) >= VECTOR_EVENTS:  # fewer do not pay for the tiles query
                    try:
                        _kernel(con, cv, RANKED, layout, cut, ret.keep_base, writer, on_rows, packed, ranked=True)
                        continue
                    except duckdb.Error:  # e.g. a sum of squares beyond HUGEINT: the per-entity build
                        pass
                _plain(con, cv, relation, part_arg, layout, cut, ret, writer, on_rows, only=hot)
            finally:
                con.execute(f"DROP TABLE IF EXISTS {HOT}; DROP TABLE IF EXISTS {HOT_EVENTS}; DROP TABLE IF EXISTS {HOT_LEVELS}; "
                            f"DROP TABLE IF EXISTS {RANKED}")
    writer.flush()
    deleted = store.delete_unwritten(cv, writer.written)  # gone from the table, or every event behind the cut
    store.write_marker(cv, end_ms, "materialize")
    return orr.MaterializeResult(cv.name, writer.entities, writer.events, deleted, time.perf_counter() - t0,
                                 end_ms, writer.tiled)


def _error(cv: CompiledView, exc: Exception) -> FeatureStoreError:
    return FeatureStoreError(f"materialize of view '{cv.name}' failed: {str(exc).splitlines()[0]}")


def _plain(con, cv, relation, part, layout, cut, ret, writer: _Writer, on_rows, exclude=None, only=None) -> None:
    """Every entity of the pass (but those in table ``exclude``, or only those in ``only``) from
    :func:`orr.materialize_sql`, built event by event where it needs the kernel."""
    sql = orr.materialize_sql(cv, relation, part=part, exclude=exclude, only=only)
    try:
        reader = con.sql(sql).to_arrow_reader(orr.BATCH_ROWS)
    except Exception as exc:
        raise _error(cv, exc) from None
    nkeys = len(cv.join_keys)
    codec = ofmt.members(cv)
    for batch in reader:
        if batch.num_rows == 0:
            continue
        keycols = [batch.column(i).to_pylist() for i in range(nkeys)]
        last = batch.column(nkeys).to_pylist()
        tss = batch.column(nkeys + 1).to_pylist()
        members = batch.column(nkeys + 2).to_pylist()
        for i in range(batch.num_rows):
            changes = orr.entity_changes(layout, tss[i], members[i], cut, ret, codec)
            if changes is None:  # every event fell behind the cut (not written: deleted at the end)
                continue
            writer.add([kc[i] for kc in keycols], last[i], changes)
        if on_rows:
            on_rows(int(pc.sum(batch.column(nkeys + 3)).as_py()))


def _plain_packed(con, cv: CompiledView, part, cut, writer: _Writer, on_rows) -> None:
    """The pass's entities outside table :data:`HOT` (at most ``DENSE_EVENTS`` kept events, no prefix):
    their kept members as DuckDB encoded and packed them (:func:`packed_members_sql`), each entity's one
    slice of the packed column (:class:`online_packed.EntityRuns`), forwarded."""
    try:
        reader = con.sql(packed_members_sql(cv, cut)).to_arrow_reader(EVENT_ROWS)
    except Exception as exc:
        raise _error(cv, exc) from None
    nkeys = len(cv.join_keys)
    for block in entity_blocks(reader):
        runs = EntityRuns(block, cut)
        starts = pa.array(runs.starts, pa.int64())
        keycols = [block.column(i).take(starts).to_pylist() for i in range(nkeys)]
        for i, kept in enumerate(runs.kept):
            if not kept:  # every event fell behind the cut (not written: deleted at the end)
                continue
            writer.add_plain([kc[i] for kc in keycols], runs.last[i], kept, runs.packed(i))
        if on_rows:
            on_rows(block.num_rows)


def _packed_events_sql(relation: str, cols: str, member: str, cut: Optional[int], order: str) -> str:
    """Every event of ``relation`` with ``cols``, its rank ``__fs_r``, time ``__fs_ts`` and its kept
    (at or after ``cut``) member packed (``__fs_p``: :func:`online_packed.packed_sql`; NULL for an event
    not kept), sorted by ``order`` (the entity's columns, then the rank): each entity's members in one
    run of rows, in event order, read by :class:`online_packed.EntityRuns` without a per-entity sort."""
    if cut is not None:
        member = f"CASE WHEN __fs_ts >= {int(cut)} THEN {member} END"
    # (the member a column of its own: packed_sql names it twice, and it is built once per event)
    return (f"SELECT {cols}, __fs_r, __fs_ts, CASE WHEN __fs_m IS NOT NULL THEN {packed_sql('__fs_ts', '__fs_m')} "
            f"END AS __fs_p FROM (SELECT {cols}, __fs_r, __fs_ts, {member} AS __fs_m FROM {relation}) ORDER BY {order}, __fs_r")


def packed_members_sql(cv: CompiledView, cut: Optional[int]) -> str:
    """The events of table :data:`RANKED` outside :data:`HOT`: keys and :func:`_packed_events_sql`'s
    columns (ids as :func:`orr.materialize_sql` numbers them), sorted by keys and rank."""
    keys = ", ".join(dsql.q(k) for k in cv.join_keys)
    member = orr.member_sql(cv, "__fs_r", "__fs_ts")
    return _packed_events_sql(f"{RANKED} AS src ANTI JOIN {HOT} USING ({keys})", keys, member, cut, keys)


def _where(cv: CompiledView, part) -> List[str]:
    keys = [dsql.q(k) for k in cv.join_keys]
    where = [f"{dsql.q(cv.ts_column)} IS NOT NULL", *(f"{k} IS NOT NULL" for k in keys)]
    if part is not None:
        where.append(f"hash({', '.join(keys)}) % {int(part[1])} = {int(part[0])}")
    return where


def ranked_sql(cv: CompiledView, relation: str, part=None) -> str:
    """The events of ``relation`` (of the pass ``part``) with their time in ms (``__fs_ts``), rank in
    event order (``__fs_r``, as :func:`orr.materialize_sql` numbers members) and order rank (``__fs_o``,
    equal for equal orders) within their entity: one read and sort of the events for every entity."""
    keys = ", ".join(dsql.q(k) for k in cv.join_keys)
    return (f"SELECT *, epoch_ms({dsql.q(cv.ts_column)}) AS __fs_ts, row_number() OVER (__fs_w) AS __fs_r, "
            f"rank() OVER (__fs_w) AS __fs_o FROM {relation} AS src WHERE {' AND '.join(_where(cv, part))} "
            f"WINDOW __fs_w AS (PARTITION BY {keys} ORDER BY {', '.join(orr._event_order(cv))})")


def hot_sql(cv: CompiledView, relation: str, part, cut: Optional[int], keep_base: bool) -> str:
    """The temporary table of the pass's kernel entities (see the module docstring): keys, ``__fs_e``
    (a number), ``__fs_d`` (dense) and ``__fs_all`` (its events in the pass)."""
    keys = ", ".join(dsql.q(k) for k in cv.join_keys)
    ts = f"epoch_ms({dsql.q(cv.ts_column)})"
    kept = "count(*)" if cut is None else f"count(*) FILTER (WHERE {ts} >= {int(cut)})"
    old = "0" if cut is None or not keep_base else f"count(*) FILTER (WHERE {ts} < {int(cut)})"
    dense = f"__fs_kept > {kentity.DENSE_EVENTS}"
    return (f"CREATE OR REPLACE TEMP TABLE {HOT} AS SELECT {keys}, row_number() OVER () AS __fs_e, {dense} AS __fs_d, "
            f"__fs_all FROM (SELECT {keys}, {kept} AS __fs_kept, {old} AS __fs_old, count(*) AS __fs_all FROM {relation} AS src "
            f"WHERE {' AND '.join(_where(cv, part))} GROUP BY ALL) WHERE {dense} OR __fs_old > 0")


def _events_sql(cv: CompiledView, hot: str = HOT, out: str = HOT_EVENTS, picked_order: bool = False,
                ranked: bool = False) -> Tuple[str, bool]:
    """The temporary table ``out`` of the kernel entities' (those of table ``hot``) events: entity, dense flag, time, rank in event order
    (``__fs_r``, as materialize_sql numbers members), order rank (equal for equal orders), inputs as the
    kernel sees them, the JSON text of each stored order value (``__fs_v<j>``) and the order's text
    (``__fs_ord``, only when the view stores order values: ``online_format.order_columns``; with
    ``picked_order`` not when :func:`_pick_order_sql` builds it for the picked events instead).
    ``ranked``: the relation already holds :func:`ranked_sql`'s columns (else it is ranked here)."""
    keys = ", ".join(dsql.q(k) for k in cv.join_keys)
    types = dict(cv.stored_columns)
    stored = ofmt.order_columns(cv)
    order_text = bool(stored)
    inputs = [f"{orr._input_sql(e, d)} AS __fs_i{j}" for j, (e, d) in enumerate(input_columns(cv))]
    cols = ["__fs_ts", "__fs_r", "__fs_o", *inputs]
    if order_text:
        cols += [f"{ofmt.json_sql(ofmt.order_value_sql(dsql.q(c), types[c]))} AS __fs_v{j}"
                 for j, (c, s) in enumerate(zip(stored, ofmt.order_sources(cv))) if s < 0]
        if not picked_order or _pick_order_sql(cv) is None:  # else for the picked events only (_groups)
            cols.append(f"{dtext.order_text_sql('__fs_ts', [(dsql.q(c), types[c]) for c in stored])} AS __fs_ord")
    source = "{relation}" if ranked else f"({ranked_sql(cv, '{relation}')})"
    sql = (f"CREATE OR REPLACE TEMP TABLE {out} AS SELECT __fs_e, __fs_d, {', '.join(cols)} "
           f"FROM {source} AS src JOIN {hot} USING ({keys})")
    return sql, order_text


def _pick_order_sql(cv: CompiledView) -> Optional[str]:
    """The order text (:func:`duckdb_tile_text.order_text_sql`'s) of an event of the events table
    aliased ``__ALIAS__``, from its time, inputs and stored order values' JSON text (doubles parsed back:
    ``to_json`` writes them otherwise than the encoder), so that only the ~tens of thousands of events
    first/last/latest pick get one, not every event; None when an order column's type has no such text
    (the events table then holds ``__fs_ord``)."""
    types = dict(cv.stored_columns)
    parts = ["CAST(__ALIAS__.__fs_ts AS VARCHAR)"]
    for j, (c, s) in enumerate(zip(ofmt.order_columns(cv), ofmt.order_sources(cv))):
        d = types[c]
        if s >= 0:  # the input holds the very value (timestamps as epoch microseconds, as stored)
            x = f"__ALIAS__.__fs_i{s}"
            body, null = dtext.value_text(x, d, safe=False), f"{x} IS NULL"
        else:
            x = f"__ALIAS__.__fs_v{j}"
            null = f"{x} = 'null'"
            body = dtext.float_text(f"CAST({x} AS DOUBLE)") if d in dtext.FLOAT_TYPES else (
                x if dtext.value_text(x, d) is not None else None)
        if body is None:
            return None
        parts.append(f"CASE WHEN {null} THEN '[]' ELSE '[' || {body} || ']' END")
    return "'[' || " + " || ',' || ".join(parts) + " || ']'"


def _members_sql(cv: CompiledView, cut: Optional[int], order_text: bool) -> str:
    """Per kernel entity, in ``__fs_e`` order: keys, last time, and the kept events' times and members
    (the very text :func:`orr.materialize_sql` writes)."""
    keys = ", ".join(f"h.{dsql.q(k)}" for k in cv.join_keys)
    inputs = [ofmt.json_sql(f"__fs_i{j}") for j in range(len(input_columns(cv)))]
    order = [f"__fs_v{j}" for j, s in enumerate(ofmt.order_sources(cv)) if s < 0] if order_text else []
    member = ofmt.member_sql("__fs_r", "__fs_ts", inputs, order)
    keep = "" if cut is None else f" FILTER (WHERE __fs_ts >= {int(cut)})"
    return (f"SELECT {keys}, a.* FROM (SELECT __fs_e, max(__fs_ts) AS __fs_last, "
            f"list(__fs_ts ORDER BY __fs_r){keep} AS __fs_tss, list({member} ORDER BY __fs_r){keep} AS __fs_members, "
            f"count(*) AS __fs_n FROM {HOT_EVENTS} GROUP BY __fs_e) AS a JOIN {HOT} AS h USING (__fs_e) "
            f"ORDER BY __fs_e")


def _packed_members_sql(cv: CompiledView, cut: Optional[int], order_text: bool) -> str:
    """The kernel entities' events (:data:`HOT_EVENTS`): ``__fs_e`` and :func:`_packed_events_sql`'s
    columns (the members :func:`_members_sql` lists), sorted by entity and rank."""
    inputs = [ofmt.json_sql(f"__fs_i{j}") for j in range(len(input_columns(cv)))]
    order = [f"__fs_v{j}" for j, s in enumerate(ofmt.order_sources(cv)) if s < 0] if order_text else []
    member = ofmt.member_sql("__fs_r", "__fs_ts", inputs, order)
    return _packed_events_sql(HOT_EVENTS, "__fs_e", member, cut, "__fs_e")


def _kernel_raw(con, cv: CompiledView, cut, order_text: bool, packed: bool) -> Iterator[tuple]:
    """Per kernel entity, in ``__fs_e`` order: ``(entity, keys, last time, events, raw_add)``; ``packed``:
    raw_add a :class:`online_packed.PackedRaw` in chunks of at most ``STAGE_ITEMS`` (else pairs)."""
    nkeys = len(cv.join_keys)
    if not packed:
        for batch in con.sql(_members_sql(cv, cut, order_text)).to_arrow_reader(1_000):
            keycols = [batch.column(i).to_pylist() for i in range(nkeys)]
            es, last, ns = (batch.column(c).to_pylist() for c in ("__fs_e", "__fs_last", "__fs_n"))
            tss, members = batch.column("__fs_tss").to_pylist(), batch.column("__fs_members").to_pylist()
            for i, e in enumerate(es):
                yield e, [kc[i] for kc in keycols], last[i], ns[i], list(zip(tss[i] or [], members[i] or []))
        return
    keys = ", ".join(dsql.q(k) for k in cv.join_keys)
    hot = con.sql(f"SELECT {keys} FROM {HOT} ORDER BY __fs_e").fetchall()  # __fs_e: 1 to n
    for block in entity_blocks(con.sql(_packed_members_sql(cv, cut, order_text)).to_arrow_reader(EVENT_ROWS)):
        runs = EntityRuns(block, cut)
        es = block.column("__fs_e").take(pa.array(runs.starts, pa.int64())).to_pylist()
        for i, e in enumerate(es):
            yield e, list(hot[e - 1]), runs.last[i], runs.counts[i], PackedRaw(runs.chunks(i, orr.STAGE_ITEMS))


TEXT_TYPES = frozenset({t.STRING, t.INT32, t.INT64, t.BOOL, t.TIMESTAMP})  # distinct sets DuckDB encodes


def _groups(con, cv: CompiledView, layout: Layout, cut, keep_base: bool, order_text: bool
            ) -> Iterator[Tuple[int, list]]:
    """``(entity, [(level, start, events, row), ...])`` in entity order (:func:`dpart.tiles_sql`)."""
    tile_top = min(TOP_LEVEL, layout.max_level)
    text_cols = frozenset(j for j, (_, dtype) in enumerate(input_columns(cv)) if dtype in TEXT_TYPES)
    merged = tile_top if keep_base else None  # rows changes_from_tiles merges into prefixes
    types = dict(cv.stored_columns)
    order_plain = dtext.order_plain([types[c] for c in ofmt.order_columns(cv)])
    all_tops = keep_base and tile_top == TOP_LEVEL
    levels = dpart.minute_levels(con, HOT_EVENTS, cut, keep_base, tile_top, kentity.TILE_MIN_EVENTS, all_tops, HOT_LEVELS)
    sql = dpart.tiles_sql(layout, HOT_EVENTS, cut, keep_base, order_text, tile_top, kentity.TILE_MIN_EVENTS,
                          all_tops, text_cols, row_text=(order_plain, merged) if TILE_TEXT else None,
                          pick_order=_pick_order_sql(cv) if order_text else None, levels=levels)
    # fetched whole (held tiles only: far fewer rows than events) before the members are streamed on
    # the same connection, which holds one open result at a time
    parts = con.sql(sql).to_arrow_table()
    con.execute(f"DROP TABLE IF EXISTS {HOT_LEVELS}")
    cur, acc = None, []
    for batch in parts.to_batches(20_000):
        for e, level, start, n, row in dpart.decode_rows(layout, batch, order_text, loads, text_cols, merged):
            if e != cur:
                if cur is not None:
                    yield cur, acc
                cur, acc = e, []
            acc.append((level, start, n, row))
    if cur is not None:
        yield cur, acc


def _kernel(con, cv: CompiledView, relation: str, layout: Layout, cut, keep_base: bool, writer: _Writer,
            on_rows, packed: bool = True, ranked: bool = False) -> None:
    """The kernel entities of the pass (table :data:`HOT`), vectorised (see the module docstring);
    ``packed``: their members packed by DuckDB (:mod:`featurestore.stores.online_packed`); ``ranked``:
    ``relation`` holds :func:`ranked_sql`'s columns."""
    sql, order_text = _events_sql(cv, picked_order=True, ranked=ranked)
    con.execute(sql.format(relation=relation))
    groups = _groups(con, cv, layout, cut, keep_base, order_text)
    pending = next(groups, None)  # runs the tiles query
    events = 0
    for e, keys, last, n, raw_add in _kernel_raw(con, cv, cut, order_text, packed):
        rows: list = []
        if pending is not None and pending[0] == e:
            rows = pending[1]
            pending = next(groups, None)
        base = None
        if rows and rows[0][0] < 0:
            base = rows[0][3]
            rows = rows[1:]
        changes = kbatch.changes_from_tiles(layout, raw_add, last, base, rows, cut, keep_base)
        writer.add(keys, last, changes)
        events += n
        if on_rows and events >= EVENT_ROWS:
            on_rows(events)
            events = 0
    if on_rows and events:
        on_rows(events)


__all__ = ["materialize_view", "vector_enabled", "hot_sql"]
