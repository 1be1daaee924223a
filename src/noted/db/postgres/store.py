"""PostgresDb: memories and sessions in PostgreSQL, shared by many processes and machines.

Search runs in the database: keyword search on a ``tsvector`` column with a GIN index,
semantic search with pgvector (cosine distance; exact over one user's rows, or an HNSW
index for users too large for that). Without pgvector the store still works: vectors are
kept as float32 bytes and compared in Python, and the store says so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from noted._time import from_micros, now_micros
from noted.audit import AuditContext, MemoryEvent, new_event_ids, resolve_audit
from noted.db import core
from noted.db._rows import (
    COLUMNS,
    EVENT_COLUMNS,
    check_table_name,
    check_table_names,
    encode_topics,
    row_to_event,
    rows_to_memories,
    stamped_keys,
)
from noted.db.base import (
    MemoryQuery,
    ScoredMemory,
    StoreContext,
    WriteBatch,
)
from noted.db.postgres.revocations import PostgresRevocations
from noted.db.sessions_core import SessionsInModule
from noted.errors import (
    ConflictError,
    MissingDependencyError,
    StoreError,
    UserError,
)
from noted.retrieval.ranking import STOPWORDS, fts_terms
from noted.schema import UserMemory, UserStats

try:
    import psycopg
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError(
        "PostgresDb needs psycopg 3 and psycopg_pool: pip install 'noted[postgres]'"
    ) from exc

from noted.db.postgres import keyword, sessions
from noted.db.postgres import query as pgsql
from noted.db.postgres import schema as pg_schema
from noted.db.postgres.held import HeldVectors
from noted.db.postgres.jobs import PostgresJobs
from noted.db.postgres.kept import KeptSearches, move_sql, moved_users
from noted.db.postgres.live import live_connection, open_pool
from noted.db.postgres.lost import lost_table, set_up
from noted.db.postgres.query import MICROS, SELECT, SOUND_TOPICS, Conn, Row
from noted.db.postgres.vectors import PostgresVectors, say_no_pgvector

__all__ = ["PostgresDb"]

log = logging.getLogger("noted.db.postgres")

_EVENT_SELECT = ", ".join(
    MICROS.format(c) if c == "created_at" else f"{c}::text" if c.endswith("_topics") else c
    for c in EVENT_COLUMNS
)
# A keyword search's match. The planner may read the GIN index on (user_id, words) for
# it, which lists only the user's rows of each word (see schema.m002_keyword_by_user).
KEYWORD_MATCH = f"{pg_schema.WORDS} @@ q"
# a deleted row's topics as its event records them (core.readable_topics): as they are
# when they are a list of strings, else an empty list
_READABLE_TOPICS = (
    "CASE WHEN jsonb_typeof(topics) <> 'array' THEN '[]'::jsonb "
    "WHEN EXISTS (SELECT FROM jsonb_array_elements(topics) AS e "
    "WHERE jsonb_typeof(e) <> 'string') THEN '[]'::jsonb ELSE topics END"
)
_EXACT_SEARCH_LIMIT = 20_000
_VECTOR_CACHE_BYTES = 512 * 2**20


class PostgresDb(
    PostgresRevocations,
    PostgresJobs,
    core.DeleteRules,
    core.EmbeddingsInHelper,
    core.PageRules,
    SessionsInModule,
    StoreContext,
):
    """Memories and sessions in PostgreSQL, tables and indexes created on first use.

    ``db_url`` is a ``postgresql://`` (or ``postgresql+psycopg://``) URL. Connections come
    from a pool of at most ``pool_size``, shared by the threads of this process; every
    write is one transaction. Many processes may use the same tables at once.
    """

    capabilities = core.Capabilities(transactions=True, native_fulltext=True, native_vectors=True)
    _vectors: PostgresVectors

    def __init__(
        self,
        db_url: str,
        *,
        schema: str | None = None,
        memory_table: str = "noted_memories",
        session_table: str = "noted_sessions",
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        exact_search_limit: int = _EXACT_SEARCH_LIMIT,
        create_vector_index: bool = True,
        vector_cache_bytes: int = _VECTOR_CACHE_BYTES,
    ) -> None:
        if not isinstance(db_url, str) or not db_url:
            raise UserError(f"db_url must be a postgresql:// URL, got {db_url!r}")
        parts = urlsplit(db_url)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise UserError(f"db_url must be a postgresql:// URL, got scheme {parts.scheme!r}")
        self._conninfo = urlunsplit(parts._replace(scheme="postgresql"))
        host = parts.hostname or "localhost"
        self._where_to = f"postgresql://{host}{':' if parts.port else ''}{parts.port or ''}"
        self._where_to += parts.path
        if schema is not None:
            check_table_name(schema, "schema")
        self.memory_table, self.session_table = check_table_names(
            memory_table,
            session_table,
            pg_schema.MEMORY_TABLE_SUFFIXES,
            pg_schema.SESSION_TABLE_SUFFIXES,
        )
        pg_schema.check_lengths(self.memory_table, self.session_table)
        if type(pool_size) is not int or pool_size < 1:
            raise UserError(f"pool_size must be a positive integer, got {pool_size!r}")
        if type(vector_cache_bytes) is not int or vector_cache_bytes < 0:
            raise UserError(
                f"vector_cache_bytes must be a whole number of bytes, got {vector_cache_bytes!r}"
            )
        self.schema = schema
        self._n = self._session_names = schema_names = pg_schema.Names(
            schema, memory_table, session_table
        )
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._batch = threading.local()  # .conn: the connection of a batch on this thread
        self._pool: ConnectionPool[Conn] | None = None
        self._held = HeldVectors(schema_names, vector_cache_bytes)
        self._vectors = PostgresVectors(
            schema_names,
            self._connection,
            self._transaction,
            self._open,
            exact_search_limit=exact_search_limit,
            create_index=create_vector_index,
            held=self._held,
            in_batch=self._in_batch,
        )
        self._kept = KeptSearches(schema_names)
        self._sql_move = move_sql(schema_names)
        t = schema_names.memories
        self._sql_insert = (
            f"INSERT INTO {t} ({', '.join(COLUMNS)}) VALUES "
            f"(%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s)"
        )
        self._sql_upsert = (
            self._sql_insert + " ON CONFLICT (memory_id) DO UPDATE SET "
            # the core's decision that the embedding goes (clears_embedding), given twice
            f"embedding = CASE WHEN %s THEN NULL ELSE {t}.embedding END, "
            f"embedding_model = CASE WHEN %s THEN NULL ELSE {t}.embedding_model END, "
            "memory = excluded.memory, topics = excluded.topics, input = excluded.input, "
            "agent_id = excluded.agent_id, team_id = excluded.team_id, "
            "session_id = excluded.session_id, created_at = excluded.created_at, "
            f"updated_at = excluded.updated_at WHERE {t}.user_id = excluded.user_id"
        )
        self._sql_add_one = (
            f"WITH added AS ({self._sql_insert} ON CONFLICT (memory_id) DO NOTHING "
            f"RETURNING memory_id, user_id, memory, topics), moved AS ({self._sql_move}) "
            f"INSERT INTO {schema_names.events} ({', '.join(EVENT_COLUMNS)}) "
            "SELECT %s, memory_id, user_id, 'add', NULL, memory, NULL, topics, %s, %s, %s, %s "
            "FROM added RETURNING user_id, (SELECT generation FROM moved)"
        )
        self._sql_event = (
            f"INSERT INTO {schema_names.events} ({', '.join(EVENT_COLUMNS)}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s)"
        )

        # the deleted rows' events, oldest memory first: a new event id each (the same
        # random UUIDs as new_event_ids), the old topics as core.readable_topics has them
        self._sql_forget = (
            f"WITH gone AS (DELETE FROM {t}{{where}} "
            "RETURNING memory_id, user_id, memory, topics, created_at) "
            f"INSERT INTO {schema_names.events} ({', '.join(EVENT_COLUMNS)}) "
            "SELECT gen_random_uuid()::text, memory_id, user_id, 'delete', memory, NULL, "
            f"{_READABLE_TOPICS}, NULL, %s, %s, %s, %s FROM gone ORDER BY created_at, memory_id"
        )

    def __repr__(self) -> str:
        return (
            f"PostgresDb({self._where_to!r}, schema={self.schema!r}, "
            f"memory_table={self.memory_table!r}, session_table={self.session_table!r})"
        )

    # -- connections ------------------------------------------------------------------

    def _error(self, exc: psycopg.Error | PoolTimeout) -> StoreError:
        text = str(exc).strip() or type(exc).__name__
        return StoreError(f"{self._where_to}: {text}")

    def _open(self) -> ConnectionPool[Conn]:
        with self._lock:
            if self._pool is not None:
                return self._pool
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=int(self.connect_timeout)
                ) as conn:
                    set_up(self, conn)  # a table gone that its version says is there named
            except psycopg.OperationalError as exc:
                raise StoreError(f"cannot connect to {self._where_to}: {exc}".strip()) from exc
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            self._pool = open_pool(
                self._conninfo,
                size=self.pool_size,
                configure=self._vectors.configure,
                timeout=self.connect_timeout,
                name=f"noted:{self.memory_table}",
                where_to=self._where_to,
            )
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        """A pooled connection (autocommit: each statement is its own transaction); inside
        a batch on this thread, the batch's connection and transaction."""
        held: Conn | None = getattr(self._batch, "conn", None)
        if held is not None:
            yield held
            return
        taken: tuple[Conn, ConnectionPool[Conn]] | None = None
        try:
            with ExitStack() as stack:
                taken = self._checked_out(stack)
                yield taken[0]
        except (psycopg.Error, PoolTimeout) as exc:
            if taken is not None and taken[0].broken:  # the server went away during the call
                self._drop(taken[1])
            if isinstance(exc, psycopg.errors.UndefinedTable):  # a table gone: see .lost
                raise lost_table(self, exc) from exc
            raise self._error(exc) from exc

    def _checked_out(self, stack: ExitStack) -> tuple[Conn, ConnectionPool[Conn]]:
        """A connection of the pool and that pool; the connection is given back when
        ``stack`` closes. When the pool was closed while this thread was about to take
        from it (by ``close()``, as a background job still runs while the program closes
        its store, or by _drop), from a new pool: a closed store opens again when it is
        used, and the work in flight goes on."""
        pool = self._pool if self._pool is not None else self._open()
        try:
            return self._live(stack, pool)
        except PoolClosed:
            if pool is self._pool:  # closed by something else than close()
                raise
            return self._live(stack, self._open())

    def _live(
        self, stack: ExitStack, pool: ConnectionPool[Conn]
    ) -> tuple[Conn, ConnectionPool[Conn]]:
        """A connection of ``pool`` that the server has not ended while it waited there
        (see noted.db.postgres.live). One it has ended means that the server restarted or
        went away: the pool is let go of (see _drop) and the connection comes from a new
        one, so that the first call once the server is back works."""
        conn = live_connection(stack, pool)
        if conn is not None:
            return conn, pool
        self._drop(pool)
        pool = self._open()
        return stack.enter_context(pool.connection()), pool

    def _drop(self, pool: ConnectionPool[Conn]) -> None:
        """Let go of ``pool``, one of whose connections the server has ended: the next
        call opens a new pool, which first tries one connection of its own (see _open).
        That fails at once while the server is down, and works as soon as it is back,
        where the old pool's own reconnection waits longer after each failure (1, 2, 4,
        8, 16 s...): the calls after an outage would wait for it up to
        ``connect_timeout`` and fail. Connections of the old pool still in use are
        closed when they are given back."""
        with self._lock:
            if self._pool is not pool:
                return  # already let go of by another thread
            self._pool = None
        pool.close()

    @contextmanager
    def _transaction(self) -> Iterator[Conn]:
        """A transaction (inside a batch on this thread, a savepoint of the batch's); the
        generations it moves reach the held vectors' journal once it has committed."""
        with self._held.transaction(), self._connection() as conn, conn.transaction():
            yield conn

    def _in_batch(self) -> bool:
        """Whether this thread is inside a write batch (whose writes may still roll back)."""
        return getattr(self._batch, "conn", None) is not None

    # the sessions' connections (SessionsInModule does the rest)
    _session_functions = sessions
    _session_reader = _connection
    _session_writer = _transaction

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        with self._transaction() as conn:
            self._batch.conn = conn
            try:
                return core.write_batch(self, batch, audit)
            finally:
                self._batch.conn = None

    def _migrate(self, conn: Conn) -> None:
        n = self._n
        with conn.transaction():
            # One store sets up the database at a time: the extensions, the schema and the
            # versions table are shared by every store in it, and two creating one at once
            # fail (a duplicate in the catalog). The lock per table is the one stores of
            # schema version 1 took: they wait for this one's migration too.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (pg_schema.SET_UP_LOCK,))
            if self.schema is not None:
                conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            extensions = pg_schema.Extensions(
                vector=self._vectors.prepare(conn),
                btree_gin=pg_schema.create_extension(conn, "btree_gin"),
            )
            for table, steps in (
                (self.memory_table, pg_schema.MIGRATIONS),
                (self.session_table, pg_schema.SESSION_MIGRATIONS),
            ):
                pg_schema.migrate_table(conn, n, table, steps, extensions, self._where_to)
            if extensions.btree_gin:
                pg_schema.user_search_index(conn, n)  # also for tables made without it
        if not self._vectors.settle(conn):
            say_no_pgvector(self._where_to)

    @property
    def uses_pgvector(self) -> bool:
        """Whether vectors are searched by pgvector in the database (else in Python)."""
        self._open()
        return self._vectors.enabled

    @property
    def exact_search_limit(self) -> int:
        """Users with more memories than this are searched through the HNSW index."""
        return self._vectors.exact_search_limit

    @property
    def create_vector_index(self) -> bool:
        """Whether an HNSW index is made for each size of vectors stored."""
        return self._vectors.create_index

    def schema_version(self, table: str | None = None) -> int:
        """The number of migrations applied to ``table`` (the memory table by default)."""
        with self._connection() as conn:
            return pg_schema.current_version(conn, self._n, table or self.memory_table)

    def close(self) -> None:
        with self._lock:
            # let go of the pool first: a thread whose wait for a connection its closing
            # ends takes one from a new pool (see _checked_out)
            pool, self._pool = self._pool, None
            if pool is not None:
                pool.close()

    # -- MemoryStore: writes ----------------------------------------------------------

    @staticmethod
    def _row(memory: UserMemory) -> Row:
        memory_id, user_id = stamped_keys(memory)
        return (
            memory_id,
            user_id,
            memory.memory,
            encode_topics(memory.topics),
            memory.input,
            memory.agent_id,
            memory.team_id,
            memory.session_id,
            memory.created_at,
            memory.updated_at,
        )

    def _stored(self, conn: Conn, ids: list[str]) -> dict[str, core.StoredSide[str]]:
        """What the rules need of the stored ones of ``ids``, locked until commit."""
        rows = conn.execute(
            f"SELECT memory_id, user_id, memory, topics::text FROM {self._n.memories} "
            "WHERE memory_id = ANY(%s) ORDER BY memory_id FOR UPDATE",
            (ids,),
        ).fetchall()
        return {row[0]: core.StoredSide(row[1], row[2], row[3]) for row in rows}

    def memory_owners(self, memory_ids: Sequence[str]) -> dict[str, str]:
        with self._transaction() as conn:
            return {i: side.user_id for i, side in self._stored(conn, list(memory_ids)).items()}

    def memory_times(self, memory_ids: Sequence[str], user_id: str) -> dict[str, int]:
        """Read with the user's generation locked, as every write of their memories locks
        it first: no other writer changes them until the batch ends, and no two wait for
        each other's locks in opposite orders."""
        n = self._n
        with self._transaction() as conn:
            conn.execute(f"SELECT 1 FROM {n.generations} WHERE user_id = %s FOR UPDATE", (user_id,))
            rows = conn.execute(
                f"SELECT memory_id, {MICROS.format('updated_at')} FROM {n.memories} "
                "WHERE memory_id = ANY(%s) AND user_id = %s",
                (list(memory_ids), user_id),
            ).fetchall()
        return {str(row[0]): int(row[1]) for row in rows}

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        rows = [self._row(m) for m in memories]
        if not rows:
            return
        ids = [row[0] for row in rows]
        now = from_micros(now_micros())
        if len(rows) == 1 and self._add_one(rows[0], core.event_stamp(context, now)):
            return
        with self._transaction() as conn:
            moved = conn.execute(self._sql_move, (moved_users([row[1] for row in rows]),))
            self._held.moved(moved.fetchall(), ids)
            stored = self._stored(conn, ids)
            if not stored and len(set(ids)) == len(ids):
                self._copy_new(conn, rows, context, now)
                return
            changes = core.upsert_changes((row[:4] for row in rows), stored)
            events = core.history_rows(changes, context, now)
            decided = []
            for row, change in zip(rows, changes, strict=True):
                clear = core.clears_embedding(change)
                decided.append((*row, clear, clear))
            with conn.cursor() as cur:
                cur.executemany(self._sql_upsert, decided)
                if cur.rowcount != len(rows):  # an id taken by another user meanwhile
                    raise ConflictError(
                        "a memory id of this batch was stored for another user meanwhile; "
                        "nothing was written"
                    )
                cur.executemany(self._sql_event, events)

    def _add_one(self, row: Row, stamp: Row) -> bool:
        """A memory whose id is not stored yet, with its "add" event, in one statement (one
        round trip); False, writing nothing, when the id is taken."""
        with self._connection() as conn:
            added = conn.execute(self._sql_add_one, (*row, [row[1]], *new_event_ids(1), *stamp))
            moved = added.fetchall()
        # committed unless inside a batch, whose transaction the held vectors follow
        self._held.moved(moved, [row[0]])
        return bool(moved)

    def _copy_new(self, conn: Conn, rows: list[Row], context: AuditContext, now: Any) -> None:
        """New memories (none stored, each once) and their "add" events, by COPY. A memory
        inserted meanwhile by another process breaks the primary key: nothing is written."""
        n = self._n
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {n.memories} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                with cur.copy(f"COPY {n.events} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                    changes: list[core.Change[str]] = core.additions(row[:4] for row in rows)
                    for event in core.history_rows(changes, context, now):
                        copy.write_row(event)
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError(
                "a memory with one of these ids was stored meanwhile; nothing was written"
            ) from exc

    def update_memory(
        self, memory: UserMemory, *, audit: AuditContext | None = None
    ) -> UserMemory | None:
        context = resolve_audit(audit)
        row = self._row(memory)
        memory_id, user_id, text, topics = row[:4]
        n = self._n
        with self._transaction() as conn:
            self._held.moved(conn.execute(self._sql_move, ([user_id],)).fetchall(), [memory_id])
            old = conn.execute(
                f"SELECT memory, topics::text, {', '.join(COLUMNS[4:9])} FROM {n.memories} "
                "WHERE memory_id = %s AND user_id = %s FOR UPDATE",
                (memory_id, user_id),
            ).fetchone()
            if old is None:
                return None
            record = dict(zip(COLUMNS, row, strict=True))
            record.update(core.replaced_fields(record, dict(zip(COLUMNS[2:9], old, strict=True))))
            change = core.replacement(memory_id, user_id, old[:2], text, topics)
            written = conn.execute(
                f"UPDATE {n.memories} SET "
                "embedding = CASE WHEN %(clear)s THEN NULL ELSE embedding END, "
                "embedding_model = CASE WHEN %(clear)s THEN NULL ELSE embedding_model END, "
                "memory = %(text)s, topics = %(topics)s::jsonb, "
                "input = %(input)s, agent_id = %(agent_id)s, team_id = %(team_id)s, "
                # created_at: the record's is the stored one (core.replaced_fields)
                "session_id = %(session_id)s, updated_at = %(updated_at)s "
                f"WHERE memory_id = %(id)s AND user_id = %(user)s RETURNING {SELECT}",
                {
                    **{c: record[c] for c in COLUMNS[4:10]},
                    "text": text,
                    "topics": topics,
                    "id": memory_id,
                    "user": user_id,
                    "clear": core.clears_embedding(change),
                },
            ).fetchone()
            assert written is not None  # the row is locked since it was read
            (event,) = core.history_rows([change], context, from_micros(now_micros()))
            conn.execute(self._sql_event, event)
        return rows_to_memories([written])[0]

    def _delete(self, conn: Conn, where: str, params: Sequence[Any], context: AuditContext) -> int:
        """Delete the memories ``where`` selects and record a "delete" event for each, in
        one statement: the rows go from the table to their events inside the database,
        none read into this process (see "Clearing" in docs/storage.md)."""
        actor, session_id, run_id, at = core.event_stamp(context, from_micros(now_micros()))
        with conn.cursor() as cur:
            cur.execute(
                self._sql_forget.format(where=where), (*params, actor, session_id, run_id, at)
            )
            return int(cur.rowcount)

    def _delete_ids(self, ids: list[str], user_id: str, context: AuditContext) -> int:
        with self._transaction() as conn:
            moved = conn.execute(self._sql_move, ([user_id],)).fetchall()
            self._held.moved(moved, ids, deleted=True)
            return self._delete(
                conn, " WHERE user_id = %s AND memory_id = ANY(%s)", (user_id, ids), context
            )

    def _delete_all(self, user_id: str | None, context: AuditContext) -> int:
        with self._transaction() as conn:
            if user_id is None:  # every user's: those there now (one added meanwhile stays)
                found = conn.execute(f"SELECT DISTINCT user_id FROM {self._n.memories}")
                users = moved_users([str(row[0]) for row in found.fetchall()])
            else:
                users = [user_id]
            self._held.moved(conn.execute(self._sql_move, (users,)).fetchall(), None)
            return self._delete(conn, " WHERE user_id = ANY(%s)", (users,), context)

    # -- MemoryStore: reads -----------------------------------------------------------

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {SELECT} FROM {self._n.memories} WHERE memory_id = %s AND user_id = %s",
                (memory_id, user_id),
            ).fetchone()
        return None if row is None else rows_to_memories([row])[0]

    def get_memories(self, memory_ids: Sequence[str], user_id: str) -> dict[str, UserMemory]:
        """The memories among ``memory_ids`` that ``user_id`` has, by id: what
        :meth:`get_memory` answers for each, read many at a time."""
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {SELECT} FROM {self._n.memories} "
                "WHERE user_id = %s AND memory_id = ANY(%s)",
                (user_id, list(memory_ids)),
            ).fetchall()
        return {m.memory_id: m for m in rows_to_memories(rows) if m.memory_id is not None}

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        where, params = pgsql.where(query)
        where = pgsql.past(query, where, params)
        order = "DESC" if query.sort_order == "desc" else "ASC"
        sql = (
            f"SELECT {SELECT} FROM {self._n.memories}{where} "
            f"ORDER BY {query.sort_by} {order}, memory_id {order}"
        )
        sql += pgsql.page(query, params)
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return rows_to_memories(rows)

    def count_memories(self, query: MemoryQuery) -> int:
        where, params = pgsql.where(query)
        with self._connection() as conn:
            row = conn.execute(f"SELECT count(*) FROM {self._n.memories}{where}", params)
            return int(row.fetchone()[0])  # type: ignore[index]

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_SELECT} FROM {self._n.events} "
                "WHERE user_id = %s AND memory_id = %s ORDER BY created_at, seq",
                (user_id, memory_id),
            ).fetchall()
        return [row_to_event(row) for row in rows]

    def last_deletions(self, memory_ids: Sequence[str], user_id: str | None) -> dict[str, datetime]:
        """When each of ``user_id``'s memories among ``memory_ids`` was last deleted (None:
        each memory of any user's with that id): the time of its latest ``"delete"``
        event, for those that have one."""
        mine = "" if user_id is None else "user_id = %s AND "
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT memory_id, {MICROS.format('MAX(created_at)')} FROM {self._n.events} "
                f"WHERE {mine}memory_id = ANY(%s) AND event = 'delete' GROUP BY memory_id",
                (list(memory_ids),) if user_id is None else (user_id, list(memory_ids)),
            ).fetchall()
        return {str(row[0]): from_micros(int(row[1])) for row in rows}

    def get_topics(self, user_id: str | None) -> list[str]:
        sql = (
            f"SELECT DISTINCT jsonb_array_elements_text(topics) FROM {self._n.memories} "
            f"WHERE {SOUND_TOPICS}"  # damaged topics are read as none
        )
        params: tuple[str, ...] = ()
        if user_id is not None:
            sql += " AND user_id = %s"
            params = (user_id,)
        with self._connection() as conn:
            return sorted(str(row[0]) for row in conn.execute(sql, params))

    def _user_stats(self, limit: int | None, offset: int) -> list[UserStats]:
        sql = (
            f"SELECT user_id, count(*), {MICROS.format('max(updated_at)')} "
            f"FROM {self._n.memories} GROUP BY user_id "
            "ORDER BY max(updated_at) DESC, user_id LIMIT %s OFFSET %s"
        )
        with self._connection() as conn:
            rows = conn.execute(sql, (limit, offset)).fetchall()
        return [UserStats(user_id, count, from_micros(last)) for user_id, count, last in rows]

    # -- search -----------------------------------------------------------------------

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        user_id = core.keyword_user(query)
        # folded as the index folds the rows' text (schema.FOLDED_VECTOR)
        words = list(dict.fromkeys(map(pg_schema.fold_query_word, fts_terms(text))))
        words = [w for w in words if w not in STOPWORDS] or words
        if not words or query.limit == 0:
            return []
        # Only letters and digits reach the query, joined by "or": nothing in ``text`` can
        # be read as query syntax, and any of the words matches (see KEYWORD_MATCH).
        key = (query, tuple(words), text_only)
        # By the user's generation, outside a batch (its writes are not committed yet): a
        # search asked again is kept while it stays.
        asked = not self._in_batch() and self._kept.asked_before(key)
        with self._connection() as conn:
            if not asked:
                return pgsql.scored(self._ranked_words(conn, query, words, text_only))
            generation = self._kept.generation(conn, user_id)
            rows = self._kept.get(key, generation)
            if rows is None:
                rows = self._ranked_words(conn, query, words, text_only)
                self._kept.keep(key, generation, rows)
        return pgsql.scored(rows)

    def _ranked_words(
        self, conn: Conn, query: MemoryQuery, words: list[str], text_only: bool = False
    ) -> list[Row]:
        """The rows of the query's page of memories ranked for ``words``: with no filter
        but the user's id, by the user's figures the database keeps (see keyword.ranking);
        words that are all function words, which the index leaves out, among the user's
        newest rows (see keyword.function_words_ranking)."""
        where, params = pgsql.where(query)
        if keyword.function_words_only(words):  # not in the words column: read the rows
            inner = keyword.function_words_ranking(
                self._n.memories, where, len(words), text_only=text_only
            )
            params = keyword.function_words_parameters(words, params)
            inner += pgsql.page(query, params)
            return pgsql.ranked_rows(conn, self._n.memories, inner, params)
        counts = None if query.filtered else self._n.counts
        inner = keyword.ranking(
            self._n.memories,
            where,
            KEYWORD_MATCH,
            len(words),
            counts=counts,
            text_only=text_only,
        )
        params = keyword.parameters(words, params, counts=counts is not None)
        inner += pgsql.page(query, params)
        return pgsql.ranked_rows(conn, self._n.memories, inner, params)

    # -- embeddings and semantic search (see vectors.py) ---------------------------
