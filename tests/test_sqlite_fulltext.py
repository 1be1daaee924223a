"""SqliteDb's keyword search at a bounded cost for large users (noted.db.sqlite.fulltext):
a large user's commonest query words are left out, a word common beyond the budget is
ranked among its newest matches, other users are searched with every word, and a repeated
search's kept results follow every write, from this process or another."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import pytest

from noted import SqliteDb, UserMemory
from noted.db import MemoryQuery
from noted.db.sqlite.migrations import MIGRATIONS
from noted.sessions import RunResult, new_run_id
from test_sqlite_keyword_terms import old_file

BUDGET = 40
PLACES = ["the station", "her office", "the harbour", "a bakery", "the library", "home"]
DAYS = ["Mondays", "Tuesdays", "Wednesdays", "Thursdays", "Fridays", "weekends"]
KINDS = ["black", "iced", "sweet", "oat milk"]
BY_BARISTA = {0, 1, 2, 18}  # of the short coffee facts: three old ones and a newer one

Found = list[tuple[str | None, float]]


def found(db: SqliteDb, text: str, user: str = "ava", **filters: object) -> Found:
    query = MemoryQuery(user_id=user, limit=10, **filters)  # type: ignore[arg-type]
    return [(r.memory.memory_id, r.score) for r in db.keyword_search(query, text)]


def with_budget(db: SqliteDb, budget: int, text: str, user: str = "ava") -> Found:
    db._fulltext.budget = budget
    try:
        return found(db, text, user)
    finally:
        db._fulltext.budget = BUDGET


def fact(text: str, user: str = "ava", **fields: str) -> UserMemory:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    return UserMemory(
        text,
        user_id=user,
        memory_id=str(uuid.uuid4()),
        created_at=when,
        updated_at=when,
        **fields,  # type: ignore[arg-type]
    )


def ids(memories: list[UserMemory]) -> set[str | None]:
    return {m.memory_id for m in memories}


class Ava:
    """Ava's 20 short coffee facts (oldest), 36 longer ones, two about shellfish and 30
    others; Bob beside her with a few of the same words."""

    def __init__(self, db: SqliteDb) -> None:
        self.short = [
            fact(
                f"Ava drinks {k} coffee at {p}",
                **({"agent_id": "barista"} if n in BY_BARISTA else {}),
            )
            for n, (k, p) in enumerate((k, p) for k in KINDS for p in PLACES)
            if n < 20
        ]
        self.long = [
            fact(f"On {d} Ava buys a coffee at {p} before taking the tram to work")
            for d in DAYS
            for p in PLACES
        ]
        self.rare = [
            fact("Ava is allergic to shellfish", agent_id="coach"),
            fact("Ava had a shellfish reaction at a wedding in 2021"),
        ]
        others = [
            fact(f"Ava's {who} visits her on {d} and they cook pasta together")
            for who in ("sister", "brother", "cousin", "neighbour", "colleague")
            for d in DAYS
        ]
        db.upsert_memories([*self.short, *self.long[:30], *self.rare, *self.long[30:], *others])
        db.upsert_memories(
            [
                fact("Bob drinks coffee with his sister", "bob"),
                fact("Bob avoids shellfish since a trip to Porto", "bob"),
            ]
        )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDb]:
    store = SqliteDb(tmp_path / "memories.db")
    store._fulltext.budget = BUDGET
    yield store
    store.close()


def test_a_large_users_commonest_words_are_left_out(db: SqliteDb) -> None:
    ava = Ava(db)
    assert db.count_memories(MemoryQuery(user_id="ava")) > BUDGET
    both = found(db, "coffee or shellfish?")
    assert both == found(db, "shellfish")  # coffee (56 of Ava's memories) left out
    assert len(both) == 2
    everything = with_budget(db, 10**6, "coffee or shellfish?")
    assert everything[:2] == both[:2] and len(everything) == 10  # and then coffee
    assert found(db, "coffee shellfish", agent_id="coach")[0][0] == ava.rare[0].memory_id


def test_a_word_common_beyond_the_budget_is_ranked_among_its_newest_matches(
    db: SqliteDb,
) -> None:
    ava = Ava(db)
    coffee = [*ava.short, *ava.long]  # in the order written
    newest = ids(coffee[-BUDGET:])
    best = found(db, "coffee")
    assert len(best) == 10 and {i for i, _ in best} <= newest
    whole = with_budget(db, 10**6, "coffee")
    assert {i for i, _ in whole} <= ids(ava.short)  # the short ones rank first over all
    assert {i for i, _ in whole} - newest  # so the bound changed what was found
    # filtered: the filter applies to the newest matches
    barista = found(db, "coffee", agent_id="barista")
    assert [i for i, _ in barista] == [ava.short[18].memory_id]
    db._fulltext.budget = 10**6
    assert len(found(db, "coffee", agent_id="barista")) == len(BY_BARISTA)


def test_of_words_all_beyond_the_budget_the_rarest_is_ranked(db: SqliteDb) -> None:
    """Each word is counted up to one past the budget, so "Ava" (in all 88 of her
    memories) and "coffee" (in 56) counted alike, and the first of the query's words was
    kept: "Ava coffee" ranked her newest memories by "Ava" alone, most of them not about
    coffee, where "coffee Ava" ranked the newest about coffee. The rarest word is kept,
    whatever the order of the words."""
    ava = Ava(db)
    coffee = [*ava.short, *ava.long]  # in the order written
    best = found(db, "Ava coffee")
    assert len(best) == 10 and {i for i, _ in best} <= ids(coffee[-BUDGET:])
    assert found(db, "coffee Ava") == best


def test_a_small_user_beside_a_large_one_is_searched_with_every_word(db: SqliteDb) -> None:
    Ava(db)
    bob = found(db, "coffee or shellfish?", user="bob")
    assert len(bob) == 2
    assert bob == with_budget(db, 10**6, "coffee or shellfish?", user="bob")


def test_word_counts_follow_the_users_writes(db: SqliteDb) -> None:
    Ava(db)
    assert found(db, "coffee or shellfish?") == found(db, "shellfish")
    db.upsert_memories(
        [fact(f"Ava read that shellfish farms grew {n}% in 2020") for n in range(70)]
    )
    # now shellfish is the commoner word of the two (72 to 56): coffee is the one kept
    assert found(db, "coffee or shellfish?") == found(db, "coffee")


def test_a_repeated_search_follows_every_write(db: SqliteDb, tmp_path: Path) -> None:
    Ava(db)
    first = found(db, "shellfish")
    assert found(db, "shellfish") == first
    epipen = fact("Ava carries an epipen for shellfish")
    db.upsert_memories([epipen])
    assert epipen.memory_id in {i for i, _ in found(db, "shellfish")}
    other = SqliteDb(tmp_path / "memories.db")  # another connection, as another process
    try:
        crab = fact("Ava got sick from shellfish and crab in Porto")
        other.upsert_memories([crab])
        assert crab.memory_id in {i for i, _ in found(db, "shellfish")}
        other.delete_memories([epipen.memory_id], "ava")
        assert epipen.memory_id not in {i for i, _ in found(db, "shellfish")}
    finally:
        other.close()


def test_a_word_whose_lowercase_holds_a_combining_mark_is_still_searched(db: SqliteDb) -> None:
    istanbul = fact("Ava flew to İstanbul for a conference")
    db.upsert_memories([istanbul, fact("Ava flew to Lisbon for a wedding")])
    assert [i for i, _ in found(db, "İstanbul?")] == [istanbul.memory_id]


# User ids whose words (or letters, once case and accents are folded) are another's.
NEAR_IDS = [
    "alice",
    "alice smith",
    "Alice Smith",
    "alice-smith",
    "alice.smith@example.com",
    "alice smith jr",
    "İstanbul",
    "istanbul",
    "名前",
    "名前 二",
    "\u00e1",  # á, composed
    "a\u0301",  # á, a and a combining accent
    "a",
]
OWN = 6  # memories each, one more than a page


def near_users(db: SqliteDb) -> dict[str, set[str | None]]:
    """Each of NEAR_IDS with OWN coffee memories; the later users' say "coffee" more often,
    so rank above the earlier ones' in the whole index."""
    written: dict[str, set[str | None]] = {}
    for n, user in enumerate(NEAR_IDS):
        memories = [
            fact(" ".join(["coffee"] * (n + 1)) + f" at place {k}", user) for k in range(OWN)
        ]
        db.upsert_memories(memories)
        written[user] = ids(memories)
    return written


