#!/usr/bin/env bash
# Installs what the end-to-end tests need besides Rust:
# - the official MCP Python SDK, pinned in tests/sdk/requirements.txt, into <repo>/.venv;
# - the official MCP TypeScript SDK and server-everything, pinned in tests/sdk/package.json and
#   package-lock.json, into tests/sdk/node_modules (`npm ci`);
# - Chromium (Debian's package) for the HTML report's browser check;
# - redis-server (Debian's package) for the multi-replica tests.
# Idempotent and quick when nothing changed: each install remembers a hash of what it was built
# from (requirements or lockfile, and the interpreter or Node version).
#
# Environment: PYTHON - interpreter used to create the venv (default: python3, then python).
#              NPM    - npm used for the Node packages (default: npm).
#              CHROMIUM - a Chromium or Chrome to use instead of installing Debian's chromium.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/npm-ci.sh
. "$repo/scripts/npm-ci.sh"
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
else
  echo "test-deps: installing $(grep -E '^mcp==' "$requirements") and its pinned dependencies"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  # Fail here, not in a test, if the install is unusable.
  "$venv/bin/python" -c 'import mcp; from mcp import Client'
  echo "$wanted" >"$stamp"
fi

# Node: the TypeScript SDK client and server-everything, exactly as package-lock.json pins them.
sdk="$repo/tests/sdk"
node_stamp="$sdk/node_modules/.lock.sha256"
npm="${NPM:-npm}"
if ! command -v node >/dev/null 2>&1 || ! command -v "$npm" >/dev/null 2>&1; then
  echo "test-deps: node and npm are needed for the SDK tests (Node 18 or newer)" >&2
  exit 1
fi
if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
  echo "test-deps: node $(node --version) is older than 18, which the MCP TypeScript SDK requires" >&2
  exit 1
fi
node_wanted="$( { cat "$sdk/package-lock.json"; node --version; } | sha256sum | cut -d' ' -f1)"
if [ -f "$node_stamp" ] && [ "$(cat "$node_stamp")" = "$node_wanted" ]; then
  echo "test-deps: Node SDK packages up to date in $sdk/node_modules"
else
  echo "test-deps: installing the pinned Node SDK packages (npm ci)"
  NPM="$npm" npm_ci "$sdk"
  # Fail here, not in a test, if the install is unusable.
  (cd "$sdk" && node -e 'import("@modelcontextprotocol/sdk/client/index.js").then(() => import.meta.resolve("@modelcontextprotocol/server-everything/dist/index.js"))' --input-type=module)
  echo "$node_wanted" >"$node_stamp"
fi
# redis-server, which the multi-replica tests start on a loopback port of their own (shared job
# store, global rate limits; tests/tests/replicas*.rs): Debian's package. REDIS_SERVER=/path uses
# another build.
if [ -n "${REDIS_SERVER:-}" ] || command -v redis-server >/dev/null 2>&1; then
  echo "test-deps: redis-server present"
elif command -v apt-get >/dev/null 2>&1; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test-deps: redis-server missing and not root (no sudo)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "test-deps: installing redis-server (apt)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends redis-server >/dev/null
  # The package starts a system-wide server on 6379; the tests run their own on other ports.
else
  echo "test-deps: no redis-server and no apt-get: install Redis 6+ (or set REDIS_SERVER) for the multi-replica tests" >&2
fi
# Chromium, which opens mcp-load's HTML report headless (loadtest/tests/html.rs; without it that
# test fails under CI and is skipped elsewhere): Debian's package, about 125 MB, installed in 22 s
# when measured. CHROMIUM=/path/to/chrome uses another build instead.
if [ -n "${CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1 \
  || command -v chromium-browser >/dev/null 2>&1 || command -v google-chrome-stable >/dev/null 2>&1 \
  || command -v google-chrome >/dev/null 2>&1; then
  echo "test-deps: chromium present"
elif command -v apt-get >/dev/null 2>&1; then
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "test-deps: chromium missing and not root (no sudo)" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "test-deps: installing chromium (apt)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
else
  echo "test-deps: no chromium and no apt-get: install Chromium (or set CHROMIUM) for the HTML report test" >&2
fi
# The MCP conformance suite and its Node 22, pinned in tests/conformance (tests/tests/conformance.rs).
bash "$repo/scripts/conformance.sh" --install
echo "test-deps: done"
