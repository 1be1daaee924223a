"""RedisDb brings a user's cached snapshot up to date after writes by reading only the
memories they wrote, as the user's change log names them (see noted.db.redisdb.changes):
the result must equal a full read after every kind of write, by this store or another,
and a write the log does not name must make it read everything again."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pytest
import redis

from at_once import side_by_side
from noted import MemoryStore, UserMemory
from noted._time import utc_now
from noted.db import _client_search as client_search
from noted.db._client_search import Shape, UserSnapshot
from noted.db.base import SORT_FIELDS, SORT_ORDERS, MemoryQuery, ScoredMemory, WriteBatch
from noted.db.redisdb import RedisDb
from noted.db.redisdb.scripts import LOG_KEPT
from test_redisdb import calls_during, client, db, other, stamped, unit, url

pytestmark = pytest.mark.usefixtures("servers")
__all__ = ["client", "db", "other", "url"]  # the fixtures, shared with test_redisdb

MODEL = "model"
SHAPE: Shape = (MODEL, 8)


@pytest.fixture(autouse=True)
def patched_for_as_long_as_a_test_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot is patched for PATCHED_FOR seconds after its full read: long enough
    here that a slow machine never turns an expected patch into a full read (the test of
    that bound moves the snapshot's time back by PATCHED_FOR, whatever it is)."""
    monkeypatch.setattr(client_search, "PATCHED_FOR", 1e9)


def fresh(db: RedisDb) -> RedisDb:
    """A store with an empty cache on db's keys: what a full read makes."""
    return RedisDb(db.server, memory_table=db.memory_table, session_table=db.session_table)


def state(snapshot: UserSnapshot) -> tuple[Any, ...]:
    vectors = {
        shape: (found.generation, found.keys.tolist(), found.matrix.tobytes())
        for shape, found in (snapshot.vectors or {}).items()
    }
    return (
        snapshot.generation,
        [
            (m.memory_id, m.memory, m.topics, m.input, m.agent_id, m.updated_at, m.created_at)
            for m in snapshot.memories
        ],
        snapshot._documents,
        snapshot._by_id.tolist(),
        snapshot._text_bytes,  # counted anew, or patched: the same size
        vectors,
    )


def snapshot(db: RedisDb, user: str = "ava") -> UserSnapshot:
    return db._snapshot(user, SHAPE)


def full(db: RedisDb, user: str = "ava") -> UserSnapshot:
    reader = fresh(db)
    try:
        return snapshot(reader, user)
    finally:
        reader.close()


def listings(store: MemoryStore, user: str, since: datetime) -> list[object]:
    """Pages of the user's memories in each order, with and without a filter (updated
    ``since``), and the count with it: a store answers them from its kept snapshot (its
    order by each time patched with it) or from the server."""
    found: list[object] = []
    for sort_by in SORT_FIELDS:
        for sort_order in SORT_ORDERS:
            for after in (None, since):
                query = MemoryQuery(
                    user,
                    updated_after=after,
                    sort_by=sort_by,
                    sort_order=sort_order,
                    limit=4,
                    offset=1,
                )
                found.append([(m.memory_id, m.memory) for m in store.list_memories(query)])
    return [*found, store.count_memories(MemoryQuery(user, updated_after=since))]


def embed(store: MemoryStore, memories: Sequence[UserMemory], seed: int = 0) -> None:
    store.set_embeddings(MODEL, [(m, unit(seed + k)) for k, m in enumerate(memories)])


def written_a_month_ago(store: MemoryStore, count: int = 20) -> datetime:
    """``count`` of ava's memories, an hour apart from a month ago, each with a vector;
    that month-old time."""
    base = utc_now() - timedelta(days=30)
    memories = [
        stamped(f"ava fact {i} about tea", f"m{i:02d}", "ava", base + timedelta(hours=i))
        for i in range(count)
    ]
    store.upsert_memories(memories)
    embed(store, memories)
    return base


