#!/usr/bin/env bash
# Side-by-side delivery benchmark: streamr-node vs SRS 7 on the same machine, same sources, same
# players (streamr-load), over RTMP, HTTP-FLV and HLS. Prints server CPU seconds per
# player-second, RSS per player, stalled share and hop latency for each server, and the ratios
# (SRS ÷ ours: above 1 means we need less).
#
# Usage: benches/compare_srs.sh [players per step ...]   (default: 500 1000)
# Env:   SRS_BIN     path to an SRS 7 binary built with -O2 (default /work/wt/srs/trunk/objs/srs;
#                    build it from github.com/ossrs/srs with
#                    ./configure --sys-ssl=on --rtc=off --srt=off --gb28181=off --utest=off
#                    --gperf=off --ffmpeg-fit=off --apm=off --sanitizer=off --extra-flags=-O2 && make
#                    — its default configure builds -O0 with ASan: never benchmark that)
#        SERVERS     which servers, default "streamr srs srs-ll" (srs-ll: SRS's low-latency config:
#                    min_latency on; tcp_nodelay on; play { mw_latency 0; mw_msgs 0; })
#        PROTOCOLS   default "rtmp flv hls"; SOURCES default "232 3000" (kbit/s); HLS_SOURCES
#                    the sources HLS players are run on (default: all of SOURCES; at 3 Mbit/s
#                    500+ HLS players saturate the load tool on a 2-core machine)
#        RTMP_PORT, HTTP_PORT (default 19361, 19371: another run on this machine needs others),
#        STEP_SECONDS (default 15), SETTLE_SECONDS (default 180: the longest wait, after a
#        publish starts, for the server's RSS to stop growing before the steps),
#        NODE_ARGS (extra streamr-node flags, e.g. "--batch-delay 350ms"),
#        NODE_BIN (a streamr-node binary to run instead of the one built here, e.g. a copy of
#        an earlier build, for a before/after in one run; the build still runs, for streamr-load),
#        RESULTS (the TSV written, default target/bench-srs/results.tsv), APPEND=1 adds to it
#        (run the servers one at a time, print the table once), CARGO_TARGET_DIR,
#        ROUNDS (default 1: run every server this many times over, alternating; the table
#        gives each cell's median over the rounds and the runs it found, and the ratio of
#        medians with the lowest and highest ratio of one round's pair)
#
# For our node, each row also records the batch delay its load-adaptive controller chose during
# the step (the largest; "batch_delay_ms"; read from its debug log), so the rows for 500, 1000,
# 2000... players give the curve players -> delay, latency, CPU per player-second. Every row
# records the server's system-time share of its CPU (kernel: socket writes, TCP on loopback),
# and its write system calls per player-second and bytes per write (/proc/<pid>/io), and with
# perf, all its system calls, writes, epoll waits, futex calls and context switches per
# player-second over the step's steady part.
#
# RSS per player is the server's peak RSS while a step's players are connected, less its RSS
# just before the step, after its RSS settled with only the publisher connected (a server fills
# its live windows for a minute or two after a publish starts; counted in the first steps, that
# growth read as tens of KiB per player at 3 Mbit/s).
#
# CPU is each server process's own utime + stime from /proc/<pid>/stat (all its threads), never
# the load tool's. Hop latency is read by the players from a wall-clock stamp the publisher puts
# in every video frame (SRS rebases timestamps, so they cannot be used); HLS has none. Before the
# steps, the script checks that both servers deliver the publisher's video packets (sizes of a
# few seconds of HTTP-FLV video packets against the source's).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=("${@:-500 1000}")
read -r -a STEPS <<<"${STEPS[*]}"
STEP_SECONDS=${STEP_SECONDS:-15}
SETTLE_SECONDS=${SETTLE_SECONDS:-180}
ROUNDS=${ROUNDS:-1}
read -r -a SOURCES <<<"${SOURCES:-232 3000}"
read -r -a SERVERS <<<"${SERVERS:-streamr srs srs-ll}"
read -r -a PROTOCOLS <<<"${PROTOCOLS:-rtmp flv hls}"
read -r -a HLS_SOURCES <<<"${HLS_SOURCES:-${SOURCES[*]}}"
read -r -a NODE_ARGS <<<"${NODE_ARGS:-}"
SRS_BIN=${SRS_BIN:-/work/wt/srs/trunk/objs/srs}
RTMP_PORT=${RTMP_PORT:-19361}
HTTP_PORT=${HTTP_PORT:-19371}
WORK=target/bench-srs
mkdir -p "$WORK"
WORK_ABS=$(cd "$WORK" && pwd)

