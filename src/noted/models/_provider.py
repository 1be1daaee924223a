"""What the provider adapters share: lazy SDK imports, one client per event loop, and the
mapping of HTTP failures onto noted's error classes."""

from __future__ import annotations

import asyncio
import importlib
import weakref
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Generic, TypeVar

from noted.errors import (
    MissingDependencyError,
    ModelHTTPError,
    ModelRateLimitError,
    ModelServerError,
)

__all__ = ["LoopClients", "http_error", "import_sdk", "parse_retry_after"]

C = TypeVar("C")


def import_sdk(module: str, extra: str, user: str) -> ModuleType:
    """Import a vendor SDK on first use; say which extra to install when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = module.split(".", maxsplit=1)[0]
        raise MissingDependencyError(
            f"{user} needs the '{package}' package: pip install 'noted[{extra}]'"
        ) from exc


class LoopClients(Generic[C]):
    """One SDK client per event loop: async HTTP connections belong to the loop that
    opened them, and a model object may be used from noted's background loop (sync calls)
    and from the caller's own loop (async calls)."""

    def __init__(self, make: Callable[[], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, C] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = self._make()
        return client

    async def aclose(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await self._close(client)


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from model APIs; fall back to our own backoff
    return seconds if seconds >= 0 else None


def http_error(
    provider: str, status_code: int, message: str, retry_after: str | None = None
) -> ModelHTTPError:
    """The noted error for an HTTP failure: 429 and 5xx are retryable, the rest are not."""
    cls: type[ModelHTTPError] = ModelHTTPError
    if status_code == 429:
        cls = ModelRateLimitError
    elif status_code >= 500:
        cls = ModelServerError
    error = cls(provider, status_code, message)
    error.retry_after = parse_retry_after(retry_after)
    return error
