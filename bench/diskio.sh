#!/usr/bin/env bash
# What the hub costs an SD card: bytes written to disk per stored reading and
# fsyncs per second, at steady reading rates, with the default store config.
#
# usage: bench/diskio.sh [SECONDS] [RATE...]        (default: 20 s at 1000 and 10000; 0: idle)
#        HUB_EXTRA='[store]\ncommit_interval_ms = 1000' bench/diskio.sh   (config lines to add)
#
# Each 1,000 readings/s is one real telltale-agent (one device) with 10
# simulated metrics read every 10 ms, sent as batches of 100 readings, each
# acknowledged after its commit. After 5 s of warm-up, two windows of SECONDS:
#   1. write_bytes from /proc/<hub>/io (bytes the hub caused to be written to
#      the block device: WAL, checkpoints into hub.db), readings stored and
#      commits (the hub's /metrics) at both ends;
#   2. fsync and fdatasync calls, counted by `strace -f -c -p <hub>` (strace
#      slows the hub, so the bytes come from the first window).
# The data lives under /var/tmp: writes to a tmpfs are not disk writes.
# needs: strace, curl, a release build (built here).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-20}
shift || true
rates=("${@:-1000 10000}")
# shellcheck disable=SC2206
rates=(${rates[*]})
cd "$root"
cargo build --release -p telltale-hub -p telltale-agent --quiet
hub=$root/target/release/telltale-hub
agent=$root/target/release/telltale-agent
work=$(mktemp -d -p /var/tmp telltale-diskio.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

metric() { # URL NAME -> value
  curl -s "$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
write_bytes() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$1/io"; }

printf '| readings/s asked | readings/s stored | bytes written | per reading | commits/s | fsyncs/s (strace) | hub.db + WAL |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|\n'
for rate in "${rates[@]}"; do
  devices=$(( (rate + 999) / 1000 ))
  dir=$work/r$rate
  mkdir -p "$dir"
  printf 'data_dir = "%s"\n[broker]\nlisten = "127.0.0.1:0"\n[api]\nlisten = "127.0.0.1:0"\n' "$dir/data" > "$dir/hub.toml"
  if [ -n "${HUB_EXTRA:-}" ]; then printf '%b\n' "$HUB_EXTRA" >> "$dir/hub.toml"; fi
  "$hub" run --config "$dir/hub.toml" 2> "$dir/hub.log" &
  hp=$!
  pids+=("$hp")
  ready=
  for _ in $(seq 100); do
    ready=$(grep -m1 'hub ready' "$dir/hub.log" || true)
    [ -n "$ready" ] && break
    sleep 0.1
  done
  [ -n "$ready" ] || { cat "$dir/hub.log"; exit 1; }
  mqtt=$(sed -E 's/.*mqtt=127\.0\.0\.1:([0-9]+).*/\1/' <<<"$ready")
  url=http://$(sed -E 's/.*http=(127\.0\.0\.1:[0-9]+).*/\1/' <<<"$ready")
  for d in $(seq 1 "$devices"); do
    {
      printf 'device_id = "disk-%s"\ndata_dir = "%s"\n' "$d" "$dir/agent-$d"
      printf '[mqtt]\nhost = "127.0.0.1"\nport = %s\n' "$mqtt"
      printf '[batch]\nmax_readings = 100\ninterval_ms = 1000\n'
      for m in $(seq 1 10); do
        printf '[[source]]\nkind = "simulated"\nmetric = "m%s"\nunit = "Cel"\ninterval_ms = 10\n' "$m"
      done
    } > "$dir/agent-$d.toml"
    RUST_LOG=warn "$agent" run --config "$dir/agent-$d.toml" 2> "$dir/agent-$d.log" &
    pids+=("$!")
  done
  sleep 5
  w0=$(write_bytes "$hp"); n0=$(metric "$url" telltale_readings_ingested_total)
  c0=$(metric "$url" telltale_store_commits_total); t0=$(date +%s.%N)
  sleep "$secs"
  w1=$(write_bytes "$hp"); n1=$(metric "$url" telltale_readings_ingested_total)
  c1=$(metric "$url" telltale_store_commits_total); t1=$(date +%s.%N)
  timeout -s INT "$secs" strace -f -c -e trace=fsync,fdatasync -p "$hp" -o "$dir/strace.txt" 2>/dev/null || true
  fsyncs=$(awk '$NF == "fsync" || $NF == "fdatasync" { s += $4 } END { print s + 0 }' "$dir/strace.txt")
  size=$(du -cb "$dir/data"/hub.db* | awk 'END { print $1 }')
  awk -v r="$rate" -v w="$((w1 - w0))" -v n="$((n1 - n0))" -v c="$((c1 - c0))" \
      -v t0="$t0" -v t1="$t1" -v f="$fsyncs" -v s="$secs" -v z="$size" 'BEGIN {
    t = t1 - t0
    printf "| %d | %.0f | %.1f MB in %.1f s | %.1f B | %.2f | %.2f | %.1f MB |\n",
      r, n / t, w / 1e6, t, (n > 0 ? w / n : 0), c / t, f / s, z / 1e6
  }'
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
done
