"""Where memories and sessions are stored: the store protocols and their backends.

SqliteDb and InMemoryDb need nothing beyond noted itself; PostgresDb, MongoDb and RedisDb
are imported on first use, with their drivers (``pip install 'noted[postgres]'`` and so on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from noted.db.base import MemoryQuery, MemoryStore, SessionStore, Store
from noted.db.memory import InMemoryDb
from noted.db.sqlite import SqliteDb
from noted.db.urls import open_store

if TYPE_CHECKING:
    from noted.db.mongodb import MongoDb
    from noted.db.postgres import PostgresDb
    from noted.db.redisdb import RedisDb

__all__ = [
    "InMemoryDb",
    "MemoryQuery",
    "MemoryStore",
    "MongoDb",
    "PostgresDb",
    "RedisDb",
    "SessionStore",
    "SqliteDb",
    "Store",
    "open_store",
]

_LAZY = {
    "MongoDb": "noted.db.mongodb",
    "PostgresDb": "noted.db.postgres",
    "RedisDb": "noted.db.redisdb",
}


def __getattr__(name: str) -> Any:
    """The server backends, imported when first named (their drivers are optional)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'noted.db' has no attribute {name!r}")
