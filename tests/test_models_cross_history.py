"""A session begun with one provider and continued with another: the tool calls and
results one provider's answers left in the history go to the next provider in a shape its
API takes (ids it accepts, each call answered, each result naming its call), against local
servers that validate the conversation as the vendors' APIs do (tests/wire_rules.py); and
to LlamaCpp, on a stand-in ``llama_cpp`` module, as one call a turn, each with its result."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from model_helpers import model_for
from noted import Agent, SqliteDb
from noted.models._ids import ANTHROPIC_IDS, wire_ids
from noted.models.anthropic import Claude
from noted.models.base import BaseChatModel
from noted.models.google import Gemini
from noted.models.llamacpp import LlamaCpp, _chat_messages
from noted.models.openai import OpenAIChat
from noted.models.types import Message, ModelResponse, ToolCall
from noted.testing import ScriptedModel
from wire import Recorded, Reply, WireServer, serve
from wire_rules import anthropic_rules, gemini_rules, openai_rules

CITIES = ("Paris", "Rome")


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city.
    """
    return f"Sunny in {city}"


# -- what each provider's server answers --------------------------------------------------------


def openai_answer(run: int, call_id: Callable[[int, int], str]) -> list[Reply]:
    calls = [
        {
            "id": call_id(run, k),
            "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
        }
        for k, city in enumerate(CITIES)
    ]
    return [_openai(None, calls, "tool_calls"), _openai("Done.", None, "stop")]


def _openai(content: str | None, calls: Any, finish: str) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if calls is not None:
        message["tool_calls"] = calls
    return Reply(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1_726_000_000,
            "model": "gpt-4o-mini",
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
        }
    )


def anthropic_answer(run: int, call_id: Callable[[int, int], str]) -> list[Reply]:
    uses = [
        {"type": "tool_use", "id": call_id(run, k), "name": "get_weather", "input": {"city": c}}
        for k, c in enumerate(CITIES)
    ]
    return [_anthropic(uses, "tool_use"), _anthropic([{"type": "text", "text": "Done."}])]


def _anthropic(content: list[dict[str, Any]], stop: str = "end_turn") -> Reply:
    return Reply(
        {
            "id": "msg_01",
            "type": "message",
            "role": "assistant",
            "model": "claude-sonnet-4-6",
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {"input_tokens": 9, "output_tokens": 3},
        }
    )


def gemini_answer(run: int, call_id: Callable[[int, int], str] | None) -> list[Reply]:
    calls: list[dict[str, Any]] = []
    for k, city in enumerate(CITIES):
        call: dict[str, Any] = {"name": "get_weather", "args": {"city": city}}
        if call_id is not None:
            call["id"] = call_id(run, k)
        calls.append({"functionCall": call})
    return [_gemini(calls), _gemini([{"text": "Done."}])]


def _gemini(parts: list[dict[str, Any]]) -> Reply:
    return Reply(
        {
            "candidates": [
                {"content": {"role": "model", "parts": parts}, "index": 0, "finishReason": "STOP"}
            ],
            "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3},
            "modelVersion": "gemini-2.5-flash",
        }
    )


@dataclass(frozen=True)
class Provider:
    """A provider as the matrix uses it: its model aimed at a server, its answers to one
    run (two calls, then "Done."), and the API's validation."""

    name: str
    make: Callable[[str], BaseChatModel]
    answers: Callable[[int], list[Reply]]
    rules: Callable[[Recorded], Reply | None]


def _openai_writer(
    name: str,
    call_id: Callable[[int, int], str],
    rules: Callable[[Recorded], Reply | None] = openai_rules,
) -> Provider:
    return Provider(
        name,
        lambda url: model_for(OpenAIChat, "gpt-4o-mini", url + "/v1"),
        lambda run: openai_answer(run, call_id),
        rules,
    )


def _compatible(sent: Recorded) -> Reply | None:
    """A compatible server, which takes the ids it gave back as they are."""
    return None


OPENAI = _openai_writer("openai", lambda run, k: f"call_Qw8TzXy{run}{k}LmN4")
CLAUDE = Provider(
    "anthropic",
    lambda url: model_for(Claude, "claude-sonnet-4-6", url),
    lambda run: anthropic_answer(run, lambda r, k: f"toolu_01A09q90qw90lq91783{r}{k}"),
    anthropic_rules,
)
GEMINI = Provider(
    "google",
    lambda url: model_for(Gemini, "gemini-2.5-flash", url),
    lambda run: gemini_answer(run, None),
    gemini_rules,
)
READERS = (OPENAI, CLAUDE, GEMINI)

