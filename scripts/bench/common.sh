# shellcheck shell=bash
# Sourced: the variables it sets are read by the suites, and those it reads are set by
# scripts/bench.sh or a suite (SC2034, SC2153 cannot see across the files).
# shellcheck disable=SC2034,SC2153
# The set-up every benchmark suite shares, sourced by scripts/bench.sh before the suite
# (scripts/bench/suite-*.sh). Sourcing defines functions only; nothing starts until a suite
# calls them. A suite keeps what is its own: its targets, configs, checks and report.
#
#   log, die, step            messages on stderr prefixed with [bench SUITE]; step names the
#                             step a later failure belongs to (the exit trap says it)
#   require_uint, require_duration   argument checks
#   install_missing CMD...    apt-installs the Debian package of each missing command
#   build_binaries            cargo build of mcp-fixture, mcp-sidecar and mcp-load in $PROFILE
#   raise_nofile              the soft open-files limit up to the hard one (10,000 streams)
#   pin_layout, pinned        CPU layout (PIN=split|none) and running a command on CPUs
#   bench_workdir             the temporary directory, the process list, the cleanup trap
#   free_port                 a free loopback port
#   post_code, post_ok, get_ok, wait_ready   HTTP probes and readiness polling
#   start_fixture             the mock MCP server as the backend
#   sidecar_config, start_sidecar   a sidecar from a config written from parts
#   start_haproxy, start_nginx      the reference proxies, configs filled from templates
#   mint_token                a JWT from fixtures/keys/ for an auth sidecar
#   load REPORT URL ARGS...   one mcp-load run (pinned), its JSON report checked for errors
#   report_field REPORT JQ    a figure of a report
#   proc_ticks, rss_kib, system_busy_ticks, fixture_served   counters
#   wait_quiet                waiting for other processes on the machine to go quiet
#   AWK_MEDIAN, report_header, finish, cg_count   the report's pieces and the callgrind count

# The request every benchmark sends: one MCP `tools/call` of the fixture's `echo` tool.
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'
CALL='echo {"text":"hi"}'
CLK_TCK=$(getconf CLK_TCK)
KEYS="$ROOT/fixtures/keys"
STEP="setting up"

log() { printf '[bench %s] %s\n' "$SUITE" "$*" >&2; }
die() { log "error: $*"; exit 1; }
step() { STEP="$*"; log "$*"; }

# require_uint VAR MIN: dies unless the variable named VAR holds an integer >= MIN.
require_uint() {
  [[ "${!1}" =~ ^[0-9]+$ && "${!1}" -ge $2 ]] || die "$1 must be an integer >= $2 (got '${!1}')"
}
# require_duration VAR: dies unless VAR looks like 10s, 500ms, 2m (what mcp-load accepts).
require_duration() {
  [[ "${!1}" =~ ^[0-9]+(ms|s|m|h)$ ]] || die "$1 must look like 10s, 500ms or 2m (got '${!1}')"
}
secs_of() { # secs_of DURATION: whole seconds (rounded up) of 10s, 500ms, 2m
  local d="$1"
  case "$d" in
    *ms) echo $(( (${d%ms} + 999) / 1000 )) ;;
    *s) echo "${d%s}" ;;
    *m) echo $(( ${d%m} * 60 )) ;;
    *h) echo $(( ${d%h} * 3600 )) ;;
  esac
}

# install_missing CMD...: installs (apt) the Debian package of each command not on PATH.
install_missing() {
  local missing=() cmd pkg
  for cmd in "$@"; do
    command -v "$cmd" >/dev/null 2>&1 && continue
    case "$cmd" in
      taskset) pkg=util-linux ;;
      ss) pkg=iproute2 ;;
      callgrind_control) pkg=valgrind ;;
      redis-cli) pkg=redis-tools ;;
      *) pkg=$cmd ;;
    esac
    missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${missing[*]} and not root (no sudo): install them"
    sudo=(sudo)
  fi
  step "installing ${missing[*]} via apt"
  "${sudo[@]}" apt-get update -qq || die "apt-get update failed (needed for ${missing[*]})"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

