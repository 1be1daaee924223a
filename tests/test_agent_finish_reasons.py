"""How a run ends on each of Gemini's finish reasons beyond the usual ones (the SDK's
``FinishReason``): the provider's tool limit (``TOO_MANY_TOOL_CALLS``) ends it as this
agent's own does, content filters as refused, ``CONTINUATION`` as cut off, an unreadable
answer is asked for again, and a conversation refused for a missing thought signature fails
the run at once, rather than each ending it as a blank answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from noted import SqliteDb
from noted.errors import ModelError
from test_agent_failed_calls import failed, run, said
from wire import SSE, Reply, WireServer


def finished(reason: str, *parts: dict[str, Any]) -> dict[str, Any]:
    """Gemini's answer with ``parts`` and the finish reason ``reason``."""
    return {
        "candidates": [
            {"content": {"role": "model", "parts": list(parts)}, "finishReason": reason}
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3},
        "modelVersion": "gemini-2.5-flash",
    }


@pytest.mark.parametrize("stream", [False, True])
def test_the_providers_tool_limit_ends_the_run_at_the_tool_limit(
    stream: bool, wire: WireServer, tmp_path: Path
) -> None:
    answer = finished("TOO_MANY_TOOL_CALLS", {"text": "I looked up"})
    wire.add(SSE([answer]) if stream else Reply(answer))

    _, result = run(wire, tmp_path, stream=stream)

    assert (result.content, result.stop_reason) == ("I looked up", "tool_limit")
    assert len(wire.requests) == 1


def test_calls_in_an_answer_at_the_providers_tool_limit_are_not_run(
    wire: WireServer, tmp_path: Path
) -> None:
    call = {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
    wire.add(Reply(finished("TOO_MANY_TOOL_CALLS", call)), Reply(said("never asked for")))

    _, result = run(wire, tmp_path)

    assert result.stop_reason == "tool_limit"
    assert result.tool_calls == [] and len(wire.requests) == 1
    assert result.messages[-1].role == "tool"
    assert "provider stopped its tool calls" in (result.messages[-1].content or "")


@pytest.mark.parametrize(
    "reason", ["LANGUAGE", "ESCALATION", "MODEL_ARMOR", "PUP_LIMITED_DISABLED", "IMAGE_SAFETY"]
)
def test_an_answer_gemini_withheld_is_refused(
    reason: str, wire: WireServer, tmp_path: Path
) -> None:
    wire.add(Reply(finished(reason)))

    _, result = run(wire, tmp_path)

    assert (result.content, result.stop_reason) == (None, "refused")


def test_an_answer_at_the_requests_token_limit_is_cut_off(wire: WireServer, tmp_path: Path) -> None:
    wire.add(Reply(finished("CONTINUATION", {"text": "The weather in Paris is"})))

    _, result = run(wire, tmp_path)

    assert (result.content, result.stop_reason) == ("The weather in Paris is", "max_tokens")


def test_a_malformed_response_is_asked_for_again(wire: WireServer, tmp_path: Path) -> None:
    wire.add(Reply(failed("MALFORMED_RESPONSE")), Reply(said("Sunny.")))

    _, result = run(wire, tmp_path)

    assert (result.content, result.stop_reason, len(wire.requests)) == ("Sunny.", "end", 2)


@pytest.mark.parametrize("stream", [False, True])
def test_a_missing_thought_signature_fails_the_run_at_once(
    stream: bool, wire: WireServer, tmp_path: Path
) -> None:
    answer = finished("MISSING_THOUGHT_SIGNATURE")
    wire.add(SSE([answer]) if stream else Reply(answer), Reply(said("never asked for")))

    with pytest.raises(ModelError, match="MISSING_THOUGHT_SIGNATURE.*thought signature"):
        run(wire, tmp_path, stream=stream)

    assert len(wire.requests) == 1  # the same conversation would be refused again
    [stored] = SqliteDb(tmp_path / "s.db").get_runs("s1", "default")
    assert stored.status == "failed"


@pytest.mark.parametrize("reason", ["STOP", "OTHER", "FINISH_REASON_UNSPECIFIED"])
def test_other_reasons_end_the_run(reason: str, wire: WireServer, tmp_path: Path) -> None:
    wire.add(Reply(finished(reason, {"text": "Sunny."})))

    _, result = run(wire, tmp_path)

    assert (result.content, result.stop_reason) == ("Sunny.", "end")
