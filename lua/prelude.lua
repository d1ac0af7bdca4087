-- Prepended to every domain script by the registry (scripts cannot include
-- one another, and this keeps one copy of the rules).

-- now_ms is the server's clock in milliseconds.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- not_holder refuses a token presented by another user than the one the
-- lock was issued to. A fencing token is a sequence number anyone in the
-- workspace can learn (LOCK.INFO shows it), so on its own it proves
-- nothing; the lock records its holder. Returns nil when actor holds it.
local function not_holder(lockkey, actor, resource, token)
  local holder = redis.call('HGET', lockkey, 'holder')
  if holder and holder ~= '' and actor and actor ~= '' and holder ~= actor then
    return redis.error_reply("LOCKED resource '" .. resource .. "' is held by user '" .. holder ..
      "': token " .. token .. " was issued to it, not to '" .. actor .. "'")
  end
  return nil
end

-- fence checks a write to resource against its lock (SPEC §6). token is the
-- writer's fencing token, or '' when it has none; actor is the writing
-- user. It returns nil when the write may go ahead, else the error reply.
local function fence(lockkey, fencekey, token, resource, actor)
  local held = redis.call('HGET', lockkey, 'token')
  if token == nil or token == '' then
    if held then
      return redis.error_reply("LOCKED resource '" .. resource .. "' is held by '" ..
        tostring(redis.call('HGET', lockkey, 'owner')) .. "' for " .. redis.call('PTTL', lockkey) ..
        " ms more; retry after it ends, or write with FENCE <token> as its holder")
    end
    return nil
  end
  local t = tonumber(token)
  local top = tonumber(redis.call('GET', fencekey) or '0')
  if not t or t < top then
    return redis.error_reply("FENCED token " .. token .. " is stale: the highest token for '" .. resource ..
      "' is " .. top .. "; LOCK.ACQUIRE again and use the new token")
  end
  if not held then
    return redis.error_reply("FENCED the lock on '" .. resource .. "' has expired; token " .. token ..
      " is no longer valid: LOCK.ACQUIRE again")
  end
  if tonumber(held) ~= t then
    return redis.error_reply("FENCED token " .. token .. " was never issued for '" .. resource .. "'")
  end
  return not_holder(lockkey, actor, resource, token)
end

-- emit publishes an event envelope and appends it to the workspace log.
local function emit(channel, log, maxlen, env)
  local s = cjson.encode(env)
  redis.call('PUBLISH', channel, s)
  redis.call('XADD', log, 'MAXLEN', '~', maxlen, '*', 'event', s)
  return s
end

-- emit_lock is emit for lock events, which also go to the workspace's lock
-- channel (<channel>:locks): the proxies' fencing registries follow it
-- without reading every other event.
local function emit_lock(channel, log, maxlen, env)
  redis.call('PUBLISH', channel .. ':locks', emit(channel, log, maxlen, env))
end
