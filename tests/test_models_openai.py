"""OpenAIChat and Ollama against a local server that speaks the Chat Completions wire format."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable
from contextlib import aclosing
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest

from model_helpers import (
    FAST,
    TIME,
    WEATHER,
    SetupChecks,
    ask,
    build,
    complete,
    model_for,
    run,
    stream,
)
from noted import Agent, SqliteDb
from noted.agent import ContentDelta, RunCompleted, RunEvent
from noted.errors import (
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelOutputError,
    ModelRateLimitError,
    ModelServerError,
    UserError,
)
from noted.models.base import RetryPolicy
from noted.models.openai import Ollama, OpenAIChat
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageDelta,
)
from traces import Traces, attrs
from wire import SSE, Cut, Drip, Raw, Reply, WireServer

MODEL = "gpt-4o-mini-2024-07-18"


def make(wire: WireServer, **kwargs: Any) -> OpenAIChat:
    return model_for(OpenAIChat, "gpt-4o-mini", wire.url + "/v1", **kwargs)


def envelope(kind: str, choices: list[dict[str, Any]], usage: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-abc123",
        "object": kind,
        "created": 1_726_000_000,
        "model": MODEL,
        "system_fingerprint": "fp_0123456789",
        "choices": choices,
        "usage": usage,
    }


def token_usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def completion(
    content: str | None = "Hi there!",
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    finish_reason: str = "stop",
    prompt_tokens: int = 12,
    completion_tokens: int = 5,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    return envelope("chat.completion", [choice], token_usage(prompt_tokens, completion_tokens))


def function_call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    return envelope("chat.completion.chunk", [choice], None)


def usage_chunk(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return envelope("chat.completion.chunk", [], token_usage(prompt_tokens, completion_tokens))


def text_stream(*pieces: str) -> SSE:
    return SSE(
        [
            chunk({"role": "assistant", "content": "", "refusal": None}),
            *(chunk({"content": piece}) for piece in pieces),
            chunk({}, finish_reason="stop"),
            usage_chunk(9, len(pieces)),
            "[DONE]",
        ]
    )


def tool_stream() -> SSE:
    """Two parallel calls whose arguments arrive in several pieces each."""

    def call_piece(index: int, arguments: str, **first: str) -> dict[str, Any]:
        piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
        if first:
            piece["id"] = first["id"]
            piece["type"] = "function"
            piece["function"]["name"] = first["name"]
        return chunk({"tool_calls": [piece]})

    return SSE(
        [
            chunk({"role": "assistant", "content": None, "refusal": None}),
            call_piece(0, "", id="call_weather", name="get_weather"),
            call_piece(0, '{"ci'),
            call_piece(0, 'ty": "Pa'),
            call_piece(0, 'ris"}'),
            call_piece(1, "", id="call_time", name="get_time"),
            call_piece(1, '{"city":'),
            call_piece(1, ' "Tokyo"}'),
            chunk({}, finish_reason="tool_calls"),
            usage_chunk(40, 30),
            "[DONE]",
        ]
    )


# -- plain text ----------------------------------------------------------------------------


def test_plain_text(wire: WireServer) -> None:
    wire.add(Reply(completion("Hi there!", prompt_tokens=12, completion_tokens=5)))
    model = make(wire)

    response = complete(model, ask("Hello"))

    assert response.content == "Hi there!"
    assert response.tool_calls == []
    assert response.usage.input_tokens == 12
    assert response.usage.output_tokens == 5
    assert response.model == MODEL
    assert response.finish_reason == "stop"
    [sent] = wire.requests
    assert sent.method == "POST"
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.body["model"] == "gpt-4o-mini"
    assert sent.body["messages"] == [{"role": "user", "content": "Hello"}]
    for absent in ("tools", "response_format", "max_tokens", "temperature", "stream"):
        assert absent not in sent.body


def test_max_tokens_and_temperature_are_sent_when_set(wire: WireServer) -> None:
    wire.add(Reply(completion()))
    model = make(wire, max_tokens=256, temperature=0.2)

    complete(model, ask())

    assert wire.requests[0].body["max_tokens"] == 256
    assert wire.requests[0].body["temperature"] == 0.2


def test_a_requests_max_tokens_lowers_the_models(wire: WireServer) -> None:
    for _ in range(3):
        wire.add(Reply(completion()))
    complete(make(wire, max_tokens=256), ask(max_tokens=40))
    complete(make(wire), ask(max_tokens=40))  # no limit of the model's own
    complete(make(wire, max_tokens=30), ask(max_tokens=40))  # the model's is lower
    assert [r.body["max_tokens"] for r in wire.requests] == [40, 40, 30]


UNSUPPORTED_MAX_TOKENS = {
    "error": {
        "message": "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "unsupported_parameter",
    }
}


def token_limits(wire: WireServer) -> list[dict[str, int]]:
    names = ("max_tokens", "max_completion_tokens")
    return [{n: r.body[n] for n in names if n in r.body} for r in wire.requests]


def test_a_model_that_refuses_max_tokens_gets_max_completion_tokens(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    wire.add(Reply(UNSUPPORTED_MAX_TOKENS, 400), Reply(completion("one")))
    wire.add(Reply(completion("two")), Reply(completion("other")))
    with caplog.at_level("WARNING", logger="noted.models"):
        first = complete(make(wire, max_tokens=256), ask())
        again = complete(make(wire), ask(max_tokens=40))  # the same model on that server
        other = complete(model_for(OpenAIChat, "other-model", wire.url + "/v1"), ask(max_tokens=40))

    assert (first.content, again.content, other.content) == ("one", "two", "other")
    assert token_limits(wire) == [
        {"max_tokens": 256},
        {"max_completion_tokens": 256},
        {"max_completion_tokens": 40},
        {"max_tokens": 40},
    ]
    [warning] = [r.getMessage() for r in caplog.records]
    assert "refused max_tokens for gpt-4o-mini (HTTP 400)" in warning


def test_a_max_tokens_above_the_models_limit_is_no_refusal_of_it(wire: WireServer) -> None:
    too_large = {
        "message": "max_tokens is too large: 100000. This model supports at most 16384 "
        "completion tokens, whereas you provided 100000.",
        "type": "invalid_request_error",
        "param": "max_tokens",
        "code": "invalid_value",
    }
    wire.add(Reply({"error": too_large}, 400), Reply(completion("never")))

    with pytest.raises(ModelHTTPError, match="too large"):
        complete(make(wire, max_tokens=100_000), ask())
    assert token_limits(wire) == [{"max_tokens": 100_000}]


def test_openais_own_api_gets_max_completion_tokens(
    wire: WireServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # api.openai.com, reached through the local server as an HTTP proxy
    for variable in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HTTP_PROXY", wire.url)
    wire.add(Reply(completion()))

    complete(model_for(OpenAIChat, "o3", "http://api.openai.com/v1", max_tokens=64), ask())

    [sent] = wire.requests
    assert sent.headers["host"] == "api.openai.com"
    assert token_limits(wire) == [{"max_completion_tokens": 64}]


def test_system_and_user_messages(wire: WireServer) -> None:
    wire.add(Reply(completion()))
    request = ModelRequest(
        messages=[Message("system", "Be brief."), Message("user", "Hello"), Message("user")]
    )

    complete(make(wire), request)

    assert wire.requests[0].body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": ""},
    ]


# -- streaming -----------------------------------------------------------------------------


def test_streaming_text(wire: WireServer) -> None:
    wire.add(text_stream("Hel", "lo", " world"))

    deltas = stream(make(wire), ask())

    assert deltas == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        UsageDelta(input_tokens=9, output_tokens=3, finish_reason="stop", model=MODEL),
    ]
    [sent] = wire.requests
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"] == [{"role": "user", "content": "Hello"}]


def test_stream_without_usage_still_reports_finish(wire: WireServer) -> None:
    wire.add(SSE([chunk({"content": "ok"}), chunk({}, finish_reason="length"), "[DONE]"]))

    deltas = stream(make(wire), ask())

    assert deltas == [TextDelta("ok"), UsageDelta(None, None, "length", MODEL)]


# -- token counts and their parts ----------------------------------------------------------


def detailed_usage(
    prompt_tokens: int, completion_tokens: int, cached: int, reasoning: int
) -> dict[str, Any]:
    """A usage report as OpenAI's own API sends it, with the prompt's and the completion's
    details (the completion tokens hold the reasoning tokens)."""
    return {
        **token_usage(prompt_tokens, completion_tokens),
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def stream_with_usage(usage: dict[str, Any], *pieces: str) -> SSE:
    return SSE(
        [
            chunk({"role": "assistant", "content": "", "refusal": None}),
            *(chunk({"content": piece}) for piece in pieces),
            chunk({}, finish_reason="stop"),
            envelope("chat.completion.chunk", [], usage),
            "[DONE]",
        ]
    )


def test_cached_and_reasoning_tokens_are_counted_whole_and_streamed(wire: WireServer) -> None:
    whole = completion("Hi")
    whole["usage"] = detailed_usage(2006, 300, 1920, 256)
    wire.add(Reply(whole), stream_with_usage(detailed_usage(2006, 300, 1920, 256), "Hi"))
    model = make(wire)

    response = complete(model, ask())
    deltas = stream(model, ask())

    expected = Usage(2006, 300, cache_read_tokens=1920, reasoning_tokens=256)
    assert response.usage == expected
    assert deltas[-1] == UsageDelta.of(expected, "stop", MODEL)
    assert build(deltas).usage == expected


@pytest.mark.parametrize(
    ("usage", "cached"),
    [
        (token_usage(12, 5), 0),  # Ollama: no details
        ({**token_usage(12, 5), "prompt_tokens_details": None}, 0),  # vLLM
        ({**token_usage(12, 5), "completion_tokens_details": {}}, 0),
        ({**token_usage(12, 5), "prompt_tokens_details": {"cached_tokens": 8}}, 8),  # llama.cpp
    ],
)
def test_compatible_servers_without_the_details_count_no_parts(
    wire: WireServer, usage: dict[str, Any], cached: int
) -> None:
    whole = completion("Hi")
    whole["usage"] = usage
    wire.add(Reply(whole), stream_with_usage(usage, "Hi"))
    model = make(wire)

    response = complete(model, ask())
    streamed = build(stream(model, ask()))

    assert response.usage == streamed.usage == Usage(12, 5, cache_read_tokens=cached)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def asking_the_weather(usage: dict[str, Any]) -> SSE:
    """A stream that calls ``get_weather`` for Paris, with ``usage`` (a chunk) at its end."""
    call = function_call("call_1", "get_weather", '{"city": "Paris"}')
    return SSE(
        [
            chunk({"role": "assistant", "tool_calls": [{"index": 0, **call}]}),
            chunk({}, finish_reason="tool_calls"),
            usage,
            "[DONE]",
        ]
    )


def test_a_runs_metrics_add_up_the_parts_of_its_calls_and_are_stored(
    wire: WireServer, tmp_path: Path
) -> None:
    usage = envelope("chat.completion.chunk", [], detailed_usage(1500, 120, 1024, 100))
    wire.add(
        asking_the_weather(usage), stream_with_usage(detailed_usage(1600, 40, 1536, 30), "Sunny.")
    )
    db = SqliteDb(tmp_path / "s.db")
    model = make(wire)
    agent = Agent(model, db=db, session_id="s", user_id="ava", tools=[get_weather])
    try:
        events = list(agent.run("Weather in Paris?", stream=True))
    finally:
        model.close()

    [run] = db.get_runs("s", "ava")
    assert run.content == "Sunny." and len(events) > 1
    metrics = run.metrics
    assert (metrics.model_calls, metrics.input_tokens, metrics.output_tokens) == (2, 3100, 160)
    assert (metrics.cache_read_tokens, metrics.cache_write_tokens) == (2560, 0)
    assert metrics.reasoning_tokens == 130


def stream_without_usage(*pieces: str) -> SSE:
    """A stream as the llama-cpp-python server sends it: no usage chunk, whatever
    ``stream_options`` asks."""
    return SSE(
        [
            chunk({"role": "assistant", "content": ""}),
            *(chunk({"content": piece}) for piece in pieces),
            chunk({}, finish_reason="stop"),
            "[DONE]",
        ]
    )


def test_a_stream_without_usage_has_unknown_token_counts_in_metrics_and_traces(
    wire: WireServer, tmp_path: Path, traces: Traces
) -> None:
    wire.add(
        asking_the_weather(usage_chunk(1500, 20)),
        stream_without_usage("Sunny."),
        stream_with_usage(token_usage(9, 2), "Hi"),
    )
    db = SqliteDb(tmp_path / "s.db")
    model = make(wire)
    agent = Agent(model, db=db, session_id="s", user_id="ava", tools=[get_weather], name="Llama")
    try:
        list(agent.run("Weather in Paris?", stream=True))
        list(agent.run("Hello", stream=True))
    finally:
        model.close()

    unknown, known = db.get_runs("s", "ava")
    assert unknown.content == "Sunny." and unknown.metrics.model_calls == 2
    # one of the run's two calls was not counted: its sum is unknown, not 1,520 tokens
    assert (unknown.metrics.input_tokens, unknown.metrics.output_tokens) == (None, None)
    assert unknown.metrics.total_tokens is None
    assert (known.metrics.input_tokens, known.metrics.output_tokens) == (9, 2)
    counted, uncounted, counted_again = (attrs(span) for span in traces.of_kind("LLM"))
    assert counted["llm.token_count.prompt"] == 1500 and counted["llm.token_count.total"] == 1520
    assert not [name for name in uncounted if name.startswith("llm.token_count")]
    assert counted_again["llm.token_count.total"] == 11


def test_a_whole_answer_without_usage_has_unknown_token_counts(wire: WireServer) -> None:
    answer = completion("Hi")
    del answer["usage"]
    without_prompt = completion("Hi")
    del without_prompt["usage"]["prompt_tokens"]
    wire.add(Reply(answer), Reply(without_prompt))
    model = make(wire)

    assert complete(model, ask()).usage == Usage.unknown()
    assert complete(model, ask()).usage == Usage(None, 5)


def test_stream_closed_early_releases_the_connection(wire: WireServer) -> None:
    wire.add(replace(text_stream("one", "two", "three"), hold=True))

    async def first(model: OpenAIChat) -> tuple[ModelDelta, bool]:
        deltas = cast(AsyncGenerator[ModelDelta, None], model.astream(ask()))
        async with aclosing(deltas):
            delta = await anext(deltas)
        # waited for here, without letting the loop run: the server sees the connection
        # end only if the HTTP response was closed before aclose() returned
        return delta, wire.hung_up.wait(5.0)

    assert run(make(wire), first) == (TextDelta("one"), True)


# -- tool calls ----------------------------------------------------------------------------


def test_tool_calls(wire: WireServer) -> None:
    wire.add(
        Reply(
            completion(
                None,
                tool_calls=[
                    function_call("call_weather", "get_weather", '{"city": "Paris"}'),
                    function_call("call_time", "get_time", '{"city": "Tokyo"}'),
                ],
                finish_reason="tool_calls",
            )
        )
    )

    response = complete(make(wire), ask("Weather and time?", tools=[WEATHER, TIME]))

    assert response.content is None
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == [
        ToolCall("get_weather", {"city": "Paris"}, id="call_weather"),
        ToolCall("get_time", {"city": "Tokyo"}, id="call_time"),
    ]
    assert wire.requests[0].body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "The current weather in a city.",
                "parameters": dict(WEATHER.parameters),
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "description": "The local time in a city.",
                "parameters": dict(TIME.parameters),
            },
        },
    ]


def test_streaming_tool_calls(wire: WireServer) -> None:
    wire.add(tool_stream())

    deltas = stream(make(wire), ask("Weather and time?", tools=[WEATHER, TIME]))

    assert not any(isinstance(d, TextDelta) for d in deltas)
    calls = [d for d in deltas if isinstance(d, ToolCallDelta)]
    assert calls[0] == ToolCallDelta(index=0, id="call_weather", name="get_weather")
    assert [d.arguments for d in calls if d.index == 0] == ["", '{"ci', 'ty": "Pa', 'ris"}']
    assert calls[4] == ToolCallDelta(index=1, id="call_time", name="get_time")
    assert [d.arguments for d in calls if d.index == 1] == ["", '{"city":', ' "Tokyo"}']
    assert deltas[-1] == UsageDelta(40, 30, finish_reason="tool_calls", model=MODEL)
    response = build(deltas)
    assert response.content is None
    assert response.tool_calls == [
        ToolCall("get_weather", {"city": "Paris"}, id="call_weather"),
        ToolCall("get_time", {"city": "Tokyo"}, id="call_time"),
    ]
    assert wire.requests[0].body["tools"][1]["function"]["name"] == "get_time"


def test_tool_call_round_trip(wire: WireServer) -> None:
    wire.add(Reply(completion("It is sunny in Paris.")))
    request = ModelRequest(
        messages=[
            Message("system", "You are helpful."),
            Message("user", "Weather in Paris?"),
            Message(
                "assistant",
                None,
                tool_calls=[
                    ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
                    ToolCall("get_weather", id="call_2", invalid_arguments='{"city": '),
                ],
            ),
            Message("tool", '{"sky": "sunny"}', tool_call_id="call_1", name="get_weather"),
            Message("tool", "bad arguments", tool_call_id="call_2", name="get_weather"),
        ],
        tools=[WEATHER],
    )

    response = complete(make(wire), request)

    assert response.content == "It is sunny in Paris."
    assert wire.requests[0].body["messages"] == [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                function_call("call_1", "get_weather", '{"city": "Paris"}'),
                # broken arguments go back as none: Ollama refuses a conversation with them
                function_call("call_2", "get_weather", "{}"),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "sunny"}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "bad arguments"},
    ]


def test_broken_tool_call_json_is_kept(wire: WireServer) -> None:
    wire.add(
        Reply(
            completion(
                None,
                tool_calls=[
                    function_call("call_1", "get_weather", '{"city": "Par'),
                    function_call("call_2", "get_weather", '["Paris"]'),
                    function_call("call_3", "get_time", ""),
                ],
                finish_reason="tool_calls",
            )
        )
    )

    response = complete(make(wire), ask(tools=[WEATHER, TIME]))

    broken, not_an_object, empty = response.tool_calls
    assert broken == ToolCall("get_weather", {}, id="call_1", invalid_arguments='{"city": "Par')
    assert not_an_object.invalid_arguments == '["Paris"]'
    assert not_an_object.arguments == {}
    assert empty == ToolCall("get_time", {}, id="call_3")


def test_arguments_sent_as_an_object_are_read(wire: WireServer) -> None:
    """Some compatible servers send a call's arguments as the JSON object itself."""
    call: dict[str, Any] = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
    }
    wire.add(Reply(completion(None, tool_calls=[call], finish_reason="tool_calls")))
    wire.add(
        SSE(
            [
                chunk({"tool_calls": [{"index": 0, **call}]}),
                chunk({}, finish_reason="tool_calls"),
                "[DONE]",
            ]
        )
    )

    plain = complete(make(wire), ask(tools=[WEATHER]))
    streamed = build(stream(make(wire), ask(tools=[WEATHER])))

    expected = [ToolCall("get_weather", {"city": "Oslo"}, id="call_1")]
    assert plain.tool_calls == streamed.tool_calls == expected


