from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import apsw
import pytest

from held_model import HeldAnswer
from noted import Agent, ConflictError, InMemoryDb, Message, SessionStore, SqliteDb, UserError
from noted.db.jobs import JobStore, jobs_for_run
from noted.errors import ModelError
from noted.sessions import RunMetrics, RunResult, ToolExecution, new_run_id


def make_run(session_id: str, user_id: str, text: str, status: str = "completed") -> RunResult:
    return RunResult(
        run_id=new_run_id(),
        session_id=session_id,
        user_id=user_id,
        input=text,
        content=f"answer to {text}",
        messages=[Message("user", text), Message("assistant", f"answer to {text}")],
        tool_calls=[ToolExecution("call_1", "add", {"a": 1}, "2")],
        metrics=RunMetrics(model_calls=1, input_tokens=10, output_tokens=3, duration=0.5),
        status=status,  # type: ignore[arg-type]
        error=None if status == "completed" else "boom",
    )


def test_backends_satisfy_the_session_protocol(tmp_path: Path) -> None:
    assert isinstance(InMemoryDb(), SessionStore)
    assert isinstance(SqliteDb(tmp_path / "x.db"), SessionStore)


def test_runs_come_back_in_order_and_whole(sessions: SessionStore) -> None:
    runs = [make_run("s1", "ava", f"turn {i}") for i in range(5)]
    for run in runs:
        sessions.append_run(run)
    got = sessions.get_runs("s1", "ava")
    assert [r.to_dict() for r in got] == [r.to_dict() for r in runs]
    assert [r.input for r in sessions.get_runs("s1", "ava", last_n=2)] == ["turn 3", "turn 4"]
    assert sessions.get_runs("s1", "ava", last_n=0) == []
    assert sessions.get_runs("missing", "ava") == []


def test_the_token_parts_of_a_runs_metrics_are_kept(sessions: SessionStore) -> None:
    run = make_run("s1", "ava", "hello")
    run.metrics = RunMetrics(
        model_calls=2,
        input_tokens=3100,
        output_tokens=160,
        cache_read_tokens=2560,
        cache_write_tokens=300,
        reasoning_tokens=130,
    )
    sessions.append_run(run)

    [got] = sessions.get_runs("s1", "ava")
    session = sessions.get_session("s1", "ava")

    assert got.metrics == run.metrics
    assert session is not None and session.runs[0].metrics == run.metrics


