"""Background work as durable jobs: recorded with the run, taken over when a worker dies,
applied exactly once, in order per user, kept with their error when they fail."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import open_store, server_url
from live_server import LocalClient
from noted import Agent, Memory, SqliteDb, _portal
from noted._time import now_micros
from noted.agent.jobs import JobWorker, job_worker, leave_jobs_to_workers
from noted.cli import main
from noted.db.base import MemoryQuery, MemoryStore
from noted.db.jobs import Job, JobStore, derived_id, jobs_for_run
from noted.errors import ModelError
from noted.models.types import Message, ToolDefinition
from noted.server import create_app
from noted.sessions import RunResult
from noted.testing import FunctionModel
from servers import Server

SRC = str(Path(__file__).resolve().parents[1] / "src")
PERSISTENT = ["sqlite", "postgres", "redis", "mongo"]


def is_manager(messages: list[Message]) -> bool:
    return (messages[0].content or "").startswith("You maintain the long-term memory")


def remembering() -> FunctionModel:
    """Answers "Noted."; as the manager, adds "User said: <message>" for each turn."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if is_manager(messages):
            prompt = messages[-1].content or ""
            chat = prompt.split("<conversation>")[1].split("</conversation>")[0]
            said = chat.strip().splitlines()[0].removeprefix("user: ").strip('"')
            op = {"op": "add", "id": None, "memory": f"User said: {said}", "topics": []}
            return json.dumps({"operations": [op]})
        return "Noted."

    return FunctionModel(fn)


def store_of(kind: str, servers: dict[str, Server | str], tmp_path: Path) -> MemoryStore:
    return open_store(kind, servers, tmp_path)


def texts(store: MemoryStore, user: str) -> list[str]:
    found = store.list_memories(MemoryQuery(user_id=user, sort_by="created_at", sort_order="asc"))
    return [m.memory for m in found]


@pytest.fixture(params=PERSISTENT)
def jobs_store(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[MemoryStore]:
    store = store_of(request.param, servers, tmp_path)
    assert isinstance(store, JobStore)
    yield store
    store.close()


def test_a_run_is_recorded_with_its_jobs_and_the_agent_waits_for_them(
    jobs_store: MemoryStore,
) -> None:
    agent = Agent(
        remembering(), db=jobs_store, user_id="ava", agent_id="helper", enable_user_memories=True
    )
    for text in ("I like tea", "I live in Oslo", "I ski"):
        agent.run(text)
    assert agent.wait_for_memories(timeout=30)
    assert texts(jobs_store, "ava") == [
        "User said: I like tea",
        "User said: I live in Oslo",
        "User said: I ski",
    ]
    assert isinstance(jobs_store, JobStore)
    assert jobs_store.list_jobs() == []
    assert jobs_store.unfinished_jobs() == 0


def test_waiting_for_a_job_another_worker_holds_is_not_a_busy_loop(tmp_path: Path) -> None:
    # A worker that died holds its job until the lease ends: the wait looks every poll,
    # it does not start drain after drain (a CPU core, and SQLite's write lock, for a minute).
    db = SqliteDb(tmp_path / "s.db")
    agent = Agent(remembering(), db=db, user_id="ava", enable_user_memories=True)
    leave_jobs_to_workers(agent)
    agent.run("I like tea")
    assert db.claim_job("dead-worker", lease=60) is not None
    kicker = agent._jobs
    assert kicker is not None
    drains = []
    drain = kicker.worker.drain

    async def counted(
        stop: threading.Event | None = None, keys: Collection[str] | None = None
    ) -> int:
        if keys is None:  # each drain runs the waited-for keys' jobs, then the others
            drains.append(1)
        return await drain(stop, keys)

    kicker.worker.drain = counted  # type: ignore[method-assign]
    kicker.enabled = True
    started = time.monotonic()
    assert not agent.wait_for_memories(timeout=1.0)
    assert time.monotonic() - started < 2
    assert 1 <= len(drains) <= 25, len(drains)  # about one per 0.05 s poll


def test_a_run_with_memory_inline_waits_for_its_own_jobs_only(tmp_path: Path) -> None:
    """Other users' jobs waiting in the store: with background_memory=False a run
    returned only once it had run every one of them (up to a minute, its own last)."""
    db = SqliteDb(tmp_path / "inline.db")
    waiting = 20
    for u in range(waiting):
        run = _run("a", f"u{u}", "turn")
        db.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))
    agent = Agent(
        remembering(),
        db=db,
        agent_id="a",
        user_id="ava",
        enable_user_memories=True,
        background_memory=False,
    )
    agent.run("I like tea")
    assert texts(db, "ava") == ["User said: I like tea"]
    assert len(db.list_jobs()) == waiting  # left to the processes that run them
    assert agent.wait_for_memories(timeout=30)  # its own are done: the others not waited for
    assert len(db.list_jobs()) == waiting
    db.close()


