"""CPU instructions of tracing's own work per run, counted by valgrind's callgrind in one
thread, so the count is the same every time (unlike benchmarks/agent_instructions.py, whose
whole runs move by about 1% with the scheduling of noted's threads).

    scripts/uv.sh run python benchmarks/tracing_instructions.py [--runs 200]

One process under ``valgrind --tool=callgrind`` builds the model request of
benchmarks/agent.py's runs (its system prompt, three earlier turns, the new message) and a
tracer provider with a simple span processor and an in-memory exporter, turns tracing on,
and then drives what tracing wraps in a run, with no agent, store or thread around it:
the run's events (``RunStarted``, the model call, ``RunCompleted``) through the agent-run
hook, the model call through the complete or stream hook (the stream's deltas folded into a
builder, as the agent does). Each case is ``--runs`` such runs, with tracing off and on,
and callgrind counts only the instructions inside each case (``--toggle-collect`` on the
call that runs it, a dump after each). Tracing's cost per run is on minus off.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import inspect
import json
import operator
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RESULTS = HERE / "results"
CASES = ("run_off", "run_on", "stream_off", "stream_on")
TOTAL = re.compile(r"^(?:summary|totals):\s*(\d+)", re.MULTILINE)


def child(runs: int) -> None:
    """The measured process: set-up, then each case once, inside ``operator.call``."""
    sys.path.insert(0, str(HERE))
    from agent import INSTRUCTIONS, NUM_HISTORY_RUNS, REPLY, message
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from noted import Agent, tracing
    from noted.agent.events import RunCompleted, RunStarted
    from noted.models.types import Message, ModelRequest, ResponseBuilder
    from noted.sessions import RunResult
    from noted.testing import FunctionModel
    from noted.tracing import _hooks

    model = FunctionModel(lambda messages, tools: REPLY)
    agent = Agent(model, instructions=INSTRUCTIONS)
    messages = [Message("system", agent.system_prompt())]
    for i in range(NUM_HISTORY_RUNS):
        messages += [Message("user", message(i)), Message("assistant", REPLY)]
    messages.append(Message("user", message(NUM_HISTORY_RUNS)))
    request = ModelRequest(messages=messages)
    result = RunResult(
        run_id="run_0123456789abcdef0123456789abcdef",
        session_id="session",
        user_id="user",
        input=message(NUM_HISTORY_RUNS),
        model=model.id,
        content=REPLY,
    )
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.instrument(tracer_provider=provider)
    spans = _hooks.active
    takes_builder = "answer" in inspect.signature(_hooks.stream).parameters
    # earlier code's hook took the run's message, user and session rather than the run
    takes_run = "run" in inspect.signature(_hooks.agent_run).parameters
    run_hook: Any = _hooks.agent_run
    opened = (result,) if takes_run else (result.input, "user", "session")

    async def events(stream: bool) -> AsyncIterator[object]:
        yield RunStarted(result.run_id, "session", "user")
        if stream:
            builder = ResponseBuilder()
            hook: Any = _hooks.stream  # earlier code's hook took no builder: counted too
            deltas = hook(model, request, "agent", *((builder,) if takes_builder else ()))
            async for delta in deltas:
                builder.add(delta)
            builder.build()
        else:
            await _hooks.complete(model, request, "agent")
        yield RunCompleted(result)

    async def many(stream: bool) -> None:
        for _ in range(runs):
            async for _event in run_hook(agent, *opened, events(stream)):
                pass

    loop = asyncio.new_event_loop()

    def case(name: str) -> Callable[[], None]:
        def run() -> None:
            _hooks.active = spans if name.endswith("_on") else None
            loop.run_until_complete(many(name.startswith("stream")))
            exporter.clear()

        return run

    for name in CASES:  # warm up
        case(name)()
    for name in CASES:
        gc.collect()
        gc.freeze()  # the set-up's objects stay out of the collections counted
        operator.call(case(name))
    tracing.uninstrument()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per case")
    parser.add_argument("--output", type=Path, default=RESULTS / "tracing_instructions.json")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=_operator_call",
            "--dump-after=_operator_call",
            f"--callgrind-out-file={tmp}/cg.out",
            sys.executable,
            __file__,
            "--child",
            str(args.runs),
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        dumps = sorted(Path(tmp).glob("cg.out.*"), key=lambda p: int(p.suffix[1:]))
        counts = []
        for dump in dumps:
            found = TOTAL.search(dump.read_text())
            if found is None:
                raise RuntimeError(f"no instruction total in {dump.name}")
            counts.append(int(found.group(1)) / args.runs)
    if len(counts) != len(CASES):
        raise RuntimeError(f"{len(counts)} callgrind dumps for {len(CASES)} cases")
    per_run = dict(zip(CASES, counts, strict=True))
    report: dict[str, dict[str, float]] = {}
    print(f"{'mode':18} {'tracing off':>14} {'tracing on':>14} {'tracing adds':>14}")
    for mode, label in (("run", "complete"), ("stream", "stream")):
        off, on = per_run[f"{mode}_off"], per_run[f"{mode}_on"]
        report[mode] = {"off": off, "on": on, "tracing": on - off}
        print(f"{label:18} {off / 1e3:12.1f} k {on / 1e3:12.1f} k {(on - off) / 1e3:12.1f} k")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"runs": args.runs, "modes": report}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
