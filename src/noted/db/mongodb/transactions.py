"""Multi-document transactions, where the MongoDB deployment has them (a replica set or a
sharded cluster; a standalone server has none).

:func:`has_transactions` reads the server's ``hello`` reply (:func:`deployment`: the
``isMaster`` reply on a server older than 4.4.2). :func:`in_transaction` runs a
write with a session bound in this thread (or task): every collection call of the write
path passes ``session=bound()``, so all of it commits together or is aborted; a write
conflict with a concurrent transaction (a ``TransientTransactionError``) runs it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Final, TypeVar

from noted.errors import StoreError

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.client_session import ClientSession

__all__ = [
    "ATTEMPTS",
    "COMMAND_NOT_FOUND",
    "bound",
    "deployment",
    "has_transactions",
    "in_transaction",
]

T = TypeVar("T")

ATTEMPTS: Final = 5  # runs of one write that meets concurrent transactions' conflicts
COMMAND_NOT_FOUND: Final = 59  # the server's code for a command it does not know

_session: ContextVar[ClientSession | None] = ContextVar("noted_mongo_session", default=None)


def has_transactions(hello: Mapping[str, Any]) -> bool:
    """Whether the server that sent this ``hello`` reply runs multi-document transactions:
    a replica set member (``setName``) or a mongos router (``msg: isdbgrid``), with
    sessions (``logicalSessionTimeoutMinutes``)."""
    clustered = "setName" in hello or hello.get("msg") == "isdbgrid"
    return clustered and hello.get("logicalSessionTimeoutMinutes") is not None


def deployment(client: MongoClient[Any]) -> Mapping[str, Any]:
    """The server's ``hello`` reply; a server older than 4.4.2 has no ``hello`` (an
    unknown command, code 59) and answers the same fields to ``isMaster``."""
    from pymongo.errors import OperationFailure

    try:
        reply: Mapping[str, Any] = client.admin.command("hello")
    except OperationFailure as exc:
        if exc.code != COMMAND_NOT_FOUND:
            raise
        reply = client.admin.command("isMaster")
    return reply


def bound() -> ClientSession | None:
    """The session of the transaction running in this thread or task, if any."""
    return _session.get()


def in_transaction(client: MongoClient[Any], write: Callable[[], T]) -> T:
    """``write()`` inside one transaction: committed when it returns, aborted when it
    raises (its error raised as is); run again, up to ATTEMPTS times, while it fails for
    a transient conflict."""
    from pymongo.errors import PyMongoError

    for attempt in range(1, ATTEMPTS + 1):
        with client.start_session() as session:
            token = _session.set(session)
            try:
                return session.with_transaction(lambda _: write())
            except StoreError as exc:
                cause = exc.__cause__
                transient = isinstance(cause, PyMongoError) and cause.has_error_label(
                    "TransientTransactionError"
                )
                if not transient or attempt == ATTEMPTS:
                    raise
            finally:
                _session.reset(token)
    raise AssertionError("unreachable")  # the last attempt returns or raises
