"""The worker of an agent's background jobs (automatic memory, session summaries).

A run's jobs are written with the run (:mod:`noted.db.jobs`); this worker claims them,
asks the model, stores its plan with the job, then applies the plan and completes the job
together (one transaction on SQLite and PostgreSQL, one MULTI/EXEC on Redis). Memories a
job adds get ids derived from the job. Where completion and writes cannot be one
transaction (MongoDB), a retry of a stored plan skips what the first attempt wrote (see
``JobWorker._resumable``). Either way a retry changes nothing twice, and a job killed
before its plan was stored costs one more model call.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from noted import _portal
from noted.agent.memory import AgentMemory, SessionSummaries, changed
from noted.audit import AuditContext
from noted.db.base import MemoryQuery, MemoryStore, WriteBatch
from noted.db.jobs import (
    ANY_AGENT,
    Job,
    JobStore,
    backoff_seconds,
    derived_id,
    jobs_for_run,
    new_job_id,
)
from noted.errors import NotedError
from noted.memory.door import Applied
from noted.memory.manager import MemoryUpdate, log_dropped
from noted.memory.operations import Operation, Plan
from noted.models.base import ChatModel
from noted.models.types import Message
from noted.schema import UserMemory
from noted.sessions import RunResult, SessionSummary
from noted.tracing import _hooks as tracing

if TYPE_CHECKING:
    from noted.agent.agent import Agent

__all__ = [
    "JobKicker",
    "JobWorker",
    "agent_jobs",
    "job_worker",
    "leave_jobs_to_workers",
    "start_job_loop",
    "worker_name",
]

log = logging.getLogger("noted.jobs")

DEFAULT_LEASE = 60.0
DEFAULT_ATTEMPTS = 5
MINE_KEPT = 1024  # recorded jobs a kicker keeps before it looks which are done


def worker_name() -> str:
    """This worker's name in the jobs it holds: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{new_job_id()[:8]}"


def _plan_to_dict(plan: Plan, shown: dict[int, UserMemory], said: str) -> dict[str, Any]:
    # the memories it changes, as shown: each change is written only while still so
    changes = {op.memory_id for op in plan.operations if op.kind in ("update", "delete")}
    return {
        "said": said,
        "operations": [
            {"kind": op.kind, "memory_id": op.memory_id, "memory": op.memory, "topics": op.topics}
            for op in plan.operations
        ],
        "rejected": plan.rejected,
        "shown": [m.to_dict() for m in shown.values() if m.memory_id in changes],
    }


def _plan_from_dict(data: dict[str, Any]) -> tuple[Plan, dict[int, UserMemory], str]:
    plan = Plan(
        operations=[
            Operation(op["kind"], op["memory_id"], op["memory"], tuple(op["topics"]))
            for op in data["operations"]
        ],
        rejected=list(data["rejected"]),
    )
    shown = {i: _shown_from_dict(m) for i, m in enumerate(data["shown"], start=1)}
    return plan, shown, str(data["said"])


def _shown_from_dict(data: dict[str, Any]) -> UserMemory:
    """A memory of a stored plan as it was shown, ``damaged`` included: ``to_dict`` writes
    it for a memory read with damaged topics, and ``from_dict`` takes no such field."""
    fields = dict(data)
    damaged = fields.pop("damaged", None)
    memory = UserMemory.from_dict(fields)
    memory.damaged = None if damaged is None else str(damaged)
    return memory


