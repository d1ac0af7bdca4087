-- LOCK.EXTEND: push the expiry of a lock held with this token.
-- KEYS[1] lock hash, KEYS[2] fence counter, KEYS[3] event log
-- ARGV: token, ttl_ms, workspace, resource, log maxlen, channel, actor
local token = tonumber(ARGV[1])
local held = redis.call('HGET', KEYS[1], 'token')
if not held then
  return redis.error_reply("FENCED the lock on '" .. ARGV[4] .. "' has expired; token " .. ARGV[1] ..
    " is no longer valid: LOCK.ACQUIRE again and use the new token")
end
if tonumber(held) ~= token then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  local left = redis.call('PTTL', KEYS[1])
  if token < tonumber(held) then
    return redis.error_reply("FENCED token " .. ARGV[1] .. " is stale: resource '" .. ARGV[4] ..
      "' is now held with token " .. held .. " by '" .. tostring(owner) .. "'")
  end
  return redis.error_reply("LOCKED resource '" .. ARGV[4] .. "' is held by '" .. tostring(owner) ..
    "' for " .. left .. " ms more; retry after it ends")
end
local refused = not_holder(KEYS[1], ARGV[7], ARGV[4], ARGV[1])
if refused then return refused end
local ttl = tonumber(ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
local now = now_ms()
emit_lock(ARGV[6], KEYS[3], ARGV[5], {v = 1, type = 'lock.extended', ws = ARGV[3], resource = ARGV[4], actor = ARGV[7],
  cmd = 'LOCK.EXTEND', version = token, ts = now, expires_at = now + ttl})
return {'token', token, 'expires_at', now + ttl, 'ttl_ms', ttl}
