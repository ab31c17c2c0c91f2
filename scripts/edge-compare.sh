#!/usr/bin/env bash
# Replays the attack table of issue 14 (tests/src/attack/rows/, the rows tests/tests/attacks.rs
# asserts) through the sidecar, HAProxy and nginx, each in front of its own byte-capturing
# backend, and prints one line per row: what the table expects of the sidecar, and what each proxy
# answered and let through to its backend (see tests/examples/edge_compare.rs for how to read a
# cell). Not run in CI: it needs the Debian haproxy and nginx packages.
#
# HAProxy and nginx are configured as close to the sidecar's table setup as they allow: both
# listen on loopback, forward everything to their backend with the path unchanged, answer 401 to
# a request under /mcp without `Authorization: Bearer <key>` (the sidecar's protected mount),
# refuse bodies over 4 MiB (the sidecar's max_body_bytes), and keep backend connections alive.
#
# Usage: scripts/edge-compare.sh [ROW_SUBSTRING]
# Environment: KEEP_WORKDIR=1 keeps the configs and logs; INSTALL=1 installs the packages with
# apt-get when missing; EDGE_SHOW_BYTES=1 prints the bytes each backend received under each row.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KEY="attack-table-key-0123456789" # mcp_e2e_tests::attack::API_KEY
WORK="$(mktemp -d /tmp/edge-compare.XXXXXX)"
PIDS=()

log() { echo "edge-compare: $*" >&2; }
die() { log "error: $*"; exit 1; }

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [[ "${KEEP_WORKDIR:-0}" == 1 || $rc -ne 0 ]]; then
    log "configs and logs kept in $WORK"
  else
    rm -rf "$WORK"
  fi
}
trap cleanup EXIT INT TERM

for tool in haproxy nginx; do
  if ! command -v "$tool" >/dev/null && ! [[ -x "/usr/sbin/$tool" ]]; then
    [[ "${INSTALL:-0}" == 1 ]] || die "$tool not installed (apt-get install -y haproxy nginx, or INSTALL=1)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy nginx
  fi
done
export PATH="$PATH:/usr/sbin"

# free_port: a loopback TCP port nothing listens on (and not handed out before).
USED=" "
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 12768))
    [[ "$USED" == *" $p "* ]] && continue
    if [[ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]]; then
      USED+="$p "
      echo "$p"
      return 0
    fi
  done
  die "no free port"
}

HAPROXY_PORT=$(free_port)
HAPROXY_BACKEND=$(free_port)
NGINX_PORT=$(free_port)
NGINX_BACKEND=$(free_port)

cat >"$WORK/haproxy.cfg" <<EOF
global
  maxconn 1000
defaults
  mode http
  timeout connect 5s
  timeout client 10s
  timeout server 10s
  timeout http-request 10s
frontend edge
  bind 127.0.0.1:$HAPROXY_PORT
  http-request deny deny_status 401 if { path_beg /mcp } !{ req.hdr(authorization) -m str "Bearer $KEY" }
  http-request deny deny_status 413 if { req.hdr_val(content-length) gt 4194304 }
  default_backend capture
backend capture
  server b 127.0.0.1:$HAPROXY_BACKEND
EOF
haproxy -c -q -f "$WORK/haproxy.cfg" || die "invalid haproxy config"

mkdir -p "$WORK/nginx/logs" "$WORK/nginx/tmp"
chmod -R 777 "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log info;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  client_max_body_size 4m;
  upstream capture {
    server 127.0.0.1:$NGINX_BACKEND;
    keepalive 8;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    location /mcp {
      if (\$http_authorization != "Bearer $KEY") { return 401; }
      proxy_pass http://capture;
    }
    location / {
      proxy_pass http://capture;
    }
  }
}
EOF
nginx -t -q -p "$WORK/nginx" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx.conf" || die "invalid nginx config"

log "building the comparison (cargo build -p mcp-e2e-tests --example edge_compare)"
(cd "$ROOT" && cargo build -q -p mcp-e2e-tests --example edge_compare)

haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
nginx -p "$WORK/nginx" -e "$WORK/nginx/logs/error.log" -c "$WORK/nginx.conf" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)

for port in "$HAPROXY_PORT" "$NGINX_PORT"; do
  for ((i = 0; i < 50; i++)); do
    [[ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]] && break
    sleep 0.1
  done
  [[ -n "$(ss -Htln "( sport = :$port )" 2>/dev/null)" ]] || die "nothing listens on $port (see $WORK)"
done

log "haproxy $(haproxy -v | head -1 | awk '{print $3}'), nginx $(nginx -v 2>&1 | cut -d/ -f2)"
EDGE_HAPROXY="127.0.0.1:$HAPROXY_PORT" EDGE_HAPROXY_BACKEND="127.0.0.1:$HAPROXY_BACKEND" \
EDGE_NGINX="127.0.0.1:$NGINX_PORT" EDGE_NGINX_BACKEND="127.0.0.1:$NGINX_BACKEND" \
  "$ROOT/target/debug/examples/edge_compare" "${1:-}"
