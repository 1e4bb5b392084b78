"""The Lua scripts. Each touches one object's keys only, which share one hash tag (one slot)."""

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

SCRIPTS = {"read_or_begin": READ_OR_BEGIN, "fill": FILL, "release": RELEASE}
SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}
