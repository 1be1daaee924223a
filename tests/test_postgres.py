"""PostgresDb beyond the conformance suite: schema and migrations, the indexes its searches
use, pgvector's HNSW index for large users, working without pgvector, many processes."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from at_once import together
from conftest import server_url
from noted import MemoryQuery, SchemaVersionError, StoreError, UserError, UserMemory
from noted._time import utc_now
from noted.db.base import ScoredMemory, WriteBatch
from noted.db.postgres import KEYWORD_MATCH, PostgresDb, keyword
from noted.db.postgres import query as pgsql
from noted.db.postgres import schema as postgres_schema
from noted.retrieval.ranking import STOPWORDS
from servers import Server, start_postgres
from test_backends import stamped
from test_keyword_search import eating

psycopg = pytest.importorskip("psycopg")

SRC = str(Path(__file__).resolve().parents[1] / "src")
_count = iter(range(1, 10**6))


@pytest.fixture
def url(servers: dict[str, Server | str]) -> str:
    return server_url(servers, "postgres")


@pytest.fixture
def names() -> dict[str, str]:
    n = next(_count)
    return {"memory_table": f"pg{n}_memories", "session_table": f"pg{n}_sessions"}


@pytest.fixture
def db(url: str, names: dict[str, str]) -> Iterator[PostgresDb]:
    store = PostgresDb(url, **names)
    yield store
    store.close()


def memories(user: str, count: int, text: str = "memory {i} of {user}") -> list[UserMemory]:
    now = utc_now()
    return [
        UserMemory(
            text.format(i=i, user=user),
            memory_id=f"{user}-{i}",
            user_id=user,
            created_at=now,
            updated_at=now,
        )
        for i in range(count)
    ]


def limited_database(url: str, role: str) -> tuple[str, str]:
    """A database of its own, named as ``role``, in which ``role`` may create tables but
    not extensions: the administrator's URL and the role's."""
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(f'CREATE ROLE "{role}" LOGIN')
            conn.execute(f'CREATE DATABASE "{role}" OWNER postgres')
        conn.execute(f'REVOKE CREATE ON DATABASE "{role}" FROM PUBLIC, "{role}"')
    admin = url.rsplit("/", 1)[0] + f"/{role}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'GRANT CREATE, USAGE ON SCHEMA public TO "{role}"')
    return admin, admin.replace("postgres@", f"{role}@")


def index_definitions(url: str, table: str) -> dict[str, str]:
    """The table's indexes, by name: how each is made."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", (table,)
        ).fetchall()
    return {str(name): str(made) for name, made in rows}


def unit_rows(count: int, dims: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dims)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_tables_indexes_and_schema_version_are_created(db: PostgresDb, url: str) -> None:
    db.upsert_memories(memories("ava", 1))
    assert db.schema_version() == len(postgres_schema.MIGRATIONS)
    assert db.schema_version(db.session_table) == len(postgres_schema.SESSION_MIGRATIONS)
    indexes = index_definitions(url, db.memory_table)
    t = db.memory_table
    assert {
        f"ix_{t}_user_updated",
        f"ix_{t}_user_created",
        f"ix_{t}_user_search",
        f"ix_{t}_user_model",
        f"{t}_pkey",
    } <= indexes.keys()
    assert f"ix_{t}_search" not in indexes  # the GIN index of every user's rows
    assert "USING gin (user_id, words)" in indexes[f"ix_{t}_user_search"]
    assert "USING gin (user_id, ts_filter(words, '{a}'" in indexes[f"ix_{t}_user_text"]
    assert "(user_id, embedding_model) INCLUDE (search_length)" in indexes[f"ix_{t}_user_model"]


def test_a_schema_keeps_the_tables_apart(url: str, names: dict[str, str]) -> None:
    with PostgresDb(url, schema="tenant_a", **names) as a, PostgresDb(url, **names) as b:
        a.upsert_memories(memories("ava", 2))
        assert b.count_memories(MemoryQuery(user_id="ava")) == 0
        assert a.count_memories(MemoryQuery(user_id="ava")) == 2
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = %s "
            "ORDER BY table_schema",
            (names["memory_table"],),
        ).fetchall()
    assert [r[0] for r in row] == ["public", "tenant_a"]


def test_a_newer_schema_is_refused(db: PostgresDb, url: str, names: dict[str, str]) -> None:
    db.upsert_memories(memories("ava", 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE noted_schema_versions SET version = 99 WHERE table_name = %s",
            (names["memory_table"],),
        )
    with pytest.raises(SchemaVersionError, match="newer than this noted knows"):
        PostgresDb(url, **names).count_memories(MemoryQuery(user_id="ava"))


def test_processes_starting_at_once_migrate_once(url: str, names: dict[str, str]) -> None:
    errors: list[BaseException] = []

    def open_and_write(i: int) -> None:
        try:
            with PostgresDb(url, **names) as store:
                store.upsert_memories(memories(f"user{i}", 5))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_and_write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with PostgresDb(url, **names) as store:
        assert store.count_memories(MemoryQuery(user_id=None)) == 30


def opened(database: str, options: dict[str, str]) -> bool | BaseException:
    """Whether a store opening ``database`` with ``options`` uses pgvector, or what it
    raised."""
    try:
        with PostgresDb(database, **options) as store:
            store.count_memories(MemoryQuery(user_id="ava"))
            return store.uses_pgvector
    except BaseException as exc:  # reported to the caller
        return exc


def opened_at_once(database: str, stores: list[dict[str, str]]) -> list[bool | BaseException]:
    """Stores opening ``database`` at the same moment (one for each set of options, each on
    its own thread): whether each uses pgvector, or what it raised."""
    return together([functools.partial(opened, database, options) for options in stores])


def new_database(url: str) -> str:
    name = f"new_{next(_count)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"


def test_stores_opening_a_new_database_at_once_all_get_its_extensions(url: str) -> None:
    """Six stores start at once on a database without extensions: one at a time sets it
    up. Before, most such starts left the table with vectors as bytes (searched in Python)
    although pgvector was there: the stores that failed to create it, because another was
    creating it, made the table."""
    for _ in range(3):
        database = new_database(url)
        same = {"memory_table": "m", "session_table": "s"}
        assert opened_at_once(database, [same] * 6) == [True] * 6
        with psycopg.connect(database) as conn:
            column = conn.execute(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'm'::regclass AND attname = 'embedding'"
            ).fetchone()
            index = conn.execute("SELECT to_regclass('ix_m_user_search')").fetchone()
        assert column == ("vector",)
        assert index == ("ix_m_user_search",)


def test_stores_of_other_tables_opening_at_once_make_the_schema_and_versions_once(
    url: str,
) -> None:
    """Six stores of six table sets start at once in a schema not there yet: the schema and
    the versions table are made once, and no store fails (two creating either at once
    used to, with a duplicate in the catalog)."""
    for _ in range(3):
        database = new_database(url)
        stores = [
            {"schema": "tenant", "memory_table": f"m{i}", "session_table": f"s{i}"}
            for i in range(6)
        ]
        assert opened_at_once(database, stores) == [True] * 6
        with psycopg.connect(database) as conn:
            versions = conn.execute(
                'SELECT table_name, version FROM "tenant"."noted_schema_versions" '
                "ORDER BY table_name"
            ).fetchall()
        assert versions == [
            *((f"m{i}", len(postgres_schema.MIGRATIONS)) for i in range(6)),
            *((f"s{i}", len(postgres_schema.SESSION_MIGRATIONS)) for i in range(6)),
        ]


def test_stores_storing_their_first_vectors_at_once_make_one_hnsw_index(
    url: str, names: dict[str, str]
) -> None:
    """Four stores of one table store the first vectors of a size at the same moment: each
    would make the HNSW index for it; one does, and every vector is stored (all but one
    store used to fail, on the index's name)."""
    stores = [PostgresDb(url, **names) for _ in range(4)]
    rows = memories("ava", 4)
    stores[0].upsert_memories(rows)
    for store in stores:  # each opened (and so set up) before
        assert store.count_memories(MemoryQuery(user_id="ava")) == 4
    vectors = unit_rows(4, 8, seed=5)

    def store_one(i: int) -> BaseException | None:
        try:
            stores[i].set_embeddings("m", [(rows[i], vectors[i])])
        except BaseException as exc:  # reported below
            return exc
        return None

    said = together([functools.partial(store_one, i) for i in range(4)])
    errors = [error for error in said if error is not None]
    assert errors == []
    for i in range(4):
        [hit] = stores[0].semantic_search(MemoryQuery(user_id="ava", limit=1), vectors[i], "m")
        assert hit.memory.memory_id == f"ava-{i}"
    for store in stores:
        store.close()
    with psycopg.connect(url) as conn:
        made = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s AND indexname LIKE %s",
            (names["memory_table"], "%hnsw%"),
        ).fetchall()
    assert made == [(f"ix_{names['memory_table']}_hnsw_8",)]


