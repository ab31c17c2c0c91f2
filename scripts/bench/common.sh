# shellcheck shell=bash
# Sourced: the variables it sets are read by the sourcing script, and those it reads are set
# there (SC2034, SC2153 cannot see across the two).
# shellcheck disable=SC2034,SC2153
# The functions the benchmark scripts share: sourced (never run) by scripts/bench.sh,
# scripts/bench-auth.sh, scripts/bench-breaker.sh and scripts/bench-limits.sh once they have read
# their environment. Sourcing defines functions and constants only; nothing starts until a
# script calls them. Each script keeps what is its own: its targets, configs, row format and
# report.
#
# What it provides:
#   log, die                  messages on stderr prefixed with [$BENCH_NAME]
#   duration_secs, require_uint   argument checks
#   install_missing CMD...    apt-installs the packages of missing commands
#   build_binaries PROFILE    cargo build of mcp-fixture and mcp-sidecar in that profile
#   pin_layout, pinned        the CPU layout (PIN=split|none) and running a command on CPUs
#   pin_load_alone            the layout for a spinning load generator: CPU 0 alone
#   bench_workdir             the temporary directory, the process list and the cleanup trap
#   free_port                 a free loopback port
#   post_code, post_ok, get_ok, wait_ready   HTTP probes and readiness polling
#   start_fixture             the mock MCP server as the backend
#   proc_ticks, system_busy_ticks, children_cpu_secs, fixture_served   CPU and request counters
#   wait_quiet                waiting for other processes on the machine to go quiet
#   run_wrk, wrk_result       one wrk run with scripts/bench/tools_call.lua, and its result line
#   keep_sidecar_problems     truncates a sidecar's log, keeping its warnings and errors
#   AWK_MEDIAN                an awk `median(list)` function to paste into report programs
#   report_header             the report's first two lines (title, commit, machine)
#   finish                    prints the sidecars' warnings and exits 1 if FAILED
#   cg_count                  instructions per request of a server under callgrind
#
# Variables it reads (set by the sourcing script before the calls that use them):
#   ROOT (repository root), BENCH_NAME (log prefix), KEEP_WORKDIR, PIN and
#   WRK_CPUS / FIXTURE_CPUS / PROXY_CPUS (overrides of the layout), FIXTURE_BIN, FIXTURE_WORKERS
#   (optional: the fixture's tokio workers), QUIET_MAX_WAIT, QUIET_THRESHOLD, WRK_THREADS,
#   CONNECTIONS, CG_SECS, and IR_PER_REQ (an associative array, for cg_count).
# Variables it sets: WORK, PIDS, FAILED (bench_workdir); NCPU, WRK_CPUS, FIXTURE_CPUS,
#   PROXY_CPUS (pin_layout); LOAD_CPUS, FIXTURE_CPUS, PROXY_CPUS (pin_load_alone); FIXTURE_PORT,
#   FIXTURE_URL, FIXTURE_PID (start_fixture); QUIET_LAST
#   (wait_quiet); CLK_TCK, LUA, BODY.

# The request every benchmark sends: one MCP `tools/call` of the fixture's `echo` tool.
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
LUA="$ROOT/scripts/bench/tools_call.lua"
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$BENCH_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Seconds in a wrk-style duration (10s, 1m, 1h; 500ms is not accepted by wrk either).
duration_secs() {
  local d="$1"
  case "$d" in
    *h) echo $(( ${d%h} * 3600 )) ;;
    *m) echo $(( ${d%m} * 60 )) ;;
    *s) echo "${d%s}" ;;
    *) echo "$d" ;;
  esac
}

# require_uint VAR MIN: dies unless the variable named VAR holds an integer >= MIN (0 or 1).
require_uint() {
  local what="a positive integer"
  (($2 == 0)) && what="a non-negative integer"
  [[ "${!1}" =~ ^[0-9]+$ && "${!1}" -ge $2 ]] || die "$1 must be $what"
}

