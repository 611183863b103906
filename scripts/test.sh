#!/usr/bin/env bash
# Runs envsync's tests. On a fresh machine with Python 3.11+ it creates .venv and installs what the
# tests need; PostgreSQL, a system Redis and Chromium are used when present (with CI=true they are
# required, and a missing one is an error, never a skip). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"

# The browser tests drive Debian's Chromium (Playwright cannot download a browser here).
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

exec .venv/bin/python -m pytest "$@"
