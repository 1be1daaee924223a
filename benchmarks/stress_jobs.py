"""Stress: `noted serve --no-background` and two `noted worker` processes on PostgreSQL
(or one SQLite file), 1,000 turns of 50 users through the REST API with a scripted model,
one worker killed half-way; every turn's memory present exactly once, in order per user,
nothing pending.

    scripts/uv.sh run python benchmarks/stress_jobs.py [--users 50 --turns 20] [--store sqlite]

The same scenario as tests/test_deploying.py (which runs 100 turns of 10 users in CI), on
a PostgreSQL server started here as the tests start it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from servers import start_postgres
from test_deploying import deploy_and_check


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--turns", type=int, default=20, help="turns per user")
    parser.add_argument("--store", choices=["postgres", "sqlite"], default="postgres")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.store == "sqlite":
            figures = deploy_and_check({}, workdir, args.users, args.turns, kind="sqlite")
        else:
            server = start_postgres(workdir / "postgres")
            try:
                figures = deploy_and_check({"postgres": server}, workdir, args.users, args.turns)
            finally:
                server.stop()
    print(
        f"{args.store}: {figures['turns']:.0f} turns of {args.users} users: all answered after "
        f"{figures['answered_s']:.1f} s, every memory written once and in order after "
        f"{figures['all_memories_s']:.1f} s (one of two workers killed half-way); "
        "nothing pending"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
