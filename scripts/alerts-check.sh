#!/usr/bin/env bash
# Checks the Prometheus alert rules in deploy/prometheus/: `promtool check rules` (syntax,
# PromQL, templates), `promtool check config` on the example scrape config, and
# `promtool test rules` (each alert's firing and quiet cases in alerts_test.yml); and the PromQL
# of the Grafana dashboard (deploy/grafana/mcp-sidecar.json), checked as rules (needs python3).
#
# promtool comes with Debian's `prometheus` package; it is installed when missing (CI runs as
# root; elsewhere through sudo when there is one). Set PROMTOOL to use another binary.
set -euo pipefail
cd "$(dirname "$0")/.."

promtool="${PROMTOOL:-}"
if [[ -z "$promtool" ]]; then
  if command -v promtool >/dev/null 2>&1; then
    promtool="$(command -v promtool)"
  else
    echo "alerts-check: promtool not found; installing Debian's prometheus package" >&2
    sudo=""
    if [[ "$(id -u)" != 0 ]]; then
      if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
      else
        echo "alerts-check: not root and no sudo: install promtool (Debian: apt-get install prometheus) or set PROMTOOL" >&2
        exit 1
      fi
    fi
    # The package's service is not wanted, only its tools: no daemon is started in a container
    # (no systemd), and policy-rc.d keeps it so elsewhere.
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    promtool="$(command -v promtool || echo /usr/bin/promtool)"
  fi
fi

"$promtool" --version 2>&1 | head -1
cd deploy/prometheus
"$promtool" check rules alerts.yml
"$promtool" check config --syntax-only prometheus.yml
"$promtool" test rules alerts_test.yml

# The dashboard's queries must parse too: each becomes a recording rule of a scratch rules file
# (Grafana's variables replaced by what they stand for), which promtool checks.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 - ../grafana/mcp-sidecar.json > "$scratch/dashboard-rules.yml" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
exprs = []
def walk(panels):
    for p in panels:
        walk(p.get("panels", []))
        exprs.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
walk(dash["panels"])
if not exprs:
    sys.exit("no queries in the dashboard")
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$job", ".*").replace("$instance", ".*").replace("$upstream", ".*")
    print(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(e)}")
PY
echo "Checking the dashboard's queries"
"$promtool" check rules "$scratch/dashboard-rules.yml"
