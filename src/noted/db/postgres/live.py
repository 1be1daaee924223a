"""Whether a pooled connection to PostgreSQL is still the server's.

A connection waits in PostgresDb's pool between calls. When the server ends it meanwhile (it
was restarted or shut down, or an administrator ended the session), the server says so
on the socket and closes its end: the pool cannot tell, and the next statement sent on it
would fail although a new connection would work. An idle connection the server keeps
has nothing to read, so a socket that reads at once is asked again with an empty
statement, one round trip only then.
"""

from __future__ import annotations

import select

import psycopg

from noted.db.postgres.query import Conn

__all__ = ["ended_by_server"]


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
