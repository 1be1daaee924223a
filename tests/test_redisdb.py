"""RedisDb specifics: key layout, no key scans, server-side paging, exact times, atomic and
race-free writes, sessions, errors and isolation between prefixes, on a real redis-server.

The behaviour every store shares is tested on Redis too, by the suites parametrized over
conftest's ``store`` fixture (test_memory_api, test_audit, test_keyword_search,
test_search). Here also: the search cache, checked against the generation every write
moves on, including writes by other RedisDb objects (as other processes would make)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import redis

from conftest import server_url
from noted import (
    Agent,
    ConflictError,
    InMemoryDb,
    Memory,
    MemoryQuery,
    MemoryStore,
    SessionStore,
    StoreError,
    UserError,
    UserMemory,
)
from noted._time import to_micros, utc_now
from noted.db._client_search import semantic_rank
from noted.db.base import ScoredMemory, WriteBatch
from noted.db.redisdb import RedisDb
from noted.sessions import SessionSummary
from servers import Server, free_port
from test_sessions import make_run

Servers = dict[str, Server | str]


def unique(kind: str) -> str:
    return f"t{uuid.uuid4().hex[:10]}_{kind}"


@pytest.fixture
def url(servers: Servers) -> str:
    return server_url(servers, "redis")


@pytest.fixture
def client(url: str) -> Iterator[redis.Redis]:
    """A plain client on the same server, to look at what RedisDb wrote."""
    raw = redis.Redis.from_url(url)
    yield raw
    raw.close()


@pytest.fixture
def db(url: str) -> Iterator[RedisDb]:
    store = RedisDb(url, memory_table=unique("memories"), session_table=unique("sessions"))
    yield store
    store.close()


def stamped(text: str, memory_id: str, user_id: str, when: datetime | None = None) -> UserMemory:
    when = when or utc_now()
    return UserMemory(text, memory_id=memory_id, user_id=user_id, created_at=when, updated_at=when)


def keys(client: redis.Redis, prefix: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(match=f"{prefix}:*", count=1000)}


def command_calls(client: redis.Redis) -> dict[str, int]:
    """Calls per command since the server started (commands run by scripts included)."""
    stats = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(s["calls"]) for name, s in stats.items()}


def calls_during(client: redis.Redis, action: Callable[[], object]) -> dict[str, int]:
    """How many times each command ran during ``action`` (on the whole server)."""
    before = command_calls(client)
    action()
    after = command_calls(client)
    return {k: n - before.get(k, 0) for k, n in after.items() if n != before.get(k, 0)}


# -- layout and the server's work -----------------------------------------------------------


def test_satisfies_both_protocols(db: RedisDb) -> None:
    assert isinstance(db, MemoryStore)
    assert isinstance(db, SessionStore)


def test_the_key_layout(db: RedisDb, client: redis.Redis) -> None:
    m = db.memory_table
    db.upsert_memories([stamped("x", "m1", "a:b"), stamped("y", "m2", "a:b")])
    db.delete_memories(["m2"], "a:b")
    db.append_run(make_run("s1", "ava", "hello"))
    assert keys(client, m) == {
        f"{m}:m:m1",
        f"{m}:upd:a:b",
        f"{m}:crt:a:b",
        f"{m}:users",
        f"{m}:e:3:a:b:m1",
        f"{m}:e:3:a:b:m2",  # a deleted memory keeps its history
        f"{m}:gen:3:a:b",
        f"{m}:chg:3:a:b",
    }
    s = db.session_table
    assert keys(client, s) == {
        f"{s}:s:s1",
        f"{s}:r:s1",
        f"{s}:d:s1",
        f"{s}:u:ava",
        f"{s}:all",
        f"{s}:runids",  # each stored run's id, and its session
    }
    fields = {b"user_id", b"memory", b"topics", b"created_at", b"updated_at"}
    assert set(client.hgetall(f"{m}:m:m1")) == fields  # fields that are None are left out


def test_no_key_scans_and_pages_fetch_only_their_hashes(db: RedisDb, client: redis.Redis) -> None:
    memory = Memory(db=db)
    memory.add_user_memories([UserMemory(f"m{i}", topics=["t"]) for i in range(50)], "ava")
    memory.add_user_memory(UserMemory("other"), "bob")

    def everything() -> None:
        db.list_memories(MemoryQuery("ava", topics=("t",), limit=5))
        db.list_memories(MemoryQuery(None))
        db.count_memories(MemoryQuery(None))
        db.keyword_search(MemoryQuery("ava", limit=3), "m1")
        db.get_topics(None)
        db.get_user_stats()
        db.memories_to_embed(None, "model", 10)
        db.count_memories_to_embed(None, "model")
        db.append_run(make_run("s1", "ava", "hello"))
        db.list_sessions(None)
        db.clear_all_memories()

    used = calls_during(client, everything)
    assert not {"keys", "scan"} & set(used)
    memory.add_user_memories([UserMemory(f"n{i}") for i in range(50)], "ava")
    page = calls_during(client, lambda: db.list_memories(MemoryQuery("ava", limit=7, offset=3)))
    assert page.get("hmget") == 7  # only the page's memories are read
    count = calls_during(client, lambda: db.count_memories(MemoryQuery("ava")))
    assert "hmget" not in count and count.get("zcard") == 1


def test_a_bulk_upsert_is_one_script_call(db: RedisDb, client: redis.Redis) -> None:
    memories = [UserMemory(f"User visited city number {i}") for i in range(10_000)]
    started = time.perf_counter()
    used = calls_during(client, lambda: Memory(db=db).add_user_memories(memories, "ava"))
    elapsed = time.perf_counter() - started
    assert used.get("evalsha", 0) + used.get("eval", 0) == 1
    assert db.count_memories(MemoryQuery("ava")) == 10_000
    assert elapsed < 5  # about 0.3 s on loopback; generous for slow machines


def test_the_same_order_as_the_in_memory_store(db: RedisDb) -> None:
    reference = InMemoryDb()
    tie = utc_now()
    batch = []
    for i in range(30):
        m = stamped(f"text {i}", f"id{(i * 7) % 30:02d}", "ava", tie - timedelta(seconds=i % 4))
        m.topics = ["even" if i % 2 == 0 else "odd"]
        m.agent_id = "a1" if i % 3 else None
        m.updated_at = tie + timedelta(seconds=i % 5)  # many equal times: ties by id
        batch.append(m)
    for store in (db, reference):
        store.upsert_memories([m.copy() for m in batch])
    queries = [
        MemoryQuery("ava", sort_by=by, sort_order=order, limit=limit, offset=offset, **filters)
        for by in ("updated_at", "created_at")
        for order in ("asc", "desc")
        for limit, offset in ((None, 0), (5, 0), (7, 11), (None, 25), (3, 40))
        for filters in ({}, {"topics": ("odd",)}, {"agent_id": "a1"})
    ]
    queries.append(MemoryQuery("ava", updated_after=tie + timedelta(seconds=2)))
    queries.append(MemoryQuery("ava", updated_before=tie + timedelta(seconds=2)))
    for query in queries:
        got = [m.memory_id for m in db.list_memories(query)]
        assert got == [m.memory_id for m in reference.list_memories(query)], query
        assert db.count_memories(query) == reference.count_memories(query), query


def test_user_stats_are_newest_first_with_ties_by_user(db: RedisDb) -> None:
    when = utc_now()
    db.upsert_memories([stamped("x", f"m-{u}", u, when) for u in ("cy", "ava", "bob")])
    db.upsert_memories([stamped("old", "m-old", "bob", when - timedelta(days=1))])
    stats = db.get_user_stats()
    assert [(s.user_id, s.memory_count) for s in stats] == [("ava", 1), ("bob", 2), ("cy", 1)]
    assert all(s.last_updated == when for s in stats)
    assert [s.user_id for s in db.get_user_stats(limit=1, offset=2)] == ["cy"]
    db.delete_memories(["m-bob"], "bob")  # bob's newest is gone: he moves down
    assert [s.user_id for s in db.get_user_stats()] == ["ava", "cy", "bob"]
    assert db.get_user_stats(limit=0) == []


def test_memories_to_embed_across_users_are_oldest_first(db: RedisDb) -> None:
    when = utc_now()
    db.upsert_memories(
        [
            stamped("b", "b1", "bob", when),
            stamped("a", "a2", "ava", when + timedelta(seconds=1)),
            stamped("a", "a1", "ava", when - timedelta(seconds=1)),
            stamped("c", "c0", "cy", when),
        ]
    )
    assert [m.memory_id for m in db.memories_to_embed(None, "x")] == ["a1", "b1", "c0", "a2"]
    assert [m.memory_id for m in db.memories_to_embed(None, "x", 2)] == ["a1", "b1"]
    assert [m.memory_id for m in db.memories_to_embed("ava", "x", 1)] == ["a1"]
    assert db.count_memories_to_embed(None, "x") == 4


# -- exact values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    [
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    ],
)
def test_timestamps_round_trip_exactly(db: RedisDb, client: redis.Redis, when: datetime) -> None:
    memory = stamped("x", "m1", "ava", when)
    memory.updated_at = when + timedelta(microseconds=-1 if when.year == 9999 else 1)
    db.upsert_memories([memory])
    stored = client.hmget(f"{db.memory_table}:m:m1", ["created_at", "updated_at"])
    assert stored == [str(to_micros(when)).encode(), str(to_micros(memory.updated_at)).encode()]
    got = db.get_memory("m1", "ava")
    assert got is not None
    assert (got.created_at, got.updated_at) == (memory.created_at, memory.updated_at)
    [listed] = db.list_memories(MemoryQuery("ava"))
    assert listed.updated_at == memory.updated_at
    assert db.get_user_stats()[0].last_updated == memory.updated_at
    assert len(db.list_memories(MemoryQuery("ava", updated_after=memory.updated_at))) == 1
    assert db.list_memories(MemoryQuery("ava", updated_before=memory.updated_at)) == []


def test_texts_and_ids_survive_byte_for_byte(db: RedisDb) -> None:
    text = 'Zoë 🎿 "quoted" \\ back/slash\n\t\x01 control \u2028 end'
    odd_user = "user:with:colons 🎿"
    memory = stamped(text, "id:with/odd chars", odd_user)
    memory.topics = ["日本", "a,b", '["json"]']
    memory.input = ""  # an empty input is not None
    db.upsert_memories([memory])
    got = db.get_memory("id:with/odd chars", odd_user)
    assert got is not None
    assert (got.memory, got.topics, got.input) == (text, memory.topics, "")
    [event] = db.get_memory_history("id:with/odd chars", odd_user)
    assert (event.new_memory, event.new_topics) == (text, memory.topics)
    assert db.get_topics(odd_user) == sorted(memory.topics)


def test_histories_of_user_and_memory_ids_with_colons_stay_apart(db: RedisDb) -> None:
    db.upsert_memories([stamped("one", "c", "a:b"), stamped("two", "b:c", "a")])
    assert [e.new_memory for e in db.get_memory_history("c", "a:b")] == ["one"]
    assert [e.new_memory for e in db.get_memory_history("b:c", "a")] == ["two"]


# -- atomic writes ----------------------------------------------------------------------------


def test_a_conflicting_batch_writes_nothing(db: RedisDb, client: redis.Redis) -> None:
    db.upsert_memories([stamped("ava's", "taken", "ava")])
    before = {k: client.dump(k) for k in keys(client, db.memory_table)}
    batch = [stamped(f"new {i}", f"n{i}", "bob") for i in range(3000)]
    batch.append(stamped("stolen", "taken", "bob"))
    with pytest.raises(ConflictError, match="'taken' belongs to another user"):
        db.upsert_memories(batch)
    with pytest.raises(ConflictError):  # two users of one new id in the same batch
        db.upsert_memories([stamped("x", "fresh", "bob"), stamped("y", "fresh", "cy")])
    after = {k: client.dump(k) for k in keys(client, db.memory_table)}
    assert after == before


def test_update_keeps_created_at_and_unset_fields_and_drops_a_stale_embedding(
    db: RedisDb, client: redis.Redis
) -> None:
    created = utc_now() - timedelta(days=3)
    first = stamped("tea", "m1", "ava", created)
    first.agent_id, first.input = "agent", "said tea"
    db.upsert_memories([first])
    db.set_embeddings("model", [(first, np.array([1.0, 0.0], np.float32))])
    same_text = stamped("tea", "m1", "ava")
    same_text.topics = ["drinks"]
    assert db.update_memory(same_text)
    assert client.hget(f"{db.memory_table}:m:m1", "embedding_model") == b"model"
    assert db.update_memory(stamped("coffee", "m1", "ava"))
    got = db.get_memory("m1", "ava")
    assert got is not None
    assert (got.created_at, got.agent_id, got.input, got.topics) == (
        created,
        "agent",
        "said tea",
        [],
    )
    assert client.hget(f"{db.memory_table}:m:m1", "embedding") is None
    assert db.count_memories_to_embed("ava", "model") == 1


class _Counted(redis.Connection):
    """A connection that counts its sends: redis-py writes a command, or a whole pipeline,
    in one send and then reads the replies, so each send is one round trip."""

    sends = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        _Counted.sends += 1
        super().send_packed_command(command, check_health)


def test_a_batch_takes_no_round_trip_to_ask_for_its_scripts(url: str, client: redis.Redis) -> None:
    counted = redis.Redis(
        connection_pool=redis.ConnectionPool.from_url(url, connection_class=_Counted)
    )
    db = RedisDb(client=counted, memory_table=unique("memories"), session_table=unique("sessions"))
    db.upsert_memories([stamped("tea", "m1", "ava"), stamped("old", "m0", "ava")])
    batch = WriteBatch(
        "ava",
        deletes=("m0",),
        updates=(stamped("coffee", "m1", "ava"),),
        adds=(stamped("milk", "m2", "ava"),),
    )
    db.write_batch(batch)  # the server holds the scripts from here on
    _Counted.sends = 0
    used = calls_during(client, lambda: db.write_batch(batch))
    assert _Counted.sends == 3  # WATCH, the read of the stored memories, MULTI ... EXEC
    assert "script|exists" not in used
    _Counted.sends = 0
    used = calls_during(client, lambda: db.upsert_memories([stamped("tea", "m1", "ava")]))
    assert _Counted.sends == 4  # the script for new ids (answering "stored"), then as above
    assert "script|exists" not in used
    assert {m.memory for m in db.list_memories(MemoryQuery("ava"))} == {"tea", "milk"}
    db.clear_all_memories()
    counted.close()


def test_writes_after_the_servers_scripts_were_flushed_still_succeed(
    db: RedisDb, client: redis.Redis
) -> None:
    def texts() -> set[str]:
        return {m.memory for m in db.list_memories(MemoryQuery("ava"))}

    db.upsert_memories([stamped("tea", "m1", "ava"), stamped("old", "m0", "ava")])
    client.script_flush()
    batch = WriteBatch(
        "ava",
        deletes=("m0",),
        updates=(stamped("coffee", "m1", "ava"),),
        adds=(stamped("milk", "m2", "ava"),),
    )
    assert [m.memory for m in db.write_batch(batch)] == ["coffee", "milk"]
    assert texts() == {"coffee", "milk"}
    client.script_flush()
    db.upsert_memories([stamped("green tea", "m1", "ava")])  # a stored id: the watched path
    assert texts() == {"green tea", "milk"}
    client.script_flush()
    db.write_batch(WriteBatch("ava", clear=True, adds=(stamped("only", "m3", "ava"),)))
    assert texts() == {"only"}
    kinds = [e.event for e in db.get_memory_history("m1", "ava")]
    assert kinds == ["add", "update", "update", "delete"]


def test_eight_threads_lose_no_write(db: RedisDb) -> None:
    memory = Memory(db=db)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                memory.add_user_memory(UserMemory(f"t{n}-{i}"), user_id=f"u{n % 3}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert db.count_memories(MemoryQuery(None)) == 1600
    assert sum(s.memory_count for s in db.get_user_stats()) == 1600
    texts = {m.memory for m in db.list_memories(MemoryQuery(None))}
    assert texts == {f"t{n}-{i}" for n in range(8) for i in range(200)}


def test_racing_stores_claim_each_id_once(url: str) -> None:
    memories, sessions = unique("memories"), unique("sessions")
    # four clients, as four processes would have
    stores = [RedisDb(url, memory_table=memories, session_table=sessions) for _ in range(4)]
    ids = [f"shared{i}" for i in range(50)]
    refused = [0] * len(stores)

    def claim(n: int) -> None:
        for memory_id in ids:
            try:
                stores[n].upsert_memories([stamped(f"by {n}", memory_id, f"user{n}")])
            except ConflictError:
                refused[n] += 1

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db = stores[0]
    owners = {}
    for memory_id in ids:
        held = [n for n in range(len(stores)) if db.get_memory(memory_id, f"user{n}")]
        assert len(held) == 1
        owners[memory_id] = held[0]
        others = [db.get_memory_history(memory_id, f"user{n}") for n in range(len(stores))]
        assert [len(h) > 0 for h in others].count(True) == 1
    assert sum(refused) == len(ids) * (len(stores) - 1)
    for store in stores:
        store.close()


# -- the search cache ---------------------------------------------------------------------------


def gkey(db: RedisDb, user_id: str) -> str:
    return f"{db.memory_table}:gen:{len(user_id.encode())}:{user_id}"


def generation(client: redis.Redis, db: RedisDb, user_id: str) -> int:
    return int(client.get(gkey(db, user_id)) or 0)


def unit(seed: int, dims: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dims).astype(np.float32)
    return v / np.linalg.norm(v)


def found(results: list[ScoredMemory]) -> list[tuple[str | None, str, float]]:
    return [(r.memory.memory_id, r.memory.memory, r.score) for r in results]


def ids(results: list[ScoredMemory]) -> list[str]:
    return [r.memory.memory_id or "" for r in results]


@pytest.fixture
def other(db: RedisDb, url: str) -> Iterator[RedisDb]:
    """Another RedisDb on db's keys, with a client and a cache of its own: another process."""
    store = RedisDb(url, memory_table=db.memory_table, session_table=db.session_table)
    yield store
    store.close()


