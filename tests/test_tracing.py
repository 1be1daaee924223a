"""Tracing: the spans of agent runs, model calls, tools and memory work, read back from the
OpenTelemetry SDK's in-memory exporter, with their OpenInference attributes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from openinference.instrumentation import (
    TraceConfig,
    suppress_tracing,
    using_attributes,
    using_session,
)
from openinference.instrumentation import TracerProvider as OpenInferenceTracerProvider
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import StatusCode

from live_server import LocalClient
from model_helpers import WatchedModel
from noted import Agent, InMemoryDb, Memory, SqliteDb, UserError, UserMemory, _portal
from noted import tracing as noted_tracing
from noted.agent import ContentDelta
from noted.agent.jobs import JobKicker
from noted.limits import MAX_TRACE_VALUE_CHARS
from noted.models import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    ResponseBuilder,
    ToolCall,
    ToolDefinition,
    Usage,
)
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.server import create_app
from noted.testing import FunctionModel, ScriptedModel
from noted.tracing import TraceSettings
from noted.tracing import _hooks as tracing_hooks
from traces import Traces, attrs

SRC = str(Path(__file__).resolve().parents[1] / "src")
MANAGER_PROMPT = "You maintain the long-term memory"


def is_manager(messages: list[Message]) -> bool:
    return bool(messages) and (messages[0].content or "").startswith(MANAGER_PROMPT)


def extractor(answer: str = "Noted!") -> FunctionModel:
    """Answers the agent with ``answer``; the manager adds one memory per sentence with
    "I love" in it."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if is_manager(messages):
            chat = (messages[-1].content or "").split("<conversation>")[1]
            ops = []
            if "I love Italian food" in chat:
                ops.append({"op": "add", "id": None, "memory": "User loves Italian food"})
            if "update 1" in chat:
                ops.append({"op": "update", "id": 1, "memory": "User loves all food"})
                ops.append({"op": "delete", "id": 7, "memory": None})
            return json.dumps({"operations": ops})
        return answer

    return FunctionModel(fn, id="fake-4o")


def test_a_run_with_history_and_background_memory_is_one_trace(
    traces: Traces, tmp_path: Path
) -> None:
    db = SqliteDb(tmp_path / "t.db")
    agent = Agent(
        extractor(),
        db=db,
        name="Assistant",
        agent_id="assistant-1",
        user_id="demo-user",
        session_id="s1",
        instructions="Be concise.",
        enable_user_memories=True,
        add_history_to_context=True,
    )
    agent.run("I love Italian food")
    assert agent.wait_for_memories(timeout=10)
    stored = agent.get_user_memories()
    assert [m.memory for m in stored] == ["User loves Italian food"]
    first = traces.one("Assistant.run")
    extraction = traces.one("memory extraction")
    assert first.context is not None and extraction.context is not None
    # the background extraction (which may outlive the run) is in the run's trace
    assert extraction.context.trace_id == first.context.trace_id
    assert extraction.parent is not None and extraction.parent.span_id == first.context.span_id
    found = attrs(extraction)
    assert found["openinference.span.kind"] == "CHAIN"
    assert found["user.id"] == "demo-user" and found["session.id"] == "s1"
    assert list(found["noted.memory.added"]) == [stored[0].memory_id]
    assert list(found["noted.memory.updated"]) == [] and list(found["noted.memory.dropped"]) == []
    assert json.loads(found["output.value"])["added"] == [stored[0].memory_id]
    assert traces.children(extraction) == ["memory selection", "memory manager model call"]
    manager_call = attrs(traces.named("memory manager model call")[0])
    params = json.loads(manager_call["llm.invocation_parameters"])
    assert params["model"] == "fake-4o"
    assert params["response_format"]["name"] == "memory_operations"
    assert manager_call["llm.input_messages.1.message.content"].count("I love Italian food") == 1

    traces.exporter.clear()
    result = agent.run("What food do I like?")
    assert agent.wait_for_memories(timeout=10)
    run = traces.one("Assistant.run")
    found = attrs(run)
    assert found["openinference.span.kind"] == "AGENT"
    assert found["input.value"] == "What food do I like?"
    assert found["output.value"] == "Noted!"
    assert found["session.id"] == "s1" and found["user.id"] == "demo-user"
    assert found["agent.name"] == "Assistant" and found["noted.agent.id"] == "assistant-1"
    assert found["noted.run.id"] == result.run_id
    assert json.loads(found["metadata"])["model_calls"] == 1
    assert run.status.status_code is StatusCode.OK
    assert traces.children(run) == ["memory selection", "model call", "memory extraction"]

    selection = attrs(_first_child(traces, run))
    assert selection["openinference.span.kind"] == "RETRIEVER"
    assert selection["input.value"] == "What food do I like?"
    assert selection["retrieval.documents.0.document.id"] == stored[0].memory_id
    assert selection["retrieval.documents.0.document.content"] == "User loves Italian food"
    assert selection["retrieval.documents.0.document.score"] == 1.0  # "food" in common
    assert selection["noted.memories.considered"] == 1
    assert selection["noted.memories.chosen"] == 1

    llm = attrs(traces.one("model call"))
    assert llm["openinference.span.kind"] == "LLM"
    assert llm["llm.model_name"] == "fake-4o" and llm["llm.provider"] == "test"
    roles = [llm[f"llm.input_messages.{i}.message.role"] for i in range(4)]
    assert roles == ["system", "user", "assistant", "user"]
    assert "llm.input_messages.4.message.role" not in llm
    system = llm["llm.input_messages.0.message.content"]
    assert "Be concise." in system and "User loves Italian food" in system
    assert llm["llm.input_messages.1.message.content"] == "I love Italian food"
    assert llm["llm.output_messages.0.message.content"] == "Noted!"
    assert llm["llm.output_messages.0.message.role"] == "assistant"
    assert llm["llm.token_count.prompt"] == result.metrics.input_tokens
    assert llm["llm.token_count.completion"] == result.metrics.output_tokens
    assert (
        llm["llm.token_count.total"] == result.metrics.input_tokens + result.metrics.output_tokens
    )


def _first_child(traces: Traces, parent: ReadableSpan) -> ReadableSpan:
    assert parent.context is not None
    kids = [
        s
        for s in traces.spans
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return min(kids, key=lambda s: s.start_time or 0)


def test_background_work_carries_a_w3c_traceparent(traces: Traces) -> None:
    tracer = traces.provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:

        async def work() -> int:
            return 1

        carried = noted_tracing._hooks.carry(work)
    traceparent = getattr(carried, "traceparent", None)
    assert isinstance(traceparent, str)
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == outer.get_span_context().trace_id
    assert int(span_id, 16) == outer.get_span_context().span_id


def test_work_with_no_trace_is_a_trace_of_its_own(traces: Traces) -> None:
    """Work recorded with no trace context (tracing was off, or no run was traced) and a
    drain of queued work start in no trace, not in the trace of whatever starts them."""

    async def in_a_trace() -> bool:
        return trace.get_current_span().get_span_context().is_valid

    class Worker:
        async def drain(self, stop: object = None, keys: object = None) -> None:
            seen.append(trace.get_current_span().get_span_context().is_valid)

    seen: list[bool] = []
    kicker = JobKicker(Worker())  # type: ignore[arg-type]
    with traces.provider.get_tracer("app").start_as_current_span("a later run"):
        assert asyncio.run(tracing_hooks.resume(None, in_a_trace)) is False
        kicker._start()
        running = kicker._running
    assert running is not None
    running.result(timeout=10)
    assert seen == [False]


def test_a_job_queued_untraced_is_not_traced_inside_a_later_run(
    traces: Traces, tmp_path: Path
) -> None:
    db = SqliteDb(tmp_path / "j.db")

    def agent() -> Agent:
        return Agent(extractor(), db=db, name="A", user_id="u1", enable_user_memories=True)

    noted_tracing.uninstrument()
    first = agent()
    assert first._jobs is not None
    first._jobs.enabled = False  # its job stays queued, as when its process stopped
    first.run("I love Italian food", session_id="old")
    noted_tracing.instrument(tracer_provider=traces.provider)
    later = agent()
    later.run("What is the weather?", session_id="new")
    assert later.wait_for_memories(timeout=10)
    run = traces.one("A.run")
    extractions = {attrs(s)["session.id"]: s for s in traces.named("memory extraction")}
    assert set(extractions) == {"old", "new"}
    assert _is_child(extractions["new"], run)
    old = extractions["old"]
    assert old.parent is None and old.context is not None and run.context is not None
    assert old.context.trace_id != run.context.trace_id


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name, arguments)


