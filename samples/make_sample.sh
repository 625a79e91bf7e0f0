#!/bin/sh
# Regenerates samples/sample.flv: the stream `streamr demo` publishes in a loop.
# 10 s of a moving test pattern with a 1 kHz tone, H.264 (baseline, 2 s GOP, 25 fps)
# and AAC-LC in FLV, 320x180, about 400 kbit/s in all, so the file stays well under 1 MB.
set -eu
cd "$(dirname "$0")"
ffmpeg -hide_banner -loglevel error -y \
    -f lavfi -i "testsrc2=size=320x180:rate=25:duration=10" \
    -f lavfi -i "sine=frequency=1000:sample_rate=44100:duration=10" \
    -c:v libx264 -profile:v baseline -preset veryfast -pix_fmt yuv420p \
    -b:v 300k -maxrate 300k -bufsize 600k \
    -g 50 -keyint_min 50 -sc_threshold 0 \
    -c:a aac -b:a 64k -ac 2 \
    -map_metadata -1 -fflags +bitexact -flags:v +bitexact -flags:a +bitexact \
    -f flv sample.flv
ls -l sample.flv
