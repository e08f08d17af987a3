"""The versioned table of the offline store: its manifests (``_log/<version>.json``, the source of truth), reading
a version, the optimistic commit of a new version, the archive of superseded files and expiry.

:class:`TableLog` is the part of :class:`featurestore.stores.offline.OfflineTable` that knows nothing about
what a write means: a write computes, on the latest manifest (its base), which base files it keeps and
which new files it adds, and :meth:`TableLog._commit` makes that the next version, re-basing it on the
version that won when another writer committed first.
"""

from __future__ import annotations

import errno
import json
import os
import random
import time
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.errors import OfflineStoreError
from featurestore.stores.offline_files import (
    ARCHIVE_DIR, DEFAULT_TS_COLUMN, FORMAT_VERSION, LOG_DIR, MAX_COMMIT_ATTEMPTS, ORPHAN_GRACE_SECONDS,
    PARTITION_COLUMN, TMP_PREFIX, _MANIFEST_RE, _NAME_RE, _PART_RE, _as_ms, _conform_table, _fsync_dir, _NewFile,
    _native, _now_iso, _schema_from_b64, _schema_to_b64, _tmp_path, _ts_ms, _Txn, _unlink)
from featurestore.stores import offline_files as _files
from featurestore.stores import object_store, offline_claimed, writers
from featurestore.stores.object_store import S3Location

# (kept relative paths of the base, new files, schema, manifest fields the write sets: see TableLog._commit)
Plan = Tuple[List[str], List[_NewFile], pa.Schema, dict]



ANY = object()  # "no condition" for append(after_seq=...), where None means "nothing recorded yet"


class CommitConflict(OfflineStoreError):
    """A conditional append found its application's position moved: another writer committed first."""