# install_missing CMD...: installs (apt) the package of each command not on PATH; taskset comes
# with util-linux, ss with iproute2, callgrind_control with valgrind.
install_missing() {
  local missing=() cmd pkg
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    case "$cmd" in
      taskset) pkg=util-linux ;;
      ss) pkg=iproute2 ;;
      callgrind_control) pkg=valgrind ;;
      *) pkg=$cmd ;;
    esac
    missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]} and not root (no sudo)"
    sudo=(sudo)
  fi
  log "installing ${missing[*]} via apt"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build_binaries PROFILE: the fixture and the sidecar in that cargo profile (`release` is what
# `--release` builds).
build_binaries() {
  log "building $1 binaries"
  cargo build --profile "$1" --quiet -p mcp-fixtures -p mcp-sidecar --bins
}

# pin_layout: WRK_CPUS, FIXTURE_CPUS and PROXY_CPUS from PIN. split (on >= 2 CPUs): the load side
# (wrk and the fixture) on CPU 0, the proxy under test alone on CPU 1; none: unpinned. A variable
# already set in the environment (even empty) overrides the layout's value.
pin_layout() {
  NCPU=$(nproc)
  case "$PIN" in
    split)
      if ((NCPU >= 2)); then
        WRK_CPUS="${WRK_CPUS-0}"; FIXTURE_CPUS="${FIXTURE_CPUS-0}"; PROXY_CPUS="${PROXY_CPUS-1}"
      else
        log "only $NCPU CPU: running unpinned"
        WRK_CPUS="${WRK_CPUS-}"; FIXTURE_CPUS="${FIXTURE_CPUS-}"; PROXY_CPUS="${PROXY_CPUS-}"
      fi ;;
    none) WRK_CPUS="${WRK_CPUS-}"; FIXTURE_CPUS="${FIXTURE_CPUS-}"; PROXY_CPUS="${PROXY_CPUS-}" ;;
    *) die "PIN must be split or none" ;;
  esac
}

# pinned CPUS CMD...: runs CMD (exec'd, same pid) on CPUS, or unpinned when CPUS is empty.
pinned() {
  local cpus="$1"; shift
  if [[ -n "$cpus" ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

# pin_load_alone: LOAD_CPUS, FIXTURE_CPUS and PROXY_CPUS from PIN for a load generator that
# spins (breaker_load, job_load): split (on >= 2 CPUs): the generator alone on CPU 0, the
# servers on CPU 1; none: unpinned.
pin_load_alone() {
  LOAD_CPUS=""; FIXTURE_CPUS=""; PROXY_CPUS=""
  if [[ "$PIN" == split && $(nproc) -ge 2 ]]; then
    LOAD_CPUS=0; FIXTURE_CPUS=1; PROXY_CPUS=1
  elif [[ "$PIN" != none && "$PIN" != split ]]; then
    die "PIN must be split or none"
  fi
}

# bench_workdir: a fresh temporary directory in WORK, an empty PIDS and FAILED=0, and an exit
# trap that stops every process in PIDS (TERM, then KILL after 5 s) and removes WORK unless
# KEEP_WORKDIR=1 or the script failed.
bench_workdir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-$BENCH_NAME.XXXXXX")"
  PIDS=()
  FAILED=0
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
bench_cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP_WORKDIR" == 1 || $rc -ne 0 ]]; then
    log "logs and raw output kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}

# A free loopback TCP port: random in 20000-32767 (below Linux's default ephemeral range, so it
# cannot collide with the outgoing connections wrk and the proxies open), not listened on now, and
# not handed out before by this script.
USED_PORTS=" "
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12768))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if [[ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]]; then
      USED_PORTS+="$p "
      echo "$p"
      return 0
    fi
  done
  die "no free port found"
}

post_code() { # post_code URL [TOKEN]: HTTP status of one tools/call (with a bearer token)
  local auth=()
  [[ -n "${2:-}" ]] && auth=(-H "authorization: Bearer $2")
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST "${auth[@]}" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    --data "$BODY" "$1" 2>/dev/null || true
}
post_ok() { [[ "$(post_code "$@")" == 200 ]]; } # post_ok URL [TOKEN]: true on HTTP 200
get_ok() { # get_ok URL: true on HTTP 200
  [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true)" == 200 ]]
}

# wait_ready NAME PID CHECK ARGS...: polls CHECK ARGS every 0.1 s for at most 15 s; dies (with
# the tail of $WORK/NAME.log) if the process exits first or never gets ready.
wait_ready() {
  local name="$1" pid="$2" i; shift 2
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$WORK/$name.log" >&2 || true; die "$name exited during startup"; }
    if "$@"; then log "$name ready"; return 0; fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2 || true
  die "$name not ready after 15 s"
}

