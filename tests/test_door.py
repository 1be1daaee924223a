"""The write door: every write is checked whole, and a model's plan is written together."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noted import (
    AuditContext,
    ConflictError,
    Memory,
    MemoryManager,
    MemoryQuery,
    MemoryStore,
    NotedError,
    UserError,
    UserMemory,
)
from noted._time import from_micros, now_micros
from noted.db.base import WriteBatch
from noted.limits import MAX_MEMORY_LENGTH
from noted.memory.door import MemoryDoor
from noted.memory.jsonl import read_jsonl, write_jsonl
from noted.memory.operations import parse_operations
from noted.models.types import Message
from noted.testing import FunctionModel, ScriptedModel

_users = iter(range(10**9))


def _user() -> str:
    return f"user-{next(_users)}"


# -- a memory changed after it was built ----------------------------------------------------

MUTATIONS: list[tuple[str, object, str]] = [
    ("memory", "", "memory must not be empty"),
    ("memory", "   ", "memory must not be empty"),
    ("memory", 42, "memory must be a string"),
    ("memory", "nul \x00 inside", "NUL"),
    ("memory", "lone \ud800 surrogate", "valid Unicode"),
    ("topics", "abc", "topics must be a list"),
    ("topics", [1, 2], "each topic must be a non-empty string"),
    ("topics", ["x" * 300], "each topic must be at most 255"),
    ("memory_id", "x" * 300, "memory_id must be at most 255"),
    ("memory_id", "", "memory_id must not be empty"),
    ("user_id", 7, "user_id must be a string"),
    ("agent_id", "bad \ud800", "agent_id must be valid Unicode"),
    ("input", b"bytes", "input must be a string"),
    ("input", "bad \x00", "input must not contain NUL"),
    ("created_at", "yesterday", "created_at must be an ISO 8601"),
    ("updated_at", datetime(2025, 1, 1), "updated_at must be timezone-aware"),
]


@pytest.mark.parametrize(("field", "value", "message"), MUTATIONS)
def test_a_memory_changed_after_it_was_built_is_checked_again(
    memory: Memory, field: str, value: object, message: str
) -> None:
    good = UserMemory("The user likes tea", topics=["drinks"])
    bad = UserMemory("The user likes coffee", topics=["drinks"])
    setattr(bad, field, value)
    writes = [
        lambda: memory.add_user_memory(bad, user_id="ava"),
        lambda: memory.add_user_memories([good, bad], user_id="ava"),
        lambda: memory.import_user_memories([good, bad]),
    ]
    for write in writes:
        with pytest.raises(UserError, match=message):
            write()
    assert memory.count_user_memories("ava") == 0
    assert memory.count_user_memories("default") == 0
    kept = memory.add_user_memory(good, user_id="ava")
    with pytest.raises(UserError, match=message):
        memory.replace_user_memory(kept, bad, user_id="ava")
    stored = memory.get_user_memory(kept, "ava")
    assert stored is not None
    assert stored.memory == "The user likes tea"
    assert len(memory.get_memory_history(kept, "ava")) == 1


def test_an_overlong_memory_is_refused_whatever_the_object(memory: Memory) -> None:
    m = UserMemory("short")
    m.memory = "x" * (memory.max_memory_length + 1)
    with pytest.raises(UserError, match="the limit is 5000"):
        memory.add_user_memory(m, user_id="ava")
    with pytest.raises(UserError, match="must be a UserMemory"):
        memory.add_user_memory({"memory": "a dict"}, user_id="ava")  # type: ignore[arg-type]
    assert memory.count_user_memories("ava") == 0


def test_an_id_given_twice_in_one_write_is_refused(memory: Memory) -> None:
    tea = UserMemory("The user likes tea", memory_id="m-1")
    coffee = UserMemory("The user likes coffee", memory_id="m-1")
    for write in (memory.add_user_memories, memory.import_user_memories):
        with pytest.raises(UserError, match="memory id 'm-1' is given twice"):
            write([tea, UserMemory("The user has a cat"), coffee])
    assert memory.count_user_memories() == 0


# -- a batch is written whole or not at all -------------------------------------------------


def test_a_batch_that_fails_writes_nothing(store: MemoryStore) -> None:
    memory = Memory(db=store)
    mine = memory.add_user_memory(UserMemory("The user lives in Paris"), user_id="ava")
    gone = memory.add_user_memory(UserMemory("The user has a cat"), user_id="ava")
    foreign = memory.add_user_memory(UserMemory("The user is Bob"), user_id="bob")
    current = memory.get_user_memory(mine, "ava")
    assert current is not None
    changed = current.copy()
    changed.memory = "The user lives in Rome"
    changed.updated_at = from_micros(now_micros())
    now = from_micros(now_micros())
    thief = UserMemory("stolen", memory_id=foreign, user_id="ava", created_at=now, updated_at=now)
    batch = WriteBatch("ava", deletes=(gone,), updates=(changed,), adds=(thief,))
    with pytest.raises(ConflictError, match=foreign):
        store.write_batch(batch)
    assert sorted(m.memory for m in memory.get_user_memories("ava")) == [
        "The user has a cat",
        "The user lives in Paris",
    ]
    assert len(memory.get_memory_history(mine, "ava")) == 1
    assert len(memory.get_memory_history(gone, "ava")) == 1
    bob = memory.get_user_memory(foreign, "bob")
    assert bob is not None
    assert bob.memory == "The user is Bob"


def test_a_batch_clears_deletes_updates_and_adds_in_that_order(store: MemoryStore) -> None:
    memory = Memory(db=store)
    first = memory.add_user_memory(UserMemory("one"), user_id="ava")
    memory.add_user_memory(UserMemory("other user"), user_id="bob")
    now = from_micros(now_micros())
    new = UserMemory("two", memory_id="m-two", user_id="ava", created_at=now, updated_at=now)
    written = store.write_batch(WriteBatch("ava", clear=True, adds=(new,)))
    assert [m.memory for m in written] == ["two"]
    assert [m.memory for m in memory.get_user_memories("ava")] == ["two"]
    assert memory.get_user_memory(first, "ava") is None
    assert memory.count_user_memories("bob") == 1
    assert store.write_batch(WriteBatch("ava")) == []


def test_a_batch_skips_changes_of_memories_changed_since_they_were_read(
    store: MemoryStore,
) -> None:
    # What a writer read: three memories. Another writer then edits one and deletes one;
    # the batch, decided on what was read, changes only the memory still as read.
    memory = Memory(db=store)
    ids = [
        memory.add_user_memory(UserMemory(text), user_id="ava")
        for text in ("The user lives in Paris", "The user has a cat", "The user likes tea")
    ]
    read = [memory.get_user_memory(i, "ava") for i in ids]
    assert all(m is not None for m in read)
    paris, cat, tea = (m for m in read if m is not None)
    memory.replace_user_memory(paris.memory_id, UserMemory("The user lives in Berlin"), "ava")
    memory.delete_user_memory(cat.memory_id, "ava")
    now = from_micros(now_micros())
    changes = []
    for m, text in ((paris, "The user lives in Rome"), (cat, "The user has two cats")):
        changed = m.copy()
        changed.memory, changed.updated_at = text, now
        changes.append(changed)
    new = UserMemory("The user reads", memory_id="m-new", user_id="ava", created_at=now)
    new.updated_at = now
    batch = WriteBatch(
        "ava",
        deletes=(tea.memory_id or "",),
        updates=tuple(changes),
        adds=(new,),
        unchanged=tuple((m.memory_id or "", m.updated_at or now) for m in (paris, cat, tea)),
    )
    written = store.write_batch(batch)
    assert [m.memory for m in written] == ["The user reads"]
    assert sorted(m.memory for m in memory.get_user_memories("ava")) == [
        "The user lives in Berlin",
        "The user reads",
    ]
    assert [e.event for e in memory.get_memory_history(paris.memory_id or "", "ava")] == [
        "add",
        "update",
    ]
    # a delete of a memory changed since it was read is skipped too
    berlin = memory.get_user_memory(paris.memory_id or "", "ava")
    assert berlin is not None
    store.write_batch(
        WriteBatch(
            "ava", deletes=(berlin.memory_id or "",), unchanged=((berlin.memory_id or "", now),)
        )
    )
    assert memory.get_user_memory(berlin.memory_id or "", "ava") is not None
    # and an id of another user's memory is never read as unchanged
    bobs = memory.add_user_memory(UserMemory("The user is Bob"), user_id="bob")
    bob = memory.get_user_memory(bobs, "bob")
    assert bob is not None and bob.updated_at is not None
    store.write_batch(WriteBatch("ava", deletes=(bobs,), unchanged=((bobs, bob.updated_at),)))
    assert memory.get_user_memory(bobs, "bob") is not None


def _deciding(memory: Memory, change: Callable[[], object]) -> Memory:
    """A Memory whose manager, while it decides, lets another writer ``change`` memories:
    it updates the user's home to Rome, deletes their cat and adds tea."""

    def fn(messages: list[Message], tools: object) -> str:
        prompt = messages[-1].content or ""
        numbers = {
            text: int(line.split(".")[0])
            for line in prompt.splitlines()
            for text in ("lives in Paris", "has a cat")
            if text in line and line[:1].isdigit()
        }
        change()
        return _answer(
            {
                "op": "update",
                "id": numbers["lives in Paris"],
                "memory": "The user lives in Rome",
                "topics": [],
            },
            {"op": "delete", "id": numbers["has a cat"], "memory": None, "topics": []},
            {"op": "add", "id": None, "memory": "The user likes tea", "topics": []},
        )

    manager = MemoryManager(delete_memories=True)
    return Memory(db=memory.db, model=FunctionModel(fn), memory_manager=manager)


