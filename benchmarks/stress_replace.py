"""Stress: many writers replacing one memory at once, many rounds, on real servers.

Each round: four threads replace the same memory 25 times each; then the memory's text and
topics must come from one write, the history must hold 101 events, and its last event must
describe the memory as it is. This is the conformance test
``test_concurrent_replaces_of_one_memory_keep_one_whole_version``, run ``--rounds`` times
in a row on each backend named (MongoDB by default: nx-27017, started here).

    .venv/bin/python benchmarks/stress_replace.py --rounds 50 --backends mongo redis
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from noted import Memory, MemoryStore, SqliteDb, UserMemory
from servers import Server, start_mongo, start_postgres, start_redis

STARTERS = {"mongo": start_mongo, "postgres": start_postgres, "redis": start_redis}
_names = itertools.count(1)


def open_backend(kind: str, server: Server | None, workdir: Path) -> MemoryStore:
    n = next(_names)
    names = {"memory_table": f"s{n}_memories", "session_table": f"s{n}_sessions"}
    if kind == "sqlite":
        return SqliteDb(workdir / f"stress{n}.db", **names)
    assert server is not None
    if kind == "mongo":
        from noted.db.mongodb import MongoDb

        return MongoDb(server.url, database="noted_stress", **names)
    if kind == "postgres":
        from noted.db.postgres import PostgresDb

        return PostgresDb(server.url, **names)
    from noted.db.redisdb import RedisDb

    return RedisDb(server.url, **names)


def one_round(store: MemoryStore, writers: int = 4, writes: int = 25) -> str | None:
    """None when the memory kept one whole version, else what went wrong."""
    memory = Memory(db=store)
    memory_id = memory.add_user_memory(UserMemory("version 0", topics=["v"]), user_id="ava")

    def replace(worker: int) -> None:
        for i in range(writes):
            memory.replace_user_memory(
                memory_id, UserMemory(f"version {worker}-{i}", topics=[f"w{worker}"]), "ava"
            )

    threads = [threading.Thread(target=replace, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    final = memory.get_user_memory(memory_id, "ava")
    if final is None:
        return "the memory is gone"
    worker = final.memory.split()[1].split("-")[0]
    if final.topics != [f"w{worker}"]:
        return f"text {final.memory!r} with topics {final.topics} of another write"
    history = memory.get_memory_history(memory_id, "ava")
    if len(history) != writers * writes + 1:
        return f"{len(history)} events, expected {writers * writes + 1}"
    if history[-1].new_memory != final.memory:
        return f"last event says {history[-1].new_memory!r}, the memory is {final.memory!r}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--backends", nargs="+", default=["mongo"])
    args = parser.parse_args()
    logging.getLogger("noted.db.mongodb").setLevel(logging.ERROR)  # nx-27017's index notes
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.backends:
            server = STARTERS[kind](workdir / kind) if kind in STARTERS else None
            try:
                started = time.perf_counter()
                problems = []
                for _ in range(args.rounds):
                    store = open_backend(kind, server, workdir)
                    try:
                        problem = one_round(store)
                    finally:
                        store.close()
                    if problem is not None:
                        problems.append(problem)
                seconds = time.perf_counter() - started
                print(
                    f"{kind}: {args.rounds - len(problems)} of {args.rounds} rounds kept one "
                    f"whole version ({seconds:.1f} s)"
                )
                for problem in problems[:5]:
                    print(f"  {problem}")
                failed += len(problems)
            finally:
                if server is not None:
                    server.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
