"""Security headers on every answer: the Memories page, the API docs and the JSON routes.

The page and the docs load only the server's own files (no inline script, no CDN), so a
strict Content-Security-Policy costs them nothing and contains an injected script or a
hostile frame. JSON answers get the strictest policy: they are never rendered as a page.
"""

from __future__ import annotations

from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from noted.server.rawids import route_path

__all__ = ["API_HEADERS", "SecurityHeaders", "headers_for"]

Headers = list[tuple[bytes, bytes]]

_COMMON: Final = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_FRAMING: Final = "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
# the page sets its colours through the CSSOM (allowed), never through inline styles
PAGE_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    f"connect-src 'self'; {_FRAMING}"
)
# Swagger UI sets inline styles on the elements it draws
DOCS_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    f"img-src 'self' data:; connect-src 'self'; {_FRAMING}"
)
API_POLICY: Final = "default-src 'none'; frame-ancestors 'none'"

API_HEADERS: Final[Headers] = [
    *_COMMON,
    (b"content-security-policy", API_POLICY.encode()),
]
_PAGE_HEADERS: Final[Headers] = [*_COMMON, (b"content-security-policy", PAGE_POLICY.encode())]
_DOCS_HEADERS: Final[Headers] = [*_COMMON, (b"content-security-policy", DOCS_POLICY.encode())]
_NAMES: Final = frozenset(name for name, _ in API_HEADERS)


def headers_for(path: str) -> Headers:
    """The security headers of the answer to ``path`` (within the app)."""
    if path == "/" or path.startswith("/static/"):
        return _PAGE_HEADERS
    if path == "/docs" or path.startswith("/docs/"):
        return _DOCS_HEADERS
    return API_HEADERS


class SecurityHeaders:
    """ASGI middleware: adds :func:`headers_for`'s headers to every HTTP answer (a route
    that sets one of them itself keeps its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = headers_for(route_path(scope))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers} & _NAMES
                headers.extend(h for h in extra if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
