"""Agentic memory: the agent's own memory tools, scoped to one user, with the manager's checks."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from noted import Agent, Memory, MemoryManager, SqliteDb, UserError, UserMemory
from noted.models import Message, ModelResponse, ToolCall, ToolDefinition
from noted.testing import FunctionModel

Plan = Callable[[str, str], list[ToolCall]]


def tool_user(plan: Plan, answer: str = "Done.") -> FunctionModel:
    """A model that makes the tool calls ``plan(system_prompt, user_message)`` asks for in
    its first round and then answers; it records the tool results it was sent."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        if messages[-1].role == "tool":
            return answer
        system = messages[0].content or "" if messages[0].role == "system" else ""
        calls = plan(system, messages[-1].content or "")
        return ModelResponse(tool_calls=calls) if calls else answer

    return FunctionModel(fn)


def call(name: str, **arguments: Any) -> ToolCall:
    return ToolCall(name, arguments)


def number_of(system: str, text: str) -> int:
    found = re.search(r"\[(\d+)\] " + re.escape(text), system)
    assert found, f"{text!r} is not shown in the prompt"
    return int(found.group(1))


def tool_results(model: FunctionModel) -> list[str]:
    return [
        m.content or ""
        for request in model.requests
        for m in request.messages
        if m.role == "tool" and m is request.messages[-1]
    ]


def offered(model: FunctionModel) -> set[str]:
    return {t.name for t in model.requests[0].tools}


def test_the_agent_adds_a_memory_itself_with_no_extra_model_call(tmp_path: Path) -> None:
    model = tool_user(
        lambda system, said: (
            [call("add_memory", memory="User likes to ski", topics=["hobbies"])]
            if "ski" in said
            else []
        )
    )
    db = SqliteDb(tmp_path / "m.db")
    agent = Agent(model, db=db, user_id="ava", enable_agentic_memory=True)
    result = agent.run("I like to ski.")
    assert model.call_count == 2  # the tool round and the answer: no nested manager call
    assert result.tool_calls[0].result == "Added memory [1]: User likes to ski"
    [stored] = agent.get_user_memories()
    assert (stored.memory, stored.topics, stored.input) == (
        "User likes to ski",
        ["hobbies"],
        "I like to ski.",
    )
    [event] = Memory(db=db).get_memory_history(stored.memory_id or "", user_id="ava")
    assert (event.event, event.actor, event.run_id) == ("add", "agent", result.run_id)
    assert offered(model) == {"add_memory", "update_memory", "search_memories"}


def test_memories_are_shown_numbered_and_updated_by_number() -> None:
    def plan(system: str, said: str) -> list[ToolCall]:
        if "Seattle" not in said:
            return []
        number = number_of(system, "User lives in San Francisco")
        return [call("update_memory", id=number, memory="User lives in Seattle")]

    model = tool_user(plan)
    agent = Agent(model, user_id="ava", enable_agentic_memory=True)
    memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
    memory.add_user_memory(UserMemory("User lives in San Francisco", topics=["location"]), "ava")
    agent.run("I moved to Seattle.")
    [stored] = agent.get_user_memories()
    assert (stored.memory, stored.topics) == ("User lives in Seattle", ["location"])
    assert "[1] User lives in San Francisco" in (model.requests[0].messages[0].content or "")


def test_a_memory_changed_since_the_prompt_is_not_overwritten_by_its_number() -> None:
    other: list[Memory] = []

    def plan(system: str, said: str) -> list[ToolCall]:
        number = number_of(system, "User lives in San Francisco")
        [memory] = other[0].get_user_memories("ava")  # another writer changes it first
        other[0].replace_user_memory(memory.memory_id, UserMemory("User lives in Oakland"), "ava")
        return [call("update_memory", id=number, memory="User lives in Seattle")]

    model = tool_user(plan)
    agent = Agent(model, user_id="ava", enable_agentic_memory=True)
    other.append(Memory(db=agent.memory.store))  # type: ignore[union-attr]
    other[0].add_user_memory(UserMemory("User lives in San Francisco"), "ava")
    result = agent.run("I moved to Seattle.")
    [stored] = agent.get_user_memories()
    assert stored.memory == "User lives in Oakland"
    assert result.tool_calls[0].result == (
        "Not done: memory [1] was changed since it was shown; it now reads: User lives in Oakland"
    )


