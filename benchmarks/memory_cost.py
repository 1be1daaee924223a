"""What automatic memory costs per turn: model calls and prompt size, noted against Agno.

    make bench        (or: scripts/uv.sh run --group bench python benchmarks/memory_cost.py)
    .venv/bin/python benchmarks/memory_cost.py --no-agno      (noted only; Agno is never imported)

For a user who already has 100, 1,000 and 10,000 memories (``--sizes``), each library gets a
fresh SQLite file, the memories are stored in one bulk write (noted: ``Memory``; Agno: its
``SqliteDb.upsert_memories``), and then ``--turns`` conversational turns are run with
automatic memory on (noted: ``enable_user_memories=True, background_memory=False``, so the
memory manager's call is part of the run; Agno 3.1.10: ``update_memory_on_run=True``). The
user's messages name things the stored memories talk about, so choosing the relevant
memories has work to do.

Both sides get a scripted model that answers at once, without network: the agent's call
gets a short reply; the memory manager's call writes one new memory per turn (noted: JSON
operations with one ``add``; Agno: an ``add_memory`` tool call, then a closing answer after
the tool result, the way a real model uses Agno's tools). Every request is recorded, and per
turn the script counts:

- model calls (the agent's and the memory manager's);
- the memory section of the agent's system prompt: the ``<memories_from_previous_interactions>``
  block, tags included (both libraries use that tag), and the whole system prompt;
- the whole prompt of the memory manager's call(s): every message's text (tool-call
  arguments included), summed over its calls in the turn; tool and schema definitions are
  not counted on either side;
- tokens of the same texts, when a tokenizer works offline (tiktoken with its encoding
  already on the machine); otherwise tokens are skipped and the output says why.

Targets for noted: 2 model calls per turn; its memory-related prompt per turn stays flat as
the user's memories grow (largest size within 1.2x the smallest); at the largest size it is
under 1% of Agno's. Agno's telemetry is off; any network use (DNS lookup or connect) fails
the benchmark. Prints a table and writes benchmarks/results/memory_cost.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import re
import statistics
import tempfile
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from agent import NetworkGuard, expect

from noted import Agent, Memory, SqliteDb, UserMemory
from noted.models.types import Message
from noted.testing import FunctionModel

RESULTS = Path(__file__).parent / "results"
USER_ID = "bench-user"
REPLY = "Good plan. Start small and enjoy it."
AGNO_MANAGER_CLOSING = "Added one memory about the user's plans."
INSTRUCTIONS = ["You are a helpful assistant.", "Answer in one short sentence."]
MEMORY_TAG = "memories_from_previous_interactions"
SECTION = re.compile(rf"<{MEMORY_TAG}>.*?</{MEMORY_TAG}>", re.DOTALL)

# noted's targets.
FLAT_MAX_GROWTH = 1.2  # memory chars per turn at the largest size / at the smallest
AGNO_MAX_SHARE = 0.01  # noted's memory chars per turn / Agno's, at the largest size
NOTED_CALLS_PER_TURN = 2  # the agent's call and the memory manager's one call

# -- the user's memories and messages --------------------------------------------------------

THINGS = [
    "skiing", "chess", "jazz", "ramen", "sailing", "pottery", "running", "climbing",
    "baking", "gardening", "photography", "cycling", "hiking", "painting", "guitar", "piano",
    "yoga", "surfing", "knitting", "tennis", "swimming", "birdwatching", "woodworking",
    "sushi", "coffee", "tea", "poetry", "science fiction", "board games", "camping",
    "kayaking", "salsa dancing", "archery", "calligraphy", "astronomy", "origami", "fishing",
    "skateboarding", "opera", "crosswords",
]  # fmt: skip
TEMPLATES = [
    "User enjoys {thing} {when}",
    "User has been learning {thing} {when}",
    "User wants to get better at {thing} {when}",
    "User often talks about {thing} {when}",
    "User was introduced to {thing} {when}",
    "User spends money on {thing} {when}",
    "User finds {thing} relaxing {when}",
    "User shares photos of {thing} {when}",
    "User reads articles about {thing} {when}",
    "User plans their week around {thing} {when}",
]
WHEN = [
    "on weekends", "every morning", "since college", "with their sister", "during winter",
    "after work", "on holidays", "with friends", "twice a week", "since moving to Porto",
    "with their partner", "on rainy days", "before breakfast", "with a local club",
    "during summer", "on Sunday evenings", "with their kids", "while travelling",
    "since last year", "with colleagues", "at night", "with their father", "in the park",
    "on long trips", "with a coach", "on Friday nights", "with neighbours",
    "during lunch breaks", "at a community centre", "with old school friends",
]  # fmt: skip
TOPICS = ["hobbies", "sport", "food", "music", "family", "travel", "health", "work"]
DISTINCT = len(THINGS) * len(TEMPLATES) * len(WHEN)  # 12,000 facts without numbers
STRIDE = 7919  # a prime: i -> i * STRIDE % DISTINCT visits every fact once


def stored_fact(i: int) -> tuple[str, list[str]]:
    """The ``i``-th memory a user already has: varied, about 50 characters, no numbers."""
    k = i * STRIDE % DISTINCT
    thing = THINGS[k % len(THINGS)]
    template = TEMPLATES[k // len(THINGS) % len(TEMPLATES)]
    when = WHEN[k // (len(THINGS) * len(TEMPLATES))]
    text = template.format(thing=thing, when=when)
    if i >= DISTINCT:
        text += f" (again, {i // DISTINCT})"
    return text, [TOPICS[k % len(TOPICS)], TOPICS[(k // 3 + 1) % len(TOPICS)]]


def turn_things(turn: int) -> tuple[str, str]:
    return THINGS[(3 * turn) % len(THINGS)], THINGS[(3 * turn + 7) % len(THINGS)]


def user_message(turn: int) -> str:
    first, second = turn_things(turn)
    return f"I'm planning a {first} weekend and I want to try {second} soon. Any tips?"


def new_fact(turn: int) -> tuple[str, list[str]]:
    """The memory the scripted manager writes in ``turn``: new, never already stored."""
    first, second = turn_things(turn)
    text = f"User is planning a {first} weekend and wants to try {second} soon"
    if turn >= len(THINGS):
        text += f" (plan {turn + 1})"
    return text, ["plans", "hobbies"]


# -- what one turn cost ------------------------------------------------------------------------


@dataclass
class Call:
    """One model request: whose it was and the text of every message it carried."""

    kind: str  # "main" (the agent's) or "manager" (the memory manager's)
    texts: list[tuple[str, str]]  # (role, text)

    @property
    def system(self) -> str:
        return next((text for role, text in self.texts if role == "system"), "")


@dataclass
class TurnCost:
    main_calls: int
    manager_calls: int
    main_prompt_chars: int
    main_memory_chars: int
    manager_prompt_chars: int
    main_memory_tokens: int | None
    manager_prompt_tokens: int | None

    @property
    def calls(self) -> int:
        return self.main_calls + self.manager_calls

    @property
    def memory_chars(self) -> int:
        return self.main_memory_chars + self.manager_prompt_chars

    @property
    def memory_tokens(self) -> int | None:
        if self.main_memory_tokens is None or self.manager_prompt_tokens is None:
            return None
        return self.main_memory_tokens + self.manager_prompt_tokens


Tokens = Callable[[str], int]


def memory_section(system: str) -> str:
    found = SECTION.search(system)
    return found.group(0) if found else ""


def turn_cost(calls: list[Call], tokens: Tokens | None) -> TurnCost:
    main = [c for c in calls if c.kind == "main"]
    manager = [c for c in calls if c.kind == "manager"]
    sections = [memory_section(c.system) for c in main]
    manager_texts = [text for c in manager for _, text in c.texts]
    return TurnCost(
        main_calls=len(main),
        manager_calls=len(manager),
        main_prompt_chars=sum(len(c.system) for c in main),
        main_memory_chars=sum(len(s) for s in sections),
        manager_prompt_chars=sum(len(t) for t in manager_texts),
        main_memory_tokens=None if tokens is None else sum(tokens(s) for s in sections),
        manager_prompt_tokens=None if tokens is None else sum(tokens(t) for t in manager_texts),
    )


def summary(turns: list[TurnCost]) -> dict[str, Any]:
    """Per-turn means (the tables' figures) and every turn's own figures."""

    def mean(values: list[int | None]) -> float | None:
        if any(v is None for v in values):
            return None
        return statistics.fmean(v for v in values if v is not None)

    return {
        "model_calls_per_turn": mean([t.calls for t in turns]),
        "main_calls_per_turn": mean([t.main_calls for t in turns]),
        "manager_calls_per_turn": mean([t.manager_calls for t in turns]),
        "main_prompt_chars": mean([t.main_prompt_chars for t in turns]),
        "main_memory_chars": mean([t.main_memory_chars for t in turns]),
        "manager_prompt_chars": mean([t.manager_prompt_chars for t in turns]),
        "memory_chars_per_turn": mean([t.memory_chars for t in turns]),
        "memory_tokens_per_turn": mean([t.memory_tokens for t in turns]),
        "turns": [{**asdict(t), "memory_chars": t.memory_chars} for t in turns],
    }


# -- the two libraries behind one small shape ----------------------------------------------


class Side(Protocol):
    def seed(self, count: int) -> None: ...
    def turn(self, number: int) -> list[Call]: ...
    def memory_count(self) -> int: ...
    def close(self) -> None: ...


class NotedSide:
    name = "noted"

    def __init__(self, path: Path) -> None:
        self.db = SqliteDb(path)
        self.fact = new_fact(0)
        self.model = FunctionModel(self._answer)
        self.agent = Agent(
            self.model,
            db=self.db,
            user_id=USER_ID,
            instructions=INSTRUCTIONS,
            enable_user_memories=True,
            background_memory=False,
        )

    def _answer(self, messages: list[Message], tools: list[Any]) -> str:
        # The request being answered is the last one recorded; the manager's asks for JSON.
        if self.model.requests[-1].response_schema is None:
            return REPLY
        text, topics = self.fact
        return json.dumps(
            {"operations": [{"op": "add", "id": None, "memory": text, "topics": topics}]}
        )

    def seed(self, count: int) -> None:
        facts = [stored_fact(i) for i in range(count)]
        Memory(db=self.db).add_user_memories(
            [UserMemory(text, topics=topics) for text, topics in facts], user_id=USER_ID
        )

    def turn(self, number: int) -> list[Call]:
        self.fact = new_fact(number)
        first = self.model.call_count
        result = self.agent.run(user_message(number))
        expect(result.content == REPLY, f"noted: turn {number} answered {result.content!r}")
        return [
            Call(
                "main" if request.response_schema is None else "manager",
                [(m.role, m.content or "") for m in request.messages],
            )
            for request in self.model.requests[first:]
        ]

    def memory_count(self) -> int:
        return len(self.agent.get_user_memories())

    def close(self) -> None:
        self.db.close()


def agno_side_class() -> Callable[[Path], Side]:
    """Agno's side, defined only when asked for, so ``--no-agno`` never imports Agno."""
    os.environ["AGNO_TELEMETRY"] = "false"
    from agno.agent import Agent as AgnoAgent
    from agno.db.schemas.memory import UserMemory as AgnoMemory
    from agno.db.sqlite import SqliteDb as AgnoSqliteDb
    from agno.metrics import MessageMetrics
    from agno.models.base import Model
    from agno.models.response import ModelResponse

    for name in ("agno", "agno-team", "agno-workflow"):
        logging.getLogger(name).setLevel(logging.CRITICAL)

    class Recorder:
        """Every request the scripted model got, and the fact the manager is to write.
        Agno's memory manager deep-copies the model before each turn and runs beside the
        agent's call in a thread; the copies share this one recorder."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.calls: list[Call] = []
            self.fact = new_fact(0)

        def __deepcopy__(self, memo: dict[int, Any]) -> Recorder:
            return self

        def answer(self, messages: list[Any], tools: Any) -> dict[str, Any]:
            texts = [(m.role, message_text(m)) for m in messages]
            with self.lock:
                # Only the memory manager offers tools here (no agentic memory, no tools).
                self.calls.append(Call("manager" if tools else "main", texts))
                fact = self.fact
            if not tools:
                return {"text": REPLY}
            if any(m.role == "tool" for m in messages):
                return {"text": AGNO_MANAGER_CLOSING}  # after the tool's result: done
            text, topics = fact
            call = {
                "id": f"call_{uuid.uuid4().hex[:12]}",
                "type": "function",
                "function": {
                    "name": "add_memory",
                    "arguments": json.dumps({"memory": text, "topics": topics}),
                },
            }
            return {"text": None, "tool_calls": [call]}

    def message_text(message: Any) -> str:
        text = message.content if isinstance(message.content, str) else ""
        for call in message.tool_calls or []:
            text += str(call.get("function", {}).get("arguments", ""))
        return text

    def usage(messages: list[Any], text: str | None) -> Any:
        prompt = sum(4 + len(message_text(m)) // 4 for m in messages)
        answer = (len(text or "") + 3) // 4
        return MessageMetrics(
            input_tokens=prompt, output_tokens=answer, total_tokens=prompt + answer
        )

    @dataclass
    class ScriptedAgnoModel(Model):
        """Answers at once: a reply to the agent; to the memory manager an ``add_memory``
        tool call, then a closing text once the tool's result is in the messages."""

        id: str = "scripted"
        name: str = "Scripted"
        provider: str = "scripted"
        recorder: Recorder = field(default_factory=Recorder)

        def _answer(self, messages: list[Any], tools: Any) -> dict[str, Any]:
            answer = self.recorder.answer(messages, tools)
            answer["usage"] = usage(messages, answer["text"])
            return answer

        def invoke(self, messages: list[Any], assistant_message: Any, **kwargs: Any) -> Any:
            assistant_message.metrics.start_timer()
            answer = self._answer(messages, kwargs.get("tools"))
            assistant_message.metrics.stop_timer()
            return self._parse_provider_response(answer)

        async def ainvoke(self, messages: list[Any], assistant_message: Any, **kwargs: Any) -> Any:
            return self.invoke(messages, assistant_message, **kwargs)

        def invoke_stream(self, messages: list[Any], assistant_message: Any, **kwargs: Any) -> Any:
            yield self.invoke(messages, assistant_message, **kwargs)

        async def ainvoke_stream(
            self, messages: list[Any], assistant_message: Any, **kwargs: Any
        ) -> Any:
            yield self.invoke(messages, assistant_message, **kwargs)

        def _parse_provider_response(self, response: Any, **kwargs: Any) -> Any:
            return ModelResponse(
                role="assistant",
                content=response.get("text"),
                tool_calls=response.get("tool_calls") or [],
                response_usage=response.get("usage"),
            )

        def _parse_provider_response_delta(self, response: Any) -> Any:
            return self._parse_provider_response(response)

    class AgnoSide:
        name = "agno"

        def __init__(self, path: Path) -> None:
            self.model = ScriptedAgnoModel()
            self.db = AgnoSqliteDb(db_file=str(path))
            self.agent = AgnoAgent(
                model=self.model,
                db=self.db,
                user_id=USER_ID,
                instructions=INSTRUCTIONS,
                update_memory_on_run=True,
                telemetry=False,
            )

        def seed(self, count: int) -> None:
            memories = []
            for i in range(count):
                text, topics = stored_fact(i)
                memories.append(
                    AgnoMemory(
                        memory=text, topics=topics, user_id=USER_ID, memory_id=str(uuid.uuid4())
                    )
                )
            self.db.upsert_memories(memories)

        def turn(self, number: int) -> list[Call]:
            recorder = self.model.recorder
            recorder.fact = new_fact(number)
            first = len(recorder.calls)
            result = self.agent.run(user_message(number))
            expect(result.content == REPLY, f"agno: turn {number} answered {result.content!r}")
            with recorder.lock:
                return recorder.calls[first:]

        def memory_count(self) -> int:
            return len(self.db.get_user_memories(user_id=USER_ID))

        def close(self) -> None:
            self.db.close()

    return AgnoSide


# -- measuring -------------------------------------------------------------------------------


def load_tokenizer(guard: NetworkGuard) -> tuple[Tokens | None, str]:
    """A token counter that works offline, or None and the reason there is none."""
    try:
        import tiktoken  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None, (
            "tokens not counted: tiktoken is not installed here, and it downloads its "
            "encodings on first use, which this offline benchmark does not allow"
        )
    before = len(guard.attempts)
    try:
        encoding = tiktoken.get_encoding("cl100k_base")
    except Exception as exc:
        # The refused download was this probe's, not the libraries' under test.
        del guard.attempts[before:]
        return None, (
            "tokens not counted: tiktoken's cl100k_base encoding is not on this machine "
            f"and would need a download ({type(exc).__name__})"
        )

    def count(text: str) -> int:
        return len(encoding.encode(text, disallowed_special=()))

    return count, "tiktoken cl100k_base"


def measure(
    make: Callable[[Path], Side], label: str, size: int, turns: int, tokens: Tokens | None
) -> dict[str, Any]:
    """Fresh file, ``size`` memories in one bulk write, then ``turns`` turns recorded."""
    with tempfile.TemporaryDirectory() as tmp:
        side = make(Path(tmp) / f"{label}.db")
        try:
            side.seed(size)
            expect(side.memory_count() == size, f"{label}: seeding stored the wrong count")
            costs: list[TurnCost] = []
            for number in range(turns):
                calls = side.turn(number)
                cost = turn_cost(calls, tokens)
                expect(cost.main_calls == 1, f"{label}: {cost.main_calls} agent calls in a turn")
                expect(cost.manager_calls >= 1, f"{label}: the memory manager was not called")
                expect(
                    cost.main_memory_chars > 0, f"{label}: no memory section in the system prompt"
                )
                stored = side.memory_count()
                expect(
                    stored == size + number + 1,
                    f"{label}: {stored} memories after turn {number}, want {size + number + 1}",
                )
                costs.append(cost)
        finally:
            side.close()
    return summary(costs)


# -- the report ------------------------------------------------------------------------------


def num(value: float | None, width: int) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:>{width},.0f}"


