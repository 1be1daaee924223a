"""Token revocations kept by PostgresDb (see :mod:`noted.db.revocations`).

The table is made by the first revocation. Two processes making it at once (the first
revocations sent to two servers of one database) would collide in PostgreSQL's catalog,
``CREATE TABLE IF NOT EXISTS`` or not, so it is made holding the lock a store holds while
it sets up the database (:data:`~noted.db.postgres.schema.SET_UP_LOCK`).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from noted.db.postgres.schema import SET_UP_LOCK
from noted.db.revocations import EVERYONE, SUFFIX, latest_cutoff, revocation_subject

__all__ = ["PostgresRevocations"]


class _PostgresLike(Protocol):
    memory_table: str
    schema: str | None

    def _connection(self) -> AbstractContextManager[Any]: ...


def _pg_table(store: _PostgresLike) -> str:
    name = store.memory_table + SUFFIX
    return f'"{store.schema}"."{name}"' if store.schema else f'"{name}"'


def _create_table(conn: Any, table: str) -> None:
    """Make the revocations table unless it is there, one process at a time."""
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is not None:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (SET_UP_LOCK,))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table} "
            "(subject TEXT PRIMARY KEY, revoked_before DOUBLE PRECISION NOT NULL)"
        )


class PostgresRevocations:
    """:class:`TokenRevocations` for PostgresDb."""

    def revoke_tokens(self: _PostgresLike, user_id: str | None, before: float) -> float:
        subject, cutoff = revocation_subject(user_id, before)
        table = _pg_table(self)
        with self._connection() as conn:
            _create_table(conn, table)
            row = conn.execute(
                f"INSERT INTO {table} AS t VALUES (%s, %s) ON CONFLICT (subject) DO UPDATE "
                "SET revoked_before = GREATEST(t.revoked_before, EXCLUDED.revoked_before) "
                "RETURNING revoked_before",
                (subject, cutoff),
            ).fetchone()
        return float(row[0])

    def tokens_revoked_before(self: _PostgresLike, user_id: str) -> float | None:
        from psycopg.errors import UndefinedTable

        with self._connection() as conn:
            try:
                rows = conn.execute(
                    f"SELECT revoked_before FROM {_pg_table(self)} WHERE subject IN (%s, %s)",
                    (user_id, EVERYONE),
                ).fetchall()
            except UndefinedTable:
                return None  # nothing was ever revoked
        return latest_cutoff(row[0] for row in rows)
