-- FILE.WRITE / APPEND / EDIT / COMMIT: publish a new version of a file.
-- KEYS[1] metadata hash, KEYS[2] path index (zset), KEYS[3] generation
-- counter, KEYS[4] event log, KEYS[5] lock, KEYS[6] fence counter.
-- ARGV: 1 path, 2 workspace, 3 resource, 4 log maxlen, 5 channel, 6 actor,
--       7 token ('' = none), 8 ifversion ('' = unconditional, 0 = create only),
--       9 event type, 10 command, 11 gen ('' = take a new one: the content
--       follows inline; else the chunks are staged under that gen with a TTL),
--       12 size, 13 sha1, 14 lines, 15 encoding, 16 chunks, 17 chunk_size,
--       18 newlines per chunk, 19 'keep' to keep staged chunks when the
--       lock refuses the commit (an upload may commit again later),
--       20... the chunks (inline only).
-- Chunk keys are KEYS[1] .. ':v' .. gen .. ':chunk:' .. n: they share the
-- metadata key's hash tag. Returns the new version. A refused commit of
-- staged chunks deletes them.
local meta, path = KEYS[1], ARGV[1]
local staged = ARGV[11] ~= ''
local nchunks = tonumber(ARGV[16])
local function refuse(err)
  if staged then
    for n = 0, nchunks - 1 do
      redis.call('DEL', meta .. ':v' .. ARGV[11] .. ':chunk:' .. n)
    end
  end
  return err
end
local refused = fence(KEYS[5], KEYS[6], ARGV[7], ARGV[3], ARGV[6])
if refused then
  if ARGV[19] == 'keep' and string.sub(refused['err'], 1, 6) == 'LOCKED' then return refused end
  return refuse(refused)
end
local cur = tonumber(redis.call('HGET', meta, 'version') or '0')
if ARGV[8] ~= '' then
  local want = tonumber(ARGV[8])
  if want == 0 and cur ~= 0 then
    return refuse(redis.error_reply("CONFLICT version is " .. cur .. ", not 0: " .. path .. " exists (IFVERSION 0 only creates)"))
  end
  if want ~= cur then
    return refuse(redis.error_reply("CONFLICT version is " .. cur .. ", not " .. ARGV[8] .. "; re-read " .. path .. " and retry"))
  end
end
if cur == 0 then
  -- A new file: it must not be a directory, nor lie under a file.
  local under = redis.call('ZRANGEBYLEX', KEYS[2], '(' .. path .. '/', '+', 'LIMIT', 0, 1)[1]
  if under and string.sub(under, 1, #path + 1) == path .. '/' then
    return refuse(redis.error_reply("ERR " .. path .. " is a directory; a file cannot have its name"))
  end
  local i = 1
  while true do
    i = string.find(path, '/', i + 1, true)
    if not i then break end
    local dir = string.sub(path, 1, i - 1)
    if redis.call('ZSCORE', KEYS[2], dir) then
      return refuse(redis.error_reply("ERR " .. dir .. " is a file; " .. path .. " cannot be created under it"))
    end
  end
end
local gen = ARGV[11]
if staged then
  -- Every staged chunk must be whole (an expired or evicted one would
  -- otherwise publish a file with a hole).
  local cs, size = tonumber(ARGV[17]), tonumber(ARGV[12])
  for n = 0, nchunks - 1 do
    if redis.call('STRLEN', meta .. ':v' .. gen .. ':chunk:' .. n) ~= math.min(cs, size - n * cs) then
      return refuse(redis.error_reply("ERR the staged content of " .. path .. " is incomplete at chunk " .. n ..
        " (expired or evicted); write or upload it again"))
    end
  end
  for n = 0, nchunks - 1 do
    redis.call('PERSIST', meta .. ':v' .. gen .. ':chunk:' .. n)
  end
else
  gen = tostring(redis.call('INCR', KEYS[3]))
  for n = 0, nchunks - 1 do
    redis.call('SET', meta .. ':v' .. gen .. ':chunk:' .. n, ARGV[20 + n])
  end
end
local old = redis.call('HMGET', meta, 'gen', 'chunks', 'created_at')
local now = now_ms()
local version = cur + 1
redis.call('HSET', meta, 'version', version, 'gen', gen, 'size', ARGV[12], 'sha1', ARGV[13],
  'lines', ARGV[14], 'encoding', ARGV[15], 'chunks', ARGV[16], 'chunk_size', ARGV[17], 'nl', ARGV[18],
  'created_at', old[3] or now, 'modified_at', now)
if old[1] and old[1] ~= gen then
  for n = 0, tonumber(old[2] or '0') - 1 do
    redis.call('DEL', meta .. ':v' .. old[1] .. ':chunk:' .. n)
  end
end
redis.call('ZADD', KEYS[2], 0, path)
emit(ARGV[5], KEYS[4], ARGV[4], {v = 1, type = ARGV[9], ws = ARGV[2], resource = ARGV[3],
  actor = ARGV[6], cmd = ARGV[10], version = version, path = path, size = tonumber(ARGV[12]), ts = now})
return version
