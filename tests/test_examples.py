"""The README's main job: remember in one process, recall in another."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[1] / "examples" / "remember_and_recall.py"


def test_walkthrough_recalls_across_processes(tmp_path: Path) -> None:
    def step(name: str) -> str:
        done = subprocess.run(
            [sys.executable, str(EXAMPLE), name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    remembered = step("remember")
    assert "ava: 3 memories" in remembered
    recalled = step("recall")
    assert "The user lives in Seattle - ['location']" in recalled
    assert "San Francisco" not in recalled
    assert "newest memory: The user enjoys reading science fiction novels before bed" in recalled
    assert (tmp_path / "tmp" / "walkthrough.db").is_file()
    # Running it again starts over rather than piling up duplicates.
    step("remember")
    assert step("recall").count("The user likes to ski") == 1


def test_agent_example_saves_its_session(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "examples" / "agent_with_history.py"
    env = {k: v for k, v in os.environ.items() if k != "NOTED_MODEL"}
    done = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert "Skiing is a great way" in done.stdout
    assert "your name is Ava" in done.stdout
    assert "session ski-trip: 2 runs saved" in done.stdout
