"""How SqliteDb deletes memories: those of a list of ids, and a clear (one user's memories,
or every user's), each memory with its "delete" event, its keyword index rows and its
user's generation.

Clearing: a clear (one user's memories, or every user's) deletes ``CLEAR_BATCH``
memories per transaction, in rowid order, each batch with its "delete" events, its
keyword index rows and its users' generations, and lets SQLite's write lock and the
store's lock go for ``CLEAR_PAUSE`` between two batches: other writers (this process's
threads, other processes) wait for one batch, not for the whole clear, and no more than
one batch's rows are read into memory at once (a user's rowids are read first, 8 bytes a
memory). A clear deletes every memory that was stored when it began (the user's rowids
then, or for every user's those at or below the table's largest: a memory keeps its rowid
when it is changed) and records one event for each; a memory added while it
runs may be kept or deleted, with its event, each batch all or nothing. Stopped part-way
(the process killed, a batch failing), a clear leaves the batches it committed deleted
and recorded, and every other memory stored and unrecorded; clearing again finishes it.
A clear inside a write batch is part of that batch's one transaction."""

from __future__ import annotations

import json
import time
from array import array
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager

from noted._time import now_micros
from noted.audit import AuditContext
from noted.db import core
from noted.db._rows import IN_CHUNK
from noted.db.sqlite.connection import Connection
from noted.db.sqlite.terms import UserTerms
from noted.db.sqlite.vectors import SqliteVectors

__all__ = ["CLEAR_BATCH", "CLEAR_PAUSE", "SqliteDeletes"]

CLEAR_BATCH = 5_000  # memories a clear deletes per transaction (see "Clearing")
CLEAR_PAUSE = 0.002  # seconds a clear lets other writers in between two batches


class SqliteDeletes(core.DeleteRules):
    """The deletes of SqliteDb (:class:`~noted.db.core.DeleteRules` takes the calls)."""

    memory_table: str
    _sql_event: str  # inserts one event row
    _sql_last_rowid: str  # reads the memory table's largest rowid
    _vectors: SqliteVectors
    _terms: UserTerms
    _session: Callable[[], AbstractContextManager[Connection]]
    _transaction: Callable[[], AbstractContextManager[Connection]]

    def _delete(
        self, conn: Connection, where: str, params: Sequence[str], context: AuditContext
    ) -> int:
        """Delete the memories ``where`` selects, recording a "delete" event for each (the
        oldest first)."""
        found = conn.execute(
            f"SELECT memory_id, user_id, memory, topics FROM {self.memory_table}{where} "
            "ORDER BY created_at, memory_id",
            params,
        ).fetchall()
        if not found:
            return 0
        self._vectors.changed(
            conn,
            (user_id for _, user_id, _, _ in found),
            (memory_id for memory_id, *_ in found),
            deleted=True,
        )
        self._terms.unindex_where(conn, where, params)
        conn.execute(f"DELETE FROM {self.memory_table}{where}", params)
        gone = core.deletions(found)
        conn.executemany(self._sql_event, core.history_rows(gone, context, now_micros()))
        return len(found)

    def _delete_ids(self, ids: list[str], user_id: str, context: AuditContext) -> int:
        deleted = 0
        with self._transaction() as conn:
            for start in range(0, len(ids), IN_CHUNK):
                chunk = ids[start : start + IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                # "+user_id": see "Reads by id" in noted.db.sqlite.store
                where = f" WHERE +user_id = ? AND memory_id IN ({marks})"
                deleted += self._delete(conn, where, [user_id, *chunk], context)
        return deleted

    def _delete_all(self, user_id: str | None, context: AuditContext) -> int:
        """Clear one user (every user for None) a batch of ``CLEAR_BATCH`` memories at a
        time in rowid order (the order of the table's pages), each batch its own
        transaction with its events, other writers let in between two (see "Clearing" at
        the top). Inside a transaction already (a write batch) every batch is part of it."""
        t = self.memory_table
        with self._session() as conn:
            inside = conn.in_transaction
            if user_id is None:
                top = conn.execute(self._sql_last_rowid).fetchone()[0] or 0
            else:  # from the user's index: 8 bytes a memory
                sql = f"SELECT rowid FROM {t} WHERE user_id = ? ORDER BY rowid"
                mine = array("q", (row[0] for row in conn.execute(sql, (user_id,))))
        deleted = after = 0
        while True:
            with self._transaction() as conn:
                if user_id is None:
                    sql = f"SELECT rowid FROM {t} WHERE rowid > ? AND rowid <= ? ORDER BY rowid"
                    rowids = [
                        r[0] for r in conn.execute(sql + " LIMIT ?", (after, top, CLEAR_BATCH))
                    ]
                else:
                    rowids = mine[after : after + CLEAR_BATCH].tolist()
                deleted += self._clear_batch(conn, user_id, rowids, context)
            if len(rowids) < CLEAR_BATCH:
                return deleted
            after = rowids[-1] if user_id is None else after + CLEAR_BATCH
            if not inside:
                time.sleep(CLEAR_PAUSE)  # the locks let go: a waiting writer takes them now

    def _clear_batch(
        self, conn: Connection, user_id: str | None, rowids: list[int], context: AuditContext
    ) -> int:
        """Delete the memories of ``rowids`` that are still ``user_id``'s (any user's for
        None), with their events (oldest first)."""
        if not rowids:
            return 0
        t = self.memory_table
        where = f" WHERE {t}.rowid IN (SELECT value FROM json_each(?))"
        params = [json.dumps(rowids)]
        if user_id is not None:
            where += f" AND {t}.user_id = ?"
            params.append(user_id)
        return self._delete(conn, where, params, context)