def test_streamed_calls_without_an_index_stay_apart(wire: WireServer) -> None:
    """A server that numbers no calls sends each whole in a chunk of its own."""
    calls = [
        function_call("call_1", "get_weather", '{"city": "Oslo"}'),
        function_call("call_2", "get_weather", '{"city": "Rome"}'),
    ]
    wire.add(
        SSE(
            [
                *(chunk({"tool_calls": [call]}) for call in calls),
                chunk({}, finish_reason="tool_calls"),
                "[DONE]",
            ]
        )
    )

    response = build(stream(make(wire), ask(tools=[WEATHER])))

    assert response.tool_calls == [
        ToolCall("get_weather", {"city": "Oslo"}, id="call_1"),
        ToolCall("get_weather", {"city": "Rome"}, id="call_2"),
    ]


def test_a_name_resent_with_every_piece_of_a_call_counts_once(wire: WireServer) -> None:
    """Some compatible servers send the whole name (and id) in every chunk of a call."""

    def piece(arguments: str) -> dict[str, Any]:
        call = function_call("call_1", "get_weather", arguments)
        return chunk({"tool_calls": [{"index": 0, **call}]})

    wire.add(
        SSE(
            [
                piece('{"city"'),
                piece(': "Oslo"'),
                piece("}"),
                chunk({}, finish_reason="tool_calls"),
                "[DONE]",
            ]
        )
    )

    response = build(stream(make(wire), ask(tools=[WEATHER])))

    assert response.tool_calls == [ToolCall("get_weather", {"city": "Oslo"}, id="call_1")]


