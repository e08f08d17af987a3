"""The streaming job's offline commits: its Parquet files into the offline tables, each event exactly once.

Flink's Parquet sink of a source writes each stored event once into
``<offline root>/_stream_staging/_staged/<source>/<layout>/`` (per view a flag and its projections:
``tables.staged_layout``; dead letters: ``_stream_staging/_dead_letters/<source>/``) and makes a file
visible when the checkpoint that covers it completes; :func:`split_staged` splits each visible file into
the views' folders ``_stream_staging/<view>/<fp>/``. Every row carries the Kafka partition and offset of
its record. :class:`DirCommitter`
registers the visible files of one staging directory with ``OfflineTable.commit_stream`` under an
idempotency token (``app_id``, ``seq``) and an intent file, so a crash at any point neither loses a file
nor registers it twice (a view no row reached gets an empty file once a checkpoint of the run has
completed, or for a standalone pass once the job's consumer group has committed an offset, so its table
exists, without rows, as the backfill's does: :meth:`Committer.commit`,
:meth:`DirCommitter.commit_empty`); ``commit_stream`` adds only the rows the table does not hold: none inside a
range a backfill owns, none below the table's next offset of its partition (what a job started afresh
re-reads). So whatever the order of backfills, streams, restarts and definition changes, a table holds
each event of its source once.

A view whose definition changed since the stream last wrote its table is **rebuilt**: the job reads the
topic from its first record (it is started afresh, see :func:`rebuild_plan`), the committer holds the
view's files until the job has read past where the old definition stopped, then replaces every streamed
row of the table (all rows outside the backfilled ranges) with them in one commit. Until then the table
keeps the old definition's rows; unchanged views go on where they were.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from featurestore.semantics import NULL_KEY_PREFIX

log = logging.getLogger("featurestore.streaming")

COMMITTER_STATE = "_committer.json"
COMMITTER_PENDING = "_pending.json"
STAGED_LAYOUT = "_layout.json"  # beside a source's staged files: tables.staged_layout
STAGED_LAYOUTS = "_layouts"  # beside a source's staged folders: a copy of each removed folder's layout
PARTITION_COLUMN, OFFSET_COLUMN = "__kafka_partition", "__kafka_offset"  # in the view sinks' files
DEAD_PARTITION, DEAD_OFFSET = "kafka_partition", "kafka_offset"  # columns of the dead-letter tables
EMPTY_FILE = "empty.parquet"  # DirCommitter.commit_empty: creates a table no row reached
HOURS_SUFFIX = ":hours"  # beside a source's metrics hash: its dead letters and events per hour committed


def _visible_files(staging: Path) -> List[Path]:
    """Files Flink has committed (visible part files)."""
    if not staging.is_dir():
        return []
    return [f for f in sorted(staging.iterdir())
            if f.is_file() and not f.name.startswith((".", "_")) and "inprogress" not in f.name]


def _write_json(path: Path, doc: dict) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(doc, sort_keys=True))
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


@dataclass(frozen=True)
class StreamIdentity:
    """What a table's streamed rows come from: the topic, the definition (``None``: dead letters) and the
    columns holding each row's Kafka partition and offset (dropped from the stored rows of a view)."""

    topic: str
    fingerprint: Optional[str]
    partition_column: str = PARTITION_COLUMN
    offset_column: str = OFFSET_COLUMN
    keep_offsets: bool = False
    rows_key: Optional[str] = None  # the view's rows_fingerprint (what its stored rows depend on)
    utc_columns: Tuple[str, ...] = ()  # timestamp values (a created column): UTC, unmarked in Flink's files


@dataclass
class Rebuild:
    """A view being rebuilt: the table's stream record under the old definition."""

    old: dict  # the manifest's ``stream``: topic, fingerprint, next_offsets
    ready_at_pass: Optional[int] = None  # the first committer pass that saw the job past the old offsets

    def behind(self, progress: Dict[int, int], low: Dict[int, int], high: Dict[int, int]) -> List[int]:
        """Partitions the job has not yet read past the old definition's last row on (``progress``: the
        highest offset read per partition; ``low``/``high``: the topic's first and end offsets: records
        Kafka deleted, or never had since the topic was recreated, are not waited for)."""
        out = []
        for part, next_offset in self.old.get("next_offsets", {}).items():
            p = int(part)
            target = min(next_offset, high.get(p, next_offset))
            if progress.get(p, -1) + 1 < target and low.get(p, 0) < target:
                out.append(p)
        return out


