// Chromium plays HTTP-FLV from a node with mpegts.js, the low-latency path browser players take:
// a standalone `streamr-node`, ffmpeg publishing a test pattern and a tone over RTMP (H.264 with
// a 1 s GOP, and AAC or MP3), and a page on another loopback origin (so the node's CORS header
// is what lets the player read the stream) that plays `/{app}/{key}.flv` in a muted <video>.
//
// The player is told the stream is live and nothing about its tracks: the FLV header's flags,
// which the node writes, decide them, as they do for most pages. Each case asserts real
// playback (the clock advances with the wall clock, both tracks are decoded, the picture has the
// published size, the player reported no error) and prints the latency: the player's buffer
// (buffered end minus the current time) and publish-to-screen (the wall clock minus the time
// the frame on screen was published; ffmpeg's start-up is counted in it, so it is an upper
// bound). The latency bound asserted is loose: performance is measured, not tested, here.
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
const MPEGTS_JS = new URL('./node_modules/mpegts.js/dist/mpegts.js', import.meta.url).pathname;
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
// Wall time over which playback is sampled, and the media time it must advance at least.
const SAMPLE_SECONDS = 5;
const MIN_ADVANCE_SECONDS = 3;
// Loose: a player that buffers this much has stalled, whatever the machine's load.
const MAX_LATENCY_MS = 10_000;

/** The two streams: published side by side from the start, played one after the other. */
const STREAMS = {
  aac: { key: 'flv-aac', width: 640, height: 360, audio: ['-c:a', 'aac', '-b:a', '96k'], codec: /^mp4a\.40\./ },
  mp3: { key: 'flv-mp3', width: 480, height: 270, audio: ['-c:a', 'libmp3lame', '-b:a', '96k'], codec: /^mp3$/ },
};

let dir;
let context;
let pageServer;
let pageOrigin;
let httpPort;
const processes = new Processes();

/** Whether `url` answers 200 with the first bytes of a body (the FLV header and a tag). */
function servesBody(url) {
  return new Promise((resolve) => {
    const request = get(url, { timeout: 2000 }, (response) => {
      if (response.statusCode !== 200) { response.resume(); resolve(false); return; }
      let received = 0;
      response.on('data', (chunk) => {
        received += chunk.length;
        if (received > 13) { request.destroy(); resolve(true); }
      });
      response.on('end', () => resolve(false));
      response.on('error', () => resolve(false));
    });
    request.on('error', () => resolve(false));
    request.on('timeout', () => request.destroy(new Error('timeout')));
  });
}

/** Publishes a test pattern (H.264, 25 fps, 1 s GOP) and a tone over RTMP, in real time. */
function publish(rtmp, { key, width, height, audio }) {
  processes.start('ffmpeg', ['-hide_banner', '-loglevel', 'error',
    '-re', '-f', 'lavfi', '-i', `testsrc2=size=${width}x${height}:rate=25`,
    '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=44100',
    '-map', '0:v', '-map', '1:a',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', '25', '-keyint_min', '25', '-sc_threshold', '0', '-b:v', '800k',
    ...audio, '-ar', '44100', '-ac', '2',
    '-f', 'flv', `rtmp://127.0.0.1:${rtmp}/live/${key}`], `ffmpeg (${key})`);
  // Media time 0 on the wall clock, at the latest: ffmpeg starts reading its inputs after this.
  return Date.now();
}

