"""PostgresDb: memories and sessions in PostgreSQL, shared by many processes and machines.

Search runs in the database: keyword search on a ``tsvector`` column with a GIN index,
semantic search with pgvector (cosine distance; exact over one user's rows, or an HNSW
index for users too large for that). Without pgvector the store still works: vectors are
kept as float32 bytes and compared in Python, and the store says so once.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from noted._time import from_micros, now_micros
from noted.audit import AuditContext, MemoryEvent, new_event_ids, resolve_audit
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
from noted.db.base import MemoryQuery, QueryVector, ScoredMemory, StoreContext, check_page
from noted.errors import (
    ConflictError,
    MissingDependencyError,
    SchemaVersionError,
    StoreError,
    UserError,
)
from noted.retrieval.ranking import STOPWORDS, fts_terms
from noted.retrieval.vectors import (
    Vector,
    check_vector,
    from_blobs,
    search_target,
    to_blob,
    top_indices,
)
from noted.schema import UserMemory, UserStats
from noted.sessions import RunResult, Session, SessionSummary

try:
    import psycopg
    from psycopg.adapt import Dumper
    from psycopg.pq import Format
    from psycopg.types import TypeInfo
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise MissingDependencyError(
        "PostgresDb needs psycopg 3 and psycopg_pool: pip install 'noted[postgres]'"
    ) from exc

from noted.db import postgres_schema as pg_schema
from noted.db import postgres_sessions as sessions

__all__ = ["PostgresDb"]

log = logging.getLogger(__name__)

Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

# timestamps leave the database as integer microseconds (exact; what the row readers take)
_MICROS = "(extract(epoch from {0}) * 1000000)::bigint"
_SELECT = ", ".join(
    _MICROS.format(c) if c.endswith("_at") else "topics::text" if c == "topics" else c
    for c in COLUMNS
)
_EVENT_SELECT = ", ".join(
    _MICROS.format(c) if c == "created_at" else f"{c}::text" if c.endswith("_topics") else c
    for c in EVENT_COLUMNS
)
# A keyword search tests each of the user's rows, read by the (user_id, ...) index; the
# match is wrapped so that the planner cannot take the GIN index instead, which for common
# words lists a large part of every user's rows (65 ms instead of 2 for one user among
# 1,000,000 memories of 10,000 users, once the table's statistics are in).
KEYWORD_MATCH = "coalesce(search @@ q, false)"
_RANK_WEIGHTS = "'{0.1, 0.2, 0.5, 1.0}'"  # D, C, B, A: text, then topics, then input
_EXACT_SEARCH_LIMIT = 20_000
_warned_no_pgvector = False


class _VectorDumper(Dumper):
    """numpy float32 arrays to pgvector's binary form: dimensions, zero, big-endian floats."""

    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        array = np.asarray(obj, dtype=">f4").reshape(-1)
        return struct.pack(">HH", array.size, 0) + array.tobytes()


