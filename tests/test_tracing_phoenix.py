"""The memory lesson traced into a real Phoenix server (started by the harness), its spans
read back through Phoenix's REST API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import server_url

FLOW = Path(__file__).parent / "phoenix_flow.py"
PROJECT = "11-memory-flow"  # its own project: the seeds' test writes to "11-memory"


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return json.loads(answer.read())


def wait_for_spans(
    base: str, project: str, enough: Callable[[list[dict[str, Any]]], bool], timeout: float = 60
) -> list[dict[str, Any]]:
    """The project's spans once ``enough`` says so: Phoenix stores what it receives a
    moment later, so a read right after the export may not see all of it yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            spans = spans_of(base, project)
        except urllib.error.HTTPError as exc:  # the project is made by its first span
            if exc.code != 404:
                raise
            spans = []
        if enough(spans) or time.monotonic() > deadline:
            return spans
        time.sleep(0.25)


def spans_of(base: str, project: str = PROJECT) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = get(
            f"{base}/v1/projects/{project}/spans?limit=100"
            + (f"&cursor={cursor}" if cursor else "")
        )
        found.extend(page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return found


@pytest.mark.phoenix
def test_the_memory_lesson_in_phoenix(servers: dict[str, Any], tmp_path: Path) -> None:
    base = server_url(servers, "phoenix")
    env = {**os.environ, "PHOENIX_COLLECTOR_ENDPOINT": base}
    done = subprocess.run(
        [sys.executable, str(FLOW), str(tmp_path / "lesson.db"), PROJECT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    turns = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(turns) == 3
    assert turns[0]["session_id"] == turns[1]["session_id"] != turns[2]["session_id"]
    assert "Italian food" in turns[2]["answer"] and "Emma" in turns[2]["answer"]

    projects = {p["name"] for p in get(f"{base}/v1/projects")["data"]}
    assert PROJECT in projects
    spans = wait_for_spans(base, PROJECT, lambda found: len(found) >= 18)  # 6 a turn
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["context"]["trace_id"]].append(span)
    assert len(by_trace) == 3  # one trace per turn, the background extraction included

    roots = {}
    for members in by_trace.values():
        (root,) = [s for s in members if not s.get("parent_id")]
        assert root["name"] == "Assistant.run" and root["span_kind"] == "AGENT"
        roots[root["attributes"]["noted.run.id"]] = (root, members)
    assert set(roots) == {t["run_id"] for t in turns}

    for turn in turns:
        root, members = roots[turn["run_id"]]
        attributes = root["attributes"]
        assert attributes["session.id"] == turn["session_id"]
        assert attributes["user.id"] == "demo-user"
        assert attributes["output.value"] == turn["answer"]
        names = sorted(s["name"] for s in members)
        assert names == sorted(
            [
                "Assistant.run",
                "memory selection",
                "model call",
                "memory extraction",
                "memory selection",
                "memory manager model call",
            ]
        ), names
        ids = {s["context"]["span_id"]: s for s in members}
        extraction = next(s for s in members if s["name"] == "memory extraction")
        assert ids[extraction["parent_id"]]["name"] == "Assistant.run"
        manager = next(s for s in members if s["name"] == "memory manager model call")
        assert manager["span_kind"] == "LLM"
        assert ids[manager["parent_id"]]["name"] == "memory extraction"
        assert manager["attributes"]["llm.model_name"] == "gpt-4o-mini"

    # The first turn's extraction wrote two memories; the second session's prompt has them.
    _, first_members = roots[turns[0]["run_id"]]
    extraction = next(s for s in first_members if s["name"] == "memory extraction")
    assert len(extraction["attributes"]["noted.memory.added"]) == 2
    manager = next(s for s in first_members if s["name"] == "memory manager model call")
    operations = manager["attributes"]["llm.output_messages.0.message.content"]
    assert "User loves Italian food" in operations and "User is learning Spanish" in operations

    _, last_members = roots[turns[2]["run_id"]]
    call = next(s for s in last_members if s["name"] == "model call")
    found = call["attributes"]
    roles = [found.get(f"llm.input_messages.{i}.message.role") for i in range(3)]
    assert roles == ["system", "user", None]  # a new session: no history
    system = found["llm.input_messages.0.message.content"]
    assert "<memories_from_previous_interactions>" in system
    for fact in ("User loves Italian food", "User is learning Spanish", "Emma"):
        assert fact in system
    assert any(e["name"] == "First Token Stream Event" for e in call.get("events", []))
    selection = next(
        s
        for s in last_members
        if s["name"] == "memory selection" and s["parent_id"] == call["parent_id"]
    )
    assert selection["attributes"]["noted.memories.chosen"] == 3


LARGE_RUN = """
import sys, warnings
with warnings.catch_warnings():  # Phoenix's own imports warn about their dependencies
    warnings.simplefilter("ignore")
    from phoenix.otel import register
from noted import Agent
from noted.models import ModelResponse, ToolCall
from noted.testing import ScriptedModel

provider = register(
    project_name=sys.argv[2], auto_instrument=True, batch=True, protocol="grpc",
    endpoint=sys.argv[1], verbose=False,
)

def dump() -> str:
    '''A large report.'''
    return "START" + "x" * 5_000_000 + "END"

model = ScriptedModel([ModelResponse(tool_calls=[ToolCall("dump", {})]), "Read it."])
Agent(model, tools=[dump], user_id="u1").run("Dump it.")
provider.force_flush()
provider.shutdown()
"""


@pytest.mark.phoenix
def test_a_run_with_a_large_tool_result_reaches_phoenix_over_grpc(
    servers: dict[str, Any],
) -> None:
    """Phoenix's OTLP over gRPC takes at most 4 MiB a request and refuses a larger one
    with every span in it: a tool's 5,000,000-character result, bounded in its span,
    leaves the run's trace small enough to arrive whole."""
    base = server_url(servers, "phoenix")
    grpc = f"http://127.0.0.1:{servers['phoenix'].grpc_port}"
    project = "large-tool-result"
    done = subprocess.run(
        [sys.executable, "-c", LARGE_RUN, grpc, project],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    spans = wait_for_spans(base, project, lambda found: len(found) >= 4, timeout=30)
    assert sorted(s["name"] for s in spans) == ["Agent.run", "dump", "model call", "model call"]
    (tool,) = [s for s in spans if s["name"] == "dump"]
    result = tool["attributes"]["output.value"]
    assert result.startswith("STARTxx") and result.endswith("xxEND")
    assert len(result) < 100_200
