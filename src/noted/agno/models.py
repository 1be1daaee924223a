"""Agno's model classes on noted's providers: same names, same ``id=`` argument.

They construct without an API key (a missing key is reported when the model is first
called), and a model object whose ``invoke`` attribute was replaced by a function, as in
a test double, answers every request through that function.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

from noted.errors import UserError
from noted.models import anthropic, google, openai
from noted.models.base import BaseChatModel
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCallDelta,
    UsageDelta,
)

__all__ = ["Claude", "Gemini", "OpenAIChat"]


def _call(invoke: Callable[..., Any], request: ModelRequest) -> Any:
    """``invoke(messages=...)``, with ``tools=`` too when the function takes them."""
    kwargs: dict[str, Any] = {"messages": list(request.messages)}
    try:
        params = list(inspect.signature(invoke).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: messages only
        params = []
    if any(p.kind is p.VAR_KEYWORD or p.name == "tools" for p in params):
        kwargs["tools"] = list(request.tools)
    return invoke(**kwargs)


def _as_response(reply: object, model_id: str) -> ModelResponse:
    if isinstance(reply, ModelResponse):
        return reply
    if isinstance(reply, str):
        return ModelResponse(content=reply, model=model_id, finish_reason="stop")
    if isinstance(reply, Message):
        return ModelResponse(
            content=reply.content,
            tool_calls=list(reply.tool_calls),
            model=model_id,
            finish_reason="tool_calls" if reply.tool_calls else "stop",
        )
    content = getattr(reply, "content", None)
    if isinstance(content, str):
        return ModelResponse(content=content, model=model_id, finish_reason="stop")
    raise UserError(
        f"the function that replaced {model_id!r}'s invoke must return a Message, a str "
        f"or a ModelResponse, got {type(reply).__name__}"
    )


class _Invocable(BaseChatModel):
    """Requests go through ``self.invoke`` when an instance attribute of that name is set."""

    def _replaced_invoke(self) -> Callable[..., Any] | None:
        invoke = vars(self).get("invoke")
        return invoke if callable(invoke) else None

    async def acomplete(self, request: ModelRequest) -> ModelResponse:
        if self._replaced_invoke() is None:
            return await super().acomplete(request)
        # the provider's own makes its client first (an API key, the SDK): none is used
        return await self.with_retries(lambda: self._send(request))

    async def _send(self, request: ModelRequest) -> ModelResponse:
        invoke = self._replaced_invoke()
        if invoke is None:
            return await super()._send(request)
        reply = _call(invoke, request)
        if inspect.isawaitable(reply):
            reply = await reply
        return _as_response(reply, self.id)

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        if self._replaced_invoke() is None:
            async for delta in super()._send_stream(request):
                yield delta
            return
        response = await self._send(request)
        for delta in _deltas(response):
            yield delta


def _deltas(response: ModelResponse) -> list[ModelDelta]:
    deltas: list[ModelDelta] = [TextDelta(response.content)] if response.content else []
    for index, call in enumerate(response.tool_calls):
        deltas.append(ToolCallDelta(index, id=call.id, name=call.name))
        deltas.append(ToolCallDelta(index, arguments=call.arguments_json()))
    deltas.append(UsageDelta.of(response.usage, response.finish_reason, response.model))
    return deltas


class OpenAIChat(_Invocable, openai.OpenAIChat):
    """``OpenAIChat(id="gpt-4o")``: OpenAI's Chat Completions API (``gpt-4o`` by default)."""

    def __init__(
        self,
        id: str | None = None,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        reasoning_effort: str | None = None,
    ) -> None:
        super().__init__(
            id or "gpt-4o",
            api_key=api_key,
            base_url=base_url,
            timeout=60.0 if timeout is None else timeout,
            max_tokens=max_tokens,
            temperature=temperature,
            reasoning_effort=reasoning_effort,
        )


class Gemini(_Invocable, google.Gemini):
    """``Gemini(id="gemini-2.0-flash")``: Google's Gemini API."""

    def __init__(
        self,
        id: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        max_tokens: int | None = None,
        max_output_tokens: int | None = None,
        temperature: float | None = None,
        thinking_budget: int | None = None,
        thinking_level: str | None = None,
        include_thoughts: bool | None = None,
    ) -> None:
        if include_thoughts:
            raise UserError(
                "Gemini(include_thoughts=True) is not supported: noted leaves the model's "
                "thoughts out of its answers (thinking_budget and thinking_level are taken)"
            )
        super().__init__(
            id or "gemini-2.0-flash-001",
            api_key=api_key,
            timeout=60.0 if timeout is None else timeout,
            max_tokens=max_output_tokens if max_tokens is None else max_tokens,
            temperature=temperature,
            thinking_budget=thinking_budget,
            thinking_level=thinking_level,
        )


class Claude(_Invocable, anthropic.Claude):
    """``Claude(id="claude-3-5-sonnet-20241022")``: Anthropic's Messages API."""

    def __init__(
        self,
        id: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        max_tokens: int = 4096,
        temperature: float | None = None,
        thinking: dict[str, Any] | None = None,
    ) -> None:
        if thinking is not None:
            raise UserError(
                "Claude(thinking=...) is not supported: noted's Claude does not ask for "
                "extended thinking"
            )
        super().__init__(
            id or "claude-3-5-sonnet-20241022",
            api_key=api_key,
            timeout=60.0 if timeout is None else timeout,
            max_tokens=max_tokens,
            temperature=temperature,
        )
