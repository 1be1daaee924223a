"""The record a replace writes is the core's (``core.replaced_fields``) on every store: the
memory keeps its creation time and each id (and the conversation) the replace does not
give; what it gives is written."""

from __future__ import annotations

from datetime import timedelta

import pytest

from noted import MemoryStore, UserMemory
from noted._time import from_micros, now_micros
from noted.db.base import WriteBatch


@pytest.mark.parametrize("through", ["update_memory", "write_batch"])
def test_a_replace_keeps_created_at_and_what_it_does_not_give(
    store: MemoryStore, through: str
) -> None:
    now = from_micros(now_micros())
    then = now - timedelta(days=30)
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
        assert store.write_batch(WriteBatch("ava", updates=(new,))) == [new]
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
