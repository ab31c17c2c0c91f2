# shellcheck shell=bash
# Suite `default` of scripts/bench.sh (sourced by it): the sidecar as a forwarding hop against
# the fixture directly and two reference proxies, all in one run, the same echo tools/call:
#   direct            the fixture itself: the ceiling of the load side
#   sidecar           mcp-sidecar, no policies (breaker off, no auth, no rate limits; access log on)
#   sidecar-policies  mcp-sidecar with JWT auth (ES256, fixtures/keys, token cached), three
#                     rate-limit rules that match every call and never refuse, and the breaker on
#   haproxy           HAProxy, one thread, keep-alive + `http-reuse always` (haproxy.cfg.in)
#   nginx             nginx, one worker, HTTP/1.1 keep-alive upstream, proxy_buffering off
#                     (nginx.conf.in)
#   (opt-in: haproxy-eq, HAProxy adding the sidecar's headers and an access-log line; and
#   sidecar-nolog, the sidecar with its access log off: the same-work pairs of earlier runs)
# It measures, in this order:
#   1. closed-loop throughput: mcp-load --concurrency CONNECTIONS for DURATION per target, ROUNDS
#      interleaved rounds in rotating order (a warm-up each first); medians, and the median of
#      the per-round ratios (each proxy / direct; sidecar / haproxy and / nginx), with each
#      proxy's CPU per request (/proc/PID/stat); CPU 0: mcp-load + fixture, CPU 1: the proxy.
#   2. added latency at fixed rates: mcp-load --rate R (open loop, latency from each request's
#      intended start) for LAT_DURATION per target and rate, ROUNDS rounds; p50/p99 of each
#      proxy minus direct's in the same round (median over rounds). mcp-load spins before each
#      send, so here it has CPU 0 alone and the fixture joins the proxy on CPU 1.
#   3. the `sidecar`'s RSS (VmRSS) idle at start, idle after the load, and with STREAMS
#      standalone SSE streams held open through it (mcp-load --streams).
#   4. CALLGRIND=1: user-space instructions per request of each proxy under callgrind.
# Every measured run must have no error (mcp-load's report) and every proxied request must have
# reached the fixture (its /stats); a run during which other processes used more than
# DISTURBED_THRESHOLD cores is discarded and repeated (at most RETRIES times).
#
# Environment (all optional; see `scripts/bench.sh --help` for the shared ones):
#   TARGETS="direct sidecar sidecar-policies haproxy nginx"   a subset, or more (haproxy-eq,
#                      sidecar-nolog); direct is needed for the ratios and added latency
#   CONNECTIONS=32  DURATION=10s  WARMUP=3s  ROUNDS=3    the closed-loop runs
#   RATES="1000 5000"  LAT_DURATION=10s                 the fixed-rate runs ("" skips them)
#   STREAMS=10000  STREAM_HOLD=20s    streams held open for the RSS figure (0 skips it); clamped
#                      to what the open-files limit allows the sidecar (two sockets a stream)
#   SIDECAR_RUST_LOG=info   the sidecars' RUST_LOG (info: one access-log line per request)
#   DISTURBED_THRESHOLD=0.15  RETRIES=3   RESULTS_TSV=path (every run as TSV)
#   CALLGRIND=1  CG_SECS=10   instructions per request (mcp-load -c4 for CG_SECS per proxy)
# External targets (no local servers, no CPU or RSS figures): TARGET_URL=https://... and
# optionally BASELINE_URL=... (say the backend behind it) measure those two in the same rounds,
# rates and report; BEARER_ENV=VAR (the name of a variable holding a token) and CA_FILE=path
# are passed to mcp-load.
# Sourced after common.sh, which reads the variables it sets (SC2034 cannot see across files).
# shellcheck disable=SC2034,SC2153

CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
ROUNDS="${ROUNDS:-3}"
RATES="${RATES-1000 5000}"
LAT_DURATION="${LAT_DURATION:-10s}"
STREAMS="${STREAMS:-10000}"
STREAM_HOLD="${STREAM_HOLD:-20s}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
RESULTS_TSV="${RESULTS_TSV:-}"
CALLGRIND="${CALLGRIND:-0}"
CG_SECS="${CG_SECS:-10}"
TARGET_URL="${TARGET_URL:-}"
BASELINE_URL="${BASELINE_URL:-}"
BEARER_ENV="${BEARER_ENV:-}"
CA_FILE="${CA_FILE:-}"
ALL_TARGETS="direct sidecar sidecar-policies haproxy nginx haproxy-eq sidecar-nolog"
if [[ -n "$TARGET_URL" ]]; then
  EXTERNAL=1
  TARGETS="${BASELINE_URL:+baseline }target"
