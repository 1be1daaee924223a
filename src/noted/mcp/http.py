"""The MCP server over streamable HTTP: on its own (``noted mcp --http``) or mounted in
``noted serve`` (at ``/mcp``).

Stateless: every HTTP request stands alone (no MCP session is kept between requests), so
each one is checked against its own credentials and any worker process can answer it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from noted.errors import StoreError
from noted.server.auth import Auth, Unauthorized
from noted.server.failures import failure_detail
from noted.server.tracecontext import TraceContinued

__all__ = ["DEFAULT_PATH", "http_app", "mount_mcp"]

DEFAULT_PATH: Final = "/mcp"
_LOCAL_HOSTS: Final = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOCAL_ORIGINS: Final = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


class AuthGate:
    """Answers 401 to a request without credentials the server accepts, before the MCP
    transport reads it (the tools check the credentials again for each call), and 503,
    as the REST API does, when the store cannot tell whether a user token was revoked
    (where the store is and what it said go to the log only: the caller is no admin)."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                await self.auth.authenticate_async(Headers(scope=scope).get("authorization"))
            except Unauthorized as exc:
                response = JSONResponse(
                    {"detail": str(exc)}, 401, headers={"WWW-Authenticate": "Bearer"}
                )
                await response(scope, receive, send)
                return
            except StoreError as exc:
                where = f"{scope['method']} {scope['path']}"
                detail = failure_detail(exc, False, where)
                await JSONResponse({"detail": detail}, 503)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _security(local_only: bool) -> TransportSecuritySettings | None:
    """On a loopback address, refuse requests whose Host or Origin is not local (a web
    page the user visits must not reach the server through DNS rebinding)."""
    if not local_only:
        return None
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=list(_LOCAL_HOSTS),
        allowed_origins=list(_LOCAL_ORIGINS),
    )


def mount_mcp(
    app: Starlette,
    server: Server[Any],
    auth: Auth,
    *,
    path: str = DEFAULT_PATH,
    local_only: bool = True,
) -> None:
    """Serve ``server`` at ``path`` of ``app`` (a Starlette or FastAPI app), running its
    session manager for as long as the app runs. A request's spans continue the trace its
    ``traceparent`` header names (while tracing is on)."""
    manager = StreamableHTTPSessionManager(
        app=server, stateless=True, json_response=True, security_settings=_security(local_only)
    )
    endpoint = TraceContinued(AuthGate(StreamableHTTPASGIApp(manager), auth))
    app.router.routes.append(Route(path, endpoint))
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(served: Any) -> AsyncIterator[Any]:
        async with manager.run(), inner(served) as state:
            yield state

    app.router.lifespan_context = lifespan


def http_app(
    server: Server[Any], auth: Auth, *, path: str = DEFAULT_PATH, local_only: bool = True
) -> Starlette:
    """An ASGI app that serves only the MCP endpoint at ``path``."""
    app = Starlette()
    mount_mcp(app, server, auth, path=path, local_only=local_only)
    return app
