-- CACHE.SET: store a tool result with its TTL and announce it.
-- KEYS[1] cache key, KEYS[2] event log, KEYS[3] lock, KEYS[4] fence counter
-- ARGV: value, ttl_ms, workspace, resource, log maxlen, channel, actor, token ('' = none)
local refused = fence(KEYS[3], KEYS[4], ARGV[8], ARGV[4])
if refused then return refused end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
emit(ARGV[6], KEYS[2], ARGV[5], {v = 1, type = 'cache.set', ws = ARGV[3], resource = ARGV[4],
  actor = ARGV[7], cmd = 'CACHE.SET', version = tonumber(ARGV[8]) or 0, ts = now_ms()})
return redis.status_reply('OK')
