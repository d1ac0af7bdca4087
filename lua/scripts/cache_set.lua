-- CACHE.SET: store a tool result with its TTL and announce it.
-- KEYS[1] cache key, KEYS[2] event log
-- ARGV: value, ttl_ms, workspace, resource, log maxlen, channel, actor
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local env = cjson.encode({v = 1, type = 'cache.set', ws = ARGV[3], resource = ARGV[4], actor = ARGV[7],
  cmd = 'CACHE.SET', ts = now})
redis.call('PUBLISH', ARGV[6], env)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', 'event', env)
return redis.status_reply('OK')