elif [[ -n "$BASELINE_URL" ]]; then
  die "BASELINE_URL needs TARGET_URL (the deployment measured against it)"
fi
read -ra TARGETS <<<"${TARGETS:-direct sidecar sidecar-policies haproxy nginx}"

for v in CONNECTIONS ROUNDS; do require_uint "$v" 1; done
for v in RETRIES STREAMS CG_SECS; do require_uint "$v" 0; done
for v in DURATION LAT_DURATION STREAM_HOLD; do require_duration "$v"; done
[[ "$WARMUP" == 0 ]] || require_duration WARMUP
for r in $RATES; do [[ "$r" =~ ^[0-9]+$ && "$r" -gt 0 ]] || die "RATES must be positive integers (got '$r')"; done
((${#TARGETS[@]} > 0)) || die "TARGETS is empty (choose from: $ALL_TARGETS)"
if ((!EXTERNAL)); then
  for t in "${TARGETS[@]}"; do
    [[ " $ALL_TARGETS " == *" $t "* ]] || die "unknown target '$t' in TARGETS (choose from: $ALL_TARGETS)"
  done
fi
measured() { [[ " ${TARGETS[*]} " == *" $1 "* ]]; }
BASE=direct; ((EXTERNAL)) && BASE=baseline

# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------
tools=(curl jq taskset ss)
if ((!EXTERNAL)); then
  { measured haproxy || measured haproxy-eq; } && tools+=(haproxy)
  measured nginx && tools+=(nginx)
fi
[[ "$CALLGRIND" == 1 ]] && tools+=(callgrind_control)
install_missing "${tools[@]}"
build_binaries
raise_nofile
pin_layout
bench_workdir

declare -A URL PID
LOAD_AUTH=()
if ((EXTERNAL)); then
  URL[target]="$TARGET_URL"
  [[ -n "$BASELINE_URL" ]] && URL[baseline]="$BASELINE_URL"
  [[ -n "$BEARER_ENV" ]] && { [[ -n "${!BEARER_ENV:-}" ]] || die "BEARER_ENV=$BEARER_ENV: that variable is empty"; LOAD_AUTH+=(--bearer-env "$BEARER_ENV"); }
  [[ -n "$CA_FILE" ]] && LOAD_AUTH+=(--ca-file "$CA_FILE")
  STREAMS=0
  [[ "$CALLGRIND" == 1 ]] && die "CALLGRIND=1 needs local servers (unset TARGET_URL)"
else
  start_fixture
  URL[direct]="$FIXTURE_URL"
  # The streams of the RSS figure: two sockets each in the sidecar, and some to spare.
  max_streams=$(( (NOFILE - 200) / 2 ))
  if ((STREAMS > max_streams)); then
    log "open-files limit $NOFILE (ulimit -Hn): $STREAMS streams need $((2 * STREAMS + 200)) in the sidecar; holding $max_streams"
    STREAMS=$max_streams
  fi
  # The sidecar caps standalone streams at 1,024 by default ([limits] max_streams); the RSS
  # figure needs STREAMS of them, so the cap goes up (it does not touch the POST path).
  STREAM_LIMITS=$(printf '[limits]\nmax_streams = %d' "$((STREAMS + 100))")
  NO_BREAKER=$'[upstream.breaker]\nenabled = false'
  for t in sidecar sidecar-nolog sidecar-policies; do
    measured "$t" || continue
    port=$(free_port); admin=$(free_port)
    URL[$t]="http://127.0.0.1:$port/mcp"
    case "$t" in
      sidecar | sidecar-nolog) UPSTREAM_EXTRA="$NO_BREAKER" sidecar_config "$WORK/$t.toml" "$port" "$admin" "$STREAM_LIMITS" ;;
      sidecar-policies)
        UPSTREAM_EXTRA="$AUTH_RULE"$'\n[upstream.breaker]\nenabled = true' \
          sidecar_config "$WORK/$t.toml" "$port" "$admin" "$(auth_toml "http://127.0.0.1:$port" ES256)"$'\n'"$LIMITS_TOML"
        BENCH_TOKEN=$(mint_token ES256 "${URL[$t]}")
        export BENCH_TOKEN ;;
    esac
    rust_log="$SIDECAR_RUST_LOG"; [[ "$t" == sidecar-nolog ]] && rust_log=warn
    start_sidecar "$t" "$WORK/$t.toml" "$rust_log"
    PID[$t]=$STARTED_PID
  done
  if measured sidecar-policies; then
    [[ "$(post_code "${URL[sidecar-policies]}")" == 401 ]] || die "sidecar-policies answers without a token: auth is not on"
    post_ok "${URL[sidecar-policies]}" "$BENCH_TOKEN" || die "sidecar-policies refuses the minted token"
  fi
  for t in haproxy haproxy-eq; do
    measured "$t" || continue
    port=$(free_port); URL[$t]="http://127.0.0.1:$port/mcp"
    extra=""; [[ "$t" == haproxy-eq ]] && extra="$ROOT/scripts/bench/haproxy-eq.frontend"
    start_haproxy "$t" "$port" "$extra"
    PID[$t]=$STARTED_PID
  done
  if measured nginx; then
    port=$(free_port); URL[nginx]="http://127.0.0.1:$port/mcp"
    start_nginx nginx "$port"
    PID[nginx]=$NGINX_WORKER_PID
  fi
  measured sidecar && RSS_START=$(rss_kib "${PID[sidecar]}")
fi
auth_of() { # auth_of TARGET: mcp-load's credential flags for TARGET
  AUTH=("${LOAD_AUTH[@]}")
  [[ "$1" == sidecar-policies ]] && AUTH+=(--bearer-env BENCH_TOKEN)
  return 0
}

rows_init
step "closed loop: mcp-load --concurrency $CONNECTIONS, $DURATION per run, $ROUNDS round(s); pinning: mcp-load ${LOAD_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, proxy ${PROXY_CPUS:-any}"
if [[ "$WARMUP" != 0 ]]; then
  for t in "${TARGETS[@]}"; do run_one warmup "$t" 0 --concurrency "$CONNECTIONS" --duration "$WARMUP"; done
fi
rounds closed --concurrency "$CONNECTIONS" --duration "$DURATION"

if [[ -n "$RATES" ]]; then
  # The open loop spins before each send: it gets CPU 0 alone, the fixture joins the proxy.
  LAT_FIXTURE_CPUS="$FIXTURE_CPUS"
  if ((!EXTERNAL)) && [[ "$PIN" == split && -n "$PROXY_CPUS" && -n "$FIXTURE_CPUS" ]]; then
    taskset -a -p -c "$PROXY_CPUS" "$FIXTURE_PID" >/dev/null || die "cannot re-pin the fixture"
    LAT_FIXTURE_CPUS="$PROXY_CPUS"
  fi
  for rate in $RATES; do
    step "fixed rate $rate/s: mcp-load --rate $rate, $LAT_DURATION per run (1 s warm-up), $ROUNDS round(s); fixture on ${LAT_FIXTURE_CPUS:-any}"
    rounds "rate-$rate" --rate "$rate" --duration "$LAT_DURATION" --warmup 1s
  done
fi

# The sidecar's resident memory: idle, then with STREAMS standalone SSE streams held open.
RSS_IDLE=""; RSS_STREAMS=""; STREAMS_OPEN=0; RSS_START="${RSS_START:-}"
if ((!EXTERNAL)) && measured sidecar; then
  RSS_IDLE=$(rss_kib "${PID[sidecar]}")
  if ((STREAMS > 0)); then
    step "holding $STREAMS SSE streams through the sidecar for $STREAM_HOLD (mcp-load --streams)"
    wait_quiet
    base_streams=$(fixture_stat get_streams_open)
    (pinned "$LOAD_CPUS" "$LOAD_BIN" run "${URL[sidecar]}" --streams "$STREAMS" --duration "$STREAM_HOLD" \
      --out "$WORK/streams.json") >"$WORK/streams.json.log" 2>&1 &
    streams_pid=$!; PIDS+=("$streams_pid")
    hold=$(secs_of "$STREAM_HOLD")
    for ((i = 0; i < hold * 10; i++)); do
      kill -0 "$streams_pid" 2>/dev/null || break
      STREAMS_OPEN=$(( $(fixture_stat get_streams_open) - base_streams ))
      ((STREAMS_OPEN >= STREAMS)) && break
      sleep 0.1
    done
    ((STREAMS_OPEN >= STREAMS)) || { cat "$WORK/streams.json.log" >&2; die "only $STREAMS_OPEN of $STREAMS streams reached the fixture"; }
    sleep 2 # the sidecar settles (buffers allocated, first keep-alives)
    RSS_STREAMS=$(rss_kib "${PID[sidecar]}")
    log "$STREAMS_OPEN streams open: sidecar RSS $RSS_STREAMS KiB (idle $RSS_IDLE KiB)"
    rc=0; wait "$streams_pid" || rc=$?
    ((rc == 0)) || { cat "$WORK/streams.json.log" >&2; die "mcp-load --streams failed (exit $rc)"; }
    streams_err=$(report_field "$WORK/streams.json" '.errors // 0')
    ((streams_err == 0)) || { log "the streams run had $streams_err error(s): $(jq -c .errors_by_kind "$WORK/streams.json")"; FAILED=1; }
  fi
fi

declare -A IR_PER_REQ
if [[ "$CALLGRIND" == 1 ]]; then
  for t in "${TARGETS[@]}"; do
    port=$(free_port); admin=$(free_port)
    case "$t" in
      haproxy | haproxy-eq)
        extra=""; [[ "$t" == haproxy-eq ]] && extra="$ROOT/scripts/bench/haproxy-eq.frontend"
        haproxy_config "$WORK/cg-$t.cfg" "$port" "$extra"
        cg_count "$t" "$port" haproxy -db -f "$WORK/cg-$t.cfg" ;;
      nginx)
        nginx_config "$WORK/cg-nginx.conf" "$port" "$WORK/cg-nginx"
        # One process: callgrind follows no fork (the master would be counted, not the worker).
        cg_count nginx "$port" nginx -p "$WORK/cg-nginx" -c "$WORK/cg-nginx.conf" -g 'master_process off;' ;;
      sidecar | sidecar-nolog)
        rust_log="$SIDECAR_RUST_LOG"; [[ "$t" == sidecar-nolog ]] && rust_log=warn
        UPSTREAM_EXTRA="$NO_BREAKER" sidecar_config "$WORK/cg-$t.toml" "$port" "$admin"
        RUST_LOG="$rust_log" cg_count "$t" "$port" "$SIDECAR_BIN" run --config "$WORK/cg-$t.toml" --worker-threads 1 ;;
      sidecar-policies)
        UPSTREAM_EXTRA="$AUTH_RULE" sidecar_config "$WORK/cg-$t.toml" "$port" "$admin" \
          "$(auth_toml "http://127.0.0.1:$port" ES256)"$'\n'"$LIMITS_TOML"
        CG_TOKEN=$(mint_token ES256 "http://127.0.0.1:$port/mcp") RUST_LOG="$SIDECAR_RUST_LOG" \
          cg_count "$t" "$port" "$SIDECAR_BIN" run --config "$WORK/cg-$t.toml" --worker-threads 1 ;;
    esac
  done
