"""What goes to a chat model and what comes back: messages, tools, responses, stream deltas.

Plain data with no I/O, shared by every provider, the test models, the agent and the
session store (runs are saved as these messages).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

from noted._json import decode_json
from noted.errors import UserError

__all__ = [
    "Message",
    "ModelDelta",
    "ModelRequest",
    "ModelResponse",
    "ResponseBuilder",
    "Role",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "ToolDefinition",
    "Usage",
    "UsageDelta",
    "count_sum",
    "new_tool_call_id",
    "split_pair",
    "valid_text",
]

Role = Literal["system", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset(("system", "user", "assistant", "tool"))


def new_tool_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def valid_text(text: str) -> str:
    """``text`` as Unicode every store and terminal can write: a surrogate pair a provider
    sent as two escapes (or in two pieces) made the one character it stands for, and an
    unpaired surrogate replaced by U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def split_pair(text: str) -> tuple[str, str]:
    """``text`` (not empty) without a first half of a surrogate pair at its end, and that
    half: a stream's piece of text may end between the two halves of one character."""
    if "\ud800" <= text[-1] <= "\udbff":
        return text[:-1], text[-1]
    return text, ""


def _valid(value: Any) -> Any:
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {valid_text(str(k)): _valid(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_valid(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A model's request to run one tool. ``arguments`` is the decoded JSON object;
    when the model sent arguments that are not a JSON object, ``arguments`` is empty and
    ``invalid_arguments`` holds the raw text, so the agent can tell the model what went wrong.
    """

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=new_tool_call_id)
    invalid_arguments: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"id": self.id, "name": self.name, "arguments": self.arguments}
        if self.invalid_arguments is not None:
            data["invalid_arguments"] = self.invalid_arguments
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(
            name=data["name"],
            arguments=dict(data.get("arguments") or {}),
            id=data["id"],
            invalid_arguments=data.get("invalid_arguments"),
        )

    @classmethod
    def from_json_text(cls, name: str, text: str, call_id: str | None = None) -> ToolCall:
        """A call whose arguments arrived as JSON text (possibly empty, possibly broken)."""
        call_id = call_id or new_tool_call_id()
        if not text.strip():
            return cls(name=name, id=call_id)
        try:
            decoded = decode_json(text)
        except ValueError:
            decoded = None
        if not isinstance(decoded, dict):
            return cls(name=name, id=call_id, invalid_arguments=text)
        return cls(name=name, arguments=decoded, id=call_id)

    def arguments_json(self) -> str:
        if self.invalid_arguments is not None:
            return self.invalid_arguments
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(slots=True)
class Message:
    """One message of a conversation.

    ``assistant`` messages may carry ``tool_calls``; a ``tool`` message answers one call,
    naming it by ``tool_call_id`` (and the tool by ``name``).
    """

    role: Role
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise UserError(f"message role must be one of {sorted(ROLES)}, got {self.role!r}")
        if self.content is not None and not isinstance(self.content, str):
            raise UserError(f"message content must be a string, got {type(self.content)!r}")
        if self.role == "tool" and not self.tool_call_id:
            raise UserError("a tool message needs the tool_call_id it answers")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            data["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        if self.tool_call_id is not None:
            data["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            data["name"] = self.name
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        return cls(
            role=data["role"],
            content=data.get("content"),
            tool_calls=[ToolCall.from_dict(c) for c in data.get("tool_calls") or ()],
            tool_call_id=data.get("tool_call_id"),
            name=data.get("name"),
        )


@dataclass(frozen=True, slots=True)
class ToolDefinition:
    """A tool as the model sees it: a name, what it does, and a JSON schema of its arguments."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """Everything one model call needs. ``response_schema``, when set, is a JSON schema the
    answer's text must satisfy (structured output); ``response_schema_name`` names it.
    ``max_tokens``, when set, caps this answer's length below the model's own setting
    (the lower of the two applies: see :meth:`token_limit`). It is the answer's cap: a
    provider that knows the model thinks first bounds the thinking and allows for it
    above the cap (see :mod:`noted.models._thinking`)."""

    messages: Sequence[Message]
    tools: Sequence[ToolDefinition] = ()
    response_schema: Mapping[str, Any] | None = None
    response_schema_name: str = "response"
    max_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and (
            type(self.max_tokens) is not int or self.max_tokens < 1
        ):
            raise UserError(f"max_tokens must be an integer >= 1 or None, got {self.max_tokens!r}")

    def token_limit(self, model_max_tokens: int | None) -> int | None:
        """The answer's token limit for a model whose own setting is ``model_max_tokens``
        (None: no limit of its own): the lower of that and this request's."""
        limits = [n for n in (model_max_tokens, self.max_tokens) if n is not None]
        return min(limits) if limits else None

    def system_text(self) -> str | None:
        """The system messages joined, for providers that take the system prompt apart."""
        parts = [m.content for m in self.messages if m.role == "system" and m.content]
        return "\n\n".join(parts) if parts else None


def count_sum(a: int | None, b: int | None) -> int | None:
    """Two token counts added up: None (unknown) when either is unknown."""
    return None if a is None or b is None else a + b


@dataclass(slots=True)
class Usage:
    """Tokens counted by the provider for one call (or summed over several).

    ``input_tokens`` and ``output_tokens`` are the whole counts: None when the provider
    did not report them (an OpenAI-compatible server that sends no usage in a stream, as
    llama-cpp-python's does), so that an unknown count is never taken for 0; a sum with an
    unknown count in it is unknown. The others are parts of them, as far as the provider
    reports them (0 when it does not): of the input, the tokens read from the provider's
    prompt cache (``cache_read_tokens``) and those written to it (``cache_write_tokens``);
    of the output, the tokens the model spent reasoning (``reasoning_tokens``)."""

    input_tokens: int | None = 0
    output_tokens: int | None = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def unknown(cls) -> Usage:
        """The usage of a call whose provider reported no token counts."""
        return cls(None, None)

    @property
    def total_tokens(self) -> int | None:
        """Input and output tokens together (None when either is unknown)."""
        return count_sum(self.input_tokens, self.output_tokens)

    def add(self, other: Usage | UsageDelta) -> None:
        """Add the counts of another call (or of a stream delta) to these."""
        self.input_tokens = count_sum(self.input_tokens, other.input_tokens)
        self.output_tokens = count_sum(self.output_tokens, other.output_tokens)
        self.cache_read_tokens += other.cache_read_tokens
        self.cache_write_tokens += other.cache_write_tokens
        self.reasoning_tokens += other.reasoning_tokens

    def copy(self) -> Usage:
        return Usage(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.reasoning_tokens,
        )

    def to_dict(self) -> dict[str, int | None]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
        }


# The finish reasons of an answer cut off before its end (see ModelResponse.cut_short)
_CUT_SHORT = frozenset({"length", "max_tokens", "model_context_window_exceeded", "continuation"})
# The finish reasons of an answer its provider stopped or withheld (see ModelResponse.refused)
_REFUSED = frozenset(
    {
        "refusal",
        "content_filter",
        "safety",
        "recitation",
        "prohibited_content",
        "blocklist",
        "spii",
        "language",
        "escalation",
        "model_armor",
        "pup_limited_disabled",
        "image_safety",
        "image_prohibited_content",
        "image_recitation",
    }
)

# The finish reasons of an answer whose tool call the provider could not read (see
# ModelResponse.failed_call)
_FAILED_CALL = frozenset({"malformed_function_call", "unexpected_tool_call", "malformed_response"})


@dataclass(slots=True)
class ModelResponse:
    """One answer: text, tool calls, or both."""

    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    finish_reason: str | None = None

    @property
    def cut_short(self) -> bool:
        """Whether the answer stopped at its token limit rather than ending (the finish
        reason ``length`` of OpenAI and llama.cpp, ``max_tokens`` of Claude and Gemini,
        Gemini's ``CONTINUATION``: its limit of tokens a request), or at the end of the
        model's context window (Claude's ``model_context_window_exceeded``: the prompt left
        less room than ``max_tokens``)."""
        return (self.finish_reason or "").casefold() in _CUT_SHORT

    @property
    def refused(self) -> bool:
        """Whether the provider stopped or withheld the answer: a refusal (the finish
        reason ``refusal`` of Claude and OpenAI) or a content filter (OpenAI's
        ``content_filter``; Gemini's ``SAFETY``, ``RECITATION``, ``PROHIBITED_CONTENT``,
        ``BLOCKLIST``, ``SPII``, ``LANGUAGE`` (a language it does not serve),
        ``ESCALATION``, ``MODEL_ARMOR``, ``PUP_LIMITED_DISABLED`` (an account limited for
        its use) and those of images, for the answer or for a blocked prompt)."""
        return (self.finish_reason or "").casefold() in _REFUSED

    @property
    def tool_limited(self) -> bool:
        """Whether the provider stopped the model's tool calls before its answer: Gemini's
        ``TOO_MANY_TOOL_CALLS``."""
        return (self.finish_reason or "").casefold() == "too_many_tool_calls"

    @property
    def failed_call(self) -> bool:
        """Whether the provider dropped the answer because the model's tool call could not
        be read or was not one it could make: Gemini's ``MALFORMED_FUNCTION_CALL`` and
        ``UNEXPECTED_TOOL_CALL``, answers without a call and mostly without text (and
        ``MALFORMED_RESPONSE``, an answer it could not read)."""
        return (self.finish_reason or "").casefold() in _FAILED_CALL

    def to_message(self) -> Message:
        return Message(role="assistant", content=self.content, tool_calls=list(self.tool_calls))

    def valid(self) -> ModelResponse:
        """This answer with its text and tool calls as :func:`valid_text` makes them (the
        answer itself when it is text alone, and valid already)."""
        content = None if self.content is None else valid_text(self.content)
        if not self.tool_calls and content is self.content:
            return self
        calls = [
            ToolCall(
                valid_text(c.name),
                _valid(c.arguments),
                valid_text(c.id),
                None if c.invalid_arguments is None else valid_text(c.invalid_arguments),
            )
            for c in self.tool_calls
        ]
        return ModelResponse(content, calls, self.usage, self.model, self.finish_reason)


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text, as it streams."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a tool call, as it streams. Pieces with the same ``index`` belong to one
    call, unless a piece brings an ``id`` other than the call's (a server that numbers no
    calls sends each whole): that piece starts a new call. ``id`` and ``name`` come at
    least once (a name may come in pieces; one repeated whole counts once), ``arguments``
    are JSON text fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class UsageDelta:
    """Token counts reported during a stream (providers report them once or in parts;
    counts add up; None: not reported, as in :class:`Usage`), with their parts as in
    :class:`Usage`. ``finish_reason`` and ``model`` may ride along."""

    input_tokens: int | None = 0
    output_tokens: int | None = 0
    finish_reason: str | None = None
    model: str | None = None
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def of(
        cls, usage: Usage, finish_reason: str | None = None, model: str | None = None
    ) -> UsageDelta:
        """A delta reporting ``usage`` whole."""
        return cls(
            usage.input_tokens,
            usage.output_tokens,
            finish_reason,
            model,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.reasoning_tokens,
        )


ModelDelta: TypeAlias = TextDelta | ToolCallDelta | UsageDelta


@dataclass(slots=True)
class _PendingCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


class ResponseBuilder:
    """Folds stream deltas into the :class:`ModelResponse` they add up to."""

    __slots__ = ("_at", "_calls", "_finish", "_model", "_text", "_usage")

    def __init__(self) -> None:
        self._text: list[str] = []
        self._calls: list[tuple[int, _PendingCall]] = []  # (index, call) as they began
        self._at: dict[int, _PendingCall] = {}  # each index's current call
        self._usage = Usage()
        self._finish: str | None = None
        self._model: str | None = None

    def add(self, delta: ModelDelta) -> None:
        if isinstance(delta, TextDelta):
            self._text.append(delta.text)
        elif isinstance(delta, ToolCallDelta):
            pending = self._at.get(delta.index)
            if pending is None or (delta.id and pending.id and delta.id != pending.id):
                pending = self._at[delta.index] = _PendingCall()
                self._calls.append((delta.index, pending))
            if delta.id:
                pending.id = delta.id
            if delta.name and delta.name != pending.name:
                # a name streamed in pieces adds up; one resent whole with every piece
                # (as some compatible servers do) is the same name again
                pending.name += delta.name
            if delta.arguments:
                pending.arguments.append(delta.arguments)
        else:
            self._usage.add(delta)
            self._finish = delta.finish_reason or self._finish
            self._model = delta.model or self._model

    def text(self) -> str:
        """The answer's text so far (all of it once the stream has ended)."""
        return "".join(self._text)

    def build(self) -> ModelResponse:
        calls = [
            ToolCall.from_json_text(p.name, "".join(p.arguments), p.id)
            for _, p in sorted(self._calls, key=lambda numbered: numbered[0])
        ]
        return ModelResponse(
            content="".join(self._text) if self._text else None,
            tool_calls=calls,
            usage=self._usage.copy(),
            model=self._model,
            finish_reason=self._finish,
        )
