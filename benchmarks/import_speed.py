"""How long ``noted import mem0`` takes per store: a first import and a re-run.

    scripts/uv.sh run --group bench python benchmarks/import_speed.py [--count 20000]

A mem0 ``get_all`` JSON of ``--count`` memories over ``--users`` users (generated facts,
each with a topic and created/updated times) is imported through ``import_mem0`` into a
fresh store of each kind: SQLite, and PostgreSQL, Redis and the MongoDB wire-protocol
server (nx-27017, which keeps its data in SQLite: its figures say little about a real
mongod) started as the tests start them (tests/servers.py; ``--servers ""`` for none).
Per store: the first import (everything written), a re-run of the same file (nothing
written: the time it takes to find that out) and a re-run after a tenth of the memories
were edited in the store (those kept), each in seconds of wall time, with this process's
CPU time beside it (what the import cost here, whatever else the machine runs; the wall
time less it is mostly the waits for the server's answers).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from noted import Memory, MemoryStore, SqliteDb
from noted.importers import import_mem0

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import Server, Unavailable, start_mongo, start_postgres, start_redis

SERVERS: dict[str, Callable[[Path], Server]] = {
    "postgres": start_postgres,
    "redis": start_redis,
    "mongo": start_mongo,
}
TOPICS = ["hobbies", "work", "family", "food", "travel", "health", "music", "sport"]
WORDS = ["sailing", "ramen", "Portuguese", "concert", "marathon", "camera", "tea", "chess"]


def mem0_file(path: Path, count: int, users: int) -> Path:
    """A mem0 ``get_all`` export of ``count`` memories spread over ``users`` users."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    results = []
    for i in range(count):
        at = (start + timedelta(seconds=i)).isoformat()
        results.append(
            {
                "id": str(uuid.UUID(int=i + 1)),
                "memory": f"The user likes {WORDS[i % len(WORDS)]} number {i}",
                "metadata": {"topics": [TOPICS[i % len(TOPICS)]]},
                "created_at": at,
                "updated_at": at,
                "user_id": f"user{i % users}",
            }
        )
    path.write_text(json.dumps({"results": results}))
    return path


def open_store(kind: str, url: str, folder: Path) -> MemoryStore:
    """A fresh store of ``kind`` (tables and keys of their own)."""
    names = {"memory_table": "import_memories", "session_table": "import_sessions"}
    if kind == "sqlite":
        return SqliteDb(folder / "import.db", **names)
    if kind == "postgres":
        from noted.db.postgres import PostgresDb

        return PostgresDb(url, **names)
    if kind == "redis":
        from noted.db.redisdb import RedisDb

        return RedisDb(url, **names)
    from noted.db.mongodb import MongoDb

    return MongoDb(url, database="noted_import_bench", **names)


def edit_some(memory: Memory, source: Path) -> int:
    """Edit a tenth of the imported memories in the store (after their source version)."""
    items = json.loads(source.read_text())["results"][::10]
    for item in items:
        memory.edit_user_memory(item["id"], item["user_id"], memory=item["memory"] + " (edited)")
    return len(items)


def timed(kind: str, url: str, folder: Path, source: Path) -> dict[str, float]:
    """Seconds for the first import, a re-run, and a re-run after edits in the store."""
    store = open_store(kind, url, folder)
    memory = Memory(db=store, embedder=None)
    figures: dict[str, float] = {}
    try:
        for label in ("first import", "re-run", "re-run after edits"):
            if label == "re-run after edits":
                edit_some(memory, source)
            start, cpu = time.perf_counter(), time.process_time()
            report = import_mem0(source, memory)
            figures[label] = time.perf_counter() - start
            cpu = time.process_time() - cpu
            print(
                f"{kind:9} {label:19} {figures[label]:7.2f} s (this process's CPU {cpu:5.2f} s)  "
                f"(written {report.memories_written:,}, kept {report.memories_kept:,})",
                flush=True,
            )
    finally:
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="memories in the file")
    parser.add_argument("--users", type=int, default=20, help="users they are spread over")
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="server stores, comma-separated"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        source = mem0_file(folder / "mem0.json", args.count, args.users)
        print(f"{args.count:,} memories over {args.users} users", flush=True)
        timed("sqlite", "", folder, source)
        for kind in filter(None, args.servers.split(",")):
            try:
                server = SERVERS[kind](folder / kind)
            except Unavailable as exc:
                print(f"{kind:9} not run: {exc}", flush=True)
                continue
            try:
                timed(kind, server.url, folder, source)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
