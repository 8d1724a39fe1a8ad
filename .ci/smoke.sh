#!/usr/bin/env bash
# Smoke run of a hub and an agent binary, possibly for another architecture
# under qemu-user: both print their version, the hub starts (loopback, port 0),
# the agent publishes, a reading is stored and read back over HTTP, and both
# stop on SIGTERM with status 0.
#
#   .ci/smoke.sh NAME BIN_DIR [RUNNER...]
#   .ci/smoke.sh aarch64 target/aarch64-unknown-linux-gnu/release qemu-aarch64-static -L /usr/aarch64-linux-gnu
# Run natively (no RUNNER), it also prints the hub's idle RSS 2 s after it is
# ready, and fails when that is MAX_IDLE_RSS_MIB or more (if set).
set -euo pipefail

name=$1 bin_dir=$2
shift 2
runner=("$@")
work=$(mktemp -d)
hub_pid= agent_pid=
cleanup() {
  for pid in $agent_pid $hub_pid; do kill -9 "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "smoke $name: $*" >&2
  for f in "$work"/*.log; do echo "--- $f" >&2; tail -n 20 "$f" >&2; done
  exit 1
}

"${runner[@]}" "$bin_dir/telltale-hub" --version
"${runner[@]}" "$bin_dir/telltale-agent" --version

cat > "$work/hub.toml" <<EOF
data_dir = "$work/hub"
[broker]
listen = "127.0.0.1:0"
[api]
listen = "127.0.0.1:0"
EOF
RUST_LOG=info "${runner[@]}" "$bin_dir/telltale-hub" run --config "$work/hub.toml" 2> "$work/hub.log" &
hub_pid=$!
ready=
for _ in $(seq 600); do
  if ready=$(grep -m1 'hub ready' "$work/hub.log"); then break; fi
  kill -0 "$hub_pid" 2>/dev/null || fail "the hub exited"
  sleep 0.1
done
[ -n "$ready" ] || fail "the hub was not ready within 60 s"
# Idle memory after start, natively only (under qemu it would be qemu's).
if [ ${#runner[@]} -eq 0 ]; then
  sleep 2
  rss_kib=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$hub_pid/status")
  echo "smoke $name: hub idle RSS $((rss_kib / 1024)) MiB ($rss_kib KiB)"
  if [ -n "${MAX_IDLE_RSS_MIB:-}" ] && [ "$rss_kib" -ge $((MAX_IDLE_RSS_MIB * 1024)) ]; then
    fail "idle RSS $rss_kib KiB, over $MAX_IDLE_RSS_MIB MiB"
  fi
fi
mqtt=$(sed -E 's/.*mqtt=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$ready")
http=$(sed -E 's/.*http=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$ready")

device="smoke-$name"
cat > "$work/agent.toml" <<EOF
device_id = "$device"
data_dir = "$work/agent"
[mqtt]
host = "127.0.0.1"
port = $mqtt
[batch]
max_readings = 10
interval_ms = 200
[[source]]
kind = "simulated"
metric = "temp"
unit = "Cel"
interval_ms = 100
EOF
"${runner[@]}" "$bin_dir/telltale-agent" run --config "$work/agent.toml" 2> "$work/agent.log" &
agent_pid=$!

url="http://127.0.0.1:$http/v1/readings?device=$device&limit=5"
body=
for _ in $(seq 600); do
  body=$(curl -s --max-time 5 "$url" || true)
  if grep -q "\"device\":\"$device\"" <<<"$body"; then break; fi
  body=
  kill -0 "$agent_pid" 2>/dev/null || fail "the agent exited"
  sleep 0.1
done
[ -n "$body" ] || fail "no reading of $device over HTTP within 60 s"
echo "smoke $name: read back $(grep -oE '"value":[-0-9.eE+]+' <<<"$body" | head -n 3 | tr '\n' ' ')"

kill -TERM "$agent_pid"
wait "$agent_pid" || fail "the agent exited with $?"
agent_pid=
kill -TERM "$hub_pid"
wait "$hub_pid" || fail "the hub exited with $?"
hub_pid=
echo "smoke $name: ok"
