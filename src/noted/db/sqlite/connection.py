"""How SqliteDb opens its file: through apsw, which carries its own recent SQLite.

Every module of ``noted.db.sqlite`` works on the connection this returns, so one SQLite
library serves the whole file in this process (two copies of the library in one process
do not see each other's POSIX locks on a file).

The connection is opened without SQLite's own mutex (``SQLITE_OPEN_NOMUTEX``, SQLite's
"multi-thread" mode): SqliteDb already lets one thread at a time use it (its lock, held
for every session), and SQLite's mutex would only be taken and released again on every
call into the library, each row fetched included. What SQLite's mutex also covered is a
statement finalized by the garbage collector, on whatever thread drops the last reference
to its cursor; so every cursor a session opens that is still alive when the session ends
(a reference to it kept, say, by an exception's traceback) is closed then, under the lock
(:func:`close_cursors`). Cursors are remembered by weak reference: one that is dropped
inside the session is freed at once, as before, and its statement with it (a statement
kept alive would hold its read transaction open until the session ends)."""

from __future__ import annotations

import ctypes
import math
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import apsw

from noted.errors import StoreError

__all__ = [
    "WRITE_PAUSE",
    "Connection",
    "begin_write",
    "begin_write_if_free",
    "close_cursors",
    "close_moved",
    "connect",
    "create_owner_only",
    "has_moved",
    "planned_by_values",
]

WRITE_TRY = 0.02  # seconds a write waits for another connection's lock at a time
WRITE_PAUSE = 0.001  # seconds between two such waits, the store's lock let go


class Rows(Protocol):
    """What a statement run on a :class:`Connection` gives back."""

    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """The calls noted makes on an apsw connection (its rows typed as the SQL decides)."""

    @property
    def in_transaction(self) -> bool: ...
    def execute(self, statements: str, bindings: apsw.Bindings | None = None) -> Rows: ...
    def executemany(self, statements: str, sequenceofbindings: Iterable[apsw.Bindings]) -> Rows: ...
    def changes(self) -> int: ...
    def readonly(self, name: str) -> bool: ...
    def total_changes(self) -> int: ...
    def limit(self, id: int, newval: int = -1) -> int: ...
    def setbusytimeout(self, milliseconds: int) -> None: ...
    def config(self, op: int, *args: int) -> int: ...
    def file_control(self, dbname: str, op: int, pointer: int) -> bool: ...
    def close(self) -> None: ...
    @property
    def open_cursors(self) -> list[weakref.ref[apsw.Cursor]]: ...


class _Connection(apsw.Connection):
    """An apsw connection that remembers (weakly) the cursors opened on it since
    :func:`close_cursors` last ran."""

    open_cursors: list[weakref.ref[apsw.Cursor]]


class _Cursor(apsw.Cursor):
    """apsw's cursor with the DB-API ``rowcount`` that the SQL shared with PostgreSQL
    reads (``noted.db._job_sql``): the rows the statement just run changed."""

    @property
    def rowcount(self) -> int:
        return self.connection.changes()


def _tracking_factory(opened: list[weakref.ref[apsw.Cursor]]) -> Callable[[Any], _Cursor]:
    """A cursor factory that remembers each cursor in ``opened`` (a closure: the cheapest
    per statement, its names all local; a Python ``__init__`` on the cursor costs more)."""
    remember = opened.append
    ref = weakref.ref
    cursor_type = _Cursor

    def tracked_cursor(connection: Any) -> _Cursor:
        cursor = cursor_type(connection)
        remember(ref(cursor))
        return cursor

    return tracked_cursor


def connect(path: os.PathLike[str], *, read_only: bool, busy_timeout: float) -> Connection:
    """A connection in autocommit mode (a transaction only where a ``BEGIN`` starts one)
    that waits up to ``busy_timeout`` seconds for another writer's lock."""
    flags = apsw.SQLITE_OPEN_NOMUTEX | (
        apsw.SQLITE_OPEN_READONLY
        if read_only
        else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    )
    conn = _Connection(os.fspath(path), flags=flags)
    conn.open_cursors = []
    try:
        conn.setbusytimeout(round(busy_timeout * 1000))
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 1)  # see planned_by_values
        conn.cursor_factory = _tracking_factory(conn.open_cursors)
    except BaseException:
        conn.close()
        raise
    return conn


