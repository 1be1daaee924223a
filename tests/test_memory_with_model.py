"""Memory with a model: memories created from messages, agentic search, session summaries."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from noted import (
    Agent,
    ConflictError,
    InMemoryDb,
    Memory,
    MemoryManager,
    Message,
    NotFoundError,
    SessionSummarizer,
    SqliteDb,
    UserError,
    UserMemory,
)
from noted.errors import ModelOutputError
from noted.memory.prompts import quote
from noted.models import ToolDefinition
from noted.sessions import RunResult, SessionSummary
from noted.testing import FunctionModel, ScriptedModel


def ops(*texts: str) -> str:
    return json.dumps(
        {"operations": [{"op": "add", "id": None, "memory": t, "topics": ["x"]} for t in texts]}
    )


# -- create_user_memories ---------------------------------------------------------------------


def test_create_user_memories_from_a_message_and_from_messages(tmp_path: Path) -> None:
    model = ScriptedModel(
        [ops("User enjoys hiking", "User plays chess"), ops("User's name is Jane Doe")]
    )
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=model)
    update = memory.create_user_memories(
        message="I enjoy hiking and playing chess.", user_id="john"
    )
    assert update.model_calls == 1 and len(update.memory_ids) == 2
    assert sorted(m.memory for m in memory.get_user_memories("john")) == [
        "User enjoys hiking",
        "User plays chess",
    ]
    memory.create_user_memories(
        messages=[
            Message(role="user", content="My name is Jane Doe"),
            Message(role="assistant", content="That is great!"),
        ],
        user_id="jane",
    )
    assert [m.memory for m in memory.get_user_memories("jane")] == ["User's name is Jane Doe"]
    prompt = model.requests[1].messages[1].content or ""
    assert "user: My name is Jane Doe\nassistant: That is great!" in prompt
    assert model.requests[1].response_schema is not None
    [event] = memory.get_memory_history(update.memory_ids[0], user_id="john")
    assert event.actor == "manager"


def test_create_user_memories_checks_its_input() -> None:
    memory = Memory(model=ScriptedModel([]))
    with pytest.raises(UserError, match="either message"):
        memory.create_user_memories(user_id="a")
    with pytest.raises(UserError, match="either message"):
        memory.create_user_memories(message="hi", messages=[], user_id="a")
    with pytest.raises(UserError, match="non-empty"):
        memory.create_user_memories(message="  ", user_id="a")
    with pytest.raises(UserError, match="Message objects"):
        memory.create_user_memories(messages=["hi"], user_id="a")  # type: ignore[list-item]
    with pytest.raises(UserError, match="Message objects"):
        memory.create_user_memories(messages=Message("user", "hi"), user_id="a")  # type: ignore[arg-type]
    # checked before the model is asked
    with pytest.raises(UserError, match="valid Unicode"):
        memory.create_user_memories(message="I like \ud83c tea", user_id="a")
    turn = [Message("user", "I like tea"), Message("assistant", "Tea \udfff.")]
    with pytest.raises(UserError, match="valid Unicode"):
        memory.create_user_memories(messages=turn, user_id="a")
    with pytest.raises(UserError, match="needs a model"):
        Memory().create_user_memories(message="I like tea", user_id="a")
    with pytest.raises(UserError, match="on the MemoryManager"):
        Memory(memory_manager=MemoryManager(), delete_memories=True)


def test_messages_may_be_any_iterable_of_messages() -> None:
    model = ScriptedModel([ops("User lives in Lisbon")] * 2)
    memory = Memory(model=model)
    turn = [Message("user", "I live in Lisbon"), Message("assistant", "Nice!")]
    memory.create_user_memories(messages=(m for m in turn), user_id="ava")
    memory.create_user_memories(messages=iter(turn), user_id="bob")
    assert model.call_count == 2
    assert [m.memory for m in memory.get_user_memories("ava")] == ["User lives in Lisbon"]
    assert [m.memory for m in memory.get_user_memories("bob")] == ["User lives in Lisbon"]


def test_a_fact_stored_but_not_shown_is_not_added_again(tmp_path: Path) -> None:
    # The manager is shown the 2 memories that match best; the cat fact is not among them.
    memory = Memory(
        db=SqliteDb(tmp_path / "m.db"),
        embedder=None,
        memory_manager=MemoryManager(memories_in_prompt=2),
        model=ScriptedModel([ops("User has a cat", "User visited Oslo on holiday")]),
    )
    memory.add_user_memory(UserMemory("User has a cat", topics=["pets"]), user_id="ava")
    for city in ("Rome", "Paris", "Bergen"):
        memory.add_user_memory(UserMemory(f"User visited {city} on holiday"), user_id="ava")
    update = memory.create_user_memories(message="I visited Oslo on holiday", user_id="ava")
    prompt = memory.model.requests[0].messages[1].content or ""  # type: ignore[union-attr]
    assert "User has a cat" not in prompt
    texts = sorted(m.memory for m in memory.get_user_memories("ava"))
    assert texts.count("User has a cat") == 1 and "User visited Oslo on holiday" in texts
    assert update.rejected == ["already stored: 'User has a cat'"]
    assert [op.memory for op in update.operations] == ["User visited Oslo on holiday"]


def test_the_update_lists_only_the_operations_written(tmp_path: Path) -> None:
    # The add with a NUL is dropped as the answer is checked, the one too long for this
    # Memory at its door: neither is among the operations.
    answer = ops("User likes tea", "User likes green \x00 tea", "User likes " + "x" * 60)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), model=ScriptedModel([answer]))
    memory.door.max_length = 50
    update = memory.create_user_memories(message="I like tea, green tea and more", user_id="a")
    assert [op.memory for op in update.operations] == ["User likes tea"]
    assert len(update.memory_ids) == 1 and len(update.rejected) == 2
    assert [m.memory for m in memory.get_user_memories("a")] == ["User likes tea"]


def test_memory_flags_reach_the_manager_and_an_agent_uses_them() -> None:
    memory = Memory(delete_memories=True, clear_memories=True)
    assert memory.memory_manager.permissions.clear
    memory.add_user_memory(UserMemory("User likes tea"), user_id="ava")
    clear = json.dumps({"operations": [{"op": "clear", "id": None, "memory": None, "topics": []}]})

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        return clear if "long-term memory" in (messages[0].content or "") else "Done."

    model = FunctionModel(fn)  # the agent's model serves the Memory that has none
    agent = Agent(model, memory=memory, enable_user_memories=True, background_memory=False)
    agent.run("Remove all existing memories of me.", user_id="ava")
    assert memory.get_user_memories("ava") == [] and model.call_count == 2


def test_the_memory_model_is_used_before_the_agents() -> None:
    memory_model = ScriptedModel([ops("User likes tea")])
    agent_model = ScriptedModel(["Tea it is."])
    memory = Memory(model=memory_model)
    agent = Agent(agent_model, memory=memory, enable_user_memories=True, background_memory=False)
    agent.run("I like tea.", user_id="ava")
    assert (agent_model.call_count, memory_model.call_count) == (1, 1)


def test_async_create_user_memories() -> None:
    memory = Memory(model=ScriptedModel([ops("User likes tea")]))
    update = asyncio.run(memory.acreate_user_memories(message="I like tea", user_id="ava"))
    assert [m.memory_id for m in memory.get_user_memories("ava")] == update.memory_ids


# -- agentic search --------------------------------------------------------------------------


def chooser(pick: str) -> FunctionModel:
    """Answers a search with the numbers of the listed memories containing ``pick``, and
    one number that was never shown."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        listed = (messages[1].content or "").split("<memories>")[1].split("</memories>")[0]
        numbers = [int(n) for n, text in re.findall(r"(\d+)\. (.*)", listed) if pick in text]
        return json.dumps({"ids": [*numbers, 9999]})

    return FunctionModel(fn)


