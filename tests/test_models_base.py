"""The model protocol's shared parts: test models, retries, the response builder, and the
background loop behind the sync methods."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing

import pytest

from model_helpers import WatchedModel
from noted import _portal
from noted.errors import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelRateLimitError,
    UserError,
)
from noted.models import (
    BaseChatModel,
    ChatModel,
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ResponseBuilder,
    RetryPolicy,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    UsageDelta,
    get_model,
    register_provider,
)
from noted.models._provider import LoopClients
from noted.models.base import RetryWait, retries_shown
from noted.testing import FunctionModel, ScriptedModel, ScriptExhaustedError

FAST = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.002)


def ask(text: str, **kwargs: object) -> ModelRequest:
    return ModelRequest(messages=[Message("user", text)], **kwargs)  # type: ignore[arg-type]


def test_scripted_model_answers_in_order_and_records_requests() -> None:
    tool = ToolDefinition("add", "Add numbers.", {"type": "object", "properties": {}})
    model = ScriptedModel(
        ["first", ModelResponse(content="second", tool_calls=[ToolCall("add", {"a": 1})])]
    )
    assert isinstance(model, ChatModel)
    one = model.complete(ask("hi", tools=[tool], response_schema={"type": "object"}))
    assert one.content == "first"
    assert one.usage.input_tokens > 0
    assert one.usage.output_tokens == 2  # "first": five characters, four per token
    assert one.finish_reason == "stop"
    two = model.complete(ask("again"))
    assert two.tool_calls[0].arguments == {"a": 1}
    assert two.finish_reason == "tool_calls"
    assert model.call_count == 2
    assert model.requests[0].tools == [tool]
    assert model.requests[0].response_schema == {"type": "object"}
    assert model.requests[1].messages[0].content == "again"
    with pytest.raises(ScriptExhaustedError, match="request 3 but all 2 response"):
        model.complete(ask("more"))
    assert isinstance(ScriptExhaustedError("x"), ModelError)
    with pytest.raises(UserError, match="str or ModelResponse"):
        ScriptedModel([42])  # type: ignore[list-item]


def test_scripted_usage_is_kept_when_given() -> None:
    model = ScriptedModel([ModelResponse(content="x", usage=Usage(100, 7))])
    assert model.complete(ask("hi")).usage == Usage(100, 7)


def test_test_models_stream_what_they_would_answer() -> None:
    call = ToolCall("lookup", {"q": "ski"})
    model = ScriptedModel(["Ava likes to ski in winter.", ModelResponse(tool_calls=[call])])
    deltas = list(model.stream(ask("hi")))
    texts = [d.text for d in deltas if isinstance(d, TextDelta)]
    assert len(texts) > 1
    assert "".join(texts) == "Ava likes to ski in winter."
    assert isinstance(deltas[-1], UsageDelta)
    assert deltas[-1].output_tokens > 0
    builder = ResponseBuilder()
    for delta in model.stream(ask("call")):
        builder.add(delta)
    built = builder.build()
    assert built.content is None
    assert built.tool_calls == [call]


def test_function_model_sync_and_async_functions() -> None:
    def reply(messages: list[Message], tools: list[ToolDefinition]) -> str:
        return f"{len(messages)} message(s), {len(tools)} tool(s)"

    async def areply(messages: list[Message], tools: list[ToolDefinition]) -> ModelResponse:
        await asyncio.sleep(0)
        return ModelResponse(content=messages[-1].content)

    assert FunctionModel(reply).complete(ask("hi")).content == "1 message(s), 0 tool(s)"

    async def main() -> str | None:
        model = FunctionModel(areply)
        response = await model.acomplete(ask("echo"))
        return response.content

    assert asyncio.run(main()) == "echo"
    with pytest.raises(UserError, match="callable"):
        FunctionModel("nope")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="str or a ModelResponse"):
        FunctionModel(lambda m, t: 42).complete(ask("hi"))  # type: ignore[arg-type, return-value]


def test_response_builder_joins_tool_call_fragments() -> None:
    builder = ResponseBuilder()
    for delta in [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallDelta(0, id="call_a", name="weather"),
        ToolCallDelta(1, id="call_b", name="time"),
        ToolCallDelta(0, arguments='{"city": '),
        ToolCallDelta(1, arguments="{}"),
        ToolCallDelta(0, arguments='"Oslo"}'),
        UsageDelta(input_tokens=10),
        UsageDelta(output_tokens=4, finish_reason="tool_calls", model="m-1"),
    ]:
        builder.add(delta)
    response = builder.build()
    assert response.content == "Let me check."
    assert response.tool_calls == [
        ToolCall("weather", {"city": "Oslo"}, id="call_a"),
        ToolCall("time", {}, id="call_b"),
    ]
    assert response.usage == Usage(10, 4)
    assert (response.finish_reason, response.model) == ("tool_calls", "m-1")


def test_broken_tool_arguments_are_kept_as_text() -> None:
    assert ToolCall.from_json_text("f", '{"a": 1', "c").invalid_arguments == '{"a": 1'
    assert ToolCall.from_json_text("f", "[1, 2]", "c").invalid_arguments == "[1, 2]"
    assert ToolCall.from_json_text("f", "", "c").arguments == {}
    assert ToolCall.from_json_text("f", '{"a": 1}').arguments == {"a": 1}


def test_messages_round_trip_and_validate() -> None:
    message = Message("assistant", "hi", tool_calls=[ToolCall("f", {"x": [1, "ü"]}, id="c1")])
    assert Message.from_dict(message.to_dict()) == message
    with pytest.raises(UserError, match="role"):
        Message("wizard", "hi")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="tool_call_id"):
        Message("tool", "result")
    with pytest.raises(UserError, match="content must be a string"):
        Message("user", 42)  # type: ignore[arg-type]


class Flaky(BaseChatModel):
    """Fails with the given errors first, then answers (or streams) 'ok'."""

    provider = "flaky"

    def __init__(self, failures: list[ModelError], retry: RetryPolicy = FAST) -> None:
        super().__init__("flaky-1", retry=retry)
        self.failures = failures
        self.attempts = 0

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        self.attempts += 1
        if self.failures:
            raise self.failures.pop(0)
        yield TextDelta("o")
        yield TextDelta("k")


def test_retryable_errors_are_retried_with_a_bound() -> None:
    model = Flaky([ModelRateLimitError("flaky", 429, "slow down"), ModelConnectionError("timeout")])
    assert model.complete(ask("hi")).content == "ok"
    assert model.attempts == 3
    model = Flaky([ModelRateLimitError("flaky", 429, "slow down")] * 5)
    with pytest.raises(ModelRateLimitError, match="slow down"):
        model.complete(ask("hi"))
    assert model.attempts == 3
    model = Flaky([ModelHTTPError("flaky", 400, "bad request")])
    with pytest.raises(ModelHTTPError, match="HTTP 400: bad request"):
        model.complete(ask("hi"))
    assert model.attempts == 1
    streamed = Flaky([ModelConnectionError("reset")])
    assert "".join(d.text for d in streamed.stream(ask("hi")) if isinstance(d, TextDelta)) == "ok"
    assert streamed.attempts == 2


def test_retries_are_logged_unless_a_caller_shows_them(caplog: pytest.LogCaptureFixture) -> None:
    # A terminal's status line takes the waits (a chat printed a log line per retry); a
    # library's caller or a server still gets the warnings.
    caplog.set_level(logging.DEBUG, logger="noted.models")
    assert Flaky([ModelConnectionError("reset")]).complete(ask("hi")).content == "ok"
    [warning] = caplog.records
    assert warning.levelno == logging.WARNING
    assert "flaky flaky-1 failed (reset); retry 1 of 2 in" in warning.getMessage()
    caplog.clear()
    shown: list[RetryWait] = []
    with retries_shown(shown.append):  # on noted's loop, and on the caller's own
        assert Flaky([ModelConnectionError("reset")]).complete(ask("hi")).content == "ok"
        streamed = Flaky([ModelConnectionError("reset"), ModelConnectionError("again")])
        assert [d for d in streamed.stream(ask("hi")) if isinstance(d, TextDelta)]
        asyncio.run(Flaky([ModelConnectionError("reset")]).acomplete(ask("hi")))
    assert [(w.retry, w.retries, str(w.error)) for w in shown] == [
        (1, 2, "reset"),
        (1, 2, "reset"),
        (2, 2, "again"),
        (1, 2, "reset"),
    ]
    assert all(0 < w.seconds <= FAST.max_delay for w in shown)
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] * 4
    caplog.clear()
    Flaky([ModelConnectionError("reset")]).complete(ask("hi"))  # the block is over
    assert [r.levelno for r in caplog.records] == [logging.WARNING]


def test_a_stream_that_fails_after_text_is_not_retried() -> None:
    class Broken(BaseChatModel):
        provider = "broken"

        def __init__(self) -> None:
            super().__init__("broken-1", retry=FAST)
            self.attempts = 0

        async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
            self.attempts += 1
            yield TextDelta("partial")
            raise ModelConnectionError("connection lost")

    model = Broken()
    seen: list[ModelDelta] = []
    with pytest.raises(ModelConnectionError):
        seen.extend(model.stream(ask("hi")))
    assert model.attempts == 1
    assert seen == [TextDelta("partial")]


# -- a stream stopped early closes the provider's stream at once ---------------------------


def test_a_stream_read_to_its_end_closes_the_providers_stream() -> None:
    model = WatchedModel(["one two three"])
    assert "".join(d.text for d in model.stream(ask("hi")) if isinstance(d, TextDelta))
    assert model.closed == 1


async def _break_out(model: WatchedModel) -> None:
    async with aclosing(model.astream(ask("hi"))) as deltas:
        async for _ in deltas:
            break


async def _fail_in_the_loop(model: WatchedModel) -> None:
    async def fail() -> None:
        async with aclosing(model.astream(ask("hi"))) as deltas:
            async for _ in deltas:
                raise KeyError("the caller's own failure")

    with pytest.raises(KeyError, match="the caller's own failure"):
        await fail()


async def _close_it(model: WatchedModel) -> None:
    deltas = model.astream(ask("hi"))
    await anext(deltas)
    await deltas.aclose()


async def _cancel_the_consumer(model: WatchedModel) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async with aclosing(model.astream(ask("hi"))) as deltas:
            async for _ in deltas:
                first.set()
                await asyncio.Event().wait()  # until cancelled, between two deltas

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("stop", [_break_out, _fail_in_the_loop, _close_it, _cancel_the_consumer])
def test_an_async_stream_stopped_early_closes_the_providers_stream_before_close_returns(
    stop: Callable[[WatchedModel], Awaitable[None]],
) -> None:
    async def closed_after_stop() -> int:
        model = WatchedModel(["one two three four five six"])
        await stop(model)
        assert len(model.streams) == 1
        return model.closed  # read before the loop runs anything else

    assert asyncio.run(closed_after_stop()) == 1


def test_a_sync_stream_stopped_early_closes_the_providers_stream_before_close_returns() -> None:
    model = WatchedModel(["one two three four five six"] * 3)
    for _ in model.stream(ask("hi")):
        break
    assert model.closed == 1
    deltas = model.stream(ask("again"))
    next(deltas)
    deltas.close()  # type: ignore[attr-defined]
    assert model.closed == 2

    def fail() -> None:
        for _ in model.stream(ask("and again")):
            raise KeyError("the caller's own failure")

    with pytest.raises(KeyError, match="the caller's own failure"):
        fail()
    assert model.closed == 3


def test_a_loops_client_is_closed_on_that_loop_once() -> None:
    closed_on: list[asyncio.AbstractEventLoop] = []

    async def close(client: object) -> None:
        closed_on.append(asyncio.get_running_loop())

    clients = LoopClients(object, close)

    async def use() -> asyncio.AbstractEventLoop:
        assert clients.get() is clients.get()
        return asyncio.get_running_loop()

    async def use_and_close() -> asyncio.AbstractEventLoop:
        clients.get()
        await clients.aclose()
        return asyncio.get_running_loop()

    left_open = asyncio.run(use())  # closed as asyncio.run ends, while the loop still runs
    closed = asyncio.run(use_and_close())  # closed by aclose(), and not again at the end
    assert closed_on == [left_open, closed]


def test_retry_waits_grow_within_bounds_and_honour_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=1.0, max_delay=4.0, multiplier=2.0)
    for retry, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        waits = [policy.delay(retry) for _ in range(200)]
        assert all(cap / 2 <= w <= cap for w in waits)
        assert len(set(waits)) > 1  # jitter
    assert policy.delay(1, retry_after=3.0) == 3.0
    assert policy.delay(1, retry_after=60.0) == 4.0  # never beyond max_delay
    with pytest.raises(UserError):
        RetryPolicy(max_attempts=0)
    with pytest.raises(UserError):
        RetryPolicy(initial_delay=-1)


def test_registry_accepts_third_party_providers() -> None:
    register_provider("scripted", lambda model_id: ScriptedModel([model_id]))
    model = get_model("scripted:hello")
    assert model.id == "scripted"
    assert isinstance(model, ScriptedModel)
    assert model.responses == ["hello"]
    with pytest.raises(UserError, match="plain name"):
        register_provider("bad name", lambda model_id: ScriptedModel([]))
    with pytest.raises(UserError, match="chat model"):
        get_model(42)  # type: ignore[arg-type]


def test_sync_calls_from_the_background_loop_are_refused() -> None:
    model = ScriptedModel(["never"])

    async def inside() -> None:
        model.complete(ask("hi"))

    with pytest.raises(UserError, match="await its async twin"):
        _portal.run(inside())
    assert model.call_count == 0
