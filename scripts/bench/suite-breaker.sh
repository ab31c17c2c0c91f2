# shellcheck shell=bash
# Suite `breaker` of scripts/bench.sh: how fast a client on loopback gets its 503 when an
# upstream's circuit is open, at a moderate fixed rate (open loop, latency from each request's
# intended start), against the sidecar's cheapest answer and a forwarded call, in one run. One
# sidecar (--worker-threads 1, access log on, JSON) with two mounts of the fixture: `/open`
# (breaker forced open through POST /breakers/open/open) and `/live` (closed). Cases, interleaved
# in rotating order over ROUNDS rounds (mcp-load --rate RATE --sessions 0: no initialize, which
# the first two would refuse):
#   404      baseline: no route, the sidecar's cheapest answer
#   open     open circuit: 503 (body read and classified, the breaker refuses)
#   live     the same call forwarded through the closed circuit: 200
# Each case's rounds are merged (mcp-load merge: exact, histograms added) into p50/p90/p99/
# p99.9/max. Checks: every 404 and 503 answer is exactly that (mcp-load's error classes), the
# 503s carry X-Circuit-Open, no open-circuit or 404 request reached the fixture, every live call
# did. Then tests/examples/breaker_inproc.rs times `Proxy::serve` in-process (no sockets) on the
# sidecar's CPU: the part of the loopback latency that is the sidecar's own work.
#
# Environment (all optional; see `scripts/bench.sh --help` for the shared ones):
#   RATE=2000  SECS=5  ROUNDS=3   requests/s, seconds per case and round, rounds
#   SIDECAR_RUST_LOG=info
# Pinning (PIN=split): mcp-load alone on CPU 0 (it spins before each send, so its own wake-ups
# are not measured), the sidecar and the fixture on CPU 1.
# Sourced after common.sh, which reads the variables it sets (SC2034 cannot see across files).
# shellcheck disable=SC2034,SC2153

RATE="${RATE:-2000}"
SECS="${SECS:-5}"
ROUNDS="${ROUNDS:-3}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
TARGET_P99_MS=0.1
for v in RATE SECS ROUNDS; do require_uint "$v" 1; done
TARGETS=(404 open live)

install_missing curl jq taskset ss
build_binaries
if [[ "$SKIP_BUILD" != 1 ]]; then
  step "building tests/examples/breaker_inproc.rs ($PROFILE)"
  cargo build --profile "$PROFILE" --quiet -p mcp-e2e-tests --example breaker_inproc || die "cargo build of breaker_inproc failed"
fi
INPROC_BIN="$TARGET_DIR/$PROFILE/examples/breaker_inproc"
[[ -x "$INPROC_BIN" ]] || die "$INPROC_BIN missing (run without SKIP_BUILD=1)"
if [[ "$PIN" == split ]]; then FIXTURE_CPUS="${FIXTURE_CPUS-1}"; fi
pin_layout
bench_workdir
start_fixture

port=$(free_port); admin=$(free_port)
cat >"$WORK/sidecar.toml" <<TOML
[listen]
addr = "127.0.0.1:$port"
[admin]
addr = "127.0.0.1:$admin"
[jobs]
store = "memory"
[[upstream]]
name = "open"
url = "$FIXTURE_URL"
path = "/open"
[[upstream]]
name = "live"
url = "$FIXTURE_URL"
path = "/live"
TOML
"$SIDECAR_BIN" check --config "$WORK/sidecar.toml" >/dev/null || die "invalid config $WORK/sidecar.toml"
start_sidecar sidecar "$WORK/sidecar.toml" "$SIDECAR_RUST_LOG"
SIDECAR_PID=$STARTED_PID
declare -A URL=([404]="http://127.0.0.1:$port/nope" [open]="http://127.0.0.1:$port/open" [live]="http://127.0.0.1:$port/live")
declare -A EXPECT=([404]=http_404 [open]=http_503 [live]="")

step "forcing the breaker of /open open"
code=$(curl -s -o "$WORK/forced.json" -w '%{http_code}' -X POST "http://127.0.0.1:$admin/breakers/open/open")
[[ "$code" == 200 ]] || die "forcing the breaker open answered $code"
curl -s -D - -o /dev/null -X POST -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
  --data "$BODY" "${URL[open]}" | grep -qi '^x-circuit-open:' || die "the open circuit's 503 carries no X-Circuit-Open"