def test_every_write_moves_on_its_users_generation_once(db: RedisDb, client: redis.Redis) -> None:
    before = to_micros(utc_now())
    db.upsert_memories([stamped(f"{u} {i}", f"{u}{i}", u) for u in ("a:b", "a") for i in range(3)])
    first = generation(client, db, "a:b")
    assert first >= before  # a new generation starts at the server's time, not at 1
    assert generation(client, db, "a") >= before
    writes: list[tuple[Callable[[], object], int]] = [
        (lambda: db.update_memory(stamped("changed", "a:b0", "a:b")), 1),
        (lambda: db.update_memory(stamped("x", "missing", "a:b")), 0),
        (lambda: db.set_embeddings("m", [(stamped("changed", "a:b0", "a:b"), unit(1))]), 1),
        (lambda: db.set_embeddings("m", [(stamped("stale", "a:b1", "a:b"), unit(1))]), 0),
        (lambda: db.delete_memories(["a:b1", "a:b2", "a0"], "a:b"), 1),
        (lambda: db.delete_memories(["nothing"], "a:b"), 0),
        (lambda: db.clear_memories("a:b"), 1),
        (lambda: db.clear_memories("a:b"), 0),
    ]
    expected = first
    for write, moves in writes:
        write()
        expected += moves
        assert generation(client, db, "a:b") == expected
    a = generation(client, db, "a")
    db.clear_all_memories()
    assert generation(client, db, "a") == a + 1  # kept once the memories are gone
    assert generation(client, db, "a:b") == expected


