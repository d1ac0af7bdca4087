-- TODO.REPLACE / ADD / UPDATE / CLAIM / REMOVE: every write to a
-- workspace's todo list, in one script so the checks (lock, fence,
-- version) exist once. Everything is checked before the first write, so a
-- refused command writes nothing and publishes nothing; a successful one
-- bumps the list version and emits exactly one event.
-- KEYS[1] list metadata hash {version, next_id}, KEYS[2] order list,
-- KEYS[3] lock hash of resource 'todos', KEYS[4] its fence counter,
-- KEYS[5] event log, KEYS[6..] item hashes (per op, below)
-- ARGV[1] op, [2] workspace, [3] actor, [4] channel, [5] log maxlen,
-- ARGV[6] IFVERSION ('' = none), [7] fencing token ('' = none),
-- ARGV[8] next_id the proxy expects (add, replace), op arguments from [9].
local op, ifv, token = ARGV[1], ARGV[6], ARGV[7]
local FIELDS = {'id', 'content', 'status', 'owner', 'priority', 'version', 'created_at', 'updated_at'}

local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- guard applies the lock on 'todos' (SPEC §6).
local function guard()
  local held = redis.call('HGET', KEYS[3], 'token')
  if token == '' then
    if held then
      return redis.error_reply("LOCKED resource 'todos' is held by '" ..
        tostring(redis.call('HGET', KEYS[3], 'owner')) .. "' for " .. redis.call('PTTL', KEYS[3]) ..
        " ms more; retry after it ends, or write with FENCE <token> as its holder")
    end
    return nil
  end
  local t = tonumber(token)
  local top = tonumber(redis.call('GET', KEYS[4]) or '0')
  if not t or t < top then
    return redis.error_reply('FENCED token ' .. token .. " is stale: the highest token for 'todos' is " ..
      top .. '; LOCK.ACQUIRE again and use the new token')
  end
  if t > top then
    return redis.error_reply('FENCED token ' .. token .. " was never issued for 'todos' (the highest is " ..
      top .. '); use the token LOCK.ACQUIRE returned')
  end
  if not held then
    return redis.error_reply("FENCED the lock on 'todos' has expired; token " .. token ..
      ' is no longer valid: LOCK.ACQUIRE again')
  end
  if tonumber(held) ~= t then
    return redis.error_reply("LOCKED resource 'todos' is held by '" ..
      tostring(redis.call('HGET', KEYS[3], 'owner')) .. "' with another token for " ..
      redis.call('PTTL', KEYS[3]) .. ' ms more; retry after it ends')
  end
  return not_holder(KEYS[3], ARGV[3], 'todos', token)
end

-- versioned checks IFVERSION against a current version (0: absent).
local function versioned(exists, current)
  if ifv == '' then return nil end
  if (ifv == '0' and exists) or (ifv ~= '0' and tostring(current) ~= ifv) then
    return redis.error_reply('CONFLICT version is ' .. current .. ', not ' .. ifv .. '; re-read and retry')
  end
  return nil
end

local function missing(id)
  return redis.error_reply("ERR no such todo '" .. id .. "'; TODO.LIST shows the ids")
end

local function item(key)
  local h = redis.call('HMGET', key, unpack(FIELDS))
  return {'id', h[1] or '', 'content', h[2] or '', 'status', h[3] or 'pending', 'owner', h[4] or '',
    'priority', h[5] or '', 'version', tonumber(h[6] or '0'), 'created_at', tonumber(h[7] or '0'),
    'updated_at', tonumber(h[8] or '0')}
end

-- commit bumps the list version and announces the write.
local function commit(kind, resource, cmd, now)
  local v = redis.call('HINCRBY', KEYS[1], 'version', 1)
  if not redis.call('HGET', KEYS[1], 'next_id') then redis.call('HSET', KEYS[1], 'next_id', 1) end
  local env = cjson.encode({v = 1, type = kind, ws = ARGV[2], resource = resource, actor = ARGV[3],
    cmd = cmd, version = v, ts = now})
  redis.call('PUBLISH', ARGV[4], env)
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', 'event', env)
  return v
end

local refused = guard()
if refused then return refused end
local listv = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
local nextid = tonumber(redis.call('HGET', KEYS[1], 'next_id') or '1')

if op == 'add' then
  -- KEYS[6] the new item (id next_id); ARGV[9..13] content, status, owner, priority, position ('' = end)
  if tostring(nextid) ~= ARGV[8] then return redis.error_reply('TODORETRY the todo list changed; read it again') end
  refused = versioned(redis.call('EXISTS', KEYS[1]) == 1, listv)
  if refused then return refused end
  local now, id = clock(), tostring(nextid)
  redis.call('HSET', KEYS[6], 'id', id, 'content', ARGV[9], 'status', ARGV[10], 'owner', ARGV[11],
    'priority', ARGV[12], 'version', 1, 'created_at', now, 'updated_at', now)
  local pos = tonumber(ARGV[13])
  local pivot = pos and redis.call('LINDEX', KEYS[2], pos)
  if pivot then
    redis.call('LINSERT', KEYS[2], 'BEFORE', pivot, id)
  else
    redis.call('RPUSH', KEYS[2], id)
  end
  redis.call('HSET', KEYS[1], 'next_id', nextid + 1)
  commit('todo.added', 'todo:' .. id, 'TODO.ADD', now)
  return item(KEYS[6])
