"""Retries as the server asks for them: the ``x-should-retry`` header, which Anthropic's
and OpenAI's servers send and their SDKs obey over the HTTP status, says whether a
failure is worth another attempt; ``retry-after-ms`` how long to wait."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from model_helpers import ask, complete, model_for
from noted.errors import ModelHTTPError, ModelRateLimitError, ModelServerError
from noted.models.anthropic import Claude
from noted.models.base import BaseChatModel
from noted.models.openai import OpenAIChat
from wire import Reply, WireServer


@dataclass(frozen=True)
class Api:
    """One vendor's model aimed at the wire server, and its answer and error bodies."""

    make: Callable[[WireServer], BaseChatModel]
    answer: Callable[[str], dict[str, Any]]
    error: Callable[[str], dict[str, Any]]


def claude_answer(text: str) -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 3},
    }


def openai_answer(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12},
    }


APIS = {
    "anthropic": Api(
        lambda wire: model_for(Claude, "claude-sonnet-4-6", wire.url),
        claude_answer,
        lambda text: {"type": "error", "error": {"type": "api_error", "message": text}},
    ),
    "openai": Api(
        lambda wire: model_for(OpenAIChat, "gpt-4o-mini", wire.url + "/v1"),
        openai_answer,
        lambda text: {"error": {"message": text, "type": "server_error", "code": None}},
    ),
}


@pytest.fixture(params=sorted(APIS))
def api(request: pytest.FixtureRequest) -> Api:
    return APIS[request.param]


def test_a_server_error_the_server_says_not_to_retry_is_raised_at_once(
    api: Api, wire: WireServer
) -> None:
    failure = Reply(api.error("Internal server error"), 500, {"x-should-retry": "false"})
    wire.add(failure, Reply(api.answer("Hi.")))

    with pytest.raises(ModelServerError) as raised:
        complete(api.make(wire), ask())

    assert len(wire.requests) == 1
    assert not raised.value.retryable


@pytest.mark.parametrize("status", [400, 409])
def test_a_failure_the_server_says_to_retry_is_retried(
    status: int, api: Api, wire: WireServer
) -> None:
    wire.add(Reply(api.error("Try again"), status, {"x-should-retry": "true"}))
    wire.add(Reply(api.answer("Hi.")))

    response = complete(api.make(wire), ask())

    assert response.content == "Hi."
    assert len(wire.requests) == 2


def test_without_the_header_the_status_decides(api: Api, wire: WireServer) -> None:
    wire.add(Reply(api.error("Bad"), 400), Reply(api.answer("Hi.")))

    with pytest.raises(ModelHTTPError):
        complete(api.make(wire), ask())

    assert len(wire.requests) == 1


def test_the_wait_in_milliseconds_is_read(api: Api, wire: WireServer) -> None:
    limited = Reply(api.error("Slow down"), 429, {"retry-after-ms": "1500"})
    wire.add(*[limited] * 8)

    with pytest.raises(ModelRateLimitError) as raised:
        complete(api.make(wire), ask())

    assert raised.value.retry_after == 1.5
