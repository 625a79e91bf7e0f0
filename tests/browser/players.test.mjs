// Chromium plays a node's HLS with the other major web players, Shaka Player and video.js (its
// VHS engine), beside hls.js (ll_hls.test.mjs, https_hls.test.mjs): a standalone `streamr-node`
// with LL-HLS on (its default), ffmpeg publishing a test pattern and a tone over RTMP (H.264 with
// a 1 s GOP, AAC), and a page on another loopback origin (so the node's CORS headers are what let
// the players read the stream). Cases:
//
// - Shaka Player opening the multivariant playlist (`master.m3u8`: the LL-HLS fMP4 rendition and
//   the MPEG-TS one);
// - Shaka Player in low-latency mode opening the LL-HLS rendition (`ll.m3u8`: parts, preload
//   hints, blocking playlist reload);
// - video.js opening the multivariant playlist;
// - video.js opening the LL-HLS rendition, within MAX_VIDEOJS_LL_BEHIND_LIVE_EDGE_MS of the live
//   edge it reports.
//
// Each asserts that playback starts and the media clock advances MIN_ADVANCE_SECONDS with no
// fatal player error, no stall longer than MAX_STALL_MS (the clock standing still, or one picture
// staying on screen while it runs on audio), the published picture size and most frames shown;
// and prints the latency: the wall clock minus the EXT-X-PROGRAM-DATE-TIME of the frame on screen
// (the node stamps it from the stream's clock when the frames arrive), and the distance to the
// live edge the player reports. The latency bounds asserted are loose: a player holding back much
// more than the playlists ask for has misread them. Figures and screenshots go to
// artifacts/players-*.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Processes, startNode } from './support.mjs';

const NODE_BIN = process.env.STREAMR_NODE_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const MODULES = new URL('./node_modules/', import.meta.url).pathname;
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const STREAM = 'players';
const [WIDTH, HEIGHT, FPS] = [640, 360, 25];
const MIN_ADVANCE_SECONDS = 4;
const MAX_STALL_MS = 2000;
// Frames shown at least, as a share of the frames in the media time played.
const MIN_FRAME_SHARE = 0.8;
// Shaka Player in low-latency mode holds back PART-HOLD-BACK (three parts, about 1 s).
const MAX_SHAKA_LL_LATENCY_MS = 6000;
// Without parts a player holds back about three target durations of the MPEG-TS playlist (4 s
// here) behind the newest segment listed, itself up to a segment behind the stream.
const MAX_SEGMENT_LATENCY_MS = 25_000;
// video.js (VHS) on ll.m3u8 reports its distance to the live edge from TARGETDURATION: 3 to
// 4 s with the segments' 4, 11 to 14 s when ll.m3u8 declared the 12 s longest allowed.
const MAX_VIDEOJS_LL_BEHIND_LIVE_EDGE_MS = 8000;

const ASSETS = {
  '/shaka.js': ['text/javascript', join(MODULES, 'shaka-player/dist/shaka-player.compiled.js')],
  '/video.js': ['text/javascript', join(MODULES, 'video.js/dist/video.min.js')],
  '/video-js.css': ['text/css', join(MODULES, 'video.js/dist/video-js.min.css')],
};

