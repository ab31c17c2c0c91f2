#!/usr/bin/env bash
# The forwarding path's guard between two builds: user-space instructions per answered
# `tools/call echo` through each sidecar binary (callgrind, instrumentation on for the measured
# run only; mcp-load --concurrency 4 for 5 s after a 3 s warm-up; the release-built fixture as
# backend), ROUNDS rounds alternating A and B. Instructions, unlike req/s, are a figure other
# tenants of the machine cannot move, so a small difference is real.
#
# Usage: scripts/bench/ab-callgrind.sh SIDECAR_A SIDECAR_B [ROUNDS]   (default 3 rounds)
#   e.g. build the base in a worktree: git worktree add /tmp/base REV && (cd /tmp/base &&
#   cargo build --release -p mcp-sidecar); then cargo build --release -p mcp-sidecar
#   -p mcp-fixtures -p mcp-loadtest here and run this with both binaries.
# Needs valgrind (callgrind_control) and this tree's release mcp-fixture and mcp-load.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ $# -ge 2 ] || { sed -n '7,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
a="$1" b="$2" rounds="${3:-3}"
fixture="$repo/target/release/mcp-fixture" load="$repo/target/release/mcp-load"
for tool in valgrind callgrind_control "$fixture" "$load" "$a" "$b"; do
  command -v "$tool" >/dev/null 2>&1 || [ -x "$tool" ] || { echo "ab-callgrind: $tool missing" >&2; exit 1; }
done
work="$(mktemp -d "${TMPDIR:-/tmp}/ab-callgrind.XXXXXX")"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# one NAME BIN: prints the instructions per answered request of one round.
one() {
  local name="$1" bin="$2" fport port admin fx pid reqs ir i
  fport="$(free_port)" port="$(free_port)" admin="$(free_port)"
  "$fixture" --listen "127.0.0.1:$fport" >/dev/null 2>&1 & fx=$!; pids+=("$fx")
  RUST_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/cg.out" \
    "$bin" run --upstream "http://127.0.0.1:$fport/mcp" --listen "127.0.0.1:$port" \
    --admin "127.0.0.1:$admin" --worker-threads 1 >"$work/$name.log" 2>&1 & pid=$!; pids+=("$pid")
  for ((i = 0; i < 200; i++)); do
    curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/readyz" 2>/dev/null | grep -q 200 && break
    sleep 0.2
  done
  "$load" run "http://127.0.0.1:$port/mcp" --concurrency 4 --duration 3s --call 'echo {"text":"hi"}' \
    --out "$work/warm.json" >/dev/null 2>&1
  callgrind_control -i on "$pid" >/dev/null 2>&1
  "$load" run "http://127.0.0.1:$port/mcp" --concurrency 4 --duration 5s --call 'echo {"text":"hi"}' \
    --out "$work/m.json" >/dev/null 2>&1
  callgrind_control -i off "$pid" >/dev/null 2>&1
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  kill "$fx"; wait "$fx" 2>/dev/null || true
  reqs="$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$work/m.json")"
  ir="$(grep -o 'Collected : [0-9]*' "$work/$name.log" | tail -1 | grep -o '[0-9]*$')"
  [[ -n "$ir" && "$reqs" -gt 0 ]] || { echo "ab-callgrind: no count for $name (see $work/$name.log)" >&2; exit 1; }
  echo $((ir / reqs))
}

sum_a=0 sum_b=0
for ((r = 1; r <= rounds; r++)); do
  ia="$(one a "$a")"; ib="$(one b "$b")"
  sum_a=$((sum_a + ia)) sum_b=$((sum_b + ib))
  echo "round $r: A $ia, B $ib instructions per request"
done
python3 -c "import sys; a,b=int(sys.argv[1]),int(sys.argv[2]); print(f'mean: A {a}, B {b}, B/A {b/a:.4f} ({b-a:+d} per request)')" \
  "$((sum_a / rounds))" "$((sum_b / rounds))"
