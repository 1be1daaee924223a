"""Clearing a large user, and another user's read and add issued while it runs.

    scripts/uv.sh run python benchmarks/clear.py [--memories 100000] [--store redis]

A user of ``--memories`` memories (about 160 bytes of text each, two topics) is cleared
through ``Memory.clear`` in one thread. While it runs, a second thread counts another
user's memories every 10 ms on the same store; 0.3 s in, a third issues that user's single
add, and at the same moment a second process (its own store on the same file, tables or
keys) does too. Prints how long the clear took, the longest of those counts, how long
each add waited, and the peak of Python memory (tracemalloc) while the clear ran; writes
them as JSON. ``--store`` is ``sqlite`` (a temporary file), ``redis`` or ``postgres`` (a
server started here with tests/servers.py, or the one at ``--url``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from noted import Memory, MemoryStore, SqliteDb, UserMemory
from servers import Server, start_postgres, start_redis

RESULTS = Path(__file__).parent / "results"
TEXT = "The user mentioned fact number {i}: they enjoy skiing on day {d} " + "x" * 60
STARTERS = {"postgres": start_postgres, "redis": start_redis}
TABLE = "clear_bench"

ADDER = r"""
import sys, time
sys.path.insert(0, sys.argv[4])
from clear import open_store
from noted import Memory, UserMemory
memory = Memory(db=open_store(*sys.argv[1:4]))
memory.count_user_memories(user_id="bo")
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
memory.add_user_memory(UserMemory("Bo, from another process"), user_id="bo")
print(time.perf_counter() - start, flush=True)
"""


def open_store(kind: str, where: str, table: str) -> MemoryStore:
    """The store of ``kind`` at ``where`` (a file, or a server's URL), its tables or keys
    named after ``table``."""
    if kind == "sqlite":
        return SqliteDb(where)
    names = {"memory_table": f"{table}_memories", "session_table": f"{table}_sessions"}
    if kind == "redis":
        from noted.db.redisdb import RedisDb

        return RedisDb(where, **names)
    from noted.db.postgres import PostgresDb

    return PostgresDb(where, **names)


def fill(store: MemoryStore, count: int) -> None:
    memory = Memory(db=store)
    memory.clear(user_id="ava")
    memory.clear(user_id="bo")
    for start in range(0, count, 10_000):
        memory.add_user_memories(
            [
                UserMemory(TEXT.format(i=i, d=i % 31), topics=["work", "food"])
                for i in range(start, min(count, start + 10_000))
            ],
            user_id="ava",
        )
    memory.add_user_memory(UserMemory("Bo likes tea"), user_id="bo")
    store.close()


def probe(memory: Memory, clearing: threading.Thread, found: dict[str, float]) -> None:
    """Count another user's memories every 10 ms while the clear runs: the longest any of
    those reads waited, and how many were answered."""
    longest, answered = 0.0, 0
    while clearing.is_alive():
        start = time.perf_counter()
        memory.count_user_memories(user_id="bo")
        longest = max(longest, time.perf_counter() - start)
        answered += 1
        time.sleep(0.01)
    found["longest read s"] = longest
    found["reads answered"] = answered


def measure(kind: str, where: str, expected: int) -> dict[str, float]:
    memory = Memory(db=open_store(kind, where, TABLE))
    memory.count_user_memories(user_id="bo")
    child = subprocess.Popen(
        [sys.executable, "-c", ADDER, kind, where, TABLE, str(Path(__file__).parent)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    found: dict[str, float] = {}

    def clear() -> None:
        start = time.perf_counter()
        assert memory.clear(user_id="ava") == expected
        found["clear s"] = time.perf_counter() - start

    tracemalloc.start()
    clearing = threading.Thread(target=clear)
    clearing.start()
    probing = threading.Thread(target=probe, args=(memory, clearing, found))
    probing.start()
    time.sleep(0.3)
    child.stdin.write("go\n")
    child.stdin.flush()
    start = time.perf_counter()
    memory.add_user_memory(UserMemory("Bo, from another thread"), user_id="bo")
    found["thread add s"] = time.perf_counter() - start
    found["process add s"] = float(child.stdout.readline())
    clearing.join()
    probing.join()
    found["peak python MB"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    child.communicate(timeout=60)
    memory.db.close()
    return found


def run(kind: str, url: str | None, tmp: Path, count: int) -> dict[str, float]:
    """Fill and measure on ``kind``, starting its server in ``tmp`` when no ``url``."""
    server: Server | None = None
    if kind == "sqlite":
        where = str(tmp / "clear.db")
    elif url is None:
        server = STARTERS[kind](tmp / kind)
        where = server.url
    else:
        where = url
    try:
        fill(open_store(kind, where, TABLE), count)
        return measure(kind, where, count)
    finally:
        if server is not None:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000, help="memories of the user")
    parser.add_argument("--store", choices=["sqlite", "redis", "postgres"], default="sqlite")
    parser.add_argument("--url", help="the server of --store (default: start one here)")
    parser.add_argument("--no-agno", action="store_true", help="(no peer: accepted for the suite)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        found = run(args.store, args.url, Path(tmp), args.memories)
    for name, value in found.items():
        print(f"{name:<16} {value:10.3f}")
    output = args.output or RESULTS / f"clear_{args.store}.json"
    if args.output is None and args.store == "sqlite":
        output = RESULTS / "clear.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {"store": args.store, "memories": args.memories, **found}
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
