#!/usr/bin/env bash
# Rate-limit benchmark: one hub (release build, default config but for the
# token rate, loopback ports), a "storm" token flooding GET /v1/latest from
# STORM_TASKS connections for SECONDS while a "calm" token makes
# CALM_PER_SEC requests a second; prints the calm token's latency alone and
# under the storm, and what the storm got.
# usage: bench/ratelimit.sh [SECONDS] [STORM_TASKS] [CALM_PER_SEC]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}; tasks=${2:-16}; per_sec=${3:-20}
cd "$root"
cargo build --release --bins --quiet
cargo build --release -p telltale-tests --bin storm --quiet
work=$(mktemp -d)
trap 'kill $hp 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mqtt=$(free_port); http=$(free_port)
printf 'data_dir = "%s"\n[broker]\nlisten = "127.0.0.1:%s"\n[api]\nlisten = "127.0.0.1:%s"\n' "$work/data" "$mqtt" "$http" > "$work/hub.toml"
hub="$root/target/release/telltale-hub"
storm=$("$hub" token create --config "$work/hub.toml" --name storm --scope read 2>/dev/null)
calm=$("$hub" token create --config "$work/hub.toml" --name calm --scope read 2>/dev/null)
RUST_LOG=error "$hub" run --config "$work/hub.toml" 2> "$work/hub.log" & hp=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$http) 2>/dev/null && break; sleep 0.1; done
mosquitto_pub -h 127.0.0.1 -p "$mqtt" -q 1 -t telltale/v1/devices/bench-1/telemetry -m '[{"n":"temp","u":"Cel","v":21.5}]'
"$root/target/release/storm" "$http" "$storm" "$calm" "$secs" "$tasks" "$per_sec"
echo "hub RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$hp/status)"
