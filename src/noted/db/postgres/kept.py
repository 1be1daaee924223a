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

The generation is read with the table's oid above the number (:data:`STAMPED`): a table
made again (dropped with its schema or its database, and set up again by a call, see
:mod:`noted.db.postgres.lost`) counts its users' generations from 1 again, and another
process's writes there take the numbers that results kept here were read at, with other
memories. The new table has another oid, so those results are not taken for answers. The
oid comes in the same row as the number: nothing more is asked.

Vectors stored for memories (embeddings) move the generation too: keyword results do not
depend on them, but the vectors held in the process do (see :mod:`noted.db.postgres.held`).
A search inside a write batch's transaction is never kept: its own
writes, not committed, could still be rolled back.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Final

from noted.db._kept import KeptResults
from noted.db.postgres.query import Conn
from noted.db.postgres.schema import Names

__all__ = ["STAMPED", "GenerationOf", "KeptSearches", "move_sql", "moved_users"]

ASKED_KEPT: Final = 1_024  # searches remembered as asked once
# a row's generation as the process keeps it: the oid of the table above the number (a
# generation is a bigint), so the same number in a table made again is another generation
STAMPED: Final = "(tableoid::bigint::numeric * 18446744073709551616 + generation)"


def move_sql(names: Names) -> str:
    """The statement that moves on the generation of each of its users (a sorted list of
    distinct ids, its one parameter), returning each user and the generation moved to
    (:data:`STAMPED`, as ``generation``)."""
    g = names.generations
    return (
        f"INSERT INTO {g} (user_id, generation) SELECT u, 1 FROM unnest(%s::text[]) AS u "
        f"ORDER BY u ON CONFLICT (user_id) DO UPDATE SET generation = {g}.generation + 1 "
        f"RETURNING user_id, {STAMPED} AS generation"
    )


def moved_users(users: Iterable[str]) -> list[str]:
    """The distinct users of a write, sorted: the order their generations are moved in."""
    return sorted(set(users))


class GenerationOf:
    """Reads a user's generation (:data:`STAMPED`; 0 for a user never written); ``sql`` is
    the statement, the user's id its one parameter."""

    def __init__(self, names: Names) -> None:
        self.sql = f"SELECT {STAMPED} FROM {names.generations} WHERE user_id = %s"

    def __call__(self, conn: Conn, user_id: str) -> int:
        row = conn.execute(self.sql, (user_id,)).fetchone()
        return 0 if row is None else int(row[0])


class KeptSearches(KeptResults[int]):
    """The kept results of one store's repeated keyword searches, by the user's generation
    (thread-safe)."""

    def __init__(self, names: Names) -> None:
        super().__init__()
        self.generation = GenerationOf(names)
        self._asking = threading.Lock()
        self._asked: OrderedDict[Hashable, None] = OrderedDict()

    def asked_before(self, key: Hashable) -> bool:
        """Whether ``key`` was asked before; noted as asked now."""
        if key in self:
            return True
        with self._asking:
            if key in self._asked:
                del self._asked[key]
                return True
            self._asked[key] = None
            if len(self._asked) > ASKED_KEPT:
                self._asked.popitem(last=False)
            return False
