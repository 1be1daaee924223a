"""Session history: what was said, per ``session_id``.

A :class:`Session` belongs to one user and holds the agent's runs in order. A
:class:`RunResult` is one turn: the user's message, every message the turn produced
(assistant answers, tool calls and their results), what the tools did, and the metrics.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from noted._time import utc_now
from noted.models.types import Message, Usage, count_sum

__all__ = [
    "RunMetrics",
    "RunResult",
    "RunStatus",
    "Session",
    "SessionSummary",
    "ToolExecution",
    "new_run_id",
    "run_bytes",
]

RunStatus = Literal["completed", "failed"]


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def new_run_id() -> str:
    return "run_" + uuid.uuid4().hex


def run_bytes(run: RunResult) -> int:
    """The size of ``run`` as a session store is limited in it
    (:data:`noted.limits.MAX_RUN_BYTES`): its JSON (``to_dict()``) in UTF-8 bytes."""
    text = json.dumps(run.to_dict(), ensure_ascii=False, separators=(",", ":"), default=str)
    return len(text.encode("utf-8", "surrogatepass"))


def new_session_id() -> str:
    return str(uuid.uuid4())


@dataclass(slots=True)
class RunMetrics:
    """What a run cost: model calls, tokens, and time (seconds). The tokens are the
    model calls' :class:`~noted.models.types.Usage` added up: ``input_tokens`` and
    ``output_tokens`` whole, ``cache_read_tokens`` and ``cache_write_tokens`` the parts of
    the input read from and written to the provider's prompt cache, ``reasoning_tokens``
    the part of the output spent reasoning (0 where the provider reports no such part).
    ``input_tokens`` or ``output_tokens`` is None (unknown) when a call's provider did not
    report it: a sum with an unknown count in it would be taken for all of them."""

    model_calls: int = 0
    input_tokens: int | None = 0
    output_tokens: int | None = 0
    duration: float = 0.0
    model_duration: float = 0.0
    time_to_first_token: float | None = None
    tool_calls: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    @property
    def total_tokens(self) -> int | None:
        """Input and output tokens together (None when either is unknown)."""
        return count_sum(self.input_tokens, self.output_tokens)

    def add_usage(self, usage: Usage) -> None:
        """Count one model call's tokens."""
        self.input_tokens = count_sum(self.input_tokens, usage.input_tokens)
        self.output_tokens = count_sum(self.output_tokens, usage.output_tokens)
        self.cache_read_tokens += usage.cache_read_tokens
        self.cache_write_tokens += usage.cache_write_tokens
        self.reasoning_tokens += usage.reasoning_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_calls": self.model_calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "duration": self.duration,
            "model_duration": self.model_duration,
            "time_to_first_token": self.time_to_first_token,
            "tool_calls": self.tool_calls,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunMetrics:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(slots=True)
class ToolExecution:
    """One tool call the agent ran: what was asked, what came back, whether it failed."""

    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    result: str
    error: bool = False
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "error": self.error,
            "duration": self.duration,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolExecution:
        return cls(
            tool_call_id=data["tool_call_id"],
            name=data["name"],
            arguments=dict(data.get("arguments") or {}),
            result=data.get("result", ""),
            error=bool(data.get("error", False)),
            duration=float(data.get("duration", 0.0)),
        )


@dataclass(slots=True)
class RunResult:
    """One turn of a session, as the agent returns it and the session store keeps it.

    ``messages`` are this turn's messages only (the user's message first), never the
    system prompt or the history that was replayed before it. A failed turn has
    ``status="failed"``, the error text in ``error``, and whatever messages it produced
    before failing; it is kept in the session for the record, and left out of history.
    """

    run_id: str
    session_id: str
    user_id: str
    input: str
    agent_id: str | None = None
    content: str | None = None
    messages: list[Message] = field(default_factory=list)
    tool_calls: list[ToolExecution] = field(default_factory=list)
    metrics: RunMetrics = field(default_factory=RunMetrics)
    status: RunStatus = "completed"
    error: str | None = None
    stop_reason: str = "end"
    model: str | None = None
    created_at: datetime = field(default_factory=utc_now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "session_id": self.session_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "input": self.input,
            "content": self.content,
            "messages": [m.to_dict() for m in self.messages],
            "tool_calls": [t.to_dict() for t in self.tool_calls],
            "metrics": self.metrics.to_dict(),
            "status": self.status,
            "error": self.error,
            "stop_reason": self.stop_reason,
            "model": self.model,
            "created_at": self.created_at.isoformat(timespec="microseconds"),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        return cls(
            run_id=data["run_id"],
            session_id=data["session_id"],
            user_id=data["user_id"],
            agent_id=data.get("agent_id"),
            input=data.get("input", ""),
            content=data.get("content"),
            messages=[Message.from_dict(m) for m in data.get("messages") or ()],
            tool_calls=[ToolExecution.from_dict(t) for t in data.get("tool_calls") or ()],
            metrics=RunMetrics.from_dict(data.get("metrics") or {}),
            status=data.get("status", "completed"),
            error=data.get("error"),
            stop_reason=data.get("stop_reason", "end"),
            model=data.get("model"),
            created_at=_parse_time(data["created_at"]),
        )


@dataclass(slots=True)
class SessionSummary:
    """A short account of a session so far: the summary text, its topics, how many
    completed runs it covers and the id of the last of them (the runs after it are what
    the next update reads)."""

    summary: str
    topics: list[str] = field(default_factory=list)
    run_count: int = 0
    updated_at: datetime = field(default_factory=utc_now)
    last_run_id: str | None = None

    @property
    def last_updated(self) -> datetime:
        """``updated_at`` under its older name (Agno 1.x's)."""
        return self.updated_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "topics": list(self.topics),
            "run_count": self.run_count,
            "updated_at": self.updated_at.isoformat(timespec="microseconds"),
            "last_run_id": self.last_run_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SessionSummary:
        last = data.get("last_run_id")
        return cls(
            summary=str(data.get("summary", "")),
            topics=[str(t) for t in data.get("topics") or ()],
            run_count=int(data.get("run_count", 0)),
            updated_at=_parse_time(data["updated_at"]) if "updated_at" in data else utc_now(),
            last_run_id=None if last is None else str(last),
        )


@dataclass(slots=True)
class Session:
    """A conversation of one user with an agent. ``runs`` is filled when the session is
    read whole (``get_session``) and empty in listings, where ``run_count`` tells the size."""

    session_id: str
    user_id: str
    agent_id: str | None = None
    created_at: datetime = field(default_factory=utc_now)
    updated_at: datetime = field(default_factory=utc_now)
    summary: SessionSummary | None = None
    run_count: int = 0
    runs: list[RunResult] = field(default_factory=list)

    def to_dict(self, *, with_runs: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "agent_id": self.agent_id,
            "created_at": self.created_at.isoformat(timespec="microseconds"),
            "updated_at": self.updated_at.isoformat(timespec="microseconds"),
            "summary": None if self.summary is None else self.summary.to_dict(),
            "run_count": self.run_count,
        }
        if with_runs:
            data["runs"] = [run.to_dict() for run in self.runs]
        return data
