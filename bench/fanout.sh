#!/usr/bin/env bash
# Fan-out benchmark: one hub (release build, default config but for the
# per-address connection cap, raised above WATCHERS: every watcher comes
# from 127.0.0.1; loopback ports),
# WATCHERS SSE watchers on /v1/readings, RATE readings/s published over MQTT
# for SECONDS; prints latency p50/p99/max, events delivered, hub CPU and RSS.
# usage: bench/fanout.sh [WATCHERS] [RATE] [SECONDS] [MODE: readings, watch-latest, watch-latest-live, poll-latest] [SERIES]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
watchers=${1:-1000}; rate=${2:-1000}; secs=${3:-10}; mode=${4:-readings}; series=${5:-1}
cd "$root"
cargo build --release --bins --quiet
cargo build --release -p telltale-tests --bin fanout --quiet
work=$(mktemp -d)
trap 'kill $hp 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
mqtt=$(free_port); http=$(free_port)
printf 'data_dir = "%s"\n[broker]\nlisten = "127.0.0.1:%s"\n[api]\nlisten = "127.0.0.1:%s"\nmax_connections_per_ip = %s\n' \
  "$work/data" "$mqtt" "$http" $((watchers + 100)) > "$work/hub.toml"
"$root/target/release/telltale-hub" run --config "$work/hub.toml" 2> "$work/hub.log" & hp=$!
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$http) 2>/dev/null && break; sleep 0.1; done
"$root/target/release/fanout" "$http" "$mqtt" "$hp" "$watchers" "$rate" "$secs" "$mode" "$series"
