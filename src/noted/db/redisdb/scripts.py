"""RedisDb's Lua scripts. Each write is one script, so it is atomic: a script reads
everything it checks before it writes anything.

Every script takes its key prefix as ARGV[1]. Lua numbers are doubles printed with 14
digits, so times travel as strings and are never turned into numbers. An optional text
passed as an argument is "" for None or "+" followed by the text (which may be empty);
inside JSON it is null. A store registers the common part (MEMORY or SESSION) followed by
one operation.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AFTER_LUA",
    "APPEND_RUN_LUA",
    "CHANGES_LUA",
    "CLEAR_KEPT_SECONDS",
    "CLEAR_LUA",
    "COUNT_LUA",
    "DELETE_LUA",
    "DELETE_SESSION_LUA",
    "GET_RUNS_LUA",
    "GET_SESSION_LUA",
    "LIST_SESSIONS_LUA",
    "LOAD_LUA",
    "LOG_KEPT",
    "MEMORY_LUA",
    "READ_LUA",
    "SESSION_LUA",
    "SET_EMBEDDINGS_LUA",
    "SET_SUMMARY_LUA",
    "STATS_LUA",
    "STORED_LUA",
    "TOPICS_LUA",
    "TO_EMBED_LUA",
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

# ARGV[2] = memory ids (JSON). What the core's rules need of the stored ones, as a JSON
# list of [memory_id, user_id, memory, topics, input, agent_id, team_id, session_id,
# created_at] (null for an absent field).
STORED_LUA = """
local out = {}
for _, id in ipairs(cjson.decode(ARGV[2])) do
  local found = row(id)
  if found[2] ~= NULL then
    found[#found] = nil  -- updated_at
    out[#out + 1] = found
  end
end
return json_list(out)
"""

# ARGV[2] = user_id, [3] = memory ids (JSON). The user's memories among them, as a JSON
# list of rows (as READ_LUA's).
OWNED_LUA = """
local out = {}
for _, id in ipairs(cjson.decode(ARGV[3])) do
  local found = row(id)
  if found[2] == ARGV[2] then out[#out + 1] = found end
end
return json_list(out)
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

# how long the keys of a clear's own (the users and memory ids still to clear) outlive
# its last batch: a clear stopped part-way leaves them, and a clear never waits this long
# between two batches
CLEAR_KEPT_SECONDS: Final = 3600

# One batch of a clear (RedisDb._delete_all). ARGV[6] = 'user' | 'all', [7] = user_id,
# [8] = the clear's token, [9] = event ids (JSON): the batch deletes at most that many
# memories, and visits at most that many users. The clear's work list, P:clr:<token>
# (a sorted set of the users still to clear), is made by its first batch: the one user, or
# a copy of M:users. A user's memory ids are copied, when their turn comes, to
# P:clr:<token>:<n>:<user_id> (COPY of M:upd:<user_id>); a batch takes the first ids of
# that copy and deletes those still the user's, each with its "delete" event, then takes
# them out of the copy, and the user out of the work list once the copy is empty. So every
# memory the user had when their turn came is deleted once, whatever changed it since;
# one added since stays. Every key a batch changes is as the other scripts leave it when
# it ends (sorted sets, M:users, the generation and change log). Before it writes, the
# batch checks the history list of each memory it deletes: one of another type (written by
# something else) fails the batch with nothing written. Returns {deleted, users still to
# clear}.
CLEAR_LUA = (
    f"local CLEAR_KEPT_SECONDS = {CLEAR_KEPT_SECONDS}\n"
    + """
local mode, token, event_ids = ARGV[6], ARGV[8], cjson.decode(ARGV[9])
local work = P .. ':clr:' .. token
local function copy_of(user) return work .. ':' .. #user .. ':' .. user end
local function zrem(key, ids)
  for i = 1, #ids, 4000 do
    redis.call('ZREM', key, unpack(ids, i, math.min(i + 3999, #ids)))
  end
end
-- a new key of the clear's: it goes CLEAR_KEPT_SECONDS after the last batch that used it
local function made(key)
  if redis.call('EXISTS', key) == 1 then redis.call('EXPIRE', key, CLEAR_KEPT_SECONDS) end
end
-- of the memories ``ids``, those still ``user``'s, as {id, memory, topics}; nil and why
-- when the history list of one is a key of another type
local function owned(user, ids)
  local found = {}
  for _, id in ipairs(ids) do
    local cur = redis.call('HMGET', mkey(id), 'user_id', 'memory', 'topics')
    if cur[1] == user then
      local kind = redis.call('TYPE', ekey(user, id))['ok']
      if kind ~= 'none' and kind ~= 'list' then
        return nil, ekey(user, id) .. ' holds a ' .. kind .. ', not a history list'
      end
      found[#found + 1] = {id, cur[2], cur[3]}
    end
  end
  return found
end
if redis.call('EXISTS', work) == 0 then
  if mode == 'all' then
    redis.call('COPY', P .. ':users', work)
  elseif redis.call('EXISTS', zkey('upd', ARGV[7])) == 1 then
    redis.call('ZADD', work, 0, ARGV[7])
  end
  made(work)
end
-- what the batch deletes, each user's {user, ids taken, those still theirs, last}: read
-- and checked before anything is written
local room, plan = #event_ids, {}
for _, user in ipairs(redis.call('ZRANGE', work, 0, room - 1)) do
  if room <= 0 then break end
  local copy = copy_of(user)
  if redis.call('EXISTS', copy) == 0 then  -- the user's turn comes
    redis.call('COPY', zkey('upd', user), copy)
    made(copy)
  end
  local ids = redis.call('ZRANGE', copy, 0, room - 1)
  local found, problem = owned(user, ids)
  if not found then return redis.error_reply('the clear stopped: ' .. problem) end
  local last = #ids == redis.call('ZCARD', copy)
  plan[#plan + 1] = {user, ids, found, last}
  room = room - math.max(1, #ids)
  if not last then break end
end
local deleted = 0
for _, step in ipairs(plan) do
  local user, ids, found, last = step[1], step[2], step[3], step[4]
  local gone = {}
  for _, m in ipairs(found) do
    deleted = deleted + 1
    redis.call('DEL', mkey(m[1]))
    record(user, m[1], event_ids[deleted], 'delete', m[2], m[3], nil, nil)
    gone[#gone + 1] = m[1]
  end
  if #gone > 0 then
    zrem(zkey('upd', user), gone)
    zrem(zkey('crt', user), gone)
    refresh(user)
    bump(user, gone)
  end
  if last then
    redis.call('DEL', copy_of(user))
    redis.call('ZREM', work, user)
  else
    zrem(copy_of(user), ids)
  end
end
local left = redis.call('ZCARD', work)
if left > 0 then
  redis.call('EXPIRE', work, CLEAR_KEPT_SECONDS)
  made(copy_of(redis.call('ZRANGE', work, 0, 0)[1]))
end
return {deleted, left}
"""
)

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

# ARGV[2] = 'user' | 'all', [3] = user_id, [4] = 'upd' | 'crt', [5] = 'rank' | 'score',
# [6], [7] = the range (ranks, or inclusive scores), [8] = 'rev' or ''. The memories as a
# JSON list of rows.
READ_LUA = """
local kind, by, lo, hi, rev = ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local out = {}
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  local range = {zkey(kind, user), lo, hi}
  if by == 'score' then range[#range + 1] = 'BYSCORE' end
  if rev == 'rev' then range[#range + 1] = 'REV' end
  for _, id in ipairs(redis.call('ZRANGE', unpack(range))) do out[#out + 1] = row(id) end
end
return json_list(out)
"""

# ARGV[2] = user_id, [3] = 'upd' | 'crt', [4] = a time (integer microseconds), [5] = a
# memory id, [6] = how many to skip, [7] = how many to list ('' for all), [8] = 'rev' or ''.
# The user's memories past (time, id) in the sorted set's order (before it, nearest first,
# with 'rev'), as READ_LUA lists them. Where (time, id) stands is found in O(log n): the
# members of lower scores are counted, then those of the same score, in byte order, are
# bisected (Lua's own < on strings follows the server's locale, so bytes are compared here).
AFTER_LUA = """
local key, at, id = zkey(ARGV[3], ARGV[2]), ARGV[4], ARGV[5]
local skip, count, rev = tonumber(ARGV[6]), ARGV[7], ARGV[8] == 'rev'
local function below(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local lo = redis.call('ZCOUNT', key, '-inf', '(' .. at)
local hi = redis.call('ZCOUNT', key, '-inf', at)
local same = hi
while lo < hi do
  local mid = math.floor((lo + hi) / 2)
  if below(redis.call('ZRANGE', key, mid, mid)[1], id) then lo = mid + 1 else hi = mid end
end
-- lo: how many members come before (time, id); the member there may be (time, id) itself
if not rev and lo < same and redis.call('ZRANGE', key, lo, lo)[1] == id then lo = lo + 1 end
local start = skip + (rev and redis.call('ZCARD', key) - lo or lo)
local range = {key, start, count == '' and -1 or start + tonumber(count) - 1}
if rev then range[#range + 1] = 'REV' end
local out = {}
for _, member in ipairs(redis.call('ZRANGE', unpack(range))) do out[#out + 1] = row(member) end
return json_list(out)
"""

# ARGV[2] = user_id, [3] = 'rows' or '', [4] = model ('' for none), [5] = a byte length.
# What a search caches, read with the generation it belongs to: {generation ('0' when
# none), the token of the write that made it (see bump), the user's memories as JSON
# rows in M:upd's order ('' unless 'rows'), the positions (from 0, in that order) of
# those with an embedding by the model of that length as JSON, then those embeddings}
# (one reply element each: joining them here with table.concat costs several times more).
LOAD_LUA = """
local user, model, size = ARGV[2], ARGV[4], tonumber(ARGV[5])
local generation = redis.call('GET', gkey(user)) or '0'
local out = {generation, token_of(user, generation), '', '[]'}
local rows, positions = {}, {}
for i, id in ipairs(redis.call('ZRANGE', zkey('upd', user), 0, -1)) do
  if ARGV[3] == 'rows' then rows[#rows + 1] = row(id) end
  if model ~= '' then
    local held = redis.call('HMGET', mkey(id), 'embedding_model', 'embedding')
    if held[1] == model and #held[2] == size then
      positions[#positions + 1] = i - 1
      out[#out + 1] = held[2]
    end
  end
end
if ARGV[3] == 'rows' then out[3] = json_list(rows) end
out[4] = json_list(positions)
return out
"""

# ARGV[2] = user_id, [3] = a generation of theirs, [4] = the token of the write that
# made it (see bump), [5] = 'rows' or 'models'. What changed since that generation, from
# the user's change log: {generation, 'same'} when nothing; {generation, 'unknown'} when
# the log does not name every change since, from that very write on (a write by a store
# without the log, too many ids, a log trimmed or expired, or writes the server lost and
# others that took their generations); else {generation, 'changed', its token, the ids
# changed (JSON), then for 'rows': those of them that are the user's memories now as JSON
# rows (as LOAD_LUA's), then each one's embedding model and embedding ('' for none); for
# 'models': [id, embedding model or null] of those (JSON)}.
CHANGES_LUA = """
local user, since, mark, mode = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local now = redis.call('GET', gkey(user)) or '0'
if now == since then return {now, 'same'} end
local count = tonumber(now) - tonumber(since)
if mark == '' or count < 1 or count >= LOG_KEPT then return {now, 'unknown'} end
-- the write that made ``since`` (its token must be the one given), then each since
local entries = redis.call('LRANGE', ckey(user), -(count + 1), -1)
if #entries < count + 1 then return {now, 'unknown'} end
local ids, seen, token = {}, {}, ''
for k, entry in ipairs(entries) do
  local made, made_by, listed = entry_of(entry)
  if tonumber(made) ~= tonumber(since) + k - 1 or (k == 1 and made_by ~= mark) then
    return {now, 'unknown'}
  end
  if k > 1 then
    if listed == '*' then return {now, 'unknown'} end
    for _, id in ipairs(cjson.decode(listed)) do once(seen, ids, id) end
  end
  token = made_by
end
local out, found = {now, 'changed', token, json_list(ids), ''}, {}
for _, id in ipairs(ids) do
  local r = row(id)
  if r[2] == user then
    if mode == 'rows' then
      found[#found + 1] = r
      local held = redis.call('HMGET', mkey(id), 'embedding_model', 'embedding')
      out[#out + 1] = held[1] or ''
      out[#out + 1] = held[2] or ''
    else
      found[#found + 1] = {id, redis.call('HGET', mkey(id), 'embedding_model') or NULL}
    end
  end
end
out[5] = json_list(found)
return out
"""

# ARGV[2] = 'user' | 'all', [3] = user_id, [4] = model, [5] = at most this many per user
# ('' = all), [6] = 'count', 'ids' or '', [7] = for 'ids', at most this many ids. The
# memories without an embedding by the model, each user's oldest first (created_at, then
# id), as JSON rows; or how many there are; or, for one user, {how many, the first ids of
# them (JSON), the user's generation and its token (see bump)}.
TO_EMBED_LUA = """
local model, limit, mode = ARGV[4], tonumber(ARGV[5]), ARGV[6]
local out, count = {}, 0
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  local taken = 0
  for _, id in ipairs(redis.call('ZRANGE', zkey('crt', user), 0, -1)) do
    if limit and taken >= limit then break end
    if redis.call('HGET', mkey(id), 'embedding_model') ~= model then
      count = count + 1
      taken = taken + 1
      if mode == '' then
        out[#out + 1] = row(id)
      elseif mode == 'ids' and #out < tonumber(ARGV[7]) then
        out[#out + 1] = id
      end
    end
  end
end
if mode == 'count' then return count end
if mode == 'ids' then
  local generation = redis.call('GET', gkey(ARGV[3])) or '0'
  return {count, json_list(out), generation, token_of(ARGV[3], generation)}
end
return json_list(out)
"""

# ARGV[2] = 'user' | 'all', [3] = user_id. How many memories.
COUNT_LUA = """
local count = 0
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  count = count + redis.call('ZCARD', zkey('upd', user))
end
return count
"""

# ARGV[2] = 'user' | 'all', [3] = user_id. The distinct topic lists, as a JSON list of
# their JSON texts.
TOPICS_LUA = """
local seen, out = {}, {}
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  for _, id in ipairs(redis.call('ZRANGE', zkey('upd', user), 0, -1)) do
    once(seen, out, redis.call('HGET', mkey(id), 'topics'))
  end
end
return json_list(out)
"""

# ARGV[2], [3] = ranks in M:users. Per user, most recently updated first: [user_id,
# memory count, newest updated_at (exact, from its memory)], as JSON.
STATS_LUA = """
local out = {}
for _, user in ipairs(redis.call('ZRANGE', P .. ':users', ARGV[2], ARGV[3])) do
  local newest = redis.call('ZRANGE', zkey('upd', user), -1, -1)[1]
  out[#out + 1] = {user, redis.call('ZCARD', zkey('upd', user)),
                   redis.call('HGET', mkey(newest), 'updated_at')}
end
return json_list(out)
"""

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

# ARGV[2] = session_id, [3] = user_id (optional: any user's). {SESSION_FIELDS...,
# runs...}, or {} when there is no such session (of the user).
GET_SESSION_LUA = """
local sid, user = ARGV[2], opt(ARGV[3])
local found = redis.call('HMGET', key('s', sid), unpack(SESSION_FIELDS))
if not found[1] or (user and found[1] ~= user) then return {} end
for _, run in ipairs(redis.call('LRANGE', key('r', sid), 0, -1)) do
  found[#found + 1] = run
end
return found
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