def test_agentic_search_returns_what_the_model_picks_from_the_users_memories() -> None:
    model = chooser("weekend")
    memory = Memory(model=model)
    memory.add_user_memory(UserMemory("User hikes in the mountains on weekends"), "john")
    memory.add_user_memory(UserMemory("User reads science fiction before bed"), "john")
    memory.add_user_memory(UserMemory("User sails every weekend"), "mallory")
    found = memory.search_user_memories(
        query="What does the user like to do on weekends?",
        user_id="john",
        retrieval_method="agentic",
    )
    assert [m.memory for m in found] == ["User hikes in the mountains on weekends"]
    listed = model.requests[0].messages[1].content or ""
    assert "sails" not in listed  # never another user's memories
    assert model.requests[0].response_schema is not None


def test_agentic_search_shows_a_bounded_list_and_respects_limit() -> None:
    model = chooser("number")
    memory = Memory(model=model)
    memory.add_user_memories([UserMemory(f"User has number {i}") for i in range(1000)], "ava")
    found = memory.search_user_memories("numbers", "ava", limit=3, retrieval_method="agentic")
    assert len(found) == 3
    listed = model.requests[0].messages[1].content or ""
    assert listed.count("User has number") == 100


def test_agentic_search_errors() -> None:
    memory = Memory(model=ScriptedModel(["not json", json.dumps({"wrong": 1})]))
    memory.add_user_memory(UserMemory("User likes tea"), "ava")
    with pytest.raises(ModelOutputError, match="not JSON"):
        memory.search_user_memories("tea", "ava", retrieval_method="agentic")
    with pytest.raises(ModelOutputError, match="no list of ids"):
        memory.search_user_memories("tea", "ava", retrieval_method="agentic")
    with pytest.raises(UserError, match="needs a query"):
        memory.search_user_memories("  ", "ava", retrieval_method="agentic")
    with pytest.raises(UserError, match="needs a model"):
        Memory().search_user_memories("tea", "ava", retrieval_method="agentic")
    assert (
        Memory(model=ScriptedModel([])).search_user_memories(
            "tea", "nobody", retrieval_method="agentic"
        )
        == []
    )  # no candidates: no model call


