from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from noted import UserError, UserMemory


def test_json_round_trip_is_exact() -> None:
    original = UserMemory(
        'Ava likes to ski ⛷ — "really"\nand 𝄞',
        topics=["hobbies", "sport"],
        input="I like to ski",
        memory_id="m-1",
        user_id="ava",
        agent_id="a",
        team_id="t",
        session_id="s",
        created_at=datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC),
        updated_at=datetime(2025, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    )
    again = UserMemory.from_json(original.to_json())
    assert again == original
    assert again.to_json() == original.to_json()
    assert UserMemory.from_dict(original.to_dict()) == original


def test_timestamps_are_normalised_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    m = UserMemory("x", created_at=datetime(2025, 5, 1, 12, 0, tzinfo=plus_two))
    assert m.created_at == datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    assert m.created_at is not None
    assert m.created_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"memory": ""}, "memory must not be empty"),
        ({"memory": "   \n"}, "memory must not be empty"),
        ({"memory": 42}, "memory must be a string, got int 42"),
        ({"memory": None}, "memory must be a string"),
        ({"memory": "x", "topics": "ui"}, "topics must be a list of strings, got str 'ui'"),
        ({"memory": "x", "topics": ["ok", ""]}, "each topic must be a non-empty string"),
        ({"memory": "x", "topics": [3]}, "each topic must be a non-empty string, got 3"),
        ({"memory": "x", "user_id": ""}, "user_id must not be empty"),
        ({"memory": "x", "user_id": 7}, "user_id must be a string, got int 7"),
        ({"memory": "x", "memory_id": "i" * 300}, "memory_id must be at most 255"),
        ({"memory": "x", "created_at": datetime(2025, 1, 1)}, "timezone-aware"),
        ({"memory": "x", "updated_at": "yesterday"}, "ISO 8601"),
        ({"memory": "x", "input": 5}, "input must be a string"),
    ],
)
def test_bad_values_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        UserMemory(**kwargs)  # type: ignore[arg-type]


def test_topics_are_trimmed_and_deduplicated() -> None:
    assert UserMemory("x", topics=[" ui ", "ui", "prefs"]).topics == ["ui", "prefs"]


def test_from_json_rejects_garbage() -> None:
    with pytest.raises(UserError, match="not valid JSON"):
        UserMemory.from_json("{nope")
    with pytest.raises(UserError, match="must be a JSON object"):
        UserMemory.from_json("[1, 2]")
    with pytest.raises(UserError, match="unknown memory field"):
        UserMemory.from_json('{"memory": "x", "colour": "red"}')
    with pytest.raises(UserError, match="needs a 'memory' field"):
        UserMemory.from_json('{"topics": []}')


def test_generated_ids_are_version_4_uuids() -> None:
    import uuid

    from noted.schema import new_memory_id

    ids = {new_memory_id() for _ in range(5000)}
    assert len(ids) == 5000
    for text in list(ids)[:500]:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)


def test_copy_shares_nothing_mutable() -> None:
    original = UserMemory("x", topics=["a"], user_id="u")
    clone = original.copy()
    assert clone == original
    clone.topics.append("b")
    assert original.topics == ["a"]


def test_to_dict_carries_every_field() -> None:
    from dataclasses import fields

    from noted.schema import MemoryMatch

    memory = UserMemory("x", topics=["a"], memory_id="m", user_id="u")
    assert set(memory.to_dict()) == {f.name for f in fields(UserMemory)} - {"damaged"}
    match = MemoryMatch.of(memory, 0.5)
    assert match.to_dict() == {**memory.to_dict(), "score": 0.5}
    memory.damaged = "not valid JSON"  # as a read marks a memory whose topics are damaged
    assert set(memory.to_dict()) == {f.name for f in fields(UserMemory)}
    assert MemoryMatch.of(memory).damaged == memory.copy().damaged == "not valid JSON"
