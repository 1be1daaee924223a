"""Token revocations kept by SqliteDb (see :mod:`noted.db.revocations`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol

import apsw

from noted.db.revocations import EVERYONE, SUFFIX, latest_cutoff, revocation_subject
from noted.db.sqlite.connection import Connection

__all__ = ["SqliteRevocations"]


class _SqliteLike(Protocol):
    memory_table: str

    def _session(self) -> AbstractContextManager[Connection]: ...
    def _transaction(self) -> AbstractContextManager[Connection]: ...


class SqliteRevocations:
    """:class:`TokenRevocations` for SqliteDb."""

    def revoke_tokens(self: _SqliteLike, user_id: str | None, before: float) -> float:
        subject, cutoff = revocation_subject(user_id, before)
        table = self.memory_table + SUFFIX
        with self._transaction() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} "
                "(subject TEXT PRIMARY KEY, revoked_before REAL NOT NULL) WITHOUT ROWID"
            )
            conn.execute(
                f"INSERT INTO {table} VALUES (?, ?) ON CONFLICT (subject) DO UPDATE "
                "SET revoked_before = max(revoked_before, excluded.revoked_before)",
                (subject, cutoff),
            )
            row = conn.execute(
                f"SELECT revoked_before FROM {table} WHERE subject = ?", (subject,)
            ).fetchone()
        return float(row[0])

    def tokens_revoked_before(self: _SqliteLike, user_id: str) -> float | None:
        table = self.memory_table + SUFFIX
        with self._session() as conn:
            try:
                rows = conn.execute(
                    f"SELECT revoked_before FROM {table} WHERE subject IN (?, ?)",
                    (user_id, EVERYONE),
                ).fetchall()
            except apsw.SQLError as exc:
                if "no such table" in str(exc):
                    return None  # nothing was ever revoked
                raise
        return latest_cutoff(row[0] for row in rows)
