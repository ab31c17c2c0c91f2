#!/usr/bin/env bash
# Throughput/latency benchmark: the mock MCP server (mcp-fixture) served
#   direct          directly;
#   haproxy         through HAProxy (1 thread) forwarding as it is, no logging;
#   haproxy-eq      through HAProxy (1 thread) doing what the sidecar does by default: the
#                   X-Forwarded-For/-Proto fields added, an X-Request-Id generated and returned,
#                   one access-log line per request (`log stdout`, to a file);
#   sidecar         through mcp-sidecar (--worker-threads 1), default config (access log on);
#   sidecar-nolog   the same with the access log off (RUST_LOG=warn): HAProxy's default;
# loaded by wrk with the same MCP `tools/call` (echo) POST, connection count and duration. The
# pairs that do the same work are sidecar-nolog / haproxy and sidecar / haproxy-eq; the report
# gives those ratios and, for reference, sidecar / haproxy (the default sidecar logs, HAProxy
# does not).
#
# One run does everything: installs wrk/haproxy/curl via apt if missing, builds the production
# binaries, picks free loopback ports, starts the three servers, polls readiness, warms each
# target up, runs ROUNDS interleaved rounds, prints a table (medians), the ratios of the medians
# and the median of the per-round ratios (the targets of one round run back to back, so the
# machine's drift between minutes mostly cancels in them), and cleans
# every process it started up on exit. Exits non-zero if any measured or warm-up run saw a non-2xx
# answer (wrk counts status >= 400), a socket error (connect/read/write/timeout), a wrk failure,
# or a proxy that answered requests without forwarding them (checked against the fixture's /stats).
#
# Environment (all optional):
#   DURATION=10s       wrk duration of each measured run
#   CONNECTIONS=32     wrk connections (-c), the same for every target
#   TARGETS="direct haproxy haproxy-eq sidecar sidecar-nolog"   the targets to measure (a
#                      subset skips the others; the ratios of pairs left out are not printed)
#   WRK_THREADS=1      wrk threads (-t)
#   WARMUP=3s          warm-up run per target before the measured rounds (0 to skip)
#   ROUNDS=3           measured rounds; each round runs every target once, in a rotating order,
#                      and the table shows the per-target median (one noisy run cannot carry it)
#   PIN=split          CPU pinning layout, see below; PIN=none runs everything unpinned
#   WRK_CPUS / FIXTURE_CPUS / PROXY_CPUS   taskset CPU lists overriding the layout's defaults
#   SIDECAR_RUST_LOG=info   RUST_LOG for the `sidecar` target (info = its default, one access-log
#                      line per request, written to a file); `sidecar-nolog` always runs with warn
#   RESULTS_TSV=path   also write every run (warm-ups included) as TSV to this file
#   QUIET_MAX_WAIT=120 before each run, wait up to this many seconds for the machine to be quiet
#                      (other processes using < QUIET_THRESHOLD cores over 1 s); 0 disables
#   QUIET_THRESHOLD=0.10
#   DISTURBED_THRESHOLD=0.15  a measured run during which other processes used more CPU than this
#   RETRIES=3          (in cores) is discarded and repeated, at most RETRIES times per round
#   CALLGRIND=1        also count the user-space instructions per request of HAProxy and the
#                      sidecar under valgrind's callgrind (fresh processes, wrk -c4 for CG_SECS,
#                      counted only while wrk runs): a figure other load on the machine cannot
#                      move, unlike req/s. The kernel's share (the sockets) is left out.
#   CG_SECS=10         seconds of load per proxy under callgrind
#   PROFILE=production cargo profile of the binaries (`production`: fat LTO, what to deploy;
#                      `release` measures the quicker-to-build profile)
#   SKIP_BUILD=1       use the existing target/$PROFILE binaries
#   KEEP_WORKDIR=1     keep the temporary directory (configs, logs, raw wrk output)
#
# CPU pinning (PIN=split, the default, on a machine with >= 2 CPUs):
#   CPU 0: wrk and the fixture (the load side: identical for all three targets)
#   CPU 1: the proxy under test, alone (HAProxy's one thread / the sidecar's one worker)
# Each proxy gets one whole core it does not share with the load generator or the backend, which
# is the comparison asked for ("one worker thread each") and mirrors a sidecar with a 1-CPU limit.
# The load side is the same in all three runs, so the `direct` run shows the most the load core
# can push: a proxy reaching that figure is not the bottleneck, and the per-request proxy CPU
# column (from /proc/PID/stat) tells the two proxies apart even then. The alternative (wrk on one
# core, fixture + proxy on the other) makes the proxy share its core with the backend and measures
# their sum, diluting the difference between proxies; unpinned, the scheduler moves the four
# processes across two cores differently on each run and the spread between runs grows.
set -euo pipefail

