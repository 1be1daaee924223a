"""The JSON shapes of the REST API, as the OpenAPI schema documents them.

Responses are written from the records' own ``to_dict()``; these models describe them (and
validate request bodies), so the schema and the wire format are checked against each other
by the tests.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
)
from pydantic_core import PydanticCustomError

from noted.db.jobs import JobKind, JobStatus
from noted.limits import MAX_ID_LENGTH, MAX_MEMORY_LENGTH, MAX_TOPICS
from noted.server.openapi import NO_SPACE_AROUND

MAX_MEMORY_CHARS: Final = MAX_MEMORY_LENGTH
MAX_ID_CHARS: Final = MAX_ID_LENGTH
MAX_LIMIT: Final = 100
MAX_PAGE: Final = 1_000_000
MAX_BULK: Final = 1000
MAX_MESSAGE_CHARS: Final = 32_000


def trimmed(value: object) -> object:
    """Text without the whitespace around it (``str.strip``), as the Memory API keeps a
    memory's text and topics: its length is checked on what is kept, so that a text of
    only spaces is empty and one of the longest length with a space around it fits."""
    return value.strip() if isinstance(value, str) else value


def within(longest: int) -> AfterValidator:
    """A check that text (kept as it was sent: a run's message) is not blank and is at
    most ``longest`` characters without the whitespace around it: the length constraints
    the schema documents, with :func:`trimmed` text's errors."""

    def check(value: str) -> str:
        kept = len(value.strip())
        if not kept:
            raise PydanticCustomError(
                "string_too_short",
                "String should have at least {min_length} character",
                {"min_length": 1},
            )
        if kept > longest:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": longest},
            )
        return value

    return AfterValidator(check)


Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]


def _no_space_around(value: str) -> str:
    """A user id new data is written under, refused with whitespace around it, as the
    Memory API refuses it (see :func:`noted.schema.check_new_user_id`)."""
    if value != value.strip():
        raise PydanticCustomError(
            "user_id_space", "must not begin or end with whitespace (a stored one is still read)"
        )
    return value


