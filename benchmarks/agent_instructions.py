"""CPU instructions per agent run, tracing off and on, counted by valgrind's callgrind: a count
that other work on a busy machine barely disturbs, unlike the times of benchmarks/agent.py.

    scripts/uv.sh run python benchmarks/agent_instructions.py [--runs 20] [--modes run,stream]

Each count is one process under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``) that sets
up the same things every time: noted's agent of benchmarks/agent.py on a fresh SQLite file
with 15 runs of history, the tracer provider and its in-memory exporter, tracing turned on
(and off again for the counts without it). Then it makes ``--runs`` or twice as many runs of
one mode. Per run: the difference between the two counts over ``--runs``, so the set-up and
whatever happens once cancel out. noted's threads make identical processes differ by about
1% (some 10-20 million instructions), so that is each per-run figure's uncertainty divided
by ``--runs``. Needs valgrind (Debian: ``apt-get install valgrind``); each count takes a
minute or more, two run at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
MODES = {"run": "run()", "stream": "run(stream=True)", "arun": "await arun()"}
COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(mode: str, tracing_on: bool, runs: int) -> None:
    """The measured process: set-up, then ``runs`` runs of ``mode``."""
    sys.path.insert(0, str(HERE))
    from agent import NotedSide, TracedNotedSide, message

    from noted import tracing

    logging.disable(logging.WARNING)
    side = TracedNotedSide(Path(tempfile.mkdtemp()) / "runs.db", "session")
    tracing.uninstrument()
    for i in range(15):
        side.run(message(i))
    side.enter()  # turning tracing on, the same call in every count
    if not tracing_on:
        tracing.uninstrument()
    if mode == "arun":

        async def loop() -> None:
            for i in range(runs):
                await side.arun(message(i))

        asyncio.run(loop())
    else:
        once = side.run if mode == "run" else side.stream
        for i in range(runs):
            once(message(i))
    NotedSide.close(side)


def count(mode: str, tracing_on: bool, runs: int) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        f"{mode},{int(tracing_on)},{runs}",
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    found = COLLECTED.search(done.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="measured runs per count")
    parser.add_argument("--modes", default="run,stream", help="comma-separated: run,stream,arun")
    parser.add_argument("--output", type=Path, default=RESULTS / "agent_instructions.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, on, runs = args.child.split(",")
        child(mode, on == "1", int(runs))
        return
    modes = args.modes.split(",")
    if args.runs < 1 or not set(modes) <= set(MODES):
        parser.error(f"--runs must be >= 1 and --modes among {','.join(MODES)}")
    cases = [(mode, on, n) for mode in modes for on in (False, True) for n in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        found = pool.map(lambda case: count(case[0], case[1], case[2] * args.runs), cases)
        counted = dict(zip(cases, found, strict=True))
    report: dict[str, dict[str, float]] = {}
    print(f"{'mode':18} {'noted / run':>14} {'tracing adds / run':>20}")
    for mode in modes:
        off, on = ((counted[mode, t, 2] - counted[mode, t, 1]) / args.runs for t in (False, True))
        report[mode] = {"noted_instructions": off, "tracing_instructions": on - off}
        print(
            f"{MODES[mode]:18} {off / 1e6:12.2f} M {(on - off) / 1e6:12.2f} M ({on / off - 1:+.0%})"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"runs": args.runs, "modes": report}, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
