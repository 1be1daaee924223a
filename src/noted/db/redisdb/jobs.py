"""RedisDb's background jobs, each write one Lua script (atomic on the server).

Keys, with ``S`` the session prefix::

    S:j:<job_id>   hash    payload, job_key, agent ('' or '+' and the id), status,
                           attempts, due_at, lease_until, owner, error, plan, seq
    S:jq           zset    pending and running jobs, score = seq (enqueue order)
    S:jf           zset    failed jobs, score = seq
    S:jseq         string  the last seq given

A run and its jobs are appended by one script. A claim walks the queue in order and
takes the first due job whose group (its key, and its agent for a memory job: see
:func:`~noted.db.jobs.order_group`) has no earlier unfinished job; one script at a time
runs on the server, so two workers never take one job. A job whose plan is a batch of this
store's memories is deleted in the batch's own MULTI/EXEC (the job's hash watched from
the owner check to the EXEC), so a worker that dies leaves the batch and the job both
written or neither; a job's session summary is set, and the job deleted, by one script
that checks the owner first, so a worker whose job was taken over never sets a summary
(it would replace a newer one). Other writes are followed by the job's deletion.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from noted._time import now_micros
from noted.db._job_sql import job_from_row
from noted.db.jobs import ANY_AGENT, Job, JobStatus, after_failure, check_status, clip_error
from noted.db.redisdb import session_scripts as lua
from noted.db.redisdb.reads import appended_to, continued
from noted.db.sessions_core import check_run
from noted.sessions import RunResult

__all__ = ["RedisJobs"]

T = TypeVar("T")

_JOB_LUA = """
local FIELDS = {'payload', 'status', 'attempts', 'due_at', 'lease_until', 'owner', 'error',
                'plan'}
local function jkey(id) return P .. ':j:' .. id end
-- whether a job of this status, attempts and due time is still to be run (not waiting for
-- a retry after a failure)
local function unfinished(status, attempts, due, now)
  return status == 'running'
    or (status == 'pending' and (attempts == '0' or tonumber(due) <= now))
end
local function row(id)
  local out = {id}
  for i, v in ipairs(redis.call('HMGET', jkey(id), unpack(FIELDS))) do out[i + 1] = v end
  return out
end
"""

# after APPEND_RUN_LUA's own arguments, [10] = the jobs as a JSON list of
# {id, key, agent, due, payload}. APPEND_RUN_LUA's answer (nothing written unless 1).
_APPEND_WITH_JOBS = (
    "local function append_run()\n"
    + lua.APPEND_RUN_LUA
    + """
end
local appended = append_run()
if appended ~= 1 then return appended end
for _, j in ipairs(cjson.decode(ARGV[10])) do
  local seq = redis.call('INCR', P .. ':jseq')
  redis.call('HSET', jkey(j.id), 'payload', j.payload, 'job_key', j.key, 'agent', j.agent,
             'status', 'pending', 'attempts', 0, 'due_at', j.due, 'seq', seq)
  redis.call('ZADD', P .. ':jq', seq, j.id)
end
return 1
"""
)

# [2] = owner, [3] = now, [4] = lease end, [5] = '1' to claim one agent's jobs only,
# [6] = that agent ('' or '+' and the id), [7] = '' or the keys to claim jobs of (a JSON
# list). The claimed job's row, or nil.
_CLAIM = """
local owner, now, filter, agent = ARGV[2], tonumber(ARGV[3]), ARGV[5], ARGV[6]
local wanted = nil
if ARGV[7] ~= '' then
  wanted = {}
  for _, k in ipairs(cjson.decode(ARGV[7])) do wanted[k] = true end
end
local seen = {}  -- key -> the groups of it met: the agent ('' or '+' and the id), or '*'
for _, id in ipairs(redis.call('ZRANGE', P .. ':jq', 0, -1)) do
  local j = redis.call('HMGET', jkey(id), 'job_key', 'agent', 'status', 'due_at', 'lease_until')
  local group = '*'  -- a summary job's key is its group; a memory job's, key and agent
  if string.sub(j[1], 1, 7) == 'memory:' then group = j[2] end
  seen[j[1]] = seen[j[1]] or {}
  if not seen[j[1]][group] then
    seen[j[1]][group] = true
    local due = (j[3] == 'pending' and tonumber(j[4]) <= now)
      or (j[3] == 'running' and tonumber(j[5]) <= now)
    if due and (filter == '0' or j[2] == agent) and (wanted == nil or wanted[j[1]]) then
      redis.call('HSET', jkey(id), 'status', 'running', 'owner', owner, 'lease_until', ARGV[4])
      redis.call('HINCRBY', jkey(id), 'attempts', 1)
      return row(id)
    end
  end
