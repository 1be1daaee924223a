"""What the clearing tests of every store share: a clear run in another thread, and the
peak of Python memory a clear takes."""

from __future__ import annotations

import threading
import tracemalloc
from dataclasses import dataclass, field

from noted import Memory


@dataclass
class Clearing:
    """A clear of ``user``'s memories running in another thread: ``done`` is set when it
    returns or fails, ``cleared`` then holds what it returned."""

    memory: Memory
    user: str = "ava"
    done: threading.Event = field(default_factory=threading.Event)
    cleared: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._clear)
        self.thread.start()

    def _clear(self) -> None:
        try:
            self.cleared.append(self.memory.clear(user_id=self.user))
        finally:
            self.done.set()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the clear never returned"


def clear_peak(memory: Memory, user: str = "ava") -> tuple[int, int]:
    """Clear ``user``: how many memories went, and the peak of Python memory meanwhile."""
    tracemalloc.start()
    try:
        cleared = memory.clear(user_id=user)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return cleared, peak
