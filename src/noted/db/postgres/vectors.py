"""PostgresDb's embeddings, in the memory table's ``embedding`` and ``embedding_model``.

With pgvector, ``embedding`` is a ``vector`` column searched exactly over one user's rows,
or, for a user with more than ``exact_search_limit`` memories, through an HNSW index
(cosine) made once per vector size. An exact search of a user searched before at the same
generation runs over the user's vectors held in the process (see
:mod:`noted.db.postgres.held`), else in the database. Without pgvector, vectors are
float32 bytes compared in Python.

Storing vectors moves the generations of their users, as every write does: the vectors
other processes hold are stale once it commits.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types import TypeInfo

from noted.db._rows import rows_to_memories
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory
from noted.db.core import PendingCounts
from noted.db.postgres import query as sql
from noted.db.postgres.held import HeldVectors
from noted.db.postgres.kept import move_sql, moved_users
from noted.db.postgres.schema import Names, create_extension, create_index
from noted.retrieval.vectors import (
    Vector,
    centred,
    check_vector,
    cosine_scores,
    direction,
    from_blobs,
    mean_direction,
    search_target,
    to_blob,
    top_indices,
)
from noted.schema import UserMemory

__all__ = ["PostgresVectors", "say_no_pgvector"]

log = logging.getLogger("noted.db.postgres")
_warned_no_pgvector = False


Connect = Callable[[], AbstractContextManager[sql.Conn]]
_SIZE_SECONDS = 60.0  # how long whether a user is past the exact-search limit is trusted
_MAX_SIZES = 100_000  # users whose size is remembered at once


@dataclass(slots=True)
class _KeptSum:
    """A user's vectors by one model and size, summed (see PostgresVectors._mean)."""

    until: float  # kept until then (time.monotonic)
    began: float  # when the sum's statement began
    total: npt.NDArray[np.float64]


