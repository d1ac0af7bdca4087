-- FILE.READ / GET / GETRANGE / STAT and the streaming readers: one file's
-- metadata and a run of its chunks, read together so they belong to one
-- version. KEYS[1] metadata hash. ARGV: 1 first chunk, 2 last chunk
-- (inclusive; below the first: metadata only), 3 the generation the caller
-- is streaming ('' = any), 4 a byte budget: at most that many bytes of
-- chunks (at least one chunk) per call.
-- Returns nil for no file, "-CHANGED" when the generation moved on, else
-- [version, gen, size, sha1, lines, encoding, chunks, chunk_size, nl,
--  created_at, modified_at, chunk...].
local m = redis.call('HMGET', KEYS[1], 'version', 'gen', 'size', 'sha1', 'lines', 'encoding',
  'chunks', 'chunk_size', 'nl', 'created_at', 'modified_at')
if not m[1] then return false end
if ARGV[3] ~= '' and m[2] ~= ARGV[3] then return redis.error_reply('CHANGED') end
local first = tonumber(ARGV[1])
local last = math.min(tonumber(ARGV[2]), tonumber(m[7]) - 1,
  first + math.max(1, math.floor(tonumber(ARGV[4]) / tonumber(m[8]))) - 1)
for n = first, last do
  m[#m + 1] = redis.call('GET', KEYS[1] .. ':v' .. m[2] .. ':chunk:' .. n) or ''
end
return m
