"""MongoDb's own behaviour on a MongoDB wire-protocol server: collections and indexes made on
first use, exact timestamps, connection failures, secrets kept out of messages, sessions,
concurrent writers, batched writes, and which search the server can answer."""

from __future__ import annotations

import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pymongo
import pytest
from bson.int64 import Int64
from pymongo import monitoring

from conftest import server_url
from noted import (
    ConflictError,
    InMemoryDb,
    Message,
    RunTooLargeError,
    StoreError,
    UserError,
    UserMemory,
)
from noted._time import to_micros, utc_now
from noted.db import MemoryQuery
from noted.db._client_search import matches, semantic_rank
from noted.db.base import ScoredMemory, WriteBatch
from noted.db.mongodb import MongoDb
from noted.db.mongodb import sessions as mongo_sessions
from noted.db.mongodb.server import (
    VectorIndex,
    atlas_can_answer,
    find_vector_index,
    is_text_index,
)
from noted.db.mongodb.transactions import has_transactions
from noted.sessions import RunResult, SessionSummary, new_run_id
from servers import Server, free_port

_names = itertools.count(1)
DATABASE = "noted_tests"


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "mongo")


@pytest.fixture
def raw(url: str) -> Iterator[Any]:
    """The test database through a plain client, to look at what MongoDb wrote."""
    client: Any = pymongo.MongoClient(url)
    yield client[DATABASE]
    client.close()


def open_db(url: str, **options: Any) -> MongoDb:
    n = next(_names)
    return MongoDb(
        url, DATABASE, memory_table=f"mdb{n}_memories", session_table=f"mdb{n}_sessions", **options
    )


@pytest.fixture
def db(url: str) -> Iterator[MongoDb]:
    store = open_db(url)
    yield store
    store.close()


def stamped(
    text: str, memory_id: str, user_id: str = "ava", when: datetime | None = None
) -> UserMemory:
    now = when or utc_now()
    return UserMemory(text, memory_id=memory_id, user_id=user_id, created_at=now, updated_at=now)


def make_run(session_id: str, user_id: str, text: str, status: str = "completed") -> RunResult:
    return RunResult(
        run_id=new_run_id(),
        session_id=session_id,
        user_id=user_id,
        input=text,
        content=f"answer to {text}",
        messages=[Message("user", text), Message("assistant", f"answer to {text}")],
        status=status,  # type: ignore[arg-type]
    )


# -- collections, indexes, documents ------------------------------------------------------


def test_collections_and_indexes_are_made_on_first_use(db: MongoDb, raw: Any) -> None:
    names = [db.memory_table, f"{db.memory_table}_events", db.session_table]
    names.append(f"{db.session_table}_runs")
    assert not set(names) & set(raw.list_collection_names())  # nothing before the first call
    assert db.count_memories(MemoryQuery("ava")) == 0
    assert set(names) <= set(raw.list_collection_names())

    def keys(name: str) -> list[list[str]]:
        return [list(index["key"]) for index in raw[name].list_indexes()]

    # The sort indexes end in _id where the server can index it (nx-27017 cannot).
    memories = keys(db.memory_table)
    assert any(k[:2] == ["user_id", "updated_at"] for k in memories)
    assert any(k[:2] == ["user_id", "created_at"] for k in memories)
    assert any(k[:1] == ["created_at"] for k in memories)  # every user's, oldest first
    assert ["user_id", "memory_id", "created_at", "seq"] in keys(f"{db.memory_table}_events")
    assert any(k[:2] == ["user_id", "updated_at"] for k in keys(db.session_table))
    assert ["session_id", "run_index"] in keys(f"{db.session_table}_runs")
    runs = raw[f"{db.session_table}_runs"]
    runs.insert_one({"session_id": "s", "run_index": 0})
    with pytest.raises(pymongo.errors.DuplicateKeyError):  # the run index is unique
        runs.insert_one({"session_id": "s", "run_index": 0})
    # a second object on the same collections finds them ready, and writes work
    again = MongoDb(
        db.db_url, DATABASE, memory_table=db.memory_table, session_table=db.session_table
    )
    again.upsert_memories([stamped("still writable", "m1")])
    assert db.get_memory("m1", "ava") is not None
    again.close()


def test_timestamps_round_trip_exactly_as_int64_microseconds(db: MongoDb, raw: Any) -> None:
    times = [
        datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2024, 2, 29, 12, 0, 0, 123_457, tzinfo=timezone(timedelta(hours=-7))),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ]
    db.upsert_memories([stamped(f"t{i}", f"m{i}", when=t) for i, t in enumerate(times)])
    for i, when in enumerate(times):
        got = db.get_memory(f"m{i}", "ava")
        assert got is not None
        assert got.created_at == when and got.updated_at == when
        assert got.created_at is not None and got.created_at.tzinfo == UTC
        doc = raw[db.memory_table].find_one({"_id": f"m{i}"})
        assert doc["created_at"] == to_micros(when)
        # int64 on the server (nx-27017 hands numbers that fit 32 bits back as plain ints)
        assert type(doc["created_at"]) is Int64 or abs(doc["created_at"]) < 2**31
    [event] = db.get_memory_history("m0", "ava")
    assert event.created_at.tzinfo == UTC
    assert type(raw[f"{db.memory_table}_events"].find_one()["created_at"]) is Int64
    newest = db.list_memories(MemoryQuery("ava", sort_by="created_at", limit=1))
    assert [m.memory for m in newest] == ["t2"]


