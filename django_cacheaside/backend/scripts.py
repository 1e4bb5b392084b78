"""The Lua scripts. Each touches the keys of one hash tag only (one Redis Cluster slot)."""

from __future__ import annotations

import hashlib

# The entry under KEYS[1], or else its stamp, created (with a TTL of ARGV[2] ms) when missing.
# ARGV[1]: a fresh random stamp; ARGV[3]: '1' to answer the entry, '0' to always answer the stamp.
# With a lock token in ARGV[4], a miss also takes the lease KEYS[2] (for ARGV[5] ms) unless another
# token holds it; the third reply says whether this token holds it now.
READ_OR_BEGIN = """
local d, s = unpack(redis.call('HMGET', KEYS[1], 'd', 's'))
if d and ARGV[3] == '1' then return {1, d, 0} end
if not s then
  s = ARGV[1]
  redis.call('HSET', KEYS[1], 's', s)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
local leased = 0
if ARGV[4] and ARGV[4] ~= '' then
  local holder = redis.call('GET', KEYS[2])
  if not holder then
    redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
    leased = 1
  elseif holder == ARGV[4] then
    leased = 1
  end
end
return {0, s, leased}
"""

# Compare-and-set: write entry ARGV[2] with a TTL of ARGV[3] ms only if the stamp is still ARGV[1].
# With a lock token in ARGV[4], then release the lease KEYS[2] if (and only if) that token holds it.
FILL = """
local written = 0
if redis.call('HGET', KEYS[1], 's') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  written = 1
end
if ARGV[4] and ARGV[4] ~= '' and redis.call('GET', KEYS[2]) == ARGV[4] then
  redis.call('DEL', KEYS[2])
end
return written
"""

# Compare-and-delete: release the lease KEYS[1] only if the token ARGV[1] holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# -- tags: see django_cacheaside.tags for the protocol -----------------------------------------

# Microseconds of the server clock, as a decimal string (exact: below 2^53).
_NOW_US = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# The purge clock KEYS[1], started from the server time when missing (TTL ARGV[1] ms).
CLOCK_READ = (
    """
local e = redis.call('GET', KEYS[1])
if not e then
"""
    + _NOW_US
    + """
  e = string.format('%.0f', now)
  redis.call('SET', KEYS[1], e, 'PX', ARGV[1])
end
return e
"""
)

# Advance the purge clock KEYS[1] past both its last value and the server time; answer the new value.
CLOCK_TICK = (
    _NOW_US
    + """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if last >= now then now = last + 1 end
local e = string.format('%.0f', now)
redis.call('SET', KEYS[1], e, 'PX', ARGV[1])
return e
"""
)

# Join the tag set KEYS[1]: members ARGV[2..] until ARGV[1] ms from now, expired members pruned.
# Answers the tag's last purge (KEYS[2]) or '0', for the fill to compare with its start.
TAG_JOIN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return redis.call('GET', KEYS[2]) or '0'
"""

# Purge the tag set KEYS[1]: record clock value ARGV[1] as its last purge (KEYS[2], TTL ARGV[2] ms),
# then drop the set and answer its live members, for the caller to delete.
TAG_PURGE = """
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) > last then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
else
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local members = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
redis.call('DEL', KEYS[1])
return members
"""

# -- cached queries: see django_cacheaside.queries ----------------------------------------------

# The result under KEYS[2] if it was filled under the current generations (hash KEYS[1]) of the
# fields ARGV[3..]; else those generations, joined by ',', for the fill to match. Missing
# generations are created from the random hex ARGV[1] (the hash then lives ARGV[2] ms).
QUERY_READ = """
local gens = redis.call('HMGET', KEYS[1], unpack(ARGV, 3))
local created = false
for i = 1, #gens do
  if not gens[i] then
    gens[i] = ARGV[1] .. i
    redis.call('HSET', KEYS[1], ARGV[i + 2], gens[i])
    created = true
  end
end
if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
local joined = table.concat(gens, ',')
local g, d = unpack(redis.call('HMGET', KEYS[2], 'g', 'd'))
if d and g == joined then return {1, d} end
return {0, joined}
"""

# Compare-and-set: write result ARGV[2] under KEYS[2] (TTL ARGV[3] ms) only if the generations of
# fields ARGV[5..] are still ARGV[1]; the generations hash then lives ARGV[4] ms more.
QUERY_FILL = """
local gens = redis.call('HMGET', KEYS[1], unpack(ARGV, 5))
for i = 1, #gens do
  if not gens[i] then return 0 end
end
if table.concat(gens, ',') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], 'g', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
return 1
"""

SCRIPTS = {
    "read_or_begin": READ_OR_BEGIN,
    "fill": FILL,
    "release": RELEASE,
    "clock_read": CLOCK_READ,
    "clock_tick": CLOCK_TICK,
    "tag_join": TAG_JOIN,
    "tag_purge": TAG_PURGE,
    "query_read": QUERY_READ,
    "query_fill": QUERY_FILL,
}
SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}
