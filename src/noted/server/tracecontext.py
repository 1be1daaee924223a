"""A caller's trace continued: the spans noted makes for a request join the trace its
``traceparent`` header names, with no HTTP instrumentor installed. While tracing is off a
request costs one check more."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from noted.tracing import _hooks as tracing

__all__ = ["TraceContinued"]


class TraceContinued:
    """ASGI middleware: runs each HTTP request inside the trace context its headers carry
    (see :func:`noted.tracing._hooks.continued`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or tracing.active is None:
            await self.app(scope, receive, send)
            return

        def headers() -> dict[str, str]:
            return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        with tracing.continued(headers):
            await self.app(scope, receive, send)