# case_run CASE ROUND: one mcp-load run; checks its answers and what reached the fixture.
case_run() {
  local c="$1" r="$2" out="$WORK/$1-$2.json" before after n kinds
  alive
  wait_quiet
  before=$(fixture_served)
  STEP="$c, round $r"
  LOAD_ERRORS_OK=1 load "$out" "${URL[$c]}" --sessions 0 --rate "$RATE" --duration "${SECS}s" --warmup 1s
  after=$(fixture_served)
  n=$(report_field "$out" .requests)
  kinds=$(jq -c .errors_by_kind "$out")
  if [[ -n "${EXPECT[$c]}" ]]; then
    [[ "$kinds" == "{\"${EXPECT[$c]}\":$n}" ]] || { log "$c: expected $n x ${EXPECT[$c]}, got $kinds"; FAILED=1; }
    ((after == before)) || { log "$c: $((after - before)) request(s) reached the fixture"; FAILED=1; }
  else
    [[ "$kinds" == "{}" ]] || { log "$c: errors $kinds"; FAILED=1; }
    ((after - before >= n)) || { log "$c: the fixture saw $((after - before)) of $n calls"; FAILED=1; }
  fi
  log "$(jq -r --arg c "$c" --arg r "$r" '"\($c) round \($r): \(.requests) requests, p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms, send lag p99 \(.send_lag_ms.p99) ms"' "$out")"
}
step "mcp-load --rate $RATE --sessions 0, ${SECS}s per case and round (+1 s warm-up), $ROUNDS round(s); pinning: mcp-load ${LOAD_CPUS:-any}, sidecar ${PROXY_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}"
busy0=$(system_busy_ticks); ours0=$(( $(proc_ticks "$SIDECAR_PID") + $(proc_ticks "$FIXTURE_PID") )); wall0=$(date +%s)
times >"$WORK/times0"
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#TARGETS[@]}; k++)); do case_run "${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}" "$r"; done
done
times >"$WORK/times1"
busy1=$(system_busy_ticks); ours1=$(( $(proc_ticks "$SIDECAR_PID") + $(proc_ticks "$FIXTURE_PID") )); wall1=$(date +%s)
other=$(awk -v b=$((busy1 - busy0)) -v o=$((ours1 - ours0)) -v t="$CLK_TCK" -v k0="$(children_cpu_secs "$WORK/times0")" \
  -v k1="$(children_cpu_secs "$WORK/times1")" -v e=$((wall1 - wall0)) 'BEGIN { x = ((b - o) / t - (k1 - k0)) / e; if (x < 0) x = 0; printf "%.2f", x }')

STEP="merging each case's rounds"
for c in "${TARGETS[@]}"; do
  "$LOAD_BIN" merge "$WORK/$c"-*.json --out "$WORK/$c.json" >/dev/null || die "mcp-load merge failed for $c"
done
STEP="the in-process benchmark"
wait_quiet
(pinned "$PROXY_CPUS" "$INPROC_BIN") >"$WORK/inproc.txt" 2>&1 || { cat "$WORK/inproc.txt" >&2; die "in-process benchmark failed"; }
keep_sidecar_problems sidecar

STEP="the report"
echo
report_header "Open-circuit latency (scripts/bench.sh breaker)"
echo "mcp-load --rate $RATE --sessions 0 (open loop, latency from the intended start), ${SECS}s x $ROUNDS rounds per case; pinning: mcp-load ${LOAD_CPUS:-any}, sidecar + fixture ${PROXY_CPUS:-any}; sidecar RUST_LOG=$SIDECAR_RUST_LOG"
echo "other processes used $other cores on average during the runs (0 = a quiet machine)"
echo
printf '%-26s %8s %8s %8s %8s %8s %8s %10s\n' case n "p50 us" "p90 us" "p99 us" "p99.9 us" "max us" "p50/404"
base=$(report_field "$WORK/404.json" .latency_ms.p50)
declare -A NAME=([404]="baseline: 404 no route" [open]="open circuit: 503" [live]="closed: forwarded 200")
for c in "${TARGETS[@]}"; do
  jq -r --arg name "${NAME[$c]}" --argjson base "$base" '[$name, .requests, .latency_ms.p50 * 1000, .latency_ms.p90 * 1000,
    .latency_ms.p99 * 1000, .latency_ms.p999 * 1000, .latency_ms.max * 1000, (.latency_ms.p50 / $base)] |
    "\(.[0])\t\(.[1])\t\(.[2])\t\(.[3])\t\(.[4])\t\(.[5])\t\(.[6])\t\(.[7])"' "$WORK/$c.json" |
    awk -F'\t' '{ printf "%-26s %8d %8.1f %8.1f %8.1f %8.1f %8.1f %10.2f\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
done
echo
cat "$WORK/inproc.txt"
p99=$(report_field "$WORK/open.json" .latency_ms.p99)
if awk -v p="$p99" -v t="$TARGET_P99_MS" 'BEGIN { exit !(p < t) }'; then
  echo "open-circuit p99 = $p99 ms: under the $TARGET_P99_MS ms target"
else
  echo "open-circuit p99 = $p99 ms: OVER the $TARGET_P99_MS ms target"
fi
echo
finish "every answer as expected; no open-circuit request reached the fixture"
