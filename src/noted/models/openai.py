"""Chat models that speak the OpenAI Chat Completions API.

:class:`OpenAIChat` talks to OpenAI and to every server that offers the same API (vLLM,
the llama.cpp server, LM Studio, OpenRouter, ...): point ``base_url`` at the server.
:class:`Ollama` is the same adapter aimed at a local Ollama.

Structured output (a request with ``response_schema``) is asked for as
``response_format: {"type": "json_schema", ...}``. A server that refuses that format (the
llama-cpp-python server answers 422, or 500 wrapping its validation error) is asked again in
JSON mode with the schema (``{"type": "json_object", "schema": ...}``), and if it refuses
that too, for plain JSON with the schema in the prompt. The format a server took is
remembered per base URL and model for the life of the process (a gateway that serves
many models may take the format for some and not for others) and the fallback is logged
once.

A token limit goes to OpenAI's own API as ``max_completion_tokens`` (its reasoning models
refuse ``max_tokens``), and to other servers as ``max_tokens``, which servers that predate
``max_completion_tokens`` know. A server that refuses ``max_tokens`` for a model (HTTP 400
naming it) is asked again with ``max_completion_tokens``, and that model on that server gets
it from then on.

The ``openai`` package is imported on first use, so ``import noted`` works without it;
install it with ``pip install 'noted[openai]'``. The SDK's own retries are turned off:
noted retries rate limits, server errors and lost connections itself (see
:class:`~noted.models.base.RetryPolicy`).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Final, Literal
from urllib.parse import urlsplit

from noted.db.shown import safe_url
from noted.errors import ModelConnectionError, ModelError, ModelOutputError, UserError
from noted.models._ids import OPENAI_IDS, wire_ids
from noted.models._provider import (
    HTTPChatModel,
    headed_error,
    http_error,
    import_sdk,
    parsed,
    transport_errors,
)
from noted.models._thinking import checked_level, openai_effort, output_limit, warn_if_thought_out
from noted.models.base import RetryPolicy
from noted.models.types import (
    Message,
    ModelDelta,
    ModelRequest,
    ModelResponse,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    ToolDefinition,
    Usage,
    UsageDelta,
)

__all__ = ["Ollama", "OpenAIChat"]

_OLLAMA_HOST_ENV = "OLLAMA_HOST"
_OLLAMA_DEFAULT_HOST = "http://localhost:11434"
_OLLAMA_DEFAULT_PORT = 11434
_MAX_ERROR_TEXT = 2000

log = logging.getLogger("noted.models")

JsonMode = Literal["json_schema", "json_object", "prompt"]
_FALLBACK: Final[dict[JsonMode, JsonMode]] = {"json_schema": "json_object", "json_object": "prompt"}
_REFUSAL_STATUSES: Final = frozenset((400, 422, 500))
_OPENAI_HOST: Final = "api.openai.com"
_SCHEMA_PROMPT: Final = (
    "Answer with one JSON object and nothing else (no prose, no code fence). "
    "It must match this JSON schema:\n"
)


@dataclass(slots=True)
class _Ending:
    """Whether a stream's server sent ``data: [DONE]``, the line that ends a stream (the
    SDK reads it and hands nothing on)."""

    done: bool = False


# The ending of the stream being opened in this context, for the SDK's decoder to mark.
_opening: ContextVar[_Ending | None] = ContextVar("noted_openai_opening", default=None)


class OpenAIChat(HTTPChatModel):
    """A chat model behind the OpenAI Chat Completions API.

    ``api_key`` defaults to the ``OPENAI_API_KEY`` environment variable and ``base_url``
    to OpenAI (or ``OPENAI_BASE_URL`` when set). For a compatible server, pass its URL,
    for example ``base_url="http://localhost:8000/v1"``; a server that checks no key still
    needs one to be given (any placeholder will do). ``timeout`` is in seconds, per
    attempt (for a stream: per wait for its next event). ``max_tokens`` and
    ``temperature`` are sent only when set (a request's lower ``max_tokens`` wins).
    ``reasoning_effort`` (``"low"``, ...) is sent with every call when set (unset: see
    :func:`~noted.models._thinking.openai_effort`).
    """

    provider = "openai"
    api_key_envs = ("OPENAI_API_KEY",)
    # (base URL, model) -> the structured-output format the server accepts for that model
    # (see the module doc)
    json_modes: ClassVar[dict[tuple[str, str], JsonMode]] = {}
    # (base URL, model) that refused max_tokens and took max_completion_tokens
    _completion_tokens_models: ClassVar[set[tuple[str, str]]] = set()

    def __init__(
        self,
        id: str = "gpt-4o-mini",
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = 60.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        retry: RetryPolicy | None = None,
        reasoning_effort: str | None = None,
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
        self.reasoning_effort = checked_level("reasoning_effort", reasoning_effort)

    # -- the SDK client ------------------------------------------------------------------

    def _sdk(self) -> ModuleType:
        return import_sdk("openai", extra="openai", user=type(self).__name__)

    def _make_client(self) -> Any:
        return _client_class(self._sdk().AsyncOpenAI)(
            api_key=self._api_key(), base_url=self.base_url, timeout=self.timeout, max_retries=0
        )

    def _api_key_hint(self) -> str:
        return " (a server that checks no key accepts any placeholder, for example api_key='none')"

    # -- requests ------------------------------------------------------------------------

    def _json_mode(self, request: ModelRequest) -> JsonMode | None:
        """How to ask this server for structured output (None: not asked for)."""
        if request.response_schema is None:
            return None
        return self.json_modes.get((self._server(), self.id), "json_schema")

    def _server(self) -> str:
        """The server's base URL as it may be shown: without the credentials a URL can carry
        (``user:password@``, ``?api-key=``), which would otherwise reach error messages,
        logs, failed runs saved by the agent, and the keys of ``json_modes``."""
        return safe_url(str(self._clients.get().base_url).rstrip("/"))

    def _params(self, request: ModelRequest, mode: JsonMode | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.id,
            "messages": [_message_param(m) for m in wire_ids(request.messages, OPENAI_IDS)],
        }
        if request.tools:
            params["tools"] = [_tool_param(t) for t in request.tools]
        if request.response_schema is not None:
            schema = dict(request.response_schema)
            if mode == "prompt":
                _add_instruction(params["messages"], _SCHEMA_PROMPT + json.dumps(schema))
            elif mode == "json_object":
                params["response_format"] = {"type": "json_object", "schema": schema}
            else:
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": request.response_schema_name,
                        "schema": schema,
                        "strict": schema.get("additionalProperties") is False,
                    },
                }
        capped = request.max_tokens is not None
        effort, allowance = openai_effort(self.reasoning_effort, self.id, capped)
        if effort is not None:
            params["reasoning_effort"] = effort
        if (limit := output_limit(self.max_tokens, request.max_tokens, allowance)) is not None:
            params[self._token_limit_name()] = limit
        if self.temperature is not None:
            params["temperature"] = self.temperature
        return params

    def _warn_if_thought_out(self, usage: Usage | UsageDelta, finish: str | None) -> None:
        setting = f"{type(self).__name__}(reasoning_effort=...)"
        warn_if_thought_out(self.provider, self.id, usage, finish, setting)

    def _token_limit_name(self) -> str:
        """The parameter that carries the token limit to this server for this model."""
        server = self._server()
        if (server, self.id) in self._completion_tokens_models:
            return "max_completion_tokens"
        if urlsplit(server).hostname == _OPENAI_HOST:
            return "max_completion_tokens"
        return "max_tokens"

    async def _create(self, request: ModelRequest, *, raw: bool = False, **extra: Any) -> Any:
        """``chat.completions.create`` for the request (``raw``: its ``with_raw_response``
        twin, whose answer holds the HTTP response), falling back to the next
        structured-output format while the server refuses the one asked for, and to
        ``max_completion_tokens`` if it refuses ``max_tokens``."""
        completions = self._clients.get().chat.completions
        create = completions.with_raw_response.create if raw else completions.create
        while True:
            mode = self._json_mode(request)
            params = self._params(request, mode)
            try:
                return await create(**params, **extra)
            except self._sdk().APIStatusError as exc:
                if "max_tokens" in params and _refuses_max_tokens(exc):
                    self._take_completion_tokens(exc)
                elif mode is None or mode not in _FALLBACK or not _refuses(exc, mode):
                    raise
                else:
                    self._fall_back(mode, _FALLBACK[mode], exc)

    def _take_completion_tokens(self, exc: Any) -> None:
        """Send this model's token limit as ``max_completion_tokens`` from now on."""
        self._completion_tokens_models.add((self._server(), self.id))
        log.warning(
            "%s at %s refused max_tokens for %s (HTTP %s); sending max_completion_tokens "
            "from now on",
            self.provider,
            self._server(),
            self.id,
            exc.status_code,
        )

    def _fall_back(self, refused: JsonMode, to: JsonMode, exc: Any) -> None:
        server = self._server()
        if self.json_modes.get((server, self.id), "json_schema") == refused:
            self.json_modes[server, self.id] = to
            how = "JSON mode with the schema" if to == "json_object" else "the schema in the prompt"
            log.warning(
                "%s at %s refused response_format %s for %s (HTTP %s); asking for %s from now on",
                self.provider,
                server,
                refused,
                self.id,
                exc.status_code,
                how,
            )

    async def _send(self, request: ModelRequest) -> ModelResponse:
        with self._mapped_errors():
            answer = await self._create(request, raw=True)
            completion = await parsed(answer)
        if isinstance(completion, str):  # the body's text: the SDK could not read it as JSON
            self._check_utf8(answer.http_response)
        response = self._response(completion)
        self._warn_if_thought_out(response.usage, response.finish_reason)
        return response

    async def _send_stream(self, request: ModelRequest) -> AsyncIterator[ModelDelta]:
        state = _StreamState()
        # (an SDK whose decoder cannot be watched: taken as ended, as it always was)
        ending = _Ending(done=not getattr(self._clients.get(), "watches_done", False))
        with self._mapped_errors():
            opening = _opening.set(ending)
            try:
                stream = await self._timed(
                    self._create(request, stream=True, stream_options={"include_usage": True})
                )
            finally:
                _opening.reset(opening)
            async with stream:
                events = aiter(stream)
                while (chunk := await self._timed(anext(events, None))) is not None:
                    for delta in state.deltas(chunk):
                        yield delta
        if state.finish_reason is None and not ending.done:
            raise self._unfinished(state.chunks, getattr(stream, "response", None))
        end = state.end()
        self._warn_if_thought_out(end, end.finish_reason)
        yield end

    def _response(self, completion: Any) -> ModelResponse:
        choices = getattr(completion, "choices", None) or []
        if not choices:
            raise ModelOutputError(f"{self.provider} {self.id} answered without any choices")
        choice = choices[0]
        message = choice.message
        calls: list[ToolCall] = []
        for call in getattr(message, "tool_calls", None) or ():
            function = getattr(call, "function", None)
            if function is None:
                continue  # not a function call (no other kind is ever requested)
            calls.append(
                ToolCall.from_json_text(
                    function.name or "", _arguments_text(function.arguments), call.id
                )
            )
        content = getattr(message, "content", None)
        finish_reason = getattr(choice, "finish_reason", None) or None
        refusal = getattr(message, "refusal", None)
        if not content and refusal:  # the model declined: its words are the answer
            content, finish_reason = refusal, "refusal"
        return ModelResponse(
            content=content,
            tool_calls=calls,
            usage=_usage(getattr(completion, "usage", None)),
            model=getattr(completion, "model", None) or None,
            finish_reason=finish_reason,
        )

    # -- failures ------------------------------------------------------------------------

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        # the SDK reads a streamed answer's lines with json.loads, and lets its error out
        return (self._sdk().APIError, json.JSONDecodeError)

    def _to_noted(self, exc: BaseException) -> ModelError:
        """The SDK's failure as noted's error (HTTP status, timeout, connection, other)."""
        sdk = self._sdk()
        if isinstance(exc, json.JSONDecodeError):
            return ModelOutputError(
                f"{self.provider} sent a line of its answer that is not JSON: {exc}"
            )
        if isinstance(exc, sdk.APIStatusError):
            message = _status_message(exc)
            return headed_error(self.provider, exc.status_code, message, exc.response.headers)
        if isinstance(exc, sdk.APITimeoutError):
            return self._timed_out()
        if isinstance(exc, sdk.APIConnectionError):
            if _reached(exc):
                return ModelConnectionError(
                    f"lost the connection to {self.provider}{self._at()}: {_connection_detail(exc)}"
                )
            return ModelConnectionError(
                f"could not reach {self.provider}{self._at()}: "
                f"{_connection_detail(exc)}{self._connection_hint()}"
            )
        message = str(getattr(exc, "message", exc))
        status = _error_event_status(exc)
        if status is not None:  # an error event in a stream, with an HTTP status as its code
            return http_error(self.provider, status, message)
        # An error reported inside a stream, or an answer the SDK could not read.
        return ModelError(f"{self.provider} failed: {message}")

    def _at(self) -> str:
        return f" at {self._server()}"

    def _connection_hint(self) -> str:
        return ""


class Ollama(OpenAIChat):
    """A model served by a local (or remote) Ollama, through its OpenAI-compatible API.

    ``host`` defaults to the ``OLLAMA_HOST`` environment variable, else
    ``http://localhost:11434``; a host without a scheme gets ``http://`` (and, without a
    port, Ollama's port 11434). Ollama checks no API key, so a placeholder is sent unless
    ``api_key`` is given (for an Ollama behind an authenticating proxy). ``timeout`` is
    longer than :class:`OpenAIChat`'s because Ollama loads a model on its first request.
    """

    provider = "ollama"

    def __init__(
        self,
        id: str = "llama3.2",
        *,
        host: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        retry: RetryPolicy | None = None,
        reasoning_effort: str | None = None,
    ) -> None:
        self.host = _ollama_host(host)
        super().__init__(
            id,
            api_key=api_key or "ollama",
            base_url=self.host + "/v1",
            timeout=timeout,
            max_tokens=max_tokens,
            temperature=temperature,
            retry=retry,
            reasoning_effort=reasoning_effort,
        )

    def _connection_hint(self) -> str:
        return " (is Ollama running? start it with 'ollama serve')"


# -- streams -----------------------------------------------------------------------------


@functools.cache
def _client_class(sdk_client: type[Any]) -> type[Any]:
    """The SDK's client class, with the SSE decoder of a stream opened while an
    :class:`_Ending` is set (see ``_opening``) watched for ``[DONE]``: a stream that ends
    without it, and without a finish reason, was cut short."""

    if not callable(getattr(sdk_client, "_make_sse_decoder", None)):
        return sdk_client

    def make_sse_decoder(client: Any) -> Any:
        decoder = sdk_client._make_sse_decoder(client)
        ending = _opening.get()
        return decoder if ending is None else _DoneWatch(decoder, ending)

    methods = {"_make_sse_decoder": make_sse_decoder, "watches_done": True}
    return type("NotedAsyncOpenAI", (sdk_client,), methods)


class _DoneWatch:
    """An async client's SSE decoder that marks its stream's :class:`_Ending` as
    ``[DONE]`` goes by."""

    def __init__(self, decoder: Any, ending: _Ending) -> None:
        self._decoder = decoder
        self._ending = ending

    async def aiter_bytes(self, iterator: AsyncIterator[bytes]) -> AsyncIterator[Any]:
        async for event in self._decoder.aiter_bytes(iterator):
            if str(getattr(event, "data", "")).startswith("[DONE]"):
                self._ending.done = True
            yield event


# -- translation -------------------------------------------------------------------------


def _message_param(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "content": message.content or "",
        }
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": _arguments_param(call)},
                }
                for call in message.tool_calls
            ],
        }
    return {"role": message.role, "content": message.content or ""}


