# shellcheck shell=bash
# Suite `jobs` of scripts/bench.sh: how long until a client on loopback has its 202 (the job
# written durably first), and how many jobs per second the sidecar takes. Targets (issue 16):
# p99 under 2 ms at a steady rate, at least 2,000 jobs/s, fsync included. Three sidecars
# (--worker-threads WORKERS) in front of one fixture:
#   live     the call answered live (jobs off): the baseline
#   memory   jobs in memory: submission without a disk write
#   redb     jobs in redb (the durable default), its file on the repository's disk (not a
#            tmpfs), so fsync is real
# Steady phase: mcp-load --rate RATE --jobs POLL (open loop; a job's latency is to its 202, its
# completion time to its result, polled every POLL), ROUNDS interleaved rounds of SECS each.
# Peak phase: mcp-load --concurrency CONNECTIONS --jobs POLL for PEAK_SECS: jobs completed per
# second (each worker submits, polls to the result, submits the next: stricter than 202s per
# second, since every job also runs and is read back). Fails on any error answer or refused job.
#
# Environment (all optional; see `scripts/bench.sh --help` for the shared ones):
#   RATE=1000  SECS=5  ROUNDS=3  POLL=20ms  CONNECTIONS=128  PEAK_SECS=5 (0 skips the peak)
#   WORKERS=2   the sidecars' --worker-threads
# Pinning (PIN=split): mcp-load alone on CPU 0 (it spins before each send), the sidecars and
# the fixture on CPU 1.
# Sourced after common.sh, which reads the variables it sets (SC2034 cannot see across files).
# shellcheck disable=SC2034,SC2153

RATE="${RATE:-1000}"
SECS="${SECS:-5}"
ROUNDS="${ROUNDS:-3}"
POLL="${POLL:-20ms}"
CONNECTIONS="${CONNECTIONS:-128}"
PEAK_SECS="${PEAK_SECS:-5}"
SIDECAR_WORKERS="${WORKERS:-2}"
for v in RATE SECS ROUNDS CONNECTIONS SIDECAR_WORKERS; do require_uint "$v" 1; done
require_uint PEAK_SECS 0
require_duration POLL
TARGETS=(live memory redb)

install_missing curl jq taskset ss
build_binaries
if [[ "$PIN" == split ]]; then FIXTURE_CPUS="${FIXTURE_CPUS-1}"; fi
pin_layout
bench_workdir
# The durable store must be on a real disk: the temporary directory may be a tmpfs.
STORE_DIR="$TARGET_DIR/bench-jobs-store.$$"
rm -rf "$STORE_DIR"; mkdir -p "$STORE_DIR"
CLEANUP_EXTRA="rm -rf '$STORE_DIR'"
start_fixture

declare -A URL PID ADMIN
for t in "${TARGETS[@]}"; do
  port=$(free_port); admin=$(free_port)
  URL[$t]="http://127.0.0.1:$port/mcp"; ADMIN[$t]="http://127.0.0.1:$admin"
  case "$t" in
    live) jobs=$'[jobs]\nenabled = false' ;;
    memory) jobs=$'[jobs]\nstore = "memory"\nmax_queued = 1000000' ;;
    redb) jobs=$'[jobs]\n'"data_dir = \"$STORE_DIR\""$'\nmax_queued = 1000000' ;;
  esac
  sidecar_config "$WORK/$t.toml" "$port" "$admin" "$jobs"
  start_sidecar "$t" "$WORK/$t.toml" warn
  PID[$t]=$STARTED_PID
done

# The disk's own durable-write latency, the floor of a durable submission's: 200 synchronous
# 4 KiB writes (O_DSYNC) where the store lives.
dsync=$(dd if=/dev/zero of="$STORE_DIR/dsync-probe" bs=4k count=200 oflag=dsync 2>&1 | awk '/copied/ { printf "%.3f", $(NF - 3) * 1000 / 200 }' || true)
rm -f "$STORE_DIR/dsync-probe"

