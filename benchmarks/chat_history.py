"""The ``get_chat_history`` tool on a long session: reading the whole, against the pages.

    scripts/uv.sh run python benchmarks/chat_history.py [--runs 2000] [--size 20000]

A SQLite session of ``--runs`` runs, each a message and an answer of ``--size`` characters
together, is read as the tool reads it when the model asks for all of its history: whole
(as with ``max_tool_result_chars=None``, and as it was read under any limit before), and
in pages from either end under the default limit of 50,000 characters. Prints the median
time of ``--repeat`` reads, the peak of Python memory (tracemalloc) of one, and the
result's length; writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from noted import SqliteDb
from noted.agent.history_tool import read_chat_history
from noted.models.types import Message
from noted.sessions import RunResult

LIMIT = 50_000


def fill(db: SqliteDb, runs: int, size: int) -> None:
    """A session ``s`` of user ``u``: ``runs`` runs, a message and an answer of
    ``size // 2`` characters each."""
    for i in range(runs):
        text = (f"turn {i} " + "x" * size)[: size // 2]
        messages = [Message(role="user", content=text), Message(role="assistant", content=text)]
        db.append_run(RunResult(f"r{i}", "s", "u", text, content=text, messages=messages))


def measure(db: SqliteDb, limit: int | None, repeat: int) -> dict[str, float]:
    """The median seconds of ``repeat`` reads, one read's peak MB, the result's length."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        read_chat_history(db, "s", "u", None, limit)
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    result = read_chat_history(db, "s", "u", None, limit)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"seconds": statistics.median(times), "peak MB": peak / 1e6, "chars": len(result)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2_000)
    parser.add_argument("--size", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-agno", action="store_true", help="(no peer is measured here)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = SqliteDb(Path(tmp) / "history.db")
        fill(db, args.runs, args.size)
        report = {
            "whole": measure(db, None, args.repeat),
            "pages": measure(db, LIMIT, args.repeat),
        }
        db.close()
    for name, found in report.items():
        print(
            f"{name:>6}: {found['seconds'] * 1000:,.1f} ms, peak {found['peak MB']:,.1f} MB, "
            f"result {found['chars']:,.0f} characters"
        )
    if args.output is not None:
        args.output.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