def has_moved(conn: Connection) -> bool:
    """Whether the file ``conn`` has open is no longer the file at its path: deleted, or
    another file put in its place (renamed over it, or a new file under its name).

    SQLite's own check (``SQLITE_FCNTL_HAS_MOVED``): one ``stat`` of the path, its inode
    compared with the one SQLite opened, which is exact where a ``stat`` of ours after the
    open would not be, and follows the absolute path SQLite resolved at the open, whatever
    the working directory is now. Never True for a database that is not a file
    (``:memory:``), nor where SQLite's file layer cannot tell (Windows)."""
    moved = ctypes.c_int(0)
    told = conn.file_control("main", apsw.SQLITE_FCNTL_HAS_MOVED, ctypes.addressof(moved))
    return told and moved.value != 0


def close_moved(conn: Connection) -> bool:
    """Close ``conn``, whose file has moved (see :func:`has_moved`), touching no file by
    its path: False, and ``conn`` left open, when that cannot be done now.

    The write-ahead log ``conn`` has open is first emptied into the file it belongs to (a
    checkpoint that truncates it, through the files ``conn`` holds open): else, when the
    old ``-wal`` is still beside the new file, the next connection to the path would read
    the old file's pages into the new one. That checkpoint waits for the old file's other
    readers (other processes) as a write waits for the lock; False when they still hold
    it. A read-only connection has no log of its own to empty. Then the connection is
    closed without SQLite's checkpoint on close, which deletes the ``-wal`` and ``-shm``
    by their names, the new file's by now (SQLite skips that for a moved file already; it
    is said here too)."""
    if not conn.readonly("main"):
        busy = conn.execute("PRAGMA main.wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            return False
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.close()
    return True


def create_owner_only(path: Path) -> None:
    """Create the database file, when it does not exist yet, readable and writable by its
    owner only (``0600``): it holds what users said about themselves. SQLite gives its
    ``-wal`` and ``-shm`` files the database file's permissions. An existing file keeps
    its own; one that another process creates first is theirs."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"cannot create {path}: {exc.strerror or exc}") from exc


def begin_write(conn: Connection, deadline: float, busy_timeout: float, *, waits: bool) -> bool:
    """``BEGIN IMMEDIATE``: True once SQLite's write lock is taken. With ``waits`` (a
    transaction begun inside another session, which holds the store's lock whatever
    happens) it waits for the rest of ``busy_timeout`` at once; else ``WRITE_TRY`` seconds
    at a time, and says False when the lock is still busy, so that the caller lets the
    store's lock go between tries. Past ``deadline`` the busy error is raised."""
    if waits:
        conn.execute("BEGIN IMMEDIATE")
        return True
    left = deadline - time.monotonic()
    conn.setbusytimeout(max(0, math.ceil(min(left, WRITE_TRY) * 1000)))  # never short of it
    try:
        conn.execute("BEGIN IMMEDIATE")
    except apsw.BusyError:
        if left <= WRITE_TRY:
            raise
        return False
    finally:
        conn.setbusytimeout(round(busy_timeout * 1000))
    return True


def begin_write_if_free(conn: Connection, busy_timeout: float) -> bool:
    """``BEGIN IMMEDIATE`` if SQLite's write lock is free now: False, and no transaction,
    when another connection holds it (no wait)."""
    conn.setbusytimeout(0)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except apsw.BusyError:
        return False
    finally:
        conn.setbusytimeout(round(busy_timeout * 1000))
    return True


def close_cursors(conn: Connection) -> None:
    """Close every cursor opened on ``conn`` since the last call that is still alive:
    their statements go back to the connection's cache now, on the thread that holds the
    store's lock, and none is left to be finalized later by whichever thread drops the
    last reference to it. An error one of them still holds was raised by the statement
    itself already."""
    cursors = conn.open_cursors
    for ref in cursors:
        cursor = ref()
        if cursor is not None:
            cursor.close(True)
    cursors.clear()


@contextmanager
def planned_by_values(conn: Connection) -> Iterator[None]:
    """Statements first run inside are planned with the values bound to them.

    A connection keeps one plan per statement whatever its values (SQLite's query planner
    stability guarantee): else SQLite plans a statement such as ``WHERE user_id = ? ORDER
    BY updated_at`` again each time a value is bound, which doubles the cost of a small
    read. A keyword search is the exception: FTS5 plans better knowing its ``MATCH`` and
    ``LIMIT`` values (a large user's search takes about 1.7x longer without them), and
    costs far more than the planning."""
    conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 0)
    try:
        yield
    finally:
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_QPSG, 1)