// The player page. It tees the FLV response mpegts.js fetches to read, beside the player, the
// header's track flags and the first tags' timestamps (mpegts.js puts the earlier of the first
// audio and video timestamps at media time 0), which turn `currentTime` into a stream time.
const PAGE = `<!doctype html><title>HTTP-FLV</title>
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<script>
  window.flv = { errors: [], logs: [], header: null, firstAudioMs: null, firstVideoMs: null,
    mediaInfo: null, waiting: 0, firstByteAt: null, firstPlayingAt: null };
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    if (!/\\.flv(\\?|$)/.test(response.url) || !response.body) return response;
    const [forPlayer, forProbe] = response.body.tee();
    probe(forProbe.getReader());
    const teed = new Response(forPlayer, { status: response.status,
      statusText: response.statusText, headers: response.headers });
    Object.defineProperty(teed, 'url', { value: response.url });
    return teed;
  };
  async function probe(reader) {
    let bytes = new Uint8Array(0);
    while (flv.firstAudioMs === null || flv.firstVideoMs === null) {
      const { value, done } = await reader.read();
      if (done) return;
      if (flv.firstByteAt === null) flv.firstByteAt = Date.now();
      const joined = new Uint8Array(bytes.length + value.length);
      joined.set(bytes); joined.set(value, bytes.length); bytes = joined;
      if (bytes.length < 13) continue;
      if (flv.header === null) {
        flv.header = { signature: String.fromCharCode(...bytes.subarray(0, 3)),
          audio: (bytes[4] & 4) !== 0, video: (bytes[4] & 1) !== 0 };
      }
      // Tags after the 9-byte header and PreviousTagSize0: type, size (24), timestamp (24 + 8).
      for (let at = 13; at + 11 <= bytes.length;) {
        const type = bytes[at];
        const size = (bytes[at + 1] << 16) | (bytes[at + 2] << 8) | bytes[at + 3];
        const ms = ((bytes[at + 7] << 24) | (bytes[at + 4] << 16) | (bytes[at + 5] << 8) | bytes[at + 6]) >>> 0;
        if (type === 8 && flv.firstAudioMs === null) flv.firstAudioMs = ms;
        if (type === 9 && flv.firstVideoMs === null) flv.firstVideoMs = ms;
        at += 11 + size + 4;
      }
      if (bytes.length > (4 << 20)) break;
    }
    reader.cancel();
  }
</script>
<script src="/mpegts.js"></script>
<script>
  mpegts.LoggingControl.addLogListener((type, message) => {
    if (type === 'warn' || type === 'error') flv.logs.push(type + ': ' + message);
  });
  window.play = (url) => {
    const video = document.getElementById('v');
    video.addEventListener('waiting', () => { flv.waiting += 1; });
    video.addEventListener('playing', () => { flv.firstPlayingAt ??= Date.now(); });
    const player = mpegts.createPlayer({ type: 'flv', isLive: true, url },
      { enableStashBuffer: false });
    player.on(mpegts.Events.ERROR, (type, detail, info) =>
      flv.errors.push([type, detail, JSON.stringify(info)].join(' ')));
    player.on(mpegts.Events.MEDIA_INFO, (info) => {
      flv.mediaInfo = { hasAudio: info.hasAudio, hasVideo: info.hasVideo,
        audioCodec: info.audioCodec, videoCodec: info.videoCodec, mimeType: info.mimeType };
    });
    player.attachMediaElement(video);
    player.load();
    player.play()?.catch?.((error) => flv.errors.push('play(): ' + error.message));
    window.player = player;
  };
</script>`;

