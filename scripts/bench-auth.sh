#!/usr/bin/env bash
# Auth overhead benchmark: the same MCP `tools/call` (echo) POST through mcp-sidecar
# (--worker-threads 1) with and without authentication + authorization, in one run:
#   noauth          no [auth]: the baseline
#   es256 / rs256   JWT (ES256 / RS256, keys from a JWKS file) + per-tool rules; one token reused,
#                   so after the first request it is served from the validated-token cache
#   es256-nocache / rs256-nocache   the same with token_cache_size = 0: every request verifies
#                   the signature (informational: the worst case, e.g. one token per request)
# Prints per-target medians and the ratios against `noauth`. The target is >= 0.90 for es256 and
# rs256. Same approach as scripts/bench.sh: wrk, the fixture as backend, CPU pinning (wrk + fixture
# on CPU 0, the sidecar under test alone on CPU 1), interleaved rounds, medians, exit 1 on any
# non-2xx answer, socket error or request the backend did not see.
#
# Environment (all optional):
#   DURATION=10s CONNECTIONS=32 WRK_THREADS=1 WARMUP=3s ROUNDS=3
#   TARGETS="noauth es256 rs256 es256-nocache rs256-nocache"
#   PIN=split|none   WRK_CPUS / FIXTURE_CPUS / PROXY_CPUS override the layout
#   SIDECAR_RUST_LOG=info   (access log on, written to a file, as in production)
#   SKIP_BUILD=1   KEEP_WORKDIR=1   RESULTS_TSV=path
#   QUIET_MAX_WAIT=120 QUIET_THRESHOLD=0.10   before each run, wait (at most this many seconds)
#                  until other processes use < THRESHOLD cores, as scripts/bench.sh does
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-32}"
WRK_THREADS="${WRK_THREADS:-1}"
WARMUP="${WARMUP:-3s}"
ROUNDS="${ROUNDS:-3}"
PIN="${PIN:-split}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
SKIP_BUILD="${SKIP_BUILD:-0}"
KEEP_WORKDIR="${KEEP_WORKDIR:-0}"
RESULTS_TSV="${RESULTS_TSV:-}"
QUIET_MAX_WAIT="${QUIET_MAX_WAIT:-120}"
QUIET_THRESHOLD="${QUIET_THRESHOLD:-0.10}"
read -ra TARGETS <<<"${TARGETS:-noauth es256 rs256 es256-nocache rs256-nocache}"

LUA="$ROOT/scripts/bench/tools_call.lua"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURE_BIN="$TARGET_DIR/release/mcp-fixture"
SIDECAR_BIN="$TARGET_DIR/release/mcp-sidecar"
KEYS="$ROOT/fixtures/keys"
ISSUER="https://issuer.bench.invalid"
BODY='{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'

log() { printf '[bench-auth] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$ROUNDS" =~ ^[0-9]+$ && "$ROUNDS" -ge 1 ]] || die "ROUNDS must be a positive integer"
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge "$WRK_THREADS" ]] || die "CONNECTIONS must be >= WRK_THREADS"
for t in "${TARGETS[@]}"; do
  case "$t" in noauth | es256 | rs256 | es256-nocache | rs256-nocache) ;; *) die "unknown target $t" ;; esac
done
[[ " ${TARGETS[*]} " == *" noauth "* ]] || die "TARGETS must include noauth (the baseline)"

missing=()
for pkg in wrk curl; do command -v "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
command -v ss >/dev/null 2>&1 || missing+=(iproute2)
if ((${#missing[@]})); then
  sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  log "installing ${missing[*]} via apt"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [[ "$SKIP_BUILD" != 1 ]]; then
  log "building release binaries"
  cargo build --release --quiet -p mcp-fixtures -p mcp-sidecar --bins
fi
[[ -x "$FIXTURE_BIN" && -x "$SIDECAR_BIN" ]] || die "release binaries missing (run without SKIP_BUILD=1)"

NCPU=$(nproc)
case "$PIN" in
  split)
    if ((NCPU >= 2)); then
      WRK_CPUS="${WRK_CPUS-0}"; FIXTURE_CPUS="${FIXTURE_CPUS-0}"; PROXY_CPUS="${PROXY_CPUS-1}"
    else
      WRK_CPUS="${WRK_CPUS-}"; FIXTURE_CPUS="${FIXTURE_CPUS-}"; PROXY_CPUS="${PROXY_CPUS-}"
    fi ;;
  none) WRK_CPUS="${WRK_CPUS-}"; FIXTURE_CPUS="${FIXTURE_CPUS-}"; PROXY_CPUS="${PROXY_CPUS-}" ;;
  *) die "PIN must be split or none" ;;
