"""Gemini through the Gemini API, with Google's official GenAI SDK, ``google-genai``.

Install it with ``pip install 'noted[google]'``; noted imports it on first use and turns its
own retries off, since :class:`~noted.models.base.BaseChatModel` retries.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from noted.errors import ModelConnectionError, ModelError, ModelOutputError, UserError
from noted.models._provider import HTTPChatModel, http_error, import_sdk, transport_errors
from noted.models._thinking import (
    UNBOUNDED_ALLOWANCE,
    checked_level,
    effort_allowance,
    gemini_thinking,
    output_limit,
    warn_if_thought_out,
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
    new_tool_call_id,
)

__all__ = ["Gemini"]

_PACKAGE = "google-genai"

# How many tool calls' Gemini-side details (their own ids, thought signatures) are kept
# to send back with the conversation.
_CALL_MEMO_SIZE = 1024

# The HTTP responses opened while a stream reads its next chunk (see _next_chunk), or
# while a whole answer is asked for (see Gemini._send).
_opened: ContextVar[list[Any] | None] = ContextVar("noted_gemini_opened", default=None)


@dataclass(frozen=True, slots=True)
class _CallMemo:
    """What Gemini attached to a function call that noted's ToolCall has no field for:
    whether the id was Gemini's own (then it is sent back with the call and its result)
    and the call's thought signature (which thinking models need to see again)."""

    native_id: bool
    signature: bytes | None


@dataclass(frozen=True, slots=True)
class _Sdk:
    genai: ModuleType
    types: ModuleType
    errors: ModuleType


