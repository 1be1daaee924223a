"""The records noted keeps: user memories and per-user statistics."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from noted._json import decode_json
from noted._time import iso
from noted.errors import UserError
from noted.limits import MAX_ID_LENGTH

__all__ = ["MemoryMatch", "UserMemory", "UserStats", "new_memory_id"]

_ID_FIELDS = ("memory_id", "user_id", "agent_id", "team_id", "session_id")


def new_memory_id() -> str:
    """A random (version 4) UUID as text, formatted directly from 16 random bytes."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


# The two top bits of a version 4 UUID's variant nibble are "10".
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def check_storable(name: str, value: str) -> str:
    """``value`` unless a store could not keep it as text: NUL characters (PostgreSQL text
    cannot hold them) and unpaired surrogates (not encodable as UTF-8) are refused."""
    if "\x00" in value:
        raise UserError(f"{name} must not contain NUL characters")
    return check_unicode(name, value)


def check_unicode(name: str, value: str) -> str:
    """``value`` unless it holds an unpaired surrogate (no store can write it as UTF-8);
    the sessions' texts, kept as JSON, may hold NUL characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UserError(f"{name} must be valid Unicode text: {exc.reason} at {exc.start}") from exc
    return value


def check_id(name: str, value: object) -> str | None:
    """Validate an optional identifier: a non-empty string of at most 255 characters."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise UserError(f"{name} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise UserError(f"{name} must not be empty or blank, got {value!r}")
    if len(value) > MAX_ID_LENGTH:
        raise UserError(f"{name} must be at most {MAX_ID_LENGTH} characters, got {len(value)}")
    return check_storable(name, value)


def check_new_user_id(user_id: str) -> str:
    """``user_id`` (a checked id) unless it begins or ends with whitespace: new memories
    and runs are refused under such an id, which would make a second user that looks like
    the first (``" ava"`` beside ``"ava"``). Data stored under one before (an import keeps
    its ids) is still read, changed and deleted by the id as it is, so that it can be
    cleaned up."""
    if user_id != user_id.strip():
        raise UserError(
            f"user_id must not begin or end with whitespace, got {user_id!r} "
            "(what is stored under such an id is still read, changed and deleted as it is)"
        )
    return user_id


def require_id(name: str, value: object) -> str:
    """Validate an identifier that must be given."""
    checked = check_id(name, value)
    if checked is None:
        raise UserError(f"{name} is required")
    return checked


def _check_text(value: object) -> str:
    if not isinstance(value, str):
        raise UserError(f"memory must be a string, got {type(value).__name__} {value!r}")
    text = value.strip()
    if not text:
        raise UserError(f"memory must not be empty or blank, got {value!r}")
    return check_storable("memory", text)


def check_topics(value: object) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise UserError(f"topics must be a list of strings, got {type(value).__name__} {value!r}")
    topics: dict[str, None] = {}  # in order, each once
    for topic in value:
        if not isinstance(topic, str) or not topic.strip():
            raise UserError(f"each topic must be a non-empty string, got {topic!r}")
        cleaned = check_storable("topic", topic.strip())
        if len(cleaned) > MAX_ID_LENGTH:
            raise UserError(
                f"each topic must be at most {MAX_ID_LENGTH} characters, got {len(cleaned)}"
            )
        topics[cleaned] = None
    return list(topics)