# build_binaries: the fixture, the sidecar and mcp-load in $PROFILE (unless SKIP_BUILD=1), then
# checks they are there.
build_binaries() {
  if [[ "$SKIP_BUILD" != 1 ]]; then
    step "building the $PROFILE binaries (mcp-fixture, mcp-sidecar, mcp-load)"
    cargo build --profile "$PROFILE" --quiet -p mcp-fixtures -p mcp-sidecar -p mcp-loadtest --bins \
      || die "cargo build --profile $PROFILE failed"
  fi
  local bin
  for bin in "$FIXTURE_BIN" "$SIDECAR_BIN" "$LOAD_BIN"; do
    [[ -x "$bin" ]] || die "$bin missing (run without SKIP_BUILD=1)"
  done
}

# raise_nofile: the soft open-files limit up to the hard one, for this shell and everything it
# starts (thousands of streams hold a socket each, two in a proxy). NOFILE is left at the result.
raise_nofile() {
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  NOFILE=$(ulimit -n)
  if [[ "$NOFILE" == unlimited ]]; then NOFILE=1048576; fi
}

# pin_layout: LOAD_CPUS, FIXTURE_CPUS and PROXY_CPUS from PIN. split (on >= 2 CPUs): the load
# side (mcp-load and the fixture) on CPU 0, the proxy under test alone on CPU 1; none: unpinned.
# A variable already set (even empty) overrides the layout's value.
pin_layout() {
  case "$PIN" in
    split)
      if (($(nproc) >= 2)); then
        LOAD_CPUS="${LOAD_CPUS-0}"; FIXTURE_CPUS="${FIXTURE_CPUS-0}"; PROXY_CPUS="${PROXY_CPUS-1}"
      else
        log "only $(nproc) CPU: running unpinned"
        LOAD_CPUS="${LOAD_CPUS-}"; FIXTURE_CPUS="${FIXTURE_CPUS-}"; PROXY_CPUS="${PROXY_CPUS-}"
      fi ;;
    none) LOAD_CPUS="${LOAD_CPUS-}"; FIXTURE_CPUS="${FIXTURE_CPUS-}"; PROXY_CPUS="${PROXY_CPUS-}" ;;
    *) die "PIN must be split or none (got '$PIN')" ;;
  esac
}

