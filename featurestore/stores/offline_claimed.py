"""Streamed rows inside a range a backfill claimed (docs/offline-store.md, "Each event once").

The batch face owns the ranges it backfilled, but an event can reach the stream (and the batch face's files)
after the backfill that claimed its range. :meth:`OfflineTable.commit_stream` treats a streamed row inside a
claimed range whose rows were computed under the commit's own ``rows_key`` as a *candidate*, and adds, per
row identity X (every stored column equal, :func:`identities`)::

    add(X) = min(read(X), max(0, seen(X) + read(X) - held(X)))

of its candidates: read = candidates of X in this commit, held = rows of X in the table's base version, seen =
candidates of X earlier commits of the stream read under this ``rows_key`` (since its offsets last started
over). The table then holds each event the stream read once, identical duplicates as many times as they
were read, never a double. Only rows read in this commit are added: copies a later backfill of the range
replaced (the batch face lacked them: it is the authority where it ran) are not brought back.

``seen`` lives in side files ``_log/seen-<uuid>.arrow`` (Arrow IPC: ts_ms, hi, lo per candidate read), never
matched by ``date=*/part-*.parquet`` nor ``**/*.parquet``; the manifest's ``claimed_seen`` names them with
the ``rows_key`` they are for. They are merged into one when the list grows past :data:`MERGE_AFTER`, and
deleted by ``expire`` once no kept manifest names them.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from featurestore.stores.offline_files import (DEFAULT_TS_COLUMN, ROW_GROUP_ROWS, _native,
                                               _PartitionedWriter, _split_by_day, _stored_stream_rows, _tmp_path,
                                               _ts_ms, _unlink)
from featurestore.stores import time_ranges

SEEN_PREFIX, SEEN_SUFFIX = "seen-", ".arrow"
MERGE_AFTER = 4  # side files a manifest names before the next commit merges them into one
KEY = np.dtype([("h", "<u8"), ("l", "<u8")])  # a row identity: the 128 bits of an MD5
_SEEN_SCHEMA = pa.schema([("ts_ms", pa.int64()), ("hi", pa.uint64()), ("lo", pa.uint64())])
_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def _sql_text(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _py_canon(v) -> str:
    """A nested value as text: floats by their exact value (NaN one value, -0.0 not 0.0)."""
    if isinstance(v, float):
        return "nan" if v != v else repr(v)
    if isinstance(v, dict):
        items = sorted(v.items(), key=lambda i: str(i[0]))
        return "{" + ",".join(f"{len(str(k))}:{k}={_py_canon(x)}" for k, x in items) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_py_canon(x) for x in v) + "]"
    if v is None:
        return "~"
    s = v.isoformat() if hasattr(v, "isoformat") else repr(v)
    return f"{len(s)}:{s}"


def _canonical(col: pa.Array) -> List[Tuple[pa.Array, str]]:
    """``col`` as DuckDB-ready (array, kind) parts whose text is canonical for equality by value."""
    t = col.type
    if pa.types.is_dictionary(t):
        return _canonical(col.cast(t.value_type))
    if pa.types.is_null(t):
        return []
    if pa.types.is_floating(t):
        x = col.cast(pa.float64()).fill_null(0.0).to_numpy(zero_copy_only=False)
        bits = x.view(np.int64).copy()
        bits[np.isnan(x)] = 0x7FF8000000000000  # every NaN is one value; -0.0 keeps its sign bit
        return [(pa.array(bits, mask=col.is_null().to_numpy(zero_copy_only=False)), "num")]
    if pa.types.is_timestamp(t):  # the epoch value, whatever the unit and time zone marking
        f = _UNITS[t.unit]
        v = col.cast(pa.int64()).fill_null(0).to_numpy(zero_copy_only=False)
        mask = col.is_null().to_numpy(zero_copy_only=False)
        return [(pa.array(v // f, mask=mask), "num"), (pa.array((v % f) * (1_000_000_000 // f), mask=mask), "num")]
    if pa.types.is_boolean(t):
        return [(col.cast(pa.int8()), "num")]
    if pa.types.is_integer(t) or pa.types.is_decimal(t) or pa.types.is_date(t):
        return [(col, "num")]
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return [(col.cast(pa.int64()), "num")]
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return [(col, "text")]
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return [(col.cast(pa.large_binary()) if pa.types.is_fixed_size_binary(t) else col, "blob")]
    return [(pa.array([None if v is None else _py_canon(v) for v in col.to_pylist()], pa.string()), "text")]


def identities(data) -> np.ndarray:
    """The identity (:data:`KEY`) of each row of ``data`` (a RecordBatch or Table): the MD5 of a canonical
    text of its non-null columns by name (a column absent or null is the same), floats of any width by their
    float64 bits (NaN one value), timestamps by their epoch value whatever their unit or time zone marking."""
    import duckdb

    out = np.zeros(data.num_rows, dtype=KEY)
    if data.num_rows == 0:
        return out
    cols: Dict[str, pa.Array] = {"_n": pa.array(np.zeros(data.num_rows, dtype=np.int8))}
    exprs = []
    for i, name in enumerate(sorted(data.schema.names)):
        col = data.column(name)
        col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        parts = _canonical(col)
        if not parts:
            continue
        vals = []
        for j, (arr, kind) in enumerate(parts):
            c = f"c{i}_{j}"
            cols[c] = arr
            vals.append({"text": f"length({c}) || ':' || {c}", "blob": f"hex({c})"}.get(kind, f"CAST({c} AS VARCHAR)"))
        first = f"c{i}_0"
        exprs.append(f"CASE WHEN {first} IS NULL THEN '' ELSE {_sql_text(f'{len(name)}:{name}=')} || "
                     + " || '.' || ".join(vals) + " || ';' END")
    text = "concat(" + ", ".join(exprs) + ")" if exprs else "''"
    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.register("canon_rows", pa.table(cols))
        res = con.sql(f"SELECT md5_number_upper(r) AS hi, md5_number_lower(r) AS lo FROM "
                          f"(SELECT {text} AS r FROM canon_rows)").to_arrow_table()
    finally:
        con.close()
    out["h"] = res.column("hi").to_numpy()
    out["l"] = res.column("lo").to_numpy()
    return out


def _counts(uniq: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """How many of ``keys`` equal each of the sorted unique identities ``uniq``."""
    if len(uniq) == 0 or len(keys) == 0:
        return np.zeros(len(uniq), dtype=np.int64)
    idx = np.searchsorted(uniq, keys)
    ok = idx < len(uniq)
    ok[ok] = uniq[idx[ok]] == keys[ok]
    return np.bincount(idx[ok], minlength=len(uniq)).astype(np.int64)


class Candidates:
    """The candidates of one commit, in the order the sources were read: where each is (source, batch,
    row), its time and identity."""

    def __init__(self):
        self._where: List[np.ndarray] = []
        self._ts: List[np.ndarray] = []
        self._keys: List[np.ndarray] = []

    def add(self, src: int, batch: int, rows: np.ndarray, ts_ms: np.ndarray, stored: pa.RecordBatch) -> None:
        """Rows ``rows`` of batch ``batch`` of source ``src``; ``stored``: those rows as the table stores them."""
        self._where.append(np.column_stack([np.full(len(rows), src), np.full(len(rows), batch), rows]).astype(np.int64))
        self._ts.append(np.asarray(ts_ms, dtype=np.int64))
        self._keys.append(identities(stored))

    def __len__(self) -> int:
        return sum(len(t) for t in self._ts)

    def arrays(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(where: n x 3, ts_ms, identities)."""
        if not self._ts:
            return np.zeros((0, 3), np.int64), np.zeros(0, np.int64), np.zeros(0, KEY)
        return np.concatenate(self._where), np.concatenate(self._ts), np.concatenate(self._keys)