@dataclass
class JobWorker:
    """Runs the jobs of ``store`` with an agent's memory and summary settings. The claim
    takes jobs of ``agent_id`` only (every agent's by default)."""

    store: JobStore
    model: ChatModel
    memory: AgentMemory | None = None
    summaries: SessionSummaries | None = None
    agent_id: Any = ANY_AGENT
    lease: float = DEFAULT_LEASE
    max_attempts: int = DEFAULT_ATTEMPTS
    owner: str = field(default_factory=worker_name)
    stopping: threading.Event = field(default_factory=threading.Event)
    """Set when the process stops: no drain claims another job (the one under way
    finishes), whoever started the drain."""

    async def run_job(self, job: Job) -> None:
        """One attempt at ``job`` (claimed by this worker)."""
        if job.attempts > self.max_attempts:
            await asyncio.to_thread(
                self.store.fail_job,
                job,
                f"its worker stopped {job.attempts - 1} times before it finished",
                None,
            )
            return
        holding = asyncio.create_task(self._hold(job))
        try:  # in the trace of the run that asked for it, wherever that ran
            work = self._memory if job.kind == "memory" else self._summary
            await tracing.resume(
                job.traceparent,
                lambda: work(job),
                session_id=job.session_id,
                user_id=job.user_id,
            )
        except Exception as exc:  # any fault of one job: it is tried again
            retry = backoff_seconds(job.attempts) if job.attempts < self.max_attempts else None
            if isinstance(exc, NotedError):
                log.warning(
                    "%s job %s failed (attempt %d): %s", job.kind, job.job_id, job.attempts, exc
                )
            else:
                log.error(
                    "%s job %s failed (attempt %d)",
                    job.kind,
                    job.job_id,
                    job.attempts,
                    exc_info=exc,
                )
            await asyncio.to_thread(self.store.fail_job, job, str(exc) or type(exc).__name__, retry)
        except BaseException:
            # Stopped (a run's timeout, Ctrl-C): the job is given back, due now, rather than
            # held by this worker until its lease runs out.
            with contextlib.suppress(NotedError):
                self.store.fail_job(job, "stopped before it finished", 0.0)
            raise
        finally:
            holding.cancel()

    async def _hold(self, job: Job) -> None:
        """Renew the job's lease every third of it while the job runs (a model call may
        take longer than the lease), so no other worker takes it over meanwhile."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                if not await asyncio.to_thread(self.store.renew_lease, job, self.lease):
                    return  # taken over: its stored plan, if any, is applied once
            except NotedError as exc:
                log.warning("could not renew the lease of job %s: %s", job.job_id, exc)

    async def drain(
        self, stop: threading.Event | None = None, keys: Collection[str] | None = None
    ) -> int:
        """Claim and run jobs (of the ordering ``keys`` only, when given) until none is due
        (or ``stop`` is set); how many were run."""
        done = 0
        while not self.stopping.is_set() and (stop is None or not stop.is_set()):
            job = await asyncio.to_thread(
                self.store.claim_job, self.owner, self.lease, self.agent_id, keys
            )
            if job is None:
                return done
            await self.run_job(job)
            done += 1
        return done

    async def until_done(
        self, poll: float = 0.05, timeout: float | None = None, keys: Collection[str] | None = None
    ) -> int:
        """Run jobs (of the ordering ``keys`` only, when given) until none of this worker's
        agent is running or due anywhere (other workers' included), or ``timeout`` seconds
        have passed; how many this worker ran."""
        deadline = None if timeout is None else time.monotonic() + timeout
        done = 0
        while True:
            done += await self.drain(keys=keys)
            if not await asyncio.to_thread(self.store.unfinished_jobs, self.agent_id, keys):
                return done
            if deadline is not None and time.monotonic() >= deadline:
                return done
            await asyncio.sleep(poll)

    async def serve(self, stop: threading.Event, poll: float = 0.5) -> None:
        """Drain, then look again every ``poll`` seconds, until ``stop`` is set."""
        while not stop.is_set():
            try:
                if await self.drain(stop):
                    continue
            except NotedError as exc:
                log.warning("could not claim a job: %s", exc)
            await asyncio.to_thread(stop.wait, poll)

    # -- the two kinds -------------------------------------------------------------------

    def _run_of(self, job: Job) -> RunResult:
        return RunResult(
            run_id=job.run_id,
            session_id=job.session_id,
            user_id=job.user_id,
            input=job.said,
            agent_id=job.agent_id,
            content=job.answer or None,
            messages=[Message("user", job.said), Message("assistant", job.answer)],
        )

    async def _memory(self, job: Job) -> None:
        turn = [Message("user", job.said)]
        if job.answer:
            turn.append(Message("assistant", job.answer))
        audit = AuditContext(actor="manager", session_id=job.session_id, run_id=job.run_id)
        update = await self._extract(
            job, turn, user_id=job.user_id, audit=audit, agent_id=job.agent_id
        )
        if self.memory is not None and changed(update):  # outside the extraction's span
            await self.memory.arefresh(job.user_id, job.said)

    @tracing.traced("extraction")
    async def _extract(
        self,
        job: Job,
        messages: list[Message],
        *,
        user_id: str,
        audit: AuditContext,
        agent_id: str | None,
    ) -> MemoryUpdate:
        """The memory manager's work on one turn: its plan (asked of the model once, and
        kept with the job), then written through the door."""
        memory = self.memory
        if memory is None:
            raise NotedError("this worker has no memory manager for memory jobs")
        door = memory.memory.door
        update = MemoryUpdate()
        if job.plan is None:
            planned = await memory.manager.aplan(
                messages, user_id=user_id, door=door, model=memory.model or self.model
            )
            update.model_calls = 0 if planned is None else planned[4]
            plan_dict: dict[str, Any] = (
                {"said": job.said, "operations": [], "rejected": [], "shown": []}
                if planned is None
                else _plan_to_dict(planned[0], planned[1], planned[2])
            )
            if not await asyncio.to_thread(self.store.store_plan, job, plan_dict):
                return update  # no longer ours: the worker that took it over applies it
        assert job.plan is not None
        plan, shown, said = _plan_from_dict(job.plan)
        completed = False

        def commit(batch: WriteBatch) -> list[UserMemory]:
            nonlocal completed
            completed = True
            if not self.store.completes_with(door.db):
                # The batch is written, then the job completed: not inside the job's
                # transaction, which on a SQLite file that both stores share would hold the
                # lock the write waits for. A retry after a crash between them changes
                # nothing twice (see _resumable).
                resumable = self._resumable(job, batch, door.db)
                if resumable is None or not self.store.renew_lease(job, self.lease):
                    return []  # no longer ours: the worker that took it over applies it
                written = door.db.write_batch(resumable, audit=audit) if resumable else []
                self.store.complete_job(job, lambda: None)
                return written
            _, done = self.store.complete_job(
                job, lambda: door.db.write_batch(batch, audit=audit) if batch else []
            )
            return done or []

        def apply() -> Applied:
            applied = door.apply(
                plan,
                shown,
                user_id,
                audit,
                said=said,
                agent_id=agent_id,
                new_id=lambda index: derived_id(job.job_id, index),
                commit=commit,
            )
            if not completed:
                self.store.complete_job(job, lambda: None)
            return applied

        applied = await asyncio.to_thread(apply)
        update.rejected = plan.rejected + applied.rejected
        log_dropped(user_id, update.rejected)
        update.operations = applied.operations
        update.memory_ids = [m.memory_id for m in applied.written if m.memory_id is not None]
        return update

    def _resumable(self, job: Job, batch: WriteBatch, db: MemoryStore) -> WriteBatch | None:
        """The batch to write where the job is not completed in the same transaction as
        its writes (a worker may die between them): applied again by a retry, it changes
        nothing twice. A clear becomes the deletion of the memories the user had before
        its first attempt (listed with the plan first, so memories added since are kept);
        a retry skips the adds and updates that the history shows this job's run wrote.
        None when the job is no longer this worker's."""
        plan = job.plan
        assert plan is not None
        user = batch.user_id
        deletes = batch.deletes
        if batch.clear:
            cleared = plan.get("cleared")
            if cleared is None:
                found = db.list_memories(MemoryQuery(user_id=user))
                cleared = [m.memory_id for m in found if m.memory_id is not None]
                if not self.store.store_plan(job, {**plan, "cleared": cleared}):
                    return None
            deletes = tuple(dict.fromkeys([*cleared, *deletes]))
        updates, adds = batch.updates, batch.adds
        if job.attempts > 1:

            def written(m: UserMemory) -> bool:
                history = db.get_memory_history(m.memory_id or "", user)
                return any(e.run_id == job.run_id and e.actor == "manager" for e in history)

            updates = tuple(m for m in updates if not written(m))
            # an added id is derived from the job: stored, or in the history (deleted
            # since), it was this job's
            adds = tuple(
                m
                for m in adds
                if db.get_memory(m.memory_id or "", user) is None
                and not db.get_memory_history(m.memory_id or "", user)
            )
        return replace(batch, clear=False, deletes=deletes, updates=updates, adds=adds)

    async def _summary(self, job: Job) -> None:
        summaries = self.summaries
        if summaries is None:
            raise NotedError("this worker has no session summarizer for summary jobs")
        if job.plan is None:
            summary = await summaries.after(self._run_of(job), self.model)
            if summary is None:  # the session was deleted (and perhaps is another user's)
                await asyncio.to_thread(self.store.complete_job, job, lambda: None)
                return
            if not await asyncio.to_thread(self.store.store_plan, job, summary.to_dict()):
                return
        assert job.plan is not None
        stored = SessionSummary.from_dict(job.plan)
        await asyncio.to_thread(
            self.store.complete_job,
            job,
            lambda: summaries.store(job.session_id, job.user_id, stored),
        )


