"""noted's SqliteDb against Agno's SqliteDb on the same data, same machine, same run.

    make bench        (or: scripts/uv.sh run --group bench python benchmarks/store.py)

Both sides write to a fresh SQLite file in a temporary directory. noted is measured through
its public Memory API (validation included); Agno through its SqliteDb (and its
MemoryManager for last_n search, which is where Agno implements it). Prints medians, p95 and
the ratio Agno/noted, checks noted's targets, and writes benchmarks/results/store.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from timing import Timing

from noted import Memory, SqliteDb, UserMemory

RESULTS = Path(__file__).parent / "results"
TOPICS = ["hobbies", "work", "family", "food", "travel", "health", "music", "sport"]
THINGS = ["skiing", "chess", "jazz", "ramen", "Lisbon", "running", "pottery", "sailing"]

# noted's targets on a 2-core machine (median seconds), from the Foundation issue.
TARGETS = {
    "single add": 0.25e-3,
    "bulk import 10,000": 0.4,
    "get_user_memories (10,000)": 25e-3,
    "last_n limit 10 (10,000)": 2e-3,
}


def fact(i: int) -> tuple[str, list[str]]:
    text = (
        f"The user mentioned fact number {i}: they enjoy {THINGS[i % len(THINGS)]} on day {i % 31}"
    )
    return text, [TOPICS[i % len(TOPICS)], TOPICS[(i * 7 + 3) % len(TOPICS)]]


def timed(fn: Callable[[], Any], repeat: int, warmup: int = 2) -> Timing:
    for _ in range(warmup):
        fn()
    timing = Timing()
    gc.collect()
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        timing.samples.append(time.perf_counter() - start)
    return timing


# -- the two systems behind one small shape ----------------------------------------------------


class NotedSide:
    name = "noted"

    def __init__(self, path: Path) -> None:
        self.memory = Memory(db=SqliteDb(path))

    def add(self, i: int, user: str) -> None:
        text, topics = fact(i)
        self.memory.add_user_memory(UserMemory(text, topics=topics), user_id=user)

    def bulk(self, start: int, count: int, user: str) -> None:
        batch = []
        for i in range(start, start + count):
            text, topics = fact(i)
            batch.append(UserMemory(text, topics=topics))
        self.memory.add_user_memories(batch, user_id=user)

    def get_all(self, user: str) -> int:
        return len(self.memory.get_user_memories(user_id=user))

    def last_n(self, user: str) -> int:
        return len(
            self.memory.search_user_memories(user_id=user, limit=10, retrieval_method="last_n")
        )

    def page(self, user: str) -> int:
        return len(self.memory.get_user_memories(user_id=user, limit=20, offset=100))


class AgnoSide:
    name = "agno"

    def __init__(self, path: Path) -> None:
        from agno.db.schemas.memory import UserMemory as AgnoMemory
        from agno.db.sqlite import SqliteDb as AgnoSqliteDb
        from agno.memory import MemoryManager

        self._memory_cls = AgnoMemory
        self.db = AgnoSqliteDb(db_file=str(path))
        self.manager = MemoryManager(db=self.db)

    def _make(self, i: int, user: str) -> Any:
        text, topics = fact(i)
        return self._memory_cls(
            memory=text, topics=topics, user_id=user, memory_id=str(uuid.uuid4())
        )

    def add(self, i: int, user: str) -> None:
        self.db.upsert_user_memory(self._make(i, user))

    def bulk(self, start: int, count: int, user: str) -> None:
        self.db.upsert_memories([self._make(i, user) for i in range(start, start + count)])

    def get_all(self, user: str) -> int:
        return len(self.db.get_user_memories(user_id=user))

    def last_n(self, user: str) -> int:
        return len(
            self.manager.search_user_memories(limit=10, retrieval_method="last_n", user_id=user)
        )

    def page(self, user: str) -> int:
        return len(self.db.get_user_memories(user_id=user, limit=20, page=6))


def measure(side_cls: Callable[[Path], Any], workdir: Path, scale: float) -> dict[str, Timing]:
    n_single = int(1000 * scale)
    n_bulk = int(10_000 * scale)
    results: dict[str, Timing] = {}

    side = side_cls(workdir / "single.db")
    side.add(-1, "warmup")  # tables created outside the timing
    counter = iter(range(10**9))
    results["single add"] = timed(
        lambda: side.add(next(counter), "single"), repeat=n_single, warmup=20
    )

    def bulk_once() -> None:
        fresh = side_cls(workdir / f"bulk-{uuid.uuid4().hex}.db")
        fresh.add(-1, "warmup")
        start = time.perf_counter()
        fresh.bulk(0, n_bulk, "bulk")
        bulk_times.append(time.perf_counter() - start)

    bulk_times: list[float] = []
    for _ in range(3):
        bulk_once()
    results["bulk import 10,000"] = Timing(bulk_times)

    big = side_cls(workdir / "read.db")
    big.bulk(0, n_bulk, "big")
    big.bulk(n_bulk, n_single, "mid")
    for u in range(98):
        big.bulk(20_000 + u * 100, 100, f"user-{u}")
    results["get_user_memories (1,000)"] = timed(lambda: big.get_all("mid"), repeat=20)
    results["get_user_memories (10,000)"] = timed(lambda: big.get_all("big"), repeat=15)
    results["last_n limit 10 (10,000)"] = timed(lambda: big.last_n("big"), repeat=30)
    results["page of 20 (10,000)"] = timed(lambda: big.page("big"), repeat=100)
    assert big.get_all("big") == n_bulk
    assert big.last_n("big") == 10
    assert big.page("big") == 20
    return results


def fmt(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the data for a smoke run")
    parser.add_argument("--no-agno", action="store_true", help="measure noted only")
    parser.add_argument("--output", type=Path, default=RESULTS / "store.json", help="JSON report")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    sides: list[Callable[[Path], Any]] = [NotedSide]
    if not args.no_agno:
        sides.append(AgnoSide)
    measured: dict[str, dict[str, Timing]] = {}
    for side in sides:
        with tempfile.TemporaryDirectory() as tmp:
            measured[side.name] = measure(side, Path(tmp), args.scale)  # type: ignore[attr-defined]

    noted = measured["noted"]
    agno = measured.get("agno")
    header = f"{'operation':28} {'noted median':>13} {'noted p95':>13}"
    if agno:
        header += f" {'agno median':>13} {'agno p95':>13} {'agno/noted':>10}"
    header += "  target"
    print(header)
    print("-" * len(header))
    report: dict[str, Any] = {"scale": args.scale, "operations": {}}
    for op, timing in noted.items():
        line = f"{op:28} {fmt(timing.median):>13} {fmt(timing.p95):>13}"
        entry: dict[str, Any] = {"noted_median_s": timing.median, "noted_p95_s": timing.p95}
        if agno:
            other = agno[op]
            ratio = other.median / timing.median
            line += f" {fmt(other.median):>13} {fmt(other.p95):>13} {ratio:9.1f}x"
            entry.update(agno_median_s=other.median, agno_p95_s=other.p95, ratio=ratio)
        target = TARGETS.get(op)
        if target is not None:
            met = timing.median <= target
            line += f"  {'met' if met else 'MISSED'} (<= {target * 1e3:g} ms)"
            entry.update(target_s=target, met=met)
        print(line)
        report["operations"][op] = entry
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
