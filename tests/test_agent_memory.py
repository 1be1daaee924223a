"""Automatic memory: the manager's one call per turn, memories in context, the seed scenarios."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from noted import Agent, InMemoryDb, Memory, Message, SqliteDb, UserMemory
from noted.agent.context import render_memory_section
from noted.errors import ModelError, UserError
from noted.memory.manager import MemoryManager
from noted.models import ModelResponse, ToolCall, ToolDefinition
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.testing import FunctionModel

SRC = str(Path(__file__).resolve().parents[1] / "src")
MEMORIES = "<memories_from_previous_interactions>"

Decide = Callable[[str, str], list[dict[str, object]]]


def is_manager(messages: list[Message]) -> bool:
    return bool(messages) and (messages[0].content or "").startswith(
        "You maintain the long-term memory"
    )


def brain(decide: Decide, answer: str = "Noted!") -> FunctionModel:
    """Answers the agent with ``answer`` and the manager with ``decide(memories, chat)``."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if is_manager(messages):
            prompt = messages[-1].content or ""
            shown = prompt.split("<existing_memories>")[1].split("</existing_memories>")[0]
            chat = prompt.split("<conversation>")[1].split("</conversation>")[0]
            return json.dumps({"operations": decide(shown, chat)})
        return answer

    return FunctionModel(fn)


def add(text: str, *topics: str) -> dict[str, object]:
    return {"op": "add", "id": None, "memory": text, "topics": list(topics)}


def facts_of(chat: str) -> list[dict[str, object]]:
    """A tiny rule-based extractor standing in for a model."""
    ops: list[dict[str, object]] = []
    if "My name is Ava" in chat:
        ops.append(add("User's name is Ava", "name"))
    if "I like to ski" in chat:
        ops.append(add("User likes to ski", "hobbies"))
    return ops


def test_a_background_update_skips_memories_changed_while_it_decided(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "m.db")
    other = Memory(db=db)  # another writer: the Memories page, say
    home = other.add_user_memory(UserMemory("User lives in Paris"), user_id="ava")
    cat = other.add_user_memory(UserMemory("User has a cat"), user_id="ava")

    def decide(shown: str, chat: str) -> list[dict[str, object]]:
        lines = [line for line in shown.splitlines() if line[:1].isdigit()]
        numbers = {text: int(n) for n, text in (line.split(". ", 1) for line in lines)}
        other.replace_user_memory(home, UserMemory("User lives in Berlin"), "ava")
        other.replace_user_memory(cat, UserMemory("User has two cats"), "ava")
        return [
            {"op": "update", "id": numbers["User lives in Paris"], "memory": "User lives in Rome"},
            {"op": "delete", "id": numbers["User has a cat"], "memory": None},
        ]

    manager = MemoryManager(delete_memories=True)
    agent = Agent(
        brain(decide), db=db, user_id="ava", enable_user_memories=True, memory_manager=manager
    )
    agent.run("I moved to Rome and gave my cat away.")
    assert agent.wait_for_memories(timeout=10)
    assert sorted(m.memory for m in other.get_user_memories("ava")) == [
        "User has two cats",
        "User lives in Berlin",
    ]


def test_facts_are_extracted_in_one_extra_call_and_recalled_in_a_new_session(
    tmp_path: Path,
) -> None:
    model = brain(lambda shown, chat: facts_of(chat))
    db = SqliteDb(tmp_path / "m.db")
    agent = Agent(model, db=db, user_id="ava", enable_user_memories=True)
    agent.run("My name is Ava and I like to ski.")
    assert agent.wait_for_memories(timeout=10)
    assert model.call_count == 2  # the answer, and one memory call
    assert sorted(m.memory for m in agent.get_user_memories()) == [
        "User likes to ski",
        "User's name is Ava",
    ]
    stored = agent.get_user_memories()[0]
    assert stored.session_id == agent.get_session_id("ava")
    assert stored.input == "My name is Ava and I like to ski."

    later = Agent(model, db=db, user_id="ava", enable_user_memories=True)
    later.run("What are my hobbies?", session_id="another-session")
    later.wait_for_memories(timeout=10)
    system = model.requests[-2].messages[0].content or ""  # the answer's request
    assert "<memories_from_previous_interactions>" in system
    assert "- User likes to ski" in system
    assert "- User's name is Ava" in system
    assert model.call_count == 4


