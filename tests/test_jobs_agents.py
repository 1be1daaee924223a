"""Background memory of several agents and processes on one store: each agent's updates of
a user take turns among themselves only, and ``wait_for_memories`` waits for the updates
of its own runs (given back and taken again included), not for other processes' work."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import BACKENDS, open_store
from noted import Agent
from noted.agent.jobs import leave_jobs_to_workers
from noted.db.base import MemoryQuery, MemoryStore, SessionStore
from noted.db.jobs import Job, JobStore, jobs_for_run
from noted.models.types import Message, ToolDefinition
from noted.testing import FunctionModel
from servers import Server
from test_jobs import PERSISTENT, _run, is_manager, remembering


@pytest.fixture(params=BACKENDS)
def any_store(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[MemoryStore]:
    store = open_store(request.param, servers, tmp_path)
    yield store
    store.close()


@pytest.fixture(params=PERSISTENT)
def jobs_store(
    request: pytest.FixtureRequest, servers: dict[str, Server | str], tmp_path: Path
) -> Iterator[MemoryStore]:
    store = open_store(request.param, servers, tmp_path)
    assert isinstance(store, JobStore)
    yield store
    store.close()


def memories_of(store: MemoryStore, user: str) -> list[tuple[str | None, str]]:
    """(agent, text) of each of the user's memories, oldest first."""
    query = MemoryQuery(user_id=user, sort_by="created_at", sort_order="asc")
    return [(m.agent_id, m.memory) for m in store.list_memories(query)]


def held_manager(release: threading.Event, asked: threading.Event) -> FunctionModel:
    """Answers "Noted."; as the memory manager, waits for ``release`` (setting ``asked``)
    before it adds "User said: <message>"."""

    async def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if not is_manager(messages):
            return "Noted."
        asked.set()
        await asyncio.to_thread(release.wait, 30)
        said = (messages[-1].content or "").split("user: ")[1].split("\n")[0].strip('"')
        op = {"op": "add", "id": None, "memory": f"User said: {said}", "topics": []}
        return json.dumps({"operations": [op]})

    return FunctionModel(fn)


def test_an_agents_memory_does_not_wait_for_another_agents_unfinished_update(
    any_store: MemoryStore,
) -> None:
    """Agent one's update of ava's memories is held (a worker of a process that died holds
    its job for the lease; in one process, a model call that takes long): agent two's
    updates of ava waited behind it, its wait_for_memories ran out, its memories came
    only once agent one's update was done (never, with no worker of agent one left)."""
    store = any_store
    release, asked = threading.Event(), threading.Event()
    one = Agent(
        held_manager(release, asked),
        db=store,
        user_id="ava",
        agent_id="one",
        enable_user_memories=True,
    )
    if isinstance(store, JobStore):
        leave_jobs_to_workers(one)
        one.run("I like tea")
        held = store.claim_job("dead-worker", lease=600, agent_id="one")
        assert held is not None and held.agent_id == "one"
    else:
        one.run("I like tea")
        assert asked.wait(10)  # its update is under way, held in the model call
    two = Agent(remembering(), db=store, user_id="ava", agent_id="two", enable_user_memories=True)
    try:
        two.run("I ski")
        two.run("I live in Oslo")
        assert two.wait_for_memories(timeout=8)
        assert memories_of(store, "ava") == [
            ("two", "User said: I ski"),
            ("two", "User said: I live in Oslo"),
        ]
    finally:
        release.set()
    if not isinstance(store, JobStore):
        assert one.wait_for_memories(timeout=10)
        assert ("one", "User said: I like tea") in memories_of(store, "ava")


