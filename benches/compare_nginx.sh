#!/usr/bin/env bash
# Side-by-side fan-out benchmark: streamr-node vs nginx-rtmp on the same machine, same sources,
# same load steps. Prints server CPU seconds per player-second, RSS per player, stalled share and
# hop latency for both, and our figures as ratios against nginx-rtmp.
#
# Usage: benches/compare_nginx.sh [players per step ...]   (default: 100 500 1000)
# Env:   STEP_SECONDS (default 20), SOURCES (default "232 3000", kbit/s), CARGO_TARGET_DIR,
#        NODE_ARGS (extra streamr-node flags, e.g. "--batch-delay 100ms")
#
# CPU is each server process's own utime + stime from /proc/<pid>/stat (all its threads), never
# the load tool's; the load tool's CPU per step is logged next to it so a saturated load generator
# shows.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=("${@:-100 500 1000}")
read -r -a STEPS <<<"${STEPS[*]}"
STEP_SECONDS=${STEP_SECONDS:-20}
read -r -a SOURCES <<<"${SOURCES:-232 3000}"
read -r -a NODE_ARGS <<<"${NODE_ARGS:-}"
OUR_PORT=19351
NGINX_PORT=19352
WORK=target/bench-nginx
mkdir -p "$WORK"

need() { command -v "$1" >/dev/null 2>&1; }
if ! need ffmpeg || [ ! -f /usr/lib/nginx/modules/ngx_rtmp_module.so ]; then
  echo "installing ffmpeg and nginx-rtmp from Debian" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg nginx-light libnginx-mod-rtmp >/dev/null
fi

cargo build --release -q -p streamr-node -p streamr-load
BIN=${CARGO_TARGET_DIR:-target}/release
NODE=$BIN/streamr-node
LOAD=$BIN/streamr-load

# Sources: H.264 + AAC at the requested total bitrate, 2 s GOP, 30 s long (looped by the publisher).
make_source() {
  local kbps=$1 out="$WORK/source-${1}k.flv"
  [ -f "$out" ] && { echo "$out"; return; }
  local v=$((kbps - 64)) size=426x240
  [ "$kbps" -ge 1500 ] && size=1280x720
  ffmpeg -v error -y -f lavfi -i "testsrc2=size=${size}:rate=30" -f lavfi -i "sine=frequency=440" \
    -t 30 -c:v libx264 -preset veryfast -b:v "${v}k" -maxrate "${v}k" -bufsize "$((v * 2))k" \
    -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 64k -ar 44100 -f flv "$out"
  echo "$out"
}

