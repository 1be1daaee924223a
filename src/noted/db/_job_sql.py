"""The SQL of the jobs table, shared by SQLite and PostgreSQL (``?`` or ``%s`` parameters).

One row per job: ``seq`` orders them, ``job_key`` groups the ones that run in order,
``payload`` holds the turn (written once), ``plan`` the model's answer once stored. A
job is deleted when it completes, so the table holds only pending, running and failed
jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from noted.db.jobs import ANY_AGENT, Job, JobStatus, check_status

__all__ = ["JobSql", "job_from_row"]

SELECT = "job_id, payload, status, attempts, due_at, lease_until, owner, error, plan"


def job_from_row(row: Sequence[Any]) -> Job:
    job_id, payload, status, attempts, due_at, lease_until, owner, error, plan = row
    return Job.from_payload(
        job_id,
        payload,
        status=status,
        attempts=attempts,
        due_at=due_at,
        lease_until=lease_until,
        owner=owner,
        error=error,
        plan=plan,
    )


@dataclass(frozen=True, slots=True)
class JobSql:
    """Statements on ``table`` with the driver's parameter mark ``p``; ``lock`` is added
    to the claim's SELECT (PostgreSQL: ``FOR UPDATE SKIP LOCKED``)."""

    table: str
    p: str
    lock: str = ""
    same: str = "IS"  # NULL-safe equality: SQLite's IS, PostgreSQL's IS NOT DISTINCT FROM

    @property
    def insert(self) -> str:
        p = self.p
        return (
            f"INSERT INTO {self.table} (job_id, job_key, agent_id, status, attempts, due_at, "
            f"payload) VALUES ({p}, {p}, {p}, 'pending', 0, {p}, {p})"
        )

    @staticmethod
    def insert_params(job: Job) -> tuple[Any, ...]:
        return (job.job_id, job.key, job.agent_id, job.due_at or job.created_at, job.payload())

    def claim(self, agent_id: Any) -> tuple[str, list[Any]]:
        """SELECT of the job to claim: params (now, now[, agent_id])."""
        p, t = self.p, self.table
        sql = (
            f"SELECT seq, {SELECT} FROM {t} j WHERE "
            f"((j.status = 'pending' AND j.due_at <= {p}) OR "
            f"(j.status = 'running' AND j.lease_until <= {p})) "
        )
        extra: list[Any] = []
        if agent_id is not ANY_AGENT:
            sql += f"AND j.agent_id {self.same} {p} "
            extra.append(agent_id)
        sql += (
            f"AND NOT EXISTS (SELECT 1 FROM {t} e WHERE e.job_key = j.job_key "
            f"AND e.seq < j.seq AND e.status <> 'failed') ORDER BY j.seq LIMIT 1 {self.lock}"
        )
        return sql, extra

    @property
    def take(self) -> str:
        p = self.p
        return (
            f"UPDATE {self.table} SET status = 'running', owner = {p}, lease_until = {p}, "
            f"attempts = attempts + 1 WHERE seq = {p}"
        )

    @property
    def store_plan(self) -> str:
        p = self.p
        return f"UPDATE {self.table} SET plan = {p} WHERE job_id = {p} AND owner = {p}"

    @property
    def finish(self) -> str:
        p = self.p
        return f"DELETE FROM {self.table} WHERE job_id = {p} AND owner = {p}"

    @property
    def fail(self) -> str:
        p = self.p
        return (
            f"UPDATE {self.table} SET status = {p}, error = {p}, due_at = {p}, owner = NULL, "
            f"lease_until = NULL WHERE job_id = {p} AND owner = {p}"
        )

    def listing(self, status: JobStatus | None, limit: int | None) -> tuple[str, list[Any]]:
        sql = f"SELECT {SELECT} FROM {self.table}"
        params: list[Any] = []
        if check_status(status) is not None:
            sql += f" WHERE status = {self.p}"
            params.append(status)
        sql += " ORDER BY seq"
        if limit is not None:
            sql += f" LIMIT {self.p}"
            params.append(limit)
        return sql, params

    def unfinished(self, agent_id: Any) -> tuple[str, list[Any]]:
        sql = (
            f"SELECT COUNT(*) FROM {self.table} WHERE (status = 'running' "
            "OR (status = 'pending' AND attempts = 0))"
        )
        if agent_id is ANY_AGENT:
            return sql, []
        return sql + f" AND agent_id {self.same} {self.p}", [agent_id]

    @property
    def retry(self) -> str:
        p = self.p
        return (
            f"UPDATE {self.table} SET status = 'pending', attempts = 0, due_at = {p} "
            f"WHERE job_id = {p} AND status <> 'running'"
        )

    @property
    def drop(self) -> str:
        return f"DELETE FROM {self.table} WHERE job_id = {self.p}"