def test_agentic_memory_tools_and_a_failing_tool_are_tool_spans(
    traces: Traces, tmp_path: Path
) -> None:
    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise ValueError(f"no weather for {city}")

    model = ScriptedModel(
        [
            ModelResponse(
                tool_calls=[
                    call("add_memory", memory="User lives in Lisbon", topics=["home"]),
                    call("get_weather", city="Lisbon"),
                ]
            ),
            "Saved; the weather is unknown.",
        ]
    )
    agent = Agent(
        model,
        db=SqliteDb(tmp_path / "t.db"),
        tools=[get_weather],
        user_id="u1",
        enable_agentic_memory=True,
    )
    result = agent.run("I live in Lisbon. Weather?")
    assert result.content == "Saved; the weather is unknown."
    run = traces.one("Agent.run")
    assert traces.children(run) == [
        "memory selection",
        "model call",
        "add_memory",
        "get_weather",
        "model call",
    ]
    added = attrs(traces.one("add_memory"))
    assert added["openinference.span.kind"] == "TOOL"
    assert added["tool.name"] == "add_memory"
    assert json.loads(added["input.value"]) == {
        "memory": "User lives in Lisbon",
        "topics": ["home"],
    }
    assert added["output.value"] == "Added memory [1]: User lives in Lisbon"
    assert traces.one("add_memory").status.status_code is StatusCode.OK
    assert agent.get_user_memories()[0].memory == "User lives in Lisbon"

    failed = traces.one("get_weather")
    found = attrs(failed)
    assert found["tool.description"] == "The weather in a city."
    assert json.loads(found["tool.parameters"])["required"] == ["city"]
    assert found["output.value"] == "Error: ValueError: no weather for Lisbon"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "ValueError: no weather for Lisbon"
    [raised] = failed.events
    assert raised.name == "exception"
    assert exception(failed) == {
        "exception.type": "ValueError",
        "exception.message": "no weather for Lisbon",
    }
    assert 'raise ValueError(f"no weather for {city}")' in stacktrace(failed)

    first_call = attrs(traces.named("model call")[0])
    tools = [json.loads(first_call[f"llm.tools.{i}.tool.json_schema"]) for i in range(4)]
    assert {t["function"]["name"] for t in tools} >= {"add_memory", "get_weather"}
    assert first_call["llm.output_messages.0.message.tool_calls.1.tool_call.function.name"] == (
        "get_weather"
    )
    second_call = attrs(traces.named("model call")[1])
    assert second_call["llm.input_messages.3.message.role"] == "tool"
    assert second_call["llm.input_messages.3.message.name"] == "get_weather"


def exception(span: ReadableSpan) -> dict[str, Any]:
    """The type and message of the span's one exception event."""
    [event] = [e for e in span.events if e.name == "exception"]
    found = dict(event.attributes or {})
    return {key: found[key] for key in ("exception.type", "exception.message")}


def stacktrace(span: ReadableSpan) -> str:
    [event] = [e for e in span.events if e.name == "exception"]
    return str((event.attributes or {})["exception.stacktrace"])


def test_a_tool_calls_failure_is_an_exception_as_a_models_and_the_memory_managers_are(
    traces: Traces, tmp_path: Path
) -> None:
    """Every failure's exception event has the exception's type, message and stack trace
    (OpenTelemetry's exception conventions): a tool's (the model reads it as text), a
    tool call the agent refused (no such tool, arguments that are no JSON object, or not
    the tool's), a model call's and the memory manager's (which raise)."""

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "Sunny."

    model = ScriptedModel(
        [
            ModelResponse(
                tool_calls=[
                    call("get_time", city="Lisbon"),
                    ToolCall("get_weather", invalid_arguments="{city: Lisbon"),
                    call("get_weather", town="Lisbon"),
                ]
            ),
            "Sorry.",
        ]
    )
    Agent(model, tools=[get_weather]).run("Weather and time in Lisbon?")
    refused = traces.of_kind("TOOL")
    assert [span.name for span in refused] == ["get_time", "get_weather", "get_weather"]
    assert [exception(span)["exception.type"] for span in refused] == [
        "noted.errors.UserError",
        "noted.errors.UserError",
        "TypeError",
    ]
    assert exception(refused[0])["exception.message"] == (
        "there is no tool named 'get_time' (tools: get_weather)"
    )
    assert exception(refused[1])["exception.message"].startswith(
        "the arguments must be a JSON object"
    )
    assert exception(refused[2])["exception.message"] == "missing a required argument: 'city'"
    for span in refused:
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == "{}: {}".format(
            exception(span)["exception.type"].rsplit(".", 1)[-1],
            exception(span)["exception.message"],
        )

    traces.exporter.clear()
    with pytest.raises(Exception, match="response"):
        Agent(ScriptedModel([]), name="Broken").run("Hello?")
    memory = Memory(SqliteDb(tmp_path / "m.db"), embedder=None, model=ScriptedModel([]))
    with pytest.raises(Exception, match="response"):
        memory.create_user_memories("I love tea.", user_id="ann")
    failed = [s for s in traces.spans if s.status.status_code is StatusCode.ERROR]
    assert sorted(s.name for s in failed) == [
        "Broken.run",
        "Memory.create_user_memories",
        "memory extraction",
        "memory manager model call",
        "model call",
    ]
    for span in failed:
        assert exception(span) == {
            "exception.type": "noted.testing.ScriptExhaustedError",
            "exception.message": exception(span)["exception.message"],
        }
        assert "ScriptExhaustedError" in stacktrace(span)


@pytest.mark.parametrize("switch", ["hide_outputs", "hide_memories"])
def test_a_failing_tools_hidden_output_hides_its_exceptions_message(
    traces: Traces, tmp_path: Path, switch: str
) -> None:
    """Where a tool's output is hidden (every tool's with ``hide_outputs``, the memory
    tools' with ``hide_memories``), so is its exception's message: its type and frames
    stay."""
    noted_tracing.instrument(
        tracer_provider=traces.provider, settings=TraceSettings(**{switch: True})
    )

    def get_weather(city: str) -> str:
        """The weather in a city."""
        raise ValueError("no weather for " + city.upper())  # what only the message says

    failing = ("get_weather", {"city": "Lisbon"})
    if switch == "hide_memories":  # a memory tool's failure: a memory that is not there
        failing = ("update_memory", {"number": 9, "memory": "User lives in LISBON"})
    model = ScriptedModel([ModelResponse(tool_calls=[call(failing[0], **failing[1])]), "Ok."])
    agent = Agent(
        model,
        db=SqliteDb(tmp_path / "t.db"),
        tools=[get_weather],
        enable_agentic_memory=True,
    )
    agent.run("Weather in Lisbon?")
    span = traces.one(failing[0])
    assert span.status.status_code is StatusCode.ERROR
    assert [v for v in attrs(span).values() if "LISBON" in str(v)] == []
    assert exception(span)["exception.message"] == "__REDACTED__"
    assert span.status.description == f"{exception(span)['exception.type']}: __REDACTED__"
    assert "LISBON" not in stacktrace(span) and "LISBON" not in span.status.description
    assert stacktrace(span).endswith(": __REDACTED__\n")


