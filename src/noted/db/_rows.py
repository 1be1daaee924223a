"""Shared between the SQL stores: table-name checks and row <-> memory conversion."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from noted._time import to_micros
from noted.errors import UserError
from noted.schema import UserMemory

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

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


def check_table_name(name: object, option: str) -> str:
    if not isinstance(name, str) or not _TABLE_NAME.fullmatch(name):
        raise UserError(
            f"{option} must be a SQL identifier (letters, digits, underscores; at most 63 "
            f"characters, not starting with a digit), got {name!r}"
        )
    return name


def encode_topics(topics: Sequence[str]) -> str:
    return json.dumps(list(topics), ensure_ascii=False) if topics else "[]"


def decode_topics(text: str) -> list[str]:
    if text == "[]":
        return []
    topics: list[str] = json.loads(text)
    return topics


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
    assert memory.created_at is not None
    assert memory.updated_at is not None
    return (
        memory_id,
        user_id,
        memory.memory,
        encode_topics(memory.topics),
        memory.input,
        memory.agent_id,
        memory.team_id,
        memory.session_id,
        to_micros(memory.created_at),
        to_micros(memory.updated_at),
    )


def row_to_memory(row: Sequence[Any]) -> UserMemory:
    return UserMemory._from_store(  # trusted: rows the store wrote
        row[0],
        row[1],
        row[2],
        decode_topics(row[3]),
        row[4],
        row[5],
        row[6],
        row[7],
        row[8],
        row[9],
    )
