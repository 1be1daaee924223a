"""noted's server: a REST API over a store, user tokens, and the Memories page.

Needs the ``server`` extra: ``pip install 'noted[server]'``. Its settings
(:mod:`noted.server.config`) need nothing beyond noted, so ``noted worker`` runs without
the web framework; tokens (:mod:`noted.server.auth`) need ``pyjwt`` only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from noted.errors import MissingDependencyError

if TYPE_CHECKING:
    from noted.server.app import create_app
    from noted.server.auth import issue_token

__all__ = ["create_app", "issue_token", "require_server"]

_SERVER_PACKAGES = ("fastapi", "jwt", "orjson")


def require_server() -> None:
    """Raise :class:`MissingDependencyError` naming the first package of the ``server``
    extra that is not installed."""
    for name in _SERVER_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise MissingDependencyError(
                f"the noted server needs {exc.name or name}: pip install 'noted[server]'"
            ) from exc


def __getattr__(name: str) -> object:
    if name == "create_app":
        require_server()
        from noted.server.app import create_app

        return create_app
    if name == "issue_token":
        from noted.server.auth import issue_token

        return issue_token
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