def test_what_a_span_is_outlives_the_sdks_attribute_limit(tmp_path: Path) -> None:
    """Past a span's attribute limit the SDK drops its oldest attributes: a long
    conversation's model call keeps its kind, model and provider (even when its answer
    alone has more attributes than the limit), and a search that found many memories stays
    a RETRIEVER span."""
    traces = Traces(SpanLimits(max_span_attributes=16))
    noted_tracing.instrument(tracer_provider=traces.provider)
    try:

        def echo(text: str) -> str:
            """Says it again."""
            return text

        rounds = [  # an answer of five tool calls: more attributes than the limit
            ModelResponse(tool_calls=[call("echo", text=f"{i}.{j}") for j in range(5)])
            for i in range(4)
        ]
        model = ScriptedModel([*rounds, "Done."], id="fake-4o")
        Agent(model, tools=[echo], max_tool_rounds=5).run("Echo four times.")
        memory = Memory(db=SqliteDb(tmp_path / "m.db"), embedder=None)
        for i in range(8):
            memory.add_user_memory(UserMemory(f"User likes tea number {i}"), user_id="ann")
        found = memory.search_user_memories("tea", user_id="ann", retrieval_method="keyword")
        assert len(found) == 8
    finally:
        noted_tracing.uninstrument()
    calls = traces.named("model call")
    assert len(calls) == 5 and calls[-1].dropped_attributes > 0
    for span in calls:
        found_attrs = attrs(span)
        assert found_attrs["openinference.span.kind"] == "LLM"
        assert found_attrs["llm.model_name"] == "fake-4o"
        assert found_attrs["llm.provider"] == "test"  # a model's own provider name
        assert "llm.system" not in found_attrs  # no API the conventions name
    search = traces.one("Memory.search_user_memories")
    assert search.dropped_attributes > 0
    assert attrs(search)["openinference.span.kind"] == "RETRIEVER"


def test_large_texts_are_bounded_in_spans_keeping_their_start_and_end(
    traces: Traces, tmp_path: Path
) -> None:
    """A span is exported whole or not at all, and Phoenix's OTLP over gRPC refuses a
    request over 4 MiB with its whole batch: each text a span holds (a message, a tool's
    result, a model call's messages, an exception's message, the memory work's texts) has
    at most MAX_TRACE_VALUE_CHARS characters, its start and its end kept around a line
    saying how much was left out, a cut JSON value marked as plain text."""

    def dump(size: int) -> str:
        """A large report."""
        return "START" + "é" * size + "END"

    def shout(text: str) -> str:
        """Fails, quoting its input."""
        raise ValueError(f"cannot shout {text}")

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        if is_manager(messages):
            return json.dumps({"operations": [{"op": "add", "id": None, "memory": "User logs"}]})
        if len(messages) == 1:
            calls = [call("dump", size=5_000_000), call("shout", text="y" * 1_000_000)]
            return ModelResponse(tool_calls=calls)
        return "Read it."

    agent = Agent(
        FunctionModel(fn, id="fake-4o"),
        db=SqliteDb(tmp_path / "t.db"),
        tools=[dump, shout],
        user_id="u1",
        enable_user_memories=True,
        max_tool_result_chars=None,  # the model reads all of it
    )
    message = "Look at this log: " + "x" * 1_500_000 + " Thanks."
    assert agent.run(message).content == "Read it."
    assert agent.wait_for_memories(timeout=30)
    longest = MAX_TRACE_VALUE_CHARS + 200  # the line saying what was left out
    names = {s.name for s in traces.spans}
    assert {"memory selection", "memory extraction", "memory manager model call"} <= names
    for span in traces.spans:
        for key, value in attrs(span).items():
            assert len(str(value)) <= longest, (span.name, key, len(str(value)))
        for event in span.events:
            for key, value in (event.attributes or {}).items():
                assert len(str(value)) <= longest, (span.name, key, len(str(value)))
        assert len(span.status.description or "") <= longest, span.name
    result = attrs(traces.one("dump"))["output.value"]
    assert result.startswith("STARTéé") and result.endswith("ééEND")
    assert "[... 4,900,008 characters were left out of this value" in result
    run = attrs(traces.one("Agent.run"))
    assert run["input.value"].startswith("Look at this log: xx")
    assert run["input.value"].endswith("xx Thanks.")
    second = attrs(traces.named("model call")[1])
    assert second["input.mime_type"] == "text/plain"  # a cut JSON text is no JSON
    assert second["llm.input_messages.2.message.content"].endswith("ééEND")
    failed = traces.one("shout")
    assert failed.status.status_code is StatusCode.ERROR
    assert exception(failed)["exception.message"].startswith("cannot shout yy")
    assert exception(failed)["exception.type"] == "ValueError"
    assert stacktrace(failed).startswith("Traceback (most recent call last):")
    assert 'raise ValueError(f"cannot shout {text}")' in stacktrace(failed)


def test_the_stack_trace_of_an_error_raised_from_one_quoting_a_large_text_is_bounded(
    traces: Traces, tmp_path: Path
) -> None:
    """A short message over a stack trace that holds a long one (that of the exception it
    was raised from, quoting a tool's input) is bounded too: the stack trace held all
    1,000,000 characters of the input, and the span was too large to send."""

    def look_up(text: str) -> str:
        """Looks a text up."""
        try:
            raise ValueError(f"no entry for {text}")
        except ValueError as exc:
            raise RuntimeError("the lookup failed") from exc

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        if len(messages) == 1:
            return ModelResponse(tool_calls=[call("look_up", text="y" * 1_000_000)])
        return "Done."

    agent = Agent(FunctionModel(fn, id="fake-4o"), db=SqliteDb(tmp_path / "t.db"), tools=[look_up])
    assert agent.run("Look it up").content == "Done."
    failed = traces.one("look_up")
    assert exception(failed) == {
        "exception.type": "RuntimeError",
        "exception.message": "the lookup failed",
    }
    stack = stacktrace(failed)
    assert len(stack) <= MAX_TRACE_VALUE_CHARS + 200, len(stack)
    assert stack.startswith("Traceback (most recent call last):")
    assert "characters were left out of this value" in stack
    assert stack.endswith("RuntimeError: the lookup failed\n")
    assert failed.status.description == "RuntimeError: the lookup failed"


def test_a_model_error_marks_the_llm_and_agent_spans(traces: Traces) -> None:
    agent = Agent(ScriptedModel([]), name="Broken")
    with pytest.raises(Exception, match="response"):
        agent.run("Hello?")
    run = traces.one("Broken.run")
    llm = traces.one("model call")
    for span in (run, llm):
        assert span.status.status_code is StatusCode.ERROR
        assert "ScriptExhaustedError" in (span.status.description or "")
        assert [e.name for e in span.events] == ["exception"]
    assert traces.children(run) == ["model call"]


def test_streaming_marks_the_first_token(traces: Traces) -> None:
    agent = Agent(ScriptedModel(["Hello there, friend."]), name="Streamer")
    pieces = [e for e in agent.run("Hi", stream=True)]
    assert pieces
    llm = traces.one("model call")
    assert [e.name for e in llm.events] == ["First Token Stream Event"]
    assert llm.start_time is not None and llm.events[0].timestamp >= llm.start_time
    found = attrs(llm)
    assert found["noted.stream"] is True
    assert found["llm.output_messages.0.message.content"] == "Hello there, friend."
    assert found["llm.token_count.completion"] > 0
    assert attrs(traces.one("Streamer.run"))["output.value"] == "Hello there, friend."


