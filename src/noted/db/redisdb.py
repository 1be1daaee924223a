"""RedisDb: memories, their history and sessions in Redis (redis-py, sync client).

Behaves like :class:`~noted.db.sqlite.SqliteDb` in everything the store protocols promise.
Filters beyond the user, keyword ranking (BM25) and vector similarity run in Python over
the user's memories (see :mod:`noted.db._client_search`); Redis holds the data and makes
each write atomic. Searches keep each user's memories and vectors in this process between
calls while the user's generation stays the same (see "Search cache" below).

Key layout, with ``M`` the memory prefix (``memory_table``) and ``S`` the session prefix
(``session_table``); ids are used as they are (keys are binary-safe)::

    M:m:<memory_id>       hash    user_id, memory, topics (JSON list), input, agent_id,
                                  team_id, session_id, created_at, updated_at (integer
                                  microseconds, UTC), embedding (little-endian float32
                                  bytes), embedding_model; an absent field is None
    M:upd:<user_id>       zset    the user's memory ids, score = updated_at
    M:crt:<user_id>       zset    the user's memory ids, score = created_at
    M:users               zset    users with memories, score = -(their newest updated_at)
    M:e:<n>:<user_id>:<memory_id>
                          list    the memory's history, oldest first, one JSON array per
                                  event. <n> is the user id's length in UTF-8 bytes, so a
                                  key names one (user, memory) pair however the ids are
                                  spelled, and an id reused by another user after a delete
                                  has a history of its own. Deletes keep it.
    M:gen:<n>:<user_id>   string  the user's generation (<n> as above): every script that
                                  changes their memories or embeddings moves it on. Kept
                                  when their memories are gone, so it never repeats.
    S:s:<session_id>      hash    user_id, agent_id, created_at, updated_at, summary (JSON)
    S:r:<session_id>      list    the session's runs in order, each ``run.to_dict()`` as
                                  JSON; its length is the run count
    S:d:<session_id>      list    positions in S:r of the completed runs, so the last
                                  completed runs are read without reading the others
    S:u:<user_id>         zset    the user's sessions, score = -updated_at
    S:all                 zset    every session, score = -updated_at

The memory and session kinds never share a name, so one prefix may serve both, and stores
with other prefixes share a server without seeing each other's keys.

Order: a sorted set orders equal scores by member, bytewise, so score = time and member =
id give the protocol's order (time, then memory_id, both in the query's direction), and an
unfiltered page of one user's memories is read by rank on the server (``ZRANGE ... REV``),
fetching only that page's hashes. Negated scores list users and sessions most recent first
with ties by id ascending, paged on the server too. Scores are doubles: exact for times
within 2**53 microseconds of 1970 (the years 1685 to 2255); the hashes keep every time
exactly, and time filters are applied exactly in Python after a server-side range read.

A user's memories are found through their sorted sets, everyone's through ``M:users``:
nothing here uses KEYS or SCAN.

Atomicity: each write is one Lua script call, so no other client sees it half done or
writes in between, and a refused write (an id of another user's) is refused before the
script writes anything. Redis does not undo a script that fails midway; these read what
they check before they write, so only a key of theirs that something else overwrote with
another type could stop one halfway.

A batch of memories travels as one JSON argument that its script decodes (cjson): redis-py
then encodes one argument instead of a dozen per memory, so 10,000 memories take one round
trip and a fraction of a second. Read scripts answer with one JSON text for the same
reason. Scripts build keys from the prefix they are given, so a Redis Cluster is not
supported (a single server, with or without replicas, is).

Search cache: a search reads the user's generation (one GET) and, when it is the one its
cached copy was read at, ranks that copy without reading a hash; otherwise it reads the
memories (and the vectors it needs) and their generation in one script, so a copy never
claims a newer generation than its data. Writes move the generation on inside their own
script, so writes from other processes count too. A new generation key starts at the
server's time in microseconds, not at 1, so one lost to FLUSHDB, a restart or an eviction
does not come back to a value a process cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from noted._time import from_micros, now_micros, to_micros
from noted.audit import AuditContext, MemoryEvent, new_event_ids, resolve_audit
from noted.db._client_search import Shape, SnapshotCache, UserSnapshot, matches, sort_memories
from noted.db._rows import check_table_name, memory_to_row, row_to_event, rows_to_memories
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory, StoreContext, check_page
from noted.errors import ConflictError, StoreError, UserError
from noted.models._provider import import_sdk
from noted.retrieval.vectors import UserVectors, check_vector, from_blobs, search_target, to_blob
from noted.schema import UserMemory, UserStats
from noted.sessions import RunResult, Session, SessionSummary

if TYPE_CHECKING:
    import redis
    from redis.commands.core import Script

__all__ = ["RedisDb"]

_Arg = str | bytes | int | float  # what a script argument may be

_EMBED_CHUNK: Final = 1000  # embeddings per script call (each is stored on its own)
_SOCKET_TIMEOUT: Final = 30.0  # seconds; a large batch is one script call
_CONNECT_TIMEOUT: Final = 5.0
_CACHE_BYTES: Final = 256 * 2**20  # the search cache's default budget

# -- Lua ------------------------------------------------------------------------------------
# Every script takes its key prefix as ARGV[1]. Lua numbers are doubles printed with 14
# digits, so times travel as strings and are never turned into numbers. An optional text
# passed as an argument is "" for None or "+" followed by the text (which may be empty);
# inside JSON it is null.

_MEMORY_LUA = """
local P = ARGV[1]
local NULL = cjson.null
local FIELDS = {'user_id', 'memory', 'topics', 'input', 'agent_id', 'team_id',
                'session_id', 'created_at', 'updated_at'}
