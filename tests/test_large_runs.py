"""Runs larger than a session store keeps (noted.limits.MAX_RUN_BYTES), alike on every store:
a tool's long result, or a long text the model sent a tool in its arguments, is kept cut, a
run too large for that is refused with RunTooLargeError (413 from the server), and the
session's other runs, and its later ones, are kept.

Each test makes one large run per store (a tool result of 10 million characters: a run of
20 MB as JSON, larger than a MongoDB document) and a few of just over 4 MiB."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from live_server import LocalClient, events_of
from noted import (
    Agent,
    InMemoryDb,
    Message,
    RunTooLargeError,
    SessionStore,
    SqliteDb,
    UserError,
)
from noted.agent.fitting import ARGUMENT, ARGUMENTS, cut_mark
from noted.db.base import MemoryStore
from noted.db.jobs import JobStore, jobs_for_run
from noted.limits import MAX_RUN_BYTES
from noted.models import ModelResponse, ToolCall
from noted.server import create_app
from noted.sessions import RunResult, new_run_id, run_bytes
from noted.testing import ScriptedModel

TOOL_CHARS = 10_000_000  # a file or a query's rows, read whole by a tool
TOO_LONG = MAX_RUN_BYTES + 1000  # an answer no run of any store keeps


def a_run(session_id: str, said: str, answer: str) -> RunResult:
    return RunResult(
        run_id=new_run_id(),
        session_id=session_id,
        user_id="ava",
        input=said,
        content=answer,
        messages=[Message("user", said), Message("assistant", answer)],
    )


def largest_run(session_id: str) -> RunResult:
    """A run of MAX_RUN_BYTES or a few bytes less, half of it what the user said (which
    its jobs carry again) and half the answer (likewise)."""
    bare = run_bytes(a_run(session_id, "", ""))
    side = (MAX_RUN_BYTES - bare) // 4  # each text is said twice in a run
    run = a_run(session_id, "s" * side, "a" * side)
    assert MAX_RUN_BYTES - 8 < run_bytes(run) <= MAX_RUN_BYTES
    return run


def avas_agent(model: ScriptedModel, store: MemoryStore, tool: Any, **options: Any) -> Agent:
    """An agent of ``tool`` on ``store``, in Ava's session "s"."""
    return Agent(model, db=store, tools=[tool], session_id="s", user_id="ava", **options)


