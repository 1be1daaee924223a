"""Keyword searches asked again, answered from kept results while the user's memories are
unchanged.

The agent's memory selection asks the same searches at every turn (the user's name, what
they are allergic to), and an agent's context and its memory manager search the same
message. PostgreSQL ranks each afresh, reading every match (30 ms for the name's words
among 10,000 memories that keep their conversations). So a search asked a second time is
kept with the user's generation: a number in ``<memory_table>_generations`` that every
write of the user's memories moves on, first thing in its transaction (see
:meth:`~noted.db.postgres.store.PostgresDb`'s writes). While it stays the same, no write of
the user has committed since, and the kept rows are the answer; reading it is one indexed
row (about 0.1 ms).

Why the answer is never stale: the generation is read before the search, in an earlier
statement, so the search sees every write that the generation counts (and maybe more).
A write that commits after the generation was read moves it on, so the next search asks
again. Moving the generation first also means two transactions writing one user wait for
each other from their start, never halfway (which could deadlock), and several users are
moved in the order of their ids.

Vectors stored for memories (embeddings) do not move the generation: keyword results do
not depend on them. A search inside a write batch's transaction is never kept: its own
writes, not committed, could still be rolled back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import Final

from noted.db.postgres.query import Conn, Row
from noted.db.postgres.schema import Names

__all__ = ["KeptSearches", "move_sql", "moved_users"]

SEARCHES_KEPT: Final = 128  # searches whose results are kept, the last used
ROWS_KEPT: Final = 1_000  # at most, in one search's kept results
ASKED_KEPT: Final = 1_024  # searches remembered as asked once


def move_sql(names: Names) -> str:
    """The statement that moves on the generation of each of its users (a sorted list of
    distinct ids, its one parameter)."""
    g = names.generations
    return (
        f"INSERT INTO {g} (user_id, generation) SELECT u, 1 FROM unnest(%s::text[]) AS u "
        f"ORDER BY u ON CONFLICT (user_id) DO UPDATE SET generation = {g}.generation + 1"
    )


def moved_users(users: Sequence[str | None]) -> list[str]:
    """The distinct users of a write, sorted: the order their generations are moved in."""
    return sorted({u for u in users if u is not None})


class KeptSearches:
    """The kept results of one store's repeated keyword searches (thread-safe)."""

    def __init__(self, names: Names) -> None:
        self._read = f"SELECT generation FROM {names.generations} WHERE user_id = %s"
        self._lock = threading.Lock()
        self._asked: OrderedDict[Hashable, None] = OrderedDict()
        self._kept: OrderedDict[Hashable, tuple[int, list[Row]]] = OrderedDict()

    def asked_before(self, key: Hashable) -> bool:
        """Whether ``key`` was asked before; noted as asked now."""
        with self._lock:
            if key in self._kept or key in self._asked:
                self._asked.pop(key, None)
                return True
            self._asked[key] = None
            if len(self._asked) > ASKED_KEPT:
                self._asked.popitem(last=False)
            return False

    def generation(self, conn: Conn, user_id: str) -> int:
        row = conn.execute(self._read, (user_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def get(self, key: Hashable, generation: int) -> list[Row] | None:
        with self._lock:
            known = self._kept.get(key)
            if known is None or known[0] != generation:
                return None
            self._kept.move_to_end(key)
            return known[1]

    def keep(self, key: Hashable, generation: int, rows: list[Row]) -> None:
        if len(rows) > ROWS_KEPT:
            return
        with self._lock:
            self._kept[key] = (generation, rows)
            self._kept.move_to_end(key)
            if len(self._kept) > SEARCHES_KEPT:
                self._kept.popitem(last=False)