def test_the_manager_never_overwrites_a_memory_changed_while_it_decided(memory: Memory) -> None:
    home = memory.add_user_memory(UserMemory("The user lives in Paris"), user_id="ava")
    cat = memory.add_user_memory(UserMemory("The user has a cat"), user_id="ava")

    def change() -> None:
        memory.replace_user_memory(home, UserMemory("The user lives in Berlin"), "ava")
        memory.replace_user_memory(cat, UserMemory("The user has two cats"), "ava")

    update = _deciding(memory, change).create_user_memories(
        "I moved to Rome; no more cats; I like tea", user_id="ava"
    )
    assert sorted(m.memory for m in memory.get_user_memories("ava")) == [
        "The user has two cats",
        "The user likes tea",
        "The user lives in Berlin",
    ]
    assert [op.kind for op in update.operations] == ["add"]
    assert len(update.rejected) == 2
    assert all("another writer changed it since it was shown" in r for r in update.rejected)


def test_a_change_in_the_moment_before_the_write_is_caught_by_the_store(
    memory: Memory,
) -> None:
    # The door looked and found the memory as shown; another writer changes it just before
    # the batch is written: the store's own check, in the batch's transaction, skips it.
    mid = memory.add_user_memory(UserMemory("The user lives in Paris"), user_id="ava")
    shown = memory.get_user_memory(mid, "ava")
    assert shown is not None
    plan = parse_operations(
        _answer({"op": "update", "id": 1, "memory": "The user lives in Rome", "topics": []}),
        {1: shown},
        MemoryManager().permissions,
        MAX_MEMORY_LENGTH,
    )
    door = MemoryDoor(memory.db)

    def commit(batch: WriteBatch) -> list[UserMemory]:
        memory.replace_user_memory(mid, UserMemory("The user lives in Berlin"), "ava")
        return memory.db.write_batch(batch)

    applied = door.apply(plan, {1: shown}, "ava", AuditContext(actor="manager"), commit=commit)
    stored = memory.get_user_memory(mid, "ava")
    assert stored is not None
    assert stored.memory == "The user lives in Berlin"
    assert applied.operations == []
    assert applied.written == []
    assert ["as it was written" in r for r in applied.rejected] == [True]