def test_one_agents_memory_jobs_keep_their_order_and_a_sessions_summaries_theirs(
    jobs_store: MemoryStore,
) -> None:
    """Ordering is per user and agent for memory jobs, per session for summary jobs
    (whichever agent's runs they follow)."""
    store = jobs_store
    assert isinstance(store, JobStore)
    ids: dict[tuple[str, str], Job] = {}
    for agent, text in (("one", "a"), ("one", "b"), ("two", "c"), ("two", "d")):
        run = _run(agent, "ava", text)
        jobs = jobs_for_run(run, memory=True, summary=True)
        store.append_run_with_jobs(run, jobs)
        for job in jobs:
            ids[(job.kind, text)] = job
    first = store.claim_job("w", 600)
    assert first is not None and first.job_id == ids[("memory", "a")].job_id
    # agent one's next memory job waits for "a"; the session's summaries start in order,
    # and agent two's memory jobs start beside agent one's
    second = store.claim_job("w", 600)
    assert second is not None and second.job_id == ids[("summary", "a")].job_id
    third = store.claim_job("w", 600)
    assert third is not None and third.job_id == ids[("memory", "c")].job_id
    assert store.claim_job("w", 600) is None
    assert store.claim_job("w", 600, agent_id="two") is None  # "d" waits for "c"
    assert store.complete_job(third, lambda: None)[0]
    fourth = store.claim_job("w", 600, agent_id="two")
    assert fourth is not None and fourth.job_id == ids[("memory", "d")].job_id
    assert store.complete_job(second, lambda: None)[0]
    fifth = store.claim_job("w", 600, agent_id="two")  # the session's summary of "b" first
    assert fifth is None
    sixth = store.claim_job("w", 600)
    assert sixth is not None and sixth.job_id == ids[("summary", "b")].job_id


def test_a_wait_is_for_this_agents_own_runs_not_other_processes_jobs(
    jobs_store: MemoryStore,
) -> None:
    """Another process of the same agent died holding a job of another user: the wait of
    a program that ran one turn ran out waiting for it, though its own memory was in."""
    store = jobs_store
    assert isinstance(store, JobStore)
    run = _run("a", "bob", "I like tea")
    store.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))
    assert store.claim_job("dead-worker", lease=600) is not None
    agent = Agent(remembering(), db=store, user_id="ava", agent_id="a", enable_user_memories=True)
    agent.run("I ski")
    started = time.monotonic()
    assert agent.wait_for_memories(timeout=8)
    assert time.monotonic() - started < 5
    assert memories_of(store, "ava") == [("a", "User said: I ski")]
    assert [job.user_id for job in store.list_jobs()] == ["bob"]  # still the dead one's


def test_a_wait_does_not_end_while_a_job_given_back_is_still_to_run(
    jobs_store: MemoryStore,
) -> None:
    """A job whose worker was stopped is given back, due again at once: the wait took it
    for done (it counted only jobs never tried) and returned before its memory was in."""
    store = jobs_store
    assert isinstance(store, JobStore)
    agent = Agent(remembering(), db=store, user_id="ava", agent_id="a", enable_user_memories=True)
    leave_jobs_to_workers(agent)  # a dedicated worker runs them, once it is back
    agent.run("I ski")
    job = store.claim_job("stopped-worker", lease=600)
    assert job is not None
    store.fail_job(job, "stopped before it finished", 0.0)  # given back
    assert not agent.wait_for_memories(timeout=0.5)
    kicker = agent._jobs
    assert kicker is not None
    kicker.enabled = True  # the worker is back: this process's own
    assert agent.wait_for_memories(timeout=10)
    assert memories_of(store, "ava") == [("a", "User said: I ski")]
    assert store.list_jobs() == []