def test_a_changed_fact_replaces_the_old_one_and_duplicates_are_not_added() -> None:
    def decide(shown: str, chat: str) -> list[dict[str, object]]:
        if "I moved to Seattle" in chat:
            number = int(
                shown.split(". User lives in San Francisco", maxsplit=1)[0].strip().splitlines()[-1]
            )
            return [
                {
                    "op": "update",
                    "id": number,
                    "memory": "User lives in Seattle",
                    "topics": ["location"],
                },
                add("User lives in San Francisco", "location"),  # stale: already stored
            ]
        return [add("User lives in San Francisco", "location")]

    agent = Agent(brain(decide), user_id="ava", enable_user_memories=True, background_memory=False)
    agent.run("I live in San Francisco.")
    agent.run("I live in San Francisco, as I said.")
    assert [m.memory for m in agent.get_user_memories()] == ["User lives in San Francisco"]
    agent.run("I moved to Seattle last month.")
    assert [m.memory for m in agent.get_user_memories()] == ["User lives in Seattle"]


def test_what_the_agent_answered_is_not_kept_as_a_fact_about_the_user(tmp_path: Path) -> None:
    # The manager sees the agent's answer with the question; a small model keeps it.
    def decide(shown: str, chat: str) -> list[dict[str, object]]:
        assert "assistant: The capital of Peru is Lima." in chat
        return [add("User's name is Ava", "name"), add("The capital of Peru is Lima", "geo")]

    answer = "The capital of Peru is Lima."
    agent = Agent(brain(decide, answer), db=SqliteDb(tmp_path / "m.db"), enable_user_memories=True)
    assert agent.run("I'm Ava. What is the capital of Peru?", user_id="ava").content == answer
    assert agent.wait_for_memories(timeout=10)
    assert [m.memory for m in agent.get_user_memories("ava")] == ["User's name is Ava"]


@pytest.mark.parametrize("allowed", [True, False])
def test_forget_me_clears_only_this_user_and_only_when_allowed(allowed: bool) -> None:
    def decide(shown: str, chat: str) -> list[dict[str, object]]:
        if "Remove all existing memories of me" in chat:
            return [{"op": "clear", "id": None, "memory": None, "topics": []}]
        return facts_of(chat)

    manager = MemoryManager(clear_memories=allowed)
    agent = Agent(
        brain(decide),
        enable_user_memories=True,
        memory_manager=manager,
        background_memory=False,
    )
    agent.run("My name is Ava.", user_id="ava")
    agent.run("My name is Ava too, and I like to ski.", user_id="bob")
    agent.run("Remove all existing memories of me.", user_id="ava")
    assert len(agent.get_user_memories("ava")) == (0 if allowed else 1)
    assert len(agent.get_user_memories("bob")) == 2


def test_malformed_manager_output_changes_nothing_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        return "I'd rather chat than output JSON" if is_manager(messages) else "Hi!"

    agent = Agent(FunctionModel(fn), enable_user_memories=True, background_memory=False)
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        agent.run("My name is Ava.")
    assert agent.get_user_memories() == []
    assert "not JSON operations" in caplog.text


@pytest.mark.parametrize("background", [False, True])
def test_a_fact_no_store_can_keep_is_dropped_and_the_others_are_written(
    tmp_path: Path, background: bool
) -> None:
    # A lone half of an emoji in one add: that add is refused with its reason, the job
    # (kept in the SQLite file, with its plan) finishes, and the good fact is stored.
    def decide(shown: str, chat: str) -> list[dict[str, object]]:
        return [add("User likes Rome", "travel"), add("User loves pizza \ud83c", "food")]

    db = SqliteDb(tmp_path / "m.db")
    agent = Agent(
        brain(decide), db=db, user_id="ava", enable_user_memories=True, background_memory=background
    )
    agent.run("I love Rome and pizza.")
    assert agent.wait_for_memories(timeout=10)
    assert [m.memory for m in agent.get_user_memories()] == ["User likes Rome"]
    assert db.list_jobs(status=None) == []


