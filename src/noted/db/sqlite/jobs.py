"""SqliteDb's background jobs: rows of ``<session_table>_jobs`` written in the run's
transaction. Every write takes SQLite's write lock (``BEGIN IMMEDIATE``), so processes
sharing the file never claim one job twice."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from noted._time import now_micros
from noted.db._job_sql import JobSql, job_from_row
from noted.db.jobs import ANY_AGENT, Job, JobStatus, after_failure, clip_error
from noted.db.sqlite import sessions as session_rows
from noted.sessions import RunResult

__all__ = ["SqliteJobs"]

T = TypeVar("T")


class SqliteJobs:
    """The :class:`~noted.db.jobs.JobStore` methods of SqliteDb."""

    session_table: str
    _transaction: Callable[[], AbstractContextManager[sqlite3.Connection]]
    _session: Callable[[], AbstractContextManager[sqlite3.Connection]]

    @property
    def _jobs(self) -> JobSql:
        return JobSql(f"{self.session_table}_jobs", "?")

    def append_run_with_jobs(self, run: RunResult, jobs: Sequence[Job]) -> None:
        sql = self._jobs
        with self._transaction() as conn:
            session_rows.append_run(conn, self.session_table, run, now_micros())
            if jobs:
                conn.executemany(sql.insert, [sql.insert_params(job) for job in jobs])

    def claim_job(self, owner: str, lease: float, agent_id: Any = ANY_AGENT) -> Job | None:
        sql = self._jobs
        now = now_micros()
        select, extra = sql.claim(agent_id)
        with self._transaction() as conn:
            row = conn.execute(select, [now, now, *extra]).fetchone()
            if row is None:
                return None
            until = now + int(lease * 1e6)
            conn.execute(sql.take, (owner, until, row[0]))
        job = job_from_row(row[1:])
        job.status, job.owner, job.lease_until = "running", owner, until
        job.attempts += 1
        return job

    def store_plan(self, job: Job, plan: dict[str, Any]) -> bool:
        text = json.dumps(plan, ensure_ascii=False, separators=(",", ":"))
        with self._transaction() as conn:
            stored = conn.execute(self._jobs.store_plan, (text, job.job_id, job.owner)).rowcount
        if stored:
            job.plan = plan
        return bool(stored)

    def complete_job(self, job: Job, write: Callable[[], T]) -> tuple[bool, T | None]:
        with self._transaction() as conn:
            if not conn.execute(self._jobs.finish, (job.job_id, job.owner)).rowcount:
                return False, None
            return True, write()

    def fail_job(self, job: Job, error: str, retry_in: float | None) -> None:
        status, due = after_failure(retry_in)
        with self._transaction() as conn:
            conn.execute(self._jobs.fail, (status, clip_error(error), due, job.job_id, job.owner))

    def list_jobs(self, status: JobStatus | None = None, limit: int | None = 100) -> list[Job]:
        select, params = self._jobs.listing(status, limit)
        with self._session() as conn:
            return [job_from_row(row) for row in conn.execute(select, params)]

    def unfinished_jobs(self, agent_id: Any = ANY_AGENT) -> int:
        select, params = self._jobs.unfinished(agent_id)
        with self._session() as conn:
            return int(conn.execute(select, params).fetchone()[0])

    def retry_job(self, job_id: str) -> bool:
        with self._transaction() as conn:
            return bool(conn.execute(self._jobs.retry, (now_micros(), job_id)).rowcount)

    def drop_job(self, job_id: str) -> bool:
        with self._transaction() as conn:
            return bool(conn.execute(self._jobs.drop, (job_id,)).rowcount)
