"""Shared between the SQL stores: table-name checks and row <-> memory conversion."""

from __future__ import annotations

import functools
import gc
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, TypeVar

from noted._time import FLOAT_EXACT_US, from_micros, to_micros
from noted.audit import MemoryEvent
from noted.errors import ConflictError, UserError
from noted.schema import UserMemory
from noted.sessions import Session, SessionSummary

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("noted.db")

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

IN_CHUNK = 500  # ids per "IN (...)" list, well under SQLite's variable limit

# The column order every SQL store selects and inserts in.
COLUMNS = (
    "memory_id",
    "user_id",
    "memory",
    "topics",
    "input",
    "agent_id",
    "team_id",
    "session_id",
    "created_at",
    "updated_at",
)


# The columns of a memory's history, in MemoryEvent's field order.
EVENT_COLUMNS = (
    "event_id",
    "memory_id",
    "user_id",
    "event",
    "old_memory",
    "new_memory",
    "old_topics",
    "new_topics",
    "actor",
    "session_id",
    "run_id",
    "created_at",
)


def check_table_name(name: object, option: str) -> str:
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise UserError(
            f"{option} must be a SQL identifier (letters, digits, underscores; at most 63 "
            f"characters, not starting with a digit), got {name!r}"
        )
    return name


def check_table_names(
    memory_table: object,
    session_table: object,
    memory_suffixes: Sequence[str] = ("_events",),
    session_suffixes: Sequence[str] = ("_runs", "_jobs"),
) -> tuple[str, str]:
    """The two names a store is given, checked, and checked not to collide with each other
    or with the companion tables (or collections, or key prefixes) derived from them."""
    memories = check_table_name(memory_table, "memory_table")
    sessions = check_table_name(session_table, "session_table")
    derived = [memories + s for s in memory_suffixes] + [sessions + s for s in session_suffixes]
    if len({memories, sessions, *derived}) < 2 + len(derived):
        raise UserError(
            f"memory_table and session_table must name different tables (or collections, "
            f"or key prefixes; noted also uses {', '.join(derived)})"
        )
    return memories, sessions


def encode_topics(topics: Sequence[str]) -> str:
    return _encode_topics(tuple(topics)) if topics else "[]"


@functools.lru_cache(maxsize=4096)
def _encode_topics(topics: tuple[str, ...]) -> str:
    return json.dumps(topics, ensure_ascii=False)


# A user's memories share a few topic sets, so decoding each distinct set once saves most
# of the JSON work when thousands of rows are read (a read also keeps the sets it met in
# a dict of its own, cheaper to look up per row than this cache: see _build).
@functools.lru_cache(maxsize=4096)
def decode_topics(text: str) -> tuple[str, ...]:
    """The topics of a stored JSON list of strings; ValueError for text that is not one
    (a damaged or hand-edited file), TypeError for a value that is not text at all."""
    topics = json.loads(text)
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ValueError(f"not a JSON list of strings: {text[:80]!r}")
    return tuple(topics)


def topics_damage(text: Any) -> str | None:
    """What is wrong with a memory's stored topics ``text``: None when it is a JSON list of
    strings, else why not (not JSON, or JSON of another shape: ``{"a": 1}``, ``[1, 2]``)."""
    try:
        decode_topics(text)
    except json.JSONDecodeError as exc:
        return f"not valid JSON ({exc.msg}): {text[:80]!r}"
    except (ValueError, TypeError) as exc:
        return str(exc)
    return None


def sound_json(text: Any) -> bool:
    """Whether a memory's stored topics ``text`` is a JSON list of strings (each distinct
    text decoded once in the process: a listing asks for every row)."""
    try:
        decode_topics(text)
    except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
        return False
    return True


def value_damage(topics: Any) -> str | None:
    """:func:`topics_damage` for topics a store keeps as a value (a document's array):
    None for a list of strings."""
    if isinstance(topics, list) and all(isinstance(t, str) for t in topics):
        return None
    return f"not a list of strings: {repr(topics)[:80]}"