# -- a model's plan -------------------------------------------------------------------------


def _answer(*operations: dict[str, Any]) -> str:
    return json.dumps({"operations": list(operations)})


def test_an_invalid_operation_is_dropped_and_the_valid_rest_written(
    memory: Memory, caplog: pytest.LogCaptureFixture
) -> None:
    mid = memory.add_user_memory(UserMemory("The user lives in Paris"), user_id="ava")
    model = ScriptedModel(
        [
            _answer(
                {"op": "update", "id": 1, "memory": "The user lives in Rome", "topics": []},
                {"op": "add", "id": None, "memory": "bad \ud800 text", "topics": []},
                {"op": "add", "id": None, "memory": "The user has a dog", "topics": ["pets"]},
            )
        ]
    )
    manager_memory = Memory(db=memory.db, model=model)
    with caplog.at_level(logging.WARNING, "noted.memory"):
        update = manager_memory.create_user_memories(
            "I moved to Rome, and I have a dog", user_id="ava"
        )
    assert sorted(m.memory for m in memory.get_user_memories("ava")) == [
        "The user has a dog",
        "The user lives in Rome",
    ]
    assert len(update.memory_ids) == 2
    assert mid in update.memory_ids
    assert len(update.rejected) == 1
    assert "valid Unicode" in update.rejected[0]
    assert "valid Unicode" in caplog.text


