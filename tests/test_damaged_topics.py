"""A memory whose stored topics are damaged (a hand-edited database: not JSON, or JSON that
is not a list of strings), on every backend that can hold one (see conftest.BACKENDS; the
in-process store keeps memories as objects, which nothing outside can damage).

Such a memory made every read of its user's memories fail: the listing, the searches, the
topics, and so every agent run of that user, whose prompt is built from them. On SQLite a
damaged value that is valid JSON (``{"a": 1}``, ``[1, 2]``) reached the caller as the
memory's topics through the REST listing. Every read now lists it with no topics and
``damaged`` saying what is wrong; its user keeps all their other memories; a change that
would keep topics nobody can read is refused; giving it topics repairs it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BACKENDS, open_store, server_url
from noted import (
    Agent,
    DamagedMemoryError,
    Memory,
    MemoryQuery,
    MemoryStore,
    Message,
    SqliteDb,
    UserMemory,
)
from noted.memory.operations import Operation, Permissions, parse_operations
from noted.models import ToolDefinition
from noted.testing import FunctionModel
from servers import Server

# What each store can be made to hold (its column's type allows) in place of a list of
# strings; SQLite and Redis keep the topics as text, PostgreSQL as jsonb, MongoDB as a value.
TEXT_DAMAGE = ["[bad", '{"a": 1}', '"food"', "[1, 2]"]
JSON_DAMAGE = [*TEXT_DAMAGE[1:], '["food", 3]']
VALUE_DAMAGE: list[object] = [{"a": 1}, "food", [1, 2], ["chess", 3]]


@pytest.fixture(params=[kind for kind in BACKENDS if kind != "in-memory"])
def store(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[MemoryStore]:
    """Every store whose rows something outside it can damage (the in-process store keeps
    memories as objects)."""
    db = open_store(request.param, servers, tmp_path)
    yield db
    db.close()


def damage(store: MemoryStore, servers: dict[str, Server | str], ids: list[str]) -> list[object]:
    """Write a different damaged value as the topics of each of ``ids`` behind the store's
    back, with the database's own client (as a hand edit would); the values written."""
    kind = type(store).__name__
    if kind == "SqliteDb":
        with sqlite3.connect(store.db_file) as connection:  # type: ignore[attr-defined]
            connection.executemany(
                f"UPDATE {store.memory_table} SET topics = ? WHERE memory_id = ?",  # type: ignore[attr-defined]
                list(zip(TEXT_DAMAGE, ids, strict=False)),
            )
        connection.close()
        return TEXT_DAMAGE[: len(ids)]
    if kind == "PostgresDb":
        import psycopg

        with psycopg.connect(server_url(servers, "postgres"), autocommit=True) as connection:
            for value, memory_id in zip(JSON_DAMAGE, ids, strict=False):
                connection.execute(
                    f'UPDATE "{store.memory_table}" SET topics = %s::jsonb '  # type: ignore[attr-defined]
                    "WHERE memory_id = %s",
                    (value, memory_id),
                )
        return JSON_DAMAGE[: len(ids)]
    if kind == "MongoDb":
        import pymongo

        client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient(
            server_url(servers, "mongo")
        )
        collection = client["noted_tests"][store.memory_table]  # type: ignore[attr-defined]
        for value, memory_id in zip(VALUE_DAMAGE, ids, strict=False):
            assert collection.update_one(
                {"_id": memory_id}, {"$set": {"topics": value}}
            ).matched_count
        client.close()
        return VALUE_DAMAGE[: len(ids)]
    if kind == "RedisDb":
        import redis

        client_ = redis.Redis.from_url(server_url(servers, "redis"))
        for value, memory_id in zip(TEXT_DAMAGE, ids, strict=False):
            key = f"{store.memory_table}:m:{memory_id}"  # type: ignore[attr-defined]
            assert client_.hset(key, "topics", value) == 0  # the field was there
        client_.close()
        return TEXT_DAMAGE[: len(ids)]
    raise AssertionError(f"{kind}: no way to damage its rows")


