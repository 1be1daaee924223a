"""Span attributes in the OpenInference semantic conventions, built from noted's objects.

Pure functions: each takes what a span describes and the privacy settings, and returns a
flat attribute mapping (values already hidden where the settings say so).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from openinference.semconv.trace import (
    DocumentAttributes,
    EmbeddingAttributes,
    MessageAttributes,
    OpenInferenceMimeTypeValues,
    OpenInferenceSpanKindValues,
    SpanAttributes,
    ToolAttributes,
    ToolCallAttributes,
)
from opentelemetry.util.types import AttributeValue

from noted._cut import cut_middle
from noted.limits import MAX_TRACE_MESSAGES_CHARS, MAX_TRACE_VALUE_CHARS, MAX_TRACE_VECTOR_NUMBERS
from noted.memory.relevance import keywords
from noted.models.types import ModelResponse
from noted.tracing._budget import MAX_CHAR_BYTES, Budget, share, utf8_size
from noted.tracing._settings import REDACTED, TraceSettings

if TYPE_CHECKING:
    import numpy.typing as npt

    from noted.memory.manager import MemoryUpdate
    from noted.models.base import ChatModel
    from noted.models.types import Message, ModelRequest, ToolCall, Usage
    from noted.schema import UserMemory
    from noted.sessions import RunResult

__all__ = [
    "Attributes",
    "agent_closing",
    "agent_opening",
    "bounded",
    "documents",
    "embedding_texts",
    "embedding_vectors",
    "kind",
    "llm_identity",
    "llm_partial",
    "llm_request",
    "llm_response",
    "memory_update",
    "metadata",
    "overlap",
    "text_value",
    "to_json",
    "with_context",
]

Attributes = dict[str, AttributeValue]

JSON = OpenInferenceMimeTypeValues.JSON.value
TEXT = OpenInferenceMimeTypeValues.TEXT.value
_LLM = OpenInferenceSpanKindValues.LLM.value
_AGENT = OpenInferenceSpanKindValues.AGENT.value


_JSON = json.JSONEncoder(ensure_ascii=False, default=str)  # one encoder, not one per call


def to_json(value: object) -> str:
    return _JSON.encode(value)


def kind(value: OpenInferenceSpanKindValues) -> Attributes:
    return {SpanAttributes.OPENINFERENCE_SPAN_KIND: value.value}


def bounded(text: str) -> str:
    """``text`` as a span holds it: whole when it has at most
    :data:`~noted.limits.MAX_TRACE_VALUE_CHARS` characters, else its first two thirds of
    that many and its last third, a line between them saying how many were left out."""
    limit = MAX_TRACE_VALUE_CHARS
    if len(text) <= limit:
        return text
    mark = (
        f"\n[... {len(text) - limit:,} characters were left out of this value: a span holds "
        f"at most {limit:,} of each ...]\n"
    )
    return cut_middle(text, limit, mark)


def _value(key: str, value: str, mime: str) -> Attributes:
    """``<key>.value`` and its mime type, ``value`` bounded (a cut JSON text is plain text:
    it no longer parses)."""
    if len(value) > MAX_TRACE_VALUE_CHARS:
        return {f"{key}.value": bounded(value), f"{key}.mime_type": TEXT}
    return {f"{key}.value": value, f"{key}.mime_type": mime}


def text_value(key: str, value: str | None, hidden: bool, mime: str = TEXT) -> Attributes:
    """``input.value`` / ``output.value`` (``key`` is "input" or "output") and its mime
    type, bounded (see :func:`bounded`); only ``__REDACTED__`` when hidden."""
    if value is None:
        return {}
    if hidden:
        return {f"{key}.value": REDACTED}
    return _value(key, value, mime)


def _calls(out: Attributes, base: str, calls: Sequence[ToolCall], text: bool) -> int:
    """Add ``calls`` to ``out``; returns how many characters their arguments have there."""
    size = 0
    for j, call in enumerate(calls):
        prefix = f"{base}{MessageAttributes.MESSAGE_TOOL_CALLS}.{j}."
        out[prefix + ToolCallAttributes.TOOL_CALL_ID] = call.id
        out[prefix + ToolCallAttributes.TOOL_CALL_FUNCTION_NAME] = call.name
        arguments = bounded(call.arguments_json()) if text else REDACTED
        out[prefix + ToolCallAttributes.TOOL_CALL_FUNCTION_ARGUMENTS_JSON] = arguments
        size += len(arguments)
    return size


_SHARE_FROM = MAX_TRACE_MESSAGES_CHARS // MAX_CHAR_BYTES
"""The characters of a call's message texts beyond which they may hold more than
MAX_TRACE_MESSAGES_CHARS UTF-8 bytes (and :func:`share` counts them)."""

# The attribute names of the message at each position, made once per prefix and index
# (a run's model call has a dozen messages: no name is built again for each call).
_MessageKeys = tuple[str, str, str, str, str]  # base, role, content, name, tool call id
_MESSAGE_KEYS: dict[str, tuple[_MessageKeys, ...]] = {}


def _message_keys(prefix: str, count: int) -> tuple[_MessageKeys, ...]:
    keys = _MESSAGE_KEYS.get(prefix, ())
    if len(keys) < count:  # replaced whole, so threads never see a half-made table
        made = []
        for i in range(max(count, 2 * len(keys), 16)):
            base = f"{prefix}.{i}."
            made.append(
                (
                    base,
                    base + MessageAttributes.MESSAGE_ROLE,
                    base + MessageAttributes.MESSAGE_CONTENT,
                    base + MessageAttributes.MESSAGE_NAME,
                    base + MessageAttributes.MESSAGE_TOOL_CALL_ID,
                )
            )
        keys = _MESSAGE_KEYS[prefix] = tuple(made)
    return keys


def _messages(out: Attributes, prefix: str, messages: Sequence[Message], text: bool) -> None:
    """Add ``messages`` to ``out`` as ``<prefix>.<i>.message.*`` attributes, their texts
    together at most :data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS` UTF-8 bytes (see
    :func:`noted.tracing._budget.share`)."""
    keys = _message_keys(prefix, len(messages))
    size = 0  # the characters of the texts
    for (base, role, content, name, call_id), message in zip(keys, messages, strict=False):
        out[role] = message.role
        if message.content is not None:
            value = message.content
            if len(value) > MAX_TRACE_VALUE_CHARS:  # checked here: called for every message
                value = bounded(value)
            size += len(value)
            out[content] = value if text else REDACTED
        if message.name is not None:
            out[name] = message.name
        if message.tool_call_id is not None:
            out[call_id] = message.tool_call_id
        if message.tool_calls:
            size += _calls(out, base, message.tool_calls, text)
    if text and size > _SHARE_FROM:
        share(out, [k[0] for k in keys], messages)


_encode_text = json.encoder.encode_basestring  # a JSON string, as the encoder writes it


def _messages_json(messages: Sequence[Message]) -> str:
    """``to_json({"messages": [m.to_dict() for m in messages]})``, with the plain messages
    (a role and a text) written directly."""
    parts = []
    for message in messages:
        if message.tool_calls or message.tool_call_id is not None or message.name is not None:
            parts.append(to_json(message.to_dict()))
        else:
            content = message.content
            parts.append(
                '{"role": '
                + _encode_text(message.role)
                + ', "content": '
                + ("null" if content is None else _encode_text(content))
                + "}"
            )
    return '{"messages": [' + ", ".join(parts) + "]}"


def _invocation_parameters(model: ChatModel, request: ModelRequest) -> dict[str, Any]:
    params: dict[str, Any] = {"model": model.id}
    for name in ("max_tokens", "temperature"):
        value = getattr(model, name, None)
        if isinstance(value, int | float):
            params[name] = value
    if request.response_schema is not None:
        params["response_format"] = {
            "type": "json_schema",
            "name": request.response_schema_name,
            "schema": request.response_schema,
        }
    return params


def agent_opening(
    agent: Any, message: str, user_id: str, session_id: str, settings: TraceSettings
) -> Attributes:
    """An agent run span's opening attributes: the message, the session, the agent."""
    out: Attributes = {SpanAttributes.OPENINFERENCE_SPAN_KIND: _AGENT}
    if settings.hide_inputs:
        out[SpanAttributes.INPUT_VALUE] = REDACTED
    else:
        out[SpanAttributes.INPUT_VALUE] = bounded(message)
        out[SpanAttributes.INPUT_MIME_TYPE] = TEXT
    out[SpanAttributes.SESSION_ID] = session_id
    out[SpanAttributes.USER_ID] = user_id
    if agent.name:
        out[SpanAttributes.AGENT_NAME] = agent.name
    if agent.agent_id:
        out["noted.agent.id"] = agent.agent_id
    return out


def agent_closing(run: RunResult, settings: TraceSettings) -> Attributes:
    """An agent run span's closing attributes: the answer, the run id, what the run did."""
    out = text_value("output", run.content, bool(settings.hide_outputs))
    out["noted.run.id"] = run.run_id
    out.update(
        metadata(
            {
                "run_id": run.run_id,
                "agent_id": run.agent_id,
                "model": run.model,
                "model_calls": run.metrics.model_calls,
                "tool_calls": run.metrics.tool_calls,
                "stop_reason": run.stop_reason,
            }
        )
    )
    return out


# The JSON of a model's invocation parameters, by model and settings (requests without
# a response schema: the agent's own calls).
_PARAMETERS: dict[tuple[str, object, object], str] = {}


def _parameters_json(model: ChatModel, request: ModelRequest) -> str:
    if request.response_schema is not None:
        return to_json(_invocation_parameters(model, request))
    key = (model.id, getattr(model, "max_tokens", None), getattr(model, "temperature", None))
    try:
        found = _PARAMETERS.get(key)
    except TypeError:  # settings that cannot be a key: made each time
        return to_json(_invocation_parameters(model, request))
    if found is None:
        found = to_json(_invocation_parameters(model, request))
        if len(_PARAMETERS) < 256:
            _PARAMETERS[key] = found
    return found


def _without_memories(messages: Sequence[Message]) -> list[Message]:
    """``messages`` with the memory tools' arguments and results redacted: their texts
    are memories (``hide_memories``)."""
    from noted.agent.memory_tools import MEMORY_TOOL_NAMES  # the agent imports tracing
    from noted.models.types import ToolCall

    def call(c: ToolCall) -> ToolCall:
        if c.name not in MEMORY_TOOL_NAMES:
            return c
        return ToolCall(c.name, id=c.id, invalid_arguments=REDACTED)

    def redacted(message: Message) -> Message:
        if message.role == "tool" and message.name in MEMORY_TOOL_NAMES:
            return dataclasses.replace(message, content=REDACTED)
        if any(c.name in MEMORY_TOOL_NAMES for c in message.tool_calls):
            return dataclasses.replace(message, tool_calls=[call(c) for c in message.tool_calls])
        return message

    return [redacted(message) for message in messages]


def llm_identity(model: ChatModel) -> Attributes:
    """What makes a span an LLM span in Phoenix: its kind, the model and the provider.
    Set after the other opening attributes (see :func:`llm_request`)."""
    out: Attributes = {
        SpanAttributes.OPENINFERENCE_SPAN_KIND: _LLM,
        SpanAttributes.LLM_MODEL_NAME: model.id,
    }
    system, provider = _system_and_provider(model)
    if provider:
        out[SpanAttributes.LLM_PROVIDER] = provider
    if system:
        out[SpanAttributes.LLM_SYSTEM] = system
    return out


# llm.system: the API a model speaks (OpenInferenceLLMSystemValues), by noted's provider
_SYSTEMS = {"openai": "openai", "ollama": "openai", "anthropic": "anthropic"}
# llm.provider of an OpenAI-compatible server, by its host (OpenInferenceLLMProviderValues)
_HOSTS = {
    "api.openai.com": "openai",
    "api.groq.com": "groq",
    "api.deepseek.com": "deepseek",
    "api.x.ai": "xai",
    "api.together.xyz": "together",
    "api.fireworks.ai": "fireworks",
    "api.mistral.ai": "mistralai",
    "api.cerebras.ai": "cerebras",
    "api.perplexity.ai": "perplexity",
    "api.moonshot.ai": "moonshot",
}


def _host_provider(base_url: str) -> str | None:
    """The provider hosting an OpenAI-compatible API at ``base_url``; None for a host
    not known (a server of one's own: vLLM, llama.cpp's server, LM Studio, ...)."""
    host = (urlsplit(base_url if "//" in base_url else "//" + base_url).hostname or "").lower()
    if host.endswith(".openai.azure.com"):
        return "azure"
    return _HOSTS.get(host)


def _system_and_provider(model: ChatModel) -> tuple[str | None, str | None]:
    """``llm.system`` (the API the model speaks: "openai" for OpenAI and every
    OpenAI-compatible server, "anthropic"; None for Gemini and others, which the
    conventions name no system for) and ``llm.provider`` (who hosts it: "openai",
    "anthropic", "google", "ollama", a known host of an OpenAI-compatible API, or a
    model's own provider name; None for an OpenAI-compatible server not known and for
    llama.cpp run in process)."""
    name = str(getattr(model, "provider", "") or "")
    system = _SYSTEMS.get(name)
    if name == "openai":
        base_url = getattr(model, "base_url", None) or os.environ.get("OPENAI_BASE_URL")
        return system, _host_provider(base_url) if isinstance(base_url, str) else name
    if name == "llamacpp":
        return system, None
    return system, name or None


def llm_request(
    model: ChatModel, request: ModelRequest, settings: TraceSettings, first: Attributes
) -> Attributes:
    """An LLM span's opening attributes: ``first`` (the session and user it belongs to),
    the model, its settings, the messages, the tools. The span's identity
    (:func:`llm_identity`) comes last: past its limit (128 attributes by default) the
    OpenTelemetry SDK drops a span's oldest attributes, and a long conversation's messages
    are many."""
    out: Attributes = dict(first)
    if not settings.hide_llm_invocation_parameters:
        out[SpanAttributes.LLM_INVOCATION_PARAMETERS] = _parameters_json(model, request)
    if request.tools and not (settings.hide_inputs or settings.hide_llm_tools):
        for i, tool in enumerate(request.tools):
            schema = {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            out[f"{SpanAttributes.LLM_TOOLS}.{i}.{ToolAttributes.TOOL_JSON_SCHEMA}"] = to_json(
                schema
            )
    if settings.input_messages():
        text = not settings.hide_input_text
        messages = (
            _without_memories(request.messages) if settings.hide_memories else request.messages
        )
        _messages(out, SpanAttributes.LLM_INPUT_MESSAGES, messages, text)
        if text:
            out.update(_value("input", _messages_json(messages), JSON))
    elif settings.hide_inputs:
        out[SpanAttributes.INPUT_VALUE] = REDACTED
    out.update(llm_identity(model))
    return out


def _token_counts(usage: Usage) -> Attributes:
    """A model call's token counts: prompt, completion and total, each only when the
    provider reported it (a count left out is unknown, never a recorded 0), and the parts
    of them the provider reported (cache reads and writes of the prompt, reasoning of the
    completion), each only when there are some."""
    counts = (
        (SpanAttributes.LLM_TOKEN_COUNT_PROMPT, usage.input_tokens),
        (SpanAttributes.LLM_TOKEN_COUNT_COMPLETION, usage.output_tokens),
        (SpanAttributes.LLM_TOKEN_COUNT_TOTAL, usage.total_tokens),
    )
    out: Attributes = {name: count for name, count in counts if count is not None}
    parts = (
        (SpanAttributes.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_READ, usage.cache_read_tokens),
        (SpanAttributes.LLM_TOKEN_COUNT_PROMPT_DETAILS_CACHE_WRITE, usage.cache_write_tokens),
        (SpanAttributes.LLM_TOKEN_COUNT_COMPLETION_DETAILS_REASONING, usage.reasoning_tokens),
    )
    out.update((name, count) for name, count in parts if count)
    return out


def llm_response(
    response: ModelResponse, settings: TraceSettings, structured: bool = False
) -> Attributes:
    """An LLM span's closing attributes: the answer and the token counts. ``structured``:
    the request asked for JSON (a response schema), so the answer's text is JSON."""
    out = _token_counts(response.usage)
    _answer(out, response, settings, structured)
    return out


def llm_partial(text: str, settings: TraceSettings) -> Attributes:
    """A streamed call's answer so far, for its span when the stream stopped or failed
    before its end: the text streamed (as the output value and the one output message;
    plain text, even where the whole answer would have been JSON). Nothing without text."""
    out: Attributes = {}
    if text:
        _answer(out, ModelResponse(content=text), settings, structured=False)
    return out


def _answer(
    out: Attributes, response: ModelResponse, settings: TraceSettings, structured: bool
) -> None:
    """Add the answer's output value and output message to ``out``, as the settings let."""
    if settings.output_messages():
        text = not settings.hide_output_text
        answer = response.to_message()
        if settings.hide_memories:
            (answer,) = _without_memories([answer])
        _messages(out, SpanAttributes.LLM_OUTPUT_MESSAGES, (answer,), text)
        if response.tool_calls:
            out.update(text_value("output", to_json(answer.to_dict()), not text, JSON))
        else:
            mime = JSON if structured else TEXT
            out.update(text_value("output", response.content, not text, mime))
    elif settings.hide_outputs:
        out.update(text_value("output", "", True))


def overlap(query: str, memory: UserMemory) -> int:
    """How many content words ``memory`` (its text and topics) shares with ``query``: the
    score a trace shows beside each memory the selection chose (which ranks by its own
    search, see noted.memory.selection)."""
    return len(keywords(query) & (keywords(memory.memory) | keywords(" ".join(memory.topics))))


_DOCUMENT_FIELDS = (
    DocumentAttributes.DOCUMENT_ID,
    DocumentAttributes.DOCUMENT_CONTENT,
    DocumentAttributes.DOCUMENT_SCORE,
    DocumentAttributes.DOCUMENT_METADATA,
)


def documents(
    memories: Sequence[UserMemory], scores: Sequence[float | None], settings: TraceSettings
) -> Attributes:
    """Memories as a retriever's documents: id, text, score (when the method ranks by
    one), topics and dates; their texts and metadata share a bound (see
    :func:`_share_documents`)."""
    hidden = settings.hide_memories or settings.hide_outputs
    out: Attributes = {}
    size = 0  # the characters of the texts and metadata
    for i, (memory, score) in enumerate(zip(memories, scores, strict=True)):
        base = f"{SpanAttributes.RETRIEVAL_DOCUMENTS}.{i}."
        if memory.memory_id is not None:
            out[base + DocumentAttributes.DOCUMENT_ID] = memory.memory_id
        content = REDACTED if hidden else bounded(memory.memory)
        out[base + DocumentAttributes.DOCUMENT_CONTENT] = content
        if score is not None:
            out[base + DocumentAttributes.DOCUMENT_SCORE] = float(score)
        meta: dict[str, Any] = {"topics": list(memory.topics)}
        if memory.updated_at is not None:
            meta["updated_at"] = memory.updated_at.isoformat()
        out[base + DocumentAttributes.DOCUMENT_METADATA] = shown = to_json(meta)
        size += len(content) + len(shown)
    if size > _SHARE_FROM:
        _share_documents(out, len(memories))
    return out


def _share_documents(out: Attributes, count: int) -> None:
    """Keep the first of the ``count`` documents in ``out`` whose texts and metadata fit in
    :data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS` bytes together, in rank order, the
    text of the one that fills them cut; leave the others out and count them in
    ``noted.memories.left_out``."""
    base = f"{SpanAttributes.RETRIEVAL_DOCUMENTS}."
    kept = _fitting(
        out,
        [f"{base}{i}.{DocumentAttributes.DOCUMENT_CONTENT}" for i in range(count)],
        "its documents' texts, in the order they were found",
        [f"{base}{i}.{DocumentAttributes.DOCUMENT_METADATA}" for i in range(count)],
    )
    if kept < count:
        for j in range(kept, count):
            for field in _DOCUMENT_FIELDS:
                out.pop(f"{base}{j}.{field}", None)
        out["noted.memories.left_out"] = count - kept


def _fitting(out: Attributes, keys: Sequence[str], why: str, extras: Sequence[str] = ()) -> int:
    """Keep the texts of ``keys`` in ``out`` while they fit in a :class:`Budget` (``why``:
    what a cut text's mark says), in order, the one that fills it cut, and the bytes of
    ``extras[i]`` (what goes with the ``i``-th text) counted with each; returns how many
    were kept (the others are left as they are, for the caller to leave out)."""
    budget = Budget(why)
    for i, key in enumerate(keys):
        text = out[key]
        kept = budget.take(text) if isinstance(text, str) else None
        if kept is None:
            return i
        out[key] = kept
        if extras:
            extra = out[extras[i]]
            budget.spend(utf8_size(extra) if isinstance(extra, str) else 0)
    return len(keys)


def _embedding_key(i: int, field: str) -> str:
    return f"{SpanAttributes.EMBEDDING_EMBEDDINGS}.{i}.{field}"


def embedding_texts(model_name: str, texts: Sequence[str], settings: TraceSettings) -> Attributes:
    """An embedding call's model and texts (each hidden where the settings say); the texts
    share a bound (see :func:`_share_texts`)."""
    shown = settings.embedding_texts()
    out: Attributes = {SpanAttributes.EMBEDDING_MODEL_NAME: model_name}
    size = 0  # the characters of the texts
    for i, text in enumerate(texts):
        value = bounded(text) if shown else REDACTED
        out[_embedding_key(i, EmbeddingAttributes.EMBEDDING_TEXT)] = value
        size += len(value)
    if size > _SHARE_FROM:
        _share_texts(out, len(texts))
    return out


def _share_texts(out: Attributes, count: int) -> None:
    """Keep the first of the ``count`` embedded texts in ``out`` that fit in
    :data:`~noted.limits.MAX_TRACE_MESSAGES_CHARS` bytes together, in order, the one that
    fills them cut; leave the others out and count them in
    ``noted.embeddings.texts_left_out``."""
    keys = [_embedding_key(i, EmbeddingAttributes.EMBEDDING_TEXT) for i in range(count)]
    kept = _fitting(out, keys, "its embedded texts, in order")
    if kept < count:
        for key in keys[kept:]:
            del out[key]
        out["noted.embeddings.texts_left_out"] = count - kept


def embedding_vectors(vectors: npt.NDArray[Any], settings: TraceSettings) -> Attributes:
    """An embedding call's vectors (one row per text), unless the settings hide them: the
    first rows, at most :data:`~noted.limits.MAX_TRACE_VECTOR_NUMBERS` numbers together,
    the others left out and counted in ``noted.embeddings.vectors_left_out``."""
    if not settings.embedding_vectors():
        return {}
    rows = len(vectors)
    width = max(int(vectors.shape[1]) if vectors.ndim == 2 else 1, 1)
    kept = min(rows, MAX_TRACE_VECTOR_NUMBERS // width)
    key = EmbeddingAttributes.EMBEDDING_VECTOR
    out: Attributes = {_embedding_key(i, key): row for i, row in enumerate(vectors[:kept].tolist())}
    if kept < rows:
        out["noted.embeddings.vectors_left_out"] = rows - kept
    return out


def memory_update(update: MemoryUpdate, settings: TraceSettings) -> Attributes:
    """What a memory manager pass did: added / updated / deleted ids, whether the user's
    memories were cleared, and the operations dropped with the reason."""
    updated = [op.memory_id for op in update.operations if op.kind == "update" and op.memory_id]
    deleted = [op.memory_id for op in update.operations if op.kind == "delete" and op.memory_id]
    written = set(update.memory_ids)
    hidden = settings.hide_memories or settings.hide_outputs
    result: dict[str, Any] = {
        "added": [i for i in update.memory_ids if i not in set(updated)],
        "updated": [i for i in updated if i in written],
        "deleted": deleted,
        "cleared": any(op.kind == "clear" for op in update.operations),
        # a reason ends with the operation it dropped, whose text is a memory's
        "dropped": [reason.split(":", 1)[0] if hidden else reason for reason in update.rejected],
    }
    out: Attributes = {
        "noted.memory.added": result["added"],
        "noted.memory.updated": result["updated"],
        "noted.memory.deleted": result["deleted"],
        "noted.memory.cleared": result["cleared"],
        "noted.memory.dropped": result["dropped"],
    }
    if not hidden:
        result["operations"] = [
            {"kind": op.kind, "memory_id": op.memory_id, "memory": op.memory}
            for op in update.operations
        ]
    out.update(text_value("output", to_json(result), bool(settings.hide_outputs), JSON))
    return out


def metadata(values: Mapping[str, Any]) -> Attributes:
    shown = {k: v for k, v in values.items() if v is not None}
    return {SpanAttributes.METADATA: to_json(shown)} if shown else {}


def _json_object(value: AttributeValue) -> dict[str, Any] | None:
    if not isinstance(value, str):
        return None
    try:
        found = json.loads(value)
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _merged_metadata(own: AttributeValue, context: AttributeValue) -> AttributeValue:
    """A span's own metadata and the context's, key by key (the context's win); the
    context's alone when either is not a JSON object."""
    base, top = _json_object(own), _json_object(context)
    if base is None or top is None:
        return context
    return to_json({**base, **top})


def with_context(context: Attributes, own: Attributes) -> Attributes:
    """A span's ``own`` attributes with the OpenInference context attributes ``context``
    (``using_session``, ``using_user``, ``using_metadata``, ``using_tags``, ...) set as
    OpenInference's tracer sets them: the context's values win, and the two metadata are
    merged key by key. The context's come first, so that ``own``'s last attributes (what
    the span is) stay the newest."""
    if not context:
        return own
    out = dict(context)
    for key, value in own.items():
        if key not in context:
            out[key] = value
        elif key == SpanAttributes.METADATA:
            out[key] = _merged_metadata(value, context[key])
    return out
