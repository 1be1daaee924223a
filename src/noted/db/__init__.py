"""Where memories and sessions are stored: the store protocols and their backends."""

from noted.db.base import MemoryQuery, MemoryStore, SessionStore
from noted.db.memory import InMemoryDb
from noted.db.sqlite import SqliteDb

__all__ = ["InMemoryDb", "MemoryQuery", "MemoryStore", "SessionStore", "SqliteDb"]
