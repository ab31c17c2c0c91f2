#!/usr/bin/env bash
# Runs the cargo-fuzz targets in proxy/fuzz: `scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]`
# (default 300 s each, every target). Builds once, runs each target for the given time from its
# committed seeds (proxy/fuzz/corpus/<target>) plus what earlier runs found
# (proxy/fuzz/target/corpus/<target>, where new inputs go, so the committed seeds stay as they
# are), then prints per target the executions, coverage (edges) and features libFuzzer reports.
# Exits non-zero if any target crashed; the input is in proxy/fuzz/artifacts/<target>/ and
# `cargo +nightly fuzz run <target> <file>` (in proxy/) replays it.
#
# Needs the nightly toolchain (`cargo +nightly`, for the sanitizer flags) and cargo-fuzz
# (`cargo install cargo-fuzz --locked`). FUZZ_BUILD_FLAGS adds cargo-fuzz build flags (e.g.
# `--debug-assertions` for overflow checks, `--sanitizer none` for speed).
set -euo pipefail
cd "$(dirname "$0")/../proxy"

seconds=${1:-300}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
  exit 2
fi
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (cargo-fuzz needs it): rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2
  exit 1
fi

read -r -a build_flags <<<"${FUZZ_BUILD_FLAGS:-}"
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# The dictionary each target's mutations draw tokens from.
dict_for() {
  case $1 in
    request_head | response_head | chunked_request | chunked_response) echo fuzz/dict/http.dict ;;
    mcp_classify) echo fuzz/dict/jsonrpc.dict ;;
    sse_scan) echo fuzz/dict/sse.dict ;;
    config_load) echo fuzz/dict/toml.dict ;;
    path_rule) echo fuzz/dict/path.dict ;;
    job_api_fields) echo fuzz/dict/job.dict ;;
    tasks_fields) echo fuzz/dict/jsonrpc.dict ;;
    traceparent) echo fuzz/dict/traceparent.dict ;;
  esac
}

echo "== building ${#targets[@]} fuzz targets"
cargo +nightly fuzz build "${build_flags[@]}"

summary=()
crashed=()
for target in "${targets[@]}"; do
  work=fuzz/target/corpus/$target
  mkdir -p "$work" "fuzz/artifacts/$target"
  log=fuzz/target/$target.log
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
  dict=$(dict_for "$target")
  if [ -n "$dict" ]; then
    args+=(-dict="$dict")
  fi
  echo "== $target (${seconds}s)"
  status=ok
  if ! cargo +nightly fuzz run "${build_flags[@]}" "$target" "$work" "fuzz/corpus/$target" -- "${args[@]}" >"$log" 2>&1; then
    status=CRASH
    crashed+=("$target")
    grep -E "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY|Test unit written" "$log" | head -n 8 || true
  fi
  runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)
  ft=$(grep -oE 'ft: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1 || true)
  corpus=$(find "$work" -type f | wc -l)
  summary+=("$(printf '%-18s %12s %8s %8s %8s  %s' "$target" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$status")")
done

echo
printf '%-18s %12s %8s %8s %8s  %s\n' target executions cov ft corpus result
printf '%s\n' "${summary[@]}"
if [ ${#crashed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${crashed[*]} (inputs in proxy/fuzz/artifacts/; logs in proxy/fuzz/target/*.log)" >&2
  exit 1
fi