end
return nil
"""

# [2] = job id, [3] = owner, [4] = plan JSON. 1 when stored (the job is the owner's).
_STORE_PLAN = """
if redis.call('HGET', jkey(ARGV[2]), 'owner') ~= ARGV[3] then return 0 end
redis.call('HSET', jkey(ARGV[2]), 'plan', ARGV[4])
return 1
"""

# [2] = job id, [3] = owner, [4] = the new lease end. 1 when renewed.
_RENEW = """
local k = jkey(ARGV[2])
if redis.call('HGET', k, 'owner') ~= ARGV[3] or redis.call('HGET', k, 'status') ~= 'running'
then return 0 end
redis.call('HSET', k, 'lease_until', ARGV[4])
return 1
"""

# [2] = job id, [3] = owner, [4] = '1' to delete it (else only check that it is theirs).
_FINISH = """
if redis.call('HGET', jkey(ARGV[2]), 'owner') ~= ARGV[3] then return 0 end
if ARGV[4] == '1' then
  redis.call('DEL', jkey(ARGV[2]))
  redis.call('ZREM', P .. ':jq', ARGV[2])
end
return 1
"""

# [2] = job id, [3] = owner, [4] = new status, [5] = error, [6] = due.
_FAIL = """
local k = jkey(ARGV[2])
if redis.call('HGET', k, 'owner') ~= ARGV[3] then return 0 end
redis.call('HSET', k, 'status', ARGV[4], 'error', ARGV[5], 'due_at', ARGV[6], 'owner', '')
redis.call('HDEL', k, 'lease_until')
if ARGV[4] == 'failed' then
  local seq = redis.call('HGET', k, 'seq')
  redis.call('ZREM', P .. ':jq', ARGV[2])
  redis.call('ZADD', P .. ':jf', seq, ARGV[2])
end
return 1
"""

# After SET_SUMMARY_LUA's own arguments, [6] = the job's id, [7] = its owner. -2 (nothing
# written) when the job is no longer the owner's; else SET_SUMMARY_LUA's answer, the job
# deleted with the summary (or without one: no such session) but not on -1.
_SET_SUMMARY_COMPLETING = (
    """
if redis.call('HGET', jkey(ARGV[6]), 'owner') ~= ARGV[7] then return -2 end
local function set_summary()
"""
    + lua.SET_SUMMARY_LUA
    + """
end
local stored = set_summary()
if stored >= 0 then
  redis.call('DEL', jkey(ARGV[6]))
  redis.call('ZREM', P .. ':jq', ARGV[6])
