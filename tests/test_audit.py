"""The audit history of memories: every add, update and delete, on both stores and the CLI."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import pytest

from noted import (
    AuditContext,
    ConflictError,
    Memory,
    MemoryEvent,
    MemoryStore,
    SqliteDb,
    StoreError,
    UserError,
    UserMemory,
)
from noted._time import utc_now
from noted.audit import ACTORS
from noted.cli import main
from noted.importers.plan import history_deletions

MANAGER = AuditContext(actor="manager", session_id="s-1", run_id="r-1")


def stamped(text: str, memory_id: str, user_id: str, topics: list[str] | None = None) -> UserMemory:
    now = utc_now()
    return UserMemory(
        text,
        topics=topics or [],
        memory_id=memory_id,
        user_id=user_id,
        created_at=now,
        updated_at=now,
    )


def changes(events: list[MemoryEvent]) -> list[tuple[object, ...]]:
    return [
        (e.event, e.old_memory, e.new_memory, e.old_topics, e.new_topics, e.actor) for e in events
    ]


# -- the Memory API ---------------------------------------------------------------------------


def test_add_replace_delete_are_recorded_in_order(memory: Memory) -> None:
    mid = memory.add_user_memory(UserMemory("Ava likes tea", topics=["drinks"]), user_id="ava")
    memory.replace_user_memory(
        mid, UserMemory("Ava likes coffee", topics=["drinks", "morning"]), user_id="ava"
    )
    assert memory.delete_user_memory(mid, user_id="ava")

    events = memory.get_memory_history(mid, user_id="ava")
    assert changes(events) == [
        ("add", None, "Ava likes tea", None, ["drinks"], "api"),
        ("update", "Ava likes tea", "Ava likes coffee", ["drinks"], ["drinks", "morning"], "api"),
        ("delete", "Ava likes coffee", None, ["drinks", "morning"], None, "api"),
    ]
    assert memory.get_user_memory(mid, user_id="ava") is None  # gone, but readable above
    assert all(e.memory_id == mid and e.user_id == "ava" for e in events)
    assert all(e.session_id is None and e.run_id is None for e in events)
    assert len({e.event_id for e in events}) == 3
    assert all(uuid.UUID(e.event_id).version == 4 for e in events)
    times = [e.created_at for e in events]
    assert times == sorted(times)
    assert all(t.tzinfo is UTC for t in times)


def test_bulk_add_import_and_clears_record_one_event_per_memory(memory: Memory) -> None:
    ids = memory.add_user_memories(
        [UserMemory("a", topics=["x"]), UserMemory("b"), UserMemory("c")], user_id="ava"
    )
    bob = memory.add_user_memory(UserMemory("Bob sails"), user_id="bob")
    assert memory.import_user_memories([UserMemory("imported", user_id="cy")]) == 1
    (cy,) = memory.get_user_memories(user_id="cy")
    assert cy.memory_id is not None
    assert changes(memory.get_memory_history(cy.memory_id, user_id="cy")) == [
        ("add", None, "imported", None, [], "api")
    ]

    assert memory.clear(user_id="ava") == 3
    for mid, text, topics in zip(ids, "abc", [["x"], [], []], strict=True):
        assert changes(memory.get_memory_history(mid, user_id="ava")) == [
            ("add", None, text, None, topics, "api"),
            ("delete", text, None, topics, None, "api"),
        ]
    assert [e.event for e in memory.get_memory_history(bob, user_id="bob")] == ["add"]

    assert memory.clear() == 2  # every user
    assert [e.event for e in memory.get_memory_history(bob, user_id="bob")] == ["add", "delete"]
    assert [e.event for e in memory.get_memory_history(cy.memory_id, user_id="cy")] == [
        "add",
        "delete",
    ]
    assert memory.clear() == 0
    assert len(memory.get_memory_history(bob, user_id="bob")) == 2  # nothing deleted, no event


def test_the_actor_is_the_memorys(store: MemoryStore) -> None:
    cli = Memory(db=store, actor="cli")
    assert cli.actor == "cli"
    mid = cli.add_user_memory(UserMemory("x"))
    Memory(db=store).delete_user_memory(mid)
    assert [(e.event, e.actor) for e in cli.get_memory_history(mid)] == [
        ("add", "cli"),
        ("delete", "api"),
    ]
    assert Memory(db=store).actor == "api"
    for actor in ACTORS:  # every kind of writer ("mcp" too) is kept by every store
        written = Memory(db=store, actor=actor).add_user_memory(UserMemory(f"by {actor}"))
        assert [e.actor for e in Memory(db=store).get_memory_history(written)] == [actor]
    with pytest.raises(UserError, match="actor must be one of api, cli, manager, agent, mcp"):
        Memory(db=store, actor="robot")  # type: ignore[arg-type]


def test_history_of_another_users_memory_is_empty(memory: Memory) -> None:
    mid = memory.add_user_memory(UserMemory("private"), user_id="ava")
    assert memory.get_memory_history(mid, user_id="bob") == []
    assert memory.get_memory_history("no-such-id", user_id="ava") == []
    assert len(memory.get_memory_history(mid, user_id="ava")) == 1
    with pytest.raises(UserError, match="memory_id"):
        memory.get_memory_history("", user_id="ava")


def test_returned_events_are_copies(memory: Memory) -> None:
    mid = memory.add_user_memory(UserMemory("kept", topics=["t"]), user_id="ava")
    (event,) = memory.get_memory_history(mid, user_id="ava")
    assert event.new_topics is not None
    event.new_topics.append("changed")
    event.new_memory = "changed"
    (again,) = memory.get_memory_history(mid, user_id="ava")
    assert (again.new_memory, again.new_topics) == ("kept", ["t"])


def test_async_twin(memory: Memory) -> None:
    async def scenario() -> list[MemoryEvent]:
        mid = await memory.aadd_user_memory(UserMemory("a"), user_id="ava")
        return await memory.aget_memory_history(mid, user_id="ava")

    assert [e.event for e in asyncio.run(scenario())] == ["add"]


# -- the stores -------------------------------------------------------------------------------


def test_store_writes_carry_their_audit_context(store: MemoryStore) -> None:
    store.upsert_memories([stamped("a", "m1", "ava", ["t"])], audit=MANAGER)
    store.upsert_memories([stamped("a2", "m1", "ava")], audit=AuditContext(actor="agent"))
    assert store.update_memory(stamped("a3", "m1", "ava", ["u"]), audit=MANAGER)
    assert store.delete_memories(["m1"], "ava", audit=MANAGER) == 1
    events = store.get_memory_history("m1", "ava")
    assert changes(events) == [
        ("add", None, "a", None, ["t"], "manager"),
        ("update", "a", "a2", ["t"], [], "agent"),
        ("update", "a2", "a3", [], ["u"], "manager"),
        ("delete", "a3", None, ["u"], None, "manager"),
    ]
    assert [(e.session_id, e.run_id) for e in events] == [
        ("s-1", "r-1"),
        (None, None),
        ("s-1", "r-1"),
        ("s-1", "r-1"),
    ]


def test_the_default_context_is_the_api(store: MemoryStore) -> None:
    store.upsert_memories([stamped("a", "m1", "ava")])
    store.update_memory(stamped("b", "m1", "ava"))
    store.clear_memories("ava")
    assert [(e.event, e.actor) for e in store.get_memory_history("m1", "ava")] == [
        ("add", "api"),
        ("update", "api"),
        ("delete", "api"),
    ]


def test_the_same_id_twice_in_one_batch_is_an_add_then_an_update(store: MemoryStore) -> None:
    store.upsert_memories([stamped("first", "m1", "ava"), stamped("second", "m1", "ava")])
    assert changes(store.get_memory_history("m1", "ava")) == [
        ("add", None, "first", None, [], "api"),
        ("update", "first", "second", [], [], "api"),
    ]


def test_writes_that_change_nothing_record_nothing(store: MemoryStore) -> None:
    store.upsert_memories([stamped("mine", "m1", "ava")])
    assert not store.update_memory(stamped("x", "missing", "ava"))
    assert not store.update_memory(stamped("stolen", "m1", "bob"))  # another user's id
    assert store.delete_memories(["m1", "missing"], "bob") == 0
    assert store.delete_memories([], "ava") == 0
    assert store.clear_memories("bob") == 0
    store.upsert_memories([])
    assert store.get_memory_history("missing", "ava") == []
    assert store.get_memory_history("m1", "bob") == []
    assert [e.event for e in store.get_memory_history("m1", "ava")] == ["add"]


def test_a_refused_write_records_nothing(store: MemoryStore) -> None:
    store.upsert_memories([stamped("mine", "m1", "ava")])
    with pytest.raises(ConflictError, match="m1"):
        store.upsert_memories([stamped("stolen", "m1", "bob")])
    batch = [stamped("new 1", "n1", "bob"), stamped("stolen", "m1", "bob")]
    batch.append(stamped("new 2", "n2", "bob"))
    with pytest.raises(ConflictError, match="nothing was written"):
        store.upsert_memories(batch)  # all or nothing: the new ones are not recorded either
    # the same id for two users inside one batch
    with pytest.raises(ConflictError):
        store.upsert_memories([stamped("a", "n3", "bob"), stamped("b", "n3", "cy")])
    for memory_id, user_id in [("n1", "bob"), ("n2", "bob"), ("n3", "bob"), ("n3", "cy")]:
        assert store.get_memory_history(memory_id, user_id) == []
        assert store.get_memory(memory_id, user_id) is None
    assert store.get_memory_history("m1", "bob") == []
    assert [e.new_memory for e in store.get_memory_history("m1", "ava")] == ["mine"]


def test_audit_must_be_an_audit_context(store: MemoryStore) -> None:
    with pytest.raises(UserError, match="audit must be an AuditContext"):
        store.upsert_memories([stamped("a", "m1", "ava")], audit="cli")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="audit must be an AuditContext"):
        store.clear_all_memories(audit={"actor": "cli"})  # type: ignore[arg-type]
    assert store.get_memory("m1", "ava") is None


def test_an_id_reused_after_a_delete_keeps_each_users_history_apart(store: MemoryStore) -> None:
    store.upsert_memories([stamped("ava's", "m1", "ava")])
    store.delete_memories(["m1"], "ava")
    store.upsert_memories([stamped("bob's", "m1", "bob")])
    assert [e.event for e in store.get_memory_history("m1", "ava")] == ["add", "delete"]
    assert changes(store.get_memory_history("m1", "bob")) == [
        ("add", None, "bob's", None, [], "api")
    ]


def test_last_deletions_are_the_latest_delete_events(store: MemoryStore) -> None:
    """What an import reads of the memories it would write that the store lacks: when
    each was last deleted (one at a time, or by a clear), from each user's history."""
    store.upsert_memories([stamped(t, i, "ava") for t, i in [("a", "m1"), ("b", "m2")]])
    store.upsert_memories([stamped("c", "m3", "ava"), stamped("d", "m9", "bob")])
    store.delete_memories(["m1"], "ava")
    store.upsert_memories([stamped("a again", "m1", "ava")])
    store.clear_memories("ava")
    store.upsert_memories([stamped("e", "m4", "ava")])
    ids = ["m1", "m2", "m3", "m4", "m9", "never"]
    found = store.last_deletions(ids, "ava")  # type: ignore[attr-defined]
    assert found == history_deletions(store, ids, "ava")
    assert sorted(found) == ["m1", "m2", "m3"]
    first, second = [e for e in store.get_memory_history("m1", "ava") if e.event == "delete"]
    assert found["m1"] == second.created_at > first.created_at
    assert store.last_deletions(ids, "bob") == {}  # type: ignore[attr-defined]
    assert store.last_deletions([], "ava") == {}  # type: ignore[attr-defined]
    # of any user (what an import reads of a memory that names no user in its source):
    # each id's latest deletion, whoever's memory it was
    store.upsert_memories([stamped("b of bob", "m2", "bob"), stamped("f", "m5", "bob")])
    store.delete_memories(["m2", "m5"], "bob")
    everyone = store.last_deletions([*ids, "m5"], None)  # type: ignore[attr-defined]
    assert sorted(everyone) == ["m1", "m2", "m3", "m5"]
    [bobs] = [e for e in store.get_memory_history("m2", "bob") if e.event == "delete"]
    assert everyone["m2"] == bobs.created_at > found["m2"]
    assert (everyone["m1"], everyone["m3"]) == (found["m1"], found["m3"])
    assert store.last_deletions([], None) == {}  # type: ignore[attr-defined]


