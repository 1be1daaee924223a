"""Tracing an MCP server: each tool call is a TOOL span (its name, arguments, result, user
and status), read back from the OpenTelemetry SDK's in-memory exporter, with the server
called in process through the MCP SDK's own client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp.client.client import Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode
from starlette.testclient import TestClient

from noted import SqliteDb, UserMemory
from noted import tracing as noted_tracing
from noted.mcp import create_server
from noted.mcp.http import http_app
from noted.mcp.tools import TOOLS
from noted.memory import Memory
from noted.server.auth import Auth
from noted.tracing import TraceSettings
from traces import Traces, attrs

USER = "ava"
REDACTED = "__REDACTED__"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDb]:
    with contextlib.closing(SqliteDb(db_file=str(tmp_path / "noted.db"))) as store:
        Memory(store, embedder=None).add_user_memory(
            UserMemory("The user likes green tea", topics=["food"], memory_id="tea"), USER
        )
        yield store


def call_all(server: Any, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    """Call the server's tools one after another, in process; their results."""

    async def session() -> list[Any]:
        async with Client(server) as client:
            return [await client.call_tool(name, arguments) for name, arguments in calls]

    return asyncio.run(session())


EVERY_TOOL = [
    ("add_memory", {"memory": "The user lives in Lisbon", "topics": ["home"]}),
    ("search_memories", {"query": "green tea", "method": "keyword"}),
    ("list_memories", {"limit": 5}),
    ("get_memory", {"id": "tea"}),
    ("update_memory", {"id": "tea", "memory": "The user likes black tea"}),
    ("list_topics", {}),
    ("delete_memory", {"id": "tea"}),
]


def tool_spans(traces: Traces) -> list[ReadableSpan]:
    return traces.of_kind("TOOL")


def test_every_tool_call_is_a_tool_span(traces: Traces, db: SqliteDb) -> None:
    """One TOOL span per call, whichever the tool (searches included, with their RETRIEVER
    span inside, though the store's work runs in a worker thread): the tool, its
    arguments, its result, the user it was about, OK."""
    server = create_server(db, embedder=None, user_id=USER)
    results = call_all(server, EVERY_TOOL)
    assert not any(result.is_error for result in results)
    spans = tool_spans(traces)
    assert [span.name for span in spans] == [name for name, _ in EVERY_TOOL]
    described = {tool.name: tool for tool in TOOLS}
    for span, (name, arguments), result in zip(spans, EVERY_TOOL, results, strict=True):
        found = attrs(span)
        assert found["tool.name"] == name
        assert found["tool.description"] == described[name].description
        assert json.loads(found["tool.parameters"])["properties"].keys() == (
            described[name].properties.keys()
        )
        assert json.loads(found["input.value"]) == arguments
        assert found["input.mime_type"] == found["output.mime_type"] == "application/json"
        assert json.loads(found["output.value"]) == result.structured_content
        assert found["user.id"] == USER
        assert span.status.status_code is StatusCode.OK
    search = traces.one("Memory.search_user_memories")
    assert search.parent is not None and search.parent.span_id == spans[1].context.span_id
    assert attrs(search)["retrieval.documents.0.document.id"] == "tea"


def test_a_failed_call_is_an_error_with_its_exception(traces: Traces, db: SqliteDb) -> None:
    """A call the server refuses (no such memory, bad arguments, no such tool) is marked
    as an error with the exception's type and message, and its answer as the output."""
    server = create_server(db, embedder=None, user_id=USER)
    calls = [
        ("get_memory", {"id": "coffee"}),
        ("add_memory", {"memory": ""}),
        ("remember", {"memory": "The user likes tea"}),
    ]
    results = call_all(server, calls)
    assert all(result.is_error for result in results)
    spans = tool_spans(traces)
    assert [span.name for span in spans] == ["get_memory", "add_memory", "remember"]
    types = ["noted.errors.NotFoundError", "noted.errors.UserError", "noted.errors.UserError"]
    for span, result, kind in zip(spans, results, types, strict=True):
        [event] = span.events
        found = dict(event.attributes or {})
        assert event.name == "exception" and found["exception.type"] == kind
        assert found["exception.message"] in result.content[0].text
        assert "Traceback" in found["exception.stacktrace"] or kind.endswith("UserError")
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == f"{kind.rsplit('.', 1)[1]}: {found['exception.message']}"
        assert attrs(span)["output.value"] == result.content[0].text
    assert attrs(spans[0])["user.id"] == USER
    assert "tool.description" not in attrs(spans[2])  # no such tool: only its name


def test_a_refused_caller_is_an_error_with_no_user(traces: Traces, db: SqliteDb) -> None:
    """Over HTTP with ``auth``, a call without accepted credentials is refused before any
    user is settled: an error span with the refusal and no ``user.id``."""
    server = create_server(db, embedder=None, auth=Auth("a-key-0123456789abcdef0123456789"))
    [result] = call_all(server, [("list_topics", {})])
    assert result.is_error
    [span] = tool_spans(traces)
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.events[0].attributes or {})["exception.type"] == (
        "noted.server.auth.Unauthorized"
    )
    assert "user.id" not in attrs(span)


