"""The memory manager's help for small models: a per-request output limit, with a cut-off
answer dropped."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from noted import Memory, MemoryManager, SqliteDb, UserError
from noted.memory.manager import DEFAULT_MAX_TOKENS
from noted.models import ModelRequest, ModelResponse
from noted.models.types import Message
from noted.testing import ScriptedModel


def add(memory: str, *topics: str) -> dict[str, object]:
    return {"op": "add", "id": None, "memory": memory, "topics": list(topics) or ["x"]}


def answer(*items: dict[str, object]) -> str:
    return json.dumps({"facts_about_the_user": True, "operations": list(items)})


def stored(memory: Memory, user: str = "u") -> list[str]:
    return sorted(m.memory for m in memory.get_user_memories(user_id=user))


# -- the output limit ------------------------------------------------------------------------


def test_the_manager_asks_for_a_short_answer(tmp_path: Path) -> None:
    for setting, sent in (
        ({}, DEFAULT_MAX_TOKENS),
        ({"max_tokens": 90}, 90),
        ({"max_tokens": None}, None),
    ):
        model = ScriptedModel([answer(add("User likes tea"))])
        manager = MemoryManager(model=model, **setting)  # type: ignore[arg-type]
        memory = Memory(db=SqliteDb(tmp_path / f"{sent}.db"), memory_manager=manager)
        memory.create_user_memories(message="I like tea.", user_id="u")
        [request] = model.requests
        assert request.max_tokens == sent
        assert stored(memory) == ["User likes tea"]
    assert 100 <= DEFAULT_MAX_TOKENS <= 512  # room for a plan of a few operations


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "256"])
def test_a_bad_limit_is_a_user_error(bad: object) -> None:
    with pytest.raises(UserError, match="max_tokens"):
        MemoryManager(max_tokens=bad)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="max_tokens"):
        ModelRequest([Message("user", "hi")], max_tokens=bad)  # type: ignore[arg-type]


def test_the_lower_of_the_models_and_the_requests_limit_applies() -> None:
    request = ModelRequest([Message("user", "hi")], max_tokens=256)
    assert request.token_limit(1024) == 256
    assert request.token_limit(100) == 100
    assert request.token_limit(None) == 256
    assert ModelRequest([Message("user", "hi")]).token_limit(None) is None
    assert ModelRequest([Message("user", "hi")]).token_limit(512) == 512


@pytest.mark.parametrize("finish", ["length", "max_tokens", "MAX_TOKENS"])
def test_an_answer_cut_off_at_the_limit_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, finish: str
) -> None:
    # Whole JSON, so only the finish reason tells that the model had more to say.
    text = answer(add("User lives in Oslo"), add("User likes fjords"))
    model = ScriptedModel([ModelResponse(content=text, finish_reason=finish)])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        update = memory.create_user_memories(message="What is Norway like in May?", user_id="u")
    assert stored(memory) == []
    assert update.operations == [] and update.memory_ids == []
    [reason] = update.rejected
    assert f"cut off at max_tokens={DEFAULT_MAX_TOKENS}" in reason
    assert "cut off" in caplog.text


def test_an_answer_that_ends_is_used(tmp_path: Path) -> None:
    # The same answer, ended by the model rather than by the limit, is written.
    text = answer(add("User lives in Oslo"))
    model = ScriptedModel([ModelResponse(content=text, finish_reason="stop")])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    update = memory.create_user_memories(message="I live in Oslo.", user_id="u")
    assert stored(memory) == ["User lives in Oslo"] and update.rejected == []
