"""Gemini against a local server that speaks the Gemini API wire format."""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import time
import types
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any, cast

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
)
from noted import Agent
from noted.agent.events import RunCompleted
from noted.errors import (
    ModelConnectionError,
    ModelHTTPError,
    ModelOutputError,
    ModelRateLimitError,
    ModelServerError,
    UserError,
)
from noted.models.base import RetryPolicy
from noted.models.google import Gemini
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
from wire import SSE, Drip, Raw, Recorded, Reply, WireServer

MODEL = "gemini-2.5-flash"
MODEL_VERSION = "gemini-2.5-flash-001"


def make(wire: WireServer, **kwargs: Any) -> Gemini:
    return model_for(Gemini, MODEL, wire.url, **kwargs)


def answer(
    parts: list[dict[str, Any]],
    *,
    finish_reason: str | None = "STOP",
    prompt_tokens: int = 11,
    output_tokens: int = 6,
) -> dict[str, Any]:
    """A GenerateContentResponse (a whole answer, or one chunk of a stream)."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    return {
        "candidates": [candidate],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
        "modelVersion": MODEL_VERSION,
        "responseId": "mK8fZ5-sH4qnz7IP",
    }


def function_call(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    call: dict[str, Any] = {"name": name, "args": args}
    part: dict[str, Any] = {"functionCall": call}
    if "id" in extra:
        call["id"] = extra["id"]
    if "signature" in extra:
        part["thoughtSignature"] = base64.b64encode(extra["signature"]).decode()
    return part


def error_body(code: int, status: str, text: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": text, "status": status}}


def camel(data: dict[str, Any], snake: str) -> Any:
    """A field as the SDK serialised it (the API accepts both spellings)."""
    head, *rest = snake.split("_")
    return data.get(head + "".join(word.title() for word in rest), data.get(snake))


def config(sent: Recorded) -> dict[str, Any]:
    return sent.body.get("generationConfig") or {}


# -- plain text -------------------------------------------------------------------------------


def test_plain_text_request_and_response(wire: WireServer) -> None:
    wire.add(Reply(answer([{"text": "Hi "}, {"text": "there!"}])))
    model = make(wire, temperature=0.3, max_tokens=256)
    request = ModelRequest(messages=CHAT_WITH_TWO_SYSTEM_MESSAGES)

    response = complete(model, request)

    assert response.content == "Hi there!"
    assert response.tool_calls == []
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 6)
    assert response.model == MODEL_VERSION
    assert response.finish_reason == "STOP"
    [sent] = wire.requests
    assert sent.method == "POST"
    assert sent.path.endswith(f"/models/{MODEL}:generateContent")
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert sent.body["contents"] == [
        {"role": "user", "parts": [{"text": "Hello"}]},
        {"role": "model", "parts": [{"text": "Hi."}]},
        {"role": "user", "parts": [{"text": "How are you?"}]},
    ]
    assert sent.body["systemInstruction"]["parts"] == [
        {"text": "You are terse.\n\nAnswer in English."}
    ]
    assert config(sent)["maxOutputTokens"] == 256
    assert config(sent)["temperature"] == 0.3
    assert "tools" not in sent.body


def test_a_requests_max_tokens_lowers_the_models(wire: WireServer) -> None:
    wire.add(Reply(answer([{"text": "ok"}])))
    wire.add(Reply(answer([{"text": "ok"}])))
    complete(make(wire, max_tokens=256), ask(max_tokens=64))
    complete(make(wire), ask(max_tokens=64))
    assert [config(r)["maxOutputTokens"] for r in wire.requests] == [64, 64]


def test_defaults(wire: WireServer) -> None:
    wire.add(Reply(answer([{"text": "ok"}])))
    model = Gemini(api_key="test-key", base_url=wire.url, retry=FAST)
    assert model.provider == "google"
    complete(model, ask())
    [sent] = wire.requests
    assert sent.path.endswith(f"/models/{model.id}:generateContent")
    assert "maxOutputTokens" not in config(sent)
    assert "temperature" not in config(sent)
    assert "systemInstruction" not in sent.body


def test_thinking_tokens_count_as_output(wire: WireServer) -> None:
    body = answer([{"text": "thought it through"}])
    body["usageMetadata"]["thoughtsTokenCount"] = 30
    wire.add(Reply(body))
    assert complete(make(wire), ask()).usage.output_tokens == 6 + 30


def test_cached_and_thinking_tokens_are_counted_whole_and_streamed(wire: WireServer) -> None:
    def with_parts(body: dict[str, Any], thoughts: int) -> dict[str, Any]:
        body["usageMetadata"].update(cachedContentTokenCount=2048, thoughtsTokenCount=thoughts)
        return body

    whole = with_parts(answer([{"text": "ok"}], prompt_tokens=2100, output_tokens=6), 30)
    # every chunk repeats the running totals: the last ones count
    chunks = [
        with_parts(answer([{"text": "o"}], finish_reason=None, prompt_tokens=2100), 30),
        with_parts(answer([{"text": "k"}], prompt_tokens=2100, output_tokens=6), 30),
    ]
    wire.add(Reply(whole), SSE(chunks))
    model = make(wire)

    response = complete(model, ask())
    streamed = build(stream(model, ask()))

    # the output holds the thinking, as OpenAI's completion tokens hold the reasoning
    expected = Usage(2100, 6 + 30, cache_read_tokens=2048, reasoning_tokens=30)
    assert response.usage == streamed.usage == expected


def test_stream_text(wire: WireServer) -> None:
    wire.add(
        SSE(
            [
                answer([{"text": "Hel"}], finish_reason=None, output_tokens=1),
                answer([{"text": "lo"}], finish_reason=None, output_tokens=2),
                answer([{"text": " world"}], output_tokens=3),
            ]
        )
    )
    deltas = stream(
        make(wire), ModelRequest([Message("system", "Be kind."), Message("user", "Hi")])
    )

    assert deltas == [
        TextDelta("Hel"),
        TextDelta("lo"),
        TextDelta(" world"),
        UsageDelta(input_tokens=11, output_tokens=3, finish_reason="STOP", model=MODEL_VERSION),
    ]
    [sent] = wire.requests
    assert sent.path.endswith(f"/models/{MODEL}:streamGenerateContent")
    assert sent.query["alt"] == ["sse"]
    assert sent.headers["x-goog-api-key"] == "test-key"
    assert sent.body["systemInstruction"]["parts"] == [{"text": "Be kind."}]
    assert sent.body["contents"] == [{"role": "user", "parts": [{"text": "Hi"}]}]


def test_a_blocked_prompt_is_the_finish_reason_of_an_answer_and_of_a_stream(
    wire: WireServer,
) -> None:
    blocked = {
        "promptFeedback": {"blockReason": "SAFETY"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        "modelVersion": MODEL_VERSION,
    }
    wire.add(Reply(blocked), SSE([blocked]))
    model = make(wire)

    response = complete(model, ask())
    deltas = stream(model, ask())

    assert (response.content, response.finish_reason) == (None, "SAFETY")
    assert deltas == [UsageDelta(5, 0, finish_reason="SAFETY", model=MODEL_VERSION)]


def test_an_answer_withheld_by_a_filter_ends_the_run_as_refused(wire: WireServer) -> None:
    """An answer Gemini stops for safety or recitation, or a prompt it blocks, is no
    answer that ended: the run says so (its stop reason ``refused``), streamed or not."""
    safety = {
        "candidates": [{"finishReason": "SAFETY", "index": 0}],
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        "modelVersion": MODEL_VERSION,
    }
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5},
        "modelVersion": MODEL_VERSION,
    }
    recitation = [
        answer([{"text": "It goes: "}], finish_reason=None),
        answer([{"text": ""}], finish_reason="RECITATION"),
    ]
    wire.add(Reply(safety), Reply(blocked), SSE(recitation), Reply(answer([{"text": "Hi!"}])))
    model = make(wire)
    agent = Agent(model)
    try:
        whole = [agent.run("Tell me.") for _ in range(2)]
        [done] = [e for e in agent.run("Sing it.", stream=True) if isinstance(e, RunCompleted)]
        ended = agent.run("Hello")
    finally:
        model.close()  # its connections on noted's background loop

    results = [*whole, done.result, ended]
    assert [r.content for r in results] == [None, None, "It goes: ", "Hi!"]
    assert [r.stop_reason for r in results] == ["refused", "refused", "refused", "end"]


def held_stream() -> SSE:
    """A stream that stays open after its chunks, until the client hangs up."""
    chunks = [answer([{"text": word}], finish_reason=None) for word in ("one ", "two ")]
    return SSE(chunks, hold=True)


def test_a_stream_closed_early_closes_its_http_response(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    wire.add(held_stream())

    async def first(model: Gemini) -> tuple[ModelDelta, bool]:
        deltas = cast(AsyncGenerator[ModelDelta, None], model.astream(ask()))
        async with aclosing(deltas):
            delta = await anext(deltas)
        # waited for here, without letting the loop run: the server sees the connection
        # end only if the HTTP response was closed before aclose() returned
        return delta, wire.hung_up.wait(5.0)

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert run(make(wire), first) == (TextDelta("one "), True)
    assert caplog.records == []  # nothing failed to close when the loop ended


def test_a_sync_stream_closed_early_closes_its_http_response(wire: WireServer) -> None:
    wire.add(held_stream())
    model = make(wire)
    try:
        deltas = model.stream(ask())
        assert next(deltas) == TextDelta("one ")
        deltas.close()  # type: ignore[attr-defined]
        assert wire.hung_up.wait(5.0)
    finally:
        model.close()


# -- tools --------------------------------------------------------------------------------------


def test_tool_calls(wire: WireServer) -> None:
    wire.add(
        Reply(
            answer(
                [
                    {"text": "Let me check both."},
                    function_call("get_weather", {"city": "Paris"}),
                    function_call("get_time", {"city": "Oslo"}),
                ]
            )
        )
    )
    response = complete(make(wire), ask("Weather in Paris, time in Oslo?", tools=[WEATHER, TIME]))

    assert response.content == "Let me check both."
    assert [(c.name, c.arguments) for c in response.tool_calls] == [
        ("get_weather", {"city": "Paris"}),
        ("get_time", {"city": "Oslo"}),
    ]
    ids = [c.id for c in response.tool_calls]
    assert all(ids) and len(set(ids)) == 2
    [tool] = wire.requests[0].body["tools"]
    declarations = camel(tool, "function_declarations")
    assert [d["name"] for d in declarations] == ["get_weather", "get_time"]
    assert declarations[0]["description"] == "The current weather in a city."
    assert camel(declarations[0], "parameters_json_schema") == dict(WEATHER.parameters)
    assert camel(declarations[1], "parameters_json_schema") == dict(TIME.parameters)


def test_stream_tool_calls(wire: WireServer) -> None:
    wire.add(
        SSE(
            [
                answer([{"text": "Checking."}], finish_reason=None),
                answer([function_call("get_weather", {"city": "Paris"})], finish_reason=None),
                answer([function_call("get_time", {"city": "Oslo"})], output_tokens=20),
            ]
        )
    )
    deltas = stream(make(wire), ask(tools=[WEATHER, TIME]))

    assert deltas[0] == TextDelta("Checking.")
    first, second = deltas[1], deltas[2]
    assert isinstance(first, ToolCallDelta) and isinstance(second, ToolCallDelta)
    assert (first.index, first.name, json.loads(first.arguments)) == (
        0,
        "get_weather",
        {"city": "Paris"},
    )
    assert (second.index, second.name, json.loads(second.arguments)) == (
        1,
        "get_time",
        {"city": "Oslo"},
    )
    assert first.id and second.id and first.id != second.id
    assert deltas[3] == UsageDelta(11, 20, finish_reason="STOP", model=MODEL_VERSION)
    response = build(deltas)
    assert response.tool_calls == [
        ToolCall("get_weather", {"city": "Paris"}, id=first.id),
        ToolCall("get_time", {"city": "Oslo"}, id=second.id),
    ]


def test_tool_round_trip_is_serialised(wire: WireServer) -> None:
    wire.add(Reply(answer([{"text": "Sunny in Paris, 14:00 in Oslo."}])))
    calls = [
        ToolCall("get_weather", {"city": "Paris"}, id="call_1"),
        ToolCall("get_time", {"city": "Oslo"}, id="call_2"),
    ]
    request = ModelRequest(
        messages=[
            Message("system", "Use tools."),
            Message("user", "Weather in Paris, time in Oslo?"),
            Message("assistant", "Let me check.", tool_calls=calls),
            Message("tool", "sunny", tool_call_id="call_1", name="get_weather"),
            Message("tool", "14:00", tool_call_id="call_2"),  # name found from the call
            Message("user", "Thanks"),
        ],
        tools=[WEATHER, TIME],
    )

    response = complete(make(wire), request)

    assert response.content == "Sunny in Paris, 14:00 in Oslo."
    assert wire.requests[0].body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris, time in Oslo?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "get_time", "args": {"city": "Oslo"}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}},
                {"functionResponse": {"name": "get_time", "response": {"result": "14:00"}}},
            ],
        },
        {"role": "user", "parts": [{"text": "Thanks"}]},
    ]


def test_a_call_with_broken_arguments_goes_back_with_none(wire: WireServer) -> None:
    wire.add(Reply(answer([{"text": "Which city?"}])))
    broken = ToolCall("get_weather", id="call_1", invalid_arguments='["Paris"]')
    request = ModelRequest(
        messages=[
            Message("user", "Weather?"),
            Message("assistant", None, tool_calls=[broken]),
            Message("tool", "Error: the arguments were no object", tool_call_id="call_1"),
        ],
        tools=[WEATHER],
    )

    complete(make(wire), request)

    [call] = wire.requests[0].body["contents"][1]["parts"]
    assert call == {"functionCall": {"name": "get_weather", "args": {}}}


def test_gemini_ids_and_thought_signatures_go_back(wire: WireServer) -> None:
    wire.add(
        Reply(
            answer([function_call("get_weather", {"city": "Paris"}, id="fc-7", signature=b"sig-1")])
        ),
        Reply(answer([{"text": "Sunny."}])),
    )
    model = make(wire)

    async def round_trip(m: Gemini) -> ModelResponse:
        first = await m.acomplete(ask("Weather?", tools=[WEATHER]))
        [call] = first.tool_calls
        assert call.id == "fc-7"
        messages = [
            Message("user", "Weather?"),
            first.to_message(),
            Message("tool", "sunny", tool_call_id=call.id, name=call.name),
        ]
        return await m.acomplete(ModelRequest(messages, tools=[WEATHER]))

    assert run(model, round_trip).content == "Sunny."
    model_turn, results = wire.requests[1].body["contents"][1:]
    [call_part] = model_turn["parts"]
    assert call_part["functionCall"] == {
        "name": "get_weather",
        "args": {"city": "Paris"},
        "id": "fc-7",
    }
    assert base64.b64decode(call_part["thoughtSignature"]) == b"sig-1"
    assert results["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}, "id": "fc-7"}}
    ]


def test_tool_result_without_a_known_name(wire: WireServer) -> None:
    request = ModelRequest([Message("user", "Hi"), Message("tool", "x", tool_call_id="call_9")])
    with pytest.raises(UserError, match="call_9"):
        complete(make(wire), request)
    assert wire.requests == []


# -- structured output ----------------------------------------------------------------------------


def test_response_schema(wire: WireServer) -> None:
    wire.add(Reply(answer([{"text": '{"name": "Ava", "age": 31}'}])))
    response = complete(make(wire), ask("Who is Ava?", response_schema=PERSON))

    assert json.loads(response.content or "") == {"name": "Ava", "age": 31}
    sent = config(wire.requests[0])
    assert sent["responseMimeType"] == "application/json"
    assert sent["responseJsonSchema"] == PERSON


def test_response_schema_streams(wire: WireServer) -> None:
    wire.add(
        SSE(
            [
                answer([{"text": '{"name": "A'}], finish_reason=None),
                answer([{"text": 'va", "age": 31}'}]),
            ]
        )
    )
    response = build(stream(make(wire), ask(response_schema=PERSON)))
    assert json.loads(response.content or "") == {"name": "Ava", "age": 31}
    assert config(wire.requests[0])["responseJsonSchema"] == PERSON


# -- failures -------------------------------------------------------------------------------------


def test_rate_limit_is_retried_after_retry_after(wire: WireServer) -> None:
    wire.add(
        Reply(
            error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
            status=429,
            headers={"Retry-After": "1"},
        ),
        Reply(answer([{"text": "ok"}])),
    )
    assert complete(make(wire), ask()).content == "ok"
    assert len(wire.requests) == 2


def test_rate_limit_error_carries_message_and_retry_after(wire: WireServer) -> None:
    wire.add(
        Reply(
            error_body(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted"),
            status=429,
            headers={"Retry-After": "7"},
        )
    )
    with pytest.raises(ModelRateLimitError) as caught:
        complete(make(wire, retry=RetryPolicy(max_attempts=1)), ask())
    assert caught.value.status_code == 429
    assert caught.value.message == "Resource has been exhausted"
    assert caught.value.retry_after == 7.0
    assert len(wire.requests) == 1


def quota_exceeded(delay: str) -> dict[str, Any]:
    """The Gemini API's 429 for a quota: the wait is in a RetryInfo detail, not a header."""
    body = error_body(429, "RESOURCE_EXHAUSTED", "You exceeded your current quota.")
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [{"quotaMetric": "generate_content_free_tier_requests"}],
        },
        {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
    ]
    return body


