#!/usr/bin/env bash
# Browser test: starts `streamr demo` (coordinator, origin, friend nodes, looping publisher) on
# free loopback ports and drives Debian's Chromium through the dashboard and the watch page with
# playwright-core; then plays HLS from a node serving HTTPS (https_hls.test.mjs), HTTP-FLV from a
# node with mpegts.js (http_flv.test.mjs), and a node's HLS and LL-HLS with Shaka Player and
# video.js (players.test.mjs). Installs chromium (apt-get) and the npm packages
# (npm ci) when missing; under CI=true anything still missing afterwards is a failure, never a
# skip.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'error: %s\n' "$*" >&2; exit 1; }

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
  fi
fi
[ -x "$CHROMIUM" ] || fail "chromium is required by the browser test and could not be installed"

if ! command -v npm >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing nodejs and npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
command -v npm >/dev/null 2>&1 || fail "node and npm are required by the browser test"
missing_modules=0
for module in playwright-core hls.js mpegts.js shaka-player video.js; do
  [ -d "node_modules/$module" ] || missing_modules=1
done
if [ "$missing_modules" = 1 ]; then
  log "npm ci (tests/browser)"
  npm ci --no-audit --no-fund >/dev/null || fail "npm ci failed in tests/browser"
fi

# The same build (and features) as the workspace's tests, so after `cargo test --workspace`
# this compiles nothing: the `streamr` binary is already there for the CLI's own tests.
# HLS from a node over HTTPS (https_hls.test.mjs): a standalone node with a test CA's
# certificate (openssl) and ffmpeg publishing to it; the demo below is not needed for it.
if ! command -v openssl >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  log "installing openssl"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssl >/dev/null
fi
command -v openssl >/dev/null 2>&1 || fail "openssl is required by the HTTPS browser test"
command -v ffmpeg >/dev/null 2>&1 || fail "ffmpeg is required by the HTTPS, HTTP-FLV and players browser tests"
# The HTTP-FLV and players tests encode their streams (H.264, AAC and MP3) from ffmpeg's test
# sources.
encoders="$(ffmpeg -hide_banner -encoders 2>/dev/null)"
for encoder in libx264 libmp3lame; do
  grep -q " $encoder " <<<"$encoders" || fail "ffmpeg lacks the $encoder encoder the HTTP-FLV browser test needs"
done

log "building streamr (demo)"
(cd "$root" && cargo test --workspace --locked --no-run --quiet)
bin="${CARGO_TARGET_DIR:-$root/target}/debug/streamr"
[ -x "$bin" ] || fail "streamr binary not found at $bin"
export STREAMR_NODE_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/streamr-node"
[ -x "$STREAMR_NODE_BIN" ] || fail "streamr-node binary not found at $STREAMR_NODE_BIN"

# A base port with room for the coordinator, the origin and three friends (9 ports), drawn
# below Linux's ephemeral range (32768 and up by default) as bins/cli/tests/demo_watch.rs does:
# a port there may be the local end of an outgoing connection in TIME-WAIT, which a probe by
# connecting does not see and which fails the demo's bind (thousands of those are left after
# the test tiers).
free_base() {
  for _ in $(seq 1 50); do
    local base=$((20000 + RANDOM % 12000))
    local busy=0
    for offset in $(seq 0 8); do
      if (exec 3<>"/dev/tcp/127.0.0.1/$((base + offset))") 2>/dev/null; then busy=1; break; fi
    done
    [ "$busy" = 0 ] && { echo "$base"; return; }
  done
  fail "no free port range found"
}
base="$(free_base)"
mkdir -p artifacts
log "starting streamr demo on base port $base (log: tests/browser/artifacts/demo.log)"
"$bin" demo --duration 150 --base-port "$base" --epoch-secs 5 --viewers 1 >artifacts/demo.log 2>&1 &
demo_pid=$!
trap 'kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true' EXIT

export STREAMR_COORDINATOR="http://127.0.0.1:$base"
for _ in $(seq 1 60); do
  curl -fsS "$STREAMR_COORDINATOR/healthz" >/dev/null 2>&1 && break
  kill -0 "$demo_pid" 2>/dev/null || { cat artifacts/demo.log >&2; fail "streamr demo exited early"; }
  sleep 1
done
curl -fsS "$STREAMR_COORDINATOR/healthz" >/dev/null || fail "the demo coordinator did not come up"

# The five files run side by side, each in its own node process and Chromium: they mostly
# wait (on settled epochs, on playback in real time), and node's default on two cores is one
# file at a time (85 s in a row for the first three, about 40 s side by side; the HTTP-FLV file
# takes about 15 s alone, the players file about 26 s). The LL-HLS file's one time bound is
# twice its figure at a load average of 17-19.
log "playwright: dashboard and watch page, LL-HLS, HLS over HTTPS, HTTP-FLV, Shaka Player and video.js in chromium"
node --test --test-concurrency=5 --test-reporter=spec \
  dashboard.test.mjs ll_hls.test.mjs https_hls.test.mjs http_flv.test.mjs players.test.mjs