def _arguments_param(call: ToolCall) -> str:
    """A call's arguments as they go back with the conversation. Arguments that were no
    JSON object go back as ``{}``: servers that parse the conversation's arguments (Ollama)
    refuse the whole request over them, and the call's result already tells the model what
    was wrong (the call keeps the text it sent, in ``invalid_arguments``)."""
    if call.invalid_arguments is not None:
        return "{}"
    return call.arguments_json()


def _add_instruction(messages: list[dict[str, Any]], text: str) -> None:
    """Add ``text`` to the system message (the first message), or start with one."""
    if messages and messages[0]["role"] == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}"}
    else:
        messages.insert(0, {"role": "system", "content": text})


def _refuses(exc: Any, mode: JsonMode) -> bool:
    """Whether an error answer is the server refusing the ``response_format`` it was sent
    (a validation error naming it, answered 400, 422, or 500 by servers that wrap it)."""
    if exc.status_code not in _REFUSAL_STATUSES:
        return False
    response = getattr(exc, "response", None)
    text = response.text if response is not None else str(exc.body)
    return "response_format" in text or mode in text


def _refuses_max_tokens(exc: Any) -> bool:
    """Whether an error answer is the server refusing ``max_tokens`` for
    ``max_completion_tokens``: OpenAI's reasoning models answer 400 with ``param:
    max_tokens``, ``code: unsupported_parameter`` and "Use 'max_completion_tokens' instead".
    A ``max_tokens`` above the model's limit is no refusal of the parameter."""
    if exc.status_code != 400:
        return False
    body = exc.body  # the SDK has already unwrapped a top-level "error" member
    error = body.get("error", body) if isinstance(body, Mapping) else {}
    named = isinstance(error, Mapping) and error.get("param") == "max_tokens"
    if named and error.get("code") == "unsupported_parameter":
        return True
    return "max_completion_tokens" in _status_message(exc)


