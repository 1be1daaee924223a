"""A memory's embedding never outlives its text, whichever writer changes the text.

The rule is the core's (``core.clears_embedding``); every store writes the decision in the
same write as the text. Each writer here changes one memory's text (it must lose its
embedding) and rewrites another with its text unchanged (it keeps its embedding)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from noted import Memory, MemoryStore, UserMemory
from noted.db.base import MemoryQuery, WriteBatch
from noted.testing import ScriptedModel

MODEL = "test-model"
CHANGED = np.array([1.0, 0.0, 0.0], np.float32)
KEPT = np.array([0.0, 1.0, 0.0], np.float32)


def _embedded(store: MemoryStore) -> tuple[UserMemory, UserMemory]:
    """Two memories of ava, each with its own embedding by MODEL."""
    memory = Memory(db=store)
    memory.add_user_memory(UserMemory("The user lives in Paris", topics=["home"]), "ava")
    memory.add_user_memory(UserMemory("The user has a cat", topics=["pets"]), "ava")
    changed, kept = sorted(memory.get_user_memories("ava"), key=lambda m: m.memory, reverse=True)
    assert store.set_embeddings(MODEL, [(changed, CHANGED), (kept, KEPT)]) == 2
    assert store.count_memories_to_embed("ava", MODEL) == 0
    return changed, kept


def _replace_through_the_api(store: MemoryStore, changed: UserMemory, kept: UserMemory) -> None:
    memory = Memory(db=store)
    memory.replace_user_memory(changed.memory_id, UserMemory("The user lives in Rome"), "ava")
    same = UserMemory(kept.memory, topics=["pets", "cats"])
    memory.replace_user_memory(kept.memory_id, same, "ava")


def _apply_a_model_plan(store: MemoryStore, changed: UserMemory, kept: UserMemory) -> None:
    # the shown memories are numbered in the order the manager lists them
    shown = [m.memory for m in Memory(db=store).get_user_memories("ava")]
    number = {text: i + 1 for i, text in enumerate(shown)}
    answer = {
        "operations": [
            {
                "op": "update",
                "id": number[changed.memory],
                "memory": "The user lives in Rome",
                "topics": ["home"],
            },
            {
                "op": "update",
                "id": number[kept.memory],
                "memory": kept.memory,
                "topics": ["pets", "cats"],
            },
        ]
    }
    memory = Memory(db=store, model=ScriptedModel([json.dumps(answer)]))
    update = memory.create_user_memories("I moved to Rome. My cat is a cat.", user_id="ava")
    assert update.rejected == []
    assert sorted(update.memory_ids) == sorted([changed.memory_id, kept.memory_id])


def _import_over_them(store: MemoryStore, changed: UserMemory, kept: UserMemory) -> None:
    moved = UserMemory.from_dict({**changed.to_dict(), "memory": "The user lives in Rome"})
    same = UserMemory.from_dict({**kept.to_dict(), "topics": ["pets", "cats"]})
    Memory(db=store).import_user_memories([moved, same])


def _upsert_the_same_id_twice(store: MemoryStore, changed: UserMemory, kept: UserMemory) -> None:
    # in one call: the first write changes the text, the second puts it back to the new one
    passing = UserMemory.from_dict({**changed.to_dict(), "memory": "The user lives in Nice"})
    moved = UserMemory.from_dict({**changed.to_dict(), "memory": "The user lives in Rome"})
    same = UserMemory.from_dict({**kept.to_dict(), "topics": ["pets", "cats"]})
    store.upsert_memories([passing, same, moved])


def _update_in_a_batch(store: MemoryStore, changed: UserMemory, kept: UserMemory) -> None:
    moved = UserMemory.from_dict({**changed.to_dict(), "memory": "The user lives in Rome"})
    same = UserMemory.from_dict({**kept.to_dict(), "topics": ["pets", "cats"]})
    written = store.write_batch(WriteBatch("ava", updates=(moved, same)))
    assert len(written) == 2


WRITERS: dict[str, Callable[[MemoryStore, UserMemory, UserMemory], None]] = {
    "api-replace": _replace_through_the_api,
    "model-plan": _apply_a_model_plan,
    "import": _import_over_them,
    "store-upsert": _upsert_the_same_id_twice,
    "store-batch": _update_in_a_batch,
}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_changed_text_loses_its_embedding_an_unchanged_one_keeps_it(
    store: MemoryStore, writer: str
) -> None:
    changed, kept = _embedded(store)
    WRITERS[writer](store, changed, kept)
    now = {m.memory_id: m for m in store.list_memories(MemoryQuery("ava"))}
    assert now[changed.memory_id].memory == "The user lives in Rome"
    assert now[kept.memory_id].memory == kept.memory
    assert now[kept.memory_id].topics == ["pets", "cats"]
    pending = store.memories_to_embed("ava", MODEL)
    assert [m.memory_id for m in pending] == [changed.memory_id]  # only the changed text
    found = store.semantic_search(MemoryQuery("ava", limit=5), CHANGED, MODEL)
    assert [r.memory.memory_id for r in found] == [kept.memory_id]  # the stale vector is gone
    [hit] = store.semantic_search(MemoryQuery("ava", limit=1), KEPT, MODEL)
    assert hit.memory.memory_id == kept.memory_id
    assert hit.score == pytest.approx(1.0)
