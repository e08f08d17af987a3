"""The online store's read script (one per (view, entity) of a lookup; see docs/online-store.md "Layout").

KEYS: the entity's tiles hash, raw zset, prefix zset. ARGV: the cut ('' = no unbounded window), what an
entity without tiles reads (the earliest finite window start or '', '1' when a window is unbounded,
``q - 1``, '1' when only latest features read the view), the number of tiles, the tile ids, then the raw
ranges (inclusive ms pairs): :meth:`featurestore.online.ReadPlan.script_args`. Replies are decoded by
:func:`featurestore.online.decode_reply`.
"""

from featurestore.kernel.tiles import TOP_LEVEL

# Reply: nil (no state), or {meta, dense flag, prefix member, top tile at the prefix, tiles, raw fragments,
# any event before q} (dense), or {meta, false, prefix member, top tile at the prefix, the raw events read,
# any event before q} (sparse). Raw events come joined by newlines, one string per fragment (JSON members
# never hold a raw newline; one bulk string is far cheaper for a client to parse than hundreds). A tile
# the hash does not hold (it has few events, or none: kernel.entity.TILE_MIN_EVENTS) is replied as a
# newline followed by its raw events, so every requested piece of a window is answered in this one call.
READ_LUA = """
local head = redis.call('HMGET', KEYS[1], '_', 'T')
if not head[1] then return nil end
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
  return {head[1], false, prefix, ptile, table.concat(evs, '\\n'), before and '1' or false}
end
local n = tonumber(ARGV[6])
local tiles = {}
if n > 0 then
  tiles = redis.call('HMGET', KEYS[1], unpack(ARGV, 7, 6 + n))
  for j = 1, n do
    if not tiles[j] then tiles[j] = raw_of(ARGV[6 + j]) end
  end
end
local raws = {}
for i = 7 + n, #ARGV, 2 do
  raws[#raws + 1] = table.concat(redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[i], ARGV[i + 1]), '\\n')
end
-- whether any event before q is stored (a latest feature with none inside its TTL is OUTSIDE_MAX_AGE)
local before = #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[4], 'LIMIT', 0, 1) > 0
return {head[1], '1', prefix, ptile, tiles, raws, before and '1' or false}
""" % TOP_LEVEL

__all__ = ["READ_LUA"]
