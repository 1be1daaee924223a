"""Search latency on SQLite: a user with ~600 memories, a user with 100,000, and whether
the large one slows the small one down; Agno's text search on 10,000 as the peer.

    scripts/uv.sh run --group bench python benchmarks/search.py

Every query goes through the public API (``Memory.search_user_memories``) and includes
embedding the query with the embedded default model. Memories are generated sentences.
The ~600-memory users' memories are embedded by the model; for the 100,000-memory user,
embedding 100,000 texts would take ~15 minutes on this machine, so its stored vectors are
random unit vectors tagged with the model's name: the search does the same work (one
matrix-vector product over 100,000 x 384 floats, the top k, the rows read back), only the
ranking means nothing. Latency is measured warm (the user's vectors loaded); the first
search of a user loads them and is reported separately, and so is a search right after
each add of a memory (the search embeds it and brings the loaded vectors up to date).
Beside each row: the process's CPU time per search (what a search costs whatever else the
machine runs) and the load average when it was measured.

Whether the large user slows a small one is measured twice: the same small user's rows
before and after the large user is written, and "in turns": the small user's memories
copied into a file of their own, and each question asked of that copy and of the user
beside the large one one after the other (the order swapped every question), so both see
the machine at the same moment (a machine whose speed drifts between rows moves the first
comparison, not this one).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from timing import Timing

from noted import Memory, SqliteDb, UserMemory
from noted.db.base import MemoryStore
from noted.retrieval import default_embedder

RESULTS = Path(__file__).parent / "results"
METHODS = ("keyword", "semantic", "hybrid")
TARGETS_MS = {600: 10.0, 100_000: 50.0}  # p50, from the Retrieval issue

PEOPLE = ["Ava", "her sister Mia", "Tom", "a colleague", "her neighbour", "the coach"]
DOING = ["went hiking", "started learning", "bought tickets for", "talked about", "cooked"]
THINGS = [
    "the Alps",
    "Portuguese",
    "a jazz concert",
    "ramen",
    "pottery classes",
    "a sailing trip",
    "chess openings",
    "the marathon",
    "a vintage camera",
    "sourdough bread",
    "a new job offer",
    "the dentist",
    "her daughter's school play",
    "a road trip to Porto",
    "salsa dancing",
]
WHEN = ["last weekend", "in March", "yesterday", "on her birthday", "after work", "in 2023"]
QUESTIONS = [
    "What did Ava do last weekend?",
    "Which language is she learning?",
    "Does she like music?",
    "What food does Ava cook?",
    "Where did she travel?",
    "Who went with her to the concert?",
    "What sport is she training for?",
    "Is she into photography?",
    "Did she change jobs?",
    "What hobbies does her sister have?",
]


def sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(PEOPLE)} {rng.choice(DOING)} {rng.choice(THINGS)} {rng.choice(WHEN)}"
        f" (note {rng.randrange(10**6)})"
    )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def question(i: int) -> str:
    """A different question each time (a repeated one would find its vector cached)."""
    base = QUESTIONS[i % len(QUESTIONS)].rstrip("?")
    return f"{base}, maybe with {THINGS[(i // len(QUESTIONS)) % len(THINGS)]}? ({i})"


def latency(
    memory: Memory, user: str, method: str, rounds: int, seed: int, *, add: bool = False
) -> Timing:
    """Each of ``rounds`` questions searched once; with ``add``, a memory added (untimed)
    before each search, as a writer that uses the API directly does: the search then
    embeds it and brings the user's loaded vectors up to date."""
    timing = Timing()
    cpu = time.process_time()
    rng = random.Random(seed)
    for i in range(seed * rounds, (seed + 1) * rounds):
        question_i = question(i)
        if add:
            cpu_before = time.process_time()
            memory.add_user_memory(UserMemory(sentence(rng)), user)
            cpu -= time.process_time() - cpu_before  # the add is not the search's
        start = time.perf_counter()
        memory.search_user_memories(question_i, user, 10, method)
        timing.samples.append(time.perf_counter() - start)
    CPU_MS[id(timing)] = (time.process_time() - cpu) / rounds * 1e3
    return timing


CPU_MS: dict[int, float] = {}  # a timing's CPU time per search (the process's, all threads)


