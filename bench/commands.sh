#!/usr/bin/env bash
# Command round trip: one hub (release build, default config, loopback
# ports), one agent, and a WebSocket client sending COUNT `ping` commands one
# after the other; prints the round trip p50/p99/max (client → hub → agent →
# result → client).
# usage: bench/commands.sh [COUNT] [GAP_MS: pause between commands, default 100]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-500}
gap=${2:-100}
cd "$root"
cargo build --release --bins --quiet
cargo build --release -p telltale-tests --bin cmdbench --quiet
work=$(mktemp -d)
trap 'kill $hp $ap 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mqtt=$(free_port); http=$(free_port)
printf 'data_dir = "%s"\n[broker]\nlisten = "127.0.0.1:%s"\n[api]\nlisten = "127.0.0.1:%s"\n' "$work/data" "$mqtt" "$http" > "$work/hub.toml"
"$root/target/release/telltale-hub" run --config "$work/hub.toml" 2> "$work/hub.log" & hp=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$http) 2>/dev/null && break; sleep 0.1; done
cat > "$work/agent.toml" <<TOML
device_id = "bench-cmd"
data_dir = "$work/agent"
[mqtt]
host = "127.0.0.1"
port = $mqtt
[[source]]
kind = "simulated"
metric = "temp"
interval_ms = 1000
shape = "sine"
base = 20.0
amplitude = 1.0
period_secs = 60
TOML
"$root/target/release/telltale-agent" run --config "$work/agent.toml" 2> "$work/agent.log" & ap=$!
# Wait until the hub sees the agent online.
for _ in $(seq 1 100); do
  curl -s "http://127.0.0.1:$http/v1/devices/bench-cmd" | grep -q '"online":true' && break
  sleep 0.1
done
"$root/target/release/cmdbench" "$http" bench-cmd "$count" "$gap"
