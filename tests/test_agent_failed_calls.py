"""An answer whose tool call Gemini could not read (``MALFORMED_FUNCTION_CALL``,
``UNEXPECTED_TOOL_CALL``): the agent asks the model once more, and a second such answer
fails the run with an error that says so, rather than ending it with a blank answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from model_helpers import model_for
from noted import Agent, SqliteDb
from noted.errors import ModelOutputError
from noted.models.google import Gemini
from wire import SSE, Reply, WireServer


def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: The city.
    """
    return f"Sunny in {city}"


def failed(reason: str = "MALFORMED_FUNCTION_CALL") -> dict[str, Any]:
    """Gemini's answer when the model's function call could not be read: no content."""
    return {
        "candidates": [
            {"content": {}, "finishReason": reason, "finishMessage": "Malformed function call"}
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 0},
        "modelVersion": "gemini-2.5-flash",
    }


def said(text: str) -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3},
        "modelVersion": "gemini-2.5-flash",
    }


def run(wire: WireServer, tmp_path: Path, stream: bool = False) -> tuple[Agent, Any]:
    model = model_for(Gemini, "gemini-2.5-flash", wire.url)
    agent = Agent(model, db=SqliteDb(tmp_path / "s.db"), session_id="s1", tools=[get_weather])
    try:
        if stream:
            return agent, list(agent.run("Weather in Paris?", stream=True))[-1].result
        return agent, agent.run("Weather in Paris?")
    finally:
        model.close()


@pytest.mark.parametrize("reason", ["MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL"])
def test_a_call_gemini_could_not_read_is_asked_for_again(
    reason: str, wire: WireServer, tmp_path: Path
) -> None:
    wire.add(Reply(failed(reason)), Reply(said("Sunny.")))

    _, result = run(wire, tmp_path)

    assert (result.content, result.stop_reason, result.status) == ("Sunny.", "end", "completed")
    assert result.metrics.model_calls == 2
    assert len(wire.requests) == 2
    assert [m.role for m in result.messages] == ["user", "assistant"]  # no blank answer kept


def test_a_streamed_run_asks_again_too(wire: WireServer, tmp_path: Path) -> None:
    wire.add(SSE([failed()]), SSE([said("Sunny.")]))

    _, result = run(wire, tmp_path, stream=True)

    assert (result.content, result.stop_reason) == ("Sunny.", "end")


def test_a_second_unreadable_call_fails_the_run(wire: WireServer, tmp_path: Path) -> None:
    wire.add(Reply(failed()), Reply(failed()), Reply(said("never asked for")))

    with pytest.raises(ModelOutputError, match="MALFORMED_FUNCTION_CALL.*twice"):
        run(wire, tmp_path)

    assert len(wire.requests) == 2
    [stored] = SqliteDb(tmp_path / "s.db").get_runs("s1", "default")
    assert stored.status == "failed"
    assert stored.error is not None and "could not read" in stored.error
