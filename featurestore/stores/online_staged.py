"""Chunked writes of one large entity (materialize of a hot entity), swapped in at once.

An entity too large for one bounded script call (materialize of a hot entity) is written in chunks to
its *staging* keys (``entity_keys(base, staged=True)``: same hash tag, never read), each chunk one
WRITE_LUA call (on a single node its commands in one transaction: ``online_packed.write_calls``) of at
most STAGE_ITEMS members or fields (Redis is never blocked for long), then
COMMIT_LUA swaps them in at once. KEYS: staging tiles, raw, prefixes, then the live ones. ARGV:
pexpireat of the live keys ('' = none), the number of tile-hash fields, raw members and prefixes the
staging keys must hold. A staging that is not whole (its writer died, or it expired: STAGE_TTL_MS after its
last chunk) is refused, and the live keys keep their previous state: readers see the entity before or
after the write, never half of one.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from featurestore.kernel.entity import Changes
from featurestore.stores import online_redis as orr
from featurestore.stores.online_packed import PackedRaw, transaction, write_calls

COMMIT_LUA = """
if redis.call('HLEN', KEYS[1]) ~= tonumber(ARGV[2]) or redis.call('ZCARD', KEYS[2]) ~= tonumber(ARGV[3])
    or redis.call('ZCARD', KEYS[3]) ~= tonumber(ARGV[4]) then
  return redis.error_reply('featurestore: staged write of ' .. KEYS[4] .. ' is incomplete')
end
for k = 1, 3 do
  redis.call('UNLINK', KEYS[k + 3])
  if redis.call('EXISTS', KEYS[k]) == 1 then
    redis.call('RENAME', KEYS[k], KEYS[k + 3])
    if ARGV[1] ~= '' then redis.call('PEXPIREAT', KEYS[k + 3], ARGV[1]) else redis.call('PERSIST', KEYS[k + 3]) end
  end
end
return 1
"""
STAGE_TTL_MS = 3_600_000


def staged_changes(changes: Changes) -> List[Changes]:
    """A full write split into chunks of at most STAGE_ITEMS raw members, tile fields or prefixes: the
    first replaces the staging keys and writes the entity meta, the others add (see COMMIT_LUA)."""
    out = []
    raw = changes.raw_add
    if isinstance(raw, PackedRaw):  # chunks of at most STAGE_ITEMS members each, packed by DuckDB
        for chunk in raw.chunks:
            first = not out
            out.append(Changes(first, changes.horizon, changes.dense, raw_add=PackedRaw([chunk]),
                               last_ts=changes.last_ts, meta=first))
        raw = []
    items = [("raw_add", x) for x in raw] + [("tiles_set", x) for x in changes.tiles_set.items()] \
        + [("prefix_set", x) for x in changes.prefix_set.items()]
    for i in range(0, len(items) if out else max(1, len(items)), orr.STAGE_ITEMS):
        first = not out
        ch = Changes(first, changes.horizon, changes.dense, last_ts=changes.last_ts, meta=first)
        for kind, x in items[i:i + orr.STAGE_ITEMS]:
            if kind == "raw_add":
                ch.raw_add.append(x)
            else:
                getattr(ch, kind)[x[0]] = x[1]
        out.append(ch)
    return out


def commit_args(base: str, changes: Changes, at: Optional[int]) -> Tuple[tuple, list]:
    """The keys and arguments of :data:`COMMIT_LUA` for a staged full write of ``changes``."""
    fields = 1 + changes.dense + len(changes.tiles_set)  # meta, dense flag, tiles
    return (orr.entity_keys(base, staged=True) + orr.entity_keys(base),
            ["" if at is None else at, fields, len(changes.raw_add), len(changes.prefix_set)])


def write_staged(store, base: str, changes: Changes, fingerprint: str, at: Optional[int], now: int) -> None:
    """Write one large entity (a full write) in chunks of at most STAGE_ITEMS to its staging keys,
    then swap them in at once (:data:`COMMIT_LUA`)."""
    if store.cluster:  # the chunks (one slot: one node, in order), then the swap
        skeys = orr.entity_keys(base, staged=True)
        chunks = [orr.write_args(ch, fingerprint, now + STAGE_TTL_MS) for ch in staged_changes(changes)]
        keys, args = commit_args(base, changes, at)
        store._pipelined(orr.WRITE_LUA, [(base, skeys, a) for a in chunks])
        store._guard(store.client.execute_command, "EVALSHA", store.commit_sha(), len(keys), *keys, *args)
        return
    store._write_packed(staged_commands(store, base, changes, fingerprint, at, now))


def staged_commands(store, base: str, changes: Changes, fingerprint: str, at: Optional[int],
                    now: int) -> List[bytes]:
    """Single node: the packed calls of :meth:`write_staged` (sent in order on one connection): each chunk
    a transaction of plain commands (:func:`online_packed.write_calls`), then the swap."""
    skeys = [k.encode() for k in orr.entity_keys(base, staged=True)]
    out = [transaction(write_calls(skeys, orr.write_args(ch, fingerprint, now + STAGE_TTL_MS)))
           for ch in staged_changes(changes)]
    keys, args = commit_args(base, changes, at)
    out.append(b"*%d\r\n" % (3 + len(keys) + len(args)) + orr._bulk(b"EVALSHA")
               + orr._bulk(orr._arg_bytes(store.commit_sha())) + orr._bulk(b"%d" % len(keys)) + orr._pack([*keys, *args]))
    return out