def test_embeddings_are_float32_vectors_dropped_when_the_text_changes(
    db: MongoDb, raw: Any
) -> None:
    db.upsert_memories([stamped("Ava likes tea", "m1")])
    memory = db.get_memory("m1", "ava")
    assert memory is not None
    vector = np.array([0.6, 0.8, 0.0], np.float32)
    assert db.set_embeddings("m", [(memory, vector)]) == 1
    stored = bytes(raw[db.memory_table].find_one({"_id": "m1"})["embedding"])
    assert stored == b"\x27\x00" + vector.astype("<f4").tobytes()  # a BSON float32 vector
    [hit] = db.semantic_search(MemoryQuery("ava"), vector, "m")
    assert hit.score == pytest.approx(1.0)
    db.upsert_memories([stamped("Ava likes tea", "m1")])  # same text: the embedding stays
    assert db.count_memories_to_embed("ava", "m") == 0
    assert db.update_memory(stamped("Ava likes coffee", "m1"))  # new text: it goes
    assert "embedding" not in raw[db.memory_table].find_one({"_id": "m1"})
    assert db.count_memories_to_embed("ava", "m") == 1
    # plain float32 bytes (no vector header) are read as well
    raw[db.memory_table].update_one(
        {"_id": "m1"}, {"$set": {"embedding": vector.tobytes(), "embedding_model": "m"}}
    )
    # a writer other than noted moves the user's generation on, as the docs ask
    raw[f"{db.memory_table}_generations"].update_one(
        {"_id": "ava"}, {"$inc": {"generation": 1}}, upsert=True
    )
    assert [r.memory.memory for r in db.semantic_search(MemoryQuery("ava"), vector, "m")] == [
        "Ava likes coffee"
    ]


# -- connection failures, secrets, names ---------------------------------------------------


def test_an_unreachable_server_is_a_quick_store_error_without_the_password() -> None:
    port = free_port()
    db = MongoDb(f"mongodb://ava:s3cret-pw@127.0.0.1:{port}/?serverSelectionTimeoutMS=300")
    started = time.monotonic()
    with pytest.raises(
        StoreError, match=f"cannot reach MongoDB at mongodb://ava:\\*\\*\\*@127.0.0.1:{port}"
    ) as info:
        db.count_memories(MemoryQuery("ava"))
    assert time.monotonic() - started < 5
    assert "s3cret" not in str(info.value)
    db.close()
    with pytest.raises(StoreError, match="MongoDB at http://example"):
        MongoDb("http://example").get_memory("m1", "ava")
    default = MongoDb(f"mongodb://127.0.0.1:{port}")._connect()
    assert default.options.server_selection_timeout == 5  # seconds, unless the URL says
    default.close()


def test_repr_hides_the_password_and_secret_options(url: str) -> None:
    db = MongoDb(
        "mongodb://ava:s3cret@db.example:27017/?authSource=admin&tlsCertificateKeyFilePassword=pem"
    )
    text = repr(db)
    assert "s3cret" not in text and "=pem" not in text
    assert "mongodb://ava:***@db.example:27017/?authSource=admin" in text
    client: Any = pymongo.MongoClient(url)
    assert "127.0.0.1" in repr(MongoDb(client=client))
    client.close()


def test_names_are_checked() -> None:
    with pytest.raises(UserError, match="memory_table"):
        MongoDb(memory_table="my-memories")
    with pytest.raises(UserError, match="database"):
        MongoDb(database="a.b")
    with pytest.raises(UserError, match="different tables"):
        MongoDb(memory_table="x", session_table="x")
    with pytest.raises(UserError, match="different tables"):
        MongoDb(memory_table="m_runs", session_table="m")
    with pytest.raises(UserError, match="m_generations"):
        MongoDb(memory_table="m", session_table="m_generations")


def test_close_closes_only_a_client_it_opened(url: str) -> None:
    with open_db(url) as db:
        assert db.count_memories(MemoryQuery("ava")) == 0
    assert db.count_memories(MemoryQuery("ava")) == 0  # opened again on use
    db.close()
    client: Any = pymongo.MongoClient(url)
    lent = open_db(url, client=client)
    lent.count_memories(MemoryQuery("ava"))
    lent.close()
    assert client.admin.command("ping")["ok"]
    client.close()


# -- sessions -----------------------------------------------------------------------------


def test_sessions_append_read_list_summarise_and_delete(db: MongoDb, raw: Any) -> None:
    runs = [make_run("s1", "ava", "one"), make_run("s1", "ava", "two", "failed")]
    runs.append(make_run("s1", "ava", "three"))
    for run in runs:
        db.append_run(run)
    db.append_run(make_run("s2", "bob", "hi"))
    assert [r.to_dict() for r in db.get_runs("s1", "ava")] == [r.to_dict() for r in runs]
    assert [r.input for r in db.get_runs("s1", "ava", last_n=2)] == ["two", "three"]
    assert [r.input for r in db.get_runs("s1", "ava", completed_only=True)] == ["one", "three"]
    assert db.get_runs("s1", "ava", last_n=0) == [] and db.get_runs("nope", "ava") == []
    assert [(s.session_id, s.run_count) for s in db.list_sessions(None)] == [("s2", 1), ("s1", 3)]
    assert [s.session_id for s in db.list_sessions("ava", limit=1)] == ["s1"]
    session = db.get_session("s1", "ava")
    assert session is not None and [r.input for r in session.runs] == ["one", "two", "three"]
    assert db.get_session("s1", "bob") is None

    summary = SessionSummary("Ava counted to three", ["numbers"], run_count=2)
    assert db.get_session_summary("s1", "ava") is None
    assert db.set_session_summary("s1", "ava", summary)
    assert db.get_session_summary("s1", "ava") == summary
    assert not db.set_session_summary("missing", "ava", summary)

    # another user's session: refused, and nothing is written
    with pytest.raises(ConflictError, match="another user"):
        db.append_run(make_run("s1", "bob", "hijack"))
    with pytest.raises(ConflictError):
        db.get_runs("s1", "bob")
    with pytest.raises(ConflictError):
        db.set_session_summary("s1", "bob", SessionSummary("hijacked"))
    assert db.get_session_summary("s1", "bob") is None
    again = db.get_session("s1", None)
    assert again is not None and again.run_count == 3 and again.summary == summary
    assert not db.delete_session("s1", "bob")

    assert db.delete_session("s1", "ava") and not db.delete_session("s1", "ava")
    assert db.get_session("s1", None) is None
    assert raw[f"{db.session_table}_runs"].count_documents({"session_id": "s1"}) == 0
    db.append_run(make_run("s1", "bob", "a fresh start"))  # the id is free again
    assert [r.input for r in db.get_runs("s1", "bob")] == ["a fresh start"]