@pytest.mark.parametrize("streamed", [False, True])
def test_the_parts_of_a_calls_token_counts_are_on_its_span_when_there_are_some(
    traces: Traces, streamed: bool
) -> None:
    parts = Usage(2000, 300, cache_read_tokens=1500, cache_write_tokens=400, reasoning_tokens=250)
    plain = Usage(12, 5)
    script = [ModelResponse("Cached.", usage=parts), ModelResponse("Plain.", usage=plain)]
    agent = Agent(ScriptedModel(script), name="Counter")
    for message in ("Hi", "Again"):
        if streamed:
            list(agent.run(message, stream=True))
        else:
            agent.run(message)

    cached, uncached = (attrs(span) for span in traces.of_kind("LLM"))
    assert cached["llm.token_count.prompt"] == 2000
    assert cached["llm.token_count.completion"] == 300
    assert cached["llm.token_count.total"] == 2300
    assert cached["llm.token_count.prompt_details.cache_read"] == 1500
    assert cached["llm.token_count.prompt_details.cache_write"] == 400
    assert cached["llm.token_count.completion_details.reasoning"] == 250
    assert uncached["llm.token_count.total"] == 17
    assert not [name for name in uncached if "_details." in name]


def _is_child(span: ReadableSpan, parent: ReadableSpan) -> bool:
    return span.parent is not None and span.parent.span_id == parent.get_span_context().span_id


def test_a_stream_leaves_the_consumers_context_alone_and_ends_when_stopped(
    traces: Traces,
) -> None:
    model = WatchedModel(["One two three.", "Four five six."])
    agent = Agent(model, name="Streamer")

    async def consume() -> list[bool]:
        outer = trace.get_current_span()
        return [trace.get_current_span() is outer async for _ in agent.arun("Hi", stream=True)]

    assert all(asyncio.run(consume()))  # noted's spans are never current between events
    completed = traces.one("Streamer.run")
    assert "noted.run.stopped" not in attrs(completed)
    assert "noted.stream.stopped" not in attrs(traces.one("model call"))

    events = agent.run("Again", stream=True)
    for event in events:
        if isinstance(event, ContentDelta):
            break
    events.close()  # type: ignore[attr-defined]
    assert model.closed == 2  # the provider's stream too, before close() returned
    stopped = [s for s in traces.named("Streamer.run") if s is not completed]
    assert len(stopped) == 1 and attrs(stopped[0])["noted.run.stopped"] is True
    # the model stream is closed with the run, before close() returns, and ends first
    [llm] = [s for s in traces.named("model call") if _is_child(s, stopped[0])]
    assert llm.end_time is not None and stopped[0].end_time is not None
    assert llm.end_time <= stopped[0].end_time
    assert attrs(llm)["noted.stream.stopped"] is True
    assert [e.name for e in llm.events] == ["First Token Stream Event"]
    # what was streamed before the stop, and nothing of what was not
    assert attrs(llm)["llm.output_messages.0.message.content"] == "Four "
    assert attrs(llm)["output.value"] == attrs(stopped[0])["output.value"] == "Four "


ENDED_AGAIN = "on an ended span"  # the SDK's warning for an end (or change) after the end


async def _leave(stream: Any, how: str) -> None:
    """Leave an async stream early: close it, or throw the consumer's error into it."""
    if how == "aclose":
        await stream.aclose()
    else:
        with pytest.raises(KeyError, match="consumer"):
            await stream.athrow(KeyError("consumer"))


def _ended_again(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if ENDED_AGAIN in r.getMessage()]


