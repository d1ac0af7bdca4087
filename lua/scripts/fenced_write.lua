-- A plain write to keys guarded by locks (SPEC §6), checked atomically with
-- the write, and the TTL policy applied to the keys it wrote.
-- KEYS[1..nl] lock hashes of the resources that guard the written keys,
-- KEYS[nl+1..2nl] their fence counters, then the command's keys (declared
-- for Redis Cluster).
-- ARGV[1] protocol of the client ('2', '3'), [2] actor, [3] nl, then nl
-- pairs (resource, token or ''), then nt and nt triples (key, default_ms,
-- max_ms; '0' for none), then the command and its arguments.
if ARGV[1] == '3' then redis.setresp(3) end
local nl = tonumber(ARGV[3])
local i = 4
for j = 1, nl do
  local refused = fence(KEYS[j], KEYS[nl + j], ARGV[i + 1], ARGV[i], ARGV[2])
  if refused then return refused end
  i = i + 2
end
local nt = tonumber(ARGV[i])
i = i + 1
local ttl = {}
for j = 1, nt do
  ttl[j] = {ARGV[i], ARGV[i + 1], ARGV[i + 2]}
  i = i + 3
end
local cmd = {}
for j = i, #ARGV do cmd[#cmd + 1] = ARGV[j] end
local reply = redis.pcall(unpack(cmd))
if type(reply) == 'table' and reply.err then return reply end
for _, t in ipairs(ttl) do
  if t[2] ~= '0' then redis.call('PEXPIRE', t[1], t[2], 'NX') end
  if t[3] ~= '0' then redis.call('PEXPIRE', t[1], t[3], 'LT') end
end
return reply
