#!/usr/bin/env python3
"""HLS live edge of streamr-node against nginx-rtmp, on the same media at the same time.

One ffmpeg (-re, tee muxer) publishes the same H.264/AAC stream to both servers. Each playlist is
polled every 50 ms; when a segment first appears, its media end (the sum of EXTINF since the
first segment) is compared with the wall time elapsed since publishing started: the difference
is how old the newest listed media is (the live edge age). Also reports the TARGETDURATION
values seen and the segment durations.

usage: measure_hls_live_edge.py NODE_BINARY [SECONDS] [GOP_FRAMES]
"""
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

NODE = sys.argv[1]
SECONDS = int(sys.argv[2]) if len(sys.argv) > 2 else 60
GOP = int(sys.argv[3]) if len(sys.argv) > 3 else 50  # frames at 25 fps

NGINX_CONF = """
load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
daemon off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:19351; application live {{ live on; hls on;
  hls_path {dir}/hls; hls_fragment 4s; hls_playlist_length 24s; }} }} }}
http {{ access_log off; server {{ listen 127.0.0.1:18081;
  location /live/ {{ alias {dir}/hls/; add_header Cache-Control no-cache; }} }} }}
"""


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except Exception:
        return None


def parse(text):
    sequence = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
    target = int(re.search(r"#EXT-X-TARGETDURATION:(\d+)", text).group(1))
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", text)]
    return sequence, target, durations


def main():
    work = tempfile.mkdtemp()
    os.makedirs(f"{work}/hls")
    with open(f"{work}/nginx.conf", "w") as conf:
        conf.write(NGINX_CONF.format(dir=work))
    nginx = subprocess.Popen(["nginx", "-c", f"{work}/nginx.conf"])
    node = subprocess.Popen(
        [NODE, "--rtmp-listen", "127.0.0.1:19352", "--http-listen", "127.0.0.1:18082",
         "--identity", f"{work}/node.key"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    targets = {
        "streamr-node": "http://127.0.0.1:18082/live/cam.m3u8",
        "nginx-rtmp": "http://127.0.0.1:18081/live/cam.m3u8",
    }
    publisher = subprocess.Popen(
        ["ffmpeg", "-nostdin", "-v", "error", "-re",
         "-f", "lavfi", "-i", f"testsrc2=size=640x360:rate=25:duration={SECONDS}",
         "-f", "lavfi", "-i", f"sine=frequency=440:duration={SECONDS}",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", str(GOP), "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-flags", "+global_header", "-map", "0:v", "-map", "1:a", "-f", "tee",
         "[f=flv]rtmp://127.0.0.1:19352/live/cam|[f=flv]rtmp://127.0.0.1:19351/live/cam"])
    start = time.monotonic()
    seen = {name: {} for name in targets}
    target_values = {name: set() for name in targets}
    ages = {name: [] for name in targets}
    while publisher.poll() is None:
        now = time.monotonic() - start
        for name, url in targets.items():
            text = fetch(url)
            if not text or "#EXTINF" not in text:
                continue
            sequence, target, durations = parse(text)
            target_values[name].add(target)
            for offset, duration in enumerate(durations):
                number = sequence + offset
                if number not in seen[name]:
                    seen[name][number] = duration
                    if len(seen[name]) > 1:  # the first one has no predecessor to sum
                        end = sum(seen[name].values())
                        ages[name].append(now - end)
        time.sleep(0.05)
    for process in (node, nginx):
        process.terminate()
        process.wait()
    print(f"{SECONDS} s, GOP {GOP} frames at 25 fps")
    for name in targets:
        durations = list(seen[name].values())
        values = ages[name]
        if not values:
            print(f"{name}: no segments")
            continue
        print(f"{name}: segments {len(durations)}, durations {min(durations):.3f}-{max(durations):.3f} s, "
              f"TARGETDURATION {sorted(target_values[name])}, live edge age p50 "
              f"{statistics.median(values):.2f} s, max {max(values):.2f} s")


main()