# pinned CPUS CMD...: runs CMD (exec'd, same pid) on CPUS, or unpinned when CPUS is empty.
pinned() {
  local cpus="$1"; shift
  if [[ -n "$cpus" ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi
}

# bench_workdir: a fresh temporary directory in WORK, an empty PIDS, FAILED=0, and an exit trap
# that stops every process in PIDS (TERM, then KILL after 5 s), names the step that failed, and
# removes WORK unless KEEP_WORKDIR=1 or the run failed. CLEANUP_EXTRA (a command) runs first.
bench_workdir() {
  WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-bench-$SUITE.XXXXXX")"
  PIDS=()
  FAILED=0
  CLEANUP_EXTRA=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
bench_cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  ((rc == 0)) || log "FAILED during: $STEP (exit $rc)"
  [[ -n "$CLEANUP_EXTRA" ]] && eval "$CLEANUP_EXTRA"
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP_WORKDIR" == 1 || $rc -ne 0 ]]; then
    log "logs, configs and reports kept in $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
# alive: dies if a server this run started has exited.
alive() {
  local pid
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a server died (pid $pid); see $WORK"; done
}

# A free loopback TCP port: random in 20000-32767 (below Linux's default ephemeral range, so it
# cannot collide with outgoing connections), not listened on now, not handed out before.
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
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$WORK/$name.log" >&2 || true; die "$name exited during start-up"; }
    if "$@"; then log "$name ready"; return 0; fi
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2 || true
  die "$name not ready after 15 s"
}

# start_fixture: the fixture (JSON answers, stateless) on a free port and FIXTURE_CPUS, one tokio
# worker per CPU it may use (more only add context switches on the load core); waits until it
# answers a tools/call. Sets FIXTURE_PORT, FIXTURE_URL, FIXTURE_PID.
start_fixture() {
  step "starting the fixture"
  FIXTURE_PORT=$(free_port)
  FIXTURE_URL="http://127.0.0.1:$FIXTURE_PORT/mcp"
  local workers
  workers=$(if [[ -n "$FIXTURE_CPUS" ]]; then taskset -c "$FIXTURE_CPUS" nproc; else nproc; fi)
  # The subshell becomes the fixture (pinned execs), so $! is the fixture's pid.
  (TOKIO_WORKER_THREADS="$workers" RUST_LOG=warn pinned "$FIXTURE_CPUS" "$FIXTURE_BIN" \
    --listen "127.0.0.1:$FIXTURE_PORT" --mode json --stateless) >"$WORK/fixture.log" 2>&1 &
  FIXTURE_PID=$!; PIDS+=("$FIXTURE_PID")
  wait_ready fixture "$FIXTURE_PID" post_ok "$FIXTURE_URL"
}
fixture_stat() { # fixture_stat FIELD: a counter of the fixture's /stats
  curl -s --max-time 2 "http://127.0.0.1:$FIXTURE_PORT/stats" | jq -r ".$1 // 0"
}
fixture_served() { fixture_stat http_requests_total; } # requests the fixture has answered

# sidecar_config OUT PORT ADMIN [EXTRA]: writes a sidecar config listening on PORT (admin on
# ADMIN) with one upstream, the fixture at /mcp; EXTRA is TOML inserted before the upstream
# (sections such as [limits] or [auth]), UPSTREAM_EXTRA after it ([upstream.breaker] and the
# like). Checks it with `mcp-sidecar check`.
sidecar_config() {
  local out="$1" port="$2" admin="$3" extra="${4:-}"
  {
    printf '[listen]\naddr = "127.0.0.1:%s"\n[admin]\naddr = "127.0.0.1:%s"\n' "$port" "$admin"
    [[ -n "$extra" ]] && printf '%s\n' "$extra"
    # Jobs stay on (every POST passes their pre-check, as by default) but in memory: the
    # default redb file is one per user, and a second sidecar could not open it.
    [[ "$extra" == *"[jobs]"* ]] || printf '[jobs]\nstore = "memory"\n'
    printf '[[upstream]]\nname = "fixture"\nurl = "%s"\npath = "/mcp"\n' "$FIXTURE_URL"
    if [[ -n "${UPSTREAM_EXTRA:-}" ]]; then printf "%s\n" "$UPSTREAM_EXTRA"; fi
  } >"$out"
  "$SIDECAR_BIN" check --config "$out" >"$WORK/check.log" 2>&1 || { cat "$WORK/check.log" >&2; die "invalid sidecar config $out"; }
}

# start_sidecar NAME CONFIG [RUST_LOG]: one sidecar (--worker-threads $SIDECAR_WORKERS, default
# 1) on PROXY_CPUS, its log appended to $WORK/NAME.log; waits for /readyz on the admin address
# in CONFIG. Its pid in STARTED_PID.
start_sidecar() {
  local name="$1" cfg="$2" rust_log="${3:-info}" admin
  admin=$(sed -n '/^\[admin\]/{n;s/^addr = "\(.*\)"/\1/p}' "$cfg")
  step "starting sidecar $name ($cfg, cpus ${PROXY_CPUS:-any}, RUST_LOG=$rust_log)"
  # O_APPEND so the log can be truncated between runs without a sparse, ever-growing file.
  RUST_LOG="$rust_log" pinned "$PROXY_CPUS" "$SIDECAR_BIN" run --config "$cfg" \
    --worker-threads "${SIDECAR_WORKERS:-1}" >>"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$name" "$STARTED_PID" get_ok "http://$admin/readyz"
}
# keep_sidecar_problems NAME: empties $WORK/NAME.log (an access log fills the disk otherwise),
# keeping its warnings and errors in $WORK/problems.log for finish.
keep_sidecar_problems() {
  grep -E ' (WARN|ERROR) |"level":"(WARN|ERROR)"' "$WORK/$1.log" >>"$WORK/problems.log" || true
  : >"$WORK/$1.log"
}

# fill_template IN OUT KEY=VALUE...: copies IN to OUT with each @KEY@ replaced by VALUE.
fill_template() {
  local in="$1" out="$2" kv args=(); shift 2
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$in" >"$out"
}

# start_haproxy NAME PORT [FRONTEND_EXTRA]: HAProxy (one thread) on PROXY_CPUS in front of the
# fixture, from scripts/bench/haproxy.cfg.in; FRONTEND_EXTRA, a file of frontend directives,
# replaces @FRONTEND_EXTRA@. Its pid in STARTED_PID.
haproxy_config() { # haproxy_config OUT PORT [FRONTEND_EXTRA]
  local out="$1" port="$2" extra="${3:-}" fill=(-e "/^@FRONTEND_EXTRA@$/d")
  [[ -n "$extra" ]] && fill=(-e "/^@FRONTEND_EXTRA@$/{r $extra" -e "d" -e "}")
  sed -e "s/@LISTEN@/127.0.0.1:$port/" -e "s/@BACKEND@/127.0.0.1:$FIXTURE_PORT/" \
    "${fill[@]}" "$ROOT/scripts/bench/haproxy.cfg.in" >"$out"
  haproxy -c -q -f "$out" || die "invalid haproxy config ($out)"
}
start_haproxy() {
  local name="$1" port="$2"
  haproxy_config "$WORK/$name.cfg" "$port" "${3:-}"
  step "starting $name on :$port (cpus ${PROXY_CPUS:-any})"
  pinned "$PROXY_CPUS" haproxy -db -f "$WORK/$name.cfg" >>"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$name" "$STARTED_PID" post_ok "http://127.0.0.1:$port/mcp"
}

# start_nginx NAME PORT: nginx (one worker process) on PROXY_CPUS in front of the fixture, from
# scripts/bench/nginx.conf.in. Its master's pid in STARTED_PID, the worker's in NGINX_WORKER_PID
# (the process whose CPU time is the proxy's); both join PIDS.
nginx_config() { # nginx_config OUT PORT PREFIX
  mkdir -p "$3"
  fill_template "$ROOT/scripts/bench/nginx.conf.in" "$1" "LISTEN=127.0.0.1:$2" \
    "BACKEND=127.0.0.1:$FIXTURE_PORT" "PREFIX=$3" "CONNECTIONS=$NOFILE"
  nginx -t -q -p "$3" -c "$1" 2>"$WORK/nginx-check.log" || { cat "$WORK/nginx-check.log" >&2; die "invalid nginx config ($1)"; }
}
start_nginx() {
  local name="$1" port="$2" i
  nginx_config "$WORK/$name.conf" "$port" "$WORK/$name"
  step "starting $name on :$port (cpus ${PROXY_CPUS:-any})"
  pinned "$PROXY_CPUS" nginx -p "$WORK/$name" -c "$WORK/$name.conf" >>"$WORK/$name.log" 2>&1 &
  STARTED_PID=$!; PIDS+=("$STARTED_PID")
  wait_ready "$name" "$STARTED_PID" post_ok "http://127.0.0.1:$port/mcp"
  NGINX_WORKER_PID=""
  for ((i = 0; i < 20; i++)); do
    NGINX_WORKER_PID=$(pgrep -P "$STARTED_PID" | head -n 1 || true)
    [[ -n "$NGINX_WORKER_PID" ]] && break
    sleep 0.1
  done
  [[ -n "$NGINX_WORKER_PID" ]] || die "nginx worker process not found"
  # Ours too: its CPU is the proxy's, not other processes' (the quiet wait, the other-load figure).
  PIDS+=("$NGINX_WORKER_PID")
}

# mint_token ALG AUDIENCE: a JWT (2 h) signed with the key of fixtures/keys/ for ALG (ES256 or
# RS256), issuer $ISSUER, subject `bench`, scope tools:read.
ISSUER="https://issuer.bench.invalid"
mint_token() {
  local key
  case "$1" in ES256) key="$KEYS/ec-p256.pem" ;; RS256) key="$KEYS/rsa-2048.pem" ;; *) die "no key for $1" ;; esac
  "$FIXTURE_BIN" mint-token --key "$key" --alg "$1" --iss "$ISSUER" --aud "$2" --sub bench \
    --scope tools:read --ttl 2h || die "mint-token failed"
}
# auth_toml PUBLIC_URL ALG [CACHE]: an [auth] section trusting the fixture keys' JWKS for ALG.
auth_toml() {
  printf '[auth]\npublic_url = "%s"\ntoken_cache_size = %s\nclaim_headers = { sub = "X-Auth-Subject" }\n' "$1" "${3:-10000}"
  printf '[[auth.jwt]]\nid = "bench"\nissuer = "%s"\nalgorithms = ["%s"]\njwks_file = "%s/jwks.json"\n' "$ISSUER" "$2" "$KEYS"
}
# The rule an auth sidecar's upstream gets (UPSTREAM_EXTRA): the token's scope allows echo.
AUTH_RULE=$'[[upstream.auth.rules]]\nscopes = ["tools:read"]\nmethods = ["tools/list"]\ntools = ["echo", "add"]'
# Three rate-limit rules that match every tools/call of echo and never refuse (10,000,000/s).
LIMITS_TOML='[[rate_limit]]
name = "per-principal"
key = ["principal"]
rate = 10000000
per = "1s"
[[rate_limit]]
name = "per-ip-tool"
key = ["client_ip", "tool"]
rate = 10000000
per = "1s"
tools = ["echo"]
[[rate_limit]]
name = "per-method"
key = ["method"]
rate = 10000000
per = "1s"
methods = ["tools/*"]'

