"""Reading an Agno database: its user memories and agent sessions, as an ImportPlan.

- Agno 2.x and 3.x: ``agno_memories`` and ``agno_sessions`` (3.x keeps the runs in
  ``agno_runs`` and the table versions in ``agno_schema_versions``);
- Agno 1.x: a ``memory.v2`` memory table (``SqliteMemoryDb`` / ``PostgresMemoryDb``,
  ``memory`` by default) and a ``SqliteStorage`` / ``PostgresStorage`` agent session table
  (``agent_sessions`` here by default).

The layout is told by the tables' columns, so renamed tables (``memory_table=``,
``session_table=``) are read the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from noted.errors import UserError
from noted.importers.plan import ImportedSession, ImportPlan
from noted.importers.sources import Source
from noted.importers.values import RowError, decode_json, time_zone, timestamp, where
from noted.models.types import Message, ToolCall
from noted.schema import UserMemory
from noted.sessions import RunResult, SessionSummary

__all__ = ["is_agno_table", "read_agno"]

AGNO_MEMORY_TABLE = "agno_memories"
AGNO_SESSION_TABLE = "agno_sessions"
AGNO_RUNS_TABLE = "agno_runs"
AGNO_VERSIONS_TABLE = "agno_schema_versions"
AGNO1_MEMORY_TABLE = "memory"
AGNO1_SESSION_TABLE = "agent_sessions"
KNOWN_MAJORS = (2, 3)

_V2_MEMORY = {"memory_id", "memory", "user_id", "topics", "updated_at"}
_V1_MEMORY = {"id", "user_id", "memory", "created_at", "updated_at"}
_V2_SESSION = {"session_id", "session_type", "user_id", "summary", "created_at"}
_V1_SESSION = {"session_id", "user_id", "memory", "created_at"}
_V3_RUNS = {"run_id", "session_id", "parent_run_id", "run_index", "run_data"}


def _text(value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _check_versions(source: Source, tables: list[str]) -> None:
    if source.columns(AGNO_VERSIONS_TABLE) is None:
        return
    for row in source.rows(AGNO_VERSIONS_TABLE, "table_name"):
        if row.get("table_name") not in tables:
            continue
        version = str(row.get("version") or "")
        major = version.split(".", 1)[0]
        if not major.isdigit() or int(major) not in KNOWN_MAJORS:
            raise UserError(
                f"{source.name}: table {row['table_name']!r} has Agno schema version "
                f"{version!r}; this import reads Agno 1.x, 2.x and 3.x tables only"
            )


def _memory(row: Mapping[str, Any], table: str, v1: bool, local: tzinfo | None) -> UserMemory:
    """One memory; ``local`` is the time zone of the naive times Agno wrote with
    ``datetime.now()`` (None: this machine's)."""
    key = "id" if v1 else "memory_id"
    at = where(table, key, row.get(key))
    try:
        if v1:
            body = decode_json(row["memory"], at, "memory", literal=True)
            if not isinstance(body, dict) or not isinstance(body.get("memory"), str):
                raise RowError(f"{at}: column 'memory' holds no memory text: {body!r}")
            created = timestamp(row.get("created_at"), at, "created_at")
            updated = (
                timestamp(row.get("updated_at"), at, "updated_at")
                or timestamp(body.get("last_updated"), at, "memory", naive=local)
                or created
            )
            if created is not None and updated is not None and updated < created:
                # Agno 1.x on PostgreSQL leaves updated_at NULL; the body's last_updated,
                # taken in Python, comes a moment before the row's created_at (SQL's now())
                updated = created
            return UserMemory(
                body["memory"],
                memory_id=row["id"],
                user_id=row.get("user_id"),
                topics=body.get("topics") or [],
                input=body.get("input"),
                created_at=created or updated,
                updated_at=updated,
            )
        text = decode_json(row["memory"], at, "memory", nested=False)
        if not isinstance(text, str):
            text = (text or {}).get("memory") if isinstance(text, dict) else None
        if not isinstance(text, str):
            raise RowError(f"{at}: column 'memory' holds no memory text")
        topics = decode_json(row.get("topics"), at, "topics") or []
        created = timestamp(row.get("created_at"), at, "created_at")
        updated = timestamp(row.get("updated_at"), at, "updated_at") or created
        return UserMemory(
            text,
            memory_id=row["memory_id"],
            user_id=row.get("user_id"),
            topics=topics,
            input=row.get("input"),
            agent_id=row.get("agent_id"),
            team_id=row.get("team_id"),
            created_at=created or updated,
            updated_at=updated,
        )
    except UserError as exc:
        if isinstance(exc, RowError):
            raise
        raise RowError(f"{at}: {exc}") from None


def _tool_calls(raw: object, at: str) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for item in raw if isinstance(raw, list) else []:
        function = item.get("function") if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise RowError(f"{at}: a tool call without a function name: {item!r}")
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {})
        calls.append(ToolCall.from_json_text(function["name"], text, item.get("id")))
    return calls


