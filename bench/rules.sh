#!/usr/bin/env bash
# Rule evaluation at the ingest rate: the ingest benchmark's Telltale run
# (mosquitto_pub -l, 50 readings per message, every reading committed) with
# 0, 10, 100 and 1,000 alert rules, one after the other in each round.
# The rules never fire (so the figure is evaluation, not alert writing):
# each is scoped to one of the payload's 50 metrics, a quarter also by a
# device glob, with a mix of conditions (above, outside a band, rate of
# change over a window, no data).
# usage: bench/rules.sh [MESSAGES_AT_50] [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n_msgs=${1:-20000}
n_rounds=${2:-3}
# (ingest.sh sets its own m50, m1, rounds from these arguments)
source "$root/bench/ingest.sh" "$n_msgs" 0 1

rules_file() { # N FILE
  python3 - "$1" > "$2" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    m = f"m{i % 50}"
    kind = i % 4
    print("[[rule]]")
    print(f'name = "r{i}"')
    print(f'metric = "{m}"')
    if kind == 0:
        print('device = "bench-*"')
        print(f"condition = {{ above = {1e6 + i} }}")
    elif kind == 1:
        print("condition = { outside = [-1000000.0, 1000000.0] }")
    elif kind == 2:
        print('condition = { rate_above = 1000000.0, per = "minute", window = "1m" }')
    else:
        print('condition = { no_data = "1h" }')
    print('severity = "info"')
    print()
PY
}

for r in $(seq 1 "$n_rounds"); do
  for n in 0 10 100 1000; do
    rules_file "$n" "$work/rules-$n.toml"
    echo -n "round $r, $n rules: "
    RULES_FILE="$work/rules-$n.toml" telltale "$n_msgs" 50
  done
done
