"""The record a replace writes is the core's (``core.replaced_fields``) on every store: the
memory keeps its creation time and each id (and the conversation) the replace does not
give; what it gives is written. Every replace returns that record exactly as stored."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from noted import AuditContext, Memory, MemoryQuery, MemoryStore, UserMemory
from noted._time import from_micros, now_micros
from noted.db.base import WriteBatch

AUDIT = AuditContext()


def stored_earlier(store: MemoryStore, then: datetime) -> None:
    """Ava's memory m1, with every id and the input given, created and updated ``then``."""
    first = UserMemory(
        "The user lives in Paris",
        memory_id="m1",
        user_id="ava",
        agent_id="agent-1",
        team_id="team-1",
        session_id="s1",
        input="I live in Paris",
        created_at=then,
        updated_at=then,
    )
    store.upsert_memories([first])


@pytest.mark.parametrize("through", ["update_memory", "write_batch"])
def test_a_replace_keeps_created_at_and_what_it_does_not_give(
    store: MemoryStore, through: str
) -> None:
    now = from_micros(now_micros())
    then = now - timedelta(days=30)
    stored_earlier(store, then)
    new = UserMemory(
        "The user lives in Rome",
        topics=["home"],
        memory_id="m1",
        user_id="ava",
        team_id="team-2",
        created_at=now,  # a replace keeps the stored creation time, whatever it is given
        updated_at=now,
    )
    if through == "update_memory":
        assert store.update_memory(new)
    else:
        assert len(store.write_batch(WriteBatch("ava", updates=(new,)))) == 1
    got = store.get_memory("m1", "ava")
    assert got is not None
    assert (got.memory, got.topics) == ("The user lives in Rome", ["home"])
    assert (got.created_at, got.updated_at) == (then, now)
    assert (got.agent_id, got.team_id, got.session_id, got.input) == (
        "agent-1",
        "team-2",
        "s1",
        "I live in Paris",
    )


@pytest.mark.parametrize("through", ["update_memory", "write_batch", "door"])
def test_a_replace_returns_the_memory_exactly_as_stored(store: MemoryStore, through: str) -> None:
    then = from_micros(now_micros()) - timedelta(days=30, microseconds=7)
    stored_earlier(store, then)
    given = UserMemory("The user lives in Rome", topics=["home", "move"])
    if through == "door":
        returned = [Memory(db=store, embedder=None).door.replace("m1", given, "ava", AUDIT)]
    else:
        now = from_micros(now_micros())
        given.memory_id, given.user_id, given.created_at, given.updated_at = "m1", "ava", now, now
        if through == "update_memory":
            one = store.update_memory(given)
            assert one is not None
            returned = [one]
        else:
            returned = store.write_batch(WriteBatch("ava", updates=(given,)))
    stored = store.get_memory("m1", "ava")
    assert stored is not None
    assert [m.to_dict() for m in returned] == [stored.to_dict()]  # every field, as stored
    (record,) = returned
    assert record.created_at == then
    assert (record.agent_id, record.team_id, record.session_id) == ("agent-1", "team-1", "s1")
    assert record.updated_at == stored.updated_at
    assert record.updated_at is not None and record.updated_at > then


def test_a_replace_of_no_such_memory_returns_none_and_writes_nothing(store: MemoryStore) -> None:
    now = from_micros(now_micros())
    mine = UserMemory("x", memory_id="m1", user_id="ava", created_at=now, updated_at=now)
    store.upsert_memories([mine])
    theirs = UserMemory("y", memory_id="m1", user_id="bob", created_at=now, updated_at=now)
    assert store.update_memory(theirs) is None
    missing = UserMemory("y", memory_id="m2", user_id="ava", created_at=now, updated_at=now)
    assert store.update_memory(missing) is None
    assert store.write_batch(WriteBatch("ava", updates=(missing,))) == []
    assert [m.to_dict() for m in store.list_memories(MemoryQuery(None))] == [mine.to_dict()]
