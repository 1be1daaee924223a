"""LoCoMo evidence recall: how often noted's search finds the turns that answer a question.

    scripts/uv.sh run --group bench python benchmarks/locomo.py
    .venv/bin/python benchmarks/locomo.py --conversations 1 --methods hybrid   (a quick run)

LoCoMo (snap-research/locomo, CC BY-NC 4.0) is 10 long conversations between two people
with about 2,000 questions, each naming the dialog turns that hold its answer (its
evidence). The data is read from ``../shared/data/locomo/locomo10.json`` next to the
project (``--data`` or the ``NOTED_LOCOMO`` environment variable name another file); it is
never copied into the project.

Each conversation becomes one user (user_id = its sample_id) of a fresh SQLite file (or,
with ``--store postgres``, of fresh tables on a local PostgreSQL server started here as the
tests start it), with one memory per dialog turn, stored with a single
``add_user_memories`` call (which embeds them with the embedded MiniLM model in one batch):

- text: ``[session date] Speaker: text [shares photo: caption]`` (the caption only for
  turns that share a photo);
- input (the conversation the memory came from, which keyword search indexes too): the
  session date, then the two previous turns, the turn itself and the next turn of the same
  session, one per line.

A second, like-for-like row stores the same memories with no input (``--rows`` picks
them): one memory per turn, the unit the LoCoMo paper's DRAGON retriever searched, so that
keyword search sees only the turn's own words, as DRAGON did.

Every question is then searched with each method (keyword, semantic, hybrid; 50 results)
and scored by recall@k: the share of its evidence turns among the first k results, for
k = 1, 5, 10, 20, 25, 50, averaged over questions per category, over categories 1-4, and
over 1-5 (the LoCoMo paper's overall figure includes the adversarial category 5).
Malformed evidence ids are repaired first (the counts are printed): ``D8:6; D9:17`` is
split, ``D:11:26`` becomes ``D11:26``, ``D30:05`` becomes ``D30:5``; ids that still name no
turn are dropped, and questions left without evidence are skipped.

Also measured: index time (adding + embedding; the keyword index, which takes in new
memories at the next keyword search, is timed apart), query latency per method (p50 and p95
over all questions), the process's peak RSS and its RSS after indexing, and the database size.
Compared with the data's reference figures: plain BM25 over turns (categories 1-4) and the
paper's DRAGON dense retriever (overall, 1-5). Targets: hybrid over 1-5 beats DRAGON at
k = 5, 10, 25, 50 (on both rows); hybrid over 1-4 reaches recall@5 >= 0.70 and recall@10 >=
0.80 (the default row).

Prints tables, writes benchmarks/results/locomo.json and a plot of recall@k next to it
(locomo.png; needs matplotlib, which the bench dependency group installs).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timing import Timing

import noted.memory.index
from noted import Memory, MemoryStore, SqliteDb, UserMemory
from noted.schema import MemoryMatch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "locomo" / "locomo10.json"
DATA_ENV = "NOTED_LOCOMO"

KS = (1, 5, 10, 20, 25, 50)
LIMIT = max(KS)
METHODS = ("keyword", "semantic", "hybrid")
STORES = ("sqlite", "postgres")
ROWS = ("default", "turn")  # memories with their neighbouring turns as input; turns alone
CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
GROUPS = {"1-4": (1, 2, 3, 4), "1-5": (1, 2, 3, 4, 5)}
PREVIOUS_TURNS = 2  # neighbouring turns of the same session in a memory's input ...
NEXT_TURNS = 1  # ... before and after it

# Reference figures from the data's README: plain BM25 over turns, categories 1-4.
BM25_REFERENCE: dict[str, dict[int, float]] = {
    "multi-hop": {1: 0.080, 5: 0.235, 10: 0.337, 20: 0.424},
    "temporal": {1: 0.415, 5: 0.644, 10: 0.713, 20: 0.772},
    "open-domain": {1: 0.098, 5: 0.248, 10: 0.288, 20: 0.353},
    "single-hop": {1: 0.380, 5: 0.628, 10: 0.702, 20: 0.764},
    "1-4": {1: 0.315, 5: 0.536, 10: 0.612, 20: 0.679},
}
# The LoCoMo paper (Table 3): DRAGON over dialog turns, overall including category 5.
DRAGON_REFERENCE: dict[int, float] = {5: 0.588, 10: 0.675, 25: 0.799, 50: 0.848}

# Targets for noted.
TARGET_1_4 = {5: 0.70, 10: 0.80}  # hybrid over categories 1-4, at least


# -- the data ---------------------------------------------------------------------------------


@dataclass
class Turn:
    dia_id: str
    session: int
    speaker: str
    text: str
    caption: str | None
    date: str

    def line(self) -> str:
        """``Speaker: text`` and the shared photo's caption, if any."""
        line = f"{self.speaker}: {self.text}"
        if self.caption:
            line += f" [shares photo: {self.caption}]"
        return line


