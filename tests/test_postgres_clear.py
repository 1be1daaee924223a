"""Clearing a user on PostgresDb: one statement deletes the rows and writes their "delete"
events inside the database, so the clear holds none of them in this process's memory,
and stays one transaction (see "Clearing" in docs/storage.md), on a real server."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator

import pytest

from clearing import clear_peak
from conftest import server_url
from noted import Memory, StoreError, UserMemory
from noted.audit import AuditContext
from servers import Server

psycopg = pytest.importorskip("psycopg")
from noted.db.postgres import PostgresDb  # noqa: E402

_names = itertools.count(1)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "postgres")


@pytest.fixture
def db(url: str) -> Iterator[PostgresDb]:
    n = next(_names)
    store = PostgresDb(url, memory_table=f"clr{n}_memories", session_table=f"clr{n}_sessions")
    yield store
    store.close()


def filled(db: PostgresDb, count: int, text: str = "Ava fact {i} about skiing") -> Memory:
    memory = Memory(db=db)
    for start in range(0, count, 10_000):
        batch = [UserMemory(text.format(i=i)) for i in range(start, min(count, start + 10_000))]
        memory.add_user_memories(batch, user_id="ava")
    memory.add_user_memory(UserMemory("Bo likes tea"), user_id="bo")
    return memory


def test_a_clear_holds_no_rows_in_memory(db: PostgresDb) -> None:
    """The deleted rows go to their events inside the database: the clear's peak of
    Python memory stays far below the texts it deletes (every row was read into Python to
    record its history)."""
    many = 20_000
    memory = filled(db, many, text="Ava fact {i} " + "about skiing and other things " * 20)
    whole = many * 600  # bytes of the texts alone
    cleared, peak = clear_peak(memory)
    assert cleared == many
    assert peak < whole / 20, f"{peak:,} bytes at the peak of a clear of {whole:,} bytes of text"
    assert memory.count_user_memories(user_id="ava") == 0
    assert memory.count_user_memories(user_id="bo") == 1


def test_each_memory_cleared_has_one_whole_delete_event(db: PostgresDb) -> None:
    """Each memory cleared has one "delete" event: a new event id, its text and topics
    (an empty list for topics that are not a list of strings, as the other writes record
    them), the clear's actor, session and run; written oldest memory first."""
    memory = Memory(db=db)
    ids = [
        memory.add_user_memory(UserMemory(f"Ava fact {i}", topics=["ski", f"t{i}"]), user_id="ava")
        for i in range(3)
    ]
    with db._connection() as conn:  # a hand-edited row
        conn.execute(
            f"UPDATE {db._n.memories} SET topics = '{{\"a\": 1}}'::jsonb WHERE memory_id = %s",
            (ids[1],),
        )
    audit = AuditContext(actor="cli", session_id="s1", run_id="r1")
    assert db.clear_memories("ava", audit=audit) == 3
    with db._connection() as conn:
        rows = conn.execute(
            "SELECT event_id, memory_id, old_memory, new_memory, old_topics::text, new_topics, "
            f"actor, session_id, run_id FROM {db._n.events} WHERE event = 'delete' ORDER BY seq"
        ).fetchall()
    assert [row[1] for row in rows] == ids
    assert all(UUID4.match(row[0]) for row in rows) and len({row[0] for row in rows}) == 3
    assert [row[2] for row in rows] == ["Ava fact 0", "Ava fact 1", "Ava fact 2"]
    assert [row[4] for row in rows] == ['["ski", "t0"]', "[]", '["ski", "t2"]']
    assert all(row[3] is None and row[5] is None for row in rows)
    assert {row[6:] for row in rows} == {("cli", "s1", "r1")}
    history = db.get_memory_history(ids[2], "ava")
    assert [e.event for e in history] == ["add", "delete"]
    assert history[1].old_topics == ["ski", "t2"]


def test_a_clear_is_one_transaction(db: PostgresDb) -> None:
    """A clear that fails part-way (the events table refuses one memory's event) leaves
    every memory stored and no event written."""
    memory = filled(db, 500)
    poison = memory.get_user_memories(user_id="ava", limit=1)[0].memory_id
    events = db._n.events
    with db._connection() as conn:
        conn.execute(
            "CREATE FUNCTION clr_refuse() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN "
            f"IF NEW.memory_id = '{poison}' THEN RAISE EXCEPTION 'refused'; END IF; "
            "RETURN NEW; END $f$"
        )
        conn.execute(
            f"CREATE TRIGGER clr_refuse BEFORE INSERT ON {events} "
            "FOR EACH ROW EXECUTE FUNCTION clr_refuse()"
        )
    try:
        with pytest.raises(StoreError, match="refused"):
            memory.clear(user_id="ava")
        assert memory.count_user_memories(user_id="ava") == 500
        with db._connection() as conn:
            found = conn.execute(f"SELECT count(*) FROM {events} WHERE event = 'delete'")
            assert found.fetchone() == (0,)
    finally:
        with db._connection() as conn:
            conn.execute(f"DROP TRIGGER clr_refuse ON {events}")
            conn.execute("DROP FUNCTION clr_refuse()")
    assert memory.clear(user_id="ava") == 500