@pytest.mark.parametrize("how", ["aclose", "athrow", "close", "throw"])
def test_a_model_stream_left_early_ends_its_span_once(
    traces: Traces, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Closed early, the span ends as stopped; an error thrown in by its consumer ends it as
    failed, from async code (``athrow``) or through a sync iterator (``throw``). Either way
    the model's own stream is closed before the call returns."""
    model = WatchedModel(["One two three. Four five six."])
    ask = ModelRequest([Message("user", "Count.")])

    async def first_only() -> None:
        stream = tracing_hooks.stream(model, ask, "agent", ResponseBuilder())
        await anext(stream)
        await _leave(stream, how)
        assert model.closed == 1

    if how in ("aclose", "athrow"):
        asyncio.run(first_only())
    else:
        deltas = _portal.iterate(tracing_hooks.stream(model, ask, "agent", ResponseBuilder()))
        next(deltas)
        if how == "close":
            deltas.close()  # type: ignore[attr-defined]
        else:
            with pytest.raises(KeyError, match="consumer"):
                deltas.throw(KeyError("consumer"))  # type: ignore[attr-defined]
        assert model.closed == 1
    llm = traces.one("model call")
    events = [e.name for e in llm.events]
    if how in ("aclose", "close"):
        assert llm.status.status_code is StatusCode.UNSET
        assert attrs(llm)["noted.stream.stopped"] is True
        assert events == ["First Token Stream Event"]
    else:
        assert llm.status.status_code is StatusCode.ERROR
        assert "KeyError" in (llm.status.description or "")
        assert "noted.stream.stopped" not in attrs(llm)
        assert events == ["First Token Stream Event", "exception"]
    assert _ended_again(caplog) == []


@pytest.mark.parametrize("how", ["aclose", "athrow", "close", "throw"])
def test_a_run_stream_left_early_ends_each_span_once(
    traces: Traces, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The run's span ends once, after its model call's, which the run closes with it; an
    error thrown into the run fails its span, whether thrown into the async run (``athrow``)
    or into the sync one (``throw``, passed on to the async run)."""
    model = WatchedModel(["One two three.", "Four five six."])
    agent = Agent(model, name="Streamer")

    async def leave_async() -> None:
        events = agent.arun("Hi", stream=True)
        async for event in events:
            if isinstance(event, ContentDelta):
                break
        await _leave(events, how)
        assert model.closed == 1

    if how in ("aclose", "athrow"):
        asyncio.run(leave_async())
    else:
        events = agent.run("Hi", stream=True)
        for event in events:
            if isinstance(event, ContentDelta):
                break
        if how == "close":
            events.close()  # type: ignore[attr-defined]
        else:
            with pytest.raises(KeyError, match="consumer"):
                events.throw(KeyError("consumer"))  # type: ignore[attr-defined]
        assert model.closed == 1
    run, llm = traces.one("Streamer.run"), traces.one("model call")
    assert _is_child(llm, run)
    assert llm.end_time is not None and run.end_time is not None
    assert llm.end_time <= run.end_time
    assert attrs(llm)["noted.stream.stopped"] is True  # the run let it go
    assert llm.status.status_code is StatusCode.UNSET
    if how in ("athrow", "throw"):
        assert run.status.status_code is StatusCode.ERROR
        assert "KeyError" in (run.status.description or "")
        assert [e.name for e in run.events] == ["exception"]
        assert "noted.run.stopped" not in attrs(run)
    else:
        assert run.status.status_code is StatusCode.UNSET
        assert attrs(run)["noted.run.stopped"] is True
        assert run.events == ()
    assert _ended_again(caplog) == []


class StalledModel(ScriptedModel):
    """Streams the first ``words`` pieces of each answer, then waits for good (until the
    caller gives up: a Ctrl-C, a client that hung up)."""

    def __init__(self, responses: list[str], words: int) -> None:
        super().__init__(responses)
        self.words = words
        self.waiting = asyncio.Event()  # set once the first words are out

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        handed = 0
        async for delta in super()._send_stream(request):
            yield delta
            handed += 1
            if handed == self.words:
                self.waiting.set()
                await asyncio.Event().wait()


def _stopped_run(traces: Traces, agent: Agent) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes of the run's span and of its model call's, and those spans' status
    checked against the failed turn the session kept."""
    run, llm = traces.one("Streamer.run"), traces.one("model call")
    assert _is_child(llm, run)
    [saved] = agent.db.get_runs("s", "default")
    assert saved.status == "failed"
    return attrs(run), attrs(llm)


@pytest.mark.parametrize("how", ["break", "async break", "cancel"])
def test_a_run_stopped_part_way_keeps_the_text_streamed_so_far_on_its_spans(
    traces: Traces, how: str
) -> None:
    """A stream the consumer leaves (a ``break``), or whose task is cancelled while the
    model is still answering (a Ctrl-C, a client that hung up), is a failed turn in the
    session with the text streamed so far: that text is the output of the run's span and
    of its model call's, with the status each already had (stopped, or failed)."""
    model = StalledModel(["One two three four five."], words=2)
    agent = Agent(model, name="Streamer", db=InMemoryDb(), session_id="s")
    seen: list[str] = []

    async def leave_async() -> None:
        async for event in agent.arun("Count.", stream=True):
            if isinstance(event, ContentDelta):
                seen.append(event.text)
                if len(seen) == 2:
                    break

    async def cancel() -> None:
        async def consume() -> None:
            async for event in agent.arun("Count.", stream=True):
                if isinstance(event, ContentDelta):
                    seen.append(event.text)

        task = asyncio.ensure_future(consume())
        await model.waiting.wait()
        await asyncio.sleep(0.05)  # the second piece reaches the consumer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    if how == "break":
        for event in agent.run("Count.", stream=True):
            if isinstance(event, ContentDelta):
                seen.append(event.text)
                if len(seen) == 2:
                    break
    else:
        asyncio.run(leave_async() if how == "async break" else cancel())
    assert "".join(seen) == "One two "
    run, llm = _stopped_run(traces, agent)
    [saved] = agent.db.get_runs("s", "default")
    assert saved.content == "One two "
    assert run["output.value"] == "One two " and run["output.mime_type"] == "text/plain"
    assert llm["output.value"] == "One two "
    assert llm["llm.output_messages.0.message.role"] == "assistant"
    assert llm["llm.output_messages.0.message.content"] == "One two "
    assert "llm.token_count.total" not in llm  # no usage was reported before the stop
    run_span, llm_span = traces.one("Streamer.run"), traces.one("model call")
    assert how == "cancel" or llm["noted.stream.stopped"] is True  # the run let it go
    if how == "break":
        assert run["noted.run.stopped"] is True
        assert run_span.status.status_code is llm_span.status.status_code is StatusCode.UNSET
    else:  # cancelled (an async stream let go unclosed is cancelled by its loop's end)
        assert run_span.status.status_code is StatusCode.ERROR
        assert "CancelledError" in (run_span.status.description or "")
    if how == "cancel":
        assert llm_span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("switch", ["hide_outputs", "hide_output_messages", "hide_output_text"])
def test_the_text_of_a_stopped_run_is_hidden_by_the_output_switches(
    traces: Traces, switch: str
) -> None:
    noted_tracing.instrument(
        tracer_provider=traces.provider, settings=TraceSettings(**{switch: True})
    )
    model = StalledModel(["One two three four five."], words=2)
    agent = Agent(model, name="Streamer", db=InMemoryDb(), session_id="s")
    for event in agent.run("Count.", stream=True):
        if isinstance(event, ContentDelta) and event.text == "two ":
            break
    run, llm = _stopped_run(traces, agent)
    assert [value for value in llm.values() if "two" in str(value)] == []
    if switch == "hide_outputs":
        assert run["output.value"] == llm["output.value"] == "__REDACTED__"
        assert "llm.output_messages.0.message.role" not in llm
    elif switch == "hide_output_messages":  # the run's own output is not a message
        assert run["output.value"] == "One two "
        assert "llm.output_messages.0.message.role" not in llm
    else:
        assert run["output.value"] == "One two " and llm["output.value"] == "__REDACTED__"
        assert llm["llm.output_messages.0.message.content"] == "__REDACTED__"


def test_a_provider_instrumentors_spans_are_suppressed_inside_noteds(traces: Traces) -> None:
    sdk_tracer = traces.provider.get_tracer("provider-sdk")

    def provider_call(messages: list[Message], tools: list[ToolDefinition]) -> str:
        # what an OpenInference instrumentor of a provider SDK does around each request
        if not otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY):
            sdk_tracer.start_span("ChatCompletion").end()
        return "ok"

    agent = Agent(FunctionModel(provider_call))
    agent.run("one")
    assert [s.name for s in traces.spans] == ["model call", "Agent.run"]
    list(agent.run("two", stream=True))
    assert not traces.named("ChatCompletion")
    noted_tracing.uninstrument()
    agent.run("three")  # noted's tracing off: the provider's span shows
    assert len(traces.named("ChatCompletion")) == 1


@pytest.mark.parametrize("store", ["jobs", "in memory"])
def test_noted_makes_no_spans_while_tracing_is_suppressed(
    traces: Traces, tmp_path: Path, store: str
) -> None:
    """Inside OpenInference's ``suppress_tracing()`` (OpenTelemetry's suppress-instrumentation
    flag) runs, streamed or not, memory searches and the memory work a run leaves behind
    (a recorded job, or work on the background loop) make no spans."""
    db = SqliteDb(tmp_path / "t.db") if store == "jobs" else InMemoryDb()
    agent = Agent(extractor(), db=db, user_id="u1", enable_user_memories=True)
    with suppress_tracing():
        agent.run("I love Italian food")
        assert agent.wait_for_memories(timeout=10)
        list(agent.run("What do I love?", stream=True))
        memory = Memory(db=db, model=extractor())
        assert memory.search_user_memories("italian", user_id="u1", retrieval_method="keyword")
        carried = tracing_hooks.traceparent()
    assert agent.wait_for_memories(timeout=10)
    assert [m.memory for m in agent.get_user_memories()] == ["User loves Italian food"]
    assert traces.spans == []
    assert carried is not None and carried.endswith("-00")  # not sampled: left untraced
    agent.run("Thanks")  # and outside it, traced as before
    assert agent.wait_for_memories(timeout=10)
    run = traces.one("Agent.run")
    assert traces.children(run) == ["memory selection", "model call", "memory extraction"]


@pytest.mark.parametrize("tracer", ["sdk", "openinference"])
def test_openinference_context_attributes_are_on_noteds_spans(tmp_path: Path, tracer: str) -> None:
    """``using_attributes`` (``using_session``, ``using_user``, ``using_metadata``,
    ``using_tags``) reach every span of the run, whose own metadata is merged with the
    context's, with the OpenTelemetry SDK's tracer provider and with OpenInference's (whose
    tracer sets the context attributes itself, after the opening ones)."""
    traces = Traces()
    if tracer == "openinference":
        traces.provider = OpenInferenceTracerProvider()
        traces.provider.add_span_processor(SimpleSpanProcessor(traces.exporter))
    noted_tracing.instrument(tracer_provider=traces.provider)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=extractor())
    try:
        with using_attributes(
            session_id="app-session", user_id="app-user", metadata={"tenant": "acme"}, tags=["prod"]
        ):
            agent = Agent(extractor(), name="A", user_id="u1", session_id="s1")
            result = agent.run("Hi")
            memory.search_user_memories("tea", user_id="ann", retrieval_method="keyword")
    finally:
        noted_tracing.uninstrument()
    for name in ("A.run", "model call", "Memory.search_user_memories"):
        found = attrs(traces.one(name))
        assert found["session.id"] == "app-session" and found["user.id"] == "app-user", name
        assert list(found["tag.tags"]) == ["prod"]
        assert json.loads(found["metadata"])["tenant"] == "acme"
    run = json.loads(attrs(traces.one("A.run"))["metadata"])
    assert run["run_id"] == result.run_id and run["model_calls"] == 1
    search = json.loads(attrs(traces.one("Memory.search_user_memories"))["metadata"])
    assert search["retrieval_method"] == "keyword"
    assert attrs(traces.one("model call"))["openinference.span.kind"] == "LLM"


