"""How large a model call's span grows: its messages' texts share one bound, so a long
conversation's span stays far under what a collector takes (Phoenix's OTLP over gRPC:
4 MiB a request), measured with the OTLP exporter's own protobuf encoding."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits

from noted import Agent, Memory, SqliteDb
from noted import tracing as noted_tracing
from noted.limits import MAX_TRACE_MESSAGES_CHARS, MAX_TRACE_VALUE_CHARS, MAX_TRACE_VECTOR_NUMBERS
from noted.models import ModelResponse, ToolCall
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.schema import UserMemory
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


def utf8(values: Iterator[str] | list[str]) -> int:
    return sum(len(v.encode()) for v in values)


def test_a_conversation_in_chinese_is_bounded_in_bytes(big_traces: Traces) -> None:
    """The bound counted characters: 45 tool results of 150,000 Chinese characters (3 bytes
    each in UTF-8) made the second model call's span 1.2 MB; now its texts hold at most
    MAX_TRACE_MESSAGES_CHARS bytes together."""

    def dump(n: int) -> str:
        """A large report."""
        return f"<report {n}>" + "語" * 150_000

    calls = [ToolCall("dump", {"n": i}, id=f"c{i}") for i in range(45)]
    model = ScriptedModel([ModelResponse(tool_calls=calls), "Done."])
    Agent(model, tools=[dump], instructions="Be brief.", user_id="u1").run("Dump them all.")

    _, second = big_traces.named("model call")
    assert size(second) < 700_000, size(second)  # with input.value: 100,000 characters
    found = texts(second, "llm.input_messages.")
    assert utf8(list(found.values())) <= MAX_TRACE_MESSAGES_CHARS + 50 * 200
    newest = attrs(second)["llm.input_messages.47.message.content"]
    assert newest.startswith("<report 44>語語") and newest.endswith("語語")


def many_memories(path: Path, text: str, count: int = 500) -> Memory:
    memory = Memory(db=SqliteDb(path), embedder=None)
    memory.import_user_memories(
        UserMemory(memory=f"fact {i} " + text * 4_990, user_id="ann", topics=["t"])
        for i in range(count)
    )
    return memory


@pytest.mark.parametrize(("text", "before"), [("x", 2_622_600), ("語", 7_612_600)])
def test_a_search_returning_many_long_memories_stays_small(
    big_traces: Traces, tmp_path: Path, text: str, before: int
) -> None:
    """500 memories of 5,000 characters found by one search made a span of ``before``
    bytes (Chinese text: 7.6 MB); now the documents share the bound in rank order and the
    others are counted in ``noted.memories.left_out``."""
    memory = many_memories(tmp_path / "m.db", text)
    found = memory.search_user_memories(user_id="ann", retrieval_method="last_n", limit=500)
    assert len(found) == 500

    span = big_traces.one("Memory.search_user_memories")
    assert size(span) < 400_000, (size(span), before)
    shown = attrs(span)
    contents = [v for k, v in shown.items() if k.endswith(".document.content")]
    assert utf8(contents) <= MAX_TRACE_MESSAGES_CHARS
    kept = len(contents)
    assert kept > 10
    assert shown["noted.memories.chosen"] == 500
    assert shown["noted.memories.left_out"] == 500 - kept
    ids = [shown[f"retrieval.documents.{i}.document.id"] for i in range(kept)]
    assert ids == [m.memory_id for m in found[:kept]]  # in rank order
    assert f"retrieval.documents.{kept}.document.id" not in shown


def test_a_search_returning_few_memories_keeps_them_all(big_traces: Traces, tmp_path: Path) -> None:
    memory = many_memories(tmp_path / "m.db", "x", count=5)
    memory.search_user_memories(user_id="ann", retrieval_method="last_n", limit=5)
    shown = attrs(big_traces.one("Memory.search_user_memories"))
    assert len([k for k in shown if k.endswith(".document.content")]) == 5
    assert "noted.memories.left_out" not in shown


class WideEmbedder(BaseEmbedder):
    """Vectors of 1,536 numbers, as OpenAI's text-embedding-3-small makes."""

    batch_size = 512

    def __init__(self) -> None:
        super().__init__("wide", 1536)

    def _embed_batch(self, texts: list[str], kind: Kind) -> npt.NDArray[np.float32]:
        rows = [[float(len(t) % 7 + 1)] + [0.5] * 1535 for t in texts]
        return np.asarray(rows, dtype=np.float32)


def test_a_reindex_batch_makes_a_small_embedding_span(big_traces: Traces, tmp_path: Path) -> None:
    """A reindex batch embeds 256 memories: with 5,000 characters each and vectors of
    1,536 numbers its span was 5.6 MB (the vectors alone 4.3 MB), more than Phoenix's gRPC
    receiver takes; now the texts share MAX_TRACE_MESSAGES_CHARS bytes and the vectors
    MAX_TRACE_VECTOR_NUMBERS numbers, the first of the batch kept whole."""
    many_memories(tmp_path / "m.db", "x", count=300)
    Memory(db=SqliteDb(tmp_path / "m.db"), embedder=WideEmbedder()).reindex_user_memories()

    first = big_traces.named("memory embedding")[0]
    assert size(first) < SPAN_LIMIT, size(first)
    shown = attrs(first)
    key = "embedding.embeddings.{}.embedding.{}"
    kept_texts = len([k for k in shown if k.endswith(".embedding.text")])
    kept_vectors = len([k for k in shown if k.endswith(".embedding.vector")])
    found = [v for k, v in shown.items() if k.endswith(".embedding.text")]
    assert utf8(found) <= MAX_TRACE_MESSAGES_CHARS + 200
    assert kept_texts == 60 and shown["noted.embeddings.texts_left_out"] == 256 - kept_texts
    assert kept_vectors == MAX_TRACE_VECTOR_NUMBERS // 1536
    assert shown["noted.embeddings.vectors_left_out"] == 256 - kept_vectors
    assert shown[key.format(0, "text")].startswith("fact ")
    assert len(shown[key.format(0, "vector")]) == 1536
    assert key.format(kept_vectors, "vector") not in shown
    assert '"count": 256' in shown["metadata"]