fi
[[ -n "$RESULTS_TSV" ]] && { echo "$ROWS_HEADER"; cat "$ROWS"; } >"$RESULTS_TSV"

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
STEP="the report"
echo
report_header "mcp-sidecar benchmark (scripts/bench.sh)"
where="pinning: mcp-load ${LOAD_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, proxy ${PROXY_CPUS:-any}; sidecars --worker-threads 1, RUST_LOG=$SIDECAR_RUST_LOG"
((EXTERNAL)) && where="mcp-load on CPUs ${LOAD_CPUS:-any}; external targets"
echo "mcp-load: closed loop --concurrency $CONNECTIONS for $DURATION (warm-up $WARMUP), fixed rates ${RATES:-none} for $LAT_DURATION; $ROUNDS round(s); $where"
if ((!EXTERNAL)); then
  versions="$("$LOAD_BIN" --version)"
  # awk reads all of haproxy's output: `head` would exit first and SIGPIPE fail the pipeline.
  measured haproxy && versions+=", $(haproxy -v | awk 'NR == 1 { print $1, $2, $3 }')"
  measured nginx && versions+=", $(nginx -v 2>&1 | sed 's/^nginx version: //')"
  echo "$versions"
else
  echo "targets: ${BASELINE_URL:+baseline $BASELINE_URL, }target $TARGET_URL"