def test_many_processes_share_one_database(url: str, names: dict[str, str]) -> None:
    script = (
        "import sys\n"
        "from noted import Memory, UserMemory\n"
        "from noted.db.postgres import KEYWORD_MATCH, PostgresDb\n"
        "url, mt, st, worker = sys.argv[1:]\n"
        "memory = Memory(db=PostgresDb(url, memory_table=mt, session_table=st))\n"
        "for i in range(100):\n"
        "    memory.add_user_memory(UserMemory(f'fact {i} from {worker}'), user_id='shared')\n"
    )
    args = [url, names["memory_table"], names["session_table"]]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, *args, str(w)], env={"PYTHONPATH": SRC, "PATH": ""}
        )
        for w in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    with PostgresDb(url, **names) as store:
        assert store.count_memories(MemoryQuery(user_id="shared")) == 400


def test_keyword_search_reads_only_the_users_rows(url: str, names: dict[str, str]) -> None:
    """Common words are in many users' memories: a search reads the user's rows by an index
    led by the user's id, the GIN index by user for the words, and never a word's list of
    every user's rows."""
    store = PostgresDb(url, **names)
    for user in range(50):
        store.upsert_memories(memories(f"u{user}", 40, "user {user} went skiing on trip {i}"))
    store.upsert_memories(memories("u0", 1, "u0 is allergic to shellfish"))  # over u0-0
    t = store.memory_table
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'VACUUM ANALYZE "{t}"')

    def scans() -> dict[str, int]:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = %s",
                (t,),
            ).fetchall()
        return {name: int(count) for name, count in rows}

    before = scans()
    for user in range(10):
        found = store.keyword_search(MemoryQuery(user_id=f"u{user}", limit=3), "skiing trip 12")
        assert found[0].memory.memory_id == f"u{user}-12"
        assert all(r.memory.user_id == f"u{user}" for r in found)
    [hit] = store.keyword_search(MemoryQuery(user_id="u0"), "Can I eat shellfish?")
    assert hit.memory.memory_id == "u0-0"
    assert store.keyword_search(MemoryQuery(user_id="u1"), "Can I eat shellfish?") == []
    store.close()  # a closing connection reports its statistics
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = scans()
        if after[f"ix_{t}_user_search"] > before[f"ix_{t}_user_search"]:
            break
        time.sleep(0.1)
    assert after[f"ix_{t}_user_search"] > before[f"ix_{t}_user_search"]
    # the words are looked up under the user's id: every index the plan reads is asked for
    # the user's rows, for a common word and for a rare one (for which it takes the GIN)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")

        def plan(word: str) -> list[str]:
            sql = (
                f'EXPLAIN SELECT memory_id FROM "{t}", '
                f"websearch_to_tsquery('english', %s) AS q WHERE user_id = 'u0' AND "
                f"{KEYWORD_MATCH}"
            )
            return [str(row[0]) for row in conn.execute(sql, (word,))]

        for word in ("skiing", "shellfish"):
            asked = [line for line in plan(word) if "Index Cond" in line]
            assert asked, plan(word)
            assert all("(user_id = 'u0'::text)" in line for line in asked), plan(word)
        assert any(f"on ix_{t}_user_search" in line for line in plan("shellfish"))
        # a search of the memories' own text reads the index of the text's words
        words = ["shellfish"]
        text = keyword.ranking(f'"{t}"', " WHERE user_id = %s", KEYWORD_MATCH, 1, text_only=True)
        shown = conn.execute("EXPLAIN " + text, keyword.parameters(words, ["u0"])).fetchall()
        assert any(f"on ix_{t}_user_text" in str(row[0]) for row in shown), shown


def varied(user: str) -> list[UserMemory]:
    """Memories of different lengths, topics and words, some of them shared."""
    now = utc_now()
    texts = [m.memory for m in eating(30)] + [
        "User is allergic to shellfish and eats no prawns",
        "User went skiing in the Alps with her sister",
        "User eats ramen on Fridays",
    ]
    return [
        UserMemory(
            text,
            topics=["food"] if i % 3 else ["food", "eating out"],
            memory_id=f"{user}-{i}",
            user_id=user,
            created_at=now,
            updated_at=now,
        )
        for i, text in enumerate(texts)
    ]


QUESTIONS = ("Can I eat shellfish?", "Where did she go skiing?", "eats ramen and rice")


def rankings(store: PostgresDb, user: str) -> list[list[tuple[str | None, float]]]:
    return [
        [(r.memory.memory_id, round(r.score, 9)) for r in store.keyword_search(q, text)]
        for q in (MemoryQuery(user_id=user), MemoryQuery(user_id=user, topics=("eating out",)))
        for text in QUESTIONS
    ]


def test_a_table_of_the_first_schema_is_migrated_for_search_by_user(
    url: str, names: dict[str, str]
) -> None:
    """A table made by the first schema gets each row's length and the GIN index by user,
    loses the GIN index of every user's rows, and ranks as a table made now."""
    n = postgres_schema.Names(None, names["memory_table"], names["session_table"])
    rows = varied("ava")
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            postgres_schema.create_extension(conn, "vector")
            first = postgres_schema.MIGRATIONS[0]
            first(conn, n, postgres_schema.Extensions(vector=True, btree_gin=False))
            postgres_schema.record_version(conn, n, n.memory_table, 1)
        for m in rows:
            conn.execute(
                f"INSERT INTO {n.memories} (memory_id, user_id, memory, topics, created_at, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s)",
                (
                    m.memory_id,
                    m.user_id,
                    m.memory,
                    json.dumps(m.topics),
                    m.created_at,
                    m.updated_at,
                ),
            )
    with PostgresDb(url, **names) as store:
        assert store.schema_version() == len(postgres_schema.MIGRATIONS)
        migrated = rankings(store, "ava")
    with psycopg.connect(url) as conn:
        lengths = conn.execute(
            f"SELECT count(*) FROM {n.memories} WHERE search_length <> length(words)"
        ).fetchone()
    t = n.memory_table
    indexes = index_definitions(url, t)
    assert f"ix_{t}_search" not in indexes
    assert "USING gin (user_id, words)" in indexes[f"ix_{t}_user_search"]
    assert "(user_id, embedding_model) INCLUDE (search_length)" in indexes[f"ix_{t}_user_model"]
    assert lengths == (0,)
    kept, counted = kept_figures(url, names)
    assert kept == counted and counted["ava"][0] == len(rows)
    fresh = {"memory_table": f"{t}_fresh", "session_table": f"{t}_fresh_sessions"}
    with PostgresDb(url, **fresh) as store:
        store.upsert_memories(varied("ava"))
        assert rankings(store, "ava") == migrated
    assert migrated[0][0][0] == "ava-30"  # the shellfish first
    assert migrated[1][0][0] == "ava-31"  # the skiing
    assert migrated[4] == []  # the skiing has no topic "eating out"
    assert all(migrated[:4]) and all(migrated[5:])


