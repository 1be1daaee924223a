"""MongoDb brings a user's cached snapshot up to date after writes by reading only the
memories they wrote, as the change log in the user's generation document names them (see
noted.db.mongodb.search): the result must equal a full read after every kind of write, by
this store or another, and a write the log does not name must make it read everything."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pymongo
import pytest

from noted._time import utc_now
from noted.db import _client_search as client_search
from noted.db._client_search import UserSnapshot
from noted.db.base import MemoryQuery, WriteBatch
from noted.db.mongodb import MongoDb
from noted.db.mongodb import search as mongo_search
from noted.db.mongodb.search import LOG_KEPT, batch_written, load_snapshot
from test_mongodb import DATABASE, Commands, open_db, same_collections, stamped, url
from test_redis_snapshot_updates import (
    MODEL,
    a_manager_sized_batch,
    a_write_read_once,
    embed,
    listings,
    patched_for_as_long_as_a_test_runs,
    random_write,
    state,
    written_a_month_ago,
)
from test_redisdb import unit

pytestmark = pytest.mark.usefixtures("servers")
__all__ = ["patched_for_as_long_as_a_test_runs", "url"]  # fixtures, shared


@pytest.fixture
def commands() -> Commands:
    return Commands()


@pytest.fixture
def db(url: str, commands: Commands) -> Iterator[MongoDb]:
    client: Any = pymongo.MongoClient(url, event_listeners=[commands])
    store = open_db(url, client=client)
    yield store
    store.close()
    client.close()


@pytest.fixture
def other(db: MongoDb) -> Iterator[MongoDb]:
    store = same_collections(db)
    yield store
    store.close()


def snapshot(store: MongoDb, user: str = "ava") -> UserSnapshot:
    with store._db() as collections:
        return load_snapshot(collections, store.cache, user, vectors=True)


def full(db: MongoDb, user: str = "ava") -> UserSnapshot:
    reader = same_collections(db)
    try:
        return snapshot(reader, user)
    finally:
        reader.close()


def user_wide_reads(db: MongoDb, commands: Commands, action: Callable[[], object]) -> int:
    """How many finds of the memories during ``action`` were not by ids."""
    commands.sent.clear()
    action()
    return sum(
        1
        for c in commands.named("find")
        if c["find"] == db.memory_table and "_id" not in c.get("filter", {})
    )


def assert_patched(db: MongoDb, commands: Commands, user: str = "ava") -> None:
    assert user_wide_reads(db, commands, lambda: snapshot(db, user)) == 0
    assert state(snapshot(db, user)) == state(full(db, user))


def test_every_kind_of_write_is_patched_in_and_equals_a_full_read(
    db: MongoDb, other: MongoDb, commands: Commands
) -> None:
    base = written_a_month_ago(db)
    snapshot(db)
    steps: list[Callable[[], object]] = [
        lambda: db.upsert_memories([stamped("ava likes skiing", "n1", "ava")]),
        lambda: embed(db, [stamped("ava likes skiing", "n1", "ava")], 100),
        lambda: db.upsert_memories([stamped(f"ava batch {i}", f"n{i + 2}") for i in range(5)]),
        lambda: db.update_memory(stamped("ava fact 3 changed", "m03")),
        lambda: embed(db, [stamped("ava fact 3 changed", "m03")], 200),
        lambda: db.set_embeddings(
            "another", [(stamped("ava fact 4 about tea", "m04"), unit(7, 4))]
        ),
        lambda: db.delete_memories(["m00", "m07", "n3"], "ava"),
        lambda: db.upsert_memories(  # back in the middle of the order (an older time)
            [stamped("ava fact 7 again", "m07", "ava", base + timedelta(hours=7, minutes=30))]
        ),
        lambda: db.upsert_memories([stamped("bob likes tea", "b1", "bob")]),
        lambda: other.upsert_memories([stamped("ava from elsewhere", "o1")]),
        lambda: embed(other, [stamped("ava from elsewhere", "o1")], 300),
        lambda: db.write_batch(
            WriteBatch(
                "ava",
                deletes=["m10"],
                updates=[stamped("ava fact 11 edited", "m11")],
                adds=[stamped("ava batch add", "w1")],
            )
        ),
        lambda: db.clear_memories("ava"),
        lambda: db.upsert_memories([stamped("ava starts again", "m00")]),
    ]
    for step in steps:
        step()
        assert_patched(db, commands)
    assert [m.memory for m in snapshot(db).memories] == ["ava starts again"]


def test_searches_and_counts_after_patches_equal_those_of_a_full_read(db: MongoDb) -> None:
    memories = [stamped(f"tea cup {i % 4} green {i}", f"m{i:02d}") for i in range(30)]
    db.upsert_memories(memories)
    embed(db, memories[:25])
    query = MemoryQuery("ava", limit=7)
    db.semantic_search(query, unit(3), MODEL)
    db.upsert_memories([stamped("green tea cup", "x1")])
    embed(db, [stamped("green tea cup", "x1")], 3)
    db.update_memory(stamped("black coffee cup", "m04"))
    db.delete_memories(["m05", "m27"], "ava")
    reader = same_collections(db)
    try:
        for seed in range(5):
            got = db.semantic_search(query, unit(seed), MODEL)
            assert got == reader.semantic_search(query, unit(seed), MODEL)
        assert db.count_memories_to_embed("ava", MODEL) == 5  # 25-29 less m27, and m04
        assert reader.count_memories_to_embed("ava", MODEL) == 5
    finally:
        reader.close()


@pytest.mark.parametrize(
    "unnamed", ["a writer that moves the generation alone", "more writes than the log keeps"]
)
def test_a_write_the_log_does_not_name_means_a_full_read(
    db: MongoDb,
    commands: Commands,
    unnamed: str,
) -> None:
    memories = [stamped(f"ava fact {i}", f"m{i:02d}") for i in range(10)]
    db.upsert_memories(memories)
    embed(db, memories)
    snapshot(db)
    client: Any = pymongo.MongoClient(db.db_url)
    raw = client[DATABASE]
    if unnamed == "a writer that moves the generation alone":
        raw[db.memory_table].update_one({"_id": "m01"}, {"$set": {"memory": "changed aside"}})
        raw[f"{db.memory_table}_generations"].update_one(
            {"_id": "ava"}, {"$inc": {"generation": 1}}
        )
    else:
        for i in range(LOG_KEPT + 1):
            db.upsert_memories([stamped(f"ava new {i}", f"n{i:02d}")])
    assert user_wide_reads(db, commands, lambda: snapshot(db)) == 1
    assert state(snapshot(db)) == state(full(db))
    if unnamed == "a writer that moves the generation alone":
        assert "changed aside" in [m.memory for m in snapshot(db).memories]
    db.upsert_memories([stamped("ava after", "z1")])
    assert_patched(db, commands)
    client.close()


def test_random_writes_by_two_stores_keep_the_snapshot_equal_to_a_full_read(
    db: MongoDb, other: MongoDb
) -> None:
    rng = random.Random(27017)
    next_id = 0
    snapshot(db)
    for step in range(120):
        store = db if rng.random() < 0.6 else other
        next_id += random_write(store, "ava", snapshot(store).memories, rng, step, next_id)
        if step % 2:
            assert state(snapshot(db)) == state(full(db)), step
            server = same_collections(db)  # it keeps no snapshot: the server lists
            since = utc_now() - timedelta(hours=12)
            try:
                assert listings(db, "ava", since) == listings(server, "ava", since), step
            finally:
                server.close()
    assert next_id > 30


def test_writes_the_server_lost_are_not_patched_over(db: MongoDb, commands: Commands) -> None:
    """A failover that loses the last writes (here: both collections restored from a
    copy), then new writes past the generation the reader holds: the write the snapshot
    was read at has another token in the log now, so the snapshot is read whole again."""
    client: Any = pymongo.MongoClient(db.db_url)
    raw = client[DATABASE]
    names = (db.memory_table, f"{db.memory_table}_generations")
    writer = same_collections(db)
    writer.upsert_memories([stamped("ava fact zero", "m0")])
    saved = {name: list(raw[name].find()) for name in names}
    writer.upsert_memories([stamped("ava fact lost one", "lost1")])
    writer.upsert_memories([stamped("ava fact lost two", "lost2")])
    assert len(snapshot(db).memories) == 3
    for name in names:
        raw[name].delete_many({})
        raw[name].insert_many(saved[name])
    for i in range(3):
        writer.upsert_memories([stamped(f"ava fact new {i}", f"new{i}")])
    writer.close()
    assert user_wide_reads(db, commands, lambda: snapshot(db)) == 1
    assert sorted(m.memory_id or "" for m in snapshot(db).memories) == [
        "m0",
        "new0",
        "new1",
        "new2",
    ]
    client.close()


def test_writes_after_the_data_was_lost_are_not_taken_for_the_lost_ones(db: MongoDb) -> None:
    """The memories and generations lost (a database restored from an older backup, or
    dropped), then as many writes as were lost: the user's generation is the one the
    reader holds again, made by another write. Its searches and listings read again."""
    client: Any = pymongo.MongoClient(db.db_url)
    raw = client[DATABASE]
    db.upsert_memories([stamped("ava likes tea", "m0")])
    assert [r.memory.memory for r in db.keyword_search(MemoryQuery("ava"), "tea")] == [
        "ava likes tea"
    ]
    for name in (db.memory_table, f"{db.memory_table}_generations"):
        raw[name].delete_many({})
    writer = same_collections(db)
    writer.upsert_memories([stamped("ava likes mint tea", "m1")])
    writer.close()
    searched = db.keyword_search(MemoryQuery("ava"), "tea")
    assert [r.memory.memory for r in searched] == ["ava likes mint tea"]
    listed = db.list_memories(MemoryQuery("ava", agent_id=None, topics=()))
    assert [m.memory for m in listed] == ["ava likes mint tea"]
    client.close()


def test_a_lost_generation_update_is_read_by_the_next_full_read(
    db: MongoDb, commands: Commands
) -> None:
    """A write whose generation update was lost (the process stopped between them; here
    the memory is changed directly): a snapshot is patched for PATCHED_FOR seconds after
    it was read whole, so the next change after that reads it."""
    memories = [stamped(f"ava fact {i}", f"m{i:02d}") for i in range(5)]
    db.upsert_memories(memories)
    snapshot(db)
    client: Any = pymongo.MongoClient(db.db_url)
    client[DATABASE][db.memory_table].update_one({"_id": "m01"}, {"$set": {"memory": "lost"}})
    client.close()
    db.upsert_memories([stamped("ava new", "n1")])
    assert user_wide_reads(db, commands, lambda: snapshot(db)) == 0  # patched: stale
    assert "lost" not in [m.memory for m in snapshot(db).memories]
    snapshot(db).loaded_at -= client_search.PATCHED_FOR
    db.upsert_memories([stamped("ava newer", "n2")])
    assert user_wide_reads(db, commands, lambda: snapshot(db)) == 1
    assert "lost" in [m.memory for m in snapshot(db).memories]


def test_searches_side_by_side_after_a_write_read_it_once(
    db: MongoDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    a_write_read_once(db, monkeypatch, mongo_search)


def test_a_batch_of_twenty_updates_is_patched_in(db: MongoDb, commands: Commands) -> None:
    written_a_month_ago(db)
    snapshot(db)
    a_manager_sized_batch(db)
    assert_patched(db, commands)


def test_a_batch_of_more_updates_than_the_log_keeps_is_patched_in(
    db: MongoDb, commands: Commands
) -> None:
    """A batch moves its user's generation once, after all its writes, logging every id
    it wrote: one round trip to the generations, however many changes it makes."""
    written_a_month_ago(db, LOG_KEPT + 16)
    snapshot(db)
    commands.sent.clear()
    a_manager_sized_batch(db, LOG_KEPT + 16)
    generations = f"{db.memory_table}_generations"
    moved = [c for c in commands.sent if c.get("update") == generations]
    assert len(moved) == 1, moved
    assert_patched(db, commands)


def test_a_listing_of_one_user_is_read_from_the_snapshot_a_search_keeps(
    db: MongoDb, other: MongoDb, commands: Commands
) -> None:
    """The agent lists the user's newest memories at every turn, beside its search: while
    a search keeps the user's snapshot, any page, filter and order of one user's memories,
    and their count, come from it (one find of the user's generation, no sort of all of
    them on the server), with the server's answers, writes by another process included.
    Inside a batch, and for a snapshot that could only be read whole again, the server
    answers."""
    base = utc_now() - timedelta(days=1)
    memories = []
    for i in range(40):
        m = stamped(f"ava fact {i}", f"m{i:02d}", "ava", base + timedelta(minutes=i // 2))
        m.agent_id, m.topics = ("a", "b", None)[i % 3], [("tea", "ski")[i % 2]]
        memories.append(m)
    db.upsert_memories([*memories, stamped("bob's first", "b1", "bob")])
    queries = [
        MemoryQuery("ava", limit=5),
        MemoryQuery("ava", agent_id="a", limit=3),
        MemoryQuery("ava", sort_by="created_at", sort_order="asc", limit=4, offset=2),
        MemoryQuery("ava", topics=("tea",), updated_before=base + timedelta(minutes=9)),
        MemoryQuery("bob", limit=5),
    ]
    server = same_collections(db)  # it searches nothing, so keeps no snapshot

    def answers(store: MongoDb) -> list[object]:
        listed = [[(m.memory_id, m.memory) for m in store.list_memories(q)] for q in queries]
        return [*listed, *(store.count_memories(q) for q in queries)]

    def server_reads() -> int:
        """How many reads of the memories (not by ids) answering all the queries takes."""
        commands.sent.clear()
        answers(db)
        return sum(
            1
            for c in commands.sent
            if c.get(c["name"]) == db.memory_table
            and "_id" not in c.get("filter", (c.get("pipeline") or [{}])[0].get("$match", {}))
        )

    def agree() -> None:
        expected = answers(server)
        assert server_reads() == 0
        assert answers(db) == expected

    try:
        assert server_reads() == 2 * len(queries)
        db.keyword_search(MemoryQuery("ava", limit=3), "fact")
        db.keyword_search(MemoryQuery("bob", limit=3), "fact")
        agree()
        assert answers(db)[1] == [
            ("m39", "ava fact 39"),
            ("m36", "ava fact 36"),
            ("m33", "ava fact 33"),
        ]
        commands.sent.clear()
        db.list_memories(queries[0])
        [generation] = commands.sent
        assert generation["find"] == f"{db.memory_table}_generations"
        db.list_memories(queries[0])[0].memory = "changed by the caller"  # a copy
        assert db.list_memories(queries[0])[0].memory == "ava fact 39"
        newer = stamped("ava newest", "n1", "ava", base + timedelta(hours=2))
        newer.agent_id = "a"
        other.upsert_memories([newer, stamped("bob's second", "b2", "bob")])
        other.update_memory(stamped("ava fact 5 changed", "m05", "ava", base))
        other.delete_memories(["m39", "m38"], "ava")
        agree()
        token = batch_written.set({})
        try:
            assert server_reads() == 2 * len(queries)
        finally:
            batch_written.reset(token)
        snapshot(db).loaded_at -= client_search.PATCHED_FOR  # no longer patched
        assert server_reads() == 0  # unchanged
        other.upsert_memories([stamped("ava later", "n2", "ava", base + timedelta(hours=3))])
        assert server_reads() == 2 * (len(queries) - 1)  # bob's snapshot is still kept
        assert answers(db) == answers(server)
    finally:
        server.close()