fi
echo
echo "Closed-loop throughput (mcp-load --concurrency $CONNECTIONS; medians over the rounds)"
pairs=""
for t in "${TARGETS[@]}"; do [[ "$t" != "$BASE" ]] && pairs+=" $t|$BASE"; done
pairs+=" sidecar|haproxy sidecar|nginx sidecar-policies|sidecar sidecar-policies|haproxy sidecar-policies|nginx sidecar|haproxy-eq sidecar-nolog|haproxy"
throughput_report closed "$pairs"
awk -F'\t' -v rounds="$ROUNDS" -v order="${TARGETS[*]}" -v base="$BASE" -v rates="$RATES" "$AWK_MEDIAN"'
  $1 ~ /^rate-/ {
    r = substr($1, 6); l50[r, $2, $3] = $5; l99[r, $2, $3] = $7
    a50[r, $2] = a50[r, $2] " " $5; a99[r, $2] = a99[r, $2] " " $7; ach[r, $2] = ach[r, $2] " " $4
  }
  END {
    n = split(order, T, " ")
    nr = split(rates, RT, " ")
    for (j = 1; j <= nr; j++) {
      r = RT[j]
      print ""
      printf "Fixed rate %d req/s (open loop): latency ms, medians over the rounds; added = target minus %s in the same round\n", r, base
      printf "%-17s %10s %8s %8s %12s %12s\n", "target", "achieved/s", "p50", "p99", "added p50", "added p99"
      for (i = 1; i <= n; i++) {
        t = T[i]; if (!((r, t) in a50)) continue
        d50 = ""; d99 = ""
        for (k = 1; k <= rounds; k++) if ((r, t, k) in l50 && (r, base, k) in l50) {
          d50 = d50 " " (l50[r, t, k] - l50[r, base, k]); d99 = d99 " " (l99[r, t, k] - l99[r, base, k])
        }
        printf "%-17s %10.0f %8.3f %8.3f %12s %12s\n", t, median(ach[r, t]), median(a50[r, t]), median(a99[r, t]),
          t == base || d50 == "" ? "-" : sprintf("%+.3f", median(d50)), t == base || d99 == "" ? "-" : sprintf("%+.3f", median(d99))
      }
    }
    print ""
    print "proxy cores: CPU the proxy process used (1.00 = one core); proxy us/req: its CPU time per answered"
    print "request; other load: cores used by processes outside the benchmark during the run (above ~0.1"
    print "the figures are disturbed). Latency at a fixed rate counts from each request'"'"'s intended start."
  }' "$ROWS"