def table_of_the_fifth_schema(url: str, names: dict[str, str]) -> postgres_schema.Names:
    """The memory table made as the fifth schema made it, recorded at that version."""
    n = postgres_schema.Names(None, names["memory_table"], names["session_table"])
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        postgres_schema.create_extension(conn, "vector")
        for step in postgres_schema.MIGRATIONS[:5]:
            step(conn, n, postgres_schema.Extensions(vector=True, btree_gin=True))
        postgres_schema.record_version(conn, n, n.memory_table, 5)
    return n


def test_a_table_of_the_fifth_schema_gets_its_users_figures_and_keeps_generations(
    url: str, names: dict[str, str]
) -> None:
    """Users' generations of a table made before the figures were kept stay as they were;
    each user with memories gets their count and total length, counted once."""
    n = table_of_the_fifth_schema(url, names)
    with psycopg.connect(url, autocommit=True) as conn:
        for i, user in enumerate(["ava", "ava", "bo", "ava"]):
            conn.execute(
                f"INSERT INTO {n.memories} (memory_id, user_id, memory, created_at, "
                "updated_at) VALUES (%s, %s, %s, now(), now())",
                (f"m{i}", user, f"memory number {i} of {user}" + " more" * i),
            )
        conn.execute(f"INSERT INTO {n.generations} VALUES ('ava', 7), ('bo', 2), ('gone', 3)")
    with PostgresDb(url, **names) as store:
        assert store.schema_version() == len(postgres_schema.MIGRATIONS)
        kept, counted = kept_figures(url, names)
        assert kept == counted and counted["ava"][0] == 3 and counted["bo"][0] == 1
        assert [_generation(url, names, u) for u in ("ava", "bo", "gone")] == [7, 2, 3]
        store.upsert_memories([stamped("one more", "bo", "m9")])
        assert _generation(url, names, "bo") == 3
        assert kept_figures(url, names)[0]["bo"] == kept_figures(url, names)[1]["bo"]


def test_a_table_of_the_sixth_schema_folds_accents_and_splits_addresses(
    url: str, names: dict[str, str]
) -> None:
    """Version 7 makes the search words again from every row: "cafe" finds "café",
    "example" an e-mail address, a letter typed with a combining accent is one word; the
    users' figures are counted again and kept by every write after; the indexes on the
    words are made again."""
    n = postgres_schema.Names(None, names["memory_table"], names["session_table"])
    texts = {
        "m0": ("ava", "The user's favourite café is Le Procope"),
        "m1": ("ava", "The user's e-mail address is ava@example.com"),
        "m2": ("ava", "The user keeps notes in /home/ava/notes.md"),
        "m3": ("bo", "The user lives in Zu\u0308rich"),
        "m4": ("bo", "The user is naïve about taxes"),
        "m5": ("bo", "The user studied in Việt Nam and Vie\u0323\u0302t Bac"),
    }
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            postgres_schema.create_extension(conn, "vector")
            for step in postgres_schema.MIGRATIONS[:6]:
                step(conn, n, postgres_schema.Extensions(vector=True, btree_gin=True))
            postgres_schema.record_version(conn, n, n.memory_table, 6)
        for mid, (user, text) in texts.items():
            conn.execute(
                f"INSERT INTO {n.memories} (memory_id, user_id, memory, topics, created_at, "
                "updated_at) VALUES (%s, %s, %s, %s, now(), now())",
                (mid, user, text, json.dumps(["Café life", "a/b"])),
            )
    before = kept_figures(url, names)
    assert before[0] == before[1]
    with PostgresDb(url, **names) as store:
        assert store.schema_version() == len(postgres_schema.MIGRATIONS) == 7

        def found(user: str, text: str) -> list[str]:
            hits = store.keyword_search(MemoryQuery(user_id=user, limit=10), text)
            return sorted(str(h.memory.memory_id) for h in hits)

        assert found("ava", "cafe") == found("ava", "Café") == ["m0", "m1", "m2"]  # topics too
        assert found("ava", "procope") == ["m0"]
        assert found("ava", "example") == found("ava", "example.com") == ["m1"]
        assert found("ava", "notes md") == ["m2"]
        assert found("bo", "Zurich") == found("bo", "Zürich") == ["m3"]
        assert found("bo", "naive") == ["m4"]
        assert found("bo", "viet") == found("bo", "Việt") == found("bo", "bac") == ["m5"]
        kept, counted = kept_figures(url, names)
        assert kept == counted and counted != before[1]  # the words were counted again
        store.upsert_memories([stamped("The user drinks café au lait", "bo", "m9")])
        changed = stamped("The user is naïve about taxes and wine", "bo", "m4")
        assert store.update_memory(changed) is not None
        assert kept_figures(url, names)[0] == kept_figures(url, names)[1]
        assert found("bo", "cafe") == ["m3", "m5", "m9"]  # m4 was given no topics
    indexes = index_definitions(url, names["memory_table"])
    t = names["memory_table"]
    assert "USING gin (user_id, words)" in indexes[f"ix_{t}_user_search"]
    assert "INCLUDE (search_length)" in indexes[f"ix_{t}_user_model"]
    with psycopg.connect(url) as conn:  # an earlier noted's search names a column gone
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (t,)
        ).fetchall()
    assert ("search",) not in columns and ("words",) in columns


def test_the_figures_are_made_beside_a_writer_of_the_fifth_schema(
    url: str, names: dict[str, str]
) -> None:
    """A writer of the earlier schema holds the memory table and then moves a generation
    (as its single add does) while a store of this one makes the figures: neither
    deadlocks, the migration waits for the write, and the write is counted."""
    n = table_of_the_fifth_schema(url, names)
    opened: list[int] = []

    def open_store() -> None:
        with PostgresDb(url, **names) as store:
            opened.append(store.schema_version())

    with psycopg.connect(url) as writer:  # one transaction, until the block ends
        writer.execute(
            f"INSERT INTO {n.memories} (memory_id, user_id, memory, created_at, updated_at) "
            "VALUES ('w1', 'ava', 'written by the earlier schema', now(), now())"
        )
        opening = threading.Thread(target=open_store)
        opening.start()
        time.sleep(0.3)  # the store waits for the memory table
        assert not opened
        writer.execute(f"INSERT INTO {n.generations} VALUES ('ava', 1)")
    opening.join(timeout=30)
    assert opened == [len(postgres_schema.MIGRATIONS)]
    kept, counted = kept_figures(url, names)
    assert kept == counted == {"ava": (1, counted["ava"][1])}