# -- structured output ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "strict"),
    [
        (
            {
                "type": "object",
                "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
                "required": ["facts"],
                "additionalProperties": False,
            },
            True,
        ),
        ({"type": "object", "properties": {"facts": {"type": "array"}}}, False),
    ],
)
def test_response_schema(wire: WireServer, schema: dict[str, Any], strict: bool) -> None:
    wire.add(Reply(completion('{"facts": ["likes tea"]}')))

    response = complete(make(wire), ask(response_schema=schema, response_schema_name="facts"))

    assert response.content == '{"facts": ["likes tea"]}'
    assert wire.requests[0].body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "facts", "schema": schema, "strict": strict},
    }


# -- servers that refuse json_schema (llama-cpp-python's) ---------------------------------

FACTS = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}}},
    "required": ["facts"],
    "additionalProperties": False,
}
LITERAL_ERROR = {
    "type": "literal_error",
    "loc": ["body", "response_format", "type"],
    "msg": "Input should be 'text' or 'json_object'",
    "input": "json_schema",
    "ctx": {"expected": "'text' or 'json_object'"},
}


def refused_with_500() -> Reply:
    """llama-cpp-python's server: its route handler wraps the validation error in a 500."""
    return Reply(
        {
            "error": {
                "message": str([{**LITERAL_ERROR, "loc": ("body", "response_format", "type")}]),
                "type": "internal_server_error",
                "param": None,
                "code": None,
            }
        },
        500,
    )


