"""LoCoMo context recall, scored offline: the agent's memory selection without the agent.

    .venv/bin/python benchmarks/locomo_selection.py
    .venv/bin/python benchmarks/locomo_selection.py --variants "now; c0:CENTERING=0" --padded 1
    .venv/bin/python benchmarks/locomo_selection.py --store redis   # a server started for it

The same users, memories and questions as ``locomo_context.py`` (its "default" and
"default, padded" rows), but each question's selection is made by the agent's own memory
code (``AgentMemory.relevant`` and ``fit_memories`` with the agent's budgets) with no
``Agent.run`` around it, and every text is embedded once: the embeddings are kept in
``benchmarks/results/locomo_embeddings.npz`` (``--cache``) for the next run. So a variant of the
selection is scored in seconds to a minute or two, and its figures equal what the agent
benchmark reports for the same code. ``--store`` scores the selection on another store
(SQLite by default; PostgreSQL, MongoDB and Redis on servers started as the tests start
theirs).

A variant is ``label:NAME=value,NAME=value``: each ``NAME`` is a module constant of
:mod:`noted.memory.selection` (or ``module.NAME`` for another module under ``noted``), set
to ``value`` (a Python literal) while the variant is scored. Variants are separated by
``;``; a label alone scores the code as it is.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from backends import BACKENDS, SERVERS, open_noted
from locomo import Repairs, data_path, load
from locomo_context import (
    PADDED_TO,
    RESULTS,
    CachedEmbedder,
    Row,
    User,
    coverage,
    fill,
    observations,
    padding,
    questions_of,
    report,
)

from noted import Agent, Memory, MemoryStore
from noted.agent.context import fit_memories, render_memory_section
from noted.testing import FunctionModel

CACHE = RESULTS / "locomo_embeddings.npz"


class KeptEmbedder(CachedEmbedder):
    """The default embedder, each distinct text embedded once and kept on disk."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.saved = 0
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                if str(data["model"]) == self.model_name:
                    keys = json.loads(str(data["keys"]))
                    for (kind, text), vector in zip(keys, data["vectors"], strict=True):
                        self.known[(kind, text)] = vector
        self.saved = len(self.known)

    def save(self) -> None:
        if len(self.known) == self.saved:
            return
        keys = list(self.known)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            self.path,
            model=np.array(self.model_name),
            keys=np.array(json.dumps(keys)),
            vectors=np.stack([self.known[key] for key in keys]).astype(np.float32),
        )
        self.saved = len(keys)


def parse_variants(text: str) -> list[tuple[str, dict[str, Any]]]:
    variants = []
    for part in text.split(";"):
        if not part.strip():
            continue
        label, _, settings = part.partition(":")
        values: dict[str, Any] = {}
        for setting in settings.split(","):
            if setting.strip():
                name, _, value = setting.partition("=")
                values[name.strip()] = ast.literal_eval(value.strip())
        variants.append((label.strip(), values))
    return variants


@contextmanager
def patched(values: dict[str, Any]) -> Iterator[None]:
    before = []
    for name, value in values.items():
        where, _, attribute = name.rpartition(".")
        module = importlib.import_module(f"noted.{where}" if where else "noted.memory.selection")
        if not hasattr(module, attribute):
            raise SystemExit(f"no constant {attribute} in {module.__name__}")
        before.append((module, attribute, getattr(module, attribute)))
        setattr(module, attribute, value)
    try:
        yield
    finally:
        for module, attribute, value in reversed(before):
            setattr(module, attribute, value)


def score_user(
    memory: Memory, user: User, turns_of: dict[str, set[str]], rows: Sequence[Row]
) -> None:
    """Each variant's selection for each of the user's questions (the store filled)."""
    user_id = user.conversation.sample_id
    agent = Agent(
        FunctionModel(lambda messages, tools: "ok"),
        memory=memory,
        user_id=user_id,
        add_memories_to_context=True,
    )
    chosen = agent.memory
    assert chosen is not None
    chosen.relevant(user_id, "warm up")  # embeds what the writes left to the search
    for row, (_, values) in zip(rows, VARIANTS, strict=True):
        with patched(values):
            for category, question, evidence in questions_of(user):
                start = time.perf_counter()
                kept = fit_memories(
                    chosen.relevant(user_id, question),
                    chosen.context_chars,
                    budget_tokens=chosen.context_tokens,
                )
                row.selection.samples.append(time.perf_counter() - start)
                rendered = render_memory_section(kept, numbered=False)
                section = "" if rendered is None else rendered.body  # as the prompt has it
                row.add(category, coverage([m.memory for m in kept], turns_of, evidence), section)


VARIANTS: list[tuple[str, dict[str, Any]]] = []


@contextmanager
def opened_store(kind: str, folder: Path) -> Iterator[MemoryStore]:
    """A new store of ``kind``, on a server started for the run where it needs one."""
    if kind not in SERVERS:
        yield open_noted(kind, None, folder)
        return
    server = SERVERS[kind](folder / "server")
    try:
        yield open_noted(kind, server.url, folder)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="locomo10.json")
    parser.add_argument("--conversations", type=int, help="only the first N conversations")
    parser.add_argument("--padded", type=int, default=0, help="users padded to 10,000 too")
    parser.add_argument("--variants", default="now", help="';'-separated variants (see above)")
    parser.add_argument("--output", type=Path, default=RESULTS / "locomo_selection.json")
    parser.add_argument("--cache", type=Path, default=CACHE, help="the kept embeddings' file")
    parser.add_argument("--store", choices=BACKENDS, default="sqlite", help="where memories go")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    VARIANTS[:] = parse_variants(args.variants)
    path = data_path(args.data)
    if not path.is_file():
        sys.exit(f"LoCoMo data not found at {path}; give --data")
    records = json.loads(path.read_text(encoding="utf-8"))
    pool = [User(c, observations(r)) for c, r in zip(load(path, Repairs()), records, strict=True)]
    users = pool[: args.conversations] if args.conversations else pool
    embedder = KeptEmbedder(args.cache)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder, opened_store(args.store, Path(folder)) as db:
        memory = Memory(db=db, embedder=embedder, embed_on_write=False)
        for padded in (False, True):
            chosen = users[: args.padded] if padded else users
            if not chosen:
                continue
            rows = [Row() for _ in VARIANTS]
            for user in chosen:
                pad = padding(pool, user, PADDED_TO - len(user.facts)) if padded else []
                score_user(memory, user, fill(memory, user, pad), rows)
                embedder.save()
            suffix = ", padded" if padded else ""
            for (label, _), row in zip(VARIANTS, rows, strict=True):
                results[f"{label}{suffix}"] = row.summary()
            print(report({k: v for k, v in results.items() if k.endswith(suffix)}), flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"rows": results}, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