# -- AuditContext and MemoryEvent ---------------------------------------------------------------


def test_audit_context_is_validated() -> None:
    assert AuditContext() == AuditContext(actor="api", session_id=None, run_id=None)
    with pytest.raises(UserError, match="actor must be one of"):
        AuditContext(actor="API")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="session_id must not be empty"):
        AuditContext(actor="manager", session_id=" ")
    with pytest.raises(UserError, match="run_id must be a string"):
        AuditContext(run_id=7)  # type: ignore[arg-type]


def _event(**changed: object) -> MemoryEvent:
    base = MemoryEvent(
        event_id="e1",
        memory_id="m1",
        user_id="ava",
        event="update",
        old_memory="tea",
        new_memory="coffee",
        old_topics=["drinks"],
        new_topics=[],
        actor="manager",
        session_id="s-1",
        run_id="r-1",
        created_at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    )
    return replace(base, **changed)  # type: ignore[arg-type]


def test_memory_event_round_trips_through_json() -> None:
    event = _event()
    data = event.to_dict()
    assert data["created_at"] == "2026-01-02T03:04:05.000006+00:00"
    assert data["old_topics"] == ["drinks"]
    again = MemoryEvent.from_dict(json.loads(json.dumps(data)))
    assert again == event
    deleted = _event(event="delete", new_memory=None, new_topics=None)
    assert MemoryEvent.from_dict(deleted.to_dict()) == deleted


