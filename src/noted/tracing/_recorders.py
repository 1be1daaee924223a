"""How each traced function is described: its span's name and kind, the attributes read
from its arguments when it starts, and those read from its result when it ends."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from openinference.semconv.trace import OpenInferenceSpanKindValues as Kind
from openinference.semconv.trace import SpanAttributes

from noted.agent.memory_tools import MEMORY_TOOL_NAMES
from noted.models.types import Message
from noted.tracing import _attributes as attrs
from noted.tracing._attributes import JSON, Attributes
from noted.tracing._settings import REDACTED, TraceSettings

__all__ = ["RECORDERS", "Failure", "Recorder"]

Args = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Failure:
    """A traced call that failed and answered so rather than raising (a tool's error is
    text for the model): the exception, and whether its message is hidden."""

    error: BaseException
    hidden: bool = False


Start = Callable[[Args, TraceSettings], tuple[str, Attributes]]
End = Callable[[Args, Any, TraceSettings], tuple[Attributes, Failure | None]]


@dataclass(frozen=True, slots=True)
class Recorder:
    start: Start
    end: End


def _opening(kind: Kind, user_id: object = None, session_id: object = None) -> Attributes:
    out = attrs.kind(kind)
    if isinstance(user_id, str):
        out[SpanAttributes.USER_ID] = user_id
    if isinstance(session_id, str):
        out[SpanAttributes.SESSION_ID] = session_id
    return out


def _conversation(messages: Sequence[Message]) -> str:
    return attrs.to_json([{"role": m.role, "content": m.content} for m in messages])


# -- tool calls ------------------------------------------------------------------------


def _tool_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    call = args["call"]
    tool = args["tools"].get(call.name)
    out = attrs.kind(Kind.TOOL)
    out[SpanAttributes.TOOL_NAME] = call.name
    out["tool_call.id"] = call.id
    if tool is not None:
        out[SpanAttributes.TOOL_DESCRIPTION] = tool.description
        out[SpanAttributes.TOOL_PARAMETERS] = attrs.to_json(dict(tool.parameters))
    hidden = settings.hide_inputs or (settings.hide_memories and call.name in MEMORY_TOOL_NAMES)
    out.update(attrs.text_value("input", call.arguments_json(), bool(hidden), JSON))
    return call.name, out


def _tool_end(args: Args, ran: Any, settings: TraceSettings) -> tuple[Attributes, Failure | None]:
    execution = ran.execution
    hidden = bool(
        settings.hide_outputs or (settings.hide_memories and execution.name in MEMORY_TOOL_NAMES)
    )
    out = attrs.text_value("output", execution.result, hidden)
    return out, None if ran.error is None else Failure(ran.error, hidden)


# -- MCP tool calls --------------------------------------------------------------------

# The fields of an MCP tool's arguments and results that hold a memory's text (a search's
# query is one as often as not): hidden with the memories, where ids and topics stay.
_MEMORY_TEXTS = frozenset(("memory", "query"))


def _without_memory_texts(value: object) -> object:
    """An MCP tool's arguments or result with each memory text replaced by
    ``__REDACTED__``: its ``memory`` and ``query`` fields, and those of its ``memories``."""
    if not isinstance(value, Mapping):
        return value
    out = {key: REDACTED if key in _MEMORY_TEXTS else item for key, item in value.items()}
    memories = out.get("memories")
    if isinstance(memories, list):
        out["memories"] = [_without_memory_texts(memory) for memory in memories]
    return out


def _mcp_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    name, described = args["name"], args["described"]
    out = attrs.kind(Kind.TOOL)
    out[SpanAttributes.TOOL_NAME] = name
    if described is not None:
        out[SpanAttributes.TOOL_DESCRIPTION] = described.description or ""
        out[SpanAttributes.TOOL_PARAMETERS] = attrs.to_json(described.input_schema)
    arguments = args["arguments"] or {}
    shown = _without_memory_texts(arguments) if settings.hide_memories else arguments
    out.update(attrs.text_value("input", attrs.to_json(shown), bool(settings.hide_inputs), JSON))
    return name, out


def _mcp_end(args: Args, answer: Any, settings: TraceSettings) -> tuple[Attributes, Failure | None]:
    out: Attributes = {}
    if answer.user is not None:
        out[SpanAttributes.USER_ID] = answer.user
    result = answer.result
    if answer.error is None:
        found = result.structured_content
        shown = _without_memory_texts(found) if settings.hide_memories else found
        out.update(
            attrs.text_value("output", attrs.to_json(shown), bool(settings.hide_outputs), JSON)
        )
        return out, None
    # what a refusal says may quote what the call was given: a memory's text
    hidden = bool(settings.hide_outputs or settings.hide_memories)
    said = "".join(getattr(block, "text", "") for block in result.content)
    out.update(attrs.text_value("output", said, hidden))
    return out, Failure(answer.error, hidden)


# -- memory selection and search -------------------------------------------------------


def _selection_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    out = _opening(Kind.RETRIEVER, args["user_id"])
    # the memory tools select with a memory's text: hidden with the memories too
    hidden = bool(settings.hide_inputs or settings.hide_memories)
    out.update(attrs.text_value("input", args["text"], hidden))
    return "memory selection", out


def _selection_end(
    args: Args, memories: Sequence[Any], settings: TraceSettings
) -> tuple[Attributes, Failure | None]:
    scores = [attrs.overlap(args["text"], m) for m in memories]
    out = attrs.documents(memories, scores, settings)
    out["noted.memories.chosen"] = len(memories)
    return out, None


def _search_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    out = _opening(Kind.RETRIEVER, args["user_id"])
    out.update(attrs.text_value("input", args["query"], bool(settings.hide_inputs)))
    out.update(
        attrs.metadata({"retrieval_method": args["retrieval_method"], "limit": args["limit"]})
    )
    return "Memory.search_user_memories", out


def _search_end(
    args: Args, memories: Sequence[Any], settings: TraceSettings
) -> tuple[Attributes, Failure | None]:
    scores = [getattr(m, "score", None) for m in memories]  # None: last_n, first_n, agentic
    out = attrs.documents(memories, scores, settings)
    out["noted.memories.chosen"] = len(memories)
    return out, None


# -- memory extraction and session summaries -------------------------------------------


def _extraction_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    audit = args["audit"]
    out = _opening(Kind.CHAIN, args["user_id"], getattr(audit, "session_id", None))
    shown = _conversation(args["messages"])
    out.update(attrs.text_value("input", shown, bool(settings.hide_inputs), JSON))
    out.update(
        attrs.metadata(
            {
                "actor": getattr(audit, "actor", None),
                "run_id": getattr(audit, "run_id", None),
                "agent_id": args["agent_id"],
            }
        )
    )
    return "memory extraction", out


def _update_end(
    args: Args, update: Any, settings: TraceSettings
) -> tuple[Attributes, Failure | None]:
    return attrs.memory_update(update, settings), None


def _create_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    out = _opening(Kind.CHAIN, args["user_id"])
    message, messages = args["message"], args["messages"]
    if isinstance(message, str):
        out.update(attrs.text_value("input", message, bool(settings.hide_inputs)))
    elif isinstance(messages, Sequence) and all(isinstance(m, Message) for m in messages):
        out.update(
            attrs.text_value("input", _conversation(messages), bool(settings.hide_inputs), JSON)
        )
    return "Memory.create_user_memories", out


def _summary_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    runs = list(args["runs"])
    first = runs[0] if runs else None
    out = _opening(Kind.CHAIN, getattr(first, "user_id", None), getattr(first, "session_id", None))
    previous = args["previous"]
    shown = {
        "previous_summary": None if previous is None else previous.summary,
        "run_ids": [run.run_id for run in runs],
    }
    out.update(attrs.text_value("input", attrs.to_json(shown), bool(settings.hide_inputs), JSON))
    return "session summary update", out


def _summary_end(
    args: Args, summary: Any, settings: TraceSettings
) -> tuple[Attributes, Failure | None]:
    out = attrs.text_value("output", summary.summary, bool(settings.hide_outputs))
    out.update(attrs.metadata({"topics": summary.topics, "run_count": summary.run_count}))
    return out, None


# -- embeddings ------------------------------------------------------------------------


def _embedding_start(args: Args, settings: TraceSettings) -> tuple[str, Attributes]:
    out = _opening(Kind.EMBEDDING)
    texts, kind = args["texts"], args["kind"]
    out.update(attrs.embedding_texts(args["self"].model_name, texts, settings))
    out.update(attrs.metadata({"kind": kind, "count": len(texts)}))
    return ("query embedding" if kind == "query" else "memory embedding"), out


def _embedding_end(
    args: Args, vectors: Any, settings: TraceSettings
) -> tuple[Attributes, Failure | None]:
    return attrs.embedding_vectors(vectors, settings), None


RECORDERS: dict[str, Recorder] = {
    "tool": Recorder(_tool_start, _tool_end),
    "mcp tool": Recorder(_mcp_start, _mcp_end),
    "retriever": Recorder(_selection_start, _selection_end),
    "search": Recorder(_search_start, _search_end),
    "extraction": Recorder(_extraction_start, _update_end),
    "create_memories": Recorder(_create_start, _update_end),
    "summary": Recorder(_summary_start, _summary_end),
    "embedding": Recorder(_embedding_start, _embedding_end),
}
