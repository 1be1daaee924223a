"""SQL for sessions in SQLite: a session table and ``<session_table>_runs``, one row per run.

A run is appended as one row (its messages and metrics as JSON), so saving a turn costs
the same at the hundredth run as at the first, and reading the last runs for history
reads only those rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import apsw

from noted._time import to_micros
from noted.db._rows import IN_CHUNK, row_to_session, summary_from_json
from noted.db.sessions_core import (
    owns_session,
    run_id_taken,
    sees_session,
    summary_fits,
    takes_run,
)
from noted.db.sqlite.connection import Connection
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

_SESSION_COLUMNS = "session_id, user_id, agent_id, created_at, updated_at, summary, run_count"


def _owner(conn: Connection, table: str, session_id: str) -> tuple[str, int] | None:
    row = conn.execute(
        f"SELECT user_id, run_count FROM {table} WHERE session_id = ?", (session_id,)
    ).fetchone()
    return None if row is None else (row[0], row[1])


def _owner_id(conn: Connection, table: str, session_id: str) -> str | None:
    owner = _owner(conn, table, session_id)
    return None if owner is None else owner[0]


def _holds_run(conn: Connection, table: str, session_id: str) -> Callable[[str], bool]:
    """Whether the session holds the run of an id (asked in the caller's transaction)."""
    sql = f"SELECT 1 FROM {table}_runs WHERE run_id = ? AND session_id = ?"
    return lambda run_id: conn.execute(sql, (run_id, session_id)).fetchone() is not None


def append_run(
    conn: Connection, table: str, run: RunResult, now_us: int, existing: bool | str = False
) -> bool:
    """Inside the caller's write transaction (rolled back with an error: a run id already
    stored is refused by the runs table's unique key); False, nothing written, when the
    run was to continue a session that is gone, or that does not hold the run named by
    ``existing`` (see sessions_core.takes_run)."""
    owner = _owner(conn, table, run.session_id)
    holds = _holds_run(conn, table, run.session_id)
    if not takes_run(None if owner is None else owner[0], run, existing, holds):
        return False
    if owner is None:
        conn.execute(
            f"INSERT INTO {table} ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, 0)",
            (run.session_id, run.user_id, run.agent_id, now_us, now_us),
        )
        index = 0
    else:
        index = owner[1]
    row = (
        run.session_id,
        index,
        run.run_id,
        run.status,
        to_micros(run.created_at),
        json.dumps(run.to_dict(), ensure_ascii=False, separators=(",", ":")),
    )
    try:
        conn.execute(
            f"INSERT INTO {table}_runs (session_id, run_index, run_id, status, created_at, "
            "data) VALUES (?, ?, ?, ?, ?, ?)",
            row,
        )
    except apsw.ConstraintError as exc:
        if str(exc).endswith("_runs.run_id"):
            raise run_id_taken(run.run_id) from exc
        raise
    conn.execute(
        f"UPDATE {table} SET updated_at = ?, run_count = run_count + 1 WHERE session_id = ?",
        (now_us, run.session_id),
    )
    return True


add_run = append_run  # as noted.db.sessions_core.SessionFunctions names it


def get_runs(
    conn: Connection,
    table: str,
    session_id: str,
    user_id: str,
    last_n: int | None,
    completed_only: bool,
) -> list[RunResult]:
    if not owns_session(_owner_id(conn, table, session_id), user_id, session_id):
        return []
    return _owned_runs(conn, table, session_id, user_id, last_n, 0, completed_only)


def _owned_runs(
    conn: Connection,
    table: str,
    session_id: str,
    owner: str,
    last_n: int | None,
    offset: int,
    completed_only: bool = False,
) -> list[RunResult]:
    """The session's runs, oldest first (the last ``last_n``, None: all, before the newest
    ``offset``), while ``owner`` owns it: the owner is checked in the runs' own query, so a
    session deleted and begun again by another user since its owner was read answers none
    of the new owner's runs."""
    sql = (
        f"SELECT data FROM {table}_runs WHERE session_id = "
        f"(SELECT session_id FROM {table} WHERE session_id = ? AND user_id = ?)"
    )
    if completed_only:
        sql += " AND status = 'completed'"
    sql += " ORDER BY run_index DESC LIMIT ? OFFSET ?"
    params = (session_id, owner, -1 if last_n is None else last_n, offset)
    rows = conn.execute(sql, params).fetchall()
    return [RunResult.from_dict(json.loads(row[0])) for row in reversed(rows)]


def get_summary(
    conn: Connection, table: str, session_id: str, user_id: str
) -> SessionSummary | None:
    row = conn.execute(
        f"SELECT summary FROM {table} WHERE session_id = ? AND user_id = ?", (session_id, user_id)
    ).fetchone()
    return None if row is None else summary_from_json(row[0])


def set_summary(
    conn: Connection, table: str, session_id: str, user_id: str, summary: SessionSummary
) -> bool:
    """Inside the caller's write transaction."""
    if not owns_session(_owner_id(conn, table, session_id), user_id, session_id):
        return False
    if not summary_fits(summary, _holds_run(conn, table, session_id)):
        return False
    text = json.dumps(summary.to_dict(), ensure_ascii=False, separators=(",", ":"))
    conn.execute(f"UPDATE {table} SET summary = ? WHERE session_id = ?", (text, session_id))
    return True


def get_session(
    conn: Connection,
    table: str,
    session_id: str,
    user_id: str | None,
    last_n: int | None = None,
    offset: int = 0,
) -> Session | None:
    """The session with the last ``last_n`` (None: all) of its runs before the newest
    ``offset``."""
    row = conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM {table} WHERE session_id = ?", (session_id,)
    ).fetchone()
    if row is None or not sees_session(row[1], user_id):
        return None
    session = row_to_session(row)
    session.runs = _owned_runs(conn, table, session_id, session.user_id, last_n, offset)
    return session


def get_sessions(conn: Connection, table: str, session_ids: list[str]) -> dict[str, Session]:
    """The sessions among ``session_ids``, whole, by id: IN_CHUNK of them per query."""
    found: dict[str, Session] = {}
    for start in range(0, len(session_ids), IN_CHUNK):
        chunk = session_ids[start : start + IN_CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM {table} WHERE session_id IN ({marks})", chunk
        ).fetchall()
        sessions = {row[0]: row_to_session(row) for row in rows}
        runs = conn.execute(
            f"SELECT session_id, data FROM {table}_runs WHERE session_id IN ({marks}) "
            "ORDER BY session_id, run_index",
            chunk,
        )
        for session_id, data in runs:  # not those of a session begun after the rows were read
            if session_id in sessions:
                sessions[session_id].runs.append(RunResult.from_dict(json.loads(data)))
        found.update(sessions)
    return found


def list_sessions(
    conn: Connection, table: str, user_id: str | None, limit: int | None, offset: int
) -> list[Session]:
    sql = f"SELECT {_SESSION_COLUMNS} FROM {table}"
    params: list[Any] = []
    if user_id is not None:
        sql += " WHERE user_id = ?"
        params.append(user_id)
    sql += " ORDER BY updated_at DESC, session_id LIMIT ? OFFSET ?"
    params += [-1 if limit is None else limit, offset]
    return [row_to_session(row) for row in conn.execute(sql, params)]


def delete_session(conn: Connection, table: str, session_id: str, user_id: str | None) -> bool:
    """Inside the caller's write transaction."""
    if not sees_session(_owner_id(conn, table, session_id), user_id):
        return False
    conn.execute(f"DELETE FROM {table}_runs WHERE session_id = ?", (session_id,))
    conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
    return True