class Gemini(HTTPChatModel):
    """A Gemini model. ``api_key`` defaults to the ``GOOGLE_API_KEY`` (or
    ``GEMINI_API_KEY``) environment variable; ``base_url`` points at a proxy or a
    compatible server; ``max_tokens`` caps the answer, thinking included (the model's own
    limit when None).

    ``thinking_budget`` (tokens; 0 turns thinking off where the model allows it, -1 lets
    the model decide) or ``thinking_level`` (``"minimal"``, ``"low"``, ``"medium"``,
    ``"high"``: Gemini 3) is sent with every call when set. Unset, the model thinks as it
    does by default, except in a call whose request caps its answer (the memory
    manager's): a model :mod:`noted.models._thinking` knows is then asked to think little,
    and its limit allows for that thinking.
    """

    provider = "google"
    api_key_envs = ("GOOGLE_API_KEY", "GEMINI_API_KEY")

    def __init__(
        self,
        id: str = "gemini-2.5-flash",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        retry: RetryPolicy | None = None,
        thinking_budget: int | None = None,
        thinking_level: str | None = None,
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
        _check_thinking(thinking_budget, thinking_level)
        self.thinking_budget = thinking_budget
        level = checked_level("thinking_level", thinking_level)
        self.thinking_level = level.lower() if level is not None else None
        self._calls: dict[str, _CallMemo] = {}

    # -- client ---------------------------------------------------------------------------

    def _sdk(self) -> _Sdk:
        genai = import_sdk("google.genai", extra="google", user="Gemini", package=_PACKAGE)
        errors = import_sdk("google.genai.errors", extra="google", user="Gemini", package=_PACKAGE)
        return _Sdk(genai, genai.types, errors)

    def _make_client(self) -> Any:
        sdk = self._sdk()
        api_key = self._api_key()
        options: dict[str, Any] = {
            "base_url": self.base_url,
            "timeout": max(1, round(self.timeout * 1000)),
        }
        retry_options = getattr(sdk.types, "HttpRetryOptions", None)
        if retry_options is not None:
            # One attempt: an explicit setting also stops the SDK's own quiet retries.
            options["retry_options"] = retry_options(attempts=1)
        # A stream closes its own HTTP responses when left early (see _send_stream).
        options["async_client_args"] = {"event_hooks": {"response": [_keep_opened]}}
        return sdk.genai.Client(
            api_key=api_key, vertexai=False, http_options=sdk.types.HttpOptions(**options)
        )

    async def _close_client(self, client: Any) -> None:
        await client.aio.aclose()
        client.close()

    # -- calls ----------------------------------------------------------------------------

    async def _send(self, request: ModelRequest) -> ModelResponse:
        client = self._clients.get()
        params = self._params(request)
        opened: list[Any] = []  # the HTTP response, for its bytes
        token = _opened.set(opened)
        try:
            with self._mapped_errors():
                response = await client.aio.models.generate_content(**params)
        finally:
            _opened.reset(token)
        for answer in opened:  # the SDK reads the body with each bad byte replaced
            self._check_utf8(answer)
        answered = self._response(response)
        _check_signatures(answered.finish_reason)
        self._warn_if_thought_out(answered.usage, answered.finish_reason)
        return answered

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        client = self._clients.get()
        params = self._params(request)
        with self._mapped_errors():
            stream = await self._timed(client.aio.models.generate_content_stream(**params))
        # the chunks: the SDK's generator, or the iterator of what wraps it (an SDK
        # instrumentation may hand back an iterable that is no iterator itself)
        chunks = aiter(stream)
        state = _StreamState()
        opened: list[Any] = []
        failed: list[Any] = []  # the SDK's responses of the errors the stream sent
        try:
            with self._mapped_errors():
                try:
                    while (chunk := await self._timed(_next_chunk(chunks, opened))) is not None:
                        for delta in state.deltas(chunk, self._tool_call):
                            yield delta
                except self._sdk().errors.APIError as exc:
                    failed.append(getattr(exc, "response", None))
                    raise
        finally:
            # The SDK's generators leave the HTTP response open when closed early.
            for response in opened:
                await response.aclose()
            await _close_readers(failed)
            for each in (chunks,) if chunks is stream else (chunks, stream):
                close = getattr(each, "aclose", None)
                if close is not None:
                    await close()
        if state.finish is None:  # neither a finish reason nor a block reason came
            raise self._unfinished(state.chunks, opened[-1] if opened else None)
        _check_signatures(state.finish)
        end = state.usage()
        self._warn_if_thought_out(end, end.finish_reason)
        yield end

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        config: dict[str, Any] = {"automatic_function_calling": {"disable": True}}
        system = request.system_text()
        if system:
            config["system_instruction"] = system
        thinking, allowance = self._thinking(request)
        if thinking:
            config["thinking_config"] = thinking
        if (limit := output_limit(self.max_tokens, request.max_tokens, allowance)) is not None:
            config["max_output_tokens"] = limit
        if self.temperature is not None:
            config["temperature"] = self.temperature
        if request.tools:
            declarations = [
                {
                    "name": t.name,
                    "description": t.description,
                    "parameters_json_schema": dict(t.parameters),
                }
                for t in request.tools
            ]
            config["tools"] = [{"function_declarations": declarations}]
        if request.response_schema is not None:
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = dict(request.response_schema)
        return {"model": self.id, "contents": self._contents(request.messages), "config": config}

    def _thinking(self, request: ModelRequest) -> tuple[dict[str, Any], int]:
        """The ``thinking_config`` to send (empty: none) and the tokens a request's cap
        allows for thinking: the model's own setting, else, for a request that caps its
        answer, the bound :func:`~noted.models._thinking.gemini_thinking` knows."""
        budget, level = self.thinking_budget, self.thinking_level
        if budget is None and level is None and request.max_tokens is not None:
            known = gemini_thinking(self.id)
            if known is not None:
                budget, level = known.budget, known.level
        if budget is not None:
            return {"thinking_budget": budget}, budget if budget >= 0 else UNBOUNDED_ALLOWANCE
        if level is not None:
            return {"thinking_level": level}, effort_allowance(level)
        return {}, 0

    def _warn_if_thought_out(self, usage: Usage | UsageDelta, finish: str | None) -> None:
        setting = "Gemini(thinking_budget=...)"
        if self.thinking_level is not None or self.id.casefold().startswith("gemini-3"):
            setting = "Gemini(thinking_level=...)"
        warn_if_thought_out(self.provider, self.id, usage, finish, setting)

    # -- conversation ---------------------------------------------------------------------

    def _contents(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """noted's messages as Gemini contents: system messages are left out (they go to
        ``system_instruction``), assistant turns are ``model`` turns with ``function_call``
        parts, and consecutive tool results one user turn of ``function_response`` parts."""
        contents: list[dict[str, Any]] = []
        results: list[dict[str, Any]] | None = None  # the open turn of tool results
        names: dict[str, str] = {}  # tool call id -> tool name, for results without a name
        for message in messages:
            if message.role == "tool":
                part = self._function_response(message, names)
                if results is None:
                    results = [part]
                    contents.append({"role": "user", "parts": results})
                else:
                    results.append(part)
                continue
            results = None
            if message.role == "user":
                contents.append({"role": "user", "parts": [{"text": message.content or ""}]})
            elif message.role == "assistant":
                parts: list[dict[str, Any]] = []
                if message.content:
                    parts.append({"text": message.content})
                for call in message.tool_calls:
                    names[call.id] = call.name
                    parts.append(self._function_call_part(call))
                if parts:
                    contents.append({"role": "model", "parts": parts})
        return contents

    def _function_call_part(self, call: ToolCall) -> dict[str, Any]:
        function_call: dict[str, Any] = {"name": call.name, "args": call.arguments}
        part: dict[str, Any] = {"function_call": function_call}
        memo = self._calls.get(call.id)
        if memo is not None:
            if memo.native_id:
                function_call["id"] = call.id
            if memo.signature is not None:
                part["thought_signature"] = memo.signature
        return part

    def _function_response(self, message: Message, names: Mapping[str, str]) -> dict[str, Any]:
        call_id = message.tool_call_id or ""
        name = message.name or names.get(call_id)
        if not name:
            raise UserError(
                f"Gemini needs the tool's name for the result of call {call_id!r}: set the "
                "tool message's name, or keep the assistant message that made the call"
            )
        response: dict[str, Any] = {"name": name, "response": {"result": message.content or ""}}
        memo = self._calls.get(call_id)
        if memo is not None and memo.native_id:
            response["id"] = call_id
        return {"function_response": response}

    def _tool_call(self, part: Any) -> ToolCall:
        """A function-call part as a ToolCall, remembering what must go back to Gemini."""
        function_call = part.function_call
        native_id = bool(function_call.id)
        call_id = function_call.id or new_tool_call_id()
        signature = part.thought_signature or None
        if native_id or signature is not None:
            self._remember(call_id, _CallMemo(native_id, signature))
        args = function_call.args
        if args is None or isinstance(args, Mapping):
            return ToolCall(name=function_call.name or "", arguments=dict(args or {}), id=call_id)
        return ToolCall(
            name=function_call.name or "", id=call_id, invalid_arguments=json.dumps(args)
        )

    def _remember(self, call_id: str, memo: _CallMemo) -> None:
        self._calls[call_id] = memo
        while len(self._calls) > _CALL_MEMO_SIZE:
            del self._calls[next(iter(self._calls))]

    def _response(self, response: Any) -> ModelResponse:
        texts: list[str] = []
        calls: list[ToolCall] = []
        candidate = _first_candidate(response)
        finish: str | None = None
        if candidate is not None:
            finish = _finish_reason(candidate)
            for part in _parts(candidate):
                if part.function_call is not None:
                    calls.append(self._tool_call(part))
                elif part.text and not part.thought:
                    texts.append(part.text)
        else:
            finish = _block_reason(response)
        return ModelResponse(
            content="".join(texts) or None,
            tool_calls=calls,
            usage=_usage(response.usage_metadata),
            model=response.model_version,
            finish_reason=finish,
        )

    # -- failures -------------------------------------------------------------------------

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        """The SDK's errors, an answer that is not JSON, and the failures of whichever
        HTTP library it runs on: ``httpx2``, ``httpx`` or ``aiohttp`` (whose timeouts are
        also ``TimeoutError``)."""
        return (
            self._sdk().errors.APIError,
            *self._not_json(),
            TimeoutError,
            *transport_errors().failures,
        )

    def _not_json(self) -> tuple[type[BaseException], ...]:
        """What is raised for an answer that is not JSON: the SDK's own error for a line of
        a stream, the JSON decoder's for a whole answer."""
        return (self._sdk().errors.UnknownApiResponseError, json.JSONDecodeError)

    def _to_noted(self, exc: BaseException) -> ModelError:
        if isinstance(exc, self._not_json()):
            return ModelOutputError(f"google sent an answer that is not JSON: {exc}")
        if isinstance(exc, self._sdk().errors.APIError):
            code = exc.code if isinstance(exc.code, int) else 500
            message = exc.message or exc.status or str(exc)
            return http_error("google", code, str(message), _retry_after(exc))
        if isinstance(exc, (TimeoutError, *transport_errors().timeouts)):
            return self._timed_out()
        return ModelConnectionError(f"the connection to google failed: {exc!r}")


def _check_thinking(budget: object, level: object) -> None:
    if budget is not None and (type(budget) is not int or budget < -1):
        raise UserError(
            f"thinking_budget must be an integer >= 0 (tokens), -1 (the model decides) or "
            f"None, got {budget!r}"
        )
    if budget is not None and level is not None:
        raise UserError("give thinking_budget or thinking_level, not both")


# -- streams -------------------------------------------------------------------------------


async def _keep_opened(response: Any) -> None:
    """The HTTP client's response hook: keeps the response for the stream that opened it."""
    opened = _opened.get()
    if opened is not None:
        opened.append(response)


async def _close_readers(responses: list[Any]) -> None:
    """Close the readers of the SDK's responses to a stream that sent an error. Each
    response keeps its reader (an async generator over httpx's, over httpcore's) in a
    reference cycle with itself: left to the garbage collector, the chain is finalized at
    any moment, on any thread, and a generator of it half-closed then fails its close
    ("async generator already executing"). Closed here, on the stream's loop, each one
    closes the next as it goes."""
    for response in responses:
        reader = getattr(response, "segment_iterator", None)
        close = getattr(reader, "aclose", None)
        if close is not None:
            await close()


async def _next_chunk(stream: AsyncIterator[Any], opened: list[Any]) -> Any:
    """The stream's next chunk (None at its end). The HTTP responses the SDK opens
    meanwhile are added to ``opened``, so that the stream can close them."""
    token = _opened.set(opened)
    try:
        return await anext(stream, None)
    finally:
        _opened.reset(token)


@dataclass(slots=True)
class _StreamState:
    """What a stream has said so far: Gemini repeats the running usage totals in every
    chunk, so the last ones are reported, once, at the end."""

    index: int = 0
    usage_metadata: Any = None
    finish: str | None = None
    model: str | None = None
    chunks: int = 0

    def deltas(self, chunk: Any, tool_call: Callable[[Any], ToolCall]) -> list[ModelDelta]:
        self.chunks += 1
        self.model = chunk.model_version or self.model
        self.usage_metadata = chunk.usage_metadata or self.usage_metadata
        candidate = _first_candidate(chunk)
        if candidate is None:
            self.finish = _block_reason(chunk) or self.finish
            return []
        self.finish = _finish_reason(candidate) or self.finish
        deltas: list[ModelDelta] = []
        for part in _parts(candidate):
            if part.function_call is not None:
                call = tool_call(part)
                deltas.append(
                    ToolCallDelta(
                        index=self.index,
                        id=call.id,
                        name=call.name,
                        arguments=call.arguments_json(),
                    )
                )
                self.index += 1
            elif part.text and not part.thought:
                deltas.append(TextDelta(part.text))
        return deltas

    def usage(self) -> UsageDelta:
        return UsageDelta.of(_usage(self.usage_metadata), self.finish, self.model)


# -- helpers -------------------------------------------------------------------------------


def _first_candidate(response: Any) -> Any:
    candidates = response.candidates
    return candidates[0] if candidates else None


def _parts(candidate: Any) -> list[Any]:
    content = candidate.content
    if content is None or not content.parts:
        return []
    return list(content.parts)


def _enum_text(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _finish_reason(candidate: Any) -> str | None:
    return _enum_text(candidate.finish_reason)


def _check_signatures(finish: str | None) -> None:
    """Raise :class:`~noted.errors.ModelError` for Gemini's ``MISSING_THOUGHT_SIGNATURE``:
    it refused the conversation, not the answer, so asking again gets the same."""
    if finish == "MISSING_THOUGHT_SIGNATURE":
        raise ModelError(
            "Gemini refused the conversation (MISSING_THOUGHT_SIGNATURE): a function call in "
            "it went back without the thought signature Gemini sent with it (noted keeps "
            f"those of the last {_CALL_MEMO_SIZE:,} calls each Gemini object received, not "
            "those of a call made by another model or process)"
        )


def _block_reason(response: Any) -> str | None:
    """Why the prompt was blocked (an answer without candidates), if it was."""
    feedback = response.prompt_feedback
    return _enum_text(feedback.block_reason) if feedback is not None else None


def _usage(metadata: Any) -> Usage:
    """An answer's ``usage_metadata`` as noted's usage. Gemini counts the thinking
    (``thoughts_token_count``) apart from the answer (``candidates_token_count``): the
    output tokens are both, as OpenAI's and Claude's output counts hold their reasoning,
    and the thinking is the reasoning part. The prompt count holds the cached content
    (``cached_content_token_count``), the part read from the cache. An answer without
    ``usage_metadata`` has unknown counts."""
    if metadata is None:
        return Usage.unknown()
    thoughts = metadata.thoughts_token_count or 0
    return Usage(
        metadata.prompt_token_count or 0,
        (metadata.candidates_token_count or 0) + thoughts,
        cache_read_tokens=metadata.cached_content_token_count or 0,
        reasoning_tokens=thoughts,
    )


# -- errors --------------------------------------------------------------------------------


def _retry_after(exc: Any) -> str | None:
    """How long the server asks to be left before a retry, in seconds: its
    ``Retry-After`` header, else the ``retryDelay`` of the error's ``RetryInfo`` detail,
    which is where the Gemini API says it (a quota's 429: ``"retryDelay": "37s"``)."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if isinstance(value, str):
        return value
    return _retry_delay(getattr(exc, "details", None))


def _retry_delay(body: object) -> str | None:
    """The seconds of the ``google.rpc.RetryInfo`` detail of an error body (the body
    ``{"error": {...}}`` or the error itself), as text; None without one. Its
    ``retryDelay`` is a duration in JSON: seconds with an ``s`` after them."""
    error = body.get("error", body) if isinstance(body, Mapping) else None
    details = error.get("details") if isinstance(error, Mapping) else None
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping):
            continue
        kind, delay = detail.get("@type"), detail.get("retryDelay")
        if str(kind).endswith("google.rpc.RetryInfo") and isinstance(delay, str):
            return delay.strip().removesuffix("s") or None
    return None
