"""Conformance: what every backend must do the same way, run on each of them (SQLite,
in-memory, PostgreSQL, MongoDB protocol, Redis; see conftest.BACKENDS).

The shared suites (test_memory_api, test_audit, test_keyword_search, test_search,
test_sessions) run on every backend too; this file adds what spans a whole store: isolation
across every method, concurrent writers, awkward input, and the Memory API and an Agent on
top of each backend.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, open_store
from noted import (
    Agent,
    AuditContext,
    ConflictError,
    Memory,
    MemoryQuery,
    MemoryStore,
    Message,
    SessionStore,
    SqliteDb,
    StoreError,
    UserError,
    UserMemory,
    cli_files,
)
from noted.db.base import SortField, SortOrder
from noted.limits import MAX_PAGE
from noted.models import ToolDefinition
from noted.sessions import RunResult, SessionSummary, new_run_id
from noted.testing import FunctionModel
from servers import Server


def stamped(text: str, user: str, memory_id: str, **fields: object) -> UserMemory:
    when = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    return UserMemory(
        text,
        memory_id=memory_id,
        user_id=user,
        created_at=when,
        updated_at=when,
        **fields,  # type: ignore[arg-type]
    )


def unit(*values: float) -> np.ndarray:
    v = np.array(values, dtype=np.float32)
    return v / np.linalg.norm(v)


def test_every_backend_is_both_stores(store: MemoryStore) -> None:
    assert isinstance(store, MemoryStore)
    assert isinstance(store, SessionStore)


def test_one_users_data_is_never_reachable_through_another_user(store: MemoryStore) -> None:
    """Every method, given bob's name and ava's ids, finds and changes nothing of ava's."""
    assert isinstance(store, SessionStore)
    store.upsert_memories([stamped("Ava skis in Tahoe", "ava", "a1", topics=["sport"])])
    store.set_embeddings("m", [(stamped("Ava skis in Tahoe", "ava", "a1"), unit(1, 0, 0))])
    store.append_run(RunResult(run_id=new_run_id(), session_id="s-ava", user_id="ava", input="hi"))

    assert store.get_memory("a1", "bob") is None
    assert store.get_memories(["a1"], "bob") == {}  # type: ignore[attr-defined]
    assert store.update_memory(stamped("hijacked", "bob", "a1")) is None
    assert store.delete_memories(["a1"], "bob") == 0
    assert store.clear_memories("bob") == 0
    assert store.get_memory_history("a1", "bob") == []
    with pytest.raises(ConflictError):
        store.upsert_memories([stamped("hijacked", "bob", "a1")])
    bob = MemoryQuery(user_id="bob", limit=10)
    assert store.list_memories(bob) == []
    assert store.count_memories(bob) == 0
    assert store.keyword_search(bob, "Tahoe skis") == []
    assert store.semantic_search(bob, unit(1, 0, 0), "m") == []
    assert store.get_topics("bob") == []
    assert (
        store.set_embeddings("m", [(stamped("Ava skis in Tahoe", "bob", "a1"), unit(0, 1, 0))]) == 0
    )
    assert store.get_session("s-ava", "bob") is None
    assert store.list_sessions("bob") == []
    assert store.delete_session("s-ava", "bob") is False
    with pytest.raises(ConflictError):
        store.get_runs("s-ava", "bob")
    with pytest.raises(ConflictError):
        store.append_run(
            RunResult(run_id=new_run_id(), session_id="s-ava", user_id="bob", input="x")
        )

    # ava's memory, vector, history and session are as they were
    mine = store.get_memory("a1", "ava")
    assert mine is not None
    assert mine.memory == "Ava skis in Tahoe"
    assert [e.event for e in store.get_memory_history("a1", "ava")] == ["add"]
    [hit] = store.semantic_search(MemoryQuery(user_id="ava", limit=5), unit(1, 0, 0), "m")
    assert hit.memory.memory_id == "a1"
    assert hit.score == pytest.approx(1.0, abs=1e-5)
    assert len(store.get_runs("s-ava", "ava")) == 1