@dataclass
class Question:
    question: str
    category: int
    evidence: list[str]  # repaired dia_ids that name a turn, each once


@dataclass
class Conversation:
    sample_id: str
    turns: list[Turn]
    questions: list[Question]


@dataclass
class Repairs:
    """What repairing the evidence ids changed."""

    ids: int = 0  # evidence entries as written
    as_written: int = 0  # entries that name a turn as written
    malformed: list[str] = field(default_factory=list)  # entries that did not
    repaired: int = 0  # ids recovered from the malformed entries that name a turn
    unparsable: int = 0  # parts that are no id at all (such as "D")
    unresolvable: list[str] = field(default_factory=list)  # ids naming no turn: dropped
    duplicates: int = 0  # ids given twice for one question: counted once
    skipped: Counter[int] = field(default_factory=Counter)  # questions left with no evidence

    def to_dict(self) -> dict[str, Any]:
        return {
            "evidence_ids": self.ids,
            "resolved_as_written": self.as_written,
            "malformed": self.malformed,
            "repaired_ids": self.repaired,
            "unparsable_parts": self.unparsable,
            "dropped_unresolvable": self.unresolvable,
            "duplicates": self.duplicates,
            "skipped_questions_by_category": {str(c): n for c, n in sorted(self.skipped.items())},
        }


EVIDENCE_ID = re.compile(r"D:?(\d+):(\d+)")


def parse_evidence(entry: object) -> tuple[list[str], int]:
    """The ids in one evidence entry, normalised (``D:11:26`` -> ``D11:26``, ``D30:05`` ->
    ``D30:5``), and how many of its parts are no id at all."""
    ids: list[str] = []
    unparsable = 0
    for part in re.split(r"[;,\s]+", str(entry).strip()):
        if not part:
            continue
        match = EVIDENCE_ID.fullmatch(part)
        if match is None:
            unparsable += 1
        else:
            ids.append(f"D{int(match.group(1))}:{int(match.group(2))}")
    return ids, unparsable


def session_numbers(conversation: dict[str, Any]) -> list[int]:
    found = (re.fullmatch(r"session_(\d+)", key) for key in conversation)
    return sorted(int(m.group(1)) for m in found if m is not None)


def load(path: Path, repairs: Repairs) -> list[Conversation]:
    records = json.loads(path.read_text(encoding="utf-8"))
    conversations = []
    for record in records:
        dialog = record["conversation"]
        turns = []
        for number in session_numbers(dialog):
            date = dialog.get(f"session_{number}_date_time", "")
            for turn in dialog[f"session_{number}"] or []:
                turns.append(
                    Turn(
                        dia_id=turn["dia_id"],
                        session=number,
                        speaker=turn["speaker"],
                        text=turn["text"],
                        caption=turn.get("blip_caption"),
                        date=date,
                    )
                )
        known = {turn.dia_id for turn in turns}
        questions = []
        for qa in record["qa"]:
            evidence: list[str] = []
            for entry in qa.get("evidence") or []:
                repairs.ids += 1
                if entry in known:
                    repairs.as_written += 1
                else:
                    repairs.malformed.append(str(entry))
                ids, unparsable = parse_evidence(entry)
                repairs.unparsable += unparsable
                for dia_id in ids:
                    if dia_id not in known:
                        repairs.unresolvable.append(f"{record['sample_id']} {dia_id}")
                    elif dia_id in evidence:
                        repairs.duplicates += 1
                    else:
                        evidence.append(dia_id)
                        repairs.repaired += entry not in known
            category = int(qa["category"])
            if not evidence:
                repairs.skipped[category] += 1
                continue
            questions.append(Question(qa["question"], category, evidence))
        conversations.append(Conversation(record["sample_id"], turns, questions))
    return conversations


