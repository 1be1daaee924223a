"""Clearing a large user on SQLite, and another user's add issued while it runs.

    scripts/uv.sh run python benchmarks/clear.py [--memories 100000]

A user of ``--memories`` memories (about 160 bytes of text each, two topics) is cleared
through ``Memory.clear`` in one thread; 0.3 s in, another user's single add is issued on
the same store from a second thread, and at the same moment from a second process (its
own store on the same file). Prints how long the clear took, how long each add waited,
and the peak of Python memory (tracemalloc) while the clear ran; writes them as JSON.
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

from noted import Memory, SqliteDb, UserMemory

RESULTS = Path(__file__).parent / "results"
TEXT = "The user mentioned fact number {i}: they enjoy skiing on day {d} " + "x" * 60

ADDER = r"""
import sys, time
from noted import Memory, SqliteDb, UserMemory
memory = Memory(db=SqliteDb(sys.argv[1]))
memory.count_user_memories(user_id="bo")
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
memory.add_user_memory(UserMemory("Bo, from another process"), user_id="bo")
print(time.perf_counter() - start, flush=True)
"""


def fill(path: Path, count: int) -> None:
    memory = Memory(db=SqliteDb(path))
    for start in range(0, count, 10_000):
        memory.add_user_memories(
            [
                UserMemory(TEXT.format(i=i, d=i % 31), topics=["work", "food"])
                for i in range(start, min(count, start + 10_000))
            ],
            user_id="ava",
        )
    memory.add_user_memory(UserMemory("Bo likes tea"), user_id="bo")
    memory.db.close()


def measure(path: Path, expected: int) -> dict[str, float]:
    memory = Memory(db=SqliteDb(path))
    memory.count_user_memories(user_id="bo")
    child = subprocess.Popen(
        [sys.executable, "-c", ADDER, str(path)],
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
    time.sleep(0.3)
    child.stdin.write("go\n")
    child.stdin.flush()
    start = time.perf_counter()
    memory.add_user_memory(UserMemory("Bo, from another thread"), user_id="bo")
    found["thread add s"] = time.perf_counter() - start
    found["process add s"] = float(child.stdout.readline())
    clearing.join()
    found["peak python MB"] = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    child.communicate(timeout=60)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=100_000, help="memories of the user")
    parser.add_argument("--no-agno", action="store_true", help="(no peer: accepted for the suite)")
    parser.add_argument("--output", type=Path, default=RESULTS / "clear.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clear.db"
        fill(path, args.memories)
        found = measure(path, args.memories)
    for name, value in found.items():
        print(f"{name:<16} {value:10.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"memories": args.memories, **found}, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