@pytest.mark.parametrize("streamed", [False, True])
def test_a_quotas_retry_delay_is_the_errors_retry_after(wire: WireServer, streamed: bool) -> None:
    wire.add(Reply(quota_exceeded("37s"), status=429), Reply(quota_exceeded("2.5s"), status=429))
    model = make(wire, retry=RetryPolicy(max_attempts=1))
    request = ask()
    call = (lambda: stream(model, request)) if streamed else (lambda: complete(model, request))
    delays = []
    for _ in range(2):
        with pytest.raises(ModelRateLimitError) as caught:
            call()
        delays.append(caught.value.retry_after)
    assert delays == [37.0, 2.5]
    assert caught.value.message == "You exceeded your current quota."


def test_server_error_every_time_gives_up_after_max_attempts(wire: WireServer) -> None:
    failing = Reply(error_body(500, "INTERNAL", "An internal error has occurred."), status=500)
    wire.add(failing, failing, failing, Reply(answer([{"text": "too late"}])))
    with pytest.raises(ModelServerError) as caught:
        complete(make(wire), ask())
    assert caught.value.status_code == 500
    assert caught.value.message == "An internal error has occurred."
    assert caught.value.provider == "google"
    assert len(wire.requests) == 3


def test_server_error_on_stream_is_retried(wire: WireServer) -> None:
    wire.add(
        Reply(error_body(503, "UNAVAILABLE", "The model is overloaded."), status=503),
        SSE([answer([{"text": "ok"}])]),
    )
    assert build(stream(make(wire), ask())).content == "ok"
    assert len(wire.requests) == 2


