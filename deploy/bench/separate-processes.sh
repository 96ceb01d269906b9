#!/usr/bin/env bash
# Measures the bridge as it runs in production: `ssobridge serve` on Redis, in a process of its
# own, loaded by `ssobridge bench --bridge-url` through the GitLab emulator, every part on this
# machine. It prints bench's report, whose memory line is the bridge process's own (from its
# /metrics), and its Redis round trips per sign-in.
#
#   deploy/bench/separate-processes.sh [bench flags...]   e.g. --count 100000, or --duration 10s
#
# Needs redis-server on PATH; it starts one of its own on a free port, and stops everything after.
# It prints the bridge's operators' listener (loopback, no token) when the bridge is up, so that
# its profiles (/debug/pprof/) can be taken while bench loads it; ADMIN_PORT chooses its port.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no answer at $1" >&2; exit 1; }

go build -o "$work/ssobridge" ./cmd/ssobridge
redis_port=$(free_port) bridge_port=$(free_port) admin_port=${ADMIN_PORT:-$(free_port)} gitlab_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >"$work/redis.log" 2>&1 &
pids+=($!)
export SSOBRIDGE_REDIS_URL="redis://127.0.0.1:$redis_port/0"
bridge="http://127.0.0.1:$bridge_port" gitlab="http://127.0.0.1:$gitlab_port"
client_id=bench-bridge client_secret=$("$work/ssobridge" genkey)

"$work/ssobridge" gitlab-emulator --emulator-listen "127.0.0.1:$gitlab_port" --emulator-public-url "$gitlab" \
  --emulator-client-id "$client_id" --emulator-client-secret "$client_secret" \
  --emulator-redirect-uri "$bridge/oauth/callback" >"$work/gitlab.log" 2>&1 &
pids+=($!)
wait_http "$gitlab/.well-known/openid-configuration"

# Every sign-in of the load comes from one address: the limits stay on, so that their cost is
# measured, with bounds the load never reaches.
limits=(--rate-limit-sign-in 1000000000/1m --max-pending-per-address 1000000000 --max-pending 1000000000)
"$work/ssobridge" serve --public-url "$bridge" --listen "127.0.0.1:$bridge_port" --admin-listen "127.0.0.1:$admin_port" \
  --gitlab-url "$gitlab" --gitlab-client-id "$client_id" --gitlab-client-secret "$client_secret" \
  --encryption-key "$("$work/ssobridge" genkey)" --log-level warn "${limits[@]}" >"$work/bridge.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$admin_port/readyz"
echo "separate-processes.sh: the bridge's operators' listener is http://127.0.0.1:$admin_port (e.g. curl 'http://127.0.0.1:$admin_port/debug/pprof/profile?seconds=8' -o cpu.pprof)" >&2

site=http://127.0.0.1:1
# Registered as an administrator registers Mattermost (no refresh tokens), as k6.sh does.
app=$("$work/ssobridge" apps create --name Mattermost --mattermost-url "$site" --trusted --public-url "$bridge" --json)
app_id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$app")
app_secret=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["secret"])' <<<"$app")

"$work/ssobridge" bench --bridge-url "$bridge" --app-id "$app_id" --app-secret "$app_secret" --site-url "$site" \
  --admin-url "http://127.0.0.1:$admin_port" --redis-url "$SSOBRIDGE_REDIS_URL" "$@"