def print_table(results: dict[str, dict[str, Any]], have_agno: bool) -> None:
    header = (
        f"{'size':>7}  {'library':7} {'calls/turn':>12} {'main memory':>12} "
        f"{'main prompt':>12} {'manager':>13} {'memory total':>13} {'tokens':>9}"
        + (f" {'noted/agno':>11}" if have_agno else "")
    )
    print(header)
    print(
        f"{'':7}  {'':7} {'(main+mgr)':>12} {'chars':>12} {'chars':>12} {'prompt chars':>13} "
        f"{'chars':>13} {'(memory)':>9}"
    )
    print("-" * len(header))
    for size, by_library in results.items():
        for library in ("noted", "agno"):
            row = by_library.get(library)
            if row is None:
                continue
            calls = (
                f"{row['model_calls_per_turn']:.0f} ({row['main_calls_per_turn']:.0f}"
                f"+{row['manager_calls_per_turn']:.0f})"
            )
            line = (
                f"{int(size):>7,}  {library:7} {calls:>12} {num(row['main_memory_chars'], 12)} "
                f"{num(row['main_prompt_chars'], 12)} {num(row['manager_prompt_chars'], 13)} "
                f"{num(row['memory_chars_per_turn'], 13)} "
                f"{num(row['memory_tokens_per_turn'], 9)}"
            )
            ratio = by_library.get("noted_to_agno")
            if library == "noted" and ratio is not None:
                line += f" {ratio * 100:10.2f}%"
            print(line)


