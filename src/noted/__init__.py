"""noted: long-term memory for LLM agents."""

from noted.agent import Agent, Tool
from noted.audit import AuditContext, MemoryEvent
from noted.db import InMemoryDb, MemoryQuery, MemoryStore, SessionStore, SqliteDb
from noted.errors import (
    ConflictError,
    ModelError,
    NotedError,
    NotFoundError,
    SchemaVersionError,
    StoreError,
    UserError,
)
from noted.memory import Memory, MemoryManager, MemoryUpdate, SessionSummarizer
from noted.models import Message
from noted.schema import UserMemory, UserStats
from noted.sessions import RunResult, Session, SessionSummary

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AuditContext",
    "ConflictError",
    "InMemoryDb",
    "Memory",
    "MemoryEvent",
    "MemoryManager",
    "MemoryQuery",
    "MemoryStore",
    "MemoryUpdate",
    "Message",
    "ModelError",
    "NotFoundError",
    "NotedError",
    "RunResult",
    "SchemaVersionError",
    "Session",
    "SessionStore",
    "SessionSummarizer",
    "SessionSummary",
    "SqliteDb",
    "StoreError",
    "Tool",
    "UserError",
    "UserMemory",
    "UserStats",
    "__version__",
]
