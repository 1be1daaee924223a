"""The order and page of a memory listing in Python (the in-process store, Redis): a page
near the top is picked without sorting everything, and is the page a full sort gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from noted import InMemoryDb
from noted.db._client_search import sort_memories
from noted.db.base import SORT_FIELDS, SORT_ORDERS, MemoryQuery, WriteBatch
from noted.schema import UserMemory

_START = datetime(2026, 1, 1, tzinfo=UTC)
_pages = st.one_of(st.none(), st.integers(0, 8))


@st.composite
def _memories(draw: st.DrawFn, unique_ids: bool) -> list[UserMemory]:
    """Up to 600 memories with few distinct times, so that equal times are common, and
    (unless ``unique_ids``) few distinct ids, so that equal times and ids are too."""
    count = draw(st.integers(0, 600))
    rnd = draw(st.randoms(use_true_random=False))

    def memory(n: int) -> UserMemory:
        memory_id = rnd.choice("abc") + (f"-{n}" if unique_ids else "")
        created, updated = (_START + timedelta(seconds=rnd.randrange(7)) for _ in "cu")
        return UserMemory(
            memory=f"fact {n}",
            user_id="ava",
            memory_id=memory_id,
            created_at=created,
            updated_at=updated,
        )

    return [memory(n) for n in range(count)]


def _query(sort_by: str, sort_order: str, limit: int | None, offset: int) -> MemoryQuery:
    return MemoryQuery(
        "ava",
        sort_by=sort_by,  # type: ignore[arg-type]
        sort_order=sort_order,  # type: ignore[arg-type]
        limit=limit,
        offset=offset,
    )


def _fully_sorted(found: list[UserMemory], query: MemoryQuery) -> list[UserMemory]:
    ordered = sorted(
        found,
        key=lambda m: (getattr(m, query.sort_by), m.memory_id),
        reverse=query.sort_order == "desc",
    )
    end = None if query.limit is None else query.offset + query.limit
    return ordered[query.offset : end]


_queries = st.builds(
    _query,
    st.sampled_from(SORT_FIELDS),
    st.sampled_from(SORT_ORDERS),
    _pages,
    st.integers(0, 8),
)


@settings(max_examples=150, deadline=None)
@given(found=_memories(unique_ids=False), query=_queries)
def test_a_page_is_the_page_of_a_full_sort(found: list[UserMemory], query: MemoryQuery) -> None:
    expected = _fully_sorted(found, query)
    got = sort_memories(list(found), query)
    assert [id(m) for m in got] == [id(m) for m in expected]  # the same objects: stable


@settings(max_examples=40, deadline=None)
@given(found=_memories(unique_ids=True), query=_queries)
def test_the_in_process_stores_listing_is_the_page_of_a_full_sort(
    found: list[UserMemory], query: MemoryQuery
) -> None:
    db = InMemoryDb()
    db.upsert_memories(found)
    listed = db.list_memories(query)
    expected = _fully_sorted(found, query)
    assert [(m.memory_id, m.memory) for m in listed] == [(m.memory_id, m.memory) for m in expected]


class _CountedTime(datetime):
    """A datetime that counts how often it is compared (sorting keys compare them)."""

    comparisons = 0

    def __eq__(self, other: object) -> bool:
        _CountedTime.comparisons += 1
        return super().__eq__(other)

    def __lt__(self, other: datetime) -> bool:
        _CountedTime.comparisons += 1
        return super().__lt__(other)

    def __gt__(self, other: datetime) -> bool:
        _CountedTime.comparisons += 1
        return super().__gt__(other)

    __hash__ = datetime.__hash__


def test_the_newest_few_of_many_are_picked_without_sorting_them_all() -> None:
    count = 4000
    found = []
    for n in range(count):
        at = _CountedTime.fromtimestamp(1_767_225_600 + (n * 7919) % count, UTC)
        found.append(UserMemory("fact", user_id="ava", memory_id=f"m{n}", updated_at=at))
    for sort_order in SORT_ORDERS:
        query = _query("updated_at", sort_order, 5, 0)
        _CountedTime.comparisons = 0
        got = sort_memories(list(found), query)
        # a key (time, id) is compared to the heap's least about once per memory, each
        # time comparing the times twice (== then <); a full sort compares about
        # log2(4000) = 12 times as often
        assert _CountedTime.comparisons < 3 * count
        assert [m.memory_id for m in got] == [m.memory_id for m in _fully_sorted(found, query)]


def _filtered(found: list[UserMemory], query: MemoryQuery) -> list[UserMemory]:
    from noted.db._client_search import matches

    return _fully_sorted([m for m in found if matches(query, m)], query)


@settings(max_examples=30, deadline=None)
@given(rnd=st.randoms(use_true_random=False))
def test_the_in_process_stores_newest_stay_in_order_through_every_kind_of_write(
    rnd: random.Random,
) -> None:
    """A page of a large user's newest is read from an order the store keeps as memories
    are added (a few, or many at once), overwritten, replaced, deleted and cleared: it must be the page a full sort
    of the memories (filtered) gives, after each write."""
    db = InMemoryDb()
    at = iter(_START + timedelta(seconds=rnd.randrange(40)) for _ in range(10**6))
    made = 0

    def memory(memory_id: str, agent: str | None = None) -> UserMemory:
        nonlocal made
        made += 1
        updated = next(at)
        return UserMemory(
            memory=f"fact {made}",
            topics=[rnd.choice(["tea", "ski", "work"])],
            user_id="ava",
            agent_id=agent,
            memory_id=memory_id,
            created_at=updated,
            updated_at=updated,
        )

    def some_id() -> str:
        return f"m{rnd.randrange(300)}"

    writes = [
        lambda: db.upsert_memories(
            [memory(some_id(), rnd.choice([None, "a"])) for _ in range(rnd.choice([20, 100]))]
        ),
        lambda: db.update_memory(memory(some_id())),
        lambda: db.delete_memories([some_id() for _ in range(5)], "ava"),
        lambda: db.write_batch(
            WriteBatch(
                "ava", deletes=[some_id()], updates=[memory(some_id())], adds=[memory(f"n{made}")]
            )
        ),
        lambda: db.clear_memories("ava"),
    ]
    for _ in range(40):
        rnd.choices(writes, weights=[10, 5, 3, 3, 1])[0]()
        everything = db.list_memories(MemoryQuery("ava"))
        for _ in range(3):
            query = MemoryQuery(
                "ava",
                agent_id=rnd.choice([None, "a"]),
                topics=rnd.choice([(), ("tea",)]),
                updated_before=rnd.choice([None, _START + timedelta(seconds=20)]),
                sort_order=rnd.choice(SORT_ORDERS),  # type: ignore[arg-type]
                limit=rnd.randrange(0, 6),
                offset=rnd.randrange(0, 3),
            )
            listed = [(m.memory_id, m.memory) for m in db.list_memories(query)]
            assert listed == [(m.memory_id, m.memory) for m in _filtered(everything, query)]