# No arguments: everything is set through the environment (above). --help prints that header.
if (($# > 0)); then
  case "$1" in
    -h | --help) sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh takes no arguments (got '$1'); it is configured by environment variables, see --help" >&2; exit 2 ;;
  esac
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-3s}"
ROUNDS="${ROUNDS:-3}"
PIN="${PIN:-split}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
RESULTS_TSV="${RESULTS_TSV:-}"
SKIP_BUILD="${SKIP_BUILD:-0}"
PROFILE="${PROFILE:-production}"
QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-120}"
QUIET_THRESHOLD="${QUIET_THRESHOLD:-0.10}"
DISTURBED_THRESHOLD="${DISTURBED_THRESHOLD:-0.15}"
RETRIES="${RETRIES:-3}"
KEEP_WORKDIR="${KEEP_WORKDIR:-0}"
CALLGRIND="${CALLGRIND:-0}"
CG_SECS="${CG_SECS:-10}"

BENCH_NAME=bench
# shellcheck source-path=SCRIPTDIR source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

HAPROXY_TEMPLATE="$ROOT/scripts/bench/haproxy.cfg.in"
HAPROXY_EQ_FRONTEND="$ROOT/scripts/bench/haproxy-eq.frontend"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURE_BIN="$TARGET_DIR/$PROFILE/mcp-fixture"
SIDECAR_BIN="$TARGET_DIR/$PROFILE/mcp-sidecar"
ALL_TARGETS="direct haproxy haproxy-eq sidecar sidecar-nolog"
read -ra TARGETS <<<"${TARGETS:-$ALL_TARGETS}"

require_uint CONNECTIONS 1
require_uint WRK_THREADS 1
require_uint ROUNDS 1
require_uint RETRIES 0
[[ "$(duration_secs "$DURATION")" =~ ^[0-9]+$ && "$(duration_secs "$DURATION")" -ge 1 ]] \
  || die "DURATION must look like 10s, 2m or 1h"