def test_eight_threads_writing_at_once_lose_nothing(store: MemoryStore) -> None:
    memory = Memory(db=store)
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(200):
                memory.add_user_memory(
                    UserMemory(f"fact {i} of worker {worker}"), user_id=f"user{worker % 4}"
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sum(memory.count_user_memories(user_id=f"user{u}") for u in range(4)) == 1600
    texts = {m.memory for u in range(4) for m in memory.get_user_memories(user_id=f"user{u}")}
    assert len(texts) == 1600
    stats = {s.user_id: s.memory_count for s in memory.get_user_stats()}
    assert stats == {f"user{u}": 400 for u in range(4)}
    some = memory.get_user_memories(user_id="user1", limit=3)
    for m in some:
        assert [e.event for e in memory.get_memory_history(m.memory_id or "", "user1")] == ["add"]


def test_concurrent_replaces_of_one_memory_keep_one_whole_version(store: MemoryStore) -> None:
    memory = Memory(db=store)
    memory_id = memory.add_user_memory(UserMemory("version 0", topics=["v"]), user_id="ava")

    def replace(worker: int) -> None:
        for i in range(25):
            memory.replace_user_memory(
                memory_id, UserMemory(f"version {worker}-{i}", topics=[f"w{worker}"]), "ava"
            )

    threads = [threading.Thread(target=replace, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = memory.get_user_memory(memory_id, "ava")
    assert final is not None
    worker = final.memory.split()[1].split("-")[0]
    assert final.topics == [f"w{worker}"]  # text and topics from the same write
    history = memory.get_memory_history(memory_id, "ava")
    assert len(history) == 101
    assert history[-1].new_memory == final.memory


@pytest.mark.parametrize(
    "text",
    [
        "Zoë\u2019s café — naïve façade",
        "日本語のメモ: 東京に住んでいる",
        "emoji 🧗‍♀️🏔️ and flags 🇳🇿",
        "right-to-left: שלום עולם مرحبا",
        "zero\u200bwidth and combining e\u0301",
        "quotes ' \" ` and backslashes \\ \\\\ and % _ * ? [ ] { } $ ; --",
        'json-looking {"$where": "1", "a": [1]}',
        "x" * 5000,
    ],
)
def test_any_text_round_trips_exactly(store: MemoryStore, text: str) -> None:
    memory = Memory(db=store)
    memory_id = memory.add_user_memory(
        UserMemory(text, topics=[text[:40].strip(), "🏷️ tag"], input=text), user_id="ava"
    )
    got = memory.get_user_memory(memory_id, "ava")
    assert got is not None
    assert (got.memory, got.topics, got.input) == (text, [text[:40].strip(), "🏷️ tag"], text)
    assert [e.new_memory for e in memory.get_memory_history(memory_id, "ava")] == [text]
    assert text[:40].strip() in memory.get_topics("ava")


@pytest.mark.parametrize(
    "bad",
    [
        lambda m: m.add_user_memory(UserMemory("nul \x00 inside"), user_id="ava"),
        lambda m: m.add_user_memory(UserMemory("lone \ud800 surrogate"), user_id="ava"),
        lambda m: m.add_user_memory(UserMemory("ok", topics=["a\x00b"]), user_id="ava"),
        lambda m: m.add_user_memory(UserMemory("ok"), user_id="ava\x00"),
        lambda m: m.add_user_memory(UserMemory("x" * 6000), user_id="ava"),
        lambda m: m.add_user_memory(UserMemory("   "), user_id="ava"),
    ],
)
def test_text_no_store_can_keep_is_refused_before_writing(store: MemoryStore, bad) -> None:
    memory = Memory(db=store)
    memory.add_user_memory(UserMemory("kept"), user_id="ava")
    with pytest.raises(UserError):
        bad(memory)
    assert [m.memory for m in memory.get_user_memories(user_id="ava")] == ["kept"]


def test_timestamps_round_trip_exactly_in_utc(store: MemoryStore) -> None:
    early = datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    late = datetime(2031, 6, 1, 0, 0, 0, 1, tzinfo=UTC)
    store.upsert_memories(
        [
            UserMemory("old", memory_id="o", user_id="ava", created_at=early, updated_at=early),
            UserMemory("new", memory_id="n", user_id="ava", created_at=early, updated_at=late),
        ]
    )
    old, new = store.get_memory("o", "ava"), store.get_memory("n", "ava")
    assert old is not None
    assert new is not None
    assert (old.created_at, old.updated_at, new.updated_at) == (early, early, late)
    assert old.created_at.utcoffset() == timedelta(0)
    window = MemoryQuery(user_id="ava", updated_after=late, updated_before=late + timedelta(1))
    assert [m.memory_id for m in store.list_memories(window)] == ["n"]
    asc = MemoryQuery(user_id="ava", sort_by="updated_at", sort_order="asc")
    assert [m.memory_id for m in store.list_memories(asc)] == ["o", "n"]


def test_sessions_keep_any_text_a_model_may_answer(store: MemoryStore) -> None:
    assert isinstance(store, SessionStore)
    weird = 'nul \x00, surrogate-free emoji 🧪, quotes "\\u0000" and 日本語'
    store.append_run(
        RunResult(
            run_id=new_run_id(),
            session_id="s1",
            user_id="ava",
            input=weird,
            content=weird,
            messages=[Message("user", weird), Message("assistant", weird)],
        )
    )
    [run] = store.get_runs("s1", "ava")
    assert (run.input, run.content, run.messages[1].content) == (weird, weird, weird)


@pytest.mark.parametrize(
    "change",
    [
        {"created_at": datetime(2020, 1, 1, 12)},  # naive: a time of no known zone
        {"content": "half an emoji \ud83d"},
        {"messages": [Message("user", "hi"), Message("assistant", "lone \udfff")]},
    ],
)
def test_a_run_no_store_can_keep_alike_is_refused_before_writing(
    store: MemoryStore, change: dict[str, object]
) -> None:
    assert isinstance(store, SessionStore)
    run = RunResult(run_id=new_run_id(), session_id="s1", user_id="ava", input="hi")
    store.append_run(run)
    bad = RunResult(run_id=new_run_id(), session_id="s1", user_id="ava", input="hi", **change)  # type: ignore[arg-type]
    with pytest.raises(UserError):
        store.append_run(bad)
    with pytest.raises(UserError):  # a new session is not created either
        store.append_run(replace(bad, session_id="s2"))
    [kept] = store.get_runs("s1", "ava")
    assert kept.run_id == run.run_id
    session = store.get_session("s1", "ava")
    assert session is not None and session.run_count == 1
    assert store.get_session("s2", "ava") is None


def test_a_run_id_is_one_runs_on_every_backend(store: MemoryStore) -> None:
    """A run whose id a stored run has (any session, any user) is a ConflictError that
    writes nothing; the id is free again once its session is deleted."""
    assert isinstance(store, SessionStore)

    def run(session_id: str, user_id: str, text: str) -> RunResult:
        return RunResult(run_id="r1", session_id=session_id, user_id=user_id, input=text)

    store.append_run(run("s1", "ava", "first"))
    for session_id, user_id in (("s1", "ava"), ("s2", "ava"), ("s3", "bob")):
        with pytest.raises(ConflictError, match="run_id 'r1' is taken"):
            store.append_run(run(session_id, user_id, "again"))
    assert [r.input for r in store.get_runs("s1", "ava")] == ["first"]
    assert [s.session_id for s in store.list_sessions(None)] == ["s1"]
    session = store.get_session("s1", "ava")
    assert session is not None and session.run_count == 1
    assert store.delete_session("s1", "ava")
    store.append_run(run("s3", "bob", "mine now"))
    assert [r.input for r in store.get_runs("s3", "bob")] == ["mine now"]


def test_a_summary_is_kept_only_beside_the_run_it_ends_with(store: MemoryStore) -> None:
    """A summary names the last run it covers: while the session holds no such run (the
    session was deleted while the summary was written, and its id used again), the
    summary is not written, so a deleted conversation never comes back in it."""
    assert isinstance(store, SessionStore)

    def summary(text: str, last_run_id: str) -> SessionSummary:
        return SessionSummary(text, [], 1, last_run_id=last_run_id)

    store.append_run(RunResult(run_id="r1", session_id="s1", user_id="ava", input="PIN 4321"))
    assert not store.set_session_summary("s1", "ava", summary("of no run", "r0"))
    assert store.get_session_summary("s1", "ava") is None
    assert store.set_session_summary("s1", "ava", summary("PIN 4321", "r1"))
    assert store.delete_session("s1", "ava")
    store.append_run(RunResult(run_id="r2", session_id="s1", user_id="ava", input="hello"))
    assert not store.set_session_summary("s1", "ava", summary("PIN 4321", "r1"))
    assert store.get_session_summary("s1", "ava") is None
    store.append_run(RunResult(run_id="r1", session_id="s2", user_id="ava", input="again"))
    assert not store.set_session_summary("s1", "ava", summary("PIN 4321", "r1"))  # s2's run
    assert store.set_session_summary("s1", "ava", summary("hello", "r2"))
    kept = store.get_session_summary("s1", "ava")
    assert kept is not None and kept.summary == "hello"
    with pytest.raises(ConflictError):
        store.set_session_summary("s1", "bob", summary("hijack", "r2"))


def test_the_last_runs_asked_for_are_read_on_every_backend(store: MemoryStore) -> None:
    """``last_n`` is at most that many runs, the newest, in order: asking for more runs
    than a session holds gives them all (the in-process store gave the last of two for
    ``last_n=3``, so an agent's third turn replayed one earlier turn, not two)."""
    assert isinstance(store, SessionStore)
    for text in ("one", "two"):
        store.append_run(RunResult(run_id=new_run_id(), session_id="s", user_id="ava", input=text))
    for last_n, expected in ((None, ["one", "two"]), (5, ["one", "two"]), (3, ["one", "two"])):
        assert [r.input for r in store.get_runs("s", "ava", last_n=last_n)] == expected
    assert [r.input for r in store.get_runs("s", "ava", last_n=2)] == ["one", "two"]
    assert [r.input for r in store.get_runs("s", "ava", last_n=1)] == ["two"]
    assert store.get_runs("s", "ava", last_n=0) == []
    done = store.get_runs("s", "ava", last_n=3, completed_only=True)
    assert [r.input for r in done] == ["one", "two"]


def test_the_largest_pages_are_read_on_every_backend(store: MemoryStore) -> None:
    """Any limit and offset up to 2**63-1 is a page: the end of the list, or nothing."""
    assert isinstance(store, SessionStore)
    memory = Memory(db=store, embedder=None)
    memory.add_user_memory(UserMemory("Ava skis"), user_id="ava")
    for n in range(3):
        store.append_run(
            RunResult(run_id=new_run_id(), session_id=f"s{n}", user_id="ava", input="hi")
        )
    largest = 2**63 - 1
    assert store.get_runs("s0", "ava", last_n=largest)[0].input == "hi"
    assert len(store.get_runs("s0", "ava", last_n=2**62, completed_only=True)) == 1
    assert [s.user_id for s in store.get_user_stats(limit=largest)] == ["ava"]
    assert store.get_user_stats(limit=largest, offset=2) == []
    assert len(store.list_sessions(None, limit=largest, offset=1)) == 2
    assert store.list_sessions("ava", limit=largest, offset=largest) == []
    assert len(memory.get_user_memories("ava", limit=largest)) == 1
    assert memory.get_user_memories("ava", limit=largest, offset=largest) == []


def test_the_memory_api_sync_and_async_on_every_backend(store: MemoryStore) -> None:
    memory = Memory(db=store)
    first = memory.add_user_memory(UserMemory("Ava likes to ski", topics=["hobbies"]), "ava")
    memory.add_user_memories([UserMemory("Ava lives in Oslo", topics=["home"])], user_id="ava")

    async def async_side() -> list[str]:
        await memory.aadd_user_memory(UserMemory("Ava has a cat named Miso"), user_id="ava")
        await memory.areplace_user_memory(
            first, UserMemory("Ava loves skiing", topics=["hobbies"]), user_id="ava"
        )
        found = await memory.asearch_user_memories("skiing", user_id="ava", limit=5)
        return [m.memory for m in found]

    assert asyncio.run(async_side())[0] == "Ava loves skiing"
    assert [m.memory for m in memory.search_user_memories(user_id="ava", limit=2)] == [
        "Ava loves skiing",
        "Ava has a cat named Miso",
    ]
    assert memory.get_topics("ava") == ["hobbies", "home"]
    assert memory.delete_user_memory(first, "ava") is True
    assert memory.clear(user_id="ava") == 2
    assert memory.get_user_memories(user_id="ava") == []
    events = [e.event for e in memory.get_memory_history(first, "ava")]
    assert events == ["add", "update", "delete"]


def test_an_agent_remembers_across_sessions_on_every_backend(store: MemoryStore) -> None:
    assert isinstance(store, SessionStore)

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        first = messages[0].content or ""
        if first.startswith("You maintain the long-term memory"):
            chat = messages[-1].content or ""
            ops = []
            if "I like to ski" in chat:
                ops.append({"op": "add", "id": None, "memory": "User likes to ski", "topics": []})
            return json.dumps({"operations": ops})
        return "Skiing!" if "User likes to ski" in first else "Noted."

    model = FunctionModel(fn)
    agent = Agent(
        model, db=store, memory=Memory(db=store), user_id="ava", enable_user_memories=True
    )
    assert agent.run("I like to ski.", session_id="one").content == "Noted."
    assert agent.wait_for_memories(timeout=20)
    later = Agent(
        model, db=store, memory=Memory(db=store), user_id="ava", enable_user_memories=True
    )
    assert later.run("What do I like?", session_id="two").content == "Skiing!"
    assert later.wait_for_memories(timeout=20)
    assert [s.session_id for s in store.list_sessions("ava")] == ["two", "one"]
    assert [r.input for r in store.get_runs("one", "ava")] == ["I like to ski."]
    [stored] = store.list_memories(MemoryQuery(user_id="ava"))
    assert stored.session_id == "one"
    [event] = store.get_memory_history(stored.memory_id or "", "ava")
    assert event.actor == "manager"
    assert store.list_memories(MemoryQuery(user_id="bob")) == []


def test_a_batch_with_a_foreign_id_writes_nothing_and_records_nothing(store: MemoryStore) -> None:
    store.upsert_memories([stamped("bob's", "bob", "b1")])
    batch = [stamped(f"new {i}", "ava", f"a{i}") for i in range(50)]
    batch.append(stamped("taken", "ava", "b1"))
    with pytest.raises(ConflictError):
        store.upsert_memories(batch, audit=AuditContext(actor="cli"))
    assert store.count_memories(MemoryQuery(user_id="ava")) == 0
    assert store.get_memory_history("a0", "ava") == []
    bob = store.get_memory("b1", "bob")
    assert bob is not None
    assert bob.memory == "bob's"


def test_large_batches_are_stored_whole(store: MemoryStore) -> None:
    batch = [
        stamped(f"memory number {i}", "ava", f"id{i:05d}", topics=[f"t{i % 7}"])
        for i in range(3000)
    ]
    store.upsert_memories(batch)
    assert store.count_memories(MemoryQuery(user_id="ava")) == 3000
    assert store.count_memories(MemoryQuery(user_id="ava", topics=("t3",))) == 429
    page = store.list_memories(MemoryQuery(user_id="ava", sort_order="asc", limit=3, offset=2998))
    assert [m.memory_id for m in page] == ["id02998", "id02999"]
    assert store.delete_memories([f"id{i:05d}" for i in range(0, 3000, 2)], "ava") == 1500
    assert store.count_memories(MemoryQuery(user_id="ava")) == 1500


def test_memories_read_many_at_a_time_are_those_read_one_by_one(store: MemoryStore) -> None:
    """``get_memories`` (what an import reads of the memories it would write): the user's
    among the ids, each as ``get_memory`` answers it, over more ids than one query takes."""
    store.upsert_memories(
        [
            stamped(f"memory number {i}", "ava", f"id{i:05d}", topics=[f"t{i % 7}"], input="hi")
            for i in range(2500)
        ]
    )
    store.upsert_memories([stamped("Bob's", "bob", "b1", agent_id="helper")])
    ids = [f"id{i:05d}" for i in range(0, 3000, 3)] + ["b1", "never", "id00003"]
    read = store.get_memories(ids, "ava")  # type: ignore[attr-defined]
    one_by_one = {i: m for i in ids if (m := store.get_memory(i, "ava")) is not None}
    assert read == one_by_one
    assert len(read) == 834 and "b1" not in read
    assert store.get_memories(ids, "bob") == {"b1": store.get_memory("b1", "bob")}  # type: ignore[attr-defined]
    assert store.get_memories([], "ava") == {}  # type: ignore[attr-defined]


def test_sessions_read_many_at_a_time_are_those_read_one_by_one(store: MemoryStore) -> None:
    """``get_sessions`` (what an import reads of the sessions it would write): the
    sessions among the ids, of every user, each as ``get_session(id, None)`` answers it
    (its runs in order, its summary), over more ids than one query takes."""
    assert isinstance(store, SessionStore)
    for i in range(1010):
        user = "bob" if i % 7 == 0 else "ava"
        for n in range(3 if i % 50 == 0 else 1):
            run = RunResult(
                run_id=f"r{i}-{n}", session_id=f"s{i:05d}", user_id=user, input=f"{n} of {i}"
            )
            store.append_run(run)
    told = SessionSummary("About skiing", ["sport"], 3, last_run_id="r700-2")
    assert store.set_session_summary("s00700", "bob", told)
    ids = [f"s{i:05d}" for i in range(1100)] + ["never", "s00050"]
    read = store.get_sessions(ids)  # type: ignore[attr-defined]
    one_by_one = {i: s for i in ids if (s := store.get_session(i, None)) is not None}
    assert read == one_by_one
    assert len(read) == 1010
    assert [r.run_id for r in read["s00050"].runs] == ["r50-0", "r50-1", "r50-2"]
    kept = read["s00700"]
    assert kept.user_id == "bob" and kept.run_count == 3
    assert kept.summary is not None and kept.summary.summary == "About skiing"
    assert store.get_sessions(["never"]) == {}  # type: ignore[attr-defined]
    assert store.get_sessions([]) == {}  # type: ignore[attr-defined]


def test_a_session_is_read_with_a_page_of_its_runs(store: MemoryStore) -> None:
    """``get_session(..., last_n=, offset=)``: the last ``last_n`` runs before the newest
    ``offset``, oldest first, with the session's whole run count (a session of thousands
    of runs was read whole, every run, by each ``GET /sessions/{id}``)."""
    assert isinstance(store, SessionStore)
    for i in range(7):
        store.append_run(RunResult(run_id=f"r{i}", session_id="s", user_id="ava", input=str(i)))

    def page(user: str | None, last_n: int | None, offset: int = 0) -> list[str] | None:
        found = store.get_session("s", user, last_n=last_n, offset=offset)  # type: ignore[attr-defined]
        if found is None:
            return None
        assert found.run_count == 7 and found.user_id == "ava"
        return [r.run_id for r in found.runs]

    assert page("ava", 3) == ["r4", "r5", "r6"]
    assert page(None, 3, 3) == ["r1", "r2", "r3"]
    assert page("ava", 3, 6) == ["r0"]
    assert page("ava", 3, 7) == []
    assert page("ava", 0, 0) == []
    assert page("ava", None, 2) == ["r0", "r1", "r2", "r3", "r4"]
    assert page("ava", 10) == [f"r{i}" for i in range(7)]
    assert page("bob", 3) is None
    # counts and offsets up to the largest the store takes (on Redis, an index of LRANGE
    # out of the 64-bit range was a StoreError, the server's 503)
    assert page("ava", MAX_PAGE, 2) == ["r0", "r1", "r2", "r3", "r4"]
    assert page("ava", MAX_PAGE, MAX_PAGE) == []
    assert page("ava", 2, MAX_PAGE) == []
    whole = store.get_session("s", "ava")
    assert whole is not None and len(whole.runs) == 7
    assert store.get_session("never", None, last_n=3) is None
    with pytest.raises(UserError):
        store.get_session("s", "ava", last_n=-1)
    with pytest.raises(UserError):
        store.get_session("s", "ava", last_n=3, offset=-1)


@pytest.mark.parametrize("kind", [k for k in BACKENDS if k != "in-memory"])
def test_searches_racing_another_processs_writes_end_up_current(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    """A second store object on the same tables writes, as another process would."""
    store = open_store(kind, servers, tmp_path)
    names = {"memory_table": store.memory_table, "session_table": store.session_table}  # type: ignore[attr-defined]
    if isinstance(store, SqliteDb):
        other: MemoryStore = SqliteDb(store.db_file, **names)
    else:
        other = open_store(kind, servers, tmp_path, **names)
    errors: list[BaseException] = []
    done = threading.Event()
    query = MemoryQuery(user_id="ava", limit=3)

    def search() -> None:
        try:
            while not done.is_set():
                store.keyword_search(query, "tea")
                store.semantic_search(query, unit(1, 0, 0), "model")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=search) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(40):
        m = stamped(f"tea number {i}", "ava", f"m{i}")
        other.upsert_memories([m])
        other.set_embeddings("model", [(m, unit(1, i, 0))])
    done.set()
    for t in threads:
        t.join()
    assert errors == []
    everything = MemoryQuery(user_id="ava")
    assert len(store.keyword_search(everything, "tea")) == 40
    assert len(store.semantic_search(everything, unit(1, 0, 0), "model")) == 40
    other.delete_memories(["m0"], "ava")
    assert len(store.keyword_search(everything, "tea")) == 39
    other.close()
    store.close()


@pytest.mark.parametrize("kind", [k for k in BACKENDS if k != "in-memory"])
def test_every_change_by_another_process_is_seen_by_the_next_search(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    """A store that caches what it searches (SQLite's vectors, Redis's and MongoDB's
    snapshots) answers as a store that has just opened, after each kind of change made
    through another store object on the same tables."""
    db = open_store(kind, servers, tmp_path)
    names = {"memory_table": db.memory_table, "session_table": db.session_table}  # type: ignore[attr-defined]
    if isinstance(db, SqliteDb):
        other: MemoryStore = SqliteDb(db.db_file, **names)
    else:
        other = open_store(kind, servers, tmp_path, **names)

    def fresh_store() -> MemoryStore:
        if isinstance(db, SqliteDb):
            return SqliteDb(db.db_file, **names)
        return open_store(kind, servers, tmp_path, **names)

    texts = ["ava likes tea", "ava likes green tea", "ava skis", "ava reads", "tea time"]
    memories = [stamped(text, "ava", f"m{i}") for i, text in enumerate(texts)]
    axes = np.eye(8, dtype=np.float32)
    db.upsert_memories(memories)
    db.set_embeddings("model", [(m, axes[i]) for i, m in enumerate(memories)])
    query, target = MemoryQuery(user_id="ava"), (0.8 * axes[2] + 0.6 * axes[0]).astype(np.float32)

    def check() -> tuple[list[str], list[str]]:
        keyword = db.keyword_search(query, "tea")
        semantic = db.semantic_search(query, target, "model")
        reference = fresh_store()
        assert [r.memory.memory_id for r in reference.keyword_search(query, "tea")] == [
            r.memory.memory_id for r in keyword
        ]
        again = reference.semantic_search(query, target, "model")
        assert [(r.memory.memory_id, round(r.score, 5)) for r in again] == [
            (r.memory.memory_id, round(r.score, 5)) for r in semantic
        ]
        reference.close()
        return [r.memory.memory_id or "" for r in keyword], [
            r.memory.memory_id or "" for r in semantic
        ]

    keyword, semantic = check()
    assert sorted(keyword) == ["m0", "m1", "m4"]
    assert semantic[:2] == ["m2", "m0"]
    fresh = stamped("tea tea tea", "ava", "new")
    other.upsert_memories([fresh])  # a new memory
    keyword, semantic = check()
    assert "new" in keyword
    assert "new" not in semantic  # no embedding yet
    other.set_embeddings("model", [(fresh, target)])
    assert check()[1][0] == "new"
    other.set_embeddings("model", [(memories[2], -axes[2])])  # an embedding changed
    assert check()[1][-1] == "m2"
    assert other.delete_memories(["new"], "ava") == 1  # a deleted memory
    keyword, semantic = check()
    assert "new" not in keyword + semantic
    assert other.update_memory(stamped("tea tea", "ava", "m2"))
    keyword, semantic = check()  # a changed text: found by its words, its embedding dropped
    assert "m2" in keyword
    assert "m2" not in semantic
    other.clear_memories("ava")
    assert check() == ([], [])
    other.close()
    db.close()


def test_search_results_are_the_callers_own_copies(store: MemoryStore) -> None:
    store.upsert_memories([stamped("tea", "ava", "m1")])
    store.set_embeddings("model", [(stamped("tea", "ava", "m1"), unit(1, 0, 0))])
    query = MemoryQuery(user_id="ava")
    for _ in range(2):
        for result in (
            store.keyword_search(query, "tea")[0],
            store.semantic_search(query, unit(1, 0, 0), "model")[0],
        ):
            assert result.memory.memory == "tea"
            assert result.memory.topics == []
            result.memory.memory = "changed by the caller"
            result.memory.topics.append("mine")


@pytest.mark.parametrize("kind", ["mongo", "redis"])
def test_the_search_cache_stays_within_its_budget(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    """The stores that search in Python keep each user's memories within cache_bytes."""
    budget = 60_000
    db = open_store(kind, servers, tmp_path, cache_bytes=budget)
    cache = db.cache  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    for u in range(20):
        memories = [stamped(f"user {u} likes tea {i}", f"u{u}", f"u{u}m{i}") for i in range(10)]
        db.upsert_memories(memories)
        vectors = rng.standard_normal((10, 64)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        db.set_embeddings("model", list(zip(memories, vectors, strict=True)))
        assert db.keyword_search(MemoryQuery(user_id=f"u{u}"), "tea")
        assert db.semantic_search(MemoryQuery(user_id=f"u{u}"), vectors[1], "model")
        assert 0 < cache.nbytes <= budget
    assert cache.get("u19") is not None  # the least recently searched left first
    assert cache.get("u0") is None
    big = [stamped("tea " * 2000, "big", f"big{i}") for i in range(20)]  # alone over budget
    db.upsert_memories(big)
    assert len(db.keyword_search(MemoryQuery(user_id="big"), "tea")) == 20
    assert cache.get("big") is None
    assert cache.nbytes <= budget
    db.close()  # empties the cache
    assert cache.nbytes == 0
    with pytest.raises(UserError, match="cache_bytes"):
        open_store(kind, servers, tmp_path, cache_bytes=-1)


def test_memories_to_embed_pages_alike_on_every_backend(store: MemoryStore) -> None:
    """The page rule of memories_to_embed (the core's): oldest first, at most ``limit``, a
    limit of 0 is an empty page, a bad limit is a UserError."""
    old = datetime(2026, 1, 2, tzinfo=UTC)
    store.upsert_memories(
        [
            UserMemory(
                f"fact {i}",
                memory_id=f"m{i}",
                user_id="ava",
                created_at=old + timedelta(minutes=i),
                updated_at=old + timedelta(minutes=i),
            )
            for i in range(3)
        ]
    )
    assert [m.memory_id for m in store.memories_to_embed("ava", "m", 2)] == ["m0", "m1"]
    assert [m.memory_id for m in store.memories_to_embed(None, "m")] == ["m0", "m1", "m2"]
    assert store.memories_to_embed("ava", "m", 0) == []
    for bad in (-1, "2", True, 1.5):
        with pytest.raises(UserError, match="limit must be a non-negative integer"):
            store.memories_to_embed("ava", "m", bad)  # type: ignore[arg-type]


def test_memories_to_embed_have_one_order_on_every_backend(store: MemoryStore) -> None:
    """memories_to_embed's one order: created_at, then memory_id, for one user and for
    everyone, whatever order the memories were written in; a memory whose vector went
    stale keeps its place; a smaller limit gives the head of the same order."""
    start = datetime(2026, 1, 2, tzinfo=UTC)

    def made(minute: int, memory_id: str, user: str) -> UserMemory:
        when = start + timedelta(minutes=minute)
        return UserMemory(
            f"fact {memory_id}", memory_id=memory_id, user_id=user, created_at=when, updated_at=when
        )

    # written newest first in three writes, two users interleaved; "a" and "b" share a time
    written = [
        [made(5, "e", "bob"), made(3, "c", "ava")],
        [made(1, "b", "ava"), made(1, "a", "bob")],
        [made(4, "d", "ava"), made(0, "z", "bob")],
    ]
    for batch in written:
        store.upsert_memories(batch)
    expected = {None: "zabcde", "ava": "bcd", "bob": "zae"}
    for user, ids in expected.items():
        for limit in range(len(ids) + 2):
            page = store.memories_to_embed(user, "m", limit)
            assert "".join(m.memory_id or "" for m in page) == ids[:limit], (user, limit)
        assert "".join(m.memory_id or "" for m in store.memories_to_embed(user, "m")) == ids

    everyone = store.memories_to_embed(None, "m")
    store.set_embeddings("m", [(m, unit(1, 0, 0)) for m in everyone])
    assert store.memories_to_embed(None, "m") == []
    later = start + timedelta(hours=1)
    for stale in ("c", "z"):  # changed texts: their vectors are stale, newest change last
        old = next(m for m in everyone if m.memory_id == stale)
        store.upsert_memories([replace(old, memory=f"new fact {stale}", updated_at=later)])
        later += timedelta(minutes=1)
    assert [m.memory_id for m in store.memories_to_embed(None, "m")] == ["z", "c"]
    assert [m.memory_id for m in store.memories_to_embed(None, "m", 1)] == ["z"]
    assert [m.memory_id for m in store.memories_to_embed("ava", "m")] == ["c"]


def test_user_stats_pages_alike_on_every_backend(store: MemoryStore) -> None:
    """get_user_stats's page (the core's rule): the most recently updated user first, a
    limit of 0 is an empty page, a bad limit or offset is a UserError on every store."""
    old = datetime(2026, 1, 2, tzinfo=UTC)
    store.upsert_memories(
        [
            UserMemory(
                "fact",
                memory_id=f"{user}-1",
                user_id=user,
                created_at=old,
                updated_at=old + timedelta(minutes=i),
            )
            for i, user in enumerate(["cy", "ava", "bob"])
        ]
    )
    assert [s.user_id for s in store.get_user_stats()] == ["bob", "ava", "cy"]
    assert [s.user_id for s in store.get_user_stats(limit=1, offset=1)] == ["ava"]
    assert store.get_user_stats(limit=0) == []
    for limit, offset in ((-1, 0), ("1", 0), (True, 0), (None, -1), (1, "0"), (1, None)):
        with pytest.raises(UserError, match="must be a non-negative integer"):
            store.get_user_stats(limit=limit, offset=offset)  # type: ignore[arg-type]


def test_searches_are_for_one_user_on_every_backend(store: MemoryStore) -> None:
    """A search that names no user is refused the same way by every store (the core's
    rule), before anything is read."""
    store.upsert_memories([stamped("Ava skis in Tahoe", "ava", "a1")])
    with pytest.raises(UserError, match="keyword search is for one user"):
        store.keyword_search(MemoryQuery(None, limit=5), "skis")
    with pytest.raises(UserError, match="semantic search is for one user"):
        store.semantic_search(MemoryQuery(None, limit=5), unit(1, 0), "m")


def _pages_of(store: MemoryStore, query: MemoryQuery) -> list[str]:
    """The ids of every page of ``query`` (its limit a page), each read past the last
    memory of the page before."""
    ids: list[str] = []
    for _ in range(100):  # (a store that read past no memory would page forever)
        page = store.list_memories(query)
        ids += [m.memory_id or "" for m in page]
        if not page:
            return ids
        query = query.following(page[-1])
    raise AssertionError(f"still paging after 100 pages: {ids[:30]}")


def _cursor_memories() -> list[UserMemory]:
    """Ava's memories over three creation and three update times, ids whose byte order
    is not a locale's ("B" before "a", "a-2" before "a1", "é" last), and two of Bob's."""
    start = datetime(2026, 1, 2, tzinfo=UTC)
    ids = ["a1", "B1", "a-2", "é", "ab", "A", "b", "a", "z9", "_", "Z", "a1a"]
    return [
        UserMemory(
            f"fact {n}",
            memory_id=memory_id,
            user_id="ava",
            topics=["odd" if n % 2 else "even"],
            created_at=start + timedelta(seconds=n % 3),
            updated_at=start + timedelta(minutes=n * 7 % 3),
        )
        for n, memory_id in enumerate(ids)
    ] + [stamped("Bob rows", "bob", f"bob{n}") for n in range(2)]


@pytest.mark.parametrize("field", ["created_at", "updated_at"])
@pytest.mark.parametrize("order", ["asc", "desc"])
def test_pages_past_a_memory_walk_the_whole_order_on_every_backend(
    store: MemoryStore, field: SortField, order: SortOrder
) -> None:
    """Pages read past the last memory of the page before (``after``) list exactly the
    memories of one whole listing, in its order, however the page size cuts the ties:
    one user's or everyone's, filtered or not; ``offset`` and ``limit`` count from the
    cursor."""
    store.upsert_memories(_cursor_memories())
    for user in ("ava", None):
        for topics in ((), ("odd",)):
            query = MemoryQuery(user, topics=topics, sort_by=field, sort_order=order)
            whole = [m.memory_id for m in store.list_memories(query)]
            assert len(whole) == (6 if topics else 12 if user else 14)
            for size in (1, 2, 5, 50):
                assert _pages_of(store, replace(query, limit=size)) == whole, (user, size)
        # bounds on updated_at beside a cursor on it: the bounds still hold
        start = datetime(2026, 1, 2, tzinfo=UTC)
        bounded = MemoryQuery(
            user,
            sort_by=field,
            sort_order=order,
            updated_after=start + timedelta(minutes=1),
            updated_before=start + timedelta(minutes=2),
        )
        whole = [m.memory_id for m in store.list_memories(bounded)]
        assert len(whole) == 4
        assert _pages_of(store, replace(bounded, limit=1)) == whole
    everything = store.list_memories(MemoryQuery("ava", sort_by=field, sort_order=order))
    ids = [m.memory_id for m in everything]
    third = MemoryQuery("ava", sort_by=field, sort_order=order).following(everything[3])
    assert [m.memory_id for m in store.list_memories(third)] == ids[4:]
    assert [m.memory_id for m in store.list_memories(replace(third, offset=2, limit=3))] == (
        ids[6:9]
    )
    assert store.list_memories(replace(third, offset=2**63 - 1)) == []
    assert store.list_memories(replace(third, limit=0)) == []
    assert store.list_memories(third.following(everything[-1])) == []
    assert store.count_memories(third) == 12  # the cursor picks the page, not the memories


def test_a_page_past_a_deleted_memory_goes_on_after_it_on_every_backend(
    store: MemoryStore,
) -> None:
    """The memory a page follows may be deleted, and a memory added before it (in the
    listing's order), between two reads: the next page starts right after where it stood, skipping and repeating
    nothing of what stays."""
    memories = _cursor_memories()
    store.upsert_memories(memories)
    for order in ("asc", "desc"):
        query = MemoryQuery("ava", sort_by="created_at", sort_order=order, limit=3)
        whole = [m.memory_id for m in store.list_memories(replace(query, limit=None))]
        first = store.list_memories(query)
        store.delete_memories([first[-1].memory_id or "", first[0].memory_id or ""], "ava")
        when = EARLY if order == "asc" else datetime(2030, 1, 1, tzinfo=UTC)
        early = replace(memories[0], memory_id=f"early-{order}", created_at=when)
        store.upsert_memories([early])
        rest = _pages_of(store, query.following(first[-1]))
        assert rest == whole[3:]
        gone = {first[0].memory_id, first[-1].memory_id}
        store.upsert_memories([m for m in memories if m.memory_id in gone])
        store.delete_memories([f"early-{order}"], "ava")


@pytest.mark.parametrize("change", ["delete", "early import"])
def test_an_export_neither_skips_nor_repeats_under_concurrent_writes_on_every_backend(
    store: MemoryStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, change: str
) -> None:
    """``noted memories export`` while a memory it already wrote is deleted, or one
    created earlier is imported, between two of its pages: every other memory is written
    once. (Paged by offset, the pages shifted: the delete skipped a memory, the import
    wrote one twice.)"""
    start = datetime(2026, 1, 2, tzinfo=UTC)
    memories = [
        UserMemory(
            f"fact {n}", memory_id=f"m{n}", user_id="ava", created_at=start, updated_at=start
        )
        for n in range(7)
    ]
    store.upsert_memories(memories)
    memory = Memory(db=store, embedder=None)
    monkeypatch.setattr(cli_files, "EXPORT_PAGE", 2)
    reads = 0
    read = store.list_memories

    def read_then_write(query: MemoryQuery) -> list[UserMemory]:
        nonlocal reads
        page = read(query)
        reads += 1
        if reads == 1 and change == "delete":
            store.delete_memories(["m0"], "ava")
        if reads == 1 and change == "early import":
            store.upsert_memories([replace(memories[0], memory_id="m-early", created_at=EARLY)])
        return page

    monkeypatch.setattr(store, "list_memories", read_then_write)
    with (tmp_path / "export.jsonl").open("w", encoding="utf-8") as stream:
        written = cli_files.export_memories(memory, "ava", stream)
    lines = (tmp_path / "export.jsonl").read_text(encoding="utf-8").splitlines()
    exported = [json.loads(line)["memory_id"] for line in lines]
    assert exported == [m.memory_id for m in memories]
    assert written == 7


def test_a_cursor_is_a_time_and_an_id() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    for after in ((when,), ("x", "a1"), (datetime(2026, 1, 2), "a1"), (when, 5), [when, "a"]):
        with pytest.raises(UserError, match="after"):
            MemoryQuery("ava", after=after)  # type: ignore[arg-type]
    assert MemoryQuery("ava", after=(when.isoformat(), "a1")).after == (when, "a1")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="no memory_id"):
        MemoryQuery("ava").following(UserMemory("unsaved"))


EARLY = datetime(2020, 1, 1, tzinfo=UTC)


def test_an_export_stops_on_a_store_that_pages_past_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A store written before ``MemoryQuery.after`` (here one that drops it) would give
    the export its first page again and again: the export says so instead of writing
    the page forever."""
    store = SqliteDb(tmp_path / "old.db")
    store.upsert_memories([stamped(f"fact {n}", "ava", f"m{n}") for n in range(5)])
    read = store.list_memories
    monkeypatch.setattr(store, "list_memories", lambda q: read(replace(q, after=None)))
    monkeypatch.setattr(cli_files, "EXPORT_PAGE", 2)
    with (
        (tmp_path / "export.jsonl").open("w", encoding="utf-8") as stream,
        pytest.raises(StoreError, match=r"does not list the memories past one"),
    ):
        cli_files.export_memories(Memory(db=store, embedder=None), "ava", stream)
    store.close()
