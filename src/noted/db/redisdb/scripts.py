"""RedisDb's Lua scripts that write memories, and what every script shares. Each write is
one script, so it is atomic: a script reads everything it checks before it writes anything.

Every script takes its key prefix as ARGV[1]. Lua numbers are doubles printed with 14
digits, so times travel as strings and are never turned into numbers. An optional text
passed as an argument is "" for None or "+" followed by the text (which may be empty);
inside JSON it is null. A store registers the common part (MEMORY or SESSION) followed by
one operation: MEMORY_LUA and the memory writes are here (WRITE_LUA the common part of
those), the memory reads in :mod:`noted.db.redisdb.read_scripts`, a clear's batch in
:mod:`noted.db.redisdb.clear_script`, and SESSION_LUA with the sessions' scripts in
:mod:`noted.db.redisdb.session_scripts`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DELETE_LUA",
    "LOG_KEPT",
    "MEMORY_LUA",
    "SET_EMBEDDINGS_LUA",
    "UPDATE_LUA",
    "UPSERT_LUA",
    "WRITE_LUA",
]

# a user's change log (see bump below): the last LOG_KEPT writes, each naming up to LOG_IDS
# ids, kept LOG_SECONDS after the last; a write_batch takes one write for its updates and
# one for each other kind of change, however many memories they name
LOG_KEPT: Final = 64
LOG_IDS: Final = 256
LOG_SECONDS: Final = 3600

MEMORY_LUA = (
    """
local P = ARGV[1]
local NULL = cjson.null
local FIELDS = {'user_id', 'memory', 'topics', 'input', 'agent_id', 'team_id',
                'session_id', 'created_at', 'updated_at'}
local OPTIONAL = {'input', 'agent_id', 'team_id', 'session_id'}
local function mkey(id) return P .. ':m:' .. id end
local function zkey(kind, user) return P .. ':' .. kind .. ':' .. user end
local function ekey(user, id) return P .. ':e:' .. #user .. ':' .. user .. ':' .. id end
local function gkey(user) return P .. ':gen:' .. #user .. ':' .. user end
local function ckey(user) return P .. ':chg:' .. #user .. ':' .. user end
-- ``item`` at the end of ``list`` unless ``seen`` has it (then it has)
local function once(seen, list, item)
  if not seen[item] then
    seen[item] = true
    list[#list + 1] = item
  end
end
-- a JSON list (cjson writes an empty table as {})
local function json_list(items)
  if #items == 0 then return '[]' end
  return cjson.encode(items)
end
-- the user's memories changed: a new generation (see the module's notes for the start),
-- and at the end of the user's change log "<generation> <token> <the ids it changed,
-- JSON>" ("*" for the ids when they are too many to list; the token, the server's time,
-- tells this write from another that took the same generation after the server lost
-- writes); the log keeps the last LOG_KEPT and lasts LOG_SECONDS after the last change
"""
    + f"local LOG_KEPT, LOG_IDS, LOG_SECONDS = {LOG_KEPT}, {LOG_IDS}, {LOG_SECONDS}\n"
    + """local function bump(user, ids)
  local key, log = gkey(user), ckey(user)
  local now = redis.call('TIME')
  if redis.call('INCR', key) == 1 then
    redis.call('SET', key, now[1] .. string.format('%06d', tonumber(now[2])))
    redis.call('DEL', log)
  end
  local listed = '*'
  if #ids <= LOG_IDS then listed = json_list(ids) end
  local token = now[1] .. '.' .. now[2]
  redis.call('RPUSH', log, redis.call('GET', key) .. ' ' .. token .. ' ' .. listed)
  redis.call('LTRIM', log, -LOG_KEPT, -1)
  redis.call('EXPIRE', log, LOG_SECONDS)
end
-- a log entry's generation, token and ids
local function entry_of(entry)
  return string.match(entry, '^(%S+) (%S+) (.*)$')
