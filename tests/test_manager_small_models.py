"""The memory manager's help for small models: a per-request output limit (a cut-off
answer dropped), updates aimed at the wrong memory mended, and the two-call mode."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from noted import Memory, MemoryManager, SqliteDb, UserError, UserMemory
from noted.memory.manager import DEFAULT_MAX_TOKENS
from noted.memory.operations import Permissions, parse_operations
from noted.memory.salvage import same_subject
from noted.memory.two_calls import FACTS_SCHEMA
from noted.models import ModelRequest, ModelResponse, Usage
from noted.models.types import Message
from noted.testing import ScriptedModel


def add(memory: str, *topics: str) -> dict[str, object]:
    return {"op": "add", "id": None, "memory": memory, "topics": list(topics) or ["x"]}


def answer(*items: dict[str, object]) -> str:
    return json.dumps({"facts_about_the_user": True, "operations": list(items)})


def stored(memory: Memory, user: str = "u") -> list[str]:
    return sorted(m.memory for m in memory.get_user_memories(user_id=user))


# -- the output limit ------------------------------------------------------------------------


def test_the_manager_asks_for_a_short_answer(tmp_path: Path) -> None:
    for setting, sent in (
        ({}, DEFAULT_MAX_TOKENS),
        ({"max_tokens": 90}, 90),
        ({"max_tokens": None}, None),
    ):
        model = ScriptedModel([answer(add("User likes tea"))])
        manager = MemoryManager(model=model, **setting)  # type: ignore[arg-type]
        memory = Memory(db=SqliteDb(tmp_path / f"{sent}.db"), memory_manager=manager)
        memory.create_user_memories(message="I like tea.", user_id="u")
        [request] = model.requests
        assert request.max_tokens == sent
        assert stored(memory) == ["User likes tea"]
    assert 100 <= DEFAULT_MAX_TOKENS <= 512  # room for a plan of a few operations


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "256"])
def test_a_bad_limit_is_a_user_error(bad: object) -> None:
    with pytest.raises(UserError, match="max_tokens"):
        MemoryManager(max_tokens=bad)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="max_tokens"):
        ModelRequest([Message("user", "hi")], max_tokens=bad)  # type: ignore[arg-type]


def test_the_lower_of_the_models_and_the_requests_limit_applies() -> None:
    request = ModelRequest([Message("user", "hi")], max_tokens=256)
    assert request.token_limit(1024) == 256
    assert request.token_limit(100) == 100
    assert request.token_limit(None) == 256
    assert ModelRequest([Message("user", "hi")]).token_limit(None) is None
    assert ModelRequest([Message("user", "hi")]).token_limit(512) == 512


@pytest.mark.parametrize("finish", ["length", "max_tokens", "MAX_TOKENS"])
def test_an_answer_cut_off_at_the_limit_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, finish: str
) -> None:
    # Whole JSON, so only the finish reason tells that the model had more to say.
    text = answer(add("User lives in Oslo"), add("User likes fjords"))
    model = ScriptedModel([ModelResponse(content=text, finish_reason=finish)])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        update = memory.create_user_memories(message="What is Norway like in May?", user_id="u")
    assert stored(memory) == []
    assert update.operations == [] and update.memory_ids == []
    [reason] = update.rejected
    assert f"cut off at max_tokens={DEFAULT_MAX_TOKENS}" in reason
    assert "cut off" in caplog.text


def test_an_answer_cut_off_while_thinking_says_so(tmp_path: Path) -> None:
    # a Gemini 2.5 answer: 254 of the 256 tokens spent thinking, no words of the answer
    usage = Usage(1900, 254, reasoning_tokens=254)
    cut = ModelResponse(content=None, usage=usage, finish_reason="MAX_TOKENS")
    model = ScriptedModel([cut])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    update = memory.create_user_memories(message="I live in Oslo.", user_id="u")
    [reason] = update.rejected
    assert f"cut off at max_tokens={DEFAULT_MAX_TOKENS}" in reason
    assert "after 254 tokens of the model's thinking" in reason
    assert "thinking_budget or reasoning_effort" in reason


def test_an_answer_that_ends_is_used(tmp_path: Path) -> None:
    # The same answer, ended by the model rather than by the limit, is written.
    text = answer(add("User lives in Oslo"))
    model = ScriptedModel([ModelResponse(content=text, finish_reason="stop")])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    update = memory.create_user_memories(message="I live in Oslo.", user_id="u")
    assert stored(memory) == ["User lives in Oslo"] and update.rejected == []


# -- updates small models aim wrong -----------------------------------------------------------


def update(number: int, memory: str, *topics: str) -> dict[str, object]:
    return {"op": "update", "id": number, "memory": memory, "topics": list(topics) or ["x"]}


def shown(*memories: tuple[str, str]) -> dict[int, UserMemory]:
    return {
        n: UserMemory(text, topics=[topic], memory_id=f"m{n}", user_id="u")
        for n, (text, topic) in enumerate(memories, start=1)
    }


def plan_of(
    items: list[dict[str, object]], memories: dict[int, UserMemory], salvage: bool = True
) -> list[tuple[str, str | None, str | None]]:
    answer = json.dumps({"operations": items})
    plan = parse_operations(answer, memories, Permissions(), 5000, salvage=salvage)
    return [(op.kind, op.memory_id, op.memory) for op in plan.operations]


BANK_MADRID = shown(("User works at a bank", "work"), ("User lives in Madrid", "location"))


@pytest.mark.parametrize(
    ("new", "old", "same"),
    [
        ("User lives in Valencia", "User lives in Madrid", True),
        ("User's name is Sam", "User's name is Ravi", True),
        ("user's favourite colour is green.", "User's favourite colour is blue", True),
        ("User lives in Madrid", "User lives in Madrid", False),  # no changed value
        ("User has a cat", "User has a dog", False),  # "has a" says nothing
        ("User works as a chef", "User lives in Madrid", False),
        ("User is vegan", "User eats meat every day", False),
    ],
)
def test_same_subject(new: str, old: str, same: bool) -> None:
    assert same_subject(new, old) is same


def test_an_update_of_the_examples_number_moves_to_the_memory_it_is_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="noted.memory"):
        ops = plan_of([update(1, "User lives in Valencia", "location")], BANK_MADRID)
    assert ops == [("update", "m2", "User lives in Valencia")]
    assert "taken as an update of memory 2" in caplog.text
    # A topic and a content word in common are enough too.
    memories = shown(("User works at a bank", "work"), ("User's home city is Madrid", "location"))
    ops = plan_of([update(1, "User moved to the city of Valencia", "location")], memories)
    assert ops == [("update", "m2", "User moved to the city of Valencia")]


@pytest.mark.parametrize(
    ("items", "memories"),
    [
        # memory 1 is what the update is about: the same subject, a topic or a word
        ([update(1, "User works at a school", "work")], BANK_MADRID),
        ([update(1, "User is a banker now", "job")], BANK_MADRID),
        ([update(1, "User lives in Valencia", "work")], BANK_MADRID),
        # another number than the example's: taken as the model said
        (
            [update(2, "User works at a school", "work")],
            shown(("User lives in Madrid", "location"), ("User likes tea", "food")),
        ),
        # nothing else shown is clearly about it, or two are
        ([update(1, "User has a cat", "pets")], BANK_MADRID),
        (
            [update(1, "User lives in Valencia", "location")],
            shown(
                ("User works at a bank", "work"),
                ("User lives in Madrid", "location"),
                ("User lives in a flat", "home"),
            ),
        ),
        # the other memory is already changed by the answer
        (
            [update(1, "User lives in Valencia", "location"), update(2, "User lives in Spain")],
            BANK_MADRID,
        ),
    ],
)
def test_an_update_of_the_examples_number_stays_where_it_should(
    items: list[dict[str, object]], memories: dict[int, UserMemory]
) -> None:
    expected = [("update", memories[i["id"]].memory_id, i["memory"]) for i in items]  # type: ignore[index]
    assert plan_of(items, memories) == expected


def test_without_salvage_an_update_stays_on_the_number_it_names() -> None:
    # Tool calls of an agent are taken as they are.
    ops = plan_of([update(1, "User lives in Valencia", "location")], BANK_MADRID, salvage=False)
    assert ops == [("update", "m1", "User lives in Valencia")]


MEAT = shown(("User eats meat every day", "diet"), ("User has a cat", "pets"))


def test_an_unchanged_update_beside_the_new_fact_becomes_its_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    items = [update(1, "User eats meat every day", "diet"), add("User went vegan", "diet")]
    with caplog.at_level(logging.INFO, logger="noted.memory"):
        assert plan_of(items, MEAT) == [("update", "m1", "User went vegan")]
    assert "taken as its update" in caplog.text
    # Found by its opening words, by a content word, and with another fact added beside it.
    violin = shown(("User is learning the violin", "music"))
    items = [
        update(1, "User is learning the violin", "music"),
        add("User is learning the cello", "hobby"),
        add("User has a dog", "pets"),
    ]
    assert plan_of(items, violin) == [
        ("update", "m1", "User is learning the cello"),
        ("add", None, "User has a dog"),
    ]
    items = [update(1, "User is learning the violin"), add("User gave up violin for cello")]
    assert plan_of(items, violin) == [("update", "m1", "User gave up violin for cello")]


def test_an_unchanged_update_of_a_fact_the_user_restated_is_kept(tmp_path: Path) -> None:
    # "I still have my dog Rex, and I adopted a cat": the dog is kept on purpose, not
    # replaced by the cat (a topic in common is no sign of a changed fact here).
    said = "I still have my dog Rex, and now I also adopted a cat named Tom"
    items = [update(1, "User has a dog named Rex", "pets"), add("User has a cat named Tom", "pets")]
    rex = shown(("User has a dog named Rex", "pets"))
    answer_ = json.dumps({"operations": items})
    plan = parse_operations(answer_, rex, Permissions(), 5000, salvage=True, said=said)
    assert [(op.kind, op.memory) for op in plan.operations] == [("add", "User has a cat named Tom")]
    # Through the manager, with the user's words as said.
    model = ScriptedModel([answer(*items)])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    memory.add_user_memory(UserMemory("User has a dog named Rex", topics=["pets"]), user_id="u")
    memory.create_user_memories(message=said, user_id="u")
    assert stored(memory) == ["User has a cat named Tom", "User has a dog named Rex"]
    # Said without restating the old fact, the unchanged update is mended as before.
    plan = parse_operations(answer_, rex, Permissions(), 5000, salvage=True, said="I got a cat")
    assert [(op.kind, op.memory) for op in plan.operations] == [
        ("update", "User has a cat named Tom")
    ]


@pytest.mark.parametrize(
    "items",
    [
        # the add is about something else: the unchanged update changes nothing
        [update(1, "User eats meat every day", "diet"), add("User likes jazz", "music")],
        # two adds could be the new value
        [
            update(1, "User eats meat every day", "diet"),
            add("User went vegan", "diet"),
            add("User eats tofu", "diet"),
        ],
        # two unchanged updates: which one changes is unclear
        [
            update(1, "User eats meat every day", "diet"),
            update(2, "User has a cat", "pets"),
            add("User went vegan", "diet"),
        ],
        # a real update beside an add: a correct plan
        [update(1, "User went vegan", "diet"), add("User eats tofu", "diet")],
    ],
)
def test_an_unchanged_update_is_merged_only_when_clear(items: list[dict[str, object]]) -> None:
    expected = [
        (str(i["op"]), None if i["op"] == "add" else MEAT[i["id"]].memory_id, i["memory"])  # type: ignore[index]
        for i in items
        if i["op"] == "add" or MEAT[i["id"]].memory != i["memory"]  # type: ignore[index]
    ]
    assert plan_of(items, MEAT) == expected
    assert plan_of(items, MEAT, salvage=False) == expected


def test_the_manager_moves_an_update_only_within_the_users_shown_memories(tmp_path: Path) -> None:
    model = ScriptedModel([answer(update(1, "User lives in Valencia", "location"))])
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    memory.add_user_memory(UserMemory("User lives in Madrid", topics=["location"]), "other")
    for text, topic in (("User works at a bank", "work"), ("User lives in Madrid", "location")):
        memory.add_user_memory(UserMemory(text, topics=[topic]), "u")
    said = "I moved to Valencia, still at the bank."
    update_ = memory.create_user_memories(message=said, user_id="u")
    assert "1. User works at a bank" in (model.requests[0].messages[1].content or "")
    assert stored(memory) == ["User lives in Valencia", "User works at a bank"]
    assert stored(memory, "other") == ["User lives in Madrid"]
    assert update_.rejected == []


# -- the two-call mode ------------------------------------------------------------------------


def facts(*items: tuple[str, str]) -> str:
    found = [{"memory": m, "topics": [t]} for m, t in items]
    return json.dumps({"facts_about_the_user": bool(found), "facts": found})


def two_calls(
    tmp_path: Path, *answers: str | ModelResponse, **settings: object
) -> tuple[Memory, ScriptedModel]:
    model = ScriptedModel(list(answers))
    manager = MemoryManager(model=model, two_calls=True, **settings)  # type: ignore[arg-type]
    return Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=manager), model


def test_two_calls_no_facts_is_one_call_and_nothing_stored(tmp_path: Path) -> None:
    memory, model = two_calls(tmp_path, facts())
    update_ = memory.create_user_memories(
        message="Translate 'good morning' to Italian.", user_id="u"
    )
    assert stored(memory) == [] and update_.model_calls == 1
    [request] = model.requests
    assert request.response_schema == FACTS_SCHEMA
    assert request.max_tokens == DEFAULT_MAX_TOKENS
    assert "<existing_memories>" not in (request.messages[1].content or "")
    assert "user: Translate 'good morning' to Italian." in (request.messages[1].content or "")


def test_two_calls_with_nothing_shown_adds_the_facts_checked(tmp_path: Path) -> None:
    # No memory to reconcile with: the facts are added without a second call, and checked
    # like any add (an example's fact copied, a repeat in one answer).
    answer_ = facts(
        ("User runs a bakery", "work"),
        ("User's name is Priya", "name"),
        ("User runs a bakery", "work"),
    )
    memory, model = two_calls(tmp_path, answer_)
    update_ = memory.create_user_memories(message="I run a small bakery in Lisbon.", user_id="u")
    assert stored(memory) == ["User runs a bakery"]
    assert update_.model_calls == 1 and model.call_count == 1
    assert [m.topics for m in memory.get_user_memories(user_id="u")] == [["work"]]
    assert any("copied from the prompt's examples" in r for r in update_.rejected)
    assert any("already stored" in r for r in update_.rejected)


def test_a_pass_with_an_uncounted_call_has_unknown_usage(tmp_path: Path) -> None:
    plan = json.dumps({"operations": [update(1, "User lives in Valencia", "location")]})
    counted = ModelResponse(facts(("User lives in Valencia", "location")), usage=Usage(900, 30))
    uncounted = ModelResponse(plan, usage=Usage.unknown())  # a server that sent no usage
    memory, _ = two_calls(tmp_path, counted, uncounted)
    memory.add_user_memory(UserMemory("User lives in Madrid", topics=["location"]), "u")
    update_ = memory.create_user_memories(message="I moved to Valencia.", user_id="u")
    assert stored(memory) == ["User lives in Valencia"] and update_.model_calls == 2
    assert (update_.usage.input_tokens, update_.usage.output_tokens) == (None, None)


def test_two_calls_reconcile_new_facts_with_the_shown_memories(tmp_path: Path) -> None:
    plan = json.dumps({"operations": [update(1, "User lives in Valencia", "location")]})
    memory, model = two_calls(tmp_path, facts(("User lives in Valencia", "location")), plan)
    memory.add_user_memory(UserMemory("User lives in Madrid", topics=["location"]), "u")
    memory.add_user_memory(UserMemory("User lives in Madrid", topics=["location"]), "other")
    update_ = memory.create_user_memories(message="I moved to Valencia.", user_id="u")
    assert stored(memory) == ["User lives in Valencia"]
    assert stored(memory, "other") == ["User lives in Madrid"]
    assert update_.model_calls == 2
    first, second = model.requests
    assert first.response_schema == FACTS_SCHEMA
    assert update_.usage.input_tokens > 0 and update_.usage.output_tokens > 0
    prompt = second.messages[1].content or ""
    assert "1. User lives in Madrid" in prompt
    assert "<new_facts>\n- User lives in Valencia (topics: location)\n</new_facts>" in prompt
    assert second.response_schema is not None
    assert "facts_about_the_user" not in second.response_schema["properties"]
    assert second.max_tokens == DEFAULT_MAX_TOKENS


def test_two_calls_a_restated_fact_changes_nothing(tmp_path: Path) -> None:
    memory, _ = two_calls(
        tmp_path, facts(("User's name is Ravi", "name")), json.dumps({"operations": []})
    )
    memory.add_user_memory(UserMemory("User's name is Ravi", topics=["name"]), "u")
    update_ = memory.create_user_memories(message="As I said, I'm Ravi.", user_id="u")
    assert stored(memory) == ["User's name is Ravi"] and update_.model_calls == 2


@pytest.mark.parametrize(
    "first",
    [
        "I think the user likes tea",  # not JSON
        json.dumps({"operations": []}),  # not the facts answer
        ModelResponse(content=facts(("User likes tea", "food")), finish_reason="length"),
    ],
)
def test_two_calls_a_bad_first_answer_writes_nothing(
    tmp_path: Path, first: str | ModelResponse
) -> None:
    memory, model = two_calls(tmp_path, first)
    update_ = memory.create_user_memories(message="I like tea.", user_id="u")
    assert stored(memory) == [] and model.call_count == 1
    [reason] = update_.rejected
    assert "not JSON facts" in reason or "cut off" in reason


def test_two_calls_a_cut_off_second_answer_writes_nothing(tmp_path: Path) -> None:
    second = ModelResponse(
        content=json.dumps({"operations": [add("User likes coffee")]}), finish_reason="length"
    )
    memory, _ = two_calls(tmp_path, facts(("User likes coffee", "food")), second)
    memory.add_user_memory(UserMemory("User likes tea", topics=["food"]), "u")
    update_ = memory.create_user_memories(message="I like coffee too.", user_id="u")
    assert stored(memory) == ["User likes tea"]
    assert update_.model_calls == 2 and "cut off" in update_.rejected[0]


def test_two_calls_asks_again_to_delete_when_deleting_is_allowed(tmp_path: Path) -> None:
    delete = {"op": "delete", "id": 1, "memory": None, "topics": []}
    memory, model = two_calls(
        tmp_path, facts(), json.dumps({"operations": [delete]}), delete_memories=True
    )
    memory.add_user_memory(UserMemory("User lives in Madrid", topics=["location"]), "u")
    memory.create_user_memories(message="Forget where I live, please.", user_id="u")
    assert stored(memory) == [] and model.call_count == 2


def test_two_calls_settings(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="two_calls"):
        MemoryManager(two_calls="yes")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="cannot be combined with two_calls"):
        MemoryManager(two_calls=True, system_message="Extract facts.")
    # Custom capture and additional instructions reach the first call's prompt.
    memory, model = two_calls(
        tmp_path,
        facts(),
        memory_capture_instructions="Only the user's pets.",
        additional_instructions="Answer in English.",
    )
    memory.create_user_memories(message="hello", user_id="u")
    system = model.requests[0].messages[0].content or ""
    assert "Only the user's pets." in system and system.endswith("Answer in English.")