def random_write(
    store: MemoryStore,
    user: str,
    held: Sequence[UserMemory],
    rng: random.Random,
    step: int,
    first_id: int,
    second: Shape | None = None,
) -> int:
    """One write of a random kind by ``store`` to ``user``, whose memories are ``held``:
    an add of 1 or 3 memories at random times (ids from ``first_id`` on), embeddings (by
    MODEL, or half the time by the ``second`` shape's model), a replace (a third of them
    with the same text), a delete of 1 or 2, or a clear. How many memories it added."""
    base = utc_now() - timedelta(days=1)
    kind = rng.random()
    if kind < 0.35 or not held:
        count = rng.choice((1, 1, 3))
        adds = []
        for n in range(first_id, first_id + count):
            when = base + timedelta(seconds=rng.randrange(100_000))
            adds.append(stamped(f"{user} fact {n}", f"i{n:04d}", user, when))
        store.upsert_memories(adds)
        return count
    if kind < 0.6:
        chosen = rng.sample(list(held), min(len(held), rng.choice((1, 2))))
        if second is None or rng.random() < 0.5:
            embed(store, chosen, rng.randrange(1000))
        else:
            vectors = [(m, unit(rng.randrange(1000), second[1])) for m in chosen]
            store.set_embeddings(second[0], vectors)
    elif kind < 0.8:
        target = rng.choice(held)
        text = target.memory if rng.random() < 0.3 else f"{user} edited {step}"
        store.update_memory(stamped(text, target.memory_id or "", user))
    elif kind < 0.97:
        gone = rng.sample(list(held), min(len(held), rng.choice((1, 2))))
        store.delete_memories([m.memory_id or "" for m in gone], user)
    else:
        store.clear_memories(user)
    return 0


def assert_patched(db: RedisDb, client: redis.Redis, user: str = "ava") -> None:
    """The next read of the user's snapshot reads no memory but those written, and
    equals a full read."""
    used = calls_during(client, lambda: snapshot(db, user))
    assert "zrange" not in used, used  # no full read of the user's memories
    assert state(snapshot(db, user)) == state(full(db, user))


def test_every_kind_of_write_is_patched_in_and_equals_a_full_read(
    db: RedisDb, other: RedisDb, client: redis.Redis
) -> None:
    base = written_a_month_ago(db)
    snapshot(db)  # the cache holds the user now
    bob = stamped("bob likes tea", "b1", "bob")
    steps: list[Callable[[], object]] = [
        lambda: db.upsert_memories([stamped("ava likes skiing", "n1", "ava")]),
        lambda: embed(db, [stamped("ava likes skiing", "n1", "ava")], 100),
        lambda: db.upsert_memories(
            [stamped(f"ava batch {i}", f"n{i + 2}", "ava") for i in range(5)]
        ),
        lambda: db.update_memory(stamped("ava fact 3 changed", "m03", "ava")),  # moves, no vector
        lambda: db.update_memory(stamped("ava fact 5 about tea", "m05", "ava")),  # same text
        lambda: embed(db, [stamped("ava fact 3 changed", "m03", "ava")], 200),
        lambda: db.delete_memories(["m00", "m07", "n3"], "ava"),
        lambda: db.upsert_memories(  # back in the middle of the order (an older time)
            [stamped("ava fact 7 again", "m07", "ava", base + timedelta(hours=7, minutes=30))]
        ),
        lambda: db.upsert_memories([bob]),  # another user's write
        lambda: other.upsert_memories([stamped("ava from elsewhere", "o1", "ava")]),
        lambda: embed(other, [stamped("ava from elsewhere", "o1", "ava")], 300),
        lambda: db.write_batch(
            WriteBatch(
                "ava",
                deletes=["m10"],
                updates=[stamped("ava fact 11 edited", "m11", "ava")],
                adds=[stamped("ava batch add", "w1", "ava")],
            )
        ),
        lambda: db.delete_memories(["m19"], "ava"),  # the newest
        lambda: db.clear_memories("ava"),
        lambda: db.upsert_memories([stamped("ava starts again", "m00", "ava")]),
    ]
    for step in steps:
        step()
        assert_patched(db, client)
    assert [m.memory for m in snapshot(db).memories] == ["ava starts again"]


def test_searches_after_patches_equal_those_of_a_store_that_read_everything(
    db: RedisDb, client: redis.Redis
) -> None:
    memories = [stamped(f"tea cup {i % 4} green {i}", f"m{i:02d}", "ava") for i in range(30)]
    db.upsert_memories(memories)
    embed(db, memories)
    query = MemoryQuery("ava", limit=7)
    db.keyword_search(query, "tea")
    db.semantic_search(query, unit(3), MODEL)
    db.upsert_memories([stamped("green tea cup", "x1", "ava")])
    embed(db, [stamped("green tea cup", "x1", "ava")], 3)
    db.update_memory(stamped("black coffee cup", "m04", "ava"))
    db.delete_memories(["m05"], "ava")
    reader = fresh(db)
    try:
        for text in ("green tea", "cup 3", "coffee"):
            keyword = calls_during(client, lambda t=text: db.keyword_search(query, t))
            assert "zrange" not in keyword
            assert db.keyword_search(query, text) == reader.keyword_search(query, text)
        for seed in range(5):
            got = db.semantic_search(query, unit(seed), MODEL)
            assert got == reader.semantic_search(query, unit(seed), MODEL)
    finally:
        reader.close()