def refused_with_422(what: str = "json_schema") -> Reply:
    """The same refusal as a plain FastAPI validation error."""
    return Reply({"detail": [{**LITERAL_ERROR, "input": what}]}, 422)


def schema_ask(*messages: Message) -> ModelRequest:
    return ModelRequest(
        messages=list(messages) or [Message("user", "Ava likes tea")],
        response_schema=FACTS,
        response_schema_name="facts",
    )


def formats(wire: WireServer) -> list[Any]:
    return [r.body.get("response_format", {}).get("type") for r in wire.requests]


def test_a_500_refusal_of_json_schema_falls_back_to_json_mode_once(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    wire.add(refused_with_500(), Reply(completion('{"facts": ["likes tea"]}')))
    wire.add(Reply(completion('{"facts": []}')), Reply(completion('{"facts": []}')))
    with caplog.at_level("WARNING", logger="noted.models"):
        first = complete(make(wire), schema_ask())
        again = complete(make(wire), schema_ask())  # another model, the same server
        third = complete(make(wire), schema_ask())
    assert first.content == '{"facts": ["likes tea"]}'
    assert again.content == third.content == '{"facts": []}'
    assert formats(wire) == ["json_schema", "json_object", "json_object", "json_object"]
    assert wire.requests[1].body["response_format"] == {"type": "json_object", "schema": FACTS}
    assert wire.requests[1].body["messages"] == wire.requests[0].body["messages"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, warnings
    refused = f"at {wire.url}/v1 refused response_format json_schema for gpt-4o-mini (HTTP 500)"
    assert refused in warnings[0]
    assert "JSON mode with the schema" in warnings[0]


def test_a_server_refusing_both_formats_gets_the_schema_in_the_prompt(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    wire.add(refused_with_422(), refused_with_422("json_object"))
    wire.add(Reply(completion('{"facts": ["likes tea"]}')), Reply(completion('{"facts": []}')))
    with caplog.at_level("WARNING", logger="noted.models"):
        first = complete(make(wire), schema_ask())
        second = complete(
            make(wire), schema_ask(Message("system", "Extract facts."), Message("user", "Hi"))
        )
    assert first.content == '{"facts": ["likes tea"]}'
    assert second.content == '{"facts": []}'
    assert formats(wire) == ["json_schema", "json_object", None, None]
    prompted = wire.requests[2].body["messages"]
    assert [m["role"] for m in prompted] == ["system", "user"]
    assert prompted[0]["content"].startswith("Answer with one JSON object and nothing else")
    assert json.dumps(FACTS) in prompted[0]["content"]
    assert prompted[1] == {"role": "user", "content": "Ava likes tea"}
    with_system = wire.requests[3].body["messages"]
    assert [m["role"] for m in with_system] == ["system", "user"]
    assert with_system[0]["content"].startswith("Extract facts.\n\nAnswer with one JSON object")
    assert len(caplog.records) == 2  # one per fallback, each once
    assert "the schema in the prompt" in caplog.records[1].getMessage()


def test_a_fallback_is_remembered_for_the_model_that_needed_it(wire: WireServer) -> None:
    """A gateway serves many models: one refusing json_schema says nothing of the others."""
    wire.add(refused_with_422(), Reply(completion('{"facts": []}')))
    wire.add(Reply(completion('{"facts": []}')), Reply(completion('{"facts": []}')))
    small = model_for(OpenAIChat, "small-local", wire.url + "/v1")

    complete(small, schema_ask())
    complete(make(wire), schema_ask())  # gpt-4o-mini, behind the same URL
    complete(small, schema_ask())

    assert formats(wire) == ["json_schema", "json_object", "json_schema", "json_object"]
    assert [r.body["model"] for r in wire.requests[2:]] == ["gpt-4o-mini", "small-local"]


def test_streaming_falls_back_too(wire: WireServer) -> None:
    wire.add(refused_with_422(), text_stream('{"facts": ', '["likes tea"]}'))
    response = build(stream(make(wire), schema_ask()))
    assert response.content == '{"facts": ["likes tea"]}'
    assert formats(wire) == ["json_schema", "json_object"]


def test_other_failures_are_no_refusal(wire: WireServer) -> None:
    # a server error that does not name the format, and a refusal of something else
    wire.add(server_error(), Reply({"detail": [{**LITERAL_ERROR, "loc": ["body", "n"]}]}, 400))
    model = make(wire, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(ModelServerError):
        complete(model, schema_ask())
    with pytest.raises(ModelHTTPError) as caught:
        complete(model, ask())  # no schema asked for: nothing to fall back from
    assert caught.value.status_code == 400
    assert formats(wire) == ["json_schema", None]
    assert (f"{wire.url}/v1", "gpt-4o-mini") not in OpenAIChat.json_modes


# -- failures ------------------------------------------------------------------------------


def rate_limited(retry_after: str = "0") -> Reply:
    return Reply(
        {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit"}},
        status=429,
        headers={"Retry-After": retry_after},
    )


def server_error() -> Reply:
    return Reply({"error": {"message": "The server had an error", "type": "server_error"}}, 500)


def test_rate_limit_is_retried(wire: WireServer) -> None:
    wire.add(rate_limited("0"), Reply(completion("after the wait")))

    response = complete(make(wire), ask())

    assert response.content == "after the wait"
    assert len(wire.requests) == 2
    assert wire.requests[0].body == wire.requests[1].body


def test_rate_limit_error_carries_retry_after(wire: WireServer) -> None:
    wire.add(rate_limited("7"))
    model = make(wire, retry=RetryPolicy(max_attempts=1))

    with pytest.raises(ModelRateLimitError) as caught:
        complete(model, ask())

    assert caught.value.status_code == 429
    assert caught.value.retry_after == 7.0
    assert caught.value.message == "Rate limit reached"
    assert caught.value.provider == "openai"
    assert len(wire.requests) == 1


def test_server_error_every_time(wire: WireServer) -> None:
    wire.add(server_error(), server_error(), server_error())

    with pytest.raises(ModelServerError) as caught:
        complete(make(wire), ask())

    assert caught.value.status_code == 500
    assert caught.value.message == "The server had an error"
    assert caught.value.retryable
    assert len(wire.requests) == 3


@pytest.mark.parametrize("call", [complete, stream])
def test_bad_request_is_not_retried(wire: WireServer, call: Callable[..., object]) -> None:
    message = "Invalid value for 'model': 'gpt-nope' does not exist."
    wire.add(Reply({"error": {"message": message, "type": "invalid_request_error"}}, 400))

    with pytest.raises(ModelHTTPError) as caught:
        call(make(wire), ask())

    assert type(caught.value) is ModelHTTPError
    assert caught.value.status_code == 400
    assert caught.value.message == message
    assert not caught.value.retryable
    assert str(caught.value) == f"openai answered HTTP 400: {message}"
    assert len(wire.requests) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error": "model 'llama9' not found"}, "model 'llama9' not found"),
        ({"object": "error", "message": "context too long", "code": 400}, "context too long"),
        ("plain text failure", "plain text failure"),
        ({"detail": "Not Found"}, '{"detail": "Not Found"}'),
    ],
)
def test_error_message_from_compatible_servers(
    wire: WireServer, body: object, message: str
) -> None:
    wire.add(Reply(body, 404))

    with pytest.raises(ModelHTTPError) as caught:
        complete(make(wire), ask())

    assert caught.value.status_code == 404
    assert caught.value.message == message


@pytest.mark.parametrize("call", [complete, stream])
def test_timeout(wire: WireServer, call: Callable[..., object]) -> None:
    late = completion("too late")
    wire.add(Reply(late, delay=0.6), Reply(late, delay=0.6))
    model = make(wire, timeout=0.15, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))

    with pytest.raises(ModelConnectionError, match="did not answer within") as caught:
        call(model, ask())

    assert wire.url in str(caught.value)
    assert "0.15 s" in str(caught.value)
    assert caught.value.retryable
    assert len(wire.requests) == 2


def test_credentials_in_base_url_stay_out_of_errors_and_logs(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    url = wire.url.replace("//", "//proxyuser:S3cretPass@") + "/v1?api-key=S3cretKey"
    late = Reply(completion("too late"), delay=0.6)
    wire.add(refused_with_422(), late, late)
    model = model_for(
        OpenAIChat, "gpt-4o-mini", url, timeout=0.15, retry=RetryPolicy(2, initial_delay=0.01)
    )

    with (
        caplog.at_level("WARNING", logger="noted.models"),
        pytest.raises(ModelConnectionError, match="did not answer within") as caught,
    ):
        complete(model, schema_ask())

    assert "proxyuser:***@127.0.0.1" in str(caught.value)
    assert "api-key=***" in str(caught.value)
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2  # the fallback to JSON mode, the retry
    shown = [str(caught.value), *logged, *(server for server, _ in OpenAIChat.json_modes)]
    assert not [text for text in shown if "S3cret" in text]


@pytest.mark.parametrize(
    ("call", "drip"),
    [(stream, Drip()), (complete, Drip(beat=b"\n", content_type="application/json"))],
    ids=["stream", "complete"],
)
def test_timeout_is_per_attempt_however_alive_the_connection_is_kept(
    wire: WireServer, call: Callable[..., object], drip: Drip
) -> None:
    # keep-alive bytes every 0.05 s for 4 s, as a proxy sends while it waits: no read
    # times out, and the answer never comes
    wire.add(drip, drip)
    model = make(wire, timeout=1, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))

    with pytest.raises(ModelConnectionError, match="did not answer within 1 s"):
        call(model, ask())

    assert len(wire.requests) == 2
    assert wire.hung_up.wait(2.0)  # the answers were given up, not left to end


def test_a_stream_that_goes_quiet_after_text_times_out(wire: WireServer) -> None:
    wire.add(Drip(events=[chunk({"content": "The answer is"})]), text_stream("never"))
    seen: list[ModelDelta] = []

    async def consume(model: OpenAIChat) -> None:
        async for delta in model.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelConnectionError, match="did not answer within 1 s"):
        run(make(wire, timeout=1), consume)
    assert seen == [TextDelta("The answer is")]
    assert len(wire.requests) == 1


def test_stream_error_before_first_delta_is_retried(wire: WireServer) -> None:
    wire.add(server_error(), text_stream("fine"))

    deltas = stream(make(wire), ask())

    assert deltas[0] == TextDelta("fine")
    assert len(wire.requests) == 2
    assert all(r.body["stream"] is True for r in wire.requests)


def test_error_event_inside_stream(wire: WireServer) -> None:
    wire.add(SSE([chunk({"content": "par"}), {"error": {"message": "model overloaded"}}]))
    seen: list[ModelDelta] = []

    async def consume(model: OpenAIChat) -> None:
        async for delta in model.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelError, match="model overloaded"):
        run(make(wire), consume)

    assert seen == [TextDelta("par")]
    assert len(wire.requests) == 1


