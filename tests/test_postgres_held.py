"""PostgresDb's vectors held in the process (noted.db.postgres.held): the same answers as
the search in the database, brought up to date by this process's writes without reading
every vector again, and by another process's writes (vectors stored included) on the
next search."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest

from at_once import together
from conftest import server_url
from noted import MemoryQuery, UserMemory
from noted.db._journal import Written
from noted.db.base import WriteBatch
from noted.db.postgres import PostgresDb
from noted.db.postgres.held import READ_AFTER, HeldVectors
from noted.db.postgres.schema import Names
from noted.errors import ConflictError
from servers import Server
from test_backends import stamped

pytest.importorskip("psycopg")

MODEL = "test-model"
DIMS = 24
_count = iter(range(1, 10**6))


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "postgres")


@pytest.fixture
def stores(url: str) -> Iterator[tuple[PostgresDb, PostgresDb]]:
    """Two stores on one table: the first holds vectors, the second never does (every
    search of it goes to the database), as another process would."""
    n = next(_count)
    table, sessions = f"held{n}_memories", f"held{n}_sessions"
    holding = PostgresDb(url, memory_table=table, session_table=sessions)
    other = PostgresDb(url, memory_table=table, session_table=sessions, vector_cache_bytes=0)
    yield holding, other
    holding.close()
    other.close()


def vectors(count: int, seed: int) -> np.ndarray:
    """Rows of varied lengths (the store's cosine does not need unit rows)."""
    rng = np.random.default_rng(seed)
    rows = rng.standard_normal((count, DIMS)).astype(np.float32)
    return rows * rng.uniform(0.5, 3.0, (count, 1)).astype(np.float32)


def filled(db: PostgresDb, user: str, count: int, seed: int) -> list[UserMemory]:
    added = [stamped(f"fact {i} of {user}", user, f"{user}-{i:04d}") for i in range(count)]
    db.upsert_memories(added)
    rows = vectors(count, seed)
    rows[7] = rows[11] = rows[3]  # three memories with one vector: a tie, ranked by id
    db.set_embeddings(MODEL, list(zip(added, rows, strict=True)))
    return added


def search(
    db: PostgresDb,
    user: str,
    target: np.ndarray,
    limit: int | None = 10,
    offset: int = 0,
    centering: float = 0.0,
) -> list[tuple[str, float]]:
    found = db.semantic_search(
        MemoryQuery(user_id=user, limit=limit, offset=offset), target, MODEL, centering=centering
    )
    return [(r.memory.memory_id or "", r.score) for r in found]


def same(held: list[tuple[str, float]], in_database: list[tuple[str, float]]) -> None:
    assert [i for i, _ in held] == [i for i, _ in in_database]
    assert [s for _, s in held] == pytest.approx([s for _, s in in_database], abs=1e-5)


def warmed(db: PostgresDb, user: str, target: np.ndarray) -> None:
    """Searched ``READ_AFTER`` times at one generation: the last search reads the user's
    vectors, if they were not held already."""
    for _ in range(READ_AFTER):
        search(db, user, target)
    assert db._held.cache.peek((user, MODEL, DIMS)) is not None


def test_held_vectors_answer_as_the_database_does(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    holding, other = stores
    filled(holding, "ava", 300, seed=1)
    filled(holding, "ben", 50, seed=2)
    targets = [vectors(1, seed)[0] for seed in range(10, 16)]
    targets.append(vectors(300, 1)[3])  # the tied vector itself: three memories at the top
    first = search(holding, "ava", targets[0])  # in the database, and noted
    assert holding._held.reads == 0
    same(first, search(other, "ava", targets[0]))
    for target in targets:
        for page in ({}, {"limit": 1}, {"limit": 2, "offset": 1}, {"limit": None}):
            for centering in (0.0, 0.5):
                held = search(holding, "ava", target, centering=centering, **page)
                expected = search(other, "ava", target, centering=centering, **page)
                if centering:  # the mean of unit rows here, of the stored rows there
                    assert {i for i, _ in held[:3]} & {i for i, _ in expected[:3]}
                else:
                    same(held, expected)
    assert holding._held.reads == 1  # read once, at the READ_AFTER-th search
    top = search(holding, "ava", targets[-1], limit=3)
    assert [i for i, _ in top] == ["ava-0003", "ava-0007", "ava-0011"]
    assert [i for i, _ in search(holding, "ava", targets[-1], limit=1, offset=1)] == ["ava-0007"]
    assert {i for i, _ in search(holding, "ben", targets[0], limit=None)} <= {
        f"ben-{i:04d}" for i in range(50)
    }


def test_this_process_writes_patch_the_held_vectors(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    holding, other = stores
    added = filled(holding, "ava", 200, seed=3)
    target = vectors(1, 40)[0]
    warmed(holding, "ava", target)
    reads = holding._held.reads

    new = stamped("a memory added later", "ava", "ava-new")
    holding.upsert_memories([new])
    holding.set_embeddings(MODEL, [(new, target * 3)])
    assert search(holding, "ava", target)[0][0] == "ava-new"

    changed = stamped("fact 5 of ava, changed", "ava", "ava-0005")
    holding.update_memory(changed)  # a new text: its vector goes
    same(search(holding, "ava", target, limit=None), search(other, "ava", target, limit=None))
    assert "ava-0005" not in [i for i, _ in search(holding, "ava", target, limit=None)]
    holding.set_embeddings(MODEL, [(changed, target)])
    assert [i for i, _ in search(holding, "ava", target, limit=2)] == ["ava-0005", "ava-new"]

    holding.delete_memories(["ava-new", added[0].memory_id or ""], "ava")
    held = search(holding, "ava", target, limit=None)
    same(held, search(other, "ava", target, limit=None))
    assert "ava-new" not in [i for i, _ in held]
    assert len(held) == 199 - 1 + 1  # 200 less the first, the changed one embedded again

    holding.write_batch(
        WriteBatch("ava", deletes=("ava-0005",), adds=(stamped("one more", "ava", "ava-more"),))
    )
    same(search(holding, "ava", target, limit=None), search(other, "ava", target, limit=None))
    assert holding._held.reads == reads  # every change read alone, not every vector


def test_another_process_writes_and_vectors_are_seen_by_the_next_search(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    holding, other = stores
    filled(holding, "ava", 100, seed=5)
    target = vectors(1, 50)[0]
    warmed(holding, "ava", target)

    late = stamped("added by another process", "ava", "ava-late")
    other.upsert_memories([late])  # with no vector yet
    warmed(holding, "ava", target)
    assert "ava-late" not in [i for i, _ in search(holding, "ava", target, limit=None)]
    other.set_embeddings(MODEL, [(late, target)])  # storing a vector moves the generation
    assert search(holding, "ava", target)[0][0] == "ava-late"

    warmed(holding, "ava", target)
    other.delete_memories(["ava-late"], "ava")
    assert search(holding, "ava", target)[0][0] != "ava-late"
    other.clear_memories("ava")
    assert search(holding, "ava", target) == []


def test_a_batch_rolled_back_leaves_no_change_to_patch_from(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    """The batch moved the generation, then failed: another process's write takes the
    same generation, and the held vectors must not be patched as if it were the batch's."""
    holding, other = stores
    filled(holding, "ava", 100, seed=6)
    late = stamped("embedded by another process", "ava", "ava-y")
    holding.upsert_memories([late])
    other.upsert_memories([stamped("someone else's", "ben", "taken")])
    target = vectors(1, 60)[0]
    warmed(holding, "ava", target)
    failing = WriteBatch(
        "ava", adds=(stamped("kept?", "ava", "ava-x"), stamped("no", "ava", "taken"))
    )
    with pytest.raises(ConflictError):
        holding.write_batch(failing)
    other.set_embeddings(MODEL, [(late, target)])  # one write: the batch's generation
    assert search(holding, "ava", target)[0][0] == "ava-y"


def test_threads_writing_and_searching_at_once_leave_the_held_vectors_right(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    """Two threads write (adds with their vectors, updates, deletes, a batch) while two
    search, and another process writes too: afterwards the held answer is the database's."""
    holding, other = stores
    filled(holding, "ava", 120, seed=10)
    target = vectors(1, 100)[0]
    warmed(holding, "ava", target)
    rows = vectors(60, 101)

    def writer(store: PostgresDb, name: str) -> None:
        for i in range(15):
            new = stamped(f"{name} wrote {i}", "ava", f"ava-{name}-{i}")
            store.upsert_memories([new])
            store.set_embeddings(MODEL, [(new, rows[i + (30 if name == "b" else 0)])])
            if i % 3 == 1:
                store.update_memory(stamped(f"{name} changed {i}", "ava", f"ava-{i:04d}"))
            if i % 4 == 2:
                store.delete_memories([f"ava-{name}-{i - 1}"], "ava")
            if i % 5 == 3:
                store.write_batch(WriteBatch("ava", deletes=(f"ava-{i + 40:04d}",)))

    def searcher() -> None:
        for _ in range(25):
            search(holding, "ava", target, limit=None)

    together(
        [
            lambda: writer(holding, "a"),
            lambda: writer(holding, "b"),
            lambda: writer(other, "c"),
            searcher,
            searcher,
        ]
    )
    for _ in range(2):  # at the generation now: from the database, then held
        same(search(holding, "ava", target, limit=None), search(other, "ava", target, limit=None))
    holding.upsert_memories([stamped("last", "ava", "ava-last")])  # patched in
    same(search(holding, "ava", target, limit=None), search(other, "ava", target, limit=None))


def test_a_savepoint_rolled_back_forgets_its_moves(url: str) -> None:
    held = HeldVectors(Names(None, "m", "s"), 1 << 20)
    with held.transaction():
        held.moved([("ava", 1)], ["a"])
        with contextlib.suppress(RuntimeError), held.transaction():
            held.moved([("ava", 2)], ["b"])
            raise RuntimeError
    assert held._journal.written("ava", 0, 1) == Written(frozenset({"a"}), False)
    assert held._journal.written("ava", 0, 2) is None
    with contextlib.suppress(RuntimeError), held.transaction():
        held.moved([("ava", 2)], ["c"], deleted=True)
        raise RuntimeError
    assert held._journal.written("ava", 1, 2) is None
    held.moved([("ava", 2)], ["d"])  # outside a transaction: committed
    assert held._journal.written("ava", 1, 2) == Written(frozenset({"d"}), False)


def test_a_user_searched_between_own_writes_is_read_and_another_process_counts_anew(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    """An agent that writes between its searches: only this process's writes moved the
    generation, so its searches count towards reading the vectors; another process's
    write starts the count again."""
    holding, other = stores
    filled(holding, "ava", 40, seed=8)
    target = vectors(1, 80)[0]
    for i in range(READ_AFTER):
        assert holding._held.reads == 0
        search(holding, "ava", target)
        holding.upsert_memories([stamped(f"one more {i}", "ava", f"ava-more-{i}")])
    assert holding._held.reads == 1
    filled(holding, "ben", 40, seed=9)
    for _ in range(READ_AFTER - 1):
        search(holding, "ben", target)
    other.upsert_memories([stamped("from elsewhere", "ben", "ben-other")])
    for _ in range(READ_AFTER - 1):
        search(holding, "ben", target)
    assert holding._held.reads == 1  # each time in the database
    search(holding, "ben", target)
    assert holding._held.reads == 2
    same(search(holding, "ben", target, limit=None), search(other, "ben", target, limit=None))


def test_the_count_to_embed_is_kept_while_the_generation_stays(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    holding, other = stores
    added = [stamped(f"fact {i}", "ava", f"ava-{i}") for i in range(5)]
    holding.upsert_memories(added)
    assert holding.count_memories_to_embed("ava", MODEL) == 5
    assert holding.count_memories_to_embed("ava", "another-model") == 5
    with holding._connection() as conn:
        generation = holding._held.generation(conn, "ava")
    assert holding._vectors._to_embed.get("ava", MODEL, generation) == 5  # kept
    rows = vectors(2, 90)
    other.set_embeddings(MODEL, [(added[0], rows[0])])  # another process's vector
    assert holding.count_memories_to_embed("ava", MODEL) == 4
    holding.set_embeddings(MODEL, [(added[1], rows[1])])
    assert holding.count_memories_to_embed("ava", MODEL) == 3
    other.upsert_memories([stamped("one more", "ava", "ava-more")])
    assert holding.count_memories_to_embed("ava", MODEL) == 4
    other.delete_memories(["ava-0", "ava-4"], "ava")
    assert holding.count_memories_to_embed("ava", MODEL) == 3
    assert holding.count_memories_to_embed("ava", "another-model") == 4
    assert holding.count_memories_to_embed(None, MODEL) == 3


def test_no_cache_means_every_search_in_the_database(
    stores: tuple[PostgresDb, PostgresDb],
) -> None:
    other = stores[1]
    filled(other, "ava", 30, seed=7)
    answers = [search(other, "ava", vectors(1, 70)[0]) for _ in range(3)]
    assert answers[0] == answers[2]
    assert (other._held.reads, other._held.cache.nbytes) == (0, 0)
