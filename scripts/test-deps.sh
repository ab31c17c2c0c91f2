#!/usr/bin/env bash
# Installs what the end-to-end tests need besides Rust: the official MCP Python SDK, pinned in
# tests/sdk/requirements.txt, into <repo>/.venv. Idempotent and quick when nothing changed: the venv
# remembers a hash of the requirements (and of the interpreter) it was built from.
#
# Environment: PYTHON - interpreter used to create the venv (default: python3, then python).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
requirements="$repo/tests/sdk/requirements.txt"
stamp="$venv/.requirements.sha256"

find_python() {
  local candidate
  for candidate in "${PYTHON:-}" python3 python; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
      echo "$candidate"
      return 0
    fi
  done
  echo "test-deps: no Python interpreter found (set PYTHON=/path/to/python3)" >&2
  return 1
}

python="$(find_python)"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "test-deps: $python is older than 3.10, which the mcp package requires" >&2
  exit 1
fi

# A venv whose interpreter no longer runs (moved or upgraded Python) is rebuilt from scratch.
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  echo "test-deps: $venv is broken, recreating it"
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "test-deps: creating $venv"
  "$python" -m venv "$venv"
fi

wanted="$( { cat "$requirements"; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "test-deps: Python SDK up to date in $venv"
  exit 0
fi

echo "test-deps: installing $(grep -E '^mcp==' "$requirements") and its pinned dependencies"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
# Fail here, not in a test, if the install is unusable.
"$venv/bin/python" -c 'import mcp; from mcp import Client'
echo "$wanted" >"$stamp"
echo "test-deps: done"
