"""Revoked user tokens, kept in the store so that every worker and host of a server sees
a revocation at once.

A revocation is a cutoff time per subject: a user id, or everyone. A token of user ``u``
is revoked when it was issued at or before the later of ``u``'s cutoff and everyone's.
A cutoff only moves forward: revoking again with an earlier time changes nothing.

Each backend keeps the cutoffs next to its memories, created on the first revocation:

- SQLite and PostgreSQL: a table ``<memory_table>_revoked (subject, revoked_before)``;
- MongoDB: a collection ``<memory_table>_revoked`` of ``{_id: subject, before: t}``;
- Redis: a hash ``<memory_table>:revoked``, subject -> t;
- InMemoryDb: a dict (one process only).

The subject of "everyone" is the empty string, which no user id can be. Times are
seconds since the epoch (floats).
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Final, Protocol, runtime_checkable

from noted.errors import UserError
from noted.schema import check_id

if TYPE_CHECKING:
    import threading

__all__ = [
    "EVERYONE",
    "InMemoryRevocations",
    "MongoRevocations",
    "PostgresRevocations",
    "RedisRevocations",
    "SqliteRevocations",
    "TokenRevocations",
]

EVERYONE: Final = ""
SUFFIX: Final = "_revoked"


@runtime_checkable
class TokenRevocations(Protocol):
    """A store that keeps token revocations (every noted backend does)."""

    def revoke_tokens(self, user_id: str | None, before: float) -> float:
        """Revoke the tokens of ``user_id`` (None: every user's) issued at or before
        ``before`` (seconds since the epoch). Returns the cutoff now in force, which is
        ``before`` or a later one already recorded."""
        ...

    def tokens_revoked_before(self, user_id: str) -> float | None:
        """The time at or before which ``user_id``'s tokens are revoked, or None."""
        ...


def _subject(user_id: str | None, before: float) -> tuple[str, float]:
    subject = check_id("user_id", user_id)
    if isinstance(before, bool) or not isinstance(before, int | float) or not math.isfinite(before):
        raise UserError(f"before must be a time in seconds since the epoch, got {before!r}")
    return (EVERYONE if subject is None else subject), float(before)


def _latest(cutoffs: Iterable[Any]) -> float | None:
    found = [float(c) for c in cutoffs if c is not None]
    return max(found) if found else None


# -- SQLite ----------------------------------------------------------------------------------


class _SqliteLike(Protocol):
    memory_table: str

    def _session(self) -> AbstractContextManager[sqlite3.Connection]: ...
    def _transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


class SqliteRevocations:
    """:class:`TokenRevocations` for SqliteDb."""

    def revoke_tokens(self: _SqliteLike, user_id: str | None, before: float) -> float:
        subject, cutoff = _subject(user_id, before)
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
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return None  # nothing was ever revoked
                raise
        return _latest(row[0] for row in rows)


# -- PostgreSQL ------------------------------------------------------------------------------


class _PostgresLike(Protocol):
    memory_table: str
    schema: str | None

    def _connection(self) -> AbstractContextManager[Any]: ...


def _pg_table(store: _PostgresLike) -> str:
    name = store.memory_table + SUFFIX
    return f'"{store.schema}"."{name}"' if store.schema else f'"{name}"'


class PostgresRevocations:
    """:class:`TokenRevocations` for PostgresDb."""

    def revoke_tokens(self: _PostgresLike, user_id: str | None, before: float) -> float:
        subject, cutoff = _subject(user_id, before)
        table = _pg_table(self)
        with self._connection() as conn:
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {table} "
                "(subject TEXT PRIMARY KEY, revoked_before DOUBLE PRECISION NOT NULL)"
            )
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
        return _latest(row[0] for row in rows)


# -- MongoDB ---------------------------------------------------------------------------------


class _MongoLike(Protocol):
    memory_table: str

    def _db(self) -> AbstractContextManager[Any]: ...


class MongoRevocations:
    """:class:`TokenRevocations` for MongoDb."""

    def revoke_tokens(self: _MongoLike, user_id: str | None, before: float) -> float:
        from pymongo import ReturnDocument

        subject, cutoff = _subject(user_id, before)
        with self._db() as c:
            found = c.memories.database[self.memory_table + SUFFIX].find_one_and_update(
                {"_id": subject},
                {"$max": {"before": cutoff}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        return float(found["before"])

    def tokens_revoked_before(self: _MongoLike, user_id: str) -> float | None:
        with self._db() as c:
            found = c.memories.database[self.memory_table + SUFFIX].find(
                {"_id": {"$in": [user_id, EVERYONE]}}
            )
            return _latest(doc.get("before") for doc in found)


# -- Redis -----------------------------------------------------------------------------------

_REDIS_MAX: Final = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local new = tonumber(ARGV[2])
if old == nil or old < new then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return ARGV[2]
end
return redis.call('HGET', KEYS[1], ARGV[1])
"""


class _RedisLike(Protocol):
    memory_table: str
    _client: Any

    def _mapped_errors(self) -> AbstractContextManager[None]: ...


class RedisRevocations:
    """:class:`TokenRevocations` for RedisDb."""

    def revoke_tokens(self: _RedisLike, user_id: str | None, before: float) -> float:
        subject, cutoff = _subject(user_id, before)
        key = self.memory_table + ":revoked"
        with self._mapped_errors():
            return float(self._client.eval(_REDIS_MAX, 1, key, subject, repr(cutoff)))

    def tokens_revoked_before(self: _RedisLike, user_id: str) -> float | None:
        with self._mapped_errors():
            found = self._client.hmget(self.memory_table + ":revoked", [user_id, EVERYONE])
        return _latest(value for value in found if value is not None)


# -- in memory -------------------------------------------------------------------------------


class _InMemoryLike(Protocol):
    _lock: threading.Lock
    _revoked: dict[str, float]


class InMemoryRevocations:
    """:class:`TokenRevocations` for InMemoryDb (seen by this process only)."""

    def revoke_tokens(self: _InMemoryLike, user_id: str | None, before: float) -> float:
        subject, cutoff = _subject(user_id, before)
        with self._lock:
            kept = self._revoked[subject] = max(cutoff, self._revoked.get(subject, cutoff))
        return kept

    def tokens_revoked_before(self: _InMemoryLike, user_id: str) -> float | None:
        with self._lock:
            return _latest(self._revoked.get(s) for s in (user_id, EVERYONE) if s in self._revoked)