# -- streams that end before the answer ----------------------------------------------------


def test_a_stream_cut_short_before_any_delta_is_retried(wire: WireServer) -> None:
    # no event at all, then a first chunk that brings no text: nothing yielded either time
    wire.add(SSE([]), SSE([chunk({"role": "assistant", "content": ""})]), text_stream("fine"))

    deltas = stream(make(wire), ask())

    assert build(deltas).content == "fine"
    assert len(wire.requests) == 3


def test_a_stream_cut_short_after_text_is_a_connection_error(wire: WireServer) -> None:
    wire.add(SSE([chunk({"content": "The answer is"})]), text_stream("never"))
    seen: list[ModelDelta] = []

    async def consume(model: OpenAIChat) -> None:
        async for delta in model.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelConnectionError, match="stream ended before the answer did"):
        run(make(wire), consume)

    assert seen == [TextDelta("The answer is")]
    assert len(wire.requests) == 1


def test_an_event_stream_that_ends_before_its_first_event_says_the_server_failed(
    wire: WireServer,
) -> None:
    # What the llama-cpp-python server sends for a prompt longer than its context window:
    # 200, its event stream's headers, then the end of the body (the error is in its log).
    empty = Raw(b"", content_type="text/event-stream; charset=utf-8")
    wire.add(empty, empty)
    model = make(wire, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))

    with pytest.raises(ModelConnectionError, match="ended before its first event") as caught:
        stream(model, ask())

    assert "context window" in str(caught.value)
    assert len(wire.requests) == 2  # retried, as a lost connection is


