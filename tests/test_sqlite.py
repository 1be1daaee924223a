"""SqliteDb specifics: files, pragmas, indexes, broken files, concurrent writers."""

from __future__ import annotations

import gc
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import pytest

from noted import (
    Memory,
    MemoryQuery,
    SchemaVersionError,
    SqliteDb,
    StoreError,
    UserError,
    UserMemory,
)


def test_tables_are_created_on_first_use_with_configured_names(tmp_path: Path) -> None:
    path = tmp_path / "agent.db"
    db = SqliteDb(db_file=path, memory_table="user_memories")
    assert not path.exists()  # nothing happens until first use
    Memory(db=db).add_user_memory(UserMemory("x"), user_id="ava")
    conn = apsw.Connection(str(path))
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"user_memories", "user_memories_fts", "noted_schema_versions"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.schema_version() == 10
    conn.close()
    db.close()


def test_a_table_named_in_other_case_is_the_same_table(tmp_path: Path) -> None:
    """SQLite's names ignore case: the store upgrades the table once, whatever the case."""
    lower = Memory(db=SqliteDb(tmp_path / "x.db", memory_table="team_a"), embedder=None)
    lower.add_user_memory(UserMemory("The user likes tea"), user_id="ava")
    upper = Memory(db=SqliteDb(tmp_path / "x.db", memory_table="TEAM_A"), embedder=None)
    assert [m.memory for m in upper.get_user_memories(user_id="ava")] == ["The user likes tea"]
    upper.add_user_memory(UserMemory("The user plays chess"), user_id="ava")
    found = lower.search_user_memories("chess", "ava", retrieval_method="keyword")
    assert [m.memory for m in found] == ["The user plays chess"]
    assert isinstance(upper.db, SqliteDb) and upper.db.schema_version() == 10


def test_two_tables_in_one_file_are_independent(tmp_path: Path) -> None:
    a = Memory(db=SqliteDb(tmp_path / "x.db", memory_table="a_memories"))
    b = Memory(db=SqliteDb(tmp_path / "x.db", memory_table="b_memories"))
    a.add_user_memory(UserMemory("in a"), user_id="ava")
    assert b.get_user_memories(user_id="ava") == []
    assert [m.memory for m in a.get_user_memories(user_id="ava")] == ["in a"]


@pytest.mark.parametrize("name", ["", "1abc", "drop table x;--", "a b", "x" * 64, 5])
def test_table_names_must_be_identifiers(tmp_path: Path, name: object) -> None:
    with pytest.raises(UserError, match="memory_table must be a SQL identifier"):
        SqliteDb(tmp_path / "x.db", memory_table=name)  # type: ignore[arg-type]


def test_a_path_in_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "memory.db"
    memory = Memory(db=SqliteDb(path))
    with pytest.raises(StoreError, match="does not exist .*create_dirs=True"):
        memory.add_user_memory(UserMemory("x"))
    assert not path.parent.exists()
    created = Memory(db=SqliteDb(path, create_dirs=True))
    created.add_user_memory(UserMemory("x"))
    assert path.is_file()


def test_a_parent_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("not a directory")
    memory = Memory(db=SqliteDb(tmp_path / "plain" / "memory.db", create_dirs=True))
    with pytest.raises(StoreError, match="does not exist"):
        memory.get_user_memories()


def test_a_corrupt_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    garbage = b"this is not sqlite at all\x00\x01" * 200
    path.write_bytes(garbage)
    memory = Memory(db=SqliteDb(path))
    with pytest.raises(StoreError, match="not a SQLite database, or corrupt"):
        memory.add_user_memory(UserMemory("x"))
    with pytest.raises(StoreError, match="broken.db"):
        memory.get_user_memories()
    assert path.read_bytes() == garbage


