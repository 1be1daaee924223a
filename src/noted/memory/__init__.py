"""The Memory API and, as they arrive, the parts that decide what to remember."""

from noted.memory.memory import DEFAULT_USER_ID, Memory

__all__ = ["DEFAULT_USER_ID", "Memory"]
