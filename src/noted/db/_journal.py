"""What this process's own committed writes changed, by user and generation.

Every write transaction moves the generation of each user whose rows it writes (see
:class:`~noted.db.sqlite.vectors.SqliteVectors` and :mod:`noted.db.postgres.held`), so a
user's vectors loaded at generation ``g`` are stale at ``g + 1``. Reading them all again
costs a read of every vector of the user (about 25 ms at 10,000 memories on SQLite, 50-80
ms on PostgreSQL), while a write usually touches one memory. The
journal keeps, for the writes this process committed, which memories each generation
touched; when every generation between the loaded one and the current one is in it, the
vectors are brought up to date by reading those memories only. A generation moved by
another process (or by a write too large to list) has no entry, so the next search reads
the user's vectors in full, as without the journal: the journal can only make a reload
smaller, never skip one that is needed.

Entries are staged while their transaction runs and kept only once it commits: a rolled
back transaction leaves its generation to be taken by the next writer, maybe another
process's, whose changes the staged entry would not describe.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

__all__ = ["ChangeJournal", "Written"]

GENERATIONS_KEPT: Final = 64  # per user, the newest
# memory ids and generations in all (a few MB): past it, the users least recently written go
IDS_KEPT: Final = 65_536
LISTED_AT_MOST: Final = 4096  # memory ids of one write; a larger write has no entry


@dataclass(frozen=True, slots=True)
class Written:
    """The memories some generations of a user wrote: ``ids``, and whether any of them was
    deleted (a memory keeps its rowid while it lives; a deleted one may come back under
    another)."""

    ids: frozenset[str]
    deleted: bool


class ChangeJournal:
    """The memory ids each committed generation of a user touched. Not thread-safe: its
    store calls it under a lock (SQLite's: the store's, writes in their transaction and
    reads in a session; PostgreSQL's: the held vectors' own)."""

    def __init__(self) -> None:
        self._staged: list[tuple[str, int, Written | None]] = []
        self._kept: OrderedDict[str, dict[int, Written | None]] = OrderedDict()
        self._ids = 0  # how many memory ids are kept, in all

    def stage(
        self, user_id: str, generation: int, memory_ids: Iterable[str] | None, deleted: bool
    ) -> None:
        """Note that the running transaction moved ``user_id`` to ``generation``, writing
        ``memory_ids`` (None when they are not known), ``deleted`` if it deleted them."""
        entry = None
        if memory_ids is not None:
            ids = frozenset(memory_ids)
            if len(ids) <= LISTED_AT_MOST:
                entry = Written(ids, deleted)
        self._staged.append((user_id, generation, entry))

    def commit(self) -> None:
        """The running transaction committed: keep what it staged."""
        for user_id, generation, written in self._staged:
            generations = self._kept.pop(user_id, {})
            if generation in generations:  # written again by this process: replaced
                self._ids -= _size(generations[generation])
            self._ids += _size(written)
            generations[generation] = written
            while len(generations) > GENERATIONS_KEPT:
                self._ids -= _size(generations.pop(min(generations)))
            self._kept[user_id] = generations
        self._staged.clear()
        while self._ids > IDS_KEPT and self._kept:
            _, generations = self._kept.popitem(last=False)
            self._ids -= sum(_size(written) for written in generations.values())

    def forget(self, user_id: str, upto: int) -> None:
        """Drop the user's generations up to ``upto`` (their vectors are loaded at it)."""
        generations = self._kept.get(user_id, {})
        for generation in [g for g in generations if g <= upto]:
            self._ids -= _size(generations.pop(generation))
        if not generations:  # a user with nothing kept is no entry (one per user searched)
            self._kept.pop(user_id, None)

    def discard(self) -> None:
        """The running transaction rolled back: forget what it staged."""
        self._staged.clear()

    def written(self, user_id: str, loaded: int, current: int) -> Written | None:
        """What the generations after ``loaded`` up to ``current`` wrote, or None unless
        this process committed every one of them and listed their memories."""
        generations = self._kept.get(user_id)
        if generations is None or not loaded < current:
            return None
        ids: set[str] = set()
        deleted = False
        for generation in range(loaded + 1, current + 1):
            written = generations.get(generation)
            if written is None:
                return None
            ids |= written.ids
            deleted = deleted or written.deleted
        return Written(frozenset(ids), deleted)


def _size(written: Written | None) -> int:
    """What a generation's entry counts against IDS_KEPT: itself and its ids (an entry
    without ids counts too, so entries of unlisted writes cannot pile up)."""
    return 1 + (0 if written is None else len(written.ids))