// The page: a harness shared by both players. Every 100 ms it samples the media clock (from the
// first time it advances: how far it played, and the longest time it stood still), the pictures
// (the longest time no new frame was shown while the clock ran: a player that loses video keeps
// the clock running on audio), the latency each player reports, and collects fatal errors.
// `window.start(player, url, options)` starts playback.
const PAGE = `<!doctype html><title>players</title>
<link rel="stylesheet" href="/video-js.css">
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script src="/shaka.js"></script>
<script src="/video.js"></script>
<script>
  window.h = { errors: [], warnings: [], startedAt: null, firstAdvanceAt: null, played: 0,
    jumps: [], lastTime: null, lastSampleAt: null, lastAdvanceAt: null, maxStallMs: 0,
    frames: 0, lastFrameAt: null, maxFrameGapMs: 0, latencies: [], edges: [], variant: null };
  const video = () => document.querySelector('video');
  function onFrame() {
    const now = Date.now();
    if (h.firstAdvanceAt !== null) {
      h.frames += 1;
      if (h.lastFrameAt !== null) h.maxFrameGapMs = Math.max(h.maxFrameGapMs, now - h.lastFrameAt);
      h.lastFrameAt = now;
    }
    video().requestVideoFrameCallback(onFrame);
  }
  video().requestVideoFrameCallback(onFrame);
  // The wall clock minus the EXT-X-PROGRAM-DATE-TIME of the media time on screen.
  function pdtLatency() {
    if (window.shakaPlayer) {
      const date = window.shakaPlayer.getPlayheadTimeAsDate();
      return date ? Date.now() - date.getTime() : null;
    }
    if (window.vjs) {
      // VHS: the segment on screen, its start on the media timeline and its date (MPEG-TS
      // segments have the transmuxer's timing; fMP4 ones, which VHS does not transmux, the
      // start and end it maps them to).
      const vhs = window.vjs.tech({ IWillNotUseThisInPlugins: true }).vhs;
      const t = window.vjs.currentTime();
      for (const segment of vhs?.playlists?.media()?.segments ?? []) {
        const timing = segment.videoTimingInfo;
        const start = timing ? timing.transmuxedPresentationStart : segment.start;
        const end = timing ? timing.transmuxedPresentationEnd : segment.end;
        if (!segment.dateTimeObject || start === undefined || end === undefined) continue;
        if (start <= t && t < end) {
          return Date.now() - (segment.dateTimeObject.getTime() + (t - start) * 1000);
        }
      }
    }
    return null;
  }
  // How far behind the live edge the player says it is, in seconds.
  function behindLiveEdge() {
    if (window.shakaPlayer) {
      const { liveLatency } = window.shakaPlayer.getStats();
      return Number.isFinite(liveLatency) ? liveLatency : null;
    }
    if (window.vjs) {
      const tracker = window.vjs.liveTracker;
      return tracker?.isTracking() ? tracker.liveCurrentTime() - window.vjs.currentTime() : null;
    }
    return null;
  }
  setInterval(() => {
    const v = video();
    if (h.startedAt === null) return;
    const now = Date.now();
    const t = v.currentTime;
    if (h.lastTime !== null && t !== h.lastTime) {
      // Playing moves the clock about as far as the wall clock; anything else is a seek (a
      // player moving to or back towards the live edge), which is not counted as played.
      const step = t - h.lastTime;
      if (step > 0 && step <= ((now - h.lastSampleAt) / 1000) * 2 + 0.25) {
        if (h.firstAdvanceAt === null) { h.firstAdvanceAt = now; h.lastFrameAt = now; }
        h.played += step;
        h.lastAdvanceAt = now;
      } else {
        h.jumps.push(Number(step.toFixed(3)));
      }
    }
    h.lastTime = t;
    h.lastSampleAt = now;
    if (h.firstAdvanceAt !== null) {
      h.maxStallMs = Math.max(h.maxStallMs, now - h.lastAdvanceAt);
      if (!v.paused) h.maxFrameGapMs = Math.max(h.maxFrameGapMs, now - h.lastFrameAt);
      const latency = pdtLatency();
      if (latency !== null) h.latencies.push(latency);
      const edge = behindLiveEdge();
      if (edge !== null) h.edges.push(edge * 1000);
    }
    if (window.vjs) {
      const media = window.vjs.tech({ IWillNotUseThisInPlugins: true }).vhs?.playlists?.media();
      if (media) h.variant = { uri: media.resolvedUri, bandwidth: media.attributes?.BANDWIDTH };
    }
  }, 100);
  window.start = async (kind, url, { lowLatency = false, shakaConfig = {} }) => {
    h.startedAt = Date.now();
    if (kind === 'shaka') {
      shaka.polyfill.installAll();
      const player = new shaka.Player();
      window.shakaPlayer = player;
      player.addEventListener('error', (event) => {
        const e = event.detail;
        const text = 'shaka ' + e.code + ' ' + JSON.stringify(e.data).slice(0, 300);
        (e.severity === shaka.util.Error.Severity.CRITICAL ? h.errors : h.warnings).push(text);
      });
      player.configure({ streaming: { lowLatencyMode: lowLatency } });
      player.configure(shakaConfig);
      await player.attach(video());
      try {
        await player.load(url);
        const track = player.getVariantTracks().find((t) => t.active);
        h.variant = track && { bandwidth: track.bandwidth, codecs: track.codecs };
      } catch (e) {
        h.errors.push('shaka load ' + e.code + ' ' + JSON.stringify(e.data).slice(0, 300));
      }
    } else {
      // The live tracker follows a live window of any length (by default only from 20 s on).
      const player = videojs(video(), { liveui: true, liveTracker: { trackingThreshold: 0 },
        html5: { vhs: { overrideNative: true } } });
      window.vjs = player;
      player.on('error', () => {
        const e = player.error();
        h.errors.push('video.js ' + (e && (e.code + ' ' + e.message)));
      });
      player.src({ src: url, type: 'application/x-mpegURL' });
      player.play()?.catch?.((e) => h.warnings.push('play(): ' + e.message));
    }
  };
</script>`;