def test_a_damaged_page_is_reported_not_hidden(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    db = SqliteDb(path)
    Memory(db=db).add_user_memories([UserMemory(f"fact {i} " + "x" * 500) for i in range(200)])
    db.close()
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data), page):  # scribble over every page after the third
        data[offset : offset + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged.db"):
        Memory(db=SqliteDb(path)).get_user_memories(limit=500)


def test_a_read_only_database_refuses_writes_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    writer = Memory(db=SqliteDb(path))
    mid = writer.add_user_memory(UserMemory("kept"), user_id="ava")
    writer.db.close()
    reader = Memory(db=SqliteDb(path, read_only=True))
    assert reader.get_user_memory(mid, user_id="ava") is not None
    with pytest.raises(StoreError, match="read-only"):
        reader.add_user_memory(UserMemory("new"), user_id="ava")
    with pytest.raises(StoreError, match="read-only"):
        reader.delete_user_memory(mid, user_id="ava")
    with pytest.raises(StoreError, match="read-only"):
        reader.clear()
    assert [m.memory for m in reader.get_user_memories(user_id="ava")] == ["kept"]
    with pytest.raises(StoreError, match="no such file"):
        SqliteDb(tmp_path / "absent.db", read_only=True).get_topics(None)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    Memory(db=SqliteDb(path)).add_user_memory(UserMemory("x"))
    conn = apsw.Connection(str(path))
    conn.execute("UPDATE noted_schema_versions SET version = 99")
    conn.close()
    with pytest.raises(SchemaVersionError, match="schema version 99, newer than this noted"):
        Memory(db=SqliteDb(path)).get_user_memories()


def _traced(db: SqliteDb, call) -> list[tuple[str, Any]]:
    """The SQL statements and their values that the store runs for ``call``."""
    statements: list[tuple[str, Any]] = []

    def trace(_cursor: apsw.Cursor, sql: str, values: Any) -> bool:
        statements.append((sql, values))
        return True

    with db._session() as conn:
        conn.exec_trace = trace
        try:
            call()
        finally:
            conn.exec_trace = None
    return statements


def test_reads_use_indexes(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "plans.db")
    memory = Memory(db=db)
    memory.add_user_memories([UserMemory(f"m{i}", topics=["t"]) for i in range(50)], user_id="ava")
    reads = {
        "newest page": lambda: memory.get_user_memories(user_id="ava", limit=20, offset=20),
        "last_n": lambda: memory.search_user_memories(user_id="ava", limit=10),
        "first_n": lambda: memory.search_user_memories(
            user_id="ava", limit=10, retrieval_method="first_n"
        ),
        "by creation": lambda: memory.get_user_memories(
            user_id="ava", sort_by="created_at", sort_order="asc", limit=5
        ),
        "everyone": lambda: db.list_memories(MemoryQuery(user_id=None, limit=20)),
        "one": lambda: memory.get_user_memory("x", user_id="ava"),
        "count": lambda: memory.count_user_memories(user_id="ava"),
    }
    conn = apsw.Connection(str(db.db_file))
    for name, call in reads.items():
        statements = _traced(db, call)
        assert statements, name
        for sql, values in statements:
            plan = " | ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, values))
            assert "USING" in plan and "INDEX" in plan, (name, sql, plan)
            assert "TEMP B-TREE" not in plan, (name, sql, plan)
            assert not plan.startswith("SCAN noted_memories |"), (name, plan)
    # Per-user stats aggregate every row, from the index alone (sorting only the groups).
    ((stats_sql, values),) = _traced(db, memory.get_user_stats)
    plan = " | ".join(r[-1] for r in conn.execute("EXPLAIN QUERY PLAN " + stats_sql, values))
    assert "COVERING INDEX ix_noted_memories_user_updated" in plan, plan
    conn.close()


def test_limited_queries_read_only_the_rows_they_return(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "steps.db")
    memory = Memory(db=db)
    memory.add_user_memories([UserMemory(f"m{i}") for i in range(5000)], user_id="ava")
    steps: list[int] = []
    with db._session() as conn:  # count the virtual machine steps of the next query
        conn.set_progress_handler(lambda: steps.append(1) is not None, 100)
        try:
            page = db.list_memories(MemoryQuery(user_id="ava", limit=10))
        finally:
            conn.set_progress_handler(None, 0)
    assert len(page) == 10
    assert len(steps) < 20, f"{len(steps) * 100} VM steps for 10 rows: the query scanned the table"


def _steps(db: SqliteDb, call: Any) -> int:
    """About how many virtual machine steps (to a hundred) SQLite takes for ``call``."""
    steps: list[int] = []
    with db._session() as conn:
        conn.set_progress_handler(lambda: steps.append(1) is not None, 100)
        try:
            call()
        finally:
            conn.set_progress_handler(None, 0)
    return len(steps) * 100


def test_memories_named_by_id_are_looked_up_by_id_not_read_through_the_user(
    tmp_path: Path,
) -> None:
    # Deleting k of a large user's memories by id read all the user's memories once per
    # list of ids (about 7 s for 20,000 of 100,000): every statement naming a few of a
    # user's memories must cost what it names, not what the user holds.
    db = SqliteDb(tmp_path / "ids.db")
    memory = Memory(db=db, embedder=None)
    ids = memory.add_user_memories([UserMemory(f"fact {i}") for i in range(4000)], "ava")
    named = ids[1000:1010]
    calls = {
        "get_memories": lambda: db.get_memories(named, "ava"),
        "memory_times": lambda: db.memory_times(named, "ava"),
        "delete": lambda: memory.delete_user_memories(named, "ava"),
    }
    for name, call in calls.items():
        steps = _steps(db, call)
        assert steps < 3000, f"{name}: {steps} VM steps for 10 of 4000 memories"
    assert memory.count_user_memories("ava") == 3990
    assert db.get_memories(named, "ava") == {}


def test_threads_share_one_db_object(tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "threads.db"))

    def work(n: int) -> None:
        for i in range(100):
            memory.add_user_memory(UserMemory(f"t{n}-{i}"), user_id=f"u{n % 2}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (
        memory.count_user_memories(user_id="u0") + memory.count_user_memories(user_id="u1") == 800
    )


