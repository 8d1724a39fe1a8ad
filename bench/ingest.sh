#!/usr/bin/env bash
# Ingest benchmark, side by side in one run:
#   peer      Mosquitto + hand-rolled Python subscriber into SQLite (../shared/peers)
#   telltale  telltale-hub (embedded broker + SQLite store), every reading committed
#   ceiling   the embedded broker alone, drained, nothing stored
# all fed by the same publisher: mosquitto_pub -l at QoS 1, one line per message.
# Then the agent's own path: SenML-CBOR from many simulated devices.
#
# usage: bench/ingest.sh [MESSAGES_AT_50] [MESSAGES_AT_1] [ROUNDS]
# Keep to about the default sizes (20000 x 50, 60000 x 1): with 100000 lines
# mosquitto_pub -l exits 0 after publishing only about 34,500 of them (seen
# with Mosquitto and with Telltale alike), so neither side could finish.
# The agent round (many devices, paced by acks) runs for several seconds and
# gives the sustained commits per second.
# needs: mosquitto, mosquitto-clients, python3 with paho-mqtt, a release build.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
peers=${PEERS:-$root/../shared/peers}
m50=${1:-20000}
m1=${2:-60000}
rounds=${3:-1}
cd "$root"
cargo build --release --bins --quiet
cargo build --release -p telltale-broker --example drain --quiet
hub=$root/target/release/telltale-hub
agent=$root/target/release/telltale-agent
drain=$root/target/release/examples/drain
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; return 1; }
lines() { # MESSAGES PER FILE: the peer's exact payloads
  python3 -c "
import json,sys
rec=[{'n':'m%d'%i,'u':'Cel','v':20.0+i} for i in range($2)]
sys.stdout.write((json.dumps(rec)+'\n')*$1)" > "$3"
}

telltale() { # MESSAGES PER [PUBLISHERS] -> rate and commits/s
  # Like the peer, the clock runs from the first reading received (the
  # earliest hub time stamp: the payloads carry no time) to the moment the
  # last reading is committed (polled in the database every 10 ms).
  local msgs=$1 per=$2 pubs=${3:-1} port dir want t1 i
  port=$(free_port); dir=$work/tt-$per-$RANDOM; mkdir -p "$dir"
  printf 'data_dir = "%s"\n[broker]\nlisten = "127.0.0.1:%s"\n' "$dir/data" "$port" > "$dir/hub.toml"
  # RULES_FILE: alert rules the hub evaluates on every reading (bench/rules.sh).
  if [ -n "${RULES_FILE:-}" ]; then printf '[alerts]\nrules_file = "%s"\n' "$RULES_FILE" >> "$dir/hub.toml"; fi
  lines "$msgs" "$per" "$dir/lines"
  "$hub" run --config "$dir/hub.toml" 2> "$dir/hub.log" & local hp=$!
  wait_port "$port"
  want=$((msgs * per * pubs))
  local pids=()
  for i in $(seq 1 "$pubs"); do
    mosquitto_pub -p "$port" -q 1 -i "bench-pub-$i" -t "telltale/v1/devices/bench-$i/telemetry" -l < "$dir/lines" &
    pids+=($!)
  done
  # Count only what is committed: poll the database's highest seq.
  t1=$(python3 - "$dir/data/hub.db" "$want" <<'PY'
import sqlite3, sys, time
db, want = sys.argv[1], int(sys.argv[2])
end = time.time() + 300
while time.time() < end:
    try:
        c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        n = c.execute("select coalesce(max(seq),0) from readings").fetchone()[0]
        c.close()
        if n >= want:
            print(time.time()); sys.exit(0)
    except sqlite3.Error:
        pass
    time.sleep(0.01)
sys.exit("timed out: not every reading was committed")
PY
)
  for i in "${pids[@]}"; do wait "$i"; done
  local t0
  t0=$(python3 -c "
import sqlite3; c=sqlite3.connect('file:$dir/data/hub.db?mode=ro', uri=True)
print(c.execute('select min(ts) from readings').fetchone()[0] / 1000)")
  kill -TERM $hp; wait $hp || true
  local commits
  commits=$(grep -o 'commits=[0-9]*' "$dir/hub.log" | tail -1 | cut -d= -f2)
  python3 -c "
dt=$t1-$t0
print(f'telltale: {$want} readings in {dt:.2f}s = {$want/dt:,.0f} readings/s, {$commits} commits = {$commits/dt:.1f} commits/s')"
}

ceiling() { # MESSAGES PER
  local msgs=$1 per=$2 port dir
  port=$(free_port); dir=$work/ceil-$per; mkdir -p "$dir"
  lines "$msgs" "$per" "$dir/lines"
  "$drain" "127.0.0.1:$port" "$msgs" > "$dir/out" 2>/dev/null & local dp=$!
  wait_port "$port"
  mosquitto_pub -p "$port" -q 1 -t telltale/v1/devices/bench-1/telemetry -l < "$dir/lines" & local pp=$!
  wait $dp
  # The broker alone may leave the publisher waiting for its last acks.
  sleep 0.5; kill $pp 2>/dev/null || true; wait $pp 2>/dev/null || true
  python3 -c "
import re
s=open('$dir/out').read(); m=re.search(r'in ([0-9.]+) s = ([0-9]+) msgs/s', s)
print(f'ceiling (broker only): {int(m.group(2))*$per:,} readings/s ({int(m.group(2)):,} msgs/s)')"
}

# Sourced (bench/rules.sh): the functions only.
[ "${BASH_SOURCE[0]}" = "$0" ] || return 0

for r in $(seq 1 "$rounds"); do
  for spec in "$m50 50" "$m1 1"; do
    set -- $spec
    echo "== round $r: $1 messages x $2 readings"
    echo -n "peer: "; bash "$peers/run-handrolled.sh" "$1" "$2" | grep handrolled
    telltale "$1" "$2"
    ceiling "$1" "$2"
  done
done

if [ -x "$agent" ]; then
  echo "== agent path: SenML-CBOR from simulated devices"
  port=$(free_port); dir=$work/agent; mkdir -p "$dir"
  printf 'data_dir = "%s"\n[broker]\nlisten = "127.0.0.1:%s"\n' "$dir/data" "$port" > "$dir/hub.toml"
  "$hub" run --config "$dir/hub.toml" 2> "$dir/hub.log" & hp=$!
  wait_port "$port"
  out=$("$agent" bench --host 127.0.0.1 --port "$port" --devices "${AGENT_DEVICES:-100}" --batches "${AGENT_BATCHES:-400}" --readings "${AGENT_READINGS:-50}" 2>/dev/null)
  echo "$out"
  kill -TERM $hp; wait $hp || true
  commits=$(grep -o 'commits=[0-9]*' "$dir/hub.log" | tail -1 | cut -d= -f2)
  skips=$(grep -c 'broker skipped' "$dir/hub.log" || true)
  secs=$(echo "$out" | grep -o 'seconds=[0-9.]*' | cut -d= -f2)
  python3 -c "print(f'hub during the agent round: {$commits} commits in {$secs}s = {$commits/$secs:.1f} commits/s, broker skips: $skips')"
fi