# load REPORT URL ARGS...: one mcp-load run on LOAD_CPUS (the echo tools/call unless ARGS give
# a workload), its JSON report in REPORT and its output in REPORT.log. Dies if mcp-load fails;
# counts a run with errors as a failure (FAILED=1) unless LOAD_ERRORS_OK=1 (a suite that
# expects error answers checks them itself). Run it in this shell, not in $(...), so `times`
# counts its CPU.
load() {
  local out="$1" url="$2" rc=0 errs workload=(--call "$CALL"); shift 2
  [[ " $* " == *" --call "* || " $* " == *" --method "* || " $* " == *" --scenario "* || " $* " == *" --streams "* ]] && workload=()
  (pinned "$LOAD_CPUS" "$LOAD_BIN" run "$url" "${workload[@]}" "$@" --out "$out") >"$out.log" 2>&1 || rc=$?
  if ((rc != 0)) || [[ ! -s "$out" ]]; then
    cat "$out.log" >&2
    die "mcp-load failed against $url (exit $rc): $LOAD_BIN run $url ${workload[*]} $*"
  fi
  errs=$(report_field "$out" .errors)
  if ((errs > 0)) && [[ "${LOAD_ERRORS_OK:-0}" != 1 ]]; then
    log "$url: $errs error(s): $(jq -c .errors_by_kind "$out")"
    FAILED=1
  fi
}
report_field() { jq -r "$2" "$1"; } # report_field REPORT JQ: one figure of an mcp-load report