[ -x "$SRS_BIN" ] || { echo "no SRS binary at $SRS_BIN (see the header for how to build it)" >&2; exit 1; }
command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || { echo "ffmpeg and ffprobe are needed" >&2; exit 1; }

cargo build --release -q -p streamr-node -p streamr-load
BIN=${CARGO_TARGET_DIR:-target}/release
NODE=${NODE_BIN:-$BIN/streamr-node}
LOAD=$BIN/streamr-load

# Sources: H.264 + AAC at the requested total bitrate, 2 s GOP, 30 s long (looped by the
# publisher); the same as benches/compare_nginx.sh.
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

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
# The largest batch delay (ms) our node's controller logged from line $2 of its log on, starting
# from the last one it logged before (0 when none).
node_delay_ms() { # log first_line
  python3 - "$1" "$2" <<'PY'
import re, sys
path, first = sys.argv[1], int(sys.argv[2])
scale = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}
before, during = 0.0, []
for n, line in enumerate(open(path, errors="replace"), 1):
    m = re.search(r"(?<![\w])delay=([0-9.]+)(ns|µs|us|ms|s)\b", line)
    if not m:
        continue
    value = float(m.group(1)) * scale[m.group(2)]
    if n < first:
        before = value
    else:
        during.append(value)
print(f"{max([before] + during):.0f}")
PY
}
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Waits until a server's RSS stops growing with only the publisher connected (under 1 MiB over
# 10 s, or SETTLE_SECONDS at most): a server fills its live windows (the relay ring, HLS and
# LL-HLS segments) for a minute or two after a publish starts, about 0.7 MB/s at 3 Mbit/s for
# our node, which a step would otherwise count as its players' memory.
settle_rss() { # pid
  local waited=0 before now
  before=$(rss_kib "$1")
  while [ "$waited" -lt "$SETTLE_SECONDS" ]; do
    sleep 10; waited=$((waited + 10))
    now=$(rss_kib "$1")
    [ $((now - before)) -lt 1024 ] && break
    before=$now
  done
  echo "RSS settled after ${waited}s at ${now:-$before} KiB" >&2
}
# Write system calls (write, writev, sendfile: how the servers write to sockets) and bytes
# written, from /proc/<pid>/io: counted by the kernel, so not distorted by load.
# System calls by kind and context switches of a server over a window of a step, from perf's
# tracepoint counters (counted, not sampled: little distortion); PERF_SYSCALLS=0 skips it.
PERF_EVENTS=raw_syscalls:sys_enter,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendfile64,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_pwait,syscalls:sys_enter_futex,context-switches
PERF_SYSCALLS=${PERF_SYSCALLS:-1}
if [ "$PERF_SYSCALLS" = 1 ] && ! perf stat -x, -e "$PERF_EVENTS" -- true >/dev/null 2>&1; then
  echo "perf cannot count syscall tracepoints here: no syscall columns" >&2; PERF_SYSCALLS=0
fi
io_writes() { awk '/^syscw/ {c = $2} /^wchar/ {b = $2} END {print c + 0, b + 0}' "/proc/$1/io"; }

