"""The benchmarks keep running: a small-scale smoke run of each (timings not checked)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REQUIRE_SERVERS

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def run_benchmark(script: str, out: Path, *args: str) -> tuple[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--no-agno", "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return done.stdout, json.loads(out.read_text())


def test_store_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark("store.py", tmp_path / "store.json", "--scale", "0.02")
    assert "last_n limit 10 (10,000)" in stdout
    assert set(report["operations"]) >= {"single add", "bulk import 10,000", "page of 20 (10,000)"}


def test_agent_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "agent.py", tmp_path / "agent.json", "--runs", "5", "--history", "5", "--memories", "50"
    )
    assert "target <= 5 ms median" in stdout
    assert "target tracing <= +0.5 ms per run, each mode" in stdout
    assert "target job recorded <= +0.3 ms per run(): run()" in stdout
    memory_rows = {
        f"noted + memory{extra}, {size} mem." for extra in ("", " + embedder") for size in (0, 50)
    }
    assert set(report["configurations"]) == {
        "noted",
        "noted + tracing",
        "noted + job recorded",
        *memory_rows,
    }
    for name, rows in report["configurations"].items():
        assert set(rows) == ({"run"} if name in memory_rows else {"run", "stream", "arun"})
        assert all(
            row["median_s"] > 0 and row["p95_s"] > 0 and row["cpu_s"] > 0 for row in rows.values()
        )
    noted = report["configurations"]["noted"]
    for name in ("noted + tracing", "noted + job recorded"):
        for mode, row in report["configurations"][name].items():
            assert row["extra_s"] == pytest.approx(row["median_s"] - noted[mode]["median_s"])
            assert row["cpu_extra_s"] == pytest.approx(row["cpu_s"] - noted[mode]["cpu_s"])
    for mode in ("run", "stream", "arun"):
        traced = report["configurations"]["noted + tracing"][mode]
        assert report["tracing_target"]["extra_s"][mode] == traced["extra_s"]
    jobbed = report["configurations"]["noted + job recorded"]["run"]
    assert report["job_target"]["extra_s"] == {"run": jobbed["extra_s"]}


def test_memory_cost_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "memory_cost.py", tmp_path / "memory_cost.json", "--sizes", "100,1000", "--turns", "2"
    )
    assert "target noted model calls per turn == 2" in stdout
    assert report["agno"] is None
    small, large = (report["results"][size]["noted"] for size in ("100", "1000"))
    for row in (small, large):
        assert row["model_calls_per_turn"] == 2
        assert row["manager_calls_per_turn"] == 1
        assert row["main_memory_chars"] > 0
        assert len(row["turns"]) == 2
    # noted's memory prompt per turn is bounded (the budget is filled from 100 memories on):
    # ten times the memories, not ten times the text.
    assert large["memory_chars_per_turn"] <= 1.5 * small["memory_chars_per_turn"]


def test_search_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "search.py",
        tmp_path / "search.json",
        "--small",
        "40",
        "--large",
        "3000",
        "--rounds",
        "5",
    )
    assert "first search of the large user" in stdout
    assert "the same 40-memory user beside the 3,000 one / alone" in stdout
    rows = report["latency"]
    for method in ("keyword", "semantic", "hybrid"):
        for label in (f"{method}, 40 memories", f"{method}, 3,000 memories"):
            assert 0 < rows[label]["p50_ms"] <= rows[label]["p95_ms"]
    assert report["vector_cache_mb"] > 0
    assert "in turns, each question asked of the user alone in a file of its own" in stdout
    for method in ("keyword", "semantic", "hybrid"):
        pair = report["in_turns"][method]
        assert pair["alone_p50_ms"] > 0 and pair["beside_p50_ms"] > 0


def test_learning_turns_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "learning.json"
    script = str(BENCHMARKS / "learning_turns.py")
    small = ["--memories", "200", "--runs", "3", "--output", str(out)]
    done = subprocess.run(
        [sys.executable, script, *small], check=False, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "run() after a turn that taught a fact, 200 memories" in done.stdout
    for store in ("sqlite", "in-process"):
        row = json.loads(out.read_text())[store]
        assert 0 < row["run_ms_p50"] <= row["run_ms_p95"]


def test_backends_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "backends.py",
        tmp_path / "backends.json",
        "--size",
        "300",
        "--bulk-rounds",
        "1",
        "--rounds",
        "5",
        "--users",
        "20",
        "--per-user",
        "30",
    )
    assert "one user's search, limit 10" in stdout
    for kind in ("sqlite", "in-memory", "postgres", "mongo", "redis"):
        row = report["backends"][kind]
        if "skipped" in row:
            assert not REQUIRE_SERVERS, row["skipped"]
            continue
        assert set(row) == {
            "single add",
            "bulk import 300",
            "20 newest",
            "keyword search",
            "hybrid search",
            "hybrid after an add",
        }
        assert all(r["noted_p50_s"] > 0 for r in row.values())
    million = report.get("million")
    if million is not None:
        assert million["users"] == 20
        assert million["hybrid"]["p50_ms"] > 0


def test_backends_benchmark_without_hybrid_search_smoke(tmp_path: Path) -> None:
    """``--no-hybrid`` (as docs/benchmarks.md runs it): every other operation is measured,
    hybrid search is not (nor is the embedder it needs loaded); the embedded stores only,
    so no server is started."""
    stdout, report = run_benchmark(
        "backends.py",
        tmp_path / "backends.json",
        "--backends",
        "sqlite,in-memory",
        "--no-hybrid",
        "--no-million",
        "--size",
        "200",
        "--bulk-rounds",
        "1",
        "--rounds",
        "3",
    )
    assert "hybrid" not in stdout
    assert set(report["backends"]) == {"sqlite", "in-memory"}
    for row in report["backends"].values():
        assert set(row) == {"single add", "bulk import 200", "20 newest", "keyword search"}
        assert all(r["noted_p50_s"] > 0 for r in row.values())
    assert "million" not in report


def test_server_benchmark_smoke(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        message = "the server benchmark needs wrk: sudo apt-get install wrk"
        if REQUIRE_SERVERS:
            pytest.fail(message)
        pytest.skip(message)
    stdout, report = run_benchmark(
        "server.py",
        tmp_path / "server.json",
        "--memories",
        "1000",
        "--users",
        "50",
        "--duration",
        "2",
        "--warmup",
        "1",
        "--connections",
        "8",
        "--workers",
        "1",
    )
    assert "target for noted: p50 <= 15 ms, p99 <= 100 ms, 0 errors" in stdout
    assert report["memories"] == 1000
    (run,) = report["runs"]
    assert (run["server"], run["workers"]) == ("noted", 1)
    assert run["requests"] > 0
    assert 0 < run["p50_ms"] <= run["p99_ms"]
    assert run["error_total"] == 0, run["errors"]


def test_mcp_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "mcp.json"
    small = ["--memories", "30", "--calls", "5", "--warmup", "1"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "mcp_latency.py"), *small, "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "target search p50 <= 5 ms over stdio" in done.stdout
    report = json.loads(out.read_text())
    assert set(report["results"]) == {"mcp stdio", "mcp http", "rest"}
    for rows in report["results"].values():
        assert set(rows) == {"search keyword", "search hybrid", "search hybrid, new query", "add"}
        assert all(row["p50_ms"] > 0 and row["server_cpu_ms"] >= 0 for row in rows.values())


def test_agent_instructions_measured_process_smoke() -> None:
    """The process benchmarks/agent_instructions.py counts under valgrind: set-up and runs
    of each mode, tracing on (valgrind itself is not needed to run it)."""
    for mode in ("run", "stream", "arun"):
        subprocess.run(
            [sys.executable, str(BENCHMARKS / "agent_instructions.py"), "--child", f"{mode},1,2"],
            check=True,
            capture_output=True,
            timeout=300,
        )


def test_query_embedding_benchmark_smoke(tmp_path: Path) -> None:
    out = tmp_path / "query_embedding.json"
    script = str(BENCHMARKS / "query_embedding.py")
    done = subprocess.run(
        [sys.executable, script, "--queries", "20", "--output", str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert "lowest cosine" in done.stdout
    report = json.loads(out.read_text())
    rows = report["variants"]
    assert set(rows) == {"embedder", "session all, 1 thread", "integer graph"}
    for row in rows.values():
        assert row["cpu_p50_ms"] > 0
        assert row["wall_p50_ms"] > 0
    assert rows["session all, 1 thread"]["lowest_cosine"] >= 0.9999  # the reference itself
    for name in ("embedder", "integer graph"):  # close to the packaged graph, not the same
        assert 0.985 <= rows[name]["lowest_cosine"] <= rows[name]["median_cosine"] < 0.9999
    assert rows["embedder"]["lowest_cosine"] == pytest.approx(
        rows["integer graph"]["lowest_cosine"]
    )
    assert 0.985 <= report["memory_cosine"]["lowest"] < 0.9999
    assert report["integer_s"] > report["integer_made_s"] > 0 and report["embedder_load_s"] > 0
    assert report["tokenizer_us"] > 0 and report["packaged_s"] > 0


def test_tracing_instructions_measured_process_smoke() -> None:
    """The process benchmarks/tracing_instructions.py counts under valgrind: set-up and each
    case, tracing off and on (valgrind itself is not needed to run it)."""
    subprocess.run(
        [sys.executable, str(BENCHMARKS / "tracing_instructions.py"), "--child", "2"],
        check=True,
        capture_output=True,
        timeout=300,
    )


def test_clear_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark("clear.py", tmp_path / "clear.json", "--memories", "3000")
    assert "process add s" in stdout
    assert report["memories"] == 3000 and report["peak python MB"] > 0


def test_chat_history_benchmark_smoke(tmp_path: Path) -> None:
    stdout, report = run_benchmark(
        "chat_history.py", tmp_path / "history.json", "--runs", "200", "--repeat", "1"
    )
    assert "pages:" in stdout
    assert report["whole"]["chars"] > 4_000_000 > 50_000 >= report["pages"]["chars"]


@pytest.mark.parametrize("store", ["redis", "postgres"])
def test_clear_benchmark_smoke_on_a_server(tmp_path: Path, store: str) -> None:
    stdout, report = run_benchmark(
        "clear.py", tmp_path / "clear.json", "--memories", "3000", "--store", store
    )
    assert "longest read s" in stdout
    assert report["store"] == store and report["memories"] == 3000