# start_fixture: the fixture (JSON answers, stateless) on a free port, on FIXTURE_CPUS, with
# FIXTURE_WORKERS tokio workers if set; waits until it answers a tools/call.
start_fixture() {
  FIXTURE_PORT=$(free_port)
  FIXTURE_URL="http://127.0.0.1:$FIXTURE_PORT/mcp"
  log "fixture on :$FIXTURE_PORT (cpus ${FIXTURE_CPUS:-any})"
  # The subshell becomes the fixture (pinned execs), so $! is the fixture's pid.
  (
    [[ -n "${FIXTURE_WORKERS:-}" ]] && export TOKIO_WORKER_THREADS="$FIXTURE_WORKERS"
    RUST_LOG=warn pinned "$FIXTURE_CPUS" "$FIXTURE_BIN" --listen "127.0.0.1:$FIXTURE_PORT" --mode json --stateless
  ) >"$WORK/fixture.log" 2>&1 &
  FIXTURE_PID=$!; PIDS+=("$FIXTURE_PID")
  wait_ready fixture "$FIXTURE_PID" post_ok "$FIXTURE_URL"
}

proc_ticks() { # proc_ticks PID: utime+stime of a whole process (all threads), in clock ticks
  local stat f
  stat=$(<"/proc/$1/stat")
  read -ra f <<<"${stat##*) }"  # fields from 3 (state) on; comm may contain spaces
  echo $(( f[11] + f[12] ))     # fields 14 and 15
}
system_busy_ticks() { # non-idle ticks of all CPUs
  local _cpu user nice sys _idle _iowait irq softirq steal _rest
  read -r _cpu user nice sys _idle _iowait irq softirq steal _rest </proc/stat
  echo $(( user + nice + sys + irq + softirq + steal ))
}
children_cpu_secs() { # children_cpu_secs FILE: user+sys seconds of reaped children, from `times`
  awk 'NR == 2 { n = split($0, a, /[ \t]+/); s = 0
    for (i = 1; i <= n; i++) { if (a[i] == "") continue; split(a[i], b, "m"); sub("s", "", b[2]); s += b[1] * 60 + b[2] }
    printf "%.3f\n", s }' "$1"
}
fixture_served() { # requests the fixture has answered (its /stats)
  curl -s --max-time 2 "http://127.0.0.1:$FIXTURE_PORT/stats" | grep -o '"http_requests_total":[0-9]*' | cut -d: -f2
}

# wait_quiet: on a shared machine (a build in another shell, CI), background CPU use distorts the
# figures. Samples 1 s of CPU use by everything but our (idle) servers and waits until it is below
# QUIET_THRESHOLD cores, for at most QUIET_MAX_WAIT seconds (0: does not wait); the last figure
# is left in QUIET_LAST.
QUIET_LAST=0
wait_quiet() {
  local waited=0 b0 b1 o0 o1 pid load
  ((QUIET_MAX_WAIT > 0)) || return 0
  while :; do
    o0=0; for pid in "${PIDS[@]}"; do o0=$((o0 + $(proc_ticks "$pid"))); done
    b0=$(system_busy_ticks); sleep 1; b1=$(system_busy_ticks)
    o1=0; for pid in "${PIDS[@]}"; do o1=$((o1 + $(proc_ticks "$pid"))); done
    load=$(awk -v d="$(( (b1 - b0) - (o1 - o0) ))" -v t="$CLK_TCK" 'BEGIN { x = d / t; if (x < 0) x = 0; printf "%.2f", x }')
    QUIET_LAST="$load"
    if awk -v l="$load" -v th="$QUIET_THRESHOLD" 'BEGIN { exit !(l < th) }'; then return 0; fi
    if ((waited >= QUIET_MAX_WAIT)); then
      log "machine still busy ($load cores used by other processes); measuring anyway"
      return 0
    fi
    ((waited == 0)) && log "waiting for other processes to quiet down ($load cores busy)"
    sleep 4; waited=$((waited + 5))
  done
}

