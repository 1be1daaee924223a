"""How PostgresDb reads memories: the selected columns, a MemoryQuery as a WHERE clause and
a page, and the rows of a ranking; shared by the store and its vectors."""

from __future__ import annotations

from typing import Any

import psycopg

from noted.db._rows import COLUMNS, rows_to_memories
from noted.db.base import MemoryQuery, ScoredMemory

__all__ = [
    "MICROS",
    "SELECT",
    "SOUND_TOPICS",
    "Conn",
    "Row",
    "page",
    "past",
    "ranked",
    "ranked_rows",
    "scored",
    "where",
]

Row = tuple[Any, ...]
Conn = psycopg.Connection[Row]

# timestamps leave the database as integer microseconds (exact; what the row readers take)
MICROS = "(extract(epoch from {0}) * 1000000)::bigint"
SELECT = ", ".join(
    MICROS.format(c) if c.endswith("_at") else "topics::text" if c == "topics" else c
    for c in COLUMNS
)

# true when a memory's topics are a JSON array of strings, as noted writes them; false
# for damaged ones (an object, a string, numbers in the array: a hand-edited row), which
# are read as no topics (see noted.db._rows.topics_damage) and so have none to match
SOUND_TOPICS = (
    "CASE WHEN jsonb_typeof(topics) = 'array' "
    "THEN NOT jsonb_path_exists(topics, 'strict $[*] ? (@.type() != \"string\")') "
    "ELSE false END"
)


def where(query: MemoryQuery) -> tuple[str, list[Any]]:
    """The query's filters as `` WHERE ...`` (or nothing) and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.user_id is not None:
        clauses.append("user_id = %s")
        params.append(query.user_id)
    if query.agent_id is not None:
        clauses.append("agent_id = %s")
        params.append(query.agent_id)
    if query.team_id is not None:
        clauses.append("team_id = %s")
        params.append(query.team_id)
    if query.topics:
        clauses.append(f"topics ?| %s AND {SOUND_TOPICS}")
        params.append(list(query.topics))
    if query.updated_after is not None:
        clauses.append("updated_at >= %s")
        params.append(query.updated_after)
    if query.updated_before is not None:
        clauses.append("updated_at < %s")
        params.append(query.updated_before)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def past(query: MemoryQuery, where: str, params: list[Any]) -> str:
    """``where`` with the query's ``after`` added (its values appended to ``params``): a
    range of the ``(user_id, time, memory_id)`` index, not a scan."""
    if query.after is None:
        return where
    sign = "<" if query.sort_order == "desc" else ">"
    params += list(query.after)
    return f"{where} {'AND' if where else 'WHERE'} ({query.sort_by}, memory_id) {sign} (%s, %s)"


def page(query: MemoryQuery, params: list[Any]) -> str:
    """`` LIMIT ... OFFSET ...`` for the query's page (its values appended to ``params``)."""
    if query.limit is None and not query.offset:
        return ""
    params += [query.limit, query.offset]
    return " LIMIT %s OFFSET %s"


def ranked(conn: Conn, table: str, inner: str, params: list[Any]) -> list[ScoredMemory]:
    """The memories ``inner`` ranks (``hit``, ``score``, best first, one page): the ranking
    reads only what it scores, and only the page's rows are read whole."""
    return scored(ranked_rows(conn, table, inner, params))


def ranked_rows(conn: Conn, table: str, inner: str, params: list[Any]) -> list[Row]:
    """:func:`ranked`'s rows, each a memory's columns and its score last."""
    return conn.execute(
        f"SELECT {SELECT}, hits.score FROM ({inner}) AS hits "
        f"JOIN {table} ON memory_id = hits.hit ORDER BY hits.score DESC, memory_id",
        params,
    ).fetchall()


def scored(rows: list[Row]) -> list[ScoredMemory]:
    """Rows of :func:`ranked_rows` as new memories with their scores."""
    found = rows_to_memories([row[:-1] for row in rows])
    return [ScoredMemory(m, float(row[-1])) for m, row in zip(found, rows, strict=True)]
