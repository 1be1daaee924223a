"""Tracing next to a provider SDK's own OpenInference instrumentor (the OpenAI, Anthropic and
Google GenAI SDKs' instrumentors, ``openinference-instrumentation-<sdk>``): a model call that
noted makes shows once, as noted's LLM span, with the SDK's span suppressed inside it,
streamed or not; a call made with the SDK outside noted still shows as the SDK's span.

The models are noted's ``OpenAIChat``, ``Claude`` and ``Gemini`` on the real SDKs, talking
to a local server that speaks each provider's wire format (tests/wire.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from openinference.instrumentation.anthropic import AnthropicInstrumentor
from openinference.instrumentation.google_genai import GoogleGenAIInstrumentor
from openinference.instrumentation.openai import OpenAIInstrumentor

import test_models_anthropic as claude_wire
import test_models_google as gemini_wire
import test_models_openai as openai_wire
from noted import Agent
from noted import tracing as noted_tracing
from noted.agent import ContentDelta
from noted.models import Claude, Gemini, OpenAIChat
from noted.models.base import BaseChatModel
from traces import Traces, attrs
from wire import SSE, Reply, WireServer

NOTED = "noted"  # the instrumentation scope of noted's spans


@dataclass(frozen=True)
class Provider:
    """One provider SDK: its instrumentor, noted's model on it, and its wire format."""

    name: str
    instrumentor: Callable[[], Any]
    model: Callable[[str], BaseChatModel]  # aimed at the local server's URL
    reply: Callable[[str], Reply]
    stream: Callable[[list[str]], SSE]


def gemini_stream(pieces: list[str]) -> SSE:
    *first, last = pieces
    chunks = [gemini_wire.answer([{"text": p}], finish_reason=None) for p in first]
    return SSE([*chunks, gemini_wire.answer([{"text": last}])])


PROVIDERS = [
    Provider(
        "openai",
        OpenAIInstrumentor,
        lambda url: OpenAIChat("gpt-4o-mini", base_url=url + "/v1", api_key="test-key"),
        lambda text: Reply(openai_wire.completion(text)),
        lambda pieces: openai_wire.text_stream(*pieces),
    ),
    Provider(
        "anthropic",
        AnthropicInstrumentor,
        lambda url: Claude(claude_wire.MODEL, base_url=url, api_key="test-key"),
        lambda text: Reply(claude_wire.message([claude_wire.text(text)])),
        lambda pieces: claude_wire.text_stream(*pieces),
    ),
    Provider(
        "google",
        GoogleGenAIInstrumentor,
        lambda url: Gemini(gemini_wire.MODEL, base_url=url, api_key="test-key"),
        lambda text: Reply(gemini_wire.answer([{"text": text}])),
        gemini_stream,
    ),
]


EXPECTED_IDENTITY = {
    "openai": ("openai", None),
    "anthropic": ("anthropic", "anthropic"),
    "google": (None, "google"),
}


@pytest.fixture(params=PROVIDERS, ids=[p.name for p in PROVIDERS])
def provider(request: pytest.FixtureRequest) -> Provider:
    found: Provider = request.param
    return found


@pytest.fixture
def traces(provider: Provider) -> Iterator[Traces]:
    """noted and the provider's SDK both instrumented, into one in-memory exporter."""
    found = Traces()
    sdk = provider.instrumentor()
    sdk.instrument(tracer_provider=found.provider)
    noted_tracing.instrument(tracer_provider=found.provider)
    try:
        yield found
    finally:
        noted_tracing.uninstrument()
        sdk.uninstrument()


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


@pytest.fixture
def assistant(provider: Provider, wire: WireServer) -> Iterator[Agent]:
    """An agent on noted's model for the provider, aimed at the local server."""
    model = provider.model(wire.url)
    try:
        yield Agent(model, name="Assistant", tools=[get_weather])
    finally:
        model.close()


def scopes(traces: Traces) -> list[str]:
    """Who made each span, in the order they ended: noted, or the SDK's instrumentor."""
    return [s.instrumentation_scope.name if s.instrumentation_scope else "" for s in traces.spans]


def texts(events: Iterator[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, ContentDelta)]