srs_config() { # name
  local extra=""
  if [ "$1" = srs-ll ]; then
    extra="min_latency on; tcp_nodelay on; play { mw_latency 0; mw_msgs 0; gop_cache_max_frames 2500; }"
  else
    extra="play { gop_cache_max_frames 2500; }"
  fi
  mkdir -p "$WORK_ABS/srs-html"
  # SRS's default conf/srs.conf (without WebRTC, not built), in the foreground, with HLS cut
  # every 4 s like ours (its default is 10 s), its media playlist served directly (hls_ctx off:
  # SRS 7 otherwise answers with a master playlist per session, which the load tool's HLS player
  # does not follow) and connections enough for the steps (10 000: the open-file limit here is
  # 20 000 and SRS wants more than max_connections).
  cat >"$WORK/$1.conf" <<CONF
listen $RTMP_PORT;
max_connections 10000;
daemon off;
srs_log_tank file;
srs_log_file $WORK_ABS/$1.log;
srs_log_level warn;
pid $WORK_ABS/$1.pid;
http_server { enabled on; listen $HTTP_PORT; dir $WORK_ABS/srs-html; }
vhost __defaultVhost__ {
  hls { enabled on; hls_path $WORK_ABS/srs-html; hls_fragment 4; hls_window 20; hls_ctx off; hls_ts_ctx off; }
  http_remux { enabled on; mount [vhost]/[app]/[stream].flv; }
  $extra
}
CONF
  echo "$WORK/$1.conf"
}

start_server() { # name -> pid
  case $1 in
    streamr)
      # Every player comes from 127.0.0.1: lift the per-client budgets (SRS has none).
      RUST_LOG=warn,streamr_media::server::adaptive=debug "$NODE" --rtmp-listen "127.0.0.1:$RTMP_PORT" --http-listen "127.0.0.1:$HTTP_PORT" \
        --identity "$WORK/node.key" --rtmp-max-connections 20000 \
        --rtmp-max-connections-per-client 20000 --http-max-connections 20000 \
        --http-max-connections-per-client 20000 "${NODE_ARGS[@]}" >"$WORK/node.log" 2>&1 &
      echo $! ;;
    srs|srs-ll)
      local conf; conf=$(srs_config "$1")
      (cd "$(dirname "$SRS_BIN")/.." && exec "$SRS_BIN" -c "$OLDPWD/$conf") >"$WORK/$1.stdout" 2>&1 &
      echo $! ;;
  esac
}

url_of() { # protocol kbps
  case $1 in
    rtmp) echo "rtmp://127.0.0.1:$RTMP_PORT/live/bench$2" ;;
    flv) echo "http://127.0.0.1:$HTTP_PORT/live/bench$2.flv" ;;
    hls) echo "http://127.0.0.1:$HTTP_PORT/live/bench$2.m3u8" ;;
  esac
}

# The video packet sizes a server delivers over HTTP-FLV in a few seconds, against the source's
# (plus the 40-byte stamp the publisher adds to each coded frame).
check_media() { # name kbps source
  local got="$WORK/check-$1-$2.txt" want="$WORK/check-source-$2.txt"
  ffprobe -v error -select_streams v:0 -show_entries packet=size -of csv=p=0 "$3" >"$want"
  timeout 20 ffprobe -v error -rw_timeout 10000000 -read_intervals "%+4" -select_streams v:0 \
    -show_entries packet=size -of csv=p=0 "$(url_of flv "$2")" >"$got" || true
  python3 - "$1" "$want" "$got" <<'PY'
import sys
name, want, got = sys.argv[1:]
source = {int(l) for l in open(want) if l.strip()}
stamped = source | {s + 40 for s in source}
sizes = [int(l) for l in open(got) if l.strip()]
matched = sum(s in stamped for s in sizes)
share = matched / len(sizes) if sizes else 0
print(f"media check {name}: {matched}/{len(sizes)} video packets match the source", file=sys.stderr)
sys.exit(0 if sizes and share >= 0.95 else 1)
PY
}

ulimit -n 65536 2>/dev/null || true
TCK=$(getconf CLK_TCK)
RESULTS=${RESULTS:-$WORK/results.tsv}
mkdir -p "$(dirname "$RESULTS")"
if [ "${APPEND:-0}" != 1 ] || [ ! -s "$RESULTS" ]; then
  printf 'server\tprotocol\tsource_kbps\tplayers\tcpu_s_per_player_s\trss_kib_per_player\tstalled_share\tlatency_p50_ms\tlatency_p95_ms\tload_tool_cpu_s\tloadavg\tbatch_delay_ms\tsys_share\twrites_per_player_s\tbytes_per_write\tsyscalls_per_player_s\n' >"$RESULTS"
fi

