"""What the provider adapters share: their settings, lazy SDK imports, one client per event
loop, the HTTP libraries' own failures, and the mapping of HTTP failures onto noted's
error classes."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import os
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Generic, TypeVar

from noted.errors import (
    MissingDependencyError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelRateLimitError,
    ModelServerError,
    UserError,
)
from noted.models.base import BaseChatModel, RetryPolicy
from noted.models.types import ModelRequest, ModelResponse

__all__ = [
    "HTTPChatModel",
    "LoopClients",
    "TransportErrors",
    "headed_error",
    "http_error",
    "import_sdk",
    "parse_retry_after",
    "parsed",
    "retry_after_header",
    "transport_errors",
]

C = TypeVar("C")
T = TypeVar("T")


def import_sdk(module: str, extra: str, user: str, package: str | None = None) -> ModuleType:
    """Import a vendor SDK on first use; say which extra to install when it is missing.

    ``package`` is the name to install from PyPI, when it is not the module's own."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = package or module.split(".", maxsplit=1)[0]
        raise MissingDependencyError(
            f"{user} needs the '{name}' package: pip install 'noted[{extra}]'"
        ) from exc


class LoopClients(Generic[C]):
    """One SDK client per event loop: async HTTP connections belong to the loop that
    opened them, and a model object may be used from noted's background loop (sync calls)
    and from the caller's own loop (async calls).

    A client is closed on its own loop: by :meth:`aclose`, or when the loop shuts down its
    async generators (as ``asyncio.run`` does before it closes the loop). Otherwise the
    client of an ended loop would be left to the garbage collector, and an SDK's clean-up
    then schedules its close on whatever loop is running, where it fails."""

    def __init__(self, make: Callable[[], C], close: Callable[[C], Awaitable[None]]) -> None:
        self._make = make
        self._close = close
        # loop -> its client, and the suspended async generator that closes the client
        self._clients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[C, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    def get(self) -> C:
        loop = asyncio.get_running_loop()
        held = self._clients.get(loop)
        if held is None:
            client = self._make()
            closer = self._closer(client)
            _start(closer)
            held = self._clients[loop] = (client, closer)
        return held[0]

    async def aclose(self) -> None:
        held = self._clients.pop(asyncio.get_running_loop(), None)
        if held is not None:
            await held[1].aclose()

    async def _closer(self, client: C) -> AsyncGenerator[None, None]:
        """Closes ``client`` when closed itself: by :meth:`aclose`, by the loop's shutdown,
        or on the loop when collected before that."""
        try:
            yield
        finally:
            loop = asyncio.get_running_loop()
            held = self._clients.get(loop)
            if held is not None and held[0] is client:
                del self._clients[loop]
            await self._close(client)


def _start(generator: AsyncGenerator[None, None]) -> None:
    """Run a generator that yields before it awaits anything to its first ``yield``, as
    its first ``anext`` would: the running loop registers it, to close it at shutdown."""
    with suppress(StopIteration):
        generator.asend(None).send(None)


class HTTPChatModel(BaseChatModel):
    """A model behind a vendor's HTTP API, reached through the vendor's async SDK.

    Holds the settings every provider takes (checked here, once) and one SDK client per
    event loop. The SDK is imported on first use and makes a single attempt per call:
    retrying is :class:`~noted.models.base.BaseChatModel`'s. The time limit of an attempt
    is this class's (see :meth:`_timed`): the SDKs' own limit is per read, which a server
    sending keep-alive bytes never reaches. A provider names the
    environment variables its key may come from in ``api_key_envs``, builds its client in
    :meth:`_make_client`, and says in :meth:`_sdk_errors` and :meth:`_to_noted` which
    failures to catch and which noted errors they become.
    """

    api_key_envs: ClassVar[tuple[str, ...]] = ()
    max_tokens_required: ClassVar[bool] = False

    def __init__(
        self,
        id: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(id, retry=retry)
        self._check_settings(api_key, base_url, timeout, max_tokens, temperature)
        self.api_key = api_key
        self.base_url = base_url.strip() if base_url is not None else None
        self.timeout = float(timeout)
        self.max_tokens = max_tokens
        self.temperature = float(temperature) if temperature is not None else None
        self._clients: LoopClients[Any] = LoopClients(self._make_client, self._close_client)

    def _check_settings(
        self,
        api_key: object,
        base_url: object,
        timeout: object,
        max_tokens: object,
        temperature: object,
    ) -> None:
        if api_key is not None and not isinstance(api_key, str):
            raise UserError(f"api_key must be a string, got {type(api_key)!r}")
        if base_url is not None and (not isinstance(base_url, str) or not base_url.strip()):
            raise UserError(
                f"base_url must be a URL such as 'http://host:8000/v1', got {base_url!r}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise UserError(f"timeout must be a number of seconds > 0, got {timeout!r}")
        if (max_tokens is not None or self.max_tokens_required) and (
            isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1
        ):
            allowed = "an integer >= 1" if self.max_tokens_required else "an integer >= 1 or None"
            raise UserError(f"max_tokens must be {allowed}, got {max_tokens!r}")
        if temperature is not None and (
            isinstance(temperature, bool) or not isinstance(temperature, int | float)
        ):
            raise UserError(f"temperature must be a number, got {temperature!r}")

    # -- the SDK client ------------------------------------------------------------------

    def _sdk(self) -> object:
        """The vendor SDK, imported on first use (MissingDependencyError without it)."""
        raise NotImplementedError

    def check_ready(self) -> None:
        """Raise now what the first call would for want of the vendor SDK or an API key,
        so that a chat or a server says so when it starts, not at its first message."""
        self._sdk()
        self._api_key()

    def _make_client(self) -> Any:
        """A new SDK client for the running event loop."""
        raise NotImplementedError

    async def _close_client(self, client: Any) -> None:
        await client.close()

    def _api_key(self) -> str:
        """``api_key``, else the first of ``api_key_envs`` that is set."""
        found = self.api_key or next(filter(None, map(os.environ.get, self.api_key_envs)), None)
        if not found:
            variables = " or ".join(self.api_key_envs)
            raise UserError(
                f"{type(self).__name__} needs an API key: pass api_key='...' or set the "
                f"{variables} environment variable{self._api_key_hint()}"
            )
        return found

    def _api_key_hint(self) -> str:
        """More advice for a missing key, appended to the error message."""
        return ""

    async def aclose(self) -> None:
        """Close the client held for the running event loop."""
        await self._clients.aclose()

    # -- time limits ---------------------------------------------------------------------

    async def acomplete(self, request: ModelRequest) -> ModelResponse:
        """Answer the request in one piece, each attempt within ``timeout`` seconds."""
        self._clients.get()  # the SDK imported and its client made before the clock starts
        return await self.with_retries(lambda: self._timed(self._send(request)))

    async def _timed(self, step: Awaitable[T]) -> T:
        """``await step``, given up after ``timeout`` seconds as a timed-out connection
        (retryable). A provider's stream waits through this for its response and for each
        of its events, so that a server that sends only keep-alive comments, or that
        trickles an answer's body, cannot hold a call for ever. Callers make the client
        first: the limit is the server's, and importing an SDK can take a second."""
        try:
            async with asyncio.timeout(self.timeout):
                return await step
        except TimeoutError as exc:
            raise self._timed_out() from exc

    def _timed_out(self) -> ModelConnectionError:
        return ModelConnectionError(
            f"{self.provider}{self._at()} did not answer within {self.timeout:g} s"
        )

    def _at(self) -> str:
        """Where the model is, for messages (`` at <url>``), or nothing."""
        return ""

    # -- failures ------------------------------------------------------------------------

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        """Raise the SDK's failures inside the block as noted's errors."""
        errors = self._sdk_errors()
        try:
            yield
        except errors as exc:
            raise self._to_noted(exc) from exc
        except UnicodeDecodeError as exc:  # the SDKs decode an answer's bytes as UTF-8
            raise self._not_utf8(exc) from exc

    def _not_utf8(self, exc: UnicodeDecodeError) -> ModelOutputError:
        """The error for an answer whose bytes are not UTF-8 text, naming the first bad one."""
        return ModelOutputError(
            f"{self.provider} sent an answer that is not UTF-8 text "
            f"(byte 0x{exc.object[exc.start]:02x}: {exc.reason})"
        )

    def _check_utf8(self, response: Any) -> None:
        """Raise :meth:`_not_utf8` when the body of ``response`` (an HTTP response, read)
        is not UTF-8 text. An SDK hands back the body's text, each bad byte replaced, when
        the body is not JSON it can read: under a Content-Type other than JSON's, a body
        that is JSON but not UTF-8 came back as such text, and was then reported as an
        answer without a message."""
        body = getattr(response, "content", None)
        if isinstance(body, bytes):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise self._not_utf8(exc) from None

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        """What the SDK, or the HTTP library under it, raises when a call fails."""
        raise NotImplementedError

    def _to_noted(self, exc: BaseException) -> ModelError:
        """The noted error for one of :meth:`_sdk_errors`."""
        raise NotImplementedError

    def _unfinished(self, events: int, response: Any) -> ModelError:
        """The error for a stream that ended without the event that ends an answer.

        The SDKs end such a stream quietly, as if the answer were whole: a connection cut
        cleanly (a proxy's or a load balancer's time limit, a server restarting) would hand
        back a truncated answer, or none. It is a lost connection, retried while nothing has
        been yielded. A stream that brought no event at all, in an answer that is not an
        event stream (a proxy's web page, a server that answered in one piece), is an
        answer that cannot be read: asking again would bring the same. An event stream
        that ends before its first event is a server that failed after it began to answer,
        which the message says, since the server sent no word of why (the llama-cpp-python
        server ends such a stream for a prompt longer than its context window).
        ``response`` is the HTTP response, when the SDK shows it."""
        content_type = _content_type(response)
        if events == 0 and content_type and content_type != "text/event-stream":
            return ModelOutputError(
                f"{self.provider} answered a streamed request with {content_type}, "
                "not an event stream"
            )
        if events == 0:
            return ModelConnectionError(
                f"{self.provider}'s stream ended before its first event: the server failed "
                "to answer without saying why (its log may tell; a llama-cpp-python server "
                "does this when the prompt is longer than its context window)"
            )
        return ModelConnectionError(f"{self.provider}'s stream ended before the answer did")


async def parsed(answer: Any) -> Any:
    """What an SDK's raw answer (its ``with_raw_response`` call's) parses to: its
    ``parse()`` is a coroutine in some SDKs and versions, a plain method in others."""
    value = answer.parse()
    return await value if inspect.isawaitable(value) else value


def _content_type(response: Any) -> str:
    """The media type of an HTTP response (lower case, without parameters); empty when
    there is no response or it names none."""
    headers = getattr(response, "headers", None)
    value = headers.get("content-type") if headers is not None else None
    return str(value or "").split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class TransportErrors:
    """What an HTTP library raises when a connection fails (``failures``) and, among
    those, when it times out (``timeouts``) and when it cannot be made at all
    (``unmade``: nothing listens there, or the host is not found)."""

    failures: tuple[type[BaseException], ...]
    timeouts: tuple[type[BaseException], ...]
    unmade: tuple[type[BaseException], ...] = ()


# Each HTTP library an SDK may run on: its failure, timeout and connection-not-made classes.
_HTTP_LIBRARIES: dict[str, tuple[str, str, str]] = {
    "httpx2": ("TransportError", "TimeoutException", "ConnectError"),
    "httpx": ("TransportError", "TimeoutException", "ConnectError"),
    "aiohttp": ("ClientError", "ServerTimeoutError", "ClientConnectorError"),
}


@functools.cache
def transport_errors(*libraries: str) -> TransportErrors:
    """The failures of those of ``libraries`` (by default every one known) that are
    installed. They can escape an SDK, most often while a stream is read."""
    failures: list[type[BaseException]] = []
    timeouts: list[type[BaseException]] = []
    unmade: list[type[BaseException]] = []
    for name in libraries or tuple(_HTTP_LIBRARIES):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        failure, timeout, not_made = _HTTP_LIBRARIES[name]
        failures.append(getattr(module, failure))
        timeouts.append(getattr(module, timeout))
        unmade.append(getattr(module, not_made))
    return TransportErrors(tuple(failures), tuple(timeouts), tuple(unmade))


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None  # an HTTP date: rare from model APIs; fall back to our own backoff
    return seconds if seconds >= 0 else None


def retry_after_header(headers: Mapping[str, str]) -> str | None:
    """The wait an HTTP failure's headers ask for, in seconds: ``retry-after``, else
    ``retry-after-ms`` (which OpenAI's and Anthropic's servers send)."""
    value = headers.get("retry-after")
    if value is not None:
        return str(value)
    millis = headers.get("retry-after-ms")
    if millis is None:
        return None
    try:
        return str(float(millis) / 1000)
    except ValueError:
        return None


def headed_error(
    provider: str, status_code: int, message: str, headers: Mapping[str, str] | None
) -> ModelHTTPError:
    """The noted error for an HTTP failure answered with ``headers`` (None: none to read,
    as for an error event inside a stream): the wait they ask for, and their
    ``x-should-retry``, which OpenAI's and Anthropic's servers send and their SDKs obey
    over the status."""
    if headers is None:
        return http_error(provider, status_code, message)
    wait = retry_after_header(headers)
    return http_error(provider, status_code, message, wait, headers.get("x-should-retry"))


def http_error(
    provider: str,
    status_code: int,
    message: str,
    retry_after: str | None = None,
    should_retry: str | None = None,
) -> ModelHTTPError:
    """The noted error for an HTTP failure: 429 and 5xx are retryable, the rest are not,
    unless the server says otherwise in ``should_retry`` (its ``x-should-retry`` header,
    ``true`` or ``false``)."""
    cls: type[ModelHTTPError] = ModelHTTPError
    if status_code == 429:
        cls = ModelRateLimitError
    elif status_code >= 500:
        cls = ModelServerError
    error = cls(provider, status_code, message)
    error.retry_after = parse_retry_after(retry_after)
    if should_retry in ("true", "false"):
        error.retryable = should_retry == "true"
    return error
