"""Models that think before they answer, in calls whose answer noted caps (the memory
manager's 256 tokens): against local servers that speak the Gemini API's and the Chat
Completions API's wire formats."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from model_helpers import FAST, ask, build, complete, model_for, stream
from noted import Memory, MemoryManager, SqliteDb
from noted.errors import UserError
from noted.memory.manager import DEFAULT_MAX_TOKENS
from noted.models.google import Gemini
from noted.models.openai import Ollama, OpenAIChat
from wire import SSE, Recorded, Reply, WireServer

# -- Gemini ---------------------------------------------------------------------------------


def gemini(wire: WireServer, id: str = "gemini-2.5-flash", **kwargs: Any) -> Gemini:
    return model_for(Gemini, id, wire.url, **kwargs)


def gemini_answer(
    text: str | None, *, finish: str = "STOP", answered: int = 20, thoughts: int = 0
) -> dict[str, Any]:
    """A GenerateContentResponse: ``text`` (None: no part) after ``thoughts`` tokens of
    thinking."""
    parts = [] if text is None else [{"text": text}]
    usage: dict[str, Any] = {"promptTokenCount": 1900, "totalTokenCount": 1900 + thoughts}
    if answered:
        usage["candidatesTokenCount"] = answered
        usage["totalTokenCount"] += answered
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-2.5-flash"}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def generation(sent: Recorded) -> tuple[Any, Any]:
    """The thinking config a request sent (its keys camel-cased) and its output limit."""
    config = sent.body.get("generationConfig") or {}
    thinking = config.get("thinkingConfig")
    if thinking is not None:  # the SDK sends it as it was given: the API takes both
        thinking = {camel(key): value for key, value in thinking.items()}
    return thinking, config.get("maxOutputTokens")


OPERATIONS = json.dumps(
    {
        "facts_about_the_user": True,
        "operations": [
            {"op": "add", "id": None, "memory": "User lives in Oslo", "topics": ["home"]}
        ],
    }
)


def test_the_managers_gemini_call_spends_its_tokens_on_the_answer(
    wire: WireServer, tmp_path: Path
) -> None:
    # gemini-2.5-flash thinks by default, and its thinking counts against the 256 tokens:
    # asked without a thinking budget, it spent 254 of them thinking and saved nothing.
    wire.add(Reply(gemini_answer(OPERATIONS)))
    model = gemini(wire)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    try:
        update = memory.create_user_memories(message="I live in Oslo.", user_id="u")
    finally:
        model.close()

    [sent] = wire.requests
    assert generation(sent) == ({"thinkingBudget": 0}, DEFAULT_MAX_TOKENS)
    assert [m.memory for m in memory.get_user_memories(user_id="u")] == ["User lives in Oslo"]
    assert update.rejected == []


@pytest.mark.parametrize(
    ("model_id", "settings", "thinking", "limit"),
    [
        ("gemini-2.5-flash", {}, {"thinkingBudget": 0}, 256),
        ("gemini-2.5-flash-lite", {}, {"thinkingBudget": 0}, 256),
        ("models/gemini-2.5-flash-preview-09-2025", {}, {"thinkingBudget": 0}, 256),
        ("gemini-2.5-pro", {}, {"thinkingBudget": 128}, 256 + 128),  # 128 at least
        ("gemini-2.5-pro", {"max_tokens": 300}, {"thinkingBudget": 128}, 300),  # the ceiling
        ("gemini-3-pro-preview", {}, {"thinkingLevel": "LOW"}, 256 + 2048),
        ("gemini-3-flash-preview", {}, {"thinkingLevel": "LOW"}, 256 + 2048),
        ("gemini-2.0-flash", {}, None, 256),  # no thinking
        ("gemini-2.5-flash-image", {}, None, 256),
        ("some-gemini-proxy-name", {}, None, 256),  # not known: nothing guessed
    ],
)
def test_a_capped_gemini_request_bounds_known_models_thinking(
    wire: WireServer, model_id: str, settings: dict[str, Any], thinking: Any, limit: int
) -> None:
    wire.add(Reply(gemini_answer("ok")))
    complete(gemini(wire, model_id, **settings), ask(max_tokens=256))
    [sent] = wire.requests
    assert generation(sent) == (thinking, limit)


def test_an_uncapped_gemini_request_thinks_as_the_model_does(wire: WireServer) -> None:
    # the agent's calls: the model's own default thinking and limit
    wire.add(Reply(gemini_answer("ok")), Reply(gemini_answer("ok")))
    complete(gemini(wire), ask())
    complete(gemini(wire, "gemini-2.5-pro", max_tokens=8000), ask())
    assert [generation(r) for r in wire.requests] == [(None, None), (None, 8000)]


@pytest.mark.parametrize(
    ("model_id", "settings", "thinking", "capped_limit"),
    [
        ("gemini-2.5-flash", {"thinking_budget": 1024}, {"thinkingBudget": 1024}, 256 + 1024),
        ("gemini-2.5-flash", {"thinking_budget": -1}, {"thinkingBudget": -1}, 256 + 4096),
        ("gemini-2.5-pro", {"thinking_budget": 512}, {"thinkingBudget": 512}, 256 + 512),
        ("gemini-3-pro-preview", {"thinking_level": "high"}, {"thinkingLevel": "HIGH"}, 256 + 4096),
        (
            "gemini-3-flash-preview",
            {"thinking_level": "Minimal"},
            {"thinkingLevel": "MINIMAL"},
            256 + 1024,
        ),
        ("gemini-2.5-flash", {"thinking_budget": 0, "max_tokens": 200}, {"thinkingBudget": 0}, 200),
    ],
)
def test_the_users_gemini_thinking_setting_is_always_the_one_sent(
    wire: WireServer, model_id: str, settings: dict[str, Any], thinking: Any, capped_limit: int
) -> None:
    wire.add(Reply(gemini_answer("ok")), Reply(gemini_answer("ok")))
    model = gemini(wire, model_id, **settings)
    complete(model, ask(max_tokens=256))
    complete(model, ask())
    capped, uncapped = (generation(r) for r in wire.requests)
    assert capped == (thinking, capped_limit)
    assert uncapped == (thinking, settings.get("max_tokens"))


@pytest.mark.parametrize(
    "settings",
    [
        {"thinking_budget": -2},
        {"thinking_budget": 1.5},
        {"thinking_budget": True},
        {"thinking_level": ""},
        {"thinking_level": 2},
        {"thinking_budget": 0, "thinking_level": "low"},
    ],
)
def test_a_bad_gemini_thinking_setting_is_a_user_error(settings: dict[str, Any]) -> None:
    with pytest.raises(UserError, match="thinking_"):
        Gemini(api_key="k", **settings)


def test_a_gemini_answer_cut_off_while_thinking_says_what_to_change(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    # what a server sent: 254 tokens of thinking, then the limit, and no answer
    thought_out = gemini_answer(None, finish="MAX_TOKENS", answered=0, thoughts=254)
    wire.add(Reply(thought_out), SSE([thought_out]), Reply(gemini_answer("ok", thoughts=254)))
    model = gemini(wire, thinking_budget=-1)
    with caplog.at_level(logging.WARNING, logger="noted.models"):
        whole = complete(model, ask(max_tokens=256))
        streamed = build(stream(model, ask(max_tokens=256)))
        complete(model, ask(max_tokens=256))  # thought as long, but answered: no warning
    assert whole.cut_short and streamed.cut_short and whole.content is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for warning in warnings:
        assert "gemini-2.5-flash was cut off" in warning
        assert "thinking for 254 of its 254 output tokens" in warning
        assert "Gemini(thinking_budget=...)" in warning


# -- OpenAI ---------------------------------------------------------------------------------


def openai(wire: WireServer, id: str, **kwargs: Any) -> OpenAIChat:
    return model_for(OpenAIChat, id, wire.url + "/v1", **kwargs)


def usage(completion_tokens: int, reasoning_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": 1900,
        "completion_tokens": completion_tokens,
        "total_tokens": 1900 + completion_tokens,
        "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
    }


def openai_answer(
    content: str | None, *, finish: str = "stop", tokens: int = 20, reasoning: int = 0
) -> dict[str, Any]:
    """A chat completion of ``tokens`` completion tokens, ``reasoning`` of them reasoning."""
    message = {"role": "assistant", "content": content, "refusal": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_726_000_000,
        "model": "o4-mini-2025-04-16",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": usage(tokens, reasoning),
    }


def openai_stream(finish: str, tokens: int, reasoning: int) -> SSE:
    """A stream that ends at ``finish`` without a word of answer."""

    def chunk(choices: list[dict[str, Any]], counts: Any = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1_726_000_000,
            "model": "o4-mini-2025-04-16",
            "choices": choices,
            "usage": counts,
        }

    delta = {"role": "assistant", "content": ""}
    return SSE(
        [
            chunk([{"index": 0, "delta": delta, "finish_reason": None}]),
            chunk([{"index": 0, "delta": {}, "finish_reason": finish}]),
            chunk([], usage(tokens, reasoning)),
            "[DONE]",
        ]
    )


def reasoning(sent: Recorded) -> tuple[Any, Any]:
    """The reasoning effort a request sent and its token limit (sent to a server other
    than OpenAI's own as ``max_tokens``)."""
    return sent.body.get("reasoning_effort"), sent.body.get("max_tokens")


def test_the_managers_openai_call_spends_its_tokens_on_the_answer(
    wire: WireServer, tmp_path: Path
) -> None:
    # gpt-5-mini reasons at medium effort by default, and its reasoning counts against
    # the 256 tokens: a reasoning model could answer nothing within them.
    wire.add(Reply(openai_answer(OPERATIONS)))
    model = openai(wire, "gpt-5-mini")
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    try:
        update = memory.create_user_memories(message="I live in Oslo.", user_id="u")
    finally:
        model.close()

    [sent] = wire.requests
    assert reasoning(sent) == ("minimal", DEFAULT_MAX_TOKENS + 1024)
    assert [m.memory for m in memory.get_user_memories(user_id="u")] == ["User lives in Oslo"]
    assert update.rejected == []


@pytest.mark.parametrize(
    ("model_id", "settings", "effort", "limit"),
    [
        ("o4-mini", {}, "low", 256 + 2048),
        ("o3-mini-2025-01-31", {}, "low", 256 + 2048),
        ("o3", {}, "low", 256 + 2048),
        ("o1", {}, "low", 256 + 2048),
        ("o1-mini", {}, None, 256 + 4096),  # it takes no reasoning_effort
        ("gpt-5", {}, "minimal", 256 + 1024),
        ("gpt-5-nano-2025-08-07", {}, "minimal", 256 + 1024),
        ("gpt-5-codex", {}, "low", 256 + 2048),  # no "minimal" for it
        ("gpt-5.1", {}, "low", 256 + 2048),
        ("gpt-5.1-codex-mini", {}, "low", 256 + 2048),
        ("gpt-5-chat-latest", {}, None, 256 + 1024),  # its effort is not to be set
        ("gpt-5.2-pro", {}, None, 256 + 2048),
        ("o4-mini", {"max_tokens": 1000}, "low", 1000),  # the model's own is the ceiling
        ("gpt-4o-mini", {}, None, 256),  # no reasoning
        ("gpt-4.1", {}, None, 256),
        ("Qwen/Qwen2.5-7B-Instruct", {}, None, 256),  # not known: nothing guessed
    ],
)
def test_a_capped_openai_request_bounds_known_models_reasoning(
    wire: WireServer, model_id: str, settings: dict[str, Any], effort: Any, limit: int
) -> None:
    wire.add(Reply(openai_answer("ok")))
    complete(openai(wire, model_id, **settings), ask(max_tokens=256))
    [sent] = wire.requests
    assert reasoning(sent) == (effort, limit)
    assert ("reasoning_effort" in sent.body) == (effort is not None)


def test_an_uncapped_openai_request_reasons_as_the_model_does(wire: WireServer) -> None:
    wire.add(Reply(openai_answer("ok")), Reply(openai_answer("ok")))
    complete(openai(wire, "o4-mini"), ask())
    complete(openai(wire, "gpt-5", max_tokens=8000), ask())
    assert [reasoning(r) for r in wire.requests] == [(None, None), (None, 8000)]
    assert all("reasoning_effort" not in r.body for r in wire.requests)


@pytest.mark.parametrize(
    ("model_id", "effort", "capped_limit"),
    [
        ("o4-mini", "high", 256 + 4096),
        ("gpt-5", "none", 256),
        ("gpt-5.1", " medium ", 256 + 4096),
        ("gpt-oss-20b", "low", 256 + 2048),  # a model the table does not know
    ],
)
def test_the_users_reasoning_effort_is_always_the_one_sent(
    wire: WireServer, model_id: str, effort: str, capped_limit: int
) -> None:
    wire.add(Reply(openai_answer("ok")), Reply(openai_answer("ok")))
    model = openai(wire, model_id, reasoning_effort=effort)
    complete(model, ask(max_tokens=256))
    complete(model, ask())
    capped, uncapped = (reasoning(r) for r in wire.requests)
    assert capped == (effort.strip(), capped_limit)
    assert uncapped == (effort.strip(), None)


def test_ollama_takes_a_reasoning_effort(wire: WireServer) -> None:
    wire.add(Reply(openai_answer("ok")))
    model = Ollama("gpt-oss:20b", host=wire.url, reasoning_effort="low", retry=FAST)
    complete(model, ask(max_tokens=256))
    assert [reasoning(r) for r in wire.requests] == [("low", 256 + 2048)]


@pytest.mark.parametrize("bad", ["", "  ", 1, True])
def test_a_bad_reasoning_effort_is_a_user_error(bad: object) -> None:
    with pytest.raises(UserError, match="reasoning_effort"):
        OpenAIChat("o4-mini", api_key="k", reasoning_effort=bad)  # type: ignore[arg-type]


def test_an_openai_answer_cut_off_while_reasoning_says_what_to_change(
    wire: WireServer, caplog: pytest.LogCaptureFixture
) -> None:
    # all of max_completion_tokens spent reasoning: empty content, finish reason "length"
    wire.add(Reply(openai_answer("", finish="length", tokens=2304, reasoning=2304)))
    wire.add(openai_stream("length", 2304, 2304))
    wire.add(Reply(openai_answer("ok", tokens=2304, reasoning=2290)))  # answered: no warning
    model = openai(wire, "o4-mini")
    with caplog.at_level(logging.WARNING, logger="noted.models"):
        whole = complete(model, ask(max_tokens=256))
        streamed = build(stream(model, ask(max_tokens=256)))
        complete(model, ask(max_tokens=256))
    assert whole.cut_short and streamed.cut_short and not whole.content
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    for warning in warnings:
        assert "openai o4-mini was cut off" in warning
        assert "thinking for 2304 of its 2304 output tokens" in warning
        assert "OpenAIChat(reasoning_effort=...)" in warning