local OPTIONAL = {'input', 'agent_id', 'team_id', 'session_id'}
local function mkey(id) return P .. ':m:' .. id end
local function zkey(kind, user) return P .. ':' .. kind .. ':' .. user end
local function ekey(user, id) return P .. ':e:' .. #user .. ':' .. user .. ':' .. id end
local function gkey(user) return P .. ':gen:' .. #user .. ':' .. user end
-- the user's memories changed: a new generation (see the module's notes for the start)
local function bump(user)
  local key = gkey(user)
  if redis.call('INCR', key) == 1 then
    local now = redis.call('TIME')
    redis.call('SET', key, now[1] .. string.format('%06d', tonumber(now[2])))
  end
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
-- a JSON list (cjson writes an empty table as {})
local function json_list(items)
  if #items == 0 then return '[]' end
  return cjson.encode(items)
end
"""

# Shared by the scripts that write memories: ARGV[2..5] = now, actor, session_id, run_id.
# A memory in their JSON argument is [event_id, memory_id, user_id, memory, topics, input,
# agent_id, team_id, session_id, created_at, updated_at].
_WRITE_LUA = """
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

# ARGV[6] = the memories (JSON). Returns nil, or the first memory_id that belongs to
# another user, stored or earlier in the batch (then nothing is written).
_UPSERT_LUA = """
local batch = cjson.decode(ARGV[6])
-- each id's {owner, memory, topics}: read once, then kept as the batch writes it
local held = {}
for _, m in ipairs(batch) do
  local h = held[m[2]]
  if h == nil then
    h = redis.call('HMGET', mkey(m[2]), 'user_id', 'memory', 'topics')
    held[m[2]] = h
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
    if h[2] ~= text then
      absent[#absent + 1] = 'embedding'; absent[#absent + 1] = 'embedding_model'
    end
    if #absent > 0 then redis.call('HDEL', key, unpack(absent)) end
  end
  redis.call('HSET', unpack(set))
  record(user, id, m[1], h[2] and 'update' or 'add', h[2], h[3], text, m[5])
  h[2], h[3] = text, m[5]
  local s = scores[user]
  if not s then s = {{}, {}}; scores[user] = s end
  s[1][#s[1] + 1] = m[11]; s[1][#s[1] + 1] = id
  s[2][#s[2] + 1] = m[10]; s[2][#s[2] + 1] = id
end
for user, s in pairs(scores) do
  zadd(zkey('upd', user), s[1])
  zadd(zkey('crt', user), s[2])
  refresh(user)
  bump(user)
end
return nil
"""

# ARGV[6] = one memory (JSON); its created_at is ignored. Keeps the stored created_at
# and each optional field given as null. Returns 1, or 0 when the user has no such memory.
_UPDATE_LUA = """
local m = cjson.decode(ARGV[6])
local id, user, text = m[2], m[3], m[4]
local key = mkey(id)
local cur = redis.call('HMGET', key, 'user_id', 'memory', 'topics')
if cur[1] ~= user then return 0 end
if cur[2] ~= text then redis.call('HDEL', key, 'embedding', 'embedding_model') end
redis.call('HSET', unpack((fields(key, m, false))))
redis.call('ZADD', zkey('upd', user), m[11], id)
record(user, id, m[1], 'update', cur[2], cur[3], text, m[5])
refresh(user)
bump(user)
return 1
"""

