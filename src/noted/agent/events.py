"""What a streaming run yields, in order: RunStarted, then ContentDelta pieces and tool
call events as they happen, then RunCompleted with the whole result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from noted.models.types import ToolCall
from noted.sessions import RunResult, ToolExecution

__all__ = [
    "ContentDelta",
    "RunCompleted",
    "RunEvent",
    "RunStarted",
    "ToolCallCompleted",
    "ToolCallStarted",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    kind: ClassVar[str] = "run_started"
    run_id: str
    session_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ContentDelta:
    kind: ClassVar[str] = "content"
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    kind: ClassVar[str] = "tool_call_started"
    tool_call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolCallCompleted:
    kind: ClassVar[str] = "tool_call_completed"
    execution: ToolExecution


@dataclass(frozen=True, slots=True)
class RunCompleted:
    kind: ClassVar[str] = "run_completed"
    result: RunResult


RunEvent: TypeAlias = RunStarted | ContentDelta | ToolCallStarted | ToolCallCompleted | RunCompleted
