"""The audit history of memories: who changed which memory, when, and from what to what.

Every store records one :class:`MemoryEvent` per memory it adds, overwrites or deletes, in
the same transaction as the change. The caller describes itself with an
:class:`AuditContext` (the actor, and the session and run the change belongs to).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from noted.errors import UserError
from noted.schema import check_id, check_topics

__all__ = ["Actor", "AuditContext", "EventType", "MemoryEvent"]

Actor = Literal["api", "cli", "manager", "agent", "mcp"]
EventType = Literal["add", "update", "delete"]
ACTORS: Final[tuple[Actor, ...]] = get_args(Actor)
EVENTS: Final[tuple[EventType, ...]] = get_args(EventType)


# The two top bits of a version 4 UUID's variant nibble are "10".
_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def new_event_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as text, from one read of the random source."""
    h = os.urandom(16 * count).hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-4{h[i + 13 : i + 16]}-"
        f"{_VARIANT[h[i + 16]]}{h[i + 17 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def check_actor(value: object) -> Actor:
    for actor in ACTORS:
        if isinstance(value, str) and value == actor:
            return actor
    raise UserError(f"actor must be one of {', '.join(ACTORS)}, got {value!r}")


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who is writing: ``"api"`` (the Memory API, the default), ``"cli"`` (the ``noted``
    command), ``"manager"`` (the memory manager), ``"agent"`` (an agent's memory tool) or
    ``"mcp"`` (a tool call to ``noted mcp``), with the session and run the change belongs
    to, when there is one."""

    actor: Actor = "api"
    session_id: str | None = None
    run_id: str | None = None

    def __post_init__(self) -> None:
        check_actor(self.actor)
        check_id("session_id", self.session_id)
        check_id("run_id", self.run_id)


DEFAULT_AUDIT: Final = AuditContext()


def resolve_audit(audit: object) -> AuditContext:
    """The context a store records for a write: ``None`` means the API's default."""
    if audit is None:
        return DEFAULT_AUDIT
    if not isinstance(audit, AuditContext):
        raise UserError(f"audit must be an AuditContext, got {type(audit).__name__} {audit!r}")
    return audit


def _check_text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise UserError(f"{name} must be a string or None, got {type(value).__name__}")
    return value


def _check_time(value: object) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UserError(f"created_at must be an ISO 8601 timestamp, got {value!r}") from None
    if not isinstance(value, datetime):
        raise UserError(f"created_at must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise UserError(f"created_at must be timezone-aware (UTC), got {value.isoformat()}")
    return value.astimezone(UTC)


_SHAPES: Final = {
    "add": "new_memory only",
    "update": "old_memory and new_memory",
    "delete": "old_memory only",
}


@dataclass(slots=True)
class MemoryEvent:
    """One recorded change of one memory.

    ``"add"`` carries only the new text and topics, ``"delete"`` only the old ones (so a
    deleted memory stays readable here), ``"update"`` both. ``created_at`` is when the
    change was written, in UTC.
    """

    event_id: str
    memory_id: str
    user_id: str
    event: EventType
    old_memory: str | None
    new_memory: str | None
    old_topics: list[str] | None
    new_topics: list[str] | None
    actor: Actor
    session_id: str | None
    run_id: str | None
    created_at: datetime

    def __post_init__(self) -> None:
        for name in ("event_id", "memory_id", "user_id"):
            if check_id(name, getattr(self, name)) is None:
                raise UserError(f"{name} is required")
        check_id("session_id", self.session_id)
        check_id("run_id", self.run_id)
        if self.event not in EVENTS or not isinstance(self.event, str):
            raise UserError(f"event must be one of {', '.join(EVENTS)}, got {self.event!r}")
        self.actor = check_actor(self.actor)
        self.old_memory = _check_text("old_memory", self.old_memory)
        self.new_memory = _check_text("new_memory", self.new_memory)
        self.old_topics = None if self.old_topics is None else check_topics(self.old_topics)
        self.new_topics = None if self.new_topics is None else check_topics(self.new_topics)
        has_old = self.old_memory is not None
        has_new = self.new_memory is not None
        if (has_old, has_new) != (self.event != "add", self.event != "delete"):
            raise UserError(f"a {self.event!r} event carries {_SHAPES[self.event]}")
        if (self.old_topics is None) == has_old or (self.new_topics is None) == has_new:
            raise UserError("old_topics and new_topics go with old_memory and new_memory")
        self.created_at = _check_time(self.created_at)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; ``created_at`` as an ISO 8601 string with microseconds."""
        data: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("old_topics", "new_topics"):
            if data[name] is not None:
                data[name] = list(data[name])
        data["created_at"] = self.created_at.isoformat(timespec="microseconds")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MemoryEvent:
        if not isinstance(data, Mapping):
            raise UserError(f"a memory event must be a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise UserError(f"unknown memory event field(s): {', '.join(unknown)}")
        missing = [name for name in names if name not in data]
        if missing:
            raise UserError(f"a memory event needs the field(s): {', '.join(missing)}")
        return cls(**data)
