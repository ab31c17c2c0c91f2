#!/usr/bin/env bash
# Rate-limit overhead benchmark: the same MCP `tools/call` (echo) POST through two mcp-sidecar
# processes (--worker-threads 1 each), measured in the same run:
#   none     default config: no rate-limit rules (the global in-flight cap is on, as by default)
#   rules3   three active rate-limit rules that match every request and never refuse (a rate of
#            10 000 000/s): per principal (unauthenticated: client IP), per client IP + tool (on
#            `echo`), per method (on `tools/*`). Three matching rules take the slowest path: a dry
#            run across all of them, then the commit, plus RateLimit headers on every answer.
# Prints per-target medians, the ratio rules3 / none (target >= 0.95 for req/s) and the sidecar's
# CPU time per request for both. Same approach as scripts/bench.sh: wrk, the fixture as backend,
# CPU pinning (wrk + fixture on CPU 0, the sidecars on CPU 1), rounds, medians; exits 1 on any
# non-2xx answer, socket error, request the backend did not see, or if the rules did not admit
# every request (checked on the sidecar's /metrics).
#
# MODE=paired (default): each round loads both sidecars at the same time, one wrk each, both
# sidecars sharing CPU 1. The scheduler gives each half of the core, so the throughput ratio is
# the inverse of their CPU cost per request, and whatever else happens on the machine (another
# tenant, frequency changes) hits both alike: on a shared VM this is far steadier than measuring
# one after the other. MODE=alternate: one sidecar at a time, in rotating order, as bench.sh does.
#
# Environment (all optional):
#   MODE=paired|alternate   DURATION=10s CONNECTIONS=32 WRK_THREADS=1 WARMUP=3s ROUNDS=5
#   PIN=split|none   WRK_CPUS / FIXTURE_CPUS / PROXY_CPUS override the layout
#   SIDECAR_RUST_LOG=info   (access log on, written to a file, as in production)
#   QUIET_MAX_WAIT=120 QUIET_THRESHOLD=0.10   wait (seconds) for other processes to use less than
#                   this many cores before each run (the machine may be shared); 0 disables
#   DISTURBED=0.10 RETRIES=3   a run during which other processes used more than DISTURBED cores
#                   is measured again, up to RETRIES attempts (the last one is kept either way)
#   CALLGRIND=1     also count the sidecar's instructions per request under valgrind's callgrind
#                   (noise-free: immune to other load on a shared machine; user-space work only,
#                   so it overstates the relative cost, the kernel's network work being left out)
#   CG_SECS=20      seconds of load per target under callgrind (wrk -c4)
#   SKIP_BUILD=1   KEEP_WORKDIR=1   RESULTS_TSV=path
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-3s}"
ROUNDS="${ROUNDS:-5}"
PIN="${PIN:-split}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-120}"
QUIET_THRESHOLD="${QUIET_THRESHOLD:-0.10}"
DISTURBED="${DISTURBED:-0.10}"
RETRIES="${RETRIES:-3}"
MODE="${MODE:-paired}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_WORKDIR="${KEEP_WORKDIR:-0}"
RESULTS_TSV="${RESULTS_TSV:-}"
CALLGRIND="${CALLGRIND:-0}"
CG_SECS="${CG_SECS:-20}"
TARGETS=(none rules3)
RULES=(per-principal per-ip-tool per-method)
TARGET_RATIO=0.95

BENCH_NAME=bench-limits
# shellcheck source-path=SCRIPTDIR source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURE_BIN="$TARGET_DIR/release/mcp-fixture"
SIDECAR_BIN="$TARGET_DIR/release/mcp-sidecar"

require_uint ROUNDS 1
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$WRK_THREADS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge "$WRK_THREADS" ]] \
  || die "CONNECTIONS and WRK_THREADS must be positive integers, CONNECTIONS >= WRK_THREADS"

tools=(wrk curl taskset ss)
[[ "$CALLGRIND" == 1 ]] && tools+=(callgrind_control)
install_missing "${tools[@]}"
[[ "$SKIP_BUILD" != 1 ]] && build_binaries release
[[ -x "$FIXTURE_BIN" && -x "$SIDECAR_BIN" ]] || die "release binaries missing (run without SKIP_BUILD=1)"

pin_layout
bench_workdir
start_fixture