def test_numbers_never_reach_memories_that_were_not_shown_or_belong_to_others() -> None:
    model = tool_user(
        lambda system, said: [
            call("update_memory", id=7, memory="User is an admin"),
            call("update_memory", id=-1, memory="User is an admin"),
            call("update_memory", id="1", memory="User is an admin"),
        ]
    )
    agent = Agent(model, user_id="mallory", enable_agentic_memory=True)
    memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
    memory.add_user_memory(UserMemory("User's password hint is blue"), user_id="ava")
    result = agent.run("Change memory 1 of Ava.")
    assert [t.result.startswith("Not done") for t in result.tool_calls] == [True, True, True]
    assert [m.memory for m in memory.get_user_memories("ava")] == ["User's password hint is blue"]
    assert memory.get_user_memories("mallory") == []


@pytest.mark.parametrize("scope", ["agent", "user"])
def test_a_number_below_one_names_no_memory_of_the_user_either(scope: str) -> None:
    # The memories an update's text is checked against for repeats are keyed below 1:
    # -1 named one of them, an other agent's memory included, though none was shown.
    model = tool_user(lambda system, said: [call("update_memory", id=-1, memory="User is admin")])
    agent = Agent(
        model,
        user_id="ava",
        agent_id="writer",
        memory_scope=scope,  # type: ignore[arg-type]
        enable_agentic_memory=True,
        add_memories_to_context=False,
    )
    memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
    memory.add_user_memory(UserMemory("User is admin of nothing", agent_id="medic"), "ava")
    result = agent.run("Make me an admin.")
    [outcome] = [t.result for t in result.tool_calls]
    assert outcome.startswith("Not done"), outcome
    assert [m.memory for m in memory.get_user_memories("ava")] == ["User is admin of nothing"]


def test_delete_and_clear_follow_the_flags_and_stay_within_the_user() -> None:
    def plan(system: str, said: str) -> list[ToolCall]:
        if "forget everything" in said:
            return [call("clear_memories")]
        if "not vegan" in said:
            return [call("delete_memory", id=number_of(system, "User is vegan"))]
        return []

    for allowed in (False, True):
        model = tool_user(plan)
        manager = MemoryManager(delete_memories=allowed, clear_memories=allowed)
        agent = Agent(model, enable_agentic_memory=True, memory_manager=manager)
        memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
        memory.add_user_memories([UserMemory("User is vegan"), UserMemory("User likes tea")], "ava")
        memory.add_user_memory(UserMemory("User likes coffee"), user_id="bob")
        result = agent.run("I'm not vegan anymore.", user_id="ava")
        if allowed:
            number = number_of(model.requests[0].messages[0].content or "", "User is vegan")
            assert result.tool_calls[0].result == f"Forgot memory [{number}]."
            assert [m.memory for m in memory.get_user_memories("ava")] == ["User likes tea"]
        else:
            assert "no tool named 'delete_memory'" in result.tool_calls[0].result
            assert len(memory.get_user_memories("ava")) == 2
        agent.run("Please forget everything about me.", user_id="ava")
        assert len(memory.get_user_memories("ava")) == (0 if allowed else 2)
        assert [m.memory for m in memory.get_user_memories("bob")] == ["User likes coffee"]
        tools = offered(model)
        assert ({"delete_memory", "clear_memories"} <= tools) is allowed


def test_duplicates_bad_text_and_searches() -> None:
    long_text = "User " + "x" * 6000

    def plan(system: str, said: str) -> list[ToolCall]:
        if said == "dupe":
            return [call("add_memory", memory="user likes TEA.")]
        if said == "bad":
            return [call("add_memory", memory="   "), call("add_memory", memory=long_text)]
        if said == "search":
            return [call("search_memories", query="tea")]
        return []

    model = tool_user(plan)
    agent = Agent(model, enable_agentic_memory=True, add_memories_to_context=False)
    memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
    for i in range(40):
        memory.add_user_memory(UserMemory(f"User visited city {i}"))
    memory.add_user_memory(UserMemory("User likes tea"))
    memory.add_user_memories([UserMemory(f"User read book {i}") for i in range(40)])
    result = agent.run("dupe")
    assert result.tool_calls[0].result.startswith("Not done: already stored")
    result = agent.run("bad")
    assert all("1-5000 characters" in t.result for t in result.tool_calls)
    result = agent.run("search")
    assert result.tool_calls[0].result.splitlines()[0] == "[1] User likes tea"
    assert memory.count_user_memories() == 81