def load_scripts(db: RedisDb) -> None:
    """Have the server hold the search scripts, so that a first call is one EVALSHA."""
    db.keyword_search(MemoryQuery("nobody"), "x")
    db.semantic_search(MemoryQuery("nobody"), unit(0), "model")


def test_a_repeated_search_reads_only_the_generation(db: RedisDb, client: redis.Redis) -> None:
    load_scripts(db)
    memories = [stamped(f"ava likes city {i}", f"m{i:03d}", "ava") for i in range(200)]
    db.upsert_memories(memories)
    db.set_embeddings("model", [(m, unit(i)) for i, m in enumerate(memories)])
    query = MemoryQuery("ava", limit=5)
    keyword = calls_during(client, lambda: db.keyword_search(query, "city 7"))
    assert keyword.get("evalsha") == 1 and keyword.get("hmget") == 200
    # the memories are held now: only the embeddings are read, one HMGET each
    semantic = calls_during(client, lambda: db.semantic_search(query, unit(7), "model"))
    assert semantic.get("evalsha") == 1 and semantic.get("hmget") == 200
    filtered = MemoryQuery("ava", topics=("t",), agent_id="x", updated_after=utc_now())
    for search in (
        lambda: db.keyword_search(query, "city 7"),
        lambda: db.keyword_search(filtered, "city"),
        lambda: db.semantic_search(query, unit(7), "model"),
        lambda: db.semantic_search(filtered, unit(7), "model"),
    ):
        used = calls_during(client, search)
        assert used.get("get") == 1
        assert not {"evalsha", "eval", "hmget", "hgetall", "zrange"} & set(used)
    assert db.keyword_search(query, "city 7")[0].memory.memory_id == "m007"
    assert db.semantic_search(query, unit(7), "model")[0].memory.memory_id == "m007"


