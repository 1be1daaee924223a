#!/usr/bin/env bash
# The whole test suite: formatting, lint, types, tests. Installs what it needs first
# (Python packages, and Debian's redis-server for the Redis tests).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=scripts/uv.sh
scripts/system-deps.sh
"$uv" sync --locked --quiet
"$uv" run --locked ruff format --check src tests benchmarks examples
"$uv" run --locked ruff check src tests benchmarks examples
"$uv" run --locked mypy
"$uv" run --locked pytest "$@"
