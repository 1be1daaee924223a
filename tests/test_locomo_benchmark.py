"""The LoCoMo recall benchmark keeps running: one conversation, every method."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "locomo.py"
DATA = Path(os.environ.get("NOTED_LOCOMO") or ROOT.parent / "shared/data/locomo/locomo10.json")
METHODS = {"keyword", "semantic", "hybrid"}
KS = ["1", "5", "10", "20", "25", "50"]


def test_locomo_benchmark_smoke(tmp_path: Path) -> None:
    assert DATA.is_file(), (
        f"LoCoMo data missing at {DATA}: it is part of the machine's setup "
        "(../shared/data/locomo/locomo10.json next to the project, or $NOTED_LOCOMO)"
    )
    output, image = tmp_path / "x.json", tmp_path / "x.png"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--conversations",
            "1",
            "--data",
            str(DATA),
            "--output",
            str(output),
            "--plot",
            str(image),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "hybrid 1-5 recall@5 > DRAGON" in done.stdout

    report = json.loads(output.read_text())
    assert report["data"]["conversations"] == 1
    assert report["memories"] == report["data"]["turns"] > 0
    assert report["data"]["repairs"]["resolved_as_written"] > 0
    assert set(report["methods"]) == METHODS
    for result in report["methods"].values():
        entries = [*result["groups"].values(), *result["categories"].values()]
        for entry in entries:
            if not entry["questions"]:
                continue
            recall = entry["recall"]
            assert list(recall) == KS
            assert all(0 <= recall[k] <= 1 for k in KS)
            assert recall["50"] >= recall["1"]
            assert all(recall[a] <= recall[b] for a, b in itertools.pairwise(KS))
        assert result["groups"]["1-5"]["questions"] > result["groups"]["1-4"]["questions"] > 0
        latency = result["latency_ms"]
        assert {"p50", "p95"} <= set(latency)
        assert 0 < latency["p50"] <= latency["p95"]
    assert report["index"]["total_s"] > 0
    assert report["memory"]["peak_rss_bytes"] > 0
    assert {t["met"] for t in report["targets"]} <= {True, False}

    if importlib.util.find_spec("matplotlib") is not None:
        assert image.read_bytes().startswith(b"\x89PNG")
    else:
        assert "skipped the plot" in done.stdout
        assert not image.exists()
