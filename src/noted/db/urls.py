"""Opening a backend from one string: a SQLite path or a database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from noted.db.base import Store
from noted.db.memory import InMemoryDb
from noted.db.sqlite import SqliteDb
from noted.errors import UserError

__all__ = ["open_store"]

_SCHEMES = "a file path, sqlite:///PATH, postgresql://, mongodb://, redis:// or memory://"


def open_store(target: str, **options: object) -> Store:
    """The backend ``target`` names, with its table names and other ``options``:

    - ``notes.db`` or ``sqlite:///notes.db``: :class:`SqliteDb` (the embedded default);
    - ``postgresql://user:pass@host:5432/db`` (also ``postgresql+psycopg://``):
      :class:`~noted.db.postgres.PostgresDb`;
    - ``mongodb://host:27017/noted`` (the path names the database, ``noted`` if none):
      :class:`~noted.db.mongodb.MongoDb`;
    - ``redis://host:6379/0``: :class:`~noted.db.redisdb.RedisDb`;
    - ``memory://``: :class:`InMemoryDb`, gone when the process ends.
    """
    if not isinstance(target, str) or not target.strip():
        raise UserError(f"a database must be {_SCHEMES}; got {target!r}")
    if "://" not in target:
        return SqliteDb(Path(target), **options)  # type: ignore[arg-type]
    scheme = urlsplit(target).scheme.split("+", 1)[0].lower()
    if scheme == "sqlite":
        return SqliteDb(Path(target.split("://", 1)[1].removeprefix("/")), **options)  # type: ignore[arg-type]
    if scheme in ("postgresql", "postgres"):
        from noted.db.postgres import PostgresDb

        return PostgresDb(target, **options)  # type: ignore[arg-type]
    if scheme in ("mongodb", "mongodb+srv"):
        from noted.db.mongodb import MongoDb

        database = urlsplit(target).path.strip("/") or "noted"
        return MongoDb(target, database=database, **options)  # type: ignore[arg-type]
    if scheme in ("redis", "rediss", "unix"):
        from noted.db.redisdb import RedisDb

        return RedisDb(target, **options)  # type: ignore[arg-type]
    if scheme == "memory":
        if options:
            raise UserError(f"memory:// takes no options, got {sorted(options)}")
        return InMemoryDb()
    raise UserError(f"a database must be {_SCHEMES}; got scheme {scheme!r}")
