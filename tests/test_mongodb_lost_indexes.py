"""A running MongoDb whose database is dropped, or whose collections come back without
their indexes (restored without them), creates the indexes again: after a sign that they
may be gone (a user's generation or a session created), at most a second later, and
every few minutes whatever happens; calls in between send nothing more."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from typing import Any

import pymongo
import pytest
from pymongo import monitoring

from conftest import server_url
from noted import ConflictError, Message, UserMemory
from noted._time import utc_now
from noted.db import MemoryQuery
from noted.db.mongodb import MongoDb
from noted.db.mongodb.server import lost_indexes
from noted.sessions import RunResult
from servers import Server

_names = itertools.count(1)
DATABASE = "noted_lost_indexes"


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "mongo")


@pytest.fixture
def raw(url: str) -> Iterator[Any]:
    client: Any = pymongo.MongoClient(url)
    yield client[DATABASE]
    client.close()


class Commands(monitoring.CommandListener):
    """The names of the commands a client sent."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.sent.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def open_db(url: str, **options: Any) -> MongoDb:
    n = next(_names)
    return MongoDb(
        url,
        DATABASE,
        memory_table=f"lost{n}_memories",
        session_table=f"lost{n}_sessions",
        **options,
    )


def memory(text: str, memory_id: str, user_id: str = "ava") -> UserMemory:
    now = utc_now()
    return UserMemory(text, memory_id=memory_id, user_id=user_id, created_at=now, updated_at=now)


def run(run_id: str, session_id: str) -> RunResult:
    return RunResult(
        run_id=run_id,
        session_id=session_id,
        user_id="ava",
        input="hi",
        content="hello",
        messages=[Message("user", "hi"), Message("assistant", "hello")],
        status="completed",
    )


def noted_keys(raw: Any, name: str) -> list[list[str]]:
    """The fields of the collection's indexes but _id's."""
    return [list(index["key"]) for index in raw[name].list_indexes() if index["name"] != "_id_"]


def test_a_dropped_database_gets_its_indexes_back_after_the_next_write(url: str, raw: Any) -> None:
    db = open_db(url)
    db.upsert_memories([memory("I like tea", "m1")])
    assert db.append_run(run("r1", "s1"))
    runs = f"{db.session_table}_runs"
    assert noted_keys(raw, runs) and noted_keys(raw, db.memory_table)

    raw.client.drop_database(DATABASE)  # under the running store
    db.upsert_memories([memory("I like coffee", "m2")])  # the user's generation made again
    assert db.append_run(run("r2", "s1"))  # and the session
    assert noted_keys(raw, runs) == [] and noted_keys(raw, db.memory_table) == []
    time.sleep(1.05)  # a check at most once a second after a sign

    assert db.count_memories(MemoryQuery("ava")) == 1  # this call checks, and creates them
    assert any(k[:2] == ["user_id", "updated_at"] for k in noted_keys(raw, db.memory_table))
    assert ["run_id"] in noted_keys(raw, runs)
    assert any(k[:2] == ["session_id", "run_index"] for k in noted_keys(raw, runs))
    assert noted_keys(raw, f"{db.memory_table}_events")
    assert noted_keys(raw, db.session_table)
    with pytest.raises(ConflictError, match="run_id 'r2' is taken"):  # unique again
        db.append_run(run("r2", "s2"))
    db.close()


def test_collections_restored_without_indexes_get_them_back_at_the_periodic_check(
    url: str, raw: Any
) -> None:
    db = open_db(url)
    db.upsert_memories([memory("I like tea", "m1")])
    assert db.append_run(run("r1", "s1"))
    runs = f"{db.session_table}_runs"
    kept = list(raw[runs].find())
    raw[runs].drop()  # restored from a dump without its indexes: no sign for the store
    raw[runs].insert_many(kept)
    db.schema_watch.every_s = 0.2
    time.sleep(0.25)
    assert db.get_memory("m1", "ava") is not None
    assert ["run_id"] in noted_keys(raw, runs)
    with pytest.raises(ConflictError, match="run_id 'r1' is taken"):
        db.append_run(run("r1", "s2"))
    db.close()


def test_calls_between_two_checks_send_no_index_listing(url: str) -> None:
    commands = Commands()
    client: Any = pymongo.MongoClient(url, event_listeners=[commands])
    db = open_db(url, client=client)
    db.upsert_memories([memory("I like tea", "m1")])
    db.append_run(run("r1", "s1"))
    time.sleep(1.05)  # a check at most once a second after a sign
    db.count_memories(MemoryQuery("ava"))  # the check after the new user and session
    commands.sent.clear()
    for i in range(20):
        db.upsert_memories([memory(f"fact {i}", f"f{i}")])  # a known user
        db.append_run(run(f"r{i + 2}", "s1"))  # a known session
        db.keyword_search(MemoryQuery("ava", limit=3), "fact")
    assert "listIndexes" not in commands.sent
    assert "createIndexes" not in commands.sent
    db.close()
    client.close()


def test_lost_indexes_are_found_by_their_fields_as_the_server_lists_them() -> None:
    wanted = [("by_user", [("user_id", 1), ("updated_at", -1), ("_id", -1)], {})]
    with_id = {"name": "by_user", "key": {"user_id": 1, "updated_at": -1, "_id": -1}}
    renamed = {"name": "idx_x_user_id_updated_at", "key": {"user_id": 1, "updated_at": -1}}
    only_id = {"name": "_id_", "key": {"_id": 1}}
    text = {"name": "noted_text", "key": {"_fts": "text", "_ftsx": 1}, "textIndexVersion": 3}
    assert lost_indexes([only_id, with_id], wanted) == []
    assert lost_indexes([only_id, renamed], wanted) == []  # nx-27017 names it itself
    assert lost_indexes([only_id], wanted) == ["by_user"]
    assert lost_indexes([only_id, with_id], wanted, text=True) == ["noted_text"]
    assert lost_indexes([only_id, with_id, text], wanted, text=True) == []
