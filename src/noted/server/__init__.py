"""noted's server: a REST API over a store, user tokens, and the Memories page.

Needs the ``server`` extra: ``pip install 'noted[server]'``.
"""

from __future__ import annotations

from noted.errors import MissingDependencyError

try:
    import fastapi  # noqa: F401
    import jwt  # noqa: F401
    import orjson  # noqa: F401
except ImportError as exc:  # pragma: no cover - the extra is installed in development
    raise MissingDependencyError(
        f"the noted server needs {exc.name}: pip install 'noted[server]'"
    ) from exc

from noted.server.app import create_app
from noted.server.auth import issue_token

__all__ = ["create_app", "issue_token"]