def test_an_unexpected_error_of_a_background_drain_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault outside any job (a driver's error that is no store error) ended the drain
    with nothing said unless the program waited for its memories: the job stayed running
    for a lease, or pending, without a word."""

    class Broken(SqliteDb):
        def claim_job(self, *args: Any, **kwargs: Any) -> Job | None:
            raise RuntimeError("the driver lost its socket")

    db = Broken(tmp_path / "broken.db")
    agent = Agent(remembering(), db=db, user_id="ava", enable_user_memories=True)
    with caplog.at_level(logging.WARNING, logger="noted.jobs"):
        agent.run("I like tea")
        assert _portal.drain(10)
    (record,) = [r for r in caplog.records if r.name == "noted.jobs"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    assert "the driver lost its socket" in str(record.exc_info[1])
    db.close()


@pytest.mark.parametrize("background", [True, False])
def test_a_summary_job_of_a_deleted_session_ends_quietly(tmp_path: Path, background: bool) -> None:
    # Deleted before its summary was written: the job completes with nothing to write,
    # where it failed five times over a minute and stayed as a failed job.
    db = SqliteDb(tmp_path / "s.db")
    agent = Agent(
        remembering(),
        db=db,
        user_id="ava",
        session_id="s1",
        enable_session_summaries=True,
        background_memory=background,
    )
    leave_jobs_to_workers(agent)
    agent.run("I like tea")
    assert [job.kind for job in db.list_jobs()] == ["summary"]
    assert db.delete_session("s1", "ava")
    kicker = agent._jobs
    assert kicker is not None
    kicker.enabled = True
    assert agent.wait_for_memories(timeout=10)
    assert db.list_jobs() == []
    assert db.get_session("s1", "ava") is None


def test_memories_in_another_store_object_on_the_same_file_are_written(tmp_path: Path) -> None:
    """Agno's layout: the memories and the sessions are two stores of one SQLite file. The
    job's batch is written beside its transaction, not inside it (which waited for the
    lock the transaction held, 30 s, and failed)."""
    path = tmp_path / "agent.db"
    memories = SqliteDb(path, memory_table="user_memories", busy_timeout=2.0)
    sessions = SqliteDb(path, session_table="agent_sessions", busy_timeout=2.0)
    agent = Agent(
        remembering(),
        db=sessions,
        memory=Memory(memories, embedder=None),
        user_id="ava",
        enable_user_memories=True,
    )
    agent.run("I like tea")
    agent.run("I ski")
    assert agent.wait_for_memories(timeout=30)
    assert texts(memories, "ava") == ["User said: I like tea", "User said: I ski"]
    assert sessions.list_jobs(status=None) == []
    memories.close()
    sessions.close()


def _run(agent_id: str, user: str, text: str, answer: str = "Noted.") -> RunResult:
    return RunResult(
        run_id=f"run-{user}-{text}",
        session_id=f"s-{user}",
        user_id=user,
        input=text,
        agent_id=agent_id,
        content=answer,
        messages=[Message("user", text), Message("assistant", answer)],
    )


def test_claims_follow_each_users_order_and_leases(jobs_store: MemoryStore) -> None:
    assert isinstance(jobs_store, JobStore)
    jobs = {}
    for user, text in (("ava", "one"), ("bob", "one"), ("ava", "two")):
        run = _run("a", user, text)
        (job,) = jobs_for_run(run, memory=True, summary=False)
        jobs_store.append_run_with_jobs(run, [job])
        jobs[(user, text)] = job.job_id
    first = jobs_store.claim_job("w1", 60)
    second = jobs_store.claim_job("w2", 60)
    assert first is not None and second is not None
    assert (first.job_id, second.job_id) == (jobs[("ava", "one")], jobs[("bob", "one")])
    assert first.attempts == 1 and first.owner == "w1" and first.said == "one"
    # ava's second job waits for her first; nothing else is due
    assert jobs_store.claim_job("w3", 60) is None
    assert jobs_store.claim_job("w3", 60, agent_id="other") is None
    assert jobs_store.claim_job("w3", 60, agent_id=None) is None  # runs without an agent
    # a plan is stored only by the job's owner
    stolen = Job.from_payload(first.job_id, first.payload(), owner="w9")
    assert not jobs_store.store_plan(stolen, {"x": 1})
    assert jobs_store.store_plan(first, {"x": 1})
    done, value = jobs_store.complete_job(first, lambda: 42)
    assert (done, value) == (True, 42)
    assert jobs_store.complete_job(first, lambda: 43) == (False, None)
    third = jobs_store.claim_job("w3", 60)
    assert third is not None and third.job_id == jobs[("ava", "two")]
    # a failure keeps its error; a job with a failure waiting for its retry is not due
    jobs_store.fail_job(third, "model down", 600)
    listed = {j.job_id: j for j in jobs_store.list_jobs()}
    assert listed[third.job_id].error == "model down"
    assert listed[third.job_id].status == "pending"
    assert jobs_store.claim_job("w3", 60) is None
    assert jobs_store.retry_job(third.job_id)
    again = jobs_store.claim_job("w3", 60)
    assert again is not None and again.job_id == third.job_id
    jobs_store.fail_job(again, "model down for good", None)
    assert [j.status for j in jobs_store.list_jobs(status="failed")] == ["failed"]
    assert jobs_store.drop_job(again.job_id)
    # bob's job, whose worker died: taken over once its lease expires
    assert jobs_store.claim_job("w4", 0.0) is None  # still w2's
    assert jobs_store.unfinished_jobs() == 1


def test_a_claim_can_take_the_jobs_of_some_keys_only(jobs_store: MemoryStore) -> None:
    assert isinstance(jobs_store, JobStore)
    jobs = {}
    for user, text in (("bob", "one"), ("ava", "one"), ("ava", "two")):
        run = _run("a", user, text)
        (job,) = jobs_for_run(run, memory=True, summary=False)
        jobs_store.append_run_with_jobs(run, [job])
        jobs[(user, text)] = job.job_id
    assert jobs_store.claim_job("w", 60, keys=set()) is None
    assert jobs_store.claim_job("w", 60, keys={"memory:zoe"}) is None
    assert jobs_store.unfinished_jobs(keys={"memory:ava", "memory:zoe"}) == 2
    assert jobs_store.unfinished_jobs("a", keys={"memory:bob"}) == 1
    assert jobs_store.unfinished_jobs("b", keys={"memory:bob"}) == 0
    assert jobs_store.unfinished_jobs(keys=set()) == 0
    first = jobs_store.claim_job("w", 60, keys={"memory:ava", "summary:s-ava"})
    assert first is not None and first.job_id == jobs[("ava", "one")]  # bob's is older
    assert jobs_store.claim_job("w", 60, keys={"memory:ava"}) is None  # in ava's order
    assert jobs_store.complete_job(first, lambda: None)[0]
    second = jobs_store.claim_job("w", 60, agent_id="a", keys={"memory:ava"})
    assert second is not None and second.job_id == jobs[("ava", "two")]
    other = jobs_store.claim_job("w", 60)
    assert other is not None and other.job_id == jobs[("bob", "one")]


def test_an_expired_lease_is_taken_over(jobs_store: MemoryStore) -> None:
    assert isinstance(jobs_store, JobStore)
    run = _run("a", "ava", "one")
    jobs_store.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=True))
    first = jobs_store.claim_job("dead", 0.05)
    assert first is not None
    time.sleep(0.1)
    taken = [jobs_store.claim_job("alive", 60) for _ in range(3)]
    ids = [j.job_id for j in taken if j is not None]
    assert first.job_id in ids and len(ids) == 2  # the memory job again, and the summary's
    again = next(j for j in taken if j is not None and j.job_id == first.job_id)
    assert again.attempts == 2 and again.owner == "alive"
    # the dead worker cannot complete it any more
    assert jobs_store.complete_job(first, lambda: 1) == (False, None)


def test_a_stored_plan_is_applied_once_with_ids_derived_from_the_job(
    jobs_store: MemoryStore,
) -> None:
    assert isinstance(jobs_store, JobStore)
    model = remembering()
    agent = Agent(model, db=jobs_store, agent_id="a", enable_user_memories=True)
    worker = job_worker(agent)
    assert worker is not None
    run = _run("a", "ava", "I like tea")
    jobs_store.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))
    job = jobs_store.claim_job("first", 0.05)
    assert job is not None
    # the first worker gets the model's answer and stores it, then dies before applying
    import asyncio

    from noted.agent.jobs import _plan_to_dict

    planned = asyncio.run(
        worker.memory.manager.aplan(  # type: ignore[union-attr]
            [Message("user", job.said)], user_id="ava", door=worker.memory.memory.door, model=model
        )
    )
    assert planned is not None
    assert jobs_store.store_plan(job, _plan_to_dict(*planned[:3]))
    calls = len(model.requests)
    time.sleep(0.1)
    second = JobWorker(jobs_store, model, worker.memory, None, agent_id="a")
    assert asyncio.run(second.drain()) == 1
    assert len(model.requests) == calls  # the stored plan, no second model call
    (memory,) = jobs_store.list_memories(MemoryQuery(user_id="ava"))
    assert memory.memory == "User said: I like tea"
    assert memory.memory_id == derived_id(job.job_id, 0)
    assert jobs_store.list_jobs() == []


# Opens, in a child process, the store the test opened: argv kind, where, names (JSON).
OPEN_STORE = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from noted import Agent, SqliteDb
    from noted.testing import FunctionModel

    def say(line):
        # one write of the whole line: print writes the text and its newline apart, and
        # two threads saying a line at once would mix them ("answeredextracting")
        os.write(1, f"{line}\\n".encode())

    kind, where, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    if kind == "sqlite":
        store = SqliteDb(where, **names)
    elif kind == "postgres":
        from noted.db.postgres import PostgresDb
        store = PostgresDb(where, **names)
    elif kind == "mongo":
        from noted.db.mongodb import MongoDb
        store = MongoDb(where, database="noted_tests", **names)
    else:
        from noted.db.redisdb import RedisDb
        store = RedisDb(where, **names)
    """
)