def big_file() -> str:
    """Read the big file."""
    return "0123456789" * (TOOL_CHARS // 10)


def test_a_run_over_the_limit_is_refused_alike_on_every_store(sessions: SessionStore) -> None:
    earlier = a_run("s1", "hello", "hi")
    assert sessions.append_run(earlier)
    too_large = a_run("s1", "tell me all", "x" * TOO_LONG)
    with pytest.raises(RunTooLargeError) as refused:
        sessions.append_run(too_large)
    assert isinstance(refused.value, UserError)  # the caller's value: asking again fails too
    assert refused.value.size == run_bytes(too_large) > MAX_RUN_BYTES == refused.value.limit
    assert f"{MAX_RUN_BYTES:,} bytes" in str(refused.value)
    assert "MAX_RUN_BYTES" in str(refused.value)
    # nothing of it is written, the session keeps its other runs, and takes later ones
    with pytest.raises(RunTooLargeError):
        sessions.append_run(a_run("s2", "a first run", "x" * TOO_LONG))
    assert sessions.get_session("s2", "ava") is None
    later = a_run("s1", "and now?", "fine")
    assert sessions.append_run(later, existing=earlier.run_id)
    session = sessions.get_session("s1", "ava")
    assert session is not None and session.run_count == 2
    assert [r.to_dict() for r in session.runs] == [earlier.to_dict(), later.to_dict()]


def test_the_largest_run_is_kept_with_its_jobs_on_every_store(sessions: SessionStore) -> None:
    # on MongoDB the run's jobs (what was said and answered, again) go in its document
    run = largest_run("s1")
    if isinstance(sessions, JobStore):
        jobs = jobs_for_run(run, memory=True, summary=True)
        assert sessions.append_run_with_jobs(run, jobs)
    else:
        assert sessions.append_run(run)
    [kept] = sessions.get_runs("s1", "ava")
    assert kept.to_dict() == run.to_dict()


def test_a_tools_long_result_is_kept_cut_and_a_too_large_answer_refused(
    store: MemoryStore,
) -> None:
    assert isinstance(store, SessionStore)
    model = ScriptedModel(
        [
            "hi",
            ModelResponse(tool_calls=[ToolCall("big_file", {}, id="c1")]),
            "The file counts digits.",
            "y" * TOO_LONG,
            "Still here.",
        ]
    )
    agent = avas_agent(
        model, store, big_file, add_history_to_context=True, max_tool_result_chars=None
    )
    agent.run("hello")
    result = agent.run("what is in the big file?")
    # the model and the caller read the result whole
    assert result.content == "The file counts digits."
    assert len(result.tool_calls[0].result) == TOOL_CHARS
    assert len(model.requests[2].messages[-1].content or "") == TOOL_CHARS
    # the session keeps its start, and says how much was cut
    first, kept = store.get_runs("s", "ava")
    assert (first.content, kept.run_id, kept.content) == ("hi", result.run_id, result.content)
    assert run_bytes(kept) <= MAX_RUN_BYTES
    [execution] = kept.tool_calls
    [tool_message] = [m for m in kept.messages if m.role == "tool"]
    assert tool_message.content == execution.result
    start, mark = execution.result.split("\n[")
    assert result.tool_calls[0].result.startswith(start) and len(start) > MAX_RUN_BYTES // 4
    assert "\n[" + mark == cut_mark(TOOL_CHARS - len(start))

    with pytest.raises(RunTooLargeError) as refused:
        agent.run("say a lot")
    assert refused.value.run is not None  # the answer is the caller's all the same
    assert refused.value.run.content == "y" * TOO_LONG
    assert store.get_session("s", "ava").run_count == 2  # type: ignore[union-attr]

    after = agent.run("are you there?")
    assert after.content == "Still here."
    # the history replayed holds the cut result, and not the run that was not kept
    replayed = model.requests[-1].messages
    said = [m.content for m in replayed if m.role == "user"]
    assert said[-2:] == ["what is in the big file?", "are you there?"]
    assert "say a lot" not in said
    assert [m.content for m in replayed if m.role == "tool"] == [execution.result]
    assert [r.content for r in store.get_runs("s", "ava")] == [
        "hi",
        "The file counts digits.",
        "Still here.",
    ]


@pytest.mark.parametrize("letter", ["日", "🙂"])
def test_a_long_result_beyond_ascii_is_kept_cut_to_the_longest_that_fits(
    store: MemoryStore, letter: str
) -> None:
    """A result's characters of 3 or 4 bytes are cut by their bytes: a document of 2
    million of them (6 or 8 MB) was cut to 47,000 characters (a run of 280 KB) or, with
    more bytes to cut than characters, made the run refused with RunTooLargeError."""
    assert isinstance(store, SessionStore)

    def document() -> str:
        """Read the document."""
        return letter * 2_000_000

    model = ScriptedModel([ModelResponse(tool_calls=[ToolCall("document", {}, id="c1")]), "ok"])
    agent = avas_agent(model, store, document)
    result = agent.run("what does it say?")
    assert result.content == "ok" and result.tool_calls[0].result == document()
    [kept] = store.get_runs("s", "ava")
    assert MAX_RUN_BYTES - 1024 < run_bytes(kept) <= MAX_RUN_BYTES
    start, mark = kept.tool_calls[0].result.split("\n[")
    assert start == letter * len(start) and "\n[" + mark == cut_mark(2_000_000 - len(start))


def write_file(path: str, content: str) -> str:
    """Write ``content`` to the file at ``path``."""
    return f"wrote {len(content):,} characters to {path}"


def kept_start(cut: str, whole: str, of: str) -> str:
    """The start a stored run kept of the text ``whole``, checked to be followed by the
    mark of what was cut."""
    start, mark = cut.split("\n[")
    assert whole.startswith(start) and "\n[" + mark == cut_mark(len(whole) - len(start), of)
    return start


def calls_of(messages: list[Message]) -> list[ToolCall]:
    """The tool calls of the assistant ``messages``, in order."""
    return [c for m in messages if m.role == "assistant" for c in m.tool_calls]


def test_a_long_argument_is_kept_cut_and_the_caller_and_the_model_read_it_whole(
    store: MemoryStore,
) -> None:
    """A model that wrote a file of 2.2 million characters through a tool made a run of
    4.4 MB (the text twice: in the assistant message's call and in the run's tool_calls),
    refused with RunTooLargeError: the session did not keep the turn."""
    assert isinstance(store, SessionStore)
    content = "0123456789" * 220_000
    call = ToolCall("write_file", {"path": "a.txt", "content": content}, id="c1")
    model = ScriptedModel([ModelResponse(tool_calls=[call]), "Written.", "It is a.txt."])
    agent = avas_agent(model, store, write_file, add_history_to_context=True)
    result = agent.run("write the digits to a.txt")
    # the caller and the model read the arguments whole
    assert result.content == "Written."
    assert result.tool_calls[0].arguments == {"path": "a.txt", "content": content}
    assert calls_of(result.messages)[0].arguments == {"path": "a.txt", "content": content}
    assert calls_of(model.requests[1].messages)[0].arguments["content"] == content
    # the session keeps the turn, the content's start and a mark saying how much was cut
    [kept] = store.get_runs("s", "ava")
    assert (kept.run_id, kept.content) == (result.run_id, "Written.")
    assert MAX_RUN_BYTES - 1024 < run_bytes(kept) <= MAX_RUN_BYTES  # the longest that fits
    [execution] = kept.tool_calls
    [stored_call] = calls_of(kept.messages)
    assert stored_call.arguments == execution.arguments
    assert execution.arguments["path"] == "a.txt"
    start = kept_start(execution.arguments["content"], content, ARGUMENT)
    assert len(start) > 2_000_000
    assert execution.result == result.tool_calls[0].result == "wrote 2,200,000 characters to a.txt"

    # history replays the cut arguments
    agent.run("which file?")
    replayed = model.requests[-1]
    assert [c.arguments for c in calls_of(replayed.messages)] == [execution.arguments]


@pytest.mark.parametrize("letter", ["日", "🙂"])
def test_a_long_argument_beyond_ascii_is_kept_cut_to_the_longest_that_fits(
    store: MemoryStore, letter: str
) -> None:
    """An argument's characters of 3 or 4 bytes are cut by their bytes: a million of them
    made a run of 6 or 8 MB, refused with RunTooLargeError."""
    assert isinstance(store, SessionStore)
    content = letter * 1_000_000
    call = ToolCall("write_file", {"path": "ä.txt", "content": content}, id="c1")
    model = ScriptedModel([ModelResponse(tool_calls=[call]), "ok"])
    agent = avas_agent(model, store, write_file)
    result = agent.run("write it")
    assert result.tool_calls[0].arguments["content"] == content
    [kept] = store.get_runs("s", "ava")
    assert MAX_RUN_BYTES - 1024 < run_bytes(kept) <= MAX_RUN_BYTES
    assert calls_of(kept.messages)[0].arguments == kept.tool_calls[0].arguments
    assert kept.tool_calls[0].arguments["path"] == "ä.txt"
    start = kept_start(kept.tool_calls[0].arguments["content"], content, ARGUMENT)
    assert start == letter * len(start)


def save_files(files: list[dict[str, Any]], options: dict[str, Any]) -> str:
    """Save the files."""
    return f"saved {len(files)} files"


def test_long_strings_deep_in_the_arguments_are_cut_and_their_shape_kept(
    store: MemoryStore,
) -> None:
    assert isinstance(store, SessionStore)
    readme, notes = "r" * 1_500_000, "n" * 1_200_000
    arguments: dict[str, Any] = {
        "files": [
            {"path": "README.md", "content": readme, "mode": 0o644},
            {"path": "empty.txt", "content": "", "mode": None},
        ],
        "options": {"overwrite": True, "notes": [notes, "short", 1.5, ["x" * 300]]},
    }
    call = ToolCall("save_files", arguments, id="c1")
    model = ScriptedModel([ModelResponse(tool_calls=[call]), "Saved."])
    agent = avas_agent(model, store, save_files)
    result = agent.run("save them")
    assert result.tool_calls[0].arguments == arguments
    assert result.tool_calls[0].result == "saved 2 files"  # the tool read them whole
    [kept] = store.get_runs("s", "ava")
    assert MAX_RUN_BYTES - 1024 < run_bytes(kept) <= MAX_RUN_BYTES
    stored = kept.tool_calls[0].arguments
    assert calls_of(kept.messages)[0].arguments == stored
    # both long texts are cut to one length; the rest, keys and shape as the model sent them
    readme_start = kept_start(stored["files"][0]["content"], readme, ARGUMENT)
    notes_start = kept_start(stored["options"]["notes"][0], notes, ARGUMENT)
    assert len(readme_start) == len(notes_start) > 900_000
    shape = json.loads(json.dumps(stored))
    shape["files"][0]["content"] = readme
    shape["options"]["notes"][0] = notes
    assert shape == arguments


def reverse(text: str) -> str:
    """The text reversed, twice over."""
    return text[::-1] * 2


def test_long_arguments_and_long_results_are_cut_to_one_length(store: MemoryStore) -> None:
    """Two calls: a short text (200,000 characters, a result of 400,000) and a long one
    (1.5 million, a result of 3 million), a run of 10.6 MB as JSON. The long argument and
    the long result are cut to the one length that fits; the short ones are kept whole."""
    assert isinstance(store, SessionStore)
    short, long = "ab" * 100_000, "cd" * 750_000
    calls = [
        ToolCall("reverse", {"text": short}, id="c1"),
        ToolCall("reverse", {"text": long}, id="c2"),
    ]
    model = ScriptedModel([ModelResponse(tool_calls=calls), "Reversed."])
    agent = avas_agent(model, store, reverse, max_tool_result_chars=None)
    result = agent.run("reverse them")
    assert [e.result for e in result.tool_calls] == [reverse(short), reverse(long)]
    assert [e.arguments["text"] for e in result.tool_calls] == [short, long]
    [kept] = store.get_runs("s", "ava")
    assert MAX_RUN_BYTES - 1024 < run_bytes(kept) <= MAX_RUN_BYTES
    first, second = kept.tool_calls
    assert [c.arguments for c in calls_of(kept.messages)] == [first.arguments, second.arguments]
    assert [m.content for m in kept.messages if m.role == "tool"] == [first.result, second.result]
    assert (first.arguments, first.result) == ({"text": short}, reverse(short))
    argument_start = kept_start(second.arguments["text"], long, ARGUMENT)
    result_start = kept_start(second.result, reverse(long), "tool result")
    assert len(argument_start) == len(result_start) > 700_000


def test_arguments_that_are_not_a_json_object_are_kept_cut(store: MemoryStore) -> None:
    """What a model sent that is not a JSON object is kept as sent, in the call's
    invalid_arguments; 5 million characters of it made the run refused."""
    assert isinstance(store, SessionStore)
    sent = '{"path": "a.txt", "content": "' + "z" * 5_000_000
    call = ToolCall("write_file", id="c1", invalid_arguments=sent)
    model = ScriptedModel([ModelResponse(tool_calls=[call]), "It failed."])
    agent = avas_agent(model, store, write_file)
    result = agent.run("write it")
    assert calls_of(result.messages)[0].invalid_arguments == sent
    assert result.tool_calls[0].result.startswith("Error: the arguments must be a JSON object")
    [kept] = store.get_runs("s", "ava")
    assert run_bytes(kept) <= MAX_RUN_BYTES
    [stored_call] = calls_of(kept.messages)
    assert stored_call.arguments == {} and stored_call.invalid_arguments is not None
    assert len(kept_start(stored_call.invalid_arguments, sent, ARGUMENTS)) > 4_000_000
    assert kept.tool_calls[0].result == result.tool_calls[0].result


def a_log() -> str:
    """Read the build log."""
    return "".join(f"line {n}: compiled\n" for n in range(12_000)) + "FAILED: 1 error\n"


def test_the_model_reads_the_start_and_end_of_a_long_result_and_the_caller_all(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=[ToolCall("a_log", {}, id="c1")]),
            "The build failed.",
            "It failed once.",
        ]
    )
    db = SqliteDb(tmp_path / "noted.db")
    agent = Agent(model, db=db, tools=[a_log], session_id="s", add_history_to_context=True)
    assert agent.max_tool_result_chars == 50_000  # the default
    log = a_log()
    result = agent.run("did the build pass?")
    shown = model.requests[1].messages[-1].content or ""
    head, mark, tail = shown.split("\n[... ")[0], *shown.split("\n[... ")[1].split(" ...]\n")
    assert (len(head), len(tail)) == (33_333, 16_667)
    assert log.startswith(head) and log.endswith(tail) and tail.endswith("FAILED: 1 error\n")
    assert mark == (
        f"{len(log) - 50_000:,} characters of this tool result were left out: "
        "the model is shown at most 50,000"
    )
    # the caller's result is whole; the stored run holds what the model read, and both
    assert result.tool_calls[0].result == log
    [kept] = db.get_runs("s", "default")
    assert kept.tool_calls[0].result == log
    assert [m.content for m in kept.messages if m.role == "tool"] == [shown]
    # history replays what the model read
    agent.run("how many errors?")
    assert [m.content for m in model.requests[-1].messages if m.role == "tool"] == [shown]


