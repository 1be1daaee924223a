"""The session's recent turns join the memory query: a follow-up that names nothing ("and
what does she eat?") still brings the memories the previous turn was about, the message
itself still leads, a long history keeps the query small, and a fresh session (or another
session of the same user) selects exactly as the message alone does."""

from __future__ import annotations

from pathlib import Path

import pytest

from noted import Agent, Memory, MemoryStore, Message, SqliteDb, UserMemory
from noted.db.base import MemoryQuery
from noted.memory.selection import (
    RECENT_REPLY_CHARS,
    RECENT_TURNS_CHARS,
    RecentTurns,
    select_memories,
)
from noted.models import ToolDefinition
from noted.testing import FunctionModel
from user_facts import user_facts

VEGAN = "Mia, the user's sister, is vegan"
NURSE = "Mia, the user's sister, works as a nurse in Porto"
ALLERGY = "The user is allergic to shellfish"


def catcher(reply: str = "Noted.") -> tuple[FunctionModel, list[list[Message]]]:
    seen: list[list[Message]] = []

    def answer(messages: list[Message], tools: list[ToolDefinition]) -> str:
        seen.append(list(messages))
        return reply

    return FunctionModel(answer), seen


def system(messages: list[Message]) -> str:
    return messages[0].content or "" if messages[0].role == "system" else ""


def memory_lines(prompt: str) -> list[str]:
    return [line[2:] for line in prompt.splitlines() if line.startswith("- ")]


@pytest.fixture
def mia(tmp_path: Path) -> Memory:
    """A SQLite user with Mia's two facts and the allergy, then 1,500 newer varied facts."""
    memory = Memory(db=SqliteDb(tmp_path / "mia.db"), embedder=None)
    memory.add_user_memories([UserMemory(VEGAN), UserMemory(NURSE), UserMemory(ALLERGY)], "ava")
    memory.add_user_memories(user_facts(1500), "ava")
    return memory


def ask(memory: Memory, turns: int, *questions: str, session: str = "s1") -> list[str]:
    model, seen = catcher()
    agent = Agent(
        model, memory=memory, user_id="ava", add_memories_to_context=True, memory_query_turns=turns
    )
    for question in questions:
        agent.run(question, session_id=session)
    return [system(messages) for messages in seen]


def test_a_follow_up_brings_the_memories_the_previous_turn_was_about(mia: Memory) -> None:
    question = "And what does she eat?"  # no word of it in any memory
    alone = ask(mia, 0, "Tell me about my sister Mia", question)
    assert VEGAN in alone[0] and NURSE in alone[0]
    assert VEGAN not in alone[1] and NURSE not in alone[1]  # the message alone misses them
    followed = ask(mia, 1, "Tell me about my sister Mia", question, session="s2")
    assert VEGAN in followed[1] and NURSE in followed[1]
    assert len(followed[1]) < 6000  # still the budget


def test_a_follow_up_finds_them_on_every_store(store: MemoryStore) -> None:
    memory = Memory(db=store, embedder=None)
    memory.add_user_memories([UserMemory(VEGAN), UserMemory(NURSE)], "ava")
    memory.add_user_memories(user_facts(300), "ava")
    memory.add_user_memory(UserMemory("Mia, Bob's cat, is vegan"), "bob")
    question = "And what does she eat?"
    alone = ask(memory, 0, "Tell me about my sister Mia", question)
    followed = ask(memory, 1, "Tell me about my sister Mia", question, session="s2")
    assert VEGAN not in alone[1] and VEGAN in followed[1] and NURSE in followed[1]
    assert "Bob's cat" not in followed[1]  # another user's memory never


def test_the_message_still_leads_the_earlier_turn(mia: Memory) -> None:
    prompts = ask(mia, 1, "Tell me about my sister Mia", "Can I eat shellfish?")
    lines = memory_lines(prompts[1])
    assert lines[0] == ALLERGY
    assert VEGAN in lines and lines.index(ALLERGY) < lines.index(VEGAN)


def test_the_assistants_reply_adds_its_words(mia: Memory) -> None:
    def follow_up(reply: str) -> str:
        model, seen = catcher(reply)
        agent = Agent(model, memory=mia, user_id="ava", add_memories_to_context=True)
        agent.run("Who was I telling you about yesterday?", session_id=reply)
        agent.run("And what does she eat?", session_id=reply)
        return system(seen[1])

    assert VEGAN in follow_up("Your sister Mia.")
    assert VEGAN not in follow_up("I don't know.")


def test_a_fresh_session_selects_as_the_message_alone(mia: Memory) -> None:
    question = "And what does she eat?"
    fresh = ask(mia, 1, question, session="new")
    without = ask(mia, 0, question, session="other")
    assert fresh == without
    chosen = select_memories(mia.db, MemoryQuery(user_id="ava", limit=80), question, 80)
    assert [m.memory for m in chosen][:5] == memory_lines(fresh[0])[:5]
    # another session's turns are not this one's
    ask(mia, 1, "Tell me about my sister Mia", session="a")
    (elsewhere,) = ask(mia, 1, question, session="b")
    assert VEGAN not in elsewhere and NURSE not in elsewhere


def test_a_long_history_keeps_the_query_small() -> None:
    long = "My sister Mia " + "and then we talked about the weather for a while " * 500
    turns = RecentTurns.of([(long, long)] * 20)
    assert len(turns.said) <= RECENT_TURNS_CHARS and len(turns.replied) <= RECENT_REPLY_CHARS
    assert len(turns.said) > RECENT_TURNS_CHARS - 60  # cut at a word, not emptied
    assert turns.said.startswith("My sister Mia") and not turns.said.endswith(" ")
    assert RecentTurns.of([("first", "one"), ("second", None)]) == RecentTurns("second\nfirst", "")
    assert not RecentTurns.of([]) and not RecentTurns.of([(" ", "")])


def test_the_history_replayed_is_still_num_history_runs(mia: Memory) -> None:
    model, seen = catcher()
    agent = Agent(
        model,
        memory=mia,
        user_id="ava",
        add_memories_to_context=True,
        add_history_to_context=True,
        num_history_runs=1,
        memory_query_turns=3,
    )
    for text in ("one", "two", "three"):
        agent.run(text, session_id="h")
    assert [m.content for m in seen[2][1:]] == ["two", "Noted.", "three"]
    quiet = Agent(model, memory=mia, user_id="ava", add_memories_to_context=True)
    quiet.run("four", session_id="h")
    assert [m.content for m in seen[3][1:]] == ["four"]  # no history unless asked


@pytest.mark.parametrize("bad", [-1, 1.5, "2", None, True])
def test_memory_query_turns_is_checked(bad: object) -> None:
    model, _ = catcher()
    with pytest.raises(ValueError, match="memory_query_turns"):
        Agent(model, add_memories_to_context=True, memory_query_turns=bad)  # type: ignore[arg-type]


def test_with_the_embedder_a_follow_up_costs_no_second_embedding(tmp_path: Path) -> None:
    memory = Memory(db=SqliteDb(tmp_path / "e.db"), embedder="local")
    memory.add_user_memories([UserMemory(VEGAN), UserMemory(NURSE)], "ava")
    memory.add_user_memories(user_facts(300), "ava")
    index = memory.index
    assert index is not None
    first, question = "Tell me about my sister Mia", "And what does she eat?"
    prompts = ask(memory, 1, first, question)
    assert VEGAN in prompts[1] and NURSE in prompts[1]
    # the earlier message's embedding was its own run's: only the two messages were embedded
    assert set(index._queries) == {first, question}
