"""Claude's retries as Anthropic's server asks for them: its ``x-should-retry`` header,
which the anthropic SDK obeys over the HTTP status, says whether a failure is worth
another attempt."""

from __future__ import annotations

from typing import Any

import pytest

from model_helpers import ask, complete, model_for
from noted.errors import ModelHTTPError, ModelServerError
from noted.models.anthropic import Claude
from wire import Reply, WireServer

MODEL = "claude-sonnet-4-6"


def make(wire: WireServer) -> Claude:
    return model_for(Claude, MODEL, wire.url)


def answer(text: str) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 3},
    }


def error(kind: str, text: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": text}}


def test_a_server_error_the_server_says_not_to_retry_is_raised_at_once(
    wire: WireServer,
) -> None:
    failure = error("api_error", "Internal server error")
    wire.add(Reply(failure, 500, {"x-should-retry": "false"}), Reply(answer("Hi.")))

    with pytest.raises(ModelServerError) as raised:
        complete(make(wire), ask())

    assert len(wire.requests) == 1
    assert not raised.value.retryable


@pytest.mark.parametrize("status", [400, 409])
def test_a_failure_the_server_says_to_retry_is_retried(status: int, wire: WireServer) -> None:
    failure = error("invalid_request_error", "Try again")
    wire.add(Reply(failure, status, {"x-should-retry": "true"}), Reply(answer("Hi.")))

    response = complete(make(wire), ask())

    assert response.content == "Hi."
    assert len(wire.requests) == 2


def test_without_the_header_the_status_decides(wire: WireServer) -> None:
    wire.add(Reply(error("invalid_request_error", "Bad"), 400), Reply(answer("Hi.")))

    with pytest.raises(ModelHTTPError):
        complete(make(wire), ask())

    assert len(wire.requests) == 1
