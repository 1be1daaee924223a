"""MongoDb beside other writers at the exact moments that matter, and on a server without
``hello``: another store object (a client of its own, as another process) writes between
this one's read and its write; the history stays true to what each writer did."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pytest

import noted.db.mongodb.store as mongo_store
from noted import Memory, UserMemory
from noted.db import MemoryQuery
from noted.db.mongodb import MongoDb
from test_mongodb import DATABASE, open_db, same_collections, stamped, url

__all__ = ["url"]  # the fixture, shared with test_mongodb


@pytest.fixture
def pair(url: str) -> Iterator[tuple[MongoDb, MongoDb]]:
    """Two stores on the same collections, each with a client of its own."""
    first = open_db(url)
    second = same_collections(first)
    yield first, second
    first.close()
    second.close()


def between(monkeypatch: pytest.MonkeyPatch, other_write: Callable[[], None]) -> None:
    """Run ``other_write`` once, at the store's first clock reading: in a replace, right
    after it has read the memory; in a delete, right after it has found the memories."""
    real = mongo_store.now_micros
    done = False

    def clock() -> int:
        nonlocal done
        if not done:
            done = True
            other_write()
        return real()

    monkeypatch.setattr(mongo_store, "now_micros", clock)


def chained(events: list[Any]) -> bool:
    """Whether each event starts from the text the one before it left."""
    return all(b.old_memory == a.new_memory for a, b in itertools.pairwise(events))


def test_a_delete_records_only_what_it_deleted(
    pair: tuple[MongoDb, MongoDb], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, other = pair
    db.upsert_memories([stamped("one", "m1"), stamped("two", "m2"), stamped("three", "m3")])
    between(monkeypatch, lambda: other.delete_memories(["m2"], "ava"))
    assert db.delete_memories(["m1", "m2", "m3"], "ava") == 2
    history = db.get_memory_history("m2", "ava")
    assert [e.event for e in history] == ["add", "delete"]  # the other writer's delete only
    for memory_id in ("m1", "m3"):
        assert [e.event for e in db.get_memory_history(memory_id, "ava")] == ["add", "delete"]
    assert db.count_memories(MemoryQuery("ava")) == 0


def test_a_clear_records_the_text_it_deleted(
    pair: tuple[MongoDb, MongoDb], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, other = pair
    db.upsert_memories([stamped("one", "m1"), stamped("two", "m2")])
    changed = stamped("two, changed", "m2")
    between(monkeypatch, lambda: other.upsert_memories([changed]))
    assert db.clear_memories("ava") == 2
    history = db.get_memory_history("m2", "ava")
    assert [e.event for e in history] == ["add", "update", "delete"]
    assert history[-1].old_memory == "two, changed"
    assert chained(history)


def test_an_upsert_moves_the_version_a_replace_checks(
    pair: tuple[MongoDb, MongoDb], monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    db, other = pair
    memory = Memory(db=db)
    memory_id = memory.add_user_memory(UserMemory("The user lives in Paris"), "ava")
    client: Any = pymongo.MongoClient(url)
    collection = client[DATABASE][db.memory_table]
    before = collection.find_one({"_id": memory_id}).get("version")
    imported = memory.get_user_memory(memory_id, "ava")
    assert imported is not None
    imported.memory = "The user lives in Lyon"
    other.upsert_memories([imported])
    after = collection.find_one({"_id": memory_id})["version"]
    assert after == (before or 0) + 1
    client.close()
    # an import lands between a replace's read and its write: the replace reads again
    again = imported.copy()
    again.memory = "The user lives in Nice"
    between(monkeypatch, lambda: other.upsert_memories([again]))
    memory.replace_user_memory(memory_id, UserMemory("The user lives in Rome"), "ava")
    history = db.get_memory_history(memory_id, "ava")
    assert [e.new_memory for e in history] == [
        "The user lives in Paris",
        "The user lives in Lyon",
        "The user lives in Nice",
        "The user lives in Rome",
    ]
    assert chained(history)


def test_a_server_without_hello_is_asked_with_ismaster(url: str) -> None:
    from urllib.parse import urlsplit

    from mongo_proxy import OldServer

    upstream = urlsplit(url)
    old = OldServer(upstream.hostname or "127.0.0.1", upstream.port or 27017)
    store = open_db(f"mongodb://127.0.0.1:{old.port}/")
    try:
        memory = Memory(db=store)
        memory_id = memory.add_user_memory(UserMemory("The user lives in Paris"), "ava")
        assert old.refused_hello >= 1  # the store asked hello and was told it is unknown
        assert old.is_master >= 2  # the driver's handshake, then the store's own question
        assert store.capabilities.transactions is False
        found = memory.get_user_memory(memory_id, "ava")
        assert found is not None and found.memory == "The user lives in Paris"
    finally:
        store.close()
        old.close()