class JobKicker:
    """Starts the worker's drain on noted's background loop after a run recorded jobs
    (one drain at a time; a kick during a drain makes it look once more), and waits for
    the jobs its runs recorded.

    A drain runs the jobs of this process's latest runs first (their users' and sessions'
    jobs, in order), then any other of the agent's that are due (other processes left
    them), until a run records more: a program's own jobs never wait behind a queue of
    other processes' jobs."""

    def __init__(self, worker: JobWorker, background: bool = True) -> None:
        self.worker = worker
        self.background = background
        self.enabled = True  # False: runs record their jobs, dedicated workers run them
        self._lock = threading.Lock()
        self._running: Any = None
        self._again = False
        self._keys: set[str] = set()  # of the jobs recorded since the drain last took them
        self._recorded = threading.Event()  # set while _keys holds some (or to stop a drain)
        self._hushed = False  # a wait found its jobs done: the drain runs no others
        # The jobs its runs recorded (id: ordering key) not yet seen finished, and how many
        # make a record look which are (so the list stays short in a program that never waits)
        self._mine: dict[str, str] = {}
        self._look_at = MINE_KEPT

    async def record(self, run: RunResult, existing: bool | str = False) -> bool:
        """Store the run with the jobs it needs (one write), then start them; False when
        the run was dropped with its session, jobs and all (``existing``: see
        :meth:`~noted.db.base.SessionStore.append_run`)."""
        worker = self.worker
        jobs = jobs_for_run(
            run,
            memory=worker.memory is not None,
            summary=worker.summaries is not None,
            traceparent=tracing.traceparent(),
        )
        store = worker.store
        if not await asyncio.to_thread(store.append_run_with_jobs, run, jobs, existing=existing):
            return False
        if not jobs:
            return True
        with self._lock:
            self._mine.update((job.job_id, job.key) for job in jobs)
            crowded = len(self._mine) >= self._look_at
        if crowded:
            await asyncio.to_thread(self._outstanding)
        if self.enabled:
            keys = frozenset(job.key for job in jobs)
            if not self.background:
                # before the run returns: its jobs (of its user and session, in order,
                # those of runs beside it that another call or process runs included),
                # within a lease (a worker that died holds its job so)
                await self.worker.until_done(timeout=self.worker.lease, keys=keys)
                return True
            self._prefer(keys)
        return True

    def _outstanding(self) -> set[str]:
        """The ordering keys of the jobs this kicker's runs recorded that are still to run
        (running, or due: given back by a worker that was stopped, or retried, included;
        not one waiting for a retry after a failure). Those no longer queued (done, or
        failed for good) are forgotten."""
        with self._lock:
            mine = dict(self._mine)
        queued = self.worker.store.queued_among(mine) if mine else {}
        with self._lock:
            for job_id in mine.keys() - queued.keys():
                del self._mine[job_id]
            self._look_at = max(MINE_KEPT, 2 * len(self._mine))
        return {mine[job_id] for job_id, unfinished in queued.items() if unfinished}

    def _prefer(self, keys: Collection[str]) -> Any:
        """Have the drain run the jobs of ``keys`` first, starting one unless it runs (a
        running drain takes them after its current job); the drain's future, or None."""
        with self._lock:
            self._keys.update(keys)
            self._recorded.set()
            self._hushed = False
        self._start()
        with self._lock:
            return self._running

    def _hush(self, deadline: float | None) -> None:
        """Once the jobs waited for are done: the drain stops after the job in hand (it
        may be another process's), and is waited for until ``deadline``, so nothing of
        this kicker uses the store after the wait (a program may close it next)."""
        with self._lock:
            running = self._running
            self._hushed = True
            self._recorded.set()
        if running is not None:
            left = None if deadline is None else max(deadline - time.monotonic(), 0)
            concurrent.futures.wait([running], timeout=left)

    def _take_keys(self) -> frozenset[str]:
        """The keys of the jobs recorded since the last call."""
        with self._lock:
            keys = frozenset(self._keys)
            self._keys.clear()
            self._recorded.clear()
        return keys

    def _start(self) -> None:
        """A drain on noted's background loop, unless one runs (then it looks once more)."""
        with self._lock:
            if self._running is not None:
                self._again = True
                return
            # in no trace: each job continues the trace of the run that recorded it
            self._running = tracing.detached(lambda: _portal.background(self._loop()))

    async def _loop(self) -> None:
        while True:
            try:
                keys = self._take_keys()
                if keys:
                    await self.worker.drain(keys=keys)
                with self._lock:
                    hushed = self._hushed
                if not hushed:
                    await self.worker.drain(self._recorded)  # until a run records more
            except NotedError as exc:
                log.warning("background jobs: %s", exc)
            except Exception:  # a fault of the drain itself (a job's own are kept with it)
                # nobody may ever ask for the drain's result: said here, or never
                log.exception("background jobs stopped by an unexpected error")
            except BaseException:
                with self._lock:  # the next kick starts a new drain
                    self._running = None
                raise
            with self._lock:
                if not self._again:
                    self._running = None
                    return
                self._again = False

    def wait(self, timeout: float | None = None, poll: float = 0.05) -> bool:
        """Wait until the jobs this kicker's runs recorded are done: none of them running
        or due (one given back by a worker that was stopped is due again; one waiting for
        a retry after a failure is not waited for). Other jobs in the store (of other
        processes, or of other agents) are not waited for; a drain started here runs
        this kicker's jobs first, taking over those whose worker died; once they are
        done, a drain running other jobs stops after the one in hand."""
        deadline = None if timeout is None else time.monotonic() + timeout
        keys = self._outstanding()
        while keys:
            left = poll if deadline is None else min(poll, deadline - time.monotonic())
            if left <= 0:
                return False
            looked = time.monotonic()
            running = self._prefer(keys) if self.enabled else None
            if running is not None:  # until it ends (its last job may be ours), or a poll
                concurrent.futures.wait([running], timeout=left)
            keys = self._outstanding()
            if keys:
                # what a drain left is held by another worker (a dead one, until its lease
                # ends) or not due yet: look again in a while, not at once (a busy loop)
                time.sleep(max(looked + left - time.monotonic(), 0))
        self._hush(deadline)
        return True


