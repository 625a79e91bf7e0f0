#!/usr/bin/env bash
# Regenerates the Enhanced RTMP FLV test vectors: what a modern publisher (FFmpeg 8 or newer,
# whose FLV muxer writes Enhanced RTMP v2) sends for HEVC, AV1 and VP9 video, Opus audio and a
# second video and audio track (multitrack packets). Debian's FFmpeg 5.1 cannot write these.
# FFMPEG names the binary (default: ffmpeg); it needs libx265, libsvtav1, libvpx and libopus.
set -euo pipefail
cd "$(dirname "$0")"
ffmpeg=${FFMPEG:-ffmpeg}

common=(-hide_banner -loglevel error -y -fflags +bitexact -flags:v +bitexact -flags:a +bitexact)
video="testsrc2=size=160x90:rate=25:duration=4"
tone="sine=frequency=440:sample_rate=48000:duration=4"
x265=(-c:v libx265 -preset ultrafast -pix_fmt yuv420p
      -x265-params "keyint=25:min-keyint=25:scenecut=0:bframes=2:log-level=error")

# HEVC with B-frames (CodedFrames with composition offsets, CodedFramesX) + AAC, 4 s.
"$ffmpeg" "${common[@]}" -f lavfi -i "$video" -f lavfi -i "$tone" \
  "${x265[@]}" -b:v 80k -c:a aac -b:a 32k -ac 2 -f flv hevc_aac.flv

# AV1 (SVT-AV1) + Opus (FourCC audio with a multichannel configuration), 4 s.
"$ffmpeg" "${common[@]}" -f lavfi -i "$video" -f lavfi -i "$tone" \
  -c:v libsvtav1 -preset 12 -g 25 -b:v 80k -pix_fmt yuv420p -svtav1-params log-level=0 \
  -c:a libopus -b:a 32k -ac 2 -f flv av1_opus.flv 2>/dev/null

# VP9 + AAC, 4 s.
"$ffmpeg" "${common[@]}" -f lavfi -i "$video" -f lavfi -i "$tone" \
  -c:v libvpx-vp9 -deadline realtime -cpu-used 8 -g 25 -b:v 80k -pix_fmt yuv420p \
  -c:a aac -b:a 32k -ac 2 -f flv vp9_aac.flv

# Multitrack: the HEVC + AAC stream above as tracks 0, and an AV1 video and a second AAC track
# as track 1 (Enhanced RTMP multitrack packets), 4 s.
"$ffmpeg" "${common[@]}" -i hevc_aac.flv -f lavfi -i "testsrc=size=160x90:rate=25:duration=4" \
  -f lavfi -i "sine=frequency=880:sample_rate=48000:duration=4" \
  -map 0:v -map 1:v -map 0:a -map 2:a -c:v:0 copy -c:a:0 copy \
  -c:v:1 libsvtav1 -preset 12 -g 25 -b:v:1 60k -pix_fmt:v:1 yuv420p -svtav1-params log-level=0 \
  -c:a:1 aac -b:a:1 32k -ac:a:1 2 -f flv multitrack.flv 2>/dev/null

ls -l ./*.flv