def test_async_agentic_search() -> None:
    memory = Memory(model=chooser("tea"))
    memory.add_user_memory(UserMemory("User likes tea"), "ava")
    found = asyncio.run(memory.asearch_user_memories("drinks", "ava", retrieval_method="agentic"))
    assert [m.memory for m in found] == ["User likes tea"]


# -- session summaries -----------------------------------------------------------------------

SUMMARIZER_START = "You keep a running summary"


def summarizing(answer: str = "Sure.") -> FunctionModel:
    """Answers the agent with ``answer``; a summary request with the previous summary plus
    the new user messages, so each update shows what it was given."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if not (messages[0].content or "").startswith(SUMMARIZER_START):
            return answer
        prompt = messages[1].content or ""
        before = prompt.split("<summary>\n")[1].split("\n</summary>")[0]
        said = re.findall(r"^user: (.*)$", prompt, re.MULTILINE)
        parts = ([] if before == "(none yet)" else [before]) + said
        return json.dumps({"summary": " | ".join(parts), "topics": ["chat"]})

    return FunctionModel(fn)


def test_agent_summaries_update_incrementally_and_go_into_context(tmp_path: Path) -> None:
    model = summarizing()
    db = SqliteDb(tmp_path / "s.db")
    agent = Agent(model, db=db, user_id="ava", session_id="s1", enable_session_summaries=True)
    for message in ("I plan a trip to Lisbon.", "In May.", "With my sister."):
        agent.run(message)
        assert agent.wait_for_memories(timeout=10)
    summary = Memory(db=db).get_session_summary("s1", user_id="ava")
    assert summary is not None
    assert summary.summary == "I plan a trip to Lisbon. | In May. | With my sister."
    assert (summary.run_count, summary.topics) == (3, ["chat"])
    last_update = model.requests[-1].messages[1].content or ""
    assert "I plan a trip to Lisbon. | In May." in last_update  # the previous summary ...
    assert "user: I plan a trip" not in last_update  # ... and only the new run
    third_answer = model.requests[-2].messages[0].content or ""
    assert "<summary_of_this_session>" in third_answer
    assert "I plan a trip to Lisbon. | In May." in third_answer
    assert model.call_count == 6  # one answer and one summary update per run
    with SqliteDb(tmp_path / "s.db") as again:
        assert again.get_session_summary("s1", "ava") == summary
        assert again.get_session_summary("s1", "bob") is None


def test_inline_summaries_and_failures_keep_the_previous_summary(tmp_path: Path) -> None:
    replies = iter(["Hi.", json.dumps({"summary": "User said hi.", "topics": []}), "Bye.", "{"])

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        return next(replies)

    agent = Agent(
        FunctionModel(fn),
        db=SqliteDb(tmp_path / "s.db"),
        session_id="s1",
        enable_session_summaries=True,
        add_session_summary_to_context=False,
        background_memory=False,
    )
    agent.run("Hi!")
    agent.run("Bye!")  # the summary answer is malformed: logged, the old summary stays
    summary = agent.db.get_session_summary("s1", "default")
    assert summary is not None and (summary.summary, summary.run_count) == ("User said hi.", 1)


@pytest.mark.parametrize("background", [False, True])
def test_a_summary_update_that_failed_is_caught_up_by_the_next(
    tmp_path: Path, background: bool
) -> None:
    # The first run's summary answer is malformed; the second update covers both runs, so
    # the summary's count matches what it describes (inline, and as a job on SQLite).
    bad = iter(["not json"])

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        prompt = messages[-1].content or ""
        if (messages[0].content or "").startswith(SUMMARIZER_START):
            turns = re.findall(r"user: (.*)", prompt)
            return next(bad, json.dumps({"summary": " | ".join(turns), "topics": []}))
        return "Sure."

    db = SqliteDb(tmp_path / "s.db")
    agent = Agent(
        FunctionModel(fn),
        db=db,
        user_id="ava",
        session_id="s1",
        enable_session_summaries=True,
        background_memory=background,
    )
    agent.run("I plan a trip to Lisbon.")
    assert agent.wait_for_memories(timeout=10)
    assert db.get_session_summary("s1", "ava") is None
    agent.run("Then Rome.")
    assert agent.wait_for_memories(timeout=10)
    summary = db.get_session_summary("s1", "ava")
    assert summary is not None
    assert (summary.summary, summary.run_count) == ("I plan a trip to Lisbon. | Then Rome.", 2)
    # nothing is left to catch up: Memory's own update makes no model call
    assert Memory(db=db, model=FunctionModel(fn)).create_session_summary("s1", "ava") == summary


class CountingDb(SqliteDb):
    """Says how many runs each read of runs returned."""

    read: list[int]

    def get_runs(self, *args: Any, **kwargs: Any) -> list[RunResult]:
        runs = super().get_runs(*args, **kwargs)
        self.read.append(len(runs))
        return runs


@pytest.mark.parametrize("background", [False, True])
def test_a_summary_update_reads_the_last_runs_only(tmp_path: Path, background: bool) -> None:
    # However long the session, an update reads the few runs after its summary's last.
    db = CountingDb(tmp_path / "s.db")
    db.read = []
    agent = Agent(
        summarizing(),
        db=db,
        user_id="ava",
        session_id="s1",
        enable_session_summaries=True,
        add_history_to_context=False,
        background_memory=background,
    )
    for n in range(20):
        agent.run(f"turn {n}")
        assert agent.wait_for_memories(timeout=10)
    summary = db.get_session_summary("s1", "ava")
    assert summary is not None and summary.run_count == 20
    assert summary.summary == " | ".join(f"turn {n}" for n in range(20))
    assert max(db.read) <= 8, db.read


def test_memory_create_session_summary_reads_the_last_runs_only(tmp_path: Path) -> None:
    db = CountingDb(tmp_path / "s.db")
    db.read = []
    chat = Agent(ScriptedModel(["Ok."] * 31), db=db, session_id="s1", user_id="ava")
    for n in range(30):
        chat.run(f"turn {n}")
    memory = Memory(db=db, model=summarizing())
    assert memory.create_session_summary("s1", "ava").run_count == 30
    chat.run("one more")
    db.read = []
    summary = memory.create_session_summary("s1", "ava")
    assert summary.run_count == 31 and summary.summary.endswith("turn 29 | one more")
    assert db.read and max(db.read) <= 8, db.read


def test_a_summary_written_by_an_earlier_noted_covers_the_runs_before_it(tmp_path: Path) -> None:
    # An earlier noted counted its updates and named no run: summaries turned on at the
    # third run gave run_count 1. The next update reads the runs made after it.
    db = SqliteDb(tmp_path / "s.db")
    chat = Agent(ScriptedModel(["1.", "2.", "3."]), db=db, session_id="s1", user_id="ava")
    for said in ("one", "two", "three"):
        chat.run(said)
    db.set_session_summary("s1", "ava", SessionSummary("three", [], 1))
    model = summarizing()
    agent = Agent(model, db=db, session_id="s1", user_id="ava", enable_session_summaries=True)
    agent.run("four")
    assert agent.wait_for_memories(timeout=10)
    update = model.requests[-1].messages[1].content or ""
    assert re.findall(r"user: (.*)", update) == ["four"]
    summary = db.get_session_summary("s1", "ava")
    assert summary is not None and (summary.summary, summary.run_count) == ("three | four", 2)


def test_summaries_turned_on_late_cover_the_earlier_runs(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    Agent(ScriptedModel(["One.", "Two."]), db=db, session_id="s1").run("alpha", user_id="ava")
    model = summarizing()
    agent = Agent(model, db=db, session_id="s1", user_id="ava", enable_session_summaries=True)
    agent.run("beta")
    assert agent.wait_for_memories(timeout=10)
    summary = db.get_session_summary("s1", "ava")
    assert summary is not None and (summary.summary, summary.run_count) == ("alpha | beta", 2)


@pytest.mark.parametrize("store", ["in-process", "sqlite"])
def test_a_session_deleted_while_summarized_does_not_come_back(tmp_path: Path, store: str) -> None:
    # The summary of "my PIN" is being written when the session is deleted and its id used
    # again: that summary is not stored, and the new conversation's own summary starts over.
    asked, release = threading.Event(), threading.Event()
    answer = summarizing().fn

    async def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if "my PIN" in (messages[-1].content or "") and SUMMARIZER_START in (
            messages[0].content or ""
        ):
            asked.set()
            await asyncio.to_thread(release.wait, 10)
        return str(answer(messages, tools))

    db = InMemoryDb() if store == "in-process" else SqliteDb(tmp_path / "s.db")
    agent = Agent(
        FunctionModel(fn), db=db, user_id="ava", session_id="chat", enable_session_summaries=True
    )
    agent.run("my PIN is 4321")
    assert asked.wait(10)
    assert db.delete_session("chat", "ava")
    agent.run("hello, fresh start")
    release.set()
    assert agent.wait_for_memories(timeout=10)
    summary = db.get_session_summary("chat", "ava")
    assert summary is not None
    assert (summary.summary, summary.run_count) == ("hello, fresh start", 1)


def test_a_summary_of_runs_the_session_no_longer_holds_is_not_built_on(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    Agent(ScriptedModel(["Hi."]), db=db, session_id="s").run("hello", user_id="ava")
    model = summarizing()
    memory = Memory(db=db, model=model)
    stale = SessionSummary("my PIN is 4321", [], 5, last_run_id="gone")
    summary = asyncio.run(memory.summarizer.asummarize(stale, db.get_runs("s", "ava"), model))
    assert (summary.summary, summary.run_count) == ("hello", 1)
    assert "4321" not in (model.requests[-1].messages[1].content or "")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"summary": "User asked about Rome \ud83d", "topics": []}, "valid Unicode"),
        ({"summary": "User asked \u0000 about Rome", "topics": []}, "NUL"),
    ],
)
def test_a_summary_no_store_can_keep_is_malformed_output(
    tmp_path: Path, answer: dict[str, object], error: str
) -> None:
    db = SqliteDb(tmp_path / "s.db")
    Agent(ScriptedModel(["Hi."]), db=db, session_id="s").run("hello", user_id="ava")
    memory = Memory(db=db, model=ScriptedModel([json.dumps(answer)]))  # sent as escapes
    with pytest.raises(ModelOutputError, match=error):
        memory.create_session_summary("s", "ava")
    assert db.get_session_summary("s", "ava") is None


def test_summary_topics_no_store_can_keep_are_dropped(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    Agent(ScriptedModel(["Hi."]), db=db, session_id="s").run("hello", user_id="ava")
    topics = ["rome", "bad \ud800", "x" * 300, "nul\u0000", 7, " Travel "]
    text = json.dumps({"summary": "User asked about Rome", "topics": topics})
    summary = Memory(db=db, model=ScriptedModel([text])).create_session_summary("s", "ava")
    assert summary.topics == ["rome", "travel"]
    assert db.get_session_summary("s", "ava") == summary


def test_memory_create_session_summary_reads_only_new_runs(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    chat = Agent(ScriptedModel(["One.", "Two.", "Three."]), db=db, session_id="s1")
    chat.run("first question", user_id="ava")
    chat.run("second question", user_id="ava")
    model = summarizing()
    memory = Memory(db=db, model=model)
    summary = memory.create_session_summary(session_id="s1", user_id="ava")
    assert (summary.summary, summary.run_count) == ("first question | second question", 2)
    assert memory.create_session_summary("s1", "ava") == summary
    assert model.call_count == 1  # nothing new: no model call
    chat.run("third question", user_id="ava")
    summary = memory.create_session_summary("s1", "ava")
    assert summary.summary == "first question | second question | third question"
    assert "user: first question" not in (model.requests[-1].messages[1].content or "")
    assert memory.get_session_summary("s1", "ava") == summary
    with pytest.raises(NotFoundError):
        memory.create_session_summary("s1", "bob")
    with pytest.raises(ConflictError):
        db.set_session_summary("s1", "bob", summary)
    assert memory.get_session_summary("s1", "bob") is None
    with pytest.raises(NotFoundError):
        memory.create_session_summary("no-such-session", "ava")


def test_a_long_backlog_is_caught_up_within_the_transcript_budget(tmp_path: Path) -> None:
    # 40 runs of about 1,000 characters made before summaries were on: one update sends
    # the newest that fit in the budget and counts them all; so does a single huge run.
    db = SqliteDb(tmp_path / "s.db")
    chat = Agent(ScriptedModel(["Ok."] * 41), db=db, session_id="s", user_id="ava")
    for n in range(40):
        chat.run(f"turn {n} " + "x" * 1000)
    model = ScriptedModel([json.dumps({"summary": "Long talk.", "topics": []})] * 2)
    memory = Memory(db=db, model=model, summarizer=SessionSummarizer(max_transcript_chars=5000))
    summary = memory.create_session_summary("s", "ava")
    sent = model.requests[-1].messages[1].content or ""
    said = re.findall(r"^user: (turn \d+)", sent, re.MULTILINE)
    assert said == [f"turn {n}" for n in range(36, 40)]
    assert len(sent) < 5300 and summary.run_count == 40
    chat.run("huge " + "y" * 50_000)
    summary = memory.create_session_summary("s", "ava")
    sent = model.requests[-1].messages[1].content or ""
    assert "user: huge yyy" in sent and sent.count("y") <= 5000 and " [...]" in sent
    assert summary.run_count == 41
    with pytest.raises(UserError, match="max_transcript_chars"):
        SessionSummarizer(max_transcript_chars=0)


def test_an_answer_after_a_message_longer_than_the_budget_is_summarized(tmp_path: Path) -> None:
    # A contract of 140,000 characters pasted, then the advice: the update was sent the
    # contract's first 24,000 characters only, never what was answered.
    db = SqliteDb(tmp_path / "s.db")
    advice = "Do not sign: clause 9 waives your refund."
    chat = Agent(ScriptedModel([advice]), db=db, session_id="s", user_id="ava")
    chat.run("Here is my contract: " + "clause " * 20_000 + "Should I sign it?")
    model = ScriptedModel([json.dumps({"summary": "Ava asked about a contract.", "topics": []})])
    summarizer = SessionSummarizer(max_transcript_chars=24_000)
    Memory(db=db, model=model, summarizer=summarizer).create_session_summary("s", "ava")
    sent = model.requests[-1].messages[1].content or ""
    said = sent.split("<conversation>\n")[1].split("\n</conversation>")[0]
    assert said.endswith(f"assistant: {quote(advice)}")
    assert said.startswith("user: Here is my contract: clause clause")
    assert "Should I sign it?" in said  # the message's end, after the cut
    assert len(said) <= 24_000


def test_summarizer_settings() -> None:
    summarizer = SessionSummarizer(additional_instructions="Mention dates.")
    assert summarizer.system_prompt().endswith("Mention dates.")
    assert SessionSummarizer(system_message="Custom.").system_prompt() == "Custom."
    with pytest.raises(UserError):
        SessionSummarizer(max_summary_chars=0)
    long = json.dumps({"summary": "x" * 50, "topics": []})
    model = ScriptedModel([long, long])
    memory = Memory(model=model, summarizer=SessionSummarizer(max_summary_chars=10))
    agent = Agent(ScriptedModel(["Hi."]), db=memory.db, session_id="s")  # type: ignore[arg-type]
    agent.run("hello")
    assert memory.create_session_summary("s").summary == "x" * 10  # asked again, then cut
    assert model.call_count == 2