def test_a_server_that_dies_mid_answer_is_a_lost_connection_not_an_unreachable_one(
    wire: WireServer,
) -> None:
    # A llama-cpp-python server killed while it streamed: its chunks so far, then the
    # connection closes without the last chunk of the body.
    wire.add(Cut([chunk({"role": "assistant"}), chunk({"content": "Lisbon, the"})]))
    seen: list[ModelDelta] = []

    async def consume(model: OpenAIChat) -> None:
        async for delta in model.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelConnectionError) as caught:
        run(make(wire), consume)

    message = str(caught.value)
    assert message.startswith(f"lost the connection to openai at {wire.url}/v1: ")
    assert "RemoteProtocolError: peer closed connection" in message  # the transport's words
    assert seen == [TextDelta("Lisbon, the")]
    assert len(wire.requests) == 1


def test_done_without_a_finish_reason_ends_a_stream(wire: WireServer) -> None:
    wire.add(SSE([chunk({"content": "ok"}), "[DONE]"]))

    assert stream(make(wire), ask()) == [TextDelta("ok"), UsageDelta(None, None, model=MODEL)]


@pytest.mark.parametrize(
    ("reply", "media_type"),
    [
        (Raw(b"<html>Sign in to this network</html>"), "text/html"),
        (Reply(completion("in one piece")), "application/json"),
    ],
)
def test_an_answer_to_a_stream_that_is_no_event_stream_is_a_model_output_error(
    wire: WireServer, reply: Raw | Reply, media_type: str
) -> None:
    wire.add(reply, text_stream("never"))

    with pytest.raises(ModelOutputError, match=f"with {media_type}, not an event stream"):
        stream(make(wire), ask())
    assert len(wire.requests) == 1


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "text/html"])
def test_a_whole_answer_that_is_not_utf8_says_so(wire: WireServer, content_type: str) -> None:
    # Under a Content-Type other than JSON's, the SDK hands back the body's text, each bad
    # byte replaced: the answer was reported as one "without any choices".
    body = json.dumps(completion("Caf\u00e9 open"), ensure_ascii=False).encode()
    wire.add(Raw(body.replace(b"Caf", b"Caf\xff"), content_type=content_type))

    with pytest.raises(
        ModelOutputError,
        match=r"openai sent an answer that is not UTF-8 text \(byte 0xff: invalid start byte\)",
    ):
        complete(make(wire), ask())
    assert len(wire.requests) == 1