@pytest.mark.parametrize(
    ("changed", "message"),
    [
        ({"event": "rename"}, "event must be one of add, update, delete"),
        ({"actor": "robot"}, "actor must be one of"),
        ({"event": "add"}, "'add' event carries new_memory only"),
        ({"event": "delete"}, "'delete' event carries old_memory only"),
        ({"new_memory": None}, "'update' event carries old_memory and new_memory"),
        ({"old_topics": None}, "old_topics and new_topics go with"),
        ({"memory_id": None}, "memory_id is required"),
        ({"created_at": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"created_at": "yesterday"}, "ISO 8601"),
        ({"old_memory": 5}, "old_memory must be a string"),
    ],
)
def test_memory_event_is_validated(changed: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message):
        _event(**changed)


def test_memory_event_from_dict_is_strict() -> None:
    data = _event().to_dict()
    with pytest.raises(UserError, match="unknown memory event field"):
        MemoryEvent.from_dict({**data, "extra": 1})
    del data["run_id"]
    with pytest.raises(UserError, match="needs the field"):
        MemoryEvent.from_dict(data)
    with pytest.raises(UserError, match="JSON object"):
        MemoryEvent.from_dict([])  # type: ignore[arg-type]


# -- SQLite -----------------------------------------------------------------------------------


