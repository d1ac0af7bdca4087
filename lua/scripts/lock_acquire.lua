-- LOCK.ACQUIRE: take the lock on a resource and mint its fencing token.
-- KEYS[1] lock hash, KEYS[2] fence counter (never expires), KEYS[3] event log
-- ARGV: ttl_ms, owner, workspace, resource, log maxlen, channel,
--       ifversion ('' = unconditional; else the fence counter must equal it),
--       holder (the user taking the lock; only it may write with the token)
local ttl = tonumber(ARGV[1])
if ARGV[7] and ARGV[7] ~= '' then
  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
  if cur ~= tonumber(ARGV[7]) then
    return redis.error_reply("CONFLICT version is " .. cur .. ", not " .. ARGV[7] ..
      ": the lock on '" .. ARGV[4] .. "' was taken since (IFVERSION compares the newest token)")
  end
end
if #redis.call('HKEYS', KEYS[1]) > 0 then
  local owner = redis.call('HGET', KEYS[1], 'owner')
  local left = redis.call('PTTL', KEYS[1])
  return redis.error_reply("LOCKED resource '" .. ARGV[4] .. "' is held by '" .. tostring(owner) ..
    "' for " .. left .. " ms more; retry after it ends (LOCK.ACQUIRE ... WAIT ms waits for it)")
end
local token = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'token', token)
if ARGV[8] and ARGV[8] ~= '' then redis.call('HSET', KEYS[1], 'holder', ARGV[8]) end
redis.call('PEXPIRE', KEYS[1], ttl)
local now = now_ms()
emit_lock(ARGV[6], KEYS[3], ARGV[5], {v = 1, type = 'lock.acquired', ws = ARGV[3], resource = ARGV[4], actor = ARGV[2],
  cmd = 'LOCK.ACQUIRE', version = token, ts = now, expires_at = now + ttl})
return {'token', token, 'expires_at', now + ttl, 'ttl_ms', ttl}
