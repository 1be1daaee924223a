"""How large a model call's span grows: its messages' texts share one bound, so a long
conversation's span stays far under what a collector takes (Phoenix's OTLP over gRPC:
4 MiB a request), measured with the OTLP exporter's own protobuf encoding."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits

from noted import Agent
from noted import tracing as noted_tracing
from noted.limits import MAX_TRACE_MESSAGES_CHARS, MAX_TRACE_VALUE_CHARS
from noted.models import ModelResponse, ToolCall
from noted.testing import ScriptedModel
from traces import Traces, attrs

GRPC_LIMIT = 4 * 2**20  # Phoenix's gRPC receiver takes at most this a request
SPAN_LIMIT = 1_500_000  # far under it: several such spans fit one request


@pytest.fixture
def big_traces() -> Iterator[Traces]:
    """noted's spans with the attribute limit ``phoenix.otel.register`` sets (10,000)."""
    found = Traces(SpanLimits(max_span_attributes=10_000))
    noted_tracing.instrument(tracer_provider=found.provider)
    yield found
    noted_tracing.uninstrument()


def size(span: ReadableSpan) -> int:
    """The span's size as the OTLP exporters send it."""
    return int(encode_spans([span]).ByteSize())


def texts(span: ReadableSpan, prefix: str) -> dict[str, str]:
    return {
        k: v
        for k, v in attrs(span).items()
        if k.startswith(prefix) and (k.endswith(".content") or k.endswith(".arguments"))
    }


def test_a_model_call_reading_many_large_tool_results_stays_small(big_traces: Traces) -> None:
    """45 tool results of 150,000 characters each, bounded one by one to 100,000, made the
    second model call's span 2.4 MB (and 6.3 MB with 60 such messages): now the system
    prompt and the newest results are kept whole, the older ones cut or left out."""

    def dump(n: int) -> str:
        """A large report."""
        return f"<report {n}>" + "x" * 150_000 + f"</report {n}>"

    calls = [ToolCall("dump", {"n": i}, id=f"c{i}") for i in range(45)]
    model = ScriptedModel([ModelResponse(tool_calls=calls), "Done."])
    agent = Agent(model, tools=[dump], instructions="Be brief.", user_id="u1")
    agent.run("Dump them all.")

    _, second = big_traces.named("model call")
    assert size(second) < SPAN_LIMIT, size(second)
    found = texts(second, "llm.input_messages.")
    assert sum(map(len, found.values())) <= MAX_TRACE_MESSAGES_CHARS + 50 * 120
    contents = attrs(second)
    assert contents["llm.input_messages.0.message.role"] == "system"
    assert "Be brief." in contents["llm.input_messages.0.message.content"]
    newest = contents["llm.input_messages.47.message.content"]  # the last tool result
    assert newest.startswith("<report 44>") and newest.endswith("</report 44>")
    assert len(newest) <= MAX_TRACE_VALUE_CHARS + 200
    oldest = contents["llm.input_messages.3.message.content"]  # the first result
    assert re.fullmatch(
        r"\[\.\.\. the [\d,]+ characters of this text were left out \.\.\.\]", oldest
    )
    marks = [v for v in found.values() if "characters were left out of this text" in v]
    assert len(marks) == 1  # the one cut part-way says why
    assert f"at most {MAX_TRACE_MESSAGES_CHARS:,}" in marks[0]
    assert sum(size(s) for s in big_traces.spans) > GRPC_LIMIT  # the tool spans, see below


def test_a_model_answer_with_many_large_tool_calls_stays_small(big_traces: Traces) -> None:
    """An answer asking 45 tool calls whose arguments have 150,000 characters each: its
    output message's arguments share the bound too, the first calls kept whole."""

    def note(text: str) -> str:
        """Keep a note."""
        return "kept"

    calls = [ToolCall("note", {"text": f"{i}:" + "y" * 150_000}, id=f"c{i}") for i in range(45)]
    model = ScriptedModel([ModelResponse(tool_calls=calls), "Done."])
    Agent(model, tools=[note], user_id="u1").run("Note them.")

    first = big_traces.named("model call")[0]
    assert size(first) < SPAN_LIMIT, size(first)
    found = texts(first, "llm.output_messages.")
    assert len(found) == 45
    assert sum(map(len, found.values())) <= MAX_TRACE_MESSAGES_CHARS + 50 * 120
    shown = attrs(first)
    key = "llm.output_messages.0.message.tool_calls.{}.tool_call.function.arguments"
    assert shown[key.format(0)].startswith('{"text": "0:yyy')
    assert "left out" in shown[key.format(44)]


def test_a_short_conversation_is_not_cut(big_traces: Traces) -> None:
    """Under the bound nothing changes: each text whole (or bounded alone)."""
    model = ScriptedModel(["x" * 150_000])
    Agent(model, instructions="Be brief.", user_id="u1").run("m" * 120_000)
    shown = attrs(big_traces.one("model call"))
    assert shown["llm.input_messages.1.message.content"].startswith("m" * 66_000)
    assert "left out of this value" in shown["llm.input_messages.1.message.content"]
    assert "left out of this text" not in str(shown)