def test_a_users_count_of_memories_to_embed_is_kept_until_their_generation_moves(
    db: RedisDb, client: redis.Redis, url: str
) -> None:
    load_scripts(db)
    memories = [stamped(f"ava likes city {i}", f"m{i:03d}", "ava") for i in range(50)]
    db.upsert_memories(memories)
    db.set_embeddings("model", [(m, unit(i)) for i, m in enumerate(memories[:30])])
    assert db.count_memories_to_embed("ava", "model") == 20
    again = calls_during(client, lambda: db.count_memories_to_embed("ava", "model"))
    assert again.get("get") == 1 and "evalsha" not in again  # the generation alone: kept
    assert db.count_memories_to_embed("ava", "other") == 50  # kept per model
    other = RedisDb(url, memory_table=db.memory_table, session_table=db.session_table)
    try:  # another client's writes move the generation on
        other.upsert_memories([stamped("ava likes tea", "m100", "ava")])
        assert db.count_memories_to_embed("ava", "model") == 21
        other.set_embeddings("model", [(memories[30], unit(30))])
        assert db.count_memories_to_embed("ava", "model") == 20
        other.delete_memories(["m031", "m032"], "ava")
        assert db.count_memories_to_embed("ava", "model") == 18
        other.clear_memories("ava")
        assert db.count_memories_to_embed("ava", "model") == 0
    finally:
        other.close()
    assert db.count_memories_to_embed(None, "model") == 0  # everyone's: counted each time