def test_without_openinference_instrumentation_there_are_no_context_attributes(
    traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    with using_session("app-session"):
        monkeypatch.setitem(sys.modules, "openinference.instrumentation", None)
        noted_tracing.instrument(tracer_provider=traces.provider)
        Agent(ScriptedModel(["Hello."])).run("Hi")
    assert attrs(traces.one("model call"))["session.id"] != "app-session"
    assert attrs(traces.one("Agent.run"))["session.id"] != "app-session"


def test_memory_api_calls_are_spans_under_the_callers_span(traces: Traces, tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=extractor())
    tracer = traces.provider.get_tracer("app")
    with tracer.start_as_current_span("request") as outer:
        update = memory.create_user_memories("I love Italian food", user_id="ann")
        found = memory.search_user_memories("italian", user_id="ann", retrieval_method="keyword")
    assert len(update.memory_ids) == 1 and len(found) == 1
    created, search = (
        traces.one("Memory.create_user_memories"),
        traces.one("Memory.search_user_memories"),
    )
    trace_id = outer.get_span_context().trace_id
    for span in (created, search):
        assert span.context is not None and span.context.trace_id == trace_id
        assert span.parent is not None
        assert span.parent.span_id == outer.get_span_context().span_id
    assert traces.children(created) == ["memory extraction"]
    got = attrs(created)
    assert got["user.id"] == "ann" and got["input.value"] == "I love Italian food"
    assert list(got["noted.memory.added"]) == update.memory_ids
    got = attrs(search)
    assert got["openinference.span.kind"] == "RETRIEVER"
    assert got["retrieval.documents.0.document.id"] == update.memory_ids[0]
    assert got["retrieval.documents.0.document.score"] == pytest.approx(found[0].score)
    assert json.loads(got["metadata"])["retrieval_method"] == "keyword"


def test_searches_that_rank_by_no_score_are_spans_too(traces: Traces, tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), embedder=None)
    memory.add_user_memory(UserMemory("User is vegetarian"), user_id="ann")
    for method in (None, "last_n", "first_n"):
        traces.exporter.clear()
        found = memory.search_user_memories(user_id="ann", retrieval_method=method)
        assert [(m.memory, m.score) for m in found] == [("User is vegetarian", None)]
        got = attrs(traces.one("Memory.search_user_memories"))
        assert got["retrieval.documents.0.document.content"] == "User is vegetarian"
        assert "retrieval.documents.0.document.score" not in got
        assert traces.one("Memory.search_user_memories").status.status_code != StatusCode.ERROR


def test_updates_deletes_and_dropped_operations_are_recorded(
    traces: Traces, tmp_path: Path
) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=extractor())
    memory.create_user_memories("I love Italian food", user_id="ann")
    first = memory.get_user_memories(user_id="ann")[0]
    traces.exporter.clear()
    memory.create_user_memories("please update 1", user_id="ann")
    got = attrs(traces.one("memory extraction"))
    assert list(got["noted.memory.updated"]) == [first.memory_id]
    assert list(got["noted.memory.added"]) == []
    dropped = list(got["noted.memory.dropped"])
    assert len(dropped) == 1 and "7" in dropped[0]  # no memory 7 was shown
    assert memory.get_user_memories(user_id="ann")[0].memory == "User loves all food"


def test_privacy_switches(traces: Traces, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENINFERENCE_HIDE_INPUTS", "true")
    monkeypatch.setenv("NOTED_TRACE_HIDE_MEMORIES", "true")
    noted_tracing.instrument(tracer_provider=traces.provider)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=extractor())
    memory.create_user_memories("I love Italian food", user_id="ann")
    again = memory.create_user_memories("I love Italian food", user_id="ann")
    assert again.rejected and "Italian" in again.rejected[0]  # its reason quotes the memory
    memory.search_user_memories("italian", user_id="ann", retrieval_method="keyword")
    agent = Agent(extractor("Secret answer"), memory=memory, user_id="ann")
    agent.run("Tell me about italian food")

    def adds(messages: list[Message], tools: list[ToolDefinition]) -> ModelResponse | str:
        if messages[-1].role == "tool":
            return "Saved."
        return ModelResponse(tool_calls=[call("add_memory", memory="User loves Italian opera")])

    agentic = Agent(FunctionModel(adds), memory=memory, user_id="ann", enable_agentic_memory=True)
    assert agentic.run("Remember that I love opera").tool_calls[0].result.startswith("Added")
    everything = json.dumps([attrs(s) for s in traces.spans])
    leaks = [(s.name, k) for s in traces.spans for k, v in attrs(s).items() if "talian" in str(v)]
    assert not leaks
    assert "Italian food" not in everything and "italian" not in everything.lower()
    assert "Secret answer" in everything  # outputs are not hidden
    llm = attrs(traces.named("model call")[0])
    assert not any(k.startswith("llm.input_messages") for k in llm)
    assert llm["input.value"] == "__REDACTED__"
    search = attrs(traces.one("Memory.search_user_memories"))
    assert search["retrieval.documents.0.document.content"] == "__REDACTED__"
    assert search["retrieval.documents.0.document.id"]

    noted_tracing.instrument(
        tracer_provider=traces.provider, settings=TraceSettings(hide_inputs=False)
    )
    assert noted_tracing._hooks.active is not None
    assert noted_tracing._hooks.active.settings.hide_inputs is False
    assert noted_tracing._hooks.active.settings.hide_memories is True  # still from the env


def test_hidden_outputs_keep_only_the_reason_of_a_dropped_operation(
    traces: Traces, tmp_path: Path
) -> None:
    """A dropped operation's reason quotes the memory it would have written: with the
    outputs hidden, only the reason stays (as with the memories hidden)."""

    def unfounded(messages: list[Message], tools: list[ToolDefinition]) -> str:
        ops = [{"op": "add", "id": None, "memory": "User's bank PIN is 4417"}]
        return json.dumps({"operations": ops})

    noted_tracing.instrument(
        tracer_provider=traces.provider, settings=TraceSettings(hide_outputs=True)
    )
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=FunctionModel(unfounded))
    update = memory.create_user_memories("hello there", user_id="ann")
    assert update.rejected and "4417" in update.rejected[0]
    for name in ("memory extraction", "Memory.create_user_memories"):
        found = attrs(traces.one(name))
        assert found["output.value"] == "__REDACTED__"
        assert list(found["noted.memory.dropped"]) == [update.rejected[0].split(":", 1)[0]]
    assert not [s.name for s in traces.spans if "4417" in json.dumps(attrs(s))]


