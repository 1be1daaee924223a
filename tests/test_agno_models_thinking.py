"""The thinking settings of Agno's model classes on noted's providers: Gemini's
``thinking_budget`` and ``thinking_level`` and OpenAIChat's ``reasoning_effort`` reach the
API as noted's own models send them; what noted does not do is refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from model_helpers import ask, complete
from noted import UserError
from noted.agno import Claude, Gemini, OpenAIChat
from wire import Reply, WireServer


def gemini_answer() -> dict[str, Any]:
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "Hi."}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3},
        "modelVersion": "gemini-2.5-flash",
    }


def openai_answer() -> dict[str, Any]:
    message = {"role": "assistant", "content": "Hi.", "refusal": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_726_000_000,
        "model": "o4-mini",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


@pytest.mark.parametrize(
    ("setting", "sent"),
    [
        ({"thinking_budget": 512}, {"thinking_budget": 512}),
        ({"thinking_level": "low"}, {"thinking_level": "low"}),
    ],
)
def test_gemini_thinking_settings_are_sent(
    setting: dict[str, Any], sent: dict[str, Any], wire: WireServer
) -> None:
    wire.add(Reply(gemini_answer()))
    model = Gemini(id="gemini-2.5-flash", api_key="test-key", include_thoughts=False, **setting)
    model.base_url = wire.url

    assert complete(model, ask()).content == "Hi."

    config = wire.requests[0].body["generationConfig"]
    thinking = config.get("thinkingConfig", config.get("thinking_config"))
    assert {k: v.lower() if isinstance(v, str) else v for k, v in thinking.items()} == sent


def test_openai_reasoning_effort_is_sent(wire: WireServer) -> None:
    wire.add(Reply(openai_answer()))
    model = OpenAIChat(
        id="o4-mini", api_key="test-key", base_url=wire.url + "/v1", reasoning_effort="low"
    )

    assert complete(model, ask()).content == "Hi."

    assert wire.requests[0].body["reasoning_effort"] == "low"


def test_what_noted_does_not_do_is_refused_by_name() -> None:
    with pytest.raises(UserError, match=r"include_thoughts=True\) is not supported"):
        Gemini(id="gemini-2.5-flash", include_thoughts=True)
    with pytest.raises(UserError, match=r"Claude\(thinking=...\) is not supported"):
        Claude(thinking={"type": "enabled", "budget_tokens": 1024})
    with pytest.raises(UserError, match="thinking_budget or thinking_level, not both"):
        Gemini(thinking_budget=512, thinking_level="low")