def test_sqlite_keeps_history_in_its_own_indexed_table(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "h.db", memory_table="facts")
    memory = Memory(db=db)
    mid = memory.add_user_memory(UserMemory("a", topics=["t"]), user_id="ava")
    memory.add_user_memories([UserMemory(f"m{i}") for i in range(50)], user_id="ava")
    conn = apsw.Connection(str(db.db_file))
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert {"facts", "facts_events", "ix_facts_events_memory"} <= names
    columns = [r[1] for r in conn.execute("PRAGMA table_info(facts_events)")]
    assert columns == [
        "seq",
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
    ]
    indexed = [r[2] for r in conn.execute("PRAGMA index_info(ix_facts_events_memory)")]
    assert indexed == ["user_id", "memory_id", "created_at"]
    row = conn.execute(
        "SELECT event, new_topics, old_topics, typeof(created_at) FROM facts_events "
        "WHERE memory_id = ?",
        (mid,),
    ).fetchone()
    assert row == ("add", '["t"]', None, "integer")
    assert conn.execute("SELECT COUNT(*) FROM facts_events").fetchone()[0] == 51

    statements: list[tuple[str, Any]] = []

    def trace(_cursor: apsw.Cursor, sql: str, values: Any) -> bool:
        statements.append((sql, values))
        return True

    with db._session() as session:
        session.exec_trace = trace
        try:
            memory.get_memory_history(mid, user_id="ava")
        finally:
            session.exec_trace = None
    ((sql, values),) = statements
    plan = " | ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, values))
    assert "USING INDEX ix_facts_events_memory" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
    conn.close()
    db.close()