esac
pinned() { local cpus="$1"; shift; if [[ -n "$cpus" ]]; then exec taskset -c "$cpus" "$@"; else exec "$@"; fi; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/mcp-bench-auth.XXXXXX")"
PIDS=()
FAILED=0
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ "$KEEP_WORKDIR" == 1 || $rc -ne 0 ]]; then log "logs kept in $WORK"; else rm -rf "$WORK"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

USED_PORTS=" "
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12768))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if [[ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]]; then USED_PORTS+="$p "; echo "$p"; return 0; fi
  done
  die "no free port found"
}

post_code() { # post_code URL [TOKEN]: HTTP status of one tools/call
  local auth=()
  [[ -n "${2:-}" ]] && auth=(-H "authorization: Bearer $2")
  curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST "${auth[@]}" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    --data "$BODY" "$1" 2>/dev/null || true
}
wait_ready() { # wait_ready NAME PID URL [TOKEN]
  local name="$1" pid="$2" i
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$WORK/$name.log" >&2 || true; die "$name exited during startup"; }
    [[ "$(post_code "$3" "${4:-}")" == 200 ]] && { log "$name ready"; return 0; }
    sleep 0.1
  done
  tail -n 20 "$WORK/$name.log" >&2 || true
  die "$name not ready after 15 s"
}

FIXTURE_PORT=$(free_port)
FIXTURE_URL="http://127.0.0.1:$FIXTURE_PORT/mcp"
RUST_LOG=warn pinned "$FIXTURE_CPUS" "$FIXTURE_BIN" --listen "127.0.0.1:$FIXTURE_PORT" --mode json --stateless \
  >"$WORK/fixture.log" 2>&1 &
FIXTURE_PID=$!; PIDS+=("$FIXTURE_PID")
wait_ready fixture "$FIXTURE_PID" "$FIXTURE_URL"

declare -A URL PID TOKEN
for t in "${TARGETS[@]}"; do
  port=$(free_port); admin=$(free_port)
  URL[$t]="http://127.0.0.1:$port/mcp"
  cfg="$WORK/$t.toml"
  {
    printf '[listen]\naddr = "127.0.0.1:%s"\n[admin]\naddr = "127.0.0.1:%s"\n' "$port" "$admin"
    if [[ "$t" != noauth ]]; then
      alg=$(tr '[:lower:]' '[:upper:]' <<<"${t%%-*}")
      cache=10000; [[ "$t" == *-nocache ]] && cache=0
      printf '[auth]\npublic_url = "http://127.0.0.1:%s"\ntoken_cache_size = %s\n' "$port" "$cache"
      printf 'claim_headers = { sub = "X-Auth-Subject" }\n'
      printf '[[auth.jwt]]\nid = "bench"\nissuer = "%s"\nalgorithms = ["%s"]\njwks_file = "%s/jwks.json"\n' \
        "$ISSUER" "$alg" "$KEYS"
    fi
    printf '[[upstream]]\nname = "fixture"\nurl = "%s"\npath = "/mcp"\n' "$FIXTURE_URL"
    if [[ "$t" != noauth ]]; then
      printf '[[upstream.auth.rules]]\nscopes = ["tools:read"]\nmethods = ["tools/list"]\ntools = ["echo", "add"]\n'
    fi
  } >"$cfg"
  "$SIDECAR_BIN" check --config "$cfg" >/dev/null || die "invalid config $cfg"
  if [[ "$t" != noauth ]]; then
    case "$alg" in ES256) key="$KEYS/ec-p256.pem" ;; RS256) key="$KEYS/rsa-2048.pem" ;; esac
    TOKEN[$t]=$("$FIXTURE_BIN" mint-token --key "$key" --alg "$alg" --iss "$ISSUER" \
      --aud "${URL[$t]}" --sub bench --scope tools:read --ttl 2h)
  else
    TOKEN[$t]=""
  fi
  RUST_LOG="$SIDECAR_RUST_LOG" pinned "$PROXY_CPUS" "$SIDECAR_BIN" run --config "$cfg" --worker-threads 1 \
    >>"$WORK/$t.log" 2>&1 &
  PID[$t]=$!; PIDS+=("${PID[$t]}")
  wait_ready "$t" "${PID[$t]}" "${URL[$t]}" "${TOKEN[$t]}"
  if [[ "$t" != noauth ]]; then
    code=$(post_code "${URL[$t]}")
    [[ "$code" == 401 ]] || die "$t answered $code without a token (auth not on?)"
  fi
