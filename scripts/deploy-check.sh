#!/usr/bin/env bash
# Checks everything under deploy/ so none of it rots (CI runs it; about 20 s once the tools are
# installed):
#   - the Kubernetes manifests against the API's JSON schemas (kubernetes-validate, strict: an
#     unknown or misspelt field fails), for the oldest supported Kubernetes (1.30: the preStop
#     `sleep` action) and the newest the validator knows; a deliberately broken copy must fail;
#   - the Dockerfile with hadolint, and its structure (scripts/deploy_check.py);
#   - that the manifests, the image and the unit agree with their sidecar configs (ports, probe
#     paths, grace periods, env for every `${ENV}`, the job store's volume), and that each of
#     those checks fails on a copy of deploy/ with a mistake planted for it;
#   - every shipped sidecar config, the ConfigMap's extracted, with `mcp-sidecar check`, run by
#     the stripped binary that scripts/dist.sh makes (split from the debug build: the split is
#     checked too: no debug info left, the same build ID, the debuglink);
#   - the systemd unit with `systemd-analyze verify` (any warning fails), where systemd-analyze
#     exists; skipped with a message otherwise.
# The tools come from PyPI, pinned in deploy/requirements.txt, into <repo>/.venv/deploy-tools.
# Building the image itself: scripts/docker-build.sh (needs a Docker daemon).
# Environment: SKIP_BUILD=1 - check target/debug/mcp-sidecar as built, do not build it.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { echo "deploy-check: $*"; }
fail() { echo "deploy-check: FAILED: $*" >&2; exit 1; }

# Tools: a venv of their own, rebuilt when the pins or the interpreter change.
venv="$repo/.venv/deploy-tools"
requirements="$repo/deploy/requirements.txt"
python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || fail "no $python (set PYTHON=/path/to/python3)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' \
  || fail "$python is older than 3.11 (deploy_check.py reads TOML with tomllib)"
if [ -d "$venv" ] && ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
  rm -rf "$venv"
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
wanted="$( { cat "$requirements"; "$venv/bin/python" -VV; } | sha256sum | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  say "installing the pinned tools (deploy/requirements.txt) into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$wanted" >"$stamp"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --- Kubernetes manifests: strict schema validation.
manifests=()
for f in deploy/kubernetes/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
newest="$("$venv/bin/python" -c '
import kubernetes_validate.utils as u
print(max(u.all_versions(), key=lambda v: tuple(map(int, v.split(".")))))' 2>/dev/null || echo 1.37.0)"
for version in 1.30.0 "$newest"; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}" \
    || fail "the Kubernetes manifests do not validate against $version"
done
say "${#manifests[@]} Kubernetes manifests valid (strict) against 1.30.0 and $newest"
# The validator must see a misspelt field: a broken copy of the Deployment has to fail.
sed 's/livenessProbe:/livenessProbes:/' deploy/kubernetes/deployment.yaml >"$work/broken.yaml"
if "$venv/bin/kubernetes-validate" --strict --quiet -k 1.30.0 "$work/broken.yaml" >/dev/null 2>&1; then
  fail "kubernetes-validate accepted a Deployment with a misspelt field"
fi
if command -v kubectl >/dev/null 2>&1; then
  kubectl kustomize deploy/kubernetes >"$work/rendered.yaml" || fail "kubectl kustomize deploy/kubernetes"
  say "kustomization renders ($(grep -c '^kind:' "$work/rendered.yaml") resources)"
else
  say "no kubectl: kustomization.yaml not rendered (its resources are validated above)"
fi

# --- Dockerfile: hadolint, then structure and consistency with the configs.
"$venv/bin/hadolint" deploy/Dockerfile || fail "hadolint deploy/Dockerfile"
say "hadolint: deploy/Dockerfile clean"
mkdir -p "$work/configs"
"$venv/bin/python" scripts/deploy_check.py "$repo" "$work/configs" \
  || fail "deploy/ disagrees with its sidecar configs (above)"
