# Sourced by scripts/bench.sh and scripts/bench-limits.sh: instructions per request of a server
# under valgrind's callgrind. Uses the caller's WORK, PIDS, LUA, BODY, CG_SECS, FAILED, log, die
# and an associative array IR_PER_REQ (declare -A IR_PER_REQ before calling).

# cg_count NAME PORT CMD...: runs CMD under callgrind (instrumentation off), waits until
# http://127.0.0.1:PORT/mcp answers a tools/call with 200, warms it up for 3 s, then counts the
# instructions of CG_SECS seconds of wrk -c4 load and sets IR_PER_REQ[NAME] to their number per
# answered request. Start-up and warm-up are not counted.
cg_count() {
  local name="$1" port="$2" pid reqs ir i code url; shift 2
  url="http://127.0.0.1:$port/mcp"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$WORK/cg-$name.out" "$@" \
    >"$WORK/cg-$name.log" 2>&1 &
  pid=$!; PIDS+=("$pid")
  for ((i = 0; i < 300; i++)); do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 -X POST \
      -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
      --data "$BODY" "$url" 2>/dev/null) || true
    [[ "$code" == 200 ]] && break
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
  IR_PER_REQ[$name]=$((ir / reqs))
  log "callgrind $name: $reqs requests, $ir instructions, ${IR_PER_REQ[$name]} per request"
}