write_config() { # write_config TARGET PORT ADMIN_PORT FILE
  {
    printf '[listen]\naddr = "127.0.0.1:%s"\n[admin]\naddr = "127.0.0.1:%s"\n' "$2" "$3"
    if [[ "$1" == rules3 ]]; then
      printf '[[rate_limit]]\nname = "per-principal"\nkey = ["principal"]\nrate = 10000000\nper = "1s"\n'
      printf '[[rate_limit]]\nname = "per-ip-tool"\nkey = ["client_ip", "tool"]\nrate = 10000000\nper = "1s"\ntools = ["echo"]\n'
      printf '[[rate_limit]]\nname = "per-method"\nkey = ["method"]\nrate = 10000000\nper = "1s"\nmethods = ["tools/*"]\n'
    fi
    printf '[[upstream]]\nname = "fixture"\nurl = "%s"\npath = "/mcp"\n' "$FIXTURE_URL"
  } >"$4"
  "$SIDECAR_BIN" check --config "$4" >/dev/null || die "invalid config $4"
}

declare -A URL PID ADMIN
for t in "${TARGETS[@]}"; do
  port=$(free_port); admin=$(free_port)
  URL[$t]="http://127.0.0.1:$port/mcp"
  ADMIN[$t]="http://127.0.0.1:$admin"
  cfg="$WORK/$t.toml"
  write_config "$t" "$port" "$admin" "$cfg"
  log "sidecar $t on :$port, admin :$admin (cpus ${PROXY_CPUS:-any}, RUST_LOG=$SIDECAR_RUST_LOG)"
  RUST_LOG="$SIDECAR_RUST_LOG" pinned "$PROXY_CPUS" "$SIDECAR_BIN" run --config "$cfg" --worker-threads 1 \
    >>"$WORK/$t.log" 2>&1 &
  PID[$t]=$!; PIDS+=("${PID[$t]}")
  wait_ready "$t" "${PID[$t]}" post_ok "${URL[$t]}"
done
# The rules must really be on: an answer through rules3 carries their RateLimit fields.
curl -s -D - -o /dev/null -X POST -H 'content-type: application/json' \
  -H 'accept: application/json, text/event-stream' --data "$BODY" "${URL[rules3]}" \
  | grep -qi '^ratelimit-policy: "per-principal"' || die "rules3 answers carry no RateLimit-Policy: rules not active?"

metric_sum() { # metric_sum TARGET PREFIX: sum of the samples whose line starts with PREFIX
  curl -s --max-time 2 "${ADMIN[$1]}/metrics" \
    | awk -v p="$2" 'index($0, p) == 1 { s += $NF } END { printf "%d\n", s }'
}