# The connection runs without SQLite's own mutex (the store's lock serialises its users), so
# no statement may outlive the session that ran it: a cursor still alive when the outermost
# session ends is closed there, on the thread that holds the lock.


def _three_memories(tmp_path: Path) -> SqliteDb:
    db = SqliteDb(tmp_path / "cursors.db")
    Memory(db=db).add_user_memories([UserMemory(f"m{i}") for i in range(3)], user_id="ava")
    return db


def test_the_connection_has_no_sqlite_mutex(tmp_path: Path) -> None:
    db = _three_memories(tmp_path)
    with db._session() as conn:
        # SQLite's "multi-thread" mode: the connection's mutex is a no-op
        assert isinstance(conn, apsw.Connection)
        assert conn.open_flags & apsw.SQLITE_OPEN_NOMUTEX
    db.close()


def test_a_cursor_kept_after_its_session_is_closed(tmp_path: Path) -> None:
    db = _three_memories(tmp_path)
    with db._session() as conn:
        kept = conn.execute("SELECT memory_id FROM noted_memories")
        assert kept.fetchone() is not None  # the statement has rows left
    with pytest.raises(apsw.CursorClosedError):
        kept.fetchone()
    assert len(db.list_memories(MemoryQuery(user_id="ava"))) == 3
    db.close()


def test_a_cursor_in_a_failed_sessions_traceback_is_closed(tmp_path: Path) -> None:
    db = _three_memories(tmp_path)

    def fail() -> None:
        with db._session() as conn:
            cursor = conn.execute("SELECT memory_id FROM noted_memories")
            cursor.fetchone()
            raise RuntimeError("after a row")

    with pytest.raises(RuntimeError) as failure:
        fail()
    tb = failure.value.__traceback__
    frames = []
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    (kept,) = [f.f_locals["cursor"] for f in frames if "cursor" in f.f_locals]
    with pytest.raises(apsw.CursorClosedError):
        kept.fetchone()
    db.close()


def test_a_nested_session_leaves_the_outer_sessions_cursors_open(tmp_path: Path) -> None:
    db = _three_memories(tmp_path)
    seen = []
    with db._session() as conn:
        for (memory_id,) in conn.execute("SELECT memory_id FROM noted_memories"):
            assert db.get_memory(memory_id, "ava") is not None  # a session inside this one
            with db._transaction() as inner:  # and a transaction inside it
                inner.execute("SELECT count(*) FROM noted_memories").fetchone()
            seen.append(memory_id)
    assert len(seen) == 3
    db.close()


