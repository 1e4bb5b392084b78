"""The Lua scripts. Each touches exactly one key (``KEYS[1]``): one object's hash."""

from __future__ import annotations

import hashlib

# The entry under KEYS[1], or else its stamp, created (with a TTL of ARGV[2] ms) when missing.
# ARGV[1]: a fresh random stamp; ARGV[3]: '1' to answer the entry, '0' to always answer the stamp.
READ_OR_BEGIN = """
local d, s = unpack(redis.call('HMGET', KEYS[1], 'd', 's'))
if d and ARGV[3] == '1' then return {1, d} end
if not s then
  s = ARGV[1]
  redis.call('HSET', KEYS[1], 's', s)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {0, s}
"""

# Compare-and-set: write entry ARGV[2] with a TTL of ARGV[3] ms only if the stamp is still ARGV[1].
FILL = """
if redis.call('HGET', KEYS[1], 's') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'd', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

SCRIPTS = {"read_or_begin": READ_OR_BEGIN, "fill": FILL}
SHAS = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in SCRIPTS.items()}
