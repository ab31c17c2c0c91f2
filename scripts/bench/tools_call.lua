-- wrk script: POST an MCP `tools/call` of the fixture's `echo` tool (stateless Streamable HTTP).
-- The request mcp-load's bench sends (`--call 'echo {"text":"hi"}'`), for wrk: kept to compare
-- mcp-load with wrk (BENCHMARKS.md, "mcp-load against wrk"); scripts/bench.sh uses mcp-load.
-- At the end it prints one machine-readable line (BENCH_RESULT ...).

wrk.method = "POST"
wrk.path   = "/mcp"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}'

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d rps=%.2f p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f "
      .. "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, summary.bytes,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end
