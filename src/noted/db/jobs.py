"""Background work as durable jobs: the protocol a store satisfies to keep them.

When a run is stored, the memory and summary work it needs is stored with it, in the
same write (:meth:`JobStore.append_run_with_jobs`). A worker claims a job with a lease
(another worker may take it once the lease has expired: its worker died), stores the
model's plan with the job before applying it, and completes it (deleting it) in the same
transaction as the plan's writes (SQLite, PostgreSQL, and one MULTI/EXEC on Redis). Where
it cannot (MongoDB without multi-document transactions, or memories in another store
than the jobs), a retry re-applies the stored plan without what the first attempt wrote
(see :meth:`JobStore.completes_with`). A failed job keeps
its error and is retried with backoff a bounded number of times, then kept as failed.

Each job has an ordering ``key`` ("memory:<user>", "summary:<session>"). A memory job is
only claimed when no earlier job of its key *and its agent* is pending or running, so each
agent's plans for a user are applied in the order of its runs, and one agent's unfinished
job (its worker died holding it, or no worker of that agent runs any more) never holds up
another's; each agent's memories carry its id, and a change to a memory that moved since
the model was shown it is refused, so two agents may update one user at once. A summary
job is claimed when no earlier job of its key is pending or running, whatever its agent:
a session's summaries follow its runs. (Stored jobs keep their keys: the agent was
always kept beside them.)
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar, runtime_checkable

from noted._time import now_micros
from noted.errors import UserError
from noted.sessions import RunResult

__all__ = [
    "ANY_AGENT",
    "JOB_KINDS",
    "JOB_STATUSES",
    "Job",
    "JobStore",
    "backoff_seconds",
    "derived_id",
    "job_ages",
    "jobs_for_run",
    "new_job_id",
    "order_group",
]

T = TypeVar("T")
JobKind = Literal["memory", "summary"]
JobStatus = Literal["pending", "running", "failed"]
JOB_KINDS: tuple[JobKind, ...] = ("memory", "summary")
JOB_STATUSES: tuple[JobStatus, ...] = ("pending", "running", "failed")
MAX_ERROR_CHARS = 2000


class _AnyAgent:
    def __repr__(self) -> str:
        return "ANY_AGENT"


ANY_AGENT: Any = _AnyAgent()  # claim_job's default: jobs of every agent


def new_job_id() -> str:
    return str(uuid.UUID(bytes=os.urandom(16), version=4))


_JOB_NAMESPACE = uuid.UUID("5b0c7e64-3d1f-4c58-9a4e-2f6f1e0d8a31")


def derived_id(job_id: str, index: int) -> str:
    """The id of the ``index``-th memory a job adds: the same on every retry."""
    return str(uuid.uuid5(_JOB_NAMESPACE, f"{job_id}:{index}"))


def backoff_seconds(attempts: int) -> float:
    """How long a job waits before its next attempt after ``attempts`` failed ones."""
    return float(min(2 ** max(attempts - 1, 0) * 5, 600))


@dataclass(slots=True)
class Job:
    """One piece of background work of a run. ``said`` and ``answer`` are the turn's
    text (what the work reads); ``plan`` is the model's answer once stored;
    ``traceparent`` is the W3C trace context of the run that asked for it."""

    job_id: str
    kind: JobKind
    user_id: str
    session_id: str
    run_id: str
    agent_id: str | None
    said: str
    answer: str
    traceparent: str | None = None
    status: JobStatus = "pending"
    attempts: int = 0
    created_at: int = field(default_factory=now_micros)  # microseconds since the epoch
    due_at: int = 0
    lease_until: int | None = None
    owner: str | None = None
    error: str | None = None
    plan: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        """The ordering key: a user's memory jobs (of each agent: see :func:`order_group`),
        a session's summary jobs, in order."""
        return f"{self.kind}:{self.user_id if self.kind == 'memory' else self.session_id}"

    def payload(self) -> str:
        """What is written once when the job is recorded (the rest are columns)."""
        return json.dumps(
            {
                "kind": self.kind,
                "user_id": self.user_id,
                "session_id": self.session_id,
                "run_id": self.run_id,
                "agent_id": self.agent_id,
                "said": self.said,
                "answer": self.answer,
                "traceparent": self.traceparent,
                "created_at": self.created_at,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_payload(cls, job_id: str, payload: str | dict[str, Any], **state: Any) -> Job:
        data = json.loads(payload) if isinstance(payload, str) else payload
        plan = state.pop("plan", None)
        if isinstance(plan, str):
            plan = json.loads(plan)
        return cls(
            job_id=job_id,
            kind=data["kind"],
            user_id=data["user_id"],
            session_id=data["session_id"],
            run_id=data["run_id"],
            agent_id=data["agent_id"],
            said=data["said"],
            answer=data["answer"],
            traceparent=data.get("traceparent"),
            created_at=data["created_at"],
            plan=plan,
            **state,
        )

    def to_dict(self) -> dict[str, Any]:
        """For listings: everything but the turn's text."""
        return {
            "job_id": self.job_id,
            "kind": self.kind,
            "status": self.status,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "run_id": self.run_id,
            "agent_id": self.agent_id,
            "attempts": self.attempts,
            "created_at": self.created_at,
            "due_at": self.due_at,
            "lease_until": self.lease_until,
            "owner": self.owner,
            "error": self.error,
            "plan_stored": self.plan is not None,
            "traceparent": self.traceparent,
        }


def order_group(key: str, agent_id: str | None) -> tuple[str, str | None]:
    """The group of jobs that run one at a time, in order: a memory job's key and agent,
    a summary job's key (see the module's docstring)."""
    return key, agent_id if key.startswith("memory:") else None


def jobs_for_run(
    run: RunResult, *, memory: bool, summary: bool, traceparent: str | None = None
) -> list[Job]:
    """The jobs a completed run needs (none for a run that did not complete)."""
    if run.status != "completed":
        return []
    said = next((m.content for m in run.messages if m.role == "user" and m.content), run.input)
    kinds = [k for k, wanted in (("memory", memory), ("summary", summary)) if wanted]
    return [
        Job(
            job_id=new_job_id(),
            kind=kind,  # type: ignore[arg-type]
            user_id=run.user_id,
            session_id=run.session_id,
            run_id=run.run_id,
            agent_id=run.agent_id,
            said=said,
            answer=run.content or "",
            traceparent=traceparent,
        )
        for kind in kinds
    ]


def job_ages(job: Job, now: int | None = None) -> dict[str, Any]:
    """A job as a listing shows it: its fields, with its age (and how long until it is
    due, when it waits for a retry) in seconds."""
    now = now_micros() if now is None else now
    data = job.to_dict()
    data["age_s"] = round((now - job.created_at) / 1e6, 1)
    data["due_in_s"] = round(max(job.due_at - now, 0) / 1e6, 1) if job.status == "pending" else 0
    return data


def check_status(status: object) -> JobStatus | None:
    if status is not None and status not in JOB_STATUSES:
        raise UserError(f"status must be one of {', '.join(JOB_STATUSES)}, got {status!r}")
    return status


def clip_error(error: str) -> str:
    return error[:MAX_ERROR_CHARS]


def after_failure(retry_in: float | None) -> tuple[JobStatus, int]:
    """The status and due time of a job after a failed attempt."""
    if retry_in is None:
        return "failed", now_micros()
    return "pending", now_micros() + int(retry_in * 1e6)


@runtime_checkable
class JobStore(Protocol):
    """A store that keeps background jobs with the runs (every persistent backend).

    Times are microseconds since the epoch; ``lease`` is in seconds."""

    def append_run_with_jobs(
        self, run: RunResult, jobs: Sequence[Job], *, existing: bool | str = False
    ) -> bool:
        """``append_run(run, existing=existing)`` and the jobs recorded in the same write:
        none of them when the run is not written (False)."""
        ...

    def claim_job(
        self,
        owner: str,
        lease: float,
        agent_id: Any = ANY_AGENT,
        keys: Collection[str] | None = None,
    ) -> Job | None:
        """The oldest job that is due (pending and due, or running with an expired lease)
        and has no earlier unfinished job of its :func:`order_group`, now running for
        ``owner`` until the lease ends, its attempts counted up; None when there is none.
        ``agent_id`` limits the claim to one agent's jobs (None: jobs of runs without an
        agent), ``keys`` to jobs of those ordering keys (a process's own users and
        sessions first)."""
        ...

    def renew_lease(self, job: Job, lease: float) -> bool:
        """Hold the job ``lease`` more seconds from now (while its worker still works on
        it); False when it is no longer ``job.owner``'s."""
        ...

    def store_plan(self, job: Job, plan: dict[str, Any]) -> bool:
        """Keep the model's plan with the job (still ``job.owner``'s); False when the job
        is no longer this worker's (its lease expired and another took it)."""
        ...

    def complete_job(self, job: Job, write: Callable[[], T]) -> tuple[bool, T | None]:
        """Run ``write()`` and delete the job, in one transaction where the store has
        them; ``(False, None)`` and nothing written when the job is not ``job.owner``'s."""
        ...

    def completes_with(self, memories: object) -> bool:
        """Whether :meth:`complete_job` deletes the job in the same transaction as a
        ``write_batch`` of ``memories`` (a crash leaves both or neither); when it does
        not, the worker makes a retried batch skip what its first attempt wrote."""
        ...

    def fail_job(self, job: Job, error: str, retry_in: float | None) -> None:
        """Record a failed attempt: pending again after ``retry_in`` seconds, or kept as
        failed when it is None."""
        ...

    def list_jobs(self, status: JobStatus | None = None, limit: int | None = 100) -> list[Job]:
        """Jobs (all, or those of one status), oldest first."""
        ...

    def unfinished_jobs(
        self, agent_id: Any = ANY_AGENT, keys: Collection[str] | None = None
    ) -> int:
        """How many jobs are unfinished (of one agent, or of all; of some ordering ``keys``
        only, when given): running, due for their first attempt, or due again (given back
        by a worker that was stopped); jobs waiting for a retry after a failure are not
        counted."""
        ...

    def queued_among(self, job_ids: Collection[str]) -> dict[str, bool]:
        """Those of ``job_ids`` still queued (pending or running: a completed job is gone,
        a failed one out of the queue), each with whether it is unfinished as
        :meth:`unfinished_jobs` counts them (False: waiting for a retry after a failure)."""
        ...

    def retry_job(self, job_id: str) -> bool:
        """Make a failed (or waiting) job due now, with its attempts reset."""
        ...

    def drop_job(self, job_id: str) -> bool:
        """Delete a job, whatever its state (an operator's decision)."""
        ...