class TableLog:
    """The versions of one table: manifests, reads, commits, expiry (writes: ``OfflineTable``)."""

    def __init__(self, root: Union[Path, str], name: str, ts_column: Optional[str] = None):
        if not isinstance(name, str) or not _NAME_RE.match(name) or name in (".", ".."):
            raise OfflineStoreError(f"invalid offline table name {name!r}: use letters, digits, '_', '-', '.' "
                                    f"(starting with a letter or digit, at most 200 characters)")
        self.root = object_store.as_root(root)
        self.name = name
        # on object storage (an s3:// root) these are S3Locations: see the methods that ask self.remote
        self.remote = object_store.is_remote(self.root)
        self.path = self.root / name
        self._log = self.path / LOG_DIR
        # Outside the table folder, so no directory reader (dask included) ever sees superseded rows.
        self._archive = self.root / ARCHIVE_DIR / name
        # where this process writes the table's new Parquet files before they are placed: the table
        # folder itself on a local root; a local folder of this machine on object storage (uploaded then)
        self._staging = object_store.staging_dir(self.root, name) if self.remote else self.path
        self._ts_column = ts_column
        # Rows another log owns and this table must hold once (pushed events, featurestore.push.offline):
        # an object with plan(base, replaced ranges) -> FollowPlan or None, consulted by every write_range.
        self.follow = None

    @property
    def filesystem(self):
        """The ``pyarrow.fs.S3FileSystem`` that reads :meth:`files` on object storage; None on a local root."""
        return self.root.filesystem if self.remote else None

    def __repr__(self) -> str:
        return f"OfflineTable({str(self.root)!r}, {self.name!r})"

    @property
    def _where(self) -> str:
        return f"offline table '{self.name}'"

    # -- versions and manifests ------------------------------------------------------------------
    def _versions(self) -> List[int]:
        try:
            names = self._log.list_names() if self.remote else os.listdir(self._log)
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for m in map(_MANIFEST_RE.match, names) if m)

    @property
    def version(self) -> Optional[int]:
        """The latest version, ``None`` when the table has never been written."""
        versions = self._versions()
        return versions[-1] if versions else None

    @property
    def ts_column(self) -> str:
        """The event-time column: recorded in the manifests; ``ts`` unless the table was created otherwise."""
        latest = self._latest_manifest()
        if latest is not None:
            return latest.get("ts_column", DEFAULT_TS_COLUMN)
        return self._ts_column or DEFAULT_TS_COLUMN

    def _manifest_path(self, version: int) -> Path:
        return self._log / f"{version:08d}.json"

    def _read_manifest(self, version: int) -> Optional[dict]:
        path = self._manifest_path(version)
        if self.remote:  # an object is whole or absent
            data = path.get()
            try:
                return None if data is None else json.loads(data)
            except json.JSONDecodeError:
                raise OfflineStoreError(f"{self._where}: manifest {path} is not valid JSON") from None
        for attempt in range(10):
            try:
                with open(path, "rb") as f:
                    return json.loads(f.read())
            except FileNotFoundError:
                return None
            except json.JSONDecodeError:
                # only possible on filesystems without hard links, where the manifest is written in place
                time.sleep(0.01 * (attempt + 1))
        raise OfflineStoreError(f"{self._where}: manifest {path} is not valid JSON")

    def _latest_manifest(self) -> Optional[dict]:
        for v in reversed(self._versions()):
            m = self._read_manifest(v)
            if m is not None:
                return m
        return None

    def manifest(self, version: Optional[int] = None) -> dict:
        """The manifest of ``version`` (default: the latest) as stored in ``_log/<version>.json``."""
        if version is None:
            m = self._latest_manifest()
            if m is None:
                raise OfflineStoreError(f"{self._where} does not exist under {self.root} (never written)")
            return m
        version = _as_ms(version, "version")
        m = self._read_manifest(version)
        if m is None:
            versions = self._versions()
            if not versions:
                raise OfflineStoreError(f"{self._where} does not exist under {self.root} (never written)")
            if version < versions[0]:
                raise OfflineStoreError(f"{self._where}: version {version} was expired "
                                        f"(oldest kept version is {versions[0]})")
            raise OfflineStoreError(f"{self._where}: version {version} does not exist (latest is {versions[-1]})")
        return m

    def history(self) -> List[dict]:
        """The manifests of every version still kept, oldest first."""
        out = []
        for v in self._versions():
            m = self._read_manifest(v)
            if m is not None:
                out.append(m)
        return out

    def schema(self, version: Optional[int] = None) -> pa.Schema:
        """The Arrow schema of ``version`` (default: the latest)."""
        return _schema_from_b64(self.manifest(version)["arrow_schema"])

    # -- reading ------------------------------------------------------------------------------------
    def _locate(self, rel: str) -> Union[Path, S3Location, None]:
        for p in (self.path / rel, self._archive / rel):
            if p.exists():
                return p
        return None

    def _open_sized(self, rel: str, version: int, size: Optional[int]):
        """:meth:`_open`; on object storage a file of at most ``WHOLE_READ_BYTES`` (``size``: the bytes
        its manifest recorded) is read whole, with one GET rather than one per column chunk."""
        if not self.remote or size is None or size > object_store.WHOLE_READ_BYTES:
            return self._open(rel, version)
        for p in (self.path / rel, self._archive / rel):
            data = p.get()
            if data is not None:
                return pa.BufferReader(data)
        raise OfflineStoreError(f"{self._where}: file {rel} of version {version} is gone (was the version expired?)")

    def _open(self, rel: str, version: int):
        # live path first, then the archive: a file moves (atomically) only from the former to the latter
        # (on object storage: copied to the archive before it is deleted from the live tree)
        for p in (self.path / rel, self._archive / rel):
            try:
                return p.open() if self.remote else _native(p)
            except FileNotFoundError:
                continue
        raise OfflineStoreError(f"{self._where}: file {rel} of version {version} is gone (was the version expired?)")

    def files(self, version: Optional[int] = None) -> List[str]:
        """Absolute paths (``s3://`` URIs on object storage) of the files of ``version`` (default: the
        latest), each at its live path or, once superseded, under ``_archive/``. A later commit may archive
        a live file after this returns: read through :meth:`read`, or retry with ``files()`` again, when
        writers run concurrently."""
        m = self.manifest(version)
        # object storage: a file of the latest version is live (one request fewer per file than a lookup)
        live = set(self._latest_manifest()["files"]) if self.remote else set()
        out = []
        for rel in m["files"]:
            p = self.path / rel if rel in live else self._locate(rel)
            if p is None:
                raise OfflineStoreError(f"{self._where}: file {rel} of version {m['version']} is gone "
                                        f"(was the version expired?)")
            out.append(object_store.uri(p))
        return out

    def read(self, version: Optional[int] = None, columns: Optional[List[str]] = None) -> pa.Table:
        """All rows of ``version`` (default: the latest) as one Arrow table with the version's schema
        (row order unspecified). ``columns`` selects columns. An empty version gives an empty table."""
        m = self.manifest(version)
        schema = _schema_from_b64(m["arrow_schema"])
        if columns is not None:
            unknown = [c for c in columns if c not in schema.names]
            if unknown:
                raise OfflineStoreError(f"{self._where}: unknown column(s) {unknown}; columns: {schema.names}")
            schema = pa.schema([schema.field(c) for c in columns])
        parts = []
        for rel in m["files"]:
            with self._open_sized(rel, m["version"], m.get("file_stats", {}).get(rel, {}).get("bytes")) as f:
                pf = pq.ParquetFile(f)
                present = [c for c in schema.names if c in pf.schema_arrow.names]
                t = pf.read(columns=present)
                parts.append(_conform_table(t, schema, pf.metadata.num_rows))
        if not parts:
            return schema.empty_table()
        return pa.concat_tables(parts)

    # -- writing --------------------------------------------------------------------------------------
    def _resolved_ts_column(self, base: Optional[dict]) -> str:
        recorded = base.get("ts_column", DEFAULT_TS_COLUMN) if base else None
        if recorded and self._ts_column and recorded != self._ts_column:
            raise OfflineStoreError(f"{self._where}: its timestamp column is '{recorded}', "
                                    f"not '{self._ts_column}'")
        return recorded or self._ts_column or DEFAULT_TS_COLUMN

    def _file_stats(self, base: dict, rel: str) -> dict:
        st = base.get("file_stats", {}).get(rel)
        if st is not None:
            return st
        ts_column = base.get("ts_column", DEFAULT_TS_COLUMN)  # older/foreign manifests: compute them
        with self._open(rel, base["version"]) as f:
            pf = pq.ParquetFile(f)
            ts = pf.read(columns=[ts_column]).column(0).combine_chunks()
        ms = _ts_ms(ts)
        return {"rows": len(ms), "min_ts": int(ms.min()) if len(ms) else None,
                "max_ts": int(ms.max()) if len(ms) else None}

    def _place(self, files: List[_NewFile], version: int) -> None:
        """Give the new files their final names (they become visible to glob readers)."""
        if self.remote:
            return self._upload(files, version)
        dirs = set()
        for nf in files:
            name = f"part-{version:08d}-{nf.uid}.parquet"
            final = nf.tmp.parent / name
            while final.exists():  # astronomically unlikely: same version, same 8 hex digits, same date
                nf.uid = uuid.uuid4().hex[:8]
                final = nf.tmp.parent / f"part-{version:08d}-{nf.uid}.parquet"
            os.utime(nf.tmp)  # expire() leaves unreferenced files alone for a grace period from now
            os.rename(nf.tmp, final)
            nf.final = final
            dirs.add(final.parent)
        for d in dirs:
            _fsync_dir(d)

    def _unplace(self, files: List[_NewFile]) -> None:
        for nf in files:
            if nf.final is not None:
                if self.remote:
                    nf.final.delete()  # the local staged file stays: the next attempt uploads it again
                else:
                    os.rename(nf.final, nf.tmp)
                nf.final = None

    def _upload(self, files: List[_NewFile], version: int) -> None:
        """Object storage: upload each staged file under its final, unique name (no rename there)."""
        for nf in files:
            folder = self.path / f"{PARTITION_COLUMN}={_files._day_str(nf.day)}"
            # no existence check (a request per file, and no guarantee between two writers: _place's check
            # does not exclude that race either): a clash needs two writers of one version and date to draw
            # the same 8 hex digits, 1 in 4e9 per pair of files
            final = folder / f"part-{version:08d}-{nf.uid}.parquet"
            final.upload(nf.tmp)
            nf.final = final

    def _write_manifest(self, version: int, manifest: dict) -> None:
        """Create ``_log/<version>.json`` complete and exclusively; FileExistsError if another writer has it."""
        if self.remote:  # a conditional put: If-None-Match: * (object_store.S3Location.create_exclusive)
            if not self._manifest_path(version).create_exclusive(json.dumps(manifest, indent=1).encode("utf-8")):
                raise FileExistsError(str(self._manifest_path(version)))
            return
        self._log.mkdir(parents=True, exist_ok=True)
        final = self._manifest_path(version)
        tmp = _tmp_path(self.path, self._log, uuid.uuid4().hex)  # no .json: never matches _log/*.json
        payload = json.dumps(manifest, indent=1).encode("utf-8")
        with open(tmp, "wb") as f:
            f.write(payload)
            f.flush()
            if _files.DURABLE:
                os.fsync(f.fileno())
        try:
            try:
                os.link(tmp, final)  # atomic and exclusive: fails with FileExistsError if the name is taken
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK,
                                     errno.ENOSYS):
                    raise
                # no hard links on this filesystem: exclusive create, then write (readers retry on partial JSON)
                fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    os.write(fd, payload)
                    if _files.DURABLE:
                        os.fsync(fd)
                finally:
                    os.close(fd)
        finally:
            _unlink(tmp)
        _fsync_dir(self._log)

    def _archive_files(self, rels: Iterable[str]) -> None:
        for rel in rels:
            src, dst = self.path / rel, self._archive / rel
            if self.remote:  # copy, then delete: readers of the old version find it in one place or both
                try:
                    if src.exists():
                        src.copy_to(dst)
                        src.delete()
                except OfflineStoreError as exc:  # the commit stands; expire() will archive it later
                    warnings.warn(f"{self._where}: could not archive superseded file {rel}: {exc}")
                continue
            try:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.rename(src, dst)
            except FileNotFoundError:
                pass  # already archived (expire() repairs crashed commits too)
            except OSError as exc:  # the commit stands; expire() will archive it later
                warnings.warn(f"{self._where}: could not archive superseded file {rel}: {exc}")

    def app_seq(self, app_id: str) -> Optional[int]:
        """The ``seq`` the latest version recorded for ``app_id`` (see ``OfflineTable.append``); None if never."""
        return _recorded_seq(self._latest_manifest(), app_id)

    def _commit(self, txn: _Txn, operation: str, build: Callable[[Optional[dict]], Plan],
                app: Optional[Tuple[str, int]] = None, after: object = ANY) -> int:
        """Commit the next version: optimistic, retried on the base that won until it succeeds.

        ``build(base)`` returns (base files kept, new files, schema, manifest fields it sets: ``range``,
        ``batch_ranges``, ``batch_rows_key``, ``batch_rows_keys``, ``stream``, ``claimed_seen``, ``txn`` = what
        to record beside ``app``'s seq, and ``txns_set`` = {other app id: seq} to record as well); fields it does
        not set carry over from the base."""
        delay = 0.002
        for _ in range(MAX_COMMIT_ATTEMPTS):
            base = self._latest_manifest()
            if app is not None:
                _check_after(base, app, after, self._where)
                done = _committed_app_version(base, app)
                if done is not None:
                    return done
            kept, new, schema, fields = build(base)
            ts_column = self._resolved_ts_column(base)
            version = (base["version"] if base else 0) + 1
            if self._manifest_path(version).exists():  # lost already: do not even show our files
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.25)
                continue
            self._place(new, version)
            stats = {rel: self._file_stats(base, rel) for rel in kept} if base else {}
            for nf in new:
                stats[nf.rel()] = nf.stats()
            files = sorted(stats)
            removed = sorted(set(base["files"]) - set(files)) if base else []
            txns = dict(base.get("txns", {})) if base else {}
            if app is not None:
                txns[app[0]] = {"seq": app[1], "version": version, **fields.get("txn", {})}
            for other, seq in fields.get("txns_set", {}).items():
                txns[other] = {"seq": seq, "version": version}
            carried = base or {}
            manifest = {
                "format": FORMAT_VERSION,
                "table": self.name,
                "version": version,
                "created_at": _now_iso(),
                "operation": operation,
                "range": fields.get("range"),
                "files": files,
                "rows": sum(s["rows"] for s in stats.values()),
                "schema": [[f.name, str(f.type)] for f in schema],
                "ts_column": ts_column,
                "partitioning": {"column": PARTITION_COLUMN, "by": f"UTC date of {ts_column}"},
                "added": sorted(nf.rel() for nf in new),
                "removed": removed,
                "file_stats": {rel: stats[rel] for rel in files},
                "arrow_schema": _schema_to_b64(schema),
                "txns": txns,
                "batch_ranges": fields.get("batch_ranges", carried.get("batch_ranges", [])),
                "stream": fields.get("stream", carried.get("stream")),
                "batch_rows_key": fields.get("batch_rows_key", carried.get("batch_rows_key")),
                "batch_rows_keys": fields.get("batch_rows_keys", carried.get("batch_rows_keys")),
                "unique_on": fields.get("unique_on"),  # never carried: a write that does not check drops it
                # the side files of what the stream read inside claimed ranges (offline_claimed)
                "claimed_seen": fields["claimed_seen"] if "claimed_seen" in fields else carried.get("claimed_seen"),
            }
            try:
                self._write_manifest(version, manifest)
            except FileExistsError:  # another writer committed this version first: re-base and retry
                self._unplace(new)
                time.sleep(random.uniform(0, delay))
                delay = min(delay * 2, 0.25)
                continue
            txn.committed = True
            if self.remote:  # uploaded: the staged copies are done with
                for nf in [*new, *txn.files]:
                    _unlink(nf.tmp)
            self._archive_files(removed)
            return version
        raise OfflineStoreError(f"{self._where}: gave up after {MAX_COMMIT_ATTEMPTS} conflicting commits")

    # -- retention --------------------------------------------------------------------------------------
    def expire(self, keep_last: int, *, grace_seconds: float = ORPHAN_GRACE_SECONDS) -> int:
        """Keep the last ``keep_last`` versions; delete older manifests and every file only they used.

        Older versions become unreadable. Also tidies up after crashed writers: a superseded file a
        crash left in the live tree is archived (or deleted), uncommitted files older than
        ``grace_seconds`` are deleted, and temp files too: a dead writer's at once, a live writer's never,
        one of unknown state (written by an older version) after ``grace_seconds``. Returns the number
        of Parquet files deleted."""
        keep_last = _as_ms(keep_last, "keep_last")
        if keep_last < 1:
            raise OfflineStoreError(f"{self._where}: keep_last must be at least 1, got {keep_last}")
        if self.remote:
            return self._expire_remote(keep_last, grace_seconds)
        versions = self._versions()
        if not versions:
            return 0
        manifests = {v: m for v in versions if (m := self._read_manifest(v)) is not None}
        if not manifests:
            return 0
        first_kept, referenced, latest_files, ever = _expiry(manifests, keep_last)
        for v in sorted(manifests):
            if v < first_kept:
                _unlink(self._manifest_path(v))
        offline_claimed.expire_seen(self, [m for v, m in manifests.items() if v >= first_kept],
                                    list(manifests.values()), grace_seconds)
        deleted = 0
        if self._archive.is_dir():
            for p in sorted(self._archive.glob(f"{PARTITION_COLUMN}=*/*")):
                rel = f"{p.parent.name}/{p.name}"
                if rel not in referenced and p.is_file() and _unlink(p):
                    deleted += 1
        now = time.time()

        def old(p: Path) -> bool:
            try:
                return now - p.stat().st_mtime > grace_seconds
            except FileNotFoundError:
                return False

        for folder in sorted(self.path.glob(f"{PARTITION_COLUMN}=*")):
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                rel = f"{folder.name}/{p.name}"
                if p.name.startswith(TMP_PREFIX):
                    continue  # writers.sweep below
                elif _PART_RE.match(p.name) and rel not in latest_files:
                    if rel in referenced:
                        self._archive_files([rel])  # superseded, but its writer died before archiving it
                    elif rel in ever or old(p):  # expired, or never committed (a writer died mid-commit)
                        if _unlink(p):
                            deleted += 1
        writers.sweep(self.path, TMP_PREFIX, grace_seconds=grace_seconds)
        return deleted

    def _expire_remote(self, keep_last: int, grace_seconds: float) -> int:
        """:meth:`expire` on object storage: the same rules, over object listings (there are no temp
        objects: files are staged locally and uploaded under their final names)."""
        manifests = {v: m for v in self._versions() if (m := self._read_manifest(v)) is not None}
        if not manifests:
            return 0
        first_kept, referenced, latest_files, ever = _expiry(manifests, keep_last)
        for v in sorted(manifests):
            if v < first_kept:
                self._manifest_path(v).delete()
        offline_claimed.expire_seen(self, [m for v, m in manifests.items() if v >= first_kept],
                                    list(manifests.values()), grace_seconds)
        deleted = 0
        for loc, _ in self._archive.list_files():
            rel = f"{loc.parent.name}/{loc.name}"
            if rel not in referenced and _PART_RE.match(loc.name) and loc.delete():
                deleted += 1
        now = time.time()
        for loc, mtime in self.path.list_files():
            rel = f"{loc.parent.name}/{loc.name}"
            if not loc.parent.name.startswith(f"{PARTITION_COLUMN}=") or not _PART_RE.match(loc.name):
                continue
            if rel in latest_files:
                continue
            if rel in referenced:
                self._archive_files([rel])  # superseded, but its writer died before archiving it
            elif (rel in ever or now - mtime > grace_seconds) and loc.delete():  # expired, or never committed
                deleted += 1
        writers.sweep(self._staging, TMP_PREFIX, grace_seconds=grace_seconds)
        return deleted


