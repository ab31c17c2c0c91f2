# shellcheck shell=bash
# Suite `redis` of scripts/bench.sh: the cost of the features that keep state in Redis, each
# against its local counterpart in the same invocation. A redis-server (no persistence) on a free
# loopback port, pinned with the load side (FIXTURE_CPUS), so the sidecar's CPU is its own.
# MEASURE lists the measurements to run, in order (each adds its targets, runs and report):
#   ratelimit  one rate-limit rule that matches every call and never refuses (10,000,000/s per
#              principal: one hot key), three sidecars:
#                local          scope = "local" (in memory)
#                global         scope = "global": one EVALSHA round trip per request
#                global-budget  scope = "global", local_budget = BUDGET: one round trip per
#                               BUDGET + 1 requests of the hot key
#              closed-loop throughput (rounds in rotating order; ratios against local), then
#              added latency at a fixed RATE (open loop; added = target minus local in the same
#              round). Checks on /metrics that the global sidecars asked Redis, never fell back
#              and never refused; reports Redis' own CPU per script call.
#
# Environment (all optional; see `scripts/bench.sh --help` for the shared ones):
#   MEASURE="ratelimit"  CONNECTIONS=32  DURATION=10s  WARMUP=3s  ROUNDS=3
#   RATE=2000  LAT_DURATION=10s  BUDGET=32  SIDECAR_RUST_LOG=warn  RESULTS_TSV=path
# Sourced after common.sh, which reads the variables it sets (SC2034 cannot see across files).
# shellcheck disable=SC2034,SC2153

MEASURE="${MEASURE:-ratelimit}"
CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
ROUNDS="${ROUNDS:-3}"
RATE="${RATE:-2000}"
LAT_DURATION="${LAT_DURATION:-10s}"
BUDGET="${BUDGET:-32}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-warn}"
RESULTS_TSV="${RESULTS_TSV:-}"
for v in CONNECTIONS ROUNDS RATE BUDGET; do require_uint "$v" 1; done
require_duration DURATION
require_duration LAT_DURATION
[[ "$WARMUP" == 0 ]] || require_duration WARMUP
for m in $MEASURE; do
  [[ "$m" == ratelimit ]] || die "MEASURE: unknown measurement '$m' (ratelimit)"
done

install_missing curl jq taskset ss redis-server redis-cli
build_binaries
pin_layout
bench_workdir
start_fixture

