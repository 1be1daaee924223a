"""SqliteDb's embeddings: stored in the memory table (``embedding``, ``embedding_model``),
searched exactly over a per-user matrix kept in memory between searches.

A search's query can be *centred* on the user's memories: ``centering`` (0 to 1) of its
component along the direction of the user's mean vector is taken away before the cosine
(``q - c (q . m) m``, ``m`` that mean scaled to length 1). Every memory of one user shares
much of that direction (the same people, the same kind of sentence), so it says little
about which of them a query means; with less of it, what sets a memory apart counts for
more. The mean is computed when the user's vectors are loaded (kept with them, so it is
made again whenever the user's rows change).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from noted.db._rows import COLUMNS, IN_CHUNK, rows_to_memories
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.core import PendingCounts
from noted.db.sqlite.connection import Connection
from noted.retrieval.fusion import Hit
from noted.retrieval.vectors import (
    UserVectors,
    Vector,
    VectorCache,
    check_vector,
    cosine_scores,
    from_blobs,
    search_target,
    to_blob,
    top_indices,
)
from noted.schema import UserMemory

__all__ = ["SqliteVectors"]

_SELECT = ", ".join(COLUMNS)
_UNEMBEDDED = "(embedding IS NULL OR embedding_model IS NOT ?)"
_SCORES_KEPT = 8  # the last queries' score arrays (4 bytes a memory each)

Connect = Callable[[], AbstractContextManager[Connection]]
Where = Callable[[MemoryQuery], tuple[str, list[Any]]]


@dataclass(frozen=True, slots=True)
class _Labelled(UserVectors):
    """A user's vectors with each row's memory id and time (seconds since the epoch), so
    hybrid search's hits need no read of the table."""

    ids: list[str]
    stamps: npt.NDArray[np.float64]
    mean: Vector  # the direction of the vectors' mean, length 1 (zeros when there is none)

    @property
    def nbytes(self) -> int:
        sizes = self.keys.nbytes + self.matrix.nbytes + self.stamps.nbytes + self.mean.nbytes
        return int(sizes) + 80 * len(self.ids)


def mean_direction(matrix: Vector) -> Vector:
    """The direction of the mean of ``matrix``'s rows, length 1 (zeros when the rows are
    none or their mean is zero)."""
    if not matrix.shape[0]:
        return np.zeros(matrix.shape[1], dtype=np.float32)
    # the rows' sum in float32 (a fifth of the time of float64's at 10,000 rows): only its
    # direction is used, and that of a float32 sum of unit vectors is good to 1e-4
    mean = np.add.reduce(matrix, axis=0, dtype=np.float32)
    length = float(np.linalg.norm(mean))
    if not length > 0.0:
        return np.zeros(matrix.shape[1], dtype=np.float32)
    direction: Vector = (mean / length).astype(np.float32)
    return direction


def centred(target: Vector, mean: Vector, centering: float) -> Vector:
    """``target`` less ``centering`` of its component along ``mean`` (length 1 or zero),
    scaled back to ``target``'s length; ``target`` itself when nothing is left of it."""
    if not centering:
        return target
    along = float(np.dot(target, mean))
    moved = target - np.float32(centering * along) * mean
    length = float(np.linalg.norm(moved))
    if not length > 0.0:
        return target
    scaled: Vector = (moved * np.float32(float(np.linalg.norm(target)) / length)).astype(np.float32)
    return scaled


class SqliteVectors:
    """The vector side of one memory table, reached through its store's ``session``
    (reads) and ``transaction`` (writes), with its ``where`` for query filters.

    Each user's vectors stay loaded until that user's generation differs from the loaded
    one: every write of a user's rows calls :meth:`changed` in its transaction (one
    statement per transaction, however many rows), so writes from other processes count.
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
        self._kept_scores: OrderedDict[tuple[str, str, int, bytes], Vector] = OrderedDict()
        self._lock = threading.Lock()
        self._sql_generation = f"SELECT generation FROM {table}_generations WHERE user_id = ?"
        self._sql_bump = (
            f"INSERT INTO {table}_generations (user_id, generation) VALUES (?, 1) "
            "ON CONFLICT (user_id) DO UPDATE SET generation = generation + 1"
        )
        self._sql_set = (
            f"UPDATE {table} SET embedding = ?, embedding_model = ? "
            f"WHERE memory_id = ? AND user_id = ? AND memory = ?"
        )

    def changed(self, conn: Connection, user_ids: Iterable[str]) -> None:
        """Move on the generation of each user whose rows this transaction writes."""
        conn.executemany(self._sql_bump, [(user_id,) for user_id in set(user_ids)])

    def generation(self, conn: Connection, user_id: str) -> int:
        row = conn.execute(self._sql_generation, (user_id,)).fetchone()
        return 0 if row is None else int(row[0])

    def user_vectors(self, user_id: str, model: str, dimensions: int) -> _Labelled:
        """The user's vectors made by ``model``, with each row's id and time: from the cache
        while the user's rows are unchanged, else read again (the generation first, so a
        change made meanwhile only makes the next search read them once more)."""
        key = (user_id, model, dimensions)
        with self._session() as conn:
            generation = self.generation(conn, user_id)
            cached = self.cache.get(key, generation)
            if isinstance(cached, _Labelled):
                return cached
            rows = conn.execute(
                f"SELECT rowid, embedding, memory_id, updated_at FROM {self.table} "
                "WHERE user_id = ? AND embedding_model = ? AND length(embedding) = ? "
                "ORDER BY rowid",
                (user_id, model, 4 * dimensions),
            ).fetchall()
        matrix = from_blobs([row[1] for row in rows], dimensions)
        entry = _Labelled(
            generation,
            np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows)),
            matrix,
            [row[2] for row in rows],
            np.fromiter((row[3] / 1e6 for row in rows), dtype=np.float64, count=len(rows)),
            mean_direction(matrix),
        )
        self.cache.put(key, entry)
        return entry

    def _best(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> tuple[str, _Labelled | None, npt.NDArray[np.intp], Vector]:
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

    def _scores(self, user_id: str, model: str, vectors: _Labelled, target: Vector) -> Vector:
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

    def search(self, query: MemoryQuery, vector: QueryVector, model: str) -> list[ScoredMemory]:
        user_id, vectors, best, scores = self._best(query, vector, model)
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

    @staticmethod
    def _pending(user_id: str | None) -> tuple[str, list[Any]]:
        if user_id is None:
            return f" WHERE {_UNEMBEDDED}", []
        return f" WHERE user_id = ? AND {_UNEMBEDDED}", [user_id]

    def to_embed(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        where, params = self._pending(user_id)
        with self._session() as conn:
            rows = conn.execute(
                f"SELECT {_SELECT} FROM {self.table}{where} ORDER BY created_at, memory_id LIMIT ?",
                [*params, model, -1 if limit is None else limit],
            ).fetchall()
        return rows_to_memories(rows)

    def count_to_embed(self, user_id: str | None, model: str) -> int:
        """Counted once per generation of the user's rows (a search asks every time)."""
        where, params = self._pending(user_id)
        with self._session() as conn:
            kept_as = None if user_id is None else (user_id, model, self.generation(conn, user_id))
            if kept_as is not None and (known := self._to_embed.get(*kept_as)) is not None:
                return known
            row = conn.execute(
                f"SELECT COUNT(*) FROM {self.table}{where}", [*params, model]
            ).fetchone()
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
                self.changed(conn, (m.user_id or "" for m, _ in items))
            return stored
