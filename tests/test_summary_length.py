"""Session summaries longer than ``max_summary_chars``: asked for once more, shorter, then
cut at the end of a sentence; a summary is stored, in two model calls at most."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import pytest

from noted import Agent, Memory, Message, SessionSummarizer, SqliteDb
from noted.memory import summary as summaries
from noted.models import ModelRequest, ToolDefinition
from noted.sessions import RunResult, SessionSummary
from noted.testing import FunctionModel, ScriptedModel

LONG = "The user plans a trip to Lisbon in May. " * 150  # 6,000 characters


def answer(summary: str, topics: tuple[str, ...] = ("travel",)) -> str:
    return json.dumps({"summary": summary, "topics": list(topics)})


def summarized(db: SqliteDb, model: ScriptedModel, limit: int = 4000) -> Memory:
    chat = Agent(ScriptedModel(["Lisbon is lovely in May."]), db=db, session_id="s", user_id="ava")
    chat.run("I plan a trip to Lisbon in May.")
    summarizer = SessionSummarizer(max_summary_chars=limit)
    memory = Memory(db=db, model=model, summarizer=summarizer)
    memory.create_session_summary("s", "ava")
    return memory


def test_a_summary_over_the_limit_is_asked_for_again_with_the_limit(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    short = "Ava plans a trip to Lisbon in May."
    model = ScriptedModel([answer(LONG), answer(short, ("lisbon",))])
    summarized(db, model)
    assert model.call_count == 2
    again = model.requests[1].messages
    assert again[:2] == model.requests[0].messages  # the same request, then the answer
    assert again[2] == Message("assistant", answer(LONG))
    assert f"{len(LONG.strip())} characters" in (again[3].content or "")
    assert "4000" in (again[3].content or "")
    stored = db.get_session_summary("s", "ava")
    assert stored is not None
    assert (stored.summary, stored.topics, stored.run_count) == (short, ["lisbon"], 1)


def test_a_summary_still_over_the_limit_is_kept_cut_at_a_sentence(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = SqliteDb(tmp_path / "s.db")
    model = ScriptedModel([answer(LONG), answer(LONG[:5000])])
    with caplog.at_level(logging.WARNING, logger="noted.memory"):
        summarized(db, model)
    assert model.call_count == 2
    stored = db.get_session_summary("s", "ava")
    assert stored is not None
    assert len(stored.summary) <= 4000
    assert len(stored.summary) > 3900
    assert stored.summary.endswith("in May.")
    assert stored.topics == ["travel"]
    assert "kept cut to the limit of 4000" in caplog.text


def test_a_malformed_second_answer_keeps_the_first_cut(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    model = ScriptedModel([answer(LONG), "Sorry, I cannot shorten it."])
    summarized(db, model, limit=100)
    stored = db.get_session_summary("s", "ava")
    assert stored is not None
    assert stored.summary == ("The user plans a trip to Lisbon in May. " * 2).strip()


def test_a_summary_within_the_limit_costs_one_call(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    model = ScriptedModel([answer("Ava plans a trip.")])
    summarized(db, model)
    assert model.call_count == 1
    assert "at most 4000 characters" in (model.requests[0].messages[1].content or "")


def test_an_agent_that_writes_long_summaries_stores_one(tmp_path: Path) -> None:
    # A model that always wrote 6,000 characters: every summary job failed, its five
    # attempts each a model call, and the session never had a summary.
    calls = {"summary": 0}

    def reply(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if "running summary" in (messages[0].content or ""):
            calls["summary"] += 1
            return answer(LONG)
        return "Lisbon is lovely in May."

    db = SqliteDb(tmp_path / "s.db")
    agent = Agent(
        FunctionModel(reply),
        db=db,
        session_id="s",
        user_id="ava",
        enable_session_summaries=True,
        background_memory=False,
    )
    agent.run("I plan a trip to Lisbon in May.")
    agent.wait_for_memories()
    stored = db.get_session_summary("s", "ava")
    assert stored is not None
    assert 2000 <= len(stored.summary) <= 4000
    assert calls["summary"] == 2


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("One. Two. Three.", 10, "One. Two."),
        ("One two three four five six", 14, "One two..."),
        ("x" * 50, 10, "x" * 10),
        ("First line\nsecond line goes on", 15, "First line"),
        ("他去了里斯本。他很喜欢。", 8, "他去了里斯本。"),
        ('She said "yes." Then left.', 20, 'She said "yes."'),
        ("short", 10, "short"),
    ],
)
def test_cut_summary(text: str, limit: int, cut: str) -> None:
    assert summaries.cut_summary(text, limit) == cut
    assert len(summaries.cut_summary(text, limit)) <= limit


@dataclasses.dataclass(frozen=True, slots=True)
class TaggedRequest(ModelRequest):
    """A request of a summarizer of one's own, with a setting of its own."""

    tag: str = ""


class CappedSummarizer(SessionSummarizer):
    """A summarizer whose requests cap the answer's tokens and carry a tag."""

    def request(self, previous: SessionSummary | None, runs: Sequence[RunResult]) -> ModelRequest:
        first = super().request(previous, runs)
        return TaggedRequest(
            messages=first.messages,
            response_schema=first.response_schema,
            response_schema_name=first.response_schema_name,
            max_tokens=700,
            tag="summary",
        )


class SentRequests(ScriptedModel):
    """A scripted model that keeps each request as it was sent (``.requests`` holds
    ModelRequest copies of them)."""

    def __init__(self, responses: list[str]) -> None:
        super().__init__(responses)
        self.sent: list[ModelRequest] = []

    def _record(self, request: ModelRequest) -> int:
        self.sent.append(request)
        return super()._record(request)


def test_the_shorter_summary_is_asked_for_with_the_first_requests_settings(
    tmp_path: Path,
) -> None:
    """The second request copied the first's messages and schema only: a summarizer's
    max_tokens (and a request subclass's own settings) were lost on it."""
    db = SqliteDb(tmp_path / "s.db")
    chat = Agent(ScriptedModel(["Lisbon is lovely in May."]), db=db, session_id="s", user_id="ava")
    chat.run("I plan a trip to Lisbon in May.")
    model = SentRequests([answer(LONG), answer("Ava plans a trip to Lisbon.")])
    Memory(db=db, model=model, summarizer=CappedSummarizer()).create_session_summary("s", "ava")
    first, again = model.sent
    assert isinstance(again, TaggedRequest) and again.tag == "summary"
    assert again.max_tokens == 700
    assert again.response_schema == first.response_schema
    assert again.response_schema_name == first.response_schema_name
    assert len(again.messages) == len(first.messages) + 2
