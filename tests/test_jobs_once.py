"""A job's effects exactly once on every persistent store: a worker that dies after its
batch was written (or part-way through it, where a store writes change by change) leaves
nothing that its retry writes, or removes, a second time."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from conftest import server_url
from noted import Agent, Memory, SqliteDb, UserMemory
from noted._time import now_micros
from noted.agent.jobs import JobWorker, job_worker
from noted.audit import AuditContext
from noted.db.base import MemoryQuery, MemoryStore, WriteBatch
from noted.db.jobs import Job, JobStore, derived_id, jobs_for_run
from noted.models.types import Message, ToolDefinition
from noted.testing import FunctionModel
from servers import Server
from test_jobs import PERSISTENT, _run, is_manager, store_of

REPLIES = {
    "I like tea": [{"op": "add", "id": None, "memory": "User likes tea", "topics": []}],
    "Forget all that. I live in Rome": [
        {"op": "clear", "id": None, "memory": None, "topics": []},
        {"op": "add", "id": None, "memory": "User lives in Rome", "topics": []},
    ],
    "I ski": [{"op": "add", "id": None, "memory": "User skis", "topics": []}],
}


def scripted(calls: list[str]) -> FunctionModel:
    """The manager's plan for each turn of REPLIES (clearing on "Forget all that")."""

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        assert is_manager(messages)
        chat = (messages[-1].content or "").split("<conversation>")[1]
        said = chat.strip().splitlines()[0].removeprefix("user: ").strip('"').rstrip(".")
        calls.append(said)
        return json.dumps({"operations": REPLIES[said]})

    return FunctionModel(fn)


class Died(BaseException):
    """The worker's process ends here (nothing in the worker catches it)."""


def crashing(cls: type[Any], where: str) -> type[Any]:
    """``cls`` whose worker dies right after a batch is written ("after"), or part-way
    through one, before its adds ("inside": stores that write change by change)."""

    def write_batch(self: Any, batch: WriteBatch, *, audit: AuditContext | None = None) -> Any:
        written = super(sub, self).write_batch(batch, audit=audit)
        if where == "after":
            raise Died
        return written

    def upsert_memories(self: Any, memories: Any, *, audit: AuditContext | None = None) -> None:
        if where == "inside" and audit is not None and audit.actor == "manager":
            raise Died
        super(sub, self).upsert_memories(memories, audit=audit)

    sub = type(f"Crashing{cls.__name__}", (cls,), {})
    sub.write_batch = write_batch  # type: ignore[attr-defined]
    sub.upsert_memories = upsert_memories  # type: ignore[attr-defined]
    return sub


def reopen(
    kind: str, store: MemoryStore, servers: dict[str, Server | str], cls: type[Any]
) -> MemoryStore:
    """A second object of class ``cls`` on the tables of ``store`` (another process's)."""
    names = {"memory_table": store.memory_table, "session_table": store.session_table}  # type: ignore[attr-defined]
    if kind == "sqlite":
        opened: MemoryStore = cls(store.db_file, **names)  # type: ignore[attr-defined]
    elif kind == "mongo":
        opened = cls(server_url(servers, kind), database="noted_tests", **names)
    else:
        opened = cls(server_url(servers, kind), **names)
    return opened


def worker_on(store: MemoryStore, model: FunctionModel, lease: float) -> JobWorker:
    memory = Memory(db=store, embedder=None, clear_memories=True)
    agent = Agent(model, db=store, memory=memory, agent_id="a", enable_user_memories=True)
    worker = job_worker(agent)
    assert worker is not None
    worker.lease = lease
    return worker


def record(store: MemoryStore, text: str) -> str:
    assert isinstance(store, JobStore)
    run = _run("a", "ava", text)
    (job,) = jobs_for_run(run, memory=True, summary=False)
    store.append_run_with_jobs(run, [job])
    return job.job_id