proc_ticks() { # proc_ticks PID: utime+stime of a whole process (all threads), in clock ticks
  local stat f
  stat=$(<"/proc/$1/stat")
  read -ra f <<<"${stat##*) }" # fields from 3 (state) on; comm may contain spaces
  echo $(( f[11] + f[12] ))    # fields 14 and 15
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; } # rss_kib PID: resident set, KiB
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

# wait_quiet: on a shared machine (a build in another shell, CI) background CPU use distorts the
# figures. Samples 1 s of CPU use by everything but our (idle) servers and waits until it is below
# QUIET_THRESHOLD cores, for at most QUIET_MAX_WAIT seconds (0: does not wait). The last figure is
# left in QUIET_LAST.
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

# median(list): the median of a space-separated list of numbers, for awk report programs:
# awk "$AWK_MEDIAN"'...program...'.
AWK_MEDIAN='
  function median(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
'

# report_header TITLE: "TITLE — time, commit (local changes noted), cargo profile" and the
# machine.
report_header() {
  local rev
  if rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null); then
    git -C "$ROOT" diff --quiet HEAD -- proxy fixtures loadtest Cargo.toml Cargo.lock \
      || rev+=" + uncommitted changes"
  else
    rev="? (not a git checkout)"
  fi
  echo "$1 — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $rev, cargo profile $PROFILE"
  echo "machine: $(nproc) CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), kernel $(uname -r)"
}

