"""Raw members packed by DuckDB as the very bytes Redis receives (materialize, single node).

Materialize stores every kept event of an entity as a ZSET member (score = its time): hundreds of
thousands of ``(ts, member)`` pairs per view. Formatting each pair as two RESP bulk strings in Python
(``$<len>\\r\\n<ts>\\r\\n$<len>\\r\\n<member>\\r\\n``) was a quarter of materialize's CPU; DuckDB writes
them in the query that encodes the members (:func:`packed_sql`), listing the events in entity and rank
order; Python takes each entity's bytes as slices of the Arrow column (:func:`entity_blocks`,
:class:`EntityRuns`: no sort per entity, no step per event), in chunks of at most ``STAGE_ITEMS``
members (a hot entity's staged write sends one chunk per call), and only forwards the chunks: :class:`PackedRaw` stands for ``Changes.raw_add`` and :func:`featurestore.stores.online_redis.
write_args` splices its :class:`Segment` s into the write's arguments unchanged.

The bytes are the ones the per-member path sends (the score as the integer's decimal text, the member's
UTF-8 bytes): ``tests/test_materialize_packed.py`` compares the Redis images of both paths byte for byte.

On a single node materialize sends each entity's write as plain commands in one ``MULTI``/``EXEC``
(:func:`write_calls`, :class:`Transaction`) instead of the write script: atomic alike (readers see the
entity before or after), and Redis parses each member once, where the script copied every argument
into Lua and back into a command (its CPU was 1.4-1.7x the plain commands').
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa


class Segment(bytes):
    """RESP bulk strings of ``args`` consecutive arguments, sent as they are."""

    args: int = 0


class PackedRaw:
    """An entity's raw ``(ts, member)`` pairs as packed chunks ``(count, RESP bytes)``, in event order
    (``len``: the pairs; iterating parses them back: tests and the cluster path only)."""

    __slots__ = ("chunks", "n")

    def __init__(self, chunks: Sequence[Tuple[int, bytes]]):
        self.chunks = list(chunks)
        self.n = sum(c for c, _ in self.chunks)

    def __len__(self) -> int:
        return self.n

    def __bool__(self) -> bool:
        return self.n > 0

    def segments(self) -> List[Segment]:
        out = []
        for count, data in self.chunks:
            seg = Segment(data)
            seg.args = 2 * count
            out.append(seg)
        return out

    def __iter__(self) -> Iterator[Tuple[int, str]]:
        for _, data in self.chunks:
            args, i = [], 0
            while i < len(data):
                j = data.index(b"\r\n", i)
                n = int(data[i + 1:j])
                args.append(data[j + 2:j + 2 + n])
                i = j + 4 + n
            for k in range(0, len(args), 2):
                yield int(args[k]), args[k + 1].decode()


def pack_counted(args) -> Tuple[int, bytes]:
    """``(number of arguments, RESP bulk strings)`` of a write script's arguments that may hold
    :class:`Segment` s (one per chunk: spliced as they are)."""
    out = []
    n = 0
    for a in args:
        if type(a) is Segment:
            out.append(a)
            n += a.args
            continue
        if not isinstance(a, bytes):
            a = (a if isinstance(a, str) else str(a)).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        n += 1
    return n, b"".join(out)


class Transaction(bytes):
    """Packed commands wrapped in ``MULTI``/``EXEC``; ``replies``: how many replies Redis sends for them."""

    replies: int = 1


_MULTI, _EXEC = b"*1\r\n$5\r\nMULTI\r\n", b"*1\r\n$4\r\nEXEC\r\n"


def command(args) -> bytes:
    """One command's RESP array (arguments as :func:`pack_counted` takes them)."""
    n, body = pack_counted(args)
    return b"*%d\r\n%s" % (n, body)


def transaction(calls: Sequence[bytes]) -> Transaction:
    """``calls`` (packed commands) run atomically: ``MULTI``, the calls, ``EXEC``."""
    out = Transaction(_MULTI + b"".join(calls) + _EXEC)
    out.replies = len(calls) + 2
    return out


def _text(a) -> bytes:
    return a if isinstance(a, bytes) else (a if isinstance(a, str) else str(a)).encode()


def write_calls(keys: Sequence[bytes], args: list) -> List[bytes]:
    """``WRITE_LUA`` (:mod:`featurestore.stores.online_redis`) as plain commands: its effect on ``keys``
    (tiles hash, raw zset, prefix zset) for its arguments ``args`` (``write_args``: raw members may be
    :class:`Segment` s), in its order, when run in one :func:`transaction`. The meta, dense flag and
    tiles go in one ``HSET`` (tile fields are never ``_`` or ``T``)."""
    t, r, p = keys
    full, meta, dense, raw_below, prefix_below, at = (_text(a) for a in args[:6])
    out = [command([b"UNLINK", t, r, p])] if full == b"1" else []
    if raw_below:
        out.append(command([b"ZREMRANGEBYSCORE", r, b"-inf", b"(" + raw_below]))
    if prefix_below:
        out.append(command([b"ZREMRANGEBYSCORE", p, b"-inf", b"(" + prefix_below]))
    fields = ([b"_", meta] if meta else []) + ([b"T", b"1"] if dense == b"1" else [])
    i = 7
    n = int(args[6])
    fields += args[i:i + 2 * n]
    i += 2 * n
    if fields:
        out.append(command([b"HSET", t, *fields]))
    n = int(args[i])
    if n:
        out.append(command([b"HDEL", t, *args[i + 1:i + 1 + n]]))
    i += 1 + n
    n_raw, pairs, got = int(args[i]), [], 0
    i += 1
    while got < n_raw:  # packed segments or (score, member) pairs
        a = args[i]
        if type(a) is Segment:
            pairs.append(a)
            got += a.args // 2
            i += 1
        else:
            pairs += args[i:i + 2]
            got += 1
            i += 2
    if n_raw:
        out.append(command([b"ZADD", r, *pairs]))
    n = int(args[i])
    for j in range(i + 1, i + 1 + 2 * n, 2):  # each prefix replaces the one at its score
        b = _text(args[j])
        out += [command([b"ZREMRANGEBYSCORE", p, b, b]), command([b"ZADD", p, b, args[j + 1]])]
    if at:  # (after a full write a key nothing was written to does not exist: no expiry to set)
        written = (bool(fields), bool(n_raw), bool(n)) if full == b"1" else (True, True, True)
        out += [command([b"PEXPIREAT", k, at]) for k, w in zip(keys, written) if w]
    return out