KILLED = OPEN_STORE + textwrap.dedent(
    """
    def fn(messages, tools):
        if (messages[0].content or "").startswith("You maintain the long-term memory"):
            say("extracting")
            time.sleep(60)
            return json.dumps({"operations": [
                {"op": "add", "id": None, "memory": "never stored", "topics": []}]})
        return "Tea it is."

    agent = Agent(FunctionModel(fn), db=store, user_id="ava", agent_id="helper",
                  enable_user_memories=True)
    from noted.agent.jobs import job_worker
    job_worker(agent).lease = 1.0
    agent.run("I like tea.")
    say("answered")
    time.sleep(60)
    """
)

# A worker process: waits for a line on stdin, runs jobs until none is left, prints how
# many it ran.
WORKER = OPEN_STORE + textwrap.dedent(
    """
    from noted.agent.jobs import job_worker

    def fn(messages, tools):
        chat = (messages[-1].content or "").split("<conversation>")[1]
        said = chat.strip().splitlines()[0].removeprefix("user: ").strip('"')
        return json.dumps({"operations": [
            {"op": "add", "id": None, "memory": f"User said: {said}", "topics": []}]})

    agent = Agent(FunctionModel(fn), db=store, agent_id="a", enable_user_memories=True)
    worker = job_worker(agent)
    store.unfinished_jobs()
    print("ready", flush=True)
    sys.stdin.readline()
    print(asyncio.run(worker.until_done()), flush=True)
    """
)


