"""The agent's own overhead per run: noted's Agent against Agno's Agent, same machine, same run.

    make bench        (or: scripts/uv.sh run --group bench python benchmarks/agent.py)
    .venv/bin/python benchmarks/agent.py --no-agno      (noted only; Agno is never imported)

Everything but the model is measured: the model answers every request at once with a fixed
short text and token usage (noted: ``FunctionModel``; Agno: the scripted ``Model`` subclass
below; no network on either side). Each configuration and mode gets a fresh SQLite file and a
session that already holds ``--history`` runs (made by running the agent, not timed), with the
last 3 runs as history in context and the same instructions. Then ``--runs`` runs are timed one
by one after a few warm-up runs; each includes reading the history and saving the run to
SQLite. Modes: sync ``run``, sync ``run(stream=True)`` consumed to the end, and ``await arun``
inside one event loop.

Agno runs twice: configured like noted, and with its automatic memory on
(``update_memory_on_run=True``; Agno 3.1.10 has no ``enable_user_memories``), the setting of
the 15-18 ms per run measured for Agno before. Its memory manager then makes one more model
call per run, which the scripted model answers with plain text (no tool call), so no memory is
ever written. Agno's telemetry is off; any network use (DNS lookup or connect) fails the
benchmark.

noted also runs with its run's memory job recorded ("noted + job recorded"): automatic memory
on, memories not in context, the job written with the run and left to other workers (nothing
runs in the background), so the row differs from "noted" by the job's insert only. Its target:
<= 0.3 ms more per ``run()`` than noted's median.

noted runs with automatic memory on and the user's memories in context ("noted + memory",
the like-for-like row beside "agno + memory"), with and without the default embedder, for a
user with no memories and with ``--memories`` (10,000) varied facts (the embedder's stored
vectors are random unit vectors tagged with its model, as in search.py: the work of a
search is the same). Each run selects memories for the prompt (the query embedded, with
the embedder) and records its memory job; the agent's in-process worker runs the job after
``run`` returns (its manager answered with no change, so nothing is written), between the
timed runs or during them (its CPU time counts in the row's cpu/run). The backlog left by
the session's first runs is drained before the timed ones. These rows time ``run()`` only.

noted also runs with tracing on ("noted + tracing"): ``noted.tracing.instrument`` with an
OpenTelemetry SDK tracer provider whose spans go to an in-memory exporter through a simple
(synchronous) span processor, so the cost of making, filling and exporting every span of the
run is inside the timed run. Its target: <= 0.5 ms more per run than noted's median, in each
mode. (The plain "noted" row is tracing off: one check per hook.)

noted, noted + job recorded and noted + tracing take turns in blocks of 20 timed runs
(tracing turned on and off between blocks, the order flipped every block), so a change in the
machine's load falls on all three alike; the other configurations are timed one after the
other. Beside the wall-clock times, each row shows the CPU time the whole process used per
run (all threads: the caller's, noted's loop thread, the worker threads), the median over
blocks, which a busy machine disturbs far less.

Prints median, p95 and CPU time per configuration and mode, the ratio Agno/noted, the time
tracing and the recorded job add, whether noted meets its targets (<= 5 ms median per sync
run; tracing <= 0.5 ms more per run in each mode; the job recorded <= 0.3 ms more per
``run()``), and writes benchmarks/results/agent.json.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import os
import platform
import re
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from timing import Timing

from noted import Agent, Memory, SqliteDb
from noted.agent.jobs import leave_jobs_to_workers
from noted.db.base import MemoryQuery
from noted.models.types import Message, ToolDefinition
from noted.testing import FunctionModel

RESULTS = Path(__file__).parent / "results"
USER_ID = "bench-user"
REPLY = "Noted. Anything else I can help you with?"
MEMORY_REPLY = "No memory changes are needed."
INSTRUCTIONS = ["You are a helpful assistant.", "Answer in one short sentence."]
NUM_HISTORY_RUNS = 3
WARMUP = 5
THINGS = ["skiing", "chess", "jazz", "ramen", "Lisbon", "running", "pottery", "sailing"]
MODES = {"run": "run()", "stream": "run(stream=True)", "arun": "await arun()"}
BLOCK = 20  # timed runs per turn when configurations take turns

# noted's target on this machine: median seconds per sync run(), from the Agent issue.
TARGET_S = 5e-3
# What tracing on (in-memory exporter) may add to the median run, from the tracing issue.
TRACING_TARGET_S = 0.5e-3
TRACED = "noted + tracing"
# What recording the run's memory job may add to the median run, from the jobs issue.
JOB_TARGET_S = 0.3e-3
JOBBED = "noted + job recorded"
MANAGER_REPLY = json.dumps({"operations": []})


class BenchmarkError(AssertionError):
    """A side did not do what the benchmark expects (wrong history, lost runs, network)."""


def message(i: int) -> str:
    return f"Message {i}: tell me one thing about {THINGS[i % len(THINGS)]}."


# -- no network ----------------------------------------------------------------------------


class NetworkGuard:
    """Records, and refuses, every DNS lookup and every connect to an internet address."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def install(self) -> None:
        guard = self
        real_connect = socket.socket.connect
        real_connect_ex = socket.socket.connect_ex

        def refuse(what: str) -> OSError:
            guard.attempts.append(what)
            return OSError(f"network use is not allowed in this benchmark: {what}")

        def connect(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                raise refuse(f"connect {address!r}")
            real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                raise refuse(f"connect {address!r}")
            return real_connect_ex(sock, address)

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            raise refuse(f"getaddrinfo {host!r}:{port!r}")

        socket.socket.connect = connect  # type: ignore[method-assign,assignment]
        socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
        socket.getaddrinfo = getaddrinfo

    def check(self) -> None:
        if self.attempts:
            shown = "; ".join(self.attempts[:5])
            raise BenchmarkError(f"{len(self.attempts)} network attempt(s): {shown}")


# -- the sides behind one small shape ------------------------------------------------------


class Side(Protocol):
    def enter(self) -> None: ...
    def run(self, text: str) -> None: ...
    def stream(self, text: str) -> None: ...
    def arun(self, text: str) -> Awaitable[None]: ...
    def check(self, inputs: list[str]) -> None: ...
    def close(self) -> None: ...


def expect(condition: bool, what: str) -> None:
    if not condition:
        raise BenchmarkError(what)


def check_request(side: str, roles: list[str], contents: list[Any], inputs: list[str]) -> None:
    """The last request: the system prompt (with the instructions), the last 3 earlier runs
    (user + assistant), the new message; nothing else."""
    earlier = inputs[-1 - NUM_HISTORY_RUNS : -1]
    expected_roles = ["system"] + ["user", "assistant"] * NUM_HISTORY_RUNS + ["user"]
    expect(roles == expected_roles, f"{side}: last request roles {roles}, want {expected_roles}")
    expect(
        all(line in str(contents[0]) for line in INSTRUCTIONS),
        f"{side}: system prompt {contents[0]!r} lacks the instructions",
    )
    expect(
        contents[1:-1:2] == earlier and contents[-1] == inputs[-1],
        f"{side}: last request's user messages {contents[1::2]}, want {[*earlier, inputs[-1]]}",
    )
    expect(
        contents[2:-1:2] == [REPLY] * NUM_HISTORY_RUNS,
        f"{side}: last request's assistant messages {contents[2:-1:2]}",
    )


class AgentSide:
    """The three ways each side is driven; ``agent`` is noted's or Agno's agent."""

    agent: Any

    def enter(self) -> None:
        """Make this side's settings the current ones, before each of its turns."""

    def run(self, text: str) -> None:
        self.agent.run(text)

    def stream(self, text: str) -> None:
        for _event in self.agent.run(text, stream=True):
            pass

    async def arun(self, text: str) -> None:
        await self.agent.arun(text)


class NotedSide(AgentSide):
    def __init__(self, path: Path, session_id: str) -> None:
        self.model = FunctionModel(lambda messages, tools: REPLY)
        self.db = SqliteDb(path)
        self.session_id = session_id
        self.agent = Agent(
            self.model,
            db=self.db,
            user_id=USER_ID,
            session_id=session_id,
            add_history_to_context=True,
            num_history_runs=NUM_HISTORY_RUNS,
            instructions=INSTRUCTIONS,
            **self.options(),
        )

    def options(self) -> dict[str, Any]:
        """The Agent's memory settings (none: memory off)."""
        return {}

    def enter(self) -> None:
        from noted import tracing

        tracing.uninstrument()  # tracing off: each hook is one check

    def check(self, inputs: list[str]) -> None:
        runs = self.db.get_runs(self.session_id, USER_ID)
        expect(
            [run.input for run in runs] == inputs,
            f"noted: the session holds {len(runs)} runs, want {len(inputs)} in order",
        )
        expect(
            all(run.status == "completed" and run.content == REPLY for run in runs),
            "noted: a run failed or has the wrong answer",
        )
        expect(self.model.call_count == len(inputs), f"noted: {self.model.call_count} calls")
        last = self.model.requests[-1].messages
        check_request("noted", [m.role for m in last], [m.content for m in last], inputs)
        expect(last[0].content == self.agent.system_prompt(), "noted: wrong system prompt")

    def close(self) -> None:
        self.db.close()


class TracedNotedSide(NotedSide):
    """noted with tracing on: every span made, filled and handed to an in-memory exporter."""

    def __init__(self, path: Path, session_id: str) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from noted import tracing

        super().__init__(path, session_id)
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        tracing.instrument(tracer_provider=self.provider)

    def enter(self) -> None:
        from noted import tracing

        tracing.instrument(tracer_provider=self.provider)

    def check(self, inputs: list[str]) -> None:
        super().check(inputs)
        names = [span.name for span in self.exporter.get_finished_spans()]
        runs = names.count("Agent.run")
        expect(runs == len(inputs), f"{TRACED}: {runs} run spans for {len(inputs)} runs")
        expect(names.count("model call") == runs, f"{TRACED}: model call spans missing")

    def close(self) -> None:
        from noted import tracing

        tracing.uninstrument()
        super().close()


class JobNotedSide(NotedSide):
    """noted with its memory job recorded with each run and left to other workers."""

    def __init__(self, path: Path, session_id: str) -> None:
        super().__init__(path, session_id)
        leave_jobs_to_workers(self.agent)

    def options(self) -> dict[str, Any]:
        return {"enable_user_memories": True, "add_memories_to_context": False}

    def check(self, inputs: list[str]) -> None:
        super().check(inputs)
        pending = self.db.unfinished_jobs()
        expect(pending == len(inputs), f"{JOBBED}: {pending} jobs for {len(inputs)} runs")


def is_manager(messages: list[Message]) -> bool:
    return (messages[0].content or "").startswith("You maintain the long-term memory")


def seeded(workdir: Path, memories: int, embedder: bool) -> Path | None:
    """A SQLite file holding ``memories`` facts of the user (vectors too, with the
    embedder), made once and copied for each side; None for no memories."""
    if memories == 0:
        return None
    template = workdir / f"seed-{memories}-{int(embedder)}.db"
    if template.exists():
        return template
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from search import fill_random_vectors

    from noted.retrieval import default_embedder
    from user_facts import user_facts

    with SqliteDb(template) as db:
        Memory(db=db, embedder=None).add_user_memories(user_facts(memories, seed=18), USER_ID)
        if embedder:
            fill_random_vectors(db, USER_ID, default_embedder().model_name, 1)
    return template


class MemoryNotedSide(NotedSide):
    """noted with automatic memory on and the user's memories in context; the manager
    (run by the agent's in-process worker after each run) answers with no change."""

    def __init__(self, path: Path, session_id: str, template: Path | None, embedder: bool) -> None:
        if template is not None:
            shutil.copyfile(template, path)
        self.manager = FunctionModel(self.manage)
        self.embedder = embedder
        super().__init__(path, session_id)
        self.seeded = self.db.count_memories(MemoryQuery(user_id=USER_ID))

    def options(self) -> dict[str, Any]:
        extra = {} if self.embedder else {"embedder": None}
        memory = Memory(db=self.db, model=self.manager, **extra)
        return {"memory": memory, "enable_user_memories": True, "add_memories_to_context": True}

    @staticmethod
    def manage(messages: list[Message], tools: list[ToolDefinition]) -> str:
        expect(is_manager(messages), "noted + memory: a manager call without its prompt")
        return MANAGER_REPLY

    def settle(self) -> None:
        expect(self.agent.wait_for_memories(timeout=600), "noted + memory: jobs left")

    def check(self, inputs: list[str]) -> None:
        self.settle()
        runs = self.db.get_runs(self.session_id, USER_ID)
        expect([run.input for run in runs] == inputs, "noted + memory: runs lost")
        expect(self.model.call_count == len(inputs), f"noted: {self.model.call_count} calls")
        expect(
            self.manager.call_count == len(inputs),
            f"noted + memory: {self.manager.call_count} manager calls for {len(inputs)} runs",
        )
        last = self.model.requests[-1].messages
        check_request("noted + memory", [m.role for m in last], [m.content for m in last], inputs)
        shown = "<memories_from_previous_interactions>" in (last[0].content or "")
        expect(shown == bool(self.seeded), "noted + memory: memories in context or not")
        count = self.db.count_memories(MemoryQuery(user_id=USER_ID))
        expect(count == self.seeded, f"noted + memory: {count} memories, {self.seeded} seeded")
        expect(self.db.list_jobs() == [], "noted + memory: jobs left")


def memory_row(embedder: bool, memories: int) -> str:
    return f"noted + memory{' + embedder' if embedder else ''}, {memories:,} mem."


def tracing_available() -> bool:
    try:
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError:
        return False
    return True


_PIECES = re.compile(r"\S+\s*")


def agno_side_class() -> Callable[[Path, str, bool], Side]:
    """Agno's side, defined only when asked for, so ``--no-agno`` never imports Agno."""
    os.environ["AGNO_TELEMETRY"] = "false"
    from agno.agent import Agent as AgnoAgent
    from agno.db.sqlite import SqliteDb as AgnoSqliteDb
    from agno.metrics import MessageMetrics
    from agno.models.base import Model
    from agno.models.response import ModelResponse

    for name in ("agno", "agno-team", "agno-workflow"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    class Tally:
        """What the scripted model was asked. Agno's memory manager deep-copies the model
        before each call; the copies share this one tally."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.main_calls = 0
            self.memory_calls = 0
            self.last_main: list[tuple[str, Any]] = []

        def __deepcopy__(self, memo: dict[int, Any]) -> Tally:
            return self

        def record(self, messages: list[Any], tools: Any) -> str:
            with self.lock:
                if tools:  # only the memory manager offers tools here
                    self.memory_calls += 1
                    return MEMORY_REPLY
                self.main_calls += 1
                self.last_main = [(m.role, m.content) for m in messages]
                return REPLY

    def usage(messages: list[Any], text: str) -> Any:
        prompt = sum(4 + len(str(m.content or "")) // 4 for m in messages)
        answer = (len(text) + 3) // 4
        return MessageMetrics(
            input_tokens=prompt, output_tokens=answer, total_tokens=prompt + answer
        )

    @dataclass
    class ScriptedAgnoModel(Model):
        """Answers every request at once with a fixed text and token usage: REPLY to the
        agent, MEMORY_REPLY (plain text, no tool call) to the memory manager."""

        id: str = "scripted"
        name: str = "Scripted"
        provider: str = "scripted"
        tally: Tally = field(default_factory=Tally)

        def _answer(self, messages: list[Any], tools: Any) -> dict[str, Any]:
            text = self.tally.record(messages, tools)
            return {"text": text, "usage": usage(messages, text)}

        def invoke(self, messages: list[Any], assistant_message: Any, **kwargs: Any) -> Any:
            assistant_message.metrics.start_timer()
            answer = self._answer(messages, kwargs.get("tools"))
            assistant_message.metrics.stop_timer()
            return self._parse_provider_response(answer)

        async def ainvoke(self, messages: list[Any], assistant_message: Any, **kwargs: Any) -> Any:
            return self.invoke(messages, assistant_message, **kwargs)

        def invoke_stream(self, messages: list[Any], assistant_message: Any, **kwargs: Any) -> Any:
            assistant_message.metrics.start_timer()
            answer = self._answer(messages, kwargs.get("tools"))
            for piece in _PIECES.findall(answer["text"]):
                yield self._parse_provider_response_delta({"text": piece})
            yield self._parse_provider_response_delta({"usage": answer["usage"]})
            assistant_message.metrics.stop_timer()

        async def ainvoke_stream(
            self, messages: list[Any], assistant_message: Any, **kwargs: Any
        ) -> Any:
            for delta in self.invoke_stream(messages, assistant_message, **kwargs):
                yield delta

        def _parse_provider_response(self, response: Any, **kwargs: Any) -> Any:
            return ModelResponse(
                role="assistant", content=response["text"], response_usage=response["usage"]
            )

        def _parse_provider_response_delta(self, response: Any) -> Any:
            return ModelResponse(content=response.get("text"), response_usage=response.get("usage"))

    class AgnoSide(AgentSide):
        def __init__(self, path: Path, session_id: str, memory: bool) -> None:
            self.model = ScriptedAgnoModel()
            self.db = AgnoSqliteDb(db_file=str(path))
            self.memory = memory
            self.session_id = session_id
            self.agent = AgnoAgent(
                model=self.model,
                db=self.db,
                user_id=USER_ID,
                session_id=session_id,
                add_history_to_context=True,
                num_history_runs=NUM_HISTORY_RUNS,
                instructions=INSTRUCTIONS,
                update_memory_on_run=memory,
                telemetry=False,
            )

        def check(self, inputs: list[str]) -> None:
            label = "agno + memory" if self.memory else "agno"
            session = self.agent.get_session(session_id=self.session_id, user_id=USER_ID)
            runs = (session.runs or []) if session is not None else []
            expect(
                [run.input.input_content for run in runs] == inputs,  # type: ignore[union-attr]
                f"{label}: the session holds {len(runs)} runs, want {len(inputs)} in order",
            )
            expect(all(run.content == REPLY for run in runs), f"{label}: a wrong answer")
            tally = self.model.tally
            expect(tally.main_calls == len(inputs), f"{label}: {tally.main_calls} agent calls")
            expect(
                tally.memory_calls == (len(inputs) if self.memory else 0),
                f"{label}: {tally.memory_calls} memory manager calls",
            )
            memories = self.db.get_user_memories(user_id=USER_ID)
            expect(not memories, f"{label}: {len(memories)} memories were written")
            roles = [role for role, _ in tally.last_main]
            contents = [content for _, content in tally.last_main]
            check_request(label, roles, contents, inputs)

        def close(self) -> None:
            self.db.close()

    return AgnoSide


# -- measuring -----------------------------------------------------------------------------


@dataclass
class Measured:
    """A configuration's timed runs in one mode: wall-clock seconds per run, and the CPU
    seconds per run of each block (all the process's threads: the caller's, noted's loop
    thread, the worker threads), which a busy machine disturbs far less."""

    wall: Timing = field(default_factory=Timing)
    cpu_blocks: list[float] = field(default_factory=list)

    @property
    def cpu(self) -> float:
        return statistics.median(self.cpu_blocks)


def measure(
    makes: dict[str, Callable[[Path, str], Side]],
    workdir: Path,
    mode: str,
    runs: int,
    history: int,
) -> dict[str, Measured]:
    """Each configuration gets a fresh file and session with ``history`` runs made first, then
    warm-up runs (the background work they leave finished) and ``runs`` timed runs.
    Configurations measured together take turns in blocks of BLOCK timed runs, the order
    flipped every block."""
    inputs = [message(i) for i in range(history + WARMUP + runs)]
    warm, timed = inputs[history : history + WARMUP], inputs[history + WARMUP :]
    sides: dict[str, Side] = {}
    for i, (name, make) in enumerate(makes.items()):
        side = make(workdir / f"{mode}-{i}.db", f"session-{mode}")
        side.enter()
        for text in inputs[:history]:
            side.run(text)
        sides[name] = side
    timings = {name: Measured() for name in sides}
    turns = [
        (list(sides) if b % 2 == 0 else list(sides)[::-1], timed[start : start + BLOCK])
        for b, start in enumerate(range(0, len(timed), BLOCK))
    ]
    if mode == "arun":

        async def loop() -> None:
            for side in sides.values():
                side.enter()
                for text in warm:
                    await side.arun(text)
                await asyncio.to_thread(settle, side)
            for order, block in turns:
                for name in order:
                    side, samples = sides[name], timings[name].wall.samples
                    side.enter()
                    gc.collect()
                    cpu = time.process_time()
                    for text in block:
                        start = time.perf_counter()
                        await side.arun(text)
                        samples.append(time.perf_counter() - start)
                    timings[name].cpu_blocks.append((time.process_time() - cpu) / len(block))

        asyncio.run(loop())
    else:
        for side in sides.values():
            side.enter()
            for text in warm:
                (side.run if mode == "run" else side.stream)(text)
            settle(side)
        for order, block in turns:
            for name in order:
                side, samples = sides[name], timings[name].wall.samples
                once = side.run if mode == "run" else side.stream
                side.enter()
                gc.collect()
                cpu = time.process_time()
                for text in block:
                    start = time.perf_counter()
                    once(text)
                    samples.append(time.perf_counter() - start)
                timings[name].cpu_blocks.append((time.process_time() - cpu) / len(block))
    for side in sides.values():
        side.check(inputs)
        side.close()
    return timings


def settle(side: Side) -> None:
    """Let a side finish the background work its first runs left (noted + memory)."""
    finish = getattr(side, "settle", None)
    if finish is not None:
        finish()


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f} ms"


def extra_target(
    measured: dict[str, dict[str, Measured]],
    name: str,
    target: float,
    label: str,
    how: str,
    modes: tuple[str, ...],
) -> dict[str, Any]:
    """What row ``name`` adds to noted's median in each of ``modes``, against its target
    (printed)."""
    extras = {
        mode: measured[name][mode].wall.median - measured["noted"][mode].wall.median
        for mode in modes
    }
    met = all(extra <= target for extra in extras.values())
    shown = "; ".join(
        f"{MODES[mode]} {extra * 1e3:+.3f} ms {'MET' if extra <= target else 'MISSED'}"
        for mode, extra in extras.items()
    )
    per = "per run, each mode" if len(modes) > 1 else f"per {MODES[modes[0]]}"
    print(f"target {label} <= +{target * 1e3:g} ms {per}{how}: {shown}")
    what = f"{name} median minus noted median, in {', '.join(MODES[mode] for mode in modes)}"
    return {"what": what, "target_s": target, "extra_s": extras, "met": met}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed runs per mode")
    parser.add_argument("--history", type=int, default=100, help="runs in the session first")
    parser.add_argument("--no-agno", action="store_true", help="measure noted only")
    parser.add_argument("--no-tracing", action="store_true", help="skip noted + tracing")
    parser.add_argument("--no-jobs", action="store_true", help="skip noted + job recorded")
    parser.add_argument(
        "--memories", type=int, default=10_000, help="the user's memories in the large rows"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the noted + memory rows")
    parser.add_argument("--output", type=Path, default=RESULTS / "agent.json", help="JSON report")
    args = parser.parse_args()
    if args.runs < 1 or args.history < NUM_HISTORY_RUNS:
        parser.error(f"--runs must be >= 1 and --history >= {NUM_HISTORY_RUNS}")
    logging.disable(logging.WARNING)
    guard = NetworkGuard()
    guard.install()

    # each group is measured alone; the sides of one group take turns in blocks of BLOCK runs
    first: dict[str, Callable[[Path, str], Side]] = {"noted": NotedSide}
    if not args.no_jobs:
        first[JOBBED] = JobNotedSide
    traced = not args.no_tracing and tracing_available()
    if traced:
        first[TRACED] = TracedNotedSide
    groups: list[tuple[dict[str, Callable[[Path, str], Side]], tuple[str, ...]]] = [
        (first, tuple(MODES))
    ]
    if not args.no_agno:
        agno_side = agno_side_class()
        groups.append(
            ({"agno": lambda path, session: agno_side(path, session, False)}, tuple(MODES))
        )
        groups.append(
            ({"agno + memory": lambda path, session: agno_side(path, session, True)}, tuple(MODES))
        )

    measured: dict[str, dict[str, Measured]] = {}
    with tempfile.TemporaryDirectory() as seeds:
        if not args.no_memory:
            for embedder in (False, True):
                for size in (0, args.memories):
                    template = seeded(Path(seeds), size, embedder)
                    make = functools.partial(MemoryNotedSide, template=template, embedder=embedder)
                    groups.append(({memory_row(embedder, size): make}, ("run",)))
        for makes, group_modes in groups:
            for mode in group_modes:
                with tempfile.TemporaryDirectory() as tmp:
                    timings = measure(makes, Path(tmp), mode, args.runs, args.history)
                for name, found in timings.items():
                    measured.setdefault(name, {})[mode] = found
    guard.check()

    noted = measured["noted"]
    header = (
        f"{'configuration':48} {'median':>11} {'p95':>11} {'cpu/run':>11} {'vs noted':>11}"
        f" {'cpu vs noted':>13}"
    )
    print(
        f"{args.runs} timed runs per row, after {WARMUP} warm-up runs, on a session of "
        f"{args.history} runs; {NUM_HISTORY_RUNS} runs of history in context\n"
    )
    print(header)
    print("-" * len(header))
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "agno": None if args.no_agno else metadata.version("agno"),
        "runs": args.runs,
        "history": args.history,
        "warmup": WARMUP,
        "num_history_runs": NUM_HISTORY_RUNS,
        "configurations": {},
    }
    for name, modes in measured.items():
        entry: dict[str, Any] = {}
        for mode, found in modes.items():
            timing = found.wall
            label = f"{name}  {MODES[mode]}"
            line = f"{label:48} {fmt(timing.median):>11} {fmt(timing.p95):>11} {fmt(found.cpu):>11}"
            row: dict[str, Any] = {
                "median_s": timing.median,
                "p95_s": timing.p95,
                "cpu_s": found.cpu,
            }
            if name in (TRACED, JOBBED):
                extra = timing.median - noted[mode].wall.median
                cpu_extra = found.cpu - noted[mode].cpu
                line += f" {extra * 1e3:+8.3f} ms {cpu_extra * 1e3:+10.3f} ms"
                row["extra_s"] = extra
                row["cpu_extra_s"] = cpu_extra
            elif name != "noted":
                ratio = timing.median / noted[mode].wall.median
                line += f" {ratio:10.1f}x"
                row["ratio_to_noted"] = ratio
            print(line)
            entry[mode] = row
        report["configurations"][name] = entry
    met = noted["run"].wall.median <= TARGET_S
    report["target"] = {"what": "noted run() median", "target_s": TARGET_S, "met": met}
    print(f"\ntarget <= {TARGET_S * 1e3:g} ms median (noted run()): {'MET' if met else 'MISSED'}")
    if traced:
        report["tracing_target"] = extra_target(
            measured, TRACED, TRACING_TARGET_S, "tracing", " (in-memory exporter)", tuple(MODES)
        )
    if JOBBED in measured:
        report["job_target"] = extra_target(
            measured, JOBBED, JOB_TARGET_S, "job recorded", "", ("run",)
        )
    like = memory_row(False, 0)
    if "agno + memory" in measured and like in measured:
        ratio = measured["agno + memory"]["run"].wall.median / measured[like]["run"].wall.median
        report["memory_ratio"] = {"what": f"agno + memory run() / {like} run()", "ratio": ratio}
        print(f"agno + memory / {like}, run(): {ratio:.1f}x")
    notes = [
        "Everything but the model is timed: the model answers at once, with no network.",
        f"cpu/run: the median over blocks of {BLOCK} runs of the CPU time the whole process "
        "used per run (all threads, the in-process memory worker's included).",
        "'agno + memory' (update_memory_on_run=True) calls its memory manager inside the run "
        "(answered with plain text). 'noted + memory' records the run's memory job with the "
        "run and selects the user's memories for the prompt inside it; its manager call "
        "(answered with no change) runs in the agent's in-process worker after run() "
        "returns, so a timed run may share the machine with an earlier run's job.",
    ]
    if args.no_memory:
        notes.append("noted + memory not measured (--no-memory).")
    if args.no_agno:
        notes.append("Agno not measured (--no-agno).")
    if not traced:
        notes.append("noted + tracing not measured (--no-tracing, or noted[tracing] missing).")
    for note in notes:
        print(f"note: {note}")
    report["notes"] = notes
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
