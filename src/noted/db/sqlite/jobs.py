"""SqliteDb's background jobs: rows of ``<session_table>_jobs`` written in the run's
transaction. Every write takes SQLite's write lock (``BEGIN IMMEDIATE``), so processes
sharing the file never claim one job twice."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from noted._time import now_micros
from noted.db._job_sql import JobSql, SqlJobs
from noted.db.sqlite import sessions as session_rows
from noted.db.sqlite.connection import Connection
from noted.sessions import RunResult

__all__ = ["SqliteJobs"]


class SqliteJobs(SqlJobs):
    """The :class:`~noted.db.jobs.JobStore` methods of SqliteDb."""

    session_table: str
    _session: Callable[[], AbstractContextManager[Connection]]

    @property
    def _job_sql(self) -> JobSql:  # type: ignore[override]
        return JobSql(f"{self.session_table}_jobs", "?")

    def _job_reader(self) -> AbstractContextManager[Connection]:
        return self._session()

    def _append_run_in(self, conn: Connection, run: RunResult, existing: bool | str) -> bool:
        return session_rows.append_run(conn, self.session_table, run, now_micros(), existing)