def _messages(raw: object, at: str) -> list[Message]:
    """A run's own messages: the system prompt and replayed history are left out."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RowError(f"{at}: a run's messages are not a list")
    messages: list[Message] = []
    for item in raw:
        if not isinstance(item, dict):
            raise RowError(f"{at}: a run's message is not an object: {item!r}")
        role = item.get("role")
        if role in ("system", "developer") or item.get("from_history"):
            continue
        if role not in ("user", "assistant", "tool"):
            raise RowError(f"{at}: a message with role {role!r}")
        tool_call_id = item.get("tool_call_id")
        if role == "tool" and not tool_call_id:
            raise RowError(f"{at}: a tool message without tool_call_id")
        messages.append(
            Message(
                role,
                _text(item.get("content")),
                tool_calls=_tool_calls(item.get("tool_calls"), at),
                tool_call_id=tool_call_id if role == "tool" else None,
                name=item.get("tool_name") or item.get("name") if role == "tool" else None,
            )
        )
    return messages


def _unwrapped(raw: object) -> object:
    """A run of Agno 1.x's legacy ``AgentMemory`` (``agno.memory.agent``, an ``AgentRun``:
    ``{"message", "messages", "response": {"run_id", ...}}``) as the run it wraps; any
    other run as it is."""
    if not isinstance(raw, dict) or "run_id" in raw or not isinstance(raw.get("response"), dict):
        return raw
    run = dict(raw["response"])
    if not run.get("messages") and isinstance(raw.get("messages"), list):
        run["messages"] = raw["messages"]
    message = raw.get("message")
    if run.get("input") is None and isinstance(message, dict):
        run["input"] = message.get("content")
    return run


def _run(raw: object, at: str, session: ImportedSession, agent_id: str | None) -> RunResult:
    if not isinstance(raw, dict) or not isinstance(raw.get("run_id"), str):
        raise RowError(f"{at}: a run without a run_id: {str(raw)[:80]!r}")
    run_at = f"{at}, run {raw['run_id']!r}"
    messages = _messages(raw.get("messages"), run_at)
    given = raw.get("input")
    said = given.get("input_content") if isinstance(given, dict) else given
    if said is None:
        said = next((m.content for m in messages if m.role == "user"), "")
    status = str(raw.get("status") or "completed").lower()
    failed = status in ("error", "cancelled")
    created = timestamp(raw.get("created_at"), run_at, "created_at")
    run = RunResult(
        run_id=raw["run_id"],
        session_id=session.session_id,
        user_id=session.user_id,
        input=_text(said) or "",
        agent_id=raw.get("agent_id") or agent_id,
        content=_text(raw.get("content")),
        messages=messages,
        status="failed" if failed else "completed",
        error=_text(raw.get("content")) if failed else None,
        model=raw.get("model"),
    )
    if created is not None:
        run.created_at = created
    return run


def _summary(
    raw: object, at: str, runs: list[RunResult], written: datetime | None, local: tzinfo | None
) -> SessionSummary | None:
    """The session's summary; without its own time, the session row's (Agno 1.x). Agno
    gives a summary the naive local time of ``datetime.now()``, in the zone ``local``."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("summary"), str):
        raise RowError(f"{at}: column 'summary' holds no summary text")
    when = raw.get("updated_at") or raw.get("last_updated")
    updated = timestamp(when, at, "summary", naive=local)
    updated = updated or written
    summary = SessionSummary(
        raw["summary"],
        topics=[str(t) for t in raw.get("topics") or ()],
        run_count=sum(1 for r in runs if r.status == "completed"),
    )
    if updated is not None:
        summary.updated_at = updated
    return summary


