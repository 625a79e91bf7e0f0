// LL-HLS in Chromium with hls.js in low-latency mode, through a friend node of a running network
// (started by run.sh): the watch page plays the node's fMP4 rendition (`?ll=1`), and each run
// measures start-up (page start to the first `playing` event) and latency (wall clock minus the
// EXT-X-PROGRAM-DATE-TIME of the frame on screen, which the node stamps from the stream's clock
// when the frames arrive). The figures go to artifacts/ll-hls.json and the test output as
// measurements for docs/benchmarks.md; one bound is asserted, generously: LL-HLS latency p50 at
// most MAX_LL_LATENCY_P50_MS (issue 13: a friend stamping its first listed segment with the
// time of the segment it left out showed as ~4 s more). The MPEG-TS playlist through
// the same node is measured in the same run as the baseline. In LL-HLS mode the page checks
// every fMP4 part against the origin's signed part reports the node passes on (checked in the
// page; the coordinator is not asked about each part, which this test asserts) and each completed
// segment against its fMP4 hash, and signs receipts over the fMP4 chain: the first run waits
// until the coordinator accepted and credited one, with no part or segment failing a check.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.STREAMR_COORDINATOR;
const STREAM = process.env.STREAMR_STREAM || 'demo';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const RUNS = Number(process.env.STREAMR_LL_RUNS || 3);
const BASELINE_RUNS = Number(process.env.STREAMR_TS_RUNS || 2);
const SAMPLE_SECONDS = Number(process.env.STREAMR_LL_SECONDS || 6);
// LL-HLS latency p50 measured 1.55 s at a load average of 17-19 on the 2-core machine and
// 1.2-1.4 s when quiet: twice the loaded figure still fails a PDT a segment off.
const MAX_LL_LATENCY_P50_MS = 3000;
// hls.js fetches each part once; one more allows a retried request.
const MAX_FETCHES_PER_PART = 2;

let context;
let profile;