def test_an_error_event_with_an_http_status_counts_as_that_status(wire: WireServer) -> None:
    overloaded = {
        "error": {
            "object": "error",
            "message": "engine overloaded",
            "type": "ServiceUnavailable",
            "code": 503,
        }
    }
    wire.add(SSE([overloaded]), text_stream("fine"), SSE([overloaded]))

    assert build(stream(make(wire), ask())).content == "fine"  # retried as a 503 is
    with pytest.raises(ModelServerError) as caught:
        stream(make(wire, retry=RetryPolicy(max_attempts=1)), ask())

    assert (caught.value.status_code, caught.value.message) == (503, "engine overloaded")
    assert len(wire.requests) == 3


# -- refusals ------------------------------------------------------------------------------


def test_a_refusal_is_the_answer(wire: WireServer) -> None:
    refusal = "I'm sorry, I can't help with that."
    body = completion(None)
    body["choices"][0]["message"]["refusal"] = refusal
    refused = SSE(
        [
            chunk({"role": "assistant", "content": None, "refusal": ""}),
            chunk({"refusal": "I'm sorry, "}),
            chunk({"refusal": "I can't help with that."}),
            chunk({}, finish_reason="stop"),
            "[DONE]",
        ]
    )
    wire.add(Reply(body), refused)
    model = make(wire)

    whole = complete(model, ask())
    deltas = stream(model, ask())

    assert (whole.content, whole.finish_reason) == (refusal, "refusal")
    assert deltas == [
        TextDelta("I'm sorry, "),
        TextDelta("I can't help with that."),
        UsageDelta(None, None, "refusal", MODEL),  # a stream without a usage chunk
    ]


# -- sync methods --------------------------------------------------------------------------


def test_sync_complete_and_stream(wire: WireServer) -> None:
    wire.add(Reply(completion("sync answer")), text_stream("a", "b"))
    model = make(wire)
    try:
        response = model.complete(ask())
        deltas = list(model.stream(ask()))
    finally:
        model.close()

    assert response.content == "sync answer"
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["a", "b"]
    assert isinstance(deltas[-1], UsageDelta)
    assert deltas[-1].input_tokens == 9
    assert len(wire.requests) == 2


# -- Ollama --------------------------------------------------------------------------------


def test_ollama(wire: WireServer) -> None:
    wire.add(Reply(completion("from ollama")))
    model = Ollama("llama3.2", host=wire.url, retry=FAST)

    response = complete(model, ask())

    assert model.provider == "ollama"
    assert model.base_url == wire.url + "/v1"
    assert response.content == "from ollama"
    [sent] = wire.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "llama3.2"
    assert sent.headers["authorization"].startswith("Bearer ")