def test_the_run_after_an_agent_learned_a_fact_reads_no_memory_again(
    db: RedisDb, client: redis.Redis
) -> None:
    """The background search after the manager's write embeds the fact, loads the
    snapshot and counts what waits for embeddings, so the next run's selection reads the
    generations and a page of the newest only."""
    from test_agent_memory import CountedEmbedder, add, brain

    memory = Memory(db=db, embedder=CountedEmbedder(), embed_on_write=False)
    memory.add_user_memories(
        [UserMemory(f"User visited city number {i}") for i in range(300)], "ava"
    )
    model = brain(lambda shown, chat: [add("User likes to ski")] if "ski" in chat else [])
    agent = Agent(model, db=db, memory=memory, user_id="ava", enable_user_memories=True)
    agent.run("I like to ski")
    assert agent.wait_for_memories(timeout=10)
    chosen = agent.memory
    assert chosen is not None
    used = calls_during(client, lambda: chosen.relevant("ava", "What do I like?"))
    assert "hget" not in used and used.get("hmget", 0) <= 5  # no count, no load: the newest
    assert "User likes to ski" in [m.memory for m in chosen.relevant("ava", "ski")]


def test_a_cold_cache_reads_in_one_script(db: RedisDb, client: redis.Redis) -> None:
    memories = [stamped(f"city {i}", f"m{i}", "ava") for i in range(50)]
    db.upsert_memories(memories)
    db.set_embeddings("model", [(m, unit(i)) for i, m in enumerate(memories)])
    load_scripts(db)
    used = calls_during(client, lambda: db.semantic_search(MemoryQuery("ava"), unit(1), "model"))
    assert used.get("evalsha") == 1 and used.get("get") == 1  # the script reads the generation
    assert used.get("hmget") == 100  # each memory's row and its embedding