def packed_sql(ts: str, member: str) -> str:
    """SQL of one raw event's score and member as two RESP bulk strings (``ts`` a BIGINT, ``member`` a
    column of its text, named twice: not an expression; ``strlen``: its UTF-8 bytes). One concat (neither
    is NULL): a chain of ``||`` copies the growing text once per part."""
    t = f"CAST({ts} AS VARCHAR)"
    return (f"concat('$', CAST(strlen({t}) AS VARCHAR), chr(13), chr(10), {t}, chr(13), chr(10), '$', "
            f"CAST(strlen({member}) AS VARCHAR), chr(13), chr(10), {member}, chr(13), chr(10))")


def entity_blocks(reader, rank: str = "__fs_r") -> Iterator[pa.RecordBatch]:
    """The batches of ``reader`` (rows sorted by entity, then by their rank ``rank``, 1 to n within the
    entity) regrouped into blocks of whole entities: an entity a batch boundary splits is carried to the
    next block."""
    carry: List[pa.RecordBatch] = []
    for batch in reader:
        if batch.num_rows == 0:
            continue
        starts = np.flatnonzero(batch.column(rank).to_numpy() == 1)
        if not carry and (not len(starts) or starts[0] != 0):
            raise ValueError("rows not in entity and rank order")
        if len(starts) and (starts[-1] > 0 or carry):
            done = carry + ([batch.slice(0, int(starts[-1]))] if starts[-1] > 0 else [])
            yield done[0] if len(done) == 1 else _concat(done)
            carry = []
        carry.append(batch.slice(int(starts[-1])) if len(starts) else batch)
    if carry:
        yield carry[0] if len(carry) == 1 else _concat(carry)


def _concat(batches: List[pa.RecordBatch]) -> pa.RecordBatch:
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


class EntityRuns:
    """The entities of one block of :func:`entity_blocks` (columns ``__fs_r`` rank, ``__fs_ts`` time,
    ``__fs_p`` the event's packed score and member (:func:`packed_sql`), NULL for an event not kept):
    per entity its first row (``starts``), events (``counts``), kept events (``kept``: those at or after
    ``cut``, a suffix of the entity's, as time leads event order) and last time (``last``), as lists;
    :meth:`chunks` its kept members' packed bytes."""

    def __init__(self, block: pa.RecordBatch, cut: Optional[int]):
        r = block.column("__fs_r").to_numpy()
        n = len(r)
        starts = np.flatnonzero(r == 1)
        ends = np.append(starts[1:], n)
        if n > 1 and not np.all((np.diff(r) == 1) | (r[1:] == 1)):
            raise ValueError("ranks not consecutive within an entity")
        ts = block.column("__fs_ts").to_numpy()
        if cut is None:
            kept = ends - starts
        else:
            cum = np.concatenate(([0], np.cumsum(ts >= cut)))
            kept = cum[ends] - cum[starts]
        packed = block.column("__fs_p")
        wide = pa.types.is_large_string(packed.type) or pa.types.is_large_binary(packed.type)
        self.offsets = np.frombuffer(packed.buffers()[1], dtype=np.int64 if wide else np.int32)[packed.offset:packed.offset + n + 1].tolist()
        data = packed.buffers()[2]
        self.data = memoryview(data) if data is not None else memoryview(b"")
        self.starts, self.ends, self.kept = starts.tolist(), ends.tolist(), kept.tolist()
        self.counts = (ends - starts).tolist()
        self.last = ts[ends - 1].tolist()

    def packed(self, i: int) -> bytes:
        """Entity ``i``'s kept members' packed bytes, one text."""
        off = self.offsets
        return self.data[off[self.ends[i] - self.kept[i]]:off[self.ends[i]]].tobytes()

    def chunks(self, i: int, size: int) -> List[Tuple[int, bytes]]:
        """Entity ``i``'s kept members as chunks ``(count, packed bytes)`` of the events ranked
        ``size * j + 1`` to ``size * (j + 1)`` (its kept ones: empty chunks left out)."""
        s, e, off, out = self.starts[i], self.ends[i], self.offsets, []
        b = e - self.kept[i]
        while b < e:
            c = min(s + ((b - s) // size + 1) * size, e)
            out.append((c - b, self.data[off[b]:off[c]].tobytes()))
            b = c
        return out


__all__ = ["EntityRuns", "PackedRaw", "Segment", "Transaction", "command", "entity_blocks", "pack_counted",
           "packed_sql", "transaction", "write_calls"]
