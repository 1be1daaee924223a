"""A SqliteDb whose tables are dropped from its file by hand: the error names the tables
gone and the ways back, as PostgresDb's does (before, SQLite's "no such table" alone)."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from noted import StoreError, UserMemory
from noted._time import utc_now
from noted.db import MemoryQuery
from noted.db.sqlite import SqliteDb

MEMORY_TABLES = [f"noted_memories{s}" for s in ("", "_events", "_generations", "_fts")]
MEMORY_TABLES += ["noted_memories_fts_terms", "noted_memories_fts_users"]


def memory(text: str, memory_id: str) -> UserMemory:
    now = utc_now()
    return UserMemory(text, memory_id=memory_id, user_id="ava", created_at=now, updated_at=now)


def dropped(path: Path, *statements: str) -> None:
    """Tables dropped, or rows deleted, by another program."""
    raw = apsw.Connection(str(path))
    for statement in statements:
        raw.execute(statement)
    raw.close()


def test_a_table_dropped_by_hand_is_named_with_the_ways_back(tmp_path: Path) -> None:
    path = tmp_path / "memories.db"
    db = SqliteDb(path)
    db.upsert_memories([memory("I like tea", "m1")])
    dropped(path, "DROP TABLE noted_memories")
    for call in (
        lambda: db.count_memories(MemoryQuery("ava")),
        lambda: db.upsert_memories([memory("I like coffee", "m2")]),
        lambda: SqliteDb(path).count_memories(MemoryQuery("ava")),  # a new process too
    ):
        with pytest.raises(StoreError) as caught:
            call()
        said = str(caught.value)
        assert "no such table: noted_memories: table(s) noted_memories are gone" in said
        assert "noted_schema_versions records 'noted_memories' at version" in said
        assert "Restore the file from a backup" in said
        assert "drop noted_memories_events, noted_memories_generations" in said
    # the way back the error gives
    dropped(
        path,
        *(f"DROP TABLE {table}" for table in MEMORY_TABLES[1:]),
        "DELETE FROM noted_schema_versions WHERE table_name = 'noted_memories'",
    )
    db.close()
    assert db.count_memories(MemoryQuery("ava")) == 0
    db.upsert_memories([memory("I like coffee", "m2")])
    assert [m.memory for m in db.list_memories(MemoryQuery("ava"))] == ["I like coffee"]
    db.close()


def test_tables_dropped_with_their_versions_are_made_again_on_opening(tmp_path: Path) -> None:
    path = tmp_path / "memories.db"
    db = SqliteDb(path)
    db.upsert_memories([memory("I like tea", "m1")])
    session_tables = ["noted_sessions", "noted_sessions_runs", "noted_sessions_jobs"]
    gone = [*MEMORY_TABLES, "noted_schema_versions"]
    dropped(path, *(f"DROP TABLE {table}" for table in gone))
    with pytest.raises(StoreError, match="has no row of table.s. noted_sessions, ") as caught:
        db.count_memories(MemoryQuery("ava"))
    assert "which are still there" in str(caught.value)  # the set-up would fail on them
    dropped(path, *(f"DROP TABLE {table}" for table in session_tables))
    with pytest.raises(StoreError, match="with their row in noted_schema_versions"):
        db.count_memories(MemoryQuery("ava"))
    db.close()  # opened again: set up
    assert db.count_memories(MemoryQuery("ava")) == 0
    db.close()
