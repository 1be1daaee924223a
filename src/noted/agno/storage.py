"""Agno's database classes as noted stores.

Agno 1.x's ``SqliteMemoryDb`` / ``PostgresMemoryDb`` (memories) and ``SqliteStorage`` /
``PostgresStorage`` (agent sessions) name one table each; Agno 2.x's ``SqliteDb`` /
``PostgresDb`` keep both. Each is a :class:`noted.SqliteDb` or
:class:`noted.db.postgres.PostgresDb` whose memory or session table takes the given name;
the other table keeps noted's default name. A SQLite file's parent folders are created
when it is first opened; database URLs may name a driver (``postgresql+psycopg://``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from noted.db import sqlite
from noted.errors import StoreError, UserError

if TYPE_CHECKING:
    from noted.db import postgres

__all__ = [
    "PostgresDb",
    "PostgresMemoryDb",
    "PostgresStorage",
    "SqliteDb",
    "SqliteMemoryDb",
    "SqliteStorage",
]

_NOTED_MEMORIES = "noted_memories"
_NOTED_SESSIONS = "noted_sessions"


def _sqlite_file(db_file: str | os.PathLike[str] | None, db_url: str | None) -> Path:
    """The file a ``db_file`` or a ``sqlite:///PATH`` URL names (Agno takes either)."""
    if db_file is not None and db_url is not None:
        raise UserError("give db_file or db_url, not both")
    if db_url is not None:
        scheme, sep, rest = db_url.partition("://")
        if not sep or scheme.split("+", 1)[0].lower() != "sqlite" or not rest.strip("/"):
            raise UserError(f"db_url must be a sqlite:///PATH URL, got {db_url!r}")
        return Path(rest[1:] if rest.startswith("/") else rest)
    if db_file is None:
        raise UserError("give db_file='path/to/file.db' (or db_url='sqlite:///path/to/file.db')")
    return Path(db_file)


class _SqliteAdapter(sqlite.SqliteDb):
    def __init__(
        self,
        db_file: str | os.PathLike[str] | None,
        db_url: str | None,
        memory_table: str,
        session_table: str,
    ) -> None:
        path = _sqlite_file(db_file, db_url)
        super().__init__(
            path, memory_table=memory_table, session_table=session_table, create_dirs=True
        )
        try:  # Agno makes the folders when the object is made; the file comes on first use
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create directory {path.parent}: {exc}") from exc

    def create(self) -> None:
        """Open the file and create the tables now (they are also made on first use)."""
        with self._session():
            pass


class SqliteMemoryDb(_SqliteAdapter):
    """``SqliteMemoryDb(table_name="memory", db_file="tmp/memory.db")``: memories in SQLite."""

    def __init__(
        self,
        table_name: str = "memory",
        db_url: str | None = None,
        db_file: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(db_file, db_url, table_name, _NOTED_SESSIONS)


class SqliteStorage(_SqliteAdapter):
    """``SqliteStorage(table_name="agent_sessions", db_file="tmp/agent.db")``: sessions."""

    def __init__(
        self,
        table_name: str,
        db_url: str | None = None,
        db_file: str | os.PathLike[str] | None = None,
        mode: str | None = "agent",
    ) -> None:
        super().__init__(db_file, db_url, _NOTED_MEMORIES, table_name)
        self.mode = mode


class SqliteDb(_SqliteAdapter):
    """Agno 2's ``SqliteDb(db_file=...)``: memories and sessions in one SQLite file."""

    def __init__(
        self,
        db_file: str | os.PathLike[str] | None = None,
        db_url: str | None = None,
        session_table: str | None = None,
        memory_table: str | None = None,
    ) -> None:
        super().__init__(
            db_file, db_url, memory_table or _NOTED_MEMORIES, session_table or _NOTED_SESSIONS
        )


def _postgres(
    url: str | None, schema: str | None, memory_table: str, session_table: str
) -> postgres.PostgresDb:
    if url is None:
        raise UserError("give db_url='postgresql://user:password@host:5432/database'")
    from noted.db.postgres import PostgresDb as NotedPostgresDb

    return NotedPostgresDb(
        url, schema=schema, memory_table=memory_table, session_table=session_table
    )


def _one_url(db_url: str | None, connection_string: str | None) -> str | None:
    if db_url is not None and connection_string is not None and db_url != connection_string:
        raise UserError("give db_url or connection_string, not both")
    return db_url if db_url is not None else connection_string


def PostgresMemoryDb(
    table_name: str = "memory",
    schema: str | None = None,
    db_url: str | None = None,
    *,
    connection_string: str | None = None,
) -> postgres.PostgresDb:
    """``PostgresMemoryDb(table_name=..., db_url=...)`` (or ``connection_string=...``)."""
    url = _one_url(db_url, connection_string)
    return _postgres(url, schema, table_name, _NOTED_SESSIONS)


def PostgresStorage(
    table_name: str,
    schema: str | None = None,
    db_url: str | None = None,
    mode: str | None = "agent",
) -> postgres.PostgresDb:
    """``PostgresStorage(table_name="agent_sessions", db_url=...)``: sessions in PostgreSQL
    (``mode`` is accepted for Agno's sake; every session here is an agent's)."""
    del mode
    return _postgres(db_url, schema, _NOTED_MEMORIES, table_name)


def PostgresDb(
    db_url: str | None = None,
    db_schema: str | None = None,
    session_table: str | None = None,
    memory_table: str | None = None,
) -> postgres.PostgresDb:
    """Agno 2's ``PostgresDb(db_url="postgresql+psycopg://...")``: memories and sessions."""
    return _postgres(
        db_url, db_schema, memory_table or _NOTED_MEMORIES, session_table or _NOTED_SESSIONS
    )
