"""The online store's read script (one per (view, entity) of a lookup; see docs/online-store.md "Layout").

KEYS: the entity's tiles hash, raw zset, prefix zset. ARGV: the cut ('' = no unbounded window), what an
entity without tiles reads (the earliest finite window start or '', '1' when a window is unbounded,
``q - 1``, '1' when only latest features read the view), the number of tiles, the tile ids, then the raw
ranges (inclusive ms pairs): :meth:`featurestore.online.ReadPlan.script_args`. Replies are decoded by
:func:`featurestore.online.decode_reply`.
"""

from featurestore.kernel.tiles import TOP_LEVEL

# Reply: nil (no state), or ONE string, its parts separated by the byte 0x1e (JSON never holds a raw
# control character; one bulk string per entity is far cheaper for a client to parse than a nested reply
# of dozens): meta, dense flag ('1' or ''), prefix member, top tile at the prefix, then (dense) each
# requested tile and each raw fragment, or (sparse) the raw events read, and last whether any event
# before q is stored ('1' or ''). Absent parts are empty. Raw events come joined by newlines (JSON
# members never hold a raw newline). A tile the hash does not hold (it has few events, or none:
# kernel.entity.TILE_MIN_EVENTS) is replied as a newline followed by its raw events, so every requested
# piece of a window is answered in this one call. :func:`split_reply` gives the parts back.
SEP = b"\x1e"
LOST_REPLY = b"lost"  # the entity's events are stored but its meta is gone: its state is lost, never NOT_FOUND
READ_LUA = """
local head = redis.call('HMGET', KEYS[1], '_', 'T')
if not head[1] then
  -- no meta: no state, unless events are stored without it (its hash was evicted or deleted): lost, refused
  if redis.call('EXISTS', KEYS[2], KEYS[3]) > 0 then return 'lost' end
  return nil
end
local function raw_of(field)
  local level, minute = string.match(field, '^(%%d+):(-?%%d+)$')
  local lo = tonumber(minute) * 60000
  local evs = redis.call('ZRANGEBYSCORE', KEYS[2], string.format('%%d', lo),
                         string.format('%%d', lo + 60000 * 2 ^ tonumber(level) - 1))
  return '\\n' .. table.concat(evs, '\\n')
end
local prefix, ptile, p = false, false, {}
if ARGV[1] ~= '' then
  p = redis.call('ZREVRANGEBYSCORE', KEYS[3], ARGV[1], '-inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #p > 0 then
    prefix = p[1]
    if head[2] and tonumber(p[2]) < tonumber(ARGV[1]) then
      local field = '%d:' .. string.format('%%d', tonumber(p[2]) / 60000)
      ptile = redis.call('HGET', KEYS[1], field) or raw_of(field)
    end
  end
end
if not head[2] then
  -- raw events only: those of [lo, q) (ARGV[2]: the earliest finite window start, '' for none; ARGV[3]
  -- '1': a window is unbounded, so from the prefix's boundary, or every event without one; ARGV[4]:
  -- q - 1), or with ARGV[5] '1' (only latest features read) just the events of the latest time there
  local lo = ARGV[2]
  if ARGV[3] == '1' then
    if not prefix then lo = '-inf'
    elseif lo == '' or tonumber(p[2]) < tonumber(lo) then lo = p[2] end
  end
  if lo == '' then lo = '-inf' end
  local evs
  if ARGV[5] == '1' then
    evs = redis.call('ZREVRANGEBYSCORE', KEYS[2], ARGV[4], lo, 'WITHSCORES', 'LIMIT', 0, 1)
    if #evs > 0 then evs = redis.call('ZRANGEBYSCORE', KEYS[2], evs[2], evs[2]) end
  else
    evs = redis.call('ZRANGEBYSCORE', KEYS[2], lo, ARGV[4])
  end
  local before = #evs > 0
  if not before and lo ~= '-inf' then
    before = #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. lo, 'LIMIT', 0, 1) > 0
  end
  return table.concat({head[1], '', prefix or '', ptile or '', table.concat(evs, '\\n'), before and '1' or ''}, '\\30')
end
local n = tonumber(ARGV[6])
local out = {head[1], '1', prefix or '', ptile or ''}
for s = 0, n - 1, 1000 do
  -- in chunks: Lua's unpack takes ~8000 values at most (a window of centuries covers ~9000 top tiles)
  local e = math.min(s + 1000, n)
  local tiles = redis.call('HMGET', KEYS[1], unpack(ARGV, 7 + s, 6 + e))
  for j = 1, e - s do
    out[#out + 1] = tiles[j] or raw_of(ARGV[6 + s + j])
  end
end
for i = 7 + n, #ARGV, 2 do
  out[#out + 1] = table.concat(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[i], ARGV[i + 1]), '\\n')
end
-- whether any event before q is stored (a latest feature with none inside its TTL is OUTSIDE_MAX_AGE)
local before = #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 1) > 0
out[#out + 1] = before and '1' or ''
return table.concat(out, '\\30')
""" % TOP_LEVEL



def split_reply(reply, n_tiles: int):
    """The read script's reply as a list ``[meta, dense, prefix, top tile, raw events, before]`` (sparse)
    or ``[meta, dense, prefix, top tile, [tiles], [raw fragments], before]`` (dense), what
    :func:`featurestore.online.decode_reply` reads (``n_tiles``: how many tiles the read asked for);
    None (no state) stays None."""
    if not reply or not isinstance(reply, bytes):
        return reply
    parts = reply.split(SEP)
    if not parts[1]:
        return parts
    return parts[:4] + [parts[4:4 + n_tiles], parts[4 + n_tiles:-1], parts[-1]]


__all__ = ["READ_LUA", "SEP", "LOST_REPLY", "split_reply"]