def assert_full_own_pages(db: SqliteDb, written: dict[str, set[str | None]]) -> None:
    for user, own in written.items():
        page = found(db, "coffee", user)
        assert len(page) == OWN and {i for i, _ in page} == own, user
        top = db.keyword_search(MemoryQuery(user_id=user, limit=OWN - 1), "coffee")
        assert len(top) == OWN - 1 and {r.memory.memory_id for r in top} <= own, user
        assert all(r.memory.user_id == user for r in top)


def test_a_user_id_matches_only_its_exact_owner(db: SqliteDb) -> None:
    written = near_users(db)
    assert_full_own_pages(db, written)
    db.upsert_memories([fact("the coffee order", "alice")])  # and after a write
    page = db.keyword_search(MemoryQuery(user_id="alice", limit=20), "coffee order")
    assert len(page) == OWN + 1 and all(r.memory.user_id == "alice" for r in page)


def test_a_file_indexed_by_user_words_is_reindexed_by_exact_owner(tmp_path: Path) -> None:
    new = SqliteDb(tmp_path / "new.db")
    written = near_users(new)
    memories = new.list_memories(MemoryQuery(user_id=None, sort_by="created_at"))
    new.close()
    path = tmp_path / "old.db"
    old_file(path, 5, memories, "user_id")  # the owner column then held the id's words

    db = SqliteDb(path)
    assert db.schema_version() == len(MIGRATIONS)
    assert_full_own_pages(db, written)
    db.close()
    conn = apsw.Connection(str(path))
    users = {r[0] for r in conn.execute("SELECT user_id FROM noted_memories_fts_users")}
    assert users == set(NEAR_IDS)
    indexed = conn.execute("SELECT count(*) FROM noted_memories_fts").fetchone()[0]
    assert indexed == len(NEAR_IDS) * OWN
    conn.close()


