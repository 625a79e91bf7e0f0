#!/usr/bin/env bash
# Regenerates the small FLV test vectors used by the FLV, MPEG-TS and HLS tests.
# Deterministic settings (bitexact, single thread) keep re-runs close to the committed files.
set -euo pipefail
cd "$(dirname "$0")"

common=(-hide_banner -loglevel error -y -fflags +bitexact -flags:v +bitexact -flags:a +bitexact)
x264=(-c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p -b:v 120k -maxrate 120k -bufsize 240k
      -x264-params "keyint=25:min-keyint=25:scenecut=0")

# H.264 (with B-frames, one keyframe per second) + AAC, 10 s.
ffmpeg "${common[@]}" -f lavfi -i "testsrc=size=160x120:rate=25:duration=10" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=10" \
  "${x264[@]}" -bf 2 -c:a aac -b:a 48k -ac 2 -f flv av_bframes.flv

# H.264 without B-frames, keyframes every 2 s, 6 s, no audio.
ffmpeg "${common[@]}" -f lavfi -i "testsrc2=size=160x120:rate=25:duration=6" \
  -c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p -b:v 120k -bf 0 \
  -x264-params "keyint=50:min-keyint=50:scenecut=0" -f flv video_only.flv

# AAC only, 8 s.
ffmpeg "${common[@]}" -f lavfi -i "sine=frequency=660:sample_rate=48000:duration=8" \
  -c:a aac -b:a 48k -ac 1 -f flv audio_only.flv

# H.264 at a variable frame rate (frame intervals from 10 to 120 ms, a keyframe every 30
# frames, ~2 s) + AAC, 10 s: millisecond timestamps from the filter through the encoder.
ffmpeg "${common[@]}" -f lavfi -i "testsrc2=size=160x120:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=44100" -t 10 \
  -vf "settb=1/1000,setpts='(N*0.065+0.0366*sin(N*1.7))/TB'" -fps_mode vfr -enc_time_base:v 1/1000 \
  -c:v libx264 -preset veryfast -threads 1 -pix_fmt yuv420p -b:v 120k -bf 0 \
  -x264-params "keyint=30:min-keyint=30:scenecut=0" -c:a aac -b:a 48k -ac 2 -f flv av_vfr.flv

ls -l ./*.flv
