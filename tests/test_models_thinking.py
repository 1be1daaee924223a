"""Models that think before they answer, in calls whose answer noted caps (the memory
manager's 256 tokens): against local servers that speak the Gemini API's wire format."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from model_helpers import ask, build, complete, model_for, stream
from noted import Memory, MemoryManager, SqliteDb
from noted.errors import UserError
from noted.memory.manager import DEFAULT_MAX_TOKENS
from noted.models.google import Gemini
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
    manager = MemoryManager(model=gemini(wire))
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=manager)

    update = memory.create_user_memories(message="I live in Oslo.", user_id="u")

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