# the attribute of the log record that says a memory is damaged (a command that tells its
# user itself, with how to repair it, holds the record back)
DAMAGED_RECORD = "damaged_memory"
_reported: set[str] = set()  # the damaged memories logged so far (once each per process)


def damaged_memory(memory: UserMemory, reason: str) -> UserMemory:
    """``memory`` read back from stored topics that are damaged: marked so (its
    ``damaged`` says what is wrong), its topics empty, and logged once per process. A
    read lists it rather than fail, so that its user still has every other memory and
    sees this one to repair (replace its topics) or delete."""
    memory.topics = []
    memory.damaged = reason
    if memory.memory_id is not None and memory.memory_id not in _reported:
        _reported.add(memory.memory_id)
        log.warning(
            "memory %r of user %r has damaged topics (%s): it is read with none; give it "
            "topics to repair it, or delete it",
            memory.memory_id,
            memory.user_id,
            reason,
            extra={DAMAGED_RECORD: memory.memory_id},
        )
    return memory


def stamped_keys(memory: UserMemory) -> tuple[str, str]:
    """The (memory_id, user_id) of a memory ready to store; UserError if it is not stamped."""
    if memory.memory_id is None or memory.user_id is None:
        raise UserError("a memory needs memory_id and user_id before it is stored")
    if memory.created_at is None or memory.updated_at is None:
        raise UserError("a memory needs created_at and updated_at before it is stored")
    return memory.memory_id, memory.user_id


def memory_to_row(memory: UserMemory) -> tuple[Any, ...]:
    """A stamped memory (id, user and timestamps set) as a row in COLUMNS order."""
    memory_id, user_id = stamped_keys(memory)
    created_at, updated_at = memory.created_at, memory.updated_at
    assert created_at is not None
    assert updated_at is not None
    created = to_micros(created_at)
    return (
        memory_id,
        user_id,
        memory.memory,
        encode_topics(memory.topics),
        memory.input,
        memory.agent_id,
        memory.team_id,
        memory.session_id,
        created,
        created if updated_at is created_at else to_micros(updated_at),  # a new memory's
    )


def row_to_memory(row: Sequence[Any]) -> UserMemory:
    return rows_to_memories([row])[0]


def rows_to_memories(rows: Sequence[Sequence[Any]]) -> list[UserMemory]:
    """Memories from rows in COLUMNS order that the store wrote itself (no re-validation;
    SQLite's listing of one user reads a shorter row: sqlite/listing.py)."""
    return _build(((r[0], *r[2:]) for r in rows), map(itemgetter(1), rows), len(rows))


# Building thousands of objects at once makes the cyclic garbage collector walk them, and
# every other live object, several times over, though they hold no cycles: up to a fifth of
# a large read. Large reads pause it (it stays off only if it was off already).
PAUSE_GC_ROWS = 1000


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic collector off for the block (a large read: the rows fetched and the
    memories built from them are thousands of fresh objects without cycles), then back on
    unless it was off already."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def call_with_collector_paused(build: Callable[[T], R], arg: T) -> R:
    """``build(arg)`` with the cyclic collector off (a large read), turned back on as the
    very last step before returning, unless it was off already.

    Turning it on is what the read's own exit must not be followed by: the collector's
    count of new objects now includes everything the read built, so the next allocation
    of a tracked object starts a collection that walks all of them. Allocating nothing
    after ``gc.enable()`` leaves that walk to the caller's next allocation, and spares it
    altogether when the caller drops the memories first (their count goes as they do);
    ``collector_paused``'s exit itself allocates (it ends a generator)."""
    if not gc.isenabled():
        return build(arg)
    gc.disable()
    try:
        built = build(arg)
    except BaseException:
        gc.enable()
        raise
    gc.enable()
    return built


