"""MongoDb beside other writers at the exact moments that matter, and on a server without
``hello``: another store object (a client of its own, as another process) writes between
this one's read and its write; the history stays true to what each writer did."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pymongo
import pymongo.collection
import pytest

import noted.db.mongodb.store as mongo_store
from noted import ConflictError, Memory, NotFoundError, UserMemory
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


def _during(monkeypatch: pytest.MonkeyPatch, method: str, write: Callable[[], None]) -> None:
    """Run ``write`` once, inside the first ``method`` call (update_many: a delete's claim;
    delete_many: its delete, after its read-back) on a memory collection."""
    real = getattr(pymongo.collection.Collection, method)
    done = False

    def hooked(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal done
        if not done and not self.name.endswith(("_events", "_generations")):
            done = True
            write()
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pymongo.collection.Collection, method, hooked)


def test_a_replace_while_a_delete_holds_its_claim_waits_for_it(
    pair: tuple[MongoDb, MongoDb], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The replace comes after the delete: the memory is gone, and the history ends with
    # the delete of the text it deleted (the replace wrote nothing to be deleted with it).
    db, other = pair
    memory = Memory(db=db, embedder=None)
    memory_id = memory.add_user_memory(UserMemory("start"), "ava")
    replaced: list[BaseException] = []
    seen = threading.Event()  # the replace has read the claimed memory again, or is done
    reads = 0
    real_find_one = pymongo.collection.Collection.find_one

    def find_one(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        found = real_find_one(self, *args, **kwargs)
        if threading.current_thread() is racer:
            reads += 1
            if reads == 2:
                seen.set()
        return found

    def replace() -> None:
        try:
            Memory(db=other, embedder=None).replace_user_memory(memory_id, later, "ava")
        except NotFoundError as exc:
            replaced.append(exc)
        finally:
            seen.set()

    def start_and_wait() -> None:
        racer.start()
        assert seen.wait(10)

    later = UserMemory("written during the delete")
    racer = threading.Thread(target=replace)
    monkeypatch.setattr(pymongo.collection.Collection, "find_one", find_one)
    _during(monkeypatch, "delete_many", start_and_wait)
    assert db.delete_memories([memory_id], "ava") == 1
    racer.join(10)
    assert len(replaced) == 1  # the memory was gone when the replace could write
    history = db.get_memory_history(memory_id, "ava")
    assert [(e.event, e.old_memory) for e in history] == [("add", None), ("delete", "start")]
    assert db.get_memory(memory_id, "ava") is None


def test_a_claim_that_outlasts_the_wait_is_a_conflict(
    pair: tuple[MongoDb, MongoDb], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, other = pair
    memory_id = Memory(db=db, embedder=None).add_user_memory(UserMemory("start"), "ava")
    monkeypatch.setattr(mongo_store, "_CLAIM_WAIT_S", 0.05)
    refused: list[BaseException] = []

    def replace() -> None:  # on this thread: the delete waits for it
        try:
            later = UserMemory("written during the delete")
            Memory(db=other, embedder=None).replace_user_memory(memory_id, later, "ava")
        except ConflictError as exc:
            refused.append(exc)

    _during(monkeypatch, "delete_many", replace)
    assert db.delete_memories([memory_id], "ava") == 1
    assert len(refused) == 1 and "being deleted" in str(refused[0])
    assert [e.event for e in db.get_memory_history(memory_id, "ava")] == ["add", "delete"]


def test_a_delete_is_stamped_after_a_replace_that_came_before_its_claim(
    pair: tuple[MongoDb, MongoDb], monkeypatch: pytest.MonkeyPatch
) -> None:
    db, other = pair
    memory_id = Memory(db=db, embedder=None).add_user_memory(UserMemory("start"), "ava")
    later = UserMemory("replaced just before the claim")
    replace = Memory(db=other, embedder=None).replace_user_memory
    _during(monkeypatch, "update_many", lambda: replace(memory_id, later, "ava"))
    assert db.delete_memories([memory_id], "ava") == 1
    history = db.get_memory_history(memory_id, "ava")
    assert [(e.event, e.old_memory) for e in history] == [
        ("add", None),
        ("update", "start"),
        ("delete", "replaced just before the claim"),
    ]
    assert history[1].created_at < history[2].created_at
    assert chained(history)