say "manifests, image and unit agree with their sidecar configs"
# Each check must catch its mistake: a copy of deploy/ with one mistake at a time must fail,
# naming it. (file | sed expression | what the failure says)
mutations=(
  "kubernetes/deployment.yaml|s/terminationGracePeriodSeconds: 50/terminationGracePeriodSeconds: 30/|terminationGracePeriodSeconds 30"
  "kubernetes/deployment.yaml|s/- name: MCP_API_KEY/- name: MCP_API_KEY_X/|references \${MCP_API_KEY}"
  "kubernetes/deployment.yaml|s#path: /readyz#path: /healthz#|readinessProbe is not GET /readyz"
  "kubernetes/configmap.yaml|s/addr = \"0.0.0.0:9090\"/addr = \"0.0.0.0:9091\"/|port \`admin\`"
  "kubernetes/configmap.yaml|s#http://127.0.0.1:8001/#http://10.0.0.1:8001/#|not on loopback"
  "Dockerfile|s/^USER 65532:65532/USER root/|runtime user is root"
  "Dockerfile|s/^EXPOSE 8080 9090/EXPOSE 8080/|EXPOSE does not match"
  "systemd/mcp-sidecar.service|s/^TimeoutStopSec=45s/TimeoutStopSec=20s/|TimeoutStopSec does not exceed"
)
for m in "${mutations[@]}"; do
  IFS='|' read -r file expr says <<<"$m"
  rm -rf "$work/mutant" && mkdir -p "$work/mutant/configs" && cp -r deploy "$work/mutant/"
  sed -i "$expr" "$work/mutant/deploy/$file"
  cmp -s "deploy/$file" "$work/mutant/deploy/$file" && fail "self-test: '$expr' changed nothing in deploy/$file"
  if out="$("$venv/bin/python" scripts/deploy_check.py "$work/mutant" "$work/mutant/configs" 2>&1)"; then
    fail "self-test: deploy_check.py accepted deploy/$file with '$expr'"
  fi
  grep -qF -- "$says" <<<"$out" || fail "self-test: deploy/$file with '$expr' failed without saying '$says': $out"
done
say "deploy_check.py catches each of ${#mutations[@]} planted mistakes"

# --- The deployable binary's shape (scripts/dist.sh on the quick debug build) and the configs.
# SKIP_BUILD=1 takes the debug binary already built (CI: the test run's).
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  [ -x target/debug/mcp-sidecar ] || fail "target/debug/mcp-sidecar is not built (drop SKIP_BUILD)"
else
  cargo build --quiet -p mcp-sidecar --bin mcp-sidecar
fi
PROFILE=dev SKIP_BUILD=1 DIST_DIR="$work/dist" bash scripts/dist.sh >/dev/null
bin="$work/dist/mcp-sidecar"
debug="$work/dist/mcp-sidecar.debug"
sections() { readelf -S -W "$1" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\./) { print $i; break } }'; }
# Debug info and the symbol table; not .debug_gdb_scripts, a loaded section (gdb's pretty
# printers) that strip keeps.
debug_sections() { sections "$1" | grep -E '^\.(debug_|symtab$)' | grep -vx '.debug_gdb_scripts' || true; }
build_id() { readelf -n "$1" 2>/dev/null | awk '/Build ID/ { print $3 }'; }
leftover="$(debug_sections "$bin" | tr '\n' ' ')"
[ -z "$leftover" ] || fail "scripts/dist.sh left debug info or symbols in the binary: $leftover"
sections "$debug" | grep -qx '.debug_info' || fail "the .debug file has no .debug_info"
sections "$debug" | grep -qx '.symtab' || fail "the .debug file has no symbol table"
id="$(build_id "$bin")"
if [ -z "$id" ] || [ "$id" != "$(build_id "$debug")" ]; then
  fail "the binary and its .debug file do not share a build ID"
fi
readelf -p .gnu_debuglink "$bin" | grep -q 'mcp-sidecar.debug' || fail "no .gnu_debuglink to mcp-sidecar.debug"
"$bin" --version >/dev/null || fail "the stripped binary does not run"
say "scripts/dist.sh: stripped binary + .debug file (same build ID, debuglink)"

dummy_env=(MCP_API_KEY=deploy-check-0123456789abcdef0123456789 MCP_PUBLIC_URL=https://mcp.example.com
  MCP_UPSTREAM_URL=http://127.0.0.1:8000/mcp)
checked=0
for config in "$work"/configs/*.toml; do
  checked=$((checked + 1))
  env "${dummy_env[@]}" "$bin" check --config "$config" >/dev/null \
    || fail "mcp-sidecar check rejects the config of $(basename "$config" .toml | sed 's/-sidecar$//')"
done
say "mcp-sidecar check: $checked shipped configs valid (the ConfigMap's extracted)"

# --- systemd unit.
if command -v systemd-analyze >/dev/null 2>&1; then
  # verify wants the ExecStart binaries to exist: the unit is checked with this build's.
  sed "s#/usr/local/bin/mcp-sidecar#$bin#g" deploy/systemd/mcp-sidecar.service >"$work/mcp-sidecar.service"
  out="$(systemd-analyze verify "$work/mcp-sidecar.service" 2>&1)" || fail "systemd-analyze verify: $out"
  # Unknown keys are only warnings to systemd-analyze (exit 0): any output fails here.
  [ -z "$out" ] || fail "systemd-analyze verify: $out"
  say "systemd-analyze verify: deploy/systemd/mcp-sidecar.service clean"
else
  say "SKIPPED: systemd-analyze not found; deploy/systemd/mcp-sidecar.service not verified"
fi
say "image build: not part of this check (a fat-LTO build of minutes): scripts/docker-build.sh"
say "ok"
