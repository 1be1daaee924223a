"""SQL for sessions in PostgreSQL: ``<session_table>`` and ``<session_table>_runs``, one
row per run (its messages and metrics as ``json``), each function inside the caller's
connection or transaction, as in sqlite_sessions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Json

from noted._time import from_micros
from noted.db._rows import row_to_session, summary_from_json
from noted.db.postgres.schema import Names
from noted.db.sessions_core import (
    owns_session,
    run_id_taken,
    sees_session,
    summary_fits,
    takes_run,
)
from noted.sessions import RunResult, Session, SessionSummary

__all__ = [
    "add_run",
    "append_run",
    "delete_session",
    "get_runs",
    "get_session",
    "get_sessions",
    "get_summary",
    "list_sessions",
    "set_summary",
]

Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

# timestamps leave the database as integer microseconds, as the row readers take them
_SESSION_SELECT = (
    "session_id, user_id, agent_id, "
    "(extract(epoch from created_at) * 1000000)::bigint, "
    "(extract(epoch from updated_at) * 1000000)::bigint, summary::text, run_count"
)


def _owner(conn: Conn, n: Names, session_id: str, *, lock: bool = False) -> Row | None:
    return conn.execute(
        f"SELECT user_id, run_count FROM {n.sessions} WHERE session_id = %s"
        + (" FOR UPDATE" if lock else ""),
        (session_id,),
    ).fetchone()


def _owner_id(conn: Conn, n: Names, session_id: str, *, lock: bool = False) -> str | None:
    owner = _owner(conn, n, session_id, lock=lock)
    return None if owner is None else str(owner[0])


def append_run(
    conn: Conn, n: Names, run: RunResult, now: datetime, existing: bool | str = False
) -> bool:
    """Inside the caller's transaction; the session's row is locked while its run is
    numbered, so concurrent appends never take the same place, and a concurrent delete
    (which locks it too) goes wholly before or after. A run id already stored is refused
    by the runs table's unique key (the transaction is rolled back with the error). False,
    nothing written, when the run was to continue a session that is gone, or that does not
    hold the run named by ``existing`` (see sessions_core.takes_run): then no session row
    is inserted."""
    if not existing:
        conn.execute(
            f"INSERT INTO {n.sessions} (session_id, user_id, agent_id, created_at, "
            "updated_at, summary, run_count) VALUES (%s, %s, %s, %s, %s, NULL, 0) "
            "ON CONFLICT (session_id) DO NOTHING",
            (run.session_id, run.user_id, run.agent_id, now, now),
        )
    # the owner, the place, and whether the session holds the run named: read as its row
    # is locked (a delete that held it has taken the row away by then)
    named = existing if isinstance(existing, str) else None
    owner = conn.execute(
        f"SELECT user_id, run_count, EXISTS (SELECT 1 FROM {n.runs} WHERE run_id = %s "
        f"AND session_id = %s) FROM {n.sessions} WHERE session_id = %s FOR UPDATE",
        (named, run.session_id, run.session_id),
    ).fetchone()
    holds = owner is not None and bool(owner[2])
    if not takes_run(None if owner is None else str(owner[0]), run, existing, lambda _: holds):
        return False
    assert owner is not None
    row = (run.session_id, owner[1], run.run_id, run.status, run.created_at, Json(run.to_dict()))
    try:
        conn.execute(
            f"INSERT INTO {n.runs} (session_id, run_index, run_id, status, created_at, data) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            row,
        )
    except psycopg.errors.UniqueViolation as exc:
        if (exc.diag.constraint_name or "").endswith("run_id_key"):
            raise run_id_taken(run.run_id) from exc
        raise
    conn.execute(
        f"UPDATE {n.sessions} SET updated_at = %s, run_count = run_count + 1 WHERE session_id = %s",
        (now, run.session_id),
    )
    return True


def add_run(conn: Conn, n: Names, run: RunResult, now_us: int, existing: bool | str) -> bool:
    """append_run as noted.db.sessions_core.SessionFunctions names it."""
    return append_run(conn, n, run, from_micros(now_us), existing)


def _runs(
    conn: Conn,
    n: Names,
    session_id: str,
    owner: str,
    last_n: int | None,
    offset: int = 0,
    completed_only: bool = False,
) -> list[RunResult]:
    """The session's runs while ``owner`` owns it, as sqlite_sessions' ``_owned_runs``
    reads them (the owner checked in the runs' own query)."""
    sql = (
        f"SELECT data FROM {n.runs} WHERE session_id = "
        f"(SELECT session_id FROM {n.sessions} WHERE session_id = %s AND user_id = %s)"
    )
    if completed_only:
        sql += " AND status = 'completed'"
    sql += " ORDER BY run_index DESC LIMIT %s OFFSET %s"
    rows = conn.execute(sql, (session_id, owner, last_n, offset)).fetchall()
    return [RunResult.from_dict(row[0]) for row in reversed(rows)]


def get_runs(
    conn: Conn,
    n: Names,
    session_id: str,
    user_id: str,
    last_n: int | None,
    completed_only: bool,
) -> list[RunResult]:
    if not owns_session(_owner_id(conn, n, session_id), user_id, session_id):
        return []
    return _runs(conn, n, session_id, user_id, last_n, 0, completed_only)


def get_session(
    conn: Conn,
    n: Names,
    session_id: str,
    user_id: str | None,
    last_n: int | None = None,
    offset: int = 0,
) -> Session | None:
    """The session with the last ``last_n`` (None: all) of its runs before the newest
    ``offset``."""
    row = conn.execute(
        f"SELECT {_SESSION_SELECT} FROM {n.sessions} WHERE session_id = %s", (session_id,)
    ).fetchone()
    if row is None or not sees_session(row[1], user_id):
        return None
    session = row_to_session(row)
    session.runs = _runs(conn, n, session_id, session.user_id, last_n, offset)
    return session


def get_sessions(conn: Conn, n: Names, session_ids: list[str]) -> dict[str, Session]:
    """The sessions among ``session_ids``, whole, by id: two queries (sessions, runs)."""
    rows = conn.execute(
        f"SELECT {_SESSION_SELECT} FROM {n.sessions} WHERE session_id = ANY(%s)", (session_ids,)
    ).fetchall()
    found = {row[0]: row_to_session(row) for row in rows}
    runs = conn.execute(
        f"SELECT session_id, data FROM {n.runs} WHERE session_id = ANY(%s) "
        "ORDER BY session_id, run_index",
        (session_ids,),
    )
    for session_id, data in runs:  # not those of a session begun after the rows were read
        if session_id in found:
            found[session_id].runs.append(RunResult.from_dict(data))
    return found


def list_sessions(
    conn: Conn, n: Names, user_id: str | None, limit: int | None, offset: int
) -> list[Session]:
    sql = f"SELECT {_SESSION_SELECT} FROM {n.sessions}"
    params: list[Any] = []
    if user_id is not None:
        sql += " WHERE user_id = %s"
        params.append(user_id)
    sql += " ORDER BY updated_at DESC, session_id LIMIT %s OFFSET %s"
    return [row_to_session(row) for row in conn.execute(sql, [*params, limit, offset])]


def delete_session(conn: Conn, n: Names, session_id: str, user_id: str | None) -> bool:
    """Inside the caller's transaction."""
    if not sees_session(_owner_id(conn, n, session_id, lock=True), user_id):
        return False
    conn.execute(f"DELETE FROM {n.runs} WHERE session_id = %s", (session_id,))
    conn.execute(f"DELETE FROM {n.sessions} WHERE session_id = %s", (session_id,))
    return True


def get_summary(conn: Conn, n: Names, session_id: str, user_id: str) -> SessionSummary | None:
    row = conn.execute(
        f"SELECT summary::text FROM {n.sessions} WHERE session_id = %s AND user_id = %s",
        (session_id, user_id),
    ).fetchone()
    return None if row is None else summary_from_json(row[0])


def set_summary(
    conn: Conn, n: Names, session_id: str, user_id: str, summary: SessionSummary
) -> bool:
    """Inside the caller's transaction."""
    if not owns_session(_owner_id(conn, n, session_id, lock=True), user_id, session_id):
        return False
    sql = f"SELECT 1 FROM {n.runs} WHERE run_id = %s AND session_id = %s"
    if not summary_fits(summary, lambda run: bool(conn.execute(sql, (run, session_id)).fetchone())):
        return False
    conn.execute(
        f"UPDATE {n.sessions} SET summary = %s WHERE session_id = %s",
        (Json(summary.to_dict()), session_id),
    )
    return True
