"""Models for tests: scripted answers or a plain function, no network.

Both record every request they receive in ``.requests`` (messages, tools, response
schema), so a test can assert what the agent sent and count model calls; both stream when
asked and report token usage (counted as one token per four characters when the script
gives none).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

from noted.errors import ModelError, UserError
from noted.models.base import BaseChatModel, RetryPolicy
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    UsageDelta,
)

__all__ = ["FunctionModel", "ScriptExhaustedError", "ScriptedModel"]

Reply = str | ModelResponse
ModelFunction = Callable[[list[Message], list[ToolDefinition]], Reply | Awaitable[Reply]]

_PIECES = re.compile(r"\s*\S+\s*|\s+")


class ScriptExhaustedError(ModelError):
    """A :class:`ScriptedModel` was asked more often than its script has answers."""


def _estimate_tokens(text: str | None) -> int:
    return (len(text) + 3) // 4 if text else 0


def _request_tokens(request: ModelRequest) -> int:
    total = 0
    for message in request.messages:
        total += 4 + _estimate_tokens(message.content)
        total += sum(_estimate_tokens(call.arguments_json()) for call in message.tool_calls)
    return total


def _as_response(reply: object, request: ModelRequest, model_id: str) -> ModelResponse:
    if isinstance(reply, str):
        response = ModelResponse(content=reply)
    elif isinstance(reply, ModelResponse):
        response = ModelResponse(
            content=reply.content,
            tool_calls=list(reply.tool_calls),
            usage=reply.usage.copy(),
            model=reply.model,
            finish_reason=reply.finish_reason,
        )
    else:
        raise UserError(f"a test model must answer a str or a ModelResponse, got {reply!r}")
    if response.usage.total_tokens == 0:
        response.usage = Usage(
            _request_tokens(request),
            _estimate_tokens(response.content)
            + sum(_estimate_tokens(c.arguments_json()) for c in response.tool_calls),
        )
    response.model = response.model or model_id
    response.finish_reason = response.finish_reason or (
        "tool_calls" if response.tool_calls else "stop"
    )
    return response


def _deltas(response: ModelResponse) -> list[ModelDelta]:
    deltas: list[ModelDelta] = [
        TextDelta(piece) for piece in _PIECES.findall(response.content or "")
    ]
    for index, call in enumerate(response.tool_calls):
        deltas.append(ToolCallDelta(index, id=call.id, name=call.name))
        deltas.append(ToolCallDelta(index, arguments=call.arguments_json()))
    deltas.append(UsageDelta.of(response.usage, response.finish_reason, response.model))
    return deltas


class _RecordingModel(BaseChatModel):
    provider = "test"

    def __init__(self, id: str) -> None:
        super().__init__(id, retry=RetryPolicy(max_attempts=1))
        self.requests: list[ModelRequest] = []

    @property
    def call_count(self) -> int:
        return len(self.requests)

    def _record(self, request: ModelRequest) -> int:
        self.requests.append(
            ModelRequest(
                messages=list(request.messages),
                tools=list(request.tools),
                response_schema=request.response_schema,
                response_schema_name=request.response_schema_name,
                max_tokens=request.max_tokens,
            )
        )
        return len(self.requests)

    async def _reply(self, request: ModelRequest, number: int) -> object:
        raise NotImplementedError

    async def _send(self, request: ModelRequest) -> ModelResponse:
        number = self._record(request)
        return _as_response(await self._reply(request, number), request, self.id)

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        for delta in _deltas(await self._send(request)):
            yield delta


class ScriptedModel(_RecordingModel):
    """Answers each request with the next item of ``responses``: assistant text (a ``str``)
    or a :class:`ModelResponse` (text and/or tool calls). A request after the last item
    raises :class:`ScriptExhaustedError` (and uses nothing up: items appended to
    ``responses`` later answer the next requests)."""

    def __init__(self, responses: Sequence[Reply], *, id: str = "scripted") -> None:
        super().__init__(id)
        for item in responses:
            if not isinstance(item, str | ModelResponse):
                raise UserError(f"script items must be str or ModelResponse, got {item!r}")
        self.responses = list(responses)
        self.used = 0  # how many responses have been given

    async def _reply(self, request: ModelRequest, number: int) -> object:
        if self.used >= len(self.responses):
            raise ScriptExhaustedError(
                f"ScriptedModel received request {number} but all {len(self.responses)} "
                "response(s) of its script are used up"
            )
        self.used += 1
        return self.responses[self.used - 1]


class FunctionModel(_RecordingModel):
    """Answers each request with ``fn(messages, tools)`` (sync or async), which returns
    the assistant text or a :class:`ModelResponse`."""

    def __init__(self, fn: ModelFunction, *, id: str = "function") -> None:
        if not callable(fn):
            raise UserError(f"FunctionModel needs a callable, got {fn!r}")
        super().__init__(id)
        self.fn = fn

    async def _reply(self, request: ModelRequest, number: int) -> object:
        reply = self.fn(list(request.messages), list(request.tools))
        if inspect.isawaitable(reply):
            reply = await reply
        return reply