# ARGV[6] = 'ids' | 'user' | 'all', [7] = user_id, [8] = event ids (JSON), [9] = memory
# ids (JSON, for 'ids'). Returns how many were deleted, or -n when there are n memories
# to delete and fewer event ids (then nothing is written).
_DELETE_LUA = """
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
    touched[user] = true
  end
end
for user in pairs(touched) do
  refresh(user)
  bump(user)
end
return deleted
"""

# ARGV[2] = model, then 4 per item: memory_id, user_id, memory, embedding (bytes, so not
# in JSON). Stores each embedding whose memory still has that user and text; returns how
# many were stored.
_SET_EMBEDDINGS_LUA = """
local stored, touched = 0, {}
for i = 3, #ARGV, 4 do
  local key = mkey(ARGV[i])
  local cur = redis.call('HMGET', key, 'user_id', 'memory')
  if cur[1] == ARGV[i + 1] and cur[2] == ARGV[i + 2] then
    redis.call('HSET', key, 'embedding', ARGV[i + 3], 'embedding_model', ARGV[2])
    stored = stored + 1
    touched[cur[1]] = true
  end
end
for user in pairs(touched) do bump(user) end
return stored
"""

# ARGV[2] = 'user' | 'all', [3] = user_id, [4] = 'upd' | 'crt', [5] = 'rank' | 'score',
# [6], [7] = the range (ranks, or inclusive scores), [8] = 'rev' or ''. The memories as a
# JSON list of rows.
_READ_LUA = """
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

# ARGV[2] = user_id, [3] = 'rows' or '', [4] = model ('' for none), [5] = a byte length.
# What a search caches, read with the generation it belongs to: {generation ('0' when
# none), the user's memories as JSON rows in M:upd's order ('' unless 'rows'), the
# positions (from 0, in that order) of those with an embedding by the model of that
# length as JSON, then those embeddings} (one reply element each: joining them here with
# table.concat costs several times more).
_LOAD_LUA = """
local user, model, size = ARGV[2], ARGV[4], tonumber(ARGV[5])
local out = {redis.call('GET', gkey(user)) or '0', '', '[]'}
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
if ARGV[3] == 'rows' then out[2] = json_list(rows) end
out[3] = json_list(positions)
return out
"""

# ARGV[2] = 'user' | 'all', [3] = user_id, [4] = model, [5] = at most this many per user
# ('' = all), [6] = 'count' or ''. The memories without an embedding by the model, each
# user's oldest first (created_at, then id), as JSON rows; or how many there are.
_TO_EMBED_LUA = """
local model, limit, counting = ARGV[4], tonumber(ARGV[5]), ARGV[6] == 'count'
local out, count = {}, 0
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  local taken = 0
  for _, id in ipairs(redis.call('ZRANGE', zkey('crt', user), 0, -1)) do
    if limit and taken >= limit then break end
    if redis.call('HGET', mkey(id), 'embedding_model') ~= model then
      count = count + 1
      taken = taken + 1
      if not counting then out[#out + 1] = row(id) end
    end
  end
end
if counting then return count end
return json_list(out)
"""

# ARGV[2] = 'user' | 'all', [3] = user_id. How many memories.
_COUNT_LUA = """
local count = 0
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  count = count + redis.call('ZCARD', zkey('upd', user))
end
return count
"""

# ARGV[2] = 'user' | 'all', [3] = user_id. The distinct topic lists, as a JSON list of
# their JSON texts.
_TOPICS_LUA = """
local seen, out = {}, {}
for _, user in ipairs(scope(ARGV[2], ARGV[3])) do
  for _, id in ipairs(redis.call('ZRANGE', zkey('upd', user), 0, -1)) do
    local topics = redis.call('HGET', mkey(id), 'topics')
    if not seen[topics] then
      seen[topics] = true
      out[#out + 1] = topics
    end
  end
end
return json_list(out)
"""

# ARGV[2], [3] = ranks in M:users. Per user, most recently updated first: [user_id,
# memory count, newest updated_at (exact, from its memory)], as JSON.
_STATS_LUA = """
local out = {}
for _, user in ipairs(redis.call('ZRANGE', P .. ':users', ARGV[2], ARGV[3])) do
  local newest = redis.call('ZRANGE', zkey('upd', user), -1, -1)[1]
  out[#out + 1] = {user, redis.call('ZCARD', zkey('upd', user)),
                   redis.call('HGET', mkey(newest), 'updated_at')}
end
return json_list(out)
"""

_SESSION_LUA = """
local P = ARGV[1]
local SESSION_FIELDS = {'user_id', 'agent_id', 'created_at', 'updated_at', 'summary'}
local function key(kind, id) return P .. ':' .. kind .. ':' .. id end
local function opt(s) if s == '' then return nil end return string.sub(s, 2) end
"""

# ARGV[2] = session_id, [3] = user_id, [4] = agent_id (optional), [5] = now, [6] = status,
# [7] = the run as JSON. Returns 1, or 0 when the session belongs to another user.
_APPEND_RUN_LUA = """
local sid, user, now = ARGV[2], ARGV[3], ARGV[5]
local skey = key('s', sid)
local owner = redis.call('HGET', skey, 'user_id')
if not owner then
  redis.call('HSET', skey, 'user_id', user, 'created_at', now)
  local agent = opt(ARGV[4])
  if agent then redis.call('HSET', skey, 'agent_id', agent) end
elseif owner ~= user then
  return 0
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
_GET_RUNS_LUA = """
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
_GET_SESSION_LUA = """
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
_LIST_SESSIONS_LUA = """
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
_DELETE_SESSION_LUA = """
local sid, user = ARGV[2], opt(ARGV[3])
local owner = redis.call('HGET', key('s', sid), 'user_id')
if not owner or (user and owner ~= user) then return 0 end
redis.call('DEL', key('s', sid), key('r', sid), key('d', sid))
redis.call('ZREM', key('u', owner), sid)
redis.call('ZREM', P .. ':all', sid)
return 1
"""

# ARGV[2] = session_id, [3] = user_id, [4] = the summary as JSON. 1 when stored, 0 when
# there is no such session, -1 when it belongs to another user (then nothing is written).
_SET_SUMMARY_LUA = """
local skey = key('s', ARGV[2])
local owner = redis.call('HGET', skey, 'user_id')
if not owner then return 0 end
if owner ~= ARGV[3] then return -1 end
redis.call('HSET', skey, 'summary', ARGV[4])
return 1
"""

_MEMORY_FIELDS: Final = (
    "user_id",
    "memory",
    "topics",
    "input",
    "agent_id",
    "team_id",
    "session_id",
    "created_at",
    "updated_at",
)


# -- conversions ---------------------------------------------------------------------------


def _opt(value: str | None) -> str:
    """An optional text as a script argument: "" for None, else "+" and the text."""
    return "" if value is None else "+" + value


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _owned_by(owner: bytes | str | None, user_id: str) -> bool:
    return owner is not None and _text(owner) == user_id


def _to_json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _entries(memories: Sequence[UserMemory]) -> list[list[Any]]:
    """Stamped memories as the write scripts take them, each with a new event id: the
    columns of :func:`memory_to_row` after it, the times as strings."""
    rows = [memory_to_row(m) for m in memories]
    return [
        [event_id, *row[:8], str(row[8]), str(row[9])]
        for event_id, row in zip(new_event_ids(len(rows)), rows, strict=True)
    ]


def _memories(rows: Sequence[Sequence[Any]]) -> list[UserMemory]:
    """Memories from a read script's JSON rows: id, then _MEMORY_FIELDS (and anything
    after them, ignored here)."""
    return rows_to_memories(
        (r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], int(r[8]), int(r[9])) for r in rows
    )


def _event(memory_id: str, user_id: str, raw: bytes | str) -> MemoryEvent:
    """One history event as a script stored it: [event_id, event, old and new text, old
    and new topics as JSON text, actor, session_id, run_id, time as a string]."""
    event_id, kind, old, new, old_topics, new_topics, *context, at = json.loads(raw)
    change = (kind, old, new, old_topics, new_topics)
    return row_to_event((event_id, memory_id, user_id, *change, *context, int(at)))


def _summary(raw: bytes | str | None) -> SessionSummary | None:
    return None if raw is None else SessionSummary.from_dict(json.loads(raw))


def _session(session_id: str, fields: Sequence[Any], run_count: int) -> Session:
    """A session from its hash fields (user_id, agent_id, created_at, updated_at, summary)."""
    user_id, agent_id, created, updated, summary = fields
    return Session(
        session_id,
        user_id.decode(),
        _text(agent_id),
        from_micros(int(created)),
        from_micros(int(updated)),
        _summary(summary),
        run_count,
    )


def _runs(raw: Sequence[bytes]) -> list[RunResult]:
    return [RunResult.from_dict(json.loads(run)) for run in raw]


def _stop(offset: int, limit: int | None) -> int:
    """The last rank of a page (ZRANGE's inclusive stop; -1 for "to the end")."""
    return -1 if limit is None else offset + limit - 1


def _scope(user_id: str | None) -> tuple[str, str]:
    """A read script's ARGV[2..3]: one user's memories, or everyone's."""
    return ("all", "") if user_id is None else ("user", user_id)


def _foreign_memory(memory_id: str) -> ConflictError:
    return ConflictError(f"memory_id {memory_id!r} belongs to another user; nothing was written")


def _foreign_session(session_id: str) -> ConflictError:
    return ConflictError(f"session {session_id!r} belongs to another user")


def _describe(client: redis.Redis) -> str:
    """Where the client connects, as a URL without user name or password."""
    pool = client.connection_pool
    options = pool.connection_kwargs
    db = options.get("db", 0)
    if options.get("path"):
        return f"unix://{options['path']}?db={db}"
    scheme = "rediss" if "SSL" in pool.connection_class.__name__ else "redis"
    return f"{scheme}://{options.get('host', 'localhost')}:{options.get('port', 6379)}/{db}"


class RedisDb(StoreContext):
    """Memories and sessions in Redis; see the module's notes for the layout.

    ``db_url`` is a redis-py URL: ``redis://[[user]:password@]host:port/db``, ``rediss://``
    for TLS, or ``unix:///path/to/socket?db=0``; its query options (``socket_timeout=60``)
    go to redis-py. Or pass a ready ``client`` made with ``decode_responses=False`` (the
    embeddings are bytes); it stays the caller's to close. ``memory_table`` and
    ``session_table`` prefix this store's keys. Nothing is sent to the server before the
    first call.

    The client this store makes does not retry a failed command: a write whose answer was
    lost may have been applied, and sending it again would apply and record it twice.

    Searches keep the most recently searched users' memories and vectors in ``cache``,
    within about ``cache_bytes`` (10,000 memories with 384-dimension vectors take about
    20 MB); 0 keeps nothing.
    """

    def __init__(
        self,
        db_url: str = "redis://localhost:6379/0",
        *,
        memory_table: str = "noted_memories",
        session_table: str = "noted_sessions",
        client: redis.Redis | None = None,
        cache_bytes: int = _CACHE_BYTES,
    ) -> None:
        module = import_sdk("redis", "redis", "RedisDb")
        if type(cache_bytes) is not int or cache_bytes < 0:
            raise UserError(f"cache_bytes must be a non-negative integer, got {cache_bytes!r}")
        self.cache = SnapshotCache(cache_bytes)
        self.memory_table = check_table_name(memory_table, "memory_table")
        self.session_table = check_table_name(session_table, "session_table")
        self._redis_error: type[Exception] = module.exceptions.RedisError
        if client is None:
            self._client = self._connect(module, db_url)
        elif not isinstance(client, module.Redis):
            raise UserError(f"client must be a redis.Redis, got {type(client).__name__}")
        elif client.get_encoder().decode_responses:
            raise UserError(
                "client must be made with decode_responses=False: RedisDb keeps embeddings as bytes"
            )
        else:
            self._client = client
        self._owns_client = client is None
        self.server = _describe(self._client)
        register = self._client.register_script
        self._upsert = register(_MEMORY_LUA + _WRITE_LUA + _UPSERT_LUA)
        self._update = register(_MEMORY_LUA + _WRITE_LUA + _UPDATE_LUA)
        self._delete = register(_MEMORY_LUA + _WRITE_LUA + _DELETE_LUA)
        self._set_embeddings = register(_MEMORY_LUA + _SET_EMBEDDINGS_LUA)
        self._read = register(_MEMORY_LUA + _READ_LUA)
        self._load = register(_MEMORY_LUA + _LOAD_LUA)
        self._to_embed = register(_MEMORY_LUA + _TO_EMBED_LUA)
        self._count = register(_MEMORY_LUA + _COUNT_LUA)
        self._topics = register(_MEMORY_LUA + _TOPICS_LUA)
        self._stats = register(_MEMORY_LUA + _STATS_LUA)
        self._append_run = register(_SESSION_LUA + _APPEND_RUN_LUA)
        self._get_runs = register(_SESSION_LUA + _GET_RUNS_LUA)
        self._get_session = register(_SESSION_LUA + _GET_SESSION_LUA)
        self._list_sessions = register(_SESSION_LUA + _LIST_SESSIONS_LUA)
        self._delete_session = register(_SESSION_LUA + _DELETE_SESSION_LUA)
        self._set_summary = register(_SESSION_LUA + _SET_SUMMARY_LUA)

    @staticmethod
    def _connect(module: Any, db_url: object) -> redis.Redis:
        """A client for ``db_url`` that does not retry (see the class notes)."""
        if not isinstance(db_url, str) or not db_url.strip():
            raise UserError(
                f"db_url must be a Redis URL such as redis://localhost:6379/0, got {db_url!r}"
            )
        try:
            client: redis.Redis = module.Redis.from_url(
                db_url,
                socket_timeout=_SOCKET_TIMEOUT,
                socket_connect_timeout=_CONNECT_TIMEOUT,
                retry=module.retry.Retry(module.backoff.NoBackoff(), 0),
            )
        except ValueError as exc:  # the message never holds the URL, so no password
            raise UserError(f"db_url must be a redis://, rediss:// or unix:// URL: {exc}") from None
        return client

    def __repr__(self) -> str:
        return (
            f"RedisDb({self.server!r}, memory_table={self.memory_table!r}, "
            f"session_table={self.session_table!r})"
        )

    def close(self) -> None:
        """Close the client this store made (a client passed in is left open)."""
        if self._owns_client:
            self._client.close()

    # -- plumbing -------------------------------------------------------------------------

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Redis failures inside the block as StoreError, naming the server."""
        try:
            yield
        except self._redis_error as exc:
            raise StoreError(f"Redis at {self.server}: {exc}") from exc

    def _call(self, script: Script, *args: _Arg) -> Any:
        """Run a memory script (its prefix first)."""
        with self._mapped_errors():
            return script(args=[self.memory_table, *args])

    def _session_call(self, script: Script, *args: _Arg) -> Any:
        """Run a session script (its prefix first)."""
        with self._mapped_errors():
            return script(args=[self.session_table, *args])

    def _mkey(self, memory_id: str) -> str:
        return f"{self.memory_table}:m:{memory_id}"

    def _ekey(self, user_id: str, memory_id: str) -> str:
        return f"{self.memory_table}:e:{len(user_id.encode())}:{user_id}:{memory_id}"

    def _gkey(self, user_id: str) -> str:
        return f"{self.memory_table}:gen:{len(user_id.encode())}:{user_id}"

    @staticmethod
    def _stamp(audit: AuditContext) -> list[_Arg]:
        """ARGV[2..5] of every script that writes memories."""
        return [now_micros(), audit.actor, _opt(audit.session_id), _opt(audit.run_id)]

    # -- MemoryStore: writes ----------------------------------------------------------------

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        if not memories:
            return
        batch = _to_json(_entries(memories))
        foreign = self._call(self._upsert, *self._stamp(context), batch)
        if foreign is not None:
            raise _foreign_memory(foreign.decode())

    def update_memory(self, memory: UserMemory, *, audit: AuditContext | None = None) -> bool:
        context = resolve_audit(audit)
        entry = _to_json(_entries([memory])[0])
        return bool(self._call(self._update, *self._stamp(context), entry))

    def delete_memories(
        self, memory_ids: Sequence[str], user_id: str, *, audit: AuditContext | None = None
    ) -> int:
        context = resolve_audit(audit)
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        event_ids = _to_json(new_event_ids(len(ids)))
        deleted = self._call(
            self._delete, *self._stamp(context), "ids", user_id, event_ids, _to_json(ids)
        )
        return int(deleted)

    def clear_memories(self, user_id: str, *, audit: AuditContext | None = None) -> int:
        return self._clear("user", user_id, resolve_audit(audit))

    def clear_all_memories(self, *, audit: AuditContext | None = None) -> int:
        return self._clear("all", "", resolve_audit(audit))

    def _clear(self, scope: str, user_id: str, audit: AuditContext) -> int:
        """Delete every memory of one user or of all. The script needs an event id per
        memory and only it knows how many there are: given too few, it writes nothing and
        says how many, and is asked again with that many (more if some arrived since)."""
        needed = 0
        while True:
            event_ids = _to_json(new_event_ids(needed))
            deleted = int(
                self._call(self._delete, *self._stamp(audit), scope, user_id, event_ids, "[]")
            )
            if deleted >= 0:
                return deleted
            needed = -deleted

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        args: list[_Arg] = []
        for m, vector in items:
            args += (m.memory_id or "", m.user_id or "", m.memory, to_blob(check_vector(vector)))
        width = 4 * _EMBED_CHUNK
        return sum(
            int(self._call(self._set_embeddings, model, *args[i : i + width]))
            for i in range(0, len(args), width)
        )

    # -- MemoryStore: reads -----------------------------------------------------------------

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._mapped_errors():
            found = self._client.hmget(self._mkey(memory_id), _MEMORY_FIELDS)
        if not _owned_by(found[0], user_id):
            return None
        return _memories([[memory_id, *map(_text, found)]])[0]

    def _read_rows(
        self, user_id: str | None, kind: str, by: str, lo: _Arg, hi: _Arg, rev: bool = False
    ) -> list[Any]:
        """Rows of one user's (or everyone's) memories from their ``kind`` sorted set, by
        rank or by score."""
        raw = self._call(self._read, *_scope(user_id), kind, by, lo, hi, "rev" if rev else "")
        rows: list[Any] = json.loads(raw)
        return rows

    @staticmethod
    def _time_bounds(query: MemoryQuery) -> tuple[_Arg, _Arg]:
        """The query's updated_at bounds as inclusive scores. Inclusive on both sides they
        select a superset also where scores round (see the module's notes): the exact
        filter is :func:`matches`'s."""
        after, before = query.updated_after, query.updated_before
        return (
            "-inf" if after is None else to_micros(after),
            "+inf" if before is None else to_micros(before),
        )

    def _matching(self, query: MemoryQuery) -> list[UserMemory]:
        """The memories that pass the query's filters, in no particular order."""
        rows = self._read_rows(query.user_id, "upd", "score", *self._time_bounds(query))
        return [m for m in _memories(rows) if matches(query, m)]

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        if query.limit == 0:
            return []
        if query.user_id is None or query.filtered:
            return sort_memories(self._matching(query), query)
        kind = "upd" if query.sort_by == "updated_at" else "crt"
        stop = _stop(query.offset, query.limit)
        rev = query.sort_order == "desc"
        return _memories(self._read_rows(query.user_id, kind, "rank", query.offset, stop, rev))

    def count_memories(self, query: MemoryQuery) -> int:
        if query.filtered:
            return len(self._matching(query))
        return int(self._call(self._count, *_scope(query.user_id)))

    def _snapshot(self, user_id: str, shape: Shape | None = None) -> UserSnapshot:
        """The user's memories, and their vectors of ``shape`` when given, as they are now:
        the cached snapshot while its generation is the user's (one GET), else read again
        with their generation by one script. What the snapshot already holds is not read
        again unless the generation moved on meanwhile."""
        cached = self.cache.get(user_id)
        if cached is not None:
            with self._mapped_errors():
                current = int(self._client.get(self._gkey(user_id)) or 0)
            if cached.generation != current:
                cached = None
            elif shape is None or shape in (cached.vectors or {}):
                return cached
        model, dimensions = shape or ("", 0)

        def load(rows: bool) -> Any:
            return self._call(self._load, user_id, "rows" if rows else "", model, 4 * dimensions)

        reply = load(cached is None)
        if cached is not None and int(reply[0]) != cached.generation:  # a write since the GET
            cached, reply = None, load(True)
        generation = int(reply[0])
        if cached is None:
            cached = UserSnapshot(generation, _memories(json.loads(reply[1])))
        if shape is not None:
            keys = np.array(json.loads(reply[2]), dtype=np.int64)
            found = UserVectors(generation, keys, from_blobs(reply[3:], dimensions))
            cached = cached.with_vectors(shape, found)
        self.cache.put(user_id, cached)
        return cached

    def keyword_search(self, query: MemoryQuery, text: str) -> list[ScoredMemory]:
        """keyword_rank's ranking over the cached snapshot (see UserSnapshot.keyword)."""
        if query.user_id is None:
            raise UserError("keyword search is for one user: give a user_id")
        if query.limit == 0:
            return []
        return self._snapshot(query.user_id).keyword(query, text)

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str
    ) -> list[ScoredMemory]:
        """semantic_rank's ranking over the cached snapshot, whose memories are in M:upd's
        order: the order equal scores keep."""
        user_id, target = search_target(query.user_id, vector)
        if query.limit == 0:
            return []
        shape = (model, target.size)  # vectors of other sizes are left out
        return self._snapshot(user_id, shape).semantic(query, target, model)

    def memories_to_embed(
        self, user_id: str | None, model: str, limit: int | None = None
    ) -> list[UserMemory]:
        check_page(limit, 0)
        if limit == 0:
            return []
        per_user = "" if limit is None else limit
        raw = self._call(self._to_embed, *_scope(user_id), model, per_user, "")
        pending = _memories(json.loads(raw))
        if user_id is None:  # each user's come oldest first: merge them
            pending.sort(key=lambda m: (m.created_at, m.memory_id))
        return pending[:limit]

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        return int(self._call(self._to_embed, *_scope(user_id), model, "", "count"))

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._mapped_errors():
            raw = self._client.lrange(self._ekey(user_id, memory_id), 0, -1)
        return [_event(memory_id, user_id, event) for event in raw]

    def get_topics(self, user_id: str | None) -> list[str]:
        lists = json.loads(self._call(self._topics, *_scope(user_id)))
        return sorted({topic for text in lists for topic in json.loads(text)})

    def get_user_stats(self, limit: int | None = None, offset: int = 0) -> list[UserStats]:
        check_page(limit, offset)
        if limit == 0:
            return []
        found = json.loads(self._call(self._stats, offset, _stop(offset, limit)))
        return [
            UserStats(user_id, count, from_micros(int(newest))) for user_id, count, newest in found
        ]

    # -- SessionStore -----------------------------------------------------------------------

    def append_run(self, run: RunResult) -> None:
        appended = self._session_call(
            self._append_run,
            run.session_id,
            run.user_id,
            _opt(run.agent_id),
            now_micros(),
            run.status,
            _to_json(run.to_dict()),
        )
        if not appended:
            raise _foreign_session(run.session_id)

    def get_runs(
        self,
        session_id: str,
        user_id: str,
        *,
        last_n: int | None = None,
        completed_only: bool = False,
    ) -> list[RunResult]:
        check_page(last_n, 0)
        status, *runs = self._session_call(
            self._get_runs,
            session_id,
            user_id,
            "" if last_n is None else last_n,
            "completed" if completed_only else "",
        )
        if status == b"conflict":
            raise _foreign_session(session_id)
        return _runs(runs)

    def get_session(self, session_id: str, user_id: str | None) -> Session | None:
        found = self._session_call(self._get_session, session_id, _opt(user_id))
        if not found:
            return None
        session = _session(session_id, found[:5], len(found) - 5)
        session.runs = _runs(found[5:])
        return session

    def list_sessions(
        self, user_id: str | None, *, limit: int | None = None, offset: int = 0
    ) -> list[Session]:
        check_page(limit, offset)
        if limit == 0:
            return []
        stop = _stop(offset, limit)
        found = self._session_call(self._list_sessions, _opt(user_id), offset, stop)
        return [_session(row[0].decode(), row[1:6], int(row[6])) for row in found]

    def delete_session(self, session_id: str, user_id: str | None) -> bool:
        return bool(self._session_call(self._delete_session, session_id, _opt(user_id)))

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        with self._mapped_errors():
            owner, summary = self._client.hmget(
                f"{self.session_table}:s:{session_id}", ("user_id", "summary")
            )
        return _summary(summary) if _owned_by(owner, user_id) else None

    def set_session_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        stored = int(
            self._session_call(self._set_summary, session_id, user_id, _to_json(summary.to_dict()))
        )
        if stored < 0:
            raise _foreign_session(session_id)
        return stored == 1