jobs_of() { JOBS=(); [[ "$1" == live ]] || JOBS=(--jobs "$POLL"); }
step "steady: mcp-load --rate $RATE --jobs $POLL, ${SECS}s per case and round (+1 s warm-up), $ROUNDS round(s); pinning: mcp-load ${LOAD_CPUS:-any}, sidecars + fixture ${PROXY_CPUS:-any}"
for ((r = 1; r <= ROUNDS; r++)); do
  for ((k = 0; k < ${#TARGETS[@]}; k++)); do
    t="${TARGETS[$(((k + r - 1) % ${#TARGETS[@]}))]}"
    jobs_of "$t"; alive; wait_quiet
    STEP="steady $t, round $r"
    load "$WORK/steady-$t-$r.json" "${URL[$t]}" --rate "$RATE" --duration "${SECS}s" --warmup 1s "${JOBS[@]}"
    log "$(jq -r --arg t "$t" --arg r "$r" '"steady \($t) round \($r): p50 \(.latency_ms.p50) ms, p99 \(.latency_ms.p99) ms; completion p50 \(.completion_ms.p50) ms"' "$WORK/steady-$t-$r.json")"
    if ((PEAK_SECS > 0)); then
      wait_quiet
      STEP="peak $t, round $r"
      load "$WORK/peak-$t-$r.json" "${URL[$t]}" --concurrency "$CONNECTIONS" --duration "${PEAK_SECS}s" "${JOBS[@]}"
      log "$(jq -r --arg t "$t" --arg r "$r" '"peak \($t) round \($r): \(.rps | floor) jobs/s"' "$WORK/peak-$t-$r.json")"
    fi
  done
done
STEP="merging each case's rounds"
for t in "${TARGETS[@]}"; do
  "$LOAD_BIN" merge "$WORK/steady-$t"-*.json --out "$WORK/steady-$t.json" >/dev/null || die "mcp-load merge failed for $t"
done

# Every accepted job reached the engine: none refused.
sleep 2
for t in memory redb; do log "$t operator view: $(curl -s "${ADMIN[$t]}/jobs")"; done
refused=$(curl -s "${ADMIN[redb]}/metrics" | awk '/^mcp_sidecar_jobs_refused_total/ { s += $2 } END { print s + 0 }')
[[ "$refused" == 0 ]] || { log "the redb sidecar refused $refused submissions"; FAILED=1; }
log "store size: $(du -sh "$STORE_DIR" | cut -f1)"
for t in "${TARGETS[@]}"; do keep_sidecar_problems "$t"; done

STEP="the report"
echo
report_header "Job submission: time to 202 and jobs/s (scripts/bench.sh jobs)"
echo "steady: mcp-load --rate $RATE --jobs $POLL, ${SECS}s x $ROUNDS rounds per case (merged); peak: --concurrency $CONNECTIONS --jobs $POLL for ${PEAK_SECS}s per round (median); sidecars --worker-threads $SIDECAR_WORKERS; pinning: mcp-load ${LOAD_CPUS:-any}, servers ${PROXY_CPUS:-any}"
echo
printf '%-20s %8s %8s %8s %9s %13s %14s %13s %13s\n' case "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "done p50 ms" "peak per s" "p50 / live" "p99 / live"
declare -A NAME=([live]="baseline: live 200" [memory]="jobs (memory): 202" [redb]="jobs (redb): 202")
b50=$(report_field "$WORK/steady-live.json" .latency_ms.p50); b99=$(report_field "$WORK/steady-live.json" .latency_ms.p99)
for t in "${TARGETS[@]}"; do
  peak="-"
  if ((PEAK_SECS > 0)); then
    peak=$(for f in "$WORK/peak-$t"-*.json; do report_field "$f" '.rps | floor'; done | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  fi
  jq -r --arg name "${NAME[$t]}" --arg peak "$peak" --argjson b50 "$b50" --argjson b99 "$b99" \
    '[$name, .latency_ms.p50, .latency_ms.p90, .latency_ms.p99, .latency_ms.p999, .completion_ms.p50, $peak, .latency_ms.p50 / $b50, .latency_ms.p99 / $b99] | @tsv' \
    "$WORK/steady-$t.json" | awk -F'\t' '{ printf "%-20s %8.3f %8.3f %8.3f %9.3f %13.3f %14s %13.2f %13.2f\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }'
done
echo "disk under the store: one synchronous 4 KiB write (O_DSYNC) takes ${dsync:-?} ms on average"
jq -r --arg peak "${peak:-0}" '"redb: p99 \(.latency_ms.p99) ms (target < 2 ms: \(if .latency_ms.p99 < 2 then "met" else "NOT met" end)), peak \($peak) jobs/s (target >= 2000: \(if ($peak | tonumber? // 0) >= 2000 then "met" else "NOT met" end))"' "$WORK/steady-redb.json"
echo
finish "no error answers, no job refused"