def test_a_repeated_search_is_kept_through_writes_that_leave_the_users_memories(
    db: SqliteDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An agent stores its run between its context's search and its memory manager's,
    and the next turn searches for the user's name again: those writes, another user's
    memories and a session summary leave the user's kept results; a write of the user's
    memories (here or in another process) and a memory joining the index do not, and a
    search inside a write transaction keeps nothing."""
    ava = Ava(db)
    searched: list[str] = []
    search = db._fulltext._search

    def counted(*args: Any) -> list[Any]:
        searched.append(args[3])  # the user
        return search(*args)

    monkeypatch.setattr(db._fulltext, "_search", counted)
    first = found(db, "shellfish")
    assert searched == ["ava"]
    db.append_run(RunResult(run_id=new_run_id(), session_id="s1", user_id="ava", input="hi"))
    db.upsert_memories([fact("Bob likes shellfish soup", "bob")])
    assert found(db, "shellfish") == first and searched == ["ava"]
    assert found(db, "shellfish", user="bob") != first and searched == ["ava", "bob"]
    db.update_memory(replace(ava.rare[0], memory="Ava is allergic to all shellfish"))
    assert found(db, "shellfish") != first and searched == ["ava", "bob", "ava"]
    other = SqliteDb(tmp_path / "memories.db")  # another connection, as another process
    try:
        crab = fact("Ava got sick from shellfish and crab in Porto")
        other.upsert_memories([crab])
        assert crab.memory_id in {i for i, _ in found(db, "shellfish")}
        assert searched.count("ava") == 3
    finally:
        other.close()
    kept = found(db, "shellfish")
    assert searched.count("ava") == 3

    def written_then_rolled_back() -> None:
        """A write rolled back takes the generation back: what was read inside it is not
        kept."""
        with db._transaction():
            db.upsert_memories([fact("Ava ate shellfish at last, and was fine")])
            inside = found(db, "shellfish")
            assert found(db, "shellfish") == inside != kept
            assert searched.count("ava") == 5
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError, match="rolled back"):
        written_then_rolled_back()
    assert found(db, "shellfish") == kept and searched.count("ava") == 5
