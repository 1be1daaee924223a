"""The chat-model protocol, and the base that gives every model retries and sync methods.

A model is written once, async: ``_send`` answers a request, ``_send_stream`` streams the
answer as deltas. :class:`BaseChatModel` adds bounded retries with backoff and jitter for
retryable failures (HTTP 429, 5xx, timeouts and lost connections) and the sync methods
``complete`` and ``stream``, which run the async ones on noted's background loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

from noted import _portal
from noted._async import aclose
from noted.errors import ModelError, UserError
from noted.models.types import ModelDelta, ModelRequest, ModelResponse, ResponseBuilder

__all__ = ["BaseChatModel", "ChatModel", "RetryPolicy", "RetryWait", "retries_shown"]

log = logging.getLogger("noted.models")
T = TypeVar("T")


@runtime_checkable
class ChatModel(Protocol):
    """What the agent and the memory manager need from a model."""

    @property
    def id(self) -> str:
        """The model's name at its provider, for example ``gpt-4o-mini``."""
        ...

    async def acomplete(self, request: ModelRequest) -> ModelResponse:
        """Answer the request in one piece."""
        ...

    def astream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        """Answer the request as a stream of text, tool-call and usage deltas."""
        ...


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently retryable failures are retried.

    The wait before retry ``n`` (1-based) is drawn uniformly from the upper half of
    ``min(max_delay, initial_delay * multiplier ** (n - 1))``; a provider's ``Retry-After``
    raises the wait up to ``max_delay``. ``max_attempts=1`` turns retries off.
    """

    max_attempts: int = 4
    initial_delay: float = 0.5
    max_delay: float = 8.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        if type(self.max_attempts) is not int or self.max_attempts < 1:
            raise UserError(f"max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if self.initial_delay < 0 or self.max_delay < 0 or self.multiplier < 1:
            raise UserError("retry delays must be >= 0 and the multiplier >= 1")

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        cap = min(self.max_delay, self.initial_delay * self.multiplier ** (retry - 1))
        wait = random.uniform(cap / 2, cap)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay))
        return wait


@dataclass(frozen=True, slots=True)
class RetryWait:
    """A model's wait before it tries a failed call again: retry ``retry`` of
    ``retries``, in ``seconds``, after ``error``."""

    retry: int
    retries: int
    seconds: float
    error: ModelError


# Who is shown the waits before retries in this context, instead of the log (see
# retries_shown)
_shown_to: ContextVar[Callable[[RetryWait], None] | None] = ContextVar(
    "noted_retries_shown_to", default=None
)


@contextlib.contextmanager
def retries_shown(show: Callable[[RetryWait], None]) -> Iterator[None]:
    """In the block, and in the calls and tasks it starts (the context is theirs), each
    wait before a model's retry is handed to ``show`` (a terminal's status line) and
    logged at DEBUG, not as a WARNING: a chat's screen would have a log line per retry
    between its prompt and its answer. ``show`` runs on the thread of the model's event
    loop."""
    token = _shown_to.set(show)
    try:
        yield
    finally:
        _shown_to.reset(token)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, ModelError) and exc.retryable


class BaseChatModel:
    """Retries and sync twins around a provider's two async primitives."""

    provider: str = "model"

    def __init__(self, id: str, *, retry: RetryPolicy | None = None) -> None:
        if not isinstance(id, str) or not id.strip():
            raise UserError(f"a model needs an id (its name at the provider), got {id!r}")
        self._id = id
        self.retry = retry or RetryPolicy()

    @property
    def id(self) -> str:
        return self._id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self._id!r})"

    # -- what a provider implements ------------------------------------------------------

    async def _send(self, request: ModelRequest) -> ModelResponse:
        """One attempt at a whole answer. The default collects the stream."""
        builder = ResponseBuilder()
        async for delta in self._send_stream(request):
            builder.add(delta)
        return builder.build()

    def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        """One attempt at a streamed answer."""
        raise NotImplementedError

    # -- what callers use ---------------------------------------------------------------

    async def _wait_before_retry(self, retry: int, exc: ModelError) -> None:
        wait = self.retry.delay(retry, getattr(exc, "retry_after", None))
        retries = self.retry.max_attempts - 1
        show = _shown_to.get()
        log.log(
            logging.WARNING if show is None else logging.DEBUG,
            "%s %s failed (%s); retry %d of %d in %.2f s",
            self.provider,
            self._id,
            exc,
            retry,
            retries,
            wait,
        )
        if show is not None:
            show(RetryWait(retry, retries, wait, exc))
        await asyncio.sleep(wait)

    async def with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()``, retried by this model's policy while it fails retryably."""
        retry = 0
        while True:
            try:
                return await attempt()
            except ModelError as exc:
                retry += 1
                if not _is_retryable(exc) or retry >= self.retry.max_attempts:
                    raise
                await self._wait_before_retry(retry, exc)

    async def acomplete(self, request: ModelRequest) -> ModelResponse:
        return await self.with_retries(lambda: self._send(request))

    async def astream(self, request: ModelRequest) -> AsyncGenerator[ModelDelta, None]:
        """Stream the answer. A failure before the first delta is retried like
        :meth:`acomplete`; once text has been streamed, a failure is raised as it is
        (a retry would repeat what the caller has already shown).

        The provider's stream is closed as this one ends, however it ends: a caller that
        stops early (``aclose()``, ``aclosing``), a cancelled task or an exception closes
        it before this stream's close returns, not when it is collected."""
        retry = 0
        while True:
            started = False
            deltas = self._send_stream(request)
            try:
                async for delta in deltas:
                    started = True
                    yield delta
                return
            except ModelError as exc:
                retry += 1
                if started or not _is_retryable(exc) or retry >= self.retry.max_attempts:
                    raise
                await self._wait_before_retry(retry, exc)
            finally:
                await aclose(deltas)  # nothing to do once it has ended by itself

    def complete(self, request: ModelRequest) -> ModelResponse:
        """Sync :meth:`acomplete`."""
        return _portal.run(self.acomplete(request))

    def stream(self, request: ModelRequest) -> Iterator[ModelDelta]:
        """Sync :meth:`astream`."""
        return _portal.iterate(self.astream(request))

    async def aclose(self) -> None:
        """Release connections held for the running event loop (providers override)."""

    def close(self) -> None:
        """Release connections held on noted's background loop."""
        _portal.run(self.aclose())
