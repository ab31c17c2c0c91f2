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

BENCH_NAME=bench-auth
# shellcheck source-path=SCRIPTDIR source=bench/common.sh
source "$ROOT/scripts/bench/common.sh"

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
FIXTURE_BIN="$TARGET_DIR/release/mcp-fixture"
SIDECAR_BIN="$TARGET_DIR/release/mcp-sidecar"
KEYS="$ROOT/fixtures/keys"
ISSUER="https://issuer.bench.invalid"

require_uint ROUNDS 1
[[ "$CONNECTIONS" =~ ^[0-9]+$ && "$CONNECTIONS" -ge "$WRK_THREADS" ]] || die "CONNECTIONS must be >= WRK_THREADS"
for t in "${TARGETS[@]}"; do
  case "$t" in noauth | es256 | rs256 | es256-nocache | rs256-nocache) ;; *) die "unknown target $t" ;; esac
done
[[ " ${TARGETS[*]} " == *" noauth "* ]] || die "TARGETS must include noauth (the baseline)"

install_missing wrk curl taskset ss
[[ "$SKIP_BUILD" != 1 ]] && build_binaries release
[[ -x "$FIXTURE_BIN" && -x "$SIDECAR_BIN" ]] || die "release binaries missing (run without SKIP_BUILD=1)"

pin_layout
bench_workdir
start_fixture

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
  wait_ready "$t" "${PID[$t]}" post_ok "${URL[$t]}" "${TOKEN[$t]}"
  if [[ "$t" != noauth ]]; then
    code=$(post_code "${URL[$t]}")
    [[ "$code" == 401 ]] || die "$t answered $code without a token (auth not on?)"
  fi
done

ROWS="$WORK/rows.tsv"; : >"$ROWS"
run_one() { # run_one KIND TARGET ROUND DURATION
  local kind="$1" t="$2" round="$3" dur="$4" out rc=0 served0 served1 px0 px1 hdr=()
  for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null || die "a server died (pid $pid); see $WORK"; done
  out="$WORK/wrk-$kind-$t-$round.txt"
  [[ -n "${TOKEN[$t]}" ]] && hdr=(-H "Authorization: Bearer ${TOKEN[$t]}")
  wait_quiet
  served0=$(fixture_served); px0=$(proc_ticks "${PID[$t]}")
  run_wrk "$out" "$dur" "${URL[$t]}" "${hdr[@]}" || rc=$?
  px1=$(proc_ticks "${PID[$t]}"); served1=$(fixture_served)
  keep_sidecar_problems "$t"
  local line
  line=$(wrk_result "$out")
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
report_header "mcp-sidecar auth benchmark"
echo "wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, warm-up $WARMUP, $ROUNDS round(s); pinning: wrk ${WRK_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}; sidecar --worker-threads 1, RUST_LOG=$SIDECAR_RUST_LOG"
echo
awk -F'\t' -v order="${TARGETS[*]}" "$AWK_MEDIAN"'
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

finish "no non-2xx responses, no socket errors"
