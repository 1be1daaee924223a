"""A PostgresDb whose tables are dropped under it: the tables are set up again where
noted_schema_versions went with them, else the error names the table and the ways back
(before, every call raised PostgreSQL's "relation ... does not exist", and so did a new
process)."""

from __future__ import annotations

import itertools

import numpy as np
import psycopg
import pytest

from conftest import server_url
from noted import StoreError, UserMemory
from noted._time import utc_now
from noted.db import MemoryQuery
from noted.db.postgres import PostgresDb
from noted.db.postgres.held import READ_AFTER
from servers import Server

_names = itertools.count(1)


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "postgres")


def memory(text: str, memory_id: str) -> UserMemory:
    now = utc_now()
    return UserMemory(text, memory_id=memory_id, user_id="ava", created_at=now, updated_at=now)


def test_a_schema_dropped_under_the_store_is_set_up_again(url: str) -> None:
    schema = f"lost_schema_{next(_names)}"
    db = PostgresDb(url, schema=schema)
    db.upsert_memories([memory("I like tea", "m1")])
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute(f'DROP SCHEMA "{schema}" CASCADE')  # the versions table with it
        raw.execute(f'CREATE SCHEMA "{schema}"')
    with pytest.raises(StoreError, match="set up again, empty where they were gone"):
        db.upsert_memories([memory("I like coffee", "m2")])
    db.upsert_memories([memory("I like coffee", "m2")])  # made again: it works
    assert [m.memory for m in db.list_memories(MemoryQuery("ava"))] == ["I like coffee"]
    db.close()


def test_a_table_dropped_by_hand_is_named_with_the_ways_back(url: str) -> None:
    n = next(_names)
    db = PostgresDb(url, memory_table=f"lost{n}_memories", session_table=f"lost{n}_sessions")
    db.upsert_memories([memory("I like tea", "m1")])
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute(f'DROP TABLE "lost{n}_memories" CASCADE')
    for _ in range(2):
        with pytest.raises(StoreError) as caught:
            db.count_memories(MemoryQuery("ava"))
        said = str(caught.value)
        assert f"table(s) lost{n}_memories are gone" in said
        assert "Restore them from a backup" in said
        assert f"drop lost{n}_memories_events" in said
        assert "noted_schema_versions" in said
    with psycopg.connect(url, autocommit=True) as raw:  # the way back the error gives
        for suffix in ("_events", "_generations", "_counts"):
            raw.execute(f'DROP TABLE "lost{n}_memories{suffix}" CASCADE')
        raw.execute(
            "DELETE FROM noted_schema_versions WHERE table_name = %s", (f"lost{n}_memories",)
        )
    with pytest.raises(StoreError, match="set up again"):
        db.count_memories(MemoryQuery("ava"))
    assert db.count_memories(MemoryQuery("ava")) == 0
    db.upsert_memories([memory("I like coffee", "m2")])
    assert db.count_memories(MemoryQuery("ava")) == 1
    db.close()


def recreated(url: str, schema: str) -> None:
    """The schema dropped and created again, its versions with it, and the store's tables
    set up again by a call."""
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute(f'DROP SCHEMA "{schema}" CASCADE')
        raw.execute(f'CREATE SCHEMA "{schema}"')


def test_searches_kept_before_the_tables_were_made_again_are_not_answers(url: str) -> None:
    schema = f"lost_schema_{next(_names)}"
    first = PostgresDb(url, schema=schema)
    first.upsert_memories([memory("I like tea", "m1")])
    vector = np.ones(4, dtype=np.float32)
    first.set_embeddings("m", [(memory("I like tea", "m1"), vector)])  # generation 2
    query = MemoryQuery("ava")
    for _ in range(READ_AFTER):  # kept, held and counted at generation 2
        assert [s.memory.memory_id for s in first.keyword_search(query, "tea")] == ["m1"]
        assert [s.memory.memory_id for s in first.semantic_search(query, vector, "m")] == ["m1"]
    assert first.count_memories_to_embed("ava", "m") == 0
    assert first._held.reads == 1
    recreated(url, schema)
    with pytest.raises(StoreError, match="set up again"):
        first.count_memories(query)
    second = PostgresDb(url, schema=schema)  # another process: generations 1 and 2 again
    second.upsert_memories([memory("I drink tea", "m2"), memory("tea, green", "m3")])
    second.set_embeddings("m", [(memory("I drink tea", "m2"), vector)])
    found = first.keyword_search(query, "tea")  # not m1's kept result
    assert sorted(s.memory.memory_id or "" for s in found) == ["m2", "m3"]
    found = first.semantic_search(query, vector, "m")  # not m1's held vector
    assert [s.memory.memory_id for s in found] == ["m2"]
    assert first.count_memories_to_embed("ava", "m") == 1
    first.close()
    second.close()


def test_a_database_dropped_and_made_again_is_set_up_again(url: str) -> None:
    name = f"lost_database_{next(_names)}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        there = url.rsplit("/", 1)[0] + "/" + name
        db = PostgresDb(there, schema="kept")
        db.upsert_memories([memory("I like tea", "m1")])
        query = MemoryQuery("ava")
        for _ in range(2):  # asked again: kept
            assert [s.memory.memory_id for s in db.keyword_search(query, "tea")] == ["m1"]
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')  # its connections ended
        with pytest.raises(StoreError, match=f'database "{name}" does not exist'):
            db.count_memories(query)
        admin.execute(f'CREATE DATABASE "{name}"')
        assert db.count_memories(query) == 0  # a new pool: set up as at the first call
        other = PostgresDb(there, schema="kept")
        other.upsert_memories([memory("I drink tea", "m2")])  # generation 1 again
        assert [s.memory.memory_id for s in db.keyword_search(query, "tea")] == ["m2"]
        db.set_embeddings("m", [(memory("I drink tea", "m2"), np.ones(4, dtype=np.float32))])
        assert db.uses_pgvector
        db.close()
        other.close()
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_a_new_store_is_told_of_a_table_dropped_by_hand(url: str) -> None:
    n = next(_names)
    tables = {"memory_table": f"lost{n}_memories", "session_table": f"lost{n}_sessions"}
    before = PostgresDb(url, **tables)
    before.upsert_memories([memory("I like tea", "m1")])
    before.close()
    with psycopg.connect(url, autocommit=True) as raw:
        raw.execute(f'DROP TABLE "lost{n}_memories" CASCADE')
    db = PostgresDb(url, **tables)  # a new process: its first call sets up, and fails
    for _ in range(2):
        with pytest.raises(StoreError) as caught:
            db.count_memories(MemoryQuery("ava"))
        said = str(caught.value)
        assert f'relation "lost{n}_memories" does not exist: table(s) lost{n}_memories' in said
        assert "Restore them from a backup" in said
        assert f"drop lost{n}_memories_events" in said
    db.close()