if [[ -n "$RSS_IDLE" ]]; then
  echo
  line="sidecar RSS (VmRSS): $RSS_START KiB at start, $RSS_IDLE KiB idle after the load"
  if [[ -n "$RSS_STREAMS" ]]; then
    line+=", $RSS_STREAMS KiB with $STREAMS_OPEN open SSE streams ($(awk -v a="$RSS_STREAMS" -v b="$RSS_IDLE" -v n="$STREAMS_OPEN" 'BEGIN { printf "%.1f", (a - b) / n }') KiB per stream)"
  fi
  echo "$line"
fi
if [[ "$CALLGRIND" == 1 ]]; then
  line="callgrind, user-space instructions per request:"
  for t in "${TARGETS[@]}"; do [[ -n "${IR_PER_REQ[$t]:-}" ]] && line+=" $t ${IR_PER_REQ[$t]},"; done
  echo "${line%,}"
  for pair in sidecar:haproxy sidecar:nginx sidecar-policies:sidecar sidecar:haproxy-eq sidecar-nolog:haproxy; do
    a=${pair%%:*}; b=${pair##*:}
    [[ -n "${IR_PER_REQ[$a]:-}" && -n "${IR_PER_REQ[$b]:-}" ]] || continue
    awk -v a="$a" -v b="$b" -v x="${IR_PER_REQ[$a]}" -v y="${IR_PER_REQ[$b]}" 'BEGIN { printf "  %s / %s: %.2fx\n", a, b, x / y }'
  done
fi
echo
if ((EXTERNAL)); then finish "no errors in any measured run"; else finish "no errors in any measured run; every proxied request reached the fixture"; fi