[[ "$WARMUP" == 0 || "$(duration_secs "$WARMUP")" =~ ^[0-9]+$ ]] || die "WARMUP must look like 3s or 0"
(( CONNECTIONS >= WRK_THREADS )) || die "CONNECTIONS must be >= WRK_THREADS (wrk needs a connection per thread)"
((${#TARGETS[@]} > 0)) || die "TARGETS is empty (choose from: $ALL_TARGETS)"
for t in "${TARGETS[@]}"; do
  [[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target '$t' in TARGETS (choose from: $ALL_TARGETS)"
done
measured() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }

# ---------------------------------------------------------------------------------------------
# Tools, binaries, pinning, processes (scripts/bench/common.sh)
# ---------------------------------------------------------------------------------------------
tools=(wrk haproxy curl taskset ss)
[[ "$CALLGRIND" == 1 ]] && tools+=(callgrind_control)
install_missing "${tools[@]}"

[[ "$SKIP_BUILD" != 1 ]] && build_binaries "$PROFILE"
[[ -x "$FIXTURE_BIN" && -x "$SIDECAR_BIN" ]] || die "$PROFILE binaries missing (run without SKIP_BUILD=1)"

pin_layout
bench_workdir

HAPROXY_PORT=$(free_port)
HAPROXY_EQ_PORT=$(free_port)
SIDECAR_PORT=$(free_port)
ADMIN_PORT=$(free_port)
SIDECAR_NOLOG_PORT=$(free_port)
NOLOG_ADMIN_PORT=$(free_port)
HAPROXY_URL="http://127.0.0.1:$HAPROXY_PORT/mcp"
HAPROXY_EQ_URL="http://127.0.0.1:$HAPROXY_EQ_PORT/mcp"
SIDECAR_URL="http://127.0.0.1:$SIDECAR_PORT/mcp"
SIDECAR_NOLOG_URL="http://127.0.0.1:$SIDECAR_NOLOG_PORT/mcp"

# One tokio worker per CPU the fixture may use: more workers than CPUs only add context switches
# on the load core (and how many depends on the proxy's timing, which would blur the comparison).
FIXTURE_WORKERS=$(nproc)
if [[ -n "$FIXTURE_CPUS" ]]; then FIXTURE_WORKERS=$(taskset -c "$FIXTURE_CPUS" nproc); fi
start_fixture

# haproxy_config OUT PORT [FRONTEND_EXTRA]: writes and checks a config listening on PORT in
# front of the fixture; FRONTEND_EXTRA, a file of frontend directives, goes into the frontend.
haproxy_config() {
  local out="$1" port="$2" extra="${3:-}" fill=(-e "/^@FRONTEND_EXTRA@$/d")
  [[ -n "$extra" ]] && fill=(-e "/^@FRONTEND_EXTRA@$/{r $extra" -e "d" -e "}")
  sed -e "s/@LISTEN@/127.0.0.1:$port/" -e "s/@BACKEND@/127.0.0.1:$FIXTURE_PORT/" "${fill[@]}" \
    "$HAPROXY_TEMPLATE" >"$out"
  haproxy -c -q -f "$out" || die "invalid haproxy config ($out)"
}
# start_haproxy NAME PORT URL [FRONTEND_EXTRA]: runs one on the proxy CPUs; its pid in STARTED_PID.
start_haproxy() {
  local name="$1" port="$2" url="$3"
  haproxy_config "$WORK/$name.cfg" "$port" "${4:-}"
  log "$name on :$port (cpus ${PROXY_CPUS:-any})"
  # O_APPEND (haproxy-eq's access log goes to stdout): truncated between runs like the sidecar's.
  pinned "$PROXY_CPUS" haproxy -db -f "$WORK/$name.cfg" >>"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$name" "$STARTED_PID" post_ok "$url"
}
HAPROXY_PID=""; HAPROXY_EQ_PID=""; SIDECAR_PID=""; SIDECAR_NOLOG_PID=""
if measured haproxy; then
  start_haproxy haproxy "$HAPROXY_PORT" "$HAPROXY_URL"
  HAPROXY_PID=$STARTED_PID
fi
if measured haproxy-eq; then
  start_haproxy haproxy-eq "$HAPROXY_EQ_PORT" "$HAPROXY_EQ_URL" "$HAPROXY_EQ_FRONTEND"
  HAPROXY_EQ_PID=$STARTED_PID
fi

# start_sidecar NAME PORT ADMIN_PORT RUST_LOG: one on the proxy CPUs; its pid in STARTED_PID.
start_sidecar() {
  local name="$1" port="$2" admin="$3" rust_log="$4"
  log "$name on :$port, admin :$admin (cpus ${PROXY_CPUS:-any}, RUST_LOG=$rust_log)"
  # O_APPEND so the log can be truncated between runs without a sparse, ever-growing file.
  RUST_LOG="$rust_log" pinned "$PROXY_CPUS" "$SIDECAR_BIN" run --upstream "$FIXTURE_URL" \
    --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --worker-threads 1 \
    >>"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  sidecar_ready() { get_ok "http://127.0.0.1:$admin/readyz" && post_ok "http://127.0.0.1:$port/mcp"; }
  wait_ready "$name" "$STARTED_PID" sidecar_ready
}
# rust_log_of NAME: the sidecar target's RUST_LOG (`sidecar-nolog`: no access log).
rust_log_of() { if [[ "$1" == sidecar-nolog ]]; then echo warn; else echo "$SIDECAR_RUST_LOG"; fi; }
if measured sidecar; then
  start_sidecar sidecar "$SIDECAR_PORT" "$ADMIN_PORT" "$(rust_log_of sidecar)"
  SIDECAR_PID=$STARTED_PID
fi
if measured sidecar-nolog; then
  start_sidecar sidecar-nolog "$SIDECAR_NOLOG_PORT" "$NOLOG_ADMIN_PORT" "$(rust_log_of sidecar-nolog)"
  SIDECAR_NOLOG_PID=$STARTED_PID
fi

# ---------------------------------------------------------------------------------------------
# Measurement
# ---------------------------------------------------------------------------------------------
TSV_HEADER="kind	target	round	rps	p50_us	p99_us	requests	errors	proxy_cores	proxy_us_per_req	fixture_cores	wrk_cores	other_cores	forwarded"
ROWS="$WORK/rows.tsv"
: >"$ROWS"

# run_one KIND TARGET ROUND DURATION: one wrk run; appends a row to $ROWS.
run_one() {
  local kind="$1" target="$2" round="$3" dur="$4" url proxy_pid="" out
  case "$target" in
    direct) url="$FIXTURE_URL" ;;
    haproxy) url="$HAPROXY_URL"; proxy_pid="$HAPROXY_PID" ;;
    haproxy-eq) url="$HAPROXY_EQ_URL"; proxy_pid="$HAPROXY_EQ_PID" ;;
    sidecar) url="$SIDECAR_URL"; proxy_pid="$SIDECAR_PID" ;;
    sidecar-nolog) url="$SIDECAR_NOLOG_URL"; proxy_pid="$SIDECAR_NOLOG_PID" ;;
  esac
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a server died (pid $pid); see $WORK"; done
  out="$WORK/wrk-$kind-$target-$round.txt"
  wait_quiet
  local served0 fx0 px0=0 busy0 kids0 served1 fx1 px1=0 busy1 kids1 rc=0
  served0=$(fixture_served); fx0=$(proc_ticks "$FIXTURE_PID")
  [[ -n "$proxy_pid" ]] && px0=$(proc_ticks "$proxy_pid")
  # `times` must run in this shell, not in a $(...) subshell, to see the reaped wrk's CPU time.
  busy0=$(system_busy_ticks); times >"$WORK/times0"
  run_wrk "$out" "$dur" "$url" || rc=$?
  times >"$WORK/times1"; busy1=$(system_busy_ticks)
  kids0=$(children_cpu_secs "$WORK/times0"); kids1=$(children_cpu_secs "$WORK/times1")
  fx1=$(proc_ticks "$FIXTURE_PID")
  [[ -n "$proxy_pid" ]] && px1=$(proc_ticks "$proxy_pid")
  served1=$(fixture_served)
  case "$target" in
    sidecar | sidecar-nolog) keep_sidecar_problems "$target" ;;
    haproxy-eq) : >"$WORK/$target.log" ;;
  esac
  local line
  line=$(wrk_result "$out")
  if ((rc != 0)) || [[ -z "$line" ]]; then
    log "wrk failed against $target (exit $rc):"; cat "$out" >&2
    printf '%s\t%s\t%s\t0\t0\t0\t0\twrk-failed\t-\t-\t-\t-\t-\t-\n' "$kind" "$target" "$round" >>"$ROWS"
    FAILED=1
    return 0
  fi
  awk -v kind="$kind" -v target="$target" -v round="$round" -v proxy="${proxy_pid:+1}" \
      -v fx="$((fx1 - fx0))" -v px="$((px1 - px0))" -v busy="$((busy1 - busy0))" \
      -v kids0="$kids0" -v kids1="$kids1" -v tck="$CLK_TCK" -v served="$((served1 - served0))" '
    {
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      secs = v["duration_us"] / 1e6
      errs = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_timeout"] + v["err_status"]
      wrk_s = kids1 - kids0
      other = (busy / tck - fx / tck - px / tck - wrk_s) / secs
      if (other < 0) other = 0
      pc = proxy ? sprintf("%.2f", px / tck / secs) : "-"
      pu = proxy && v["requests"] > 0 ? sprintf("%.1f", px / tck * 1e6 / v["requests"]) : "-"
      fwd = served >= v["requests"] ? "ok" : "MISSING"
      printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%s\t%s\t%.2f\t%.2f\t%.2f\t%s\n", kind, target, round,
        v["rps"], v["p50_us"], v["p99_us"], v["requests"], errs, pc, pu, fx / tck / secs, wrk_s / secs, other, fwd
    }' <<<"$line" >>"$ROWS"
  local last
  last=$(tail -n 1 "$ROWS")
  IFS=$'\t' read -r _k _t _r rps p50 p99 _reqs errs pcores pus _fx _wrk other fwd <<<"$last"
  log "$(printf '%-7s %-7s %-2s %8s req/s  p50 %6s us  p99 %6s us  errors %s  proxy %s cores, %s us/req  other load %s cores  forwarded %s' \
    "$kind" "$target" "$round" "$rps" "$p50" "$p99" "$errs" "$pcores" "$pus" "$other" "$fwd")"
  if ((errs > 0)); then
    log "$target: $errs error(s) (non-2xx or socket); wrk output:"; cat "$out" >&2
    FAILED=1
  fi
  if [[ "$fwd" != ok ]]; then
    log "$target: the fixture served fewer requests than wrk counted answers: the proxy answered some itself"
    FAILED=1
  fi
}

