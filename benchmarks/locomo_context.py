"""LoCoMo context recall: how much of each question's evidence reaches the agent's prompt.

    scripts/uv.sh run --group bench python benchmarks/locomo_context.py
    .venv/bin/python benchmarks/locomo_context.py --conversations 2 --padded 1   (quicker)

LoCoMo's per-session ``observation`` facts (each names the dialog turn it came from) become
the memories of one user per conversation, stored as ``[session date] fact`` with
``add_user_memories``. For every question of categories 1-4 with at least one evidence turn
that has observations, an :class:`~noted.Agent` with memory in context (and its default
4,000-character budget) answers through a ``FunctionModel`` that keeps the system prompt;
the memory lines in that prompt map back to their observations' turns. Context recall is
the share of the question's evidence turns (those with observations) that the prompt covers.

Rows (one run, the same questions):

- every memory: all of the user's memories in the prompt, whatever their size (how an agent
  that sends every memory works): recall 1 by construction, its size is the point;
- recency window: the selection noted made before searching all memories (the 200 newest
  ranked by shared words, at most 30, cut to 4,000 characters);
- keyword only: ``Memory(db, embedder=None)``;
- default: ``Memory(db)`` (the embedded local embedder);
- keyword only / default, padded: each of the first ``--padded`` users' memories padded to
  10,000 with other conversations' observations (cycled, so repeated texts too).

Reported per row: recall per category and over 1-4, the memory section's characters and
estimated tokens (mean), and the selection's time (the agent's memory search and fitting,
the query's embedding included; p50 and p95). Targets: default >= 0.92 over 1-4 and every
category >= 0.85; keyword only >= 0.80; padded default >= 0.85; selection <= 15 ms p50 for
the padded default. Writes benchmarks/results/locomo_context.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from locomo import CATEGORIES, Conversation, Repairs, data_path, load, parse_evidence
from timing import Timing

from noted import Agent, Memory, SqliteDb, UserMemory
from noted.agent.context import MEMORY_SECTION, fit_memories
from noted.memory import selection
from noted.memory.relevance import rank_memories
from noted.memory.selection import estimate_tokens
from noted.models.types import Message
from noted.retrieval import default_embedder
from noted.retrieval.embedders import BaseEmbedder, Kind
from noted.testing import FunctionModel

RESULTS = Path(__file__).parent / "results"
BUDGET = 4000
PADDED_TO = 10_000
TARGETS = {"default": 0.92, "keyword only": 0.80, "default, padded": 0.85}
CATEGORY_TARGET = 0.85
SELECTION_TARGET_MS = 15.0


@dataclass
class User:
    conversation: Conversation
    facts: list[tuple[str, set[str]]]  # "[date] fact", the turns it came from


def observations(record: dict[str, Any]) -> list[tuple[str, set[str]]]:
    """The conversation's observation facts, dated by their session, with their turns."""
    dialog = record["conversation"]
    facts: dict[str, set[str]] = {}
    for key, by_speaker in record["observation"].items():
        number = re.fullmatch(r"session_(\d+)_observation", key)
        if number is None:
            continue
        date = dialog.get(f"session_{number.group(1)}_date_time", "")
        for items in by_speaker.values():
            for text, source in items:
                turns = set()
                for entry in source if isinstance(source, list) else [source]:
                    turns.update(parse_evidence(entry)[0])
                facts.setdefault(f"[{date}] {text}", set()).update(turns)
    return list(facts.items())


class CachedEmbedder(BaseEmbedder):
    """The default embedder, each distinct text embedded once (padding repeats texts)."""

    def __init__(self) -> None:
        self.inner = default_embedder()
        super().__init__(self.inner.model_name, self.inner.dimensions)
        self.known: dict[tuple[str, str], Any] = {}

    def _embed_batch(self, texts: list[str], kind: Kind) -> Any:
        missing = list(dict.fromkeys(t for t in texts if (kind, t) not in self.known))
        if missing:
            for text, vector in zip(missing, self.inner.embed(missing, kind=kind), strict=True):
                self.known[(kind, text)] = vector
        return [self.known[(kind, t)] for t in texts]