end

if op == 'update' or op == 'claim' or op == 'remove' then
  -- KEYS[6] the item; ARGV[9] its id; update: field, value pairs from
  -- ARGV[10]; claim: ARGV[10] the owner
  local id = ARGV[9]
  if redis.call('EXISTS', KEYS[6]) == 0 then return missing(id) end
  local iv = tonumber(redis.call('HGET', KEYS[6], 'version') or '0')
  refused = versioned(true, iv)
  if refused then return refused end
  local now = clock()
  if op == 'remove' then
    redis.call('DEL', KEYS[6])
    redis.call('LREM', KEYS[2], 0, id)
    local v = commit('todo.removed', 'todo:' .. id, 'TODO.REMOVE', now)
    return {'id', id, 'version', v}
  end
  if op == 'claim' then
    local status = redis.call('HGET', KEYS[6], 'status')
    if status ~= 'pending' then
      return redis.error_reply('CONFLICT todo ' .. id .. ' is ' .. tostring(status) .. ', not pending')
    end
    redis.call('HSET', KEYS[6], 'status', 'in_progress', 'owner', ARGV[10], 'version', iv + 1, 'updated_at', now)
    commit('todo.claimed', 'todo:' .. id, 'TODO.CLAIM', now)
    return item(KEYS[6])
  end
  local set = {}
  for i = 10, #ARGV, 2 do
    set[#set + 1] = ARGV[i]
    set[#set + 1] = ARGV[i + 1]
  end
  redis.call('HSET', KEYS[6], 'version', iv + 1, 'updated_at', now, unpack(set))
  commit('todo.updated', 'todo:' .. id, 'TODO.UPDATE', now)
  return item(KEYS[6])
end

if op == 'replace' then
  -- ARGV[9] E, ARGV[10..9+E] the current ids in order (KEYS[6..5+E] their
  -- items); ARGV[10+E] N, then per new item: id ('' = none), content,
  -- status, owner, priority (owner and priority: '' absent, '=' .. value);
  -- KEYS[6+E..5+E+N] the items ids next_id.. would get.
  local e = tonumber(ARGV[9])
  local order = redis.call('LRANGE', KEYS[2], 0, -1)
  if #order ~= e or tostring(nextid) ~= ARGV[8] then return redis.error_reply('TODORETRY the todo list changed; read it again') end
  for i = 1, e do
    if order[i] ~= ARGV[9 + i] then return redis.error_reply('TODORETRY the todo list changed; read it again') end
  end
  refused = versioned(redis.call('EXISTS', KEYS[1]) == 1, listv)
  if refused then return refused end
  local n = tonumber(ARGV[10 + e])
  local old, used, content = {}, {}, {}
  for i = 1, e do
    old[order[i]] = i
    content[i] = redis.call('HGET', KEYS[5 + i], 'content')
  end
  local want, match = {}, {}
  for j = 1, n do
    local b = 10 + e + (j - 1) * 5
    want[j] = {id = ARGV[b + 1], content = ARGV[b + 2], status = ARGV[b + 3], owner = ARGV[b + 4],
      priority = ARGV[b + 5]}
    local i = old[want[j].id]
    if want[j].id ~= '' and i and not used[i] then
      match[j], used[i] = i, true
    end
  end
  for j = 1, n do
    if not match[j] then
      for i = 1, e do
        if not used[i] and content[i] == want[j].content then
          match[j], used[i] = i, true
          break
        end
      end
    end
  end
  local now, ids, fresh = clock(), {}, 0
  for j = 1, n do
    local w = want[j]
    local owner, prio = string.sub(w.owner, 2), string.sub(w.priority, 2)
    if match[j] then
      local key = KEYS[5 + match[j]]
      ids[j] = order[match[j]]
      local h = redis.call('HMGET', key, 'content', 'status', 'owner', 'priority', 'version')
      if w.owner == '' then owner = h[3] or '' end
      if w.priority == '' then prio = h[4] or '' end
      if h[1] ~= w.content or h[2] ~= w.status or (h[3] or '') ~= owner or (h[4] or '') ~= prio then
        redis.call('HSET', key, 'content', w.content, 'status', w.status, 'owner', owner, 'priority', prio,
          'version', tonumber(h[5] or '0') + 1, 'updated_at', now)
      end
    else
      fresh = fresh + 1
      ids[j] = tostring(nextid + fresh - 1)
      redis.call('HSET', KEYS[5 + e + fresh], 'id', ids[j], 'content', w.content, 'status', w.status,
        'owner', owner, 'priority', prio, 'version', 1, 'created_at', now, 'updated_at', now)
    end
  end
  for i = 1, e do
    if not used[i] then redis.call('DEL', KEYS[5 + i]) end
  end
  redis.call('DEL', KEYS[2])
  if n > 0 then redis.call('RPUSH', KEYS[2], unpack(ids)) end
  redis.call('HSET', KEYS[1], 'next_id', nextid + fresh)
  local v = commit('todo.replaced', 'todos', 'TODO.REPLACE', now)
  local items = {}
  for j = 1, n do
    items[j] = item(match[j] and KEYS[5 + match[j]] or KEYS[5 + e + (tonumber(ids[j]) - nextid + 1)])
  end
  return {'version', v, 'items', items}
end

return redis.error_reply("ERR unknown todo operation '" .. tostring(op) .. "'")