NewUserId = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_CHARS, json_schema_extra={"pattern": NO_SPACE_AROUND}),
    AfterValidator(_no_space_around),
]
"""The user of a new memory or run: no whitespace around it (a stored user id that has
some is still named as it is to read, change or delete what it holds)."""
Topic = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS), BeforeValidator(trimmed)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_MEMORY_CHARS), BeforeValidator(trimmed)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _a_boolean(value: object) -> object:
    """A JSON true or false as it was sent: "yes", "1" and 1 are not booleans."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {json.dumps(value)}")
    return value


def _a_time(value: object) -> object:
    """A time as ISO 8601 text with its offset (as times are answered), never a number."""
    if value is not None and not isinstance(value, str):
        raise ValueError("must be an ISO 8601 time such as 2026-01-31T12:00:00.000000+00:00")
    return value


def _a_number(value: object) -> object:
    """A JSON number as it was sent: "60" is text and true a boolean, neither a number."""
    if isinstance(value, bool | str):
        raise ValueError(f"must be a whole number, got {json.dumps(value)}")
    return value


class MemoryCreate(Body):
    memory: Text
    user_id: NewUserId | None = None
    topics: Annotated[list[Topic], Field(max_length=MAX_TOPICS)] = []
    agent_id: Id | None = None
    team_id: Id | None = None
    input: Annotated[str, Field(max_length=MAX_MESSAGE_CHARS)] | None = None


class MemoryUpdate(Body):
    memory: Text | None = None
    topics: Annotated[list[Topic], Field(max_length=MAX_TOPICS)] | None = None
    user_id: Id | None = None
    if_updated_at: Annotated[
        AwareDatetime | None,
        BeforeValidator(_a_time),
        Field(
            description=(
                "The memory's updated_at as the caller last read it: when the memory has "
                "changed since, nothing is written and the answer is 409"
            )
        ),
    ] = None


class BulkDelete(Body):
    memory_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_BULK)]
    user_id: Id | None = None


class TokenRequest(Body):
    user_id: Id
    expires_in: Annotated[int, Field(ge=1, le=365 * 24 * 3600), BeforeValidator(_a_number)] = 3600


class RevocationRequest(Body):
    user_id: Annotated[
        Id | None, Field(description="Whose tokens: one user, or everyone's when left out")
    ] = None
    before: Annotated[
        AwareDatetime | None,
        BeforeValidator(_a_time),
        Field(description="Tokens issued at or before this time (default, and at the latest: now)"),
    ] = None


class RunRequest(Body):
    message: Annotated[
        str,
        within(MAX_MESSAGE_CHARS),
        Field(json_schema_extra={"minLength": 1, "maxLength": MAX_MESSAGE_CHARS}),
    ]
    user_id: NewUserId | None = None
    session_id: Id | None = None
    stream: Annotated[bool, BeforeValidator(_a_boolean)] = True


class MemoryOut(BaseModel):
    memory_id: str
    memory: str
    topics: list[str]
    input: str | None
    user_id: str
    agent_id: str | None
    team_id: str | None
    session_id: str | None
    created_at: str
    updated_at: str
    damaged: str | None = Field(
        default=None,
        description=(
            "Only on a memory whose stored topics are damaged (a hand-edited database): "
            "what is wrong with them. Its topics are then empty; a PATCH giving topics "
            "repairs it, a DELETE removes it"
        ),
    )
    score: float | None = None


class PageMeta(BaseModel):
    page: int
    limit: int
    total_pages: int
    total_count: int


class MemoryPage(BaseModel):
    data: list[MemoryOut]
    meta: PageMeta


class Deleted(BaseModel):
    deleted: int


class UserStatsOut(BaseModel):
    user_id: str
    memory_count: int
    last_updated: str


class StatsPage(BaseModel):
    data: list[UserStatsOut]
    meta: PageMeta


class MemoryEventOut(BaseModel):
    event_id: str
    memory_id: str
    user_id: str
    event: Literal["add", "update", "delete"]
    old_memory: str | None
    new_memory: str | None
    old_topics: list[str] | None
    new_topics: list[str] | None
    actor: str
    session_id: str | None
    run_id: str | None
    created_at: str


class SummaryOut(BaseModel):
    summary: str
    topics: list[str]
    run_count: int
    updated_at: str
    last_run_id: str | None = None


# A run's JSON documented field by field: a field it gains and the schema lacks is an
# error in the schema tests, not an undocumented extra.
_EXACT = ConfigDict(extra="forbid")


class ToolCallOut(BaseModel):
    """A tool call an assistant message asked for."""

    model_config = _EXACT

    id: str
    name: str
    arguments: dict[str, Any]
    invalid_arguments: str | None = Field(
        default=None, description="The arguments as sent, when they were not a JSON object"
    )


class MessageOut(BaseModel):
    model_config = _EXACT

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None
    tool_calls: list[ToolCallOut] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class ToolExecutionOut(BaseModel):
    """A tool call the agent ran, and what it answered (``error``: the tool failed)."""

    model_config = _EXACT

    tool_call_id: str
    name: str
    arguments: dict[str, Any]
    result: str
    error: bool
    duration: float


class RunMetricsOut(BaseModel):
    """What a run cost: model calls, tokens (input and output null when a model call's
    provider did not report them; the cache and reasoning parts 0 where the provider
    reports none) and seconds."""

    model_config = _EXACT

    model_calls: int
    input_tokens: int | None
    output_tokens: int | None
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    duration: float
    model_duration: float
    time_to_first_token: float | None
    tool_calls: int


class RunOut(BaseModel):
    """One turn of a session: this turn's messages only (the user's first), never the
    system prompt or the history replayed before it."""

    model_config = _EXACT

    run_id: str
    session_id: str
    user_id: str
    agent_id: str | None
    input: str
    content: str | None
    messages: list[MessageOut]
    tool_calls: list[ToolExecutionOut]
    metrics: RunMetricsOut
    status: Literal["completed", "failed"]
    error: str | None = Field(
        description="Why a failed run failed; for a user token, only whether it was "
        "cancelled (the text is the admin's to read)"
    )
    stop_reason: str
    model: str | None
    created_at: str


_MICROS = "microseconds since the epoch"


class JobOut(BaseModel):
    """A background job as the admin sees it: everything but its turn's text, with its
    age and how long until it is due (a pending job waiting for its retry), in seconds."""

    model_config = _EXACT

    job_id: str
    kind: JobKind
    status: JobStatus
    user_id: str
    session_id: str
    run_id: str
    agent_id: str | None
    attempts: int
    created_at: int = Field(description=f"When the run recorded it, in {_MICROS}")
    due_at: int = Field(description=f"When it is due, in {_MICROS}")
    lease_until: int | None = Field(
        description=f"A running job's: until when its worker holds it, in {_MICROS}"
    )
    owner: str | None = Field(description="A running job's: the worker that holds it")
    error: str | None = Field(description="Why its last attempt failed")
    plan_stored: bool = Field(description="Whether the model's plan for it is kept")
    traceparent: str | None
    age_s: float
    due_in_s: float


class JobPage(BaseModel):
    data: list[JobOut]


class SessionOut(BaseModel):
    session_id: str
    user_id: str
    agent_id: str | None
    created_at: str
    updated_at: str
    summary: SummaryOut | None
    run_count: int
    runs: list[RunOut] | None = Field(
        default=None,
        description="A page of the session's runs, oldest first (`GET /sessions/{id}` only)",
    )
    runs_meta: PageMeta | None = Field(
        default=None,
        description="The page of runs: `total_count` is the session's runs (`GET "
        "/sessions/{id}` only)",
    )


class SessionListMeta(BaseModel):
    page: int
    limit: int
    has_more: bool


class SessionPage(BaseModel):
    data: list[SessionOut]
    meta: SessionListMeta


class TokenOut(BaseModel):
    token: str
    token_type: Literal["bearer"]
    user_id: str
    expires_in: int


class RevocationOut(BaseModel):
    user_id: str | None
    revoked_before: str


class AgentOut(BaseModel):
    agent_id: str
    name: str | None
    description: str | None
    model: str


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    auth: Literal["api_key", "open"]
    semantic_search: bool


class Ready(BaseModel):
    status: Literal["ready"]


class Error(BaseModel):
    detail: str
    errors: list[dict[str, Any]] | None = None


class NotSavedOut(Error):
    """A run answered but not saved (the store failed): what failed, and the run."""

    run: RunOut


ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    code: {"model": Error, "description": text}
    for code, text in (
        (400, "Invalid request"),
        (401, "Missing or invalid API key or token"),
        (404, "Not found (also another user's data, for a user token)"),
        (413, "Request body too large"),
        (422, "The request does not match the schema"),
        (503, "The store cannot answer"),
    )
}