ROWS="$WORK/rows.tsv"; : >"$ROWS"
# measure_once KIND ROUND DURATION TARGET...: one wrk run against each TARGET, all at the same time;
# sets ROWS_NEW (one TSV line per target) and OTHER (cores used by processes outside the benchmark
# during the run: busy CPU minus ours and the wrks').
measure_once() {
  local kind="$1" round="$2" dur="$3"; shift 3
  local t pid busy0 busy1 ours0 ours1 kids0 kids1 wrk_pids=() rc served1
  local -A out served0 px0 px1
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a server died (pid $pid); see $WORK"; done
  wait_quiet
  for t in "$@"; do
    out[$t]="$WORK/wrk-$kind-$t-$round.txt"
    served0[$t]=$(fixture_served); px0[$t]=$(proc_ticks "${PID[$t]}")
  done
  ours0=0; for pid in "${PIDS[@]}"; do ours0=$((ours0 + $(proc_ticks "$pid"))); done
  # `times` must run in this shell (not in a $(...) subshell) to see the reaped wrks' CPU time.
  busy0=$(system_busy_ticks); times >"$WORK/times0"
  for t in "$@"; do
    run_wrk "${out[$t]}" "$dur" "${URL[$t]}" &
    wrk_pids+=($!)
  done
  rc=0; for pid in "${wrk_pids[@]}"; do wait "$pid" || rc=$?; done
  times >"$WORK/times1"; busy1=$(system_busy_ticks)
  ours1=0; for pid in "${PIDS[@]}"; do ours1=$((ours1 + $(proc_ticks "$pid"))); done
  kids0=$(children_cpu_secs "$WORK/times0"); kids1=$(children_cpu_secs "$WORK/times1")
  for t in "$@"; do px1[$t]=$(proc_ticks "${PID[$t]}"); done
  served1=$(fixture_served)
  local served_total=$((served1 - ${served0[$1]})) requests_total=0 line secs=0
  ROWS_NEW=""
  for t in "$@"; do
    keep_sidecar_problems "$t"
    line=$(wrk_result "${out[$t]}")
    if ((rc != 0)) || [[ -z "$line" ]]; then
      log "wrk failed against $t (exit $rc):"; cat "${out[$t]}" >&2; FAILED=1; ROWS_NEW=""; OTHER=0; return 0
    fi
    requests_total=$((requests_total + $(grep -o ' requests=[0-9]*' <<<"$line" | cut -d= -f2)))
    secs=$(grep -o 'duration_us=[0-9]*' <<<"$line" | cut -d= -f2)
  done
  OTHER=$(awk -v busy="$((busy1 - busy0))" -v ours="$((ours1 - ours0))" -v tck="$CLK_TCK" -v a="$kids0" \
    -v b="$kids1" -v us="$secs" 'BEGIN { o = (busy / tck - ours / tck - (b - a)) / (us / 1e6); if (o < 0) o = 0; printf "%.2f", o }')
  for t in "$@"; do
    line=$(wrk_result "${out[$t]}")
    ROWS_NEW+=$(awk -v kind="$kind" -v t="$t" -v round="$round" -v px="$((px1[$t] - px0[$t]))" \
        -v tck="$CLK_TCK" -v fwd="$( ((served_total >= requests_total)) && echo ok || echo MISSING)" -v other="$OTHER" '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        errs = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_timeout"] + v["err_status"]
        secs = v["duration_us"] / 1e6
        printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t%s\t%s\n", kind, t, round, v["rps"], v["p50_us"],
          v["p99_us"], v["requests"], errs, px / tck / secs, (v["requests"] > 0 ? px / tck * 1e6 / v["requests"] : 0),
          fwd, other }' <<<"$line")$'\n'
  done
  local rps p50 p99 errs cores us fwd row
  while IFS= read -r row; do
    [[ -z "$row" ]] && continue
    IFS=$'\t' read -r _ t _ rps p50 p99 _ errs cores us fwd _ <<<"$row"
    log "$(printf '%-7s %-7s %-2s %8s req/s  p50 %6s us  p99 %6s us  errors %s  sidecar %s cores, %s us/req  forwarded %s  other load %s' \
      "$kind" "$t" "$round" "$rps" "$p50" "$p99" "$errs" "$cores" "$us" "$fwd" "$OTHER")"
    if ((errs > 0)); then log "$t: $errs error(s) (non-2xx or socket)"; FAILED=1; fi
    [[ "$fwd" == ok ]] || { log "$t: the backend saw fewer requests than wrk counted"; FAILED=1; }
  done <<<"$ROWS_NEW"
}

# run_one KIND ROUND DURATION TARGET...: a measured run, repeated (up to RETRIES times) while other
# processes used more than DISTURBED cores during it; the last attempt is kept either way.
run_one() {
  local attempt
  for ((attempt = 1; attempt <= RETRIES; attempt++)); do
    measure_once "$@"
    [[ -z "$ROWS_NEW" ]] && return 0
    if [[ "$1" == warmup ]] || awk -v o="$OTHER" -v d="$DISTURBED" 'BEGIN { exit !(o <= d) }'; then break; fi
    ((attempt < RETRIES)) && log "disturbed ($OTHER cores used by other processes during the run): measuring again"
  done
  printf '%s' "$ROWS_NEW" >>"$ROWS"
}

case "$MODE" in
  paired) log "mode paired: both sidecars loaded at the same time, sharing CPU ${PROXY_CPUS:-any} (each gets half of it; the throughput ratio is their cost ratio, and any disturbance hits both)" ;;
  alternate) log "mode alternate: one sidecar at a time, in rotating order" ;;
  *) die "MODE must be paired or alternate" ;;
