#!/usr/bin/env bash
# Compares FLV→MPEG-TS remux speed against `ffmpeg -c copy -f mpegts` on the same 60 s 720p file.
#
# All run as processes reading the file and writing into the same temporary directory:
# ffmpeg and `streamr remux-ts` each write one continuous .ts (the like-for-like comparison);
# `streamr remux` writes HLS segments plus playlist and hashes every segment. Times are medians of
# RUNS runs, interleaved so machine load hits all alike (hyperfine is used when installed). When
# criterion results from `cargo bench --bench remux` exist, the in-process throughput is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-7}"
target_dir="${CARGO_TARGET_DIR:-target}"

input="$(bash benches/make_bench_input.sh)"
size=$(stat -c %s "$input")
cargo build --release --quiet -p streamr
streamr="$target_dir/release/streamr"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

ffmpeg_cmd=(ffmpeg -nostdin -hide_banner -loglevel error -y -i "$input" -c copy -f mpegts "$work/ffmpeg.ts")
streamr_cmd=("$streamr" remux "$input" "$work/hls")
streamr_ts_cmd=("$streamr" remux-ts "$input" "$work/streamr.ts")

median_ns() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_once() {
  rm -rf "$work/hls" "$work/ffmpeg.ts" "$work/streamr.ts"
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null
  end=$(date +%s%N)
  echo $((end - start))
}

if command -v hyperfine >/dev/null 2>&1; then
  hyperfine --warmup 1 --runs "$RUNS" --export-json "$work/h.json" \
    "${ffmpeg_cmd[*]}" "${streamr_ts_cmd[*]}" "rm -rf $work/hls && ${streamr_cmd[*]}"
  read -r ffmpeg_ns ts_ns ours_ns < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(*(int(x["median"]*1e9) for x in r))' "$work/h.json")
else
  time_once "${ffmpeg_cmd[@]}" >/dev/null  # warm the page cache
  : >"$work/f"; : >"$work/t"; : >"$work/o"
  for _ in $(seq 1 "$RUNS"); do
    time_once "${ffmpeg_cmd[@]}" >>"$work/f"
    time_once "${streamr_ts_cmd[@]}" >>"$work/t"
    time_once "${streamr_cmd[@]}" >>"$work/o"
  done
  ffmpeg_ns=$(median_ns <"$work/f")
  ts_ns=$(median_ns <"$work/t")
  ours_ns=$(median_ns <"$work/o")
fi

mbps() { awk -v b="$size" -v ns="$1" 'BEGIN {printf "%.0f", b / (ns / 1e9) / 1e6}'; }
echo "input: $input ($size bytes), median of $RUNS runs"
echo "ffmpeg -c copy -f mpegts : $((ffmpeg_ns / 1000000)) ms  ($(mbps "$ffmpeg_ns") MB/s)"
echo "streamr remux-ts         : $((ts_ns / 1000000)) ms  ($(mbps "$ts_ns") MB/s)"
echo "streamr remux (HLS)      : $((ours_ns / 1000000)) ms  ($(mbps "$ours_ns") MB/s)"
awk -v f="$ffmpeg_ns" -v o="$ts_ns" 'BEGIN {printf "process ratio (remux-ts vs ffmpeg): %.1fx\n", f / o}'
awk -v f="$ffmpeg_ns" -v o="$ours_ns" 'BEGIN {printf "process ratio (HLS remux vs ffmpeg): %.1fx\n", f / o}'

estimates="$target_dir/criterion/flv_to_ts/remux_flv_to_ts/720p60s/new/estimates.json"
if [ ! -f "$estimates" ]; then
  estimates="target/criterion/flv_to_ts/remux_flv_to_ts/720p60s/new/estimates.json"
fi
if [ -f "$estimates" ] && command -v python3 >/dev/null 2>&1; then
  lib_ns=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["median"]["point_estimate"]))' "$estimates")
  echo "in-process remux_flv_to_ts (criterion median): $((lib_ns / 1000)) us ($(mbps "$lib_ns") MB/s)"
  awk -v f="$ffmpeg_ns" -v o="$lib_ns" 'BEGIN {printf "in-process ratio: %.1fx ffmpeg\n", f / o}'
fi
