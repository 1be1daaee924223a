"""How the agent's memory selection grows with a user's memory count, per store.

    scripts/uv.sh run --group bench python benchmarks/selection.py [--sizes 1000,10000,50000]

The selection (noted.memory.selection, what an Agent with memory in context runs before
each answer: a search over all of the user's memories, the name, the newest) is timed for
users of 1,000, 10,000 and 50,000 memories (varied generated facts) on SQLite (its FTS5
keyword index) and on the in-process store (BM25 over the user's memories in Python, as
Redis's client-side ranking does), without an embedder; and on SQLite with the default
embedder at 10,000 memories, the query's embedding included (the stored vectors are random
unit vectors tagged with the model's name, as in search.py: the work is the same, the
ranking means nothing), for a session's first turn and for a follow-up (the previous
question searched too, as an Agent's later turns do: its embedding is the one its own turn
made). Each figure is the median of 50 questions after one warm-up, with
the process's CPU time per run beside it (what a run costs whatever else the machine
runs) and the load average.

``--servers`` (PostgreSQL, Redis and the MongoDB wire-protocol server by default, started
as the tests start them; ``--servers ""`` for none) times the same selection with the
default embedder at 10,000 memories on those stores too: warm, and right after an add to
the user (the add untimed; the store then reads the change, or its snapshot is patched).
``--said`` (``0,400`` by default) names the users timed there: one whose memories are
bare facts, and one whose memories each keep a message of 400 characters as the
conversation they came from, as automatic memory writes them (on PostgreSQL, such rows pass
2 kB). PostgreSQL's table is vacuumed after the vectors are written, as autovacuum would
do in time (writing every row's vector leaves a dead copy of each until then).
Writes benchmarks/results/selection.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends import SERVERS, Unavailable, open_noted, vacuumed
from search import fill_random_vectors, question
from timing import Timing

from noted import InMemoryDb, Memory, SqliteDb, UserMemory
from noted.agent.context import fit_memories
from noted.agent.memory import CONTEXT_CANDIDATES, CONTEXT_DEPTH
from noted.db.base import MemoryQuery, MemoryStore
from noted.memory.index import MemoryIndex
from noted.memory.selection import RecentTurns, select_memories
from noted.retrieval import default_embedder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from user_facts import user_facts

RESULTS = Path(__file__).parent / "results"
SIZES = (1_000, 10_000, 50_000)
ROUNDS = 50
TARGET_EMBEDDER_MS = 15.0  # p50 at 10,000 memories, the query's embedding included


def timed(
    store: MemoryStore,
    index: MemoryIndex | None,
    follow_up: bool = False,
    before: Callable[[int], object] | None = None,
) -> Timing:
    """The selection's time for ROUNDS new questions; ``before(i)`` runs untimed first."""
    timing = Timing()
    query = MemoryQuery(user_id="u", limit=CONTEXT_DEPTH)  # as the agent's
    select_memories(store, query, question(0), CONTEXT_CANDIDATES, index=index)  # warm-up
    cpu = 0.0
    for i in range(1, ROUNDS + 1):
        if before is not None:
            before(i)
        # a new query each time: no cached embedding (nor kept keyword results)
        text = f"{question(i)} ({i + 2 * ROUNDS if follow_up else i})"
        turns = None
        if follow_up:  # the previous turn's question, searched (and embedded) untimed
            said = f"{question(i + ROUNDS)} ({i + ROUNDS})"
            select_memories(store, query, said, CONTEXT_CANDIDATES, index=index)
            turns = RecentTurns(said, "Here is what I found.")
        start, started = time.perf_counter(), time.process_time()
        chosen = select_memories(store, query, text, CONTEXT_CANDIDATES, index=index, turns=turns)
        fit_memories(chosen, 4000)
        timing.samples.append(time.perf_counter() - start)
        cpu += time.process_time() - started
    CPU_MS[id(timing)] = cpu / ROUNDS * 1e3
    return timing


CPU_MS: dict[int, float] = {}  # a timing's CPU time per run (the process's, all threads)


def figures(t: Timing, **more: Any) -> dict[str, Any]:
    """A timing's entry in selection.json."""
    return {"p50_ms": t.median * 1e3, "p95_ms": t.p95 * 1e3, "cpu_ms": CPU_MS[id(t)], **more}