def test_without_btree_gin_words_are_found_the_same_and_indexed_when_it_comes(
    url: str, names: dict[str, str]
) -> None:
    """A database where the user may not create btree_gin: no GIN index by user, the same
    ranking, of the whole memory and of its text alone; once the user may, the next store
    to open the table makes the indexes."""
    admin, limited = limited_database(url, "nobtree")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP EXTENSION IF EXISTS btree_gin")

    def indexed() -> bool:
        found = []
        for suffix in ("user_search", "user_text"):
            with psycopg.connect(admin) as conn:
                index = f'"ix_{names["memory_table"]}_{suffix}"'
                row = conn.execute("SELECT to_regclass(%s)", (index,)).fetchone()
            found.append(row is not None and row[0] is not None)
        assert len(set(found)) == 1, found  # both or neither
        return found[0]

    def texts(store: PostgresDb) -> list[list[str]]:
        query = MemoryQuery(user_id="ava", limit=5)
        return [
            [r.memory.memory_id or "" for r in store.keyword_search(query, q, text_only=True)]
            for q in ("shellfish eat", "ski trip", "food")
        ]

    with PostgresDb(url, **names) as store:  # the same memories where btree_gin is there
        store.upsert_memories(varied("ava"))
        expected = rankings(store, "ava")
        expected_texts = texts(store)
    with PostgresDb(limited, **names) as store:
        store.upsert_memories([*varied("ava"), *varied("bob")])
        assert rankings(store, "ava") == expected
        assert texts(store) == expected_texts and any(expected_texts)
        assert not indexed()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("GRANT CREATE ON DATABASE nobtree TO nobtree")
    try:
        with PostgresDb(limited, **names) as store:
            assert rankings(store, "ava") == expected
            assert indexed()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("REVOKE CREATE ON DATABASE nobtree FROM nobtree")


def test_a_generic_plan_counts_the_users_memories_once(db: PostgresDb, url: str) -> None:
    """psycopg prepares a statement run often, and PostgreSQL may then plan it once for any
    values: with no statistics yet, such a plan put the count and mean length inside the
    loop over the matches (5 s instead of 12 ms at 10,000 memories). Each aggregate runs
    once, whatever the plan."""
    db.upsert_memories(varied("ava") + memories("ava", 300, "User {i} eats out")[33:])
    query = MemoryQuery(user_id="ava", limit=10)
    words = ["eat", "shellfish"]
    where, params = pgsql.where(query)
    statement = keyword.ranking(f'"{db.memory_table}"', where, KEYWORD_MATCH, len(words))
    params = keyword.parameters(words, params)
    statement += pgsql.page(query, params)
    parts = statement.split("%s")
    numbered = parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], 1))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET plan_cache_mode = force_generic_plan")
        conn.execute(f"PREPARE ranking AS {numbered}")
        cursor = psycopg.ClientCursor(conn)
        slots = ", ".join(["%s"] * len(params))
        cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE ranking({slots})", params)
        row = cursor.fetchone()
        assert row is not None
        [explained] = row[0] if isinstance(row[0], list) else json.loads(row[0])

    def nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
        yield node
        for child in node.get("Plans", []):
            yield from nodes(child)

    aggregates = [n for n in nodes(explained["Plan"]) if n["Node Type"] == "Aggregate"]
    assert aggregates
    assert [n["Actual Loops"] for n in aggregates] == [1] * len(aggregates)
    assert db.keyword_search(query, "eat shellfish")[0].memory.memory_id == "ava-30"


def test_keyword_ranking_counts_words_among_the_users_own_memories(db: PostgresDb) -> None:
    """Document frequencies are the user's: another user's thousand memories saying the rare
    word change neither the order nor the scores of this user's results."""
    now = utc_now()
    texts = [m.memory for m in eating(50)] + ["User is allergic to shellfish"]
    db.upsert_memories(
        [
            UserMemory(text, memory_id=f"ava-{i}", user_id="ava", created_at=now, updated_at=now)
            for i, text in enumerate(texts)
        ]
    )
    query = MemoryQuery(user_id="ava", limit=None)

    def ranking() -> list[tuple[str | None, float]]:
        return [
            (r.memory.memory_id, r.score) for r in db.keyword_search(query, "Can I eat shellfish?")
        ]

    alone = ranking()
    assert alone[0][0] == "ava-50" and len(alone) == 51
    db.upsert_memories(memories("bob", 1000, "User {i} ate shellfish at the shellfish bar"))
    assert ranking() == alone
    # the user's own memories do count: with shellfish common among them, eating comes first
    db.upsert_memories(memories("ava", 200, "User {i} read about shellfish")[51:])
    assert ranking()[0][0] != "ava-50"


def test_a_user_beyond_the_exact_limit_is_searched_through_hnsw(
    url: str, names: dict[str, str]
) -> None:
    store = PostgresDb(url, exact_search_limit=30, **names)
    big, small = memories("big", 200), memories("small", 20)
    store.upsert_memories(big + small)
    vectors = unit_rows(220, 16, seed=1)
    assert store.set_embeddings("m", list(zip(big + small, vectors, strict=True))) == 220
    assert store.uses_pgvector

    def scans() -> int:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelname = %s",
                (f"ix_{store.memory_table}_hnsw_16",),
            ).fetchone()
        assert row is not None, "the HNSW index was not created"
        return int(row[0])

    with psycopg.connect(url, autocommit=True) as conn:  # as autovacuum would, in time
        conn.execute(f'ANALYZE "{store.memory_table}"')
    before = scans()
    for i in (3, 77, 150):
        found = store.semantic_search(MemoryQuery(user_id="big", limit=5), vectors[i], "m")
        assert found[0].memory.memory_id == f"big-{i}"
        assert found[0].score == pytest.approx(1.0, abs=1e-5)
        assert all(r.memory.user_id == "big" for r in found)
        assert [r.score for r in found] == sorted((r.score for r in found), reverse=True)
    # centred, the index is asked with the query centred on the user's mean (summed in SQL)
    mean = vectors[:200].sum(axis=0)
    mean /= np.linalg.norm(mean)
    for i in (3, 77):
        query = vectors[i] + vectors[i + 1]
        query /= np.linalg.norm(query)  # a unit query, as searches send
        moved = query - float(query @ mean) * mean
        best = int(np.argmax(vectors[:200] @ moved))
        found = store.semantic_search(MemoryQuery(user_id="big", limit=5), query, "m", 1.0)
        assert found[0].memory.memory_id == f"big-{best}"
        assert found[0].score == pytest.approx(
            float(vectors[best] @ moved) * np.linalg.norm(query) / np.linalg.norm(moved), abs=1e-4
        )
    # a small user is searched exactly, never through the shared index
    [hit] = store.semantic_search(MemoryQuery(user_id="small", limit=1), vectors[205], "m")
    assert hit.memory.memory_id == "small-5"
    store.close()  # a closing connection reports its statistics
    deadline = time.monotonic() + 10
    while scans() == before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scans() > before