# -- concurrency and batches --------------------------------------------------------------


def test_eight_threads_writing_at_once_lose_nothing(db: MongoDb, raw: Any) -> None:
    """8 threads x 200 writes through one object: memories, and runs of one shared session
    (each run takes its place with an atomic increment)."""
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(200):
                if i % 2:
                    db.append_run(make_run("shared", "ava", f"run {i} of {worker}"))
                else:
                    db.upsert_memories([stamped(f"fact {i} of {worker}", f"w{worker}-{i}")])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.count_memories(MemoryQuery("ava")) == 800
    assert raw[f"{db.memory_table}_events"].count_documents({"event": "add"}) == 800
    session = db.get_session("shared", "ava")
    assert session is not None and session.run_count == 800 and len(session.runs) == 800
    indexes = raw[f"{db.session_table}_runs"].distinct("run_index", {"session_id": "shared"})
    assert sorted(indexes) == list(range(800))


class Commands(monitoring.CommandListener):
    """The commands a client sent, by name."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append({"name": event.command_name, **event.command})

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass

    def named(self, name: str) -> list[dict[str, Any]]:
        return [c for c in self.sent if c["name"] == name]


def test_bulk_writes_are_batched_and_lists_sort_and_limit_on_the_server(url: str) -> None:
    commands = Commands()
    client: Any = pymongo.MongoClient(url, event_listeners=[commands])
    db = open_db(url, client=client)
    db.count_memories(MemoryQuery("ava"))
    commands.sent.clear()
    now = utc_now()
    db.upsert_memories(
        [stamped(f"m{i}", f"id{i:05}", when=now + timedelta(microseconds=i)) for i in range(1100)]
    )
    assert len(commands.named("insert")) <= 4  # 2 batches of memories, 2 of their events
    assert len(commands.named("find")) <= 2  # ownership looked up 1000 ids at a time
    commands.sent.clear()
    page = db.list_memories(MemoryQuery("ava", limit=3, offset=1))
    assert [m.memory for m in page] == ["m1098", "m1097", "m1096"]
    [find] = commands.named("find")
    assert dict(find["sort"]) == {"updated_at": -1, "_id": -1}
    assert (find["limit"], find["skip"]) == (3, 1)
    assert db.delete_memories([f"id{i:05}" for i in range(1050)], "ava") == 1050
    assert db.count_memories(MemoryQuery("ava")) == 50
    db.close()
    client.close()


def indexes_used(plan: Any) -> set[str]:
    """The indexes an ``explain`` reply's winning plan reads: MongoDB's IXSCAN stages name
    theirs (``indexName``); nx-27017 gives SQLite's plan lines (``USING INDEX name``)."""
    used: set[str] = set()
    stack = [plan["queryPlanner"]["winningPlan"]]
    while stack:
        part = stack.pop()
        if isinstance(part, dict):
            if part.get("stage") == "IXSCAN":
                used.add(str(part["indexName"]))
            stack.extend(part.values())
        elif isinstance(part, list):
            stack.extend(part)
        elif isinstance(part, str):
            used.update(re.findall(r"USING (?:COVERING )?INDEX (\S+)", part))
    return used


def test_every_users_memories_to_embed_are_read_through_the_created_index(
    url: str, raw: Any
) -> None:
    commands = Commands()
    client: Any = pymongo.MongoClient(url, event_listeners=[commands])
    db = open_db(url, client=client)
    start = utc_now()
    memories = [  # three users, times out of id order, some equal (then ordered by id)
        stamped(
            f"fact {i}",
            f"m{i:02d}",
            ("ava", "bo", "cy")[i % 3],
            start + timedelta(seconds=i * 7 % 10),
        )
        for i in range(20)
    ]
    db.upsert_memories(memories)
    db.set_embeddings("model", [(m, unit(i)) for i, m in enumerate(memories) if i % 4 == 0])
    waiting = sorted(
        (m for i, m in enumerate(memories) if i % 4), key=lambda m: (m.created_at, m.memory_id)
    )
    expected = [m.memory_id for m in waiting]
    commands.sent.clear()
    assert [m.memory_id for m in db.memories_to_embed(None, "model")] == expected
    assert [m.memory_id for m in db.memories_to_embed(None, "model", 4)] == expected[:4]
    assert [m.memory_id for m in db.memories_to_embed("bo", "model")] == [
        m.memory_id for m in waiting if m.user_id == "bo"
    ]
    [every, _, _] = commands.named("find")
    # the index on created_at (and _id, where the server can index it) is the plan's
    [created] = [
        index["name"]
        for index in raw[db.memory_table].list_indexes()
        if list(index["key"]) in (["created_at", "_id"], ["created_at"])
    ]
    plan = raw[db.memory_table].find(every["filter"], sort=list(every["sort"].items())).explain()
    assert indexes_used(plan) == {created}
    db.close()
    client.close()