def test_the_store_tells_which_of_some_jobs_are_queued_and_which_still_to_run(
    jobs_store: MemoryStore,
) -> None:
    store = jobs_store
    assert isinstance(store, JobStore)
    ids = {}
    for user in ("done", "running", "given-back", "retry-later", "failed", "first"):
        run = _run("a", user, "turn")
        (job,) = jobs_for_run(run, memory=True, summary=False)
        store.append_run_with_jobs(run, [job])
        ids[user] = job.job_id
    claimed = {}
    for _ in range(5):
        job = store.claim_job("w", 600)
        assert job is not None
        claimed[job.user_id] = job
    assert store.complete_job(claimed["done"], lambda: None)[0]
    store.fail_job(claimed["given-back"], "stopped before it finished", 0.0)
    store.fail_job(claimed["retry-later"], "model down", 600)
    store.fail_job(claimed["failed"], "model down for good", None)
    assert store.queued_among([*ids.values(), "no-such-job"]) == {
        ids["running"]: True,
        ids["given-back"]: True,
        ids["retry-later"]: False,
        ids["first"]: True,
    }
    assert store.queued_among([]) == {}
    assert store.unfinished_jobs() == 3
    assert store.retry_job(ids["retry-later"])
    assert store.queued_among([ids["retry-later"]]) == {ids["retry-later"]: True}


def summarizing(during: Callable[[], None] = lambda: None) -> FunctionModel:
    """Answers "Noted."; as the summarizer, calls ``during`` first and then summarizes
    the turns it is shown."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if "running summary" not in (messages[0].content or ""):
            return "Noted."
        during()
        said = (messages[-1].content or "").split("<conversation>")[1].split("</conversation>")
        return json.dumps({"summary": "Said: " + said[0].strip(), "topics": ["talk"]})

    return FunctionModel(fn)


def summarized(store: MemoryStore, user: str, text: str, model: FunctionModel) -> Agent:
    """An agent summarizing ``user``'s session "s1", after a run of ``text`` whose jobs
    are left waiting."""
    agent = Agent(model, db=store, user_id=user, session_id="s1", enable_session_summaries=True)
    leave_jobs_to_workers(agent)
    agent.run(text)
    return agent


def let_run(agent: Agent) -> None:
    assert agent._jobs is not None
    agent._jobs.enabled = True


def test_a_summary_job_of_a_session_now_another_users_ends_quietly(
    jobs_store: MemoryStore,
) -> None:
    """Ava's session deleted, then begun again by Bob under its id, before her summary job
    ran: the job failed on Bob's session five times over a minute ("session 's1' belongs
    to another user"), and his own summary waited behind it (76 s on SQLite), then stayed
    as a failed job. It now ends with nothing written, and Bob's summary follows at once."""
    assert isinstance(jobs_store, JobStore) and isinstance(jobs_store, SessionStore)
    ava = summarized(jobs_store, "ava", "my PIN is 1234", summarizing())
    assert jobs_store.delete_session("s1", "ava")
    bob = summarized(jobs_store, "bob", "hello from bob", summarizing())
    let_run(ava)
    let_run(bob)
    started = time.monotonic()
    assert ava.wait_for_memories(timeout=30) and bob.wait_for_memories(timeout=30)
    assert time.monotonic() - started < 10
    assert jobs_store.list_jobs(status=None) == []
    summary = jobs_store.get_session_summary("s1", "bob")
    assert summary is not None and "hello from bob" in summary.summary
    assert "PIN" not in summary.summary and summary.run_count == 1


def test_a_summary_whose_session_another_user_took_while_it_was_written_is_dropped(
    jobs_store: MemoryStore,
) -> None:
    """The session is deleted and begun again by Bob while Ava's summary is being
    written: her summary is not written on his session, and her job ends (it failed at
    each attempt, and stayed failed)."""
    assert isinstance(jobs_store, JobStore) and isinstance(jobs_store, SessionStore)
    store = jobs_store

    def taken_by_bob() -> None:
        if store.get_session_summary("s1", "ava") is None and store.delete_session("s1", "ava"):
            bob = _run("a", "bob", "hello from bob")
            bob.session_id = "s1"
            assert store.append_run(bob)

    ava = summarized(store, "ava", "my PIN is 1234", summarizing(taken_by_bob))
    let_run(ava)
    assert ava.wait_for_memories(timeout=30)
    assert store.list_jobs(status=None) == []
    assert store.get_session_summary("s1", "bob") is None
    assert [r.input for r in store.get_runs("s1", "bob")] == ["hello from bob"]