# run_wrk OUT DURATION URL [WRK_ARGS...]: one wrk run (WRK_THREADS threads, CONNECTIONS
# connections, on WRK_CPUS) posting the tools/call of tools_call.lua; its output goes to OUT,
# its exit status is returned. Run it in this shell (or `&` and wait) so that `times` counts it.
run_wrk() {
  local out="$1" dur="$2" url="$3"; shift 3
  (pinned "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$dur" --latency "$@" -s "$LUA" "$url") >"$out" 2>&1
}
# wrk_result OUT: the `BENCH_RESULT key=value ...` line tools_call.lua prints (empty if none).
wrk_result() { grep '^BENCH_RESULT ' "$1" || true; }

# keep_sidecar_problems NAME: empties $WORK/NAME.log (an access log fills the disk otherwise),
# keeping its warnings and errors in $WORK/sidecar-problems.log for finish.
keep_sidecar_problems() {
  grep -E ' (WARN|ERROR) ' "$WORK/$1.log" >>"$WORK/sidecar-problems.log" || true
  : >"$WORK/$1.log"
}

# median(list): the median of a space-separated list of numbers, for awk report programs:
# awk "$AWK_MEDIAN"'...program...'.
AWK_MEDIAN='
  function median(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
'

# report_header TITLE [PROFILE]: "TITLE — time, commit (local changes noted)[, cargo profile]"
# and the machine.
report_header() {
  local rev
  if rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD -- proxy fixtures Cargo.toml Cargo.lock \
      || rev+=" + uncommitted changes in proxy/fixtures"
  else
    rev="? (not a git checkout)"
  fi
  echo "$1 — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $rev${2:+, cargo profile $2}"
  echo "machine: $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), kernel $(uname -r)"
}

# finish OK_MESSAGE: shows the first warnings/errors the sidecars logged, then exits 1 if FAILED
# (a check failed; said above), else logs OK_MESSAGE.
finish() {
  if [[ -s "$WORK/sidecar-problems.log" ]]; then
    log "the sidecar logged warnings/errors during the runs:"; head -n 5 "$WORK/sidecar-problems.log" >&2
  fi
  if ((FAILED)); then
    log "FAILED: at least one check failed (see above)"
    exit 1
  fi
  log "ok: $1"
}

# cg_count NAME PORT CMD...: runs CMD under callgrind (instrumentation off), waits until
# http://127.0.0.1:PORT/mcp answers a tools/call with 200, warms it up for 3 s, then counts the
# instructions of CG_SECS seconds of wrk -c4 load and sets IR_PER_REQ[NAME] to their number per
# answered request. Start-up and warm-up are not counted. User space only: the kernel's share
# (the sockets) is left out. Needs `declare -A IR_PER_REQ` in the caller.
cg_count() {
  local name="$1" port="$2" pid reqs ir i url; shift 2
  url="http://127.0.0.1:$port/mcp"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg-$name.out" "$@" \
    >"$WORK/cg-$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  for ((i = 0; i < 300; i++)); do
    post_ok "$url" && break
    kill -0 "$pid" 2>/dev/null || die "$name under callgrind exited; see $WORK/cg-$name.log"
    sleep 0.2
  done
  wrk -t1 -c4 -d3s -s "$LUA" "$url" >/dev/null
  callgrind_control -i on "$pid" >/dev/null
  wrk -t1 -c4 -d"${CG_SECS}s" -s "$LUA" "$url" >"$WORK/cg-$name.wrk"
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  : >"$WORK/cg-$name.log"
  grep -q 'err_status=0 ' "$WORK/cg-$name.wrk" || { log "callgrind $name: non-2xx answers"; FAILED=1; }
  reqs=$(grep -o 'requests=[0-9]*' "$WORK/cg-$name.wrk" | cut -d= -f2)
  ir=$(callgrind_annotate "$WORK"/cg-"$name".out.* 2>/dev/null | awk '/PROGRAM TOTALS/ && !x { gsub(",", "", $1); print $1; x = 1 }')
  [[ -n "$ir" && -n "$reqs" && "$reqs" -gt 0 ]] || die "callgrind $name: no totals"
  # shellcheck disable=SC2004 # an associative array: the key must be expanded
  IR_PER_REQ[$name]=$((ir / reqs))
  log "callgrind $name: $reqs requests, $ir instructions, ${IR_PER_REQ[$name]} per request"
}
