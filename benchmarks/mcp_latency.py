"""MCP tool-call latency: search and add over stdio and streamable HTTP, beside the REST API.

    scripts/uv.sh run python benchmarks/mcp_latency.py [--memories 1000] [--calls 500]

One user gets ``--memories`` short facts (embedded with the local model) in a SQLite file.
Three real processes then serve that file on this machine: ``noted mcp`` (stdio, spawned
by the MCP SDK's client), ``noted mcp --http`` and ``noted serve`` (the REST API), each
with the local embedder, on 127.0.0.1 with free ports. One client at a time calls each,
one request after another (after a warm-up):

- search: ``search_memories`` with a query from a fixed list, limit 10, keyword and hybrid
  (the default), and the same search as ``GET /memories?search_content=...``; the
  server keeps the embeddings of the last queries it was asked, so hybrid is measured
  again with a new query each call (its embedding included);
- add: ``add_memory`` with a new fact, and ``POST /memories``.

Latency is measured at the client, from the call to its parsed answer. Prints p50 and p99
per transport and operation, the server process's CPU time per call (from /proc: what a
call costs whatever else the machine runs), the ratios MCP / REST, the load average, and
the target: search p50 <= 5 ms over stdio (hybrid, a new query each call). Writes
benchmarks/results/mcp.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from noted import Memory, SqliteDb, UserMemory

RESULTS = Path(__file__).parent / "results"
NOTED = str(Path(sys.executable).parent / "noted")
USER = "bench"
TARGET_SEARCH_P50_MS = 5.0
QUERIES = [
    "green tea in the morning",
    "which job: nurse or engineer",
    "planning a trip to Kyoto",
    "allergic to peanuts",
    "learning the piano",
    "pottery at the weekend",
    "training for a marathon",
    "coffee",
]
FACTS = [
    "The user prefers {} in the morning",
    "The user is training for {}",
    "The user works as {}",
    "The user is learning {}",
    "The user is allergic to {}",
    "The user is planning a trip to {}",
    "The user enjoys {} at the weekend",
]
FILLS = [
    "green tea", "a half marathon", "a nurse in Lyon", "the piano", "peanuts", "Kyoto",
    "pottery", "black coffee", "a triathlon", "a data engineer", "Japanese", "shellfish",
    "Lisbon", "bouldering", "jazz concerts", "sailing", "a primary school teacher",
]  # fmt: skip


def fact(rng: random.Random, n: int) -> str:
    return rng.choice(FACTS).format(rng.choice(FILLS)) + f" (note {n})"


def query(i: int, new: bool) -> str:
    """The i-th query: one of the fixed list, whose embedding the server keeps once it has
    made it (as for a question asked again), or with ``new`` a text never seen before, so
    the call includes embedding it."""
    text = QUERIES[i % len(QUERIES)]
    return f"{text} {FILLS[i // len(QUERIES) % len(FILLS)]} ({i})" if new else text


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float], cpu_s: float | None) -> dict[str, float | None]:
    return {
        "p50_ms": percentile(samples, 0.5) * 1000,
        "p99_ms": percentile(samples, 0.99) * 1000,
        "calls": len(samples),
        "server_cpu_ms": None if cpu_s is None else cpu_s / len(samples) * 1000,
    }


def cpu_seconds(pid: int) -> float:
    """A process's CPU time so far (user + system), from /proc: what a call cost the server
    whatever else the machine was doing meanwhile."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pid() -> int:
    """The one server process this script has spawned (stdio_client does not name it)."""
    children = [
        int(pid)
        for task in Path(f"/proc/{os.getpid()}/task").iterdir()
        for pid in (task / "children").read_text().split()
    ]
    if len(children) != 1:
        raise SystemExit(f"expected one server process, found {children}")
    return children[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("NOTED_")}


