"""The Memory API and the parts that decide what to remember."""

from noted.memory.manager import MemoryManager, MemoryUpdate
from noted.memory.memory import DEFAULT_USER_ID, Memory
from noted.memory.summary import SessionSummarizer

__all__ = ["DEFAULT_USER_ID", "Memory", "MemoryManager", "MemoryUpdate", "SessionSummarizer"]