let dir;
let context;
let pageServer;
let pageOrigin;
let httpPort;
const processes = new Processes();

/** GET `url`: the status and body, or null when it fails. */
function fetchText(url) {
  return new Promise((resolve) => {
    const request = get(url, { timeout: 2000 }, (response) => {
      let body = '';
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, body }));
      response.on('error', () => resolve(null));
    });
    request.on('error', () => resolve(null));
    request.on('timeout', () => request.destroy(new Error('timeout')));
  });
}

before(async () => {
  assert.ok(NODE_BIN, 'STREAMR_NODE_BIN must name the streamr-node binary (run.sh sets it)');
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'streamr-players-'));
  // The node has 10 s to start, and what waits on it below counts from here too.
  const deadline = Date.now() + 10_000;
  const { rtmp, http } = await startNode(processes, NODE_BIN, dir);
  httpPort = http;
  processes.start('ffmpeg', ['-hide_banner', '-loglevel', 'error',
    '-re', '-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=${FPS}`,
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-map', '0:v', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', `${FPS}`, '-keyint_min', `${FPS}`, '-sc_threshold', '0', '-b:v', '800k',
    '-c:a', 'aac', '-b:a', '96k', '-ar', '44100', '-ac', '2',
    '-f', 'flv', `rtmp://127.0.0.1:${rtmp}/live/${STREAM}`], 'ffmpeg');

  const assets = Object.fromEntries(Object.entries(ASSETS)
    .map(([path, [type, file]]) => [path, [type, readFileSync(file)]]));
  pageServer = createHttpServer((request, response) => {
    const asset = assets[request.url];
    if (asset) response.writeHead(200, { 'content-type': asset[0] }).end(asset[1]);
    else response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
  });
  await new Promise((resolve) => pageServer.listen(0, '127.0.0.1', resolve));
  pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;

  context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });

  // Two whole segments in both renditions before a player opens them: a live player starts
  // some way back from the live edge, and with a single segment listed it has nowhere to go.
  const base = `http://127.0.0.1:${httpPort}/live/${STREAM}`;
  for (;;) {
    const [ts, ll] = [await fetchText(`${base}.m3u8`), await fetchText(`${base}/ll.m3u8`)];
    const segments = (answer) => (answer?.status === 200 ? answer.body.match(/^#EXTINF/gm)?.length ?? 0 : 0);
    if (segments(ts) >= 2 && segments(ll) >= 2) break;
    assert.ok(Date.now() < deadline + 20_000, 'the node listed no two HLS segments');
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const name of ['master.m3u8', 'll.m3u8']) {
    writeFileSync(join(ARTIFACTS, `players-${name}`), (await fetchText(`${base}/${name}`))?.body ?? '');
  }
  writeFileSync(join(ARTIFACTS, 'players-ts.m3u8'), (await fetchText(`${base}.m3u8`))?.body ?? '');
});

