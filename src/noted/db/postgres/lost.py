"""What PostgresDb says when one of its tables is gone under a running process (dropped by
hand, or with its schema): the store sets its tables up again, as at its first call,
and tells the caller what was done or what to do.

The set-up follows ``noted_schema_versions``: a table whose row is gone with it is made
again (empty), and the call that met it fails, to be made again. A table dropped alone
keeps its row, which says it is there: the set-up cannot tell what else went with it, so
the store makes nothing and the error names the table and the ways back. A new process
whose first call meets such a table (its set-up fails on it) says the same (:func:`set_up`).
"""

from __future__ import annotations

import contextlib
import threading
from typing import Protocol

import psycopg

from noted.db._lost import gone_though_recorded, missing_tables
from noted.db.postgres import schema as pg_schema
from noted.db.postgres.query import Conn
from noted.db.revocations import SUFFIX as REVOKED
from noted.errors import StoreError

__all__ = ["lost_table", "set_up"]


class SetUp(Protocol):
    """What of a PostgresDb the set-up needs."""

    memory_table: str
    session_table: str
    connect_timeout: float
    _conninfo: str
    _where_to: str
    _n: pg_schema.Names
    _lock: threading.Lock

    def _migrate(self, conn: Conn) -> None: ...


def _families(store: SetUp) -> dict[str, list[str]]:
    """Each table ``noted_schema_versions`` keeps a row for, with the tables it covers (the
    revocations' table is made when first needed, not by the set-up)."""
    memory, session = store.memory_table, store.session_table
    suffixes = [s for s in pg_schema.MEMORY_TABLE_SUFFIXES if s != REVOKED]
    return {
        memory: [memory + s for s in ("", *suffixes)],
        session: [session + s for s in ("", *pg_schema.SESSION_TABLE_SUFFIXES)],
    }


def _missing(conn: Conn, store: SetUp) -> dict[str, list[str]]:
    """The store's tables that are not in the database, by the row that covers them."""

    def there(table: str) -> bool:
        row = conn.execute("SELECT to_regclass(%s)", (store._n.q(table),)).fetchone()
        return row is not None and row[0] is not None

    return missing_tables(_families(store), there)


def set_up(store: SetUp, conn: Conn) -> None:
    """The store's set-up at its first call (``store._migrate``, its lock held), a table
    gone that ``noted_schema_versions`` says is there named with the ways back."""
    try:
        store._migrate(conn)
    except psycopg.errors.UndefinedTable as exc:
        try:
            error = _told(store, conn, _said(exc))
        except psycopg.Error as again:
            error = StoreError(f"{store._where_to}: {_said(exc)} ({again})")
        raise error from exc


def lost_table(store: SetUp, exc: psycopg.errors.UndefinedTable) -> StoreError:
    """The error of a call that met a table that is not there, after the store's tables
    were set up again (see the module's notes)."""
    said = _said(exc)
    try:
        timeout = int(store.connect_timeout)
        with psycopg.connect(store._conninfo, autocommit=True, connect_timeout=timeout) as conn:
            with store._lock, contextlib.suppress(psycopg.errors.UndefinedTable):
                store._migrate(conn)  # (fails on a table gone that its version says is there)
            return _told(store, conn, said)
    except psycopg.Error as again:
        where = store._where_to
        return StoreError(f"{where}: {said} (setting the tables up again failed: {again})")


def _said(exc: psycopg.errors.UndefinedTable) -> str:
    """PostgreSQL's message (``relation ... does not exist``)."""
    return exc.diag.message_primary or str(exc).splitlines()[0]


def _told(store: SetUp, conn: Conn, said: str) -> StoreError:
    """The error of a call that met a table gone (PostgreSQL ``said`` so), once the
    tables were set up: what is missing now, and the ways back."""
    missing = _missing(conn, store)
    if not missing:
        return StoreError(
            f"{store._where_to}: {said}: the store's tables were gone (dropped while it ran?) "
            "and are set up again, empty where they were gone; nothing of this call was "
            "done: make it again"
        )
    family, tables = next(iter(missing.items()))
    version = pg_schema.current_version(conn, store._n, family)
    others = [t for t in _families(store)[family] if t not in tables]
    start = f"{store._where_to}: {said}: table(s) {', '.join(tables)} are gone"
    return gone_though_recorded(
        start, family, version, others, "them", "the next call creates them"
    )