def _tool_param(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": dict(tool.parameters),
        },
    }


@dataclass(slots=True)
class _StreamState:
    """What a stream has said so far. The last usage report wins (some servers send
    running totals); a refusal streamed in place of text is the answer's text, and its
    finish reason ``refusal``."""

    chunks: int = 0
    usage: Any = None
    finish_reason: str | None = None
    model: str | None = None
    said: bool = False
    refused: bool = False

    def deltas(self, chunk: Any) -> list[ModelDelta]:
        self.chunks += 1
        self.model = getattr(chunk, "model", None) or self.model
        if getattr(chunk, "usage", None) is not None:
            self.usage = chunk.usage
        deltas: list[ModelDelta] = []
        for choice in getattr(chunk, "choices", None) or ():
            self.finish_reason = choice.finish_reason or self.finish_reason
            self.said = self.said or bool(getattr(choice.delta, "content", None))
            self.refused = self.refused or bool(getattr(choice.delta, "refusal", None))
            deltas.extend(_chunk_deltas(choice.delta))
        return deltas

    def end(self) -> UsageDelta:
        refusal = self.refused and not self.said
        return UsageDelta.of(
            _usage(self.usage), "refusal" if refusal else self.finish_reason, self.model
        )


def _chunk_deltas(delta: Any) -> Iterator[ModelDelta]:
    if delta is None:
        return
    text = getattr(delta, "content", None) or getattr(delta, "refusal", None)
    if text:
        yield TextDelta(text)
    for position, call in enumerate(getattr(delta, "tool_calls", None) or ()):
        index = getattr(call, "index", None)
        if not isinstance(index, int):
            index = position
        function = getattr(call, "function", None)
        name = (getattr(function, "name", None) or None) if function is not None else None
        arguments = _arguments_text(getattr(function, "arguments", None) if function else None)
        call_id = getattr(call, "id", None) or None
        if call_id is None and name is None and not arguments:
            continue
        yield ToolCallDelta(index=index, id=call_id, name=name, arguments=arguments)


