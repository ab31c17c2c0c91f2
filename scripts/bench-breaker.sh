#!/usr/bin/env bash
# Open-circuit latency benchmark: how fast does a client on loopback get its 503 when an
# upstream's circuit breaker is open? Target: p99 under 100 µs.
#
# The real release binaries run as separate processes: mcp-fixture (the backend) and mcp-sidecar
# (--worker-threads 1, access log on, as deployed) with two mounts of the fixture: `/open`, whose
# breaker is forced open through the admin endpoint, and `/live`, left closed. A wrk2-style
# constant-rate generator (tests/examples/breaker_load.rs; Debian ships no wrk2) sends one POST at
# a time over one keep-alive connection, spinning on the socket for the answer, and measures
# latency from the intended send time. Cases,
# interleaved in rotating order over ROUNDS rounds, all in the same run:
#   baseline: 404 no route   the sidecar's cheapest answer (routing fails before the body is read)
#   open circuit: 503        the measured path: body read + classified, breaker refuses
#   closed: forwarded 200    the same call forwarded to the fixture (what the breaker saves)
# It prints p50/p90/p99/p99.9/max per case and the ratios to the baseline, checks every answer
# (status, X-Circuit-Open on the 503s) and that no open-circuit request reached the fixture
# (its /stats counts exactly the forwarded case's requests), and exits non-zero otherwise.
# Then tests/examples/breaker_inproc.rs times `Proxy::serve` itself for the 404 and the
# open-circuit answer (no sockets), on the sidecar's CPU: the part of the loopback latency that is
# the sidecar's own work.
#
# Environment (all optional):
#   RATE=2000        requests per second per case (moderate: far below saturation)
#   SECS=5           seconds per case per round
#   ROUNDS=3         rounds
#   PIN=split        CPU 0: the load generator alone (it spins on its socket rather than sleeping,
#                    so its own wake-ups are not measured); CPU 1: the sidecar, and the fixture,
#                    which only works in the forwarded case. PIN=none: unpinned
#   SIDECAR_RUST_LOG=info   RUST_LOG of the sidecar (info writes one access-log line per request)
#   QUIET_MAX_WAIT=120   first wait up to this many seconds for other processes to use < 0.1
#                    cores (a build in another shell distorts tail latency); 0 disables. The CPU
#                    other processes used during the run is printed with the results
#   SKIP_BUILD=1     use the existing release binaries
#   KEEP_WORKDIR=1   keep the temporary directory (config, logs, raw output)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RATE="${RATE:-2000}"
SECS="${SECS:-5}"
ROUNDS="${ROUNDS:-3}"
PIN="${PIN:-split}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
SKIP_BUILD="${SKIP_BUILD:-0}"
QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-120}"
# Not a knob here: tail latency wants a quiet machine, as bench.sh's default.
QUIET_THRESHOLD=0.10
KEEP_WORKDIR="${KEEP_WORKDIR:-0}"

BENCH_NAME=bench-breaker
# shellcheck source-path=SCRIPTDIR source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURE_BIN="$TARGET_DIR/release/mcp-fixture"
SIDECAR_BIN="$TARGET_DIR/release/mcp-sidecar"
LOAD_BIN="$TARGET_DIR/release/examples/breaker_load"
INPROC_BIN="$TARGET_DIR/release/examples/breaker_inproc"
TARGET_P99_US=100

for v in RATE SECS ROUNDS; do require_uint "$v" 1; done
install_missing curl taskset ss

if [[ "$SKIP_BUILD" != 1 ]]; then
  build_binaries release
  cargo build --release --quiet -p mcp-e2e-tests --example breaker_load --example breaker_inproc
fi
for bin in "$FIXTURE_BIN" "$SIDECAR_BIN" "$LOAD_BIN" "$INPROC_BIN"; do
  [[ -x "$bin" ]] || die "$bin missing (run without SKIP_BUILD=1)"
done

# Not common.sh's wrk layout: the load generator spins, so it gets CPU 0 alone, and the fixture
# (idle but for the forwarded case) shares CPU 1 with the sidecar.
pin_load_alone

bench_workdir

