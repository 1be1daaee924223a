"""The in-process store's kept snapshot of a user: its vectors, kept as one matrix per
model and size until the user's memories or vectors change, rank as a fresh reading would."""

from __future__ import annotations

import numpy as np
import pytest

from noted import InMemoryDb, Memory, UserMemory
from noted.db import MemoryQuery
from noted.db import memory as memory_store


def unit(*values: float) -> np.ndarray:
    vector = np.array(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


def ranked(db: InMemoryDb, target: np.ndarray, model: str = "m", user: str = "ava") -> list[str]:
    found = db.semantic_search(MemoryQuery(user_id=user, limit=10), target, model)
    return [r.memory.memory for r in found]


def stored(db: InMemoryDb, user: str, *texts: str) -> list[UserMemory]:
    memory = Memory(db=db, embedder=None)
    ids = [memory.add_user_memory(UserMemory(text), user_id=user) for text in texts]
    return [m for m in (db.get_memory(i, user) for i in ids) if m is not None]


def test_kept_vectors_follow_every_change_of_the_users_memories_and_vectors() -> None:
    db = InMemoryDb()
    tea, ski, oslo = stored(db, "ava", "likes tea", "skis", "lives in Oslo")
    [bob] = stored(db, "bob", "likes tea too")
    db.set_embeddings("m", [(tea, unit(1, 0, 0)), (ski, unit(0, 1, 0)), (bob, unit(1, 0, 0))])
    assert ranked(db, unit(1, 0.1, 0)) == ["likes tea", "skis"]  # oslo has no vector yet
    kept = db._snapshots.get("ava")
    assert kept is not None and ("m", 3) in (kept.vectors or {})
    assert ranked(db, unit(0.1, 1, 0)) == ["skis", "likes tea"]
    assert db._snapshots.get("ava") is kept  # the same matrix served again
    db.set_embeddings("m", [(oslo, unit(0, 0, 1))])  # a new vector is seen at once
    assert ranked(db, unit(0, 0.1, 1)) == ["lives in Oslo", "skis", "likes tea"]
    Memory(db=db, embedder=None).replace_user_memory(
        ski.memory_id or "", UserMemory("skis in the Alps"), user_id="ava"
    )
    assert ranked(db, unit(0, 1, 0.5)) == ["lives in Oslo", "likes tea"]  # its vector cleared
    db.set_embeddings("other", [(tea, unit(0, 0, 1, 0))])  # another model (and size)
    assert ranked(db, unit(0, 0, 1, 0), model="other") == ["likes tea"]
    assert ranked(db, unit(1, 0, 0)) == ["lives in Oslo"]  # tea's vector is the other's now
    assert ranked(db, unit(1, 0, 0), user="bob") == ["likes tea too"]
    db.delete_memories([oslo.memory_id or ""], "ava")
    assert ranked(db, unit(1, 0, 0)) == []
    filtered = MemoryQuery(user_id="ava", limit=10, topics=["nothing"])
    assert db.semantic_search(filtered, unit(0, 0, 1), "m") == []


def test_a_very_large_user_is_ranked_afresh_with_the_same_answers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = InMemoryDb()
    memories = stored(db, "ava", "one", "two", "three")
    db.set_embeddings("m", [(m, unit(1, i, 0)) for i, m in enumerate(memories)])
    kept = [ranked(db, unit(1, k, 0)) for k in range(3)]
    monkeypatch.setattr(memory_store, "_KEPT_UP_TO", 2)
    db._snapshots.clear()
    assert [ranked(db, unit(1, k, 0)) for k in range(3)] == kept
    assert db._snapshots.get("ava") is None


def test_a_user_whose_snapshot_is_not_kept_is_ranked_afresh_made_once_per_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[int] = []

    class Counted(memory_store.UserSnapshot):  # type: ignore[misc,name-defined]
        def __init__(self, *args: object) -> None:
            super().__init__(*args)
            made.append(1)

    full = InMemoryDb()
    memories = stored(full, "ava", "one", "two", "three")
    full.set_embeddings("m", [(m, unit(1, i, 0)) for i, m in enumerate(memories)])
    answers = [ranked(full, unit(1, k, 0)) for k in range(3)]
    monkeypatch.setattr(memory_store, "UserSnapshot", Counted)
    monkeypatch.setattr(memory_store, "_CACHE_BYTES", 1)  # no snapshot fits
    db = InMemoryDb()
    memories = stored(db, "ava", "one", "two", "three")
    db.set_embeddings("m", [(m, unit(1, i, 0)) for i, m in enumerate(memories)])
    assert [ranked(db, unit(1, k, 0)) for k in range(3)] == answers
    assert len(made) == 1  # made by the first search, then ranked afresh
    stored(db, "ava", "four")
    assert ranked(db, unit(1, 0, 0))[:1] == ["one"]
    assert len(made) == 2


def test_a_filter_is_worked_out_once_per_snapshot_and_each_filter_answers_for_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Which memories pass a search's filters is kept with the snapshot (an agent scoped to
    its own memories asks the same at every search): the same filter again reads no
    memory, and every other filter, or a write, gets answers of its own."""
    from noted.db import _client_search as client_search

    db = InMemoryDb()
    memory = Memory(db=db, embedder=None)
    for n in range(30):
        agent = ("a", "b", None)[n % 3]
        memory.add_user_memory(
            UserMemory(f"tea fact {n}", topics=["even" if n % 2 else "odd"], agent_id=agent),
            user_id="ava",
        )
    calls = 0
    real = client_search.matches

    def counted(query: MemoryQuery, m: UserMemory) -> bool:
        nonlocal calls
        calls += 1
        return real(query, m)

    monkeypatch.setattr(client_search, "matches", counted)

    def found(**filters: object) -> list[str]:
        query = MemoryQuery(user_id="ava", limit=50, **filters)  # type: ignore[arg-type]
        return sorted(r.memory.memory for r in db.keyword_search(query, "tea"))

    def expected(**filters: object) -> list[str]:
        query = MemoryQuery(user_id="ava", **filters)  # type: ignore[arg-type]
        return sorted(m.memory for m in db.list_memories(query))

    for filters in ({"agent_id": "a"}, {"agent_id": "b"}, {"topics": ("odd",)}):
        assert found(**filters) == expected(**filters)
        before = calls
        assert found(**filters) == expected(**filters)
        assert calls == before  # (the listing checks the memories through its own name)
    memory.add_user_memory(UserMemory("tea fact new", agent_id="a"), user_id="ava")
    assert "tea fact new" in found(agent_id="a")
    assert found(agent_id="a") == expected(agent_id="a")


def test_the_count_of_memories_to_embed_is_kept_until_the_user_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every search asks how many of the user's memories have no vector by its model: the
    count is kept until the user's memories or vectors change, and then follows each kind
    of change (another user's leave it)."""
    db = InMemoryDb()
    mine = stored(db, "ava", "tea", "ski", "oslo", "cats")
    stored(db, "bob", "golf")
    passes = 0
    real = db._to_embed

    def counted(user_id: str | None, model: str) -> list[UserMemory]:
        nonlocal passes
        passes += 1
        return real(user_id, model)

    monkeypatch.setattr(db, "_to_embed", counted)

    def pending(expected: int, passes_now: int) -> None:
        assert db.count_memories_to_embed("ava", "m") == expected
        assert db.count_memories_to_embed("ava", "m") == expected
        assert passes == passes_now

    pending(4, 1)
    assert db.count_memories_to_embed("ava", "other") == 4 and passes == 2  # its own count
    db.set_embeddings("m", [(mine[0], unit(1, 0)), (mine[1], unit(0, 1))])
    pending(2, 3)
    stored(db, "bob", "chess")
    pending(2, 3)
    db.update_memory(_edited(mine[0]))
    pending(3, 4)  # its text changed: its vector went
    db.delete_memories([mine[2].memory_id or ""], "ava")
    pending(2, 5)
    stored(db, "ava", "piano")
    pending(3, 6)
    db.clear_memories("ava")
    pending(0, 7)
    assert db.count_memories_to_embed(None, "m") == 2 and passes == 8  # every user's: counted


def _edited(memory: UserMemory) -> UserMemory:
    edited = memory.copy()
    edited.memory = "green tea"
    return edited
