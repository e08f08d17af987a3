"""The online store's read script and the client side of a lookup's read (see docs/online-store.md "Layout").

One script call reads every entity of one view in a lookup (on a Redis Cluster: those of one slot), so
Redis parses the read plan once per view, not once per (view, entity). KEYS: per entity, its tiles hash,
raw zset and prefix zset. ARGV: the cut ('' = no unbounded window), what an
entity without tiles reads (the earliest finite window start or '', '1' when a window is unbounded,
``q - 1``, '1' when only latest features read the view), the number of tiles, the tile ids, then the raw
ranges (inclusive ms pairs): :meth:`featurestore.online.ReadPlan.script_args`. Replies are decoded by
:func:`featurestore.online_reply.decode_reply`.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from featurestore.kernel.tiles import TOP_LEVEL

CALL_ENTITIES = 128  # entities per script call at most (a script holds Redis while it runs; a pipeline does not)

# Reply: per entity (in KEYS order), nil (no state), or ONE string, its parts separated by the byte 0x1e (JSON never holds a raw
# control character; one bulk string per entity is far cheaper for a client to parse than a nested reply
# of dozens): meta, dense flag ('1' or ''), prefix member, top tile at the prefix, then (dense) each
# requested tile ('' when the hash does not hold it) and the raw events of every piece read raw, or
# (sparse) the raw events read, and last whether any event before q is stored ('1' or ''). Absent parts
# are empty. Raw events come joined by newlines (JSON members never hold a raw newline). A dense entity's
# raw pieces (its raw ranges and the tiles the hash does not hold: few events, or none,
# kernel.entity.TILE_MIN_EVENTS) are merged into disjoint time spans and read with one ZRANGEBYSCORE per
# span, in time order: each event once however many windows' pieces hold it (the client takes each
# piece's events by time: online_reply.dense_fragments). An unstored top tile at the prefix is replied as
# a newline followed by its raw events. :func:`split_reply` gives the parts back.
SEP = b"\x1e"
LOST_REPLY = b"lost"  # the entity's events are stored but its meta is gone: its state is lost, never NOT_FOUND
READ_LUA = """
-- the plan, parsed once for every entity of the call (KEYS: each entity's tiles hash, raw zset, prefix zset)
local cut, lo0, unbounded, qm1, latest_only = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5] == '1'
local n = tonumber(ARGV[6])
local ids = {}
for j = 1, n do ids[j] = ARGV[6 + j] end
local ranges = {}
for i = 7 + n, #ARGV, 2 do ranges[#ranges + 1] = {ARGV[i], ARGV[i + 1]} end
local ncut = cut ~= '' and tonumber(cut) or nil
local spans = {}  -- tile id -> inclusive ms range of its raw events (numbers)
local function span_of(field)
  local s = spans[field]
  if not s then
    local level, minute = string.match(field, '^(%%d+):(-?%%d+)$')
    local lo = tonumber(minute) * 60000
    s = {lo, lo + 60000 * 2 ^ tonumber(level) - 1}
    spans[field] = s
  end
  return s
end
local function raw_of(rkey, field)
  local s = span_of(field)
  return '\\n' .. table.concat(redis.call('ZRANGEBYSCORE', rkey, string.format('%%d', s[1]),
                                          string.format('%%d', s[2])), '\\n')
end
for j = 1, #ranges do ranges[j] = {tonumber(ranges[j][1]), tonumber(ranges[j][2])} end
local function by_start(a, b) return a[1] < b[1] end
-- the raw events of the inclusive ms ranges ``need``: merged into disjoint spans, one ZRANGEBYSCORE each
local function raw_in(rkey, need)
  table.sort(need, by_start)
  local parts, lo, hi = {}, nil, nil
  local function flush()
    local evs = redis.call('ZRANGEBYSCORE', rkey, string.format('%%d', lo), string.format('%%d', hi))
    if #evs > 0 then parts[#parts + 1] = table.concat(evs, '\\n') end
  end
  for _, s in ipairs(need) do
    if lo and s[1] <= hi + 1 then
      if s[2] > hi then hi = s[2] end
    else
      if lo then flush() end
      lo, hi = s[1], s[2]
    end
  end
  if lo then flush() end
  return table.concat(parts, '\\n')
