"""An agent's run when the turn before it taught the agent a fact, on a user of 10,000 memories.

    scripts/uv.sh run --group bench python benchmarks/learning_turns.py
    scripts/uv.sh run --group bench python benchmarks/learning_turns.py --stores redis

An Agent with automatic memory, the user's memories in its prompt and the default embedder
answers 30 messages; after each one the memory manager (a scripted model) adds one fact,
in the background as by default. Between two messages the script waits, untimed, for that
work to finish, as a user reads the answer before typing the next one. What is timed is
each ``run()``: its memory selection must see the fact just learned, so it embeds the new
memory and loads the user's vectors (and, on the in-process store and Redis, the user's
search snapshot) unless the background work already did. The stored vectors are random unit
vectors tagged with the model's name, as in search.py. Each figure is the median (and 95th
percentile) of the 30 runs after two warm-up runs, with the process's CPU time per run (the
background work included) and the load average. Writes benchmarks/results/learning_turns.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from search import fill_random_vectors, question
from timing import Timing

from noted import Agent, InMemoryDb, Memory, SqliteDb
from noted.db.redisdb import RedisDb
from noted.models import ToolDefinition
from noted.models.types import Message
from noted.retrieval import default_embedder
from noted.testing import FunctionModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from user_facts import user_facts

RESULTS = Path(__file__).parent / "results"
MEMORIES = 10_000
RUNS = 30
WARM_UP = 2


def open_store(kind: str, folder: Path, stack: ExitStack) -> SqliteDb | InMemoryDb | RedisDb:
    if kind == "sqlite":
        return stack.enter_context(SqliteDb(folder / "learning.db"))
    if kind == "in-process":
        return InMemoryDb()
    from servers import start_redis

    server = start_redis(folder / "redis")
    stack.callback(server.stop)
    return RedisDb(server.url)


def manager_reply(messages: list[Message], tools: list[ToolDefinition]) -> str:
    """One new fact per turn, from the turn's message."""
    prompt = messages[-1].content or ""
    said = prompt.split("<conversation>")[1].split("</conversation>")[0].strip()
    fact = f"The user mentioned: {said.splitlines()[0][:80]}"
    return json.dumps({"operations": [{"op": "add", "id": None, "memory": fact, "topics": []}]})


def measure(kind: str, folder: Path, memories: int, runs: int) -> dict[str, Any]:
    with ExitStack() as stack:
        store = open_store(kind, folder, stack)
        Memory(db=store, embedder=None).add_user_memories(user_facts(memories, seed=18), "u")
        fill_random_vectors(store, "u", default_embedder().model_name, 1)
        memory = Memory(db=store, model=FunctionModel(manager_reply))
        agent = Agent(
            FunctionModel(lambda messages, tools: "Noted."),
            db=store,
            memory=memory,
            user_id="u",
            enable_user_memories=True,
        )
        timing, cpu = Timing(), 0.0
        for i in range(WARM_UP + runs):
            start, started = time.perf_counter(), time.process_time()
            agent.run(f"{question(i)} ({i})")
            elapsed = time.perf_counter() - start
            if not agent.wait_for_memories(timeout=600):
                raise SystemExit(f"{kind}: the memory work did not finish")
            if i >= WARM_UP:
                timing.samples.append(elapsed)
                cpu += time.process_time() - started
        learned = memory.count_user_memories("u") - memories
        if learned != WARM_UP + runs:
            raise SystemExit(f"{kind}: {learned} facts learned in {WARM_UP + runs} turns")
        return {
            "run_ms_p50": timing.median * 1e3,
            "run_ms_p95": timing.p95 * 1e3,
            "cpu_ms_per_turn": cpu / runs * 1e3,
            "load": os.getloadavg()[0],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stores", default="sqlite,in-process", help="sqlite,in-process,redis")
    parser.add_argument("--memories", type=int, default=MEMORIES, help="the user's memories")
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs per store")
    parser.add_argument("--output", type=Path, default=RESULTS / "learning_turns.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in args.stores.split(","):
            row = results[kind] = measure(kind.strip(), Path(folder), args.memories, args.runs)
            print(
                f"{kind:<11} run() after a turn that taught a fact, {args.memories:,} memories: "
                f"p50 {row['run_ms_p50']:7.2f} ms  p95 {row['run_ms_p95']:7.2f} ms  "
                f"CPU {row['cpu_ms_per_turn']:6.2f} ms/turn  load {row['load']:4.1f}",
                flush=True,
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
