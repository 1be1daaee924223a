"""A keyword search on SqliteDb never waits for SQLite's write lock to index new memories:
while another process holds it, the search ranks the memories the index does not hold yet
itself, as the index would (noted.db.sqlite.pending), and gives what it gives once they
are indexed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw
import pytest

from noted import Memory, SqliteDb, UserMemory
from noted.db.base import MemoryQuery
from noted.db.sqlite.fulltext import MATCH_BUDGET

HOLDER = textwrap.dedent(
    """
    import sys
    import apsw
    conn = apsw.Connection(sys.argv[1])
    conn.execute("BEGIN IMMEDIATE")
    print("held", flush=True)
    sys.stdin.readline()
    conn.execute("ROLLBACK")
    """
)

TOPICS = ["food", "travel", "work"]
WORDS = ["skiing", "tea", "chess", "Lisbon", "running", "jazz", "pottery"]


def fact(i: int) -> UserMemory:
    text = f"Ava enjoys {WORDS[i % len(WORDS)]} and {WORDS[i * 3 % len(WORDS)]} on day {i}"
    return UserMemory(text, topics=[TOPICS[i % 3]], input=f"said {WORDS[i * 5 % len(WORDS)]}")


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds SQLite's write lock on ``path`` (``BEGIN IMMEDIATE``) inside."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "held", child.stderr and child.stderr.read()
        yield
        child.stdin.write("go\n")
        child.stdin.flush()
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


QUERIES = [
    (MemoryQuery("ava", limit=10), "skiing tea", False),
    (MemoryQuery("ava", limit=5, offset=3), "chess Lisbon day", False),
    (MemoryQuery("ava"), "jazz", False),
    (MemoryQuery("ava", topics=("travel",), limit=10), "running tea", False),
    (MemoryQuery("ava", limit=10), "tea pottery", True),
    (MemoryQuery("ava", limit=10), "enjoys", False),
    (MemoryQuery("ava", limit=10, offset=20), "enjoys day", False),
    (MemoryQuery("new", limit=10), "skiing chess", False),
]


def results(db: SqliteDb) -> list[list[tuple[str | None, float]]]:
    return [
        [(found.memory.memory_id, found.score) for found in db.keyword_search(q, t, text_only=o)]
        for q, t, o in QUERIES
    ]


def indexed_rows(path: Path) -> int:
    """How many memories the file's keyword index holds."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return int(conn.execute("SELECT count(*) FROM noted_memories_fts_docsize").fetchone()[0])
    finally:
        conn.close()


def same(a: list[list[tuple[str | None, float]]], b: list[list[tuple[str | None, float]]]) -> None:
    assert [[i for i, _ in page] for page in a] == [[i for i, _ in page] for page in b]
    for page_a, page_b in zip(a, b, strict=True):
        assert [s for _, s in page_a] == pytest.approx([s for _, s in page_b], rel=1e-9)


@pytest.mark.parametrize("indexed", [200, MATCH_BUDGET + 500])
def test_a_search_behind_another_writer_ranks_the_new_memories_itself(
    tmp_path: Path, indexed: int
) -> None:
    """While another process holds the write lock, a search after new adds answers at once
    (it did wait ``busy_timeout`` and fail), with the results it gives once the new
    memories are indexed: the same memories in the same order with the same scores. With
    more than MATCH_BUDGET memories the newest matches of a common word are the ones
    ranked, the new memories among them."""
    path = tmp_path / "pending.db"
    db = SqliteDb(path, busy_timeout=1.0)
    memory = Memory(db=db)
    memory.add_user_memories([fact(i) for i in range(indexed)], user_id="ava")
    assert db.keyword_search(MemoryQuery("ava", limit=1), "tea")  # indexed now
    memory.add_user_memories([fact(i) for i in range(indexed, indexed + 40)], user_id="ava")
    memory.add_user_memories([fact(i) for i in range(7)], user_id="new")
    with write_lock_held(path):
        behind = results(db)
        assert indexed_rows(path) == indexed, "the search indexed while another held the lock"
    caught_up = results(db)  # the lock free: the new memories indexed first
    assert db.keyword_search(MemoryQuery("ava", limit=1), "zzz") == []
    same(behind, caught_up)
    assert any(page for page in behind)
    assert behind[-1], "the new user's memories, none of them indexed, are found"


def test_a_read_only_store_finds_memories_its_writers_have_not_indexed(tmp_path: Path) -> None:
    """A read-only store cannot index: it ranks the memories added since the writers' last
    search itself, and finds them."""
    path = tmp_path / "pending.db"
    writer = Memory(db=SqliteDb(path))
    writer.add_user_memories([fact(i) for i in range(50)], user_id="ava")
    assert writer.search_user_memories("tea", "ava", 1, "keyword")
    added = writer.add_user_memory(UserMemory("Ava bought a kayak"), user_id="ava")
    reader = SqliteDb(path, read_only=True)
    found = reader.keyword_search(MemoryQuery("ava", limit=5), "kayak")
    assert [m.memory.memory_id for m in found] == [added]
    assert [m.memory.memory_id for m in writer.db.keyword_search(MemoryQuery("ava"), "kayak")] == [
        added
    ]


def test_words_past_the_budget_are_kept_alike_behind_another_writer(tmp_path: Path) -> None:
    """Each word of a large user's query is counted up to one past MATCH_BUDGET, and the
    words past it are told apart by their whole counts: "chess" (5,100 memories) is kept
    and "tea" (5,130) left out. Behind another writer the new memories' matches were
    added to the cut counts, and the search gave other memories than it gives once they
    are indexed."""
    path = tmp_path / "pending.db"
    db = SqliteDb(path, busy_timeout=1.0)
    memory = Memory(db=db)
    club = [UserMemory(f"Ava drinks tea at the chess club, evening {i}") for i in range(5_100)]
    memory.add_user_memories(club, user_id="ava")
    assert len(club) > MATCH_BUDGET
    assert db.keyword_search(MemoryQuery("ava", limit=1), "tea")  # indexed now
    new = [UserMemory(f"Ava drinks green tea, day {i}") for i in range(30)]
    added = set(memory.add_user_memories(new, user_id="ava"))
    query = MemoryQuery("ava", limit=20)

    def found() -> list[tuple[str | None, float]]:
        return [(m.memory.memory_id, m.score) for m in db.keyword_search(query, "tea chess")]

    with write_lock_held(path):
        behind = found()
        assert indexed_rows(path) == len(club), "the search indexed while another held the lock"
    caught_up = found()
    same([behind], [caught_up])
    assert caught_up and not {memory_id for memory_id, _ in caught_up} & added  # no chess
