"""``HEAD`` answered as ``GET`` is, without the body (RFC 9110: a server that answers GET
answers HEAD), so that a health check, an uptime monitor or ``curl -I`` that asks with
HEAD reads the status and headers a GET gets, not a 405."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noted.server.rawids import route_path

__all__ = ["HeadAsGet"]


class HeadAsGet:
    """ASGI middleware: a ``HEAD`` request is handed on as a ``GET`` whose body is not
    sent (its headers, ``Content-Length`` included, are). ``streams`` are the paths whose
    GET opens an event stream (the MCP endpoint): their HEAD is handed on as it came."""

    def __init__(self, app: ASGIApp, streams: tuple[str, ...] = ()) -> None:
        self.app = app
        self.streams = streams

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or self._streamed(scope):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # a copy: the server's own scope still says HEAD, so it sends no body either
        await self.app({**scope, "method": "GET"}, receive, headers_only)

    def _streamed(self, scope: Scope) -> bool:
        return route_path(scope) in self.streams
