#!/usr/bin/env bash
# Re-records ffmpeg_publish.bin: the client->server bytes of a 2-second ffmpeg publish
# (320x240 testsrc, H.264 GOP 25, AAC sine) into our server session. It is the seed corpus of the
# session/chunk/handshake fuzz targets and the "real session" input of the chunk decode benchmark.
set -euo pipefail
cd "$(dirname "$0")/../../../.."
STREAMR_RECORD_RTMP_CAPTURE=1 cargo test -p streamr-media --test rtmp_ffmpeg_capture -- --nocapture