done

CLK_TCK=$(getconf CLK_TCK)
proc_ticks() { local stat f; stat=$(<"/proc/$1/stat"); read -ra f <<<"${stat##*) }"; echo $((f[11] + f[12])); }
fixture_served() {
  curl -s --max-time 2 "http://127.0.0.1:$FIXTURE_PORT/stats" | grep -o '"http_requests_total":[0-9]*' | cut -d: -f2
}

system_busy_ticks() {
  local _cpu user nice sys idle iowait irq softirq steal _rest
  read -r _cpu user nice sys idle iowait irq softirq steal _rest </proc/stat
  echo $((user + nice + sys + irq + softirq + steal))
}
# Background CPU use (a build in another shell) distorts the figures: wait for a quiet machine.
wait_quiet() {
  local waited=0 b0 b1 o0 o1 pid load
  while :; do
    o0=0; for pid in "${PIDS[@]}"; do o0=$((o0 + $(proc_ticks "$pid"))); done
    b0=$(system_busy_ticks); sleep 1; b1=$(system_busy_ticks)
    o1=0; for pid in "${PIDS[@]}"; do o1=$((o1 + $(proc_ticks "$pid"))); done
    load=$(awk -v d="$(((b1 - b0) - (o1 - o0)))" -v t="$CLK_TCK" 'BEGIN { x = d / t; if (x < 0) x = 0; printf "%.2f", x }')
    awk -v l="$load" -v th="$QUIET_THRESHOLD" 'BEGIN { exit !(l < th) }' && return 0
    if ((waited >= QUIET_MAX_WAIT)); then log "machine still busy ($load cores used by others); measuring anyway"; return 0; fi
    ((waited == 0)) && log "waiting for other processes to quiet down ($load cores busy)"
    sleep 4; waited=$((waited + 5))
  done
}

ROWS="$WORK/rows.tsv"; : >"$ROWS"
run_one() { # run_one KIND TARGET ROUND DURATION
  local kind="$1" t="$2" round="$3" dur="$4" out rc=0 served0 served1 px0 px1 hdr=()
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a server died (pid $pid); see $WORK"; done
  out="$WORK/wrk-$kind-$t-$round.txt"
  [[ -n "${TOKEN[$t]}" ]] && hdr=(-H "Authorization: Bearer ${TOKEN[$t]}")
  ((QUIET_MAX_WAIT > 0)) && wait_quiet
  served0=$(fixture_served); px0=$(proc_ticks "${PID[$t]}")
  (pinned "$WRK_CPUS" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$dur" --latency "${hdr[@]}" -s "$LUA" "${URL[$t]}") >"$out" 2>&1 || rc=$?
  px1=$(proc_ticks "${PID[$t]}"); served1=$(fixture_served)
  grep -E ' (WARN|ERROR) ' "$WORK/$t.log" >>"$WORK/sidecar-problems.log" || true
  : >"$WORK/$t.log"
  local line
  line=$(grep '^BENCH_RESULT ' "$out" || true)
  if ((rc != 0)) || [[ -z "$line" ]]; then
    log "wrk failed against $t (exit $rc):"; cat "$out" >&2; FAILED=1; return 0
  fi
  awk -v kind="$kind" -v t="$t" -v round="$round" -v px="$((px1 - px0))" -v tck="$CLK_TCK" \
      -v served="$((served1 - served0))" '{
      for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      errs = v["err_connect"] + v["err_read"] + v["err_write"] + v["err_timeout"] + v["err_status"]
      secs = v["duration_us"] / 1e6
      printf "%s\t%s\t%s\t%.0f\t%d\t%d\t%d\t%d\t%.2f\t%.1f\t%s\n", kind, t, round, v["rps"], v["p50_us"],
        v["p99_us"], v["requests"], errs, px / tck / secs, (v["requests"] > 0 ? px / tck * 1e6 / v["requests"] : 0),
        (served >= v["requests"] ? "ok" : "MISSING") }' <<<"$line" >>"$ROWS"
  local rps p50 p99 errs cores us fwd
  IFS=$'\t' read -r _ _ _ rps p50 p99 _ errs cores us fwd <<<"$(tail -n 1 "$ROWS")"
  log "$(printf '%-7s %-14s %-2s %8s req/s  p50 %6s us  p99 %6s us  errors %s  sidecar %s cores, %s us/req  forwarded %s' \
    "$kind" "$t" "$round" "$rps" "$p50" "$p99" "$errs" "$cores" "$us" "$fwd")"
  if ((errs > 0)); then log "$t: $errs error(s) (non-2xx or socket)"; cat "$out" >&2; FAILED=1; fi
  [[ "$fwd" == ok ]] || { log "$t: the backend saw fewer requests than wrk counted"; FAILED=1; }
}

