-- TODO.LIST, and the snapshot the other TODO commands start from.
-- KEYS[1] list metadata hash, KEYS[2] order list, KEYS[3..] item hashes
-- ARGV[1] 'ids': reply {next_id, version, id...} (the proxy then declares
--   the item keys of the real call);
-- ARGV[1] 'list', ARGV[2..] the ids the proxy expects in order, one per
--   item key: reply {'version', v, 'items', {item...}}, or TODORETRY when
--   the list changed in between (the proxy reads it again).
local order = redis.call('LRANGE', KEYS[2], 0, -1)
if ARGV[1] == 'ids' then
  local out = {redis.call('HGET', KEYS[1], 'next_id') or '1', redis.call('HGET', KEYS[1], 'version') or '0'}
  for i = 1, #order do out[#out + 1] = order[i] end
  return out
end
if #order ~= #ARGV - 1 then return redis.error_reply('TODORETRY the todo list changed; read it again') end
for i = 1, #order do
  if order[i] ~= ARGV[i + 1] then return redis.error_reply('TODORETRY the todo list changed; read it again') end
end
local items = {}
for i = 1, #order do
  local h = redis.call('HMGET', KEYS[i + 2], 'id', 'content', 'status', 'owner', 'priority', 'version',
    'created_at', 'updated_at')
  items[i] = {'id', h[1] or order[i], 'content', h[2] or '', 'status', h[3] or 'pending', 'owner', h[4] or '',
    'priority', h[5] or '', 'version', tonumber(h[6] or '0'), 'created_at', tonumber(h[7] or '0'),
    'updated_at', tonumber(h[8] or '0')}
end
return {'version', tonumber(redis.call('HGET', KEYS[1], 'version') or '0'), 'items', items}