log "wrk: -t$WRK_THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, proxy ${PROXY_CPUS:-any}"
if [[ "$WARMUP" != 0 ]]; then
  for t in "${TARGETS[@]}"; do run_one warmup "$t" 0 "$WARMUP"; done
fi
is_disturbed() { # the last row's `other load` is above DISTURBED_THRESHOLD
  tail -n 1 "$ROWS" | awk -F'\t' -v th="$DISTURBED_THRESHOLD" '{ exit !($13 + 0 > th + 0) }'
}
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#TARGETS[@]}; k++)); do
    t="${TARGETS[$(( (k + r - 1) % ${#TARGETS[@]} ))]}"
    for ((try = 0; ; try++)); do
      run_one measure "$t" "$r" "$DURATION"
      is_disturbed || break
      if ((try >= RETRIES)); then
        log "$t round $r: still disturbed after $RETRIES retries; kept (see the other load column)"
        break
      fi
      log "$t round $r: other processes used more than $DISTURBED_THRESHOLD cores; discarding and repeating"
      # Relabel the row: kept in RESULTS_TSV, left out of the medians.
      sed -i '$ s/^measure\t/discarded\t/' "$ROWS"
    done
  done
done

if [[ -n "$RESULTS_TSV" ]]; then
  { echo "$TSV_HEADER"; cat "$ROWS"; } >"$RESULTS_TSV"
