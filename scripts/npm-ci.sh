#!/usr/bin/env bash
# Sourced by scripts/test-deps.sh and scripts/conformance.sh: `npm_ci DIR` runs `npm ci` in DIR,
# retrying a failed install twice (after 5 s, then 15 s) from a clean node_modules.
#
# Why: the registry fails now and then (a reset connection, a 5xx on one tarball), and one such
# failure used to fail a whole CI run in its first 20 s. A lockfile that is wrong fails all three
# attempts the same way, so retrying hides nothing; each failure prints npm's own error lines.
#
# Environment: NPM - the npm to use (default: npm).
npm_ci() {
  local dir="$1" attempt delay
  for attempt in 1 2 3; do
    if (cd "$dir" && "${NPM:-npm}" ci --no-audit --no-fund --loglevel=error); then
      return 0
    fi
    [ "$attempt" -lt 3 ] || break
    delay=$((attempt == 1 ? 5 : 15))
    echo "npm ci in $dir failed (attempt $attempt of 3); retrying in ${delay}s" >&2
    rm -rf "$dir/node_modules"
    sleep "$delay"
  done
  echo "npm ci in $dir failed three times; see the npm errors above" >&2
  return 1
}
