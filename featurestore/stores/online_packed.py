"""Raw members packed by DuckDB as the very bytes Redis receives (materialize, single node).

Materialize stores every kept event of an entity as a ZSET member (score = its time): hundreds of
thousands of ``(ts, member)`` pairs per view. Formatting each pair as two RESP bulk strings in Python
(``$<len>\\r\\n<ts>\\r\\n$<len>\\r\\n<member>\\r\\n``) was a quarter of materialize's CPU; DuckDB writes
them in the same aggregation that encodes the members (:func:`packed_sql`), in chunks of at most
``STAGE_ITEMS`` members (a hot entity's staged write sends one chunk per call), and Python only forwards
the chunks: :class:`PackedRaw` stands for ``Changes.raw_add`` and :func:`featurestore.stores.online_redis.
write_args` splices its :class:`Segment` s into the write script's arguments unchanged.

The bytes are the ones the per-member path sends (the score as the integer's decimal text, the member's
UTF-8 bytes): ``tests/test_materialize_packed.py`` compares the Redis images of both paths byte for byte.
"""

from __future__ import annotations

from typing import Iterator, List, Sequence, Tuple


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


def packed_sql(ts: str, member: str) -> str:
    """SQL of one raw event's score and member as two RESP bulk strings (``ts`` a BIGINT, ``member`` a
    column of its text, named twice: not an expression; ``strlen``: its UTF-8 bytes). One concat (neither
    is NULL): a chain of ``||`` copies the growing text once per part."""
    t = f"CAST({ts} AS VARCHAR)"
    return (f"concat('$', CAST(strlen({t}) AS VARCHAR), chr(13), chr(10), {t}, chr(13), chr(10), '$', "
            f"CAST(strlen({member}) AS VARCHAR), chr(13), chr(10), {member}, chr(13), chr(10))")


def from_columns(counts: list, texts: list) -> PackedRaw:
    """A :class:`PackedRaw` of one entity's chunk counts and texts (lists read from DuckDB; empty chunks
    left out)."""
    return PackedRaw([(c, t.encode()) for c, t in zip(counts or (), texts or ()) if c])


__all__ = ["PackedRaw", "Segment", "pack_counted", "packed_sql", "from_columns"]