def test_a_deeply_nested_answer_is_dropped_not_raised(memory: Memory) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    for answer in (deep, '{"operations": ' + deep + "}"):
        manager_memory = Memory(db=memory.db, model=ScriptedModel([answer]))
        update = manager_memory.create_user_memories("I like tea", user_id="ava")
        assert update.memory_ids == []
        assert update.rejected
    assert memory.count_user_memories("ava") == 0


def test_operations_past_the_cap_are_dropped_and_logged_once(
    memory: Memory, caplog: pytest.LogCaptureFixture
) -> None:
    ops = [{"op": "add", "id": None, "memory": f"fact {i}", "topics": []} for i in range(10_000)]
    manager = MemoryManager(max_operations=20)
    manager_memory = Memory(
        db=memory.db, model=ScriptedModel([_answer(*ops)]), memory_manager=manager
    )
    with caplog.at_level(logging.WARNING, "noted.memory"):
        update = manager_memory.create_user_memories("many facts", user_id="ava")
    assert memory.count_user_memories("ava") == 20
    assert len(update.memory_ids) == 20
    capped = [r for r in caplog.records if "max_operations" in r.getMessage()]
    assert len(capped) == 1
    assert "9980 more operations" in capped[0].getMessage()
    with pytest.raises(UserError, match="max_operations"):
        MemoryManager(max_operations=0)


def test_adds_past_the_cap_are_not_searched_for_as_stored(
    memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each add the cap keeps is looked up as perhaps stored already; those past the cap are
    # dropped unsearched. "fact 3" is stored (not shown: the tea is), so the cap keeps
    # fact 0-2 and 4-5.
    memory.add_user_memory(UserMemory("fact 3"), user_id="ava")
    memory.add_user_memory(UserMemory("User likes tea"), user_id="ava")
    searches: list[str] = []
    keyword_search = memory.db.keyword_search

    def counted(query: MemoryQuery, text: str, **options: Any) -> Any:
        searches.append(text)
        return keyword_search(query, text, **options)

    monkeypatch.setattr(memory.db, "keyword_search", counted)
    ops = [{"op": "add", "id": None, "memory": f"fact {i}", "topics": []} for i in range(2_000)]
    manager = MemoryManager(max_operations=5, memories_in_prompt=1)
    capped = Memory(db=memory.db, model=ScriptedModel([_answer(*ops)]), memory_manager=manager)
    update = capped.create_user_memories("I like tea", user_id="ava")
    prompt = capped.model.requests[0].messages[1].content or ""  # type: ignore[union-attr]
    assert "User likes tea" in prompt and "fact 3" not in prompt
    stored = sorted(m.memory for m in memory.get_user_memories("ava"))
    assert stored == ["User likes tea", *(f"fact {i}" for i in range(6))]
    assert [op.memory for op in update.operations] == [f"fact {i}" for i in (0, 1, 2, 4, 5)]
    assert [text for text in searches if text.startswith("fact")] == [f"fact {i}" for i in range(6)]
    assert "already stored: 'fact 3'" in update.rejected
    assert any("1994 more operations" in reason for reason in update.rejected)


def test_an_add_the_cap_leaves_without_its_delete_is_not_stored_twice(memory: Memory) -> None:
    # "User likes to ski" is new only because the answer deletes the stored one; the cap
    # drops that delete, so the add goes too.
    memory.add_user_memory(UserMemory("User likes to ski"), user_id="ava")

    def fn(messages: list[Message], tools: object) -> str:
        prompt = messages[-1].content or ""
        number = int(next(line for line in prompt.splitlines() if "likes to ski" in line)[0])
        return _answer(
            {"op": "add", "id": None, "memory": "User likes to ski", "topics": []},
            {"op": "add", "id": None, "memory": "User likes tea", "topics": []},
            {"op": "delete", "id": number, "memory": None, "topics": []},
        )

    manager = MemoryManager(max_operations=2, delete_memories=True)
    capped = Memory(db=memory.db, model=FunctionModel(fn), memory_manager=manager)
    update = capped.create_user_memories("I like to ski and I like tea", user_id="ava")
    stored = sorted(m.memory for m in memory.get_user_memories("ava"))
    assert stored == ["User likes tea", "User likes to ski"]
    assert any("its delete was dropped" in reason for reason in update.rejected)


# -- properties -----------------------------------------------------------------------------

_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda t: bool(t.strip()) and "\x00" not in t)
_bad_text = st.sampled_from(["", "  ", "a\x00b", "x\ud800y", 7, None, b"raw"])
_ids = st.one_of(st.none(), st.text(alphabet="abcdef0123456789-", min_size=1, max_size=40))
_times = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2000, 1, 1),
        max_value=datetime(2100, 1, 1),
        timezones=st.just(UTC),
    ),
)
_FIELDS = ("memory", "topics", "input", "memory_id", "agent_id", "team_id", "created_at")