class _VectorDumper(Dumper):
    """numpy float32 arrays to pgvector's binary form: dimensions, zero, big-endian floats."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        array = np.asarray(obj, dtype=">f4").reshape(-1)
        return struct.pack(">HH", array.size, 0) + array.tobytes()


class PostgresVectors:
    """The vector side of one memory table, reached through its store's ``connection``
    (each statement its own transaction) and ``transaction``; ``opened`` makes sure the
    store has connected (and so knows whether pgvector is there)."""

    def __init__(
        self,
        names: Names,
        connection: Connect,
        transaction: Connect,
        opened: Callable[[], object],
        *,
        exact_search_limit: int,
        create_index: bool,
        held: HeldVectors,
        in_batch: Callable[[], bool],
    ) -> None:
        self.exact_search_limit = exact_search_limit
        self.create_index = create_index
        self.enabled = False  # vectors in a pgvector column (else float32 bytes)
        self._n = names
        self._connection = connection
        self._transaction = transaction
        self._opened = opened
        self._held = held
        self._in_batch = in_batch
        self._move = move_sql(names)
        self._to_embed = PendingCounts()
        self._oid: int | None = None
        self._indexed: set[int] = set()  # vector sizes with an HNSW index
        self._sizes: dict[str, tuple[float, bool]] = {}  # user -> (valid until, large)
        self._sums: dict[tuple[str, str, int], _KeptSum] = {}  # see _mean

    # -- set-up, inside the store's first connection -----------------------------------

    def prepare(self, conn: sql.Conn) -> bool:
        """Before the migrations: whether pgvector is installed, or could be created."""
        if not create_extension(conn, "vector"):
            self.enabled = False
            return False
        info = TypeInfo.fetch(conn, "vector")
        self._oid = None if info is None else info.oid
        self.enabled = True
        return True

    def settle(self, conn: sql.Conn) -> bool:
        """After the migrations: the column decides, for tables made before pgvector was
        installed (or after); the HNSW indexes already there. Whether pgvector is used."""
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
            (self._n.memories,),
        ).fetchone()
        self.enabled = row is not None and str(row[0]).startswith("vector")
        if not self.enabled:
            self._oid = None
            return False
        prefix = f"ix_{self._n.memory_table}_hnsw_"
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = COALESCE(%s, current_schema()) "
            "AND indexname LIKE %s",
            (self._n.schema, prefix.replace("_", r"\_") + "%"),
        ).fetchall()
        names = (name[len(prefix) :] for (name,) in rows)
        self._indexed = {int(size) for size in names if size.isdigit()}
        return True

    def configure(self, conn: sql.Conn) -> None:
        """Each pooled connection sends numpy vectors as pgvector's binary form."""
        if self._oid is not None:
            dumper = type("VectorDumper", (_VectorDumper,), {"oid": self._oid})
            conn.adapters.register_dumper(np.ndarray, dumper)

    # -- semantic search ------------------------------------------------------------------

    def search(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[ScoredMemory]:
        user_id, target = search_target(query.user_id, vector)
        if query.limit == 0:
            return []
        self._opened()
        if not self.enabled:
            return self._search_in_python(query, target, model, centering)
        dims = int(target.size)
        indexed = dims in self._indexed and self._larger_than(user_id, self.exact_search_limit)
        # held vectors are of all the user's memories, as committed (not a batch's writes)
        if self._held.enabled and not indexed and not query.filtered and not self._in_batch():
            with self._connection() as conn:
                held = self._held.vectors(conn, user_id, model, dims)
                if held is not None:
                    return self._held.search(conn, query, held, target, centering)
        if centering:
            target = centred(target, self._mean(user_id, model, dims), centering)
        where, params = sql.where(query)
        # the size as a constant: it must match the HNSW index's condition when planned
        where += f" AND embedding_model = %s AND vector_dims(embedding) = {dims}"
        params.append(model)
        # Exact over the user's rows (the plain column is not what the index holds), or,
        # for a user too large for that, the HNSW index: its expression and condition, and
        # a scan that goes on until enough of this user's rows have been found.
        column = f"embedding::vector({dims})" if indexed else "embedding"
        inner = (
            f"SELECT memory_id AS hit, 1 - ({column} <=> %s) AS score FROM {self._n.memories}"
            f"{where} ORDER BY {column} <=> %s, memory_id"
        )
        params = [target, *params, target]
        inner += sql.page(query, params)
        with self._transaction() as conn:
            if indexed:
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute("SET LOCAL hnsw.ef_search = 100")
            return sql.ranked(conn, self._n.memories, inner, params)

    def _mean(self, user_id: str, model: str, dims: int) -> Vector:
        """The direction of the mean of the user's vectors by ``model`` of ``dims``
        (zeros when there are none). Their sum is made in the database (8 ms at 10,000,
        69 ms at 100,000) and kept for a minute, the vectors this process stores added
        to it meanwhile (see :meth:`store`; a vector stored again over the same model's
        makes it go): the direction that all of a user's memories share moves slowly,
        and one that misses another process's last writes or a delete only weighs the
        same memories a little differently until then."""
        key = (user_id, model, dims)
        known = self._sums.get(key)
        if known is not None and known.until > time.monotonic():
            return direction(known.total)
        began = time.monotonic()
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT sum(embedding)::text FROM {self._n.memories} WHERE user_id = %s "
                f"AND embedding_model = %s AND vector_dims(embedding) = {dims}",
                (user_id, model),
            ).fetchone()
        total = np.zeros(dims) if row is None or row[0] is None else np.array(json.loads(row[0]))
        if len(self._sums) > _MAX_SIZES:
            self._sums.clear()
        self._sums[key] = _KeptSum(began + _SIZE_SECONDS, began, total)
        return direction(total)

    def _added(
        self,
        checked: Sequence[tuple[UserMemory, Vector]],
        model: str,
        began: float,
        replaced: Collection[str] = (),
    ) -> None:
        """Vectors stored by a transaction that began at ``began`` and has committed, added
        to the kept sums: those whose sum began before it cannot hold them; one that
        began meanwhile may, so it goes (the next centred search sums again), as does one
        of a memory in ``replaced`` (its vector by the model, before, is in the sum)."""
        committed = time.monotonic()
        for m, vector in checked:
            key = (m.user_id or "", model, int(vector.size))
            known = self._sums.get(key)
            if known is None or known.began > committed:
                continue
            if known.began < began and m.memory_id not in replaced:
                known.total += vector
            else:
                self._sums.pop(key, None)

    def _larger_than(self, user_id: str, limit: int) -> bool:
        """Whether the user has more than ``limit`` memories (reads at most limit + 1),
        remembered for a minute: a user grows past the limit slowly, and the answer only
        picks the faster of two correct ways to search."""
        now = time.monotonic()
        known = self._sizes.get(user_id)
        if known is not None and known[0] > now:
            return known[1]
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT count(*) FROM (SELECT 1 FROM {self._n.memories} "
                "WHERE user_id = %s LIMIT %s) AS mine",
                (user_id, limit + 1),
            ).fetchone()
        large = row is not None and int(row[0]) > limit
        if len(self._sizes) > _MAX_SIZES:
            self._sizes.clear()
        self._sizes[user_id] = (now + _SIZE_SECONDS, large)
        return large

    def _search_in_python(
        self, query: MemoryQuery, target: Vector, model: str, centering: float
    ) -> list[ScoredMemory]:
        """Without pgvector: the user's vectors are read and compared here."""
        where, params = sql.where(query)
        statement = (
            f"SELECT {sql.SELECT}, embedding FROM {self._n.memories}{where} "
            "AND embedding_model = %s AND length(embedding) = %s ORDER BY memory_id"
        )
        mine = None  # all of the user's vectors, when the filter left some out
        with self._connection() as conn:
            rows = conn.execute(statement, [*params, model, 4 * target.size]).fetchall()
            if not rows:
                return []
            if centering and query.filtered:  # the mean is over all of the user's vectors
                mine = conn.execute(
                    f"SELECT embedding FROM {self._n.memories} WHERE user_id = %s "
                    "AND embedding_model = %s AND length(embedding) = %s",
                    (query.user_id, model, 4 * target.size),
                ).fetchall()
        memories = rows_to_memories([row[:-1] for row in rows])
        matrix = from_blobs([bytes(row[-1]) for row in rows], target.size)
        if centering:
            every = (
                matrix if mine is None else from_blobs([bytes(r[-1]) for r in mine], target.size)
            )
            target = centred(target, mean_direction(every), centering)
        scores = cosine_scores(matrix, target)
        count = None if query.limit is None else query.offset + query.limit
        ranked = top_indices(scores, count)[query.offset :]  # ties: by id, as in SQL
        return [ScoredMemory(memories[i], float(scores[i])) for i in ranked]

    # -- embeddings -------------------------------------------------------------------------

    @staticmethod
    def _pending(user_id: str | None) -> tuple[str, list[Any]]:
        unembedded = "(embedding IS NULL OR embedding_model IS DISTINCT FROM %s)"
        if user_id is None:
            return f" WHERE {unembedded}", []
        return f" WHERE user_id = %s AND {unembedded}", [user_id]

    def to_embed(self, user_id: str | None, model: str, limit: int | None) -> list[UserMemory]:
        where, params = self._pending(user_id)
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {sql.SELECT} FROM {self._n.memories}{where} "
                "ORDER BY created_at, memory_id LIMIT %s",
                [*params, model, limit],
            ).fetchall()
        return rows_to_memories(rows)

    def count_to_embed(self, user_id: str | None, model: str) -> int:
        """The user's memories with no embedding of ``model``: no model, or another (a
        memory has a model exactly when it has an embedding). Three ranges of the index of
        users' rows by model (none, names before ``model``'s, names after it), so the count
        costs what it finds, not what the user has. A search of the user asks every time,
        so a user's count is kept with the generation read before it (every write moves
        it, storing vectors included), outside write batches."""
        if user_id is not None and not self._in_batch():
            with self._connection() as conn:
                generation = self._held.generation(conn, user_id)
                known = self._to_embed.get(user_id, model, generation)
            if known is None:
                known = self._count_to_embed(user_id, model)
                self._to_embed.put(user_id, model, generation, known)
            return known
        return self._count_to_embed(user_id, model)

    def _count_to_embed(self, user_id: str | None, model: str) -> int:
        if user_id is None:
            where, params = self._pending(None)
            statement = f"SELECT count(*) FROM {self._n.memories}{where}"
            args: list[Any] = [*params, model]
        else:
            t = self._n.memories
            counts = " + ".join(
                f"(SELECT count(*) FROM {t} WHERE user_id = %s AND embedding_model {r})"
                for r in ("IS NULL", "< %s", "> %s")
            )
            statement = f"SELECT {counts}"
            args = [user_id, user_id, model, user_id, model]
        with self._connection() as conn:
            row = conn.execute(statement, args).fetchone()
        return 0 if row is None else int(row[0])

    def store(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        """Each vector on its memory, where id, user and text still match."""
        checked = [(m, check_vector(v)) for m, v in items]
        if not checked:
            return 0
        self._opened()
        value = "%s" if self.enabled else "%s::bytea"
        rows = [
            (v if self.enabled else to_blob(v), model, m.memory_id, m.user_id, m.memory)
            for m, v in checked
        ]
        for dims in {int(v.size) for _, v in checked} - self._indexed:
            self._index(dims)
        kept = {(m.user_id or "", model, int(v.size)) for m, v in checked} & self._sums.keys()
        began = time.monotonic()
        with self._transaction() as conn, conn.cursor() as cur:
            users = moved_users(m.user_id or "" for m, _ in checked)
            self._held.moved(
                cur.execute(self._move, (users,)).fetchall(),
                (m.memory_id or "" for m, _ in checked),
            )
            replaced: set[str] = set()
            if kept:  # a kept sum holds those already stored by the model: locked, then read
                cur.execute(
                    f"SELECT memory_id FROM {self._n.memories} WHERE memory_id = ANY(%s) "
                    "AND embedding_model = %s FOR UPDATE",
                    ([m.memory_id for m, _ in checked], model),
                )
                replaced = {str(row[0]) for row in cur.fetchall()}
            cur.executemany(
                f"UPDATE {self._n.memories} SET embedding = {value}, embedding_model = %s "
                "WHERE memory_id = %s AND user_id = %s AND memory = %s",
                rows,
            )
            stored = max(cur.rowcount, 0)
        if stored == len(checked):
            self._added(checked, model, began, replaced)
        else:  # some memory changed or went meanwhile: which vectors landed is not known
            for m, v in checked:
                self._sums.pop((m.user_id or "", model, int(v.size)), None)
        return stored

    def _index(self, dims: int) -> None:
        """The HNSW index (cosine) of the vectors of ``dims`` dimensions, made once."""
        if not self.enabled or not self.create_index or not 0 < dims <= 2000:
            return
        name = f"ix_{self._n.memory_table}_hnsw_{dims}"
        with self._transaction() as conn:
            # one process makes it: two creating it at once both pass IF NOT EXISTS, and
            # the second fails on the name (a duplicate in the catalog)
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"noted:{name}",))
            spec = (
                f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) "
                f"WHERE vector_dims(embedding) = {dims}"
            )
            create_index(conn, self._n, name, self._n.memory_table, spec)
        self._indexed.add(dims)


def say_no_pgvector(where: str) -> None:
    """Warn, once per process, that the database ``where`` has no pgvector extension."""
    global _warned_no_pgvector  # noqa: PLW0603 - said once per process
    if not _warned_no_pgvector:
        _warned_no_pgvector = True
        log.warning(
            "%s: the pgvector extension is not available; semantic search compares vectors "
            "in Python (install pgvector for search in the database)",
            where,
        )