CASES = [(kind, "after") for kind in PERSISTENT] + [("mongo", "inside"), ("sqlite", "inside")]


@pytest.mark.parametrize(("kind", "where"), CASES)
def test_a_worker_dying_with_its_batch_written_changes_nothing_twice(
    kind: str, where: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    store = store_of(kind, servers, tmp_path)
    assert isinstance(store, JobStore)
    calls: list[str] = []
    healthy = worker_on(store, scripted(calls), lease=60)
    record(store, "I like tea")
    assert asyncio.run(healthy.drain()) == 1
    (tea,) = store.list_memories(MemoryQuery(user_id="ava"))

    clearing = record(store, "Forget all that. I live in Rome.")
    record(store, "I ski.")  # a later job of the same user
    dying = reopen(kind, store, servers, crashing(type(store), where))
    with pytest.raises(Died):
        asyncio.run(worker_on(dying, scripted(calls), lease=0.2).drain())
    # SQLite and PostgreSQL roll the batch back with the job's completion; Redis wrote
    # both in one MULTI/EXEC; MongoDB wrote the batch (or part of it) and not the other
    left = [m.memory for m in store.list_memories(MemoryQuery(user_id="ava"))]
    rolled_back = left == ["User likes tea"]
    assert rolled_back == (kind in ("sqlite", "postgres")), left
    # meanwhile, the user adds a memory through the API
    Memory(db=store, embedder=None).add_user_memory(UserMemory("User has a cat"), "ava")
    time.sleep(0.3)  # the dead worker's lease runs out
    asyncio.run(healthy.until_done())

    kept = store.list_memories(MemoryQuery(user_id="ava"))
    # the cat stays unless the only clear that was written came after it
    expected = ["User lives in Rome", "User skis"] + ([] if rolled_back else ["User has a cat"])
    assert Counter(m.memory for m in kept) == Counter(expected)
    rome = next(m for m in kept if m.memory == "User lives in Rome")
    assert rome.memory_id == derived_id(clearing, 1)
    assert [e.event for e in store.get_memory_history(rome.memory_id, "ava")] == ["add"]
    assert tea.memory_id is not None
    assert [e.event for e in store.get_memory_history(tea.memory_id, "ava")] == [
        "add",
        "delete",
    ]
    # one model call per job: the retry applied the stored plan
    assert calls == ["I like tea", "Forget all that. I live in Rome", "I ski"]
    assert store.list_jobs() == []
    dying.close()
    store.close()


def test_a_clear_in_another_store_than_the_jobs_keeps_what_was_added_since(
    tmp_path: Path,
) -> None:
    """Memories in one SQLite file, jobs in another: no shared transaction, so the retry
    takes the path MongoDB takes."""
    jobs = SqliteDb(tmp_path / "jobs.db")
    memories = SqliteDb(tmp_path / "memories.db")
    assert not jobs.completes_with(memories) and jobs.completes_with(jobs)
    calls: list[str] = []

    def worker(db: MemoryStore, lease: float) -> JobWorker:
        memory = Memory(db=db, embedder=None, clear_memories=True)
        agent = Agent(scripted(calls), db=jobs, memory=memory, enable_user_memories=True)
        found = job_worker(agent)
        assert found is not None
        found.lease = lease
        found.agent_id = "a"
        return found

    record(jobs, "I like tea")
    asyncio.run(worker(memories, 60).drain())
    record(jobs, "Forget all that. I live in Rome.")
    dying = crashing(SqliteDb, "after")(tmp_path / "memories.db")
    with pytest.raises(Died):
        asyncio.run(worker(dying, 0.2).drain())
    Memory(db=memories, embedder=None).add_user_memory(UserMemory("User has a cat"), "ava")
    time.sleep(0.3)
    asyncio.run(worker(memories, 60).until_done())
    assert sorted(m.memory for m in memories.list_memories(MemoryQuery(user_id="ava"))) == [
        "User has a cat",
        "User lives in Rome",
    ]
    assert jobs.list_jobs() == []
    for db in (jobs, memories, dying):
        db.close()


@pytest.mark.parametrize("kind", PERSISTENT)
def test_a_users_jobs_keep_the_order_they_were_recorded_in_whatever_the_hosts_clocks(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    store = store_of(kind, servers, tmp_path)
    assert isinstance(store, JobStore)
    recorded = []
    for text, skew in (("one", 60_000_000), ("two", 0)):  # the first host's clock is ahead
        run = _run("a", "ava", text)
        (job,) = jobs_for_run(run, memory=True, summary=False)
        job.due_at = now_micros()
        job.created_at = job.due_at + skew
        store.append_run_with_jobs(run, [job])
        recorded.append(job.job_id)
    first = store.claim_job("w", 60)
    assert first is not None and first.job_id == recorded[0]
    assert store.claim_job("w", 60) is None  # the second waits for the first
    assert [j.job_id for j in store.list_jobs()] == recorded
    store.close()


def stalling(cls: type[Any]) -> type[Any]:
    """``cls`` whose worker stalls (a paused process, a network partition) once it is
    about to set a session summary: every later call waits for ``go``, lease renewals
    included, so its lease runs out meanwhile."""

    class Stalling(cls):  # type: ignore[misc, valid-type]
        entered = threading.Event()
        go = threading.Event()

        def _write_summary(self, *args: Any) -> bool:
            self.entered.set()
            self.go.wait(10)
            return bool(super()._write_summary(*args))

        def renew_lease(self, job: Job, lease: float) -> bool:
            if self.entered.is_set():
                self.go.wait(10)
            return bool(super().renew_lease(job, lease))

    return Stalling


def summary_worker(store: MemoryStore, said: str, lease: float) -> JobWorker:
    """A worker of summary jobs whose model sums up a session as ``said``."""
    answer = json.dumps({"summary": said, "topics": []})
    agent = Agent(
        FunctionModel(lambda m, t: answer), db=store, agent_id="a", enable_session_summaries=True
    )
    worker = job_worker(agent)
    assert worker is not None
    worker.lease = lease
    return worker


def record_summary(store: MemoryStore, text: str) -> None:
    assert isinstance(store, JobStore)
    run = _run("a", "ava", text)
    store.append_run_with_jobs(run, jobs_for_run(run, memory=False, summary=True))


@pytest.mark.parametrize("kind", ["redis", "mongo"])
def test_a_stalled_worker_whose_summary_job_was_taken_over_keeps_the_newer_summary(
    kind: str, servers: dict[str, Server | str], tmp_path: Path
) -> None:
    """Redis sets a summary and deletes its job apart from one another: a worker stalled
    between its owner check and the write (its lease ran out, another worker applied the
    job and the session's next one) wrote its summary over the newer one."""
    store = store_of(kind, servers, tmp_path)
    assert isinstance(store, JobStore)
    stalled = reopen(kind, store, servers, stalling(type(store)))
    record_summary(store, "one")
    first = summary_worker(stalled, "the first run", lease=0.3)
    thread = threading.Thread(target=lambda: asyncio.run(first.drain()))
    thread.start()
    try:
        assert stalled.entered.wait(10)  # type: ignore[attr-defined]
        time.sleep(0.4)  # its lease runs out
        healthy = summary_worker(store, "both runs", lease=60)
        assert asyncio.run(healthy.until_done(timeout=10)) == 1  # the stored plan, once
        record_summary(store, "two")
        assert asyncio.run(healthy.until_done(timeout=10)) == 1
    finally:
        stalled.go.set()  # type: ignore[attr-defined]
        thread.join(10)
    summary = store.get_session_summary("s-ava", "ava")  # type: ignore[attr-defined]
    assert (summary.summary, summary.run_count) == ("both runs", 2)
    assert store.list_jobs() == []
    stalled.close()
    store.close()