@st.composite
def mutated_memories(draw: st.DrawFn) -> tuple[UserMemory, bool]:
    """A memory, maybe with one field changed to a value that is not allowed."""
    m = UserMemory(
        draw(_text),
        topics=draw(st.lists(_text, max_size=3)),
        input=draw(st.one_of(st.none(), _text)),
        agent_id=draw(_ids),
        team_id=draw(_ids),
        created_at=draw(_times),
    )
    if draw(st.booleans()):
        return m, True
    field = draw(st.sampled_from(_FIELDS))
    bad: object
    if field == "topics":
        bad = draw(st.sampled_from(["abc", [1], [""], ["a\x00"], None]))
    elif field == "created_at":
        bad = draw(st.sampled_from(["never", 5, datetime(2020, 1, 1)]))
    elif field == "memory":
        bad = draw(_bad_text)
    elif field == "input":
        bad = draw(st.sampled_from(["a\x00", "b\udfff", 3, ["list"]]))
    else:
        bad = draw(st.sampled_from(["", "x" * 256, "a\x00", "b\udfff", 3]))
    setattr(m, field, bad)
    return m, False


_SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@_SETTINGS
@given(batch=st.lists(mutated_memories(), min_size=1, max_size=4))
def test_no_invalid_value_is_ever_stored(
    memory: Memory, batch: list[tuple[UserMemory, bool]]
) -> None:
    user = _user()
    memories = [m for m, _ in batch]
    if all(valid for _, valid in batch):
        ids = memory.add_user_memories(memories, user_id=user)
        for mid, m in zip(ids, memories, strict=True):
            stored = memory.get_user_memory(mid, user)
            assert stored is not None
            assert (stored.memory, stored.topics, stored.input) == (m.memory, m.topics, m.input)
            assert (stored.agent_id, stored.team_id) == (m.agent_id, m.team_id)
    else:
        with pytest.raises(UserError):
            memory.add_user_memories(memories, user_id=user)
        assert memory.count_user_memories(user) == 0


_ops = st.one_of(
    st.fixed_dictionaries(
        {
            "op": st.sampled_from(["add", "update", "delete", "clear", "merge", 3]),
            "id": st.one_of(st.none(), st.integers(-2, 5), st.text(max_size=3)),
            "memory": st.one_of(
                st.none(), _text, st.sampled_from(["", "  ", "a\x00b", "x\ud800y", 7, "x" * 6000])
            ),
            "topics": st.one_of(st.lists(st.one_of(_text, st.integers()), max_size=3), _text),
        }
    ),
    st.integers(),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)