def _build(rows: Iterable[Sequence[Any]], owners: Iterable[str], count: int) -> list[UserMemory]:
    """The hot path of every large read: each object is built directly, each timestamp
    converted inline (see noted._time.from_micros), a never-changed memory's two timestamps
    are one object, and each distinct topics text is decoded once and looked up once per
    read (a user's memories share a few topic sets; each memory still gets a list of its
    own)."""
    new = object.__new__
    decoded: dict[str, tuple[str, ...]] = {}  # looked up once per distinct text here
    damaged: list[tuple[UserMemory, str]] = []
    fromtimestamp = datetime.fromtimestamp
    memories: list[UserMemory] = []
    append = memories.append
    with collector_paused() if count >= PAUSE_GC_ROWS else nullcontext():
        for (memory_id, text, topics, input_, agent_id, team_id, session_id, c, u), owner in zip(
            rows,
            owners,
            strict=True,
        ):
            m = new(UserMemory)
            m.memory = text
            m.damaged = None
            try:
                m.topics = [*decoded[topics]]  # a list of its own per memory
            except KeyError:
                m.topics = read_topics(decoded, topics, m, damaged)
            m.input = input_
            m.memory_id = memory_id
            m.user_id = owner
            m.agent_id = agent_id
            m.team_id = team_id
            m.session_id = session_id
            if -FLOAT_EXACT_US < c < FLOAT_EXACT_US:
                created = fromtimestamp(c / 1_000_000, UTC)
            else:
                created = from_micros(c)
            m.created_at = created
            m.updated_at = created if u == c else from_micros(u)  # never changed: one object
            append(m)
    for memory, reason in damaged:
        damaged_memory(memory, reason)
    return memories


def read_topics(
    decoded: dict[str, tuple[str, ...]],
    text: Any,
    memory: UserMemory,
    damaged: list[tuple[UserMemory, str]],
) -> list[str]:
    """The topics of a memory being read from its stored ``text`` not met yet in this
    read: decoded and kept in ``decoded``; or, when they are damaged, none, with the
    memory and what is wrong added to ``damaged`` (to be marked once it is built)."""
    try:
        return [*decoded.setdefault(text, decode_topics(text))]  # JSON decoded once per text
    except (ValueError, TypeError):  # json.JSONDecodeError is a ValueError
        reason = topics_damage(text)
        assert reason is not None
        damaged.append((memory, reason))
        return []


def _topics_or_none(text: str | None) -> list[str] | None:
    """An event's old or new topics from their stored JSON text: None for none recorded,
    an empty list for damaged ones (a delete of a memory whose topics were damaged, by a
    store that copies them into the event as they are), as a memory's are read."""
    if text is None:
        return None
    return [] if topics_damage(text) is not None else list(decode_topics(text))


def row_to_event(row: Sequence[Any]) -> MemoryEvent:
    """A history event from a row in EVENT_COLUMNS order (topics JSON, time in microseconds)."""
    event_id, memory_id, user_id, event, old, new, old_topics, new_topics, *rest = row
    actor, session_id, run_id, created_at = rest
    return MemoryEvent(
        event_id,
        memory_id,
        user_id,
        event,
        old,
        new,
        _topics_or_none(old_topics),
        _topics_or_none(new_topics),
        actor,
        session_id,
        run_id,
        from_micros(created_at),
    )


def summary_from_json(text: str | bytes | None) -> SessionSummary | None:
    return None if text is None else SessionSummary.from_dict(json.loads(text))


def row_to_session(row: Sequence[Any]) -> Session:
    """A session (without its runs) from a row of session_id, user_id, agent_id, created_at,
    updated_at (microseconds), summary (JSON text or NULL), run_count."""
    session_id, user_id, agent_id, created_at, updated_at, summary, run_count = row
    return Session(
        session_id=session_id,
        user_id=user_id,
        agent_id=agent_id,
        created_at=from_micros(created_at),
        updated_at=from_micros(updated_at),
        summary=summary_from_json(summary),
        run_count=run_count,
    )


def foreign_session(session_id: str) -> ConflictError:
    """What every store raises for a session of another user."""
    return ConflictError(f"session {session_id!r} belongs to another user")
