#!/usr/bin/env bash
# The project's benchmarks, reproduced by one command: `scripts/bench.sh [SUITE]`.
#
#   default   (no argument) the fixture directly, the sidecar with no policies, the sidecar with
#             auth + rate limits + breaker on, HAProxy and nginx: closed-loop throughput and its
#             ratios, added latency at fixed rates (p50/p99 over direct), the sidecar's RSS idle
#             and with 10,000 open SSE streams; CALLGRIND=1 adds instructions per request.
#             BASELINE_URL/TARGET_URL measure external deployments instead (see the suite).
#   auth      the sidecar with JWT authentication (ES256, RS256, cached and not) against none
#   breaker   open-circuit answers at a fixed rate against the 404 path and a forwarded call
#   jobs      time to a job's 202 at a fixed rate and peak submissions/s (redb, memory, live)
#   limits    the sidecar with three rate-limit rules against none, both loaded at once
#   redis     state in Redis against its local counterpart: a global rate-limit rule against the
#             same rule kept local (throughput, added latency), with a redis-server of its own
#
# Every suite drives mcp-load (target/$PROFILE/mcp-load, built with the other binaries) and
# shares the set-up of scripts/bench/common.sh: it installs what is missing (Debian packages),
# builds, picks free loopback ports, starts and checks the servers, pins CPUs, waits for a quiet
# machine, prints a report on stdout, exits non-zero on any error answer in a measured run or
# failed check (naming the step), and stops every process it started. `scripts/bench.sh SUITE
# --help` lists the suite's own knobs.
#
# Environment shared by all suites (all optional):
#   PROFILE=production   cargo profile of the binaries (`release` builds quicker)
#   SKIP_BUILD=1         use the existing target/$PROFILE binaries
#   PIN=split            CPU 0: load generator + fixture, CPU 1: the proxy under test (some
#                        suites differ, see their help); PIN=none: unpinned.
#                        LOAD_CPUS / FIXTURE_CPUS / PROXY_CPUS override the layout
#   QUIET_MAX_WAIT=120   before each run, wait up to this many seconds for other processes to
#   QUIET_THRESHOLD=0.10 use fewer than this many cores (0 disables the wait)
#   KEEP_WORKDIR=1       keep the temporary directory (configs, logs, mcp-load JSON reports)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

help_of() { # the file's header comment, without its first line and shellcheck directives
  awk 'NR > 1 && !/^#/ { exit } NR > 1 && !/^# shellcheck/ { sub(/^# ?/, ""); print }' "$1"
}
SUITE=default
case "${1:-}" in
  -h | --help) help_of "${BASH_SOURCE[0]}"; exit 0 ;;
  "") ;;
  default | auth | breaker | jobs | limits | redis) SUITE="$1"; shift ;;
  *) echo "bench.sh: unknown suite '$1' (default, auth, breaker, jobs, limits, redis; --help)" >&2; exit 2 ;;
esac
SUITE_FILE="$ROOT/scripts/bench/suite-$SUITE.sh"
if (($# > 0)); then
  case "$1" in
    -h | --help) help_of "$SUITE_FILE"; exit 0 ;;
    *) echo "bench.sh: unexpected argument '$1'; suites are configured by environment variables (--help)" >&2; exit 2 ;;
  esac
fi

PROFILE="${PROFILE:-production}"
SKIP_BUILD="${SKIP_BUILD:-0}"
PIN="${PIN:-split}"
QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-120}"
QUIET_THRESHOLD="${QUIET_THRESHOLD:-0.10}"
KEEP_WORKDIR="${KEEP_WORKDIR:-0}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURE_BIN="$TARGET_DIR/$PROFILE/mcp-fixture"
SIDECAR_BIN="$TARGET_DIR/$PROFILE/mcp-sidecar"
LOAD_BIN="$TARGET_DIR/$PROFILE/mcp-load"

# shellcheck source-path=SCRIPTDIR source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"
require_uint QUIET_MAX_WAIT 0
# shellcheck source=/dev/null # one of scripts/bench/suite-*.sh, each checked on its own
source "$SUITE_FILE"