def test_results_equal_those_of_the_shared_ranking(db: RedisDb) -> None:
    """Many equal scores (repeated texts and vectors), cut by pages at every place."""
    reference = InMemoryDb()
    tie = utc_now()
    batch, vectors = [], []
    for i in range(40):
        m = stamped(f"tea {'green ' * (i % 3)}cup {i % 4}", f"id{(i * 7) % 40:02d}", "ava", tie)
        m.updated_at = tie + timedelta(seconds=i % 5)
        m.topics = ["even" if i % 2 == 0 else "odd"]
        m.agent_id = "a1" if i % 3 else None
        batch.append(m)
        vectors.append(unit(i % 6))
    vector_of = {m.memory_id: v for m, v in zip(batch, vectors, strict=True)}
    for store in (db, reference):
        store.upsert_memories([m.copy() for m in batch])
        store.set_embeddings("model", list(zip(batch, vectors, strict=True)))
    uncached = RedisDb(db.server, memory_table=db.memory_table, cache_bytes=0)
    pages = [(None, 0), (1, 0), (3, 0), (5, 2), (7, 11), (None, 25), (3, 40), (6, 3)]
    for (limit, offset), filters in (
        (page, filters)
        for page in pages
        for filters in (
            {},
            {"topics": ("odd",)},
            {"agent_id": "a1"},
            {"updated_after": tie + timedelta(seconds=2)},
            {"updated_before": tie + timedelta(seconds=3), "topics": ("even",)},
        )
    ):
        query = MemoryQuery("ava", limit=limit, offset=offset, **filters)
        whole = MemoryQuery("ava", **filters)
        end = None if limit is None else offset + limit
        for text in ("green tea", "cup 3", "tea"):
            got = found(db.keyword_search(query, text))
            assert got == found(reference.keyword_search(query, text)), (query, text)
            assert got == found(uncached.keyword_search(query, text)), (query, text)
        # what semantic_rank makes of the memories in M:upd's order (updated_at, then id),
        # ranking them all before the page is cut (see _top)
        listed = reference.list_memories(replace(whole, sort_order="asc"))
        candidates = [(m, vector_of[m.memory_id or ""]) for m in listed]
        for seed in range(3):
            got = found(db.semantic_search(query, unit(seed), "model"))
            expected = found(semantic_rank(candidates, whole, unit(seed)))[offset:end]
            assert got == expected, (query, seed)
            assert got == found(uncached.semantic_search(query, unit(seed), "model"))
    uncached.close()


def test_a_lost_generation_does_not_come_back(
    db: RedisDb, other: RedisDb, client: redis.Redis
) -> None:
    """FLUSHDB, a restart without persistence or an eviction loses the generation key:
    the next one must not equal the one a process cached."""
    db.upsert_memories([stamped("old tea", "m1", "ava")])
    assert found(db.keyword_search(MemoryQuery("ava"), "tea"))[0][1] == "old tea"
    client.delete(*keys(client, db.memory_table))  # as a flush would
    other.upsert_memories([stamped("new tea", "m2", "ava")])
    assert [r.memory.memory for r in db.keyword_search(MemoryQuery("ava"), "tea")] == ["new tea"]


# -- sessions ---------------------------------------------------------------------------------