def test_an_update_to_a_text_already_stored_is_refused() -> None:
    # Nothing is shown in the prompt: the agent finds the coffee memory by a search (ten
    # results, the tea memory not among them), and the tea memory it would copy is looked
    # up when it asks for the update.
    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        last = messages[-1]
        if last.role == "user":
            return ModelResponse(tool_calls=[call("search_memories", query="coffee")])
        if last.name == "search_memories":
            number = int((last.content or "").split("]")[0].lstrip("["))
            said = next(m.content or "" for m in reversed(messages) if m.role == "user")
            return ModelResponse(tool_calls=[call("update_memory", id=number, memory=said)])
        return "Done."

    agent = Agent(FunctionModel(fn), enable_agentic_memory=True, add_memories_to_context=False)
    memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
    memory.add_user_memory(UserMemory("User likes tea"))
    memory.add_user_memories([UserMemory(f"User visited city {i}") for i in range(20)])
    memory.add_user_memory(UserMemory("User likes coffee"))
    result = agent.run("User likes TEA.")
    assert result.tool_calls[1].result.startswith("Not done: already stored as another memory")
    likes = [m.memory for m in memory.get_user_memories() if "likes" in m.memory]
    assert sorted(likes) == ["User likes coffee", "User likes tea"]
    result = agent.run("User likes green tea")
    assert result.tool_calls[1].result.startswith("Updated memory")
    likes = [m.memory for m in memory.get_user_memories() if "likes" in m.memory]
    assert sorted(likes) == ["User likes green tea", "User likes tea"]


def test_a_search_result_number_can_be_updated_in_the_same_run() -> None:
    rounds: list[str] = []

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        rounds.append(messages[-1].content or "")
        if len(rounds) == 1:
            return ModelResponse(tool_calls=[call("search_memories", query="coffee")])
        if len(rounds) == 2:
            number = int(rounds[-1].split("]")[0].lstrip("["))
            return ModelResponse(
                tool_calls=[call("update_memory", id=number, memory="User drinks tea now")]
            )
        return "Updated."

    agent = Agent(FunctionModel(fn), enable_agentic_memory=True, add_memories_to_context=False)
    memory = Memory(db=agent.memory.store)  # type: ignore[union-attr]
    memory.add_user_memory(UserMemory("User drinks coffee every morning"))
    result = agent.run("I switched from coffee to tea.")
    assert result.tool_calls[1].result == "Updated memory [1]: User drinks tea now"
    assert [m.memory for m in memory.get_user_memories()] == ["User drinks tea now"]


def test_both_flags_warn_and_agentic_wins() -> None:
    model = tool_user(lambda system, said: [call("add_memory", memory="User likes jazz")])
    with pytest.warns(UserWarning, match="agentic memory takes precedence"):
        agent = Agent(model, enable_agentic_memory=True, enable_user_memories=True)
    agent.run("I like jazz.")
    assert agent.wait_for_memories(timeout=10)
    assert model.call_count == 2  # no manager call after the run
    assert [m.memory for m in agent.get_user_memories()] == ["User likes jazz"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Agent(model, enable_agentic_memory=True)  # one flag: no warning


def test_a_user_tool_may_not_take_a_memory_tool_name() -> None:
    def add_memory(text: str) -> str:
        return text

    with pytest.raises(UserError, match="add_memory"):
        Agent(FunctionModel(lambda m, t: "hi"), tools=[add_memory], enable_agentic_memory=True)


def test_a_number_from_a_replayed_turn_never_names_another_memory() -> None:
    """Each run numbers its memories afresh; the numbers the replayed turns show name
    nothing, so following the history cannot change the wrong memory."""
    seen: list[str] = []

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        if messages[-1].role == "tool":
            return "Done."
        seen.append(messages[0].content or "")
        said = messages[-1].content or ""
        if said == "I live in Oslo":
            return ModelResponse(tool_calls=[call("add_memory", memory="User lives in Oslo")])
        replayed = "\n".join(m.content or "" for m in messages if m.role == "tool")
        old = int(re.findall(r"Added memory \[(\d+)\]", replayed)[-1])
        return ModelResponse(tool_calls=[call("delete_memory", id=old)])

    memory = Memory(db=SqliteDb(":memory:"), delete_memories=True)
    agent = Agent(
        FunctionModel(fn),
        memory=memory,
        session_id="s",
        enable_agentic_memory=True,
        add_history_to_context=True,
    )
    memory.add_user_memories([UserMemory("User likes tea"), UserMemory("User likes coffee")])
    agent.run("I live in Oslo")
    result = agent.run("Forget where I live")
    assert "is a number from an earlier turn" in result.tool_calls[0].result
    assert sorted(m.memory for m in memory.get_user_memories()) == [
        "User likes coffee",
        "User likes tea",
        "User lives in Oslo",
    ]
    # this turn's numbers come after those the history names
    numbers = [int(n) for n in re.findall(r"\[(\d+)\] User", seen[-1])]
    assert sorted(numbers) == [4, 5, 6]
