#!/usr/bin/env bash
# Run uv, installing it first (from PyPI, into the user's Python) when it is missing.
set -euo pipefail
export UV_PYTHON_DOWNLOADS=never
export UV_PYTHON="${UV_PYTHON:-python3}"
if command -v uv >/dev/null 2>&1; then
  exec uv "$@"
fi
if ! python3 -m uv --version >/dev/null 2>&1; then
  echo "installing uv (one time) ..." >&2
  python3 -m pip install --quiet --disable-pip-version-check uv >&2
fi
exec python3 -m uv "$@"
