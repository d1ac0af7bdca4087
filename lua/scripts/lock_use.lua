-- LOCK.USE: may this user attach the token to another of its connections?
-- KEYS[1] lock hash. ARGV: token, actor, resource.
local held = redis.call('HGET', KEYS[1], 'token')
if not held or tonumber(held) ~= tonumber(ARGV[1]) then
  return redis.error_reply("FENCED token " .. ARGV[1] .. " does not hold resource '" .. ARGV[3] ..
    "' now; LOCK.ACQUIRE it first")
end
local refused = not_holder(KEYS[1], ARGV[2], ARGV[3], ARGV[1])
if refused then return refused end
return redis.status_reply('OK')