def in_turns(
    sides: tuple[tuple[Memory, str], tuple[Memory, str]], method: str, rounds: int, seed: int
) -> tuple[Timing, Timing]:
    """Each question asked of both sides one after the other, the first side first on even
    questions and second on odd ones (each side embeds it itself: each Memory keeps its own
    query vectors)."""
    timings = (Timing(), Timing())
    for i in range(seed * rounds, (seed + 1) * rounds):
        question_i = question(i)
        for side in (0, 1) if i % 2 == 0 else (1, 0):
            memory, user = sides[side]
            start = time.perf_counter()
            memory.search_user_memories(question_i, user, 10, method)
            timings[side].samples.append(time.perf_counter() - start)
    return timings


def fill_random_vectors(db: MemoryStore, user: str, model: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    while pending := db.memories_to_embed(user, model, 20_000):
        vectors = rng.standard_normal((len(pending), 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        db.set_embeddings(model, list(zip(pending, vectors, strict=True)))


def agno_text_search(workdir: Path, rounds: int) -> Timing:
    """Agno's SqliteDb.get_user_memories(search_content=...) on a user with 10,000."""
    import uuid

    from agno.db.schemas.memory import UserMemory as AgnoMemory
    from agno.db.sqlite import SqliteDb as AgnoSqliteDb

    rng = random.Random(7)
    db = AgnoSqliteDb(db_file=str(workdir / "agno.db"))
    db.upsert_memories(
        [
            AgnoMemory(memory=sentence(rng), user_id="big", memory_id=str(uuid.uuid4()))
            for _ in range(10_000)
        ]
    )
    words = ["sailing", "ramen", "Portuguese", "concert", "marathon", "camera"]
    timing = Timing()
    for i in range(rounds):
        start = time.perf_counter()
        db.get_user_memories(user_id="big", search_content=words[i % len(words)], limit=10)
        timing.samples.append(time.perf_counter() - start)
    return timing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=600, help="memories of each small user")
    parser.add_argument("--large", type=int, default=100_000, help="memories of the large user")
    parser.add_argument("--rounds", type=int, default=200, help="queries per measurement")
    parser.add_argument("--no-agno", action="store_true", help="measure noted only")
    parser.add_argument("--output", type=Path, default=RESULTS / "search.json")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rng = random.Random(1)
    report: dict[str, Any] = {"small": args.small, "large": args.large, "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        db = SqliteDb(workdir / "search.db")
        memory = Memory(db=db, embedder="local")
        embedder = default_embedder()
        start = time.perf_counter()
        embedder.embed(["warm up"])
        report["model_load_s"] = time.perf_counter() - start
        rss_before = rss_mb()
        start = time.perf_counter()
        small_texts: list[str] = []
        for u in range(3):
            texts = [UserMemory(sentence(rng)) for _ in range(args.small)]
            memory.add_user_memories(texts, f"small-{u}")
            small_texts = small_texts or [m.memory for m in texts]
        report["embed_small_s_per_memory"] = (time.perf_counter() - start) / (3 * args.small)

        rows: dict[str, dict[str, float]] = {}

        def record(label: str, timing: Timing) -> None:
            rows[label] = {
                "p50_ms": timing.median * 1e3,
                "p95_ms": timing.p95 * 1e3,
                "cpu_ms": CPU_MS.get(id(timing), float("nan")),
                "load": os.getloadavg()[0],
            }

        seeds = iter(range(1, 10**6))

        def measure(user: str, label: str) -> None:
            for method in METHODS:
                latency(memory, user, method, 3, next(seeds))
                record(
                    f"{method}, {label}", latency(memory, user, method, args.rounds, next(seeds))
                )

        measure("small-0", f"{args.small:,} memories")

        # a 10,000-memory user (as Agno's text search below) and a 100,000 one, same file
        plain = Memory(db=db)
        for user, size in (("mid", 10_000), ("large", args.large)):
            start = time.perf_counter()
            for first in range(0, size, 10_000):
                count = min(10_000, size - first)
                plain.add_user_memories([UserMemory(sentence(rng)) for _ in range(count)], user)
            fill_random_vectors(db, user, embedder.model_name, 3)
            report[f"fill_{user}_s"] = time.perf_counter() - start
            start = time.perf_counter()
            memory.search_user_memories(question(0), user, 10, "semantic")
            report[f"first_search_{user}_ms"] = (time.perf_counter() - start) * 1e3
            measure(user, f"{size:,} memories")
            latency(memory, user, "hybrid", 3, next(seeds), add=True)
            timing = latency(memory, user, "hybrid", args.rounds, next(seeds), add=True)
            record(f"hybrid right after an add, {size:,} memories", timing)
        report["vector_cache_mb"] = db.cached_vector_bytes / 2**20

        # the same small user again, now beside the large one (same file, shared index)
        measure("small-0", f"{args.small:,} memories, beside {args.large:,}")

        # the same memories alone in a file of their own, asked in turns with the above
        alone_db = SqliteDb(workdir / "alone.db")
        alone = Memory(db=alone_db, embedder="local")
        alone.add_user_memories([UserMemory(text) for text in small_texts], "small-0")
        turns: dict[str, tuple[Timing, Timing]] = {}
        for method in METHODS:
            pair = ((alone, "small-0"), (memory, "small-0"))
            in_turns(pair, method, 3, next(seeds))
            turns[method] = in_turns(pair, method, args.rounds, next(seeds))
        report["in_turns"] = {
            m: {"alone_p50_ms": a.median * 1e3, "beside_p50_ms": b.median * 1e3}
            for m, (a, b) in turns.items()
        }
        alone_db.close()
        report["peak_rss_mb"] = rss_mb()
        report["rss_growth_mb"] = rss_mb() - rss_before
        report["db_mb"] = (workdir / "search.db").stat().st_size / 2**20
        db.close()
        if not args.no_agno:
            record("agno text search, 10,000 memories", agno_text_search(workdir, args.rounds))
    report["latency"] = rows

    print(f"{'search (limit 10)':48} {'p50':>10} {'p95':>10} {'CPU':>10}  load  target")
    print("-" * 100)
    for label, row in rows.items():
        target = ""
        size = int(label.split(", ")[1].split()[0].replace(",", ""))
        if size in TARGETS_MS and not label.startswith(("agno", "hybrid right after")):
            ok = row["p50_ms"] <= TARGETS_MS[size]
            target = f"{'met' if ok else 'MISSED'} (p50 <= {TARGETS_MS[size]:g} ms)"
        print(
            f"{label:48} {row['p50_ms']:8.2f} ms {row['p95_ms']:7.2f} ms "
            f"{row['cpu_ms']:7.2f} ms {row['load']:5.1f}  {target}"
        )
    alone = [rows[f"{m}, {args.small:,} memories"] for m in METHODS]
    beside = [rows[f"{m}, {args.small:,} memories, beside {args.large:,}"] for m in METHODS]
    print(
        f"\nthe same {args.small:,}-memory user beside the {args.large:,} one / alone "
        "(p50; CPU): "
        + ", ".join(
            f"{m} {b['p50_ms'] / a['p50_ms']:.2f}x; {b['cpu_ms'] / a['cpu_ms']:.2f}x"
            for m, a, b in zip(METHODS, alone, beside, strict=True)
        )
    )
    print(
        f"in turns, each question asked of the user alone in a file of its own and beside "
        f"the {args.large:,} one (p50 alone / beside, ratio): "
        + ", ".join(
            f"{m} {t['alone_p50_ms']:.2f} / {t['beside_p50_ms']:.2f} ms "
            f"{t['beside_p50_ms'] / t['alone_p50_ms']:.2f}x"
            for m, t in report["in_turns"].items()
        )
    )
    agno = rows.get("agno text search, 10,000 memories")
    if agno:
        ours = rows["keyword, 10,000 memories"]
        print(
            f"\nAgno's text search / noted's keyword search, 10,000 memories (p50): "
            f"{agno['p50_ms'] / ours['p50_ms']:.1f}x"
        )
    print(
        f"\nfirst search of the large user (loads its vectors): "
        f"{report['first_search_large_ms']:.0f} ms (10,000: "
        f"{report['first_search_mid_ms']:.0f} ms); vectors cached: "
        f"{report['vector_cache_mb']:.0f} MB; peak RSS {report['peak_rss_mb']:.0f} MB; "
        f"file {report['db_mb']:.0f} MB; embedding at write "
        f"{report['embed_small_s_per_memory'] * 1e3:.1f} ms per memory (batched)"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
