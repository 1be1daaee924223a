"""The LoCoMo context-recall benchmark and its offline scorer keep running, on two small
conversations in LoCoMo's format written here (observations included), and the scorer
reports what the agent benchmark reports for the same code, as its docstring says."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).parents[1]
CONTEXT = ROOT / "benchmarks" / "locomo_context.py"
SELECTION = ROOT / "benchmarks" / "locomo_selection.py"

# per conversation: speakers, sessions of (speaker, turn text, observation or None),
# questions of (question, category, evidence)
CONVERSATIONS: list[dict[str, Any]] = [
    {
        "id": "conv-a",
        "speakers": ("Caroline", "Melanie"),
        "sessions": [
            [
                (
                    "Caroline",
                    "I went to a support group yesterday.",
                    "Caroline went to a support group.",
                ),
                (
                    "Melanie",
                    "I painted a sunrise over the lake.",
                    "Melanie painted a lake sunrise.",
                ),
                ("Caroline", "Nice weather today.", None),
            ],
            [
                ("Caroline", "I moved here from Sweden.", "Caroline moved from Sweden."),
                ("Melanie", "My kids love camping.", "Melanie's kids love camping."),
            ],
        ],
        "questions": [
            ("When did Caroline go to the support group?", 2, ["D1:1"]),
            ("What did Melanie paint?", 4, ["D1:2"]),
            ("Where did Caroline move from?", 4, ["D2:1"]),
            ("What do Melanie's kids and Caroline share?", 1, ["D2:2", "D1:1"]),
            ("What would Caroline think of Sweden?", 3, ["D2:1"]),
            ("Was the weather nice?", 4, ["D1:3"]),  # no observation: not asked
            ("What race does Caroline run?", 5, ["D1:1"]),  # category 5: not asked
        ],
    },
    {
        "id": "conv-b",
        "speakers": ("Jon", "Gina"),
        "sessions": [
            [
                ("Jon", "I lost my job as a banker.", "Jon lost his banking job."),
                ("Gina", "I opened an online clothing store.", "Gina opened a clothing store."),
            ],
        ],
        "questions": [
            ("What did Gina open?", 4, ["D1:2"]),
            ("What was Jon's job?", 1, ["D1:1"]),
        ],
    },
]
ASKED = {"conv-a": 5, "conv-b": 2}  # categories 1-4 with evidence that has observations


def write_data(path: Path) -> None:
    records = []
    for conv in CONVERSATIONS:
        dialog: dict[str, Any] = {
            "speaker_a": conv["speakers"][0],
            "speaker_b": conv["speakers"][1],
        }
        observed: dict[str, dict[str, list[list[str]]]] = {}
        for number, turns in enumerate(conv["sessions"], start=1):
            dialog[f"session_{number}_date_time"] = f"1:56 pm on {number} May, 2023"
            dialog[f"session_{number}"] = [
                {"speaker": who, "dia_id": f"D{number}:{i}", "text": text}
                for i, (who, text, _) in enumerate(turns, start=1)
            ]
            by_speaker: dict[str, list[list[str]]] = {}
            for i, (who, _, fact) in enumerate(turns, start=1):
                if fact is not None:
                    by_speaker.setdefault(who, []).append([fact, f"D{number}:{i}"])
            observed[f"session_{number}_observation"] = by_speaker
        records.append(
            {
                "sample_id": conv["id"],
                "conversation": dialog,
                "observation": observed,
                "qa": [
                    {"question": q, "answer": "x", "evidence": ev, "category": cat}
                    for q, cat, ev in conv["questions"]
                ],
            }
        )
    path.write_text(json.dumps(records))


def run(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_context_recall_rows_and_the_offline_scorer_agree(tmp_path: Path) -> None:
    data = tmp_path / "locomo-like.json"
    write_data(data)
    context = tmp_path / "context.json"
    done = run(CONTEXT, "--data", str(data), "--padded", "1", "--output", str(context))
    assert done.returncode == 0, done.stderr
    assert "LoCoMo: 2 users, 6 observations" in done.stdout
    rows = json.loads(context.read_text())["rows"]
    assert set(rows) == {
        "every memory",
        "recency window",
        "keyword only",
        "default",
        "keyword only, padded",
        "default, padded",
    }
    asked = sum(ASKED.values())
    for name, row in rows.items():
        expected = ASKED["conv-a"] if name.endswith("padded") else asked
        assert row["questions"] == expected, name
        assert 0 <= row["recall_1_4"] <= 1
        assert all(0 <= v <= 1 for v in row["categories"].values() if v is not None)
        assert 0 < row["selection_ms_p50"] <= row["selection_ms_p95"]
    assert rows["every memory"]["recall_1_4"] == 1.0  # a few short facts all fit
    assert rows["default"]["chars_mean"] <= 4000
    assert rows["default, padded"]["chars_mean"] <= 4000

    scored, cache = tmp_path / "selection.json", tmp_path / "kept.npz"
    args = ("--data", str(data), "--padded", "1", "--cache", str(cache))
    variants = ("--variants", "now; flat:CENTERING=0")
    done = run(SELECTION, *args, *variants, "--output", str(scored))
    assert done.returncode == 0, done.stderr
    assert cache.is_file()
    first = json.loads(scored.read_text())["rows"]
    assert set(first) == {"now", "flat", "now, padded", "flat, padded"}
    for mine, theirs in (("now", "default"), ("now, padded", "default, padded")):
        for key in ("questions", "recall_1_4", "categories", "chars_mean", "tokens_mean"):
            assert first[mine][key] == rows[theirs][key], (mine, key)

    # a second run reads the kept embeddings and scores the same
    again = tmp_path / "again.json"
    done = run(SELECTION, *args, *variants, "--output", str(again))
    assert done.returncode == 0, done.stderr
    second = json.loads(again.read_text())["rows"]
    for name in first:
        assert second[name]["recall_1_4"] == first[name]["recall_1_4"]

    # another store scores the same questions with the same budget
    other = tmp_path / "other.json"
    done = run(SELECTION, *args, "--store", "in-memory", "--output", str(other))
    assert done.returncode == 0, done.stderr
    elsewhere = json.loads(other.read_text())["rows"]
    assert set(elsewhere) == {"now", "now, padded"}
    for name in elsewhere:
        assert elsewhere[name]["questions"] == first[name]["questions"]
        assert 0 < elsewhere[name]["recall_1_4"] <= 1

    done = run(SELECTION, *args, "--variants", "x:NO_SUCH_CONSTANT=1", "--output", str(again))
    assert done.returncode != 0
    assert "no constant NO_SUCH_CONSTANT" in done.stderr