# finish OK_MESSAGE: shows the first warnings/errors the sidecars logged, then exits 1 if FAILED
# (a check failed; said above), else logs OK_MESSAGE.
finish() {
  if [[ -s "$WORK/problems.log" ]]; then
    log "the sidecars logged warnings/errors during the runs:"; head -n 5 "$WORK/problems.log" >&2
  fi
  STEP="the checks after the runs"
  ((FAILED)) && die "at least one check failed (see above)"
  log "ok: $1"
}

# cg_count NAME PORT CMD...: runs CMD under callgrind (instrumentation off), waits until
# http://127.0.0.1:PORT/mcp answers a tools/call with 200, warms it up for 3 s, then counts the
# instructions of CG_SECS seconds of mcp-load --concurrency 4 and sets IR_PER_REQ[NAME] to their
# number per answered request. User space only: the kernel's share (the sockets) is left out.
# CG_TOKEN, when set, is sent as the bearer token. Needs `declare -A IR_PER_REQ` in the caller.
cg_count() {
  local name="$1" port="$2" pid reqs ir i url auth=(); shift 2
  url="http://127.0.0.1:$port/mcp"
  [[ -n "${CG_TOKEN:-}" ]] && auth=(--bearer-env CG_TOKEN)
  step "callgrind: $name"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg-$name.out" "$@" \
    >"$WORK/cg-$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  for ((i = 0; i < 300; i++)); do
    post_ok "$url" "${CG_TOKEN:-}" && break
    kill -0 "$pid" 2>/dev/null || die "$name under callgrind exited; see $WORK/cg-$name.log"
    sleep 0.2
  done
  load "$WORK/cg-$name-warm.json" "$url" --concurrency 4 --duration 3s "${auth[@]}"
  callgrind_control -i on "$pid" >/dev/null
  load "$WORK/cg-$name.json" "$url" --concurrency 4 --duration "${CG_SECS}s" "${auth[@]}"
  callgrind_control -i off "$pid" >/dev/null
  callgrind_control -d "$pid" >/dev/null
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  : >"$WORK/cg-$name.log"
  reqs=$(report_field "$WORK/cg-$name.json" .requests)
  ir=$(callgrind_annotate "$WORK"/cg-"$name".out.* 2>/dev/null | awk '/PROGRAM TOTALS/ && !x { gsub(",", "", $1); print $1; x = 1 }')
  [[ -n "$ir" && -n "$reqs" && "$reqs" -gt 0 ]] || die "callgrind $name: no totals"
  # shellcheck disable=SC2004 # an associative array: the key must be expanded
  IR_PER_REQ[$name]=$((ir / reqs))
  log "callgrind $name: $reqs requests, $ir instructions, ${IR_PER_REQ[$name]} per request"
}

# ---------------------------------------------------------------------------------------------
# Rounds of mcp-load runs against named targets, the machinery of the default, auth and limits
# suites. The suite fills URL[TARGET] and PID[TARGET] (the process whose CPU is the proxy's; none
# for the backend itself), may define auth_of TARGET (sets AUTH, mcp-load's credential flags),
# sets EXTERNAL=1 when the targets are not ours (no CPU, /stats or log checks) and calls
# rows_init once. Columns of $ROWS (TSV, ROWS_HEADER): see below.
# ---------------------------------------------------------------------------------------------
ROWS_HEADER="kind	target	round	rps	p50_ms	p90_ms	p99_ms	max_ms	requests	errors	proxy_cores	proxy_us_per_req	other_cores	forwarded"
EXTERNAL=0
DISTURBED_THRESHOLD="${DISTURBED_THRESHOLD:-0.15}"
RETRIES="${RETRIES:-3}"
rows_init() { ROWS="$WORK/rows.tsv"; : >"$ROWS"; }
auth_of() { AUTH=(); }

