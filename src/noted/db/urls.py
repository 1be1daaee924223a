"""Opening a backend from one string: a SQLite path or a database URL.

Each URL scheme names a store factory in one registry; another package adds a scheme with
:func:`register_store` or an entry point in the ``noted.stores`` group (see
:mod:`noted._plugins`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from noted._plugins import Registry
from noted.db.base import Store
from noted.db.memory import InMemoryDb
from noted.db.sqlite import SqliteDb
from noted.errors import UserError

__all__ = ["DEFAULT_TABLES", "TABLE_ENVIRONMENT", "env_tables", "open_store", "register_store"]

_SCHEMES = "a file path, sqlite:///PATH, postgresql://, mongodb://, redis:// or memory://"

# the table names the command line and the server take from the environment
TABLE_ENVIRONMENT: Final = {
    "memory_table": "NOTED_MEMORY_TABLE",
    "session_table": "NOTED_SESSION_TABLE",
}

# the names every store takes when it is given none
DEFAULT_TABLES: Final = {"memory_table": "noted_memories", "session_table": "noted_sessions"}

StoreFactory = Callable[..., Store]
STORES: Registry[StoreFactory] = Registry("noted.stores", "store")


def register_store(scheme: str, factory: StoreFactory) -> None:
    """Make URLs of ``scheme`` (also ``scheme+driver://``) open ``factory(url, **options)``."""
    STORES.register(scheme, factory)


def _sqlite(target: str, **options: object) -> Store:
    return SqliteDb(Path(target.split("://", 1)[1].removeprefix("/")), **options)  # type: ignore[arg-type]


def _postgres(target: str, **options: object) -> Store:
    from noted.db.postgres import PostgresDb

    return PostgresDb(target, **options)  # type: ignore[arg-type]


def _mongodb(target: str, **options: object) -> Store:
    from noted.db.mongodb import MongoDb

    database = urlsplit(target).path.strip("/") or "noted"
    return MongoDb(target, database=database, **options)  # type: ignore[arg-type]


def _redis(target: str, **options: object) -> Store:
    from noted.db.redisdb import RedisDb

    return RedisDb(target, **options)  # type: ignore[arg-type]


def _memory(target: str, **options: object) -> Store:
    if options:
        raise UserError(f"memory:// takes no options, got {sorted(options)}")
    return InMemoryDb()


for _scheme, _factory in (
    ("sqlite", _sqlite),
    ("postgresql", _postgres),
    ("postgres", _postgres),
    ("mongodb", _mongodb),
    ("redis", _redis),
    ("rediss", _redis),
    ("unix", _redis),
    ("memory", _memory),
):
    register_store(_scheme, _factory)


def env_tables(target: str) -> dict[str, str]:
    """The table names ``$NOTED_MEMORY_TABLE`` and ``$NOTED_SESSION_TABLE`` give for the
    store ``target`` names (none for ``memory://``, which has no tables): how the ``noted``
    command and the server's worker processes open an Agno database's tables, say."""
    if target.lower().startswith("memory://"):
        return {}
    return {
        option: os.environ[name]
        for option, name in TABLE_ENVIRONMENT.items()
        if os.environ.get(name)
    }


def open_store(target: str, **options: object) -> Store:
    """The backend ``target`` names, with its table names and other ``options``:

    - ``notes.db`` or ``sqlite:///notes.db``: :class:`SqliteDb` (the embedded default);
    - ``postgresql://user:pass@host:5432/db`` (also ``postgresql+psycopg://``):
      :class:`~noted.db.postgres.PostgresDb`;
    - ``mongodb://host:27017/noted`` (the path names the database, ``noted`` if none;
      also ``mongodb+srv://``): :class:`~noted.db.mongodb.MongoDb`;
    - ``redis://host:6379/0``: :class:`~noted.db.redisdb.RedisDb`;
    - ``memory://``: :class:`InMemoryDb`, gone when the process ends;
    - a scheme a plug-in registered.
    """
    if not isinstance(target, str) or not target.strip():
        raise UserError(f"a database must be {_SCHEMES}; got {target!r}")
    if "://" not in target:
        return SqliteDb(Path(target), **options)  # type: ignore[arg-type]
    scheme = urlsplit(target).scheme.split("+", 1)[0].lower()
    factory = STORES.get(scheme) if scheme.isidentifier() else None
    if factory is None:
        raise UserError(f"a database must be {_SCHEMES}; got scheme {scheme!r}")
    return factory(target, **options)
