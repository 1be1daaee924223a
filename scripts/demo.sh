#!/usr/bin/env bash
# noted's main job on the embedded defaults: remember facts in one process, recall them in
# another, from the same SQLite file. No API key needed.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=scripts/uv.sh
"$uv" sync --locked --quiet
"$uv" run --locked python examples/remember_and_recall.py remember
"$uv" run --locked python examples/remember_and_recall.py recall
