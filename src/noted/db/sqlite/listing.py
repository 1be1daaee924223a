"""SQL that writes a memory row as the JSON of ``UserMemory.to_dict()``, so that SQLite
itself builds a listing's JSON (``SqliteDb.list_memories_json``)."""

from __future__ import annotations

import sqlite3
from dataclasses import fields

from noted.schema import UserMemory

__all__ = ["JSON_IN_SQL", "MEMORY_JSON", "iso_sql"]

JSON_IN_SQL = sqlite3.sqlite_version_info >= (3, 38)  # JSON functions built in


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


# A memory as UserMemory.to_dict() writes it, keys in the same order.
MEMORY_JSON = "json_object({})".format(
    ", ".join(
        f"'{name}', "
        + ("json(topics)" if name == "topics" else iso_sql(name) if name.endswith("_at") else name)
        for name in (f.name for f in fields(UserMemory))
    )
)