def _app(app_id: Optional[str], seq: Optional[int], where: str) -> Optional[Tuple[str, int]]:
    if app_id is None and seq is None:
        return None
    if not isinstance(app_id, str) or not app_id or seq is None:
        raise OfflineStoreError(f"{where}: app_id (a non-empty string) and seq (an integer) go together")
    return app_id, _as_ms(seq, "seq")


def _recorded_seq(base: Optional[dict], app_id: str) -> Optional[int]:
    rec = (base or {}).get("txns", {}).get(app_id)
    return None if rec is None else int(rec["seq"])


def _check_after(base: Optional[dict], app: Tuple[str, int], after: object, where: str) -> None:
    if after is ANY:
        return
    recorded = _recorded_seq(base, app[0])
    if recorded != after:
        raise CommitConflict(f"{where}: {app[0]} is at seq {recorded}, not {after}: another writer committed first")


def _committed_app(base: Optional[dict], app: Tuple[str, int]) -> Optional[dict]:
    """What the table recorded for ``app`` when it already committed its seq (or a later one)."""
    rec = (base or {}).get("txns", {}).get(app[0])
    return rec if rec is not None and rec["seq"] >= app[1] else None


def _committed_app_version(base: Optional[dict], app: Tuple[str, int]) -> Optional[int]:
    rec = _committed_app(base, app)
    return None if rec is None else int(rec["version"])


def _expiry(manifests: dict, keep_last: int) -> tuple:
    """What :meth:`expire` keeps of ``manifests`` (version -> manifest): (the first kept version, the files
    the kept versions reference, the files of the latest version, every file any manifest names)."""
    kept_versions = sorted(manifests)[-keep_last:]
    referenced = set().union(*(manifests[v]["files"] for v in kept_versions))
    latest_files = set(manifests[kept_versions[-1]]["files"])
    ever = set().union(*(m["files"] for m in manifests.values()))
    return kept_versions[0], referenced, latest_files, ever