def test_without_pgvector_it_still_works_and_says_so_once(
    url: str, names: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A database where the user may not create extensions: vectors are compared here."""
    admin, limited = limited_database(url, "novector")
    with psycopg.connect(admin, autocommit=True) as conn:
        assert (
            conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone() is None
        )
    caplog.set_level(logging.WARNING, logger="noted.db.postgres")
    import noted.db.postgres.vectors as module

    module._warned_no_pgvector = False
    store = PostgresDb(limited, **names)
    rows = memories("ava", 30)
    for m in rows[::3]:
        m.topics = ["pets"]
    store.upsert_memories(rows)
    vectors = unit_rows(30, 8, seed=2)
    assert store.set_embeddings("m", list(zip(rows, vectors, strict=True))) == 30
    assert not store.uses_pgvector
    found = store.semantic_search(MemoryQuery(user_id="ava", limit=3), vectors[11], "m")
    assert found[0].memory.memory_id == "ava-11"
    assert store.semantic_search(MemoryQuery(user_id="bob", limit=3), vectors[11], "m") == []
    # centred on the mean of all of the user's vectors, a filter or not
    mean = vectors.sum(axis=0) / np.linalg.norm(vectors.sum(axis=0))
    query = vectors[11] + vectors[12]
    query /= np.linalg.norm(query)
    moved = query - 0.5 * float(query @ mean) * mean
    moved *= np.linalg.norm(query) / np.linalg.norm(moved)
    centred = store.semantic_search(MemoryQuery(user_id="ava", limit=30), query, "m", 0.5)
    assert [r.score for r in centred] == pytest.approx(
        sorted(vectors @ moved, reverse=True), abs=1e-5
    )
    pets = store.semantic_search(MemoryQuery(user_id="ava", topics=("pets",)), query, "m", 0.5)
    assert [r.score for r in pets] == pytest.approx(
        sorted(vectors[::3] @ moved, reverse=True), abs=1e-5
    )
    PostgresDb(limited, **names).count_memories(MemoryQuery(user_id="ava"))
    said = [r for r in caplog.records if "pgvector" in r.getMessage()]
    assert len(said) == 1
    store.close()


def test_connection_problems_are_clear_errors(url: str) -> None:
    with pytest.raises(UserError, match="postgresql://"):
        PostgresDb("mysql://x/y")
    port = url.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    closed = f"postgresql://nobody:secret@127.0.0.1:{int(port) + 1}/none"
    store = PostgresDb(closed, connect_timeout=2)
    assert "secret" not in repr(store)
    started = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect"):
        store.count_memories(MemoryQuery(user_id="ava"))
    assert time.monotonic() - started < 10
    with pytest.raises(StoreError, match="does not exist"):
        PostgresDb(url.rsplit("/", 1)[0] + "/missing_db").count_memories(MemoryQuery(user_id="ava"))


def test_the_sqlalchemy_style_url_is_accepted(url: str, names: dict[str, str]) -> None:
    with PostgresDb(url.replace("postgresql://", "postgresql+psycopg://"), **names) as store:
        store.upsert_memories(memories("ava", 1))
        assert store.count_memories(MemoryQuery(user_id="ava")) == 1


def test_a_centred_search_keeps_the_users_mean_for_a_minute(
    url: str, names: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sum of the user's vectors is made in the database and kept for a minute, with
    the vectors this process stores added to it: another process's writes count at the
    next sum."""
    import noted.db.postgres.vectors as module

    reader, writer = PostgresDb(url, **names), PostgresDb(url, **names)
    first = memories("ava", 20)
    writer.upsert_memories(first)
    vectors = unit_rows(40, 8, seed=3)
    writer.set_embeddings("m", list(zip(first, vectors[:20], strict=True)))
    query = vectors[0] + vectors[25]
    query /= np.linalg.norm(query)

    def scores(store: PostgresDb) -> list[float]:
        found = store.semantic_search(MemoryQuery(user_id="ava", limit=40), query, "m", 1.0)
        return [r.score for r in found]

    def expected(stored: np.ndarray, mean_of: np.ndarray) -> list[float]:
        mean = mean_of.sum(axis=0) / np.linalg.norm(mean_of.sum(axis=0))
        moved = query - float(query @ mean) * mean
        return sorted((stored @ (moved / np.linalg.norm(moved))).tolist(), reverse=True)

    assert scores(reader) == pytest.approx(expected(vectors[:20], vectors[:20]), abs=1e-5)
    assert scores(writer) == pytest.approx(expected(vectors[:20], vectors[:20]), abs=1e-5)
    more = [
        UserMemory(
            m.memory,
            memory_id=f"ava-{20 + i}",
            user_id="ava",
            created_at=m.created_at,
            updated_at=m.updated_at,
        )
        for i, m in enumerate(memories("ava", 20))
    ]
    writer.upsert_memories(more)
    writer.set_embeddings("m", list(zip(more, vectors[20:], strict=True)))
    # the reader's kept mean is the one before the other process's writes; its writer's is new
    assert scores(reader) == pytest.approx(expected(vectors, vectors[:20]), abs=1e-5)
    assert scores(writer) == pytest.approx(expected(vectors, vectors), abs=1e-5)
    later = time.monotonic() + 61
    # a minute on, for the store's vectors only (not for the connections under them)
    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=lambda: later))
    assert scores(reader) == pytest.approx(expected(vectors, vectors), abs=1e-5)
    reader.close()
    writer.close()


def test_a_vector_stored_again_over_the_models_is_not_counted_twice(
    url: str, names: dict[str, str]
) -> None:
    """A memory's vector stored again by the same model replaces one the kept sum holds:
    the sum goes and is made again, equal to the database's; a new one is added."""
    store = PostgresDb(url, **names)
    rows = memories("ava", 3)
    store.upsert_memories(rows)
    vectors = unit_rows(5, 4, seed=5)
    store.set_embeddings("m", list(zip(rows[:2], vectors[:2], strict=True)))
    store._vectors._mean("ava", "m", 4)  # kept
    key = ("ava", "m", 4)

    def in_the_database() -> np.ndarray:
        with store._connection() as conn:
            row = conn.execute(
                f"SELECT sum(embedding)::text FROM {store._n.memories} WHERE user_id = 'ava'"
            ).fetchone()
        assert row is not None
        return np.array(json.loads(row[0]))

    store.set_embeddings("m", [(rows[0], vectors[2])])  # over rows[0]'s vector by "m"
    assert key not in store._vectors._sums
    store._vectors._mean("ava", "m", 4)
    store.set_embeddings("m", [(rows[2], vectors[3])])  # a new one: added
    assert store._vectors._sums[key].total == pytest.approx(in_the_database(), abs=1e-5)
    store.set_embeddings("m", [(rows[1], vectors[4]), (rows[2], vectors[0])])
    assert key not in store._vectors._sums
    store.close()


def test_a_sum_made_while_vectors_were_stored_is_made_again(
    url: str, names: dict[str, str]
) -> None:
    """A sum whose statement began before a store's transaction cannot hold its vectors (they
    are added); one that began during it may (it goes); one after it holds them (kept)."""
    from noted.db.postgres.vectors import _KeptSum

    store = PostgresDb(url, **names)
    rows = memories("ava", 1)
    vector = unit_rows(1, 4, seed=4)[0]
    sums = store._vectors._sums
    key = ("ava", "m", 4)
    began = time.monotonic() - 1  # the transaction began a second ago and has committed
    for when, kept in ((began - 1, True), (began + 0.5, False), (began + 3600, True)):
        sums[key] = _KeptSum(when + 60, when, np.ones(4))
        store._vectors._added([(rows[0], vector)], "m", began)
        if not kept:
            assert key not in sums
            continue
        added = when < began
        assert sums[key].total == pytest.approx(np.ones(4) + (vector if added else 0))
    store.close()


