#!/usr/bin/env bash
# The project's test command (README "Run the tests"): installs the official MCP SDKs the
# end-to-end tests drive, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
