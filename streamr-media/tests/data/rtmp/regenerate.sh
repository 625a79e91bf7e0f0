#!/usr/bin/env bash
# Re-records ffmpeg_publish.bin: the client->server bytes of a 2-second ffmpeg publish
# (320x240 testsrc, H.264 GOP 25, AAC sine) into our server session. It is the "real session"
# input of the chunk decode benchmark and the source of the capture-derived fuzz seeds, which this
# script cuts from it again.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
STREAMR_RECORD_RTMP_CAPTURE=1 cargo test -p streamr-media --test it rtmp_ffmpeg_capture:: -- --nocapture

capture=streamr-media/tests/data/rtmp/ffmpeg_publish.bin
handshake_len=3073 # C0 + C1 + C2
head -c "$handshake_len" "$capture" > fuzz/corpus/handshake/seed_ffmpeg_c0c1c2
head -c 12000 "$capture" > fuzz/corpus/session/seed_ffmpeg_publish_start
tail -c +"$((handshake_len + 1))" "$capture" | head -c 6000 \
  > fuzz/corpus/chunk_decoder/seed_ffmpeg_commands_and_media
