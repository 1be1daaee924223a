"""noted's memories for any MCP client: ``noted mcp`` and :func:`create_server`.

Needs the ``mcp`` extra: ``pip install 'noted[mcp]'``.
"""

from __future__ import annotations

from noted.errors import MissingDependencyError

try:
    import mcp.server.lowlevel  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise MissingDependencyError(
        "noted's MCP server needs the 'mcp' package: pip install 'noted[mcp]'"
    ) from exc

from noted.mcp.server import create_server

__all__ = ["create_server"]
