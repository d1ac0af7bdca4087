-- CACHE.SET: store a tool result with its TTL and announce it.
-- KEYS[1] cache entry (hash: value, version), KEYS[2] event log, KEYS[3] lock, KEYS[4] fence counter
-- ARGV: value, ttl_ms, workspace, resource, log maxlen, channel, actor,
--       token ('' = none), ifversion ('' = unconditional, 0 = create only)
local refused = fence(KEYS[3], KEYS[4], ARGV[8], ARGV[4], ARGV[7])
if refused then return refused end
local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if ARGV[9] ~= '' then
  local want = tonumber(ARGV[9])
  if want == 0 and cur ~= 0 then
    return redis.error_reply("CONFLICT version is " .. cur .. ", not 0: the entry exists (IFVERSION 0 only creates)")
  end
  if want ~= cur then
    return redis.error_reply("CONFLICT version is " .. cur .. ", not " .. ARGV[9] .. "; re-read and retry")
  end
end
local version = cur + 1
redis.call('HSET', KEYS[1], 'value', ARGV[1], 'version', version)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
emit(ARGV[6], KEYS[2], ARGV[5], {v = 1, type = 'cache.set', ws = ARGV[3], resource = ARGV[4],
  actor = ARGV[7], cmd = 'CACHE.SET', version = version, ts = now_ms()})
return redis.status_reply('OK')