log "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION (warm-up $WARMUP), $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}"
if [[ "$WARMUP" != 0 ]]; then for t in "${TARGETS[@]}"; do run_one warmup "$t" 0 "$WARMUP"; done; fi
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#TARGETS[@]}; k++)); do
    run_one measure "${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}" "$r" "$DURATION"
  done
done
[[ -n "$RESULTS_TSV" ]] && { printf 'kind\ttarget\tround\trps\tp50_us\tp99_us\trequests\terrors\tsidecar_cores\tsidecar_us_per_req\tforwarded\n'; cat "$ROWS"; } >"$RESULTS_TSV"

echo
echo "mcp-sidecar auth benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- proxy fixtures 2>/dev/null || echo ' (+local changes)')"
echo "machine: $NCPU CPU ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), kernel $(uname -r)"
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, warm-up $WARMUP, $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}; sidecar --worker-threads 1, RUST_LOG=$SIDECAR_RUST_LOG"
echo
awk -F'\t' -v order="${TARGETS[*]}" '
  function median(list,    n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] + 0 > t + 0; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  $1 == "measure" { rps[$2] = rps[$2] " " $4; p50[$2] = p50[$2] " " $5; p99[$2] = p99[$2] " " $6; us[$2] = us[$2] " " $10; err[$2] += $8 }
  END {
    printf "%-14s %10s %9s %9s %13s %7s   %s\n", "target", "req/s", "p50 ms", "p99 ms", "sidecar us/req", "errors", "req/s per round"
    n = split(order, T, " ")
    for (i = 1; i <= n; i++) {
      t = T[i]; if (!(t in rps)) continue
      R[t] = median(rps[t]); P[t] = median(p50[t]); Q[t] = median(p99[t]); U[t] = median(us[t])
      printf "%-14s %10.0f %9.3f %9.3f %13.1f %7d  %s\n", t, R[t], P[t] / 1000, Q[t] / 1000, U[t], err[t], rps[t]
    }
    print ""
    print "ratios to noauth (medians)      req/s     p50     p99   CPU/req"
    for (i = 1; i <= n; i++) {
      t = T[i]; if (t == "noauth" || !(t in R)) continue
      printf "  %-28s %7.3f %7.2f %7.2f %9.2f%s\n", t " / noauth", R[t] / R["noauth"], P[t] / P["noauth"], Q[t] / Q["noauth"],
        (U["noauth"] > 0 ? U[t] / U["noauth"] : 0), (t ~ /nocache/) ? "   (informational)" : (R[t] / R["noauth"] >= 0.9 ? "   (target >= 0.90: met)" : "   (target >= 0.90: MISSED)")
    }
  }' "$ROWS"
echo

if [[ -s "$WORK/sidecar-problems.log" ]]; then
  log "the sidecars logged warnings/errors:"; head -n 5 "$WORK/sidecar-problems.log" >&2
fi
((FAILED)) && { log "FAILED: at least one run had errors (see above)"; exit 1; }
log "ok: no non-2xx responses, no socket errors"
