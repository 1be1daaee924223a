"""Agno's database classes as noted stores.

Agno 1.x's ``SqliteMemoryDb`` / ``PostgresMemoryDb`` / ``MongoMemoryDb`` /
``RedisMemoryDb`` (memories) and ``SqliteStorage`` / ``PostgresStorage`` (agent sessions)
name one table (collection, key prefix) each; Agno 2.x's ``SqliteDb`` /
``PostgresDb`` keep both. Each is a :class:`noted.SqliteDb` or
:class:`noted.db.postgres.PostgresDb` whose memory or session table takes the given name;
the other table keeps noted's default name. A SQLite file's parent folders are created
when it is first opened; database URLs may name a driver (``postgresql+psycopg://``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from noted.db import sqlite
from noted.db.sqlite.migrations import VERSION_TABLE
from noted.errors import StoreError, UserError

if TYPE_CHECKING:
    from noted.db import mongodb, postgres, redisdb

__all__ = [
    "MongoMemoryDb",
    "PostgresDb",
    "PostgresMemoryDb",
    "PostgresStorage",
    "RedisMemoryDb",
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


def _refuse_agno_tables(path: Path, tables: dict[str, str]) -> None:
    """A UserError when the file holds a table Agno wrote under one of the names given
    noted's tables (``tables``, by the argument that named each): its columns are Agno's
    and noted never recorded it as its own. noted's queries would fail on it ("no such
    column"), after the file had been switched to WAL; this looks first, read-only, and
    changes nothing."""
    if not path.is_file():
        return
    from noted.importers.agno import is_agno_table
    from noted.importers.sources import SqliteSource

    try:
        source = SqliteSource(path)
    except StoreError:
        return  # not a database noted can read either: its own open says so
    try:
        ours: set[str] = set()
        if source.columns(VERSION_TABLE) is not None:
            ours = {str(r["table_name"]).lower() for r in source.rows(VERSION_TABLE, "1")}
        for option, table in tables.items():
            columns = source.columns(table)
            if columns is None or table.lower() in ours or not is_agno_table(set(columns)):
                continue
            raise UserError(
                f"{path}: table {table!r} was written by Agno, and noted keeps tables of its "
                f"own: bring its memories and sessions over with `noted import agno {path} "
                f"--db NOTED_DB`, or give noted another table ({option}=...)"
            )
    except StoreError:
        return
    finally:
        source.close()


class _SqliteAdapter(sqlite.SqliteDb):
    def __init__(
        self,
        db_file: str | os.PathLike[str] | None,
        db_url: str | None,
        memory_table: str,
        session_table: str,
        named: dict[str, str],
    ) -> None:
        """``named``: the tables the caller named, by the argument that named each."""
        path = _sqlite_file(db_file, db_url)
        _refuse_agno_tables(path, named)
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
        named = {"table_name": table_name}
        super().__init__(db_file, db_url, table_name, _NOTED_SESSIONS, named)


class SqliteStorage(_SqliteAdapter):
    """``SqliteStorage(table_name="agent_sessions", db_file="tmp/agent.db")``: sessions."""

    def __init__(
        self,
        table_name: str,
        db_url: str | None = None,
        db_file: str | os.PathLike[str] | None = None,
        mode: str | None = "agent",
    ) -> None:
        named = {"table_name": table_name}
        super().__init__(db_file, db_url, _NOTED_MEMORIES, table_name, named)
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
        given = {"memory_table": memory_table, "session_table": session_table}
        named = {option: table for option, table in given.items() if table is not None}
        super().__init__(
            db_file,
            db_url,
            memory_table or _NOTED_MEMORIES,
            session_table or _NOTED_SESSIONS,
            named,
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


def MongoMemoryDb(
    collection_name: str = "memory",
    db_url: str | None = None,
    db_name: str = "noted",
    client: Any = None,
) -> mongodb.MongoDb:
    """``MongoMemoryDb(collection_name="memory", db_url="mongodb://...")`` (or
    ``client=MongoClient(...)``): memories in that collection of a MongoDB database, noted's
    ``noted`` unless ``db_name`` names another (Agno's ``agno`` holds Agno's own)."""
    if client is None and db_url is None:
        raise UserError("give db_url='mongodb://host:27017' or client=MongoClient(...)")
    from noted.db.mongodb import MongoDb

    return MongoDb(
        db_url or "mongodb://localhost:27017",
        db_name,
        memory_table=collection_name,
        session_table=_NOTED_SESSIONS,
        client=client,
    )


def RedisMemoryDb(
    prefix: str = "agno_memory",
    host: str = "localhost",
    port: int = 6379,
    db: int = 0,
    password: str | None = None,
) -> redisdb.RedisDb:
    """``RedisMemoryDb(prefix="agno_memory", host=..., port=..., db=..., password=...)``:
    memories in Redis under keys that begin with ``prefix``. ``host`` is a name or an
    address, IPv6 ones (``::1``) included, as Agno's takes it."""
    from noted.db.redisdb import RedisDb

    login = "" if password is None else f":{quote(password, safe='')}@"
    return RedisDb(f"redis://{login}{_url_host(host)}:{port}/{db}", memory_table=prefix)


def _url_host(host: str) -> str:
    """``host`` as a URL names it: an IPv6 address between brackets (its colons would be
    read as the port's)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