def as_memories(turns: list[Turn], neighbours: bool = True) -> list[UserMemory]:
    """One memory per turn: its dated line, with the neighbouring turns of its session as
    the input it came from (no input without ``neighbours``)."""
    if not neighbours:
        return [UserMemory(f"[{turn.date}] {turn.line()}") for turn in turns]
    memories = []
    for i, turn in enumerate(turns):
        around = [
            other.line()
            for other in turns[max(0, i - PREVIOUS_TURNS) : i + NEXT_TURNS + 1]
            if other.session == turn.session
        ]
        memories.append(
            UserMemory(f"[{turn.date}] {turn.line()}", input=f"[{turn.date}] " + "\n".join(around))
        )
    return memories


# -- measuring ------------------------------------------------------------------------------


def rss_now() -> int | None:
    """The process's resident set size in bytes (Linux), None where it cannot be read."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def rss_peak() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def db_size(path: Path) -> dict[str, int]:
    sizes = {}
    for suffix in ("", "-wal"):
        part = path.with_name(path.name + suffix)
        if part.exists():
            sizes[part.name] = part.stat().st_size
    return sizes


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Scores:
    """recall@k of each question searched with one method."""

    rows: list[tuple[int, dict[int, float]]] = field(default_factory=list)  # (category, k ->)
    latency: Timing = field(default_factory=Timing)

    def add(self, question: Question, found: list[str], seconds: float) -> None:
        evidence = set(question.evidence)
        recall = {k: len(evidence.intersection(found[:k])) / len(evidence) for k in KS}
        self.rows.append((question.category, recall))
        self.latency.samples.append(seconds)

    def recall(self, categories: tuple[int, ...]) -> dict[str, Any]:
        rows = [recall for category, recall in self.rows if category in categories]
        means = {str(k): sum(r[k] for r in rows) / len(rows) if rows else None for k in KS}
        return {"questions": len(rows), "recall": means}

    def summary(self) -> dict[str, Any]:
        samples = self.latency.samples
        return {
            "groups": {name: self.recall(cats) for name, cats in GROUPS.items()},
            "categories": {
                str(c): {"name": name, **self.recall((c,))} for c, name in CATEGORIES.items()
            },
            "latency_ms": {
                "p50": self.latency.median * 1e3 if samples else None,
                "p95": self.latency.p95 * 1e3 if samples else None,
                "mean": sum(samples) / len(samples) * 1e3 if samples else None,
                "queries": len(samples),
            },
        }


Opened = tuple[MemoryStore, Callable[[], dict[str, int]]]  # a store and its size in bytes


@contextmanager
def stores(kind: str, workdir: Path) -> Iterator[Callable[[str], Opened]]:
    """What opens a fresh store for each row: a SQLite file in ``workdir``, or fresh tables
    on a local PostgreSQL server, started as the tests start theirs and stopped at the end."""
    if kind == "sqlite":

        def sqlite_store(row: str) -> Opened:
            path = workdir / f"{row}.db"
            return SqliteDb(path), lambda: db_size(path)

        yield sqlite_store
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from noted.db.postgres import PostgresDb
    from servers import start_postgres

    server = start_postgres(workdir / "postgres")

    def postgres_store(row: str) -> Opened:
        db = PostgresDb(server.url, memory_table=f"locomo_{row}", session_table="locomo_s")

        def size() -> dict[str, int]:
            with db._connection() as conn:
                found = conn.execute("SELECT pg_total_relation_size(%s)", (db.memory_table,))
                return {db.memory_table: int(found.fetchone()[0])}  # type: ignore[index]

        return db, size

    try:
        yield postgres_store
    finally:
        server.stop()


def run(
    conversations: list[Conversation],
    methods: list[str],
    opened: Opened,
    weight: float | None,
    neighbours: bool = True,
) -> dict[str, Any]:
    db, size_of = opened
    memory = Memory(db=db, embedder="local")
    assert memory.index is not None
    assert memory.embedder is not None
    if weight is not None:
        memory.index.semantic_weight = weight

    start = time.perf_counter()
    load_model = getattr(memory.embedder, "load", None)
    if load_model is not None:  # the model's load is not part of the index time
        load_model()
    model_load_s = time.perf_counter() - start

    dia_ids: dict[str, str] = {}  # memory_id -> dia_id
    index_s = 0.0
    for conversation in conversations:
        memories = as_memories(conversation.turns, neighbours)
        start = time.perf_counter()
        ids = memory.add_user_memories(memories, user_id=conversation.sample_id)
        index_s += time.perf_counter() - start
        assert len(ids) == len(conversation.turns)
        dia_ids.update(zip(ids, (turn.dia_id for turn in conversation.turns), strict=True))
        print(f"  indexed {conversation.sample_id}: {len(ids)} turns", flush=True)
    stored = len(dia_ids)
    rss_indexed = rss_now()
    db_indexed = size_of()
    # The keyword index takes in new memories at the next keyword search: time that here,
    # so that it is not part of the first question's latency.
    start = time.perf_counter()
    for conversation in conversations[:1]:
        text = " ".join(turn.text for turn in conversation.turns[:3])
        memory.search_user_memories(
            text, user_id=conversation.sample_id, limit=1, retrieval_method="keyword"
        )
    keyword_index_s = time.perf_counter() - start

    scores = {method: Scores() for method in methods}
    for method in methods:
        start_method = time.perf_counter()
        for conversation in conversations:
            for question in conversation.questions:
                start = time.perf_counter()
                found = memory.search_user_memories(
                    question.question,
                    user_id=conversation.sample_id,
                    limit=LIMIT,
                    retrieval_method=method,
                )
                seconds = time.perf_counter() - start
                ranked = [
                    dia_ids[match.memory_id]
                    for match in found
                    if isinstance(match, MemoryMatch) and match.memory_id is not None
                ]
                scores[method].add(question, ranked, seconds)
        print(
            f"  searched {len(scores[method].rows)} questions by {method} in "
            f"{time.perf_counter() - start_method:.1f} s",
            flush=True,
        )
    return {
        "embedder": memory.embedder.model_name,
        "semantic_weight": memory.index.semantic_weight,
        "hybrid_depth": noted.memory.index.HYBRID_DEPTH,
        "memories": stored,
        "index": {
            "model_load_s": model_load_s,
            "total_s": index_s,
            "per_memory_ms": index_s / stored * 1e3 if stored else None,
            "memories_per_s": stored / index_s if index_s else None,
            "keyword_index_s": keyword_index_s,
        },
        "memory": {
            "rss_after_index_bytes": rss_indexed,
            "peak_rss_bytes": rss_peak(),
            "db_bytes_after_index": db_indexed,
            "db_bytes": size_of(),
        },
        "methods": {method: scores[method].summary() for method in methods},
    }


# -- reporting --------------------------------------------------------------------------------


def cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def table(rows: list[tuple[str, int | None, dict[int, float | None]]]) -> str:
    header = f"{'':34} {'n':>5}" + "".join(f" {'@' + str(k):>6}" for k in KS)
    lines = [header, "-" * len(header)]
    for label, count, recall in rows:
        lines.append(
            f"{label:34} {'' if count is None else count:>5}"
            + "".join(f" {cell(recall.get(k)):>6}" for k in KS)
        )
    return "\n".join(lines)


def recall_of(entry: dict[str, Any]) -> dict[int, float | None]:
    return {int(k): v for k, v in entry["recall"].items()}


def overall_rows(methods: dict[str, Any]) -> list[tuple[str, int | None, dict[int, Any]]]:
    rows: list[tuple[str, int | None, dict[int, Any]]] = []
    for group in GROUPS:
        for method, result in methods.items():
            entry = result["groups"][group]
            rows.append((f"{method}, categories {group}", entry["questions"], recall_of(entry)))
    rows.append(("reference BM25, categories 1-4", 1536, dict(BM25_REFERENCE["1-4"])))
    rows.append(("reference DRAGON, categories 1-5", None, dict(DRAGON_REFERENCE)))
    return rows


def category_rows(methods: dict[str, Any]) -> list[tuple[str, int | None, dict[int, Any]]]:
    rows: list[tuple[str, int | None, dict[int, Any]]] = []
    for category, name in CATEGORIES.items():
        for method, result in methods.items():
            entry = result["categories"][str(category)]
            rows.append((f"{category} {name}, {method}", entry["questions"], recall_of(entry)))
        if name in BM25_REFERENCE:
            rows.append((f"{category} {name}, reference BM25", None, dict(BM25_REFERENCE[name])))
    return rows


def targets(methods: dict[str, Any], row: str = "default") -> list[dict[str, Any]]:
    hybrid = methods.get("hybrid")
    prefix = "" if row == "default" else f"{row} row: "
    checks: list[dict[str, Any]] = []
    for k, dragon in DRAGON_REFERENCE.items():
        value = None if hybrid is None else hybrid["groups"]["1-5"]["recall"][str(k)]
        checks.append(
            {
                "target": f"{prefix}hybrid 1-5 recall@{k} > DRAGON {dragon:.3f}",
                "value": value,
                "met": None if value is None else value > dragon,
            }
        )
    for k, least in TARGET_1_4.items() if row == "default" else ():
        value = None if hybrid is None else hybrid["groups"]["1-4"]["recall"][str(k)]
        checks.append(
            {
                "target": f"hybrid 1-4 recall@{k} >= {least:.2f}",
                "value": value,
                "met": None if value is None else value >= least,
            }
        )
    return checks


def plot(report: dict[str, Any], path: Path) -> str:
    """Recall@k curves, 1-5 and 1-4 side by side; a message saying what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed: skipped the plot (the bench group installs it)"
    figure, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for axis, group in zip(axes, ("1-5", "1-4"), strict=True):
        for method, result in report["methods"].items():
            entry = result["groups"][group]
            recall = recall_of(entry)
            if entry["questions"]:
                axis.plot(KS, [recall[k] for k in KS], marker="o", label=f"noted {method}")
        if group == "1-5":
            reference, label = DRAGON_REFERENCE, "DRAGON (LoCoMo paper)"
            title = "categories 1-5 (the LoCoMo paper's overall)"
        else:
            reference, label = BM25_REFERENCE["1-4"], "BM25 over turns (reference)"
            title = "categories 1-4"
        axis.plot(
            list(reference),
            list(reference.values()),
            linestyle="--",
            marker="s",
            color="grey",
            label=label,
        )
        axis.set_title(title)
        axis.set_xlabel("k (results)")
        axis.set_xticks(KS)
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(loc="lower right")
    axes[0].set_ylabel("evidence recall@k")
    conversations = report["data"]["conversations"]
    figure.suptitle(f"LoCoMo evidence recall, {conversations} conversation(s), one memory per turn")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"wrote {path}"