# run_one KIND TARGET ROUND MCP-LOAD-ARGS...: one run; appends its row to $ROWS. The proxy's
# CPU (cores, µs per answered request) comes from /proc/PID/stat; `other` is the CPU that
# processes outside the benchmark used meanwhile (all busy CPU minus our servers' and
# mcp-load's), per second of the run; `forwarded` checks the fixture saw every answered request.
run_one() {
  local kind="$1" t="$2" round="$3" out pid="${PID[$2]:-}" px0=0 px1=0 served0=0 served1=0
  local busy0 busy1 ours0=0 ours1=0 kids0 kids1 wall0 wall1 p; shift 3
  ((EXTERNAL)) || alive
  out="$WORK/$kind-$t-$round.json"
  auth_of "$t"
  wait_quiet
  if ((!EXTERNAL)); then
    served0=$(fixture_served)
    [[ -n "$pid" ]] && px0=$(proc_ticks "$pid")
    for p in "${PIDS[@]}"; do ours0=$((ours0 + $(proc_ticks "$p"))); done
  fi
  # `times` must run in this shell, not in a $(...) subshell, to see the reaped mcp-load's CPU.
  busy0=$(system_busy_ticks); times >"$WORK/times0"; wall0=$(date +%s%N)
  STEP="$kind run against $t (round $round)"
  load "$out" "${URL[$t]}" "${AUTH[@]}" "$@"
  times >"$WORK/times1"; busy1=$(system_busy_ticks); wall1=$(date +%s%N)
  if ((!EXTERNAL)); then
    [[ -n "$pid" ]] && px1=$(proc_ticks "$pid")
    for p in "${PIDS[@]}"; do ours1=$((ours1 + $(proc_ticks "$p"))); done
    served1=$(fixture_served)
    if [[ -f "$WORK/$t.toml" ]]; then keep_sidecar_problems "$t"; elif [[ -f "$WORK/$t.log" ]]; then : >"$WORK/$t.log"; fi
  fi
  kids0=$(children_cpu_secs "$WORK/times0"); kids1=$(children_cpu_secs "$WORK/times1")
  jq -r --arg kind "$kind" --arg t "$t" --arg round "$round" --argjson px "$((px1 - px0))" \
    --argjson proxy "$([[ -n "$pid" ]] && echo true || echo false)" --argjson tck "$CLK_TCK" \
    --argjson other "$(( (busy1 - busy0) - (ours1 - ours0) ))" --argjson kids "$(awk -v a="$kids0" -v b="$kids1" 'BEGIN { print b - a }')" \
    --argjson served "$((served1 - served0))" --argjson external "$EXTERNAL" \
    --argjson wall "$(( (wall1 - wall0) / 1000000 ))" '
    (.duration_s + 0.000001) as $s |
    [$kind, $t, $round, (.rps | round), .latency_ms.p50, .latency_ms.p90, .latency_ms.p99, .latency_ms.max,
     .requests, .errors,
     (if $proxy then ($px / $tck / $s * 100 | round / 100) else "-" end),
     (if $proxy and .requests > 0 then ($px / $tck * 1e6 / .requests * 10 | round / 10) else "-" end),
     ([($other / $tck - $kids) / ($wall / 1000 + 0.001), 0] | max * 100 | round / 100),
     (if $external == 1 or $served >= .requests then "ok" else "MISSING" end)] | @tsv' "$out" >>"$ROWS"
  local rps p50 p99 errs cores us other fwd
  IFS=$'\t' read -r _ _ _ rps p50 _ p99 _ _ errs cores us other fwd <<<"$(tail -n 1 "$ROWS")"
  log "$(printf '%-9s %-16s %-2s %8s req/s  p50 %7s ms  p99 %7s ms  errors %s  proxy %s cores, %s us/req  other load %s  forwarded %s' \
    "$kind" "$t" "$round" "$rps" "$p50" "$p99" "$errs" "$cores" "$us" "$other" "$fwd")"
  if [[ "$fwd" != ok ]]; then
    log "$t: the fixture served fewer requests than mcp-load counted answers: the proxy answered some itself"
    FAILED=1
  fi
}
# measure KIND TARGET ROUND ARGS...: run_one, repeated (RETRIES times at most) while other
# processes used more than DISTURBED_THRESHOLD cores during it; the discarded rows are relabelled.
measure() {
  local try
  for ((try = 0; ; try++)); do
    run_one "$@"
    tail -n 1 "$ROWS" | awk -F'\t' -v th="$DISTURBED_THRESHOLD" '{ exit !($13 + 0 > th + 0) }' || return 0
    if ((try >= RETRIES)); then
      log "$2 round $3: still disturbed after $RETRIES retries; kept (see its other-load column)"
      return 0
    fi
    log "$2 round $3: other processes used more than $DISTURBED_THRESHOLD cores; discarding and repeating"
    sed -i '$ s/^\([^\t]*\)\t/discarded-\1\t/' "$ROWS"
  done
}
# rounds KIND ARGS...: ROUNDS rounds over TARGETS in rotating order (drift between minutes
# falls on every target alike).
rounds() {
  local kind="$1" r k; shift
  for ((r = 1; r <= ROUNDS; r++)); do
    for ((k = 0; k < ${#TARGETS[@]}; k++)); do
      measure "$kind" "${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}" "$r" "$@"
    done
  done
}
# throughput_report KIND PAIRS: the table of KIND's rows (medians over the rounds) in TARGETS'
# order, then for each pair `a|b` of PAIRS (space-separated) the median of the per-round ratios
# a/b of req/s and the ratio of the medians.
throughput_report() {
  awk -F'\t' -v kind="$1" -v pairs="$2" -v rounds="$ROUNDS" -v order="${TARGETS[*]}" "$AWK_MEDIAN"'
  $1 ~ /^discarded/ { discarded++ }
  $1 == kind {
    rr[$2, $3] = $4; rps[$2] = rps[$2] " " $4; p50[$2] = p50[$2] " " $5; p99[$2] = p99[$2] " " $7
    other[$2] = other[$2] " " $13
    if ($11 != "-") { pc[$2] = pc[$2] " " $11; pu[$2] = pu[$2] " " $12 }
  }
  END {
    n = split(order, T, " ")
    printf "%-17s %9s %8s %8s %11s %12s %10s   %s\n", "target", "req/s", "p50 ms", "p99 ms", "proxy cores", "proxy us/req", "other load", "req/s per round"
    for (i = 1; i <= n; i++) {
      t = T[i]; if (!(t in rps)) continue
      R[t] = median(rps[t])
      printf "%-17s %9.0f %8.3f %8.3f %11s %12s %10.2f  %s\n", t, R[t], median(p50[t]), median(p99[t]),
        t in pc ? sprintf("%.2f", median(pc[t])) : "-", t in pu ? sprintf("%.1f", median(pu[t])) : "-", median(other[t]), rps[t]
    }
    print ""
    print "req/s ratios: median of the per-round ratios (ratio of the medians; CPU per request ratio)"
    np = split(pairs, P, " ")
    for (i = 1; i <= np; i++) {
      split(P[i], q, "|"); a = q[1]; b = q[2]
      if (!(a in R) || !(b in R) || R[b] == 0) continue
      list = ""; m = 0
      for (k = 1; k <= rounds; k++) if ((a, k) in rr && (b, k) in rr && rr[b, k] > 0) { list = list " " sprintf("%.3f", rr[a, k] / rr[b, k]); m++ }
      cpu = (a in pu && b in pu && median(pu[b]) > 0) ? sprintf("; CPU/req %.3f", median(pu[a]) / median(pu[b])) : ""
      printf "  %-17s / %-16s %6.3f  (%.3f%s)   rounds:%s\n", a, b, m ? median(list) : 0, R[a] / R[b], cpu, list
    }
    if (discarded) printf "(%d disturbed run(s) were discarded and repeated)\n", discarded
  }' "$ROWS"
}
