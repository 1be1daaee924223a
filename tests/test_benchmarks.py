"""The benchmarks keep running: a small-scale smoke run of each (timings not checked)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def test_store_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "store.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "store.py"),
            "--scale",
            "0.02",
            "--no-agno",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "last_n limit 10 (10,000)" in done.stdout
    report = json.loads(out.read_text())
    assert set(report["operations"]) >= {"single add", "bulk import 10,000", "page of 20 (10,000)"}


def test_agent_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "agent.json"
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "agent.py"),
            "--runs",
            "5",
            "--history",
            "5",
            "--no-agno",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "target <= 5 ms median" in done.stdout
    report = json.loads(out.read_text())
    assert set(report["configurations"]) == {"noted"}
    noted = report["configurations"]["noted"]
    assert set(noted) == {"run", "stream", "arun"}
    assert all(row["median_s"] > 0 and row["p95_s"] > 0 for row in noted.values())