def megabytes(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def data_path(given: Path | None) -> Path:
    if given is not None:
        return given
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else DEFAULT_DATA


def weight(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"the semantic weight must be from 0 to 1, got {text}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help=f"locomo10.json (default: ${DATA_ENV} or ..)")
    parser.add_argument("--conversations", type=int, help="only the first N conversations")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated methods")
    parser.add_argument("--semantic-weight", type=weight, help="hybrid's semantic weight")
    parser.add_argument("--depth", type=int, help="results taken from each side by hybrid")
    parser.add_argument(
        "--rows", default=",".join(ROWS), help="default (turns with neighbours), turn (alone)"
    )
    parser.add_argument("--store", choices=STORES, default="sqlite", help="where memories go")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo.json", help="JSON")
    parser.add_argument("--plot", type=Path, help="PNG (default: locomo.png next to the JSON)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        parser.error(f"--methods takes some of {', '.join(METHODS)}, got {args.methods!r}")
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    if not rows or set(rows) - set(ROWS):
        parser.error(f"--rows takes some of {', '.join(ROWS)}, got {args.rows!r}")
    if args.depth is not None:
        if args.depth < 1:
            parser.error("--depth must be a positive integer")
        noted.memory.index.HYBRID_DEPTH = args.depth  # type: ignore[misc]
    path = data_path(args.data)
    if not path.is_file():
        sys.exit(
            f"LoCoMo data not found at {path}: it belongs in ../shared/data/locomo/ next to the "
            f"project; give another path with --data or ${DATA_ENV}"
        )

    repairs = Repairs()
    conversations = load(path, repairs)
    if args.conversations is not None:
        if args.conversations < 1:
            parser.error("--conversations must be a positive integer")
        conversations = conversations[: args.conversations]
    turns = sum(len(c.turns) for c in conversations)
    asked = Counter(q.category for c in conversations for q in c.questions)
    print(f"LoCoMo: {path}")
    print(
        f"  {len(conversations)} conversations, {turns} turns, {sum(asked.values())} questions "
        f"scored ({', '.join(f'cat {c}: {asked[c]}' for c in CATEGORIES)})"
    )
    skipped = ", ".join(f"cat {c}: {n}" for c, n in sorted(repairs.skipped.items())) or "none"
    print(
        f"  evidence ids (all 10 conversations): {repairs.ids} given, {repairs.as_written} "
        f"resolve as written, {len(repairs.malformed)} malformed {repairs.malformed} -> "
        f"{repairs.repaired} repaired, {repairs.unparsable} unparsable part(s), "
        f"{len(repairs.unresolvable)} unresolvable dropped {repairs.unresolvable}, "
        f"{repairs.duplicates} duplicate(s); questions skipped for no evidence: {skipped}"
    )

    measured: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp, stores(args.store, Path(tmp)) as open_store:
        for row in rows:
            print(f"row {row}:", flush=True)
            measured[row] = run(
                conversations, methods, open_store(row), args.semantic_weight, row != "turn"
            )
    first = measured[rows[0]]

    report: dict[str, Any] = {
        "data": {
            "path": str(path),
            "sha256": sha256(path),
            "conversations": len(conversations),
            "turns": turns,
            "questions": {str(c): asked[c] for c in CATEGORIES},
            "repairs": repairs.to_dict(),
        },
        "settings": {"limit": LIMIT, "ks": list(KS), "methods": methods, "store": args.store},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        **first,
        "row": rows[0],
        "rows": {
            row: {"methods": m["methods"], "targets": targets(m["methods"], row)}
            for row, m in measured.items()
        },
        "references": {
            "bm25_1_4": {
                name: {str(k): v for k, v in r.items()} for name, r in BM25_REFERENCE.items()
            },
            "dragon_1_5": {str(k): v for k, v in DRAGON_REFERENCE.items()},
        },
    }
    report["targets"] = [t for m in report["rows"].values() for t in m["targets"]]

    index = report["index"]
    used = report["memory"]
    print(
        f"\nembedder {report['embedder']}, hybrid semantic weight {report['semantic_weight']}, "
        f"depth {report['hybrid_depth']}"
    )
    print(
        f"index time: {index['total_s']:.1f} s for {report['memories']} memories "
        f"({index['per_memory_ms']:.2f} ms per memory, {index['memories_per_s']:.0f}/s; "
        f"model load {index['model_load_s']:.2f} s, not included); keyword index built by "
        f"the first keyword search: {index['keyword_index_s']:.2f} s"
    )
    print(
        f"memory: RSS after indexing {megabytes(used['rss_after_index_bytes'])}, peak RSS "
        f"{megabytes(used['peak_rss_bytes'])}; database "
        f"{megabytes(sum(used['db_bytes'].values()))} ({used['db_bytes']})"
    )
    print("query latency (ms):")
    for method, result in report["methods"].items():
        latency = result["latency_ms"]
        print(f"  {method:9} p50 {latency['p50']:7.2f}  p95 {latency['p95']:7.2f}")

    print(f"\nevidence recall@k, limit {LIMIT}, row {rows[0]}\n")
    print(table(overall_rows(report["methods"])))
    for row in rows[1:]:
        print(f"\nrow {row} (one memory per turn, no input: the unit DRAGON searched)\n")
        print(table(overall_rows(report["rows"][row]["methods"])))
    print()
    print(table(category_rows(report["methods"])))
    print()
    if len(conversations) < 10:
        print(f"targets (on {len(conversations)} of 10 conversations only):")
    else:
        print("targets:")
    for check in report["targets"]:
        met = check["met"]
        state = "not measured" if met is None else "met" if met else "MISSED"
        print(f"  {check['target']:38} {cell(check['value']):>6}  {state}")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    print(plot(report, args.plot or args.output.with_suffix(".png")))


if __name__ == "__main__":
    main()