end
return stored
"""
)

# Every job's row, unfinished first then failed, each in enqueue order.
_LIST = """
local out = {}
for _, q in ipairs({':jq', ':jf'}) do
  for _, id in ipairs(redis.call('ZRANGE', P .. q, 0, -1)) do out[#out + 1] = row(id) end
end
return out
"""

# [2] = '1' to count one agent's jobs only, [3] = that agent, [4] = '' or the keys to
# count jobs of (a JSON list), [5] = now.
_UNFINISHED = """
local wanted = nil
if ARGV[4] ~= '' then
  wanted = {}
  for _, k in ipairs(cjson.decode(ARGV[4])) do wanted[k] = true end
end
local now, n = tonumber(ARGV[5]), 0
for _, id in ipairs(redis.call('ZRANGE', P .. ':jq', 0, -1)) do
  local j = redis.call('HMGET', jkey(id), 'agent', 'status', 'attempts', 'job_key', 'due_at')
  if (ARGV[2] == '0' or j[1] == ARGV[3]) and (wanted == nil or wanted[j[4]])
    and unfinished(j[2], j[3], j[5], now) then n = n + 1 end
end
return n
"""

# [2] = now, [3] = the job ids (a JSON list). Those of them that are queued, each followed
# by 1 when it is unfinished, else 0.
_QUEUED_AMONG = """
local now, out = tonumber(ARGV[2]), {}
for _, id in ipairs(cjson.decode(ARGV[3])) do
  local j = redis.call('HMGET', jkey(id), 'status', 'attempts', 'due_at')
  if j[1] and j[1] ~= 'failed' then
    out[#out + 1] = id
    out[#out + 1] = unfinished(j[1], j[2], j[3], now) and 1 or 0
  end
end
return out
"""

# [2] = job id, [3] = now.
_RETRY = """
local k = jkey(ARGV[2])
local status = redis.call('HGET', k, 'status')
if not status or status == 'running' then return 0 end
redis.call('HSET', k, 'status', 'pending', 'attempts', 0, 'due_at', ARGV[3])
local seq = redis.call('HGET', k, 'seq')
redis.call('ZREM', P .. ':jf', ARGV[2])
redis.call('ZADD', P .. ':jq', seq, ARGV[2])
return 1
"""

_DROP = """
redis.call('ZREM', P .. ':jq', ARGV[2])
redis.call('ZREM', P .. ':jf', ARGV[2])
return redis.call('DEL', jkey(ARGV[2]))
"""


def _text(value: Any) -> str | None:
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def _job(row: Sequence[Any]) -> Job:
    job_id, payload, status, attempts, due, lease, owner, error, plan = map(_text, row)
    return job_from_row(
        (
            job_id,
            payload,
            status,
            int(attempts or 0),
            int(due or 0),
            int(lease) if lease else None,
            owner or None,
            error,
            plan,
        )
    )


class NotOwner(Exception):
    """The job of a batch is no longer its worker's: the batch is not sent."""


class Completion:
    """A job deleted in the MULTI/EXEC of the batch that applies its plan (see
    ``RedisDb._send_batch``): its hash is watched and its owner checked before the MULTI,
    and its deletion queued last."""

    def __init__(self, prefix: str, job: Job) -> None:
        self.key = f"{prefix}:j:{job.job_id}"
        self.queue_key = f"{prefix}:jq"
        self.job_id = job.job_id
        self.owner = job.owner or ""
        self.sent = False

    def watch(self, pipe: Any) -> None:
        pipe.watch(self.key)
        if _text(pipe.hget(self.key, "owner")) != self.owner:
            raise NotOwner(self.job_id)

    def queue(self, pipe: Any) -> int:
        """Queue the deletion inside the MULTI; how many replies it adds to the EXEC's."""
        pipe.delete(self.key)
        pipe.zrem(self.queue_key, self.job_id)
        self.sent = True
        return 2


def _agent(agent_id: Any) -> tuple[str, str]:
    if agent_id is ANY_AGENT:
        return "0", ""
    return "1", "" if agent_id is None else "+" + agent_id


def _wanted(keys: Collection[str] | None) -> str:
    """The ordering keys a script limits itself to: '' for all, else a JSON list."""
    return "" if keys is None else json.dumps(sorted(keys), ensure_ascii=False)


class RedisJobs:
    """The :class:`~noted.db.jobs.JobStore` methods of RedisDb."""

    _client: Any
    _session_call: Callable[..., Any]
    session_table: str

    def _job_script(self, name: str, body: str) -> Any:
        scripts: dict[str, Any] = self.__dict__.setdefault("_job_scripts", {})
        if name not in scripts:
            scripts[name] = self._client.register_script(lua.SESSION_LUA + _JOB_LUA + body)
        return scripts[name]

    def append_run_with_jobs(
        self, run: RunResult, jobs: Sequence[Job], *, existing: bool | str = False
    ) -> bool:
        check_run(run, existing)
        entries = [
            {
                "id": j.job_id,
                "key": j.key,
                "agent": "" if j.agent_id is None else "+" + j.agent_id,
                "due": j.due_at or j.created_at,
                "payload": j.payload(),
            }
            for j in jobs
        ]
        appended = self._session_call(
            self._job_script("append", _APPEND_WITH_JOBS),
            run.session_id,
            run.user_id,
            "" if run.agent_id is None else "+" + run.agent_id,
            now_micros(),
            run.status,
            json.dumps(run.to_dict(), ensure_ascii=False, separators=(",", ":")),
            run.run_id,
            continued(existing),
            json.dumps(entries, ensure_ascii=False, separators=(",", ":")) if entries else "[]",
        )
        return appended_to(appended, run)

    def claim_job(
        self,
        owner: str,
        lease: float,
        agent_id: Any = ANY_AGENT,
        keys: Collection[str] | None = None,
    ) -> Job | None:
        if keys is not None and not keys:
            return None
        now = now_micros()
        until = now + int(lease * 1e6)
        row = self._session_call(
            self._job_script("claim", _CLAIM), owner, now, until, *_agent(agent_id), _wanted(keys)
        )
        return None if row is None else _job(row)

    def renew_lease(self, job: Job, lease: float) -> bool:
        until = now_micros() + int(lease * 1e6)
        script = self._job_script("renew", _RENEW)
        renewed = bool(self._session_call(script, job.job_id, job.owner or "", until))
        if renewed:
            job.lease_until = until
        return renewed

    def store_plan(self, job: Job, plan: dict[str, Any]) -> bool:
        text = json.dumps(plan, ensure_ascii=False, separators=(",", ":"))
        stored = self._session_call(
            self._job_script("plan", _STORE_PLAN), job.job_id, job.owner or "", text
        )
        if stored:
            job.plan = plan
        return bool(stored)

    def _completions(self) -> Any:
        """This thread's job to complete with the next batch (``.job``, or None)."""
        local: Any = self.__dict__.setdefault("_job_completions", threading.local())
        return local

    def _completing_job(self) -> Completion | None:
        """The job that the batch being sent on this thread completes, if any."""
        return getattr(self._completions(), "job", None)

    def _summary_completing(
        self, completion: Completion, session_id: str, user_id: str, summary: str, last_run: str
    ) -> int:
        """Set a session's summary and delete the job it completes, in one script, only
        while the job is its worker's (else NotOwner, nothing written): a worker whose
        lease ran out while it wrote must not replace the summary of a later job. The
        answer of SET_SUMMARY_LUA."""
        script = self._job_script("summary", _SET_SUMMARY_COMPLETING)
        stored = int(
            self._session_call(
                script, session_id, user_id, summary, last_run, completion.job_id, completion.owner
            )
        )
        if stored == -2:
            raise NotOwner(completion.job_id)
        completion.sent = stored >= 0
        return stored

    def complete_job(self, job: Job, write: Callable[[], T]) -> tuple[bool, T | None]:
        finish = self._job_script("finish", _FINISH)
        if not self._session_call(finish, job.job_id, job.owner or "", "0"):
            return False, None
        completion = Completion(self.session_table, job)
        local = self._completions()
        local.job = completion
        try:
            value = write()
        except NotOwner:
            return False, None
        finally:
            local.job = None
        if not completion.sent:  # not a batch of this store's: delete the job after it
            self._session_call(finish, job.job_id, job.owner or "", "1")
        return True, value

    def completes_with(self, memories: object) -> bool:
        return memories is self

    def fail_job(self, job: Job, error: str, retry_in: float | None) -> None:
        status, due = after_failure(retry_in)
        self._session_call(
            self._job_script("fail", _FAIL),
            job.job_id,
            job.owner or "",
            status,
            clip_error(error),
            due,
        )

    def list_jobs(self, status: JobStatus | None = None, limit: int | None = 100) -> list[Job]:
        check_status(status)
        jobs = [_job(row) for row in self._session_call(self._job_script("list", _LIST))]
        chosen = [j for j in jobs if status is None or j.status == status]
        return chosen if limit is None else chosen[:limit]

    def unfinished_jobs(
        self, agent_id: Any = ANY_AGENT, keys: Collection[str] | None = None
    ) -> int:
        if keys is not None and not keys:
            return 0
        script = self._job_script("unfinished", _UNFINISHED)
        return int(self._session_call(script, *_agent(agent_id), _wanted(keys), now_micros()))

    def queued_among(self, job_ids: Collection[str]) -> dict[str, bool]:
        if not job_ids:
            return {}
        script = self._job_script("queued_among", _QUEUED_AMONG)
        found = self._session_call(script, now_micros(), _wanted(job_ids))
        return {str(_text(found[i])): bool(found[i + 1]) for i in range(0, len(found), 2)}

    def retry_job(self, job_id: str) -> bool:
        script = self._job_script("retry", _RETRY)
        return bool(self._session_call(script, job_id, now_micros()))

    def drop_job(self, job_id: str) -> bool:
        return bool(self._session_call(self._job_script("drop", _DROP), job_id))