def test_the_instrumentor_applies_an_openinference_trace_config(traces: Traces) -> None:
    """``instrument(config=TraceConfig(...))``, as every OpenInference instrumentor takes
    it: its switches hide what they hide; noted's settings win where both say."""
    instrumentor = noted_tracing.NotedInstrumentor()
    config = TraceConfig(hide_inputs=True, hide_outputs=True)
    instrumentor.instrument(tracer_provider=traces.provider, config=config)
    Agent(ScriptedModel(["SECRET-ANSWER"]), name="A").run("SECRET-QUESTION")
    assert len(traces.spans) == 2
    assert not [s.name for s in traces.spans if "SECRET" in json.dumps(attrs(s))]

    instrumentor.instrument(
        tracer_provider=traces.provider,
        config=SimpleNamespace(hide_input_text=True, hide_llm_tools=True),  # read by name
        settings=TraceSettings(hide_input_text=False),
    )
    assert tracing_hooks.active is not None
    assert tracing_hooks.active.settings.hide_llm_tools is True
    assert tracing_hooks.active.settings.hide_input_text is False
    with pytest.raises(UserError, match="config must be an OpenInference TraceConfig"):
        instrumentor.instrument(tracer_provider=traces.provider, config={"hide_inputs": True})
    with pytest.raises(UserError, match="not hide_inputs"):
        instrumentor.instrument(tracer_provider=traces.provider, hide_inputs=True)
    # the keywords every OpenTelemetry instrumentor takes are taken
    instrumentor.instrument(tracer_provider=traces.provider, skip_dep_check=True)
    assert tracing_hooks.active is not None


def test_off_means_no_spans_and_no_imports(tmp_path: Path) -> None:
    assert not noted_tracing.is_instrumented()
    script = (
        "import sys\n"
        "from noted import Agent\n"
        "from noted.testing import FunctionModel\n"
        "agent = Agent(FunctionModel(lambda m, t: 'hi'), enable_user_memories=True)\n"
        "agent.run('I love tea'); agent.run('hi', stream=True)\n"
        "agent.wait_for_memories(10)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry', 'openinference'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_entry_point_and_missing_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    points = metadata.entry_points(group="openinference_instrumentor")
    ours = [p for p in points if p.value == "noted.tracing:NotedInstrumentor"]
    assert len(ours) == 1
    instrumentor = ours[0].load()()
    provider = TracerProvider()
    instrumentor.instrument(tracer_provider=provider)
    try:
        assert noted_tracing.is_instrumented()
    finally:
        instrumentor.uninstrument()
    assert not noted_tracing.is_instrumented()
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    with pytest.raises(
        UserError, match=r"needs the optional packages: pip install 'noted\[tracing\]'"
    ):
        noted_tracing.instrument()
    assert not noted_tracing.is_instrumented()
    monkeypatch.undo()
    # installed, but a release without a name noted's spans use
    monkeypatch.setitem(sys.modules, "noted.tracing._spans", type(sys)("noted.tracing._spans"))
    with pytest.raises(UserError, match=r"newer packages .* --upgrade 'noted\[tracing\]'"):
        noted_tracing.instrument()
    assert not noted_tracing.is_instrumented()
    assert trace.get_tracer_provider() is not None


def test_a_session_summary_update_is_a_chain_span_in_the_runs_trace(traces: Traces) -> None:
    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if (messages[0].content or "").startswith("You keep a running summary"):
            return json.dumps({"summary": "The user greeted the assistant.", "topics": ["hi"]})
        return "Hello!"

    agent = Agent(
        FunctionModel(fn),
        user_id="u1",
        session_id="s9",
        enable_session_summaries=True,
        background_memory=False,
    )
    agent.run("Hi there")
    run = traces.one("Agent.run")
    update = traces.one("session summary update")
    assert update.parent is not None and run.context is not None
    assert update.parent.span_id == run.context.span_id
    assert traces.children(update) == ["session summary model call"]
    found = attrs(update)
    assert found["openinference.span.kind"] == "CHAIN"
    assert found["session.id"] == "s9" and found["user.id"] == "u1"
    assert found["output.value"] == "The user greeted the assistant."
    assert json.loads(found["input.value"])["previous_summary"] is None
    assert json.loads(found["metadata"]) == {"topics": ["hi"], "run_count": 1}
    call = attrs(traces.one("session summary model call"))
    params = json.loads(call["llm.invocation_parameters"])
    assert params["response_format"]["name"] == "session_summary"


@pytest.mark.parametrize("stream", [False, True])
def test_every_span_of_a_run_carries_its_session_and_user(
    traces: Traces, tmp_path: Path, stream: bool
) -> None:
    """Phoenix filters spans by session.id and user.id: a run's model calls, tool calls,
    memory selections and its background work's spans carry them, not only the run's."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        if is_manager(messages):
            return json.dumps({"operations": []})
        if (messages[0].content or "").startswith("You keep a running summary"):
            return json.dumps({"summary": "Weather talk.", "topics": ["weather"]})
        if messages[-1].role == "user":
            return ModelResponse(tool_calls=[call("get_weather", city="Rome")])
        return "Sunny."

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    agent = Agent(
        FunctionModel(fn),
        db=SqliteDb(tmp_path / "t.db"),
        tools=[get_weather],
        user_id="u1",
        session_id="s1",
        enable_user_memories=True,
        enable_session_summaries=True,
    )
    if stream:
        list(agent.run("Weather in Rome?", stream=True))
    else:
        agent.run("Weather in Rome?")
    assert agent.wait_for_memories(timeout=10)
    names = sorted(s.name for s in traces.spans)
    assert names == sorted(
        [
            "Agent.run",
            "memory selection",
            "model call",
            "get_weather",
            "model call",
            "memory extraction",
            "memory selection",
            "memory manager model call",
            "session summary update",
            "session summary model call",
        ]
    )
    for span in traces.spans:
        found = attrs(span)
        assert (found.get("session.id"), found.get("user.id")) == ("s1", "u1"), span.name


def test_a_json_answer_is_json_in_its_spans_output(traces: Traces) -> None:
    """The memory manager's and the summarizer's answers are JSON (their requests give a
    response schema): Phoenix shows them as JSON when the span says so."""
    agent = Agent(
        extractor(),
        user_id="u1",
        enable_user_memories=True,
        background_memory=False,
    )
    agent.run("I love Italian food")
    manager = attrs(traces.one("memory manager model call"))
    assert json.loads(manager["output.value"])["operations"][0]["op"] == "add"
    assert manager["output.mime_type"] == "application/json"
    assert attrs(traces.one("model call"))["output.mime_type"] == "text/plain"


ZERO_CODE_SCRIPT = """
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from noted import Agent, tracing
from noted.testing import ScriptedModel

assert tracing.is_instrumented()  # by opentelemetry-instrument, before this script ran
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # what a distro's configurator does
Agent(ScriptedModel(["Hello."]), user_id="u1").run("Hi")
print(sorted(span.name for span in exporter.get_finished_spans()))
"""


def test_opentelemetry_instrument_traces_a_noted_process(tmp_path: Path) -> None:
    """``opentelemetry-instrument noted worker`` (or ``noted serve``, or a script) is how a
    process that noted's own commands start gets traced: it loads the instrumentors of the
    ``opentelemetry_instrumentor`` entry points, as OpenInference's do. noted's entry points
    are those of pyproject.toml, installed here as a package's metadata."""
    import tomllib

    project = tomllib.loads((Path(SRC).parent / "pyproject.toml").read_text())["project"]
    points = project["entry-points"]
    assert points["openinference_instrumentor"] == points["opentelemetry_instrumentor"]
    site = tmp_path / "site"
    info = site / "noted_entry_points-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: noted-entry-points\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(
        "[opentelemetry_instrumentor]\n"
        + "".join(f"{k} = {v}\n" for k, v in points["opentelemetry_instrumentor"].items())
    )
    script = tmp_path / "app.py"
    script.write_text(ZERO_CODE_SCRIPT)
    program = Path(sys.executable).parent / "opentelemetry-instrument"
    done = subprocess.run(
        [str(program), sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": f"{site}:{SRC}",
            # only noted's instrumentor, no exporter of the default configuration
            "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai,anthropic,google_genai",
            "OTEL_TRACES_EXPORTER": "none",
        },
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['Agent.run', 'model call']"


class LetterEmbedder(BaseEmbedder):
    """Texts as the counts of their letters a-h (a vector a reader can check)."""

    def __init__(self) -> None:
        super().__init__("letters-a-h", 8)

    def _embed_batch(self, texts: list[str], kind: Kind) -> npt.NDArray[np.float32]:
        rows = [[text.count(c) + 0.5 for c in "abcdefgh"] for text in texts]
        return np.asarray(rows, dtype=np.float32)


def test_embedding_calls_are_embedding_spans_in_the_searchs_trace(
    traces: Traces, tmp_path: Path
) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), embedder=LetterEmbedder())
    memory.add_user_memory(UserMemory("User bakes bread"), user_id="ann")
    written = attrs(traces.one("memory embedding"))
    assert written["openinference.span.kind"] == "EMBEDDING"
    assert written["embedding.model_name"] == "letters-a-h"
    assert written["embedding.embeddings.0.embedding.text"] == "User bakes bread"
    vector = list(written["embedding.embeddings.0.embedding.vector"])
    expected = LetterEmbedder().embed(["User bakes bread"])[0]
    assert vector == pytest.approx(expected.tolist())
    assert json.loads(written["metadata"]) == {"kind": "document", "count": 1}
    traces.exporter.clear()

    found = memory.search_user_memories("baked bread", user_id="ann", retrieval_method="semantic")
    assert [m.memory for m in found] == ["User bakes bread"]
    search, query = traces.one("Memory.search_user_memories"), traces.one("query embedding")
    assert query.parent is not None and search.context is not None
    assert query.parent.span_id == search.context.span_id
    got = attrs(query)
    assert got["embedding.embeddings.0.embedding.text"] == "baked bread"
    assert got["user.id"] == "ann"
    assert json.loads(got["metadata"]) == {"kind": "query", "count": 1}
    assert len(got["embedding.embeddings.0.embedding.vector"]) == 8