@_SETTINGS
@given(ops=st.lists(_ops, max_size=8), wrap=st.sampled_from(["object", "list", "fence", "junk"]))
def test_any_plan_writes_only_valid_operations_together(
    memory: Memory, ops: list[Any], wrap: str
) -> None:
    user = _user()
    memory.add_user_memories(
        [UserMemory("The user lives in Paris"), UserMemory("The user has a cat")], user_id=user
    )
    before = {m.memory_id: m.memory for m in memory.get_user_memories(user)}
    answer = {
        "object": json.dumps({"operations": ops}),
        "list": json.dumps(ops),
        "fence": "```json\n" + json.dumps({"operations": ops}) + "\n```",
        "junk": "not json " + json.dumps(ops)[:-1],  # cut off: none of it is read
    }[wrap]

    def reply(messages: list[Message], tools: list[Any]) -> str:
        return answer

    manager = MemoryManager(delete_memories=True, clear_memories=True)
    worker = Memory(db=memory.db, model=FunctionModel(reply), memory_manager=manager)
    update = worker.create_user_memories("Some news about me", user_id=user)
    after = memory.get_user_memories(user)
    for m in after:
        assert m.memory.strip() == m.memory
        assert m.memory
        m.checked()  # every stored value passes the door again
    if wrap == "junk":
        assert {m.memory_id: m.memory for m in after} == before
    # each memory the update names is stored as the plan asked
    stored = {m.memory_id for m in after}
    for mid in update.memory_ids:
        assert mid in stored


@_SETTINGS
@given(batch=st.lists(mutated_memories(), min_size=1, max_size=4))
def test_export_then_import_reproduces_every_field(
    memory: Memory, batch: list[tuple[UserMemory, bool]]
) -> None:
    user = _user()
    valid = [m for m, ok in batch if ok]
    if not valid:
        return
    for m in valid:
        m.user_id = user
    memory.import_user_memories(valid)
    exported = io.StringIO()
    write_jsonl(memory.get_user_memories(user), exported)
    target = Memory()
    target.import_user_memories(read_jsonl(io.StringIO(exported.getvalue())))
    original = sorted((m.to_dict() for m in memory.get_user_memories(user)), key=str)
    copied = sorted((m.to_dict() for m in target.get_user_memories(user)), key=str)
    assert copied == original


BAD_VALUES = [None, 5, 1.5, [], {}, b"b", "\x00", "\ud800", "a" * 300, object(), True]


@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_bad_arguments_get_a_noted_error_never_a_builtin_one(value: object) -> None:
    memory = Memory()
    mid = memory.add_user_memory(UserMemory("The user likes tea"), user_id="ava")
    calls = [
        lambda: memory.add_user_memory(value, user_id="ava"),  # type: ignore[arg-type]
        lambda: memory.add_user_memory(UserMemory("x"), user_id=value),  # type: ignore[arg-type]
        lambda: memory.add_user_memories(value),  # type: ignore[arg-type]
        lambda: memory.import_user_memories(value),  # type: ignore[arg-type]
        lambda: memory.replace_user_memory(value, UserMemory("x"), "ava"),  # type: ignore[arg-type]
        lambda: memory.replace_user_memory(mid, value, "ava"),  # type: ignore[arg-type]
        lambda: memory.delete_user_memory(value, "ava"),  # type: ignore[arg-type]
        lambda: memory.delete_user_memories(value, "ava"),  # type: ignore[arg-type]
        lambda: memory.get_user_memories("ava", limit=value),  # type: ignore[arg-type]
        lambda: memory.get_user_memories("ava", topics=value),  # type: ignore[arg-type]
        lambda: memory.search_user_memories(value, "ava", retrieval_method="keyword"),  # type: ignore[arg-type]
        lambda: memory.search_user_memories("tea", "ava", 1, value),  # type: ignore[arg-type]
    ]
    for call in calls:
        with contextlib.suppress(NotedError):
            call()
    stored = memory.get_user_memories("ava")
    assert [m.memory for m in stored if m.memory_id == mid] == ["The user likes tea"]
    for m in stored:
        m.checked()