def test_a_result_within_the_limit_is_read_whole_and_the_limit_is_checked() -> None:
    limit = len(a_log())
    for chosen in (limit, None):
        model = ScriptedModel([ModelResponse(tool_calls=[ToolCall("a_log", {}, id="c1")]), "ok"])
        Agent(model, tools=[a_log], max_tool_result_chars=chosen).run("the log?")
        assert model.requests[1].messages[-1].content == a_log()
    model = ScriptedModel([ModelResponse(tool_calls=[ToolCall("a_log", {}, id="c1")]), "ok"])
    Agent(model, tools=[a_log], max_tool_result_chars=limit - 1000).run("the log?")
    assert "1,000 characters of this tool result were left out" in (
        model.requests[1].messages[-1].content or ""
    )
    for wrong in (0, -5, 1.5, "50000", True):
        with pytest.raises(UserError, match="max_tool_result_chars"):
            Agent(ScriptedModel([]), max_tool_result_chars=wrong)


def shown(result: str, limit: int) -> str:
    """What the model reads of a tool's ``result`` under ``max_tool_result_chars=limit``."""

    def read() -> str:
        """Read it."""
        return result

    model = ScriptedModel([ModelResponse(tool_calls=[ToolCall("read", {}, id="c1")]), "ok"])
    Agent(model, tools=[read], max_tool_result_chars=limit).run("read it")
    return model.requests[1].messages[-1].content or ""


