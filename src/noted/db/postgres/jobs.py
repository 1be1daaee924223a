"""PostgresDb's background jobs: rows of ``<session_table>_jobs`` written in the run's
transaction. Workers in any number of processes and hosts claim with ``FOR UPDATE SKIP
LOCKED`` (never waiting for each other, never taking one job twice), and a job is only
claimed when no earlier job of its key is unfinished; jobs of one key are numbered in
the order their runs commit (an advisory lock on the key, taken by the insert itself)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

from noted._time import from_micros, now_micros
from noted.db._job_sql import JobSql, SqlJobs
from noted.db.postgres import sessions
from noted.db.postgres.query import Conn
from noted.db.postgres.schema import Names
from noted.sessions import RunResult

__all__ = ["PostgresJobs"]


class PostgresJobs(SqlJobs):
    """The :class:`~noted.db.jobs.JobStore` methods of PostgresDb."""

    _n: Names
    _batch: Any  # threading.local: .conn, the transaction's connection on this thread
    _connection: Callable[[], AbstractContextManager[Conn]]

    @property
    def _job_sql(self) -> JobSql:  # type: ignore[override]
        return JobSql(
            self._n.jobs,
            "%s",
            lock="FOR UPDATE SKIP LOCKED",
            same="IS NOT DISTINCT FROM",
            key_lock="SELECT pg_advisory_xact_lock(hashtext(%s))",
        )

    def _job_reader(self) -> AbstractContextManager[Conn]:
        return self._connection()

    def _append_run_in(self, conn: Conn, run: RunResult, existing: bool | str) -> bool:
        return sessions.append_run(conn, self._n, run, from_micros(now_micros()), existing)

    @contextmanager
    def _pipelined(self, conn: Conn) -> Iterator[None]:
        # the run's last statements and the jobs' inserts go in one round trip
        with conn.pipeline():
            yield

    @contextmanager
    def _completing(self, conn: Conn) -> Iterator[None]:
        self._batch.conn = conn
        try:
            yield
        finally:
            self._batch.conn = None
