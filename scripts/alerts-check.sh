#!/usr/bin/env bash
# Checks the Prometheus alert rules in deploy/prometheus/: `promtool check rules` (syntax,
# PromQL, templates), `promtool check config` on the example scrape config, and
# `promtool test rules` (each alert's firing and quiet cases in alerts_test.yml).
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
