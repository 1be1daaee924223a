"""What the provider tests share: a fast retry policy, tools, a schema and a conversation to
ask with, a model aimed at the local server, running a model on a fresh event loop, and the
set-up checks every provider must pass."""

from __future__ import annotations

import asyncio
import gc
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeVar

import pytest

from noted.errors import MissingDependencyError, ModelConnectionError, UserError
from noted.models._provider import HTTPChatModel
from noted.models.base import BaseChatModel, RetryPolicy
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ResponseBuilder,
    ToolDefinition,
)
from noted.testing import Reply, ScriptedModel
from wire import WireServer

M = TypeVar("M", bound=BaseChatModel)
H = TypeVar("H", bound=HTTPChatModel)
T = TypeVar("T")

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)

WEATHER = ToolDefinition(
    name="get_weather",
    description="The current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
TIME = ToolDefinition(
    name="get_time",
    description="The local time in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
# System messages before and inside the conversation: providers that take the system
# prompt apart join them, in order.
CHAT_WITH_TWO_SYSTEM_MESSAGES = (
    Message("system", "You are terse."),
    Message("user", "Hello"),
    Message("assistant", "Hi."),
    Message("system", "Answer in English."),
    Message("user", "How are you?"),
)
PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


def model_for(model_class: type[H], id: str, base_url: str, **kwargs: Any) -> H:
    """A model aimed at a local server, with a test key and fast retries unless given."""
    kwargs.setdefault("api_key", "test-key")
    kwargs.setdefault("retry", FAST)
    return model_class(id, base_url=base_url, **kwargs)


def ask(text: str = "Hello", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[Message("user", text)], **kwargs)


def run(model: M, call: Callable[[M], Awaitable[T]]) -> T:
    """Run one async call on a fresh loop, closing the model's client on that loop."""

    async def main() -> T:
        try:
            return await call(model)
        finally:
            await model.aclose()

    return asyncio.run(main())


def complete(model: BaseChatModel, request: ModelRequest) -> ModelResponse:
    return run(model, lambda m: m.acomplete(request))


def stream(model: BaseChatModel, request: ModelRequest) -> list[ModelDelta]:
    async def collect(m: BaseChatModel) -> list[ModelDelta]:
        return [delta async for delta in m.astream(request)]

    return run(model, collect)


def tasks_left_when_let_go(make: Callable[[], BaseChatModel]) -> set[asyncio.Task[Any]]:
    """Ask a new model once under ``asyncio.run``, without closing it, then let it go while
    another loop runs: the tasks that letting it go left on that loop. (An SDK client
    still open when it is collected schedules its own close on whatever loop is running,
    where its connections do not belong, and that close fails.)"""
    models = [make()]
    asyncio.run(models[0].acomplete(ask()))
    gc.collect()  # what earlier tests left, collected first where no loop runs

    async def let_go() -> set[asyncio.Task[Any]]:
        models.clear()  # the model's last reference: it is freed here, while this loop runs
        gc.collect()
        return asyncio.all_tasks() - {asyncio.current_task()}

    return asyncio.run(let_go())


def build(deltas: list[ModelDelta]) -> ModelResponse:
    builder = ResponseBuilder()
    for delta in deltas:
        builder.add(delta)
    return builder.build()


class WatchedModel(ScriptedModel):
    """A scripted model that counts how often its provider stream (``_send_stream``) is
    closed. It keeps every stream it opened, as an SDK client may keep its responses: a
    stream left open is not closed by being collected, only by being closed."""

    def __init__(self, responses: Sequence[Reply]) -> None:
        super().__init__(responses)
        self.streams: list[AsyncIterator[ModelDelta]] = []
        self.closed = 0

    def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        stream = self._watched(super()._send_stream(request))
        self.streams.append(stream)
        return stream

    async def _watched(self, deltas: AsyncIterator[ModelDelta]) -> AsyncIterator[ModelDelta]:
        try:
            async for delta in deltas:
                yield delta
        finally:
            self.closed += 1


class SetupChecks:
    """Set-up problems every provider reports the same way: bad settings, no API key, no
    SDK, no server. A provider's test file subclasses this as ``TestSetup`` and says what
    it tests."""

    model_class: ClassVar[type[HTTPChatModel]]
    module: ClassVar[str]  # noted's module for the provider
    sdk_module: ClassVar[str]  # what that module imports on first use
    sdk_package: ClassVar[str]  # what the missing-SDK message tells to install
    extra: ClassVar[str]
    api_path: ClassVar[str] = ""  # appended to a server's URL for base_url
    unreachable: ClassVar[str] = ""  # in the error when no server answers at {url}

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"api_key": 123},
            {"base_url": ""},
            {"base_url": "  "},
            {"timeout": 0},
            {"timeout": -1.0},
            {"timeout": "60"},
            {"timeout": True},
            {"max_tokens": 0},
            {"max_tokens": 1.5},
            {"max_tokens": True},
            {"temperature": "hot"},
            {"temperature": True},
        ],
    )
    def test_bad_settings(self, kwargs: dict[str, Any]) -> None:
        [name] = kwargs
        with pytest.raises(UserError, match=rf"^{name} must be"):
            self.model_class(**{"api_key": "k", **kwargs})

    def test_missing_api_key(self, wire: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
        variables = self.model_class.api_key_envs
        for variable in variables:
            monkeypatch.delenv(variable, raising=False)
        model = self.model_class(base_url=wire.url + self.api_path, retry=FAST)

        with pytest.raises(UserError, match=variables[0]) as caught:
            complete(model, ask())

        assert all(variable in str(caught.value) for variable in variables)
        assert self.model_class.__name__ in str(caught.value)
        assert "api_key=" in str(caught.value)
        assert wire.requests == []

    def test_missing_sdk(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setitem(sys.modules, self.sdk_module, None)
        model = self.model_class(api_key="test-key", base_url="http://127.0.0.1:9")

        with pytest.raises(MissingDependencyError, match=rf"noted\[{self.extra}\]") as caught:
            complete(model, ask())

        assert self.model_class.__name__ in str(caught.value)
        assert f"'{self.sdk_package}'" in str(caught.value)

    def test_unreachable_server_is_a_connection_error(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}{self.api_path}"
        model = self.model_class(
            api_key="test-key", base_url=url, retry=RetryPolicy(max_attempts=1)
        )

        with pytest.raises(ModelConnectionError) as caught:
            complete(model, ask())

        assert self.unreachable.format(url=url) in str(caught.value)

    def test_import_does_not_load_the_sdk(self) -> None:
        code = f"import sys, {self.module}; print({self.sdk_module!r} in sys.modules)"
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "False"