# The servers whose answers write a session's history, with the ids they give calls.
WRITERS = (
    *READERS,
    # Gemini giving its calls ids of its own
    Provider(
        "google-ids",
        GEMINI.make,
        lambda run: gemini_answer(run, lambda r, k: f"fc{r}{k}x7Lq"),
        gemini_rules,
    ),
    # vLLM: "chatcmpl-tool-" and 32 hex digits, 46 characters
    _openai_writer("vllm", lambda run, k: f"chatcmpl-tool-{run:016x}{k:016x}", _compatible),
    # Kimi K2 behind an OpenAI-compatible server: "functions.<name>:<n>"
    _openai_writer("kimi", lambda run, k: f"functions.get_weather:{2 * run + k}", _compatible),
    # a compatible server that numbers the calls of each answer from 0
    _openai_writer("numbered", lambda run, k: f"call_{k}", _compatible),
)


def _scripted(run: int) -> ModelResponse:
    calls = [ToolCall("get_weather", {"city": c}) for c in CITIES]
    return ModelResponse(tool_calls=calls)


@pytest.fixture
def writer_wire() -> Iterator[WireServer]:
    yield from serve()


def agent(model: BaseChatModel, tmp_path: Path) -> Agent:
    return Agent(
        model,
        db=SqliteDb(tmp_path / "s.db"),
        session_id="s1",
        tools=[get_weather],
        add_history_to_context=True,
    )


def write_history(writer: Provider | None, wire: WireServer, tmp_path: Path) -> None:
    """Two runs of ``writer`` (None: noted's own ids, as a model that gives none, such as
    llama.cpp, leaves them), each with two calls answered."""
    if writer is None:
        model: BaseChatModel = ScriptedModel([_scripted(0), "Done.", _scripted(1), "Done."])
    else:
        wire.check = writer.rules
        wire.add(*writer.answers(0), *writer.answers(1))
        model = writer.make(wire.url)
    author = agent(model, tmp_path)
    try:
        for question in ("Weather?", "And now?"):
            assert author.run(question).content == "Done."
    finally:
        model.close()  # its connections on noted's background loop


def replayed_pairs(reader: Provider, sent: Recorded) -> list[tuple[str, str]]:
    """(the city a call asked for, the result given for that call) in a request."""
    body = sent.body
    if reader is GEMINI:
        calls: dict[str, list[str]] = {}
        pairs = []
        for content in body["contents"]:
            for part in content["parts"]:
                if "functionCall" in part:
                    calls.setdefault(part["functionCall"]["name"], []).append(
                        part["functionCall"]["args"]["city"]
                    )
                elif "functionResponse" in part:
                    city = calls[part["functionResponse"]["name"]].pop(0)
                    pairs.append((city, part["functionResponse"]["response"]["result"]))
        return pairs
    if reader is CLAUDE:
        asked = {
            b["id"]: b["input"]["city"]
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "tool_use"
        }
        return [
            (asked[b["tool_use_id"]], b["content"])
            for m in body["messages"]
            if isinstance(m["content"], list)
            for b in m["content"]
            if b["type"] == "tool_result"
        ]
    asked = {
        c["id"]: json.loads(c["function"]["arguments"])["city"]
        for m in body["messages"]
        for c in m.get("tool_calls") or ()
    }
    return [
        (asked[m["tool_call_id"]], m["content"]) for m in body["messages"] if m["role"] == "tool"
    ]


@pytest.mark.parametrize("reader", READERS, ids=lambda p: p.name)
@pytest.mark.parametrize("writer", [*WRITERS, None], ids=lambda p: p.name if p else "noted")
def test_history_of_one_provider_replays_through_another(
    writer: Provider | None,
    reader: Provider,
    writer_wire: WireServer,
    wire: WireServer,
    tmp_path: Path,
) -> None:
    write_history(writer, writer_wire, tmp_path)
    wire.check = reader.rules
    wire.add(*reader.answers(2))

    model = reader.make(wire.url)
    try:
        result = agent(model, tmp_path).run("And tomorrow?")
    finally:
        model.close()

    assert result.content == "Done.", result.error
    history = wire.requests[0]
    assert replayed_pairs(reader, history) == [
        (city, f"Sunny in {city}") for _ in range(2) for city in CITIES
    ]
    again = wire.requests[1]  # the run's own calls, after the history, pair up as well
    assert replayed_pairs(reader, again)[-2:] == [(c, f"Sunny in {c}") for c in CITIES]


def test_ids_an_api_takes_are_sent_as_they_are() -> None:
    calls = [ToolCall("get_weather", {"city": c}, id=f"toolu_{c}") for c in CITIES]
    messages = [
        Message("user", "Weather?"),
        Message("assistant", None, tool_calls=calls),
        *(Message("tool", "Sunny", tool_call_id=c.id, name=c.name) for c in calls),
    ]

    assert all(a is b for a, b in zip(wire_ids(messages, ANTHROPIC_IDS), messages, strict=True))