before(async () => {
  assert.ok(NODE_BIN, 'STREAMR_NODE_BIN must name the streamr-node binary (run.sh sets it)');
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'streamr-http-flv-'));
  // The node has 10 s to start, and what waits on it below counts from here too.
  const deadline = Date.now() + 10_000;
  const { rtmp, http } = await startNode(processes, NODE_BIN, dir);
  httpPort = http;
  for (const stream of Object.values(STREAMS)) stream.publishedAt = publish(rtmp, stream);

  // The page's own origin: another loopback port, so the FLV response is cross-origin.
  const mpegtsJs = readFileSync(MPEGTS_JS);
  pageServer = createHttpServer((request, response) => {
    if (request.url === '/mpegts.js') {
      response.writeHead(200, { 'content-type': 'text/javascript' }).end(mpegtsJs);
    } else {
      response.writeHead(200, { 'content-type': 'text/html' }).end(PAGE);
    }
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

  // Both streams are served (a GOP in the node's cache) before a player opens them.
  for (const { key } of Object.values(STREAMS)) {
    const url = `http://127.0.0.1:${httpPort}/live/${key}.flv`;
    while (!(await servesBody(url))) {
      assert.ok(Date.now() < deadline + 15_000, `the node served no FLV for ${key}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
});

after(async () => {
  await context?.close();
  await new Promise((resolve) => (pageServer ? pageServer.close(resolve) : resolve()));
  processes.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const state = (page) => page.evaluate(() => {
  const video = document.getElementById('v');
  const { buffered } = video;
  return {
    ...window.flv,
    now: Date.now(),
    currentTime: video.currentTime,
    bufferedEnd: buffered.length ? buffered.end(buffered.length - 1) : 0,
    width: video.videoWidth,
    height: video.videoHeight,
    audioBytes: video.webkitAudioDecodedByteCount,
    videoBytes: video.webkitVideoDecodedByteCount,
    decodedFrames: video.webkitDecodedFrameCount,
    droppedFrames: video.webkitDroppedFrameCount,
    mediaError: video.error && `${video.error.code} ${video.error.message}`,
  };
});

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** Plays `stream` in a fresh page, asserts real playback of both tracks, prints the latency. */
async function plays(name) {
  const stream = STREAMS[name];
  const url = `http://127.0.0.1:${httpPort}/live/${stream.key}.flv`;
  const page = await context.newPage();
  const pageErrors = [];
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await page.goto(`${pageOrigin}/`);
  const openedAt = Date.now();
  await page.evaluate((src) => window.play(src), url);
  await page.waitForFunction(() => document.getElementById('v').currentTime > 0.5
    || window.flv.errors.length > 0, null, { timeout: 15_000 });
  const first = await state(page);
  assert.deepEqual(first.errors, [], `mpegts.js reported no error: ${JSON.stringify(first.logs)}`);

  // The node's FLV header announces both tracks, and the player took both from the stream.
  assert.deepEqual(first.header, { signature: 'FLV', audio: true, video: true }, 'FLV header flags');
  assert.equal(first.mediaInfo?.hasAudio, true, `audio track: ${JSON.stringify(first.mediaInfo)}`);
  assert.equal(first.mediaInfo?.hasVideo, true, `video track: ${JSON.stringify(first.mediaInfo)}`);
  assert.match(first.mediaInfo.audioCodec ?? '', stream.codec, 'audio codec');
  assert.match(first.mediaInfo.videoCodec ?? '', /^avc1\./, 'video codec');

  // Real time playback, sampled: the media clock keeps up with the wall clock.
  const buffers = [];
  const delays = [];
  let last = first;
  for (let i = 0; i < SAMPLE_SECONDS * 4; i += 1) {
    await page.waitForTimeout(250);
    last = await state(page);
    buffers.push((last.bufferedEnd - last.currentTime) * 1000);
    const streamMs = Math.min(last.firstAudioMs, last.firstVideoMs) + last.currentTime * 1000;
    delays.push(last.now - stream.publishedAt - streamMs);
  }
  const advanced = last.currentTime - first.currentTime;
  const wall = (last.now - first.now) / 1000;
  const figures = {
    stream: stream.key,
    first_byte_ms: last.firstByteAt - openedAt,
    first_playing_ms: last.firstPlayingAt - openedAt,
    advanced_s: Number(advanced.toFixed(2)),
    wall_s: Number(wall.toFixed(2)),
    buffer_ms_p50: Math.round(median(buffers)),
    buffer_ms_max: Math.round(Math.max(...buffers)),
    publish_to_screen_ms_p50: Math.round(median(delays)),
    waiting_events: last.waiting,
    decoded_frames: last.decodedFrames,
    dropped_frames: last.droppedFrames,
    audio_bytes: last.audioBytes,
    video_bytes: last.videoBytes,
    mpegts_warnings: last.logs,
  };
  console.log(`http-flv ${name}: ${JSON.stringify(figures)}`);
  writeFileSync(join(ARTIFACTS, `http-flv-${name}.json`), `${JSON.stringify(figures, null, 2)}\n`);
  await page.screenshot({ path: join(ARTIFACTS, `http-flv-${name}.png`) });

  assert.deepEqual(last.errors, [], `mpegts.js reported no error: ${JSON.stringify(last.logs)}`);
  assert.equal(last.mediaError, null, 'the video element has no error');
  assert.deepEqual(pageErrors, [], 'no uncaught error in the page');
  assert.ok(advanced >= MIN_ADVANCE_SECONDS,
    `playback advanced ${advanced.toFixed(2)} s in ${wall.toFixed(2)} s of wall time`);
  assert.equal(last.width, stream.width, 'video width');
  assert.equal(last.height, stream.height, 'video height');
  assert.ok(last.videoBytes > 0, `video decoded: ${last.videoBytes} bytes`);
  assert.ok(last.audioBytes > 0, `audio decoded: ${last.audioBytes} bytes`);
  assert.ok(median(delays) < MAX_LATENCY_MS, `publish-to-screen ${Math.round(median(delays))} ms`);
  await page.evaluate(() => window.player.destroy());
  await page.close();
}

test('chromium plays HTTP-FLV (H.264 and AAC) from a node with mpegts.js', () => plays('aac'));

test('chromium plays HTTP-FLV (H.264 and MP3) from a node with mpegts.js', () => plays('mp3'));