def test_memories_in_context_are_bounded_and_ranked() -> None:
    model = brain(lambda shown, chat: [])
    agent = Agent(model, user_id="ava", enable_user_memories=True, memory_context_chars=400)
    store = agent.memory.store  # type: ignore[union-attr]
    facts = [UserMemory(f"User visited city number {i}", user_id="ava") for i in range(300)]
    facts.append(UserMemory("User is allergic to peanuts", user_id="ava", topics=["health"]))

    Memory(db=store).add_user_memories(facts[:150], user_id="ava")
    Memory(db=store).add_user_memories([facts[-1]], user_id="ava")
    Memory(db=store).add_user_memories(facts[150:300], user_id="ava")
    agent.run("Can I eat peanuts?")
    agent.wait_for_memories(timeout=10)
    system = model.requests[0].messages[0].content or ""
    section = system.split("<memories_from_previous_interactions>")[1]
    assert section.splitlines()[2] == "- User is allergic to peanuts"  # most relevant first
    assert len(section) < 700  # the budget, not 301 memories
    manager_prompt = model.requests[1].messages[1].content or ""
    assert manager_prompt.count("\n") < 40  # a bounded list, not every memory


def test_memory_dates_show_when_each_fact_was_last_stated(tmp_path: Path) -> None:

    memory = Memory(db=SqliteDb(tmp_path / "dates.db"), embedder=None)
    moved = datetime(2024, 3, 9, 18, 30, tzinfo=UTC)
    memory.import_user_memories(
        [
            UserMemory("User lived in Oslo", user_id="ava", updated_at=moved - timedelta(days=900)),
            UserMemory("User lives in Seattle", user_id="ava", updated_at=moved),
        ]
    )
    model = brain(lambda shown, chat: [])
    dated = Agent(
        model, memory=memory, user_id="ava", add_memories_to_context=True, memory_dates=True
    )
    dated.run("Where do I live?")
    section = (model.requests[-1].messages[0].content or "").split(MEMORIES)[1]
    assert "- (2024-03-09) User lives in Seattle" in section.splitlines()
    assert "- (2021-09-21) User lived in Oslo" in section.splitlines()
    assert "last stated or changed" in section
    plain = Agent(model, memory=memory, user_id="ava", add_memories_to_context=True)
    plain.run("Where do I live?")  # the default: no dates
    section = (model.requests[-1].messages[0].content or "").split(MEMORIES)[1]
    assert "- User lives in Seattle" in section.splitlines() and "2024" not in section
    # the dates count in the budget: both lines fit without their dates, one with them
    tight = len("- User lives in Seattle\n- User lived in Oslo")
    for dates in (False, True):
        Agent(
            model,
            memory=memory,
            user_id="ava",
            add_memories_to_context=True,
            memory_context_chars=tight,
            memory_dates=dates,
        ).run("Where do I live?")
        system = model.requests[-1].messages[0].content or ""
        assert system.count("User live") == (1 if dates else 2)
    numbered = render_memory_section(memory.get_user_memories("ava"), True, dated=True)
    assert numbered is not None and "[1] (20" in numbered.body  # the id first, then the date
    with pytest.raises(UserError, match="memory_dates"):
        Agent(model, memory=memory, user_id="ava", memory_dates="yes")  # type: ignore[arg-type]


