"""The LoCoMo recall benchmark keeps running: every method, on a small conversation in
LoCoMo's format written here (so the test needs no data from outside the project), with
the malformed evidence ids the real data has."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SCRIPT = ROOT / "benchmarks" / "locomo.py"

FACTS = [
    ("Caroline", "I went to a support group meeting yesterday.", None),
    ("Melanie", "That sounds brave. I painted a sunrise over the lake.", "a painting of a lake"),
    ("Caroline", "I am researching adoption agencies for my future family.", None),
    ("Melanie", "My kids love camping in the mountains every summer.", None),
    ("Caroline", "I moved here from Sweden four years ago.", None),
    ("Melanie", "I run a charity race for mental health next month.", None),
]
QUESTIONS = [
    ("When did Caroline go to the support group?", 2, ["D1:1"]),
    ("What did Melanie paint?", 4, ["D1:2"]),
    ("Where did Caroline move from?", 4, ["D:2:1"]),  # malformed, repaired to D2:1
    ("What do Melanie's kids like?", 1, ["D1:4; D2:2"]),  # two ids in one entry
    ("What is Caroline researching?", 3, ["D1:3", "D9:9"]),  # one id names no turn
    ("What did Caroline paint?", 5, ["D1:2"]),
    ("What race does Caroline run?", 5, []),  # no evidence: skipped
]


def write_data(path: Path) -> None:
    session_1 = [
        {"speaker": who, "dia_id": f"D1:{i + 1}", "text": text}
        | ({"blip_caption": caption} if caption else {})
        for i, (who, text, caption) in enumerate(FACTS[:4])
    ]
    session_2 = [
        {"speaker": who, "dia_id": f"D2:{i + 1}", "text": text}
        for i, (who, text, _) in enumerate(FACTS[4:])
    ]
    record = {
        "sample_id": "conv-test",
        "conversation": {
            "speaker_a": "Caroline",
            "speaker_b": "Melanie",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": session_1,
            "session_2_date_time": "10:37 am on 27 June, 2023",
            "session_2": session_2,
        },
        "qa": [
            {"question": q, "answer": "x", "evidence": ev, "category": cat}
            for q, cat, ev in QUESTIONS
        ],
    }
    path.write_text(json.dumps([record]))


METHODS = {"keyword", "semantic", "hybrid"}
KS = ["1", "5", "10", "20", "25", "50"]


def test_locomo_benchmark_smoke(tmp_path: Path) -> None:
    data = tmp_path / "locomo-like.json"
    write_data(data)
    output, image = tmp_path / "x.json", tmp_path / "x.png"
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--conversations",
            "1",
            "--data",
            str(data),
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
    assert "turn row: hybrid 1-5 recall@5 > DRAGON" in done.stdout

    report = json.loads(output.read_text())
    assert report["data"]["conversations"] == 1
    assert report["memories"] == report["data"]["turns"] == 6
    repairs = report["data"]["repairs"]
    assert repairs["resolved_as_written"] == 4
    assert repairs["repaired_ids"] == 3
    assert repairs["dropped_unresolvable"] == ["conv-test D9:9"]
    assert repairs["skipped_questions_by_category"] == {"5": 1}
    single = report["methods"]["keyword"]["categories"]["4"]["recall"]
    assert single["5"] == 1.0  # both single-hop answers are among the first five
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
    # the like-for-like row: the same turns with no neighbouring turns in their input, so
    # keyword search finds only a turn's own words
    assert set(report["rows"]) == {"default", "turn"}
    assert report["rows"]["default"]["methods"] == report["methods"]
    turn = report["rows"]["turn"]["methods"]
    assert set(turn) == METHODS
    scored = report["methods"]["keyword"]["groups"]["1-5"]["questions"]
    assert turn["keyword"]["groups"]["1-5"]["questions"] == scored > 0

    if importlib.util.find_spec("matplotlib") is not None:
        assert image.read_bytes().startswith(b"\x89PNG")
    else:
        assert "skipped the plot" in done.stdout
        assert not image.exists()
