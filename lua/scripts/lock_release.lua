-- LOCK.RELEASE: drop a lock held with this token. The fence counter stays.
-- KEYS[1] lock hash, KEYS[2] fence counter, KEYS[3] event log
-- ARGV: token, workspace, resource, log maxlen, channel, actor
local token = tonumber(ARGV[1])
local held = redis.call('HGET', KEYS[1], 'token')
if not held then
  return redis.error_reply("FENCED the lock on '" .. ARGV[3] .. "' has expired or was never taken; nothing to release")
end
if tonumber(held) ~= token then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  return redis.error_reply("LOCKED resource '" .. ARGV[3] .. "' is held by '" .. tostring(owner) ..
    "' with another token; only its holder can release it")
end
local refused = not_holder(KEYS[1], ARGV[6], ARGV[3], ARGV[1])
if refused then return refused end
redis.call('DEL', KEYS[1])
local now = now_ms()
emit_lock(ARGV[5], KEYS[3], ARGV[4], {v = 1, type = 'lock.released', ws = ARGV[2], resource = ARGV[3], actor = ARGV[6],
  cmd = 'LOCK.RELEASE', version = token, ts = now})
return 1