@pytest.mark.parametrize("store", ["jobs", "in memory"])
def test_the_embedding_after_a_memory_update_carries_the_runs_session_and_user(
    traces: Traces, tmp_path: Path, store: str
) -> None:
    """The search that embeds the facts a turn taught (the default embedder's way: not on
    write) runs after the memory extraction, in the run's trace: its span carries the run's session.id and user.id as every other span
    of the trace does (a job's, run from the store, and in-process work alike)."""
    db = SqliteDb(tmp_path / "t.db") if store == "jobs" else InMemoryDb()
    agent = Agent(
        extractor(),
        db=db,
        memory=Memory(db=db, embedder=LetterEmbedder(), embed_on_write=False),
        user_id="u1",
        session_id="s1",
        enable_user_memories=True,
    )
    agent.run("I love Italian food.")
    assert agent.wait_for_memories(timeout=10)
    assert traces.named("memory embedding"), [s.name for s in traces.spans]
    for span in traces.spans:
        found = attrs(span)
        assert (found.get("session.id"), found.get("user.id")) == ("s1", "u1"), span.name


@pytest.mark.parametrize(
    ("settings", "text", "vector"),
    [
        (TraceSettings(hide_embeddings_text=True), False, True),
        (TraceSettings(hide_embeddings_vectors=True), True, False),
        (TraceSettings(hide_memories=True), False, False),
        (TraceSettings(hide_inputs=True), False, True),
    ],
)
def test_the_privacy_switches_hide_embedding_texts_and_vectors(
    traces: Traces, tmp_path: Path, settings: TraceSettings, text: bool, vector: bool
) -> None:
    noted_tracing.instrument(tracer_provider=traces.provider, settings=settings)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), embedder=LetterEmbedder())
    memory.add_user_memory(UserMemory("User bakes bread"), user_id="ann")
    memory.search_user_memories("baked bread", user_id="ann", retrieval_method="semantic")
    for name, said in (
        ("memory embedding", "User bakes bread"),
        ("query embedding", "baked bread"),
    ):
        got = attrs(traces.one(name))
        shown = got["embedding.embeddings.0.embedding.text"]
        assert shown == (said if text else "__REDACTED__")
        assert ("embedding.embeddings.0.embedding.vector" in got) is vector
        assert got["embedding.model_name"] == "letters-a-h"


def test_the_older_name_of_the_vectors_switch_is_honoured(
    traces: Traces, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENINFERENCE_HIDE_EMBEDDING_VECTORS", "true")
    assert TraceSettings.resolve().hide_embeddings_vectors is True
    monkeypatch.delenv("OPENINFERENCE_HIDE_EMBEDDING_VECTORS")
    assert TraceSettings.resolve().hide_embeddings_vectors is False
    config = TraceConfig(hide_embedding_vectors=True)
    assert TraceSettings.from_config(config).hide_embeddings_vectors is True
    assert TraceSettings.from_config(TraceConfig()).hide_embeddings_vectors is False
    assert TraceSettings.from_config(TraceConfig(hide_embeddings_text=True)).hide_embeddings_text


CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


def _in_callers_trace(span: ReadableSpan) -> bool:
    assert span.context is not None and span.parent is not None
    return (
        f"{span.context.trace_id:032x}" == CALLER_TRACE
        and f"{span.parent.span_id:016x}" == CALLER_SPAN
    )


def test_the_servers_spans_join_the_trace_a_requests_traceparent_names(
    traces: Traces, tmp_path: Path
) -> None:
    """With no HTTP instrumentor, a run or search asked for over REST was a trace of its
    own; the caller's ``traceparent`` is continued now, for runs answered whole or
    streamed and for searches; a request without one is still a trace of its own."""
    db = SqliteDb(tmp_path / "server.db")
    agent = Agent(ScriptedModel(["One", "Two", "Three"]), db=db, agent_id="helper")
    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    run = {"message": "hello", "user_id": "ava"}
    with LocalClient(create_app(db, agent=agent, embedder=None)) as client:
        whole = client.post("/agents/helper/runs", json={**run, "stream": False}, headers=caller)
        assert whole.status_code == 200, whole.text
        streamed = client.post("/agents/helper/runs", json=run, headers=caller)
        assert streamed.status_code == 200 and "One" not in streamed.text
        searched = client.get(
            "/memories", params={"user_id": "ava", "search_content": "x"}, headers=caller
        )
        assert searched.status_code == 200, searched.text
        runs = traces.of_kind("AGENT")
        assert len(runs) == 2 and all(_in_callers_trace(s) for s in runs)
        assert _in_callers_trace(traces.one("Memory.search_user_memories"))
        traces.exporter.clear()
        alone = client.post("/agents/helper/runs", json={**run, "stream": False})
        assert alone.status_code == 200
        (own,) = traces.of_kind("AGENT")
        assert own.parent is None
    db.close()


def test_a_current_span_wins_over_the_requests_traceparent(traces: Traces, tmp_path: Path) -> None:
    """An HTTP instrumentor's server span continues the caller's trace itself: noted's spans
    go under it, not beside it."""
    db = SqliteDb(tmp_path / "server.db")
    agent = Agent(ScriptedModel(["One"]), db=db, agent_id="helper")
    app = create_app(db, agent=agent, embedder=None)
    tracer = traces.provider.get_tracer("http")

    async def instrumented(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        with tracer.start_as_current_span("POST /agents/helper/runs"):
            await app(scope, receive, send)

    caller = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    with LocalClient(instrumented) as client:
        body = {"message": "hello", "user_id": "ava", "stream": False}
        assert client.post("/agents/helper/runs", json=body, headers=caller).status_code == 200
    server = traces.one("POST /agents/helper/runs")
    (run,) = traces.of_kind("AGENT")
    assert run.parent is not None and server.context is not None
    assert run.parent.span_id == server.context.span_id
    db.close()