@contextlib.contextmanager
def process(command: list[str], ready: Callable[[], bool], log: Path) -> Any:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env()
        )
    try:
        deadline = time.monotonic() + 120
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{command[1:3]} did not start: {log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        proc.wait(20)


def answers(url: str, method: str = "GET") -> Callable[[], bool]:
    """Whether ``url`` answers at all (the MCP endpoint refuses a bare request: it is up)."""

    def check() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.request(method, url, timeout=2).status_code > 0
        return False

    return check


async def timed(
    calls: int, warmup: int, call: Callable[[int], Awaitable[None]], server: int
) -> dict[str, float | None]:
    for i in range(warmup):
        await call(i)
    samples = []
    cpu = cpu_seconds(server)
    for i in range(calls):
        start = time.perf_counter()
        await call(warmup + i)
        samples.append(time.perf_counter() - start)
    return summary(samples, cpu_seconds(server) - cpu)


async def measure_mcp(
    session: ClientSession, calls: int, warmup: int, server: int
) -> dict[str, Any]:
    rng = random.Random(7)

    def search(method: str, new: bool = False) -> Callable[[int], Awaitable[None]]:
        async def call(i: int) -> None:
            arguments = {"query": query(i, new), "limit": 10, "method": method}
            result = await session.call_tool("search_memories", arguments)
            assert not result.is_error, result
            assert result.structured_content["memories"], result

        return call

    async def add(i: int) -> None:
        result = await session.call_tool("add_memory", {"memory": fact(rng, i), "topics": ["b"]})
        assert not result.is_error, result

    return {
        "search keyword": await timed(calls, warmup, search("keyword"), server),
        "search hybrid": await timed(calls, warmup, search("hybrid"), server),
        "search hybrid, new query": await timed(calls, warmup, search("hybrid", True), server),
        "add": await timed(max(calls // 5, 1), warmup, add, server),
    }


async def measure_rest(url: str, calls: int, warmup: int, server: int) -> dict[str, Any]:
    rng = random.Random(8)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        def search(method: str, new: bool = False) -> Callable[[int], Awaitable[None]]:
            async def call(i: int) -> None:
                params = {
                    "user_id": USER,
                    "search_content": query(i, new),
                    "search_type": method,
                    "limit": 10,
                }
                answer = await client.get("/memories", params=params)
                assert answer.status_code == 200, answer.text
                assert answer.json()["data"], answer.text

            return call

        async def add(i: int) -> None:
            body = {"memory": fact(rng, i), "topics": ["b"], "user_id": USER}
            answer = await client.post("/memories", json=body)
            assert answer.status_code == 201, answer.text

        return {
            "search keyword": await timed(calls, warmup, search("keyword"), server),
            "search hybrid": await timed(calls, warmup, search("hybrid"), server),
            "search hybrid, new query": await timed(calls, warmup, search("hybrid", True), server),
            "add": await timed(max(calls // 5, 1), warmup, add, server),
        }


@contextlib.asynccontextmanager
async def mcp_over_http(url: str) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(timeout=60) as client,
        streamable_http_client(url, http_client=client) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def run(db_file: Path, work: Path, calls: int, warmup: int) -> dict[str, Any]:
    common = ["--db", str(db_file), "--embedder", "local"]
    results: dict[str, Any] = {}
    params = StdioServerParameters(command=NOTED, args=["mcp", *common, "--user", USER], env={})
    with (work / "stdio.log").open("w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            results["mcp stdio"] = await measure_mcp(session, calls, warmup, child_pid())
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    command = [NOTED, "mcp", "--http", "--port", str(port), *common, "--user", USER]
    with process(command, answers(url, "POST"), work / "http.log") as server:
        async with mcp_over_http(url) as session:
            results["mcp http"] = await measure_mcp(session, calls, warmup, server.pid)
    port = free_port()
    rest = f"http://127.0.0.1:{port}"
    command = [NOTED, "serve", "--port", str(port), *common, "--no-access-log"]
    command += ["--log-level", "warning"]
    with process(command, answers(f"{rest}/health"), work / "serve.log") as server:
        results["rest"] = await measure_rest(rest, calls, warmup, server.pid)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=500, help="searches per method (adds: 1/5)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS / "mcp.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="noted-mcp-bench-") as tmp:
        work = Path(tmp)
        db_file = work / "bench.db"
        rng = random.Random(1)
        memory = Memory(SqliteDb(db_file=str(db_file)), embedder="local")
        memory.add_user_memories([UserMemory(fact(rng, n)) for n in range(args.memories)], USER)
        memory.db.close()
        results = asyncio.run(run(db_file, work, args.calls, args.warmup))
    print(f"MCP tool calls, {args.memories:,} memories of one user, one client, sequential")
    print(
        f"{'transport':<11} {'operation':<25} {'p50 ms':>8} {'p99 ms':>8} {'calls':>6} "
        f"{'server CPU ms/call':>19}"
    )
    for transport, rows in results.items():
        for operation, row in rows.items():
            print(
                f"{transport:<11} {operation:<25} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                f"{row['calls']:>6} {row['server_cpu_ms']:>19.2f}"
            )
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs")
    ratios = {
        f"{transport} / rest {operation}": rows[operation]["p50_ms"]
        / results["rest"][operation]["p50_ms"]
        for transport, rows in results.items()
        if transport != "rest"
        for operation in rows
    }
    for label, ratio in ratios.items():
        print(f"p50 ratio {label}: {ratio:.2f}")
    stdio = results["mcp stdio"]
    stdio_p50 = stdio["search hybrid, new query"]["p50_ms"]
    met = stdio_p50 <= TARGET_SEARCH_P50_MS
    print(
        f"target search p50 <= {TARGET_SEARCH_P50_MS:.0f} ms over stdio (hybrid, the default, "
        f"a new query each call): {stdio_p50:.2f} ms, {'met' if met else 'NOT met'} "
        f"(a query asked before: {stdio['search hybrid']['p50_ms']:.2f} ms; keyword: "
        f"{stdio['search keyword']['p50_ms']:.2f} ms)"
    )
    report = {
        "memories": args.memories,
        "calls": args.calls,
        "results": results,
        "p50_ratios": ratios,
        "target_search_p50_ms": TARGET_SEARCH_P50_MS,
        "target_met": met,
        "load_average": load,
        "cpus": os.cpu_count(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