class PostgresDb(StoreContext):
    """Memories and sessions in PostgreSQL, tables and indexes created on first use.

    ``db_url`` is a ``postgresql://`` (or ``postgresql+psycopg://``) URL. Connections come
    from a pool of at most ``pool_size``, shared by the threads of this process; every
    write is one transaction. Many processes may use the same tables at once.
    """

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
        self.memory_table, self.session_table = check_table_names(memory_table, session_table)
        if type(pool_size) is not int or pool_size < 1:
            raise UserError(f"pool_size must be a positive integer, got {pool_size!r}")
        self.schema = schema
        self._n = schema_names = pg_schema.Names(schema, memory_table, session_table)
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.exact_search_limit = exact_search_limit
        self.create_vector_index = create_vector_index
        self._lock = threading.Lock()
        self._pool: ConnectionPool[Conn] | None = None
        self._pgvector = False
        self._vector_oid: int | None = None
        self._indexed_dimensions: set[int] = set()
        self._sizes: dict[str, tuple[float, bool]] = {}  # user -> (valid until, large)
        t = schema_names.memories
        self._sql_insert = (
            f"INSERT INTO {t} ({', '.join(COLUMNS)}) VALUES "
            f"(%s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s)"
        )
        self._sql_upsert = (
            self._sql_insert + " ON CONFLICT (memory_id) DO UPDATE SET "
            f"embedding = CASE WHEN {t}.memory = excluded.memory THEN {t}.embedding END, "
            f"embedding_model = CASE WHEN {t}.memory = excluded.memory "
            f"THEN {t}.embedding_model END, "
            "memory = excluded.memory, topics = excluded.topics, input = excluded.input, "
            "agent_id = excluded.agent_id, team_id = excluded.team_id, "
            "session_id = excluded.session_id, created_at = excluded.created_at, "
            f"updated_at = excluded.updated_at WHERE {t}.user_id = excluded.user_id"
        )
        self._sql_add_one = (
            f"WITH added AS ({self._sql_insert} ON CONFLICT (memory_id) DO NOTHING "
            "RETURNING memory_id, user_id, memory, topics) "
            f"INSERT INTO {schema_names.events} ({', '.join(EVENT_COLUMNS)}) "
            "SELECT %s, memory_id, user_id, 'add', NULL, memory, NULL, topics, %s, %s, %s, %s "
            "FROM added RETURNING 1"
        )
        self._sql_event = (
            f"INSERT INTO {schema_names.events} ({', '.join(EVENT_COLUMNS)}) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s)"
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
                    self._migrate(conn)
            except psycopg.OperationalError as exc:
                raise StoreError(f"cannot connect to {self._where_to}: {exc}".strip()) from exc
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            pool: ConnectionPool[Conn] = ConnectionPool(
                self._conninfo,
                min_size=1,
                max_size=self.pool_size,
                kwargs={"autocommit": True},
                configure=self._configure,
                timeout=self.connect_timeout,
                open=False,
                name=f"noted:{self.memory_table}",
            )
            try:
                pool.open(wait=True, timeout=self.connect_timeout)
            except PoolTimeout as exc:
                pool.close()
                raise StoreError(f"cannot connect to {self._where_to}: {exc}") from exc
            self._pool = pool
            return pool

    def _configure(self, conn: Conn) -> None:
        if self._vector_oid is not None:
            dumper = type("VectorDumper", (_VectorDumper,), {"oid": self._vector_oid})
            conn.adapters.register_dumper(np.ndarray, dumper)

    @contextmanager
    def _connection(self) -> Iterator[Conn]:
        """A pooled connection (autocommit: each statement is its own transaction)."""
        pool = self._pool if self._pool is not None else self._open()
        try:
            with pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Conn]:
        with self._connection() as conn, conn.transaction():
            yield conn

    def _migrate(self, conn: Conn) -> None:
        n = self._n
        if self.schema is not None:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
        self._pgvector = self._ensure_pgvector(conn)
        if self._pgvector:
            info = TypeInfo.fetch(conn, "vector")
            self._vector_oid = None if info is None else info.oid
        for table, steps in (
            (self.memory_table, pg_schema.MIGRATIONS),
            (self.session_table, pg_schema.SESSION_MIGRATIONS),
        ):
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"noted:{table}",))
                version = pg_schema.current_version(conn, n, table)
                if version > len(steps):
                    raise SchemaVersionError(
                        f"{self._where_to}: table {table} has schema version {version}, newer "
                        f"than this noted knows ({len(steps)}); upgrade noted"
                    )
                for step in steps[version:]:
                    step(conn, n, self._pgvector)
                if version < len(steps):
                    pg_schema.record_version(conn, n, table, len(steps))
        # the column decides, for tables made before pgvector was installed (or after)
        row = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
            (n.memories,),
        ).fetchone()
        self._pgvector = row is not None and str(row[0]).startswith("vector")
        if self._pgvector:
            self._indexed_dimensions = self._vector_indexes(conn)
        else:
            self._vector_oid = None
            _say_no_pgvector(self._where_to)

    @staticmethod
    def _ensure_pgvector(conn: Conn) -> bool:
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
        if installed is not None:
            return True
        try:
            with conn.transaction():
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            log.debug("pgvector could not be created: %s", exc)
            return False
        return True

    def _vector_indexes(self, conn: Conn) -> set[int]:
        prefix = f"ix_{self.memory_table}_hnsw_"
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = COALESCE(%s, current_schema()) "
            "AND indexname LIKE %s",
            (self.schema, prefix.replace("_", r"\_") + "%"),
        ).fetchall()
        return {int(name[len(prefix) :]) for (name,) in rows if name[len(prefix) :].isdigit()}

    @property
    def uses_pgvector(self) -> bool:
        """Whether vectors are searched by pgvector in the database (else in Python)."""
        self._open()
        return self._pgvector

    def schema_version(self, table: str | None = None) -> int:
        """The number of migrations applied to ``table`` (the memory table by default)."""
        with self._connection() as conn:
            return pg_schema.current_version(conn, self._n, table or self.memory_table)

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

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

    def _stored(self, conn: Conn, ids: list[str]) -> dict[str, tuple[str, str, str]]:
        """memory_id -> (user_id, memory, topics) of the stored ones, locked until commit."""
        rows = conn.execute(
            f"SELECT memory_id, user_id, memory, topics::text FROM {self._n.memories} "
            "WHERE memory_id = ANY(%s) ORDER BY memory_id FOR UPDATE",
            (ids,),
        ).fetchall()
        return {row[0]: (row[1], row[2], row[3]) for row in rows}

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        rows = [self._row(m) for m in memories]
        if not rows:
            return
        ids = [row[0] for row in rows]
        now = from_micros(now_micros())
        stamp = (context.actor, context.session_id, context.run_id, now)
        if len(rows) == 1 and self._add_one(rows[0], stamp):
            return
        with self._transaction() as conn:
            stored = self._stored(conn, ids)
            if not stored and len(set(ids)) == len(ids):
                self._copy_new(conn, rows, stamp)
                return
            events: list[Row] = []
            current = {i: (user, text, topics) for i, (user, text, topics) in stored.items()}
            for event_id, row in zip(new_event_ids(len(rows)), rows, strict=True):
                memory_id, user_id, text, topics = row[:4]
                old = current.get(memory_id)
                if old is not None and old[0] != user_id:
                    raise ConflictError(
                        f"memory_id {memory_id!r} belongs to another user; nothing was written"
                    )
                if old is None:
                    events.append((event_id, memory_id, user_id, "add", None, text, None, topics))
                else:
                    events.append(
                        (event_id, memory_id, user_id, "update", old[1], text, old[2], topics)
                    )
                current[memory_id] = (user_id, text, topics)
            with conn.cursor() as cur:
                cur.executemany(self._sql_upsert, rows)
                if cur.rowcount != len(rows):  # an id taken by another user meanwhile
                    raise ConflictError(
                        "a memory id of this batch was stored for another user meanwhile; "
                        "nothing was written"
                    )
                cur.executemany(self._sql_event, [(*e, *stamp) for e in events])

    def _add_one(self, row: Row, stamp: Row) -> bool:
        """A memory whose id is not stored yet, with its "add" event, in one statement (one
        round trip); False, writing nothing, when the id is taken."""
        with self._connection() as conn:
            added = conn.execute(self._sql_add_one, (*row, *new_event_ids(1), *stamp))
            return added.fetchone() is not None

    def _copy_new(self, conn: Conn, rows: list[Row], stamp: Row) -> None:
        """New memories (none stored, each once) and their "add" events, by COPY. A memory
        inserted meanwhile by another process breaks the primary key: nothing is written."""
        n = self._n
        try:
            with conn.cursor() as cur:
                with cur.copy(f"COPY {n.memories} ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                with cur.copy(f"COPY {n.events} ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                    for event_id, row in zip(new_event_ids(len(rows)), rows, strict=True):
                        copy.write_row(
                            (event_id, row[0], row[1], "add", None, row[2], None, row[3], *stamp)
                        )
        except psycopg.errors.UniqueViolation as exc:
            raise ConflictError(
                "a memory with one of these ids was stored meanwhile; nothing was written"
            ) from exc

    def update_memory(self, memory: UserMemory, *, audit: AuditContext | None = None) -> bool:
        context = resolve_audit(audit)
        row = self._row(memory)
        memory_id, user_id, text, topics = row[:4]
        n = self._n
        with self._transaction() as conn:
            old = conn.execute(
                f"SELECT memory, topics::text FROM {n.memories} "
                "WHERE memory_id = %s AND user_id = %s FOR UPDATE",
                (memory_id, user_id),
            ).fetchone()
            if old is None:
                return False
            conn.execute(
                f"UPDATE {n.memories} SET "
                "embedding = CASE WHEN memory = %(text)s THEN embedding END, "
                "embedding_model = CASE WHEN memory = %(text)s THEN embedding_model END, "
                "memory = %(text)s, topics = %(topics)s::jsonb, "
                "input = COALESCE(%(input)s, input), agent_id = COALESCE(%(agent)s, agent_id), "
                "team_id = COALESCE(%(team)s, team_id), "
                "session_id = COALESCE(%(session)s, session_id), updated_at = %(updated)s "
                "WHERE memory_id = %(id)s AND user_id = %(user)s",
                {
                    "text": text,
                    "topics": topics,
                    "input": row[4],
                    "agent": row[5],
                    "team": row[6],
                    "session": row[7],
                    "updated": row[9],
                    "id": memory_id,
                    "user": user_id,
                },
            )
            stamp = (context.actor, context.session_id, context.run_id, from_micros(now_micros()))
            event = (memory_id, user_id, "update", old[0], text, old[1], topics)
            conn.execute(self._sql_event, (*new_event_ids(1), *event, *stamp))
        return True

    def _delete(self, conn: Conn, where: str, params: Sequence[Any], context: AuditContext) -> int:
        found = conn.execute(
            f"DELETE FROM {self._n.memories}{where} "
            f"RETURNING memory_id, user_id, memory, topics::text, created_at",
            params,
        ).fetchall()
        if not found:
            return 0
        found.sort(key=lambda r: (r[4], r[0]))
        stamp = (context.actor, context.session_id, context.run_id, from_micros(now_micros()))
        with conn.cursor() as cur:
            cur.executemany(
                self._sql_event,
                [
                    (event_id, memory_id, user_id, "delete", text, None, topics, None, *stamp)
                    for event_id, (memory_id, user_id, text, topics, _) in zip(
                        new_event_ids(len(found)), found, strict=True
                    )
                ],
            )
        return len(found)

    def delete_memories(
        self, memory_ids: Sequence[str], user_id: str, *, audit: AuditContext | None = None
    ) -> int:
        context = resolve_audit(audit)
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        with self._transaction() as conn:
            return self._delete(
                conn, " WHERE user_id = %s AND memory_id = ANY(%s)", (user_id, ids), context
            )

    def clear_memories(self, user_id: str, *, audit: AuditContext | None = None) -> int:
        context = resolve_audit(audit)
        with self._transaction() as conn:
            return self._delete(conn, " WHERE user_id = %s", (user_id,), context)

    def clear_all_memories(self, *, audit: AuditContext | None = None) -> int:
        context = resolve_audit(audit)
        with self._transaction() as conn:
            return self._delete(conn, "", (), context)

    # -- MemoryStore: reads -----------------------------------------------------------

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_SELECT} FROM {self._n.memories} WHERE memory_id = %s AND user_id = %s",
                (memory_id, user_id),
            ).fetchone()
        return None if row is None else rows_to_memories([row])[0]

    @staticmethod
    def _where(query: MemoryQuery, *, user: bool = True) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if user and query.user_id is not None:
            clauses.append("user_id = %s")
            params.append(query.user_id)
        if query.agent_id is not None:
            clauses.append("agent_id = %s")
            params.append(query.agent_id)
        if query.team_id is not None:
            clauses.append("team_id = %s")
            params.append(query.team_id)
        if query.topics:
            clauses.append("topics ?| %s")
            params.append(list(query.topics))
        if query.updated_after is not None:
            clauses.append("updated_at >= %s")
            params.append(query.updated_after)
        if query.updated_before is not None:
            clauses.append("updated_at < %s")
            params.append(query.updated_before)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    @staticmethod
    def _page(query: MemoryQuery, params: list[Any]) -> str:
        if query.limit is None and not query.offset:
            return ""
        params += [query.limit, query.offset]
        return " LIMIT %s OFFSET %s"

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        where, params = self._where(query)
        order = "DESC" if query.sort_order == "desc" else "ASC"
        sql = (
            f"SELECT {_SELECT} FROM {self._n.memories}{where} "
            f"ORDER BY {query.sort_by} {order}, memory_id {order}"
        )
        sql += self._page(query, params)
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return rows_to_memories(rows)

    def count_memories(self, query: MemoryQuery) -> int:
        where, params = self._where(query)
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

    def get_topics(self, user_id: str | None) -> list[str]:
        sql = f"SELECT DISTINCT jsonb_array_elements_text(topics) FROM {self._n.memories}"
        params: tuple[str, ...] = ()
        if user_id is not None:
            sql += " WHERE user_id = %s"
            params = (user_id,)
        with self._connection() as conn:
            return sorted(str(row[0]) for row in conn.execute(sql, params))

    def get_user_stats(self, limit: int | None = None, offset: int = 0) -> list[UserStats]:
        check_page(limit, offset)
        sql = (
            f"SELECT user_id, count(*), {_MICROS.format('max(updated_at)')} "
            f"FROM {self._n.memories} GROUP BY user_id "
            "ORDER BY max(updated_at) DESC, user_id LIMIT %s OFFSET %s"
        )
        with self._connection() as conn:
            rows = conn.execute(sql, (limit, offset)).fetchall()
        return [UserStats(user_id, count, from_micros(last)) for user_id, count, last in rows]

    # -- search -----------------------------------------------------------------------

    def keyword_search(self, query: MemoryQuery, text: str) -> list[ScoredMemory]:
        if query.user_id is None:
            raise UserError("keyword search is for one user: give a user_id")
        words = fts_terms(text)
        words = [w for w in words if w not in STOPWORDS] or words
        if not words or query.limit == 0:
            return []
        # Only letters and digits reach the query, joined by "or": nothing in ``text`` can
        # be read as query syntax, and any of the words matches (see KEYWORD_MATCH).
        where, params = self._where(query)
        inner = (
            f"SELECT memory_id AS hit, ts_rank(search, q, 1) AS score FROM {self._n.memories}, "
            f"websearch_to_tsquery('english', %s) AS q{where} AND {KEYWORD_MATCH} "
            "ORDER BY score DESC, memory_id"
        )
        params = [" or ".join(words), *params]
        inner += self._page(query, params)
        with self._connection() as conn:
            return self._ranked(conn, inner, params)

    def _ranked(self, conn: Conn, inner: str, params: list[Any]) -> list[ScoredMemory]:
        """The memories ``inner`` ranks (``hit``, ``score``, best first, one page): the
        ranking reads only what it scores, and only the page's rows are read whole."""
        rows = conn.execute(
            f"SELECT {_SELECT}, hits.score FROM ({inner}) AS hits "
            f"JOIN {self._n.memories} ON memory_id = hits.hit ORDER BY hits.score DESC, memory_id",
            params,
        ).fetchall()
        found = rows_to_memories([row[:-1] for row in rows])
        return [ScoredMemory(m, float(row[-1])) for m, row in zip(found, rows, strict=True)]

    def semantic_search(
        self, query: MemoryQuery, vector: QueryVector, model: str
    ) -> list[ScoredMemory]:
        user_id, target = search_target(query.user_id, vector)
        if query.limit == 0:
            return []
        self._open()
        if not self._pgvector:
            return self._search_in_python(query, target, model)
        dims = int(target.size)
        where, params = self._where(query)
        # the size as a constant: it must match the HNSW index's condition when planned
        where += f" AND embedding_model = %s AND vector_dims(embedding) = {dims}"
        params.append(model)
        indexed = dims in self._indexed_dimensions and self._larger_than(
            user_id, self.exact_search_limit
        )
        # Exact over the user's rows (the plain column is not what the index holds), or,
        # for a user too large for that, the HNSW index: its expression and condition, and
        # a scan that goes on until enough of this user's rows have been found.
        column = f"embedding::vector({dims})" if indexed else "embedding"
        inner = (
            f"SELECT memory_id AS hit, 1 - ({column} <=> %s) AS score FROM {self._n.memories}"
            f"{where} ORDER BY {column} <=> %s, memory_id"
        )
        params = [target, *params, target]
        inner += self._page(query, params)
        with self._transaction() as conn:
            if indexed:
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute("SET LOCAL hnsw.ef_search = 100")
            return self._ranked(conn, inner, params)

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
        if len(self._sizes) > 100_000:
            self._sizes.clear()
        self._sizes[user_id] = (now + 60.0, large)
        return large

    def _search_in_python(
        self, query: MemoryQuery, target: Vector, model: str
    ) -> list[ScoredMemory]:
        """Without pgvector: the user's vectors are read and compared here."""
        where, params = self._where(query)
        sql = (
            f"SELECT {_SELECT}, embedding FROM {self._n.memories}{where} "
            "AND embedding_model = %s AND length(embedding) = %s ORDER BY memory_id"
        )
        with self._connection() as conn:
            rows = conn.execute(sql, [*params, model, 4 * target.size]).fetchall()
        if not rows:
            return []
        memories = rows_to_memories([row[:-1] for row in rows])
        scores = from_blobs([bytes(row[-1]) for row in rows], target.size) @ target
        count = None if query.limit is None else query.offset + query.limit
        ranked = top_indices(scores, count)[query.offset :]  # ties: by id, as in SQL
        return [ScoredMemory(memories[i], float(scores[i])) for i in ranked]

    # -- embeddings -------------------------------------------------------------------

    @staticmethod
    def _pending(user_id: str | None) -> tuple[str, list[Any]]:
        unembedded = "(embedding IS NULL OR embedding_model IS DISTINCT FROM %s)"
        if user_id is None:
            return f" WHERE {unembedded}", []
        return f" WHERE user_id = %s AND {unembedded}", [user_id]

    def memories_to_embed(
        self, user_id: str | None, model: str, limit: int | None = None
    ) -> list[UserMemory]:
        check_page(limit, 0)
        where, params = self._pending(user_id)
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_SELECT} FROM {self._n.memories}{where} "
                "ORDER BY created_at, memory_id LIMIT %s",
                [*params, model, limit],
            ).fetchall()
        return rows_to_memories(rows)

    def count_memories_to_embed(self, user_id: str | None, model: str) -> int:
        """All the user's memories less those embedded by ``model``: two counts that read
        only indexes (a memory has a model exactly when it has an embedding), which stays
        cheap when every search of the user asks."""
        if user_id is None:
            where, params = self._pending(None)
            sql = f"SELECT count(*) FROM {self._n.memories}{where}"
            args: list[Any] = [*params, model]
        else:
            t = self._n.memories
            sql = (
                f"SELECT (SELECT count(*) FROM {t} WHERE user_id = %s) - "
                f"(SELECT count(*) FROM {t} WHERE user_id = %s AND embedding_model = %s)"
            )
            args = [user_id, user_id, model]
        with self._connection() as conn:
            row = conn.execute(sql, args).fetchone()
        return 0 if row is None else int(row[0])

    def set_embeddings(self, model: str, items: Sequence[tuple[UserMemory, QueryVector]]) -> int:
        checked = [(m, check_vector(v)) for m, v in items]
        if not checked:
            return 0
        self._open()
        value = "%s" if self._pgvector else "%s::bytea"
        rows = [
            (v if self._pgvector else to_blob(v), model, m.memory_id, m.user_id, m.memory)
            for m, v in checked
        ]
        for dims in {int(v.size) for _, v in checked} - self._indexed_dimensions:
            self._index_vectors(dims)
        with self._transaction() as conn, conn.cursor() as cur:
            cur.executemany(
                f"UPDATE {self._n.memories} SET embedding = {value}, embedding_model = %s "
                "WHERE memory_id = %s AND user_id = %s AND memory = %s",
                rows,
            )
            return max(cur.rowcount, 0)

    def _index_vectors(self, dims: int) -> None:
        """The HNSW index (cosine) of the vectors of ``dims`` dimensions, made once."""
        if not self._pgvector or not self.create_vector_index or not 0 < dims <= 2000:
            return
        name = f"ix_{self.memory_table}_hnsw_{dims}"
        with self._transaction() as conn:
            conn.execute(
                f'CREATE INDEX IF NOT EXISTS "{name}" ON {self._n.memories} '
                f"USING hnsw ((embedding::vector({dims})) vector_cosine_ops) "
                f"WHERE vector_dims(embedding) = {dims}"
            )
        self._indexed_dimensions.add(dims)

    # -- SessionStore (see postgres_sessions) ------------------------------------------

    def append_run(self, run: RunResult) -> None:
        with self._transaction() as conn:
            sessions.append_run(conn, self._n, run, from_micros(now_micros()))

    def get_runs(
        self,
        session_id: str,
        user_id: str,
        *,
        last_n: int | None = None,
        completed_only: bool = False,
    ) -> list[RunResult]:
        check_page(last_n, 0)
        with self._connection() as conn:
            return sessions.get_runs(conn, self._n, session_id, user_id, last_n, completed_only)

    def get_session(self, session_id: str, user_id: str | None) -> Session | None:
        with self._connection() as conn:
            return sessions.get_session(conn, self._n, session_id, user_id)

    def list_sessions(
        self, user_id: str | None, *, limit: int | None = None, offset: int = 0
    ) -> list[Session]:
        check_page(limit, offset)
        with self._connection() as conn:
            return sessions.list_sessions(conn, self._n, user_id, limit, offset)

    def delete_session(self, session_id: str, user_id: str | None) -> bool:
        with self._transaction() as conn:
            return sessions.delete_session(conn, self._n, session_id, user_id)

    def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        with self._connection() as conn:
            return sessions.get_summary(conn, self._n, session_id, user_id)

    def set_session_summary(self, session_id: str, user_id: str, summary: SessionSummary) -> bool:
        with self._transaction() as conn:
            return sessions.set_summary(conn, self._n, session_id, user_id, summary)


def _say_no_pgvector(where: str) -> None:
    global _warned_no_pgvector  # noqa: PLW0603 - said once per process
    if not _warned_no_pgvector:
        _warned_no_pgvector = True
        log.warning(
            "%s: the pgvector extension is not available; semantic search compares vectors "
            "in Python (install pgvector for search in the database)",
            where,
        )
