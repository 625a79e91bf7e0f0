#!/usr/bin/env bash
# Generates the FLV→TS remux benchmark input: 60 s of 1280x720 30 fps H.264 (B-frames, 2 s GOP)
# with 128 kb/s AAC, about 20 MB. Written to target/bench-data/ (gitignored); skipped when present.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/bench-data/remux_720p60s.flv}"
if [ -s "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$(dirname "$out")"
tmp="$out.partial.flv"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30:duration=60" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=60" \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -b:v 2500k -maxrate 2500k -bufsize 5000k -bf 2 \
  -x264-params "keyint=60:min-keyint=60:scenecut=0" \
  -c:a aac -b:a 128k -ac 2 -f flv "$tmp"
mv "$tmp" "$out"
echo "$out"
