"""The benchmarks keep running: a small-scale smoke run of each (timings not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def run_benchmark(script: str, out: Path, *args: str) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--no-agno", "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout, json.loads(out.read_text())


def test_store_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark("store.py", tmp_path / "store.json", "--scale", "0.02")
    assert "last_n limit 10 (10,000)" in stdout
    assert set(report["operations"]) >= {"single add", "bulk import 10,000", "page of 20 (10,000)"}


def test_agent_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "agent.py", tmp_path / "agent.json", "--runs", "5", "--history", "5"
    )
    assert "target <= 5 ms median" in stdout
    assert set(report["configurations"]) == {"noted"}
    noted = report["configurations"]["noted"]
    assert set(noted) == {"run", "stream", "arun"}
    assert all(row["median_s"] > 0 and row["p95_s"] > 0 for row in noted.values())