# The Redis every global target shares: no persistence (the benchmark measures the round trip,
# not the disk), loopback only.
step "starting redis-server"
REDIS_PORT=$(free_port)
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
(pinned "$FIXTURE_CPUS" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" \
  --appendonly no --protected-mode no --dir "$WORK") >"$WORK/redis.log" 2>&1 &
REDIS_PID=$!; PIDS+=("$REDIS_PID")
redis_ping() { [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }
wait_ready redis "$REDIS_PID" redis_ping
REDIS_TOML=$(printf '[redis]\nurl = "%s"\nkey_prefix = "bench:"\n' "$REDIS_URL")

declare -A URL PID ADMIN
# add_sidecar TARGET EXTRA_TOML: a sidecar named TARGET with EXTRA_TOML, its URL, PID and ADMIN.
add_sidecar() {
  local t="$1" port admin
  port=$(free_port); admin=$(free_port)
  URL[$t]="http://127.0.0.1:$port/mcp"; ADMIN[$t]="http://127.0.0.1:$admin"
  sidecar_config "$WORK/$t.toml" "$port" "$admin" "$2"
  start_sidecar "$t" "$WORK/$t.toml" "$SIDECAR_RUST_LOG"
  PID[$t]=$STARTED_PID
}
metric_sum() { # metric_sum TARGET PREFIX: the sum of the samples whose line starts with PREFIX
  curl -s --max-time 2 "${ADMIN[$1]}/metrics" | awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%d\n", s }'
}
rows_init
REPORTS=()

# ---------------------------------------------------------------------------------------------
# ratelimit: a global rule against the same rule kept local.
# ---------------------------------------------------------------------------------------------
measure_ratelimit() {
  local rule t
  rule=$(printf '[[rate_limit]]\nname = "hot"\nkey = ["principal"]\nrate = 10000000\nper = "1s"\n')
  add_sidecar local "$rule"$'\nscope = "local"'
  add_sidecar global "$REDIS_TOML"$'\n'"$rule"$'\nscope = "global"'
  add_sidecar global-budget "$REDIS_TOML"$'\n'"$rule"$'\nscope = "global"\n'"local_budget = $BUDGET"
  TARGETS=(local global global-budget)
  for t in "${TARGETS[@]}"; do
    [[ "$(post_code "${URL[$t]}")" == 200 ]] || die "$t does not answer a tools/call with 200"
  done
  local redis0 redis1 calls
  redis0=$(proc_ticks "$REDIS_PID")
  if [[ "$WARMUP" != 0 ]]; then
    for t in "${TARGETS[@]}"; do run_one warmup "$t" 0 --sessions 0 --concurrency "$CONNECTIONS" --duration "$WARMUP"; done
  fi
  step "ratelimit: closed loop, mcp-load --concurrency $CONNECTIONS, $DURATION per run, $ROUNDS round(s)"
  rounds closed --sessions 0 --concurrency "$CONNECTIONS" --duration "$DURATION"
  step "ratelimit: fixed rate $RATE/s, $LAT_DURATION per run (1 s warm-up), $ROUNDS round(s)"
  rounds "rate-$RATE" --rate "$RATE" --duration "$LAT_DURATION" --warmup 1s
  redis1=$(proc_ticks "$REDIS_PID")

  STEP="ratelimit: the counters on /metrics"
  calls=0
  for t in global global-budget; do
    local ok fallback rejected
    ok=$(metric_sum "$t" 'mcp_sidecar_redis_commands_total{op="rate_limit",outcome="ok"}')
    fallback=$(metric_sum "$t" 'mcp_sidecar_rate_limit_fallback_total')
    rejected=$(metric_sum "$t" 'mcp_sidecar_rate_limit_rejected_total')
    calls=$((calls + ok))
    log "$t: $ok script calls answered, $fallback fallbacks, $rejected rejected"
    ((ok > 0)) || { log "$t never asked Redis: is the rule global?"; FAILED=1; }
    ((fallback == 0)) || { log "$t fell back $fallback times: Redis did not answer in time"; FAILED=1; }
    ((rejected == 0)) || { log "$t refused $rejected requests (the rule must never refuse here)"; FAILED=1; }
  done
  RATELIMIT_REDIS_US=$(awk -v t="$((redis1 - redis0))" -v hz="$CLK_TCK" -v n="$calls" \
    'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
  RATELIMIT_CALLS=$calls
  REPORTS+=(report_ratelimit)
}

report_ratelimit() {
  echo "## ratelimit: one rule (10,000,000/s per principal, one hot key), local against global"
  echo
  throughput_report closed "global|local global-budget|local"
  awk -F'\t' -v rounds="$ROUNDS" -v order="${TARGETS[*]}" -v base=local -v kind="rate-$RATE" "$AWK_MEDIAN"'
    $1 == kind {
      l50[$2, $3] = $5; l99[$2, $3] = $7
      a50[$2] = a50[$2] " " $5; a99[$2] = a99[$2] " " $7; ach[$2] = ach[$2] " " $4
    }
    END {
      n = split(order, T, " ")
      print ""
      printf "Fixed rate %s req/s (open loop): latency ms, medians over the rounds; added = target minus %s in the same round\n", substr(kind, 6), base
      printf "%-17s %10s %8s %8s %12s %12s\n", "target", "achieved/s", "p50", "p99", "added p50", "added p99"
      for (i = 1; i <= n; i++) {
        t = T[i]; if (!(t in a50)) continue
        d50 = ""; d99 = ""
        for (k = 1; k <= rounds; k++) if ((t, k) in l50 && (base, k) in l50) {
          d50 = d50 " " (l50[t, k] - l50[base, k]); d99 = d99 " " (l99[t, k] - l99[base, k])
        }
        printf "%-17s %10.0f %8.3f %8.3f %12s %12s\n", t, median(ach[t]), median(a50[t]), median(a99[t]),
          t == base || d50 == "" ? "-" : sprintf("%+.3f", median(d50)), t == base || d99 == "" ? "-" : sprintf("%+.3f", median(d99))
      }
    }' "$ROWS"
  echo
  echo "redis-server CPU per script call: $RATELIMIT_REDIS_US us ($RATELIMIT_CALLS calls, warm-up included)"
}

for m in $MEASURE; do "measure_$m"; done
[[ -n "$RESULTS_TSV" ]] && { echo "$ROWS_HEADER"; cat "$ROWS"; } >"$RESULTS_TSV"

STEP="the report"
echo
report_header "mcp-sidecar Redis benchmark (scripts/bench.sh redis)"
echo "redis-server $(redis-server --version | awk '{ print $3 }') on 127.0.0.1 (cpus ${FIXTURE_CPUS:-any}); sidecars on ${PROXY_CPUS:-any}, --worker-threads 1, RUST_LOG=$SIDECAR_RUST_LOG; mcp-load on ${LOAD_CPUS:-any}"
for r in "${REPORTS[@]}"; do echo; "$r"; done
echo
echo "proxy cores: CPU the sidecar used (1.00 = one core); proxy us/req: its CPU time per answered"
echo "request (Redis' own CPU not included: see its line); other load: cores used outside the benchmark."
echo
finish "no error answers; the global rules asked Redis, never fell back, never refused"
