"""A server without an API key answers only requests made for the machine itself.

Without a key every request is the admin, and the server listens on a loopback address.
A web page the user visits can still reach it through DNS rebinding: its own name made to
resolve to 127.0.0.1, its scripts then read the server as the page's origin. Such a
request names the page's host, not 127.0.0.1, in its ``Host`` header (and its own site
in ``Origin``), so those are checked: anything but ``127.0.0.1``, ``localhost`` or
``[::1]`` (any port) gets 421, as the MCP endpoint answers.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from noted.server.limits import send_error

__all__ = ["LocalOnly", "local_name"]

_LOCAL_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})


def local_name(netloc: str) -> bool:
    """Whether ``netloc`` (``host`` or ``host:port``, IPv6 in brackets) names this machine
    by one of its loopback names."""
    try:
        host = urlsplit(f"//{netloc}").hostname
    except ValueError:
        return False
    return host is not None and host.lower() in _LOCAL_NAMES


class LocalOnly:
    """ASGI middleware: 421 for an HTTP request whose ``Host`` is not a loopback name, or
    whose ``Origin`` (when it has one) is not a page served from one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._local(scope):
            detail = (
                "without an API key this server answers requests for 127.0.0.1, localhost "
                "or [::1] only: set NOTED_API_KEY to serve other names"
            )
            await send_error(send, 421, detail)
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _local(scope: Scope) -> bool:
        host = origin = None
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
        if host is None or not local_name(host):
            return False
        if origin is None:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and local_name(parts.netloc)