def test_sessions(db: RedisDb) -> None:
    db.append_run(make_run("s1", "ava", "one"))
    db.append_run(make_run("s1", "ava", "two", status="failed"))
    db.append_run(make_run("s1", "ava", "three"))
    db.append_run(make_run("s2", "ava", "other"))
    db.append_run(make_run("z", "bob", "bob's"))
    assert [r.input for r in db.get_runs("s1", "ava")] == ["one", "two", "three"]
    assert [r.input for r in db.get_runs("s1", "ava", last_n=2)] == ["two", "three"]
    done = db.get_runs("s1", "ava", last_n=1, completed_only=True)
    assert [r.input for r in done] == ["three"]
    assert [r.input for r in db.get_runs("s1", "ava", completed_only=True)] == ["one", "three"]
    assert db.get_runs("s1", "ava", last_n=0) == []
    assert db.get_runs("missing", "ava") == []
    with pytest.raises(UserError):
        db.get_runs("s1", "ava", last_n=-1)
    with pytest.raises(ConflictError, match="belongs to another user"):
        db.get_runs("s1", "bob")
    with pytest.raises(ConflictError):
        db.get_runs("s1", "bob", last_n=0)
    with pytest.raises(ConflictError):
        db.append_run(make_run("s1", "bob", "intruder"))
    assert [r.input for r in db.get_runs("s1", "ava")] == ["one", "two", "three"]

    listed = db.list_sessions("ava")
    assert [(s.session_id, s.run_count, s.runs) for s in listed] == [("s2", 1, []), ("s1", 3, [])]
    assert listed[1].updated_at > listed[1].created_at
    assert [s.session_id for s in db.list_sessions(None)] == ["z", "s2", "s1"]
    assert [s.session_id for s in db.list_sessions(None, limit=1, offset=1)] == ["s2"]
    assert db.list_sessions("ava", limit=0) == []
    whole = db.get_session("s1", None)
    assert whole is not None
    assert (whole.user_id, whole.run_count) == ("ava", 3)
    assert [r.to_dict() for r in whole.runs] == [r.to_dict() for r in db.get_runs("s1", "ava")]
    assert db.get_session("s1", "bob") is None

    summary = SessionSummary("Ava said three things", ["talk"], run_count=2)
    assert db.get_session_summary("s1", "ava") is None
    assert db.set_session_summary("s1", "ava", summary)
    assert not db.set_session_summary("missing", "ava", summary)
    with pytest.raises(ConflictError):
        db.set_session_summary("s1", "bob", SessionSummary("hijack"))
    got = db.get_session_summary("s1", "ava")
    assert got is not None
    assert got.to_dict() == summary.to_dict()
    assert db.get_session_summary("s1", "bob") is None

    assert not db.delete_session("s1", "bob")
    assert db.delete_session("s1", "ava")
    assert not db.delete_session("s1", None)
    assert db.get_session("s1", None) is None
    assert [s.session_id for s in db.list_sessions(None)] == ["z", "s2"]
    db.append_run(make_run("s1", "bob", "new owner"))  # the id is free again
    assert [r.input for r in db.get_runs("s1", "bob")] == ["new owner"]
    assert db.get_session_summary("s1", "bob") is None


def test_a_run_continues_a_session_whose_runs_were_stored_before_run_ids_were_kept(
    db: RedisDb, client: redis.Redis
) -> None:
    # Runs stored before the store kept each run's id: a run that read one of them
    # continues that session, and not the one begun again under its id.
    old = make_run("s1", "ava", "one")
    db.append_run(old)
    client.hdel(f"{db.session_table}:runids", old.run_id)
    assert db.append_run(make_run("s1", "ava", "two"), existing=old.run_id) is True
    assert db.delete_session("s1", "ava")
    db.append_run(make_run("s1", "ava", "new"))
    assert db.append_run(make_run("s1", "ava", "late"), existing=old.run_id) is False
    assert [r.input for r in db.get_runs("s1", "ava")] == ["new"]


def test_sessions_updated_at_the_same_time_list_by_id(db: RedisDb, client: redis.Redis) -> None:
    for sid in ("b", "a", "c"):
        db.append_run(make_run(sid, "ava", "hi"))
    index = f"{db.session_table}:u:ava"
    client.zadd(index, dict.fromkeys([b"a", b"b", b"c"], -1))
    assert [s.session_id for s in db.list_sessions("ava")] == ["a", "b", "c"]


# -- isolation, clients, errors -----------------------------------------------------------------


