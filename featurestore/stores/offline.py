"""The offline store: one versioned, append/replace-by-range Parquet table of events per feature view.

Layout of a table (full description, readable without this library: ``docs/offline-store.md``)::

    <root>/<table>/date=YYYY-MM-DD/part-<version:08d>-<uuid8>.parquet   live files (hive partition, UTC)
    <root>/<table>/_log/<version:08d>.json                              one immutable manifest per version
    <root>/_archive/<table>/date=YYYY-MM-DD/part-....parquet            files superseded by a later version

The manifests are the source of truth: version N is exactly the files listed in ``_log/N.json``. A file
is never modified; when a version stops using a file, the file is moved (one atomic rename, after the
new manifest is committed) under ``<root>/_archive/<table>/`` with the same relative path, so a plain glob of
``date=*/part-*.parquet`` sees the latest version and old versions stay readable until :meth:`expire`.

Writers never show a half-written file: Parquet files are written under a dot-prefixed temp name in
their date directory (``.tmp-<writer token>.<uuid>``) and renamed; a version is committed by creating its manifest exclusively (a hard
link of a complete temp file, which fails if the name exists). Concurrent writers are optimistic: the
loser of a version number re-reads the latest version, redoes the part of its work that depended on it
and commits the next number, so every commit is equivalent to running the writes one after another in
version order (no lost update, no duplicate).

On an ``s3://`` root (object storage: :mod:`featurestore.stores.object_store`) there is no rename: files
are staged on local disk, uploaded under their final names, and the manifest is created with a
conditional put (``If-None-Match: *``) that exactly one writer of a version wins.

A writer that dies (kill -9, OOM) leaves its temp files behind; the next write to the table deletes them
once the writer is known to be dead (:mod:`featurestore.stores.writers`: a lock held for the writer's
life), never a live writer's.
"""

from __future__ import annotations

import errno
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import OfflineStoreError
from featurestore.stores.offline_files import (  # noqa: F401 (DAY_MS, TS_TYPE, ...: re-exported)
    DAY_MS, DEFAULT_TS_COLUMN, ORPHAN_GRACE_SECONDS, PARTITION_COLUMN, ROW_GROUP_ROWS, TMP_PREFIX, TS_TYPE, _NAME_RE,
    Data, _as_batches, _as_ms, _conform_batch, _day_of_rel, _day_str, _fsync_file, _iso, _native, _NewFile,
    _PartitionedWriter, _schema_from_b64, _schema_to_b64, _split_by_day, _storage_schema, _stored_stream_rows,
    _tmp_path, _to_ts_type, _ts_ms, _Txn, _unlink)
from featurestore.stores import object_store, offline_claimed, time_ranges, writers
from featurestore.stores.offline_log import (ANY, CommitConflict, Plan, TableLog, _app, _check_after,  # noqa: F401
                                            _committed_app, _committed_app_version)
from featurestore.stores.time_ranges import Ranges


