#!/usr/bin/env bash
# The dashboard's checks, in one command: the committed build in
# crates/telltale-api/ui is the build of dashboard/src, then the browser test
# (headless Chromium against the real hub and demo agents on loopback).
# Needs node and npm, Debian's chromium, and mosquitto_pub. Screenshots and
# measurements go to $SCREENSHOTS (default target/dashboard-screenshots).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x "${CHROMIUM:-/usr/bin/chromium}" ]; then
  echo "chromium is missing: apt-get install chromium chromium-driver" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
node build.mjs --check
# The test starts target/debug/telltale-hub (and its demo agents).
(cd .. && cargo build --bins -p telltale-hub -p telltale-agent)
node --test-reporter=tap test/browser.mjs