@dataclass
class Row:
    rows: list[tuple[int, float]] = field(default_factory=list)
    chars: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    selection: Timing = field(default_factory=Timing)

    def add(self, category: int, recall: float, section: str) -> None:
        self.rows.append((category, recall))
        self.chars.append(len(section))
        self.tokens.append(estimate_tokens(section))

    def summary(self) -> dict[str, Any]:
        def mean(values: Sequence[float]) -> float | None:
            return sum(values) / len(values) if values else None

        by_category = {
            CATEGORIES[c]: mean([r for cat, r in self.rows if cat == c]) for c in (1, 2, 3, 4)
        }
        samples = self.selection.samples
        return {
            "questions": len(self.rows),
            "recall_1_4": mean([r for _, r in self.rows]),
            "categories": by_category,
            "chars_mean": mean(self.chars),
            "tokens_mean": mean(self.tokens),
            "selection_ms_p50": self.selection.median * 1e3 if samples else None,
            "selection_ms_p95": self.selection.p95 * 1e3 if samples else None,
        }


def section_of(messages: list[Message]) -> str:
    system = messages[0].content if messages and messages[0].role == "system" else ""
    found = re.search(rf"<{MEMORY_SECTION}>\n(.*?)\n</{MEMORY_SECTION}>", system or "", re.S)
    return "" if found is None else found.group(1)


def lines_of(section: str) -> list[str]:
    """The memories' texts in the section: its lines, each under a heading (a label its
    memories share, written once after the lines of their own) joined to it again."""
    texts: list[str] = []
    heading = ""
    for line in section.splitlines()[1:]:  # the introduction first
        if line.startswith("- "):
            texts.append(f"{heading} {line[2:]}" if heading else line[2:])
        else:
            heading = line
    return texts


def coverage(texts: Sequence[str], turns_of: dict[str, set[str]], evidence: set[str]) -> float:
    covered: set[str] = set()
    for text in texts:
        covered |= turns_of.get(text, set())
    return len(covered & evidence) / len(evidence)


def questions_of(user: User) -> list[tuple[int, str, set[str]]]:
    with_facts = set().union(*(turns for _, turns in user.facts))
    asked = []
    for q in user.conversation.questions:
        evidence = set(q.evidence) & with_facts
        if q.category in (1, 2, 3, 4) and evidence:
            asked.append((q.category, q.question, evidence))
    return asked


def padding(users: list[User], own: User, count: int) -> list[str]:
    pool = [text for other in users if other is not own for text, _ in other.facts]
    return [pool[i % len(pool)] for i in range(max(0, count))]


def fill(memory: Memory, user: User, pad: list[str]) -> dict[str, set[str]]:
    """Store the padding, then the user's own facts; return their texts' turns."""
    user_id = user.conversation.sample_id
    memory.clear(user_id=user_id)
    for start in range(0, len(pad), 1000):
        memory.add_user_memories([UserMemory(t) for t in pad[start : start + 1000]], user_id)
    memory.add_user_memories([UserMemory(text) for text, _ in user.facts], user_id)
    return dict(user.facts)


def agent_row(
    memory: Memory, users: list[User], pad_to: int | None, label: str, pool: list[User]
) -> Row:
    row = Row()
    captured: list[list[Message]] = []

    def answer(messages: list[Message], tools: object) -> str:
        captured.append(messages)
        return "ok"

    for user in users:
        user_id = user.conversation.sample_id
        pad = padding(pool, user, pad_to - len(user.facts)) if pad_to else []
        turns_of = fill(memory, user, pad)
        agent = Agent(
            FunctionModel(answer), memory=memory, user_id=user_id, add_memories_to_context=True
        )
        assert agent.memory is not None
        agent.memory.relevant(user_id, "warm up")  # embeds what the writes left to the search
        for category, question, evidence in questions_of(user):
            start = time.perf_counter()
            fit_memories(
                agent.memory.relevant(user_id, question),
                agent.memory.context_chars,
                budget_tokens=agent.memory.context_tokens,
            )
            row.selection.samples.append(time.perf_counter() - start)
            captured.clear()
            agent.run(question, session_id=f"q{len(row.rows)}")
            section = section_of(captured[0])
            row.add(category, coverage(lines_of(section), turns_of, evidence), section)
        print(f"  {label}: {user_id} done ({len(row.rows)} questions so far)", flush=True)
    return row


def direct_row(
    memory: Memory, users: list[User], choose: Callable[[Memory, str, str], list[UserMemory]]
) -> Row:
    row = Row()
    for user in users:
        user_id = user.conversation.sample_id
        turns_of = fill(memory, user, [])
        for category, question, evidence in questions_of(user):
            start = time.perf_counter()
            kept = choose(memory, user_id, question)
            row.selection.samples.append(time.perf_counter() - start)
            section = "\n".join(f"- {m.memory}" for m in kept)
            row.add(category, coverage([m.memory for m in kept], turns_of, evidence), section)
    return row