end
-- the token of the write that made generation ``gen`` of the user ('' when the log's
-- last entry is not that write's)
local function token_of(user, gen)
  local last = redis.call('LINDEX', ckey(user), -1)
  if not last then return '' end
  local made, token = entry_of(last)
  if made == gen then return token end
  return ''
end
local function opt(s) if s == '' then return nil end return string.sub(s, 2) end
local function neg(s)
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end
-- the users a read covers: one, or everyone with memories
local function scope(which, user)
  if which == 'all' then return redis.call('ZRANGE', P .. ':users', 0, -1) end
  return {user}
end
-- a memory as {id, FIELDS...} with null for absent fields
local function row(id)
  local found = redis.call('HMGET', mkey(id), unpack(FIELDS))
  for i = 1, #FIELDS do
    if not found[i] then found[i] = NULL end
  end
  table.insert(found, 1, id)
  return found
end
"""
)

# Shared by the scripts that write memories: ARGV[2..5] = now, actor, session_id, run_id.
# A memory in their JSON argument is [event_id, memory_id, user_id, memory, topics, input,
# agent_id, team_id, session_id, created_at, updated_at, clear]: clear (true or false) is
# the core's decision that the stored embedding goes, made on the stored memory read
# under WATCH before the script is sent.
WRITE_LUA = """
local NOW, ACTOR, SESSION, RUN = ARGV[2], ARGV[3], opt(ARGV[4]), opt(ARGV[5])
local function record(user, id, eid, kind, old_text, old_topics, new_text, new_topics)
  redis.call('RPUSH', ekey(user, id), cjson.encode({eid, kind, old_text or NULL,
    new_text or NULL, old_topics or NULL, new_topics or NULL, ACTOR, SESSION or NULL,
    RUN or NULL, NOW}))
end
-- ZADD of many score, member pairs, a bounded number at a time (unpack's stack limit)
local function zadd(key, pairs)
  for i = 1, #pairs, 2000 do
    redis.call('ZADD', key, unpack(pairs, i, math.min(i + 1999, #pairs)))
  end
end
-- the user's place in M:users follows their newest memory; no memories, no place
local function refresh(user)
  local top = redis.call('ZRANGE', zkey('upd', user), -1, -1, 'WITHSCORES')
  if top[1] then
    redis.call('ZADD', P .. ':users', neg(top[2]), user)
  else
    redis.call('ZREM', P .. ':users', user)
  end
end
-- the HSET arguments of memory m (user_id and created_at too when whole), and the
-- optional fields it leaves out
local function fields(key, m, whole)
  local set = {key, 'memory', m[4], 'topics', m[5], 'updated_at', m[11]}
  if whole then
    set[#set + 1] = 'user_id'; set[#set + 1] = m[3]
    set[#set + 1] = 'created_at'; set[#set + 1] = m[10]
  end
  local absent = {}
  for i, field in ipairs(OPTIONAL) do
    if m[5 + i] ~= NULL then
      set[#set + 1] = field; set[#set + 1] = m[5 + i]
    else
      absent[#absent + 1] = field
    end
  end
  return set, absent
end
"""

# ARGV[6] = the memories (JSON), [7] = 'new' when the core decided on none of their ids
# being stored. Returns nil; 'stored' for 'new' when one is (then nothing is written);
# or the first memory_id that belongs to another user, stored or earlier in the batch
# (then nothing is written).
UPSERT_LUA = """
local batch = cjson.decode(ARGV[6])
-- each id's {owner, memory, topics}: read once, then kept as the batch writes it
local held = {}
for _, m in ipairs(batch) do
  local h = held[m[2]]
  if h == nil then
    h = redis.call('HMGET', mkey(m[2]), 'user_id', 'memory', 'topics')
    held[m[2]] = h
    if h[1] and ARGV[7] == 'new' then return 'stored' end
  end
  if h[1] and h[1] ~= m[3] then return m[2] end
  h[1] = m[3]
end
local scores = {}  -- user -> {updated_at scores, created_at scores} as ZADD arguments
for _, m in ipairs(batch) do
  local id, user, text = m[2], m[3], m[4]
  local key, h = mkey(id), held[id]
  local set, absent = fields(key, m, true)
  if h[2] then
    if m[12] then
      absent[#absent + 1] = 'embedding'; absent[#absent + 1] = 'embedding_model'
    end
    if #absent > 0 then redis.call('HDEL', key, unpack(absent)) end
  end
  redis.call('HSET', unpack(set))
  record(user, id, m[1], h[2] and 'update' or 'add', h[2], h[3], text, m[5])
  h[2], h[3] = text, m[5]
  local s = scores[user]
  if not s then s = {{}, {}, {}}; scores[user] = s end
  s[1][#s[1] + 1] = m[11]; s[1][#s[1] + 1] = id
  s[2][#s[2] + 1] = m[10]; s[2][#s[2] + 1] = id
  s[3][#s[3] + 1] = id
end
for user, s in pairs(scores) do
  zadd(zkey('upd', user), s[1])
  zadd(zkey('crt', user), s[2])
  refresh(user)
  bump(user, s[3])
end
return nil
"""

# ARGV[6] = memories (JSON list): each the whole record the core decided on the stored one
# (core.replaced_fields), written as it is; [7] (optional) = the stored memories those
# decisions were made on, as STORED_LUA read them (JSON list, one per memory). Returns,
# per memory, 1 when written or 0 when its user has no such memory (a clear or delete
# earlier in the same batch); or 'moved' when one is no longer as [7] says (then nothing
# is written: read them again and decide again). Each user's change log takes one write
# for all of theirs, however many.
UPDATE_LUA = """
local batch = cjson.decode(ARGV[6])
if ARGV[7] then
  for k, seen in ipairs(cjson.decode(ARGV[7])) do
    local now = row(batch[k][2])
    for i = 1, #seen do
      if seen[i] ~= now[i] then return 'moved' end
    end
  end
end
local done, touched, seen, order = {}, {}, {}, {}
for k, m in ipairs(batch) do
  local id, user, text = m[2], m[3], m[4]
  local key = mkey(id)
  local cur = redis.call('HMGET', key, 'user_id', 'memory', 'topics')
  done[k] = 0
  if cur[1] == user then
    local set, absent = fields(key, m, true)
    if m[12] then
      absent[#absent + 1] = 'embedding'; absent[#absent + 1] = 'embedding_model'
    end
    if #absent > 0 then redis.call('HDEL', key, unpack(absent)) end
    redis.call('HSET', unpack(set))
    redis.call('ZADD', zkey('upd', user), m[11], id)
    record(user, id, m[1], 'update', cur[2], cur[3], text, m[5])
    done[k] = 1
    if not touched[user] then touched[user] = {}; order[#order + 1] = user end
    local mark = #user .. ':' .. user .. ':' .. id
    if not seen[mark] then
      seen[mark] = true
      local ids = touched[user]
      ids[#ids + 1] = id
    end
  end
end
for _, user in ipairs(order) do
  refresh(user)
  bump(user, touched[user])
end
return done
"""

# ARGV[6] = 'ids' | 'user' | 'all', [7] = user_id, [8] = event ids (JSON), [9] = memory
# ids (JSON, for 'ids'). Returns how many were deleted, or -n when there are n memories
# to delete and fewer event ids (then nothing is written).
DELETE_LUA = """
local mode, event_ids = ARGV[6], cjson.decode(ARGV[8])
local targets = {}
if mode == 'ids' then
  for _, id in ipairs(cjson.decode(ARGV[9])) do targets[#targets + 1] = {ARGV[7], id} end
else
  for _, user in ipairs(scope(mode, ARGV[7])) do
    for _, id in ipairs(redis.call('ZRANGE', zkey('upd', user), 0, -1)) do
      targets[#targets + 1] = {user, id}
    end
  end
end
if #targets > #event_ids then return -#targets end
local deleted, touched = 0, {}
for _, target in ipairs(targets) do
  local user, id = target[1], target[2]
  local key = mkey(id)
  local cur = redis.call('HMGET', key, 'user_id', 'memory', 'topics')
  if cur[1] == user then
    deleted = deleted + 1
    redis.call('DEL', key)
    redis.call('ZREM', zkey('upd', user), id)
    redis.call('ZREM', zkey('crt', user), id)
    record(user, id, event_ids[deleted], 'delete', cur[2], cur[3], nil, nil)
    local ids = touched[user] or {}
    ids[#ids + 1] = id
    touched[user] = ids
  end
end
for user, ids in pairs(touched) do
  refresh(user)
  bump(user, ids)
end
return deleted
"""

# ARGV[2] = model, then 4 per item: memory_id, user_id, memory, embedding (bytes, so not
# in JSON). Stores each embedding whose memory still has that user and text; returns how
# many were stored.
SET_EMBEDDINGS_LUA = """
local stored, touched = 0, {}
for i = 3, #ARGV, 4 do
  local key = mkey(ARGV[i])
  local cur = redis.call('HMGET', key, 'user_id', 'memory')
  if cur[1] == ARGV[i + 1] and cur[2] == ARGV[i + 2] then
    redis.call('HSET', key, 'embedding', ARGV[i + 3], 'embedding_model', ARGV[2])
    stored = stored + 1
    local ids = touched[cur[1]] or {}
    ids[#ids + 1] = ARGV[i]
    touched[cur[1]] = ids
  end
end
for user, ids in pairs(touched) do bump(user, ids) end
return stored
"""