def _arguments_text(arguments: object) -> str:
    """A call's arguments as JSON text. The API sends a string; some compatible servers
    send the JSON object itself, which is written back as text."""
    if arguments is None or isinstance(arguments, str):
        return arguments or ""
    return json.dumps(arguments, ensure_ascii=False, default=str)


def _usage(usage: Any) -> Usage:
    """An answer's ``usage`` as noted's: ``prompt_tokens`` and ``completion_tokens`` (which
    holds the reasoning tokens), unknown (None) when the server sends none (the
    llama-cpp-python server sends no usage in a stream); and the parts OpenAI details,
    where a server sends them (compatible servers mostly do not):
    ``prompt_tokens_details.cached_tokens`` (read from the prompt cache),
    ``.cache_write_tokens``, and ``completion_tokens_details.reasoning_tokens``."""
    if usage is None:
        return Usage.unknown()
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return Usage(
        _reported(usage, "prompt_tokens"),
        _reported(usage, "completion_tokens"),
        cache_read_tokens=_count(prompt, "cached_tokens"),
        cache_write_tokens=_count(prompt, "cache_write_tokens"),
        reasoning_tokens=_count(completion, "reasoning_tokens"),
    )


def _reported(usage: Any, name: str) -> int | None:
    """The whole token count ``name`` of a usage report: None when the server leaves it
    out or sends null."""
    count = getattr(usage, name, None)
    return None if count is None else int(count)