def test_a_statement_dropped_inside_a_session_ends_at_once(tmp_path: Path) -> None:
    # a cursor is remembered weakly: one dropped with rows left does not hold its read
    # transaction open for the rest of the session (here: a write from another connection
    # would then not be seen by the session's next read)
    db = _three_memories(tmp_path)
    other = apsw.Connection(str(db.db_file))
    with db._session() as conn:
        assert conn.execute("SELECT memory_id FROM noted_memories").fetchone() is not None
        other.execute("DELETE FROM noted_memories WHERE memory = 'm0'")
        assert conn.execute("SELECT count(*) FROM noted_memories").fetchone()[0] == 2
    other.close()
    db.close()


def test_threads_reading_and_writing_one_db_object_see_whole_results(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "busy.db")
    memory = Memory(db=db)
    shared = [UserMemory(f"shared {i}", topics=["a", "b"]) for i in range(2000)]
    memory.add_user_memories(shared, user_id="shared")
    expected = {m.memory_id: m.memory for m in memory.get_user_memories(user_id="shared")}
    errors: list[BaseException] = []
    failures: list[BaseException] = []  # exceptions whose tracebacks hold cursors

    def fail_in_session() -> None:
        with db._session() as conn:
            cursor = conn.execute("SELECT memory_id FROM noted_memories")
            cursor.fetchone()
            raise RuntimeError("inside a session")

    def work(n: int) -> None:
        try:
            for i in range(15):
                memory.add_user_memory(UserMemory(f"t{n}-{i}"), user_id=f"u{n}")
                listed = memory.get_user_memories(user_id="shared")
                assert {m.memory_id: m.memory for m in listed} == expected
                assert memory.count_user_memories(user_id=f"u{n}") == i + 1
                try:
                    fail_in_session()
                except RuntimeError as exc:
                    failures.append(exc)
                if len(failures) > 3:
                    failures.pop(0)  # dropped on this thread while others use the connection
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for n in range(4):
        mine = memory.get_user_memories(user_id=f"u{n}")
        assert sorted(m.memory for m in mine) == sorted(f"t{n}-{i}" for i in range(15))
    db.close()


def test_a_writer_waiting_for_another_connections_lock_lets_reads_through(
    tmp_path: Path,
) -> None:
    # WAL lets readers in while another connection writes; a write of this store waiting
    # for that connection's lock must not stop this store's own reads for the wait
    db = SqliteDb(tmp_path / "waiting.db", busy_timeout=20.0)
    memory = Memory(db=db)
    memory.add_user_memory(UserMemory("Ava likes to ski"), user_id="ava")
    other = apsw.Connection(str(db.db_file))
    other.execute("BEGIN IMMEDIATE")  # another process's long write, holding the lock
    written: list[str] = []
    writer = threading.Thread(
        target=lambda: written.append(
            memory.add_user_memory(UserMemory("Ava has a dog"), user_id="ava")
        )
    )
    writer.start()
    time.sleep(0.3)  # the writer is waiting for the lock by now
    read: list[int] = []
    reader = threading.Thread(target=lambda: read.append(memory.count_user_memories("ava")))
    started = time.monotonic()
    reader.start()
    reader.join(10)
    waited = time.monotonic() - started
    still_waiting = writer.is_alive()
    other.execute("COMMIT")
    writer.join(20)
    reader.join(20)
    other.close()
    assert read == [1] and waited < 10, f"the read waited {waited:.1f} s for the writer"
    assert still_waiting, "the writer did not wait for the other connection's lock"
    assert len(written) == 1 and memory.count_user_memories("ava") == 2
    db.close()