def test_sqlite_history_survives_reopening_and_read_only_access(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    writer = Memory(db=SqliteDb(path))
    mid = writer.add_user_memory(UserMemory("a"), user_id="ava")
    writer.replace_user_memory(mid, UserMemory("b"), user_id="ava")
    writer.db.close()
    reader = Memory(db=SqliteDb(path, read_only=True))
    assert [e.event for e in reader.get_memory_history(mid, user_id="ava")] == ["add", "update"]
    with pytest.raises(StoreError, match="read-only"):
        reader.delete_user_memory(mid, user_id="ava")
    assert [e.event for e in reader.get_memory_history(mid, user_id="ava")] == ["add", "update"]


def test_the_history_table_name_may_not_collide(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="must name different tables"):
        SqliteDb(tmp_path / "x.db", memory_table="facts", session_table="facts_events")
    with pytest.raises(UserError, match="must name different tables"):
        SqliteDb(tmp_path / "x.db", memory_table="chats_runs", session_table="chats")


# -- the CLI ----------------------------------------------------------------------------------


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_history_text_and_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    code, out, err = run_cli(
        capsys, "memories", "add", "Ava likes tea", "-t", "drinks", "--user", "ava", "--db", db
    )
    assert code == 0, err
    mid = out.split()[-1]
    base = ("--user", "ava", "--db", db)
    assert run_cli(capsys, "memories", "edit", mid, "--text", "Ava likes coffee", *base)[0] == 0
    assert run_cli(capsys, "memories", "delete", mid, *base)[0] == 0

    code, out, err = run_cli(capsys, "memories", "history", mid, *base)
    assert code == 0, err
    lines = [line for line in out.splitlines() if " cli " in line]
    assert len(lines) == 3
    assert "add" in lines[0] and "Ava likes tea" in lines[0] and "drinks" in lines[0]
    assert "update" in lines[1] and "Ava likes tea -> Ava likes coffee" in lines[1]
    assert "delete" in lines[2] and "Ava likes coffee" in lines[2]
    assert "3 events" in out

    code, out, err = run_cli(capsys, "memories", "history", mid, *base, "--json")
    assert code == 0, err
    events = json.loads(out)
    assert [(e["event"], e["actor"]) for e in events] == [
        ("add", "cli"),
        ("update", "cli"),
        ("delete", "cli"),
    ]
    assert events[1]["old_memory"] == "Ava likes tea"
    assert events[1]["new_memory"] == "Ava likes coffee"
    assert events[2]["old_topics"] == ["drinks"]
    assert [MemoryEvent.from_dict(e).event for e in events] == ["add", "update", "delete"]

    # another user sees no such memory
    code, out, err = run_cli(capsys, "memories", "history", mid, "--user", "bob", "--db", db)
    assert code == 1
    assert "no memory and no history" in err


def test_cli_history_of_a_memory_older_than_its_history(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "cli.db"
    memory = Memory(db=SqliteDb(path))
    mid = memory.add_user_memory(UserMemory("old fact"), user_id="ava")
    memory.db.close()
    conn = apsw.Connection(str(path))
    conn.execute("DELETE FROM noted_memories_events")  # as if written before the history
    conn.close()
    code, out, err = run_cli(capsys, "memories", "history", mid, "--user", "ava", "--db", str(path))
    assert code == 0, err
    assert "0 events" in out
    code, out, _ = run_cli(
        capsys, "memories", "history", mid, "--user", "ava", "--db", str(path), "--json"
    )
    assert code == 0
    assert json.loads(out) == []


def test_cli_history_shows_the_session_and_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "cli.db"
    db = SqliteDb(path)
    db.upsert_memories([stamped("from a chat", "m1", "ava")], audit=MANAGER)
    db.close()
    code, out, err = run_cli(
        capsys, "memories", "history", "m1", "--user", "ava", "--db", str(path)
    )
    assert code == 0, err
    assert "manager" in out
    assert "s-1 / r-1" in out
