"""The order and page of a memory listing in Python (the in-process store, Redis's and
MongoDB's snapshots): a page near the top is picked without sorting everything, and is the
page a full sort gives."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from noted import InMemoryDb
from noted.db._client_search import UserSnapshot, sort_memories
from noted.db.base import SORT_FIELDS, SORT_ORDERS, MemoryQuery, SortField, WriteBatch
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


def _query(
    sort_by: str,
    sort_order: str,
    limit: int | None,
    offset: int,
    after: tuple[datetime, str] | None = None,
) -> MemoryQuery:
    return MemoryQuery(
        "ava",
        sort_by=sort_by,  # type: ignore[arg-type]
        sort_order=sort_order,  # type: ignore[arg-type]
        limit=limit,
        offset=offset,
        after=after,
    )


def _cursor(rnd: random.Random, seconds: int) -> tuple[datetime, str] | None:
    """None, or a (time, id) that may or may not be a memory's."""
    if rnd.random() < 0.3:
        return None
    return (_START + timedelta(seconds=rnd.randrange(seconds)), f"m{rnd.randrange(300):03d}")


def _fully_sorted(found: list[UserMemory], query: MemoryQuery) -> list[UserMemory]:
    """The query's page by a full sort, the memories up to its ``after`` left out."""
    desc, after = query.sort_order == "desc", query.after

    def key(m: UserMemory) -> tuple[datetime, str]:
        return getattr(m, query.sort_by), m.memory_id or ""

    ordered = sorted(found, key=key, reverse=desc)
    if after is not None:
        ordered = [m for m in ordered if (key(m) < after if desc else key(m) > after)]
    end = None if query.limit is None else query.offset + query.limit
    return ordered[query.offset : end]


_queries = st.builds(
    _query,
    st.sampled_from(SORT_FIELDS),
    st.sampled_from(SORT_ORDERS),
    _pages,
    st.integers(0, 8),
    st.one_of(
        st.none(),
        st.tuples(
            st.integers(0, 7).map(lambda s: _START + timedelta(seconds=s)),
            st.sampled_from(["a", "a-3", "b", "b-40", "c"]),
        ),
    ),
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
                sort_by=rnd.choice(SORT_FIELDS),
                sort_order=rnd.choice(SORT_ORDERS),  # type: ignore[arg-type]
                limit=rnd.randrange(0, 6),
                offset=rnd.randrange(0, 3),
                after=_cursor(rnd, 40),
            )
            listed = [(m.memory_id, m.memory) for m in db.list_memories(query)]
            assert listed == [(m.memory_id, m.memory) for m in _filtered(everything, query)]


@settings(max_examples=60, deadline=None)
@given(rnd=st.randoms(use_true_random=False), ordered_by=st.sampled_from([*SORT_FIELDS, None]))
def test_a_snapshots_listing_is_the_page_of_a_full_sort_through_its_patches(
    rnd: random.Random, ordered_by: SortField | None
) -> None:
    """A snapshot (Redis's, MongoDB's) lists a page of its memories from an order by each
    field that it keeps and patches with it (none for the field its memories are in):
    the page a full sort of the memories that pass the filters gives, after each patch."""
    made = 0

    def memory(memory_id: str) -> UserMemory:
        nonlocal made
        made += 1
        created, updated = (_START + timedelta(seconds=rnd.randrange(30)) for _ in "cu")
        return UserMemory(
            memory=f"fact {made}",
            topics=[rnd.choice(["tea", "ski"])],
            user_id="ava",
            agent_id=rnd.choice([None, "a"]),
            memory_id=memory_id,
            created_at=created,
            updated_at=updated,
        )

    def place(m: UserMemory) -> tuple[datetime, str]:
        return (getattr(m, ordered_by or "created_at"), m.memory_id or "")

    held = {f"m{n:03d}": memory(f"m{n:03d}") for n in range(rnd.randrange(0, 200))}
    snapshot = UserSnapshot(0, sorted(held.values(), key=place), ordered_by=ordered_by)
    for generation in range(1, 12):
        for _ in range(4):
            query = MemoryQuery(
                "ava",
                agent_id=rnd.choice([None, "a"]),
                topics=rnd.choice([(), ("tea",)]),
                updated_after=rnd.choice([None, _START + timedelta(seconds=10)]),
                sort_by=rnd.choice(SORT_FIELDS),
                sort_order=rnd.choice(SORT_ORDERS),  # type: ignore[arg-type]
                limit=rnd.choice([None, 0, 1, 5, 40]),
                offset=rnd.randrange(0, 4),
                after=_cursor(rnd, 30),
            )
            listed = snapshot.listed(query)
            assert [(m.memory_id, m.memory) for m in listed] == [
                (m.memory_id, m.memory) for m in _filtered(list(held.values()), query)
            ]
            assert not {id(m) for m in listed} & {id(m) for m in snapshot.memories}  # copies
        changed = {f"m{rnd.randrange(260):03d}" for _ in range(rnd.choice([1, 3, 30]))}
        rows = [memory(i) for i in sorted(changed) if rnd.random() < 0.7]
        for memory_id in changed:
            held.pop(memory_id, None)
        held.update((m.memory_id or "", m) for m in rows)
        snapshot = snapshot.patched(generation, changed, rows, [None] * len(rows), place)
        assert [m.memory_id for m in snapshot.memories] == [
            m.memory_id for m in sorted(held.values(), key=place)
        ]
