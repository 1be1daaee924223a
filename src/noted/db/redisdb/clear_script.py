"""RedisDb's Lua script for one batch of a clear (see "Clearing" in
:mod:`noted.db.redisdb.store`): registered after MEMORY_LUA and WRITE_LUA, with the
conventions of :mod:`noted.db.redisdb.scripts`.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CLEAR_KEPT_SECONDS",
    "CLEAR_LUA",
]

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