class OfflineTable(TableLog):
    """One versioned table of events (see the module docstring and ``docs/offline-store.md``).

    >>> t = OfflineTable("/data/offline", "user_spend")                       # doctest: +SKIP
    >>> v = t.write_range(arrow_table, start_ms, end_ms)                      # doctest: +SKIP
    >>> t.read(v).num_rows, t.files(v)[:1]                                    # doctest: +SKIP
    """

    def _write_stream(self, txn: _Txn, schema: pa.Schema, batches: Iterator[pa.RecordBatch], ts_column: str,
                      rng: Optional[Tuple[int, int]]) -> List[_NewFile]:
        ts_index = schema.get_field_index(ts_column)

        def parts():
            for batch in batches:
                batch = _conform_batch(batch, schema, ts_column, self._where)
                yield from _split_by_day(batch, ts_index, rng, self._where)
        return self._write_parts(txn, schema, ts_column, parts())

    def _write_parts(self, txn: _Txn, schema: pa.Schema, ts_column: str,
                     parts: Iterator[Tuple[int, pa.RecordBatch]]) -> List[_NewFile]:
        """Write ``(day, batch)`` parts into new staged files of their days, all or none; the files join
        the transaction ``txn``."""
        writer = _PartitionedWriter(self._staging, schema, ts_column)
        try:
            for day, part in parts:
                writer.add(day, part)
            files = writer.close()
        except BaseException:
            writer.abort()
            raise
        txn.files.extend(files)
        return files

    def _unify(self, base: Optional[dict], new: Optional[pa.Schema], ts_column: str) -> pa.Schema:
        old = _schema_from_b64(base["arrow_schema"]) if base else None
        if old is None and new is None:
            return pa.schema([pa.field(ts_column, TS_TYPE)])
        if old is None or new is None:
            return old if new is None else new
        for f in new:
            i = old.get_field_index(f.name)
            if i >= 0 and old.field(i).type != f.type and not pa.types.is_null(f.type) \
                    and not pa.types.is_null(old.field(i).type):  # a null-typed column (no values) fits any type
                raise OfflineStoreError(f"{self._where}: column '{f.name}' is {f.type} in the new data but "
                                        f"{old.field(i).type} in the table")
        return pa.unify_schemas([old, new])

    def _rewrite_keeping(self, txn: _Txn, base: dict, rel: str, drop: Ranges) -> List[_NewFile]:
        """New file(s) with the rows of ``rel`` whose time is in none of the ranges ``drop`` (same schema,
        same date)."""
        ts_column = base.get("ts_column", DEFAULT_TS_COLUMN)
        # (object storage: read whole, one GET, when small: a concurrent commit archives it by copy + delete,
        # and a ranged read of the live object after the delete fails instead of finding the archived copy)
        size = base.get("file_stats", {}).get(rel, {}).get("bytes")
        with self._open_sized(rel, base["version"], size) as f:
            pf = pq.ParquetFile(f)
            schema = pf.schema_arrow.remove_metadata()
            ts_index = schema.get_field_index(ts_column)

            def parts():
                for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS // 4):
                    batch = pa.RecordBatch.from_arrays(batch.columns, schema=schema)
                    keep = ~time_ranges.inside(_ts_ms(batch.column(ts_index)), drop)
                    if keep.any():
                        yield from _split_by_day(batch.filter(pa.array(keep)), ts_index, None, self._where)
            return self._write_parts(txn, schema, ts_column, parts())

    def _without(self, txn: _Txn, base: dict, drop: Ranges, rewrites: dict) -> Tuple[List[str], List[_NewFile]]:
        """The base without its rows in the ranges ``drop``: (base files kept as they are, new files with
        the other rows of the files partly in them). ``rewrites`` keeps those new files across commit
        attempts (relative path -> files); the rewrite of a file a concurrent commit removed is dropped."""
        live = set(base["files"])
        for rel in list(rewrites):
            if rel not in live:
                txn.discard(rewrites.pop(rel))
        kept: List[str] = []
        new: List[_NewFile] = []
        for rel in base["files"]:
            day = _day_of_rel(rel)
            first, last = day * DAY_MS, (day + 1) * DAY_MS - 1
            if not time_ranges.touches(drop, first, last):
                kept.append(rel)
                continue
            if time_ranges.covers(drop, first, last):
                continue  # the whole date
            st = self._file_stats(base, rel)
            if st["rows"] == 0 or not time_ranges.touches(drop, st["min_ts"], st["max_ts"]):
                kept.append(rel)
            elif not time_ranges.covers(drop, st["min_ts"], st["max_ts"]):
                if rel not in rewrites:
                    rewrites[rel] = self._rewrite_keeping(txn, base, rel, drop)
                new.extend(rewrites[rel])
        return kept, new

    def write_range(self, data: Data, start_ms: int, end_ms: Optional[int],
                    unique_on: Optional[Sequence[str]] = None, rows_key: Optional[str] = None) -> int:
        """Replace every row with ``start_ms <= ts < end_ms`` by the rows of ``data``; returns the new version.

        ``data`` is streamed (a RecordBatchReader or an iterable of RecordBatches is never held in memory
        as a whole) and must lie in the range, else nothing is committed. Dates fully inside the range
        are dropped and rewritten; files of partly covered dates that straddle a range boundary are
        rewritten with their rows outside the range. Re-running a range is idempotent; empty ``data``
        commits a version without the range's rows. ``end_ms=None``: the range ends just after the last
        row of ``data`` (at ``start_ms`` when it is empty), and the rows of the batch face's earlier ranges
        after that end are dropped too (the face has none there now, e.g. after its view's filter changed).

        The range becomes the batch face's (``batch_ranges`` in the manifest): :meth:`commit_stream`
        adds a row inside it only when the table lacks it (an event that arrived after this backfill).

        ``unique_on``: the caller asserts that no two rows of ``data`` share these columns and the time
        (ms). The new version records it (``unique_on`` in the manifest) when the rows it keeps outside the
        range were unique on the same columns too (their times differ from every new row's), so readers
        may skip tie-breaking; every other write drops it.

        ``rows_key``: what the rows were computed under (a view's ``rows_fingerprint``). The manifest's
        ``batch_rows_key`` says what every batch-owned row was computed under: this key when the write
        replaces every earlier batch range or they had the same key, :data:`MIXED_ROWS` when rows of another
        key stay outside the range, None when unknown (no key given, or rows of an unknown one stay)."""
        start = _as_ms(start_ms, "start_ms")
        end = None if end_ms is None else _as_ms(end_ms, "end_ms")
        if end is not None and start >= end:
            raise OfflineStoreError(f"{self._where}: empty write range [{_iso(start)}, {_iso(end)}): "
                                    f"start_ms must be before end_ms")
        writers.sweep_if_due(self._staging, TMP_PREFIX)  # temp files of writers that died
        txn = _Txn()
        try:
            schema_in, batches = _as_batches(data, self._where)
            ts_column = self._resolved_ts_column(self._latest_manifest())
            schema = _storage_schema(schema_in, ts_column, self._where) if schema_in is not None else None
            rng = (start, time_ranges.MAX_MS if end is None else end)
            data_files = self._write_stream(txn, schema, batches, ts_column, rng) if schema else []
            open_end = end is None
            if open_end:
                last = [nf.max_ts for nf in data_files if nf.max_ts is not None]
                pushed = self.follow.last_time() if self.follow is not None else None
                if pushed is not None and pushed >= start:  # pushed events are the batch face's too
                    last.append(pushed)
                end = max(last) + 1 if last else start
            rewrites: dict = {}  # relative path of a base file -> its rows outside the range (new files)
            rewritten_for: dict = {"drop": None}  # the range those rewrites left out
            followed: dict = {"key": None}

            def build(base: Optional[dict]) -> Plan:
                owned = (base or {}).get("batch_ranges", [])
                # an open end also empties the batch face's ranges after the data's last row: the face has no
                # rows there now (rows of an earlier definition, e.g. a filter that kept later events, never
                # outlive a re-backfill); the stream's rows between them stay
                later = [[max(lo, end), e] for lo, e in time_ranges.normalized(owned) if e > end] if open_end else []
                drop = time_ranges.normalized([[start, end], *later])
                if rewritten_for["drop"] != drop:  # first attempt, or the winner of a race changed the ranges
                    for rel in list(rewrites):
                        txn.discard(rewrites.pop(rel))
                    rewritten_for["drop"] = drop
                keyed = _keyed_ranges(base, owned, drop, rows_key)
                key = _rows_key(keyed, rows_key)
                if (key == rows_key and rows_key is not None and (base or {}).get("batch_rows_key") != rows_key
                        and self.follow is not None
                        and self.follow.held_outside(base, [[lo, hi] for lo, hi, _ in keyed])):
                    key = MIXED_ROWS  # pushed rows of the earlier definition stay outside the ranges
                fields = {"range": [start, end] if start < end else None,
                          "batch_ranges": time_ranges.add(owned, start, end),
                          "batch_rows_key": key, "batch_rows_keys": keyed}
                extra, extra_schema = self._followed(txn, base, drop, followed, fields)
                unified = self._unify(base, schema, ts_column)
                if extra_schema is not None:
                    unified = self._unify({"arrow_schema": _schema_to_b64(unified)}, extra_schema, ts_column)
                # pushed rows this commit adds (follow) are not checked: they may tie with any other row
                checked = unique_on is not None and not any(nf.rows for nf in extra)
                unique = list(unique_on) if checked else None
                if base is None:
                    return [], list(data_files) + extra, unified, {**fields, "unique_on": unique}
                kept, rewritten = self._without(txn, base, drop, rewrites)
                kept_unique = base.get("unique_on") == unique or not any(
                    self._file_stats(base, rel)["rows"] for rel in kept) and not any(nf.rows for nf in rewritten)
                fields["unique_on"] = unique if kept_unique else None
                return kept, list(data_files) + rewritten + extra, unified, fields

            return self._commit(txn, "write_range", build)
        finally:
            txn.abort()

    def _followed(self, txn: _Txn, base: Optional[dict], drop: Ranges, cache: dict,
                  fields: dict) -> Tuple[List[_NewFile], Optional[pa.Schema]]:
        """The files of the rows :attr:`follow` says this commit must add on ``base`` (``drop``: the ranges
        it replaces), written once per distinct plan (a lost commit race re-plans on the winner)."""
        plan = self.follow.plan(base, drop) if self.follow is not None else None
        if plan is None:  # (a winner of a race may have added them: the files of an earlier plan go)
            txn.discard(cache.pop("files", []))
            cache["key"] = None
            return [], None
        if cache["key"] != plan.key:
            txn.discard(cache.get("files", []))
            ts_column = self._resolved_ts_column(base)
            files = self._write_stream(txn, plan.schema, plan.batches(), ts_column, None) if plan.rows else []
            cache.update(key=plan.key, files=files)
        fields["txns_set"] = {plan.app_id: plan.seq}
        return list(cache["files"]), plan.schema

    def follow_up(self) -> Optional[int]:
        """Commit the rows :attr:`follow` says the table lacks (a pushed event; operation ``push``); returns
        the new version, or None when there was nothing to add (or the table does not exist yet: its first
        write takes them)."""
        if self.follow is None or self._latest_manifest() is None:
            return None
        if self.follow.plan(self._latest_manifest(), []) is None:
            return None
        txn = _Txn()
        followed: dict = {"key": None}
        try:
            def build(base: Optional[dict]) -> Plan:
                fields: dict = {}
                extra, extra_schema = self._followed(txn, base, [], followed, fields)
                unified = self._unify(base, extra_schema, self._resolved_ts_column(base))
                return (list(base["files"]) if base else []), extra, unified, fields

            return self._commit(txn, "push", build)
        finally:
            txn.abort()

    def append(self, data: Data, *, app_id: Optional[str] = None, seq: Optional[int] = None,
               after_seq: object = ANY) -> int:
        """Add the rows of ``data`` (any timestamps); returns the new version.

        With ``app_id`` and ``seq`` the append is idempotent per application: when the table already
        recorded ``seq`` (or a later one) for ``app_id``, nothing is written and the version that recorded
        it is returned (what a checkpointed streaming sink needs to commit exactly once).

        ``after_seq`` makes it a compare-and-set: commit only if the seq last recorded for ``app_id`` is
        ``after_seq`` (``None``: nothing recorded yet), else raise :class:`CommitConflict`. Writers that
        each append the items after the recorded position then never append an item twice, however
        they race (the log shipper's use)."""
        app = _app(app_id, seq, self._where)
        if after_seq is not ANY and app is None:
            raise OfflineStoreError(f"{self._where}: after_seq needs app_id and seq")
        writers.sweep_if_due(self._staging, TMP_PREFIX)  # temp files of writers that died
        txn = _Txn()
        try:
            base = self._latest_manifest()
            if app is not None:
                _check_after(base, app, after_seq, self._where)
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            schema_in, batches = _as_batches(data, self._where)
            ts_column = self._resolved_ts_column(base)
            schema = _storage_schema(schema_in, ts_column, self._where) if schema_in is not None else None
            new = self._write_stream(txn, schema, batches, ts_column, None) if schema else []

            def build(base: Optional[dict]) -> Plan:
                return (list(base["files"]) if base else []), list(new), self._unify(base, schema, ts_column), {}

            return self._commit(txn, "append", build, app=app, after=after_seq)
        finally:
            txn.abort()

    def add_files(self, files: List[Union[Path, str]], *, app_id: Optional[str] = None,
                  seq: Optional[int] = None) -> int:
        """Register already-written Parquet files as a new version (the streaming sink's committed files).

        A file whose timestamp column is ``timestamp[ms, tz=UTC]`` and whose rows all fall on one UTC date
        is moved into that date's directory as is (a rename; a copy when it lies on another filesystem);
        any other file is rewritten into the layout (split by date, timestamps converted) and then
        deleted. On failure the files are left where they were. ``app_id``/``seq``: as for :meth:`append`."""
        app = _app(app_id, seq, self._where)
        writers.sweep_if_due(self._staging, TMP_PREFIX)  # temp files of writers that died
        txn = _Txn()
        sources_to_delete: List[Path] = []
        try:
            base = self._latest_manifest()
            if app is not None:
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            ts_column = self._resolved_ts_column(base)
            paths = [Path(p) for p in files]
            inspected = [self._inspect(p, ts_column) for p in paths]  # validate everything before moving
            schema: Optional[pa.Schema] = None
            for p, (file_schema, _, _, _) in zip(paths, inspected):
                stored = _storage_schema(file_schema, ts_column, f"{self._where}: {p}")
                if schema is None:
                    schema = stored
                else:
                    try:
                        schema = pa.unify_schemas([schema, stored])
                    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                        raise OfflineStoreError(f"{self._where}: {p} does not match the other files' schema: "
                                                f"{str(exc).splitlines()[0]}") from None
            self._unify(base, schema, ts_column)  # type conflicts with the table fail before anything moves
            new: List[_NewFile] = []
            for p, (file_schema, rows, lo, hi) in zip(paths, inspected):
                # rows > 0 means lo/hi are set (null timestamps were rejected)
                as_is = (lo is not None and hi is not None and file_schema.field(ts_column).type == TS_TYPE
                         and lo // DAY_MS == hi // DAY_MS)
                if rows == 0:
                    sources_to_delete.append(p)
                elif as_is and lo is not None and hi is not None:  # (mypy)
                    new.append(self._adopt(txn, p, file_schema, rows, lo, hi))
                    if not txn.files[-1].moved:
                        sources_to_delete.append(p)
                else:
                    with _native(p) as f:
                        pf = pq.ParquetFile(f)
                        stored = _storage_schema(file_schema, ts_column, f"{self._where}: {p}")
                        new.extend(self._write_stream(txn, stored, pf.iter_batches(batch_size=ROW_GROUP_ROWS // 4),
                                                      ts_column, None))
                    sources_to_delete.append(p)

            def build(base: Optional[dict]) -> Plan:
                return (list(base["files"]) if base else []), list(new), self._unify(base, schema, ts_column), {}

            version = self._commit(txn, "add_files", build, app=app)
            if txn.committed:
                for p in sources_to_delete:
                    _unlink(p)
            return version
        finally:
            txn.abort()

    def commit_stream(self, files: List[Union[Path, str]], *, app_id: str, seq: int, topic: str,
                      fingerprint: Optional[str] = None, partition_column: str, offset_column: str,
                      keep_offsets: bool = False, rebuild: bool = False, restart: bool = False,
                      count_column: Optional[str] = None, rows_key: Optional[str] = None,
                      utc_columns: Sequence[str] = ()) -> "StreamCommit":
        """Add the rows of a streaming job's Parquet ``files`` (each row carries the Kafka partition and
        offset of its record) that the table does not hold yet; returns a :class:`StreamCommit`.

        * A row whose time lies in a range the batch face owns (``batch_ranges``: every range a
          :meth:`write_range` replaced) is not added (the backfill holds that event), unless the range's rows
          were computed under this ``rows_key`` and the table lacks it: an event that reached the stream after
          the backfill claiming its range, matched by row identity (:mod:`featurestore.stores.offline_claimed`;
          what the stream read there is kept in side files the manifest's ``claimed_seen`` names).
        * A row whose offset is below the table's next offset for its partition (``stream.next_offsets``)
          is not added: an earlier commit holds it (a job started afresh re-reads the topic).
        * ``app_id``/``seq``: a seq already recorded commits nothing (a committer replaying its intent).

        The offsets move past every row of ``files``, added or not; ``keep_offsets`` keeps the two columns
        in the stored rows (dead letters), else they are dropped. ``rebuild=True`` (the view's definition
        changed since the stream last wrote the table): every row outside the batch ranges is replaced by
        the rows of ``files``, the whole topic re-read under the new definition, and the offsets start
        over under ``fingerprint``. ``restart=True``: the offsets start over under the new ``topic`` and
        ``fingerprint``, every row is kept. Without either, a table streamed from another topic or under
        another ``fingerprint`` is refused. ``count_column``: count the added rows per value of it. ``rows_key``:
        what the rows were computed under (a view's ``rows_fingerprint``), kept in the stream record.
        ``utc_columns``: timestamp columns the files hold without a time zone (Flink's Parquet writer marks
        none) that are UTC, stored as such (the event-time column always is)."""
        app = _app(app_id, seq, self._where)
        if app is None:
            raise OfflineStoreError(f"{self._where}: commit_stream needs app_id and seq (its idempotency token)")
        writers.sweep_if_due(self._staging, TMP_PREFIX)  # temp files of writers that died
        base = self._latest_manifest()
        done = _committed_app(base, app)
        if done is not None:
            return StreamCommit(int(done["version"]), int(done.get("rows", 0)), dict(done.get("counts", {})))
        ts_column = self._resolved_ts_column(base)
        sources = [self._stream_file(Path(p), ts_column, partition_column, offset_column, keep_offsets, utc_columns)
                   for p in files]
        schema = None
        for src in sources:
            try:
                schema = src.schema if schema is None else pa.unify_schemas([schema, src.schema])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise OfflineStoreError(f"{self._where}: {src.path} does not match the other files' schema: "
                                        f"{str(exc).splitlines()[0]}") from None
        self._unify(base, schema, ts_column)  # type conflicts with the table fail before anything is written
        txn = _Txn()
        derived: dict = {"key": None}
        claimed: dict = {"key": None}  # the candidates added on one base (offline_claimed)
        rewrites: dict = {"key": None, "files": {}}

        def build(base: Optional[dict]) -> Plan:
            record = (base or {}).get("stream")
            if record is not None and not (rebuild or restart) and \
                    (record.get("topic"), record.get("fingerprint")) != (topic, fingerprint):
                raise OfflineStoreError(
                    f"{self._where} was streamed from topic '{record.get('topic')}' under definition "
                    f"{str(record.get('fingerprint'))[:12]}, not '{topic}' under {str(fingerprint)[:12]}: "
                    "its streamed rows must be rebuilt (commit_stream(rebuild=True))")
            nexts = {} if rebuild or restart or record is None else \
                {int(k): int(v) for k, v in record["next_offsets"].items()}
            owned = (base or {}).get("batch_ranges", [])
            claim = offline_claimed.claimable(base, rows_key, MIXED_ROWS)
            key = json.dumps([sorted(nexts.items()), owned, claim])
            if key != derived["key"]:  # first attempt, or a concurrent commit changed what the table holds
                txn.discard(derived.get("files", []))
                derived.update(self._filter_stream(txn, sources, ts_column, partition_column, offset_column,
                                                   keep_offsets, nexts, owned, count_column, claim), key=key)
            fresh = rebuild or restart or record is None  # the offsets start over: so does what was seen
            fields: dict = {}
            if len(derived["candidates"]):  # rows inside claimed ranges: add what the table lacks (on this base)
                if claimed["key"] != [key, (base or {}).get("version")]:
                    offline_claimed.discard(self, txn, claimed)
                    claimed.update(offline_claimed.add(self, txn, base, sources, derived["candidates"], rows_key, fresh,
                                                       (ts_column, partition_column, offset_column, keep_offsets),
                                                       count_column), key=[key, (base or {}).get("version")])
                fields["claimed_seen"] = claimed["plan"].record
            else:
                offline_claimed.discard(self, txn, claimed)
                if fresh or ((base or {}).get("claimed_seen") or {}).get("rows_key") != rows_key:
                    fields["claimed_seen"] = None  # a new definition or new offsets: earlier reads do not count
            kept = list(base["files"]) if base else []
            new = list(derived["files"]) + list(claimed.get("files", []))
            if rebuild and base is not None:
                drop = time_ranges.complement(owned)
                if rewrites["key"] != json.dumps(drop):
                    for old in rewrites["files"].values():
                        txn.discard(old)
                    rewrites.update(key=json.dumps(drop), files={})
                kept, rewritten = self._without(txn, base, drop, rewrites["files"])
                new += rewritten
            offsets = dict(nexts)
            for part, last in derived["seen"].items():
                offsets[part] = max(offsets.get(part, 0), last + 1)
            stream = {"topic": topic, "fingerprint": fingerprint,
                      "next_offsets": {str(k): v for k, v in sorted(offsets.items())}}
            if rows_key is not None:
                stream["rows_key"] = rows_key
            rows, counts = derived["rows"] + claimed.get("rows", 0), dict(derived["counts"])
            for value, n in claimed.get("counts", {}).items():
                counts[value] = counts.get(value, 0) + n
            derived["txn"] = {"rows": rows, "counts": counts}
            return kept, new, self._unify(base, schema, ts_column), {**fields, "stream": stream, "txn": derived["txn"]}

        try:
            version = self._commit(txn, "stream_rebuild" if rebuild else "stream", build, app=app)
            if not txn.committed:  # another committer with this app_id recorded the seq first
                rec = _committed_app(self._latest_manifest(), app) or {}
                return StreamCommit(version, int(rec.get("rows", 0)), dict(rec.get("counts", {})))
            return StreamCommit(version, derived["txn"]["rows"], derived["txn"]["counts"])
        finally:
            if not txn.committed:
                offline_claimed.discard(self, txn, claimed)
            txn.abort()

    def _stream_file(self, path: Path, ts_column: str, partition_column: str, offset_column: str,
                     keep_offsets: bool, utc_columns: Sequence[str] = ()) -> "_StreamFile":
        where = f"{self._where}: {path}"
        try:
            with _native(path) as f:
                pf = pq.ParquetFile(f)
                file_schema = pa.schema([fld.remove_metadata() for fld in pf.schema_arrow])
                for c in (partition_column, offset_column):
                    if c not in file_schema.names:
                        raise OfflineStoreError(f"{where}: no '{c}' column (the Kafka partition and offset of "
                                                "each row)")
                spans = _file_spans(pf, partition_column, offset_column)
        except FileNotFoundError:
            raise OfflineStoreError(f"{where}: no such file") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise OfflineStoreError(f"{where}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        stored = file_schema if keep_offsets else pa.schema(
            [f for f in file_schema if f.name not in (partition_column, offset_column)])
        stored = pa.schema([f.with_type(pa.timestamp(f.type.unit, tz="UTC")) if f.name in utc_columns
                            and pa.types.is_timestamp(f.type) and f.type.tz is None else f for f in stored])
        return _StreamFile(path, _storage_schema(stored, ts_column, where), spans)

    def _filter_stream(self, txn: _Txn, sources: List["_StreamFile"], ts_column: str, partition_column: str,
                       offset_column: str, keep_offsets: bool, nexts: Dict[int, int], owned: Ranges,
                       count_column: Optional[str], claim: Optional[Ranges] = None) -> dict:
        """Write the rows of ``sources`` the table does not hold (see :meth:`commit_stream`) as new files;
        the rows inside the ranges ``claim`` are ``candidates`` (:class:`offline_claimed.Candidates`)."""
        # Files of one run never share a record; files of two runs can (a committer that saw the files of
        # a run started afresh before those of the run it replaced): then a record is taken from the first.
        overlap = _spans_overlap([src.spans for src in sources])
        taken = np.empty(0, dtype=np.int64)
        seen: Dict[int, int] = {}
        rows = 0
        counts: Dict[str, int] = {}
        writers: Dict[str, _PartitionedWriter] = {}
        cands = offline_claimed.Candidates()
        try:
            for s, src in enumerate(sources):
                for part, (_lo, hi) in src.spans.items():
                    seen[part] = max(seen.get(part, -1), hi)
                keys_here = []
                with _native(src.path) as f:
                    pf = pq.ParquetFile(f)
                    writer = writers.get(src.schema.to_string())
                    if writer is None:
                        writer = writers[src.schema.to_string()] = _PartitionedWriter(self._staging, src.schema, ts_column)
                    ts_index = src.schema.get_field_index(ts_column)
                    for b, batch in enumerate(pf.iter_batches(batch_size=ROW_GROUP_ROWS // 4)):
                        part = batch.column(partition_column).to_numpy(zero_copy_only=False).astype(np.int64)
                        off = batch.column(offset_column).to_numpy(zero_copy_only=False).astype(np.int64)
                        keep = np.ones(batch.num_rows, dtype=bool)
                        if nexts:
                            uniq, inverse = np.unique(part, return_inverse=True)
                            keep &= off >= np.array([nexts.get(int(p), 0) for p in uniq], dtype=np.int64)[inverse]
                        if overlap:
                            keys = (part << 40) | off
                            keep &= ~np.isin(keys, taken)
                            keys_here.append(keys)
                        if owned:
                            ts = batch.column(ts_column)
                            ts = _to_ts_type(ts) if ts.type != TS_TYPE else ts
                            ms = _ts_ms(ts.fill_null(0))
                            inside = time_ranges.inside(ms, owned)
                            cand = keep & inside & time_ranges.inside(ms, claim) if claim else None
                            if cand is not None and cand.any():
                                rows_at = np.flatnonzero(cand)
                                stored = batch.take(pa.array(rows_at))
                                if not keep_offsets:
                                    stored = stored.drop_columns([partition_column, offset_column])
                                cands.add(s, b, rows_at, ms[rows_at],
                                          _conform_batch(stored, src.schema, ts_column, self._where))
                            keep &= ~inside
                        if not keep.any():
                            continue
                        kept = _stored_stream_rows(batch.filter(pa.array(keep)), src.schema, ts_column, self._where,
                                                   keep_offsets, (partition_column, offset_column), count_column,
                                                   counts)
                        rows += kept.num_rows
                        for day, piece in _split_by_day(kept, ts_index, None, self._where):
                            writer.add(day, piece)
                if keys_here:
                    taken = np.union1d(taken, np.concatenate(keys_here))
            new = [nf for w in writers.values() for nf in w.close()]
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        txn.files.extend(new)
        return {"files": new, "rows": rows, "counts": counts, "seen": seen, "candidates": cands}

    def _inspect(self, path: Path, ts_column: str) -> Tuple[pa.Schema, int, Optional[int], Optional[int]]:
        """(storage-checked arrow schema, rows, min ts ms, max ts ms) of a Parquet file to add."""
        where = f"{self._where}: {path}"
        try:
            with _native(path) as f:
                pf = pq.ParquetFile(f)
                schema = pa.schema([fld.remove_metadata() for fld in pf.schema_arrow])
                _storage_schema(schema, ts_column, where)  # the checks; the file keeps its own ts type
                lo = hi = None
                nulls = 0
                for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=[ts_column]):
                    col = batch.column(0)
                    nulls += col.null_count
                    if len(col) and not col.null_count:
                        ms = _ts_ms(_to_ts_type(col) if col.type != TS_TYPE else col)
                        lo = int(ms.min()) if lo is None else min(lo, int(ms.min()))
                        hi = int(ms.max()) if hi is None else max(hi, int(ms.max()))
                rows = pf.metadata.num_rows
        except FileNotFoundError:
            raise OfflineStoreError(f"{where}: no such file") from None
        except (pa.ArrowInvalid, OSError) as exc:
            raise OfflineStoreError(f"{where}: not a readable Parquet file: {str(exc).splitlines()[0]}") from None
        if nulls:
            raise OfflineStoreError(f"{where}: {nulls} row(s) have a null '{ts_column}'; every event needs a timestamp")
        return schema, rows, lo, hi

    def _adopt(self, txn: _Txn, path: Path, schema: pa.Schema, rows: int, lo: int, hi: int) -> _NewFile:
        day = lo // DAY_MS
        folder = self._staging / f"{PARTITION_COLUMN}={_day_str(day)}"
        folder.mkdir(parents=True, exist_ok=True)
        uid = uuid.uuid4().hex
        nf = _NewFile(tmp=_tmp_path(self._staging, folder, uid), day=day, uid=uid[:8], rows=rows, min_ts=lo, max_ts=hi,
                      size=path.stat().st_size, source=path)
        try:
            os.rename(path, nf.tmp)
            nf.moved = True
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            import shutil

            shutil.copyfile(path, nf.tmp)
            _fsync_file(nf.tmp)
        txn.files.append(nf)
        return nf



@dataclass
class StreamCommit:
    """What :meth:`OfflineTable.commit_stream` did: the version that holds the files' rows, how many
    rows it added and, per value of the ``count_column``, how many of them."""

    version: int
    rows: int
    counts: Dict[str, int] = field(default_factory=dict)


MIXED_ROWS = "mixed"  # batch_rows_key: batch-owned rows computed under more than one rows_key


def _keyed_ranges(base: Optional[dict], owned, drop, rows_key: Optional[str]) -> list:
    """``batch_rows_keys`` after a write replacing the ranges ``drop`` under ``rows_key``
    (OfflineTable.write_range): ``[start_ms, end_ms, key]`` per batch-owned range, what its rows were computed
    under (None: unknown). A manifest from before the field gives every owned range its ``batch_rows_key``."""
    before = (base or {}).get("batch_rows_keys")
    if before is None:
        key = (base or {}).get("batch_rows_key")
        before = [[lo, hi, key] for lo, hi in time_ranges.normalized(owned)]
    out = []
    for lo, hi, key in before:  # what the write leaves of each earlier range keeps its key
        out.extend([a, b, key] for a, b in time_ranges.intersected([[lo, hi]], time_ranges.complement(drop)))
    out.extend([lo, hi, rows_key] for lo, hi in time_ranges.normalized(drop))
    merged: list = []
    for lo, hi, key in sorted(out, key=lambda r: (r[0], r[1])):
        if merged and merged[-1][1] == lo and merged[-1][2] == key:
            merged[-1][1] = hi
        else:
            merged.append([lo, hi, key])
    return merged


def _rows_key(keyed, rows_key: Optional[str]) -> Optional[str]:
    """The ``batch_rows_key`` of the batch-owned ranges ``keyed`` (:func:`_keyed_ranges`) after a write under
    ``rows_key``: that key when every range's rows were computed under it (an earlier definition's rows were
    all replaced, by this write or by earlier ones under the same key), None when rows of an unknown key stay,
    else :data:`MIXED_ROWS`."""
    if rows_key is None:
        return None
    keys = {key for _, _, key in keyed}
    if keys <= {rows_key}:
        return rows_key
    return None if None in keys else MIXED_ROWS


@dataclass
class _StreamFile:
    path: Path
    schema: pa.Schema  # the stored rows' schema (without the offset columns unless kept)
    spans: Dict[int, Tuple[int, int]]  # Kafka partition -> (first, last) offset of its rows in the file


def _offset_spans(partitions: pa.Array, offsets: pa.Array) -> Iterator[Tuple[int, int, int]]:
    """(partition, min offset, max offset) of the rows of one batch."""
    if partitions.null_count or offsets.null_count:
        raise OfflineStoreError("a streamed row has no Kafka partition or offset")
    part = partitions.to_numpy(zero_copy_only=False).astype(np.int64)
    off = offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    for p in np.unique(part).tolist():
        mine = off[part == p]
        yield int(p), int(mine.min()), int(mine.max())


def _file_spans(pf: pq.ParquetFile, partition_column: str, offset_column: str) -> Dict[int, Tuple[int, int]]:
    spans: Dict[int, Tuple[int, int]] = {}
    for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS, columns=[partition_column, offset_column]):
        for part, lo, hi in _offset_spans(batch.column(0), batch.column(1)):
            old = spans.get(part)
            spans[part] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
    return spans


def file_offset_spans(path: Union[Path, str], partition_column: str, offset_column: str) -> Dict[int, Tuple[int, int]]:
    """Kafka partition -> (first, last) offset of the rows of one streamed Parquet file."""
    with _native(path) as f:
        return _file_spans(pq.ParquetFile(f), partition_column, offset_column)


def _spans_overlap(spans: List[Dict[int, Tuple[int, int]]]) -> bool:
    """Whether two files hold rows of one partition with interleaved offsets."""
    by_part: Dict[int, List[Tuple[int, int]]] = {}
    for file_spans in spans:
        for part, span in file_spans.items():
            by_part.setdefault(part, []).append(span)
    for ranges in by_part.values():
        ranges.sort()
        if any(ranges[i + 1][0] <= ranges[i][1] for i in range(len(ranges) - 1)):
            return True
    return False


class OfflineStore:
    """The offline tables under one root directory (one per feature view). ``follower(name)``: the
    :attr:`OfflineTable.follow` of table ``name`` (the rows pushed to its source; None: none)."""

    def __init__(self, root: Union[Path, str], follower=None):
        self.root = object_store.as_root(root)  # a local folder or an s3:// location (object_store)
        self.follower = follower

    def __repr__(self) -> str:
        return f"OfflineStore({str(self.root)!r})"

    def table(self, name: str, ts_column: Optional[str] = None) -> OfflineTable:
        """The table ``name`` (it need not exist yet: the first write creates it)."""
        table = OfflineTable(self.root, name, ts_column=ts_column)
        if self.follower is not None:
            table.follow = self.follower(name)
        return table

    def tables(self) -> List[str]:
        """Names of the tables that have at least one version, sorted."""
        remote = object_store.is_remote(self.root)
        try:
            entries = self.root.list_names() if remote else sorted(os.listdir(self.root))
        except FileNotFoundError:
            return []
        out = []
        for name in entries:
            if _NAME_RE.match(name) and (remote or (self.root / name).is_dir()):
                if OfflineTable(self.root, name).version is not None:
                    out.append(name)
        return out


__all__ = ["OfflineStore", "OfflineTable", "StreamCommit", "OfflineStoreError", "CommitConflict", "TS_TYPE", "DAY_MS",
           "MIXED_ROWS"]