run_server() { # name
  local name=$1 pid
  pid=$(start_server "$name"); sleep 2
  kill -0 "$pid" || { echo "$name did not start; see $WORK" >&2; exit 1; }
  for kbps in "${SOURCES[@]}"; do
    local src; src=$(make_source "$kbps")
    "$LOAD" publish "$src" "$(url_of rtmp "$kbps")" >"$WORK/publish-$name-$kbps.log" 2>&1 &
    local publisher=$!
    sleep 4
    check_media "$name" "$kbps" "$src" || echo "WARNING: $name did not deliver the source's video packets" >&2
    # HLS needs a few segments before players start.
    sleep 8
    settle_rss "$pid"
    for protocol in "${PROTOCOLS[@]}"; do
      if [ "$protocol" = hls ] && [[ " ${HLS_SOURCES[*]} " != *" $kbps "* ]]; then continue; fi
      for players in "${STEPS[@]}"; do
        local out="$WORK/$name-$protocol-$kbps-$players"
        local rss0 cpu0 cpu1 sys0 sys1 log_line delay="-"
        rss0=$(rss_kib "$pid"); cpu0=$(cpu_ticks "$pid"); sys0=$(sys_ticks "$pid")
        local io0 io1; io0=$(io_writes "$pid")
        log_line=$(($(wc -l <"$WORK/node.log" 2>/dev/null || echo 0) + 1))
        "$LOAD" play "$(url_of "$protocol" "$kbps")" -n "$players" --ramp 1000 -d "$STEP_SECONDS" \
          --bitrate-kbps "$kbps" --stall-window 5 --no-progress --json "$out.json" 2>"$out.log" &
        local player=$! load_ticks=0 t perf_pid="" perf_window=0
        rm -f "$out.perf"
        if [ "$PERF_SYSCALLS" = 1 ]; then
          # From the end of the ramp (1000 players a second) to 2 s before the step ends.
          local ramp=$(((players + 999) / 1000 + 1))
          perf_window=$((STEP_SECONDS - ramp - 2))
          if [ "$perf_window" -ge 3 ]; then
            (sleep "$ramp"; exec perf stat -x, -o "$out.perf" -e "$PERF_EVENTS" -p "$pid" -- sleep "$perf_window") &
            perf_pid=$!
          fi
        fi
        local rss_peak=$rss0 r
        while kill -0 "$player" 2>/dev/null; do
          t=$(cpu_ticks "$player" 2>/dev/null) && load_ticks=$t
          r=$(rss_kib "$pid") && [ "$r" -gt "$rss_peak" ] && rss_peak=$r
          sleep 0.5
        done
        wait "$player" || true
        [ -n "$perf_pid" ] && { wait "$perf_pid" || true; }
        cpu1=$(cpu_ticks "$pid"); sys1=$(sys_ticks "$pid")
        io1=$(io_writes "$pid")
        [ "$name" = streamr ] && delay=$(node_delay_ms "$WORK/node.log" "$log_line")
        python3 - "$out.json" "$name" "$protocol" "$kbps" "$players" "$((cpu1 - cpu0))" "$TCK" \
          "$rss0" "$rss_peak" "$load_ticks" "$(cut -d' ' -f1 /proc/loadavg)" "$delay" \
          "$((sys1 - sys0))" "$io0" "$io1" "$out.perf" "$perf_window" >>"$RESULTS" <<'PY'
import json, os, sys
path, name, protocol, kbps, players, ticks, tck, rss0, rss1, load_ticks, loadavg, delay, sys_ticks, io0, io1, perf, window = sys.argv[1:]
# all/write+writev+sendfile/epoll/futex/context switches per player-second over the perf window
syscalls = "-"
if os.path.exists(perf) and int(window) > 0:
    counts = {}
    for line in open(perf):
        f = line.strip().split(",")
        if len(f) > 2 and f[0].isdigit():
            counts[f[2].split(":")[-1]] = int(f[0])
    per = lambda *k: sum(counts.get(x, 0) for x in k) / (int(players) * int(window))
    syscalls = "/".join(f"{v:.1f}" for v in (per("sys_enter"), per("sys_enter_write", "sys_enter_writev", "sys_enter_sendfile64"),
        per("sys_enter_epoll_wait", "sys_enter_epoll_pwait"), per("sys_enter_futex"), per("context-switches")))
(w0, b0), (w1, b1) = ([int(x) for x in io.split()] for io in (io0, io1))
writes, written = w1 - w0, b1 - b0
s = json.load(open(path))
players = int(players)
player_seconds = sum(t["playing"] for t in s["ticks"]) or 1
cpu = int(ticks) / int(tck)
rss = max(int(rss1) - int(rss0), 0) / players
lat = s.get("latency_ms") or {}
print(f"{name}\t{protocol}\t{kbps}\t{players}\t{cpu / player_seconds:.6f}\t{rss:.1f}\t{s['stalled_share']:.4f}"
      f"\t{lat.get('p50', float('nan')):.0f}\t{lat.get('p95', float('nan')):.0f}"
      f"\t{int(load_ticks) / int(tck):.1f}\t{loadavg}\t{delay}\t{int(sys_ticks) / max(int(ticks), 1):.2f}"
      f"\t{writes / player_seconds:.2f}\t{written / max(writes, 1):.0f}\t{syscalls}")
PY
        tail -n1 "$RESULTS" >&2
        sleep 2
      done
    done
    kill "$publisher" 2>/dev/null || true
    wait "$publisher" 2>/dev/null || true
  done
  kill "$pid" 2>/dev/null || true
  for _ in 1 2 3 4 5 6; do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  sleep 1
}