def test_stores_with_other_names_do_not_see_each_other(url: str) -> None:
    a = RedisDb(url, memory_table=unique("a"), session_table=unique("a_s"))
    b = RedisDb(url, memory_table=a.memory_table + "_b", session_table=a.session_table + "_b")
    Memory(db=a).add_user_memory(UserMemory("in a"), "ava")
    a.append_run(make_run("s1", "ava", "in a"))
    assert b.list_memories(MemoryQuery(None)) == []
    assert b.get_user_stats() == [] and b.list_sessions(None) == []
    assert b.clear_all_memories() == 0
    b.append_run(make_run("s1", "bob", "in b"))  # the same session id, another store
    assert [m.memory for m in a.list_memories(MemoryQuery("ava"))] == ["in a"]
    assert [r.input for r in a.get_runs("s1", "ava")] == ["in a"]
    a.close()
    b.close()


def test_one_name_may_serve_memories_and_sessions(url: str, client: redis.Redis) -> None:
    name = unique("both")
    with RedisDb(url, memory_table=name, session_table=name) as db:
        Memory(db=db).add_user_memory(UserMemory("x"), "ava")
        db.append_run(make_run("s1", "ava", "hello"))
        assert db.count_memories(MemoryQuery(None)) == 1
        assert len(db.list_sessions(None)) == 1


def test_a_client_can_be_passed_in_and_stays_open(url: str, client: redis.Redis) -> None:
    with RedisDb(client=client, memory_table=unique("m")) as db:
        Memory(db=db).add_user_memory(UserMemory("x"), "ava")
    assert client.ping()
    decoding = redis.Redis.from_url(url, decode_responses=True)
    with pytest.raises(UserError, match="decode_responses=False"):
        RedisDb(client=decoding)
    decoding.close()
    with pytest.raises(UserError, match="redis.Redis"):
        RedisDb(client="redis://localhost")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["", "a:b", "with space", "x" * 64, 5])
def test_names_are_checked(name: object) -> None:
    with pytest.raises(UserError, match="memory_table"):
        RedisDb(memory_table=name)  # type: ignore[arg-type]


def test_a_bad_url_is_a_user_error() -> None:
    with pytest.raises(UserError, match="redis://"):
        RedisDb("http://example.com")
    with pytest.raises(UserError, match="db_url"):
        RedisDb("")


def test_an_unreachable_server_is_a_quick_store_error() -> None:
    port = free_port()  # nothing listens there
    db = RedisDb(f"redis://alice:s3cret-pw@127.0.0.1:{port}/2")
    assert "s3cret" not in repr(db) and "alice" not in repr(db)
    assert repr(db).startswith(f"RedisDb('redis://127.0.0.1:{port}/2'")
    started = time.perf_counter()
    for call in (
        lambda: db.get_memory("m1", "ava"),
        lambda: db.upsert_memories([stamped("x", "m1", "ava")]),
        lambda: db.list_sessions(None),
    ):
        with pytest.raises(StoreError, match=f"Redis at redis://127.0.0.1:{port}/2") as info:
            call()
        assert "s3cret" not in str(info.value)
    assert time.perf_counter() - started < 2  # no retries with backoff
    db.close()


def test_a_server_side_failure_is_a_store_error(db: RedisDb, client: redis.Redis) -> None:
    client.set(f"{db.memory_table}:m:m1", "not a hash")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        db.get_memory("m1", "ava")
    with pytest.raises(StoreError, match="WRONGTYPE"):
        db.upsert_memories([stamped("x", "m1", "ava")])


def test_a_replace_decides_again_when_the_memory_moved_after_it_was_read(
    db: RedisDb, other: RedisDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.upsert_memories([stamped("The user lives in Paris", "m1", "ava")])
    db.set_embeddings("model", [(stamped("The user lives in Paris", "m1", "ava"), np.ones(4) / 2)])
    real = db._call
    reads = 0

    def call(script: object, *args: object) -> object:
        nonlocal reads
        answer = real(script, *args)  # type: ignore[arg-type]
        if script is db._read_stored:
            reads += 1
            if reads == 1:  # another writer, right after this replace has read the memory
                moved = stamped("The user lives in Rome", "m1", "ava")
                moved.agent_id = "agent-2"
                other.update_memory(moved)
        return answer

    monkeypatch.setattr(db, "_call", call)
    back = stamped("The user lives in Paris", "m1", "ava")  # the text the embedding was made of
    assert db.update_memory(back)
    assert reads == 2  # read again after the other write, and decided on what that wrote
    history = db.get_memory_history("m1", "ava")
    assert [e.new_memory for e in history] == [
        "The user lives in Paris",
        "The user lives in Rome",
        "The user lives in Paris",
    ]
    assert history[-1].old_memory == "The user lives in Rome"
    got = db.get_memory("m1", "ava")
    assert got is not None and got.agent_id == "agent-2"  # kept from the version it replaced
    assert db.count_memories_to_embed("ava", "model") == 1  # Rome's write dropped the vector
