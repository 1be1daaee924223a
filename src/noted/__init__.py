"""noted: long-term memory for LLM agents."""

from noted.db import InMemoryDb, MemoryQuery, MemoryStore, SqliteDb
from noted.errors import (
    ConflictError,
    ModelError,
    NotedError,
    NotFoundError,
    SchemaVersionError,
    StoreError,
    UserError,
)
from noted.memory import Memory
from noted.schema import UserMemory, UserStats

__version__ = "0.1.0"

__all__ = [
    "ConflictError",
    "InMemoryDb",
    "Memory",
    "MemoryQuery",
    "MemoryStore",
    "ModelError",
    "NotFoundError",
    "NotedError",
    "SchemaVersionError",
    "SqliteDb",
    "StoreError",
    "UserError",
    "UserMemory",
    "UserStats",
    "__version__",
]
