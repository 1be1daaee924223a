"""The memory tools: what each one is called, tells a model, takes, and does.

Each tool runs on one user's memories through the :class:`~noted.memory.Memory` API (so a
write is validated and recorded in the memory's history like any other); which user is
decided before a tool runs (see :mod:`noted.mcp.server`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from noted._time import iso
from noted.errors import NotFoundError, UserError
from noted.limits import MAX_ID_LENGTH, MAX_QUERY_CHARS, MAX_TOPICS
from noted.mcp.arguments import MAX_LIMIT, Arguments
from noted.memory import Memory
from noted.schema import MemoryMatch, UserMemory

__all__ = ["TOOLS", "Tool", "memory_result"]

SEARCH_METHODS: Final = ("hybrid", "semantic", "keyword")
DEFAULT_SEARCH_LIMIT: Final = 10
DEFAULT_LIST_LIMIT: Final = 20

Run = Callable[[Memory, str, Arguments], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    title: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    run: Run
    read_only: bool = True
    destructive: bool = False

    @property
    def takes(self) -> tuple[str, ...]:
        return tuple(self.properties)


def memory_result(memory: UserMemory) -> dict[str, Any]:
    """What a tool shows of a memory: its id, text, topics and timestamps (and score)."""
    found: dict[str, Any] = {
        "id": memory.memory_id,
        "memory": memory.memory,
        "topics": list(memory.topics),
        "created_at": None if memory.created_at is None else iso(memory.created_at),
        "updated_at": None if memory.updated_at is None else iso(memory.updated_at),
    }
    if isinstance(memory, MemoryMatch) and memory.score is not None:
        found["score"] = round(memory.score, 4)  # enough to order by, fewer tokens
    return found


def _missing(memory_id: str) -> NotFoundError:
    return NotFoundError(
        f"there is no memory with id {memory_id!r}; search or list the memories for its id"
    )


def _memory_id(args: Arguments) -> str:
    """The ``id`` argument, its length checked here so that an error names it as the
    tool does (the Memory API calls it ``memory_id``)."""
    return args.required_text("id", longest=MAX_ID_LENGTH)


def _stored(memory: Memory, user: str, memory_id: str) -> UserMemory:
    found = memory.get_user_memory(memory_id, user_id=user)
    if found is None:
        raise _missing(memory_id)
    return found


# -- the tools ------------------------------------------------------------------------------


def _add(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    new = UserMemory(args.required_text("memory"), topics=args.topics() or [])
    memory_id = memory.add_user_memory(new, user_id=user)
    return memory_result(_stored(memory, user, memory_id))


def _search(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    query = args.required_text("query", longest=MAX_QUERY_CHARS)
    method = args.choice("method", SEARCH_METHODS)
    found = memory.search_user_memories(
        query,
        user_id=user,
        limit=args.limit(DEFAULT_SEARCH_LIMIT),
        retrieval_method=method or ("hybrid" if memory.index is not None else "keyword"),
        topics=args.topics(),
    )
    return {"memories": [memory_result(m) for m in found]}


def _recent(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    found = memory.get_user_memories(
        user_id=user, topics=args.topics(), limit=args.limit(DEFAULT_LIST_LIMIT)
    )
    return {"memories": [memory_result(m) for m in found]}


def _get(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    return memory_result(_stored(memory, user, _memory_id(args)))


def _update(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    memory_id = _memory_id(args)
    text, topics = args.text("memory", required=False), args.topics()
    if text is None and topics is None:
        raise UserError("update_memory: give the new memory text, the new topics, or both")
    try:
        edited = memory.edit_user_memory(memory_id, user, memory=text, topics=topics)
    except NotFoundError:
        raise _missing(memory_id) from None
    return memory_result(edited)


def _delete(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    memory_id = _memory_id(args)
    if not memory.delete_user_memory(memory_id, user_id=user):
        _stored(memory, user, memory_id)  # raises the same not-found error as get
    return {"deleted": memory_id}


def _topics(memory: Memory, user: str, args: Arguments) -> dict[str, Any]:
    return {"topics": memory.get_topics(user)}


# -- what a model reads ---------------------------------------------------------------------

_ID: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "description": "The memory's id.",
}
_TOPICS: Final = {
    "type": "array",
    "items": {"type": "string", "minLength": 1},
    "maxItems": MAX_TOPICS,
    "description": "Short lowercase labels such as 'preferences', 'work', 'family'.",
}


def _limit(default: int) -> dict[str, Any]:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_LIMIT,
        "default": default,
        "description": f"At most this many memories (default {default}).",
    }


TOOLS: Final[tuple[Tool, ...]] = (
    Tool(
        "add_memory",
        "Save a memory",
        "Save one lasting fact about the user, to recall in later conversations. Save when "
        "the user shares something that will still matter next time: their name, preferences, "
        "plans, people and places in their life, how they like to be helped. Do not save "
        "passing small talk, things the user asked you to forget, or secrets such as "
        "passwords. Write one self-contained fact per memory, in the third person, e.g. "
        "'The user prefers dark mode' or 'The user's sister Mia lives in Lyon'. Search first: "
        "if a memory already says something close, update it instead of adding a duplicate.",
        {
            "memory": {
                "type": "string",
                "minLength": 1,
                "description": "The fact, as one short sentence about the user.",
            },
            "topics": _TOPICS,
        },
        ("memory",),
        _add,
        read_only=False,
    ),
    Tool(
        "search_memories",
        "Search memories",
        "Find what you know about the user that bears on the conversation, best match first. "
        "Search before answering anything personal (their preferences, history, plans) and "
        "before saving, to avoid duplicates. 'hybrid' (the default when the server embeds "
        "memories) matches meaning and words; 'semantic' meaning only; 'keyword' words only.",
        {
            "query": {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_QUERY_CHARS,
                "description": "What to look for, in plain words, e.g. 'favourite food'.",
            },
            "limit": _limit(DEFAULT_SEARCH_LIMIT),
            "method": {"type": "string", "enum": list(SEARCH_METHODS)},
            "topics": {**_TOPICS, "description": "Only memories with any of these topics."},
        },
        ("query",),
        _search,
    ),
    Tool(
        "list_memories",
        "List recent memories",
        "The user's most recently saved or changed memories, newest first: to get an overview "
        "of what you know about the user at the start of a conversation.",
        {
            "limit": _limit(DEFAULT_LIST_LIMIT),
            "topics": {**_TOPICS, "description": "Only memories with any of these topics."},
        },
        (),
        _recent,
    ),
    Tool(
        "get_memory",
        "Read a memory",
        "Read one memory in full by its id.",
        {"id": _ID},
        ("id",),
        _get,
    ),
    Tool(
        "update_memory",
        "Correct a memory",
        "Change a memory when what it says is no longer true or could be said better (the "
        "user moved, changed their mind, corrected you). Give the new text, the new topics, "
        "or both; what you leave out stays. Keep the id: its history records every change.",
        {
            "id": _ID,
            "memory": {"type": "string", "minLength": 1, "description": "The new text."},
            "topics": {**_TOPICS, "description": "The new topics (replace the old ones)."},
        },
        ("id",),
        _update,
        read_only=False,
    ),
    Tool(
        "delete_memory",
        "Delete a memory",
        "Delete a memory that is wrong, or that the user asks you to forget.",
        {"id": _ID},
        ("id",),
        _delete,
        read_only=False,
        destructive=True,
    ),
    Tool(
        "list_topics",
        "List topics",
        "Every topic the user's memories are labelled with: to reuse the same labels when "
        "saving, or to narrow a search or a listing.",
        {},
        (),
        _topics,
    ),
)