start_fixture
SIDECAR_PORT=$(free_port)
ADMIN_PORT=$(free_port)
cat >"$WORK/sidecar.toml" <<TOML
[listen]
addr = "127.0.0.1:$SIDECAR_PORT"
[admin]
addr = "127.0.0.1:$ADMIN_PORT"
[[upstream]]
name = "open"
url = "http://127.0.0.1:$FIXTURE_PORT/mcp"
path = "/open"
[[upstream]]
name = "live"
url = "http://127.0.0.1:$FIXTURE_PORT/mcp"
path = "/live"
TOML

log "sidecar on :$SIDECAR_PORT (cpus ${PROXY_CPUS:-any})"
RUST_LOG="$SIDECAR_RUST_LOG" pinned "$PROXY_CPUS" "$SIDECAR_BIN" --log-format json run \
  --config "$WORK/sidecar.toml" --worker-threads 1 >"$WORK/sidecar.log" 2>&1 &
SIDECAR_PID=$!; PIDS+=("$SIDECAR_PID")
wait_ready sidecar "$SIDECAR_PID" get_ok "http://127.0.0.1:$ADMIN_PORT/readyz"

code=$(curl -s -o "$WORK/forced.json" -w '%{http_code}' -X POST "http://127.0.0.1:$ADMIN_PORT/breakers/open/open")
[[ "$code" == 200 ]] || die "forcing the breaker open answered $code"
log "breaker forced open: $(cat "$WORK/forced.json")"
before=$(fixture_served)

wait_quiet
log "running: $RATE req/s, ${SECS}s x $ROUNDS rounds per case (+1 s warm-up each)"
busy0=$(system_busy_ticks); ours0=$(( $(proc_ticks "$SIDECAR_PID") + $(proc_ticks "$FIXTURE_PID") ))
times >"$WORK/times0"
load_rc=0
(BENCH_RATE="$RATE" BENCH_SECS="$SECS" BENCH_ROUNDS="$ROUNDS" BENCH_WARMUP_SECS=1 \
  pinned "$LOAD_CPUS" "$LOAD_BIN" \
  "baseline: 404 no route=http://127.0.0.1:$SIDECAR_PORT/nope=404" \
  "open circuit: 503=http://127.0.0.1:$SIDECAR_PORT/open=503=x-circuit-open" \
  "closed: forwarded 200=http://127.0.0.1:$SIDECAR_PORT/live=200") >"$WORK/load.out" 2>&1 || load_rc=$?
times >"$WORK/times1"
busy1=$(system_busy_ticks); ours1=$(( $(proc_ticks "$SIDECAR_PID") + $(proc_ticks "$FIXTURE_PID") ))
cat "$WORK/load.out"
((load_rc == 0)) || die "load generator failed (wrong answers?)"
elapsed_secs=$(( (SECS * ROUNDS + 1) * 3 ))
other=$(awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v t="$CLK_TCK" -v k0="$(children_cpu_secs "$WORK/times0")" \
  -v k1="$(children_cpu_secs "$WORK/times1")" -v e="$elapsed_secs" \
  'BEGIN { x = ((b - o) / t - (k1 - k0)) / e; if (x < 0) x = 0; printf "%.2f", x }')

after=$(fixture_served)
forwarded=$(sed -n 's/^sent\[closed: forwarded 200\]=\([0-9]*\).*/\1/p' "$WORK/load.out")
reached=$((after - before))
[[ "$reached" == "$forwarded" ]] \
  || die "the fixture saw $reached requests but only $forwarded were forwarded: open-circuit requests reached it"
log "fixture saw exactly the $forwarded forwarded requests: no open-circuit request reached it"

echo
wait_quiet
(pinned "$PROXY_CPUS" "$INPROC_BIN") || die "in-process benchmark failed"

p99=$(sed -n 's/^sent\[open circuit: 503\].*p99_us\[open circuit: 503\]=\([0-9.]*\)$/\1/p' "$WORK/load.out")
echo
echo "machine: $(nproc) CPUs, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1); pinning: $PIN; sidecar RUST_LOG=$SIDECAR_RUST_LOG"
echo "other processes used $other cores on average during the run (0 = a quiet machine)"
if awk -v p="$p99" -v t="$TARGET_P99_US" 'BEGIN { exit !(p < t) }'; then
  echo "open-circuit p99 = ${p99} µs: under the ${TARGET_P99_US} µs target"
else
  echo "open-circuit p99 = ${p99} µs: OVER the ${TARGET_P99_US} µs target"
fi