def check_targets(
    results: dict[str, dict[str, Any]], sizes: list[int], have_agno: bool
) -> list[dict[str, Any]]:
    noted = {size: results[str(size)]["noted"] for size in sizes}
    calls = [noted[s]["model_calls_per_turn"] for s in sizes]
    small, large = sizes[0], sizes[-1]
    growth = noted[large]["memory_chars_per_turn"] / noted[small]["memory_chars_per_turn"]
    targets: list[dict[str, Any]] = [
        {
            "what": f"noted model calls per turn == {NOTED_CALLS_PER_TURN} at every size",
            "value": calls,
            "shown": ", ".join(f"{c:g}" for c in calls),
            "met": all(c == NOTED_CALLS_PER_TURN for c in calls),
        },
        {
            "what": (
                f"noted memory chars per turn at {large:,} within {FLAT_MAX_GROWTH}x "
                f"of those at {small:,}"
            ),
            "value": growth,
            "shown": f"{growth:.2f}x",
            "met": growth <= FLAT_MAX_GROWTH,
        },
    ]
    if have_agno:
        share = results[str(large)]["noted_to_agno"]
        targets.append(
            {
                "what": (
                    f"noted memory chars per turn at {large:,} under {AGNO_MAX_SHARE:.0%} of Agno's"
                ),
                "value": share,
                "shown": f"{share:.2%}",
                "met": share < AGNO_MAX_SHARE,
            }
        )
    return targets


