"""How SqliteDb reads a listing: one user's memories in a compact row shape
(``OWNED_ROW``, ``owned_memories``), and SQL that writes a memory row as the JSON of
``UserMemory.to_dict()``, so that SQLite itself builds a listing's JSON
(``SqliteDb.list_memories_json``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import apsw

from noted._time import FLOAT_EXACT_US, from_micros
from noted.db._rows import damaged_memory, read_topics
from noted.schema import UserMemory

__all__ = [
    "JSON_IN_SQL",
    "MEMORY_JSON",
    "OWNED_ROW",
    "iso_sql",
    "owned_memories",
    "sound_topics",
]

# JSON functions built in
JSON_IN_SQL = tuple(map(int, apsw.sqlite_lib_version().split(".")[:2])) >= (3, 38)


def iso_sql(column: str) -> str:
    """SQL for ``iso(from_micros(column))``: ISO 8601 UTC with microseconds. Times before
    1970 take the floor of the division (SQLite's truncates toward zero)."""

    def text(seconds: str, micros: str) -> str:
        return (
            f"printf('%sT%s.%06d+00:00', date({seconds}, 'unixepoch'), "
            f"time({seconds}, 'unixepoch'), {micros})"
        )

    micros = f"(({column} % 1000000) + 1000000) % 1000000"
    return (
        f"CASE WHEN {column} >= 0 THEN {text(f'{column} / 1000000', f'{column} % 1000000')} "
        f"ELSE {text(f'({column} - {micros}) / 1000000', micros)} END"
    )


def sound_topics(column: str) -> str:
    """SQL that is 1 when ``column`` holds a JSON list of strings (topics as noted writes
    them), else 0, never an error: not JSON, JSON of another shape (``{"a":1}``, ``"x"``,
    ``[1,2]``) and NULL are damaged topics, as :func:`noted.db._rows.topics_damage` reads
    them. Each step is taken only if the one before it held (a CASE does that)."""
    return (
        f"CASE WHEN {column} IS NULL OR NOT json_valid({column}) THEN 0 "
        f"WHEN json_type({column}) <> 'array' THEN 0 "
        f"ELSE NOT EXISTS (SELECT 1 FROM json_each({column}) WHERE type <> 'text') END"
    )


# A memory as UserMemory.to_dict() writes it, keys in the same order (for a sound memory:
# SqliteDb.list_memories_json reads a page with one whose topics are damaged as memories).
MEMORY_JSON = "json_object({})".format(
    ", ".join(
        f"'{name}', "
        + ("json(topics)" if name == "topics" else iso_sql(name) if name.endswith("_at") else name)
        for name in (f.name for f in fields(UserMemory) if f.init)  # not "damaged"
    ),
)


# One user's memories as rows without the owner (the query's); created_at comes as float
# seconds where that is exact (see noted._time.from_micros: SQLite divides the same doubles
# Python would), else as integer microseconds; updated_at is NULL when it equals
# created_at (a never-changed memory). So a row's times cost one call and no integer.
OWNED_ROW = (
    "memory_id, memory, topics, input, agent_id, team_id, session_id, "
    f"CASE WHEN abs(created_at) < {FLOAT_EXACT_US} THEN created_at / 1000000.0 "
    "ELSE created_at END, "
    "nullif(updated_at, created_at)"
)


def owned_memories(rows: Iterable[tuple[Any, ...]], user_id: str) -> list[UserMemory]:
    """Memories of ``user_id`` from ``OWNED_ROW`` rows the store wrote itself (no
    re-validation; built as :func:`noted.db._rows.rows_to_memories` builds them)."""
    new = object.__new__
    decoded: dict[str, tuple[str, ...]] = {}  # looked up once per distinct text here
    damaged: list[tuple[UserMemory, str]] = []
    fromtimestamp = datetime.fromtimestamp
    memories: list[UserMemory] = []
    append = memories.append
    for memory_id, text, topics, input_, agent_id, team_id, session_id, seconds, u in rows:
        m = new(UserMemory)
        m.memory_id = memory_id
        m.user_id = user_id
        m.memory = text
        m.damaged = None
        try:
            m.topics = [*decoded[topics]]  # a list of its own per memory
        except KeyError:
            m.topics = read_topics(decoded, topics, m, damaged)
        m.input = input_
        m.agent_id = agent_id
        m.team_id = team_id
        m.session_id = session_id
        created = fromtimestamp(seconds, UTC) if type(seconds) is float else from_micros(seconds)
        m.created_at = created
        m.updated_at = created if u is None else from_micros(u)  # never changed: one object
        append(m)
    for memory, reason in damaged:
        damaged_memory(memory, reason)
    return memories