def generation_key(db: RedisDb, user: str) -> str:
    return f"{db.memory_table}:gen:{len(user.encode())}:{user}"


def log_key(db: RedisDb, user: str) -> str:
    return f"{db.memory_table}:chg:{len(user.encode())}:{user}"


def setup_cached(db: RedisDb, count: int = 10) -> list[UserMemory]:
    memories = [stamped(f"ava fact {i}", f"m{i:02d}", "ava") for i in range(count)]
    db.upsert_memories(memories)
    embed(db, memories)
    snapshot(db)
    return memories


def assert_read_again(db: RedisDb, client: redis.Redis) -> None:
    used = calls_during(client, lambda: snapshot(db))
    assert used.get("zrange", 0) >= 1, used
    assert state(snapshot(db)) == state(full(db))


@pytest.mark.parametrize(
    "unnamed",
    [
        "a write the log does not name",
        "a log lost",
        "more writes than the log keeps",
        "a write of more ids than a log entry lists",
    ],
)
def test_a_write_the_log_does_not_name_means_a_full_read(
    db: RedisDb, client: redis.Redis, unnamed: str
) -> None:
    setup_cached(db)
    if unnamed == "a write the log does not name":
        # a store without the log (an older version) changes a memory and the generation
        client.hset(f"{db.memory_table}:m:m01", "memory", "changed behind the log")
        client.incr(generation_key(db, "ava"))
    elif unnamed == "a log lost":
        db.upsert_memories([stamped("ava new", "n1", "ava")])
        client.delete(log_key(db, "ava"))
    elif unnamed == "more writes than the log keeps":
        for i in range(LOG_KEPT + 1):
            db.upsert_memories([stamped(f"ava new {i}", f"n{i}", "ava")])
    else:
        db.upsert_memories([stamped(f"ava bulk {i}", f"b{i:03d}", "ava") for i in range(257)])
    assert_read_again(db, client)
    if unnamed == "a write the log does not name":
        assert "changed behind the log" in [m.memory for m in snapshot(db).memories]
    db.upsert_memories([stamped("ava after", "z1", "ava")])
    if unnamed in ("a write the log does not name", "a log lost"):
        # the log has no entry for the generation read: its write cannot be told from
        # another that took the same generation, so everything is read once more
        assert_read_again(db, client)
        db.upsert_memories([stamped("ava after that", "z2", "ava")])
    assert_patched(db, client)  # and the next write is patched in again


def test_as_many_writes_as_the_log_keeps_are_patched_and_the_log_stays_short(
    db: RedisDb, client: redis.Redis
) -> None:
    setup_cached(db)
    for i in range(LOG_KEPT - 1):  # the write the snapshot was read at, then these
        db.upsert_memories([stamped(f"ava new {i}", f"n{i:02d}", "ava")])
    assert_patched(db, client)
    for i in range(LOG_KEPT + 4):
        db.upsert_memories([stamped(f"ava newer {i}", f"x{i:02d}", "ava")])
    assert client.llen(log_key(db, "ava")) == LOG_KEPT
    assert 0 < client.ttl(log_key(db, "ava")) <= 3600


def test_an_earlier_snapshot_is_untouched_by_a_patch(db: RedisDb) -> None:
    setup_cached(db)
    before = snapshot(db)
    kept = state(before)
    db.upsert_memories([stamped("ava new", "n1", "ava")])
    embed(db, [stamped("ava new", "n1", "ava")], 50)
    db.delete_memories(["m02"], "ava")
    after = snapshot(db)
    assert after is not before and state(before) == kept
    assert len(after.memories) == len(before.memories)


