"""RedisDb's Lua scripts that read memories: by id, a listing's range or the page past a
memory (keyset paging), what a search loads and what changed since, the memories to
embed, counts, topics and users' figures. Each is registered after MEMORY_LUA, whose
helpers (``row``, ``scope``, ``bump``'s change log) they use, with the conventions of
:mod:`noted.db.redisdb.scripts`.
"""

from __future__ import annotations

__all__ = [
    "AFTER_LUA",
    "CHANGES_LUA",
    "COUNT_LUA",
    "LOAD_LUA",
    "OWNED_LUA",
    "READ_LUA",
    "STATS_LUA",
    "STORED_LUA",
    "TOPICS_LUA",
    "TO_EMBED_LUA",
]

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
if now == since then
  -- the same generation, made by another write after the server lost the one of ``mark``
  if token_of(user, now) ~= mark then return {now, 'unknown'} end
  return {now, 'same'}
end
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
