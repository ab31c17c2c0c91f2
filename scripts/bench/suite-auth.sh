# shellcheck shell=bash
# Suite `auth` of scripts/bench.sh: the sidecar's JWT authentication and authorization against
# the same sidecar without, the same echo tools/call in closed loop (mcp-load --concurrency):
#   noauth          no [auth], no token: the baseline
#   es256 / rs256   JWT (ES256 / RS256, keys from fixtures/keys/jwks.json) + a per-tool rule; one
#                   token reused (mcp-load --bearer-env), so after its first request it is served
#                   from the validated-token cache (clients reuse a token for its lifetime)
#   es256-nocache / rs256-nocache   token_cache_size = 0: every request verifies the signature
#                   (informational: the worst case, a new token per request)
# Interleaved rounds in rotating order, medians, ratios to noauth (target >= 0.90 for es256 and
# rs256); CPU 0: mcp-load + fixture, CPU 1: the sidecar under test. Fails on any error answer,
# on a request the fixture did not see, or if an auth sidecar answers without a token.
#
# Environment (all optional; see `scripts/bench.sh --help` for the shared ones):
#   TARGETS="noauth es256 rs256 es256-nocache rs256-nocache"   (noauth is needed)
#   CONNECTIONS=32  DURATION=10s  WARMUP=3s  ROUNDS=3  SIDECAR_RUST_LOG=info  RESULTS_TSV=path
# Sourced after common.sh, which reads the variables it sets (SC2034 cannot see across files).
# shellcheck disable=SC2034,SC2153

CONNECTIONS="${CONNECTIONS:-32}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-3s}"
ROUNDS="${ROUNDS:-3}"
SIDECAR_RUST_LOG="${SIDECAR_RUST_LOG:-info}"
RESULTS_TSV="${RESULTS_TSV:-}"
read -ra TARGETS <<<"${TARGETS:-noauth es256 rs256 es256-nocache rs256-nocache}"
for v in CONNECTIONS ROUNDS; do require_uint "$v" 1; done
require_duration DURATION
[[ "$WARMUP" == 0 ]] || require_duration WARMUP
for t in "${TARGETS[@]}"; do
  case "$t" in noauth | es256 | rs256 | es256-nocache | rs256-nocache) ;; *) die "unknown target '$t' in TARGETS" ;; esac
done
[[ " ${TARGETS[*]} " == *" noauth "* ]] || die "TARGETS must include noauth (the baseline)"

install_missing curl jq taskset ss
build_binaries
pin_layout
bench_workdir
start_fixture

declare -A URL PID
for t in "${TARGETS[@]}"; do
  port=$(free_port); admin=$(free_port)
  URL[$t]="http://127.0.0.1:$port/mcp"
  if [[ "$t" == noauth ]]; then
    sidecar_config "$WORK/$t.toml" "$port" "$admin"
  else
    alg=$(tr '[:lower:]' '[:upper:]' <<<"${t%%-*}")
    cache=10000; [[ "$t" == *-nocache ]] && cache=0
    UPSTREAM_EXTRA="$AUTH_RULE" sidecar_config "$WORK/$t.toml" "$port" "$admin" "$(auth_toml "http://127.0.0.1:$port" "$alg" "$cache")"
    # One variable per target, named for mcp-load's --bearer-env.
    printf -v "TOKEN_${t//-/_}" '%s' "$(mint_token "$alg" "${URL[$t]}")"
    export "TOKEN_${t//-/_}"
  fi
  start_sidecar "$t" "$WORK/$t.toml" "$SIDECAR_RUST_LOG"
  PID[$t]=$STARTED_PID
  if [[ "$t" != noauth ]]; then
    code=$(post_code "${URL[$t]}")
    [[ "$code" == 401 ]] || die "$t answered $code without a token (auth not on?)"
  fi
done
auth_of() { AUTH=(); [[ "$1" == noauth ]] || AUTH=(--bearer-env "TOKEN_${1//-/_}"); }

rows_init
step "mcp-load --concurrency $CONNECTIONS, $DURATION per run (warm-up $WARMUP), $ROUNDS round(s); pinning: mcp-load ${LOAD_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}"
if [[ "$WARMUP" != 0 ]]; then
  for t in "${TARGETS[@]}"; do run_one warmup "$t" 0 --concurrency "$CONNECTIONS" --duration "$WARMUP"; done
fi
rounds closed --concurrency "$CONNECTIONS" --duration "$DURATION"
[[ -n "$RESULTS_TSV" ]] && { echo "$ROWS_HEADER"; cat "$ROWS"; } >"$RESULTS_TSV"

STEP="the report"
echo
report_header "mcp-sidecar auth benchmark (scripts/bench.sh auth)"
echo "mcp-load --concurrency $CONNECTIONS for $DURATION (warm-up $WARMUP), $ROUNDS round(s); pinning: mcp-load ${LOAD_CPUS:-any}, fixture ${FIXTURE_CPUS:-any}, sidecar ${PROXY_CPUS:-any}; sidecar --worker-threads 1, RUST_LOG=$SIDECAR_RUST_LOG"
echo
pairs=""
for t in "${TARGETS[@]}"; do [[ "$t" != noauth ]] && pairs+=" $t|noauth"; done
throughput_report closed "$pairs"
echo "(target for es256 / noauth and rs256 / noauth: >= 0.90; the -nocache rows are informational)"
echo
finish "no error answers; every request reached the fixture"