def test_the_count_to_embed_follows_the_log(
    db: RedisDb, other: RedisDb, client: redis.Redis
) -> None:
    memories = [stamped(f"ava fact {i}", f"m{i:02d}", "ava") for i in range(40)]
    db.upsert_memories(memories)
    embed(db, memories[:30])
    assert db.count_memories_to_embed("ava", MODEL) == 10
    steps: list[Callable[[], object]] = [
        lambda: other.upsert_memories([stamped("ava new", "n1", "ava")]),
        lambda: embed(other, memories[30:33]),
        lambda: other.update_memory(stamped("ava fact 1 changed", "m01", "ava")),
        lambda: other.delete_memories(["m35", "m02"], "ava"),
        lambda: embed(other, [stamped("ava new", "n1", "ava")]),
        lambda: other.set_embeddings("another", [(memories[3], unit(1))]),
        lambda: other.clear_memories("ava"),
    ]
    for step in steps:
        step()
        used = calls_during(client, lambda: db.count_memories_to_embed("ava", MODEL))
        assert "zrange" not in used, used  # the memories written only
        reader = fresh(db)
        try:
            assert db.count_memories_to_embed("ava", MODEL) == reader.count_memories_to_embed(
                "ava", MODEL
            )
        finally:
            reader.close()
    assert db.count_memories_to_embed("ava", MODEL) == 0


def test_random_writes_by_two_stores_keep_the_snapshot_equal_to_a_full_read(
    db: RedisDb, other: RedisDb, client: redis.Redis
) -> None:
    rng = random.Random(18)
    users = ("ava", "bob")
    next_id = 0
    for user in users:
        snapshot(db, user)
        db._snapshot(user, ("other-model", 4))
    for step in range(200):
        store = db if rng.random() < 0.6 else other
        user = rng.choice(users)
        held = snapshot(store, user).memories
        next_id += random_write(store, user, held, rng, step, next_id, ("other-model", 4))
        if step % 2:
            for looked in users:
                snapshot(db, looked)
                got = db._snapshot(looked, ("other-model", 4))
                assert state(got) == state(full_with_both(db, looked)), step
                assert_same_keyword_results(db, looked, f"{looked} fact edited {step % 7}")
                reader, since = fresh(db), utc_now() - timedelta(hours=12)
                try:
                    assert listings(db, looked, since) == listings(reader, looked, since), step
                finally:
                    reader.close()
    assert next_id > 50
    assert db.cache.get("ava") is not None


def assert_same_keyword_results(db: RedisDb, user: str, text: str) -> None:
    """The snapshot's keyword index, patched along, ranks as one made afresh."""
    reader = fresh(db)
    try:
        for query in (MemoryQuery(user), MemoryQuery(user, limit=3)):
            assert db.keyword_search(query, text) == reader.keyword_search(query, text)
    finally:
        reader.close()


def full_with_both(db: RedisDb, user: str) -> UserSnapshot:
    reader = fresh(db)
    try:
        reader._snapshot(user, SHAPE)
        return reader._snapshot(user, ("other-model", 4))
    finally:
        reader.close()


def test_two_patches_of_one_snapshot_keep_their_own_rows() -> None:
    """Rows appended after the matrix go into spare rows that only the first patch of a
    snapshot may take: a second patch of the same snapshot (another thread's) copies."""
    from noted.db.redisdb.changes import upd_order
    from noted.retrieval.vectors import UserVectors

    when = utc_now()
    memories = [stamped(f"fact {i}", f"m{i}", "ava", when + timedelta(seconds=i)) for i in range(4)]
    matrix = np.stack([unit(i) for i in range(4)])
    base = UserSnapshot(1, memories, {SHAPE: UserVectors(1, np.arange(4), matrix)})

    def patch(snapshot: UserSnapshot, name: str, seed: int) -> UserSnapshot:
        new = stamped(name, name, "ava", when + timedelta(minutes=seed))
        return snapshot.patched(
            snapshot.generation + 1, {name}, [new], [(MODEL, unit(seed))], upd_order
        )

    first = patch(base, "n1", 10)
    second = patch(first, "n2", 11)
    third = patch(first, "n3", 12)  # first's spare rows are second's now
    fourth = patch(second, "n4", 13)  # second's are its own to extend
    for snapshot, seeds in (
        (first, [10]),
        (second, [10, 11]),
        (third, [10, 12]),
        (fourth, [10, 11, 13]),
    ):
        got = (snapshot.vectors or {})[SHAPE]
        want = np.concatenate([matrix, np.stack([unit(s) for s in seeds])])
        assert np.array_equal(got.matrix, want)
        assert got.keys.tolist() == list(range(4 + len(seeds)))
    assert (base.vectors or {})[SHAPE].matrix.shape == (4, 8)