@pytest.mark.parametrize("limit", [1, 2, 3, 100, 50_000])
def test_a_result_its_cut_would_make_longer_is_read_whole(limit: int) -> None:
    """A result just over the limit was cut all the same: 50,050 characters were shown as
    50,094 (the limit's 50,000 and the line saying 50 were left out), longer than the
    result, 50 of its characters lost. A cut is made only when it shortens the result."""
    for over in (1, 50, 80):
        whole = "x" * (limit + over)
        assert shown(whole, limit) == whole, over
    long = "x" * (limit + 1000)
    cut = shown(long, limit)
    assert len(cut) < len(long) and "1,000 characters of this tool result" in cut


def test_a_message_too_large_to_keep_is_refused_before_any_model_call() -> None:
    model = ScriptedModel(["never"])
    agent = Agent(model, db=InMemoryDb(), session_id="s")
    with pytest.raises(RunTooLargeError, match="the message alone makes a run of"):
        agent.run("m" * (MAX_RUN_BYTES // 2))
    assert model.requests == []
    assert agent.db.get_session("s", "default") is None


def test_the_server_answers_413_for_a_run_too_large_to_keep(store: MemoryStore) -> None:
    assert isinstance(store, SessionStore)
    model = ScriptedModel(
        [
            ModelResponse(tool_calls=[ToolCall("big_file", {}, id="c1")]),
            "Read it.",
            "y" * TOO_LONG,
            "z" * TOO_LONG,
            "Still here.",
        ]
    )
    agent = Agent(model, db=store, tools=[big_file], agent_id="helper")
    run = {"user_id": "ava", "session_id": "s", "stream": False}
    with LocalClient(create_app(store, embedder=None, agent=agent)) as client:
        read = client.post("/agents/helper/runs", json={"message": "read the file", **run})
        assert read.status_code == 200, read.text[:500]  # kept, its tool's result cut
        assert len(read.json()["tool_calls"][0]["result"]) == TOOL_CHARS

        refused = client.post("/agents/helper/runs", json={"message": "say a lot", **run})
        assert refused.status_code == 413, refused.text[:500]
        assert "MAX_RUN_BYTES" in refused.json()["detail"]
        assert "nothing of it was written" in refused.json()["detail"]

        streamed = client.post(
            "/agents/helper/runs", json={"message": "say more", **run, "stream": True}
        )
        assert streamed.status_code == 200
        events = events_of(streamed.text)
        assert events[-1][0] == "error" and "MAX_RUN_BYTES" in events[-1][1]["detail"]
        assert "run_completed" not in [kind for kind, _ in events]

        again = client.post("/agents/helper/runs", json={"message": "there?", **run})
        assert again.status_code == 200 and again.json()["content"] == "Still here."
        session = client.get("/sessions/s", params={"user_id": "ava"}).json()
        assert [r["content"] for r in session["runs"]] == ["Read it.", "Still here."]
