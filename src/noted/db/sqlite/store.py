"""SqliteDb: noted's embedded default store, one SQLite file in WAL mode.

This module holds the store's writes and reads of memories; the rest is in the modules
beside it: the connection's sessions and transactions (transactions.py), deletes and
clears (deleting.py), keyword search (fulltext.py, terms.py, pending.py), vectors
(vectors.py), listings' rows (listing.py), sessions, jobs and token revocations."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Hashable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import apsw

from noted._time import from_micros, now_micros, to_micros
from noted.audit import AuditContext, MemoryEvent, new_event_ids, resolve_audit
from noted.db import core
from noted.db._rows import (
    COLUMNS,
    EVENT_COLUMNS,
    IN_CHUNK,
    PAUSE_GC_ROWS,
    call_with_collector_paused,
    check_table_names,
    memory_to_row,
    row_to_event,
    row_to_memory,
    rows_to_memories,
    sound_json,
)
from noted.db.base import (
    MemoryQuery,
    QueryVector,
    ScoredMemory,
    StoreContext,
    WriteBatch,
)
from noted.db.revocations import SUFFIX as REVOKED
from noted.db.sessions_core import SessionsInModule
from noted.db.sqlite import migrations
from noted.db.sqlite import sessions as session_rows
from noted.db.sqlite.connection import Connection, planned_by_values
from noted.db.sqlite.deleting import SqliteDeletes
from noted.db.sqlite.fulltext import SqliteFullText
from noted.db.sqlite.jobs import SqliteJobs
from noted.db.sqlite.listing import (
    JSON_IN_SQL,
    MEMORY_JSON,
    OWNED_ROW,
    owned_memories,
    sound_topics,
)
from noted.db.sqlite.revocations import SqliteRevocations
from noted.db.sqlite.transactions import SqliteTransactions
from noted.db.sqlite.vectors import SqliteVectors
from noted.errors import StoreError, UserError
from noted.retrieval.fusion import Hit
from noted.retrieval.ranking import content_terms
from noted.schema import UserMemory, UserStats

__all__ = ["SqliteDb"]

_SELECT = ", ".join(COLUMNS)
_EVENT_SELECT = ", ".join(EVENT_COLUMNS)
# Reads by id: a read or delete of one user's memories by a list of ids writes "+user_id = ?", so
# that SQLite looks each id up by the primary key: given "user_id = ?" it prefers the index
# of users' rows (it guesses few rows per user) and walks all of the user's memories once per
# list of IN_CHUNK ids, so deleting k of a user's n memories cost k * n / IN_CHUNK rows read.
_ROWS_PER_INSERT = IN_CHUNK // len(COLUMNS)  # rows of new memories per INSERT statement
_EVENT_ID_LEN = 36  # a UUID as text
_MAX_ROWID = 2**63 - 1
_VECTOR_CACHE_BYTES = 512 * 2**20
_PAGE_CACHE_MIB = 64
# the faults that stop a write but not a read: a keyword search reads on without its catch-up
_CANNOT_WRITE = (apsw.FullError, apsw.ReadOnlyError)


class SqliteDb(
    SqliteTransactions,
    SqliteRevocations,
    SqliteJobs,
    SqliteDeletes,
    core.EmbeddingsInHelper,
    core.PageRules,
    SessionsInModule,
    StoreContext,
):
    """Memories in a SQLite file, created with its tables and indexes on first use.

    Writes are durable when the call returns: WAL journal with ``synchronous=NORMAL`` (a
    committed transaction survives a crash of the program; a power cut may lose the last
    transactions, never corrupt the file). Other processes may use the same file at once:
    a writer waits up to ``busy_timeout`` seconds for the lock instead of failing.
    """

    capabilities = core.Capabilities(transactions=True, native_fulltext=True)
    _vectors: SqliteVectors

    def __init__(
        self,
        db_file: str | os.PathLike[str],
        *,
        memory_table: str = "noted_memories",
        session_table: str = "noted_sessions",
        read_only: bool = False,
        create_dirs: bool = False,
        busy_timeout: float = 30.0,
        vector_cache_bytes: int = _VECTOR_CACHE_BYTES,
        page_cache_mib: int = _PAGE_CACHE_MIB,
    ) -> None:
        if not isinstance(db_file, str | os.PathLike) or not os.fspath(db_file):
            raise UserError(f"db_file must be a file path, got {db_file!r}")
        self.db_file = Path(db_file)
        self.memory_table, self.session_table = check_table_names(
            memory_table,
            session_table,
            ("_events", "_fts", "_fts_users", "_fts_terms", "_generations", REVOKED),
        )
        self._session_names = self.session_table
        self.read_only = read_only
        self.create_dirs = create_dirs
        self.busy_timeout = busy_timeout
        if type(page_cache_mib) is not int or page_cache_mib < 1:
            raise UserError(f"page_cache_mib must be a positive integer, got {page_cache_mib!r}")
        self.page_cache_mib = page_cache_mib
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._depth = 0  # sessions open on the thread that holds the lock
        self._opened = False
        self._moved_check_due = 0.0
        self._vectors = SqliteVectors(
            self.memory_table, self._session, self._transaction, self._where, vector_cache_bytes
        )
        self._fulltext = SqliteFullText(
            self.memory_table, self._session, self._where, self._vectors.generation
        )
        t = self.memory_table
        # the last parameter is the core's decision that the embedding goes (clears_embedding)
        clear = "CASE WHEN ?{n} THEN NULL ELSE {t}.embedding{suffix} END"
        upsert_clear = len(COLUMNS) + 1
        self._sql_upsert = (
            f"INSERT INTO {t} ({_SELECT}) VALUES ({', '.join('?' * len(COLUMNS))}) "
            f"ON CONFLICT(memory_id) DO UPDATE SET "
            f"embedding = {clear.format(n=upsert_clear, t=t, suffix='')}, "
            f"embedding_model = {clear.format(n=upsert_clear, t=t, suffix='_model')}, "
            f"memory = excluded.memory, "
            f"topics = excluded.topics, input = excluded.input, agent_id = excluded.agent_id, "
            f"team_id = excluded.team_id, session_id = excluded.session_id, "
            f"created_at = excluded.created_at, updated_at = excluded.updated_at "
            f"WHERE {t}.user_id = excluded.user_id"
        )
        self._sql_update = (
            f"UPDATE {t} SET embedding = {clear.format(n=10, t=t, suffix='')}, "
            f"embedding_model = {clear.format(n=10, t=t, suffix='_model')}, "
            f"memory = ?1, topics = ?2, input = ?3, agent_id = ?4, team_id = ?5, "
            f"session_id = ?6, updated_at = ?7 "
            f"WHERE memory_id = ?8 AND user_id = ?9"
        )  # created_at: the record's is the stored one (core.replaced_fields), indexed twice

        # New memories go in _ROWS_PER_INSERT to a statement, and their events in one. Such
        # multi-row statements say OR FAIL: with SQLite's default (ABORT) a failing statement
        # undoes its own rows, so SQLite first journals every page it changes, which costs
        # the most in a large file; here a failure rolls the whole transaction back anyway.
        values = f"({', '.join('?' * len(COLUMNS))})"
        self._sql_insert = f"INSERT INTO {t} ({_SELECT}) VALUES {values}"
        self._sql_insert_many = (
            f"INSERT OR FAIL INTO {t} ({_SELECT}) VALUES {', '.join([values] * _ROWS_PER_INSERT)}"
        )
        self._events_table = f"{t}_events"
        self._sql_event = (
            f"INSERT INTO {self._events_table} ({_EVENT_SELECT}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
        )
        self._sql_last_rowid = f"SELECT max(rowid) FROM {t}"
        # New memories are indexed when the next keyword search comes (the rows above the
        # index's largest rowid; see _catch_up, and pending.py when it cannot write), so
        # adding one costs no index write. A
        # changed or deleted memory leaves the index at once, and a changed one goes back
        # in when it had been indexed before.
        self._terms = self._fulltext.terms
        # The "add" events of the memories just inserted above rowid ?2, copied from their
        # rows in the order they were inserted; ?1 holds their event ids, _EVENT_ID_LEN
        # ASCII bytes each, as one blob (a blob's substr counts bytes, so finding the n-th
        # id costs the same for every n; a text's would count characters from the start).
        self._sql_add_events = (
            f"INSERT OR FAIL INTO {self._events_table} ({_EVENT_SELECT}) "
            f"SELECT CAST(substr(?1, (rowid - ?2 - 1) * {_EVENT_ID_LEN} + 1, {_EVENT_ID_LEN}) "
            f"AS TEXT), memory_id, user_id, 'add', NULL, memory, NULL, topics, ?3, ?4, ?5, ?6 "
            f"FROM {t} WHERE rowid > ?2 ORDER BY rowid"
        )

    def __repr__(self) -> str:
        return (
            f"SqliteDb(db_file={str(self.db_file)!r}, memory_table={self.memory_table!r}, "
            f"session_table={self.session_table!r})"
        )

    # -- connection (see transactions.py) ---------------------------------------------

    # the sessions' connections (SessionsInModule does the rest)
    _session_functions = session_rows
    _session_reader = SqliteTransactions._session
    _session_writer = SqliteTransactions._transaction

    def _forget_file(self) -> None:
        self._vectors.new_file()
        self._fulltext.new_file()

    def schema_version(self, table: str | None = None) -> int:
        """The number of migrations applied to ``table`` (the memory table by default)."""
        with self._session() as conn:
            return migrations.current_version(conn, table or self.memory_table)

    # -- MemoryStore ------------------------------------------------------------------

    def upsert_memories(
        self, memories: Sequence[UserMemory], *, audit: AuditContext | None = None
    ) -> None:
        context = resolve_audit(audit)
        rows = [memory_to_row(m) for m in memories]
        if not rows:
            return
        ids = [row[0] for row in rows]
        with self._transaction() as conn:
            stored = self._stored(conn, ids)
            self._vectors.changed(conn, (row[1] for row in rows), ids)
            now = now_micros()
            if not stored and len(set(ids)) == len(ids):  # only new memories, each once
                self._add(conn, rows, context, now)
                return
            changes = core.upsert_changes((row[:4] for row in rows), stored)
            touched = list(dict.fromkeys(ids))
            self._terms.unindex(conn, touched)
            decided = [
                (*row, core.clears_embedding(c)) for row, c in zip(rows, changes, strict=True)
            ]
            conn.executemany(self._sql_upsert, decided)
            self._terms.reindex(conn, touched)
            conn.executemany(self._sql_event, core.history_rows(changes, context, now))

    def write_batch(
        self, batch: WriteBatch, *, audit: AuditContext | None = None
    ) -> list[UserMemory]:
        with self._transaction():
            return core.write_batch(self, batch, audit)

    def memory_owners(self, memory_ids: Sequence[str]) -> dict[str, str]:
        with self._session() as conn:
            return {i: side.user_id for i, side in self._stored(conn, list(memory_ids)).items()}

    def memory_times(self, memory_ids: Sequence[str], user_id: str) -> dict[str, int]:
        times: dict[str, int] = {}
        with self._session() as conn:
            for start in range(0, len(memory_ids), IN_CHUNK):
                chunk = list(memory_ids[start : start + IN_CHUNK])
                marks = ", ".join("?" * len(chunk))
                times.update(
                    conn.execute(
                        f"SELECT memory_id, updated_at FROM {self.memory_table} "
                        f"WHERE +user_id = ? AND memory_id IN ({marks})",  # see "Reads by id"
                        [user_id, *chunk],
                    ).fetchall()
                )
        return times

    def _add(
        self,
        conn: Connection,
        rows: list[tuple[Any, ...]],
        context: AuditContext,
        now: int,
    ) -> None:
        """Insert memories whose ids are not stored, each once, with an "add" event each."""
        count = len(rows)
        if count == 1:
            conn.execute(self._sql_insert, rows[0])
            first: list[core.Change[str]] = core.additions([rows[0][:4]])
            conn.executemany(self._sql_event, core.history_rows(first, context, now))
            return
        # SQLite gives an inserted row the rowid one above the largest in its table (unless
        # that one is the largest possible), and this transaction is the table's only
        # writer: the new memories are exactly the rows above the largest rowid of now, in
        # the order of ``rows``. One INSERT ... SELECT then writes all their events, instead
        # of sending every event row through the driver a second time.
        last = conn.execute(self._sql_last_rowid).fetchone()[0] or 0
        whole = count - count % _ROWS_PER_INSERT
        conn.executemany(
            self._sql_insert_many,
            [
                tuple(itertools.chain.from_iterable(rows[i : i + _ROWS_PER_INSERT]))
                for i in range(0, whole, _ROWS_PER_INSERT)
            ],
        )
        conn.executemany(self._sql_insert, rows[whole:])
        ids = "".join(new_event_ids(count)).encode("ascii")
        if (
            last <= _MAX_ROWID - count
            and len(ids) == _EVENT_ID_LEN * count
            and len(ids) <= conn.limit(apsw.SQLITE_LIMIT_LENGTH)
        ):
            stamp = core.event_stamp(context, now)
            conn.execute(self._sql_add_events, (ids, last, *stamp))
            added = conn.changes()
            if added != count:  # never expected; raising rolls the transaction back
                raise StoreError(
                    f"{self.db_file}: inserted {count} memories but found {added} to record; "
                    "nothing was written"
                )
            return
        changes: list[core.Change[str]] = core.additions(row[:4] for row in rows)
        conn.executemany(self._sql_event, core.history_rows(changes, context, now))

    def _stored(self, conn: Connection, ids: list[str]) -> dict[str, core.StoredSide[str]]:
        """What the rules need of the given ids that are stored (any user)."""
        stored: dict[str, core.StoredSide[str]] = {}
        for start in range(0, len(ids), IN_CHUNK):
            chunk = ids[start : start + IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for memory_id, user_id, text, topics in conn.execute(
                f"SELECT memory_id, user_id, memory, topics FROM {self.memory_table} "
                f"WHERE memory_id IN ({marks})",
                chunk,
            ):
                stored[memory_id] = core.StoredSide(user_id, text, topics)
        return stored

    def update_memory(
        self, memory: UserMemory, *, audit: AuditContext | None = None
    ) -> UserMemory | None:
        context = resolve_audit(audit)
        row = memory_to_row(memory)
        with self._transaction() as conn:
            old = conn.execute(
                f"SELECT {', '.join(COLUMNS[2:9])} FROM {self.memory_table} "
                "WHERE memory_id = ? AND user_id = ?",
                (row[0], row[1]),
            ).fetchone()
            if old is None:
                return None
            record = dict(zip(COLUMNS, row, strict=True))
            record.update(core.replaced_fields(record, dict(zip(COLUMNS[2:9], old, strict=True))))
            change = core.replacement(row[0], row[1], old[:2], row[2], row[3])
            # memory ... session_id, updated_at, memory_id, user_id, whether the embedding goes
            params = (*(record[c] for c in COLUMNS[2:8]), row[9], row[0], row[1])
            params += (core.clears_embedding(change),)
            self._terms.unindex(conn, [row[0]])
            conn.execute(self._sql_update, params)
            self._terms.reindex(conn, [row[0]])
            self._vectors.changed(conn, [row[1]], [row[0]])
            conn.executemany(self._sql_event, core.history_rows([change], context, now_micros()))
        return row_to_memory([record[c] for c in COLUMNS])  # the row as written

    def get_memory(self, memory_id: str, user_id: str) -> UserMemory | None:
        with self._session() as conn:
            row = conn.execute(
                f"SELECT {_SELECT} FROM {self.memory_table} WHERE memory_id = ? AND user_id = ?",
                (memory_id, user_id),
            ).fetchone()
        return None if row is None else row_to_memory(row)

    def get_memories(self, memory_ids: Sequence[str], user_id: str) -> dict[str, UserMemory]:
        """The memories among ``memory_ids`` that ``user_id`` has, by id: what
        :meth:`get_memory` answers for each, read many at a time."""
        found: dict[str, UserMemory] = {}
        with self._session() as conn:
            for start in range(0, len(memory_ids), IN_CHUNK):
                chunk = list(memory_ids[start : start + IN_CHUNK])
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT {_SELECT} FROM {self.memory_table} "
                    f"WHERE +user_id = ? AND memory_id IN ({marks})",  # see "Reads by id"
                    [user_id, *chunk],
                ).fetchall()
                memories = rows_to_memories(rows)
                found.update((m.memory_id, m) for m in memories if m.memory_id is not None)
        return found

    def _where(self, query: MemoryQuery) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if query.user_id is not None:
            clauses.append("user_id = ?")
            params.append(query.user_id)
        if query.agent_id is not None:
            clauses.append("agent_id = ?")
            params.append(query.agent_id)
        if query.team_id is not None:
            clauses.append("team_id = ?")
            params.append(query.team_id)
        if query.topics:  # the topics as one JSON parameter, however many there are
            clauses.append(  # damaged topics (read as none) match no topic
                f"CASE WHEN {sound_topics(f'{self.memory_table}.topics')} "
                f"THEN EXISTS (SELECT 1 FROM json_each({self.memory_table}.topics) AS mine "
                "WHERE mine.value IN (SELECT value FROM json_each(?))) ELSE 0 END"
            )
            params.append(json.dumps(list(query.topics)))
        if query.updated_after is not None:
            clauses.append("updated_at >= ?")
            params.append(to_micros(query.updated_after))
        if query.updated_before is not None:
            clauses.append("updated_at < ?")
            params.append(to_micros(query.updated_before))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _listing(self, columns: str, query: MemoryQuery) -> list[Any]:
        where, params = self._where(query)
        order = "DESC" if query.sort_order == "desc" else "ASC"
        if query.after is not None:  # the page past a memory: an index range, no scan
            past = "<" if query.sort_order == "desc" else ">"
            where += " AND " if where else " WHERE "
            where += f"({query.sort_by}, memory_id) {past} (?, ?)"
            params += [to_micros(query.after[0]), query.after[1]]
        sql = (
            f"SELECT {columns} FROM {self.memory_table}{where} "
            f"ORDER BY {query.sort_by} {order}, memory_id {order}"
        )
        if query.limit is not None or query.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if query.limit is None else query.limit, query.offset]
        with self._session() as conn:
            return conn.execute(sql, params).fetchall()

    def list_memories(self, query: MemoryQuery) -> list[UserMemory]:
        # a large read: its rows (fresh tuples) are fetched with the collector paused too
        if query.limit is None or query.limit >= PAUSE_GC_ROWS:
            return call_with_collector_paused(self._memories, query)
        return self._memories(query)

    def _memories(self, query: MemoryQuery) -> list[UserMemory]:
        if query.user_id is None:
            return rows_to_memories(self._listing(_SELECT, query))
        return owned_memories(self._listing(OWNED_ROW, query), query.user_id)

    def list_memories_json(self, query: MemoryQuery) -> list[str]:
        """``list_memories(query)``, each memory's ``to_dict()`` as JSON text written by
        SQLite itself: no Python object per field."""
        if not JSON_IN_SQL:
            return [json.dumps(m.to_dict()) for m in self.list_memories(query)]
        try:
            rows = self._listing(f"{MEMORY_JSON}, topics", query)
        except StoreError:  # json() refuses topics that are not JSON ("malformed JSON")
            rows = [(None, None)]
        if all(map(sound_json, {row[1] for row in rows})):  # a few topic sets: each once
            return [row[0] for row in rows]
        # a memory whose stored topics are damaged (not JSON, or JSON of another shape):
        # the page read as memories, that one marked (another failure is raised again)
        return [m.to_json() for m in self.list_memories(query)]

    def _catch_up(self) -> bool:
        """Index the memories added since the last keyword search, if SQLite's write lock
        is free now: True when the index holds every memory then; False (nothing done)
        when another connection holds the lock, the store is read-only, or the file cannot
        be written now (a full disk, a file made read-only), and the search ranks the
        memories the index does not hold itself (see noted.db.sqlite.pending), rather than
        wait for the lock (up to ``busy_timeout``, and then fail) or fail."""
        top = f"SELECT max(rowid) FROM {self.memory_table}"
        with self._session() as conn:
            newest, indexed = conn.execute(f"SELECT ({top}), ({self._terms.sql_top})").fetchone()
        if (newest or 0) <= (indexed or 0):
            return True
        if self.read_only:
            return False
        try:
            with self._transaction_if_free() as conn:
                if conn is None:
                    return False
                indexed = conn.execute(self._terms.sql_top).fetchone()[0]
                self._terms.index_after(conn, indexed or 0)
        except StoreError as exc:
            if not isinstance(exc.__cause__, _CANNOT_WRITE):
                raise
            return False  # the search reads on; the next one that can write indexes them
        return True

    def _keyword_rows(
        self, columns: str, query: MemoryQuery, text: str, text_only: bool = False
    ) -> list[Any]:
        """``columns`` and the BM25 score (last) of the query's page of best matches."""
        user_id = core.keyword_user(query)
        words = content_terms(text)
        if not words or query.limit == 0:
            return []
        if self._catch_up():
            with self._session() as conn, planned_by_values(conn):
                return self._fulltext.rows(columns, query, user_id, words, text_only)
        with self._snapshot() as conn, planned_by_values(conn):
            return self._fulltext.rows(columns, query, user_id, words, text_only, pending=True)

    def keyword_search(
        self, query: MemoryQuery, text: str, *, text_only: bool = False
    ) -> list[ScoredMemory]:
        rows = self._keyword_rows(_SELECT, query, text, text_only)
        found = rows_to_memories([row[:-1] for row in rows])
        return [ScoredMemory(m, -float(row[-1])) for m, row in zip(found, rows, strict=True)]

    # -- hits: what hybrid search fuses, the memories read for the final page only --------

    def keyword_hits(self, query: MemoryQuery, text: str) -> list[Hit]:
        """:meth:`keyword_search`'s results as hits (rowid, id, score, time; no memory)."""
        rows = self._keyword_rows(f"{self.memory_table}.rowid, memory_id, updated_at", query, text)
        return [Hit(key, memory_id, -float(score), at / 1e6) for key, memory_id, at, score in rows]

    def semantic_hits(
        self, query: MemoryQuery, vector: QueryVector, model: str, centering: float = 0.0
    ) -> list[Hit]:
        """The closest vectors' hits, the query centred on the user's vectors by
        ``centering`` (0: plain cosine; see :mod:`noted.retrieval.vectors`)."""
        return self._vectors.hits(query, vector, model, centering)

    def memories_by_keys(
        self, user_id: str, keys: Sequence[Hashable]
    ) -> dict[Hashable, UserMemory]:
        """The user's memories the hits of ``keys`` name (those gone meanwhile left out)."""
        rowids = [key for key in keys if type(key) is int]
        return {key: m for key, m in self._vectors.by_rowid(rowids, user_id).items()}

    # -- embeddings and semantic search (see vectors.py) -------------------------------

    @property
    def cached_vector_bytes(self) -> int:
        """How much memory the users' vectors kept for search take now."""
        return self._vectors.cache.nbytes

    def count_memories(self, query: MemoryQuery) -> int:
        where, params = self._where(query)
        with self._session() as conn:
            row = conn.execute(f"SELECT COUNT(*) FROM {self.memory_table}{where}", params)
            return int(row.fetchone()[0])

    def get_memory_history(self, memory_id: str, user_id: str) -> list[MemoryEvent]:
        with self._session() as conn:
            rows = conn.execute(
                f"SELECT {_EVENT_SELECT} FROM {self._events_table} "
                "WHERE user_id = ? AND memory_id = ? ORDER BY created_at, seq",
                (user_id, memory_id),
            ).fetchall()
        return [row_to_event(row) for row in rows]

    def last_deletions(self, memory_ids: Sequence[str], user_id: str | None) -> dict[str, datetime]:
        """When each of ``user_id``'s memories among ``memory_ids`` was last deleted (None:
        each memory of any user's with that id): the time of its latest ``"delete"``
        event, for those that have one."""
        found: dict[str, datetime] = {}
        with self._session() as conn:
            if user_id is None:  # every id in one pass over the events (indexed by user)
                rows = conn.execute(
                    f"SELECT memory_id, MAX(created_at) FROM {self._events_table} "
                    "WHERE memory_id IN (SELECT value FROM json_each(?)) AND event = 'delete' "
                    "GROUP BY memory_id",
                    (json.dumps(list(memory_ids)),),
                ).fetchall()
                return {memory_id: from_micros(at) for memory_id, at in rows}
            for start in range(0, len(memory_ids), IN_CHUNK):
                chunk = list(memory_ids[start : start + IN_CHUNK])
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT memory_id, MAX(created_at) FROM {self._events_table} "
                    f"WHERE user_id = ? AND memory_id IN ({marks}) AND event = 'delete' "
                    "GROUP BY memory_id",
                    [user_id, *chunk],
                ).fetchall()
                found.update((memory_id, from_micros(at)) for memory_id, at in rows)
        return found

    def get_topics(self, user_id: str | None) -> list[str]:
        t = self.memory_table
        mine = f"CASE WHEN {sound_topics(f'{t}.topics')} THEN {t}.topics ELSE '[]' END"
        sql = f"SELECT DISTINCT j.value FROM {t}, json_each({mine}) AS j"  # damaged: none
        params: tuple[str, ...] = ()
        if user_id is not None:
            sql += f" WHERE {t}.user_id = ?"
            params = (user_id,)
        with self._session() as conn:
            return sorted(row[0] for row in conn.execute(sql, params))

    def _user_stats(self, limit: int | None, offset: int) -> list[UserStats]:
        sql = (
            f"SELECT user_id, COUNT(*), MAX(updated_at) FROM {self.memory_table} "
            "GROUP BY user_id ORDER BY MAX(updated_at) DESC, user_id LIMIT ? OFFSET ?"
        )
        with self._session() as conn:
            rows = conn.execute(sql, (-1 if limit is None else limit, offset)).fetchall()
        return [UserStats(user_id, count, from_micros(last)) for user_id, count, last in rows]