def _count(part: Any, name: str) -> int:
    """The token count ``name`` of one of a usage report's details (0 when the server
    leaves it out, sends null, or sends no details)."""
    return int(getattr(part, name, None) or 0)


# -- failures ----------------------------------------------------------------------------


def _status_message(exc: Any) -> str:
    """The provider's own words: ``error.message`` of a JSON body, else the body's text."""
    body = exc.body  # the SDK has already unwrapped a top-level "error" member
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, Mapping) else inner
        if isinstance(message, str) and message.strip():
            return message.strip()
        return json.dumps(body, ensure_ascii=False, default=str)[:_MAX_ERROR_TEXT]
    if isinstance(body, str) and body.strip():
        return body.strip()[:_MAX_ERROR_TEXT]
    return str(exc.message)


def _error_event_status(exc: Any) -> int | None:
    """The HTTP status an error event's ``code`` names (vLLM sends ``"code": 503`` for an
    overloaded engine), so that it is retried as that status would be; None when the
    code is no HTTP error status."""
    body = getattr(exc, "body", None)
    code = body.get("code") if isinstance(body, Mapping) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        return code
    return None


def _reached(exc: Any) -> bool:
    """Whether a connection failure came after the server was reached: the connection
    broke while the request or the answer went through it (a server killed in the middle
    of an answer), rather than it could not be made (nothing listening, a name that does
    not resolve). The SDK names its HTTP library's error as the cause."""
    errors = transport_errors()
    cause = exc.__cause__
    return isinstance(cause, errors.failures) and not isinstance(cause, errors.unmade)


def _connection_detail(exc: Any) -> str:
    cause = exc.__cause__
    if cause is not None and str(cause):
        return f"{type(cause).__name__}: {cause}"
    return str(exc.message)


def _ollama_host(host: str | None) -> str:
    """``host`` (or ``OLLAMA_HOST``) as a base URL without a trailing slash or ``/v1``."""
    value = host if host is not None else os.environ.get(_OLLAMA_HOST_ENV, "")
    bad = UserError(f"host must be a URL such as 'http://localhost:11434', got {value!r}")
    if not isinstance(value, str):
        raise bad
    value = value.strip().rstrip("/") or _OLLAMA_DEFAULT_HOST
    if value.endswith("/v1"):
        value = value[: -len("/v1")]
    try:
        if "://" not in value:
            value = "http://" + value
            if urlsplit(value).port is None:
                parts = urlsplit(value)
                value = parts._replace(netloc=f"{parts.netloc}:{_OLLAMA_DEFAULT_PORT}").geturl()
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise bad from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad
    return value