cpu_ticks() { # utime + stime of a process and its threads, in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat"
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
nginx_pids() { pgrep -f "nginx: (master|worker) process.*$WORK" || pgrep -f "nginx.*$WORK/nginx.conf"; }

start_ours() {
  RUST_LOG=warn "$NODE" --rtmp-listen "127.0.0.1:$OUR_PORT" --http-listen "127.0.0.1:$((OUR_PORT + 10))" \
    --identity "$WORK/node.key" "${NODE_ARGS[@]}" >"$WORK/node.log" 2>&1 &
  echo $!
}
start_nginx() {
  cat >"$WORK/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes 1;
daemon off;
master_process off;
error_log $PWD/$WORK/nginx-error.log warn;
pid $PWD/$WORK/nginx.pid;
events { worker_connections 20000; }
rtmp {
  server {
    listen 127.0.0.1:$NGINX_PORT;
    chunk_size 4096;
    application live { live on; meta copy; }
  }
}
CONF
  nginx -c "$PWD/$WORK/nginx.conf" -p "$PWD/$WORK" >"$WORK/nginx.log" 2>&1 &
  echo $!
}

ulimit -n 65536 2>/dev/null || true
TCK=$(getconf CLK_TCK)
RESULTS="$WORK/results.tsv"
printf 'server\tsource_kbps\tplayers\tcpu_s_per_player_s\trss_kib_per_player\tstalled_share\tlatency_p50_ms\tlatency_p95_ms\tload_tool_cpu_s\tloadavg\n' >"$RESULTS"

run_server() { # name port pid
  local name=$1 port=$2 pid=$3
  for kbps in "${SOURCES[@]}"; do
    local src; src=$(make_source "$kbps")
    local url="rtmp://127.0.0.1:$port/live/bench$kbps"
    "$LOAD" publish "$src" "$url" >"$WORK/publish-$name-$kbps.log" 2>&1 &
    local publisher=$!
    sleep 3
    for players in "${STEPS[@]}"; do
      local rss0 cpu0 cpu1 rss1
      rss0=$(rss_kib "$pid"); cpu0=$(cpu_ticks "$pid")
      "$LOAD" play "$url" -n "$players" --ramp 1000 -d "$STEP_SECONDS" --bitrate-kbps "$kbps" \
        --no-progress --json "$WORK/$name-$kbps-$players.json" 2>"$WORK/$name-$kbps-$players.log" &
      local player=$! load_ticks=0 t
      # The load tool's own CPU, sampled until it exits (its /proc entry goes with it).
      while kill -0 "$player" 2>/dev/null; do
        t=$(cpu_ticks "$player" 2>/dev/null) && load_ticks=$t
        sleep 0.5
      done
      wait "$player" || true
      cpu1=$(cpu_ticks "$pid"); rss1=$(rss_kib "$pid")
      python3 - "$WORK/$name-$kbps-$players.json" "$name" "$kbps" "$players" \
        "$((cpu1 - cpu0))" "$TCK" "$rss0" "$rss1" "$load_ticks" "$(cut -d' ' -f1 /proc/loadavg)" >>"$RESULTS" <<'PY'
import json, sys
path, name, kbps, players, ticks, tck, rss0, rss1, load_ticks, loadavg = sys.argv[1:]
s = json.load(open(path))
players = int(players)
# Player-seconds actually played: sum over ticks of playing players.
player_seconds = sum(t["playing"] for t in s["ticks"]) or 1
cpu = int(ticks) / int(tck)
rss = max(int(rss1) - int(rss0), 0) / players
lat = s.get("latency_ms") or {}
print(f"{name}\t{kbps}\t{players}\t{cpu / player_seconds:.6f}\t{rss:.1f}\t{s['stalled_share']:.4f}"
      f"\t{lat.get('p50', float('nan')):.0f}\t{lat.get('p95', float('nan')):.0f}"
      f"\t{int(load_ticks) / int(tck):.1f}\t{loadavg}")
PY
    done
    kill "$publisher" 2>/dev/null || true
    wait "$publisher" 2>/dev/null || true
  done
}

ours=$(start_ours); sleep 1
run_server streamr "$OUR_PORT" "$ours"
kill -INT "$ours"; wait "$ours" 2>/dev/null || true

nginx_pid=$(start_nginx); sleep 1
run_server nginx "$NGINX_PORT" "$nginx_pid"
kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true

python3 - "$RESULTS" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print(f"{'source':>7} {'players':>7} | {'cpu s/player-s':>29} | {'RSS KiB/player':>23} | {'stalled':>15} | {'latency p50 ms':>17}")
print(f"{'kbps':>7} {'':>7} | {'streamr':>9} {'nginx':>9} {'ratio':>9} | {'streamr':>7} {'nginx':>7} {'ratio':>7} | {'streamr':>7} {'nginx':>7} | {'streamr':>8} {'nginx':>8}")
by = {(r["server"], r["source_kbps"], r["players"]): r for r in rows}
for r in rows:
    if r["server"] != "streamr":
        continue
    n = by.get(("nginx", r["source_kbps"], r["players"]))
    if not n:
        continue
    f = lambda k, row: float(row[k])
    cpu_ratio = f("cpu_s_per_player_s", n) / max(f("cpu_s_per_player_s", r), 1e-12)
    rss_ratio = f("rss_kib_per_player", n) / max(f("rss_kib_per_player", r), 1e-9)
    print(f"{r['source_kbps']:>7} {r['players']:>7} | {f('cpu_s_per_player_s', r):>9.6f} {f('cpu_s_per_player_s', n):>9.6f} {cpu_ratio:>8.2f}x |"
          f" {f('rss_kib_per_player', r):>7.1f} {f('rss_kib_per_player', n):>7.1f} {rss_ratio:>6.2f}x |"
          f" {f('stalled_share', r):>7.2%} {f('stalled_share', n):>7.2%} | {r['latency_p50_ms']:>8} {n['latency_p50_ms']:>8}")
print("ratio = nginx-rtmp / streamr: above 1 means streamr needs less (players per CPU-second, memory per player).")
print("load average at the end of each step (streamr / nginx): "
      + ", ".join(f"{r['source_kbps']}k x {r['players']}: {r['loadavg']} / {by.get(('nginx', r['source_kbps'], r['players']), {}).get('loadavg', '?')}"
                  for r in rows if r["server"] == "streamr"))
PY
