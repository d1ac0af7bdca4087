-- LOCK.INFO: who holds a resource, with which token, for how long.
-- KEYS[1] lock hash, KEYS[2] fence counter
local fence = tonumber(redis.call('GET', KEYS[2]) or '0')
local token = redis.call('HGET', KEYS[1], 'token')
if not token then
  return {'held', 0, 'fence', fence}
end
return {'held', 1, 'owner', redis.call('HGET', KEYS[1], 'owner'), 'token', tonumber(token),
  'ttl_ms', redis.call('PTTL', KEYS[1]), 'fence', fence}