def claimable(base: Optional[dict], rows_key: Optional[str], mixed: str) -> list:
    """The batch-owned ranges whose rows were computed under ``rows_key`` (none when it is None or ``mixed``)."""
    if rows_key is None or rows_key == mixed or not base:
        return []
    keyed = base.get("batch_rows_keys")
    if keyed is None:
        owned = time_ranges.normalized(base.get("batch_ranges", []))
        keyed = [[lo, hi, base.get("batch_rows_key")] for lo, hi in owned]
    return time_ranges.normalized([[lo, hi] for lo, hi, key in keyed if key == rows_key])


def seen_record(base: Optional[dict], rows_key: Optional[str], fresh: bool) -> List[str]:
    """The side files of the base that count as ``seen`` for ``rows_key`` (none after the offsets started over)."""
    rec = (base or {}).get("claimed_seen")
    if fresh or not rec or rec.get("rows_key") != rows_key:
        return []
    return list(rec.get("files", []))


class Plan:
    """What a commit adds of its candidates on one base: ``picks`` (indices into the candidates, in order), and
    the manifest's new ``claimed_seen`` with the side file this attempt wrote (``written``: delete it unless
    the commit wins)."""

    def __init__(self, picks: np.ndarray, record: Optional[dict], written: list):
        self.picks, self.record, self.written = picks, record, written


