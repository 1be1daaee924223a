"""A database written by the first schema upgrades in place without losing a row."""

from __future__ import annotations

import logging
from pathlib import Path

import apsw
import pytest

from noted import Memory, SqliteDb, StoreError, UserMemory
from noted.db import MemoryQuery
from noted.db.sqlite.migrations import MIGRATIONS, record_version, use_wal

# The DDL of noted's first schema (version 1), frozen here as it was written to disk.
FIRST_SCHEMA = """
CREATE TABLE noted_memories (
    memory_id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    memory TEXT NOT NULL,
    topics TEXT NOT NULL DEFAULT '[]',
    input TEXT,
    agent_id TEXT,
    team_id TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX ix_noted_memories_user_updated ON noted_memories(user_id, updated_at);
CREATE TABLE noted_schema_versions (
    table_name TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    applied_at INTEGER NOT NULL
);
INSERT INTO noted_schema_versions VALUES ('noted_memories', 1, 1700000000000000);
"""

OLD_ROWS = [
    (
        "m1",
        "ava",
        "The user's name is Ava",
        '["name"]',
        "My name is Ava",
        None,
        None,
        1700000000000001,
        1700000000000001,
    ),
    (
        "m2",
        "ava",
        "The user likes to ski",
        '["hobbies","sport"]',
        None,
        "agent-1",
        None,
        1700000000000002,
        1700000000000005,
    ),
    ("m3", "bob", "Bob sails", "[]", None, None, "team-1", 1700000000000003, 1700000000000003),
]


def make_first_schema_db(path: Path) -> None:
    conn = apsw.Connection(str(path))
    conn.execute(FIRST_SCHEMA)
    conn.executemany("INSERT INTO noted_memories VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", OLD_ROWS)
    conn.close()


def test_first_schema_upgrades_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_first_schema_db(path)
    db = SqliteDb(path)
    memory = Memory(db=db)

    assert db.schema_version() == len(MIGRATIONS) == 10
    ava = memory.get_user_memories(user_id="ava", sort_by="created_at", sort_order="asc")
    assert [(m.memory_id, m.memory, m.topics, m.input, m.agent_id) for m in ava] == [
        ("m1", "The user's name is Ava", ["name"], "My name is Ava", None),
        ("m2", "The user likes to ski", ["hobbies", "sport"], None, "agent-1"),
    ]
    assert all(m.session_id is None for m in ava)
    assert ava[1].updated_at is not None
    assert ava[1].updated_at.timestamp() == 1700000000.000005
    bob = memory.get_user_memory("m3", user_id="bob")
    assert bob is not None
    assert bob.team_id == "team-1"
    # Memories written before the keyword index existed are found by keyword search.
    found = db.keyword_search(MemoryQuery(user_id="ava", limit=5), "skiing")
    assert [r.memory.memory_id for r in found] == ["m2"]
    # ... and, once embedded by the first semantic search, by meaning.
    smart = Memory(db=db, embedder="local")
    assert db.count_memories_to_embed("ava", "minilm-l6-v2-int8-dynamic/384") == 2
    [sport] = smart.search_user_memories("winter sports", "ava", 1, "semantic")
    assert sport.memory_id == "m2"
    assert db.count_memories_to_embed(None, "minilm-l6-v2-int8-dynamic/384") == 1  # bob's

    # The new column works, and the upgrade happens once.
    mid = memory.add_user_memory(UserMemory("new", session_id="s-1"), user_id="ava")
    got = memory.get_user_memory(mid, user_id="ava")
    assert got is not None
    assert got.session_id == "s-1"
    db.close()
    again = SqliteDb(path)
    assert Memory(db=again).count_user_memories(user_id="ava") == 3
    conn = apsw.Connection(str(path))
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"ix_noted_memories_user_updated", "ix_noted_memories_user_created"} <= indexes
    assert conn.execute("SELECT COUNT(*) FROM noted_memories").fetchone()[0] == 4
    conn.close()