def damaged_memories(
    store: MemoryStore, servers: dict[str, Server | str]
) -> tuple[Memory, str, list[str]]:
    """Ava's memories: one sound ("Ava likes tea", topic food), four damaged ones each
    another way; and one of Bob's (topic travel). Ava's sound memory's id, her damaged
    ones'."""
    memory = Memory(db=store)
    kept = memory.add_user_memory(
        UserMemory("Ava likes tea", topics=["food"], input="I like tea"), user_id="ava"
    )
    ids = [
        memory.add_user_memory(UserMemory(f"Ava likes {x}", topics=["sport"]), user_id="ava")
        for x in ("skiing", "rowing", "chess", "judo")
    ]
    memory.add_user_memory(UserMemory("Bob flies often", topics=["travel"]), user_id="bob")
    damage(store, servers, ids)
    return memory, kept, ids


def test_a_memory_with_damaged_topics_is_read_marked_and_the_others_stay_whole(
    store: MemoryStore, servers: dict[str, Server | str], caplog: pytest.LogCaptureFixture
) -> None:
    memory, kept, ids = damaged_memories(store, servers)
    with caplog.at_level("WARNING", logger="noted.db"):
        listed = memory.get_user_memories("ava", sort_by="created_at", sort_order="asc")
    assert [m.memory_id for m in listed] == [kept, *ids]
    sound, *damaged = listed
    assert (sound.topics, sound.damaged, sound.input) == (["food"], None, "I like tea")
    assert "damaged" not in sound.to_dict()  # a sound memory's dict is as it always was
    for m in damaged:
        assert m.topics == [] and m.damaged, m
        assert m.to_dict()["damaged"] == m.damaged and m.to_dict()["topics"] == []
    logged = [r.getMessage() for r in caplog.records if r.name == "noted.db"]
    assert all(any(repr(i) in line for line in logged) for i in ids)  # each one named
    assert len(logged) <= len(ids)  # once each: reading them again says nothing more
    caplog.clear()
    memory.get_user_memories("ava")
    assert not [r for r in caplog.records if r.name == "noted.db"]
    # damaged topics are no topics: named by no topic filter, listed as no topic (read
    # from the server: no search has kept a snapshot of the user's memories yet)
    assert store.get_topics("ava") == ["food"]
    assert store.get_topics(None) == ["food", "travel"]
    for topic in ("food", "sport", "a"):
        query = MemoryQuery(user_id="ava", topics=(topic,))
        expected = [kept] if topic == "food" else []
        assert [m.memory_id for m in store.list_memories(query)] == expected, topic
        assert store.count_memories(query) == len(expected), topic
    # every read of them marks them alike
    assert memory.get_user_memory(ids[0], "ava") == damaged[0]
    assert store.get_memories(ids, "ava") == {m.memory_id: m for m in damaged}
    found = memory.search_user_memories("Ava likes", "ava", 10, "keyword")
    assert {m.memory_id for m in found} == {kept, *ids}
    assert all(m.topics == [] and m.damaged for m in found if m.memory_id in ids)
    newest = memory.search_user_memories(None, "ava", 10, "last_n")
    assert {m.memory_id: m.damaged is not None for m in newest} == {
        kept: False,
        **dict.fromkeys(ids, True),
    }
    assert [m.memory for m in memory.get_user_memories("bob")] == ["Bob flies often"]


