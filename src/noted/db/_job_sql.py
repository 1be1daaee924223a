"""The SQL of the jobs table, shared by SQLite and PostgreSQL (``?`` or ``%s`` parameters).

One row per job: ``seq`` orders them, ``job_key`` groups the ones that run in order
(with ``agent_id`` for memory jobs: see :func:`~noted.db.jobs.order_group`), ``payload``
holds the turn (written once), ``plan`` the model's answer once stored. A job is deleted
when it completes, so the table holds only pending, running and failed jobs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from noted._time import now_micros
from noted.db.jobs import ANY_AGENT, Job, JobStatus, after_failure, check_status, clip_error
from noted.db.sessions_core import check_run
from noted.sessions import RunResult

__all__ = ["JobSql", "SqlJobs", "job_from_row"]

T = TypeVar("T")

SELECT = "job_id, payload, status, attempts, due_at, lease_until, owner, error, plan"
UNFINISHED = "(status = 'running' OR (status = 'pending' AND (attempts = 0 OR due_at <= {p})))"
IDS_AT_ONCE = 500  # job ids asked about in one statement


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
    key_lock: str = ""  # a statement taking a lock on the job's key until the commit

    @property
    def insert(self) -> str:
        p = self.p
        columns = "job_id, job_key, agent_id, status, attempts, due_at, payload"
        values = f"{p}, {p}, {p}, 'pending', 0, {p}, {p}"
        if not self.key_lock:
            return f"INSERT INTO {self.table} ({columns}) VALUES ({values})"
        # the key's lock first, in the same statement: a later job of the key waits for
        # this transaction, so jobs of one key are numbered in the order they commit
        return (
            f"WITH held AS ({self.key_lock}) "
            f"INSERT INTO {self.table} ({columns}) SELECT {values} FROM held"
        )

    def insert_params(self, job: Job) -> tuple[Any, ...]:
        row = (job.job_id, job.key, job.agent_id, job.due_at or job.created_at, job.payload())
        return (job.key, *row) if self.key_lock else row

    def claim(self, agent_id: Any, keys: Collection[str] | None = None) -> tuple[str, list[Any]]:
        """SELECT of the job to claim: params (now, now[, agent_id][, keys...])."""
        p, t = self.p, self.table
        sql = (
            f"SELECT seq, {SELECT} FROM {t} j WHERE "
            f"((j.status = 'pending' AND j.due_at <= {p}) OR "
            f"(j.status = 'running' AND j.lease_until <= {p})) "
        )
        narrowed, extra = self._narrowed("j.", agent_id, keys)
        sql += narrowed
        # an earlier unfinished job of its group: of its key, and of its agent for a
        # memory job (order_group)
        sql += (
            f"AND NOT EXISTS (SELECT 1 FROM {t} e WHERE e.job_key = j.job_key "
            f"AND e.seq < j.seq AND e.status <> 'failed' "
            f"AND (e.agent_id {self.same} j.agent_id OR substr(j.job_key, 1, 7) <> 'memory:')) "
            f"ORDER BY j.seq LIMIT 1 {self.lock}"
        )
        return sql, extra

    @property
    def any_due(self) -> str:
        """Whether some job is due at all (params: now, now): read before a claim takes
        a write lock, so an idle worker's look costs a read."""
        p = self.p
        return (
            f"SELECT 1 FROM {self.table} WHERE (status = 'pending' AND due_at <= {p}) "
            f"OR (status = 'running' AND lease_until <= {p}) LIMIT 1"
        )

    @property
    def take(self) -> str:
        p = self.p
        return (
            f"UPDATE {self.table} SET status = 'running', owner = {p}, lease_until = {p}, "
            f"attempts = attempts + 1 WHERE seq = {p}"
        )

    @property
    def renew(self) -> str:
        p = self.p
        return (
            f"UPDATE {self.table} SET lease_until = {p} WHERE job_id = {p} AND owner = {p} "
            "AND status = 'running'"
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

    def unfinished(
        self, now: int, agent_id: Any, keys: Collection[str] | None
    ) -> tuple[str, list[Any]]:
        """COUNT of the unfinished jobs (see ``JobStore.unfinished_jobs``) and its params."""
        sql = f"SELECT COUNT(*) FROM {self.table} WHERE {UNFINISHED.format(p=self.p)}"
        narrowed, params = self._narrowed("", agent_id, keys)
        return f"{sql} {narrowed}", [now, *params]

    def queued_among(self, now: int, job_ids: Sequence[str]) -> tuple[str, list[Any]]:
        """SELECT of those of ``job_ids`` that are queued, each with 1 when unfinished
        (else 0), and its params."""
        marks = ", ".join([self.p] * len(job_ids))
        sql = (
            f"SELECT job_id, CASE WHEN {UNFINISHED.format(p=self.p)} THEN 1 ELSE 0 END "
            f"FROM {self.table} WHERE status <> 'failed' AND job_id IN ({marks})"
        )
        return sql, [now, *job_ids]

    def _narrowed(
        self, alias: str, agent_id: Any, keys: Collection[str] | None
    ) -> tuple[str, list[Any]]:
        """The conditions (each ``AND ...`` and a space) that keep one agent's jobs (unless
        ``agent_id`` is ANY_AGENT) of the ordering ``keys`` (unless None), and their
        parameters; ``alias`` prefixes the columns ("j.", or "")."""
        sql, params = "", []
        if agent_id is not ANY_AGENT:
            sql += f"AND {alias}agent_id {self.same} {self.p} "
            params.append(agent_id)
        if keys is not None:
            wanted = sorted(keys)
            sql += f"AND {alias}job_key IN ({', '.join([self.p] * len(wanted))}) "
            params.extend(wanted)
        return sql, params

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


class SqlJobs:
    """The :class:`~noted.db.jobs.JobStore` methods of a SQL store, over its hooks: the
    statements, a write transaction, a connection to read with, and appending a run
    inside the caller's transaction."""

    _job_sql: JobSql
    _transaction: Callable[[], AbstractContextManager[Any]]
    _job_reader: Callable[[], AbstractContextManager[Any]]

    def _append_run_in(self, conn: Any, run: RunResult, existing: bool | str) -> bool:
        """``append_run`` inside the caller's transaction: whether the run was written."""
        raise NotImplementedError

    @contextmanager
    def _completing(self, conn: Any) -> Iterator[None]:
        """Around a job's writes, inside its completing transaction."""
        yield

    @contextmanager
    def _pipelined(self, conn: Any) -> Iterator[None]:
        """Around the run's and its jobs' statements (a driver may send them together)."""
        yield

    def append_run_with_jobs(
        self, run: RunResult, jobs: Sequence[Job], *, existing: bool | str = False
    ) -> bool:
        check_run(run, existing)
        sql = self._job_sql
        with self._transaction() as conn, self._pipelined(conn):
            if not self._append_run_in(conn, run, existing):
                return False
            for job in jobs:  # one or two
                conn.execute(sql.insert, sql.insert_params(job))
        return True

    def claim_job(
        self,
        owner: str,
        lease: float,
        agent_id: Any = ANY_AGENT,
        keys: Collection[str] | None = None,
    ) -> Job | None:
        if keys is not None and not keys:
            return None
        sql = self._job_sql
        now = now_micros()
        select, extra = sql.claim(agent_id, keys)
        with self._job_reader() as conn:
            if conn.execute(sql.any_due, (now, now)).fetchone() is None:
                return None
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

    def renew_lease(self, job: Job, lease: float) -> bool:
        until = now_micros() + int(lease * 1e6)
        with self._transaction() as conn:
            renewed = conn.execute(self._job_sql.renew, (until, job.job_id, job.owner)).rowcount
        if renewed:
            job.lease_until = until
        return bool(renewed)

    def store_plan(self, job: Job, plan: dict[str, Any]) -> bool:
        text = json.dumps(plan, ensure_ascii=False, separators=(",", ":"))
        with self._transaction() as conn:
            stored = conn.execute(self._job_sql.store_plan, (text, job.job_id, job.owner)).rowcount
        if stored:
            job.plan = plan
        return bool(stored)

    def complete_job(self, job: Job, write: Callable[[], T]) -> tuple[bool, T | None]:
        with self._transaction() as conn:
            if not conn.execute(self._job_sql.finish, (job.job_id, job.owner)).rowcount:
                return False, None
            with self._completing(conn):
                return True, write()

    def completes_with(self, memories: object) -> bool:
        return memories is self  # its batch joins the transaction complete_job holds open

    def fail_job(self, job: Job, error: str, retry_in: float | None) -> None:
        status, due = after_failure(retry_in)
        params = (status, clip_error(error), due, job.job_id, job.owner)
        with self._transaction() as conn:
            conn.execute(self._job_sql.fail, params)

    def list_jobs(self, status: JobStatus | None = None, limit: int | None = 100) -> list[Job]:
        select, params = self._job_sql.listing(status, limit)
        with self._job_reader() as conn:
            return [job_from_row(row) for row in conn.execute(select, params).fetchall()]

    def unfinished_jobs(
        self, agent_id: Any = ANY_AGENT, keys: Collection[str] | None = None
    ) -> int:
        if keys is not None and not keys:
            return 0
        select, params = self._job_sql.unfinished(now_micros(), agent_id, keys)
        with self._job_reader() as conn:
            return int(conn.execute(select, params).fetchone()[0])

    def queued_among(self, job_ids: Collection[str]) -> dict[str, bool]:
        wanted, now = sorted(job_ids), now_micros()
        found: dict[str, bool] = {}
        with self._job_reader() as conn:
            for start in range(0, len(wanted), IDS_AT_ONCE):
                chunk = wanted[start : start + IDS_AT_ONCE]
                select, params = self._job_sql.queued_among(now, chunk)
                found.update((str(i), bool(u)) for i, u in conn.execute(select, params).fetchall())
        return found

    def retry_job(self, job_id: str) -> bool:
        with self._transaction() as conn:
            return bool(conn.execute(self._job_sql.retry, (now_micros(), job_id)).rowcount)

    def drop_job(self, job_id: str) -> bool:
        with self._transaction() as conn:
            return bool(conn.execute(self._job_sql.drop, (job_id,)).rowcount)