def told(user: str, count: int, chars: int) -> list[UserMemory]:
    """Memories each with the conversation it came from (``input``) of ``chars`` letters and
    spaces, none repeated (a text that compresses would stay in the row compressed)."""
    rng = np.random.default_rng(chars)
    rows = memories(user, count, "The user told us fact {i} about {user}")
    for m in rows:
        letters = rng.choice(list("abcdefghijklmnopqrstuvwxyz     "), size=chars)
        m.input = "".join(letters)
    return rows


def out_of_line(url: str, table: str, column: str) -> dict[str, bool]:
    """Whether each memory's ``column`` is kept in the table's TOAST table, by memory id."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            f'SELECT memory_id, pg_column_toast_chunk_id({column}) IS NOT NULL FROM "{table}"'
        ).fetchall()
    return {str(memory_id): bool(moved) for memory_id, moved in rows}


def test_a_memory_with_its_conversation_keeps_its_vector_in_the_table(
    db: PostgresDb, url: str
) -> None:
    """A search by meaning reads every vector of the user: each stays in the row, read
    with it, rather than moved to the TOAST table once the row passes 2 kB."""
    rows = told("ava", 6, chars=1_500)  # with its words and a vector of 384: about 6 kB
    db.upsert_memories(rows)
    vectors = unit_rows(6, 384, seed=5)
    assert db.set_embeddings("m", list(zip(rows, vectors, strict=True))) == 6
    t = db.memory_table
    for column in ("embedding", "input", "words"):
        assert not any(out_of_line(url, t, column).values()), column
    # a longer conversation leaves the row, its vector of 1,536 dimensions stays
    [long] = told("bo", 1, chars=5_000)
    db.upsert_memories([long])
    wide = unit_rows(1, 1_536, seed=6)[0]
    assert db.set_embeddings("m", [(long, wide)]) == 1
    assert not out_of_line(url, t, "embedding")[long.memory_id]
    assert out_of_line(url, t, "words")[long.memory_id]
    # a vector larger than a page may leave too: it is stored and found
    [huge] = told("cy", 1, chars=500)
    db.upsert_memories([huge])
    big = unit_rows(1, 3_072, seed=7)[0]
    assert db.set_embeddings("m", [(huge, big)]) == 1
    assert out_of_line(url, t, "embedding")[huge.memory_id]
    for user, vector, memory_id in (
        ("ava", vectors[4], "ava-4"),
        ("bo", wide, "bo-0"),
        ("cy", big, "cy-0"),
    ):
        [hit] = db.semantic_search(MemoryQuery(user_id=user, limit=1), vector, "m")
        assert hit.memory.memory_id == memory_id
        assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_a_table_of_the_second_schema_keeps_new_vectors_in_its_rows(
    url: str, names: dict[str, str]
) -> None:
    """Its vectors already moved out are still found (the rewrite of version 7 may bring
    them back into their rows, as VACUUM FULL does); new rows keep theirs in the row."""
    n = postgres_schema.Names(None, names["memory_table"], names["session_table"])
    before, after = told("ava", 3, chars=1_000), told("bo", 3, chars=1_000)
    vectors = unit_rows(6, 384, seed=8)
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            assert postgres_schema.create_extension(conn, "vector")
            for step in postgres_schema.MIGRATIONS[:2]:
                step(conn, n, postgres_schema.Extensions(vector=True, btree_gin=True))
            postgres_schema.record_version(conn, n, n.memory_table, 2)
        for m, v in zip(before, vectors, strict=False):
            conn.execute(
                f"INSERT INTO {n.memories} (memory_id, user_id, memory, input, created_at, "
                "updated_at, embedding, embedding_model) VALUES (%s, %s, %s, %s, %s, %s, "
                "%s::vector, 'm')",
                (
                    m.memory_id,
                    m.user_id,
                    m.memory,
                    m.input,
                    m.created_at,
                    m.updated_at,
                    str(v.tolist()),
                ),
            )
    t = n.memory_table
    assert all(out_of_line(url, t, "embedding").values())  # as the second schema kept them
    with PostgresDb(url, **names) as store:
        assert store.schema_version() == len(postgres_schema.MIGRATIONS)
        store.upsert_memories(after)
        assert store.set_embeddings("m", list(zip(after, vectors[3:], strict=True))) == 3
        moved = out_of_line(url, t, "embedding")
        assert not any(moved[m.memory_id] for m in after), moved
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"VACUUM FULL {n.memories}")
        assert not any(out_of_line(url, t, "embedding").values())
        for i, m in enumerate(before + after):
            [hit] = store.semantic_search(MemoryQuery(user_id=m.user_id, limit=1), vectors[i], "m")
            assert hit.memory.memory_id == m.memory_id


def ids(found: list[ScoredMemory]) -> list[str | None]:
    return [r.memory.memory_id for r in found]


def kept_is_used(store: PostgresDb, url: str, user: str, words: str) -> None:
    """The store's next search for ``words`` gives its kept results: a row added behind
    its back, without moving the user's generation, is not among them."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f'INSERT INTO "{store.memory_table}" (memory_id, user_id, memory, created_at, '
            "updated_at) VALUES ('behind', %s, %s, now(), now())",
            (user, f"{words} {words} {words}"),
        )
    try:
        assert "behind" not in ids(store.keyword_search(MemoryQuery(user_id=user), words))
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DELETE FROM \"{store.memory_table}\" WHERE memory_id = 'behind'")


WRITES: dict[str, Any] = {
    "add one": lambda s: s.upsert_memories([stamped("tea for two", "ava", "n1")]),
    "import": lambda s: s.upsert_memories(
        [stamped("tea at noon", "ava", "n2"), stamped("tea at ten", "ava", "n3")]
    ),
    "upsert": lambda s: s.upsert_memories([stamped("tea, green", "ava", "m2")]),
    "replace": lambda s: s.update_memory(stamped("coffee", "ava", "m0")),
    "delete": lambda s: s.delete_memories(["m1"], "ava"),
    "batch": lambda s: s.write_batch(
        WriteBatch("ava", deletes=("m4",), adds=(stamped("tea in a batch", "ava", "n4"),))
    ),
    "clear the user": lambda s: s.clear_memories("ava"),
    "clear everyone": lambda s: s.clear_memories(None),
}


@pytest.mark.parametrize("write", list(WRITES))
def test_a_search_asked_again_is_kept_until_the_user_changes(
    write: str, url: str, names: dict[str, str]
) -> None:
    """Each kind of write, through another store on the same tables, moves the user's
    generation, and the next search asks the database again."""
    texts = ["tea at home", "tea with milk", "skis", "reads", "tea time"]
    with PostgresDb(url, **names) as store, PostgresDb(url, **names) as other:
        store.upsert_memories([stamped(text, "ava", f"m{i}") for i, text in enumerate(texts)])
        store.upsert_memories([stamped("tea too", "bo", "b0")])
        query = MemoryQuery(user_id="ava")
        first = ids(store.keyword_search(query, "tea"))
        assert ids(store.keyword_search(query, "tea")) == first  # asked again: kept
        kept_is_used(store, url, "ava", "tea")
        others = _generation(url, names, "bo")
        WRITES[write](other)
        with PostgresDb(url, **names) as fresh:
            expected = ids(fresh.keyword_search(query, "tea"))
        assert expected != first
        assert ids(store.keyword_search(query, "tea")) == expected
        if write != "clear everyone":  # another user's generation, and kept results, stay
            assert _generation(url, names, "bo") == others