class CountedEmbedder(BaseEmbedder):
    """Words hashed into 16 dimensions; counts the memories it embeds, and fails on them
    while ``failing`` is set."""

    def __init__(self) -> None:
        super().__init__("counted-words", 16)
        self.documents = 0
        self.failing = False

    def _embed_batch(self, texts: list[str], kind: Kind) -> np.ndarray:
        if kind == "document":
            if self.failing:
                raise ModelError("the embedder is down")
            self.documents += len(texts)
        vectors = np.full((len(texts), 16), 0.01, dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.casefold().split():
                vectors[row, zlib.crc32(word.encode()) % 16] += 1
        return vectors


@pytest.mark.parametrize("kind", ["sqlite", "in-process"])
def test_a_learned_fact_is_embedded_before_the_next_run(
    tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After the manager writes, the agent searches the user's memories once in the
    background (the job worker on SQLite, the agent's own background work in-process), so
    the next run does not embed the new fact or load the user's vectors again."""
    db = SqliteDb(tmp_path / "learn.db") if kind == "sqlite" else InMemoryDb()
    embedder = CountedEmbedder()
    memory = Memory(db=db, embedder=embedder, embed_on_write=False)
    memory.add_user_memories(
        [UserMemory(f"User visited city number {i}") for i in range(20)], "ava"
    )

    def learn(shown: str, chat: str) -> list[dict[str, object]]:
        embedder.failing = "boots" in chat  # the run's own search is done by now
        said = next(t for t in ("ski boots", "hike", "ski") if t in chat)
        return [add(f"User mentioned {said}", "said")]

    model = brain(learn)
    agent = Agent(model, db=db, memory=memory, user_id="ava", enable_user_memories=True)
    agent.run("I like to ski")
    assert agent.wait_for_memories(timeout=10)
    assert embedder.documents == 21  # the 20 by the run's search, the new fact after it
    assert db.count_memories_to_embed("ava", embedder.model_name) == 0
    # a failing search after the update leaves the update and the job as they are
    agent.run("I bought new ski boots")
    assert agent.wait_for_memories(timeout=10)
    assert memory.search_user_memories("boots", "ava", retrieval_method="keyword")
    assert "search after the memory update failed: the embedder is down" in caplog.text
    if isinstance(db, SqliteDb):
        assert db.list_jobs() == []
    embedder.failing = False
    # an agent that does not read memories into its prompt leaves the embedding to search
    quiet = Agent(
        model,
        db=db,
        memory=memory,
        user_id="ava",
        enable_user_memories=True,
        add_memories_to_context=False,
    )
    quiet.run("I like to hike")
    assert quiet.wait_for_memories(timeout=10)
    pending = db.memories_to_embed("ava", embedder.model_name, 10)
    assert [m.memory for m in pending] == ["User mentioned hike"]  # the manager's search
    # embedded the boots; the hike waits for the next search


@pytest.mark.parametrize("kind", ["sqlite", "sqlite, summaries", "in-process"])
def test_a_fact_the_agent_stored_itself_is_embedded_before_the_next_run(
    tmp_path: Path, kind: str
) -> None:
    """Agentic memory: a run whose memory tools wrote is followed by the same background
    search (with summaries on, beside the summary's job)."""
    db = InMemoryDb() if kind == "in-process" else SqliteDb(tmp_path / "agentic.db")
    embedder = CountedEmbedder()
    memory = Memory(db=db, embedder=embedder, embed_on_write=False)
    memory.add_user_memories(
        [UserMemory(f"User visited city number {i}") for i in range(20)], "ava"
    )

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str | ModelResponse:
        said = messages[-1].content or ""
        if (messages[0].content or "").startswith("You keep a running summary"):
            return json.dumps({"summary": "The user talked about skiing.", "topics": []})
        if messages[-1].role == "tool":
            return "Done."
        if "ski" in said:
            return ModelResponse(tool_calls=[ToolCall("add_memory", {"memory": "User skis"})])
        return ModelResponse(tool_calls=[ToolCall("search_memories", {"query": "city"})])

    agent = Agent(
        FunctionModel(fn),
        db=db,
        memory=memory,
        user_id="ava",
        enable_agentic_memory=True,
        enable_session_summaries=kind.endswith("summaries"),
    )
    agent.run("I like to ski")
    assert agent.wait_for_memories(timeout=10)
    assert db.count_memories_to_embed("ava", embedder.model_name) == 0
    assert embedder.documents == 21
    agent.run("Which cities have I been to?")  # a run that only searched: nothing more
    assert agent.wait_for_memories(timeout=10)
    assert embedder.documents == 21


def test_background_memory_work_finishes_before_the_program_exits(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys, time
        from noted import Agent, SqliteDb
        from noted.testing import FunctionModel

        def fn(messages, tools):
            if (messages[0].content or "").startswith("You maintain the long-term memory"):
                time.sleep(0.5)
                return json.dumps({"operations": [
                    {"op": "add", "id": None, "memory": "User likes tea", "topics": []}]})
            return "Tea it is."

        agent = Agent(FunctionModel(fn), db=SqliteDb(sys.argv[1]), user_id="ava",
                      enable_user_memories=True)
        agent.run("I like tea.")
        print("answered")
        """
    )
    path = tmp_path / "exit.db"
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": SRC},
        timeout=60,
    )
    assert "answered" in done.stdout
    with SqliteDb(path) as db:
        assert [m.memory for m in Memory(db=db).get_user_memories(user_id="ava")] == [
            "User likes tea"
        ]
