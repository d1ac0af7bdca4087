-- FILE.DEL: remove one file (metadata, chunks, index entry) and announce it.
-- KEYS[1] metadata hash, KEYS[2] path index, KEYS[3] event log, KEYS[4]
-- lock, KEYS[5] fence counter. ARGV: 1 path, 2 workspace, 3 resource,
-- 4 log maxlen, 5 channel, 6 actor, 7 token, 8 ifversion.
-- Returns 1, or 0 when there was no such file.
local meta = KEYS[1]
local m = redis.call('HMGET', meta, 'version', 'gen', 'chunks')
local cur = tonumber(m[1] or '0')
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= cur then
  return redis.error_reply("CONFLICT version is " .. cur .. ", not " .. ARGV[8] .. "; re-read " .. ARGV[1] .. " and retry")
end
if cur == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 0
end
local refused = fence(KEYS[4], KEYS[5], ARGV[7], ARGV[3], ARGV[6])
if refused then return refused end
for n = 0, tonumber(m[3] or '0') - 1 do
  redis.call('DEL', meta .. ':v' .. m[2] .. ':chunk:' .. n)
end
redis.call('DEL', meta)
redis.call('ZREM', KEYS[2], ARGV[1])
emit(ARGV[5], KEYS[3], ARGV[4], {v = 1, type = 'file.delete', ws = ARGV[2], resource = ARGV[3],
  actor = ARGV[6], cmd = 'FILE.DEL', version = cur + 1, path = ARGV[1], ts = now_ms()})
return 1
