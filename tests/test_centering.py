"""Query centering on SQLite: the part of the query along the user's mean memory vector is
lessened before the cosine, so a direction every memory shares no longer drowns the one
memory that answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from noted import Memory, SqliteDb, UserError, UserMemory
from noted.db import MemoryQuery
from noted.memory import selection
from noted.memory.index import MemoryIndex
from noted.memory.selection import select_memories
from noted.retrieval.embedders import BaseEmbedder, Kind

DIMENSIONS = 24
QUESTION = "Which pet?"
ANSWER = "Keeps a grey rabbit"
# each shares the common direction strongly and has a small direction of its own
OTHERS = [f"Likes thing{i}" for i in range(20)]


class TableEmbedder(BaseEmbedder):
    """Vectors from a fixed table: axis 0 is what all of the user's memories share (they
    are all about the same person), axis 1 the question's subject, axes 2.. one for each
    other memory."""

    def __init__(self) -> None:
        super().__init__("test-table", DIMENSIONS)
        self.table: dict[str, list[tuple[int, float]]] = {
            QUESTION: [(0, 0.97), (1, 0.24)],
            ANSWER: [(0, 0.6), (1, 0.8)],
        }
        for i, text in enumerate(OTHERS):
            self.table[text] = [(0, 0.95), (2 + i, 0.31)]

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        vectors = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for row, text in enumerate(texts):
            for axis, value in self.table.get(text, [(DIMENSIONS - 1, 1.0)]):
                vectors[row, axis] = value
        return vectors


def filled(tmp_path: Path) -> tuple[SqliteDb, MemoryIndex]:
    db = SqliteDb(tmp_path / "centering.db")
    memory = Memory(db=db, embedder=TableEmbedder())
    memory.add_user_memories([UserMemory(t) for t in [*OTHERS, ANSWER]], user_id="ann")
    assert memory.index is not None
    return db, memory.index


def test_a_shared_direction_drowns_the_answer_unless_the_query_is_centred(
    tmp_path: Path,
) -> None:
    db, index = filled(tmp_path)
    query = MemoryQuery(user_id="ann", limit=3)
    plain = index.hybrid(query, QUESTION, semantic_weight=1.0)
    assert plain[0].memory.memory != ANSWER  # the common direction wins
    centred = index.hybrid(query, QUESTION, semantic_weight=1.0, centering=0.75)
    assert centred[0].memory.memory == ANSWER
    db.close()


def test_the_selection_centres_its_query(tmp_path: Path) -> None:
    db, index = filled(tmp_path)
    assert 0 < selection.CENTERING <= 1
    chosen = select_memories(
        db, MemoryQuery(user_id="ann", limit=5), QUESTION, 1, index=index, pinned=False, recent=0
    )
    assert [m.memory for m in chosen] == [ANSWER]
    db.close()


def test_no_centering_is_plain_cosine(tmp_path: Path) -> None:
    db, index = filled(tmp_path)
    vector = index._query_vector(QUESTION)
    hits = db.semantic_hits(MemoryQuery(user_id="ann", limit=30), vector, index.model_name)
    matrix = index.embedder.embed([*OTHERS, ANSWER])
    expected = sorted((matrix @ vector).tolist(), reverse=True)
    assert [hit.score for hit in hits] == pytest.approx(expected, rel=1e-6)
    db.close()


def test_the_mean_follows_the_users_changes(tmp_path: Path) -> None:
    db, index = filled(tmp_path)
    model = index.model_name

    def mean_now() -> tuple[Any, Any]:
        loaded = db._vectors.user_vectors("ann", model, DIMENSIONS)
        stored = loaded.matrix.mean(axis=0)
        return loaded.mean, stored / np.linalg.norm(stored)

    kept, expected = mean_now()
    assert kept == pytest.approx(expected, abs=1e-6)
    memory = Memory(db=db, embedder=index.embedder)
    memory.add_user_memories([UserMemory(f"Other fact {i}") for i in range(30)], user_id="ann")
    changed, expected = mean_now()
    assert changed == pytest.approx(expected, abs=1e-6)
    assert not np.allclose(changed, kept)
    # the search centres on the new mean (on the old one the answer would come first)
    vector = index._query_vector(QUESTION)
    query = MemoryQuery(user_id="ann", limit=60)
    hits = db.semantic_hits(query, vector, model, centering=0.75)
    moved = vector - 0.75 * float(vector @ changed) * changed
    moved *= np.linalg.norm(vector) / np.linalg.norm(moved)
    stored = db._vectors.user_vectors("ann", model, DIMENSIONS).matrix
    assert [h.score for h in hits] == pytest.approx(sorted(stored @ moved, reverse=True), abs=1e-6)
    listed = db.list_memories(MemoryQuery(user_id="ann"))
    assert hits[0].memory_id != next(m.memory_id for m in listed if m.memory == ANSWER)
    db.close()


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5"])
def test_centering_is_a_share(tmp_path: Path, bad: Any) -> None:
    db, index = filled(tmp_path)
    with pytest.raises(UserError, match="centering"):
        index.hybrid(MemoryQuery(user_id="ann", limit=3), QUESTION, centering=bad)
    db.close()