def test_an_upgrade_that_fails_leaves_the_old_database_intact(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    make_first_schema_db(path)
    conn = apsw.Connection(str(path))
    # A column the upgrade wants to add already exists: migration 2 fails half-way.
    conn.execute("ALTER TABLE noted_memories ADD COLUMN session_id TEXT")
    conn.execute("CREATE INDEX ix_noted_memories_updated ON noted_memories(updated_at)")
    conn.close()
    with pytest.raises(StoreError, match="duplicate column"):
        Memory(db=SqliteDb(path)).get_user_memories(user_id="ava")
    conn = apsw.Connection(str(path))
    assert conn.execute("SELECT version FROM noted_schema_versions").fetchone()[0] == 1
    assert conn.execute("SELECT COUNT(*) FROM noted_memories").fetchone()[0] == 3
    conn.close()


def test_a_version_2_database_gains_the_history_table(tmp_path: Path) -> None:
    path = tmp_path / "v2.db"
    conn = apsw.Connection(str(path))
    for step in MIGRATIONS[:2]:
        step(conn, "noted_memories")
    record_version(conn, "noted_memories", 2, 1700000000000000)
    conn.executemany(
        "INSERT INTO noted_memories (memory_id, user_id, memory, topics, input, agent_id, "
        "team_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        OLD_ROWS,
    )
    conn.close()

    db = SqliteDb(path)
    memory = Memory(db=db)
    assert db.schema_version() == len(MIGRATIONS)
    assert memory.count_user_memories(user_id="ava") == 2
    m2 = memory.get_user_memory("m2", user_id="ava")
    assert m2 is not None
    assert (m2.memory, m2.topics, m2.agent_id) == (
        "The user likes to ski",
        ["hobbies", "sport"],
        "agent-1",
    )
    # Memories written before the history have none until they change.
    assert memory.get_memory_history("m2", user_id="ava") == []
    memory.replace_user_memory("m2", UserMemory("The user likes to snowboard"), user_id="ava")
    assert memory.delete_user_memory("m3", user_id="bob")
    [update] = memory.get_memory_history("m2", user_id="ava")
    assert (update.event, update.old_memory, update.old_topics) == (
        "update",
        "The user likes to ski",
        ["hobbies", "sport"],
    )
    [delete] = memory.get_memory_history("m3", user_id="bob")
    assert (delete.event, delete.old_memory) == ("delete", "Bob sails")
    db.close()

    conn = apsw.Connection(str(path))
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"noted_memories_events", "ix_noted_memories_events_memory"} <= tables
    assert conn.execute("SELECT COUNT(*) FROM noted_memories").fetchone()[0] == 2
    assert conn.execute("SELECT COUNT(*) FROM noted_memories_events").fetchone()[0] == 2
    conn.close()


def test_a_file_sqlite_cannot_switch_to_wal_is_said_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The unix-dotfile VFS has no shared memory, so SQLite keeps its rollback journal
    (as on some network file systems): the switch is refused without an error."""
    refusing = apsw.Connection(str(tmp_path / "dotfile.db"), vfs="unix-dotfile")
    with caplog.at_level(logging.WARNING, logger="noted.db.sqlite"):
        use_wal(refusing, 1.0, "dotfile.db")
    assert "dotfile.db stays in 'delete' journal mode" in caplog.text
    refusing.close()
    caplog.clear()
    plain = apsw.Connection(str(tmp_path / "plain.db"))
    with caplog.at_level(logging.WARNING, logger="noted.db.sqlite"):
        use_wal(plain, 1.0, "plain.db")
        use_wal(plain, 1.0, "plain.db")  # already WAL: nothing to switch
    assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    in_memory = apsw.Connection(":memory:")  # "memory" mode: nothing to warn of
    with caplog.at_level(logging.WARNING, logger="noted.db.sqlite"):
        use_wal(in_memory, 1.0, ":memory:")
    assert not caplog.records
    plain.close()
    in_memory.close()
