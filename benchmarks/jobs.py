"""Background jobs: what recording them costs a run, and how many workers get through.

    scripts/uv.sh run python benchmarks/jobs.py                 (both parts)
    scripts/uv.sh run python benchmarks/jobs.py --part run      (the run's cost only)

Part "run": the agent's run on a SQLite file with an instant scripted model, memories read
into context either way; once without background work (the run is stored alone) and once
with automatic memory whose jobs are recorded with the run (left to other workers, so
nothing else runs meanwhile). Both without an embedder: with one, each run's embedding of
its question (tens of milliseconds here) would hide what the store does. The difference
of the medians is what recording the jobs adds to a run.

Part "workers": PostgreSQL (started here as the tests start it, or ``--pg URL``), 1,000
memory jobs of 50 users recorded first, then 1, 2 and 4 worker processes (each a
``JobWorker`` with an instant scripted manager) started at once; jobs per second from the
start signal to the last job done.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from timing import Timing

from noted import Agent, Memory, SqliteDb
from noted.agent.jobs import leave_jobs_to_workers
from noted.db.jobs import jobs_for_run
from noted.models.types import Message
from noted.sessions import RunResult
from noted.testing import FunctionModel

SRC = str(Path(__file__).resolve().parents[1] / "src")
_names = itertools.count(1)


def instant(messages: list[Message], tools: object) -> str:
    if (messages[0].content or "").startswith("You maintain the long-term memory"):
        said = (messages[-1].content or "").split("<conversation>")[1][:60].strip()
        op = {"op": "add", "id": None, "memory": f"User said {said}", "topics": []}
        return json.dumps({"operations": [op]})
    return "Noted."


def open_run_store(workdir: Path, pg: str | None) -> Any:
    n = next(_names)
    if pg is None:
        return SqliteDb(workdir / f"run{n}.db")
    from noted.db.postgres import PostgresDb

    return PostgresDb(pg, memory_table=f"r{n}_memories", session_table=f"r{n}_sessions")


def run_medians(workdir: Path, runs: int, pg: str | None) -> tuple[Timing, Timing]:
    """The run's time stored alone and stored with its job, the two agents taking turns
    (so a slower moment of a shared machine falls on both alike)."""
    agents = []
    for jobs in (False, True):
        store = open_run_store(workdir, pg)
        agent = Agent(
            FunctionModel(instant),
            db=store,
            memory=Memory(
                db=store, embedder=None
            ),  # the store's cost, not the question's embedding
            user_id="ava",
            enable_user_memories=jobs,
            add_memories_to_context=True,
        )
        if jobs:
            leave_jobs_to_workers(agent)
        for i in range(20):
            agent.run(f"warm-up message {i}")
        agents.append(agent)
    timings = (Timing(), Timing())
    for i in range(runs):
        for agent, timing in zip(agents, timings, strict=True):
            started = time.perf_counter()
            agent.run(f"message number {i} about skiing")
            timing.samples.append(time.perf_counter() - started)
    recorded = agents[1].db
    assert recorded.unfinished_jobs() == runs + 20, "every run recorded its job"
    for agent in agents:
        agent.db.close()
    return timings


WORKER = textwrap.dedent(
    """
    import asyncio, json, sys, threading
    sys.path.insert(0, sys.argv[1])
    from jobs import instant
    from noted import Agent
    from noted.agent.jobs import job_worker
    from noted.db.postgres import PostgresDb
    from noted.testing import FunctionModel

    store = PostgresDb(sys.argv[2], memory_table=sys.argv[3], session_table=sys.argv[4])
    agent = Agent(FunctionModel(instant), db=store, enable_user_memories=True)
    worker = job_worker(agent)
    store.unfinished_jobs()  # connected before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    print(asyncio.run(worker.until_done()), flush=True)
    """
)


def workers_throughput(url: str, workers: int, jobs: int, users: int) -> tuple[float, int]:
    from noted.db.postgres import PostgresDb

    n = next(_names)
    names = (f"j{n}_memories", f"j{n}_sessions")
    store = PostgresDb(url, memory_table=names[0], session_table=names[1])
    for i in range(jobs):
        user = f"user{i % users:02d}"
        run = RunResult(
            run_id=f"r{i}",
            session_id=f"s-{user}",
            user_id=user,
            input=f"turn {i}",
            content="Noted.",
            messages=[Message("user", f"turn {i}"), Message("assistant", "Noted.")],
        )
        store.append_run_with_jobs(run, jobs_for_run(run, memory=True, summary=False))
    here = str(Path(__file__).parent)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, here, url, *names],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={"PYTHONPATH": SRC},
        )
        for _ in range(workers)
    ]
    for p in processes:
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in processes:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = []
    for p in processes:
        out, _ = p.communicate(timeout=600)
        counts.append(int(out.strip() or 0))
    seconds = time.perf_counter() - started
    from noted.db.base import MemoryQuery

    total = sum(store.count_memories(MemoryQuery(user_id=f"user{u:02d}")) for u in range(users))
    store.close()
    assert sum(counts) == jobs, counts
    assert total == jobs, total
    return jobs / seconds, total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["run", "workers", "both"], default="both")
    parser.add_argument(
        "--run-on", choices=["sqlite", "postgres"], default="sqlite", help="part run's store"
    )
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--pg", help="a postgresql:// URL (default: start one here)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        server = None
        url = args.pg
        if url is None and (args.part != "run" or args.run_on == "postgres"):
            from servers import start_postgres

            server = start_postgres(workdir / "postgres")
            url = server.url
        try:
            if args.part in ("run", "both"):
                pg = url if args.run_on == "postgres" else None
                alone, recorded = run_medians(workdir, args.runs, pg)
                a, b = alone.median * 1e3, recorded.median * 1e3
                print(f"{args.run_on}: run median, run stored alone:         {a:.3f} ms")
                print(f"{args.run_on}: run median, run stored with its job:  {b:.3f} ms")
                print(f"{args.run_on}: difference: {b - a:+.3f} ms (target <= 0.3 ms)")
            if args.part in ("workers", "both"):
                assert url is not None
                for workers in (1, 2, 4):
                    rate, _ = workers_throughput(url, workers, args.jobs, args.users)
                    print(f"{workers} worker(s): {rate:.0f} jobs/s ({args.jobs} jobs)")
        finally:
            if server is not None:
                server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