def _generation(url: str, names: dict[str, str], user: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f'SELECT generation FROM "{names["memory_table"]}_generations" WHERE user_id = %s',
            (user,),
        ).fetchone()
    return 0 if row is None else int(row[0])


def bm25(
    store: PostgresDb, words: list[str], counts: bool = False, conn: Any = None
) -> list[tuple[str, float]]:
    """Ava's ranking for ``words`` by the ranking statement itself (on ``conn`` if given):
    counting her memories in it, or with ``counts``, reading the figures the database
    keeps of them."""
    where, params = pgsql.where(MemoryQuery(user_id="ava"))
    table = store._n.counts if counts else None
    inner = keyword.ranking(store._n.memories, where, KEYWORD_MATCH, len(words), counts=table)
    params = keyword.parameters(words, params, counts=counts)
    with store._connection() if conn is None else contextlib.nullcontext(conn) as reading:
        found = pgsql.ranked(reading, store._n.memories, inner, params)
    return [(r.memory.memory_id or "", r.score) for r in found]


def kept_figures(url: str, names: dict[str, str]) -> tuple[dict[str, tuple[int, int]], ...]:
    """Each user's memory count and total length as the database keeps them, and as the
    memory table's rows give them (users with none left out of both)."""
    table = names["memory_table"]
    with psycopg.connect(url) as conn:
        kept = conn.execute(
            f'SELECT user_id, memories, words FROM "{table}_counts" WHERE memories <> 0 '
            "OR words <> 0"
        ).fetchall()
        counted = conn.execute(
            f'SELECT user_id, count(*), sum(search_length) FROM "{table}" GROUP BY user_id'
        ).fetchall()
    return (
        {user: (int(n), int(w)) for user, n, w in kept},
        {user: (int(n), int(w)) for user, n, w in counted},
    )


def test_every_kind_of_write_keeps_the_users_figures_exact(url: str, names: dict[str, str]) -> None:
    """BM25's count and total length of each user's memories are kept by the database
    through every write: one add, a bulk import, upserts over stored memories, a replace,
    deletes, a batch, a clear, vectors stored, and rows written by hand (an insert, a
    move to another user, a delete, a truncate); a search ranks by them exactly as by
    counting."""
    table = f'"{names["memory_table"]}"'
    with PostgresDb(url, **names) as store:
        store.upsert_memories([stamped("tea at home", "ava", "m0")])  # one statement
        store.upsert_memories(
            [stamped(f"tea with milk {i} and honey", "ava", f"m{i}") for i in range(1, 40)]
            + [stamped("skis in winter", "bo", "b1"), stamped("reads", "bo", "b2")]
        )  # by COPY
        assert kept_figures(url, names)[0] == kept_figures(url, names)[1]
        store.upsert_memories(
            [
                stamped("tea", "ava", "m1"),
                stamped("a much longer text about green tea", "ava", "m2"),
                stamped("new one", "ava", "m40"),
            ]
        )  # over stored ones, with a new one
        store.update_memory(stamped("skis and snowboards in the alps", "bo", "b1"))
        store.delete_memories(["m3", "m4"], "ava")
        store.write_batch(
            WriteBatch(
                "ava",
                deletes=("m5",),
                updates=(stamped("milk", "ava", "m6"),),
                adds=(stamped("tea time", "ava", "m41"),),
            )
        )
        embedded = [store.get_memory("m7", "ava"), store.get_memory("b2", "bo")]
        vector = np.ones(4, dtype=np.float32) / 2
        assert store.set_embeddings("m", [(m, vector) for m in embedded if m]) == 2
        store.clear_memories("bo")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {table} (memory_id, user_id, memory, created_at, updated_at) "
                "VALUES ('h1', 'cy', 'written by hand', now(), now()), "
                "('h2', 'ava', 'by hand too, with more words than most', now(), now())"
            )
            conn.execute(f"UPDATE {table} SET user_id = 'cy' WHERE memory_id IN ('m8', 'm9')")
            conn.execute(f"DELETE FROM {table} WHERE memory_id = 'm10'")
        kept, counted = kept_figures(url, names)
        assert kept == counted
        assert set(counted) == {"ava", "cy"} and counted["cy"][0] == 3
        assert bm25(store, ["tea", "milk"], counts=True) == bm25(store, ["tea", "milk"])
        found = store.keyword_search(MemoryQuery(user_id="ava"), "tea milk")
        assert [(r.memory.memory_id, r.score) for r in found] == bm25(store, ["tea", "milk"])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"TRUNCATE {table}")
        assert kept_figures(url, names) == ({}, {})
        store.upsert_memories([stamped("tea again", "ava", "m0")])
        kept, counted = kept_figures(url, names)
        assert kept == counted and counted["ava"][0] == 1


def test_a_search_reads_the_users_figures_in_its_own_snapshot(
    url: str, names: dict[str, str]
) -> None:
    """Inside a transaction that writes a row, a search sees the row and the figures with
    it; a search elsewhere sees neither until it commits."""
    table = f'"{names["memory_table"]}"'
    with PostgresDb(url, **names) as store:
        store.upsert_memories([stamped(f"tea {i}", "ava", f"m{i}") for i in range(10)])
        before = bm25(store, ["tea"], counts=True)
        with psycopg.connect(url) as conn:  # one transaction, until the block ends
            conn.execute(
                f"INSERT INTO {table} (memory_id, user_id, memory, created_at, updated_at) "
                "VALUES ('m10', 'ava', 'tea and a much longer text than the others', now(), "
                "now())"
            )
            inside = bm25(store, ["tea"], counts=True, conn=conn)
            assert len(inside) == 11
            assert inside == bm25(store, ["tea"], conn=conn)
            assert bm25(store, ["tea"], counts=True) == before == bm25(store, ["tea"])
        assert bm25(store, ["tea"], counts=True) == inside


def test_writers_of_one_user_at_once_neither_fail_nor_leave_a_kept_search_stale(
    url: str, names: dict[str, str]
) -> None:
    """Four stores write the same two users at once, in batches and single writes that
    touch each other's memories (each moves the users' generations first, so none waits on
    another halfway); a store's repeated searches meanwhile end up current."""
    stores = [PostgresDb(url, **names) for _ in range(5)]
    reader = stores[4]
    for user in ("ava", "bo"):
        reader.upsert_memories([stamped(f"tea {i}", user, f"{user}-{i}") for i in range(20)])

    def work(k: int) -> None:
        store = stores[k]
        for step in range(25):
            user = ("ava", "bo")[(k + step) % 2]
            i, j = (k * 7 + step) % 20, (k * 11 + step * 3) % 20
            if step % 5 == 4:
                store.upsert_memories(
                    [
                        stamped(f"tea {k} {step}", "ava", f"n-{k}-{step}"),
                        stamped(f"tea {k} {step}", "bo", f"o-{k}-{step}"),
                    ]
                )
            else:
                store.write_batch(
                    WriteBatch(
                        user,
                        deletes=(f"{user}-{j}",),
                        updates=(stamped(f"tea again {k} {step}", user, f"{user}-{i}"),),
                        adds=(stamped(f"tea {k}", user, f"{user}-{k}-{step}"),),
                    )
                )
            reader.keyword_search(MemoryQuery(user_id=user, limit=100), "tea")

    together([functools.partial(work, k) for k in range(4)])
    kept, counted = kept_figures(url, names)
    assert kept == counted
    with PostgresDb(url, **names) as fresh:
        for user in ("ava", "bo"):
            query = MemoryQuery(user_id=user, limit=100)
            assert ids(reader.keyword_search(query, "tea")) == ids(
                fresh.keyword_search(query, "tea")
            )
    for store in stores:
        store.close()