def plan(table, base: Optional[dict], cands: Candidates, rows_key: Optional[str], fresh: bool) -> Plan:
    """Which candidates to add on ``base`` (see the module docstring) and the side file recording them."""
    where, ts, keys = cands.arrays()
    uniq, inverse, read = np.unique(keys, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    old = seen_record(base, rows_key, fresh)
    seen_ts, seen_keys = _read_seen(table, old)
    seen = _counts(uniq, seen_keys)
    held = _held(table, base, np.unique(ts), uniq)
    add = np.maximum(0, seen + read - held)
    order = np.argsort(inverse, kind="stable")  # the first add(X) candidates of X, in read order
    starts = np.concatenate([[0], np.cumsum(read)[:-1]])
    rank = np.empty(len(keys), dtype=np.int64)
    rank[order] = np.arange(len(keys)) - starts[inverse[order]]
    picks = np.flatnonzero(rank < add[inverse])
    new_ts, new_keys = ts, keys
    names = old
    if len(old) + 1 > MERGE_AFTER:
        new_ts, new_keys, names = np.concatenate([seen_ts, ts]), np.concatenate([seen_keys, keys]), []
    name = _write_seen(table, new_ts, new_keys)
    return Plan(picks, {"rows_key": rows_key, "files": [*names, name]}, [name])


def add(table, txn, base: Optional[dict], sources: list, cands: Candidates, rows_key: Optional[str], fresh: bool,
        layout: tuple, count_column: Optional[str]) -> dict:
    """The candidates to add on ``base`` (:func:`plan`), written as new files of ``txn`` (the second read of their
    sources); ``layout``: (ts column, partition column, offset column, keep offsets) as in ``commit_stream``."""
    ts_column, partition_column, offset_column, keep_offsets = layout
    picked = plan(table, base, cands, rows_key, fresh)
    where = cands.arrays()[0][picked.picks]
    rows, counts, writers = 0, {}, {}  # type: Tuple[int, Dict[str, int], dict]
    try:
        for i in np.unique(where[:, 0]).tolist():
            src, mine = sources[i], where[where[:, 0] == i]
            with _native(src.path) as f:
                for b, batch in enumerate(pq.ParquetFile(f).iter_batches(batch_size=ROW_GROUP_ROWS // 4)):
                    take = mine[mine[:, 1] == b, 2]
                    if not len(take):
                        continue
                    kept = _stored_stream_rows(batch.take(pa.array(take)), src.schema, ts_column, table._where,
                                               keep_offsets, (partition_column, offset_column), count_column, counts)
                    rows += kept.num_rows
                    name = src.schema.to_string()
                    if name not in writers:
                        writers[name] = _PartitionedWriter(table._staging, src.schema, ts_column)
                    for day, piece in _split_by_day(kept, src.schema.get_field_index(ts_column), None, table._where):
                        writers[name].add(day, piece)
        files = [nf for w in writers.values() for nf in w.close()]
    except BaseException:
        for w in writers.values():
            w.abort()
        delete_seen(table, picked.written)
        raise
    txn.files.extend(files)
    return {"files": files, "rows": rows, "counts": counts, "plan": picked}


def discard(table, txn, claimed: dict) -> None:
    """Undo what :func:`add` wrote for an attempt that will not commit (``claimed``: its result)."""
    txn.discard(claimed.pop("files", []))
    if "plan" in claimed:
        delete_seen(table, claimed.pop("plan").written)
    claimed.update(key=None, rows=0, counts={})


def _held(table, base: Optional[dict], cand_ts: np.ndarray, uniq: np.ndarray) -> np.ndarray:
    """Rows of each identity ``uniq`` the base holds, reading only files whose time span meets a candidate's."""
    held = np.zeros(len(uniq), dtype=np.int64)
    if base is None or len(cand_ts) == 0:
        return held
    ts_column = base.get("ts_column", DEFAULT_TS_COLUMN)
    for rel in base["files"]:
        st = table._file_stats(base, rel)
        if not st.get("rows") or st.get("min_ts") is None:
            continue
        i = np.searchsorted(cand_ts, st["min_ts"])
        if i >= len(cand_ts) or cand_ts[i] > st["max_ts"]:
            continue
        size = base.get("file_stats", {}).get(rel, {}).get("bytes")
        with table._open_sized(rel, base["version"], size) as f:
            pf = pq.ParquetFile(f)
            for batch in pf.iter_batches(batch_size=ROW_GROUP_ROWS // 4):
                ms = _ts_ms(batch.column(ts_column))
                hit = np.isin(ms, cand_ts)
                if hit.any():
                    held += _counts(uniq, identities(batch.filter(pa.array(hit))))
    return held


def _loc(table, name: str):
    return table._log / name


def _read_seen(table, names: List[str]) -> Tuple[np.ndarray, np.ndarray]:
    ts, keys = [np.zeros(0, np.int64)], [np.zeros(0, KEY)]
    for name in names:
        loc = _loc(table, name)
        if table.remote:
            data = loc.get()
            if data is None:
                raise FileNotFoundError(str(loc))
            t = pa.ipc.open_file(pa.BufferReader(data)).read_all()
        else:
            with pa.memory_map(str(loc)) as f:
                t = pa.ipc.open_file(f).read_all()
        k = np.zeros(t.num_rows, dtype=KEY)
        k["h"], k["l"] = t.column("hi").to_numpy(), t.column("lo").to_numpy()
        ts.append(t.column("ts_ms").to_numpy())
        keys.append(k)
    return np.concatenate(ts), np.concatenate(keys)


def _write_seen(table, ts: np.ndarray, keys: np.ndarray) -> str:
    """A new side file of (ts_ms, identity) rows, under a unique name; returns the name."""
    name = f"{SEEN_PREFIX}{uuid.uuid4().hex}{SEEN_SUFFIX}"
    t = pa.table([pa.array(ts, pa.int64()), pa.array(keys["h"]), pa.array(keys["l"])], schema=_SEEN_SCHEMA)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, _SEEN_SCHEMA) as w:
        w.write_table(t)
    data = sink.getvalue().to_pybytes()
    loc = _loc(table, name)
    if table.remote:
        loc.write_bytes(data)
        return name
    table._log.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_path(table.path, table._log, uuid.uuid4().hex)
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, loc)
    return name


def delete_seen(table, names: List[str]) -> None:
    """Delete side files an attempt wrote that no committed manifest names."""
    for name in names:
        loc = _loc(table, name)
        if table.remote:
            loc.delete()
        else:
            _unlink(loc)


def expire_seen(table, kept: List[dict], every: List[dict], grace_seconds: float) -> None:
    """Delete the side files no kept manifest names: at once when an expired manifest named them, else
    (a writer's attempt that never committed) once older than ``grace_seconds``."""
    referenced = {n for m in kept for n in (m.get("claimed_seen") or {}).get("files", [])}
    ever = {n for m in every for n in (m.get("claimed_seen") or {}).get("files", [])}
    now = time.time()
    if table.remote:
        entries = [(loc.name, loc, mtime) for loc, mtime in table._log.list_files()]
    else:
        try:
            names = os.listdir(table._log)
        except FileNotFoundError:
            return
        entries = []
        for n in names:
            try:
                entries.append((n, table._log / n, os.stat(table._log / n).st_mtime))
            except FileNotFoundError:
                continue
    for name, loc, mtime in entries:
        if not (name.startswith(SEEN_PREFIX) and name.endswith(SEEN_SUFFIX)) or name in referenced:
            continue
        if name in ever or now - mtime > grace_seconds:
            loc.delete() if table.remote else _unlink(loc)