esac
log "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION per sidecar (warm-up $WARMUP), $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}"
if [[ "$WARMUP" != 0 ]]; then run_one warmup 0 "$WARMUP" "${TARGETS[@]}"; fi
for ((r = 1; r <= ROUNDS; r++)); do
  if [[ "$MODE" == paired ]]; then
    run_one measure "$r" "$DURATION" "${TARGETS[@]}"
  else
    for ((k = 0; k < ${#TARGETS[@]}; k++)); do
      run_one measure "$r" "$DURATION" "${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}"
    done
  fi
done
[[ -n "$RESULTS_TSV" ]] && { printf 'kind\ttarget\tround\trps\tp50_us\tp99_us\trequests\terrors\tsidecar_cores\tsidecar_us_per_req\tforwarded\tother_load\n'; cat "$ROWS"; } >"$RESULTS_TSV"

# Every request through rules3 was decided by all three rules, and none was refused. (A rule may
# have admitted a few more than were answered: requests in flight when wrk closed its connections.)
answered=$(metric_sum rules3 'mcp_sidecar_requests_total{method="POST",status="200",upstream="fixture"}')
for rule in "${RULES[@]}"; do
  admitted=$(metric_sum rules3 "mcp_sidecar_rate_limit_admitted_total{rule=\"$rule\"}")
  if ((admitted < answered || answered == 0)); then
    log "rule $rule admitted $admitted requests, the sidecar answered $answered with 200"; FAILED=1
  fi
done
rejected=$(metric_sum rules3 'mcp_sidecar_rate_limit_rejected_total')
[[ "$rejected" == 0 ]] || { log "the rules rejected $rejected requests (they must never refuse here)"; FAILED=1; }
log "rules3: $answered requests answered 200, each admitted by all ${#RULES[@]} rules; $rejected rejected"

# Instructions per request under callgrind (cg_count): a fresh sidecar per target.
declare -A IR_PER_REQ
if [[ "$CALLGRIND" == 1 ]]; then
  for t in "${TARGETS[@]}"; do
    port=$(free_port); admin=$(free_port); cfg="$WORK/cg-$t.toml"
    write_config "$t" "$port" "$admin" "$cfg"
    RUST_LOG="$SIDECAR_RUST_LOG" cg_count "$t" "$port" "$SIDECAR_BIN" run --config "$cfg" --worker-threads 1
  done
fi

echo
report_header "mcp-sidecar rate-limit benchmark"
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, warm-up $WARMUP, $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}; sidecar --worker-threads 1, RUST_LOG=$SIDECAR_RUST_LOG"
echo
awk -F'\t' -v target="$TARGET_RATIO" -v mode="$MODE" "$AWK_MEDIAN"'
  $1 == "measure" {
    by_round[$2, $3] = $4
    rps[$2] = rps[$2] " " $4; p50[$2] = p50[$2] " " $5; p99[$2] = p99[$2] " " $6
    cores[$2] = cores[$2] " " $9; us[$2] = us[$2] " " $10; err[$2] += $8; other[$2] = other[$2] " " $12
  }
  END {
    printf "%-8s %10s %9s %9s %13s %14s %7s %11s   %s\n", "target", "req/s", "p50 ms", "p99 ms", "sidecar cores", "sidecar us/req", "errors", "other load", "req/s per round"
    n = split("none rules3", T, " ")
    for (i = 1; i <= n; i++) {
      t = T[i]; if (!(t in rps)) continue
      R[t] = median(rps[t]); P[t] = median(p50[t]); Q[t] = median(p99[t]); U[t] = median(us[t])
      printf "%-8s %10.0f %9.3f %9.3f %13.2f %14.1f %7d %11.2f  %s\n", t, R[t], P[t] / 1000, Q[t] / 1000,
        median(cores[t]), U[t], err[t], median(other[t]), rps[t]
    }
    print ""
    print "ratio of medians, rules3 / none:   req/s     p50     p99   sidecar CPU/req"
    ratio = R["rules3"] / R["none"]
    printf "                                  %7.3f %7.2f %7.2f %9.2f   (target req/s >= %.2f: %s)\n", ratio,
      P["rules3"] / P["none"], Q["rules3"] / Q["none"], (U["none"] > 0 ? U["rules3"] / U["none"] : 0), target,
      (ratio >= target ? "met" : "MISSED")
    pr = ""
    for (k = 1; (("rules3", k) in by_round) && (("none", k) in by_round); k++)
      pr = pr " " sprintf("%.3f", by_round["rules3", k] / by_round["none", k])
    if (pr != "") printf "per-round ratios (%s):%s; their median %.3f\n", mode == "paired" ? "simultaneous runs" : "runs adjacent in time", pr, median(pr)
    print ""
    print "sidecar us/req: CPU time of the sidecar process per answered request (its only core is"
    print "CPU 1); other load: cores used by processes outside the benchmark (above ~0.1: disturbed)."
  }' "$ROWS"
if [[ "$CALLGRIND" == 1 ]]; then
  echo
  awk -v n="${IR_PER_REQ[none]}" -v r="${IR_PER_REQ[rules3]}" 'BEGIN {
    printf "callgrind, sidecar instructions per request (user space): none %d, rules3 %d: +%d (%.3fx)\n", n, r, r - n, r / n }'
fi
echo

finish "no non-2xx responses, no socket errors, every request decided by the three rules"
