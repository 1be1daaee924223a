"""Ids in paths read as the client wrote them: a ``/`` sent as ``%2F`` stays in the id.

The ASGI server hands on the path already decoded, where ``/memories/x%2Fhistory`` (the
memory ``x/history``) reads as ``/memories/x/history`` (the history of the memory ``x``).
:class:`RawIds` gives the routes of ids the path rebuilt from the raw one, each segment
decoded on its own, with ``%`` and ``/`` written again as ``%25`` and ``%2F`` (the id
convertor, :data:`~noted.server.memories.ID`, decodes them): a segment is one id,
whatever it holds. An id sent with a bare ``/`` (``/memories/a/b``) still reads as
before (``a/b``).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import unquote, unquote_to_bytes

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["ID_PREFIXES", "RawIds", "escaped", "route_path", "unescaped"]

ID_PREFIXES: Final = ("/memories/", "/sessions/", "/agents/")
"""The paths whose segments hold ids a client chose."""


def escaped(segment: str) -> str:
    """One decoded path segment as the routes of ids read it: ``%`` and ``/`` encoded."""
    return segment.replace("%", "%25").replace("/", "%2F")


def unescaped(value: str) -> str:
    """An id as :func:`escaped` wrote it (or as a path without a raw form gave it)."""
    return unquote(value)


class RawIds:
    """ASGI middleware: the path of a request for an id (see :data:`ID_PREFIXES`) rebuilt
    from its raw form, so that ``%2F`` in a segment stays part of the id it names."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _routed(scope)
            if path is not None:
                scope = {**scope, "path": path}
        await self.app(scope, receive, send)


def route_path(scope: Scope) -> str:
    """The request's path as the app's routes read it: without the ``root_path`` the app
    is mounted under (in an application of one's own, or behind a proxy), when the path
    holds it ("/" for the root path itself)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path


def _routed(scope: Scope) -> str | None:
    """The path the routes read, or None when it is not that of an id. The raw path is
    the request's as sent (ASGI's ``raw_path``), with the app's ``root_path`` in it or
    not, as a proxy in front left it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    route = route_path(scope)
    if not route.startswith(ID_PREFIXES):
        return None
    head = path[: len(path) - len(route)]
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):  # no raw form: only a literal % needs keeping
        return head + route.replace("%", "%25")
    segments = [unquote_to_bytes(s).decode("utf-8", "replace") for s in raw.split(b"/")]
    if root and "/".join(segments).startswith(root + "/"):
        segments = ["", *segments[len(root.split("/")) :]]
    return head + "/".join(["", *(escaped(s) for s in segments[1:])])
