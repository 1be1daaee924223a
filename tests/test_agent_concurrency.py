"""An Agent under concurrency and over its lifetime: runs at once from threads and
coroutines, agents sharing a store, runs stopped part-way, background work at exit.

Races are made to happen every time: a model answers only once the calls it expects are all
in flight (or a short wait has passed), so work that should take turns shows it does, and
work that should not (the bug) meets the others at the worst moment."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import noted.agent.agent as agent_module
from noted import Agent, InMemoryDb, Memory, Message, SqliteDb
from noted._portal import background
from noted.agent.events import RunStarted
from noted.agent.jobs import leave_jobs_to_workers
from noted.memory.door import MemoryDoor
from noted.models import ModelResponse, ToolCall, ToolDefinition
from noted.testing import FunctionModel

MANAGER = "You maintain the long-term memory"
SUMMARIZER = "You keep a running summary"


class Gate:
    """Lets a caller through once ``count`` callers are inside, or after ``wait`` seconds
    (waiting without blocking the event loop the callers may share)."""

    def __init__(self, count: int, wait: float = 0.3) -> None:
        self.count = count
        self.wait = wait
        self.inside = 0
        self.most = 0  # the most callers inside at once
        self._lock = threading.Lock()

    async def __aenter__(self) -> Gate:
        with self._lock:
            self.inside += 1
            self.most = max(self.most, self.inside)
        deadline = time.monotonic() + self.wait
        while self.inside < self.count and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with self._lock:
            self.inside -= 1


def learner(gate: Gate, fact: Callable[[str], str] = lambda said: "User likes skiing") -> Callable:
    """A model that answers the agent at once, and as the memory manager adds ``fact``
    of what the user said unless it is among the memories it was shown (inside ``gate``),
    and as the summarizer counts the turns (inside ``gate`` too)."""

    async def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        system = messages[0].content or ""
        prompt = messages[-1].content or ""
        if system.startswith(MANAGER):
            async with gate:
                said = prompt.split("<conversation>")[1].split("</conversation>")[0]
                text = fact(said)
                shown = prompt.split("<existing_memories>")[1].split("</existing_memories>")[0]
                ops = [] if text in shown else [{"op": "add", "id": None, "memory": text}]
                return json.dumps({"operations": [{**op, "topics": []} for op in ops]})
        if system.startswith(SUMMARIZER):
            async with gate:
                turns = prompt.count("user: ")
                before = prompt.split("<summary>\n")[1].split("\n</summary>")[0]
                count = 0 if before == "(none yet)" else int(before.split()[0])
                return json.dumps({"summary": f"{count + turns} turns", "topics": []})
        return "Noted."

    return fn


def gated_writes(monkeypatch: pytest.MonkeyPatch, count: int, wait: float = 0.3) -> None:
    """The door's plan writes wait (on their worker threads) until ``count`` are at the
    door or a short while has passed: passes that do not take turns all look for stored
    facts before any of them writes."""
    real = MemoryDoor.apply
    inside = 0
    lock = threading.Condition()

    def apply(self: MemoryDoor, *args: Any, **kwargs: Any) -> Any:
        nonlocal inside
        with lock:
            inside += 1
            lock.notify_all()
            lock.wait_for(lambda: inside >= count, timeout=wait)
        try:
            return real(self, *args, **kwargs)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(MemoryDoor, "apply", apply)


def liked(conversation: str) -> str:
    """The fact of "I like X" in a conversation the manager is shown."""
    said = conversation.split("user: ")[1].split("\n", maxsplit=1)[0]
    return f"User likes {said.split()[-1]}"


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` on ``count`` threads started together; their results, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count
    errors: list[BaseException] = []

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except BaseException as exc:  # raised below, on the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]
    return results


def stored(memory: Memory, user: str = "ava") -> Counter[str]:
    return Counter(m.memory for m in memory.get_user_memories(user))


# -- memory work takes turns per user, across the agents of a store --------------------------


@pytest.mark.parametrize("background_memory", [True, False])
def test_agents_sharing_a_store_learn_a_fact_once(
    background_memory: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated_writes(monkeypatch, 4)
    gate = Gate(4)
    db = InMemoryDb()
    agents = [
        Agent(
            FunctionModel(learner(gate)),
            db=db,
            user_id="ava",
            enable_user_memories=True,
            background_memory=background_memory,
        )
        for _ in range(4)
    ]
    at_once(4, lambda i: agents[i].run("I like skiing"))
    for agent in agents:
        assert agent.wait_for_memories(timeout=20)
    assert stored(Memory(db=db)) == {"User likes skiing": 1}
    assert gate.most == 1  # the manager's passes for one user took turns


def test_a_memory_shared_by_agents_on_sqlite_learns_a_fact_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sessions in the agents' own InMemoryDb (so no jobs), memories in one SQLite file.
    gated_writes(monkeypatch, 3)
    gate = Gate(3)
    memory = Memory(db=SqliteDb(tmp_path / "m.db"), embedder=None)
    agents = [
        Agent(
            FunctionModel(learner(gate)),
            db=InMemoryDb(),
            memory=memory,
            user_id="ava",
            enable_user_memories=True,
        )
        for _ in range(3)
    ]
    at_once(3, lambda i: agents[i].run("I like skiing"))
    for agent in agents:
        assert agent.wait_for_memories(timeout=20)
    assert stored(memory) == {"User likes skiing": 1}
    assert gate.most == 1


def test_runs_at_once_of_one_agent_inline_learn_a_fact_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gated_writes(monkeypatch, 2, wait=1.0)
    gate = Gate(2, wait=1.0)
    agent = Agent(
        FunctionModel(learner(gate)),
        db=InMemoryDb(),
        user_id="ava",
        enable_user_memories=True,
        background_memory=False,
    )

    async def runs() -> None:
        await asyncio.gather(*(agent.arun("I like skiing") for _ in range(2)))

    asyncio.run(runs())
    assert stored(Memory(db=agent.db)) == {"User likes skiing": 1}
    assert gate.most == 1


def test_a_summary_never_goes_back_when_runs_of_a_session_end_together() -> None:
    # The runs end one after another; the summarizer answers the faster the more turns it
    # was shown, so updates not taking turns would end newest first, the oldest last.
    async def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        prompt = messages[-1].content or ""
        if (messages[0].content or "").startswith(SUMMARIZER):
            before = prompt.split("<summary>\n")[1].split("\n</summary>")[0]
            count = (0 if before == "(none yet)" else int(before.split()[0])) + prompt.count(
                "user: "
            )
            await asyncio.sleep(0.05 * (6 - count))
            return json.dumps({"summary": f"{count} turns", "topics": []})
        await asyncio.sleep(0.03 * int(prompt.split()[-1]))
        return "Noted."

    agent = Agent(
        FunctionModel(fn),
        db=InMemoryDb(),
        user_id="ava",
        session_id="s1",
        enable_session_summaries=True,
        add_history_to_context=False,
        background_memory=False,
    )
    at_once(6, lambda i: agent.run(f"turn {i}"))
    summary = agent.db.get_session_summary("s1", "ava")
    assert summary is not None
    assert (summary.summary, summary.run_count) == ("6 turns", 6)


def test_inline_memory_is_written_before_each_run_returns_on_sqlite(tmp_path: Path) -> None:
    # The runs' jobs take turns (one user): a run whose job waits behind another's still
    # returns only when its fact is written.
    gate = Gate(2)
    agent = Agent(
        FunctionModel(learner(gate, fact=liked)),
        db=SqliteDb(tmp_path / "m.db"),
        user_id="ava",
        enable_user_memories=True,
        background_memory=False,
    )

    def run(i: int) -> bool:
        agent.run(f"I like sport{i}")
        return f"User likes sport{i}" in stored(Memory(db=agent.db, embedder=None))

    assert at_once(3, run) == [True, True, True]


def test_first_runs_of_one_user_at_once_share_one_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = agent_module.new_session_id

    def slow_new_id() -> str:
        time.sleep(0.02)  # the moment between looking for the user's session and setting it
        return real()

    monkeypatch.setattr(agent_module, "new_session_id", slow_new_id)
    agent = Agent(FunctionModel(lambda messages, tools: "Hi."), db=InMemoryDb(), user_id="ava")
    results = at_once(6, lambda i: agent.run("hello"))
    assert len({r.session_id for r in results}) == 1
    assert len(agent.db.list_sessions("ava")) == 1


# -- runs stopped part-way --------------------------------------------------------------------


def test_a_stream_closed_after_it_started_is_saved_as_failed() -> None:
    agent = Agent(FunctionModel(lambda messages, tools: "Hi."), db=InMemoryDb(), session_id="s")
    stream = agent.run("hello", stream=True)
    first = next(stream)
    assert isinstance(first, RunStarted)
    stream.close()
    [run] = agent.db.get_runs("s", "default")
    assert run.status == "failed" and "cancelled" in (run.error or "")


def test_a_run_cancelled_before_the_model_is_asked_is_saved_as_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = Agent(FunctionModel(lambda messages, tools: "Hi."), db=InMemoryDb(), session_id="s")
    opening = agent._opening

    async def slow_opening(run: Any) -> Any:
        await asyncio.sleep(5)
        return await opening(run)

    monkeypatch.setattr(agent, "_opening", slow_opening)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(agent.arun("hello"), 0.05)

    asyncio.run(main())
    [run] = agent.db.get_runs("s", "default")
    assert run.status == "failed"


def test_a_run_answered_as_its_caller_gives_up_is_kept_and_learned_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = Gate(1)
    agent = Agent(
        FunctionModel(learner(gate)),
        db=InMemoryDb(),
        session_id="s",
        user_id="ava",
        enable_user_memories=True,
        background_memory=False,
    )
    keep = agent._keep

    async def slow_keep(run: Any, existing: bool) -> None:
        await asyncio.sleep(0.2)  # the caller's timeout falls here, after the answer
        await keep(run, existing)

    monkeypatch.setattr(agent, "_keep", slow_keep)

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(agent.arun("I like skiing"), 0.05)
        await asyncio.sleep(1.0)  # the kept run's work goes on meanwhile

    asyncio.run(main())
    assert agent.wait_for_memories(timeout=10)
    [run] = agent.db.get_runs("s", "ava")
    assert run.status == "completed"
    assert stored(Memory(db=agent.db)) == {"User likes skiing": 1}


def test_a_memory_job_stopped_with_its_run_is_given_back(tmp_path: Path) -> None:
    # Inline, on SQLite: the run times out during the manager's call; its job is due
    # again at once (not held for a lease), and the next run's memory work runs.
    slow = threading.Event()

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if (messages[0].content or "").startswith(MANAGER):
            if not slow.is_set():
                slow.set()
                time.sleep(0.5)
            fact = liked(messages[-1].content or "")
            return json.dumps({"operations": [{"op": "add", "id": None, "memory": fact}]})
        return "Noted."

    db = SqliteDb(tmp_path / "m.db")
    agent = Agent(
        FunctionModel(fn), db=db, user_id="ava", enable_user_memories=True, background_memory=False
    )

    async def first() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(agent.arun("I like tea"), 0.2)

    asyncio.run(first())
    assert [j.status for j in db.list_jobs(status=None)] == ["pending"]
    agent.run("I like coffee")
    assert agent.wait_for_memories(timeout=10)
    assert stored(Memory(db=db, embedder=None)) == {"User likes tea": 1, "User likes coffee": 1}
    assert db.list_jobs(status=None) == []


# -- waiting for background work --------------------------------------------------------------


def test_wait_for_memories_keeps_to_its_timeout(tmp_path: Path) -> None:
    # A job another agent object left (as a process that stopped after its run), and a
    # slow manager: the wait for a run's job, which follows it, runs it, and still returns
    # when its time is up.
    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        if (messages[0].content or "").startswith(MANAGER):
            time.sleep(2)
            return json.dumps({"operations": []})
        return "Noted."

    path = tmp_path / "m.db"
    left = Agent(FunctionModel(fn), db=SqliteDb(path), user_id="ava", enable_user_memories=True)
    leave_jobs_to_workers(left)
    left.run("I like tea")
    agent = Agent(FunctionModel(fn), db=SqliteDb(path), user_id="ava", enable_user_memories=True)
    agent.run("I ski")
    started = time.monotonic()
    assert agent.wait_for_memories(timeout=0.3) is False
    assert time.monotonic() - started < 1.0
    assert agent.wait_for_memories(timeout=10)


def test_a_job_that_fails_with_any_exception_is_retried_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> str:
        nonlocal calls
        if (messages[0].content or "").startswith(MANAGER):
            calls += 1
            if calls == 1:
                raise RuntimeError("a bug in a tool of the model's")
            return json.dumps(
                {"operations": [{"op": "add", "id": None, "memory": "User likes tea"}]}
            )
        return "Noted."

    db = SqliteDb(tmp_path / "m.db")
    agent = Agent(FunctionModel(fn), db=db, user_id="ava", enable_user_memories=True)
    with caplog.at_level(logging.ERROR, logger="noted.jobs"):
        agent.run("I like tea")
        assert agent.wait_for_memories(timeout=10)  # the failed job waits for its retry
    [job] = db.list_jobs(status=None)
    assert job.status == "pending" and "a bug" in (job.error or "")
    assert "failed (attempt 1)" in caplog.text
    assert db.retry_job(job.job_id)
    assert agent.wait_for_memories(timeout=10)
    assert stored(Memory(db=db, embedder=None)) == {"User likes tea": 1}


def test_background_work_left_at_exit_is_reported(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import noted._portal as portal

    monkeypatch.setattr(portal, "_EXIT_WAIT_S", 0.05)
    monkeypatch.setattr(portal, "_EXIT_QUIET_S", 0.02)
    left = background(asyncio.sleep(1))
    with caplog.at_level(logging.WARNING, logger="noted"):
        portal._drain_at_exit()
    assert "waiting up to 0 s for 1 background task(s)" in caplog.text
    assert "still running" in caplog.text
    assert left.cancelled()  # stopped, not left to run while the interpreter ends


def test_memory_tools_of_runs_at_once_add_a_fact_once(monkeypatch: pytest.MonkeyPatch) -> None:
    gated_writes(monkeypatch, 2)

    def fn(messages: list[Message], tools: list[ToolDefinition]) -> ModelResponse | str:
        if messages[-1].role == "user":
            call = ToolCall("add_memory", {"memory": "User likes skiing", "topics": []})
            return ModelResponse(tool_calls=[call])
        return "Noted."

    agent = Agent(FunctionModel(fn), db=InMemoryDb(), user_id="ava", enable_agentic_memory=True)

    async def runs() -> list[Any]:
        return await asyncio.gather(
            *(agent.arun("I like skiing", session_id=f"s{i}") for i in range(2))
        )

    results = asyncio.run(runs())
    assert stored(Memory(db=agent.db)) == {"User likes skiing": 1}
    said = sorted(r.tool_calls[0].result.split(":")[0] for r in results)
    assert said == ["Added memory [1]", "Not done"]