def test_error_chunk_before_any_delta_is_retried(wire: WireServer) -> None:
    wire.add(
        SSE([error_body(503, "UNAVAILABLE", "The model is overloaded.")]),
        SSE([answer([{"text": "fine"}])]),
    )
    assert build(stream(make(wire), ask())).content == "fine"
    assert len(wire.requests) == 2


def _readers() -> list[types.AsyncGeneratorType[object, object]]:
    """The HTTP readers (the SDK's, httpx's, httpcore's async generators) not finished."""
    return [
        o
        for o in gc.get_objects()
        if isinstance(o, types.AsyncGeneratorType)
        and o.ag_frame is not None
        and any(lib in o.ag_code.co_filename for lib in ("httpx", "httpcore", "genai"))
    ]


def test_an_error_chunks_http_readers_are_closed_on_the_streams_loop(wire: WireServer) -> None:
    # The SDK's response keeps its reader in a reference cycle: left to the garbage
    # collector, the chain of readers was finalized at any moment, on any thread, and a
    # half-closed one then failed its close ("async generator already executing").
    wire.add(
        SSE([error_body(503, "UNAVAILABLE", "The model is overloaded.")]),
        SSE([answer([{"text": "fine"}])]),
    )
    model = make(wire)

    async def streamed() -> list[str]:
        deltas = [d async for d in model.astream(ask())]
        assert build(deltas).content == "fine"
        # the closes each close schedules, on this loop: waited for, up to a bound
        deadline = time.monotonic() + 5
        while (left := [r for r in _readers() if id(r) not in earlier]) and (
            time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        await model.aclose()
        return [r.ag_code.co_qualname for r in left]

    collecting = gc.isenabled()
    gc.collect()  # the garbage of earlier tests (readers among it) is gone first
    kept = _readers()  # any still alive are not this stream's
    earlier = {id(r) for r in kept}
    gc.disable()  # only what the stream itself closes
    try:
        assert asyncio.run(streamed()) == []
    finally:
        if collecting:
            gc.enable()


def test_bad_request_is_not_retried(wire: WireServer) -> None:
    wire.add(
        Reply(
            error_body(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key."),
            status=400,
        ),
        Reply(answer([{"text": "never"}])),
    )
    with pytest.raises(ModelHTTPError) as caught:
        complete(make(wire), ask())
    assert type(caught.value) is ModelHTTPError
    assert caught.value.status_code == 400
    assert caught.value.message == "API key not valid. Please pass a valid API key."
    assert len(wire.requests) == 1


def test_timeout_is_a_connection_error(wire: WireServer) -> None:
    slow = Reply(answer([{"text": "late"}]), delay=0.5)
    wire.add(slow, slow, slow)
    with pytest.raises(ModelConnectionError, match="within 0.1 s"):
        complete(make(wire, timeout=0.1), ask())
    assert len(wire.requests) == 3


def test_a_stream_kept_alive_without_chunks_times_out(wire: WireServer) -> None:
    wire.add(Drip(beat=b"\n"), SSE([answer([{"text": "fine"}])]))  # blank lines, then an answer

    assert build(stream(make(wire, timeout=1), ask())).content == "fine"
    assert len(wire.requests) == 2
    assert wire.hung_up.wait(2.0)  # the first stream was given up, not left to end


def test_a_stream_that_goes_quiet_after_text_times_out(wire: WireServer) -> None:
    first = answer([{"text": "The answer is"}], finish_reason=None)
    wire.add(Drip(events=[first], beat=b"\n"), SSE([answer([{"text": "never"}])]))

    with pytest.raises(ModelConnectionError, match="google did not answer within 1 s"):
        stream(make(wire, timeout=1), ask())
    assert len(wire.requests) == 1


def test_a_stream_line_that_is_not_json_is_a_model_output_error(wire: WireServer) -> None:
    wire.add(SSE([answer([{"text": "Hel"}], finish_reason=None), "not json at all"]))

    with pytest.raises(ModelOutputError, match="not JSON"):
        stream(make(wire), ask())
    assert len(wire.requests) == 1


def test_a_web_page_for_an_answer_is_a_model_output_error(wire: WireServer) -> None:
    wire.add(Raw(b"<html>Sign in to this network</html>"))

    with pytest.raises(ModelOutputError, match="not JSON"):
        complete(make(wire), ask())
    assert len(wire.requests) == 1


@pytest.mark.parametrize("content_type", ["application/json", "text/html"])
def test_a_whole_answer_that_is_not_utf8_says_so(wire: WireServer, content_type: str) -> None:
    # The SDK reads the body with each bad byte replaced: the answer came back as text
    # with U+FFFD in it, as if the model had written that.
    body = json.dumps(answer([{"text": "Caf\u00e9 open"}]), ensure_ascii=False).encode()
    wire.add(Raw(body.replace(b"Caf", b"Caf\xff"), content_type=content_type))

    with pytest.raises(
        ModelOutputError,
        match=r"google sent an answer that is not UTF-8 text \(byte 0xff: invalid start byte\)",
    ):
        complete(make(wire), ask())
    assert len(wire.requests) == 1


# -- streams that end before the answer ---------------------------------------------------------


def test_a_stream_cut_short_before_any_delta_is_retried(wire: WireServer) -> None:
    # no chunk at all, then one with usage and no text
    usage_only = {"usageMetadata": {"promptTokenCount": 5}, "modelVersion": MODEL_VERSION}
    wire.add(SSE([]), SSE([usage_only]), SSE([answer([{"text": "fine"}])]))

    assert build(stream(make(wire), ask())).content == "fine"
    assert len(wire.requests) == 3


def test_a_stream_cut_short_after_text_is_a_connection_error(wire: WireServer) -> None:
    wire.add(
        SSE([answer([{"text": "The answer is"}], finish_reason=None)]),
        SSE([answer([{"text": "never"}])]),
    )
    seen: list[ModelDelta] = []

    async def collect(m: Gemini) -> None:
        async for delta in m.astream(ask()):
            seen.append(delta)

    with pytest.raises(ModelConnectionError, match="stream ended before the answer did"):
        run(make(wire), collect)
    assert seen == [TextDelta("The answer is")]
    assert len(wire.requests) == 1


# -- sync, configuration ------------------------------------------------------------------------


def test_sync_complete_and_stream(wire: WireServer) -> None:
    wire.add(
        Reply(answer([{"text": "Hi sync"}])),
        SSE([answer([{"text": "Hi "}], finish_reason=None), answer([{"text": "stream"}])]),
    )
    model = make(wire)
    try:
        assert model.complete(ask()).content == "Hi sync"
        deltas = list(model.stream(ask()))
    finally:
        model.close()
    assert [d.text for d in deltas if isinstance(d, TextDelta)] == ["Hi ", "stream"]
    assert len(wire.requests) == 2


@pytest.mark.parametrize("variable", ["GOOGLE_API_KEY", "GEMINI_API_KEY"])
def test_api_key_from_environment(
    wire: WireServer, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.setenv(variable, "env-key")
    wire.add(Reply(answer([{"text": "ok"}])))
    complete(Gemini(MODEL, base_url=wire.url, retry=FAST), ask())
    assert wire.requests[0].headers["x-goog-api-key"] == "env-key"


class TestSetup(SetupChecks):
    model_class = Gemini
    module = "noted.models.google"
    sdk_module = "google.genai"
    sdk_package = "google-genai"
    extra = "google"
    unreachable = "the connection to google failed"