def test_repeated_ids_in_one_answer_pair_with_their_results_in_order() -> None:
    calls = [ToolCall("get_weather", {"city": c}, id="call:0") for c in CITIES]
    messages = [
        Message("user", "Weather?"),
        Message("assistant", None, tool_calls=calls),
        *(Message("tool", f"Sunny in {c}", tool_call_id="call:0") for c in CITIES),
    ]

    sent = wire_ids(messages, ANTHROPIC_IDS)

    first, second = (call.id for call in sent[1].tool_calls)
    assert first != second
    assert all(ANTHROPIC_IDS.takes(i) for i in (first, second))
    assert [m.tool_call_id for m in sent[2:]] == [first, second]
    assert wire_ids(messages, ANTHROPIC_IDS) == sent  # the same at every call
    assert messages[1].tool_calls == calls  # the session's own ids are kept


# -- llama.cpp, whose model makes one call a turn ------------------------------------------------


class RecordingLlama:
    """Stands in for ``llama_cpp.Llama`` (no model is loaded): gives ``answers`` in turn,
    as llama-cpp-python gives a chat completion, and keeps the chat turns of each call."""

    def __init__(self, answers: Sequence[str]) -> None:
        self.answers = list(answers)
        self.sent: list[list[dict[str, Any]]] = []

    def create_chat_completion(self, **params: Any) -> dict[str, Any]:
        self.sent.append(params["messages"])
        message = {"role": "assistant", "content": self.answers.pop(0)}
        return {
            "choices": [{"message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3},
        }

    def close(self) -> None:
        pass


def llamacpp_reader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, llama: RecordingLlama
) -> LlamaCpp:
    """LlamaCpp on a stand-in ``llama_cpp`` module whose model is ``llama``."""
    sdk = types.ModuleType("llama_cpp")
    sdk.Llama = lambda **settings: llama  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "llama_cpp", sdk)
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF")
    return LlamaCpp(path)


def llama_pairs(turns: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(the city a call asked for, the result given for it) in llama's chat turns, where
    each call must be followed by its result and each result follow its call."""
    pairs = []
    for index, turn in enumerate(turns):
        if turn["role"] == "assistant" and turn["content"].startswith('{"tool"'):
            city = json.loads(turn["content"])["arguments"]["city"]
            result = turns[index + 1]
            assert result["role"] == "user", turns
            pairs.append((city, result["content"].removeprefix("Result of get_weather: ")))
        elif turn["content"].startswith("Result of"):
            assert turns[index - 1]["content"].startswith('{"tool"'), turns  # not an orphan
    return pairs


@pytest.mark.parametrize("writer", [*WRITERS, None], ids=lambda p: p.name if p else "noted")
def test_history_with_parallel_calls_replays_through_llamacpp(
    writer: Provider | None,
    writer_wire: WireServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_history(writer, writer_wire, tmp_path)
    oslo = json.dumps({"tool": "get_weather", "arguments": {"city": "Oslo"}})
    llama = RecordingLlama([oslo, json.dumps({"answer": "Done."})])

    model = llamacpp_reader(tmp_path, monkeypatch, llama)
    try:
        result = agent(model, tmp_path).run("And tomorrow?")
    finally:
        model.close()

    assert result.content == "Done.", result.error
    history, again = llama.sent
    assert llama_pairs(history) == [(c, f"Sunny in {c}") for _ in range(2) for c in CITIES]
    assert llama_pairs(again)[-1] == ("Oslo", "Sunny in Oslo")
    # the turns alternate, as strict chat templates require
    roles = [turn["role"] for turn in again[1:]]
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"] * (len(roles) % 2)


def test_llamacpp_pairs_repeated_ids_in_order_and_keeps_results_of_no_call() -> None:
    calls = [ToolCall("get_weather", {"city": c}, id="call:0") for c in CITIES]
    turns = _chat_messages(
        [
            Message("user", "Weather?"),
            Message("assistant", None, tool_calls=[*calls, ToolCall("get_time", id="t")]),
            Message("tool", "Sunny in Paris", tool_call_id="call:0"),
            Message("tool", "Late", tool_call_id="gone", name="get_time"),
            Message("tool", "Sunny in Rome", tool_call_id="call:0"),
        ]
    )

    assert [(t["role"], t["content"]) for t in turns[1:]] == [
        ("assistant", '{"tool": "get_weather", "arguments": {"city": "Paris"}}'),
        ("user", "Result of get_weather: Sunny in Paris"),
        ("assistant", '{"tool": "get_weather", "arguments": {"city": "Rome"}}'),
        ("user", "Result of get_weather: Sunny in Rome"),
        ("assistant", '{"tool": "get_time", "arguments": {}}'),  # no result came
        ("user", "Result of get_time: Late"),  # a result of no call of the answer
    ]
