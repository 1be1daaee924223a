"""A run the model answered but its store failed to save (a full disk): the caller keeps
the answer (RunNotSavedError carries the run, a StoreError all the same), the session
keeps its other runs, nothing is learned from the lost turn, and the server and the
terminal show the answer with the failure."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from full_disk import fill, free
from live_server import LocalClient, events_of
from noted import Agent, RunNotSavedError, SqliteDb, StoreError
from noted.agent.events import ContentDelta, RunCompleted, RunEvent
from noted.agent.terminal import print_response
from noted.models import Message
from noted.server import create_app
from noted.testing import FunctionModel, ScriptedModel

ANSWER = "The answer is 42. " * 4000  # about 72 kB: more pages than a full file has


def answers(*said: str) -> FunctionModel:
    """A model giving ``said`` in turn as the agent's answers, and a summary when asked."""
    left = list(said)

    def answer(messages: list[Message], tools: list[Any]) -> str:
        if "running summary" in (messages[0].content or ""):
            return json.dumps({"summary": "Ava asks things.", "topics": ["numbers"]})
        return left.pop(0)

    return FunctionModel(answer)


@pytest.mark.parametrize("summaries", [False, True], ids=["run-alone", "run-with-jobs"])
def test_an_answered_run_the_store_cannot_save_keeps_its_answer(
    tmp_path: Path, summaries: bool
) -> None:
    db = SqliteDb(tmp_path / "full.db")
    model = answers("hi", ANSWER, "Still here.")
    agent = Agent(
        model,
        db=db,
        session_id="s",
        user_id="ava",
        add_history_to_context=True,
        enable_session_summaries=summaries,
        enable_user_memories=False,
    )
    first = agent.run("hello")
    agent.wait_for_memories(10)
    fill(db)
    with pytest.raises(RunNotSavedError) as failed:
        agent.run("what is the answer?")
    error = failed.value
    assert isinstance(error, StoreError)  # a caller catching the store's failures still does
    assert error.run.content == ANSWER and error.run.status == "completed"
    assert f"run {error.run.run_id!r} was answered but not saved to session 's'" in str(error)
    assert "disk is full" in str(error)
    assert isinstance(error.__cause__, StoreError)
    free(db)
    # the session kept its other run; the next run continues it without the lost turn
    assert [r.run_id for r in db.get_runs("s", "ava")] == [first.run_id]
    after = agent.run("are you there?")
    assert after.content == "Still here."
    *_, last = (r for r in model.requests if "running summary" not in str(r.messages[0].content))
    assert [m.content for m in last.messages if m.role == "user"] == ["hello", "are you there?"]
    agent.wait_for_memories(10)
    assert [r.content for r in db.get_runs("s", "ava")] == ["hi", "Still here."]
    db.close()


def test_a_streamed_run_the_store_cannot_save_ends_with_the_run(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "full.db")
    agent = Agent(ScriptedModel(["hi", ANSWER]), db=db, session_id="s", user_id="ava")
    agent.run("hello")
    fill(db)
    events: list[RunEvent] = []
    with pytest.raises(RunNotSavedError) as failed:
        events.extend(agent.run("what is the answer?", stream=True))
    assert not any(isinstance(event, RunCompleted) for event in events)
    shown = "".join(event.text for event in events if isinstance(event, ContentDelta))
    assert shown == ANSWER == failed.value.run.content
    db.close()


def test_the_terminal_prints_an_answer_it_could_not_save(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "full.db")
    agent = Agent(ScriptedModel(["hi", ANSWER]), db=db, session_id="s", user_id="ava")
    agent.run("hello")
    fill(db)
    printed = io.StringIO()
    console = Console(file=printed, width=80)
    with pytest.raises(RunNotSavedError):
        print_response(
            agent, "what is it?", user_id=None, session_id=None, stream=False,
            markdown=False, console=console,
        )  # fmt: skip
    assert printed.getvalue().count("The answer is 42.") == 4000
    db.close()


def test_the_server_answers_a_run_it_could_not_save_with_the_run(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "full.db")
    agent = Agent(ScriptedModel(["hi", ANSWER, ANSWER]), db=db, agent_id="helper")
    run = {"user_id": "ava", "session_id": "s"}
    with LocalClient(create_app(db, embedder=None, agent=agent)) as client:
        said = client.post("/agents/helper/runs", json={"message": "hello", "stream": False, **run})
        assert said.status_code == 200, said.text[:300]
        fill(db)
        lost = client.post("/agents/helper/runs", json={"message": "q", "stream": False, **run})
        assert lost.status_code == 503, lost.text[:300]
        body = lost.json()
        assert body["detail"].startswith("the run was answered but not saved: the store")
        assert "disk is full" in body["detail"]  # the admin reads why
        assert body["run"]["content"] == ANSWER and body["run"]["input"] == "q"

        streamed = client.post("/agents/helper/runs", json={"message": "again", **run})
        assert streamed.status_code == 200
        events = events_of(streamed.text)
        assert [kind for kind, _ in events][-1] == "error"
        assert "".join(data["text"] for kind, data in events if kind == "content") == ANSWER
        _, last = events[-1]
        assert last["detail"].startswith("the run was answered but not saved")
        assert last["run"]["content"] == ANSWER and last["run"]["input"] == "again"
    free(db)
    assert [r.content for r in db.get_runs("s", "ava")] == ["hi"]
    db.close()