def check_time(name: str, value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UserError(f"{name} must be an ISO 8601 timestamp, got {value!r}") from None
    if not isinstance(value, datetime):
        raise UserError(f"{name} must be a datetime, got {type(value).__name__} {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise UserError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return value.astimezone(UTC)


@dataclass(slots=True)
class UserMemory:
    """One fact about a user, such as "The user's name is Ava".

    ``memory_id`` is generated when the memory is first stored; ``created_at`` and
    ``updated_at`` are set by the store in UTC.
    """

    memory: str
    _: KW_ONLY
    topics: list[str] = field(default_factory=list)
    input: str | None = None
    memory_id: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    team_id: str | None = None
    session_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    damaged: str | None = field(default=None, init=False)
    """What is wrong with the memory as stored, for a memory read back whose stored topics
    are damaged (not a list of strings: a hand-edited database); its ``topics`` are then
    empty. None for every sound memory, and for every memory not read from a store."""

    def __post_init__(self) -> None:
        self.memory = _check_text(self.memory)
        self.topics = check_topics(self.topics)
        if self.input is not None and not isinstance(self.input, str):
            raise UserError(f"input must be a string, got {type(self.input).__name__}")
        if self.input is not None:
            check_storable("input", self.input)
        for name in _ID_FIELDS:
            check_id(name, getattr(self, name))
        self.created_at = check_time("created_at", self.created_at)
        self.updated_at = check_time("updated_at", self.updated_at)

    def checked(self) -> UserMemory:
        """A new memory built from this one's fields, so checked again whole: a field
        assigned after the memory was built (an empty text, topics given as a string, an
        overlong id, a NUL character) is refused here with a :class:`UserError` naming it."""
        return UserMemory(
            self.memory,
            topics=self.topics,
            input=self.input,
            memory_id=self.memory_id,
            user_id=self.user_id,
            agent_id=self.agent_id,
            team_id=self.team_id,
            session_id=self.session_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )

    @property
    def last_updated(self) -> datetime | None:
        """``updated_at`` under its older name."""
        return self.updated_at

    def copy(self) -> UserMemory:
        """A copy that shares nothing mutable with this memory (no re-validation)."""
        clone: UserMemory = object.__new__(UserMemory)
        clone.memory = self.memory
        clone.topics = list(self.topics)
        clone.input = self.input
        clone.memory_id = self.memory_id
        clone.user_id = self.user_id
        clone.agent_id = self.agent_id
        clone.team_id = self.team_id
        clone.session_id = self.session_id
        clone.created_at = self.created_at
        clone.updated_at = self.updated_at
        clone.damaged = self.damaged
        return clone

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; timestamps as ISO 8601 strings with microseconds; with
        ``damaged`` last only for a damaged memory."""
        created, updated = self.created_at, self.updated_at
        data: dict[str, Any] = {
            "memory": self.memory,
            "topics": list(self.topics),
            "input": self.input,
            "memory_id": self.memory_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "team_id": self.team_id,
            "session_id": self.session_id,
            "created_at": None if created is None else iso(created),
            "updated_at": None if updated is None else iso(updated),
        }
        if self.damaged is not None:
            data["damaged"] = self.damaged
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UserMemory:
        if not isinstance(data, Mapping):
            raise UserError(f"a memory must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls) if f.init}  # "damaged" is only read back
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown memory field(s): {', '.join(unknown)}")
        if "memory" not in data:
            raise UserError("a memory needs a 'memory' field with its text")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> UserMemory:
        try:
            data = decode_json(text)
        except ValueError as exc:
            raise UserError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data)


@dataclass(frozen=True, slots=True)
class UserStats:
    """How many memories a user has and when the newest change happened."""

    user_id: str
    memory_count: int
    last_updated: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "user_id": self.user_id,
            "memory_count": self.memory_count,
            "last_updated": self.last_updated.isoformat(timespec="microseconds"),
        }


@dataclass(slots=True)
class MemoryMatch(UserMemory):
    """A memory found by :meth:`~noted.Memory.search_user_memories`, whatever the method:
    every field of the memory, and ``score``, how well it matched where the method ranks
    by one (higher is better; the scale depends on the method: BM25 for keyword, cosine
    similarity for semantic, the fused 0..1 score for hybrid); None for ``last_n``,
    ``first_n`` and ``agentic``."""

    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = UserMemory.to_dict(self)
        data["score"] = self.score
        return data

    @classmethod
    def of(cls, memory: UserMemory, score: float | None = None) -> MemoryMatch:
        match: MemoryMatch = object.__new__(cls)
        for name in _MEMORY_FIELDS:
            setattr(match, name, getattr(memory, name))
        match.topics = list(memory.topics)
        match.score = score
        return match


_MEMORY_FIELDS = tuple(f.name for f in fields(UserMemory))  # "damaged" too