def parse_sizes(text: str) -> list[int]:
    """``"100,1000,10000"`` -> [100, 1000, 10000]: at least two positive sizes."""
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if len(sizes) < 2 or sizes[0] < 1:
        raise ValueError(f"at least two positive sizes are needed, got {text!r}")
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="100,1000,10000", help="memories the user has, comma separated"
    )
    parser.add_argument("--turns", type=int, default=3, help="turns measured per size")
    parser.add_argument("--no-agno", action="store_true", help="measure noted only")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "memory_cost.json", help="JSON report"
    )
    args = parser.parse_args()
    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(f"--sizes: {exc}")
    if args.turns < 1:
        parser.error("--turns must be >= 1")
    logging.disable(logging.WARNING)
    guard = NetworkGuard()
    guard.install()
    tokens, tokenizer = load_tokenizer(guard)

    sides: dict[str, Callable[[Path], Side]] = {"noted": NotedSide}
    if not args.no_agno:
        sides["agno"] = agno_side_class()

    results: dict[str, dict[str, Any]] = {}
    for size in sizes:
        row = {name: measure(make, name, size, args.turns, tokens) for name, make in sides.items()}
        if "agno" in row:
            row["noted_to_agno"] = (
                row["noted"]["memory_chars_per_turn"] / row["agno"]["memory_chars_per_turn"]
            )
        results[str(size)] = row
    guard.check()

    print(
        f"Per-turn means over {args.turns} turn(s) after the user's memories were stored; "
        "chars of prompt text.\n'main memory': the <memories_from_previous_interactions> "
        "block of the agent's system prompt; 'manager': every message of the memory "
        "manager's call(s) in the turn;\n'memory total' = main memory + manager; "
        "'noted/agno' compares memory totals.\n"
    )
    print_table(results, not args.no_agno)
    targets = check_targets(results, sizes, not args.no_agno)
    print()
    for target in targets:
        verdict = "MET" if target["met"] else "MISSED"
        print(f"target {target['what']}: {target['shown']} {verdict}")
    notes = [
        "The model answers at once, with no network; each turn writes one new memory.",
        f"Tokens: {tokenizer}."
        if tokens is not None
        else f"{tokenizer[0].upper()}{tokenizer[1:]}.",
        "Tool and response-schema definitions sent with the manager's call are not counted.",
    ]
    if args.no_agno:
        notes.append("Agno not measured (--no-agno).")
    for note in notes:
        print(f"note: {note}")
    report: dict[str, Any] = {
        "python": platform.python_version(),
        "agno": None if args.no_agno else metadata.version("agno"),
        "sizes": sizes,
        "turns": args.turns,
        "tokenizer": tokenizer if tokens is not None else None,
        "results": results,
        "targets": targets,
        "notes": notes,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