def _runs_by_session(source: Source, table: str) -> dict[str, list[Any]]:
    """Agno 3's runs table (top-level runs only), by session."""
    found: dict[str, list[Any]] = {}
    for row in source.rows(table, "session_id, run_index, created_at, run_id"):
        if row.get("parent_run_id"):
            continue
        at = where(table, "run_id", row.get("run_id"))
        found.setdefault(row["session_id"], []).append(decode_json(row["run_data"], at, "run_data"))
    return found


def _merged(table: list[Any], legacy: list[Any]) -> list[Any]:
    """A session's runs when an Agno 2 database has been used by Agno 3, which reads both
    (``merge_runs_table_with_legacy_blob``): the runs of the session row's ``runs`` column
    first, in their order, each replaced by the runs table's version of the same run_id,
    then the runs only the runs table holds."""
    if not legacy:
        return table
    by_id = {r["run_id"]: r for r in table if isinstance(r, dict) and r.get("run_id")}
    merged = [by_id.get(r.get("run_id"), r) if isinstance(r, dict) else r for r in legacy]
    known = {r.get("run_id") for r in legacy if isinstance(r, dict)}
    return merged + [r for r in table if not isinstance(r, dict) or r.get("run_id") not in known]


def _keep_memories(
    body: Mapping[str, Any],
    at: str,
    written: datetime | None,
    local: tzinfo | None,
    kept: dict[str, UserMemory],
) -> None:
    """The user memories Agno 1.x's memory.v2 ``Memory`` without a database keeps in the
    session row (``"memories": {user: {memory_id: UserMemory.to_dict()}}``), into
    ``kept`` by id: of the copies of a memory in several rows, the newest (of two as new,
    the later row's). Agno gives them no creation time: their ``last_updated`` (a naive
    local time), else the row's, is both."""
    found = body.get("memories")
    if not isinstance(found, dict):  # none; or the legacy AgentMemory's list, without ids
        return
    for user, memories in found.items():
        if not isinstance(memories, dict):
            raise RowError(f"{at}: column 'memory': the memories of {user!r} are not an object")
        for memory_id, raw in memories.items():
            if not isinstance(raw, dict) or not isinstance(raw.get("memory"), str):
                raise RowError(f"{at}: column 'memory': memory {memory_id!r} holds no text")
            updated = timestamp(raw.get("last_updated"), at, "memory", naive=local) or written
            try:
                memory = UserMemory(
                    raw["memory"],
                    memory_id=str(raw.get("memory_id") or memory_id),
                    user_id=user,
                    topics=raw.get("topics") or [],
                    input=raw.get("input"),
                    created_at=updated,
                    updated_at=updated,
                )
            except UserError as exc:
                raise RowError(f"{at}: column 'memory': memory {memory_id!r}: {exc}") from None
            assert memory.memory_id is not None
            before = kept.get(memory.memory_id)
            if before is None or _older(before, memory):
                kept[memory.memory_id] = memory


def _older(memory: UserMemory, than: UserMemory) -> bool:
    if memory.updated_at is None or than.updated_at is None:
        return True
    return memory.updated_at <= than.updated_at