def test_a_model_call_shows_once_as_noteds_llm_span(
    provider: Provider, traces: Traces, wire: WireServer, assistant: Agent
) -> None:
    wire.add(provider.reply("Hi there!"))
    assert assistant.run("Hello").content == "Hi there!"
    assert len(wire.requests) == 1  # the call went through the SDK to the server

    assert scopes(traces) == [NOTED, NOTED]
    [llm] = traces.of_kind("LLM")
    assert llm.name == "model call"
    found = attrs(llm)
    # the API the model speaks, and who hosts it: a local server speaking OpenAI's API is
    # no known host, and the conventions name no system for Gemini
    system, host = EXPECTED_IDENTITY[provider.name]
    assert (found.get("llm.system"), found.get("llm.provider")) == (system, host)
    assert found["llm.output_messages.0.message.content"] == "Hi there!"
    assert traces.children(traces.one("Assistant.run")) == ["model call"]


def test_a_streamed_model_call_shows_once(
    provider: Provider, traces: Traces, wire: WireServer, assistant: Agent
) -> None:
    wire.add(provider.stream(["It is ", "sunny", "."]))
    assert texts(assistant.run("Weather?", stream=True)) == ["It is ", "sunny", "."]
    assert len(wire.requests) == 1

    assert scopes(traces) == [NOTED, NOTED]
    [llm] = traces.of_kind("LLM")
    assert llm.name == "model call"
    assert [e.name for e in llm.events] == ["First Token Stream Event"]
    found = attrs(llm)
    assert found["noted.stream"] is True
    assert found["llm.output_messages.0.message.content"] == "It is sunny."


def test_with_noteds_tracing_off_the_sdks_spans_show_for_the_same_calls(
    provider: Provider, traces: Traces, wire: WireServer, assistant: Agent
) -> None:
    """The same agent with only noted's tracing turned off: the SDK's instrumentor makes a
    span for each call, so the tests above see a suppression, not a client it misses."""
    noted_tracing.uninstrument()
    wire.add(provider.reply("Hi there!"), provider.stream(["Hel", "lo"]))
    assert assistant.run("Hello").content == "Hi there!"
    assert texts(assistant.run("Hello", stream=True)) == ["Hel", "lo"]

    sdk = [s for s in scopes(traces) if s != NOTED]
    assert len(sdk) == 2 and len(traces.spans) == 2, scopes(traces)
    assert all(attrs(span)["openinference.span.kind"] == "LLM" for span in traces.spans)


@pytest.mark.parametrize("provider", PROVIDERS[:1], ids=["openai"], indirect=True)
def test_each_call_of_a_tool_round_shows_once(
    traces: Traces, wire: WireServer, assistant: Agent
) -> None:
    tool_call = openai_wire.function_call("call_1", "get_weather", '{"city": "Paris"}')
    wire.add(
        Reply(openai_wire.completion(None, tool_calls=[tool_call], finish_reason="tool_calls")),
        Reply(openai_wire.completion("It is sunny in Paris.", prompt_tokens=30)),
    )
    assert assistant.run("Weather in Paris?").content == "It is sunny in Paris."
    assert len(wire.requests) == 2

    assert set(scopes(traces)) == {NOTED}
    run = traces.one("Assistant.run")
    assert traces.children(run) == ["model call", "get_weather", "model call"]
    first, second = traces.of_kind("LLM")
    assert attrs(first)["llm.output_messages.0.message.tool_calls.0.tool_call.function.name"] == (
        "get_weather"
    )
    assert attrs(second)["llm.token_count.prompt"] == 30


@pytest.mark.parametrize("provider", PROVIDERS[:1], ids=["openai"], indirect=True)
def test_the_sdks_spans_show_for_calls_outside_noted(traces: Traces, wire: WireServer) -> None:
    wire.add(Reply(openai_wire.completion("Hi there!")), openai_wire.text_stream("Hel", "lo"))
    hello = [{"role": "user", "content": "Hello"}]
    with openai.OpenAI(base_url=wire.url + "/v1", api_key="test-key", max_retries=0) as client:
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=hello)
        chunks = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=hello,
            stream=True,
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert answer.choices[0].message.content == "Hi there!"
    assert text == "Hello"

    assert NOTED not in scopes(traces)
    plain, streamed = traces.of_kind("LLM")
    assert plain.name == streamed.name == "ChatCompletion"
    assert attrs(plain)["llm.model_name"] == openai_wire.MODEL
    assert attrs(plain)["llm.output_messages.0.message.content"] == "Hi there!"
    assert json.loads(attrs(streamed)["llm.invocation_parameters"])["stream"] is True