def test_threads_writing_and_searching_end_equal_to_a_full_read(db: RedisDb) -> None:
    """Writers add and embed while searchers patch the shared snapshot from whatever
    generation they find: every patch takes spare rows only once, so none overwrites
    another's rows."""

    setup_cached(db, 50)
    failures: list[BaseException] = []

    def write(name: str) -> None:
        try:
            for i in range(40):
                memory = stamped(f"{name} fact {i}", f"{name}{i:02d}", "ava")
                db.upsert_memories([memory])
                embed(db, [memory], 1000 * len(name) + i)
        except BaseException as exc:  # reported below
            failures.append(exc)

    def search() -> None:
        try:
            for i in range(80):
                db.semantic_search(MemoryQuery("ava", limit=5), unit(i), MODEL)
                db.keyword_search(MemoryQuery("ava", limit=5), f"fact {i % 40}")
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in ("w", "xx")]
    threads += [threading.Thread(target=search) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    assert state(snapshot(db)) == state(full(db))
    reader = fresh(db)
    try:
        for i in range(10):
            query = MemoryQuery("ava", limit=8)
            assert db.semantic_search(query, unit(i), MODEL) == reader.semantic_search(
                query, unit(i), MODEL
            )
    finally:
        reader.close()


def test_writes_the_server_lost_are_not_patched_over(db: RedisDb, client: redis.Redis) -> None:
    """A failover to a replica that lagged (here: the keys restored from a copy) loses the
    last writes, and new ones take their generations: the write the snapshot was read at
    has another token in the log now, so the snapshot is read whole again."""
    writer = fresh(db)
    writer.upsert_memories([stamped("ava fact zero", "m0", "ava")])
    saved = {key: client.dump(key) for key in client.scan_iter(f"{db.memory_table}:*")}
    writer.upsert_memories([stamped("ava fact lost one", "lost1", "ava")])
    writer.upsert_memories([stamped("ava fact lost two", "lost2", "ava")])
    assert len(snapshot(db).memories) == 3
    for key in client.scan_iter(f"{db.memory_table}:*"):
        client.delete(key)
    for key, value in saved.items():
        client.restore(key, 0, value, replace=True)
    for i in range(3):  # past the generation the reader holds
        writer.upsert_memories([stamped(f"ava fact new {i}", f"new{i}", "ava")])
    writer.close()
    assert_read_again(db, client)
    assert sorted(m.memory_id or "" for m in snapshot(db).memories) == [
        "m0",
        "new0",
        "new1",
        "new2",
    ]


def test_a_snapshot_is_read_whole_again_a_minute_after_its_last_full_read(
    db: RedisDb, client: redis.Redis
) -> None:
    """A write whose log entry was lost (a process stopped between them) is read by the
    next full read: a snapshot is patched for PATCHED_FOR seconds after it was read whole."""
    setup_cached(db)
    client.hset(f"{db.memory_table}:m:m01", "memory", "changed behind the log")
    db.upsert_memories([stamped("ava new", "n1", "ava")])
    assert "zrange" not in calls_during(client, lambda: snapshot(db))  # patched: stale
    assert "changed behind the log" not in [m.memory for m in snapshot(db).memories]
    snapshot(db).loaded_at -= client_search.PATCHED_FOR  # as if a minute had passed
    db.upsert_memories([stamped("ava newer", "n2", "ava")])
    assert_read_again(db, client)
    assert "changed behind the log" in [m.memory for m in snapshot(db).memories]
    db.upsert_memories([stamped("ava newest", "n3", "ava")])
    assert_patched(db, client)


def test_the_count_keeps_ids_only_while_they_are_few(db: RedisDb) -> None:
    memories = [stamped(f"ava fact {i}", f"m{i:03d}", "ava") for i in range(300)]
    db.upsert_memories(memories)
    assert db.count_memories_to_embed("ava", MODEL) == 300
    kept = db._pending.entry("ava", MODEL)
    assert kept is not None and kept.ids is None  # 300 ids are not kept
    embed(db, memories[:100])
    assert db.count_memories_to_embed("ava", MODEL) == 200
    kept = db._pending.entry("ava", MODEL)
    assert kept is not None and kept.ids is not None and len(kept.ids) == 200
    db.upsert_memories([stamped(f"ava more {i}", f"x{i:02d}", "ava") for i in range(60)])
    assert db.count_memories_to_embed("ava", MODEL) == 260
    kept = db._pending.entry("ava", MODEL)
    assert kept is not None and kept.ids is None  # past 256 after a patch: dropped


T = TypeVar("T")


def slowed(real: Callable[..., T], calls: list[object]) -> Callable[..., T]:
    """``real``, each call counted and held a while (the other threads arrive meanwhile)."""

    def held(*args: Any) -> T:
        calls.append(args)
        time.sleep(0.3)
        return real(*args)

    return held


def read_once(
    monkeypatch: pytest.MonkeyPatch,
    owner: object,
    name: str,
    search: Callable[[], list[ScoredMemory]],
) -> list[ScoredMemory]:
    """``search()`` on four threads at once, ``owner.name`` (what reads or builds what
    they share) held a while on its first call: the answer, which all must give, when
    ``owner.name`` ran once."""
    calls: list[object] = []
    monkeypatch.setattr(owner, name, slowed(getattr(owner, name), calls))
    found = side_by_side(4, search)
    assert len(calls) == 1
    assert all(answer == found[0] for answer in found)
    return found[0]


def a_write_read_once(db: MemoryStore, monkeypatch: pytest.MonkeyPatch, owner: object) -> None:
    """An agent's selection searches a user on several threads at once (the message, the
    pinned facts): after a write, one of them reads what changed (``owner._patched``)
    and the others take its snapshot, rather than each reading and patching it."""
    written_a_month_ago(db)
    query = MemoryQuery(user_id="ava", limit=3)
    db.keyword_search(query, "tea")  # the snapshot, kept
    db.upsert_memories([stamped("ava drinks green tea now", "n1", "ava")])
    found = read_once(monkeypatch, owner, "_patched", lambda: db.keyword_search(query, "green tea"))
    assert found[0].memory.memory == "ava drinks green tea now"


def test_searches_side_by_side_after_a_write_read_it_once(
    db: RedisDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_write_read_once(db, monkeypatch, RedisDb)


def a_manager_sized_batch(db: MemoryStore, count: int = 20) -> None:
    """A write_batch of ``count`` updates, a delete and an add to ava's month-old
    memories (``count`` of them)."""
    db.write_batch(
        WriteBatch(
            "ava",
            deletes=[f"m{count - 1:02d}"],
            updates=[
                stamped(f"ava fact {i} about coffee now", f"m{i:02d}", "ava") for i in range(count)
            ],
            adds=[stamped("ava drinks green tea now", "n1", "ava")],
        )
    )


def test_a_batch_of_twenty_updates_is_patched_in(db: RedisDb, client: redis.Redis) -> None:
    written_a_month_ago(db)
    snapshot(db)
    a_manager_sized_batch(db)
    assert_patched(db, client)


def test_a_batch_of_more_updates_than_the_log_keeps_is_patched_in(
    db: RedisDb, client: redis.Redis
) -> None:
    """A batch's updates are one write in the change log, however many there are."""
    written_a_month_ago(db, LOG_KEPT + 16)
    snapshot(db)
    logged = client.llen(log_key(db, "ava"))
    a_manager_sized_batch(db, LOG_KEPT + 16)
    assert client.llen(log_key(db, "ava")) - logged == 3  # the delete, the updates, the add
    assert_patched(db, client)


def test_a_filtered_listing_of_one_user_is_read_from_the_kept_snapshot(
    db: RedisDb, other: RedisDb, client: redis.Redis
) -> None:
    """An agent that sees only its own memories lists its newest with agent_id at every
    turn: the user's kept snapshot answers (one GET while it is current, no script reading
    every memory), and a write by another process is in the next answer."""
    base = utc_now() - timedelta(days=1)
    memories = [
        stamped(f"ava fact {i}", f"m{i:02d}", "ava", base + timedelta(minutes=i)) for i in range(40)
    ]
    for i, m in enumerate(memories):
        m.agent_id = ("a", "b", None)[i % 3]
    db.upsert_memories(memories)
    query = MemoryQuery("ava", agent_id="a", limit=3)
    expected = ["m39", "m36", "m33"]
    assert [m.memory_id for m in db.list_memories(query)] == expected
    used = calls_during(client, lambda: db.list_memories(query))
    assert used.get("get") == 1 and "evalsha" not in used and "zrange" not in used, used
    assert db.count_memories(query) == 14
    listed = db.list_memories(query)
    listed[0].memory = "changed by the caller"  # a copy: the snapshot keeps its own
    assert db.list_memories(query)[0].memory == "ava fact 39"
    newer = stamped("ava newest", "n1", "ava", base + timedelta(hours=2))
    newer.agent_id = "a"
    other.upsert_memories([newer])
    assert [m.memory_id for m in db.list_memories(query)] == ["n1", "m39", "m36"]
    assert db.count_memories(query) == 15
    assert [m.memory_id for m in db.list_memories(MemoryQuery("ava", agent_id="b", limit=2))] == [
        "m37",
        "m34",
    ]
