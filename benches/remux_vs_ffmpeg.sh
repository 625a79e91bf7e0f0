#!/usr/bin/env bash
# Compares FLV→MPEG-TS remux speed against `ffmpeg -c copy -f mpegts` on the same files.
#
# Inputs: the 60 s 720p file of make_bench_input.sh (20 MB) and, so that per-byte costs outweigh
# process start-up, a 300 s file (100 MB) made from it by ffmpeg (`-stream_loop 4 -c copy`, no
# re-encoding). Every command runs as a process reading the input from the page cache (a warm-up
# round reads it first) and writing a new file into the same temporary directory (outputs are
# deleted before each run: overwriting a file costs ext4 a flush on close). ffmpeg and
# `streamr remux-ts` each write one continuous .ts (the like-for-like comparison); `streamr remux`
# writes HLS segments plus playlist and hashes every segment (BLAKE3).
#
# Runs are interleaved (ffmpeg, remux-ts, remux, ffmpeg, ...) so that machine load hits all
# alike (paths must not contain spaces: hyperfine splits the command line); each ratio is the median over rounds of ffmpeg's time divided by ours in the same round.
# `ffmpeg -version` is timed the same way, as ffmpeg's start-up cost. Set RUNS (default 11) and
# SIZES ("60 300", seconds of input) to change the runs.
#
# Before timing, the warm-up round checks that ffmpeg's and our .ts decode to the same frames:
# ffmpeg decodes each output's video and audio and the per-frame MD5s (framemd5) must match; the
# script stops otherwise. A faster remux that changed the media would not count.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-11}"
SIZES="${SIZES:-60 300}"
target_dir="${CARGO_TARGET_DIR:-target}"

short="$(bash benches/make_bench_input.sh)"
cargo build --release --quiet --locked -p streamr
streamr="$target_dir/release/streamr"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

input_for() {
  local seconds=$1
  if [ "$seconds" = 60 ]; then
    echo "$short"
    return
  fi
  local long="${short%60s.flv}${seconds}s.flv"
  if [ ! -s "$long" ]; then
    ffmpeg -nostdin -hide_banner -loglevel error -y -stream_loop $((seconds / 60 - 1)) \
      -i "$short" -c copy -f flv "$long.partial.flv"
    mv "$long.partial.flv" "$long"
  fi
  echo "$long"
}

# Wall time of one run in nanoseconds, output deleted first. hyperfine (when installed) times the
# process alone, from spawn to exit; otherwise `date` around the command adds the same fork and
# exec overhead (about a millisecond) to every command.
time_once() {
  rm -rf "$work/hls" "$work/ffmpeg.ts" "$work/streamr.ts"
  if command -v hyperfine >/dev/null 2>&1; then
    hyperfine -N --runs 1 --style none --export-json "$work/one.json" -- "$*" >/dev/null
    python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["results"][0]["times"][0] * 1e9))' "$work/one.json"
    return
  fi
  local start end
  start=$(date +%s%N)
  "$@" >/dev/null
  end=$(date +%s%N)
  echo $((end - start))
}
# MD5 of the list of per-frame MD5s of one stream (v or a) of a file, and the frame count.
decoded() {
  local sum
  sum="$(ffmpeg -nostdin -v error -i "$1" -map "0:$2:0" -f framemd5 - \
    | awk -F', *' '!/^#/ {print $NF}' | tee "$work/frames" | md5sum | cut -d' ' -f1)"
  echo "$sum, $(wc -l <"$work/frames") frames"
}
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ms() { awk -v ns="$1" 'BEGIN {printf "%.1f ms", ns / 1e6}'; }

echo "load average before: $(uptime | sed 's/.*load average: //')"
for seconds in $SIZES; do
  input="$(input_for "$seconds")"
  size=$(stat -c %s "$input")
  ffmpeg_cmd=(ffmpeg -nostdin -hide_banner -loglevel error -y -i "$input" -c copy -f mpegts "$work/ffmpeg.ts")
  ts_cmd=("$streamr" remux-ts "$input" "$work/streamr.ts")
  hls_cmd=("$streamr" remux "$input" "$work/hls")

  # Warm-up round: page cache, binaries; also checks that ffprobe accepts our output.
  cat "$input" >/dev/null
  time_once "${ffmpeg_cmd[@]}" >/dev/null
  time_once ffmpeg -version >/dev/null
  "${ts_cmd[@]}" >/dev/null
  ffprobe -v error -show_entries stream=codec_name -of csv=p=0 "$work/streamr.ts" >/dev/null
  for kind in v a; do
    theirs="$(decoded "$work/ffmpeg.ts" "$kind")"
    ours="$(decoded "$work/streamr.ts" "$kind")"
    if [ "$theirs" != "$ours" ]; then
      echo "error: $kind decodes differently: ffmpeg $theirs, remux-ts $ours" >&2
      exit 1
    fi
    echo "$kind: both outputs decode to the same frames ($ours)"
  done
  : >"$work/rounds"
  for _ in $(seq 1 "$RUNS"); do
    f=$(time_once "${ffmpeg_cmd[@]}")
    t=$(time_once "${ts_cmd[@]}")
    h=$(time_once "${hls_cmd[@]}")
    v=$(time_once ffmpeg -version)
    echo "$f $t $h $v" >>"$work/rounds"
  done
  col() { awk -v c="$1" '{print $c}' "$work/rounds" | median; }
  ratio() { awk -v a="$1" -v b="$2" '{printf "%.3f\n", $a / $b}' "$work/rounds" | median; }
  echo
  echo "input: $input ($size bytes, ${seconds} s), median of $RUNS interleaved rounds"
  echo "ffmpeg -c copy -f mpegts : $(ms "$(col 1)")"
  echo "streamr remux-ts         : $(ms "$(col 2)")   ffmpeg / remux-ts = $(ratio 1 2)x"
  echo "streamr remux (HLS)      : $(ms "$(col 3)")   ffmpeg / remux    = $(ratio 1 3)x"
  echo "ffmpeg -version          : $(ms "$(col 4)")   (ffmpeg's start-up)"
done
echo
echo "load average after: $(uptime | sed 's/.*load average: //')"
