"""SqliteDb's embeddings: stored in the memory table (``embedding``, ``embedding_model``),
searched exactly over a per-user matrix kept in memory between searches.

A search's query can be centred on the user's memories (see
:mod:`noted.retrieval.vectors`): the mean is computed when the user's vectors are loaded
and kept with them, so it is made again whenever the user's rows change.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import numpy.typing as npt

from noted.db._journal import ChangeJournal, Written
from noted.db._loaded import VECTOR_COLUMNS, LoadedVectors, loaded, patched, worth_patching
from noted.db._rows import COLUMNS, IN_CHUNK, rows_to_memories
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.core import PendingCounts
from noted.db.sqlite.connection import Connection
from noted.retrieval.fusion import Hit
from noted.retrieval.vectors import (
    Vector,
    VectorCache,
    centred,
    check_vector,
    cosine_scores,
    search_target,
    to_blob,
    top_indices,
)
from noted.schema import UserMemory

__all__ = ["SqliteVectors"]

_SELECT = ", ".join(COLUMNS)
_SCORES_KEPT = 8  # the last queries' score arrays (4 bytes a memory each)
# added to the generations read from each file opened in place of the one before (see
# SqliteVectors.new_file): beyond any count of writes one file's generations reach
_FILE_STEP = 2**48
Connect = Callable[[], AbstractContextManager[Connection]]
Where = Callable[[MemoryQuery], tuple[str, list[Any]]]


_VECTOR_ROWS = "user_id = ? AND embedding_model = ? AND length(embedding) = ?"
# VECTOR_COLUMNS, with no embedding where the row has none of the model's (its name and
# the length of its bytes the first two parameters)
_WRITTEN_COLUMNS = (
    "rowid, CASE WHEN embedding_model = ? AND length(embedding) = ? THEN embedding END, "
    "memory_id, updated_at"
)


class SqliteVectors:
    """The vector side of one memory table, reached through its store's ``session``
    (reads) and ``transaction`` (writes), with its ``where`` for query filters.

    Each user's vectors stay loaded until that user's generation differs from the loaded
    one: every write of a user's rows calls :meth:`changed` in its transaction (one
    statement per transaction, however many rows), so writes from other processes count.
    Then the memories written since are read again, not all the user's vectors, when this
    process's own committed writes account for every generation in between (see
    :mod:`noted.db._journal`; the store calls :meth:`committed` and
    :meth:`rolled_back` as its transactions end).

    Another file opened in place of the store's (see :meth:`new_file`) has generations of
    its own, which may equal the ones kept: each file's are counted from its own base, so
    nothing kept of one file is ever taken for another's.
    """

    def __init__(
        self, table: str, session: Connect, transaction: Connect, where: Where, cache_bytes: int
    ) -> None:
        self.table = table
        self.cache = VectorCache(cache_bytes)
        self._session = session
        self._transaction = transaction
        self._where = where
        self._to_embed = PendingCounts()
        self._journal = ChangeJournal()
        self._kept_scores: OrderedDict[tuple[str, str, int, bytes], Vector] = OrderedDict()
        self._lock = threading.Lock()
        self._base = 0  # added to the generations read from the file now open
        self._sql_generation = f"SELECT generation FROM {table}_generations WHERE user_id = ?"
        self._sql_bump = (
            f"INSERT INTO {table}_generations (user_id, generation) VALUES (?, 1) "
            "ON CONFLICT (user_id) DO UPDATE SET generation = generation + 1 RETURNING generation"
        )
        self._sql_set = (
            f"UPDATE {table} SET embedding = ?, embedding_model = ? "
            f"WHERE memory_id = ? AND user_id = ? AND memory = ?"
        )

    def changed(
        self,
        conn: Connection,
        user_ids: Iterable[str],
        memory_ids: Iterable[str],
        *,
        deleted: bool = False,
    ) -> None:
        """Move on the generation of each user whose rows this transaction writes, the rows
        of ``memory_ids``, ``deleted`` if it deletes them."""
        ids = frozenset(memory_ids)
        for user_id in set(user_ids):
            (generation,) = conn.execute(self._sql_bump, (user_id,)).fetchone()
            self._journal.stage(user_id, self._base + int(generation), ids, deleted)

    def committed(self) -> None:
        """The store's transaction committed."""
        self._journal.commit()

    def rolled_back(self) -> None:
        """The store's transaction rolled back (or failed to commit)."""
        self._journal.discard()

    def generation(self, conn: Connection, user_id: str) -> int:
        """The generation of the user's rows, as every cache keeps it (see the class)."""
        row = conn.execute(self._sql_generation, (user_id,)).fetchone()
        return self._base + (0 if row is None else int(row[0]))

    def new_file(self) -> None:
        """The store opened a file that may be another (under the store's lock, no
        transaction open): its generations are counted from a new base, so that whatever
        is kept of the file before, even if put in by a search under way on another thread,
        is never current again; and what is kept is dropped, to free its memory."""
        self._base += _FILE_STEP
        self.cache = VectorCache(self.cache.max_bytes)
        self._to_embed = PendingCounts()
        self._journal = ChangeJournal()
        with self._lock:
            self._kept_scores = OrderedDict()

    def user_vectors(self, user_id: str, model: str, dimensions: int) -> LoadedVectors:
        """The user's vectors made by ``model``, with each row's id and time: from the cache
        while the user's rows are unchanged, else brought up to date (the generation first,
        so a change made meanwhile only makes the next search read again)."""
        key = (user_id, model, dimensions)
        with self._session() as conn:
            generation = self.generation(conn, user_id)
            cached = self.cache.get(key, generation)
            if isinstance(cached, LoadedVectors):
                return cached
            entry = self._patched(conn, key, generation)
            if entry is None:
                rows = conn.execute(
                    f"SELECT {VECTOR_COLUMNS} FROM {self.table} "
                    f"WHERE {_VECTOR_ROWS} ORDER BY rowid",
                    (user_id, model, 4 * dimensions),
                ).fetchall()
            self._journal.forget(user_id, generation)
        if entry is None:
            entry = loaded(generation, rows, dimensions)
        self.cache.put(key, entry)
        return entry

    def _patched(
        self, conn: Connection, key: tuple[str, str, int], generation: int
    ) -> LoadedVectors | None:
        """The vectors kept for ``key`` brought to ``generation`` by reading the memories
        written since, or None when the journal cannot say which, or they are many."""
        user_id, model, dimensions = key
        kept = self.cache.peek(key)
        if not isinstance(kept, LoadedVectors):
            return None
        written = self._journal.written(user_id, kept.generation, generation)
        if written is None or not worth_patching(kept, written):
            return None
        rows = self._written_rows(conn, user_id, model, dimensions, written)
        return patched(kept, written, rows, generation, dimensions)

    def _written_rows(
        self, conn: Connection, user_id: str, model: str, dimensions: int, written: Written
    ) -> list[Any]:
        """The user's rows among the memories ``written``, by rowid, as ``VECTOR_COLUMNS``
        with no embedding (None) where the row has none of ``model``'s."""
        ids = sorted(written.ids)
        rows: list[Any] = []
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows += conn.execute(
                f"SELECT {_WRITTEN_COLUMNS} FROM {self.table} "
                f"WHERE memory_id IN ({marks}) AND +user_id = ?",  # + : look up by id
                [model, 4 * dimensions, *chunk, user_id],
            ).fetchall()
        return sorted(rows, key=lambda row: int(row[0]))

    def _best(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> tuple[str, LoadedVectors | None, npt.NDArray[np.intp], Vector]:
        """The user, their vectors, and the positions in them of the query's page of best
        matches with the scores (no vectors: None and nothing), the query centred on the
        user's vectors by ``centering`` (see the module's note)."""
        user_id, target = search_target(query.user_id, vector)
        nothing = np.zeros(0, dtype=np.intp)
        if query.limit == 0:
            return user_id, None, nothing, np.zeros(0, dtype=np.float32)
        vectors = self.user_vectors(user_id, model, target.size)
        if not vectors.keys.size:
            return user_id, None, nothing, np.zeros(0, dtype=np.float32)
        scores = self._scores(user_id, model, vectors, centred(target, vectors.mean, centering))
        if query.filtered:
            where, params = self._where(query)
            with self._session() as conn:
                rows = conn.execute(f"SELECT rowid FROM {self.table}{where}", params)
                allowed = np.fromiter((row[0] for row in rows), dtype=np.int64)
            scores[~np.isin(vectors.keys, allowed)] = -np.inf
        count = None if query.limit is None else query.offset + query.limit
        best = top_indices(scores, count)[query.offset :]
        return user_id, vectors, best, scores[best]

    def _scores(self, user_id: str, model: str, vectors: LoadedVectors, target: Vector) -> Vector:
        """Every vector's score for ``target`` (a copy of the kept ones for a query asked
        again of the same vectors, such as an agent's next turn searching its previous
        message, or the memory manager searching the message the agent just searched)."""
        key = (user_id, model, vectors.generation, target.tobytes())
        with self._lock:
            known = self._kept_scores.get(key)
            if known is not None:
                self._kept_scores.move_to_end(key)
                return known.copy()
        scores = cosine_scores(vectors.matrix, target)
        with self._lock:
            self._kept_scores[key] = scores.copy()
            while len(self._kept_scores) > _SCORES_KEPT:
                self._kept_scores.popitem(last=False)
        return scores

    def search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        user_id, vectors, best, scores = self._best(query, vector, model, centering)
        if vectors is None:
            return []
        keys = vectors.keys[best].tolist()
        found = self.by_rowid(keys, user_id)
        return [
            ScoredMemory(found[key], score)
            for key, score in zip(keys, scores.tolist(), strict=True)
            if key in found
        ]

    def hits(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[Hit]:
        """:meth:`search`'s results as hits: their rowid, id, score and time, no memory
        (all kept with the vectors, which are reloaded whenever the user's rows change);
        the query centred by ``centering`` (see the module's note)."""
        _, vectors, best, scores = self._best(query, vector, model, centering)
        if vectors is None:
            return []
        ids, stamps = vectors.ids, vectors.stamps
        return [
            Hit(key, ids[at], score, stamp)
            for at, key, score, stamp in zip(
                best.tolist(),
                vectors.keys[best].tolist(),
                scores.tolist(),
                stamps[best].tolist(),
                strict=True,
            )
        ]

    def _rows(self, columns: str, rowids: list[int], user_id: str) -> list[Any]:
        rows: list[Any] = []
        with self._session() as conn:
            for start in range(0, len(rowids), IN_CHUNK):
                chunk = rowids[start : start + IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows += conn.execute(
                    f"SELECT {columns} FROM {self.table} "
                    f"WHERE rowid IN ({marks}) AND +user_id = ?",  # + : look up by rowid
                    [*chunk, user_id],
                ).fetchall()
        return rows

    def by_rowid(self, rowids: list[int], user_id: str) -> dict[int, UserMemory]:
        """The user's memories among ``rowids``, by rowid (those gone meanwhile left out)."""
        rows = self._rows(f"rowid, {_SELECT}", rowids, user_id)
        memories = rows_to_memories([row[1:] for row in rows])
        return {row[0]: m for row, m in zip(rows, memories, strict=True)}

    def _pending(self, user_id: str | None, model: str) -> tuple[str, list[Any]]:
        """Where the rows with no embedding of ``model`` are, the user's (all users' when
        None): their ``embedding_model`` is another or none (an embedding and its model are
        set and cleared together, see migration m008). A user's are read as three ranges of
        the index of users' rows by model (no model, names before ``model``'s, names after
        it), so they cost what they hold, not what all the user's rows do (about 7 ms at
        100,000 with ``IS NOT``)."""
        if user_id is None:
            return " WHERE embedding_model IS NOT ?1", [model]
        ranges = ("IS NULL", "< ?2", "> ?2")
        inside = " UNION ALL ".join(
            f"SELECT rowid FROM {self.table} WHERE user_id = ?1 AND embedding_model {r}"
            for r in ranges
        )
        return f" WHERE rowid IN ({inside})", [user_id, model]

    def to_embed(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        where, params = self._pending(user_id, model)
        with self._session() as conn:
            rows = conn.execute(
                f"SELECT {_SELECT} FROM {self.table}{where} ORDER BY created_at, memory_id "
                f"LIMIT ?{len(params) + 1}",
                [*params, -1 if limit is None else limit],
            ).fetchall()
        return rows_to_memories(rows)

    def count_to_embed(self, user_id: str | None, model: str) -> int:
        """Counted once per generation of the user's rows (a search asks every time)."""
        where, params = self._pending(user_id, model)
        with self._session() as conn:
            kept_as = None if user_id is None else (user_id, model, self.generation(conn, user_id))
            if kept_as is not None and (known := self._to_embed.get(*kept_as)) is not None:
                return known
            row = conn.execute(f"SELECT COUNT(*) FROM {self.table}{where}", params).fetchone()
            count = int(row[0])
            if kept_as is not None:
                self._to_embed.put(*kept_as, count)
            return count

    def store(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        rows = [
            (to_blob(check_vector(vector)), model, m.memory_id, m.user_id, m.memory)
            for m, vector in items
        ]
        if not rows:
            return 0
        with self._transaction() as conn:
            before = conn.total_changes()
            conn.executemany(self._sql_set, rows)
            stored = conn.total_changes() - before
            if stored:
                self.changed(
                    conn, (m.user_id or "" for m, _ in items), (m.memory_id or "" for m, _ in items)
                )
            return stored