def _session(
    row: Mapping[str, Any],
    table: str,
    v1: bool,
    runs_table: dict[str, list[Any]] | None,
    local: tzinfo | None,
    kept: dict[str, UserMemory] | None = None,
) -> ImportedSession | None:
    """One session; with ``kept``, the memories an Agno 1.x row keeps go there."""
    at = where(table, "session_id", row.get("session_id"))
    if not v1 and row.get("session_type") not in (None, "agent", "team"):
        return None  # workflow sessions have no conversation of their own
    user = row.get("user_id") or "default"
    session = ImportedSession(session_id=row["session_id"], user_id=user)
    agent_id = row.get("agent_id")
    if v1:
        body = decode_json(row.get("memory"), at, "memory") or {}
        if not isinstance(body, dict):
            raise RowError(f"{at}: column 'memory' is not an object")
        raw_runs = body.get("runs") or []
        if "summaries" in body:  # memory.v2's Memory: by user, then by session
            summaries = body.get("summaries") or {}
            raw_summary = (summaries.get(user) or {}).get(session.session_id)
        else:  # the legacy AgentMemory keeps the session's one summary
            raw_summary = body.get("summary")
    else:  # the runs in the session row (Agno 2), in the runs table (Agno 3), or both
        raw_runs = decode_json(row.get("runs"), at, "runs") or []
        if not isinstance(raw_runs, list):
            raise RowError(f"{at}: column 'runs' is not a list")
        if runs_table is not None:
            raw_runs = _merged(runs_table.get(session.session_id, []), raw_runs)
        raw_summary = decode_json(row.get("summary"), at, "summary")
    if not isinstance(raw_runs, list):
        raise RowError(f"{at}: column 'runs' is not a list")
    # a team member's run (its parent the team leader's) is no turn of the conversation:
    # Agno never replays it as history
    runs = [_unwrapped(r) for r in raw_runs]
    runs = [r for r in runs if not (isinstance(r, dict) and r.get("parent_run_id"))]
    session.runs = [_run(r, at, session, agent_id) for r in runs]
    written = timestamp(row.get("updated_at"), at, "updated_at") or timestamp(
        row.get("created_at"), at, "created_at"
    )
    session.summary = _summary(raw_summary, at, session.runs, written, local)
    if v1 and kept is not None:
        _keep_memories(body, at, written, local, kept)
    return session


def _v1(columns: set[str], v1: tuple[set[str], str]) -> bool:
    """Whether ``columns`` are those of Agno 1.x's table: ``v1`` is 1.x's columns and the
    2.x column it lacks."""
    return columns >= v1[0] and v1[1] not in columns


def _layout(
    source: Source, table: str, kind: str, v1: tuple[set[str], str], v2: set[str]
) -> tuple[bool, set[str]]:
    """Whether ``table`` has Agno 1.x's layout (else 2.x/3.x's), and its columns; an error
    when it has neither (:func:`_v1`)."""
    columns = set(source.columns(table) or ())
    old = _v1(columns, v1)
    if not old and not columns >= v2:
        raise UserError(
            f"{source.name}: table {table!r} is not an Agno {kind} table "
            f"(columns: {', '.join(sorted(columns))})"
        )
    return old, columns


def _first(source: Source, *names: str) -> str | None:
    return next((name for name in names if source.columns(name) is not None), None)


def _found(source: Source, kind: str, fits: Callable[[set[str]], bool]) -> str | None:
    """The one table of the source whose columns ``fits`` those of an Agno ``kind`` table,
    when its default names are not there (``SqliteMemoryDb(table_name="user_memories")``);
    None when there is none, an error naming them when there are several."""
    found = []
    for table in source.tables():
        if fits(set(source.columns(table) or ())):
            found.append(table)
    if len(found) > 1:
        option = f"{kind}_table= (--{kind}-table)"
        raise UserError(
            f"{source.name}: several tables look like Agno {kind} tables "
            f"({', '.join(found)}); name the one to read with {option}"
        )
    return found[0] if found else None


def _memory_table(columns: set[str]) -> bool:
    return _v1(columns, (_V1_MEMORY, "memory_id")) or columns >= _V2_MEMORY


def _session_table(columns: set[str]) -> bool:
    return _v1(columns, (_V1_SESSION, "session_type")) or columns >= _V2_SESSION