# ROUNDS=N runs the servers N times over, alternating (ours, SRS, SRS-ll, ours, ...), so a
# passing load on the machine falls on every server alike; the table gives each cell's median.
for _ in $(seq 1 "$ROUNDS"); do
  for server in "${SERVERS[@]}"; do
    run_server "$server"
  done
done

python3 - "$RESULTS" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
# Every run of a cell (APPEND=1 or ROUNDS>1 give several), in the order they ran.
runs = {}
for r in rows:
    runs.setdefault((r["server"], r["protocol"], r["source_kbps"], r["players"]), []).append(r)
peers = sorted({r["server"] for r in rows} - {"streamr"})
cpu_of = lambda row: float(row["cpu_s_per_player_s"])
def median_row(cell):
    """The run with the median CPU (the lower middle one of an even count)."""
    ordered = sorted(cell, key=cpu_of)
    return ordered[(len(ordered) - 1) // 2]
print("| path | kbit/s | players | server | runs | CPU s per player-second (median; min–max) | ratio (peer ÷ ours, medians; per-round range) | RSS KiB/player | stalled | hop latency p50 / p95 ms | batch delay ms | kernel share | writes per player-s | bytes per write | syscalls per player-s (all/write/epoll/futex/cs) | load avg |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for key, ours_runs in runs.items():
    if key[0] != "streamr":
        continue
    key = key[1:]
    ours = statistics.median(map(cpu_of, ours_runs))
    for name in ["streamr"] + peers:
        cell = runs.get((name,) + key)
        if not cell:
            continue
        row = median_row(cell)
        cpus = [cpu_of(c) for c in cell]
        cpu = statistics.median(cpus)
        spread = f"; {min(cpus):.6f}–{max(cpus):.6f}" if len(cell) > 1 else ""
        if name == "streamr":
            ratio = "1×"
        else:
            ratio = f"{cpu / max(ours, 1e-12):.2f}×"
            pairs = [p / max(o, 1e-12) for p, o in zip(map(cpu_of, cell), map(cpu_of, ours_runs))]
            if len(pairs) > 1:
                ratio += f" ({min(pairs):.2f}–{max(pairs):.2f}×)"
            # Players that stalled took fewer bytes, so the server did less: no like-for-like.
            if max(float(c["stalled_share"]) for c in cell + ours_runs) > 0.01:
                ratio += " (stalls: not comparable)"
        stalled = float(row["stalled_share"])
        print(f"| {key[0]} | {key[1]} | {key[2]} | {name} | {len(cell)} | {cpu:.6f}{spread} | {ratio} |"
              f" {float(row['rss_kib_per_player']):.1f} | {stalled:.1%} | {row['latency_p50_ms']} / {row['latency_p95_ms']} |"
              f" {row.get('batch_delay_ms', '-')} | {row.get('sys_share', '-')} |"
              f" {row.get('writes_per_player_s', '-')} | {row.get('bytes_per_write', '-')} | {row.get('syscalls_per_player_s', '-')} | {row['loadavg']} |")
PY
