"""noted: long-term memory for LLM agents."""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from noted.agent import Agent, Tool
from noted.audit import AuditContext, MemoryEvent
from noted.db import InMemoryDb, MemoryQuery, MemoryStore, SessionStore, SqliteDb, Store, open_store
from noted.errors import (
    ConflictError,
    DamagedMemoryError,
    ModelError,
    NotedError,
    NotFoundError,
    RunNotSavedError,
    RunTooLargeError,
    SchemaVersionError,
    StoreError,
    UserError,
)
from noted.memory import Memory, MemoryManager, MemoryUpdate, SessionSummarizer
from noted.models import Message
from noted.schema import MemoryMatch, UserMemory, UserStats
from noted.sessions import RunResult, Session, SessionSummary

if _TYPE_CHECKING:
    from noted.db.mongodb import MongoDb
    from noted.db.postgres import PostgresDb
    from noted.db.redisdb import RedisDb

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AuditContext",
    "ConflictError",
    "DamagedMemoryError",
    "InMemoryDb",
    "Memory",
    "MemoryEvent",
    "MemoryManager",
    "MemoryMatch",
    "MemoryQuery",
    "MemoryStore",
    "MemoryUpdate",
    "Message",
    "ModelError",
    "MongoDb",
    "NotFoundError",
    "NotedError",
    "PostgresDb",
    "RedisDb",
    "RunNotSavedError",
    "RunResult",
    "RunTooLargeError",
    "SchemaVersionError",
    "Session",
    "SessionStore",
    "SessionSummarizer",
    "SessionSummary",
    "SqliteDb",
    "Store",
    "StoreError",
    "Tool",
    "UserError",
    "UserMemory",
    "UserStats",
    "__version__",
    "open_store",
]


def __getattr__(name: str) -> _Any:
    """PostgresDb, MongoDb and RedisDb, imported when first named (optional drivers)."""
    if name in ("MongoDb", "PostgresDb", "RedisDb"):
        import noted.db

        return getattr(noted.db, name)
    raise AttributeError(f"module 'noted' has no attribute {name!r}")