def test_a_run_stored_without_the_token_parts_reads_them_as_none(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteDb(path) as db:
        db.append_run(make_run("s1", "ava", "hello"))
    conn = apsw.Connection(str(path))
    with conn:  # the metrics as runs stored before the parts were counted
        conn.execute(
            "UPDATE noted_sessions_runs SET data = json_remove(data, "
            "'$.metrics.cache_read_tokens', '$.metrics.cache_write_tokens', "
            "'$.metrics.reasoning_tokens')"
        )
        [(stored,)] = conn.execute("SELECT data FROM noted_sessions_runs")
    conn.close()
    assert "cache_read_tokens" not in stored and "input_tokens" in stored

    with SqliteDb(path) as db:
        [run] = db.get_runs("s1", "ava")

    assert run.metrics == RunMetrics(model_calls=1, input_tokens=10, output_tokens=3, duration=0.5)
    assert (run.metrics.cache_read_tokens, run.metrics.reasoning_tokens) == (0, 0)


def test_ids_and_input_no_store_can_keep_are_refused_alike(sessions: SessionStore) -> None:
    """A NUL character or an unpaired surrogate: a UserError on every store, nothing kept."""

    good = make_run("s1", "ava", "hello")
    for field, value in (
        ("input", "hi \ud800 there"),
        ("session_id", "s\x00"),
        ("user_id", "ava\udc80"),
        ("run_id", ""),
    ):
        with pytest.raises(UserError, match=field):
            sessions.append_run(dataclasses.replace(good, **{field: value}))
    assert sessions.list_sessions(None) == []
    for call in (
        lambda: sessions.get_session("s\x00", "ava"),
        lambda: sessions.get_session("s1", "ava\ud800"),
        lambda: sessions.list_sessions("ava\x00"),
        lambda: sessions.get_runs("s\udc80", "ava"),
        lambda: sessions.delete_session("s\x00", None),
        lambda: sessions.get_session_summary("s1", "a\x00"),
    ):
        with pytest.raises(UserError, match="NUL|Unicode"):
            call()


def test_completed_only_skips_failed_runs(sessions: SessionStore) -> None:
    sessions.append_run(make_run("s1", "ava", "one"))
    sessions.append_run(make_run("s1", "ava", "two", status="failed"))
    sessions.append_run(make_run("s1", "ava", "three"))
    assert [r.input for r in sessions.get_runs("s1", "ava")] == ["one", "two", "three"]
    done = sessions.get_runs("s1", "ava", last_n=2, completed_only=True)
    assert [r.input for r in done] == ["one", "three"]


def test_sessions_belong_to_one_user(sessions: SessionStore) -> None:
    sessions.append_run(make_run("s1", "ava", "mine"))
    with pytest.raises(ConflictError, match="belongs to another user"):
        sessions.append_run(make_run("s1", "bob", "intruder"))
    with pytest.raises(ConflictError):
        sessions.get_runs("s1", "bob")
    assert sessions.get_session("s1", "bob") is None
    assert sessions.delete_session("s1", "bob") is False
    assert sessions.list_sessions("bob") == []
    whole = sessions.get_session("s1", "ava")
    assert whole is not None
    assert [r.input for r in whole.runs] == ["mine"]


def test_list_get_and_delete(sessions: SessionStore) -> None:
    for sid in ("a", "b", "c"):
        sessions.append_run(make_run(sid, "ava", f"hello {sid}"))
    sessions.append_run(make_run("a", "ava", "again"))
    sessions.append_run(make_run("z", "bob", "other"))
    listed = sessions.list_sessions("ava")
    assert [s.session_id for s in listed] == ["a", "c", "b"]  # most recently updated first
    assert listed[0].run_count == 2
    assert listed[0].runs == []
    assert listed[0].updated_at > listed[0].created_at
    assert [s.session_id for s in sessions.list_sessions("ava", limit=1, offset=1)] == ["c"]
    assert {s.session_id for s in sessions.list_sessions(None)} == {"a", "b", "c", "z"}
    with pytest.raises(UserError):
        sessions.list_sessions("ava", limit=-1)
    session = sessions.get_session("a", None)
    assert session is not None
    assert session.user_id == "ava"
    assert [r.input for r in session.runs] == ["hello a", "again"]
    assert sessions.delete_session("a", "ava") is True
    assert sessions.delete_session("a", "ava") is False
    assert sessions.get_session("a", "ava") is None
    assert sessions.get_runs("a", "ava") == []
    # the id is free again, for anyone
    sessions.append_run(make_run("a", "bob", "new owner"))
    assert [r.input for r in sessions.get_runs("a", "bob")] == ["new owner"]


def test_a_run_continuing_a_deleted_session_does_not_create_it_again(
    sessions: SessionStore,
) -> None:
    """``existing=True``: the run continues a session read as existing when it began. A
    session deleted since stays deleted; a session's first run still creates it."""
    assert sessions.append_run(make_run("s1", "ava", "one")) is True
    assert sessions.append_run(make_run("s1", "ava", "two"), existing=True) is True
    assert sessions.delete_session("s1", "ava") is True
    late = make_run("s1", "ava", "three")
    assert sessions.append_run(late, existing=True) is False
    assert sessions.get_session("s1", None) is None
    assert sessions.get_runs("s1", "ava") == []
    assert sessions.list_sessions(None) == []
    # nothing of the dropped run is kept, not even its id
    assert sessions.append_run(dataclasses.replace(late, session_id="s2")) is True
    assert [r.input for r in sessions.get_runs("s2", "ava")] == ["three"]
    # a first run creates its session, and another user's session is still refused
    assert sessions.append_run(make_run("s1", "ava", "again")) is True
    assert [r.input for r in sessions.get_runs("s1", "ava")] == ["again"]
    with pytest.raises(ConflictError, match="belongs to another user"):
        sessions.append_run(make_run("s1", "bob", "intruder"), existing=True)
    assert sessions.get_session("s1", "ava").run_count == 1  # type: ignore[union-attr]


def test_a_run_is_appended_only_to_the_session_it_began_in(sessions: SessionStore) -> None:
    """``existing=<run id>``: the run continues the session that held that run when the
    run began (an Agent passes the last run it read). A session of that id deleted and
    begun again since, by another writer, is not that session: the run is dropped (False,
    nothing written, its jobs neither), whoever the new session belongs to."""
    read = make_run("s1", "ava", "one")
    assert sessions.append_run(read) is True
    assert sessions.append_run(make_run("s1", "ava", "two"), existing=read.run_id) is True
    assert sessions.delete_session("s1", "ava") is True
    begun = make_run("s1", "ava", "new one")
    assert sessions.append_run(begun) is True  # another writer begins the session again
    late = make_run("s1", "ava", "late")
    assert sessions.append_run(late, existing=read.run_id) is False
    if isinstance(sessions, JobStore):
        jobs = jobs_for_run(late, memory=True, summary=True)
        assert sessions.append_run_with_jobs(late, jobs, existing=read.run_id) is False
        assert sessions.list_jobs() == []
    assert [r.input for r in sessions.get_runs("s1", "ava")] == ["new one"]
    assert sessions.get_session("s1", "ava").run_count == 1  # type: ignore[union-attr]
    # nothing of the dropped run is kept, not even its id
    assert sessions.append_run(dataclasses.replace(late, session_id="s2")) is True
    # a run that began in the new session continues it
    assert sessions.append_run(make_run("s1", "ava", "two"), existing=begun.run_id) is True
    assert [r.input for r in sessions.get_runs("s1", "ava")] == ["new one", "two"]
    # begun again by another user: the run is dropped, not refused
    assert sessions.delete_session("s1", "ava") is True
    assert sessions.append_run(make_run("s1", "bob", "bob's")) is True
    assert sessions.append_run(make_run("s1", "ava", "late"), existing=begun.run_id) is False
    assert [r.input for r in sessions.get_runs("s1", "bob")] == ["bob's"]
    # a run id of another session, or none at all, is not a session the run began in
    assert sessions.append_run(make_run("s2", "ava", "odd"), existing=read.run_id) is False
    with pytest.raises(UserError, match="existing"):
        sessions.append_run(make_run("s2", "ava", "odd"), existing="")
    assert [r.input for r in sessions.get_runs("s2", "ava")] == ["late"]


@pytest.mark.parametrize("outcome", ["answered", "failed"])
def test_a_session_begun_again_while_a_run_of_the_old_one_answers_does_not_take_it(
    sessions: SessionStore, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleted mid-run, then begun again by another writer under the same id: the old
    run's save (completed or failed) does not land in the new conversation, nothing is
    learned from it, and its caller still has its answer (or its error)."""
    model = HeldAnswer("three", fail=outcome == "failed")
    agent = Agent(
        model.model,
        db=sessions,
        user_id="ava",
        session_id="trip",
        enable_user_memories=True,
        enable_session_summaries=True,
        background_memory=False,
    )
    agent.run("one")
    memory = agent.memory
    assert memory is not None
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(agent.run("three"))
        except ModelError as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert model.asked.wait(30)
    assert sessions.delete_session("trip", "ava") is True
    sessions.append_run(make_run("trip", "ava", "another writer's first turn"))
    with caplog.at_level(logging.WARNING, logger="noted.agent"):
        model.release.set()
        thread.join(30)
    [result] = outcomes
    if outcome == "answered":
        assert isinstance(result, RunResult) and result.content == "Noted."
    else:
        assert isinstance(result, ModelError)
    runs = sessions.get_runs("trip", "ava")
    assert [r.input for r in runs] == ["another writer's first turn"]
    assert sessions.get_session("trip", "ava").run_count == 1  # type: ignore[union-attr]
    assert [m.memory for m in memory.memory.get_user_memories("ava")] == ["User said: one"]
    if isinstance(sessions, JobStore):
        assert sessions.unfinished_jobs() == 0 and sessions.list_jobs() == []
    assert "was deleted while it ran" in caplog.text
    # the agent's next run continues the new conversation
    assert agent.run("four").content == "Noted."
    assert [r.input for r in sessions.get_runs("trip", "ava")] == [
        "another writer's first turn",
        "four",
    ]


@pytest.mark.parametrize("outcome", ["answered", "failed"])
def test_a_session_deleted_while_its_run_is_answered_stays_deleted(
    sessions: SessionStore, outcome: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A conversation deleted mid-run stays deleted: the run's save (completed or failed)
    does not create it again, nothing is learned from that run, and the caller still has
    the run's answer (or its error)."""
    model = HeldAnswer("three", fail=outcome == "failed")
    agent = Agent(
        model.model,
        db=sessions,
        user_id="ava",
        session_id="trip",
        enable_user_memories=True,
        enable_session_summaries=True,
        background_memory=False,  # the run's memory and summary work is done as it returns
    )
    agent.run("one")
    memory = agent.memory
    assert memory is not None
    assert [m.memory for m in memory.memory.get_user_memories("ava")] == ["User said: one"]
    outcomes: list[object] = []

    def run() -> None:
        try:
            outcomes.append(agent.run("three"))
        except ModelError as exc:
            outcomes.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert model.asked.wait(30)
    assert sessions.delete_session("trip", "ava") is True
    with caplog.at_level(logging.WARNING, logger="noted.agent"):
        model.release.set()
        thread.join(30)
    [result] = outcomes
    if outcome == "answered":
        assert isinstance(result, RunResult) and result.content == "Noted."
    else:
        assert isinstance(result, ModelError)
    assert sessions.get_session("trip", None) is None
    assert sessions.list_sessions(None) == []
    assert [m.memory for m in memory.memory.get_user_memories("ava")] == ["User said: one"]
    if isinstance(sessions, JobStore):
        assert sessions.unfinished_jobs() == 0 and sessions.list_jobs() == []
    assert "was deleted while it ran" in caplog.text
    # the next run begins the conversation again
    assert agent.run("four").content == "Noted."
    assert [r.input for r in sessions.get_runs("trip", "ava")] == ["four"]


def test_returned_runs_are_copies(sessions: SessionStore) -> None:
    run = make_run("s1", "ava", "hello")
    sessions.append_run(run)
    run.content = "changed after saving"
    got = sessions.get_runs("s1", "ava")[0]
    assert got.content == "answer to hello"
    got.messages.clear()
    assert len(sessions.get_runs("s1", "ava")[0].messages) == 2


def test_sqlite_sessions_persist_and_use_the_configured_table(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with SqliteDb(path, session_table="chat_log") as db:
        db.append_run(make_run("s1", "ava", "hello"))
    with SqliteDb(path, session_table="chat_log") as db:
        assert [r.input for r in db.get_runs("s1", "ava")] == ["hello"]
        assert db.schema_version("chat_log") == 2  # sessions and runs, then jobs
    conn = apsw.Connection(str(path))
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"chat_log", "chat_log_runs", "chat_log_jobs", "noted_memories"} <= tables
    assert "noted_sessions" not in tables


def test_sqlite_rejects_clashing_table_names(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="different tables"):
        SqliteDb(tmp_path / "x.db", memory_table="t", session_table="t")
    with pytest.raises(UserError, match="session_table"):
        SqliteDb(tmp_path / "x.db", session_table="bad name")


def test_history_read_uses_the_run_index(tmp_path: Path) -> None:
    db = SqliteDb(tmp_path / "s.db")
    db.append_run(make_run("s1", "ava", "hello"))
    conn = apsw.Connection(str(tmp_path / "s.db"))
    plan = " ".join(
        str(row[3])
        for row in conn.execute(
            "EXPLAIN QUERY PLAN SELECT data FROM noted_sessions_runs WHERE session_id = ? "
            "AND status = 'completed' ORDER BY run_index DESC LIMIT 3",
            ("s1",),
        )
    )
    conn.close()
    db.close()
    assert "USING INDEX" in plan
    assert "TEMP B-TREE" not in plan