def test_a_batch_stopped_by_another_writer_records_what_it_wrote(
    db: MongoDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without transactions, an id taken by another writer after the ownership check stops
    the batch there: the memories before it are written, each with its event."""
    db.upsert_memories([stamped("bob's", "taken", "bob")])
    monkeypatch.setattr(db, "_stored", lambda *args: {})  # as if "taken" came meanwhile
    batch = [stamped("first", "n1"), stamped("mine?", "taken"), stamped("last", "n2")]
    with pytest.raises(ConflictError, match="1 of 3 memories were written"):
        db.upsert_memories(batch)
    assert [e.event for e in db.get_memory_history("n1", "ava")] == ["add"]
    assert db.get_memory("n2", "ava") is None and db.get_memory_history("n2", "ava") == []
    owner = db.get_memory("taken", "bob")
    assert owner is not None and owner.memory == "bob's"


# -- a failed batch is undone (no transactions on this server) ----------------------------


class FailingMongoDb(MongoDb):
    """Fails once armed: after the batch's adds are written ("adds"), or when the event of
    an add is to be recorded ("event": the memory written, its event not). ``meanwhile``
    runs first, as another writer's change at that moment."""

    fail: str | None = None
    meanwhile: Any = None
    transactions = False  # True: as if on a replica set (see below)

    def _has_transactions(self, client: Any) -> bool:
        return self.transactions

    def upsert_memories(self, memories: Any, *, audit: Any = None) -> None:
        super().upsert_memories(memories, audit=audit)
        self._fail_if("adds")

    def _record(self, db: Any, changes: Any, context: Any, stamp: int, first: int = 0) -> None:
        if any(change.event == "add" for change in changes):
            self._fail_if("event")
        super()._record(db, changes, context, stamp, first)

    def _fail_if(self, where: str) -> None:
        if self.fail == where:
            self.fail = None
            if self.meanwhile is not None:
                self.meanwhile()
            raise StoreError("MongoDB went away")


def as_stored(raw: Any, name: str) -> list[dict[str, Any]]:
    """The collection's documents, without the fields that count versions."""
    return sorted(
        (
            {k: v for k, v in d.items() if k not in ("version", "changed_at")}
            for d in raw[name].find()
        ),
        key=lambda d: str(d["_id"]),
    )


def seeded(url: str, transactions: bool = False) -> FailingMongoDb:
    """A store with three memories of ava's (one embedded, one updated) and one of bob's."""
    cls = type("Failing", (FailingMongoDb,), {"transactions": transactions})
    store = cls(url, DATABASE, memory_table=f"mdb{next(_names)}_memories")
    store.upsert_memories([stamped("keep", "a"), stamped("tea", "b"), stamped("gone?", "c")])
    store.upsert_memories([stamped("bob's", "x", "bob")])
    assert store.update_memory(stamped("green tea", "b"))
    b = store.get_memory("b", "ava")
    assert b is not None and store.set_embeddings("m", [(b, np.ones(3, np.float32))]) == 1
    return store


@pytest.mark.parametrize("fail", ["adds", "event"])
@pytest.mark.parametrize("clear", [False, True])
@pytest.mark.parametrize("transactions", [False, True])
def test_a_failed_batch_is_undone_memories_embeddings_and_history(
    url: str, raw: Any, fail: str, clear: bool, transactions: bool
) -> None:
    """Undone by noted (a standalone server), or aborted (a server with transactions: the
    test server's abort rolls back what this single writer wrote, see docs/backends.md)."""
    store = seeded(url, transactions)
    names = (store.memory_table, store.memory_table + "_events")
    before = [as_stored(raw, name) for name in names]
    batch = WriteBatch(
        "ava",
        clear=clear,
        deletes=("c",),
        updates=(stamped("black tea", "b"),),
        adds=(stamped("new", "d"), stamped("newer", "e")),
    )
    assert store.capabilities.transactions is transactions
    store.fail = fail
    with pytest.raises(StoreError, match="went away") as failed:
        store.write_batch(batch)
    assert [as_stored(raw, name) for name in names] == before
    assert not getattr(failed.value, "__notes__", [])  # all undone
    assert store.count_memories_to_embed("ava", "m") == 2  # b's embedding is back
    # the same batch, not failing, is written whole
    written = store.write_batch(batch)
    assert len(written) == (1 - clear) + 2
    kept = [
        m.memory
        for m in store.list_memories(MemoryQuery("ava", sort_by="created_at", sort_order="asc"))
    ]
    assert kept == (["new", "newer"] if clear else ["keep", "black tea", "new", "newer"])
    store.close()


def test_an_undo_keeps_another_writers_change(url: str, raw: Any) -> None:
    """A memory that another writer changed after the batch wrote it keeps that writer's
    version, and its last history event still describes it; the rest is undone."""
    store = seeded(url)
    other = MongoDb(url, DATABASE, memory_table=store.memory_table)
    store.meanwhile = lambda: other.update_memory(stamped("oolong", "b"))
    batch = WriteBatch(
        "ava", deletes=("a",), updates=(stamped("black tea", "b"),), adds=(stamped("new", "d"),)
    )
    store.fail = "adds"
    with pytest.raises(StoreError, match="went away") as failed:
        store.write_batch(batch)
    assert "'b'" in "".join(failed.value.__notes__)
    texts = {m.memory_id: m.memory for m in store.list_memories(MemoryQuery("ava"))}
    assert texts == {"a": "keep", "b": "oolong", "c": "gone?"}
    history = store.get_memory_history("b", "ava")
    assert [(e.event, e.new_memory) for e in history][-2:] == [
        ("update", "black tea"),
        ("update", "oolong"),
    ]
    assert [e.event for e in store.get_memory_history("a", "ava")] == ["add"]
    assert store.get_memory_history("d", "ava") == []
    other.close()
    store.close()


def test_transactions_are_used_where_the_deployment_has_them() -> None:
    assert not has_transactions(
        {"isWritablePrimary": True, "logicalSessionTimeoutMinutes": 30}  # standalone
    )
    assert has_transactions({"setName": "rs0", "logicalSessionTimeoutMinutes": 30})
    assert has_transactions({"msg": "isdbgrid", "logicalSessionTimeoutMinutes": 30})
    assert not has_transactions({"setName": "rs0"})  # no sessions


def test_the_test_server_reports_a_standalone_server(url: str) -> None:
    store = open_db(url)
    store.count_memories(MemoryQuery("ava"))
    assert store.capabilities.transactions is False
    store.close()


# -- which search the server answers --------------------------------------------------------


def test_the_keyword_and_semantic_search_methods_are_detected_and_logged(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="noted.db.mongodb"), open_db(url) as db:
        unit = np.full(3, 3**-0.5, np.float32)
        db.upsert_memories([stamped("User lives in Lisbon", "m1")])
        db.set_embeddings("m", [(stamped("User lives in Lisbon", "m1"), unit)])
        found = db.keyword_search(MemoryQuery("ava", limit=5), "Lisbon trips")
        assert [r.memory.memory for r in found] == ["User lives in Lisbon"]
        assert db.semantic_search(MemoryQuery("ava", limit=5), unit, "m")
        server_text = db._text_search
        atlas = db._vector_index
    logging.getLogger(__name__).info(
        "keyword search: %s; semantic search: %s",
        "$text" if server_text else "BM25 in Python",
        "Atlas $vectorSearch" if atlas else "cosine in Python",
    )
    expected = "the server's $text index" if server_text else "BM25 in Python"
    assert f"keyword search by {expected}" in caplog.text
    assert "semantic search by" in caplog.text
    # nx-27017 reports no MongoDB text index and has no Atlas Search
    assert (server_text, atlas) == (False, None)


def test_a_text_index_is_recognised_by_what_the_server_reports() -> None:
    mongod = {
        "v": 2,
        "key": {"_fts": "text", "_ftsx": 1},
        "name": "noted_text",
        "weights": {"memory": 2, "topics": 1, "input": 1},
        "default_language": "english",
        "textIndexVersion": 3,
    }
    assert is_text_index(mongod)
    assert not is_text_index({"v": 2, "key": {"memory": "text"}, "name": "memory_text"})
    assert not is_text_index({**mongod, "name": "someone_elses"})


def test_an_atlas_vector_index_is_used_only_when_it_fits() -> None:
    fields: list[dict[str, Any]] = [
        {"type": "vector", "path": "embedding", "numDimensions": 384, "similarity": "cosine"},
        {"type": "filter", "path": "user_id"},
        {"type": "filter", "path": "embedding_model"},
    ]
    atlas = {"name": "vi", "type": "vectorSearch", "queryable": True}
    found = find_vector_index([{**atlas, "latestDefinition": {"fields": fields}}])
    assert found == VectorIndex("vi", 384)
    euclid = [{**fields[0], "similarity": "euclidean"}, *fields[1:]]
    for listing in [
        {**atlas, "latestDefinition": {"fields": fields[:2]}},  # cannot filter by model
        {**atlas, "latestDefinition": {"fields": euclid}},
        {**atlas, "queryable": False, "latestDefinition": {"fields": fields}},
        {**atlas, "type": "search", "latestDefinition": {"fields": fields}},
        {"v": 2, "key": {"memory": "text"}, "name": "memory_text"},  # nx-27017's listing
    ]:
        assert find_vector_index([listing]) is None
    assert atlas_can_answer(found, MemoryQuery("ava", limit=10), 384)
    assert not atlas_can_answer(found, MemoryQuery("ava", limit=10), 768)
    assert not atlas_can_answer(found, MemoryQuery("ava"), 384)  # no limit
    assert not atlas_can_answer(found, MemoryQuery("ava", limit=10, topics=("x",)), 384)


# -- the search cache ---------------------------------------------------------------------


def unit(seed: int, dims: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


def found(results: list[ScoredMemory]) -> list[tuple[str | None, str, float]]:
    return [(r.memory.memory_id, r.memory.memory, r.score) for r in results]


def ids(results: list[ScoredMemory]) -> list[str]:
    return [r.memory.memory_id or "" for r in results]


def same_collections(db: MongoDb, **options: Any) -> MongoDb:
    """Another MongoDb on db's collections, with a client and a cache of its own: as
    another process would be."""
    return MongoDb(
        db.db_url,
        DATABASE,
        memory_table=db.memory_table,
        session_table=db.session_table,
        **options,
    )


@pytest.fixture
def other(db: MongoDb) -> Iterator[MongoDb]:
    store = same_collections(db)
    yield store
    store.close()


def test_a_repeated_search_reads_only_the_generation(url: str) -> None:
    commands = Commands()
    client: Any = pymongo.MongoClient(url, event_listeners=[commands])
    db = open_db(url, client=client)
    memories = [stamped(f"ava likes city {i}", f"m{i:03d}") for i in range(200)]
    db.upsert_memories(memories)
    db.set_embeddings("model", [(m, unit(i)) for i, m in enumerate(memories)])

    def finds(search: Any) -> list[str]:
        """The collections of the find commands ``search`` sends."""
        commands.sent.clear()
        search()
        return [c["find"] for c in commands.named("find")]

    generations = f"{db.memory_table}_generations"
    query = MemoryQuery("ava", limit=5)
    filtered = MemoryQuery("ava", topics=("t",), agent_id="x", updated_after=utc_now())
    keyword = finds(lambda: db.keyword_search(query, "city 7"))
    assert keyword == [generations, db.memory_table]
    # held without their embeddings: a semantic search loads them once, then keyword's too
    assert finds(lambda: db.semantic_search(query, unit(7), "model")) == keyword
    for search in (
        lambda: db.keyword_search(query, "city 7"),
        lambda: db.keyword_search(filtered, "city"),
        lambda: db.semantic_search(query, unit(7), "model"),
        lambda: db.semantic_search(filtered, unit(7), "model"),
        lambda: db.semantic_search(query, unit(7, 3), "model"),  # another size: none
        lambda: db.semantic_search(query, unit(7), "another model"),
    ):
        assert finds(search) == [generations]
        assert not commands.named("aggregate")
    assert ids(db.keyword_search(query, "city 7"))[0] == "m007"
    assert ids(db.semantic_search(query, unit(7), "model"))[0] == "m007"
    assert db.semantic_search(query, unit(7, 3), "model") == []
    # a user without memories (nor a generation) is cached too
    nobody = MemoryQuery("nobody")
    assert finds(lambda: db.keyword_search(nobody, "city")) == keyword
    assert finds(lambda: db.keyword_search(nobody, "city")) == [generations]
    db.close()
    client.close()


def test_each_write_moves_its_users_generations_on_once(url: str, raw: Any) -> None:
    commands = Commands()
    client: Any = pymongo.MongoClient(url, event_listeners=[commands])
    db = open_db(url, client=client)
    generations = raw[f"{db.memory_table}_generations"]

    def generation(user_id: str) -> int:
        doc = generations.find_one({"_id": user_id})
        return 0 if doc is None else int(doc["generation"])

    def bumps(write: Any) -> list[list[str]]:
        """The users of each update command ``write`` sends to the generations."""
        commands.sent.clear()
        write()
        return [
            [u["q"]["_id"] for u in c["updates"]]
            for c in commands.named("update")
            if c["update"] == generations.name
        ]

    tea = stamped("tea", "m1")
    assert bumps(lambda: db.upsert_memories([tea])) == [["ava"]]
    assert bumps(lambda: db.upsert_memories([tea, stamped("milk", "m2")])) == [["ava"]]
    assert bumps(lambda: db.update_memory(stamped("green tea", "m1"))) == [["ava"]]
    assert bumps(lambda: db.set_embeddings("m", [(stamped("green tea", "m1"), unit(1))])) == [
        ["ava"]
    ]
    assert bumps(lambda: db.delete_memories(["m2"], "ava")) == [["ava"]]
    assert generation("ava") == 5
    assert bumps(lambda: db.delete_memories(["none"], "ava")) == []  # nothing to delete
    assert bumps(lambda: db.upsert_memories([])) == []
    batch = [stamped("fact", f"u{u}", f"user{u:04}") for u in range(1200)]
    assert bumps(lambda: db.upsert_memories(batch)) == [
        [f"user{u:04}" for u in range(1000)],
        [f"user{u:04}" for u in range(1000, 1200)],
    ]
    assert bumps(lambda: db.clear_memories("user0001")) == [["user0001"]]
    assert generation("user0001") == 2 and generation("user0002") == 1
    assert [len(users) for users in bumps(db.clear_all_memories)] == [1000, 200]  # and ava
    assert generation("ava") == 6 and generation("user0001") == 2  # no memories left to it
    assert generation("user0002") == 2
    # a batch stopped part-way by a conflict still moves the generation on
    db.upsert_memories([stamped("bob's", "taken", "bob")])
    with pytest.raises(ConflictError):
        db.upsert_memories([stamped("mine?", "taken")])
    assert generation("ava") == 7
    db.close()
    client.close()


def test_results_equal_those_of_the_shared_ranking(db: MongoDb) -> None:
    """Many equal scores (repeated texts and vectors), cut by pages at every place: as
    InMemoryDb ranks by keyword, as semantic_rank ranks the memories oldest first, and as
    a store without a cache answers."""
    reference = InMemoryDb()
    tie = utc_now()
    batch, vectors = [], []
    for i in range(40):
        m = stamped(f"tea {'green ' * (i % 3)}cup {i % 4}", f"id{(i * 7) % 40:02d}", when=tie)
        m.created_at = tie - timedelta(seconds=i % 3)  # equal times: oldest, then by id
        m.updated_at = tie + timedelta(seconds=i % 5)
        m.topics = ["even" if i % 2 == 0 else "odd"]
        m.agent_id = "a1" if i % 3 else None
        batch.append(m)
        vectors.append(unit(i % 6))
    vector_of = {m.memory_id: v for m, v in zip(batch, vectors, strict=True)}
    for store in (db, reference):
        store.upsert_memories([m.copy() for m in batch])
        store.set_embeddings("model", list(zip(batch, vectors, strict=True)))
    uncached = same_collections(db, cache_bytes=0)
    oldest_first = sorted(batch, key=lambda m: (m.created_at, m.memory_id))
    pages = [(None, 0), (1, 0), (3, 0), (5, 2), (7, 11), (None, 25), (3, 40), (6, 3)]
    for (limit, offset), filters in itertools.product(
        pages,
        [
            {},
            {"topics": ("odd",)},
            {"agent_id": "a1"},
            {"updated_after": tie + timedelta(seconds=2)},
            {"updated_before": tie + timedelta(seconds=3), "topics": ("even",)},
        ],
    ):
        query = MemoryQuery("ava", limit=limit, offset=offset, **filters)  # type: ignore[arg-type]
        whole = MemoryQuery("ava", **filters)  # type: ignore[arg-type]
        end = None if limit is None else offset + limit
        for text in ("green tea", "cup 3", "tea"):
            got = found(db.keyword_search(query, text))
            assert got == found(reference.keyword_search(query, text)), (query, text)
            assert got == found(uncached.keyword_search(query, text)), (query, text)
        candidates = [(m, vector_of[m.memory_id]) for m in oldest_first if matches(whole, m)]
        for seed in range(3):
            got = found(db.semantic_search(query, unit(seed), "model"))
            expected = found(semantic_rank(candidates, query, unit(seed)))
            assert got == expected, (query, seed)
            assert got == found(uncached.semantic_search(query, unit(seed), "model"))
            assert got == found(semantic_rank(candidates, whole, unit(seed)))[offset:end]
    assert uncached.cache.nbytes == 0
    uncached.close()


def test_a_run_the_server_refuses_leaves_the_session_as_it_was(db: MongoDb) -> None:
    # A run larger than a MongoDB document may be (16 MiB) is refused by the server after
    # its place was counted: the count is given back, and a session it began is not left.
    # (The store refuses a run over noted.limits.MAX_RUN_BYTES before, as every store
    # does; the module's append_run is the write after that check.)
    def run(text: str, session_id: str = "s1") -> RunResult:
        return RunResult(run_id=new_run_id(), session_id=session_id, user_id="ava", input=text)

    def append_unchecked(run: RunResult) -> None:
        with db._db() as collections:
            mongo_sessions.append_run(collections.sessions, collections.runs, run, db._where)

    huge = "x" * (17 * 1024 * 1024)
    db.append_run(run("first"))
    with pytest.raises(RunTooLargeError):
        db.append_run(run(huge))
    with pytest.raises(StoreError):
        append_unchecked(run(huge))
    db.append_run(run("third"))
    session = db.get_session("s1", "ava")
    assert session is not None and session.run_count == 2
    assert [r.input for r in db.get_runs("s1", "ava")] == ["first", "third"]
    with pytest.raises(StoreError):
        append_unchecked(run(huge, "s2"))
    assert db.get_session("s2", "ava") is None
    assert [s.session_id for s in db.list_sessions("ava")] == ["s1"]


def test_runs_stored_with_one_id_twice_keep_the_store_working(
    url: str, raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Written before run ids were held unique: the unique index cannot be built over them.
    db = open_db(url)
    for index in (0, 1):
        raw[f"{db.session_table}_runs"].insert_one(
            {"session_id": "old", "run_index": index, "run_id": "twice", "status": "completed"}
        )
    with caplog.at_level(logging.WARNING, logger="noted.db.mongodb"):
        db.append_run(make_run("s1", "ava", "hello"))
    assert "share a run id" in caplog.text
    assert [r.input for r in db.get_runs("s1", "ava")] == ["hello"]
    db.close()


def test_a_job_that_arrives_after_a_later_one_of_its_key_was_taken_waits(
    db: MongoDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Run 1's jobs are numbered first but written last (a slower writer): while run 2's
    # job runs, run 1's must not be taken, so one user's jobs never run at once.
    from noted.db.jobs import jobs_for_run
    from noted.db.mongodb import jobs as mongo_jobs

    numbered = threading.Event()
    real_append = mongo_jobs.sessions.append_run

    def slow_append(*args: Any, **kwargs: Any) -> bool:
        if threading.current_thread().name == "first":
            numbered.set()
            time.sleep(0.5)
        return real_append(*args, **kwargs)

    monkeypatch.setattr(mongo_jobs.sessions, "append_run", slow_append)
    first, second = make_run("s1", "ava", "I like tea"), make_run("s1", "ava", "I like jam")

    def record(run: RunResult) -> None:
        db.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))

    writer = threading.Thread(target=record, args=(first,), name="first")
    writer.start()
    assert numbered.wait(5)
    record(second)
    taken = db.claim_job("w1", 60)
    assert taken is not None and taken.run_id == second.run_id
    writer.join(10)
    assert db.claim_job("w2", 60) is None  # run 1's job waits for run 2's
    db.complete_job(taken, lambda: None)
    later = db.claim_job("w2", 60)
    assert later is not None and later.run_id == first.run_id


class Pause(monitoring.CommandListener):
    """Holds the thread named ``thread`` right after its first ``command`` on a collection
    whose name ends with ``suffix`` is answered (the command is done on the server, the
    next one not sent yet) until :attr:`release` is set; :attr:`reached` says it is held."""

    def __init__(self, thread: str, command: str, suffix: str) -> None:
        self.thread, self.command, self.suffix = thread, command, suffix
        self.reached = threading.Event()
        self.release = threading.Event()
        self._targets: dict[int, str] = {}

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if threading.current_thread().name == self.thread:
            self._targets[event.request_id] = str(event.command.get(event.command_name, ""))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        target = self._targets.pop(event.request_id, None)
        if (
            target is not None
            and event.command_name == self.command
            and target.endswith(self.suffix)
            and not self.reached.is_set()
        ):
            self.reached.set()
            assert self.release.wait(10)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._targets.pop(event.request_id, None)


@pytest.mark.parametrize(
    ("held", "command", "suffix"),
    [
        ("writer", "findAndModify", "_sessions"),  # the run's place is claimed, not written
        ("deleter", "delete", "_runs"),  # the session's runs are deleted, not the session
    ],
)
def test_a_session_deleted_while_a_run_is_written_leaves_no_run_behind(
    url: str, raw: Any, held: str, command: str, suffix: str
) -> None:
    """A run is written in steps (its place claimed in the session, then the run), and a
    delete in steps too (the runs, then the session): a delete landing between a write's
    steps, or a write landing between a delete's, leaves no run of the deleted session,
    and a session begun again under its id starts empty."""
    pause = Pause(held, command, suffix)
    client: Any = pymongo.MongoClient(url, event_listeners=[pause])
    db = open_db(url, client=client)
    db.append_run(make_run("s1", "ava", "one"))
    written: list[bool] = []
    late = make_run("s1", "ava", "late")

    def write() -> None:
        written.append(db.append_run(late))

    def delete() -> None:
        assert db.delete_session("s1", "ava") is True

    first, second = (write, delete) if held == "writer" else (delete, write)
    thread = threading.Thread(target=first, name=held)
    thread.start()
    assert pause.reached.wait(10)
    second()
    pause.release.set()
    thread.join(10)
    runs = raw[f"{db.session_table}_runs"]
    assert list(runs.find({"session_id": "s1"})) == []
    assert written == [False] if held == "writer" else written == [True]
    assert db.append_run(make_run("s1", "ava", "again")) is True
    assert [r.input for r in db.get_runs("s1", "ava")] == ["again"]
    assert db.get_session("s1", "ava").run_count == 1  # type: ignore[union-attr]
    assert db.append_run(make_run("s1", "ava", "twice")) is True
    assert [r.input for r in db.get_runs("s1", "ava")] == ["again", "twice"]
    db.close()
    client.close()


@pytest.mark.parametrize("again_by", ["ava", "bob"])
def test_a_delete_that_finds_its_session_begun_again_leaves_the_new_runs(
    url: str, again_by: str
) -> None:
    """A delete reads the session, then takes its runs: when another delete takes the
    session and a run begins it again (of the same user or another) between those steps,
    the late delete deletes nothing, and the new session keeps its run."""
    pause = Pause("deleter", "find", "_sessions")
    client: Any = pymongo.MongoClient(url, event_listeners=[pause])
    db = open_db(url, client=client)
    db.append_run(make_run("s1", "ava", "one"))
    answers: list[bool] = []
    late = threading.Thread(
        target=lambda: answers.append(db.delete_session("s1", "ava")), name="deleter"
    )
    late.start()
    assert pause.reached.wait(10)
    assert db.delete_session("s1", "ava") is True
    assert db.append_run(make_run("s1", again_by, "again")) is True
    pause.release.set()
    late.join(10)
    assert answers == [False]
    assert [r.input for r in db.get_runs("s1", again_by)] == ["again"]
    assert db.get_session("s1", again_by).run_count == 1  # type: ignore[union-attr]
    db.close()
    client.close()


def test_runs_stored_before_runs_recorded_their_session_are_read_and_continued(
    db: MongoDb, raw: Any
) -> None:
    old = make_run("s1", "ava", "one")
    db.append_run(old)
    raw[f"{db.session_table}_runs"].update_many({}, {"$unset": {"session_created_at": ""}})
    assert [r.input for r in db.get_runs("s1", "ava")] == ["one"]
    assert db.append_run(make_run("s1", "ava", "two"), existing=old.run_id) is True
    assert [r.input for r in db.get_session("s1", "ava").runs] == ["one", "two"]  # type: ignore[union-attr]


def test_a_run_left_of_a_deleted_session_is_read_by_no_reader(db: MongoDb, raw: Any) -> None:
    """A run whose writer stopped before taking it away (its session deleted and begun
    again meanwhile) is not one of the new session's runs, read one or many at a time."""
    db.append_run(make_run("s1", "ava", "one"))
    runs = raw[f"{db.session_table}_runs"]
    left = {**runs.find_one({"session_id": "s1"}), "_id": "left", "run_index": 7}
    runs.insert_one({**left, "run_id": "left-run", "session_created_at": 1})
    assert [r.input for r in db.get_runs("s1", "ava")] == ["one"]
    assert [r.input for r in db.get_session("s1", "ava").runs] == ["one"]  # type: ignore[union-attr]
    assert [r.input for r in db.get_sessions(["s1"])["s1"].runs] == ["one"]


def test_a_run_left_of_a_deleted_session_is_not_one_the_new_session_holds(
    db: MongoDb, raw: Any
) -> None:
    """A summary, or a run continuing a conversation, that names a run left of a deleted
    session is not taken by the session begun again under its id."""
    first = make_run("s1", "ava", "one")
    db.append_run(first)
    runs = raw[f"{db.session_table}_runs"]
    left = {**runs.find_one({"session_id": "s1"}), "_id": "left", "run_index": 7}
    runs.insert_one({**left, "run_id": "left-run", "session_created_at": 1})
    stale = SessionSummary("of the deleted session", [], 1, utc_now(), "left-run")
    assert db.set_session_summary("s1", "ava", stale) is False
    assert db.get_session_summary("s1", "ava") is None
    assert db.append_run(make_run("s1", "ava", "late"), existing="left-run") is False
    assert db.append_run(make_run("s1", "ava", "two"), existing=first.run_id) is True
    assert [r.input for r in db.get_runs("s1", "ava")] == ["one", "two"]
    assert db.get_session("s1", "ava").run_count == 2  # type: ignore[union-attr]
