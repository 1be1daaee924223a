"""The Memory API on every local store (SQLite file and in-process)."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime

import pytest

from noted import Agent, ConflictError, InMemoryDb, Memory, NotFoundError, UserError, UserMemory
from noted.testing import ScriptedModel


def texts(memories: list[UserMemory]) -> list[str]:
    return [m.memory for m in memories]


def test_add_get_replace_delete(memory: Memory) -> None:
    mid = memory.add_user_memory(
        memory=UserMemory(memory="The user prefers dark mode", topics=["preferences", "ui"]),
        user_id="ava",
    )
    got = memory.get_user_memory(memory_id=mid, user_id="ava")
    assert got is not None
    assert got.memory == "The user prefers dark mode"
    assert got.topics == ["preferences", "ui"]
    assert got.user_id == "ava"
    assert got.created_at is not None
    assert got.created_at.tzinfo == UTC
    assert got.created_at == got.updated_at

    same = memory.replace_user_memory(
        memory_id=mid,
        memory=UserMemory(memory="The user prefers light mode", topics=["preferences"]),
        user_id="ava",
    )
    assert same == mid
    replaced = memory.get_user_memory(memory_id=mid, user_id="ava")
    assert replaced is not None
    assert replaced.memory == "The user prefers light mode"
    assert replaced.topics == ["preferences"]
    assert replaced.created_at == got.created_at
    assert replaced.updated_at is not None
    assert replaced.updated_at > got.created_at

    assert memory.delete_user_memory(user_id="ava", memory_id=mid) is True
    assert memory.get_user_memory(memory_id=mid, user_id="ava") is None
    assert memory.delete_user_memory(user_id="ava", memory_id=mid) is False


def test_default_user(memory: Memory) -> None:
    mid = memory.add_user_memory(UserMemory("The user likes tea"))
    assert memory.get_user_memory(mid) is not None
    assert memory.get_user_memory(mid, user_id="default") is not None
    assert memory.get_user_memory(mid, user_id="ava") is None


def test_add_does_not_mutate_the_callers_object(memory: Memory) -> None:
    draft = UserMemory("The user likes tea")
    memory.add_user_memory(draft, user_id="ava")
    assert draft.memory_id is None
    assert draft.user_id is None


def test_add_preserves_given_fields(memory: Memory) -> None:
    created = datetime(2020, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    mid = memory.add_user_memory(
        UserMemory(
            "x",
            memory_id="mine",
            input="src",
            agent_id="ag",
            team_id="tm",
            session_id="se",
            created_at=created,
        ),
        user_id="ava",
    )
    assert mid == "mine"
    got = memory.get_user_memory("mine", user_id="ava")
    assert got is not None
    assert (got.input, got.agent_id, got.team_id, got.session_id) == ("src", "ag", "tm", "se")
    assert got.created_at == created


def test_conflicting_user_ids_are_refused(memory: Memory) -> None:
    with pytest.raises(UserError, match="does not match"):
        memory.add_user_memory(UserMemory("x", user_id="bob"), user_id="ava")
    assert memory.get_user_stats() == []


def test_user_isolation(memory: Memory) -> None:
    ava = memory.add_user_memory(UserMemory("Ava skis", topics=["sport"]), user_id="ava")
    bob = memory.add_user_memory(UserMemory("Bob sails", topics=["sea"]), user_id="bob")

    assert memory.get_user_memory(ava, user_id="bob") is None
    assert texts(memory.get_user_memories(user_id="bob")) == ["Bob sails"]
    assert memory.get_topics(user_id="bob") == ["sea"]

    with pytest.raises(NotFoundError, match="bob"):
        memory.replace_user_memory(ava, UserMemory("hacked"), user_id="bob")
    assert memory.delete_user_memory(ava, user_id="bob") is False
    assert memory.delete_user_memories([ava, bob], user_id="bob") == 1
    # Re-adding with another user's id is refused too, and writes nothing.
    with pytest.raises(ConflictError, match="another user"):
        memory.add_user_memory(UserMemory("hacked", memory_id=ava), user_id="bob")
    with pytest.raises(ConflictError):
        memory.add_user_memories(
            [UserMemory("fine"), UserMemory("hacked", memory_id=ava)], user_id="bob"
        )
    assert memory.get_user_memories(user_id="bob") == []

    got = memory.get_user_memory(ava, user_id="ava")
    assert got is not None
    assert got.memory == "Ava skis"
    assert memory.clear(user_id="bob") == 0
    assert memory.count_user_memories(user_id="ava") == 1


def test_clear_one_user_or_everyone(memory: Memory) -> None:
    memory.add_user_memories([UserMemory("a1"), UserMemory("a2")], user_id="ava")
    memory.add_user_memory(UserMemory("b1"), user_id="bob")
    assert memory.clear(user_id="ava") == 2
    assert memory.get_user_memories(user_id="ava") == []
    assert texts(memory.get_user_memories(user_id="bob")) == ["b1"]
    assert memory.clear() == 1
    assert memory.get_user_stats() == []


def test_list_filters_order_and_pages(memory: Memory) -> None:
    for i in range(10):
        memory.add_user_memory(
            UserMemory(
                f"m{i}",
                topics=["even" if i % 2 == 0 else "odd", *(["three"] if i % 3 == 0 else [])],
                agent_id="a1" if i < 5 else "a2",
                team_id="t" if i == 7 else None,
            ),
            user_id="ava",
        )
    assert texts(memory.get_user_memories(user_id="ava")) == [f"m{i}" for i in range(9, -1, -1)]
    asc = memory.get_user_memories(user_id="ava", sort_by="created_at", sort_order="asc")
    assert texts(asc) == [f"m{i}" for i in range(10)]
    assert texts(memory.get_user_memories(user_id="ava", limit=3, offset=2)) == ["m7", "m6", "m5"]
    assert texts(memory.get_user_memories(user_id="ava", topics=["three"])) == [
        "m9",
        "m6",
        "m3",
        "m0",
    ]
    assert texts(memory.get_user_memories(user_id="ava", topics="odd", agent_id="a1")) == [
        "m3",
        "m1",
    ]
    assert texts(memory.get_user_memories(user_id="ava", team_id="t")) == ["m7"]
    assert memory.count_user_memories(user_id="ava", topics=["odd", "three"]) == 7
    assert memory.get_user_memories(user_id="ava", limit=0) == []
    assert memory.get_topics(user_id="ava") == ["even", "odd", "three"]


def test_replace_moves_a_memory_to_the_top(memory: Memory) -> None:
    first = memory.add_user_memory(UserMemory("lives in San Francisco"), user_id="ava")
    memory.add_user_memory(UserMemory("likes to ski"), user_id="ava")
    memory.replace_user_memory(first, UserMemory("lives in Seattle"), user_id="ava")
    assert texts(
        memory.search_user_memories(user_id="ava", limit=1, retrieval_method="last_n")
    ) == ["lives in Seattle"]
    by_creation = memory.get_user_memories(user_id="ava", sort_by="created_at", sort_order="asc")
    assert texts(by_creation) == ["lives in Seattle", "likes to ski"]


def test_replace_keeps_ids_it_was_not_given(memory: Memory) -> None:
    mid = memory.add_user_memory(
        UserMemory("x", agent_id="ag", session_id="s1", input="said x"), user_id="ava"
    )
    memory.replace_user_memory(mid, UserMemory("y", topics=["t"]), user_id="ava")
    got = memory.get_user_memory(mid, user_id="ava")
    assert got is not None
    assert (got.memory, got.topics, got.agent_id, got.session_id, got.input) == (
        "y",
        ["t"],
        "ag",
        "s1",
        "said x",
    )


def test_search_last_n_and_first_n(memory: Memory) -> None:
    memory.add_user_memory(
        UserMemory("The user enjoys hiking in the mountains on weekends"), user_id="john"
    )
    memory.add_user_memory(
        UserMemory("The user enjoys reading science fiction novels before bed"), user_id="john"
    )
    last = memory.search_user_memories(user_id="john", limit=1, retrieval_method="last_n")
    first = memory.search_user_memories(user_id="john", limit=1, retrieval_method="first_n")
    assert texts(last) == ["The user enjoys reading science fiction novels before bed"]
    assert texts(first) == ["The user enjoys hiking in the mountains on weekends"]
    assert len(memory.search_user_memories(user_id="john")) == 2


def test_search_rejects_methods_it_does_not_have(memory: Memory) -> None:
    with pytest.raises(UserError, match="semantic search needs an embedder"):
        memory.search_user_memories(query="ski", retrieval_method="semantic")
    with pytest.raises(UserError, match="got 'nearest'"):
        memory.search_user_memories(retrieval_method="nearest")


def test_user_stats(memory: Memory) -> None:
    memory.add_user_memories([UserMemory("a"), UserMemory("b")], user_id="ava")
    memory.add_user_memory(UserMemory("c"), user_id="bob")
    stats = memory.get_user_stats()
    assert [(s.user_id, s.memory_count) for s in stats] == [("bob", 1), ("ava", 2)]
    newest = memory.get_user_memories(user_id="bob")[0]
    assert stats[0].last_updated == newest.updated_at
    assert [s.user_id for s in memory.get_user_stats(limit=1, offset=1)] == ["ava"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.add_user_memory("just a string"), "must be a UserMemory"),
        (lambda m: m.add_user_memory(UserMemory("x" * 5001)), "5001 characters; the limit is 5000"),
        (lambda m: m.add_user_memory(UserMemory("x"), user_id=""), "user_id must not be empty"),
        (lambda m: m.add_user_memory(UserMemory("x"), user_id=3), "user_id must be a string"),
        (lambda m: m.get_user_memory(None), "memory_id is required"),
        (lambda m: m.get_user_memories(limit=-1), "limit must be a non-negative"),
        (lambda m: m.get_user_memories(offset="2"), "offset must be a non-negative"),
        (lambda m: m.get_user_memories(limit=2**63), r"at most 2\*\*63 - 1"),
        (lambda m: m.get_user_stats(offset=2**64), r"at most 2\*\*63 - 1"),
        (
            lambda m: m.search_user_memories("tea", retrieval_method="keyword", half_life=30),
            "half_life must be a positive timedelta",
        ),
        (lambda m: m.get_user_memories(sort_by="memory"), "sort_by must be one of"),
        (lambda m: m.get_user_memories(sort_order="up"), "sort_order must be"),
        (lambda m: m.delete_user_memories("abc"), "a list of ids"),
        (lambda m: m.get_user_memories(topics=[1]), "each topic must be a non-empty string"),
        (lambda m: m.get_user_memories(agent_id=""), "agent_id must not be empty"),
        (lambda m: m.replace_user_memory("nope", UserMemory("x")), "has no memory with id 'nope'"),
    ],
)
def test_bad_input_gets_a_clear_error_and_writes_nothing(memory: Memory, call, message) -> None:
    with pytest.raises((UserError, NotFoundError), match=message):
        call(memory)
    assert memory.get_user_stats() == []


def test_limit_is_configurable(memory: Memory) -> None:
    roomy = Memory(db=memory.db, max_memory_length=10_000)
    mid = roomy.add_user_memory(UserMemory("y" * 10_000))
    got = memory.get_user_memory(mid)
    assert got is not None
    assert len(got.memory) == 10_000
    with pytest.raises(UserError, match="max_memory_length"):
        Memory(max_memory_length=0)


def test_bulk_add_is_all_or_nothing(memory: Memory) -> None:
    with pytest.raises(UserError, match="5001 characters"):
        memory.add_user_memories([UserMemory("fine"), UserMemory("z" * 5001)], user_id="ava")
    assert memory.count_user_memories(user_id="ava") == 0
    ids = memory.add_user_memories([UserMemory(f"m{i}") for i in range(1200)], user_id="ava")
    assert len(set(ids)) == 1200
    assert memory.count_user_memories(user_id="ava") == 1200
    assert memory.delete_user_memories(ids[:700], user_id="ava") == 700
    assert memory.count_user_memories(user_id="ava") == 500


def test_stored_memories_cannot_be_changed_through_returned_objects(memory: Memory) -> None:
    mid = memory.add_user_memory(UserMemory("x", topics=["a"]), user_id="ava")
    got = memory.get_user_memory(mid, user_id="ava")
    assert got is not None
    got.topics.append("b")
    got.memory = "changed"
    again = memory.get_user_memory(mid, user_id="ava")
    assert again is not None
    assert (again.memory, again.topics) == ("x", ["a"])


def test_unicode_and_large_texts_survive(memory: Memory) -> None:
    text = "Zoë 🎿 skis in 北海道; 'quotes' \"and\" \\ back\\slashes\n" * 80
    text = text[:5000]
    mid = memory.add_user_memory(UserMemory(text, topics=["日本", "émoji 🎿"]), user_id="zoë")
    got = memory.get_user_memory(mid, user_id="zoë")
    assert got is not None
    assert got.memory == text.strip()
    assert memory.get_user_memories(user_id="zoë", topics=["日本"])[0].memory_id == mid


def test_async_twins_behave_like_the_sync_methods(memory: Memory) -> None:
    async def scenario() -> list[object]:
        mid = await memory.aadd_user_memory(UserMemory("a", topics=["t"]), user_id="ava")
        ids = await memory.aadd_user_memories([UserMemory("b"), UserMemory("c")], user_id="ava")
        await memory.areplace_user_memory(mid, UserMemory("a2", topics=["t"]), user_id="ava")
        got = await memory.aget_user_memory(mid, user_id="ava")
        listed = await memory.aget_user_memories(user_id="ava", sort_order="asc")
        last = await memory.asearch_user_memories(user_id="ava", limit=1, retrieval_method="last_n")
        count = await memory.acount_user_memories(user_id="ava")
        topics = await memory.aget_topics(user_id="ava")
        stats = await memory.aget_user_stats()
        deleted = await memory.adelete_user_memory(ids[0], user_id="ava")
        many = await memory.adelete_user_memories([ids[1], "missing"], user_id="ava")
        with pytest.raises(NotFoundError):
            await memory.areplace_user_memory("missing", UserMemory("x"), user_id="ava")
        cleared = await memory.aclear(user_id="ava")
        return [
            got.memory if got else None,
            texts(listed),
            texts(last),
            count,
            topics,
            [(s.user_id, s.memory_count) for s in stats],
            deleted,
            many,
            cleared,
        ]

    result = asyncio.run(scenario())
    assert result == [
        "a2",
        ["b", "c", "a2"],
        ["a2"],
        3,
        ["t"],
        [("ava", 3)],
        True,
        1,
        1,
    ]


def test_every_io_method_has_an_async_twin() -> None:
    public = {n for n, v in vars(Memory).items() if callable(v) and not n.startswith("_")}
    public -= {"acting_as"}  # no I/O: this Memory with writes recorded under another actor
    twins = {n for n in public if n.startswith("a") and n[1:] in public}
    sync_methods = public - twins
    assert {"add_user_memory", "get_user_memories", "clear"} <= sync_methods
    assert sync_methods == {n[1:] for n in twins}
    for name in sync_methods:
        twin = getattr(Memory, "a" + name)
        assert asyncio.iscoroutinefunction(twin), name
        assert twin.__name__ == "a" + name


def test_db_may_be_named_as_on_the_command_line(tmp_path, monkeypatch) -> None:
    """Memory(db="memory.db") opens the same store as `noted --db memory.db`."""
    from noted import SqliteDb

    monkeypatch.chdir(tmp_path)
    memory = Memory(db="memory.db")
    assert isinstance(memory.db, SqliteDb)
    memory.add_user_memory(UserMemory("The user likes to ski"), user_id="ava")
    memory.db.close()
    again = Memory(db=f"sqlite:///{tmp_path / 'memory.db'}")
    assert texts(again.get_user_memories(user_id="ava")) == ["The user likes to ski"]
    again.db.close()
    with pytest.raises(UserError, match="a database must be"):
        Memory(db="ftp://nowhere/db")
    with pytest.raises(UserError, match=r"or a string open_store\(\) takes"):
        Memory(db=42)  # type: ignore[arg-type]


def test_a_filter_of_many_topics_is_answered(memory: Memory) -> None:
    memory.add_user_memory(UserMemory("The user likes tea", topics=["drinks"]), user_id="ava")
    memory.add_user_memory(UserMemory("The user likes chess", topics=["games"]), user_id="ava")
    many = [f"topic {n}" for n in range(40_000)] + ["drinks"]
    listed = memory.get_user_memories(user_id="ava", topics=many)
    assert [m.memory for m in listed] == ["The user likes tea"]
    found = memory.search_user_memories("likes", "ava", retrieval_method="keyword", topics=many)
    assert [m.memory for m in found] == ["The user likes tea"]


def test_edit_changes_what_it_is_given_keeps_the_rest_and_restating_writes_nothing(
    memory: Memory,
) -> None:
    [mid] = memory.add_user_memories(
        [UserMemory("The user lives in Paris", topics=["home"], agent_id="a", input="I moved")],
        user_id="ava",
    )
    moved = memory.edit_user_memory(mid, "ava", memory="The user lives in Rome")
    assert (moved.memory, moved.topics, moved.agent_id, moved.input) == (
        "The user lives in Rome",
        ["home"],
        "a",
        "I moved",
    )
    same = asyncio.run(memory.aedit_user_memory(mid, "ava", topics=[" home "]))
    assert same == moved  # restated: nothing written
    assert [e.event for e in memory.get_memory_history(mid, "ava")] == ["add", "update"]
    with pytest.raises(UserError, match="nothing to change"):
        memory.edit_user_memory(mid, "ava")
    with pytest.raises(NotFoundError):
        memory.edit_user_memory(mid, "bob", memory="The user lives in Oslo")
    assert memory.get_user_memory(mid, "ava") == moved


def test_a_memory_longer_than_this_memorys_limit_keeps_its_topics_editable(
    memory: Memory,
) -> None:
    # Stored by a Memory with a higher limit; this one (the server's, the CLI's) changes its
    # topics, but a new text over its limit is refused, nothing written.
    long_text = "The user keeps a travel diary: " + " ".join(["Lisbon, Porto, Faro."] * 300)
    [mid] = Memory(memory.db, max_memory_length=10_000).add_user_memories(
        [UserMemory(long_text, topics=["travel"])], user_id="ava"
    )
    edited = memory.edit_user_memory(mid, "ava", topics=["travel", "diary"])
    assert (edited.memory, edited.topics) == (long_text, ["travel", "diary"])
    restated = memory.edit_user_memory(mid, "ava", memory=long_text, topics=["diary"])
    assert restated.topics == ["diary"]
    with pytest.raises(UserError, match="the limit is 5000"):
        memory.edit_user_memory(mid, "ava", memory=long_text + " Braga.")
    stored = memory.get_user_memory(mid, "ava")
    assert stored is not None and (stored.memory, stored.topics) == (long_text, ["diary"])


@pytest.mark.parametrize("user", [" ava", "ava ", "\tava", "ava\n", "\u00a0ava"])
def test_a_user_id_with_whitespace_around_it_takes_no_new_memories_or_runs(
    memory: Memory, user: str
) -> None:
    # " ava" was stored as a user beside "ava" (two users that look alike, each with half
    # of the memories); what is stored under such an id is still read, changed, deleted
    said = f"user_id must not begin or end with whitespace, got {user!r}"
    with pytest.raises(UserError, match=re.escape(said)):
        memory.add_user_memory(UserMemory("Likes tea"), user)
    with pytest.raises(UserError, match="must not begin or end with whitespace"):
        memory.add_user_memories([UserMemory("Likes tea"), UserMemory("Likes jazz")], user)
    with pytest.raises(UserError, match="must not begin or end with whitespace"):
        memory.add_user_memory(UserMemory("Likes tea", user_id=user))
    with pytest.raises(UserError, match="must not begin or end with whitespace"):
        memory.create_user_memories("I like tea", user_id=user)
    with pytest.raises(UserError, match="must not begin or end with whitespace"):
        Agent(ScriptedModel(["Hello"]), db=InMemoryDb(), memory=memory).run("hi", user_id=user)
    assert memory.get_user_stats() == []
    # stored before (an import keeps its ids): read, edited and deleted as it is
    memory.import_user_memories([UserMemory("Likes tea", memory_id="tea", user_id=user)])
    assert texts(memory.get_user_memories(user)) == ["Likes tea"]
    assert memory.get_user_memories(user.strip()) == []
    assert memory.edit_user_memory("tea", user, memory="Likes green tea").memory == (
        "Likes green tea"
    )
    assert [e.event for e in memory.get_memory_history("tea", user)] == ["add", "update"]
    assert memory.delete_user_memory("tea", user)
    assert memory.get_user_memories(user) == []


@pytest.mark.parametrize("user", [" ava", "ava\n"])
def test_an_agent_for_a_user_id_with_whitespace_around_it_is_refused_when_built(
    memory: Memory, user: str
) -> None:
    # Agent(user_id=" ava") was built and failed only at its first run
    said = f"user_id must not begin or end with whitespace, got {user!r}"
    with pytest.raises(UserError, match=re.escape(said)):
        Agent(ScriptedModel(["Hello"]), db=InMemoryDb(), memory=memory, user_id=user)
    # what is stored under such an id is still read by naming it
    memory.import_user_memories([UserMemory("Likes tea", memory_id="tea", user_id=user)])
    assert texts(memory.get_user_memories(user)) == ["Likes tea"]
    assert Agent(ScriptedModel(["Hello"]), db=InMemoryDb(), user_id=user.strip()).user_id == "ava"