after(async () => {
  await context?.close();
  await new Promise((resolve) => (pageServer ? pageServer.close(resolve) : resolve()));
  processes.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Plays `path` of the stream with `kind` (shaka or videojs) in a fresh page and checks it. */
async function plays(name, kind, path,
  { maxLatencyMs, maxBehindLiveEdgeMs = Infinity, pictures = true, maxStallMs = MAX_STALL_MS,
    ...options }) {
  const url = `http://127.0.0.1:${httpPort}/live/${STREAM}/${path}`;
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  const consoleLines = [];
  page.on('console', (message) => {
    if (['warning', 'error'].includes(message.type())) {
      consoleLines.push(`${message.type()}: ${message.text()}`.slice(0, 300));
    }
  });
  await page.goto(`${pageOrigin}/`);
  const openedAt = Date.now();
  await page.evaluate(([k, u, o]) => window.start(k, u, o), [kind, url, options]);
  await page.waitForFunction(() => window.h.firstAdvanceAt !== null || window.h.errors.length > 0,
    null, { timeout: 20_000 }).catch(() => {});
  await page.waitForFunction((min) => window.h.errors.length > 0 || window.h.played >= min,
    MIN_ADVANCE_SECONDS, { timeout: 15_000 }).catch(() => {});
  const h = await page.evaluate(() => {
    const v = document.querySelector('video');
    const stats = window.shakaPlayer?.getStats();
    return { ...window.h, mediaError: v.error && `${v.error.code} ${v.error.message}`,
      width: v.videoWidth, height: v.videoHeight, audioBytes: v.webkitAudioDecodedByteCount,
      droppedFrames: v.webkitDroppedFrameCount,
      gapsJumped: stats?.gapsJumped, stallsDetected: stats?.stallsDetected };
  });
  // The latency once the player has settled: over the last second and a half sampled.
  const recent = (values) => values.slice(-15);
  const figures = {
    case: name,
    url: path,
    first_advance_ms: h.firstAdvanceAt === null ? null : h.firstAdvanceAt - openedAt,
    played_s: Number(h.played.toFixed(2)),
    seeks_s: h.jumps,
    max_stall_ms: h.maxStallMs,
    frames_shown: h.frames,
    max_frame_gap_ms: h.maxFrameGapMs,
    dropped_frames: h.droppedFrames,
    latency_ms_p50: h.latencies.length ? Math.round(median(recent(h.latencies))) : null,
    behind_live_edge_ms_p50: h.edges.length ? Math.round(median(recent(h.edges))) : null,
    variant: h.variant,
    ...(kind === 'shaka' ? { gaps_jumped: h.gapsJumped, stalls_detected: h.stallsDetected } : {}),
    warnings: h.warnings,
    console: consoleLines.slice(0, 10),
  };
  console.log(`players ${name}: ${JSON.stringify(figures)}`);
  writeFileSync(join(ARTIFACTS, `players-${name}.json`), `${JSON.stringify(figures, null, 2)}\n`);
  await page.screenshot({ path: join(ARTIFACTS, `players-${name}.png`) });
  await page.close();

  assert.deepEqual(h.errors, [], 'the player reported no fatal error');
  assert.equal(h.mediaError, null, 'the video element has no error');
  assert.deepEqual(pageErrors, [], 'no uncaught error in the page');
  assert.notEqual(h.firstAdvanceAt, null, 'playback started');
  assert.ok(h.played >= MIN_ADVANCE_SECONDS, `playback advanced ${figures.played_s} s`);
  assert.ok(h.maxStallMs <= maxStallMs, `the clock stood still ${h.maxStallMs} ms at most`);
  assert.equal(`${h.width}x${h.height}`, `${WIDTH}x${HEIGHT}`, 'the picture has the published size');
  assert.ok(h.audioBytes > 0, 'audio decoded');
  // Pictures, not only the clock: at least MIN_FRAME_SHARE of the frames of the media played
  // were shown, and none stayed on screen over MAX_STALL_MS.
  if (pictures) {
    assert.ok(h.frames >= h.played * FPS * MIN_FRAME_SHARE,
      `${h.frames} frames shown for ${figures.played_s} s played`);
    assert.ok(h.maxFrameGapMs <= MAX_STALL_MS, `a frame stayed on screen ${h.maxFrameGapMs} ms`);
  }
  assert.notEqual(figures.latency_ms_p50, null, 'the latency was measured');
  assert.ok(figures.latency_ms_p50 < maxLatencyMs,
    `latency ${figures.latency_ms_p50} ms is under ${maxLatencyMs} ms`);
  if (maxBehindLiveEdgeMs !== Infinity) {
    assert.notEqual(figures.behind_live_edge_ms_p50, null, 'the distance to the live edge was measured');
    assert.ok(figures.behind_live_edge_ms_p50 < maxBehindLiveEdgeMs,
      `${figures.behind_live_edge_ms_p50} ms behind the live edge, under ${maxBehindLiveEdgeMs} ms`);
  }
}

test('Shaka Player plays the multivariant playlist', () =>
  plays('shaka-master', 'shaka', 'master.m3u8', { maxLatencyMs: MAX_SEGMENT_LATENCY_MS }));

test('Shaka Player plays the LL-HLS rendition in low-latency mode', () =>
  plays('shaka-ll', 'shaka', 'll.m3u8', {
    lowLatency: true,
    maxLatencyMs: MAX_SHAKA_LL_LATENCY_MS,
    // Shaka Player 5.2.12 bug (shaka-project/shaka-player#10589, fixed by #10559 after it): in
    // the default segments mode it adds 1 ms to a negative SourceBuffer timestampOffset (an
    // old Edge workaround), then finds the offset 1 ms off its own on the next append and
    // aborts the SourceBuffer before every append. After abort() MSE drops video up to the next
    // keyframe, so every part that does not start with one loses its pictures (the clock runs
    // on audio). A live stream's timestamps are past Shaka's timeline, so the offset is
    // negative; sequence mode skips that recalculation.
    shakaConfig: { manifest: { hls: { sequenceMode: true } } },
  }));

test('video.js plays the multivariant playlist', () =>
  plays('videojs-master', 'videojs', 'master.m3u8', { maxLatencyMs: MAX_SEGMENT_LATENCY_MS }));

// video.js (VHS) opening the LL-HLS rendition directly: its live edge follows
// EXT-X-TARGETDURATION, which is the segments' (4 s), not the 12 s longest allowed (it then
// first played after 10 to 11 s, 11 to 14 s behind the live edge). VHS shows few of the
// pictures of fMP4 parts (27 of 100 in 4 s, with pictures held up to 3 s, as it did with
// TARGETDURATION 12): that is left to its own issue, so pictures are not checked here, and
// the clock may stand still as long as VHS held a picture there (2.2 s seen in a full run on a
// loaded 2-core machine; up to 3 s in runs of this case alone).
test('video.js plays the LL-HLS rendition near the live edge', () =>
  plays('videojs-ll', 'videojs', 'll.m3u8', {
    maxLatencyMs: MAX_SEGMENT_LATENCY_MS,
    maxBehindLiveEdgeMs: MAX_VIDEOJS_LL_BEHIND_LIVE_EDGE_MS,
    pictures: false,
    maxStallMs: 3500,
  }));