fi

# Instructions per request under callgrind (cg_count): a fresh proxy each.
declare -A IR_PER_REQ
# The four proxy configurations, whichever of them TARGETS has.
if [[ "$CALLGRIND" == 1 ]]; then
  if measured haproxy; then
    port=$(free_port)
    haproxy_config "$WORK/haproxy-cg.cfg" "$port"
    cg_count haproxy "$port" haproxy -db -f "$WORK/haproxy-cg.cfg"
  fi
  if measured haproxy-eq; then
    port=$(free_port)
    haproxy_config "$WORK/haproxy-eq-cg.cfg" "$port" "$HAPROXY_EQ_FRONTEND"
    cg_count haproxy-eq "$port" haproxy -db -f "$WORK/haproxy-eq-cg.cfg"
  fi
  for name in sidecar sidecar-nolog; do
    measured "$name" || continue
    port=$(free_port); admin=$(free_port)
    RUST_LOG="$(rust_log_of "$name")" cg_count "$name" "$port" "$SIDECAR_BIN" run --upstream "$FIXTURE_URL" \
      --listen "127.0.0.1:$port" --admin "127.0.0.1:$admin" --worker-threads 1
  done
fi

# ---------------------------------------------------------------------------------------------
# Report: per-target medians over the measured rounds, then the ratios of the medians.
# ---------------------------------------------------------------------------------------------
echo
report_header "mcp-sidecar benchmark" "$PROFILE"
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, warm-up $WARMUP, $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, proxy ${PROXY_CPUS:-any}; sidecar RUST_LOG=$SIDECAR_RUST_LOG"
echo "$(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(haproxy -v | head -n 1 | cut -d' ' -f1-3)"
echo
awk -F'\t' -v rounds="$ROUNDS" "$AWK_MEDIAN"'
  $1 == "discarded" { discarded++ }
  $1 == "measure" {
    byround[$2, $3] = $4
    rps[$2] = rps[$2] " " $4; p50[$2] = p50[$2] " " $5; p99[$2] = p99[$2] " " $6
    err[$2] += $8; other[$2] = other[$2] " " $13
    if ($9 != "-") { pc[$2] = pc[$2] " " $9; pu[$2] = pu[$2] " " $10 }
  }
  END {
    printf "%-13s %10s %9s %9s %11s %12s %7s %11s   %s\n", "target", "req/s", "p50 ms", "p99 ms", "proxy cores", "proxy us/req", "errors", "other load", "req/s per round"
    n = split("direct haproxy haproxy-eq sidecar sidecar-nolog", T, " ")
    for (i = 1; i <= n; i++) {
      t = T[i]; if (!(t in rps)) continue
      R[t] = median(rps[t]); P50[t] = median(p50[t]); P99[t] = median(p99[t])
      U[t] = t in pu ? median(pu[t]) : ""
      printf "%-13s %10.0f %9.3f %9.3f %11s %12s %7d %11.2f  %s\n", t, R[t], P50[t] / 1000, P99[t] / 1000,
        t in pc ? sprintf("%.2f", median(pc[t])) : "-", t in pu ? sprintf("%.1f", U[t]) : "-", err[t], median(other[t]), rps[t]
    }
    # The pairs, `a|b|what both do`, separated by `;` (so no `;` inside a description).
    np = split("sidecar-nolog|haproxy|neither logs, the sidecar still adds its headers;sidecar|haproxy-eq|the same work: headers added, an access-log line each;sidecar|haproxy|for reference: the sidecar logs and adds headers, HAProxy neither", P, ";")
    print ""
    print "ratios of medians                  req/s     p50     p99  proxy CPU/req   (what both do)"
    for (i = 1; i <= np; i++) {
      split(P[i], q, "|"); a = q[1]; b = q[2]
      if (!(a in R) || !(b in R) || R[b] == 0) continue
      printf "  %-13s / %-13s %7.3f %7.2f %7.2f %14s   (%s)\n", a, b, R[a] / R[b], P50[a] / P50[b], P99[a] / P99[b],
        (U[a] > 0 && U[b] > 0) ? sprintf("%.3f", U[a] / U[b]) : "-", q[3]
    }
    if ("direct" in R && R["direct"] > 0)
      for (i = 2; i <= n; i++) if (T[i] in R) printf "  %-13s / direct        %7.3f %7.2f %7.2f\n", T[i], R[T[i]] / R["direct"], P50[T[i]] / P50["direct"], P99[T[i]] / P99["direct"]
    print ""
    print "req/s, median of the per-round ratios (rounds where both ran)"
    for (i = 1; i <= np; i++) {
      split(P[i], q, "|"); a = q[1]; b = q[2]
      list = ""; wins = 0; m = 0
      for (r = 1; r <= rounds; r++)
        if ((b, r) in byround && (a, r) in byround && byround[b, r] > 0) {
          x = byround[a, r] / byround[b, r]; list = list " " sprintf("%.3f", x); m++
          if (x >= 1) wins++
        }
      if (m) printf "  %-13s / %-13s %7.3f   (%s ahead in %d of %d rounds:%s)\n", a, b, median(list), a, wins, m, list
    }
    print ""
    print "req/s, p50, p99: medians over the rounds. proxy cores: CPU the proxy process used (1.00 = one"
    print "core busy); proxy us/req: its CPU time per answered request. other load: CPU used by processes"
    print "outside the benchmark during the run (cores); above ~0.1 the figures are disturbed."
    if (discarded) printf "%d disturbed run(s) were discarded and repeated (RESULTS_TSV keeps them).\n", discarded
  }' "$ROWS"
if [[ "$CALLGRIND" == 1 ]]; then
  line="callgrind, user-space instructions per request:"
  for name in haproxy haproxy-eq sidecar sidecar-nolog; do
    [[ -n "${IR_PER_REQ[$name]:-}" ]] && line+=" $name ${IR_PER_REQ[$name]},"
  done
  echo "${line%,}"
  for pair in sidecar-nolog:haproxy sidecar:haproxy-eq sidecar:haproxy; do
    a=${pair%%:*}; b=${pair##*:}
    [[ -n "${IR_PER_REQ[$a]:-}" && -n "${IR_PER_REQ[$b]:-}" ]] || continue
    awk -v a="$a" -v b="$b" -v x="${IR_PER_REQ[$a]}" -v y="${IR_PER_REQ[$b]}" 'BEGIN { printf "  %s / %s: %.2fx\n", a, b, x / y }'
  done
fi
echo

finish "no non-2xx responses, no socket errors"
