"""Agno's names on noted: code written for Agno's memory API runs with its imports changed
from ``from agno.X import Y`` to ``from noted.agno import Y``.

Agno 1.x (``agno.memory.v2``, ``agno.storage``) and Agno 2.x (``agno.db``) names are both
here; see docs/migrating.md for the mapping and for importing an Agno database's memories
and sessions into noted.
"""

from noted.agno.agent import Agent
from noted.agno.memory import Memory, RunResponse, UserMemory
from noted.agno.models import Claude, Gemini, OpenAIChat
from noted.agno.storage import (
    MongoMemoryDb,
    PostgresDb,
    PostgresMemoryDb,
    PostgresStorage,
    RedisMemoryDb,
    SqliteDb,
    SqliteMemoryDb,
    SqliteStorage,
)
from noted.memory.manager import MemoryManager
from noted.memory.summary import SessionSummarizer
from noted.models.types import Message

__all__ = [
    "Agent",
    "Claude",
    "Gemini",
    "Memory",
    "MemoryManager",
    "Message",
    "MongoMemoryDb",
    "OpenAIChat",
    "PostgresDb",
    "PostgresMemoryDb",
    "PostgresStorage",
    "RedisMemoryDb",
    "RunResponse",
    "SessionSummarizer",
    "SqliteDb",
    "SqliteMemoryDb",
    "SqliteStorage",
    "UserMemory",
]
