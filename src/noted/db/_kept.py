"""Search results kept with the version of the data they were read at: SQLite's keyword
searches and PostgreSQL's asked again (by the user's generation). A kept search is the
answer while the version read before asking again is the same; the last ``searches`` used
are kept, each of at most ``rows`` results."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Final, Generic, TypeVar

__all__ = ["KeptResults"]

SEARCHES_KEPT: Final = 128
ROWS_KEPT: Final = 1_000

V = TypeVar("V")


class KeptResults(Generic[V]):
    """Results by search, each with the version ``V`` it was read at (thread-safe)."""

    def __init__(self, searches: int = SEARCHES_KEPT, rows: int = ROWS_KEPT) -> None:
        self.searches, self.rows = searches, rows
        self._lock = threading.Lock()
        self._kept: OrderedDict[Hashable, tuple[V, list[Any]]] = OrderedDict()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._kept

    def get(self, key: Hashable, version: V) -> list[Any] | None:
        """The results kept for ``key`` if they were read at ``version`` (a new list)."""
        with self._lock:
            known = self._kept.get(key)
            if known is None or known[0] != version:
                return None
            self._kept.move_to_end(key)
            return list(known[1])

    def keep(self, key: Hashable, version: V, rows: list[Any]) -> None:
        if len(rows) > self.rows:
            return
        with self._lock:
            self._kept[key] = (version, rows)
            self._kept.move_to_end(key)
            if len(self._kept) > self.searches:
                self._kept.popitem(last=False)
