"""A corpus of answers small local models (Qwen2.5 0.5-3B, Llama 3.2 1-3B, Gemma 2 2B,
Phi-3-mini, SmolLM2) give to the memory manager's calls, the session summary and the
agentic search, and what each must come to: read right, or refused with a reason and
nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from noted import Memory, MemoryManager, SqliteDb, UserMemory
from noted.errors import ModelOutputError
from noted.memory.operations import Operation, Permissions, parse_operations
from noted.memory.search import parse_choice
from noted.memory.summary import parse_summary
from noted.memory.two_calls import parse_facts
from noted.testing import FunctionModel

SHOWN = {
    1: UserMemory("User lives in Leeds", topics=["location"], memory_id="m-leeds"),
    2: UserMemory("User is a nurse", topics=["work"], memory_id="m-nurse"),
}
ALL = Permissions(add=True, update=True, delete=True, clear=True)

DOG = Operation("add", None, "User has a dog named Rex", ("pets",))
DOG_NO_TOPICS = Operation("add", None, "User has a dog named Rex", ())
BRISTOL = Operation("update", "m-leeds", "User lives in Bristol", ("location",))
BRISTOL_OLD_TOPICS = BRISTOL
GONE = Operation("delete", "m-nurse")

ANSWER = (
    '{"facts_about_the_user": true, "operations": [{"op": "add", "id": null, '
    '"memory": "User has a dog named Rex", "topics": ["pets"]}]}'
)
UPDATE = (
    '{"facts_about_the_user": true, "operations": [{"op": "update", "id": 1, '
    '"memory": "User lives in Bristol", "topics": ["location"]}]}'
)
ADD_ITEM = '{"op": "add", "id": null, "memory": "User has a dog named Rex", "topics": ["pets"]}'
UPDATE_ITEM = '{"op": "update", "id": 1, "memory": "User lives in Bristol", "topics": ["location"]}'


def update_with(id_json: str) -> str:
    return (
        '{"operations": [{"op": "update", "id": ' + id_json + ', "memory": '
        '"User lives in Bristol", "topics": ["location"]}]}'
    )


# (case, raw answer, operations expected: [] when refused with a reason, None when the
# answer says there is nothing to do)
OPERATIONS: list[tuple[str, str, list[Operation] | None]] = [
    ("plain", ANSWER, [DOG]),
    ("fenced", f"```json\n{ANSWER}\n```", [DOG]),
    ("fenced without a language", f"```\n{ANSWER}\n```", [DOG]),
    ("prose before a fence", f"Here is the JSON output:\n\n```json\n{ANSWER}\n```", [DOG]),
    ("a remark after a fence", f"```json\n{ANSWER}\n```\n\nI added the user's dog.", [DOG]),
    ("prose before the object", f"Sure! Here are the memory operations: {ANSWER}", [DOG]),
    (
        "an explanation after the object",
        f"{ANSWER}\n\nExplanation: the user said they have a dog (Rex), so I added it.",
        [DOG],
    ),
    ("a top-level list", f"[{ADD_ITEM}]", [DOG]),
    ("one operation alone", ADD_ITEM, [DOG]),
    ("two operations one per line", f"{ADD_ITEM}\n{UPDATE_ITEM}", [DOG, BRISTOL]),
    ("two answers one after another", f"{ANSWER}\n{UPDATE}", [DOG, BRISTOL]),
    ("operations under 'memories'", '{"memories": [' + ADD_ITEM + "]}", [DOG]),
    ("capitalised keys", '{"Operations": [' + ADD_ITEM + "]}", [DOG]),
    (
        "python literals",
        "{'facts_about_the_user': True, 'operations': [{'op': 'add', 'id': None, "
        "'memory': 'User has a dog named Rex', 'topics': ['pets']}]}",
        [DOG],
    ),
    (
        "trailing commas",
        '{"facts_about_the_user": true, "operations": [{"op": "add", "id": null, '
        '"memory": "User has a dog named Rex", "topics": ["pets"],},],}',
        [DOG],
    ),
    (
        "a # comment",
        '{"operations": [  # the new fact\n'
        '{"op": "add", "id": null, "memory": "User has a dog named Rex", "topics": ["pets"]}]}',
        [DOG],
    ),
    (
        "a // comment (not read)",
        '{"operations": [  // the new fact\n' + ADD_ITEM + "]}",
        [],
    ),
    (
        "'operation' and 'content'",
        '{"operations": [{"operation": "add", "content": "User has a dog named Rex", '
        '"topics": ["pets"]}]}',
        [DOG],
    ),
    (
        "'action' and 'text'",
        '{"operations": [{"action": "ADD", "text": "User has a dog named Rex"}]}',
        [DOG_NO_TOPICS],
    ),
    (
        "'type' and 'fact'",
        '{"operations": [{"type": "Add", "fact": "User has a dog named Rex", "topics": "pets"}]}',
        [DOG],
    ),
    (
        "Op in capitals",
        '{"operations": [{"OP": "add", "Memory": "User has a dog named Rex"}]}',
        [DOG_NO_TOPICS],
    ),
    (
        "'insert'",
        '{"operations": [{"op": "insert", "memory": "User has a dog named Rex"}]}',
        [DOG_NO_TOPICS],
    ),
    (
        "'create'",
        '{"operations": [{"op": "create", "memory": "User has a dog named Rex"}]}',
        [DOG_NO_TOPICS],
    ),
    (
        "'modify'",
        '{"operations": [{"op": "modify", "id": 1, "memory": "User lives in Bristol"}]}',
        [BRISTOL_OLD_TOPICS],
    ),
    ("'remove'", '{"operations": [{"op": "remove", "id": 2}]}', [GONE]),
    ("'none' beside an add", '{"operations": [{"op": "none", "id": 2}, ' + ADD_ITEM + "]}", [DOG]),
    ("'NOOP' alone", '{"operations": [{"op": "NOOP"}]}', None),
    (
        "memory_id",
        '{"operations": [{"op": "update", "memory_id": 1, '
        '"memory": "User lives in Bristol", "topics": ["location"]}]}',
        [BRISTOL],
    ),
    ("id as text", update_with('"1"'), [BRISTOL]),
    ("id as '[1]'", update_with('"[1]"'), [BRISTOL]),
    ("id as '#1'", update_with('"#1"'), [BRISTOL]),
    ("id as 'memory 1'", update_with('"memory 1"'), [BRISTOL]),
    ("id as [1]", update_with("[1]"), [BRISTOL]),
    ("id as 1.0", update_with("1.0"), [BRISTOL]),
    ("id as the memory's text", update_with('"User lives in Leeds"'), [BRISTOL]),
    ("id as another text", update_with('"User lives in York"'), []),
    ("a number not shown", update_with("7"), []),
    ("a number not shown, as text", update_with('"#7"'), []),
    ("id true", update_with("true"), []),
    ("a real-looking id", update_with('"3f2b9c1e-aaaa"'), []),
    ("a clear not allowed", '{"operations": [{"op": "clear"}]}', []),
    ("an unknown kind", '{"operations": [{"op": "merge", "id": 1, "memory": "x"}]}', []),
    ("an empty memory", '{"operations": [{"op": "add", "id": null, "memory": ""}]}', []),
    ("an empty kind", '{"operations": [{"op": "", "memory": "User has a dog named Rex"}]}', []),
    ("cut off mid-string", ANSWER[:90], []),
    ("cut off in the fence", f"```json\n{ANSWER[:-10]}", []),
    ("cut off after a whole operation", f"[{ADD_ITEM}, " + UPDATE_ITEM[:40], []),
    ("cut off second object", f"{ADD_ITEM}\n" + UPDATE_ITEM[:40], []),
    ("the model answers the user", "That's wonderful! Rex is a great name for a dog.", []),
    ("an empty answer", "", []),
    ("facts false and no operations", '{"facts_about_the_user": false}', None),
    (
        "facts false with an add",
        '{"facts_about_the_user": false, "operations": [' + ADD_ITEM + "]}",
        [],
    ),
    (
        "the schema echoed",
        '{"type": "object", "properties": {"operations": {"type": "array"}}}',
        [],
    ),
    ("json nested too deeply", "[" * 100_000 + "]" * 100_000, []),
    ("python nested too deeply", "[" * 100_000, []),
]

EMOJI = Operation("add", None, "User loves 🍣 sushi and lives in Zürich", ())


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(raw, ops) for _, raw, ops in OPERATIONS],
    ids=[c for c, _, _ in OPERATIONS],
)
def test_operations_answers(raw: str, expected: list[Operation] | None) -> None:
    plan = parse_operations(raw, SHOWN, Permissions(delete=True), 200, salvage=True)
    assert plan.operations == (expected or [])
    if expected is None:
        assert plan.rejected == []
    elif not expected:
        assert plan.rejected


def test_unicode_and_a_very_long_answer() -> None:
    raw = '{"operations": [{"op": "add", "memory": "User loves 🍣 sushi and lives in Zürich"}]}'
    assert parse_operations(raw, SHOWN, ALL, 200).operations == [EMOJI]
    many = ", ".join(ADD_ITEM.replace("Rex", f"Rex {n}") for n in range(2000))
    plan = parse_operations("Here you go: [" + many + "]", SHOWN, ALL, 200)
    assert len(plan.operations) == 2000
    long = '{"operations": [{"op": "add", "memory": "' + "very " * 2000 + 'long"}]}'
    plan = parse_operations(long, SHOWN, ALL, 200)
    assert plan.operations == [] and "1-200 characters" in plan.rejected[0]


def test_refusals_say_why() -> None:
    plan = parse_operations(update_with("7"), SHOWN, ALL, 200)
    assert "not shown" in plan.rejected[0]
    plan = parse_operations("Rex is a great name!", SHOWN, ALL, 200)
    assert "not JSON operations" in plan.rejected[0]
    plan = parse_operations('{"operations": [{"op": "merge"}]}', SHOWN, ALL, 200)
    assert "unknown operation" in plan.rejected[0]


FACT = {"memory": "User has a dog named Rex", "topics": ["pets"]}
BARE = {"memory": "User has a dog named Rex", "topics": []}
CITY = {"memory": "User lives in Bristol", "topics": []}

FACTS: list[tuple[str, str, list[dict[str, object]] | None]] = [
    ("plain", '{"facts_about_the_user": true, "facts": [' + json.dumps(FACT) + "]}", [FACT]),
    (
        "fenced with prose",
        'Here are the facts:\n```json\n{"facts": [' + json.dumps(FACT) + "]}\n```",
        [FACT],
    ),
    ("facts false", '{"facts_about_the_user": false, "facts": []}', []),
    ("facts 'false' with facts", '{"facts_about_the_user": "false", "facts": ["x"]}', []),
    ("strings", '{"facts_about_the_user": true, "facts": ["User has a dog named Rex"]}', [BARE]),
    ("a top-level list", "[" + json.dumps(FACT) + "]", [FACT]),
    ("a list of strings", '["User has a dog named Rex", "User lives in Bristol"]', [BARE, CITY]),
    ("'fact' key", '{"facts": [{"fact": "User has a dog named Rex", "topics": ["pets"]}]}', [FACT]),
    ("'text' key", '{"facts": [{"text": "User has a dog named Rex", "topic": "pets"}]}', [FACT]),
    ("'content' key", '{"Facts": [{"Content": "User has a dog named Rex"}]}', [BARE]),
    ("'memories' list", '{"memories": ["User has a dog named Rex"]}', [BARE]),
    (
        "python literals",
        "{'facts_about_the_user': True, 'facts': ['User has a dog named Rex',]}",
        [BARE],
    ),
    (
        "two answers",
        '{"facts": ["User has a dog named Rex"]}\n{"facts": ["User lives in Bristol"]}',
        [BARE, CITY],
    ),
    ("bullet lines (not read)", "- User has a dog named Rex\n- User lives in Bristol", None),
    ("the model answers the user", "Rex sounds like a lovely dog!", None),
    ("cut off", '{"facts_about_the_user": true, "facts": ["User has a dog na', None),
    ("no facts key", '{"facts_about_the_user": true}', None),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(raw, f) for _, raw, f in FACTS], ids=[c for c, _, _ in FACTS]
)
def test_facts_answers(raw: str, expected: list[dict[str, object]] | None) -> None:
    assert parse_facts(raw) == expected


SUMMARY = "The user planned a trip to Lisbon."
SUMMARIES: list[tuple[str, str, tuple[str, list[str]] | None]] = [
    ("plain", json.dumps({"summary": SUMMARY, "topics": ["travel"]}), (SUMMARY, ["travel"])),
    (
        "fenced with prose",
        "Here is the summary:\n```json\n"
        + json.dumps({"summary": SUMMARY, "topics": ["travel"]})
        + "\n```",
        (SUMMARY, ["travel"]),
    ),
    (
        "prose after",
        json.dumps({"summary": SUMMARY, "topics": []}) + "\nLet me know!",
        (SUMMARY, []),
    ),
    (
        "capitalised keys",
        json.dumps({"Summary": SUMMARY, "Topics": ["Travel"]}),
        (SUMMARY, ["travel"]),
    ),
    (
        "topics as one text",
        json.dumps({"summary": SUMMARY, "topics": "travel"}),
        (SUMMARY, ["travel"]),
    ),
    (
        "python literals",
        "{'summary': 'The user planned a trip to Lisbon.', 'topics': ['travel',],}",
        (SUMMARY, ["travel"]),
    ),
    ("plain prose (not read)", SUMMARY, None),
    ("cut off", '{"summary": "The user planned a tr', None),
    ("empty summary", '{"summary": "", "topics": []}', None),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(raw, s) for _, raw, s in SUMMARIES], ids=[c for c, _, _ in SUMMARIES]
)
def test_summary_answers(raw: str, expected: tuple[str, list[str]] | None) -> None:
    if expected is None:
        with pytest.raises(ModelOutputError, match="session summary"):
            parse_summary(raw, 2000)
    else:
        assert parse_summary(raw, 2000) == expected


CHOICES: list[tuple[str, str, list[int] | None]] = [
    ("plain", '{"ids": [2, 1]}', [2, 1]),
    ("a list", "[3]", [3]),
    ("fenced with prose", 'The matching memories:\n```json\n{"ids": [1]}\n```', [1]),
    ("ids as texts", '{"ids": ["2", "1"]}', [2, 1]),
    ("ids as '#2' and 'memory 3'", '{"ids": ["#2", "memory 3"]}', [2, 3]),
    ("capitalised key", '{"IDs": [1]}', [1]),
    ("one number alone", '{"ids": 2}', [2]),
    ("a number not shown", '{"ids": [9, 1]}', [1]),
    ("none match", '{"ids": []}', []),
    ("python literal", "{'ids': [1, 2,]}", [1, 2]),
    ("prose only", "Memory 2 is the most relevant.", None),
    ("cut off", '{"ids": [1, ', None),
]


@pytest.mark.parametrize(
    ("raw", "expected"), [(raw, c) for _, raw, c in CHOICES], ids=[c for c, _, _ in CHOICES]
)
def test_search_answers(raw: str, expected: list[int] | None) -> None:
    if expected is None:
        with pytest.raises(ModelOutputError, match="search answer"):
            parse_choice(raw, 3)
    else:
        assert parse_choice(raw, 3) == expected


# -- whole turns against a real SQLite store ---------------------------------------------------


def _memory(tmp_path: Path, raw: str, *, two_calls: bool = False) -> Memory:
    model = FunctionModel(lambda messages, tools: raw)
    memory = Memory(
        db=SqliteDb(tmp_path / "m.db"),
        memory_manager=MemoryManager(model=model, two_calls=two_calls),
    )
    memory.add_user_memories(
        [UserMemory("User lives in Leeds", topics=["location"]), UserMemory("User is a nurse")],
        user_id="u",
    )
    return memory


def _stored(memory: Memory) -> list[str]:
    return sorted(m.memory for m in memory.get_user_memories(user_id="u"))


@pytest.mark.parametrize(
    "raw",
    [
        f"Here is the JSON output:\n\n```json\n{UPDATE}\n```\nI updated the city.",
        "{'facts_about_the_user': True, 'operations': [{'op': 'update', 'id': '#1', "
        "'memory': 'User lives in Bristol', 'topics': ['location']}]}",
        '[{"action": "modify", "memory_id": "User lives in Leeds", "text": "User lives in Bristol"}]',
    ],
)
def test_a_turn_reads_what_small_models_write(tmp_path: Path, raw: str) -> None:
    memory = _memory(tmp_path, raw)
    update = memory.create_user_memories(message="We moved to Bristol.", user_id="u")
    assert update.rejected == []
    assert _stored(memory) == ["User is a nurse", "User lives in Bristol"]


@pytest.mark.parametrize(
    "raw", [update_with('"7"'), UPDATE[:60], "Bristol is lovely!", update_with('"User is a pilot"')]
)
def test_a_turn_refuses_what_it_cannot_read_and_changes_nothing(tmp_path: Path, raw: str) -> None:
    memory = _memory(tmp_path, raw)
    update = memory.create_user_memories(message="We moved to Bristol.", user_id="u")
    assert update.rejected and update.memory_ids == []
    assert _stored(memory) == ["User is a nurse", "User lives in Leeds"]


def test_two_calls_read_facts_under_other_keys(tmp_path: Path) -> None:
    memory = Memory(
        db=SqliteDb(tmp_path / "m.db"),
        memory_manager=MemoryManager(
            model=FunctionModel(
                lambda messages, tools: 'Facts:\n[{"fact": "User has a dog named Rex"}]'
            ),
            two_calls=True,
        ),
    )
    update = memory.create_user_memories(message="I have a dog named Rex.", user_id="u")
    assert update.rejected == []
    assert _stored(memory) == ["User has a dog named Rex"]