def line(t: Timing) -> str:
    return (
        f"p50 {t.median * 1e3:7.2f} ms  p95 {t.p95 * 1e3:7.2f} ms  "
        f"CPU {CPU_MS[id(t)]:6.2f} ms/run  load {os.getloadavg()[0]:4.1f}"
    )


def with_what_was_said(facts: list[UserMemory], chars: int) -> list[UserMemory]:
    """The facts, each with a message of about ``chars`` characters as the conversation it
    came from (``input``: what automatic memory keeps), made of other facts in the first
    person."""
    for i, fact in enumerate(facts):
        said, j = "", i
        while len(said) < chars:
            j = (j * 7919 + 13) % len(facts)
            said += facts[j].memory.replace("The user ", "I ", 1).replace("User ", "I ", 1) + ". "
        fact.input = said[:chars]
    return facts


def on_server(kind: str, folder: Path, said: list[int]) -> dict[str, Any]:
    """The selection at 10,000 memories with the default embedder on a server store, for a
    user whose memories keep what was said (of each length in ``said``; 0: nothing)."""
    try:
        server = SERVERS[kind](folder / kind)
    except Unavailable as exc:
        print(f"{kind:10} not run: {exc}", flush=True)
        return {}
    results: dict[str, Any] = {}
    more = user_facts(ROUNDS + 1, seed=1)
    try:
        for chars in said:  # each user in a table of their own, as a user among many
            store = open_noted(kind, server.url, folder)
            memory = Memory(db=store, embedder=None)
            facts = user_facts(10_000, seed=10_000)
            memory.add_user_memories(with_what_was_said(facts, chars) if chars else facts, "u")
            embedder = default_embedder()
            fill_random_vectors(store, "u", embedder.model_name, 1)
            vacuumed(store)
            index = MemoryIndex(store, embedder)

            def add(i: int, memory: Memory = memory, index: MemoryIndex = index) -> None:
                memory.add_user_memory(UserMemory(more[i].memory), "u")
                index.catch_up("u")  # its vector, as the next search would make it (untimed)

            told = f", {chars} chars said" if chars else ""
            for label, before in (("hybrid", None), ("after add", add)):
                t = timed(store, index, before=before)
                results[f"{kind}, default embedder, {label}{told}, 10,000"] = figures(t)
                print(f"{kind:10} {label:9} 10,000{told}: {line(t)}", flush=True)
            store.close()
    finally:
        server.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="users' memory counts, comma-separated"
    )
    parser.add_argument(
        "--servers", default=",".join(SERVERS), help="server stores, comma-separated"
    )
    parser.add_argument(
        "--said",
        default="0,400",
        help="on the server stores, users whose memories keep what was said, of these "
        "lengths in characters (0: nothing), comma-separated",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    logging.disable(logging.WARNING)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        for kind in filter(None, args.servers.split(",")):
            results.update(on_server(kind, Path(folder), [int(c) for c in args.said.split(",")]))
        for size in sizes:
            facts = user_facts(size, seed=size)
            for name, store in (
                ("sqlite", SqliteDb(Path(folder) / f"s{size}.db")),
                ("in-process", InMemoryDb()),
            ):
                Memory(db=store, embedder=None).add_user_memories(facts, "u")
                t = timed(store, None)
                results[f"{name}, keyword, {size:,}"] = figures(t)
                print(
                    f"{name:10} keyword {size:>7,}: {line(t)}",
                    flush=True,
                )
                if name == "sqlite" and size == 10_000:
                    embedder = default_embedder()
                    fill_random_vectors(store, "u", embedder.model_name, 1)  # type: ignore[arg-type]
                    t = timed(store, MemoryIndex(store, embedder))
                    met = "met" if t.median * 1e3 <= TARGET_EMBEDDER_MS else "MISSED"
                    results[f"{name}, default embedder, {size:,}"] = figures(
                        t, target_ms=TARGET_EMBEDDER_MS, met=met == "met"
                    )
                    print(
                        f"{name:10} hybrid  {size:>7,}: {line(t)} "
                        f"({met}: <= {TARGET_EMBEDDER_MS} ms)",
                        flush=True,
                    )
                    t = timed(store, MemoryIndex(store, embedder), follow_up=True)
                    results[f"{name}, default embedder, follow-up turn, {size:,}"] = figures(t)
                    print(f"{name:10} follow-up {size:>5,}: {line(t)}", flush=True)
                store.close()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "selection.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
