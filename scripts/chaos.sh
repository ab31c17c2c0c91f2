#!/usr/bin/env bash
# Runs mcp-chaos's shipped suite (chaos/scenarios/*.toml) against the real mcp-sidecar, as CI does:
# each scenario starts the fixture backend, the fault proxies and the sidecar with its config,
# checks the steady state, injects its faults under traffic and judges its assertions. Exits
# non-zero naming every assertion that failed.
#
# Usage: scripts/chaos.sh [SCENARIO.toml...]   (default: every shipped scenario)
# Writes target/chaos/junit.xml (for CI test reports) and target/chaos/report.json.
# Environment: CHAOS_PROFILE - the cargo profile to build with (default: dev).
#              SKIP_BUILD=1  - run the binaries already in target/ (CI: the test run built both;
#                              `cargo build -p mcp-chaos -p mcp-sidecar` would build them again,
#                              with the features of those two packages instead of the workspace's).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${CHAOS_PROFILE:-dev}"
dir="debug"
[ "$profile" = "dev" ] || dir="$profile"
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  for bin in mcp-chaos mcp-sidecar; do
    [ -x "target/$dir/$bin" ] || { echo "chaos.sh: target/$dir/$bin is not built (drop SKIP_BUILD)" >&2; exit 2; }
  done
else
  cargo build -q --profile "$profile" -p mcp-chaos -p mcp-sidecar
fi
mkdir -p target/chaos
if [ $# -eq 0 ]; then
  set -- chaos/scenarios/*.toml
fi
exec "target/$dir/mcp-chaos" run "$@" \
  --sidecar "target/$dir/mcp-sidecar" \
  --junit target/chaos/junit.xml \
  --out target/chaos/report.json