def test_a_memory_with_damaged_topics_is_repaired_by_topics_and_can_be_deleted(
    store: MemoryStore, servers: dict[str, Server | str]
) -> None:
    memory, kept, (first, second, *_) = damaged_memories(store, servers)
    with pytest.raises(DamagedMemoryError, match=f"memory {first!r} has damaged topics") as err:
        memory.edit_user_memory(first, "ava", memory="Ava skis")  # keeping what nobody can read
    assert err.value.memory_id == first
    assert memory.get_user_memory(first, "ava").damaged  # type: ignore[union-attr]
    repaired = memory.edit_user_memory(first, "ava", topics=[])  # none, said on purpose
    assert (repaired.memory, repaired.topics, repaired.damaged) == ("Ava likes skiing", [], None)
    assert memory.get_user_memory(first, "ava") == repaired
    repaired = memory.edit_user_memory(first, "ava", memory="Ava skis", topics=["sport"])
    assert (repaired.memory, repaired.topics, repaired.damaged) == ("Ava skis", ["sport"], None)
    assert memory.delete_user_memory(second, "ava")
    assert memory.get_user_memory(second, "ava") is None
    [*_, last] = memory.get_memory_history(second, "ava")
    assert (last.event, last.old_memory, last.old_topics) == ("delete", "Ava likes rowing", [])
    assert memory.get_user_memory(kept, "ava").topics == ["food"]  # type: ignore[union-attr]


def test_an_agent_run_of_a_user_with_a_damaged_memory_answers(
    store: MemoryStore, servers: dict[str, Server | str]
) -> None:
    """The prompt's memories are selected by searches and a listing of the user's: one
    damaged memory made every run of that user fail. Its text is shown as any other's."""
    memory, _, _ = damaged_memories(store, servers)
    prompts: list[str] = []

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        first = messages[0].content or ""
        if first.startswith("You maintain the long-term memory"):
            return json.dumps({"operations": []})
        prompts.append(first)
        return "Tea, skiing and chess."

    model = FunctionModel(fn)
    agent = Agent(model, db=store, memory=memory, user_id="ava", enable_user_memories=True)
    assert agent.run("What does Ava like?", session_id="s").content == "Tea, skiing and chess."
    assert agent.wait_for_memories(timeout=20)
    assert all(f"Ava likes {x}" in prompts[0] for x in ("tea", "skiing", "chess"))


def test_a_memory_job_that_repairs_a_damaged_memory_writes_it(
    store: MemoryStore, servers: dict[str, Server | str], caplog: pytest.LogCaptureFixture
) -> None:
    """The memory manager's plan, stored with its job, keeps the memories it changes as
    they were shown: one marked damaged made the job fail on every attempt ("unknown
    memory field(s): damaged") and the model's repair was never written."""
    memory, _, (first, *_) = damaged_memories(store, servers)
    repair = {"op": "update", "id": "Ava likes skiing", "memory": "Ava gave up skiing"}

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if (messages[0].content or "").startswith("You maintain the long-term memory"):
            return json.dumps({"operations": [{**repair, "topics": ["sport"]}]})
        return "Noted."

    agent = Agent(
        FunctionModel(fn), db=store, memory=memory, user_id="ava", enable_user_memories=True
    )
    with caplog.at_level("WARNING", logger="noted.jobs"):
        agent.run("I gave up skiing", session_id="s")
        assert agent.wait_for_memories(timeout=30)
    assert not [r.getMessage() for r in caplog.records if r.name == "noted.jobs"]
    repaired = memory.get_user_memory(first, "ava")
    assert repaired is not None
    assert (repaired.memory, repaired.topics, repaired.damaged) == (
        "Ava gave up skiing",
        ["sport"],
        None,
    )


def test_a_sound_memory_is_read_unmarked_everywhere(tmp_path: Path) -> None:
    """``damaged`` is set by reads only: a memory built or imported has none, and an
    export line carrying one is refused as an unknown field."""
    assert UserMemory("Ava likes tea").damaged is None
    with pytest.raises(ValueError, match="unknown memory field"):
        UserMemory.from_dict({"memory": "Ava likes tea", "damaged": "x"})