def every_memory(memory: Memory, user_id: str, question: str) -> list[UserMemory]:
    return memory.get_user_memories(user_id)


def recency_window(memory: Memory, user_id: str, question: str) -> list[UserMemory]:
    """The selection before noted searched all memories, fitted as it was then: each
    line written whole, one too long passed over until under 40 characters are left."""
    recent = memory.get_user_memories(user_id, limit=200)
    kept: list[UserMemory] = []
    used = 0
    for chosen in rank_memories(recent, question, 30):
        line = f"- {chosen.memory}"
        if used + len(line) > BUDGET:
            if BUDGET - used < 40:
                break
            continue
        kept.append(chosen)
        used += len(line) + 1
    return kept


def run(
    users: list[User], padded: int, folder: Path, pool: list[User], args: argparse.Namespace
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    only = {name.strip() for name in (args.only or "").split(";") if name.strip()}

    def done(name: str, make: Callable[[], Row]) -> None:
        if only and name not in only:
            return
        results[name] = make().summary()
        print(report({name: results[name]}), flush=True)

    plain = Memory(db=SqliteDb(folder / "plain.db"), embedder=None)
    done("every memory", lambda: direct_row(plain, users, every_memory))
    done("recency window", lambda: direct_row(plain, users, recency_window))
    done("keyword only", lambda: agent_row(plain, users, None, "keyword only", pool))
    embedder = CachedEmbedder()
    default = Memory(db=SqliteDb(folder / "default.db"), embedder=embedder, embed_on_write=False)
    if args.semantic_weight is not None:
        selection.SEMANTIC_WEIGHT = args.semantic_weight  # type: ignore[misc]
    done("default", lambda: agent_row(default, users, None, "default", pool))
    if padded:
        few = users[:padded]
        done("keyword only, padded", lambda: agent_row(plain, few, PADDED_TO, "kw padded", pool))
        done("default, padded", lambda: agent_row(default, few, PADDED_TO, "padded", pool))
    return results


def report(results: dict[str, Any]) -> str:
    names = [CATEGORIES[c] for c in (1, 2, 3, 4)]
    header = f"{'':24} {'n':>5} {'1-4':>6}" + "".join(f" {n[:11]:>11}" for n in names)
    header += f" {'chars':>7} {'tokens':>7} {'sel p50':>8} {'p95':>7}"
    lines = [header, "-" * len(header)]
    for name, r in results.items():
        cats = "".join(f" {r['categories'][n] or 0:>11.3f}" for n in names)
        lines.append(
            f"{name:24} {r['questions']:>5} {r['recall_1_4']:>6.3f}{cats}"
            f" {r['chars_mean']:>7.0f} {r['tokens_mean']:>7.0f}"
            f" {r['selection_ms_p50']:>6.2f}ms {r['selection_ms_p95']:>5.1f}"
        )
    for name, target in TARGETS.items():
        if name in results:
            got = results[name]["recall_1_4"]
            lines.append(
                f"target {name}: >= {target} -> {got:.3f} {'met' if got >= target else 'MISSED'}"
            )
    if "default" in results:
        worst = min(results["default"]["categories"].values())
        lines.append(f"target default every category >= {CATEGORY_TARGET}: worst {worst:.3f}")
    if "default, padded" in results:
        p50 = results["default, padded"]["selection_ms_p50"]
        lines.append(f"target padded selection p50 <= {SELECTION_TARGET_MS} ms: {p50:.2f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="locomo10.json")
    parser.add_argument("--conversations", type=int, help="only the first N conversations")
    parser.add_argument("--padded", type=int, default=3, help="users padded to 10,000 (0: none)")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo_context.json")
    parser.add_argument(
        "--only", help="';'-separated rows to run, e.g. 'default;default, padded' (default: all)"
    )
    parser.add_argument("--semantic-weight", type=float, help="the selection's semantic weight")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    path = data_path(args.data)
    if not path.is_file():
        sys.exit(f"LoCoMo data not found at {path}; give --data")
    records = json.loads(path.read_text(encoding="utf-8"))
    conversations = load(path, Repairs())
    pool = [User(c, observations(r)) for c, r in zip(conversations, records, strict=True)]
    users = pool[: args.conversations] if args.conversations else pool
    print(f"LoCoMo: {len(users)} users, {sum(len(u.facts) for u in users)} observations")
    with tempfile.TemporaryDirectory() as folder:
        results = run(users, args.padded, Path(folder), pool, args)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"rows": results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