def test_a_writer_still_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "given_up.db", busy_timeout=0.5)
    memory = Memory(db=db)
    memory.add_user_memory(UserMemory("Ava likes to ski"), user_id="ava")
    other = apsw.Connection(str(db.db_file))
    other.execute("BEGIN IMMEDIATE")
    started = time.monotonic()
    with pytest.raises(StoreError, match="still locked by another writer after 0.5 s"):
        memory.add_user_memory(UserMemory("Ava has a dog"), user_id="ava")
    waited = time.monotonic() - started
    other.execute("ROLLBACK")
    other.close()
    assert 0.5 <= waited < 5
    assert memory.count_user_memories("ava") == 1
    db.close()


def test_a_new_database_file_is_its_owners_only(tmp_path: Path) -> None:
    old_mask = os.umask(0o022)  # the usual umask, under which files are world-readable
    try:
        db = SqliteDb(tmp_path / "private.db")
        Memory(db=db).add_user_memory(UserMemory("Ava is allergic to shellfish"), user_id="ava")
        made = {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
        db.close()
        shared = tmp_path / "shared.db"
        shared.touch(mode=0o640)  # a file made by its owner: its permissions stay
        Memory(db=SqliteDb(shared)).add_user_memory(UserMemory("Bo rows"), user_id="bo")
    finally:
        os.umask(old_mask)
    assert made == {"private.db": 0o600, "private.db-wal": 0o600, "private.db-shm": 0o600}
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640


def test_an_in_memory_database_makes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    memory = Memory(db=SqliteDb(":memory:"))
    memory.add_user_memory(UserMemory("Ava likes to ski"), user_id="ava")
    assert [m.memory for m in memory.get_user_memories("ava")] == ["Ava likes to ski"]
    assert list(tmp_path.iterdir()) == []


def test_a_database_that_cannot_be_created_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot create .*: File name too long"):
        SqliteDb(tmp_path / f"{'n' * 300}.db").count_memories(MemoryQuery(user_id="ava"))
    assert list(tmp_path.iterdir()) == []


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from noted import Memory, SqliteDb, UserMemory
    while not Path(sys.argv[3]).exists():  # start together, on a file nobody has created yet
        time.sleep(0.002)
    memory = Memory(db=SqliteDb(sys.argv[1]))
    for i in range(250):
        memory.add_user_memory(UserMemory(f"writer {sys.argv[2]} fact {i}"), user_id="shared")
    """
)


def test_four_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), str(n), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(4)
    ]
    time.sleep(0.5)  # let every process import noted and wait at the start line
    go.touch()
    outcomes = [(proc.communicate(timeout=120)[1], proc.returncode) for proc in procs]
    for stderr, returncode in outcomes:
        assert returncode == 0, stderr.decode()
    memory = Memory(db=SqliteDb(path))
    assert memory.count_user_memories(user_id="shared") == 1000
    texts = {m.memory for m in memory.get_user_memories(user_id="shared")}
    assert texts == {f"writer {n} fact {i}" for n in range(4) for i in range(250)}


TRICKY_TEXTS = [
    'She said "hi" \\ and left',
    "line one\nline two\ttabbed\r\x01\x1f\x7f",
    "café 😀 עברית \u2028\u2029 </script><b>",
    "plain",
]
TRICKY_TIMES = [
    datetime(1, 1, 1, tzinfo=UTC),
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    datetime(1900, 3, 1, 12, 30, 5, 500_000, tzinfo=UTC),
    datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
]


def test_json_listing_is_what_to_dict_writes(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "json.db")
    db.upsert_memories(
        [
            UserMemory(
                TRICKY_TEXTS[i % len(TRICKY_TEXTS)],
                topics=[["ski", 'say "cheese"', "naïve\\path", "😀"][i % 4]] * (i % 2),
                input=None if i % 3 else TRICKY_TEXTS[(i + 1) % len(TRICKY_TEXTS)],
                memory_id=f"m-{i:02d}",
                user_id="ava",
                agent_id="helper" if i % 2 else None,
                team_id="team" if i % 5 == 0 else None,
                session_id=f"s-{i}" if i % 4 == 0 else None,
                created_at=TRICKY_TIMES[i % len(TRICKY_TIMES)],
                updated_at=TRICKY_TIMES[(i * 3) % len(TRICKY_TIMES)],
            )
            for i in range(30)
        ]
    )
    queries = [
        MemoryQuery(user_id="ava"),
        MemoryQuery(user_id="ava", sort_by="created_at", sort_order="asc", limit=7, offset=3),
        MemoryQuery(user_id="ava", topics=["😀", 'say "cheese"']),
        MemoryQuery(user_id="ava", agent_id="helper", limit=5),
        MemoryQuery(user_id="bob"),
    ]
    for query in queries:
        expected = [m.to_dict() for m in db.list_memories(query)]
        written = db.list_memories_json(query)
        assert [json.loads(text) for text in written] == expected
        # the same keys in the same order, so a page reads the same either way
        assert [list(json.loads(text)) for text in written] == [list(e) for e in expected]
    assert len(db.list_memories_json(queries[0])) == 30
    db.close()


def test_page_cache_size_is_set_on_the_connection(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "cache.db", page_cache_mib=8)
    with db._session() as conn:
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -8 * 1024
    db.close()
    for bad in (0, -1, 1.5, "64"):
        with pytest.raises(UserError, match="page_cache_mib"):
            SqliteDb(tmp_path / "cache.db", page_cache_mib=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("owner", ["ava", None])  # one user's listing, everyone's
def test_memories_with_the_same_topics_get_lists_of_their_own(
    tmp_path: Path, owner: str | None
) -> None:
    db = SqliteDb(tmp_path / "topics.db")
    memory = Memory(db=db)
    memory.add_user_memories(
        [UserMemory(f"m{i}", topics=["food", "travel"]) for i in range(3)]
        + [UserMemory("none"), UserMemory("also none")],
        user_id="ava",
    )
    listed = db.list_memories(MemoryQuery(user_id=owner, limit=None))
    shared = [m for m in listed if m.topics]
    empty = [m for m in listed if not m.topics]
    assert len(shared) == 3 and len(empty) == 2
    shared[0].topics.append("changed")
    shared[1].topics[0] = "changed"
    empty[0].topics.append("changed")
    assert shared[2].topics == ["food", "travel"]
    assert empty[1].topics == []
    again = db.list_memories(MemoryQuery(user_id=owner, limit=None))
    assert sorted(tuple(m.topics) for m in again) == [(), (), *[("food", "travel")] * 3]
    db.close()


def _large_user(tmp_path: Path) -> SqliteDb:
    db = SqliteDb(tmp_path / "large.db")
    memories = [UserMemory(f"m{i}", topics=["t"]) for i in range(3000)]
    Memory(db=db).add_user_memories(memories, user_id="ava")
    return db


def test_a_large_read_starts_no_collection_after_building_its_memories(tmp_path: Path) -> None:
    # the collector, paused while thousands of memories are built, is turned back on as
    # the read's very last step: turned on earlier, the next allocation inside the call
    # would start a collection that walks every memory just built
    db = _large_user(tmp_path)
    memory = Memory(db=db)
    started: list[dict[str, Any]] = []

    def record(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(info)

    gc.collect()
    gc.callbacks.append(record)
    try:
        listed = memory.get_user_memories(user_id="ava")
        during = len(started)  # (allocates nothing: the next allocation starts one)
    finally:
        gc.callbacks.remove(record)
    assert len(listed) == 3000
    assert during == 0, started
    assert gc.isenabled()
    db.close()


def test_a_large_read_leaves_the_collector_as_it_found_it(tmp_path: Path) -> None:
    db = _large_user(tmp_path)
    query = MemoryQuery(user_id="ava", limit=None)
    gc.disable()
    try:
        assert len(db.list_memories(query)) == 3000
        assert not gc.isenabled()  # off before: stays off
    finally:
        gc.enable()
    with db._session() as conn:  # a read that fails half-way: the collector comes back on
        conn.set_progress_handler(lambda: True, 1000)
        try:
            with pytest.raises(StoreError, match="interrupt"):
                db.list_memories(query)
        finally:
            conn.set_progress_handler(None, 0)
    assert gc.isenabled()
    assert len(db.list_memories(query)) == 3000
    db.close()