before(async () => {
  assert.ok(BASE, 'STREAMR_COORDINATOR must name the coordinator (run.sh sets it)');
  mkdirSync(ARTIFACTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'streamr-chromium-ll-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required'],
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

function percentile(values, p) {
  const sorted = [...values].sort((a, b) => a - b);
  if (!sorted.length) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index];
}

/** Opens the watch page `runs` times and samples start-up and latency. */
async function measure(lowLatency, runs) {
  const startups = [];
  const latencies = [];
  const errors = [];
  const requests = [];
  for (let run = 0; run < runs; run += 1) {
    const page = await context.newPage();
    page.on('pageerror', (error) => errors.push(error.message));
    // fMP4 requests on the wire, to tell refetches from distinct parts; and the page's
    // requests to the coordinator (per-part lookups, segment hash refreshes, all of them).
    const m4s = [];
    const coordinator = { all: 0, partLookups: 0, segmentLists: 0 };
    const base = new URL(BASE);
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (/\.m4s(\?|$)/.test(request.url())) m4s.push(url.pathname);
      if (url.host === base.host && url.pathname.startsWith('/streams/')) {
        coordinator.all += 1;
        if (/\/parts\/[0-9a-f]{64}$/.test(url.pathname)) coordinator.partLookups += 1;
        if (/\/segments$/.test(url.pathname)) coordinator.segmentLists += 1;
      }
    });
    await page.goto(`${BASE}/watch/${encodeURIComponent(STREAM)}${lowLatency ? '?ll=1' : ''}`);
    await page.waitForFunction(() => globalThis.streamrPlayer?.timing.firstPlayingMs != null,
      null, { timeout: 45_000 });
    const player = await page.evaluate(() => {
      const { hls } = globalThis.streamrPlayer;
      const level = hls.levels[hls.loadLevel];
      return {
        startup: globalThis.streamrPlayer.timing.firstPlayingMs,
        lowLatency: globalThis.streamrPlayer.lowLatency,
        url: hls.url,
        levels: hls.levels.length,
        level: level ? [].concat(level.url ?? [], level.uri ?? []).join(' ') : null,
      };
    });
    assert.equal(player.lowLatency, lowLatency, 'hls.js runs in the mode asked for');
    if (lowLatency) {
      // The stream has both renditions: the multivariant playlist is opened, and the player
      // keeps to its LL-HLS rendition.
      assert.match(player.url, /\/master\.m3u8\?/, `the multivariant playlist is loaded: ${player.url}`);
      assert.ok(player.levels > 1, `both renditions are listed: ${JSON.stringify(player)}`);
      assert.match(player.level ?? '', /\/ll\.m3u8(\?|$)/, `the LL-HLS rendition plays: ${JSON.stringify(player)}`);
    }
    startups.push(player.startup);
    for (let i = 0; i < SAMPLE_SECONDS * 4; i += 1) {
      await page.waitForTimeout(250);
      const sample = await page.evaluate(() => {
        const { hls } = globalThis.streamrPlayer;
        const video = document.querySelector('video');
        const date = hls.playingDate;
        return video.paused || !date ? null : Date.now() - date.getTime();
      });
      if (sample !== null) latencies.push(sample);
    }
    const state = await page.evaluate(() => ({
      parts: globalThis.streamrPlayer.timing.parts,
      errors: document.querySelector('#s-errors').textContent,
    }));
    if (lowLatency) {
      assert.ok(state.parts > SAMPLE_SECONDS, `fMP4 parts were fetched: ${JSON.stringify(state)}`);
      // Each part (and segment) URL once, a second time at most for a retried request: a player
      // looping over parts it already has multiplies the node's bandwidth (it once fetched 30
      // parts 968 times in 15 s, the buffered media ending short of the part's end).
      const perUrl = new Map();
      for (const path of m4s) perUrl.set(path, (perUrl.get(path) || 0) + 1);
      const refetched = [...perUrl].filter(([, count]) => count > MAX_FETCHES_PER_PART);
      assert.deepEqual(refetched, [], `no part fetched more than ${MAX_FETCHES_PER_PART} times `
        + `(${m4s.length} requests for ${perUrl.size} URLs)`);
      // Parts are checked against the origin's signed reports the node passes on: the page
      // does not ask the coordinator about each part (one lookup allowed for a report that
      // came late), and refreshes the origin's segment hashes about once per segment.
      const checks = await page.evaluate(() => {
        const { stats } = globalThis.streamrPlayer;
        return { byReport: stats.partsByReport, byCoordinator: stats.partsByCoordinator, refused: stats.reportsRefused };
      });
      assert.ok(checks.byReport > 0, `parts checked against the node's part reports: ${JSON.stringify({ checks, coordinator })}`);
      assert.equal(checks.refused, 0, `no part report refused: ${JSON.stringify(checks)}`);
      assert.ok(coordinator.partLookups <= 1,
        `per-part coordinator lookups are gone: ${JSON.stringify({ checks, coordinator, parts: state.parts })}`);
      assert.ok(coordinator.segmentLists <= Math.max(4, state.parts / 2),
        `segment hashes refreshed about once per segment, not per part: ${JSON.stringify({ coordinator, parts: state.parts })}`);
      requests.push({ m4s_requests: m4s.length, m4s_distinct: perUrl.size, coordinator, checks });
    }
    if (lowLatency && run === 0) {
      // A receipt needs one whole segment played from its first part, then its origin report.
      await page.waitForFunction(() => {
        const { stats } = globalThis.streamrPlayer;
        const credited = document.querySelector('#s-credited').textContent;
        return stats.accepted > 0 && /in [1-9]\d* receipts/.test(credited);
      }, null, { timeout: 30_000 }).catch(() => {});
      const verified = await page.evaluate(() => ({
        ...globalThis.streamrPlayer.stats,
        loaded: globalThis.streamrPlayer.timing.parts,
        credited: document.querySelector('#s-credited').textContent,
        verify: document.querySelector('[data-step="verify"] .state').textContent,
        receipts: document.querySelector('[data-step="receipts"] .state').textContent,
      }));
      assert.ok(verified.parts > 0, `fMP4 parts verified against the origin's part hashes: ${JSON.stringify(verified)}`);
      assert.ok(verified.segments > 0, `fMP4 segments verified on the fMP4 chain: ${JSON.stringify(verified)}`);
      assert.equal(verified.unverified, 0, `every part and segment verified: ${JSON.stringify(verified)}`);
      assert.ok(verified.accepted > 0, `LL-HLS receipts accepted: ${JSON.stringify(verified)}`);
      assert.match(verified.credited, /in [1-9]\d* receipts/, `the coordinator credited them: ${JSON.stringify(verified)}`);
      verified.m4s_requests = m4s.length;
      verified.m4s_distinct = new Set(m4s).size;
      console.log(`LL-HLS verification: ${JSON.stringify(verified)}`);
    }
    assert.match(state.errors, /^0 \//, `no fatal player error: ${state.errors}`);
    if (run === 0 && lowLatency) {
      await page.screenshot({ path: join(ARTIFACTS, 'watch-ll.png'), fullPage: true });
    }
    await page.close();
  }
  assert.deepEqual(errors, [], 'no page errors');
  assert.ok(latencies.length > 0, 'latency was sampled');
  return {
    runs,
    ...(lowLatency ? { m4s: requests } : {}),
    startup_ms: { p50: percentile(startups, 50), max: Math.max(...startups), all: startups.map(Math.round) },
    latency_ms: { samples: latencies.length, p50: percentile(latencies, 50), p95: percentile(latencies, 95) },
  };
}

test('the watch page plays LL-HLS through a friend node; start-up and latency are measured', async () => {
  const ll = await measure(true, RUNS);
  // The MPEG-TS playlist through the same node, in the same run, as the baseline.
  const ts = await measure(false, BASELINE_RUNS);
  const figures = {
    ll_hls: ll,
    mpeg_ts: ts,
    ratio_ts_over_ll: {
      startup_p50: ts.startup_ms.p50 / ll.startup_ms.p50,
      latency_p50: ts.latency_ms.p50 / ll.latency_ms.p50,
    },
  };
  writeFileSync(join(ARTIFACTS, 'll-hls.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`LL-HLS figures: ${JSON.stringify(figures)}`);
  assert.ok(
    ll.latency_ms.p50 <= MAX_LL_LATENCY_P50_MS,
    `LL-HLS latency p50 ${ll.latency_ms.p50} ms is above ${MAX_LL_LATENCY_P50_MS} ms`,
  );
});