def child_args(kind: str, store: MemoryStore, servers: dict[str, Server | str]) -> list[str]:
    names = {"memory_table": store.memory_table, "session_table": store.session_table}  # type: ignore[attr-defined]
    where = str(store.db_file) if kind == "sqlite" else server_url(servers, kind)  # type: ignore[attr-defined]
    return [kind, where, json.dumps(names)]


@pytest.mark.parametrize("kind", PERSISTENT)
def test_workers_in_several_processes_apply_each_job_once_in_order(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    store = store_of(kind, servers, tmp_path)
    assert isinstance(store, JobStore)
    users, turns = 4, 8
    for t in range(turns):
        for u in range(users):
            run = _run("a", f"u{u}", f"turn {t}")
            store.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))
    command = [sys.executable, "-c", WORKER, *child_args(kind, store, servers)]
    env = {**os.environ, "PYTHONPATH": SRC}
    workers = [
        subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(2)
    ]
    try:
        for w in workers:
            assert w.stdout is not None
            assert w.stdout.readline().strip() == "ready"
        for w in workers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        ran = [int(w.communicate(timeout=120)[0].strip()) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.communicate()
    assert sum(ran) == users * turns  # no job run twice (nor left)
    for u in range(users):
        assert texts(store, f"u{u}") == [f"User said: turn {t}" for t in range(turns)]
    assert store.list_jobs() == []
    store.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_memories_survive_a_process_killed_after_run_returned(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    store = store_of(kind, servers, tmp_path)
    with subprocess.Popen(
        [sys.executable, "-c", KILLED, *child_args(kind, store, servers)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
    ) as child:
        try:
            assert child.stdout is not None
            lines = [child.stdout.readline().strip() for _ in range(2)]
            assert sorted(lines) == ["answered", "extracting"], lines
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert texts(store, "ava") == []  # the killed process never stored its memories
    agent = Agent(
        remembering(), db=store, user_id="ava", agent_id="helper", enable_user_memories=True
    )
    assert agent.wait_for_memories(timeout=30)  # none of its runs: nothing to wait for
    # its run's job follows the killed one's (ava's, of this agent), taken over once the
    # lease ran out
    agent.run("I ski.")
    assert agent.wait_for_memories(timeout=30)
    assert texts(store, "ava") == ["User said: I like tea.", "User said: I ski."]
    sessions = store.list_sessions("ava")  # type: ignore[attr-defined]
    assert sorted(session.run_count for session in sessions) == [1, 1]
    store.close()


# One turn of ava's, then the program ends (no wait): argv kind, where, names (JSON).
ONE_TURN = OPEN_STORE + textwrap.dedent(
    """
    def fn(messages, tools):
        if (messages[0].content or "").startswith("You maintain the long-term memory"):
            time.sleep(0.05)
            chat = (messages[-1].content or "").split("<conversation>")[1]
            said = chat.strip().splitlines()[0].removeprefix("user: ").strip('"')
            return json.dumps({"operations": [
                {"op": "add", "id": None, "memory": f"User said: {said}", "topics": []}]})
        return "Noted."

    agent = Agent(FunctionModel(fn), db=store, user_id="ava", agent_id="a",
                  enable_user_memories=True)
    agent.run("I like tea.")
    """
)


def test_a_short_program_runs_its_own_jobs_before_those_other_processes_left(
    tmp_path: Path,
) -> None:
    """A store with other users' jobs waiting (workers behind, or stopped): a program
    that ran one turn and ended learned from it only after every job before it, and not
    at all when those took more than the minute its exit waits."""
    store = store_of("sqlite", {}, tmp_path)
    assert isinstance(store, JobStore)
    waiting = 20
    for u in range(waiting):
        run = _run("a", f"u{u}", "turn")
        store.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))
    child = subprocess.run(
        [sys.executable, "-c", ONE_TURN, *child_args("sqlite", store, {})],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    (tea,) = store.list_memories(MemoryQuery(user_id="ava"))
    others = [store.list_memories(MemoryQuery(user_id=f"u{u}")) for u in range(waiting)]
    assert tea.created_at is not None
    assert all(m.created_at is not None and tea.created_at < m.created_at for (m,) in others)
    assert store.list_jobs() == []  # the others too, before the program ended
    store.close()


# One turn in a `with store:` block, for each of five users (the store opens again
# when used), then the program ends: argv as OPEN_STORE's.
CLOSED_AFTER_EACH_TURN = OPEN_STORE + textwrap.dedent(
    """
    def fn(messages, tools):
        if (messages[0].content or "").startswith("You maintain the long-term memory"):
            return json.dumps({"operations": [
                {"op": "add", "id": None, "memory": "User likes tea", "topics": []}]})
        return "Noted."

    for user in range(5):
        with store:
            agent = Agent(FunctionModel(fn), db=store, user_id=f"u{user}", agent_id="a",
                          enable_user_memories=True)
            agent.run("I like tea.")
    """
)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "redis", "mongo"])
def test_a_program_that_closes_its_store_after_its_last_turn_learns_from_it(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    """The store closed while the turn's job was starting: on PostgreSQL the job's claim
    found the pool closed (a warning, the job left for another process); on Redis the
    claim's connection was closed under it, the job left running for a lease, unsaid; on
    MongoDB the client was closed under the job ("Cannot use MongoClient after close").
    (Each turn's close races with its job's claim: five make a miss unlikely.)"""
    store = store_of(kind, servers, tmp_path)
    assert isinstance(store, JobStore)
    child = subprocess.run(
        [sys.executable, "-c", CLOSED_AFTER_EACH_TURN, *child_args(kind, store, servers)],
        env={**os.environ, "PYTHONPATH": SRC},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    # no warning either, but what the test servers' MongoDB protocol says of its indexes
    said = [line for line in child.stderr.splitlines() if "cannot index _id" not in line]
    assert not said, child.stderr
    assert [texts(store, f"u{user}") for user in range(5)] == [["User likes tea"]] * 5
    assert store.list_jobs() == []
    store.close()


def failing_manager(calls: list[int]) -> FunctionModel:
    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if is_manager(messages):
            calls.append(1)
            raise ModelError("the model is down")
        return "Noted."

    return FunctionModel(fn)


def test_a_failed_job_keeps_its_error_is_retried_then_kept_as_failed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db_file = tmp_path / "failing.db"
    calls: list[int] = []
    with SqliteDb(db_file) as db:
        agent = Agent(failing_manager(calls), db=db, user_id="ava", enable_user_memories=True)
        worker = job_worker(agent)
        assert worker is not None
        worker.max_attempts = 2
        agent.run("I like tea")
        assert agent.wait_for_memories(timeout=10)  # a job waiting for its retry is not waited for
        (job,) = db.list_jobs()
        assert (job.status, job.attempts, job.error) == ("pending", 1, "the model is down")
        assert job.due_at > now_micros() + 3_000_000  # backoff: not before a few seconds
        # an operator's retry: due now, with a new budget of attempts (one, here)
        assert main(["jobs", "retry", job.job_id, "--db", str(db_file)]) == 0
        worker.max_attempts = 1
        asyncio.run(worker.drain())
        (job,) = db.list_jobs(status="failed")
        assert (job.attempts, job.error) == (1, "the model is down")
        assert len(calls) == 2
        asyncio.run(worker.drain())  # a failed job is kept, not run again
        assert len(calls) == 2
    capsys.readouterr()
    assert main(["jobs", "list", "--json", "--db", str(db_file)]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["status"] == "failed" and listed["error"] == "the model is down"
    assert listed["age_s"] >= 0 and listed["user_id"] == "ava"
    assert main(["jobs", "list", "--db", str(db_file)]) == 0
    assert "the model is down" in capsys.readouterr().out
    assert main(["jobs", "drop", job.job_id, "--db", str(db_file)]) == 0
    assert main(["jobs", "drop", job.job_id, "--db", str(db_file)]) == 1
    with SqliteDb(db_file) as db:
        assert db.list_jobs() == []
        assert [s.run_count for s in db.list_sessions("ava")] == [1]  # the run itself stays


def test_the_admin_sees_and_retries_jobs_over_rest(tmp_path: Path) -> None:
    key = "jobs-admin-key-0123456789abcdef0123456789"
    calls: list[int] = []
    with SqliteDb(tmp_path / "rest.db") as db:
        agent = Agent(
            failing_manager(calls), db=db, agent_id="a", user_id="ava", enable_user_memories=True
        )
        agent.run("I like tea")
        agent.wait_for_memories(timeout=10)
        with LocalClient(create_app(db, api_key=key)) as client:
            admin = {"Authorization": f"Bearer {key}"}
            listed = client.get("/jobs", headers=admin)
            assert listed.status_code == 200, listed.text
            (job,) = listed.json()["data"]
            assert job["error"] == "the model is down" and job["attempts"] == 1
            assert job["due_in_s"] > 0
            token = client.post("/tokens", json={"user_id": "ava"}, headers=admin).json()["token"]
            user = {"Authorization": f"Bearer {token}"}
            assert client.get("/jobs", headers=user).status_code == 403
            assert client.delete(f"/jobs/{job['job_id']}", headers=user).status_code == 403
            assert client.get("/jobs", params={"status": "late"}, headers=admin).status_code == 422
            retried = client.post(f"/jobs/{job['job_id']}/retry", headers=admin)
            assert retried.status_code == 204
            (again,) = client.get("/jobs", headers=admin).json()["data"]
            assert again["due_in_s"] == 0 and again["attempts"] == 0
            assert client.delete(f"/jobs/{job['job_id']}", headers=admin).status_code == 204
            assert client.delete(f"/jobs/{job['job_id']}", headers=admin).status_code == 404
            assert client.get("/jobs", headers=admin).json()["data"] == []


def test_a_worker_holds_its_job_while_the_model_takes_longer_than_the_lease(
    jobs_store: MemoryStore,
) -> None:
    assert isinstance(jobs_store, JobStore)
    calls: list[int] = []

    async def slow(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if is_manager(messages):
            calls.append(1)
            await asyncio.sleep(1.0)
            op = {"op": "add", "id": None, "memory": "User likes tea", "topics": []}
            return json.dumps({"operations": [op]})
        return "Noted."

    agent = Agent(FunctionModel(slow), db=jobs_store, user_id="ava", enable_user_memories=True)
    worker = job_worker(agent)
    assert worker is not None
    worker.lease = 0.3
    agent.run("I like tea")
    time.sleep(0.7)  # more than twice the lease, while the model is still thinking
    assert jobs_store.claim_job("intruder", 60) is None
    (held,) = jobs_store.list_jobs()
    assert held.status == "running" and held.owner == worker.owner
    assert agent.wait_for_memories(timeout=30)
    assert texts(jobs_store, "ava") == ["User likes tea"]
    assert calls == [1]


@pytest.mark.parametrize("option", [["--lease", "0"], ["--lease", "-5"], ["--poll", "-1"]])
def test_a_worker_needs_positive_seconds(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["worker", "--config", "noted.toml", *option])
    assert exited.value.code == 2
    assert f"must be a positive number of seconds, got '{option[1]}'" in capsys.readouterr().err


def test_noted_worker_leaves_the_signals_as_it_found_them(tmp_path: Path) -> None:
    """Stopped by SIGTERM, the worker command returns with SIGINT and SIGTERM handled as
    before it ran (in a process of its own it makes no difference; run in-process, Ctrl-C
    would otherwise only set an event nobody waits on)."""
    from noted.models import register_provider

    register_provider("workersignals", lambda model_id: FunctionModel(lambda m, t: "ok"))
    config = tmp_path / "noted.toml"
    config.write_text('[agent]\nmodel = "workersignals:x"\nmemory = "auto"\n')
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    timer = threading.Timer(0.5, signal.pthread_kill, (main_thread, signal.SIGTERM))
    timer.start()
    try:
        argv = ["worker", "--config", str(config), "--db", str(tmp_path / "w.db"), "--poll", "0.1"]
        assert main(argv) == 0
    finally:
        timer.cancel()
    assert {s: signal.getsignal(s) for s in before} == before


def test_jobs_retry_and_drop_report_every_id_and_answer_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``noted jobs retry A B`` retried the jobs before the first missing id and stopped
    there, and retry and drop printed text under --json: each now does every job it finds
    and names the missing ones (status 1), as ``noted sessions delete`` does."""
    db_file = tmp_path / "jobs.db"
    with SqliteDb(db_file) as db:
        for session in ("s1", "s2"):
            agent = Agent(
                failing_manager([]),
                db=db,
                user_id="ava",
                session_id=session,
                enable_user_memories=True,
            )
            worker = job_worker(agent)
            assert worker is not None
            worker.max_attempts = 1
            agent.run("I like tea")
            assert agent.wait_for_memories(timeout=10)
        first, second = (job.job_id for job in db.list_jobs(status="failed"))
    capsys.readouterr()
    argv = ["jobs", "retry", first, "nope", second, "--db", str(db_file)]
    assert main([*argv, "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"retried": 2, "not_found": ["nope"]}
    assert captured.err == "error: no job that is waiting or failed with id 'nope'\n"
    with SqliteDb(db_file) as db:
        assert [job.status for job in db.list_jobs()] == ["pending", "pending"]
    assert main(argv) == 1
    assert capsys.readouterr().out == "2 job(s) due again\n"
    argv = ["jobs", "drop", "nope", first, "gone", "--db", str(db_file)]
    assert main([*argv, "--json"]) == 1
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {"dropped": 1, "not_found": ["nope", "gone"]}
    assert captured.err == "error: no job with id 'nope', 'gone'\n"
    assert main(["jobs", "drop", second, "--db", str(db_file)]) == 0
    assert capsys.readouterr().out == "1 job(s) dropped\n"