def test_a_model_update_of_a_damaged_memory_gives_its_topics() -> None:
    """A model's update that omits topics keeps the memory's: for a memory whose stored
    topics are damaged (read as none) it would have written none, as if there had been
    none to keep. It is refused, saying to give them; one that gives them repairs it."""
    damaged = UserMemory("Ava likes skiing", memory_id="m1", user_id="ava")
    damaged.damaged = "not valid JSON (Expecting value): '[bad'"  # as a read marks it
    for topics in (None, []):
        item = {"op": "update", "id": 1, "memory": "Ava likes to ski", "topics": topics}
        answer = json.dumps({"operations": [item]})
        plan = parse_operations(answer, {1: damaged}, Permissions(), 5000)
        assert plan.operations == []
        assert "stored topics are damaged: give its topics" in " ".join(plan.rejected)
    item = {"op": "update", "id": 1, "memory": "Ava likes skiing", "topics": ["sport"]}
    plan = parse_operations(json.dumps({"operations": [item]}), {1: damaged}, Permissions(), 5000)
    assert plan.operations == [Operation("update", "m1", "Ava likes skiing", ("sport",))]


@pytest.mark.parametrize("stored", TEXT_DAMAGE)
def test_sqlites_json_listing_marks_a_damaged_memory(tmp_path: Path, stored: str) -> None:
    """SQLite writes a listing's JSON itself (the server's plain listing): topics stored as
    JSON of another shape reached the caller as they were (``"topics": {"a": 1}``), and
    topics that were not JSON failed the whole page."""
    store = SqliteDb(tmp_path / "json.db")
    memory = Memory(db=store)
    kept = memory.add_user_memory(UserMemory("Ava likes tea", topics=["food"]), user_id="ava")
    damaged = memory.add_user_memory(UserMemory("Ava likes chess", topics=["x"]), user_id="ava")
    with sqlite3.connect(store.db_file) as connection:
        connection.execute(
            f"UPDATE {store.memory_table} SET topics = ? WHERE memory_id = ?", (stored, damaged)
        )
    connection.close()
    query = MemoryQuery(user_id="ava", sort_by="created_at", sort_order="asc", limit=10)
    listed = [json.loads(text) for text in store.list_memories_json(query)]
    assert listed == [m.to_dict() for m in store.list_memories(query)]
    assert [(m["memory_id"], m["topics"], "damaged" in m) for m in listed] == [
        (kept, ["food"], False),
        (damaged, [], True),
    ]
    store.close()


@pytest.mark.parametrize("read_only", [False, True])
def test_sqlites_keyword_index_holds_no_words_of_damaged_topics(
    tmp_path: Path, read_only: bool
) -> None:
    """A memory whose topics were damaged before SQLite's keyword index took it in (its
    new memories join the index at the next search) was found by the words of the damaged
    text (``{"quidditch": 1}``), which every read gives as no topics and which the other
    stores' searches leave out; so was it by a read-only store, which ranks the memories
    the index does not hold as the index would. Its text and the sound memories' topics
    are found as before."""
    store = SqliteDb(tmp_path / "fts.db")
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(UserMemory("Ava likes tea", topics=["food"]), user_id="ava")
    assert memory.search_user_memories("tea", "ava", 10, "keyword")  # the index is made
    damaged = memory.add_user_memory(UserMemory("Ava likes judo", topics=["x"]), user_id="ava")
    with sqlite3.connect(store.db_file) as connection:
        connection.execute(
            f"UPDATE {store.memory_table} SET topics = ? WHERE memory_id = ?",
            ('{"quidditch": 1}', damaged),
        )
    connection.close()
    searched = SqliteDb(tmp_path / "fts.db", read_only=True) if read_only else store
    reader = Memory(db=searched, embedder=None)
    assert reader.search_user_memories("quidditch", "ava", 10, "keyword") == []
    [found] = reader.search_user_memories("judo", "ava", 10, "keyword")
    assert (found.memory_id, found.topics, found.damaged is not None) == (damaged, [], True)
    assert [m.memory for m in reader.search_user_memories("food", "ava", 10, "keyword")] == [
        "Ava likes tea"
    ]
    if read_only:
        searched.close()
    store.close()
