"""A user's vectors held in the process between searches, kept up to date by generation.

PostgreSQL's exact search of a user's vectors reads every row of the user and computes
every distance: about 10 ms at 10,000 memories of 384 dimensions, each search. Held in
the process as one float32 matrix, the same search is one matrix-vector product (about
0.2 ms). Reading the vectors out of the database costs far more (about 50-80 ms at 10,000),
so a user's vectors are read once the user has been searched ``READ_AFTER`` times in the
database at one generation (see :mod:`noted.db.postgres.kept`), or with only this
process's own writes in between: what the searches in the database cost by then is about
what the read costs, so a user whose memories another process keeps changing (a memory
worker in another process writing after every turn, say) costs at most about twice what
searching in the database alone would, and one whose memories stay put is held after a
few searches.

While the user's generation stays the same, the held vectors are the answer. When it has
moved, and this process's own committed writes account for every generation in between
(:class:`~noted.db._journal.ChangeJournal`), only the memories those writes touched
are read again (the common case: a memory added, then its vector stored); otherwise the
search goes to the database, until the vectors are read afresh as above. Every write
moves the generation, vectors stored included.

The held rows are scaled to length 1, so their product with the query, scaled by the
query's length, is pgvector's cosine; equal scores are ranked by memory id, as in SQL.
Scores can differ from pgvector's in the last bits of float32 (the sums run in another
order), so memories whose scores tie to that precision may swap places.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final

import numpy as np

from noted.db._journal import ChangeJournal, Written
from noted.db._loaded import LoadedVectors, assembled, patched, worth_patching
from noted.db._rows import rows_to_memories
from noted.db.base import MemoryQuery, ScoredMemory
from noted.db.postgres import query as sql
from noted.db.postgres.kept import GenerationOf
from noted.db.postgres.schema import Names
from noted.retrieval.vectors import Vector, VectorCache, centred, cosine_scores, top_indices

__all__ = ["HeldVectors", "Moved"]

Moved = Sequence[tuple[str, int]]  # (user, generation) rows of a move of generations
Key = tuple[str, str, int]  # user, model, dimensions

# a user's vectors are read at the READ_AFTER-th search in the database at one generation:
# the read costs about as much as that many exact scans (50-80 ms against 10, at 10,000)
READ_AFTER: Final = 5
SEEN_KEPT: Final = 100_000  # users whose searches in the database are counted at once
_STRIPES: Final = 16  # locks that keep two threads from bringing one user's vectors up to date


class HeldVectors:
    """The held vectors of one memory table (thread-safe). The store tells it of every
    move of a generation (:meth:`moved`) and runs its transactions inside
    :meth:`transaction`, so only committed writes are kept in the journal."""

    def __init__(self, names: Names, cache_bytes: int) -> None:
        self.cache = VectorCache(cache_bytes)
        self.reads = 0  # the times a user's vectors were read whole
        t = names.memories
        self._journal = ChangeJournal()
        self._lock = threading.Lock()  # the journal's and the seen generations'
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._local = threading.local()  # .staged: the running transaction's moves
        self._seen: OrderedDict[Key, tuple[int, int]] = OrderedDict()  # generation, searches
        self._refused: set[Key] = set()  # users whose vectors the cache cannot hold
        self.generation = GenerationOf(names)  # the user's, read before anything else
        vector = "CASE WHEN embedding_model = %s AND vector_dims(embedding) = %s THEN embedding END"
        micros = sql.MICROS.format("updated_at")
        self._sql_all = (
            f"SELECT memory_id, embedding, {micros} FROM {t} WHERE user_id = %s "
            "AND embedding_model = %s AND vector_dims(embedding) = %s"  # unsorted: 25% less
        )
        self._sql_some = (
            f"SELECT memory_id, {vector}, {micros} FROM {t} "
            "WHERE memory_id = ANY(%s) AND user_id = %s ORDER BY memory_id"
        )
        self._sql_rows = f"SELECT {sql.SELECT} FROM {t} WHERE memory_id = ANY(%s) AND user_id = %s"

    @property
    def enabled(self) -> bool:
        return self.cache.max_bytes > 0

    # -- writes -------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Around one of the store's transactions (it commits inside): the moves made in
        it are kept once it has committed, and forgotten if it fails. Inside another one
        (a savepoint), those made in it are forgotten if it fails."""
        staged: list[tuple[str, int, frozenset[str] | None, bool]] | None
        staged = getattr(self._local, "staged", None)
        if staged is not None:
            mark = len(staged)
            try:
                yield
            except BaseException:
                del staged[mark:]
                raise
            return
        self._local.staged = staged = []
        try:
            yield
        finally:
            self._local.staged = None
        self._keep(staged)

    def moved(
        self, rows: Moved, memory_ids: Iterable[str] | None, *, deleted: bool = False
    ) -> None:
        """A write moved the generations of ``rows``, writing ``memory_ids`` (None when not
        known), ``deleted`` if it deleted them. Outside a transaction, it has committed."""
        ids = None if memory_ids is None else frozenset(memory_ids)
        entries = [(str(user), int(generation), ids, deleted) for user, generation in rows]
        staged = getattr(self._local, "staged", None)
        if staged is None:
            self._keep(entries)
        else:
            staged += entries

    def _keep(self, entries: Sequence[tuple[str, int, frozenset[str] | None, bool]]) -> None:
        if not entries:
            return
        with self._lock:
            for user_id, generation, ids, deleted in entries:
                self._journal.stage(user_id, generation, ids, deleted)
            self._journal.commit()

    # -- reads --------------------------------------------------------------------------

    def vectors(self, conn: sql.Conn, user_id: str, model: str, dims: int) -> LoadedVectors | None:
        """The user's vectors by ``model`` of ``dims`` at the user's generation, or None
        when they are not held and the search should go to the database (the generation is
        read first, so a change made meanwhile only makes the next search read again)."""
        key = (user_id, model, dims)
        generation = self.generation(conn, user_id)
        held = self.cache.get(key, generation)
        if isinstance(held, LoadedVectors):
            return held
        with self._stripes[hash(key) % _STRIPES]:
            held = self.cache.get(key, generation)  # brought up to date meanwhile
            if isinstance(held, LoadedVectors):
                return held
            entry = self._patched(conn, key, generation)
            if entry is None:
                if not self._worth_reading(key, generation):
                    return None
                entry = self._read(conn, key, generation)
            with self._lock:
                self._journal.forget(user_id, generation)
            self.cache.put(key, entry)
            if self.cache.peek(key) is not entry:
                with self._lock:
                    self._refused.add(key)
            return entry

    def _worth_reading(self, key: Key, generation: int) -> bool:
        """Whether this search makes ``READ_AFTER`` in the database at ``generation`` (or
        at those only this process's own writes moved it through), and the user's vectors
        fit in the cache; else it is counted."""
        with self._lock:
            if key in self._refused:
                return False
            searches = 1
            seen = self._seen.pop(key, None)
            if seen is not None:
                last, count = seen
                if (
                    last == generation
                    or self._journal.written(key[0], last, generation) is not None
                ):
                    searches += count
            if searches >= READ_AFTER:
                return True
            self._seen[key] = (generation, searches)
            if len(self._seen) > SEEN_KEPT:
                self._seen.popitem(last=False)
            return False

    def _read(self, conn: sql.Conn, key: Key, generation: int) -> LoadedVectors:
        user_id, model, dims = key
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(self._sql_all, (user_id, model, dims)).fetchall()
        self.reads += 1
        keys = np.arange(len(rows), dtype=np.int64)
        ids = [row[0] for row in rows]
        return assembled(generation, keys, _unit_rows(rows, dims), ids, [row[2] for row in rows])

    def _patched(self, conn: sql.Conn, key: Key, generation: int) -> LoadedVectors | None:
        """The held vectors brought to ``generation`` by reading the memories written
        since, or None when the journal cannot say which, or they are many."""
        user_id, model, dims = key
        held = self.cache.peek(key)
        if not isinstance(held, LoadedVectors):
            return None
        with self._lock:
            written = self._journal.written(user_id, held.generation, generation)
        if written is None or not worth_patching(held, written):
            return None
        with conn.cursor(binary=True) as cur:
            rows = cur.execute(self._sql_some, (model, dims, sorted(written.ids), user_id))
            found = rows.fetchall()
        # new keys after the held ones: what is written again is taken out by id, then
        # appended (a held row's place says nothing; ties are ranked by id, see search)
        after = int(held.keys[-1]) + 1 if held.keys.size else 0
        numbered = _numbered(found, after, dims)
        return patched(held, Written(written.ids, True), numbered, generation, dims)

    def search(
        self,
        conn: sql.Conn,
        query: MemoryQuery,
        vectors: LoadedVectors,
        target: Vector,
        centering: float,
    ) -> list[ScoredMemory]:
        """The query's page of the user's memories by cosine with ``target`` (centred on
        the held vectors' mean by ``centering``)."""
        target = centred(target, vectors.mean, centering)
        length = float(np.linalg.norm(target))
        if not vectors.keys.size or not length > 0.0:
            return []
        scores = cosine_scores(vectors.matrix, (target / np.float32(length)).astype(np.float32))
        count = None if query.limit is None else query.offset + query.limit
        best = top_indices(scores, count)
        if best.size:  # every memory tied with the last one in, to be ranked by id
            best = np.flatnonzero(scores >= scores[best[-1]])
        ids = vectors.ids
        order = sorted(best.tolist(), key=lambda at: (-float(scores[at]), ids[at]))
        page = order[query.offset : count]
        chosen = [ids[at] for at in page]
        rows = conn.execute(self._sql_rows, (chosen, query.user_id)).fetchall()
        memories = {m.memory_id: m for m in rows_to_memories(rows)}
        return [
            ScoredMemory(memories[ids[at]], float(scores[at])) for at in page if ids[at] in memories
        ]


def _unit_rows(rows: Sequence[Any], dims: int) -> Vector:
    """The vectors of rows of (memory id, pgvector's binary vector, microseconds), none
    missing, as float32 rows scaled to length 1 (a zero vector stays zero)."""
    if not rows:
        return np.zeros((0, dims), dtype=np.float32)
    joined = np.frombuffer(b"".join(row[1] for row in rows), dtype=">f4")
    matrix = joined.reshape(len(rows), dims + 1)[:, 1:].astype(np.float32)  # past the header
    lengths = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, lengths, out=matrix, where=lengths > 0.0)
    return matrix


def _numbered(rows: Sequence[Any], first: int, dims: int) -> list[tuple[Any, ...]]:
    """Rows of (memory id, pgvector's binary vector or None, microseconds) as the rows
    :func:`~noted.db._loaded.loaded` takes (``VECTOR_COLUMNS``): numbered from
    ``first``, each vector as float32 bytes scaled to length 1."""
    present = [row for row in rows if row[1] is not None]
    units = iter(_unit_rows(present, dims))
    return [
        (at, None if vector is None else next(units).tobytes(), memory_id, micros)
        for at, (memory_id, vector, micros) in enumerate(rows, start=first)
    ]
