"""Claude against a local server that speaks Anthropic's Messages API wire format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from model_helpers import (
    CHAT_WITH_TWO_SYSTEM_MESSAGES,
    FAST,
    PERSON,
    TIME,
    WEATHER,
    SetupChecks,
    ask,
    build,
    complete,
    model_for,
    run,
    stream,
    tasks_left_when_let_go,
)
from noted import Agent, SqliteDb
from noted.agent.events import RunCompleted
from noted.errors import (
    ModelConnectionError,
    ModelHTTPError,
    ModelOutputError,
    ModelRateLimitError,
    ModelServerError,
    UserError,
)
from noted.models.anthropic import Claude
from noted.models.base import RetryPolicy
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageDelta,
)
from wire import SSE, Drip, Raw, Reply, WireServer

MODEL = "claude-sonnet-4-6"


def make(wire: WireServer, **kwargs: Any) -> Claude:
    return model_for(Claude, MODEL, wire.url, **kwargs)


def message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    input_tokens: int = 21,
    output_tokens: int = 7,
) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def tool_use(call_id: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"type": "tool_use", "id": call_id, "name": name, "input": arguments}


def error_body(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}}


def event(name: str, **data: Any) -> tuple[str, dict[str, Any]]:
    return (name, {"type": name, **data})


def message_start(input_tokens: int = 21) -> tuple[str, dict[str, Any]]:
    return event(
        "message_start",
        message={
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    )


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return event("content_block_start", index=index, content_block=block)


def text_delta(index: int, value: str) -> tuple[str, dict[str, Any]]:
    return event("content_block_delta", index=index, delta={"type": "text_delta", "text": value})


def json_delta(index: int, fragment: str) -> tuple[str, dict[str, Any]]:
    return event(
        "content_block_delta",
        index=index,
        delta={"type": "input_json_delta", "partial_json": fragment},
    )


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return event("content_block_stop", index=index)


def message_end(stop_reason: str, output_tokens: int) -> list[tuple[str, dict[str, Any]]]:
    return [
        event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": None},
            usage={"output_tokens": output_tokens},
        ),
        event("message_stop"),
    ]


def text_stream(*pieces: str) -> SSE:
    return SSE(
        [
            message_start(),
            block_start(0, {"type": "text", "text": ""}),
            event("ping"),
            *(text_delta(0, piece) for piece in pieces),
            block_stop(0),
            *message_end("end_turn", 9),
        ]
    )


def sent_key(headers: dict[str, str]) -> str | None:
    """The API key as sent: as ``x-api-key``, or as a bearer token by newer SDKs."""
    if "x-api-key" in headers:
        return headers["x-api-key"]
    auth = headers.get("authorization", "")
    return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


# -- plain text -------------------------------------------------------------------------------


def test_plain_text_request_and_response(wire: WireServer) -> None:
    wire.add(Reply(message([text("Hi there!")])))
    model = make(wire, temperature=0.2, max_tokens=512)
    request = ModelRequest(messages=CHAT_WITH_TWO_SYSTEM_MESSAGES)

    response = complete(model, request)

    assert response == ModelResponse(
        content="Hi there!",
        usage=response.usage,
        model=MODEL,
        finish_reason="end_turn",
    )
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 7)
    [sent] = wire.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent_key(sent.headers) == "test-key"
    assert "anthropic-version" in sent.headers
    assert sent.body == {
        "model": MODEL,
        "max_tokens": 512,
        "temperature": 0.2,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "How are you?"},
        ],
    }


def test_defaults_send_max_tokens_and_no_system(wire: WireServer) -> None:
    wire.add(Reply(message([text("ok")])))
    wire.add(Reply(message([text("ok")])))
    model = Claude(api_key="test-key", base_url=wire.url, retry=FAST)
    assert model.provider == "anthropic"
    complete(model, ask())
    body = wire.requests[0].body
    assert body["model"] == model.id
    assert body["max_tokens"] == 4096
    complete(model, ask(max_tokens=300))  # a request's own limit is lower: it applies
    assert wire.requests[1].body["max_tokens"] == 300
    assert "system" not in body
    assert "temperature" not in body
    assert "tools" not in body


def test_cache_tokens_count_as_input(wire: WireServer) -> None:
    body = message([text("ok")])
    body["usage"].update(cache_creation_input_tokens=100, cache_read_input_tokens=1000)
    wire.add(Reply(body))
    response = complete(make(wire), ask())
    assert response.usage.input_tokens == 21 + 100 + 1000


CACHED = {"cache_creation_input_tokens": 100, "cache_read_input_tokens": 1000}


def test_cache_and_thinking_tokens_are_counted_whole_and_streamed(wire: WireServer) -> None:
    body = message([text("ok")], output_tokens=300)
    body["usage"].update(CACHED, output_tokens_details={"thinking_tokens": 240})
    start = message_start()
    start[1]["message"]["usage"].update(CACHED)
    # message_delta repeats the input counts as running totals: they are not added twice
    end = event(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage={
            "input_tokens": 21,
            **CACHED,
            "output_tokens": 300,
            "output_tokens_details": {"thinking_tokens": 240},
        },
    )
    events = [start, block_start(0, text("")), text_delta(0, "ok"), block_stop(0), end]
    wire.add(Reply(body), SSE([*events, event("message_stop")]))
    model = make(wire)

    response = complete(model, ask())
    streamed = build(stream(model, ask()))

    expected = Usage(
        21 + 100 + 1000, 300, cache_read_tokens=1000, cache_write_tokens=100, reasoning_tokens=240
    )
    assert response.usage == streamed.usage == expected


def test_usage_sent_first_at_the_end_of_a_stream_is_counted(wire: WireServer) -> None:
    """Compatible gateways over other APIs learn the counts at the end: message_start says
    0 input tokens, and message_delta brings the input side; a second message_delta
    brings running totals again, not more tokens. Running totals never go down: a server
    that sends 0 input tokens at the end, after the real count at the start, is read as
    having sent the count once."""

    def delta(stop_reason: str | None, output: int, **inputs: int) -> tuple[str, Any]:
        return event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": None},
            usage={**inputs, "output_tokens": output},
        )

    wire.add(
        SSE(
            [
                message_start(input_tokens=0),
                block_start(0, text("")),
                text_delta(0, "ok"),
                block_stop(0),
                delta(None, 5, input_tokens=21, **CACHED),
                delta("end_turn", 9),
                event("message_stop"),
            ]
        )
    )

    # and one that sends them at the start, then 0 for them at the end
    wire.add(
        SSE(
            [
                message_start(input_tokens=21),
                block_start(0, text("")),
                text_delta(0, "ok"),
                block_stop(0),
                delta("end_turn", 9, input_tokens=0),
                event("message_stop"),
            ]
        )
    )
    model = make(wire)

    deltas = stream(model, ask())
    zeroed = build(stream(model, ask())).usage

    expected = Usage(21 + 100 + 1000, 9, cache_read_tokens=1000, cache_write_tokens=100)
    assert build(deltas).usage == expected
    assert zeroed == Usage(21, 9)
    assert [d.finish_reason for d in deltas if isinstance(d, UsageDelta)] == [
        None,
        None,
        "end_turn",
    ]


def test_stream_text(wire: WireServer) -> None:
    wire.add(text_stream("Hel", "lo", " world"))
    model = make(wire)

    deltas = stream(model, ModelRequest([Message("system", "Be kind."), Message("user", "Hi")]))

    assert deltas == [
        UsageDelta(input_tokens=21, model=MODEL),
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        UsageDelta(output_tokens=9, finish_reason="end_turn"),
    ]
    response = build(deltas)
    assert response.content == "Hello world"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (21, 9)
    [sent] = wire.requests
    assert sent.path == "/v1/messages"
    assert sent.body["stream"] is True
    assert sent.body["system"] == "Be kind."
    assert sent.body["messages"] == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize("streamed", [False, True])
def test_an_answer_stopped_by_the_context_window_is_cut_short(
    wire: WireServer, streamed: bool
) -> None:
    """Claude stops at the end of its context window, before ``max_tokens``, with a stop
    reason of its own: the answer is cut off, as at the token limit."""
    reason = "model_context_window_exceeded"
    if streamed:
        wire.add(
            SSE(
                [
                    message_start(input_tokens=199_000),
                    block_start(0, {"type": "text", "text": ""}),
                    text_delta(0, "The three reasons are: first,"),
                    block_stop(0),
                    *message_end(reason, 1000),
                ]
            )
        )
    else:
        wire.add(Reply(message([text("The three reasons are: first,")], stop_reason=reason)))
    model = make(wire)
    agent = Agent(model)

    try:
        if streamed:
            [done] = [e for e in agent.run("Why?", stream=True) if isinstance(e, RunCompleted)]
            result = done.result
        else:
            result = agent.run("Why?")
    finally:
        model.close()  # its connections on noted's background loop

    assert result.content == "The three reasons are: first,"
    assert result.stop_reason == "max_tokens"


def test_a_refusal_ends_the_run_as_refused(wire: WireServer) -> None:
    """Claude's refusal (its stop reason ``refusal``, the answer stopped where it was)
    ends the run with the stop reason ``refused``, streamed or not."""
    wire.add(
        Reply(message([], stop_reason="refusal")),
        SSE(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                text_delta(0, "Here is how to"),
                block_stop(0),
                *message_end("refusal", 4),
            ]
        ),
    )
    model = make(wire)
    agent = Agent(model)
    try:
        whole = agent.run("How do I ...?")
        [done] = [e for e in agent.run("How?", stream=True) if isinstance(e, RunCompleted)]
    finally:
        model.close()  # its connections on noted's background loop

    assert (whole.content, whole.stop_reason) == (None, "refused")
    assert (done.result.content, done.result.stop_reason) == ("Here is how to", "refused")


# -- tools --------------------------------------------------------------------------------------


def test_tool_calls(wire: WireServer) -> None:
    wire.add(
        Reply(
            message(
                [
                    text("Let me check both."),
                    tool_use("toolu_01", "get_weather", {"city": "Paris"}),
                    tool_use("toolu_02", "get_time", {"city": "Oslo"}),
                ],
                stop_reason="tool_use",
            )
        )
    )
    response = complete(make(wire), ask("Weather in Paris, time in Oslo?", tools=[WEATHER, TIME]))

    assert response.content == "Let me check both."
    assert response.tool_calls == [
        ToolCall("get_weather", {"city": "Paris"}, id="toolu_01"),
        ToolCall("get_time", {"city": "Oslo"}, id="toolu_02"),
    ]
    assert response.finish_reason == "tool_use"
    body = wire.requests[0].body
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The current weather in a city.",
            "input_schema": dict(WEATHER.parameters),
        },
        {
            "name": "get_time",
            "description": "The local time in a city.",
            "input_schema": dict(TIME.parameters),
        },
    ]
    assert "tool_choice" not in body


def test_stream_tool_calls(wire: WireServer) -> None:
    wire.add(
        SSE(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                text_delta(0, "Checking."),
                block_stop(0),
                block_start(
                    1, {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}
                ),
                json_delta(1, ""),
                json_delta(1, '{"ci'),
                json_delta(1, 'ty": "Pa'),
                json_delta(1, 'ris"}'),
                block_stop(1),
                event("ping"),
                block_start(
                    2, {"type": "tool_use", "id": "toolu_02", "name": "get_time", "input": {}}
                ),
                json_delta(2, '{"city": '),
                json_delta(2, '"Oslo"}'),
                block_stop(2),
                *message_end("tool_use", 40),
            ]
        )
    )
    deltas = stream(make(wire), ask(tools=[WEATHER, TIME]))

    assert deltas[1:-1] == [
        TextDelta("Checking."),
        ToolCallDelta(index=1, id="toolu_01", name="get_weather"),
        ToolCallDelta(index=1, arguments='{"ci'),
        ToolCallDelta(index=1, arguments='ty": "Pa'),
        ToolCallDelta(index=1, arguments='ris"}'),
        ToolCallDelta(index=2, id="toolu_02", name="get_time"),
        ToolCallDelta(index=2, arguments='{"city": '),
        ToolCallDelta(index=2, arguments='"Oslo"}'),
    ]
    response = build(deltas)
    assert response.content == "Checking."
    assert response.tool_calls == [
        ToolCall("get_weather", {"city": "Paris"}, id="toolu_01"),
        ToolCall("get_time", {"city": "Oslo"}, id="toolu_02"),
    ]
    assert response.finish_reason == "tool_use"
    assert response.usage.output_tokens == 40


def test_a_tool_input_sent_whole_at_the_blocks_start_is_kept(wire: WireServer) -> None:
    """Claude starts a tool_use block with an empty input and streams the input; a gateway
    that turns another API's answer into this stream may send the input whole at the
    block's start, with no deltas. That input is the call's (as the SDK keeps it), in
    answers with tools and with a response schema alike; deltas, when they come, replace
    it."""
    whole = SSE(
        [
            message_start(),
            block_start(0, tool_use("call_1", "get_weather", {"city": "Paris"})),
            block_stop(0),
            block_start(1, tool_use("call_2", "get_time", {"city": "Oslo"})),
            json_delta(1, '{"city": "Bergen"}'),  # deltas replace what the start held
            block_stop(1),
            *message_end("tool_use", 30),
        ]
    )
    schema = SSE(
        [
            message_start(),
            block_start(0, tool_use("call_3", "person", {"name": "Ada", "age": 36})),
            block_stop(0),
            *message_end("tool_use", 12),
        ]
    )
    wire.add(whole, schema)
    model = make(wire)

    calls = build(stream(model, ask(tools=[WEATHER, TIME]))).tool_calls
    answer = build(stream(model, ask(response_schema=PERSON, response_schema_name="person")))

    assert calls == [
        ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
        ToolCall("get_time", {"city": "Bergen"}, id="call_2"),
    ]
    assert json.loads(answer.content or "") == {"name": "Ada", "age": 36}


def test_tool_calls_cut_off_at_the_token_limit_are_not_run(
    wire: WireServer, tmp_path: Path
) -> None:
    """A tool call whose arguments the token limit cut off would come back cut off again
    if the model were asked again: the run ends there (``max_tokens``) without running
    the calls, each answered as not run, so the next turn's history holds a result for
    every call."""
    saved: list[str] = []

    def save_note(text: str) -> str:
        """Save a note."""
        saved.append(text)
        return "saved"

    cut = SSE(
        [
            message_start(),
            block_start(0, text("")),
            text_delta(0, "Saving it. "),
            block_stop(0),
            block_start(1, tool_use("toolu_1", "save_note", {})),
            json_delta(1, '{"text": "A very long note tha'),
            *message_end("max_tokens", 4096),
        ]
    )
    wire.add(cut, text_stream("Noted."), text_stream("Noted."))
    model = make(wire)
    agent = Agent(
        model, db=SqliteDb(tmp_path / "s.db"), tools=[save_note], add_history_to_context=True
    )
    try:
        [done] = [
            e for e in agent.run("Save a long note.", stream=True) if isinstance(e, RunCompleted)
        ]
        list(agent.run("Thanks.", stream=True))
    finally:
        model.close()  # its connections on noted's background loop

    result = done.result
    assert (result.content, result.stop_reason) == ("Saving it. ", "max_tokens")
    assert (saved, result.tool_calls, result.metrics.model_calls) == ([], [], 1)
    reply = result.messages[-1]
    assert (reply.role, reply.tool_call_id) == ("tool", "toolu_1")
    assert reply.content == "Not run: the answer was cut off at the model's token limit."
    [_, _, results, _] = wire.requests[1].body["messages"]
    assert results["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": reply.content}
    ]


def test_tool_round_trip_is_serialised(wire: WireServer) -> None:
    wire.add(Reply(message([text("Sunny in Paris, 14:00 in Oslo.")])))
    calls = [
        ToolCall("get_weather", {"city": "Paris"}, id="toolu_01"),
        ToolCall("get_time", {"city": "Oslo"}, id="toolu_02"),
    ]
    request = ModelRequest(
        messages=[
            Message("system", "Use tools."),
            Message("user", "Weather in Paris, time in Oslo?"),
            Message("assistant", "Let me check.", tool_calls=calls),
            Message("tool", "sunny", tool_call_id="toolu_01", name="get_weather"),
            Message("tool", "14:00", tool_call_id="toolu_02", name="get_time"),
            Message("assistant", None, tool_calls=[ToolCall("get_time", {}, id="toolu_03")]),
            Message("tool", None, tool_call_id="toolu_03"),
            Message("user", "Thanks"),
        ],
        tools=[WEATHER, TIME],
    )

    response = complete(make(wire), request)

    assert response.content == "Sunny in Paris, 14:00 in Oslo."
    assert wire.requests[0].body["messages"] == [
        {"role": "user", "content": "Weather in Paris, time in Oslo?"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_01",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                },
                {
                    "type": "tool_use",
                    "id": "toolu_02",
                    "name": "get_time",
                    "input": {"city": "Oslo"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "14:00"},
            ],
        },
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_03", "name": "get_time", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_03", "content": ""}],
        },
        {"role": "user", "content": "Thanks"},
    ]


def test_a_call_with_broken_arguments_goes_back_with_none(wire: WireServer) -> None:
    wire.add(Reply(message([text("Which city?")])))
    broken = ToolCall("get_weather", id="toolu_01", invalid_arguments='{"city": "Par')
    request = ModelRequest(
        messages=[
            Message("user", "Weather?"),
            Message("assistant", None, tool_calls=[broken]),
            Message("tool", "Error: the arguments were not JSON", tool_call_id="toolu_01"),
        ],
        tools=[WEATHER],
    )

    complete(make(wire), request)

    [use] = wire.requests[0].body["messages"][1]["content"]
    assert use == {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {}}


# -- structured output ----------------------------------------------------------------------------


def test_response_schema_is_a_forced_tool(wire: WireServer) -> None:
    wire.add(
        Reply(
            message(
                [tool_use("toolu_09", "person", {"name": "Ava", "age": 31})], stop_reason="tool_use"
            )
        )
    )
    request = ask("Who is Ava?", response_schema=PERSON, response_schema_name="person")

    response = complete(make(wire), request)

    assert response.content is not None
    assert response.tool_calls == []
    assert json.loads(response.content) == {"name": "Ava", "age": 31}
    body = wire.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "person"}
    [tool] = body["tools"]
    assert tool["name"] == "person"
    assert tool["input_schema"] == PERSON


def test_response_schema_streams_json_as_text(wire: WireServer) -> None:
    wire.add(
        SSE(
            [
                message_start(),
                block_start(
                    0, {"type": "tool_use", "id": "toolu_09", "name": "response", "input": {}}
                ),
                json_delta(0, '{"name": "A'),
                json_delta(0, 'va", "age": 31}'),
                block_stop(0),
                *message_end("tool_use", 12),
            ]
        )
    )
    deltas = stream(make(wire), ask(response_schema=PERSON, tools=[WEATHER]))

    assert [d for d in deltas if not isinstance(d, UsageDelta)] == [
        TextDelta('{"name": "A'),
        TextDelta('va", "age": 31}'),
    ]
    response = build(deltas)
    assert response.content == '{"name": "Ava", "age": 31}'
    assert response.tool_calls == []
    body = wire.requests[0].body
    assert [t["name"] for t in body["tools"]] == ["get_weather", "response"]
    assert body["tool_choice"] == {"type": "tool", "name": "response"}


# -- failures -------------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_retry_after(wire: WireServer) -> None:
    wire.add(
        Reply(
            error_body("rate_limit_error", "Slow down"), status=429, headers={"Retry-After": "1"}
        ),
        Reply(message([text("ok")])),
    )
    assert complete(make(wire), ask()).content == "ok"
    assert len(wire.requests) == 2


def test_rate_limit_error_carries_message_and_retry_after(wire: WireServer) -> None:
    wire.add(
        Reply(error_body("rate_limit_error", "Slow down"), status=429, headers={"Retry-After": "7"})
    )
    with pytest.raises(ModelRateLimitError) as caught:
        complete(make(wire, retry=RetryPolicy(max_attempts=1)), ask())
    assert caught.value.status_code == 429
    assert caught.value.message == "Slow down"
    assert caught.value.retry_after == 7.0
    assert len(wire.requests) == 1


def test_overloaded_every_time_gives_up_after_max_attempts(wire: WireServer) -> None:
    overloaded = Reply(error_body("overloaded_error", "Overloaded"), status=529)
    wire.add(overloaded, overloaded, overloaded, Reply(message([text("too late")])))
    with pytest.raises(ModelServerError) as caught:
        complete(make(wire), ask())
    assert caught.value.status_code == 529
    assert caught.value.message == "Overloaded"
    assert caught.value.provider == "anthropic"
    assert len(wire.requests) == 3


def test_server_error_on_stream_is_retried(wire: WireServer) -> None:
    wire.add(Reply(error_body("api_error", "Internal error"), status=500), text_stream("ok"))
    assert build(stream(make(wire), ask())).content == "ok"
    assert len(wire.requests) == 2


def test_bad_request_is_not_retried(wire: WireServer) -> None:
    wire.add(
        Reply(error_body("invalid_request_error", "max_tokens: must be at most 64000"), status=400),
        Reply(message([text("never")])),
    )
    with pytest.raises(ModelHTTPError) as caught:
        complete(make(wire), ask())
    assert type(caught.value) is ModelHTTPError
    assert caught.value.status_code == 400
    assert caught.value.message == "max_tokens: must be at most 64000"
    assert "max_tokens: must be at most 64000" in str(caught.value)
    assert len(wire.requests) == 1


def test_timeout_is_a_connection_error(wire: WireServer) -> None:
    slow = Reply(message([text("late")]), delay=0.5)
    wire.add(slow, slow, slow)
    with pytest.raises(ModelConnectionError, match="within 0.1 s"):
        complete(make(wire, timeout=0.1), ask())
    assert len(wire.requests) == 3


def test_a_stream_kept_alive_without_events_times_out(wire: WireServer) -> None:
    wire.add(Drip(), text_stream("fine"))  # keep-alive comments only, then an answer

    assert build(stream(make(wire, timeout=1), ask())).content == "fine"
    assert len(wire.requests) == 2
    assert wire.hung_up.wait(2.0)  # the first stream was given up, not left to end


def test_a_stream_that_goes_quiet_after_text_times_out(wire: WireServer) -> None:
    events = [message_start(), block_start(0, text("")), text_delta(0, "The answer is")]
    wire.add(Drip(events=events), text_stream("never"))

    with pytest.raises(ModelConnectionError, match="anthropic did not answer within 1 s"):
        stream(make(wire, timeout=1), ask())
    assert len(wire.requests) == 1


def test_error_event_before_any_delta_is_retried(wire: WireServer) -> None:
    wire.add(
        SSE([("error", error_body("overloaded_error", "Overloaded"))]),
        text_stream("fine"),
    )
    assert build(stream(make(wire), ask())).content == "fine"
    assert len(wire.requests) == 2


def test_error_event_mid_stream_is_raised(wire: WireServer) -> None:
    wire.add(
        SSE(
            [
                message_start(),
                block_start(0, {"type": "text", "text": ""}),
                text_delta(0, "Partial"),
                ("error", error_body("overloaded_error", "Overloaded")),
            ]
        ),
        text_stream("never"),
    )
    seen: list[ModelDelta] = []

    async def collect(m: Claude) -> None:
        async for delta in m.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelServerError) as caught:
        run(make(wire), collect)
    assert caught.value.status_code == 529
    assert caught.value.message == "Overloaded"
    assert TextDelta("Partial") in seen
    assert len(wire.requests) == 1


def test_error_event_of_a_client_error_type(wire: WireServer) -> None:
    wire.add(SSE([("error", error_body("invalid_request_error", "Bad input"))]))
    with pytest.raises(ModelHTTPError) as caught:
        stream(make(wire), ask())
    assert type(caught.value) is ModelHTTPError
    assert (caught.value.status_code, caught.value.message) == (400, "Bad input")


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Raw(b"<html>Sign in to this network</html>"), "no message: '<html>Sign in"),
        (Raw(b"<html>Sign in</html>", content_type="application/json"), "not JSON"),
        (Reply({"unexpected": True}), "no message: no content"),
    ],
)
def test_an_answer_that_is_no_message_is_a_model_output_error(
    wire: WireServer, reply: Raw | Reply, error: str
) -> None:
    wire.add(reply)

    with pytest.raises(ModelOutputError, match=error):
        complete(make(wire), ask())
    assert len(wire.requests) == 1


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/html"])
def test_a_whole_answer_that_is_not_utf8_says_so(wire: WireServer, content_type: str) -> None:
    # Under a Content-Type other than JSON's, the SDK hands back the body's text, each bad
    # byte replaced: the answer was reported as "no message" and shown with those bytes.
    body = json.dumps(message([{"type": "text", "text": "Caf\u00e9"}]), ensure_ascii=False)
    wire.add(Raw(body.encode().replace(b"Caf", b"Caf\xff"), content_type=content_type))

    with pytest.raises(
        ModelOutputError,
        match=r"anthropic sent an answer that is not UTF-8 text \(byte 0xff: invalid start byte\)",
    ):
        complete(make(wire), ask())
    assert len(wire.requests) == 1


def test_a_stream_line_that_is_not_json_is_a_model_output_error(wire: WireServer) -> None:
    wire.add(SSE([message_start(), ("content_block_start", "not json")]))

    with pytest.raises(ModelOutputError, match="not JSON"):
        stream(make(wire), ask())
    assert len(wire.requests) == 1


def test_an_answer_without_usage_counts_no_tokens(wire: WireServer) -> None:
    body = message([text("Hi")])
    del body["usage"]
    end = event("message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None})
    events = [message_start(), block_start(0, text("")), text_delta(0, "Hi"), block_stop(0), end]
    wire.add(Reply(body), SSE([*events, event("message_stop")]))
    model = make(wire)

    response = complete(model, ask())
    streamed = build(stream(model, ask()))

    assert (response.content, response.usage) == ("Hi", Usage(0, 0))
    assert (streamed.content, streamed.usage) == ("Hi", Usage(21, 0))
    assert streamed.finish_reason == "end_turn"


# -- streams that end before the answer ---------------------------------------------------------


def test_a_stream_cut_short_before_any_delta_is_retried(wire: WireServer) -> None:
    # no event at all, then a keep-alive ping alone
    wire.add(SSE([]), SSE([event("ping")]), text_stream("fine"))
    model = make(wire)

    deltas = stream(model, ask())

    assert build(deltas).content == "fine"
    assert len(wire.requests) == 3


def test_a_stream_cut_short_after_text_is_a_connection_error(wire: WireServer) -> None:
    wire.add(
        SSE([message_start(), block_start(0, text("")), text_delta(0, "The answer is")]),
        text_stream("never"),
    )
    seen: list[ModelDelta] = []

    async def collect(m: Claude) -> None:
        async for delta in m.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelConnectionError, match="stream ended before the answer did"):
        run(make(wire), collect)
    assert TextDelta("The answer is") in seen
    assert len(wire.requests) == 1


def test_a_stop_reason_without_message_stop_ends_a_stream(wire: WireServer) -> None:
    end = event(
        "message_delta",
        delta={"stop_reason": "end_turn", "stop_sequence": None},
        usage={"output_tokens": 2},
    )
    wire.add(SSE([message_start(), block_start(0, text("")), text_delta(0, "Hi"), end]))

    assert build(stream(make(wire), ask())).content == "Hi"


def test_a_web_page_for_a_stream_is_a_model_output_error(wire: WireServer) -> None:
    wire.add(Raw(b"<html>Sign in to this network</html>"), text_stream("never"))

    with pytest.raises(ModelOutputError, match="with text/html, not an event stream"):
        stream(make(wire), ask())
    assert len(wire.requests) == 1


# -- sync, configuration ------------------------------------------------------------------------


def test_sync_complete_and_stream(wire: WireServer) -> None:
    wire.add(Reply(message([text("Hi sync")])), text_stream("Hi ", "stream"))
    model = make(wire)
    try:
        assert model.complete(ask()).content == "Hi sync"
        deltas = list(model.stream(ask()))
    finally:
        model.close()
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["Hi ", "stream"]
    assert len(wire.requests) == 2


def test_a_model_let_go_after_its_loop_ended_leaves_nothing_to_run(wire: WireServer) -> None:
    # Its client was closed when that loop ended: none is left for the garbage collector
    # to have closed on the loop running now, where the close would fail.
    wire.add(Reply(message([text("one")])))
    assert tasks_left_when_let_go(lambda: make(wire)) == set()
    assert len(wire.requests) == 1


def test_api_key_from_environment(wire: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "env-key")
    wire.add(Reply(message([text("ok")])))
    complete(Claude(MODEL, base_url=wire.url, retry=FAST), ask())
    assert sent_key(wire.requests[0].headers) == "env-key"


class TestSetup(SetupChecks):
    model_class = Claude
    module = "noted.models.anthropic"
    sdk_module = sdk_package = extra = "anthropic"
    unreachable = "could not reach anthropic"

    def test_max_tokens_is_required(self) -> None:
        settings: dict[str, Any] = {"max_tokens": None}
        with pytest.raises(UserError, match=r"max_tokens must be an integer >= 1, got None"):
            Claude(**settings)
