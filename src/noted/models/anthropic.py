"""Claude through Anthropic's Messages API, with the official ``anthropic`` SDK
(``pip install 'noted[anthropic]'``), which is imported on first use and left to make one
attempt a call: :class:`~noted.models.base.BaseChatModel` does the retrying."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from noted.errors import ModelConnectionError, ModelError, ModelOutputError
from noted.models._ids import ANTHROPIC_IDS, wire_ids
from noted.models._provider import (
    HTTPChatModel,
    headed_error,
    import_sdk,
    parsed,
    transport_errors,
)
from noted.models.base import RetryPolicy
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
    UsageDelta,
)

__all__ = ["Claude"]

# An ``error`` event arrives inside a stream that began with HTTP 200; its type says
# which HTTP failure it stands for.
_ERROR_TYPE_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class Claude(HTTPChatModel):
    """A Claude model. ``api_key`` defaults to the ``ANTHROPIC_API_KEY`` environment
    variable; ``base_url`` points at a proxy or a compatible server.

    A ``response_schema`` is answered through a tool the model is made to call: its input
    (JSON text) becomes the response's ``content``.
    """

    provider = "anthropic"
    api_key_envs = ("ANTHROPIC_API_KEY",)
    max_tokens_required = True

    def __init__(
        self,
        id: str = "claude-sonnet-4-6",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int = 4096,
        temperature: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        super().__init__(
            id,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_tokens=max_tokens,
            temperature=temperature,
            retry=retry,
        )

    # -- client ---------------------------------------------------------------------------

    def _sdk(self) -> ModuleType:
        return import_sdk("anthropic", extra="anthropic", user="Claude")

    def _make_client(self) -> Any:
        sdk = self._sdk()
        return sdk.AsyncAnthropic(
            api_key=self._api_key(), base_url=self.base_url, timeout=self.timeout, max_retries=0
        )

    # -- calls ----------------------------------------------------------------------------

    async def _send(self, request: ModelRequest) -> ModelResponse:
        client = self._clients.get()
        params = self._params(request)
        with self._mapped_errors():
            answer = await client.messages.with_raw_response.create(**params)
            message = await parsed(answer)
        if isinstance(message, str):  # the body's text: the SDK could not read it as JSON
            self._check_utf8(answer.http_response)
        return _response(self._checked(message), _schema_tool(request))

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        client = self._clients.get()
        params = self._params(request)
        with self._mapped_errors():
            stream = await self._timed(client.messages.create(**params, stream=True))
        state = _StreamState(schema_tool=_schema_tool(request))
        try:
            with self._mapped_errors():
                events = aiter(stream)
                while (event := await self._timed(anext(events, None))) is not None:
                    for delta in state.deltas(event):
                        yield delta
        finally:
            await stream.close()
        if not state.ended:
            raise self._unfinished(state.events, getattr(stream, "response", None))

    def _checked(self, answer: object) -> Any:
        """The SDK's answer, if it is a message: a proxy's HTTP 200 may be a web page."""
        if isinstance(answer, self._sdk().types.Message) and isinstance(answer.content, list):
            return answer
        shown = repr(answer[:200]) if isinstance(answer, str) else "no content"
        raise ModelOutputError(f"anthropic {self.id} answered with no message: {shown}")

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.id,
            "max_tokens": request.token_limit(self.max_tokens),
            "messages": _messages(request.messages),
        }
        system = request.system_text()
        if system:
            params["system"] = system
        tools = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
        schema_tool = _schema_tool(request)
        if schema_tool is not None and request.response_schema is not None:
            tools.append(
                {
                    "name": schema_tool,
                    "description": "Give your answer as this tool's input.",
                    "input_schema": dict(request.response_schema),
                }
            )
            params["tool_choice"] = {"type": "tool", "name": schema_tool}
        if tools:
            params["tools"] = tools
        if self.temperature is not None:
            # Not a named parameter of every SDK version; the API takes it all the same.
            params["extra_body"] = {"temperature": self.temperature}
        return params

    # -- failures -------------------------------------------------------------------------

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        """The SDK's errors, the JSON decoder's (the SDK lets it out for an answer, or a
        line of a stream, that is not JSON) and the transport failures of the HTTP library
        under it (``httpx2``, or ``httpx`` in older versions), which can escape while a
        stream is read."""
        return (
            self._sdk().APIError,
            json.JSONDecodeError,
            *transport_errors("httpx2", "httpx").failures,
        )

    def _to_noted(self, exc: BaseException) -> ModelError:
        sdk = self._sdk()
        if isinstance(exc, json.JSONDecodeError):
            return ModelOutputError(f"anthropic sent an answer that is not JSON: {exc}")
        if isinstance(exc, sdk.APIStatusError):
            kind, message = _error_body(exc.body)
            status = int(exc.status_code)
            if status < 400:  # an error event inside a stream that began with 200
                status = _ERROR_TYPE_STATUS.get(kind or "", 500)
            # the headers of an HTTP failure, not of a stream's error event
            headers = exc.response.headers if exc.status_code >= 400 else None
            return headed_error("anthropic", status, message or exc.message, headers)
        if isinstance(exc, sdk.APITimeoutError):
            return self._timed_out()
        if isinstance(exc, sdk.APIConnectionError):
            cause = exc.__cause__ or exc
            return ModelConnectionError(f"could not reach anthropic: {cause}")
        if isinstance(exc, sdk.APIError):
            return ModelError(f"anthropic: {exc.message}")
        return ModelConnectionError(f"the connection to anthropic failed: {exc!r}")


# -- requests ------------------------------------------------------------------------------


def _schema_tool(request: ModelRequest) -> str | None:
    return request.response_schema_name if request.response_schema is not None else None


def _messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """noted's messages as Messages API turns: system messages are left out (they go to
    ``system``), tool calls become ``tool_use`` blocks (with ids Claude takes: see
    :mod:`noted.models._ids`) and consecutive tool results one user turn of
    ``tool_result`` blocks."""
    turns: list[dict[str, Any]] = []
    results: list[dict[str, Any]] | None = None  # the open turn of tool results
    for message in wire_ids(messages, ANTHROPIC_IDS):
        if message.role == "tool":
            block = {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id,
                "content": message.content or "",
            }
            if results is None:
                results = [block]
                turns.append({"role": "user", "content": results})
            else:
                results.append(block)
            continue
        results = None
        if message.role == "user":
            turns.append({"role": "user", "content": message.content or ""})
        elif message.role == "assistant":
            if not message.tool_calls:
                if message.content:
                    turns.append({"role": "assistant", "content": message.content})
                continue
            blocks: list[dict[str, Any]] = []
            if message.content:
                blocks.append({"type": "text", "text": message.content})
            blocks.extend(
                {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
                for call in message.tool_calls
            )
            turns.append({"role": "assistant", "content": blocks})
    return turns


# -- responses -----------------------------------------------------------------------------


# The input-side counts of a usage report: Claude counts the prompt's tokens written to and
# read from the prompt cache apart from the rest.
_INPUT_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


def _input_usage(usage: Any) -> Usage:
    """The input side of a usage report: the input tokens, including those written to
    (``cache_creation_input_tokens``) or read from (``cache_read_input_tokens``) the
    prompt cache, which Claude counts apart from ``input_tokens``; and those two parts."""
    return _input_counts({name: getattr(usage, name, None) or 0 for name in _INPUT_FIELDS})


def _input_counts(counts: Mapping[str, int]) -> Usage:
    """:func:`_input_usage` of the counts of ``_INPUT_FIELDS``, by name (0 when missing)."""
    written = counts.get("cache_creation_input_tokens", 0)
    read = counts.get("cache_read_input_tokens", 0)
    fresh = counts.get("input_tokens", 0)
    return Usage(fresh + written + read, cache_read_tokens=read, cache_write_tokens=written)


def _output_usage(usage: Any) -> Usage:
    """The output side of a usage report: the output tokens (thinking included), and the
    thinking part (``output_tokens_details.thinking_tokens``); none when the answer, or
    the event, carries no usage."""
    details = getattr(usage, "output_tokens_details", None)
    thinking = getattr(details, "thinking_tokens", None) or 0
    return Usage(
        output_tokens=getattr(usage, "output_tokens", None) or 0, reasoning_tokens=thinking
    )


def _tool_call(block: Any) -> ToolCall:
    arguments = block.input
    if isinstance(arguments, Mapping):
        return ToolCall(name=block.name, arguments=dict(arguments), id=block.id)
    return ToolCall(name=block.name, id=block.id, invalid_arguments=json.dumps(arguments))


def _response(message: Any, schema_tool: str | None) -> ModelResponse:
    texts: list[str] = []
    calls: list[ToolCall] = []
    structured: str | None = None
    for block in message.content or ():
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            if schema_tool is not None and block.name == schema_tool and structured is None:
                structured = json.dumps(block.input, ensure_ascii=False)
            else:
                calls.append(_tool_call(block))
    content = structured if structured is not None else ("".join(texts) or None)
    usage = _input_usage(message.usage)
    usage.add(_output_usage(message.usage))
    return ModelResponse(
        content=content,
        tool_calls=calls,
        usage=usage,
        model=message.model,
        finish_reason=message.stop_reason,
    )


@dataclass(slots=True)
class _StreamState:
    """Turns raw stream events into deltas. In response-schema mode the forced tool's
    JSON streams as text, and any text block is left out (as in a whole answer). Counts
    the events, and sees the end of the answer (a stop reason, or ``message_stop``).

    The usage of ``message_start`` and ``message_delta`` is running totals: each event's
    counts replace those known (an input-side count left out keeps its value), and the
    deltas carry the difference, so that they add up to the last totals. Claude sends the
    input side with ``message_start`` and repeats it in ``message_delta``; compatible
    gateways may send it first in ``message_delta``, and some servers send 0 there (a
    total never goes down, so that 0 is not taken)."""

    schema_tool: str | None
    schema_blocks: set[int] = field(default_factory=set)
    events: int = 0
    ended: bool = False
    # the input a tool_use block began with, as JSON text, until deltas replace it
    started: dict[int, str] = field(default_factory=dict)
    inputs: dict[str, int] = field(default_factory=dict)  # the input-side totals, by field
    output: Usage = field(default_factory=Usage)  # the output-side totals
    reported: Usage = field(default_factory=Usage)  # what the deltas so far add up to

    def deltas(self, event: Any) -> list[ModelDelta]:
        kind = event.type
        self.events += 1
        if kind == "message_stop":
            self.ended = True
        if kind == "message_start":
            message = event.message
            return [self._usage(message.usage, model=message.model)]
        if kind == "content_block_start":
            return self._block_start(event.index, event.content_block)
        if kind == "content_block_delta":
            return self._block_delta(event.index, event.delta)
        if kind == "content_block_stop":
            return self._started_input(event.index)
        if kind == "message_delta":
            self.ended = self.ended or event.delta.stop_reason is not None
            self.output = _output_usage(event.usage)  # the answer's running total
            pending = [d for index in list(self.started) for d in self._started_input(index)]
            return [*pending, self._usage(event.usage, event.delta.stop_reason)]
        return []

    def _started_input(self, index: int) -> list[ModelDelta]:
        """The input a tool_use block began with, once the block ends without deltas: Claude
        starts each with an empty input and streams it, but a compatible gateway may send
        it whole at the start (the SDK keeps it then, as noted does)."""
        arguments = self.started.pop(index, None)
        if arguments is None:
            return []
        if index in self.schema_blocks:
            return [TextDelta(arguments)]
        return [ToolCallDelta(index=index, arguments=arguments)]

    def _usage(
        self, usage: Any, finish_reason: str | None = None, model: str | None = None
    ) -> UsageDelta:
        """The delta from the counts reported so far to the totals ``usage`` brings."""
        for name in _INPUT_FIELDS:
            value = getattr(usage, name, None)
            if isinstance(value, int):  # a total never goes down: a gateway's 0 says nothing
                self.inputs[name] = max(value, self.inputs.get(name, 0))
        totals = _input_counts(self.inputs)
        totals.add(self.output)
        before, self.reported = self.reported, totals
        return UsageDelta(
            (totals.input_tokens or 0) - (before.input_tokens or 0),
            (totals.output_tokens or 0) - (before.output_tokens or 0),
            finish_reason,
            model,
            totals.cache_read_tokens - before.cache_read_tokens,
            totals.cache_write_tokens - before.cache_write_tokens,
            totals.reasoning_tokens - before.reasoning_tokens,
        )

    def _block_start(self, index: int, block: Any) -> list[ModelDelta]:
        if block.type == "tool_use":
            if isinstance(block.input, Mapping) and block.input:
                self.started[index] = json.dumps(block.input, ensure_ascii=False)
            if self.schema_tool is not None and block.name == self.schema_tool:
                self.schema_blocks.add(index)
                return []
            return [ToolCallDelta(index=index, id=block.id, name=block.name)]
        if block.type == "text" and block.text and self.schema_tool is None:
            return [TextDelta(block.text)]
        return []

    def _block_delta(self, index: int, delta: Any) -> list[ModelDelta]:
        if delta.type == "text_delta":
            if delta.text and self.schema_tool is None:
                return [TextDelta(delta.text)]
        elif delta.type == "input_json_delta" and delta.partial_json:
            self.started.pop(index, None)  # the input comes in pieces, from its start
            if index in self.schema_blocks:
                return [TextDelta(delta.partial_json)]
            return [ToolCallDelta(index=index, arguments=delta.partial_json)]
        return []


# -- errors --------------------------------------------------------------------------------


def _error_body(body: object) -> tuple[str | None, str | None]:
    """``(type, message)`` of an Anthropic error body ``{"error": {"type", "message"}}``."""
    if isinstance(body, Mapping):
        error = body.get("error")
        if isinstance(error, Mapping):
            kind, message = error.get("type"), error.get("message")
            return (
                kind if isinstance(kind, str) else None,
                message if isinstance(message, str) else None,
            )
    return None, None