def _runs_table(columns: set[str]) -> bool:
    return columns >= _V3_RUNS


def is_agno_table(columns: set[str]) -> bool:
    """Whether ``columns`` are those of an Agno memory, session or runs table (of any
    version); noted's own memory table has those of Agno 2's too."""
    return _memory_table(columns) or _session_table(columns) or _runs_table(columns)


def read_agno(
    source: Source,
    memory_table: str | None = None,
    session_table: str | None = None,
    agno_timezone: str | tzinfo | None = None,
    runs_table: str | None = None,
) -> tuple[ImportPlan, list[str]]:
    """Everything the Agno tables hold; also the names of the tables read.

    Agno 3 keeps the runs in a table of their own (``agno_runs``, else the one table with
    its columns, or ``runs_table``); without one, the sessions have the runs of their
    rows' ``runs`` column (Agno 2), or none.

    The times Agno took from ``datetime.now()`` (a summary's, an Agno 1.x memory's
    ``last_updated``) carry no time zone: they are read in ``agno_timezone``, by default
    this machine's local time zone. The times SQL wrote and the epochs are UTC."""
    local = time_zone(agno_timezone)
    for name in (memory_table, session_table, runs_table):
        if name is not None and source.columns(name) is None:
            raise UserError(f"{source.name}: table {name!r} not found")
    if memory_table is None:
        memory_table = _first(source, AGNO_MEMORY_TABLE, AGNO1_MEMORY_TABLE) or _found(
            source, "memory", _memory_table
        )
    if session_table is None:
        session_table = _first(source, AGNO_SESSION_TABLE, AGNO1_SESSION_TABLE) or _found(
            source, "session", _session_table
        )
    if memory_table is None and session_table is None:
        looked = ", ".join(
            (AGNO_MEMORY_TABLE, AGNO_SESSION_TABLE, AGNO1_MEMORY_TABLE, AGNO1_SESSION_TABLE)
        )
        raise UserError(
            f"{source.name}: no Agno tables found (looked for {looked}); name them with "
            "memory_table= / session_table= (--memory-table, --session-table)"
        )
    plan = ImportPlan(source.name)
    v1_sessions = False
    if session_table is not None:
        v1_sessions, _ = _layout(
            source, session_table, "session", (_V1_SESSION, "session_type"), _V2_SESSION
        )
    if runs_table is not None:
        columns = set(source.columns(runs_table) or ())
        if not _runs_table(columns):
            raise UserError(
                f"{source.name}: table {runs_table!r} is not an Agno runs table "
                f"(columns: {', '.join(sorted(columns))})"
            )
    elif session_table is not None and not v1_sessions:
        runs_table = _first(source, AGNO_RUNS_TABLE) or _found(source, "runs", _runs_table)
    tables = [t for t in (memory_table, session_table, runs_table) if t is not None]
    _check_versions(source, tables)
    if memory_table is not None:
        v1, _ = _layout(source, memory_table, "memory", (_V1_MEMORY, "memory_id"), _V2_MEMORY)
        order = "id" if v1 else "memory_id"
        plan.memories = [
            _memory(r, memory_table, v1, local) for r in source.rows(memory_table, order)
        ]
    if session_table is not None:
        # without a runs table, the runs of the session rows (Agno 2), else none yet
        runs = None if v1_sessions or runs_table is None else _runs_by_session(source, runs_table)
        # Agno 1.x's memories, when a Memory without a database kept them in the session
        # rows; with a memory table, Agno reads that one (the rows' copies are what the
        # agent held when it saved them, memories deleted since among them), as here
        kept: dict[str, UserMemory] | None = {} if memory_table is None else None
        for row in source.rows(session_table, "created_at, session_id"):
            session = _session(row, session_table, v1_sessions, runs, local, kept)
            if session is not None:
                plan.sessions.append(session)
        if kept:
            plan.memories = [kept[memory_id] for memory_id in sorted(kept)]
    return plan, tables