def test_names_that_derived_names_would_clash_with_are_refused(
    url: str, names: dict[str, str]
) -> None:
    base = names["memory_table"]
    # another table's companion: a UserError before anything is made
    for memory_table, session_table in (
        (base, f"{base}_counts"),
        (base, f"{base}_generations"),
        (f"{base}_s_runs", f"{base}_s"),
    ):
        with pytest.raises(UserError, match="must name different tables"):
            PostgresDb(url, memory_table=memory_table, session_table=session_table)
    # names PostgreSQL would cut: a companion table cut into the table itself, or indexes
    # cut into one name
    for length in (63, 60, 52):
        with pytest.raises(UserError, match="63 characters"):
            PostgresDb(url, memory_table="m" * length, session_table=names["session_table"])
    with PostgresDb(url, memory_table="m" * 44, session_table="s" * 46) as longest:
        longest.upsert_memories(memories("ava", 2))
        assert len(index_definitions(url, "m" * 44)) >= 7


def test_tables_whose_index_names_overlap_are_refused_not_mixed(
    url: str, names: dict[str, str]
) -> None:
    # X's index ix_X_user_search is also X_user's ix_X_user + _search, which an upgrade of
    # X_user would drop; and X's ix_X_user_updated would pass for X_user's ix_X_user +
    # _updated. Opening X_user beside X is refused, and X keeps its indexes.
    base = names["memory_table"]
    with PostgresDb(url, memory_table=base, session_table=names["session_table"]) as first:
        first.upsert_memories(memories("ava", 2))
    before = index_definitions(url, base)
    other = PostgresDb(url, memory_table=f"{base}_user", session_table=f"{base}_s2")
    with pytest.raises(UserError, match="belongs to another table"):
        other.upsert_memories(memories("bob", 1))
    other.close()
    assert index_definitions(url, base) == before
    assert index_definitions(url, f"{base}_user") == {}  # nothing of it was made


def test_the_words_left_out_of_the_index_are_the_servers_english_stop_words(url: str) -> None:
    """A query whose words are all in keyword.ENGLISH_STOP_WORDS (or the stores' own list)
    is searched by reading the rows; the others through the index: the list is the one
    the server's 'english' configuration leaves out, so no query of words the index
    holds leaves it, and none it lacks finds nothing."""
    listed = sorted(keyword.ENGLISH_STOP_WORDS | STOPWORDS | {"nurse", "who", "whose"})
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT w FROM unnest(%s::text[]) AS w "
            "WHERE numnode(plainto_tsquery('english', w)) = 0",
            (listed,),
        ).fetchall()
    assert {row[0] for row in rows} == keyword.ENGLISH_STOP_WORDS


def test_a_search_of_function_words_alone_reads_the_users_newest_rows(
    db: PostgresDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Function words are read from the rows, at most keyword.FUNCTION_WORDS_SCAN of the
    user's newest that the filters keep, and ranked among those."""
    monkeypatch.setattr(keyword, "FUNCTION_WORDS_SCAN", 3)
    rows = memories("ava", 6, "User {i} is at the lake")
    for i, row in enumerate(rows):
        row.agent_id = "coach" if i % 2 else None
        row.updated_at = utc_now() - timedelta(hours=i)  # ava-0 the newest
    db.upsert_memories(rows)
    db.upsert_memories(memories("bob", 4, "Bob {i} is at the lake"))

    def found(text: str, **filters: object) -> list[str | None]:
        query = MemoryQuery(user_id="ava", limit=10, **filters)  # type: ignore[arg-type]
        return sorted(r.memory.memory_id for r in db.keyword_search(query, text))

    assert found("the is") == ["ava-0", "ava-1", "ava-2"]
    assert found("at", agent_id="coach") == ["ava-1", "ava-3", "ava-5"]
    assert len(found("lake")) == 6  # a word the index holds: every row


def test_the_calls_after_the_server_ended_the_pools_connections_work(
    db: PostgresDb, url: str
) -> None:
    """A restart of the server ends every connection waiting in the pool (as ending their
    sessions does here): the next calls take new ones instead of failing once for each."""
    db.upsert_memories(memories("ava", 2))
    with contextlib.ExitStack() as held:  # the pool holds three connections, all idle after
        pids = [held.enter_context(db._connection()).info.backend_pid for _ in range(3)]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.01)
    for _ in range(4):
        assert len(db.list_memories(MemoryQuery(user_id="ava"))) == 2
    db.upsert_memories(memories("bob", 1))
    assert db.count_memories(MemoryQuery(user_id="bob")) == 1


@pytest.fixture
def own_server(url: str) -> Iterator[Server]:
    """A PostgreSQL server of this test's own, which it may stop and start again (``url``:
    the session's server, whose fixture skips when PostgreSQL is not installed)."""
    workdir = Path(tempfile.mkdtemp(prefix="noted-test-own-postgres-"))
    server = start_postgres(workdir)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.mark.parametrize("during_a_call", [False, True], ids=["idle", "during-a-call"])
def test_the_first_call_once_the_server_is_back_after_an_outage_works(
    own_server: Server, during_a_call: bool
) -> None:
    """A call while the server is down fails; the pool's own reconnection meanwhile waits
    longer after each failure (1, 2, 4 s...). Once the server is back, the next call works
    instead of waiting for that reconnection and failing. The server goes down while the
    pool's connection waits in it, or while a call uses it (the pool has none left)."""
    db = PostgresDb(own_server.url, connect_timeout=3)
    try:
        db.upsert_memories(memories("ava", 2))

        def call_as_it_stops() -> None:
            with db._connection() as conn:
                own_server.stop()
                conn.execute("SELECT 1")

        if during_a_call:
            with pytest.raises(StoreError):
                call_as_it_stops()
        else:
            own_server.stop()
        started = time.monotonic()
        with pytest.raises(StoreError):
            db.list_memories(MemoryQuery(user_id="ava"))
        failed_in = time.monotonic() - started
        # a pool still held has failed to reconnect four times in each of its two
        # reconnections (for the connection given back ended, and for the waiting call):
        # its next attempt is 8 s away
        deadline = time.monotonic() + 20
        while (pool := db._pool) is not None and time.monotonic() < deadline:
            if pool.get_stats().get("connections_errors", 0) >= 8:
                break
            time.sleep(0.05)
        port = urlsplit(own_server.url).port
        restarted = start_postgres(own_server.workdir, port)
        own_server.pid, own_server.process = restarted.pid, restarted.process
        assert len(db.list_memories(MemoryQuery(user_id="ava"))) == 2
        db.upsert_memories(memories("bob", 1))
        assert db.count_memories(MemoryQuery(user_id="bob")) == 1
        assert failed_in < 3  # the call during the outage failed at once, not after 3 s
    finally:
        db.close()
