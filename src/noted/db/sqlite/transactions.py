"""How SqliteDb uses its one connection: opened on first use (the directory, the file
and its tables made ready), then used by one thread at a time under the store's lock (a
session), with SQLite's faults as StoreError. On it: write transactions, which wait for
SQLite's write lock with the store's lock let go between tries; a write transaction only
when that lock is free now (a keyword search's catch-up); and read snapshots. The vector
cache is told when each write transaction commits or rolls back. A file deleted or
replaced while open is let go of, and the file at the path opened (see _connection)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw

from noted.db.sqlite import migrations
from noted.db.sqlite.connection import (
    WRITE_PAUSE,
    Connection,
    begin_write,
    begin_write_if_free,
    close_cursors,
    close_moved,
    connect,
    create_owner_only,
    has_moved,
)
from noted.db.sqlite.lost import lost_table
from noted.db.sqlite.vectors import SqliteVectors
from noted.errors import StoreError

__all__ = ["MOVED_CHECK", "SqliteTransactions"]

log = logging.getLogger("noted.db")

MOVED_CHECK = 1.0  # seconds between two reads' checks that the file is still at its path


class SqliteTransactions:
    """The sessions and transactions of SqliteDb on its connection (``_conn``, None until
    the first session opens it), and :meth:`close`."""

    db_file: Path
    memory_table: str
    session_table: str
    read_only: bool
    create_dirs: bool
    busy_timeout: float
    page_cache_mib: int
    _lock: threading.RLock
    _conn: Connection | None
    _depth: int  # sessions open on the thread that holds the lock
    _opened: bool  # whether a connection was ever opened
    _moved_check_due: float  # time.monotonic() of reads' next check that the file is in place
    _vectors: SqliteVectors

    @contextmanager
    def _session(self) -> Iterator[Connection]:
        """The open connection, under the lock, with SQLite faults turned into StoreError.

        The outermost session (sessions nest on the thread that holds the lock) closes
        every cursor opened inside it when it ends (see connection.close_cursors)."""
        with self._lock:
            conn = self._connection(writes=False)
            self._depth += 1
            try:
                yield conn
            except apsw.Error as exc:
                tables = (self.memory_table, self.session_table)
                lost = lost_table(conn, str(self.db_file), tables, exc)  # a table gone?
                raise lost or self._store_error(exc) from exc
            finally:
                self._depth -= 1
                if not self._depth:
                    close_cursors(conn)

    @contextmanager
    def _write_session(self) -> Iterator[Connection]:
        """:meth:`_session`, for a write (see :meth:`_connection`)."""
        with self._lock:
            self._connection(writes=True)
            with self._session() as conn:
                yield conn

    def _connection(self, *, writes: bool) -> Connection:
        """The connection a session uses, opened when there is none. The outermost session
        opens it again first (under the lock, so no other session uses it):

        - when the file it has open is no longer the one at ``db_file`` (deleted, or
          another file put in its place): checked by every write, so that none is
          acknowledged into a file that is gone, and by reads at most once every
          ``MOVED_CHECK`` seconds (the check costs a ``stat``: about 1.3 us, some 15% of
          the smallest read, against under 1% of the smallest write);
        - for a write, when SQLite opened the file read-only: it opens a file that it
          cannot write (made read-only, or on a file system mounted read-only) so, and the
          connection stays so; opened again, it writes once the file can be written."""
        conn = self._conn
        if conn is None:
            return self._open()
        if self._depth:
            return conn
        if writes or time.monotonic() >= self._moved_check_due:
            if has_moved(conn):
                self._let_go_of_moved(conn)
                return self._open()
            self._moved_check_due = time.monotonic() + MOVED_CHECK
        if writes and not self.read_only and conn.readonly("main"):
            self._conn = None
            conn.close()
            return self._open()
        return conn

    def _let_go_of_moved(self, conn: Connection) -> None:
        """Close ``conn``, whose file is no longer the one at ``db_file`` (see
        :func:`~noted.db.sqlite.connection.close_moved`); StoreError, and ``conn`` kept
        (the next session tries again), when another process still reads its old log."""
        what = "replaced by another file" if self.db_file.exists() else "deleted"
        try:
            closed = close_moved(conn)
        except apsw.Error as exc:
            raise self._store_error(exc) from exc
        if not closed:
            raise StoreError(
                f"{self.db_file} was {what} while open, and another connection still reads "
                "the old file's write-ahead log: nothing is read or written until it lets "
                "go of it (or the store is closed)"
            )
        self._conn = None
        log.warning(
            "%s was %s while open: the store now uses the file at that path%s",
            self.db_file,
            what,
            "" if self.db_file.exists() or self.read_only else " (a new, empty database)",
        )

    def _forget_file(self) -> None:
        """Drop what the store keeps of its file's contents between calls (caches), for a
        file opened in place of the one it had open."""
        raise NotImplementedError

    def _store_error(self, exc: apsw.Error) -> StoreError:
        text = str(exc)
        if isinstance(exc, apsw.ReadOnlyError):
            return StoreError(f"{self.db_file}: the database is read-only ({text})")
        if isinstance(exc, apsw.NotADBError | apsw.CorruptError):
            return StoreError(f"{self.db_file}: not a SQLite database, or corrupt ({text})")
        if isinstance(exc, apsw.BusyError | apsw.LockedError):
            return StoreError(
                f"{self.db_file}: still locked by another writer after {self.busy_timeout} s"
            )
        return StoreError(f"{self.db_file}: {text}")

    def _open(self) -> Connection:
        parent = self.db_file.parent
        if not parent.is_dir():
            if parent.exists() or not self.create_dirs:
                raise StoreError(
                    f"cannot open {self.db_file}: directory {parent} does not exist "
                    "(create it, or pass create_dirs=True)"
                )
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create directory {parent}: {exc}") from exc
        if self.read_only and not self.db_file.is_file():
            raise StoreError(f"cannot open {self.db_file} read-only: no such file")
        if not self.read_only and os.fspath(self.db_file) != ":memory:":  # SQLite's own name
            create_owner_only(self.db_file)
        conn: Connection | None = None
        try:
            conn = connect(self.db_file, read_only=self.read_only, busy_timeout=self.busy_timeout)
            if not self.read_only:
                migrations.use_wal(conn, self.busy_timeout, str(self.db_file))
                conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(f"PRAGMA cache_size = -{self.page_cache_mib * 1024}")
            tables = (self.memory_table, self.session_table)
            migrations.migrate(conn, str(self.db_file), tables, self.read_only)
        except apsw.Error as exc:
            if conn is not None:
                conn.close()
            raise self._store_error(exc) from exc
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        if self._opened:  # maybe another file by now (closed meanwhile, or moved)
            self._forget_file()
        self._opened = True
        self._moved_check_due = time.monotonic() + MOVED_CHECK
        self._conn = conn
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A write transaction; inside another one (a batch, on the thread that holds the
        lock) it is part of that one.

        While another connection holds SQLite's write lock, the store's lock is let go
        between tries (see :func:`~noted.db.sqlite.connection.begin_write`): this store's
        reads go on meanwhile, as WAL lets them, instead of waiting behind its own writer
        for up to ``busy_timeout``."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            with self._write_session() as conn:
                if conn.in_transaction:
                    yield conn
                    return
                # inside another session the store's lock stays held: wait there at once
                if begin_write(conn, deadline, self.busy_timeout, waits=self._depth > 1):
                    try:
                        yield conn
                    except BaseException:
                        self._roll_back(conn)
                        raise
                    self._commit(conn)
                    return
            time.sleep(WRITE_PAUSE)  # the lock let go: a waiting reader takes it now

    @contextmanager
    def _transaction_if_free(self) -> Iterator[Connection | None]:
        """:meth:`_transaction` when SQLite's write lock is free now (or a transaction is
        open on this thread already); else None, without waiting."""
        with self._write_session() as conn:
            if conn.in_transaction:
                yield conn
            elif begin_write_if_free(conn, self.busy_timeout):
                try:
                    yield conn
                except BaseException:
                    self._roll_back(conn)
                    raise
                self._commit(conn)
            else:
                yield None

    def _roll_back(self, conn: Connection) -> None:
        """Roll back the write transaction open on ``conn`` (its block failed). SQLite has
        rolled it back itself after some faults (a full disk, an I/O error): then there is
        nothing to roll back, and the fault raised is the one the caller sees."""
        self._vectors.rolled_back()
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _commit(self, conn: Connection) -> None:
        """Commit the write transaction open on ``conn``; rolled back if that fails."""
        try:
            conn.execute("COMMIT")
        except BaseException:
            self._vectors.rolled_back()
            if conn.in_transaction:  # a COMMIT refused (busy) leaves it open
                conn.execute("ROLLBACK")
            raise
        self._vectors.committed()
        if has_moved(conn):  # since the transaction began: it went into a file now gone
            raise StoreError(
                f"{self.db_file} was deleted or replaced by another file while this write "
                "was made: the write went into the old file, not the one at that path now "
                "(the next call uses that one)"
            )

    @contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A session whose reads all see the file as of one moment (a read transaction,
        unless a transaction is open already)."""
        with self._session() as conn:
            if conn.in_transaction:
                yield conn
                return
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")  # a read transaction: nothing to write

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