end
local function read(tkey, rkey, pkey)
  local head = redis.call('HMGET', tkey, '_', 'T')
  if not head[1] then
    -- no meta: no state, unless events are stored without it (its hash was evicted or deleted): lost, refused
    if redis.call('EXISTS', rkey, pkey) > 0 then return 'lost' end
    return false
  end
  local prefix, ptile, p = false, false, {}
  if ncut then
    p = redis.call('ZREVRANGEBYSCORE', pkey, cut, '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if #p > 0 then
      prefix = p[1]
      if head[2] and tonumber(p[2]) < ncut then
        local field = '%d:' .. string.format('%%d', tonumber(p[2]) / 60000)
        ptile = redis.call('HGET', tkey, field) or raw_of(rkey, field)
      end
    end
  end
  if not head[2] or (latest_only and not ncut) then
    -- raw events only: those of [lo, q) (lo0: the earliest finite window start, '' for none; unbounded: a
    -- window is unbounded, so from the prefix's boundary, or every event without one; qm1: q - 1), or when
    -- only latest features read, just the events of the latest time there. An entity with tiles is read so
    -- too when only latest features read a finite TTL: it stores every raw event of its retention (at least
    -- the TTL) after its horizon, so the latest one inside the TTL is there, and no tile need be read
    local lo = lo0
    if unbounded then
      if not prefix then lo = '-inf'
      elseif lo == '' or tonumber(p[2]) < tonumber(lo) then lo = p[2] end
    end
    if lo == '' then lo = '-inf' end
    local evs
    if latest_only then
      -- the latest two: a second of the same time (a tie) means all of that time are read
      evs = redis.call('ZREVRANGEBYSCORE', rkey, qm1, lo, 'WITHSCORES', 'LIMIT', 0, 2)
      if #evs == 2 or (#evs == 4 and evs[4] ~= evs[2]) then evs = {evs[1]}
      elseif #evs > 0 then evs = redis.call('ZRANGEBYSCORE', rkey, evs[2], evs[2]) end
    else
      evs = redis.call('ZRANGEBYSCORE', rkey, lo, qm1)
    end
    local before = #evs > 0
    if not before and lo ~= '-inf' then
      before = #redis.call('ZRANGEBYSCORE', rkey, '-inf', '(' .. lo, 'LIMIT', 0, 1) > 0
    end
    return table.concat({head[1], '', prefix or '', ptile or '', table.concat(evs, '\\n'), before and '1' or ''},
                        '\\30')
  end
  local out = {head[1], '1', prefix or '', ptile or ''}
  local need = {}  -- the inclusive ms ranges read raw: the raw ranges and the tiles the hash does not hold
  for _, r in ipairs(ranges) do need[#need + 1] = r end
  for s = 0, n - 1, 1000 do
    -- in chunks: Lua's unpack takes ~8000 values at most (a window of centuries covers ~9000 top tiles)
    local e = math.min(s + 1000, n)
    local tiles = redis.call('HMGET', tkey, unpack(ids, s + 1, e))
    for j = 1, e - s do
      if tiles[j] then
        out[#out + 1] = tiles[j]
      else
        out[#out + 1] = ''
        need[#need + 1] = span_of(ids[s + j])
      end
    end
  end
  local raw = raw_in(rkey, need)
  out[#out + 1] = raw
  -- whether any event before q is stored (a latest feature with none inside its TTL is OUTSIDE_MAX_AGE):
  -- yes when a raw piece read holds one (every piece is before q), else asked
  local before = raw ~= ''
  if not before then before = #redis.call('ZRANGEBYSCORE', rkey, '-inf', qm1, 'LIMIT', 0, 1) > 0 end
  out[#out + 1] = before and '1' or ''
  return table.concat(out, '\\30')
end
local replies = {}
for e = 1, #KEYS, 3 do
  replies[#replies + 1] = read(KEYS[e], KEYS[e + 1], KEYS[e + 2])
end
return replies
""" % TOP_LEVEL



def split_reply(reply, n_tiles: int):
    """The read script's reply as a list ``[meta, dense, prefix, top tile, raw events, before]`` (sparse)
    or ``[meta, dense, prefix, top tile, [tiles], raw events, before]`` (dense; a tile the hash does not
    hold is empty), what :func:`featurestore.online_reply.decode_reply` reads (``n_tiles``: how many tiles
    the read asked for); None (no state) stays None."""
    if not reply or not isinstance(reply, bytes):
        return reply
    parts = reply.split(SEP)
    if not parts[1]:
        return parts
    return parts[:4] + [parts[4:4 + n_tiles], parts[4 + n_tiles], parts[-1]]


# -- the client ---------------------------------------------------------------------------------------
def read(store, views: Sequence[str], reads: Sequence[Tuple[str, list]]) -> Tuple[List[Optional[bytes]], list]:
    """One round trip (on a cluster: one per master, in parallel): the markers of ``views`` and, for each
    ``(entity base, script args)`` of ``reads``, its read script reply (``store``: a
    :class:`~featurestore.stores.online_redis.RedisOnlineStore`). The entities that share one args object
    (one view's read plan in a lookup) are read by one script call (:func:`calls`); the script is loaded
    once per client, and when Redis has lost it (a restart) it is loaded again and the read repeated.

    The commands are packed here, not by redis-py: one plan's arguments are encoded once for the view."""
    import redis

    from featurestore.stores.online_redis import LOST, slot_key

    if store.cluster:
        from redis.crc import key_slot

        slots = [key_slot(base.encode()) for base, _ in reads]
        distinct = sorted(set(slots))
        sentinels = [slot_key(store.project, sl) for sl in distinct]
        groups = calls(reads, slots)
        out = _read_packed_per_node(store, views, reads, groups, sentinels)
        if out is None:
            out = _read_cluster(store, views, reads, groups, sentinels)
        present = dict(zip(distinct, out[1 + len(groups):]))
        replies = spread(out[1:1 + len(groups)], groups, len(reads))
        return out[0], [r if present[sl] else LOST for sl, r in zip(slots, replies)]
    groups = calls(reads)
    for attempt in (0, 1):
        if store._read is None:
            store._read = store._guard(store.client.script_load, READ_LUA)
        parts = [_markers_command(store, views)]
        parts += [command for _, command in _call_commands(store._read, reads, groups)]
        out = store._guard(store._exchange, b"".join(parts), len(parts))
        errors = [r for r in out if isinstance(r, redis.exceptions.ResponseError)]
        if any(isinstance(e, redis.exceptions.NoScriptError) for e in errors) and not attempt:
            store._read = None
            continue
        if errors:
            raise errors[0]
        return out[0], spread(out[1:], groups, len(reads))
    raise AssertionError("unreachable")  # pragma: no cover


def calls(reads: Sequence[Tuple[str, list]], slots: Optional[Sequence[int]] = None) -> List[List[int]]:
    """The script calls of ``reads``: lists of indexes into ``reads`` whose entries share one args object
    (and, on a cluster, one slot: ``slots``, a script's keys must), at most :data:`CALL_ENTITIES` each,
    in the order of their first read."""
    groups: Dict[object, List[int]] = {}
    if slots is None:
        for i, (_, args) in enumerate(reads):
            idx = groups.get(id(args))
            if idx is None:
                groups[id(args)] = [i]
            else:
                idx.append(i)
    else:
        for i, ((_, args), slot) in enumerate(zip(reads, slots)):
            groups.setdefault((id(args), slot), []).append(i)
    return [idx[k:k + CALL_ENTITIES] for idx in groups.values() for k in range(0, len(idx), CALL_ENTITIES)]


def spread(replies: Sequence, groups: Sequence[List[int]], n: int) -> list:
    """Each read's reply (``n`` reads) from the calls' array replies (an error reply stands for each of its
    call's reads)."""
    out: list = [None] * n
    for reply, idx in zip(replies, groups):
        if isinstance(reply, list):
            for i, r in zip(idx, reply):
                out[i] = r
        else:
            for i in idx:
                out[i] = reply
    return out


def _bulk(b: bytes) -> bytes:
    """One RESP bulk string."""
    return b"$%d\r\n%s\r\n" % (len(b), b)


def _pack(args) -> bytes:
    """Arguments as RESP bulk strings, one format per argument (materialize packs millions)."""
    out = []
    for a in args:
        if not isinstance(a, bytes):
            a = (a if isinstance(a, str) else str(a)).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _markers_command(store, views: Sequence[str]) -> bytes:
    from featurestore.stores.online_redis import views_key

    vkey = views_key(store.project).encode()
    return (b"*%d\r\n" % (2 + len(views)) + _bulk(b"HMGET") + _bulk(vkey)
            + b"".join(_bulk(v.encode()) for v in views))


def _call_commands(sha: str, reads: Sequence[Tuple[str, list]], groups: Sequence[List[int]]
                   ) -> List[Tuple[bytes, bytes]]:
    """Per call of ``groups``: the key of its first entity (its slot on a cluster) and its packed ``EVALSHA``
    of the read script (``sha``) on the three keys of each of its entities, then the shared arguments
    (packed once per args object)."""
    packed: Dict[int, Tuple[int, bytes]] = {}
    head = _bulk(b"EVALSHA") + _bulk(sha.encode() if isinstance(sha, str) else sha)
    out = []
    for idx in groups:
        args = reads[idx[0]][1]
        tail = packed.get(id(args))
        if tail is None:
            tail = packed[id(args)] = (len(args), _pack(args))
        keys = []
        for i in idx:
            key = reads[i][0].encode()
            n = len(key) + 2
            keys.append(b"$%d\r\n%s:t\r\n$%d\r\n%s:r\r\n$%d\r\n%s:p\r\n" % (n, key, n, key, n, key))
        nkeys = b"%d" % (3 * len(idx))
        out.append((reads[idx[0]][0].encode(), b"*%d\r\n" % (3 + 3 * len(idx) + tail[0]) + head + _bulk(nkeys)
                    + b"".join(keys) + tail[1]))
    return out


def _read_packed_per_node(store, views: Sequence[str], reads: Sequence[Tuple[str, list]],
                          groups: Sequence[List[int]], sentinels: List[str]):
    """:func:`read` on a Redis Cluster, packed by hand like the single node's: each master that holds a
    slot of the request gets its commands in one write, all masters before any reply is read (one round
    per master, in parallel). None when the client's slot map is stale or a node is unreachable (a
    redirection, NOSCRIPT, a failover): the caller then reads through redis-py's cluster pipeline, which
    follows redirections and refreshes the map (every command here is a read: nothing is done twice that
    matters)."""
    import redis
    from redis.crc import key_slot

    from featurestore.stores.online_redis import views_key

    cluster = store.client
    if store._read is None:
        store._read = store._guard(cluster.script_load, READ_LUA)
    commands = [(views_key(store.project).encode(), _markers_command(store, views))]
    commands += _call_commands(store._read, reads, groups)
    for sentinel in sentinels:
        key = sentinel.encode()
        commands.append((key, b"*2\r\n" + _bulk(b"EXISTS") + _bulk(key)))
    try:
        nodes: Dict[str, Tuple[object, List[int]]] = {}
        for i, (key, _) in enumerate(commands):
            node = cluster.nodes_manager.get_node_from_slot(key_slot(key))
            nodes.setdefault(node.name, (node, []))[1].append(i)
    except redis.exceptions.RedisClusterException:
        return None
    out: list = [None] * len(commands)
    taken = []
    try:
        for node, idx in nodes.values():
            pool = node.redis_connection.connection_pool
            try:
                conn = pool.get_connection()
            except TypeError:  # redis-py < 5.3 wants a command name
                conn = pool.get_connection("EVALSHA")
            taken.append((pool, conn))
            conn.send_packed_command([b"".join(commands[i][1] for i in idx)])
        for (node, idx), (_, conn) in zip(nodes.values(), taken):
            for i in idx:
                try:
                    out[i] = conn.read_response()
                except redis.exceptions.ResponseError as exc:
                    out[i] = exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError):
        for _, conn in taken:
            conn.disconnect()  # replies may be pending: never hand such a connection back as is
        return None
    finally:
        for pool, conn in taken:
            pool.release(conn)
    errors = [r for r in out if isinstance(r, redis.exceptions.ResponseError)]
    if errors:
        if isinstance(errors[0], redis.exceptions.NoScriptError):
            store._read = None
        elif not isinstance(errors[0], (redis.exceptions.MovedError, redis.exceptions.AskError,
                                        redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError)):
            raise errors[0]
        return None  # the cluster pipeline repeats the read, following redirections
    return out


def _read_cluster(store, views: Sequence[str], reads: Sequence[Tuple[str, list]], groups: Sequence[List[int]],
                  sentinels: List[str]):
    """:func:`read` on a Redis Cluster through redis-py's cluster pipeline: it sends each node the commands
    of the slots it holds, all nodes in one round (one round trip per node however many entities), and
    follows MOVED/ASK redirections and failovers itself. (``SCRIPT LOAD`` goes to every master; a replica
    promoted since, or a restarted node, answers NOSCRIPT: loaded again, read repeated.)"""
    from featurestore.stores.online_redis import entity_keys, views_key

    commands = [(views_key(store.project), None, list(views))]
    for idx in groups:
        keys = tuple(k for i in idx for k in entity_keys(reads[i][0]))
        commands.append((reads[idx[0]][0], keys, reads[idx[0]][1]))
    return store._pipelined(READ_LUA, commands + [(key, (), []) for key in sentinels])


__all__ = ["CALL_ENTITIES", "READ_LUA", "SEP", "LOST_REPLY", "calls", "read", "split_reply", "spread"]
