"""Where memories are stored: the MemoryStore protocol and its backends."""

from noted.db.base import MemoryQuery, MemoryStore
from noted.db.memory import InMemoryDb
from noted.db.sqlite import SqliteDb

__all__ = ["InMemoryDb", "MemoryQuery", "MemoryStore", "SqliteDb"]
