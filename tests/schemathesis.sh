#!/usr/bin/env bash
# Scans the hub's HTTP API against its own OpenAPI document with
# schemathesis: a real hub (the built binary) on loopback with an admin
# token; no 5xx, and every answer (status, content type, headers, body)
# as the document says; requests without the token must be refused.
# Bounded: at most SCHEMATHESIS_EXAMPLES cases per operation and
# SCHEMATHESIS_MAX_TIME seconds. Exits non-zero on any failure.
# ST=path/to/st picks the schemathesis command (default: st on PATH).
# SCHEMATHESIS_HUB_LOG=FILE keeps the hub's log (HUB_LOG=info for audit
# lines); ST_EXTRA passes more options to the main scan.
#
#   cargo build --workspace --bins && tests/schemathesis.sh
set -euo pipefail
cd "$(dirname "$0")/.."

examples=${SCHEMATHESIS_EXAMPLES:-25}
max_time=${SCHEMATHESIS_MAX_TIME:-240}
seed=${SCHEMATHESIS_SEED:-20261129}
hub_bin=${HUB_BIN:-$PWD/target/debug/telltale-hub}
st=${ST:-st}
command -v "$st" >/dev/null || { echo "schemathesis is not installed (pip install schemathesis), or set ST" >&2; exit 2; }
[ -x "$hub_bin" ] || { echo "$hub_bin is missing: cargo build --workspace --bins" >&2; exit 2; }

work=$(mktemp -d)
hub_pid=
cleanup() {
  if [ -n "$hub_pid" ]; then kill "$hub_pid" 2>/dev/null || true; wait "$hub_pid" 2>/dev/null || true; fi
  if [ -n "${SCHEMATHESIS_HUB_LOG:-}" ]; then cp "$work/hub.log" "$SCHEMATHESIS_HUB_LOG" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
mqtt_port=$(free_port)
# Streams end after about a second, so the scanner's reads of watch
# answers end; the per-token rate is out of the scan's way.
cat >"$work/hub.toml" <<TOML
data_dir = "$work/data"
[broker]
listen = "127.0.0.1:$mqtt_port"
[api]
listen = "127.0.0.1:$http_port"
max_stream_secs = 1
token_rate_per_sec = 100000
token_rate_burst = 100000
TOML

token=$("$hub_bin" token create --config "$work/hub.toml" --name scan-7f3k --scope admin 2>/dev/null)
RUST_LOG=${HUB_LOG:-warn} "$hub_bin" run --config "$work/hub.toml" 2>"$work/hub.log" &
hub_pid=$!
base="http://127.0.0.1:$http_port"
for _ in $(seq 1 100); do
  curl -sf "$base/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf "$base/readyz" >/dev/null || { echo "the hub did not start:" >&2; cat "$work/hub.log" >&2; exit 1; }
# One device, so that its routes have something to answer.
mosquitto_pub -h 127.0.0.1 -p "$mqtt_port" -q 1 -t telltale/v1/devices/scan-1/telemetry \
  -m '[{"n":"temp","u":"Cel","v":21.5}]' 2>/dev/null || true

# One worker: schemathesis' generator is not safe across threads here.
scan() {
  "$st" run "$base/v1/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $1" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth \
    --phases examples,coverage,fuzzing \
    --max-examples "$examples" \
    --request-timeout 15 \
    --seed "$seed" \
    --workers 1 \
    --no-color "${@:2}"
}
set +e
# Run where schemathesis' cache (.schemathesis/) goes away with the rest.
cd "$work"
# Everything but revoking tokens (the scan would revoke its own and spend
# the rest of the run on 401s); then revoking, last, with a token of its own.
scan "$token" --max-time "$max_time" --exclude-operation-id revokeToken ${ST_EXTRA:-}
status=$?
victim=$("$hub_bin" token create --config "$work/hub.toml" --name scan-revoke --scope admin 2>/dev/null)
sleep 1
scan "$victim" --max-time 30 --include-operation-id revokeToken
status2=$?
set -e
[ "$status" -eq 0 ] && status=$status2
if ! kill -0 "$hub_pid" 2>/dev/null; then
  echo "the hub died during the scan:" >&2
  cat "$work/hub.log" >&2
  exit 1
fi
if grep -q -e "$token" -e "$victim" "$work/hub.log"; then
  echo "the token is in the hub's log" >&2
  exit 1
fi
exit "$status"
