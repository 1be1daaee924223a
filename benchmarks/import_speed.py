"""How long ``noted import mem0`` and ``noted import agno`` take per store: a first
import and a re-run; and how long ``noted memories export`` takes for one large user.

    scripts/uv.sh run --group bench python benchmarks/import_speed.py [--count 20000]
        [--sessions 2000 --runs 3] [--part memories|sessions|export] [--export 90000]

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

Sessions: an Agno 2 SQLite database (``agno_sessions``, written here in Agno's layout from
the test fixture's rows, so Agno itself is not needed) of ``--sessions`` sessions over
``--users`` users, each of ``--runs`` runs and a summary, is imported through
``import_agno`` the same way: the first import (every run and summary written) and a
re-run (nothing written).

Export: ``--export`` memories of one user (each created a second after the last) are
restored into a fresh store of each kind, the in-process one too, and written out as
``noted memories export --user`` writes them (a page at a time, oldest first) to a file:
its wall time, with this process's CPU time beside it.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

from noted import Memory, MemoryStore, SqliteDb, UserMemory
from noted.cli import export_memories
from noted.db.memory import InMemoryDb
from noted.importers import ImportReport, import_agno, import_mem0

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import Server, Unavailable, start_mongo, start_postgres, start_redis

SERVERS: dict[str, Callable[[Path], Server]] = {
    "postgres": start_postgres,
    "redis": start_redis,
    "mongo": start_mongo,
}
TOPICS = ["hobbies", "work", "family", "food", "travel", "health", "music", "sport"]
WORDS = ["sailing", "ramen", "Portuguese", "concert", "marathon", "camera", "tea", "chess"]
AGNO_FIXTURE = Path(__file__).resolve().parents[1] / "tests/fixtures/agno/agno-2.2.13.db"


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


def _agno_run(session_id: str, user_id: str, n: int, at: int) -> dict[str, object]:
    """One run as Agno 2 keeps it in a session row: the question, the answer, the messages."""
    question = f"Tell me about {WORDS[n % len(WORDS)]} ({session_id}, turn {n})"
    answer = f"Here is what I know about {WORDS[n % len(WORDS)]}."
    messages = [
        {"id": f"{session_id}-{n}-{role}", "content": text, "role": role, "created_at": at}
        for role, text in (("user", question), ("assistant", answer))
    ]
    return {
        "run_id": f"{session_id}-run-{n}",
        "agent_id": "assistant",
        "session_id": session_id,
        "user_id": user_id,
        "content": answer,
        "content_type": "str",
        "model": "gpt-4o",
        "created_at": at,
        "status": "COMPLETED",
        "messages": messages,
        "input": {"input_content": question},
    }


def agno_file(path: Path, sessions: int, runs: int, users: int) -> Path:
    """An Agno 2 SQLite database of ``sessions`` agent sessions over ``users`` users, each
    of ``runs`` runs and a summary (the fixture's tables, its rows replaced)."""
    shutil.copy(AGNO_FIXTURE, path)
    start = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    rows = []
    for i in range(sessions):
        session_id, user_id, at = f"sess-{i:06d}", f"user{i % users}", start + 60 * i
        body = [_agno_run(session_id, user_id, n, at + n) for n in range(runs)]
        summary = {
            "summary": f"The user asked about {WORDS[i % len(WORDS)]}.",
            "topics": [TOPICS[i % len(TOPICS)]],
            "updated_at": datetime.fromtimestamp(at + runs, UTC).isoformat(),
        }
        # Agno's JSON columns hold the JSON text of the value, encoded as a JSON string
        encoded = (json.dumps(json.dumps(body)), json.dumps(json.dumps(summary)))
        rows.append((session_id, "agent", "assistant", user_id, *encoded, at, at + runs))
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("DELETE FROM agno_sessions")
        conn.execute("DELETE FROM agno_memories")
        conn.executemany(
            "INSERT INTO agno_sessions (session_id, session_type, agent_id, user_id, runs, "
            "summary, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    return path


def open_store(kind: str, url: str, folder: Path) -> MemoryStore:
    """A fresh store of ``kind`` (tables and keys of their own)."""
    names = {"memory_table": "import_memories", "session_table": "import_sessions"}
    if kind == "sqlite":
        return SqliteDb(folder / "import.db", **names)
    if kind == "memory":
        return InMemoryDb()
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


def timed_sessions(kind: str, url: str, folder: Path, source: Path) -> dict[str, float]:
    """Seconds for the first import of an Agno database's sessions, and a re-run."""
    store = open_store(kind, url, folder)
    memory = Memory(db=store, embedder=None)
    figures: dict[str, float] = {}
    try:
        for label in ("first import", "re-run"):
            start, cpu = time.perf_counter(), time.process_time()
            report: ImportReport = import_agno(str(source), memory)
            figures[label] = time.perf_counter() - start
            cpu = time.process_time() - cpu
            print(
                f"{kind:9} sessions {label:12} {figures[label]:7.2f} s "
                f"(this process's CPU {cpu:5.2f} s)  (runs written {report.runs_written:,}, "
                f"summaries {report.summaries_written:,})",
                flush=True,
            )
    finally:
        store.close()
    return figures


def one_user(count: int) -> list[UserMemory]:
    """``count`` memories of user ``exported``, each created a second after the last."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    memories = []
    for i in range(count):
        at = start + timedelta(seconds=i)
        text = f"The user likes {WORDS[i % len(WORDS)]} number {i}"
        memories.append(
            UserMemory(
                text,
                memory_id=str(uuid.UUID(int=i + 1)),
                user_id="exported",
                topics=[TOPICS[i % len(TOPICS)]],
                created_at=at,
                updated_at=at,
            )
        )
    return memories


def timed_export(kind: str, url: str, folder: Path, count: int) -> float:
    """Seconds to export the one user's ``count`` memories restored into a fresh store."""
    store = open_store(kind, url, folder)
    memory = Memory(db=store, embedder=None)
    try:
        memory.import_user_memories(one_user(count))
        target = folder / f"export-{kind}.jsonl"
        start, cpu = time.perf_counter(), time.process_time()
        with target.open("w", encoding="utf-8") as stream:
            written = export_memories(memory, "exported", stream)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu
        print(
            f"{kind:9} export {written:,} memories {seconds:7.2f} s "
            f"(this process's CPU {cpu:5.2f} s)",
            flush=True,
        )
    finally:
        store.close()
    return seconds


def run_all(kind: str, url: str, folder: Path, sources: dict[str, Path], export: int) -> None:
    """The parts asked for, on one store (the memories' import writes no sessions, so the
    sessions' first import finds none)."""
    if "memories" in sources:
        timed(kind, url, folder, sources["memories"])
    if "sessions" in sources:
        timed_sessions(kind, url, folder, sources["sessions"])
    if export:
        timed_export(kind, url, folder, export)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="memories in the file")
    parser.add_argument("--users", type=int, default=20, help="users they are spread over")
    parser.add_argument("--sessions", type=int, default=2_000, help="Agno sessions")
    parser.add_argument("--runs", type=int, default=3, help="runs per Agno session")
    parser.add_argument(
        "--part",
        choices=["memories", "sessions", "both", "export"],
        default="both",
        help="what to time",
    )
    parser.add_argument(
        "--export", type=int, default=90_000, help="memories of the one user exported"
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="server stores, comma-separated"
    )
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        sources: dict[str, Path] = {}
        if args.part in ("memories", "both"):
            sources["memories"] = mem0_file(folder / "mem0.json", args.count, args.users)
            print(f"{args.count:,} memories over {args.users} users", flush=True)
        if args.part in ("sessions", "both"):
            sources["sessions"] = agno_file(
                folder / "agno.db", args.sessions, args.runs, args.users
            )
            print(
                f"{args.sessions:,} Agno sessions of {args.runs} runs over {args.users} users",
                flush=True,
            )
        export = args.export if args.part == "export" else 0
        if export:
            run_all("memory", "", folder, sources, export)
        run_all("sqlite", "", folder, sources, export)
        for kind in filter(None, args.servers.split(",")):
            try:
                server = SERVERS[kind](folder / kind)
            except Unavailable as exc:
                print(f"{kind:9} not run: {exc}", flush=True)
                continue
            try:
                run_all(kind, server.url, folder, sources, export)
            finally:
                server.stop()


if __name__ == "__main__":
    main()