def agent_jobs(
    db: object,
    model: ChatModel,
    memory: AgentMemory | None,
    summaries: SessionSummaries | None,
    agent_id: str | None,
    background: bool,
) -> JobKicker | None:
    """The jobs of an agent whose db keeps them and that has background work to do."""
    if not isinstance(db, JobStore):
        return None
    automatic = memory if memory is not None and memory.mode == "automatic" else None
    updating = summaries if summaries is not None and summaries.update else None
    if automatic is None and updating is None:
        return None
    worker = JobWorker(db, model, automatic, updating, agent_id=agent_id)
    return JobKicker(worker, background)


def job_worker(agent: Agent) -> JobWorker | None:
    """The worker of an agent's jobs (None: its db keeps no jobs, or it has no
    background work)."""
    kicker: JobKicker | None = agent._jobs
    return None if kicker is None else kicker.worker


def start_job_loop(agent: Agent, poll: float = 0.5) -> threading.Event | None:
    """Run the agent's jobs in this process, looking every ``poll`` seconds for those
    other processes left (their lease expired) as well as its own, until the returned
    event is set (at exit at the latest). Once it is set, no job is claimed any more, by
    this loop or by the drains the agent's runs start: only the jobs under way finish."""
    kicker: JobKicker | None = agent._jobs
    if kicker is None:
        return None
    stop = kicker.worker.stopping
    stop.clear()  # an app served again in the same process takes jobs again
    atexit.register(stop.set)  # before the background loop waits for what it runs
    _portal.background(kicker.worker.serve(stop, poll))
    return stop


def leave_jobs_to_workers(agent: Agent) -> None:
    """Record the agent's jobs with its runs, and leave them to ``noted worker``."""
    kicker: JobKicker | None = agent._jobs
    if kicker is not None:
        kicker.enabled = False