def test_hidden_memories_leave_ids_and_topics(traces: Traces, db: SqliteDb) -> None:
    """``hide_memories``: the memory texts in the arguments (a memory, a query) and in the
    results are ``__REDACTED__``, and so is a refusal's message (it may quote them); ids,
    topics, scores and the rest stay."""
    noted_tracing.instrument(
        tracer_provider=traces.provider, settings=TraceSettings(hide_memories=True)
    )
    server = create_server(db, embedder=None, user_id=USER)
    results = call_all(
        server, [*EVERY_TOOL, ("update_memory", {"id": "tea", "memory": "x" * 9999})]
    )
    assert [result.is_error for result in results] == [False] * len(EVERY_TOOL) + [True]
    spans = tool_spans(traces)
    texts = ("Lisbon", "green tea", "black tea", "xxxx")
    for span in spans:
        assert [v for v in attrs(span).values() if any(t in str(v) for t in texts)] == []
    added = attrs(spans[0])
    assert json.loads(added["input.value"]) == {"memory": REDACTED, "topics": ["home"]}
    shown = json.loads(added["output.value"])
    assert shown["memory"] == REDACTED and shown["topics"] == ["home"] and shown["id"]
    assert json.loads(attrs(spans[1])["input.value"])["query"] == REDACTED
    [found] = json.loads(attrs(spans[1])["output.value"])["memories"]
    assert found["id"] == "tea" and found["memory"] == REDACTED and found["topics"] == ["food"]
    assert json.loads(attrs(spans[6])["output.value"]) == {"deleted": "tea"}
    assert json.loads(attrs(spans[5])["output.value"])["topics"]
    failed = spans[-1]
    assert attrs(failed)["output.value"] == REDACTED
    assert dict(failed.events[0].attributes or {})["exception.message"] == REDACTED


def test_hidden_inputs_and_outputs(traces: Traces, db: SqliteDb) -> None:
    noted_tracing.instrument(
        tracer_provider=traces.provider,
        settings=TraceSettings(hide_inputs=True, hide_outputs=True),
    )
    server = create_server(db, embedder=None, user_id=USER)
    call_all(server, [EVERY_TOOL[0], ("get_memory", {"id": "coffee"})])
    added, failed = tool_spans(traces)
    for span in (added, failed):
        assert attrs(span)["input.value"] == attrs(span)["output.value"] == REDACTED
    assert dict(failed.events[0].attributes or {})["exception.message"] == REDACTED


def test_without_tracing_a_call_makes_no_span(db: SqliteDb) -> None:
    traces = Traces()
    noted_tracing.instrument(tracer_provider=traces.provider)
    noted_tracing.uninstrument()
    results = call_all(create_server(db, embedder=None, user_id=USER), EVERY_TOOL[:2])
    assert not any(result.is_error for result in results)
    assert traces.spans == []


GLOBAL_PROVIDER_SCRIPT = """
import asyncio, json, sys
from mcp.client.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from noted import tracing
from noted.mcp import create_server

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # as opentelemetry-instrument's configurator does
tracing.instrument()
server = create_server(sys.argv[1], embedder=None, user_id="ava")

async def main():
    async with Client(server) as client:
        await client.call_tool("search_memories", {"query": "tea", "method": "keyword"})

asyncio.run(main())
spans = {span.context.span_id: span for span in exporter.get_finished_spans()}
print(json.dumps({
    span.name: spans[span.parent.span_id].name if span.parent else None
    for span in spans.values()
}))
"""


def test_with_a_global_tracer_provider_a_call_is_inside_the_mcp_sdks_span(
    db: SqliteDb, tmp_path: Path
) -> None:
    """With the global tracer provider set (``opentelemetry-instrument noted mcp``), the
    MCP SDK's own span of the request (``tools/call <tool>``) holds noted's TOOL span,
    which holds the search's."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run(
        [sys.executable, "-c", GLOBAL_PROVIDER_SCRIPT, db.db_file],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": src},
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    parents = json.loads(done.stdout)  # and the client's other requests (tools/list, ...)
    assert {name: parents[name] for name in parents if "search" in name} == {
        "Memory.search_user_memories": "search_memories",
        "search_memories": "tools/call search_memories",
        "tools/call search_memories": None,
    }


def test_a_call_over_http_continues_the_trace_its_traceparent_names(
    traces: Traces, db: SqliteDb
) -> None:
    """With no HTTP instrumentor, a tool call over HTTP was a trace of its own unless the
    client put its trace context in the request's ``_meta``; the ``traceparent`` header is
    continued now."""
    caller_trace, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    auth = Auth("admin-key")
    app = http_app(create_server(db, embedder=None, auth=auth), auth, local_only=False)
    headers = {
        "Authorization": "Bearer admin-key",
        "Accept": "application/json, text/event-stream",
        "traceparent": f"00-{caller_trace}-{caller_span}-01",
    }
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "get_memory", "arguments": {"id": "tea", "user_id": USER}},
    }
    with TestClient(app) as client:
        answer = client.post("/mcp", json=call, headers=headers)
        assert answer.status_code == 200, answer.text
        assert "green tea" in answer.text
        alone = client.post("/mcp", json=call, headers={**headers, "traceparent": ""})
        assert alone.status_code == 200, alone.text
    first, second = tool_spans(traces)
    assert first.context is not None and first.parent is not None
    assert f"{first.context.trace_id:032x}" == caller_trace
    assert f"{first.parent.span_id:016x}" == caller_span
    assert second.parent is None
