"""The memory manager's answer schema, built per call, and the salvage of clear mistakes.

The schemas must be accepted by OpenAI's strict structured outputs and by Gemini's
response schemas: checked here through each provider's own request translation and
against each one's documented subset of JSON Schema.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from google.genai import types as genai_types

from noted import Memory, Message, SqliteDb, UserMemory
from noted.memory.manager import MemoryManager
from noted.memory.operations import (
    FACTS_FIELD,
    OPERATIONS_SCHEMA,
    Operation,
    Permissions,
    operations_schema,
    parse_operations,
)
from noted.memory.two_calls import FACTS_SCHEMA
from noted.models import Gemini, ModelRequest, OpenAIChat
from noted.testing import ScriptedModel

SHOWN = {
    1: UserMemory("User lives in San Francisco", topics=["location"], memory_id="m-sf"),
    2: UserMemory("User likes to ski", topics=["hobbies"], memory_id="m-ski"),
}
ALL = Permissions(add=True, update=True, delete=True, clear=True)
CASES = [
    ({}, Permissions()),
    (SHOWN, Permissions()),
    ({}, ALL),
    (SHOWN, ALL),
    (SHOWN, Permissions(add=False, update=False)),
    ({}, Permissions(add=False, update=True)),
]

# What each provider documents as accepted (OpenAI: strict structured outputs; Gemini:
# response_json_schema).
OPENAI_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "anyOf",
    "const", "description", "$ref", "$defs", "pattern", "format", "minimum", "maximum",
    "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems",
}  # fmt: skip
GEMINI_KEYWORDS = {
    "$id", "$defs", "$ref", "$anchor", "type", "format", "title", "description", "enum",
    "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum", "anyOf", "oneOf",
    "properties", "additionalProperties", "required", "propertyOrdering",
}  # fmt: skip
TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def subschemas(schema: dict[str, Any], depth: int = 0) -> Iterator[tuple[dict[str, Any], int]]:
    yield schema, depth
    for child in schema.get("properties", {}).values():
        yield from subschemas(child, depth + 1)
    if isinstance(schema.get("items"), dict):
        yield from subschemas(schema["items"], depth + 1)
    for branch in schema.get("anyOf", ()):
        yield from subschemas(branch, depth)


def openai_violations(schema: dict[str, Any]) -> list[str]:
    found = []
    if schema.get("type") != "object" or "anyOf" in schema:
        found.append("the root must be an object, not anyOf")
    enum_values = 0
    for node, depth in subschemas(schema):
        found += [f"keyword {k!r}" for k in set(node) - OPENAI_KEYWORDS]
        kinds = node.get("type")
        if kinds is not None and not set([kinds] if isinstance(kinds, str) else kinds) <= TYPES:
            found.append(f"type {kinds!r}")
        if node.get("type") == "object":
            if node.get("additionalProperties") is not False:
                found.append("an object without additionalProperties: false")
            if sorted(node.get("required", [])) != sorted(node.get("properties", {})):
                found.append("an object whose properties are not all required")
        enum_values += len(node.get("enum", ()))
        if depth > 10:
            found.append("nested deeper than 10 levels")
    if enum_values > 1000:
        found.append("more than 1000 enum values")
    return found


def gemini_violations(schema: dict[str, Any]) -> list[str]:
    found = []
    for node, _ in subschemas(schema):
        found += [f"keyword {k!r}" for k in set(node) - GEMINI_KEYWORDS]
        for value in node.get("enum", ()):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                found.append(f"enum value {value!r} (strings and numbers only)")
    return found


def test_the_checks_catch_what_the_providers_refuse() -> None:
    loose = {
        "type": "object",
        "properties": {"a": {"type": "string", "minLength": 1}, "b": {"const": True}},
        "required": ["a"],
    }
    assert len(openai_violations(loose)) == 3  # minLength, additionalProperties, required
    assert gemini_violations(loose) == ["keyword 'minLength'", "keyword 'const'"]


@pytest.mark.parametrize(("shown", "permissions"), CASES)
def test_every_schema_fits_openai_strict_and_gemini(
    shown: dict[int, UserMemory], permissions: Permissions
) -> None:
    assert_fits(operations_schema(shown, permissions))


def test_the_two_call_schemas_fit_openai_strict_and_gemini() -> None:
    assert_fits(FACTS_SCHEMA)
    second = operations_schema(SHOWN, Permissions(), ask_facts=False)
    assert FACTS_FIELD not in second["properties"]
    assert_fits(second)
    assert jsonschema.Draft202012Validator(FACTS_SCHEMA).is_valid(
        {FACTS_FIELD: True, "facts": [{"memory": "User rows", "topics": ["sport"]}]}
    )
    assert not jsonschema.Draft202012Validator(FACTS_SCHEMA).is_valid(
        {FACTS_FIELD: True, "facts": ["User rows"]}
    )


def assert_fits(schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert openai_violations(schema) == []
    assert gemini_violations(schema) == []
    request = ModelRequest(
        [Message("user", "hi")], response_schema=schema, response_schema_name="memory_operations"
    )
    sent = OpenAIChat(api_key="none")._params(request)["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"] == schema
    config = Gemini(api_key="none")._params(request)["config"]
    checked = genai_types.GenerateContentConfig.model_validate(config)
    assert checked.response_mime_type == "application/json"
    assert checked.response_json_schema == schema
    genai_types.JSONSchema.model_validate(schema)  # every keyword is one the SDK knows


def valid(schema: dict[str, Any], *items: dict[str, Any]) -> bool:
    answer: dict[str, Any] = {"operations": list(items)}
    if FACTS_FIELD in schema["properties"]:  # asked first, whenever adding or updating is allowed
        answer = {FACTS_FIELD: bool(items), **answer}
    return jsonschema.Draft202012Validator(schema).is_valid(answer)


def add(text: str | None = "User has a dog") -> dict[str, Any]:
    return {"op": "add", "id": None, "memory": text, "topics": ["pets"]}


def update(number: int | None, text: str | None = "User lives in Seattle") -> dict[str, Any]:
    return {"op": "update", "id": number, "memory": text, "topics": ["location"]}


def test_schema_offers_only_what_makes_sense_now() -> None:
    nothing_shown = operations_schema({}, Permissions())
    assert valid(nothing_shown, add())
    assert not valid(nothing_shown, update(1))  # the failure seen on a small model
    assert not valid(nothing_shown, add(None))
    assert not valid(nothing_shown, {**add(), "id": 1})
    assert not valid(nothing_shown, {"op": "delete", "id": None, "memory": None, "topics": []})

    two_shown = operations_schema(SHOWN, Permissions())
    assert valid(two_shown, add(), update(2))
    assert not valid(two_shown, update(3))  # only the numbers shown
    assert not valid(two_shown, update(None))
    assert not valid(two_shown, update(1, None))
    assert not valid(two_shown, {"op": "clear", "id": None, "memory": None, "topics": []})
    assert not valid(two_shown, {**add(), "topics": ["a", "b", "c", "d"]})

    everything = operations_schema(SHOWN, ALL)
    assert valid(
        everything,
        {"op": "delete", "id": 1, "memory": None, "topics": []},
        {"op": "clear", "id": None, "memory": None, "topics": []},
    )
    assert not valid(everything, {"op": "delete", "id": 1, "memory": "x", "topics": []})
    nothing_allowed = operations_schema({}, Permissions(add=False, update=True))
    assert valid(nothing_allowed)
    assert not valid(nothing_allowed, add())
    assert operations_schema({}, Permissions()) == OPERATIONS_SCHEMA


def test_update_with_nothing_shown_is_salvaged_as_an_add(caplog: pytest.LogCaptureFixture) -> None:
    # The answer a 1.5B model gave for "My daughter's name is Emma" with no memories.
    answer = json.dumps(
        {"operations": [{"op": "update", "id": 1, "memory": "User's daughter is Emma"}]}
    )
    with caplog.at_level(logging.INFO, logger="noted.memory"):
        plan = parse_operations(answer, {}, Permissions(), 5000, salvage=True)
    assert plan.operations == [Operation("add", None, "User's daughter is Emma", ())]
    assert plan.rejected == []
    assert "taken as an add" in caplog.text
    # Not when memories were shown (it names one that was not), nor when adding is off,
    # nor for a tool call that names a memory (salvage off), nor for an id that names no
    # number ("1" and "#1" do: small models write numbers so).
    shown = parse_operations(
        answer.replace('"id": 1', '"id": 7'), SHOWN, Permissions(), 5000, salvage=True
    )
    assert shown.operations == [] and "not shown" in shown.rejected[0]
    for plan in (
        parse_operations(answer, {}, Permissions(add=False), 5000, salvage=True),
        parse_operations(answer, {}, Permissions(), 5000),
        parse_operations(
            answer.replace('"id": 1', '"id": "first"'), {}, Permissions(), 5000, salvage=True
        ),
    ):
        assert plan.operations == [] and "not shown" in plan.rejected[0]
    # The salvaged add is checked like any add.
    empty = parse_operations(
        answer.replace("User's daughter is Emma", " "), {}, Permissions(), 5000, salvage=True
    )
    assert empty.operations == [] and "characters" in empty.rejected[0]


def test_the_manager_sends_the_schema_for_what_it_shows(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            json.dumps({"operations": [update(1, "User lives in Lisbon")]}),
            json.dumps({"operations": [update(1, "User lives in Porto")]}),
        ]
    )
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), memory_manager=MemoryManager(model=model))
    memory.create_user_memories(message="I live in Lisbon", user_id="u")
    memory.create_user_memories(message="I moved to Porto from Lisbon", user_id="u")
    [stored] = memory.get_user_memories(user_id="u")
    assert stored.memory == "User lives in Porto"  # a salvaged add, then a real update
    first, second = (dict(r.response_schema or {}) for r in model.requests)
    assert first == operations_schema({}, Permissions())
    kinds = [
        b["properties"]["op"]["enum"][0]
        for b in second["properties"]["operations"]["items"]["anyOf"]
    ]
    assert kinds == ["add", "update"]
    assert second["properties"]["operations"]["items"]["anyOf"][1]["properties"]["id"]["enum"] == [
        1
    ]


def test_the_answer_says_first_whether_the_user_stated_facts() -> None:
    schema = operations_schema({}, Permissions())
    assert list(schema["properties"]) == [FACTS_FIELD, "operations"]  # asked first
    assert schema["required"] == [FACTS_FIELD, "operations"]
    validator = jsonschema.Draft202012Validator(schema)
    assert not validator.is_valid({"operations": []})  # a constrained model must say it
    assert not validator.is_valid({FACTS_FIELD: "no", "operations": []})
    # Nothing to add or update: the question has no use, and is not asked.
    only_delete = operations_schema(SHOWN, Permissions(add=False, update=False, delete=True))
    assert list(only_delete["properties"]) == ["operations"]


def test_adds_and_updates_that_contradict_no_facts_are_dropped() -> None:
    # The shape of a 1.5B model's answer to "Can you give me a quick pancake recipe?".
    invented = {
        FACTS_FIELD: False,
        "operations": [add("User lives in New York"), update(1, "User likes pancakes")],
    }
    plan = parse_operations(json.dumps(invented), SHOWN, Permissions(), 5000)
    assert plan.operations == []
    assert len(plan.rejected) == 2
    assert all(f"{FACTS_FIELD} is false" in r for r in plan.rejected)
    # A delete is a request, not a fact: it is checked as usual (and allowed here).
    delete = {"op": "delete", "id": 2, "memory": None, "topics": []}
    forget = {FACTS_FIELD: False, "operations": [delete]}
    plan = parse_operations(json.dumps(forget), SHOWN, Permissions(delete=True), 5000)
    assert plan.operations == [Operation("delete", "m-ski")]
    # True, or an answer without the field (a custom prompt, a tool call): applied.
    for facts in ({FACTS_FIELD: True}, {}):
        answer = json.dumps({**facts, "operations": [add()]})
        plan = parse_operations(answer, {}, Permissions(), 5000)
        assert plan.operations == [Operation("add", None, "User has a dog", ("pets",))]


def test_the_manager_stores_nothing_when_the_answer_says_no_facts(tmp_path: Path) -> None:
    answer = json.dumps({FACTS_FIELD: False, "operations": [add("User is a student")]})
    memory = Memory(
        db=SqliteDb(tmp_path / "m.db"),
        memory_manager=MemoryManager(model=ScriptedModel([answer])),
    )
    update = memory.create_user_memories(message="Which is the capital of Peru?", user_id="u")
    assert memory.get_user_memories(user_id="u") == []
    assert update.operations == [] and FACTS_FIELD in update.rejected[0]