def test_ollama_errors_name_the_provider(wire: WireServer) -> None:
    wire.add(Reply({"error": {"message": 'model "nope" not found'}}, 404))
    model = Ollama("nope", host=wire.url, retry=FAST)

    with pytest.raises(ModelHTTPError) as caught:
        complete(model, ask())

    assert caught.value.provider == "ollama"
    assert str(caught.value) == 'ollama answered HTTP 404: model "nope" not found'


@pytest.mark.parametrize(
    ("host", "base_url"),
    [
        (None, "http://localhost:11434/v1"),
        ("localhost", "http://localhost:11434/v1"),
        ("0.0.0.0:8080", "http://0.0.0.0:8080/v1"),
        ("https://ollama.example.com/", "https://ollama.example.com/v1"),
        ("http://gpu-box:11434/v1", "http://gpu-box:11434/v1"),
    ],
)
def test_ollama_host(monkeypatch: pytest.MonkeyPatch, host: str | None, base_url: str) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert Ollama(host=host).base_url == base_url


def test_ollama_host_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "gpu-box:9999")
    assert Ollama().base_url == "http://gpu-box:9999/v1"
    assert Ollama(host="http://other:1").base_url == "http://other:1/v1"


@pytest.mark.parametrize("host", ["ftp://x", "http://", "http://x:port"])
def test_ollama_bad_host(host: str) -> None:
    with pytest.raises(UserError, match="host must be a URL"):
        Ollama(host=host)


# -- set-up problems -----------------------------------------------------------------------


def test_api_key_from_environment(wire: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    wire.add(Reply(completion()))

    complete(OpenAIChat(base_url=wire.url + "/v1", retry=FAST), ask())

    assert wire.requests[0].headers["authorization"] == "Bearer env-key"


class TestSetup(SetupChecks):
    model_class = OpenAIChat
    module = "noted.models.openai"
    sdk_module = sdk_package = extra = "openai"
    api_path = "/v1"
    unreachable = "could not reach openai at {url}"


def test_repr_and_defaults() -> None:
    model = OpenAIChat(api_key="k")
    assert model.id == "gpt-4o-mini"
    assert model.provider == "openai"
    assert repr(model) == "OpenAIChat(id='gpt-4o-mini')"
    assert Ollama().id == "llama3.2"


def test_a_stream_line_that_is_not_json_is_a_model_output_error(wire: WireServer) -> None:
    wire.add(SSE([chunk({"content": "Hel"}), "{not json", chunk({}, finish_reason="stop")]))

    with pytest.raises(ModelOutputError, match="sent a line of its answer that is not JSON"):
        stream(make(wire), ask())


# -- an answer cut off at its token limit --------------------------------------------------------


def test_an_answer_cut_off_at_its_token_limit_ends_the_run_so(
    wire: WireServer, tmp_path: Path
) -> None:
    # As the llama-cpp-python server sent them for max_tokens=8: a whole answer with the
    # finish reason "length", and a stream whose last chunk has it (and no usage chunk).
    cut = completion("As the sun sets over the city's", finish_reason="length")
    pieces = ["Port", "o", ",", " my", " heart", " and", " soul", ",\n"]
    cut_stream = SSE(
        [
            chunk({"role": "assistant"}),
            *(chunk({"content": piece}) for piece in pieces),
            chunk({}, finish_reason="length"),
            "[DONE]",
        ]
    )
    wire.script = [Reply(cut), cut_stream, Reply(completion("Done."))]
    db = SqliteDb(tmp_path / "s.db")
    model = make(wire, max_tokens=8)
    agent = Agent(model, db=db, session_id="s", user_id="ava")
    try:
        whole = agent.run("Write a long poem about Lisbon.")
        events: list[RunEvent] = list(agent.run("Write a long poem about Porto.", stream=True))
        ended = agent.run("Thanks!")
    finally:
        model.close()
    streamed = events[-1]
    assert isinstance(streamed, RunCompleted)
    assert whole.content == "As the sun sets over the city's"
    assert streamed.result.content == "Porto, my heart and soul,\n"
    assert [whole.stop_reason, streamed.result.stop_reason] == ["max_tokens", "max_tokens"]
    assert ended.stop_reason == "end"
    runs = db.get_runs("s", "ava")
    assert [r.stop_reason for r in runs] == ["max_tokens", "max_tokens", "end"]
    assert [r.status for r in runs] == ["completed"] * 3


# -- text that is not valid Unicode ------------------------------------------------------------


def test_surrogates_in_an_answer_become_text_every_store_can_keep(
    wire: WireServer, tmp_path: Path
) -> None:
    # An emoji sent as two escapes in two chunks is one character; a lone half is U+FFFD.
    # Either would fail to be written as UTF-8: the run would be lost.
    wire.script = [text_stream("Hi \ud83d", "\ude00!"), Reply(completion("Bye \ud83d"))]
    db = SqliteDb(tmp_path / "s.db")
    model = make(wire)
    agent = Agent(model, db=db, session_id="s", user_id="ava")
    try:
        events: list[RunEvent] = list(agent.run("Hello", stream=True))
        streamed = "".join(e.text for e in events if isinstance(e, ContentDelta))
        assert streamed == "Hi \U0001f600!"
        assert agent.run("Bye").content == "Bye \ufffd"
    finally:
        model.close()
    runs = db.get_runs("s", "ava")
    assert [r.content for r in runs] == ["Hi \U0001f600!", "Bye \ufffd"]
    assert [r.status for r in runs] == ["completed", "completed"]


# -- a model let go ------------------------------------------------------------------------------


def test_a_model_let_go_after_its_loop_ended_leaves_nothing_to_run(wire: WireServer) -> None:
    # Its client was closed when that loop ended: none is left for the garbage collector
    # to have closed on the loop running now, where the close would fail.
    from model_helpers import tasks_left_when_let_go

    wire.add(Reply(completion("one")))
    assert tasks_left_when_let_go(lambda: make(wire)) == set()
    assert len(wire.requests) == 1
