#!/usr/bin/env bash
# System packages the tests use that PyPI does not carry: Debian's redis-server,
# Chromium (with its driver) for the browser tests of the Memories page, and wrk for the
# server benchmark's smoke test.
# (PostgreSQL with pgvector and the MongoDB wire-protocol server come from PyPI with
# `uv sync`.) Installs with apt-get when it can; otherwise says how, and the tests that
# need a missing server are skipped with that message.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/bin/chromium ] || missing+=(chromium chromium-driver)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: install ${missing[*]} to run every backend's tests" >&2
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "note: run 'sudo apt-get install ${missing[*]}' to run every backend's tests" >&2
    exit 0
  fi
fi
echo "installing ${missing[*]} (one time) ..." >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
  $sudo apt-get update -q >/dev/null 2>&1
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}
