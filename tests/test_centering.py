"""Query centering: the part of the query along the user's mean memory vector is lessened
before the cosine, so a direction every memory shares no longer drowns the one memory that
answers. Every store centres alike: checked against the formula on each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import noted.db.memory
from noted import Memory, MemoryStore, SqliteDb, UserError, UserMemory
from noted._time import utc_now
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


# -- every store ------------------------------------------------------------------------------


def expected_scores(
    stored: np.ndarray, vector: np.ndarray, centering: float, ranked: np.ndarray | None = None
) -> list[float]:
    """The centred search's scores of ``ranked`` (``stored`` when None), best first, by the
    formula: ``vector`` less ``centering`` of its part along the mean of ``stored`` (unit),
    scaled back to its length."""
    mean = stored.sum(axis=0)
    mean /= np.linalg.norm(mean)
    moved = vector - centering * float(vector @ mean) * mean
    moved *= np.linalg.norm(vector) / np.linalg.norm(moved)
    return sorted(((stored if ranked is None else ranked) @ moved).tolist(), reverse=True)


def shared_rows(count: int, seed: int, shared: float = 0.9) -> np.ndarray:
    """Unit rows that share one direction (axis 0) strongly, as one user's memories do."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((count, DIMENSIONS)).astype(np.float32) * 0.2
    rows[:, 0] += shared
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def embedded(store: MemoryStore, user: str, rows: np.ndarray, start: int = 0) -> list[UserMemory]:
    """``len(rows)`` new memories of ``user``, each given one of ``rows`` as its vector;
    every third has the topic "pets"."""
    now = utc_now()
    made = [
        UserMemory(
            f"fact {start + i} of {user}",
            topics=["pets"] if i % 3 == 0 else [],
            memory_id=f"{user}-{start + i}",
            user_id=user,
            created_at=now,
            updated_at=now,
        )
        for i in range(len(rows))
    ]
    store.upsert_memories(made)
    assert store.set_embeddings("m", list(zip(made, rows, strict=True))) == len(made)
    return made


def test_every_store_centres_on_the_users_own_vectors(store: MemoryStore) -> None:
    ann = shared_rows(40, seed=1)
    embedded(store, "ann", ann)
    embedded(store, "bob", -shared_rows(40, seed=2))  # another user's mean counts for nothing
    vector = shared_rows(1, seed=3, shared=0.5)[0]
    query = MemoryQuery(user_id="ann", limit=10)
    for centering in (0.0, 0.5, 1.0):
        found = store.semantic_search(query, vector, "m", centering)
        expected = expected_scores(ann, vector, centering)[:10]
        assert [r.score for r in found] == pytest.approx(expected, abs=1e-5), centering
        assert {r.memory.user_id for r in found} == {"ann"}
    plain = store.semantic_search(query, vector, "m")
    assert [r.score for r in plain] == pytest.approx(
        expected_scores(ann, vector, 0.0)[:10], abs=1e-5
    )
    # a filter narrows the results, not the mean: that stays the user's whole
    pets = store.semantic_search(
        MemoryQuery(user_id="ann", topics=("pets",), limit=5), vector, "m", 0.75
    )
    expected = expected_scores(ann, vector, 0.75, ann[::3])[:5]
    assert [r.score for r in pets] == pytest.approx(expected, abs=1e-5)


def test_every_store_centres_on_the_mean_after_a_change(store: MemoryStore) -> None:
    first = shared_rows(30, seed=4)
    embedded(store, "ann", first)
    vector = shared_rows(1, seed=5, shared=0.5)[0]
    query = MemoryQuery(user_id="ann", limit=50)
    before = store.semantic_search(query, vector, "m", 0.75)
    assert [r.score for r in before] == pytest.approx(
        expected_scores(first, vector, 0.75), abs=1e-5
    )
    # new memories along another shared direction move the mean
    more = shared_rows(20, seed=6)[:, ::-1].copy()
    embedded(store, "ann", more, start=30)
    after = store.semantic_search(query, vector, "m", 0.75)
    both = np.concatenate([first, more])
    assert [r.score for r in after] == pytest.approx(expected_scores(both, vector, 0.75), abs=1e-5)
    assert len(after) == 50


def test_the_in_process_store_centres_a_user_it_ranks_afresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(noted.db.memory, "_KEPT_UP_TO", 0)  # every user ranked afresh
    store = noted.db.memory.InMemoryDb()
    ann = shared_rows(40, seed=7)
    embedded(store, "ann", ann)
    vector = shared_rows(1, seed=8, shared=0.5)[0]
    found = store.semantic_search(MemoryQuery(user_id="ann", limit=10), vector, "m", 0.75)
    assert [r.score for r in found] == pytest.approx(
        expected_scores(ann, vector, 0.75)[:10], abs=1e-5
    )
    assert store._kept("ann") is None  # the path checked is the fresh one
    pets = store.semantic_search(
        MemoryQuery(user_id="ann", topics=("pets",), limit=3), vector, "m", 0.75
    )
    expected = expected_scores(ann, vector, 0.75, ann[::3])[:3]
    assert [r.score for r in pets] == pytest.approx(expected, abs=1e-5)


def test_a_hybrid_search_centres_on_every_store(store: MemoryStore) -> None:
    memory = Memory(db=store, embedder=TableEmbedder())
    memory.add_user_memories([UserMemory(t) for t in [*OTHERS, ANSWER]], user_id="ann")
    assert memory.index is not None
    query = MemoryQuery(user_id="ann", limit=3)
    plain = memory.index.hybrid(query, QUESTION, semantic_weight=1.0)
    assert plain[0].memory.memory != ANSWER
    centred = memory.index.hybrid(query, QUESTION, semantic_weight=1.0, centering=0.75)
    assert centred[0].memory.memory == ANSWER
    by_meaning = memory.index.semantic(query, QUESTION, centering=0.75)
    assert by_meaning[0].memory.memory == ANSWER


@pytest.mark.parametrize("bad", [-0.1, 1.5, True, "0.5"])
def test_every_store_refuses_a_centering_that_is_not_a_share(store: MemoryStore, bad: Any) -> None:
    embedded(store, "ann", shared_rows(3, seed=9))
    vector = shared_rows(1, seed=10)[0]
    with pytest.raises(UserError, match="centering"):
        store.semantic_search(MemoryQuery(user_id="ann", limit=3), vector, "m", bad)


class PlainStore(noted.db.memory.InMemoryDb):
    """A store written before ``centering``: its semantic_search takes three arguments."""

    def semantic_search(  # type: ignore[override]
        self, query: MemoryQuery, vector: Any, model: str
    ) -> list[Any]:
        return super().semantic_search(query, vector, model)


def test_a_store_without_centering_is_searched_plainly() -> None:
    memory = Memory(db=PlainStore(), embedder=TableEmbedder())
    memory.add_user_memories([UserMemory(t) for t in [*OTHERS, ANSWER]], user_id="ann")
    assert memory.index is not None
    query = MemoryQuery(user_id="ann", limit=3)
    plain = memory.index.hybrid(query, QUESTION, semantic_weight=1.0)
    centred = memory.index.hybrid(query, QUESTION, semantic_weight=1.0, centering=0.75)
    assert [r.memory.memory for r in centred] == [r.memory.memory for r in plain]
    assert centred[0].memory.memory != ANSWER
    chosen = select_memories(
        memory.db,
        MemoryQuery(user_id="ann", limit=5),
        QUESTION,
        1,
        index=memory.index,
        pinned=False,
        recent=0,
    )
    assert chosen  # the selection runs, uncentred
