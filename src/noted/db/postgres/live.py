"""PostgresDb's pool of connections: opening it, and whether a pooled connection is
still the server's.

A connection waits in PostgresDb's pool between calls. When the server ends it meanwhile (it
was restarted or shut down, or an administrator ended the session), the server says so
on the socket and closes its end: the pool cannot tell, and the next statement sent on it
would fail although a new connection would work. An idle connection the server keeps
has nothing to read, so a socket that reads at once is asked again with an empty
statement, one round trip only then.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from contextlib import ExitStack

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from noted.db.postgres.query import Conn
from noted.errors import StoreError

__all__ = ["ended_by_server", "live_connection", "open_pool"]


def open_pool(
    conninfo: str,
    *,
    size: int,
    configure: Callable[[Conn], None],
    timeout: float,
    name: str,
    where_to: str,
) -> ConnectionPool[Conn]:
    """A pool of up to ``size`` autocommit connections, open with its first one (within
    ``timeout`` seconds, else a StoreError naming ``where_to``)."""
    pool: ConnectionPool[Conn] = ConnectionPool(
        conninfo,
        min_size=1,
        max_size=size,
        kwargs={"autocommit": True},
        configure=configure,
        timeout=timeout,
        open=False,
        name=name,
    )
    try:
        pool.open(wait=True, timeout=timeout)
    except PoolTimeout as exc:
        pool.close()
        raise StoreError(f"cannot connect to {where_to}: {exc}") from exc
    return pool


def live_connection(stack: ExitStack, pool: ConnectionPool[Conn]) -> Conn | None:
    """A connection of ``pool``, given back when ``stack`` closes; None when the server had
    ended the one taken (see :func:`ended_by_server`), which is closed and given back."""
    taken = ExitStack()
    conn = taken.enter_context(pool.connection())
    if not ended_by_server(conn):
        stack.push(taken)
        return conn
    conn.close()
    taken.close()
    return None


def ended_by_server(conn: Conn) -> bool:
    """Whether the server has ended ``conn``, an idle connection just taken from the pool."""
    if conn.closed:
        return True
    if not _readable(conn.fileno()):
        return False
    try:
        conn.execute("")  # what the server said may be a notice: then the connection works
    except psycopg.OperationalError:
        return True
    return False


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read (or its peer has closed it), without waiting."""
    if not hasattr(select, "poll"):  # Windows, whose select takes a socket of any number
        return bool(select.select([fd], [], [], 0)[0])
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))
