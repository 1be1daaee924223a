"""RedisDb's Lua scripts for sessions: SESSION_LUA, their common part, and one script per
session operation (a run appended, runs and sessions read, a session deleted, a summary
stored), with the conventions of :mod:`noted.db.redisdb.scripts`.
"""

from __future__ import annotations

__all__ = [
    "APPEND_RUN_LUA",
    "DELETE_SESSION_LUA",
    "GET_RUNS_LUA",
    "LIST_SESSIONS_LUA",
    "SESSION_LUA",
    "SET_SUMMARY_LUA",
]

SESSION_LUA = """
local P = ARGV[1]
local SESSION_FIELDS = {'user_id', 'agent_id', 'created_at', 'updated_at', 'summary'}
local function key(kind, id) return P .. ':' .. kind .. ':' .. id end
local function opt(s) if s == '' then return nil end return string.sub(s, 2) end
"""

# ARGV[2] = session_id, [3] = user_id, [4] = agent_id (optional), [5] = now, [6] = status,
# [7] = the run as JSON, [8] = its run_id, [9] = the session the run continues
# (sessions_core.takes_run): '' none, '*' whichever there is, or '+' and the id of a run
# it must hold. Returns 1, 0 when the session belongs to another user, -1 when a stored
# run has the run's id, or -2 when the run was to continue a session that is gone, or
# that does not hold that run (deleted and begun again): nothing is written then.
APPEND_RUN_LUA = """
local sid, user, now, continues = ARGV[2], ARGV[3], ARGV[5], ARGV[9]
local skey = key('s', sid)
local function holds(id)
  local held = redis.call('HGET', P .. ':runids', id)
  if held then return held == sid end
  -- a run stored before run ids were kept: looked for among the session's runs
  for _, stored in ipairs(redis.call('LRANGE', key('r', sid), 0, -1)) do
    if cjson.decode(stored).run_id == id then return true end
  end
  return false
end
local owner = redis.call('HGET', skey, 'user_id')
if not owner and continues ~= '' then return -2 end
if owner and continues ~= '' and continues ~= '*' and not holds(opt(continues)) then
  return -2
end
if owner and owner ~= user then return 0 end
if redis.call('HSETNX', P .. ':runids', ARGV[8], sid) == 0 then return -1 end
if not owner then
  redis.call('HSET', skey, 'user_id', user, 'created_at', now)
  local agent = opt(ARGV[4])
  if agent then redis.call('HSET', skey, 'agent_id', agent) end
end
local count = redis.call('RPUSH', key('r', sid), ARGV[7])
if ARGV[6] == 'completed' then redis.call('RPUSH', key('d', sid), count - 1) end
redis.call('HSET', skey, 'updated_at', now)
redis.call('ZADD', key('u', user), '-' .. now, sid)
redis.call('ZADD', P .. ':all', '-' .. now, sid)
return 1
"""

# ARGV[2] = session_id, [3] = user_id, [4] = the last n ('' = all), [5] = 'completed' or
# ''. {'ok', runs...}, {'none'} (no such session) or {'conflict'} (another user's).
GET_RUNS_LUA = """
local sid, n = ARGV[2], ARGV[4]
local owner = redis.call('HGET', key('s', sid), 'user_id')
if not owner then return {'none'} end
if owner ~= ARGV[3] then return {'conflict'} end
local out = {'ok'}
if n == '0' then return out end
local first = 0
if n ~= '' then first = -tonumber(n) end
if ARGV[5] == 'completed' then
  for _, i in ipairs(redis.call('LRANGE', key('d', sid), first, -1)) do
    out[#out + 1] = redis.call('LINDEX', key('r', sid), i)
  end
else
  for _, run in ipairs(redis.call('LRANGE', key('r', sid), first, -1)) do
    out[#out + 1] = run
  end
end
return out
"""

# ARGV[2] = user_id (optional: every user's), [3], [4] = ranks. Per session, most
# recently updated first: {session_id, SESSION_FIELDS..., run count}.
LIST_SESSIONS_LUA = """
local user = opt(ARGV[2])
local index = P .. ':all'
if user then index = key('u', user) end
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', index, ARGV[3], ARGV[4])) do
  local found = redis.call('HMGET', key('s', sid), unpack(SESSION_FIELDS))
  table.insert(found, 1, sid)
  found[#found + 1] = redis.call('LLEN', key('r', sid))
  out[#out + 1] = found
end
return out
"""

# ARGV[2] = session_id, [3] = user_id (optional: any user's). 1 when deleted, else 0.
DELETE_SESSION_LUA = """
local sid, user = ARGV[2], opt(ARGV[3])
local owner = redis.call('HGET', key('s', sid), 'user_id')
if not owner or (user and owner ~= user) then return 0 end
for _, run in ipairs(redis.call('LRANGE', key('r', sid), 0, -1)) do
  redis.call('HDEL', P .. ':runids', cjson.decode(run).run_id)
end
redis.call('DEL', key('s', sid), key('r', sid), key('d', sid))
redis.call('ZREM', key('u', owner), sid)
redis.call('ZREM', P .. ':all', sid)
return 1
"""

# ARGV[2] = session_id, [3] = user_id, [4] = the summary as JSON, [5] = the run id of
# its last run ('' for none). 1 when stored, 0 when there is no such session or it holds no
# such run, -1 when it belongs to another user (then nothing is written).
SET_SUMMARY_LUA = """
local skey = key('s', ARGV[2])
local owner = redis.call('HGET', skey, 'user_id')
if not owner then return 0 end
if owner ~= ARGV[3] then return -1 end
if ARGV[5] ~= '' and redis.call('HGET', P .. ':runids', ARGV[5]) ~= ARGV[2] then return 0 end
redis.call('HSET', skey, 'summary', ARGV[4])
return 1
"""
