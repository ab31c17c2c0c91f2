#!/usr/bin/env bash
# Builds the container image of deploy/Dockerfile from the repository root, and exports the
# binary's debug info (the Dockerfile's `debuginfo` stage) to target/dist/mcp-sidecar.debug.
#
#   scripts/docker-build.sh [TAG]     (default tag: mcp-sidecar:dev)
#
# Needs a Docker daemon with BuildKit (Docker 23+; the base images come from Docker Hub and
# gcr.io). Where there is none (no docker command, or no daemon answering), it says so and exits
# 0 without building: a machine without Docker can still run CI (scripts/deploy-check.sh lints
# and checks the Dockerfile there). REQUIRE_DOCKER=1 makes that an error instead.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
tag="${1:-mcp-sidecar:dev}"

no_docker() {
  if [ "${REQUIRE_DOCKER:-0}" = 1 ]; then
    echo "docker-build: $1 (REQUIRE_DOCKER=1)" >&2
    exit 1
  fi
  echo "docker-build: $1; the image was NOT built. Build it where Docker runs:"
  echo "  docker build -f deploy/Dockerfile -t $tag ."
  exit 0
}
command -v docker >/dev/null 2>&1 || no_docker "no docker command on this machine"
docker info >/dev/null 2>&1 || no_docker "docker is installed but no daemon answers ($(docker context show 2>/dev/null || echo default) context)"

export DOCKER_BUILDKIT=1
docker build -f deploy/Dockerfile -t "$tag" .
docker build -f deploy/Dockerfile --target debuginfo --output type=local,dest=target/dist .
echo "docker-build: built $tag; its binary's debug info: target/dist/mcp-sidecar.debug"
docker image inspect "$tag" --format 'size: {{.Size}} bytes, user: {{.Config.User}}, health check: {{.Config.Healthcheck.Test}}'