class DirCommitter:
    """Registers the visible files of one staging directory into one OfflineTable, exactly once.

    Protocol (crash-safe at every step): list the visible files; write ``_pending.json`` (seq, files,
    rebuild); ``commit_stream(files, app_id, seq)`` (a no-op returning what was recorded if that seq is
    already in the table); delete what is left of the files; advance ``_committer.json`` (seq, rows and
    counts added); delete the pending file. The ``app_id`` is drawn when the staging directory is first
    used, so a new directory never collides with an old token. While ``rebuild`` is set, files are held
    (not committed) until :meth:`commit` is called with ``swap=True``."""

    def __init__(self, staging: Path, table, identity: StreamIdentity, count_reasons: bool = False,
                 rebuild: Optional[Rebuild] = None):
        self.staging = staging
        self.table = table
        self.identity = identity
        self.count_reasons = count_reasons
        self.rebuild = rebuild
        self._spans: Dict[str, Dict[int, Tuple[int, int]]] = {}  # held file -> its offset spans

    def state(self) -> dict:
        state = _read_json(self.staging / COMMITTER_STATE)
        if state is None:
            self.staging.mkdir(parents=True, exist_ok=True)
            state = {"app_id": f"stream-{uuid.uuid4().hex}", "seq": 0, "rows": 0, "by_reason": {}}
            _write_json(self.staging / COMMITTER_STATE, state)
        return state

    def set_state(self, **fields) -> None:
        state = self.state()
        state.update(fields)
        _write_json(self.staging / COMMITTER_STATE, state)

    def _commit_files(self, state: dict, pending: dict):
        ident = self.identity
        files = [self.staging / rel for rel in pending["files"] if (self.staging / rel).exists()]
        return self.table.commit_stream(
            files, app_id=state["app_id"], seq=pending["seq"], topic=ident.topic, fingerprint=ident.fingerprint,
            partition_column=ident.partition_column, offset_column=ident.offset_column,
            keep_offsets=ident.keep_offsets, rows_key=ident.rows_key, rebuild=pending.get("rebuild", False),
            restart=pending.get("restart", False), count_column="reason" if self.count_reasons else None,
            utc_columns=ident.utc_columns)

    def _finish(self, state: dict, pending: dict, result) -> int:
        for rel in pending["files"]:
            p = self.staging / rel
            if p.exists():  # committed, but the crash came before the files were deleted
                p.unlink()
        state["seq"] = pending["seq"]
        state["rows"] += result.rows
        added = {"rows": result.rows}
        for reason, n in result.counts.items():
            kind = reason if reason.startswith(NULL_KEY_PREFIX) else "malformed"
            state["by_reason"][kind] = state["by_reason"].get(kind, 0) + n
            added[kind] = added.get(kind, 0) + n
        _add_hour(state, added, int(time.time() * 1000))
        if pending.get("rebuild"):
            state.pop("rebuild_since", None)
        _write_json(self.staging / COMMITTER_STATE, state)
        (self.staging / COMMITTER_PENDING).unlink(missing_ok=True)
        if pending.get("rebuild"):
            self.rebuild = None
            self._spans.clear()
        return result.rows

    def held_progress(self) -> Dict[int, int]:
        """Per partition, the highest offset in the files held for a rebuild."""
        from featurestore.stores.offline import file_offset_spans

        out: Dict[int, int] = {}
        for f in _visible_files(self.staging):
            spans = self._spans.get(f.name)
            if spans is None:
                spans = self._spans[f.name] = file_offset_spans(f, self.identity.partition_column,
                                                                self.identity.offset_column)
            for part, (_lo, hi) in spans.items():
                out[part] = max(out.get(part, -1), hi)
        return out

    def commit(self, swap: bool = False) -> int:
        """Register every visible file (while rebuilding: only with ``swap``); returns the rows added."""
        if not self.staging.is_dir():
            return 0
        state = self.state()
        pending = _read_json(self.staging / COMMITTER_PENDING)
        done = 0
        if pending is not None and pending["seq"] > state["seq"]:
            done += self._finish(state, pending, self._commit_files(state, pending))
        elif pending is not None:
            (self.staging / COMMITTER_PENDING).unlink(missing_ok=True)
        if self.rebuild is not None and not swap:
            return done
        files = _visible_files(self.staging)
        if not files and self.rebuild is None:
            return done
        restart = False
        if self.identity.fingerprint is None and self.rebuild is None:  # dead letters of a source that changed topic
            record = table_record(self.table)
            restart = record is not None and record.get("topic") != self.identity.topic
        pending = {"seq": state["seq"] + 1, "files": [f.name for f in files], "rebuild": self.rebuild is not None,
                   "restart": restart}
        _write_json(self.staging / COMMITTER_PENDING, pending)
        return done + self._finish(state, pending, self._commit_files(state, pending))

    def commit_empty(self, schema) -> int:
        """Create the table without rows when no commit ever created it (no row reached the view): an empty
        file of ``schema`` (the view's stored columns, as the backfill writes them, and the Kafka partition
        and offset), committed as any other file, so a crash in between leaves a file the next pass commits.
        Returns the rows added (0)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.table.version is not None:
            return 0
        self.state()  # the folder and its app id
        schema = pa.schema(list(schema) + [pa.field(self.identity.partition_column, pa.int32()),
                                           pa.field(self.identity.offset_column, pa.int64())])
        tmp = self.staging / f".{EMPTY_FILE}.{uuid.uuid4().hex[:8]}"
        pq.write_table(schema.empty_table(), tmp)
        os.replace(tmp, self.staging / EMPTY_FILE)
        return self.commit()

    def totals(self) -> dict:
        """Rows and dead letters (by kind) committed since the directory was first used, and ``hours``: the
        same per hour of commit (the hour's start in epoch ms -> {"rows": n, kind: n}), the last 31 days."""
        state = _read_json(self.staging / COMMITTER_STATE) or {"rows": 0, "by_reason": {}}
        return {"rows": state["rows"], "by_reason": dict(state["by_reason"]), "hours": dict(state.get("hours", {}))}


def _add_hour(state: dict, added: Dict[str, int], now_ms: int) -> None:
    """Count ``added`` in the committer state's hour of ``now_ms`` (``monitor`` watches the dead letters of the
    last ``monitor.dead_letter_window``, as it does the pushes'); hours past the push counters' keep go."""
    from featurestore.engines.backfill import PUSH_BUCKET_MS, PUSH_KEEP_MS

    hours = {h: c for h, c in state.get("hours", {}).items() if int(h) >= now_ms - PUSH_KEEP_MS}
    if any(added.values()):
        hour = hours.setdefault(str(now_ms // PUSH_BUCKET_MS * PUSH_BUCKET_MS), {})
        for kind, n in added.items():
            hour[kind] = hour.get(kind, 0) + n
    state["hours"] = hours


def split_staged(staged: Path, view_dir) -> int:
    """Split each visible file of a source's staging folder ``staged`` (the job's one Parquet sink per source,
    laid out as its ``_layout.json`` says: :func:`featurestore.engines.flink.tables.staged_layout`) into one
    file per view, the view's stored events in the order the job wrote them, under the same name in the
    view's staging folder (``view_dir(name, fingerprint)``); then delete it. Crash-safe: a view's file
    appears whole (renamed into place); a file split again after a crash rewrites the same names, and a
    view's rows its table holds already are not added twice (``commit_stream`` adds none below the table's
    next offset of its partition). Returns the files split."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    layout = _read_json(staged / STAGED_LAYOUT) or _read_json(_layout_copy(staged))
    files = _visible_files(staged)
    if layout is None or not files:
        return 0
    for f in files:
        table = pq.read_table(f)
        for v in layout["views"]:
            rows = table.filter(pc.fill_null(table[v["flag"]], False))
            if rows.num_rows == 0:
                continue
            names = [stored for stored, _ in v["columns"]] + [PARTITION_COLUMN, OFFSET_COLUMN]
            rows = rows.select([staged_name for _, staged_name in v["columns"]] + [PARTITION_COLUMN, OFFSET_COLUMN])
            rows = rows.rename_columns(names)
            target = Path(view_dir(v["name"], v["fingerprint"]))
            target.mkdir(parents=True, exist_ok=True)
            tmp = target / f".{f.name}.{uuid.uuid4().hex[:8]}"
            pq.write_table(rows, tmp, compression="none", use_dictionary=False, write_statistics=False)
            os.replace(tmp, target / f.name)
        f.unlink()
    return len(files)


def _layout_copy(staged: Path) -> Path:
    """The kept copy of a staged folder's layout (``_staged/<source>/_layouts/<layout>.json``): its folder may go
    (:func:`remove_split_folders`) while a job of that layout could still write there again."""
    return staged.parent / STAGED_LAYOUTS / f"{staged.name}.json"


def remove_split_folders(root: Path, keep: Sequence[Path]) -> int:
    """Delete the staged folders of a source (``root``: ``_staged/<source>/``) other than ``keep`` (this job's)
    that hold nothing but their ``_layout.json`` — every file split out, no file of a job in progress — so old
    layouts' folders do not pile up after definition changes. Crash-safe: the layout is first kept under
    ``_layouts/`` (a job of that layout that writes there again is split by it), then the folder goes only while
    empty (a file written meanwhile keeps it); nothing not yet split is ever deleted. Returns the folders removed."""
    if not root.is_dir():
        return 0
    keep_names = {Path(k).name for k in keep}
    removed = 0
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
        if folder.name in keep_names or any(e.name != STAGED_LAYOUT for e in folder.iterdir()):
            continue
        layout = _read_json(folder / STAGED_LAYOUT)
        if layout is not None and _read_json(_layout_copy(folder)) is None:
            _layout_copy(folder).parent.mkdir(exist_ok=True)
            _write_json(_layout_copy(folder), layout)
        try:
            (folder / STAGED_LAYOUT).unlink(missing_ok=True)
            folder.rmdir()
            removed += 1
        except OSError:  # a job of this layout wrote a file meanwhile: it is split by the kept layout
            continue
    return removed


def write_staged_layouts(store, names: Sequence[str]) -> None:
    """The layout of the staged files of a job of ``names``, beside them (each run's own folder; a committer of
    any set of views splits every folder by the layout written in it). Written before the job starts,
    whether or not this process commits."""
    from featurestore.engines.flink import stream as streaming

    for source in sorted({store.repo.views[n].source.name for n in names}):
        staged = streaming.staged_dir(store, source, names)
        if not (staged / STAGED_LAYOUT).exists():
            staged.mkdir(parents=True, exist_ok=True)
            _write_json(staged / STAGED_LAYOUT, streaming.staged_layout_of(store, source, names))


def view_identity(store, view: str) -> StreamIdentity:
    from featurestore import dtypes
    from featurestore.engines.flink.tables import stream_fingerprint

    cv = store.compiled(view)
    utc = tuple(c for c, d in cv.stored_columns if d == dtypes.TIMESTAMP and c != cv.ts_column)
    return StreamIdentity(store.repo.views[view].source.stream.topic, stream_fingerprint(cv),
                          rows_key=cv.rows_fingerprint, utc_columns=utc)


def table_record(table) -> Optional[dict]:
    """The ``stream`` record of a table's latest manifest (None: never streamed)."""
    return table.manifest().get("stream") if table.version is not None else None


def rebuilds(store, names: Sequence[str]) -> Dict[str, dict]:
    """The views whose offline table the stream wrote under another definition (or topic): view -> the
    table's stream record."""
    out = {}
    for n in names:
        ident = view_identity(store, n)
        record = table_record(store.offline.table(n, ts_column=store.compiled(n).ts_column))
        if record is not None and (record.get("topic"), record.get("fingerprint")) != (ident.topic, ident.fingerprint):
            out[n] = record
    return out


def stream_states(store) -> Dict[str, str]:
    """Per view with a stream face, what the stream will do with its offline table: ``new`` (the stream
    never wrote it), ``continue`` (written under the current definition) or ``rebuild`` (another one)."""
    out = {}
    for n, view in store.repo.views.items():
        if view.source.stream is None:
            continue
        ident = view_identity(store, n)
        record = table_record(store.offline.table(n, ts_column=store.compiled(n).ts_column))
        if record is None:
            out[n] = "new"
        else:
            same = (record.get("topic"), record.get("fingerprint")) == (ident.topic, ident.fingerprint)
            out[n] = "continue" if same else "rebuild"
    return out


def rebuild_plan(store, names: Sequence[str], snapshot: Optional[Path]) -> Tuple[Dict[str, dict], Optional[str]]:
    """(views to rebuild, why ``snapshot`` must not be restored or None). A rebuild needs every record of
    the topic under the new definition, so the job restores only a snapshot of a run that started afresh
    for this rebuild (taken after it began); otherwise it starts from the first records."""
    from featurestore.engines.flink import stream as streaming

    todo = rebuilds(store, names)
    if not todo or snapshot is None:
        return todo, None
    try:
        taken = (snapshot / "_metadata").stat().st_mtime
    except FileNotFoundError:
        taken = 0.0
    for n in todo:
        staged = DirCommitter(streaming.staging_dir(store, n), None, view_identity(store, n))
        since = staged.state().get("rebuild_since")
        if since is None or taken <= since:
            return todo, (f"view '{n}' changed since the stream wrote its offline table: its streamed rows are "
                          f"rebuilt from the topic's first record, not from {snapshot}")
    return todo, None


class Committer:
    """All staging directories of one streaming job; also publishes the metrics hash, and swaps in the
    rows of views being rebuilt once the job has read past where their old definition stopped."""

    def __init__(self, store, names: Sequence[str], group: Optional[str] = None,
                 rebuilding: Optional[Dict[str, dict]] = None, low_offsets: Optional[Dict[tuple, int]] = None,
                 checkpoint_root: Optional[Path] = None):
        from featurestore.engines.flink import stream as streaming

        self.store = store
        # the run's checkpoints; None: a standalone pass (stream.commit) asks the job's consumer group instead
        self.checkpoint_root = checkpoint_root
        self.started = time.time()
        self.checkpoint_seen_at_pass: Optional[int] = None  # the first pass that saw a checkpoint of this run
        self._tabled: set = set()  # views whose table exists (_commit_empty)
        self.names = list(names)
        self.group = group or streaming.job_name(store, names)
        if rebuilding is None:
            rebuilding = rebuilds(store, names)
        self.views = {}
        for n in names:
            table = store.offline.table(n, ts_column=store.compiled(n).ts_column)
            rb = Rebuild(rebuilding[n]) if n in rebuilding else None
            self.views[n] = DirCommitter(streaming.staging_dir(store, n), table, view_identity(store, n), rebuild=rb)
        self.sources: Dict[str, List[str]] = {}
        for n in names:
            self.sources.setdefault(store.repo.views[n].source.name, []).append(n)
        write_staged_layouts(store, names)
        self.dead = {}
        for s, views in self.sources.items():
            topic = store.repo.views[views[0]].source.stream.topic
            identity = StreamIdentity(topic, None, DEAD_PARTITION, DEAD_OFFSET, keep_offsets=True)
            self.dead[s] = DirCommitter(streaming.dead_letter_staging_dir(store, s),
                                        streaming.dead_letter_table(store, s), identity, count_reasons=True)
        self.low = {(t, p): o for (t, p), o in (low_offsets or {}).items()}
        self.passes = 0
        self.lock = threading.Lock()
        self.publish_failing = False  # warn once per Redis outage, not on every pass
        self._published: Dict[str, Dict[str, str]] = {}  # per source, the hours last published

    def commit(self, final: bool = False) -> int:
        """One pass over every staging directory. ``final``: the job has stopped (every file is visible).

        SPEC §3.1: a view no committed row reached gets a table as its backfill does, without rows, on the
        final pass or once a checkpoint of this run has completed (:meth:`_checkpointed`). That is safe while
        rows of the view are still in flight (in a file not yet visible or split): a pass registers what is
        visible, the empty version is what a lagging table holds, the empty file moves no offset, and the
        rows are added by a later pass as a later version (reading it gives exactly them)."""
        with self.lock:
            self.passes += 1
            self.split()
            rows = sum(c.commit() for c in self.views.values())
            rows += sum(c.commit() for c in self.dead.values())
            rows += self._swap_rebuilt(final)
            if final or self._checkpointed():
                rows += self._commit_empty()
            self.publish()
            return rows

    def _checkpointed(self) -> bool:
        """Whether a checkpoint taken since this committer started (not the restored one) completed before
        this pass's previous one: the job has durably consumed input, and the files that checkpoint made
        visible (Flink renames them one by one once it completes, as for a rebuild's swap) are committed."""
        from featurestore.engines.flink import stream as streaming

        if self.checkpoint_seen_at_pass is not None:
            return self.checkpoint_seen_at_pass < self.passes
        if self.checkpoint_root is None:
            return self._group_checkpointed()
        snapshot = streaming.latest_snapshot(Path(self.checkpoint_root))
        try:
            if snapshot is not None and (snapshot / "_metadata").stat().st_mtime >= self.started:
                self.checkpoint_seen_at_pass = self.passes
        except FileNotFoundError:
            pass
        return False

    def _group_checkpointed(self) -> bool:
        """A standalone pass (beside a job it did not start, whose checkpoints it cannot see): whether the job's
        consumer group has committed an offset. Flink commits them only when a checkpoint of the job completes;
        the group is named by the job's definitions (``stream.job_name``) and forgotten when a run starts
        afresh, so an offset there means this job has durably consumed input."""
        topics = {self.store.repo.views[views[0]].source.stream.topic for views in self.sources.values()}
        _, committed = self._offsets(topics)
        if any(offset >= 0 for offset in committed.values()):
            self.checkpoint_seen_at_pass = 0  # once seen, every later pass of this committer may create them
            return True
        return False

    def _commit_empty(self) -> int:
        """Commit an empty file for each view without a table that is not being rebuilt (tables, once they
        exist, are not looked up again)."""
        from featurestore.engines.duckdb_engine import arrow_schema

        rows = 0
        for n, c in self.views.items():
            if n not in self._tabled and c.rebuild is None:
                rows += c.commit_empty(arrow_schema(self.store.compiled(n)))
                self._tabled.add(n)
        return rows

    def split(self) -> int:
        """Split the sources' staged files (this run's and any earlier run's) into the views' folders."""
        from featurestore.engines.flink import stream as streaming

        def view_dir(view: str, fingerprint: str) -> Path:
            return streaming.staging_root(self.store) / view / fingerprint[:12]

        done = 0
        for s in self.sources:
            root = streaming.staged_root(self.store, s)
            if root.is_dir():
                for staged in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))):
                    done += split_staged(staged, view_dir)
                remove_split_folders(root, [streaming.staged_dir(self.store, s, self.names)])
        return done

    def _swap_rebuilt(self, final: bool) -> int:
        rows = 0
        waiting = {n: c for n, c in self.views.items() if c.rebuild is not None}
        if not waiting:
            return 0
        ends, committed = self._offsets({c.identity.topic for c in waiting.values()})
        for n, c in waiting.items():
            topic = c.identity.topic
            progress = {p: o - 1 for (t, p), o in committed.items() if t == topic and o > 0}
            for p, o in c.held_progress().items():
                progress[p] = max(progress.get(p, -1), o)
            low = {p: o for (t, p), o in self.low.items() if t == topic}
            high = {p: h for (t, p), (_lo, h) in ends.items() if t == topic}
            if c.rebuild.old.get("topic") != topic:  # another topic: only a stopped job has read what it will
                ready = final
            else:
                ready = bool(ends) and not c.rebuild.behind(progress, low, high)
            if not ready:
                c.rebuild.ready_at_pass = None
                continue
            # Flink renames a checkpoint's files one by one: swap on a later pass than the one that first saw
            # the job past the old offsets (by then every file of that checkpoint is visible), or once stopped.
            if final or (c.rebuild.ready_at_pass is not None and c.rebuild.ready_at_pass < self.passes):
                rows += c.commit(swap=True)
                log.info("view %s: streamed rows rebuilt under its new definition", n)
            elif c.rebuild.ready_at_pass is None:
                c.rebuild.ready_at_pass = self.passes
        return rows

    def _offsets(self, topics) -> Tuple[Dict[tuple, tuple], Dict[tuple, int]]:
        """The topics' (first, end) offsets and the job's consumer group's committed offsets (Flink commits
        them when a checkpoint completes); empty when Kafka cannot be read (that only delays a swap)."""
        from featurestore.engines.flink import offsets as flink_offsets

        try:
            ends = flink_offsets.end_offsets(self.store.config.kafka_bootstrap, sorted(topics), timeout=3)
            return ends, flink_offsets.committed(self.store.config.kafka_bootstrap, self.group, list(ends), timeout=3)
        except Exception as exc:
            log.warning("could not read the offsets of %s: %s", self.group, exc)
            return {}, {}

    def metrics(self) -> Dict[str, Dict[str, int]]:
        out = {}
        for source, views in self.sources.items():
            dead = self.dead[source].totals()["by_reason"]
            m = {"dead_letters": dead.get("malformed", 0),
                 "null_key": sum(n for k, n in dead.items() if k.startswith(NULL_KEY_PREFIX))}
            for v in views:
                m[f"events:{v}"] = self.views[v].totals()["rows"]
            m["events"] = sum(m[f"events:{v}"] for v in views)
            out[source] = m
        return out

    def hours(self) -> Dict[str, Dict[str, str]]:
        """Per source, per hour of commit (its start, epoch ms): ``"[dead letters, events]"`` (JSON), counted
        as :meth:`metrics` counts them; what ``monitor`` sums over ``monitor.dead_letter_window``."""
        out = {}
        for source, views in self.sources.items():
            counts: Dict[str, List[int]] = {}
            for h, c in self.dead[source].totals()["hours"].items():
                counts.setdefault(h, [0, 0])[0] += c.get("malformed", 0)
            for v in views:
                for h, c in self.views[v].totals()["hours"].items():
                    counts.setdefault(h, [0, 0])[1] += c.get("rows", 0)
            out[source] = {h: json.dumps(c) for h, c in counts.items()}
        return out

    def publish(self) -> None:
        from featurestore.engines.flink import stream as streaming
        from featurestore.stores.online_redis import for_store

        try:
            online = for_store(self.store)
            hours = self.hours()
            published = {}
            for source in hours:  # the hours Redis holds that the state no longer does (past the keep) go
                key = streaming.metrics_key(self.store.config.project, source) + HOURS_SUFFIX
                published[source] = self._published.get(source)
                if published[source] is None:
                    published[source] = {h.decode(): None for h in online.client.hkeys(key)}
            pipe = online.client.pipeline(transaction=False)
            for source, m in self.metrics().items():
                pipe.hset(streaming.metrics_key(self.store.config.project, source), mapping=m)
                key = streaming.metrics_key(self.store.config.project, source) + HOURS_SUFFIX
                changed = {h: c for h, c in hours[source].items() if published[source].get(h) != c}
                if changed:
                    pipe.hset(key, mapping=changed)
                gone = [h for h in published[source] if h not in hours[source]]
                if gone:
                    pipe.hdel(key, *gone)
            pipe.execute()
            self._published = hours
        except Exception as exc:  # metrics are best effort; the data is committed
            if not self.publish_failing:
                log.warning("could not publish stream metrics to Redis (retried on every commit): %s", exc)
            self.publish_failing = True
            return
        if self.publish_failing:
            log.warning("stream metrics published to Redis again")
        self.publish_failing = False


def begin_rebuilds(store, names: Sequence[str]) -> None:
    """Mark the views being rebuilt as re-read from the first record by a run starting now (afresh)."""
    from featurestore.engines.flink import stream as streaming

    now = time.time()
    for n in names:
        DirCommitter(streaming.staging_dir(store, n), None, view_identity(store, n)).set_state(rebuild_since=now)


__all__ = ["DirCommitter", "Committer", "split_staged", "remove_split_folders", "write_staged_layouts", "StreamIdentity", "Rebuild", "rebuilds", "rebuild_plan", "begin_rebuilds",
           "stream_states",
           "COMMITTER_STATE", "COMMITTER_PENDING", "NULL_KEY_PREFIX", "HOURS_SUFFIX"]
