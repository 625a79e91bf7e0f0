// Drives Debian's Chromium through the coordinator's dashboard and watch page against a running
// network (started by run.sh): the tables fill, the stream plays through a friend node, and the
// receipts the page signs with its own Ed25519 key reach the coordinator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.STREAMR_COORDINATOR;
const STREAM = process.env.STREAMR_STREAM || 'demo';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;
const WATCH_SECONDS = 6;

let context;
let profile;
const pageErrors = [];

before(async () => {
  assert.ok(BASE, 'STREAMR_COORDINATOR must name the coordinator (run.sh sets it)');
  mkdirSync(ARTIFACTS, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'streamr-chromium-'));
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

/** A page that records uncaught errors and console errors. */
async function open(path) {
  const page = await context.newPage();
  page.on('pageerror', (error) => pageErrors.push(`${path}: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(`${path}: console: ${message.text()}`);
  });
  await page.goto(`${BASE}${path}`);
  return page;
}

const rows = (page, table) => page.locator(`#${table} tbody tr:not(:has(td.empty))`);

test('the dashboard fills its tables and charts from the live network', async () => {
  const page = await open('/');
  assert.match(page.url(), /\/dashboard$/, 'the root redirects to the dashboard');
  await page.locator('#streams tbody th', { hasText: STREAM }).waitFor({ timeout: 30_000 });
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody .status-ok').length >= 3,
    null, { timeout: 30_000 });
  const nodeRows = await rows(page, 'nodes').count();
  assert.ok(nodeRows >= 3, `at least three nodes listed, saw ${nodeRows}`);
  // Every node has a health light with its reason; probed, serving friends turn green.
  assert.equal(await page.locator('#nodes tbody .health').count(), nodeRows, 'a health cell per node');
  await page.waitForFunction(() => document.querySelectorAll('#nodes tbody .health-green').length >= 1,
    null, { timeout: 90_000 });
  assert.match(await page.locator('#nodes tbody .health-green').first().textContent(),
    /^green: online, \d+ % of \d+ probes passed/);
  // The origin is listed with the stream it serves.
  await page.locator('#origins tbody th').first().waitFor({ timeout: 30_000 });
  assert.match(await rows(page, 'origins').first().textContent(), new RegExp(`reporting.*${STREAM}`));
  // A settled epoch appears in the earnings table and chart.
  await rows(page, 'epochs').first().waitFor({ timeout: 60_000 });
  // Nodes earn once the coordinator has probed them; the chart draws a bar per earning node.
  await page.locator('#earnings-chart rect').first().waitFor({ state: 'attached', timeout: 90_000 });
  assert.ok(await page.locator('#earnings-legend li').count() >= 1, 'the chart has a legend');
  const captions = await page.locator('table caption').count();
  assert.equal(captions, await page.locator('table').count(), 'every table has a caption');
  assert.equal(await page.locator('[aria-live]').count() >= 1, true, 'updates are announced');
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-before-watch.png'), fullPage: true });
  await page.close();
});

test('the watch page plays through a friend node and its receipts reach the coordinator', async () => {
  const page = await open(`/watch/${encodeURIComponent(STREAM)}`);
  const viewerKey = await page.locator('#viewer-key').filter({ hasText: /^[0-9a-f]{64}$/ })
    .textContent({ timeout: 15_000 });
  await page.waitForFunction(() => document.querySelector('video').currentTime > 0.5,
    null, { timeout: 45_000 });
  const start = await page.evaluate(() => document.querySelector('video').currentTime);
  await page.waitForTimeout(WATCH_SECONDS * 1000);
  const end = await page.evaluate(() => document.querySelector('video').currentTime);
  assert.ok(end - start >= WATCH_SECONDS / 2, `playback advanced ${start} → ${end}`);

  const errors = await page.locator('#s-errors').textContent();
  assert.match(errors, /^0 \//, `no fatal player error (fatal / recovered: ${errors})`);
  await page.waitForFunction(() => Number(document.querySelector('#s-accepted').textContent) >= 1,
    null, { timeout: 30_000 });
  const verified = Number(await page.locator('#s-segments').textContent());
  assert.ok(verified >= 1, 'segments were verified against the origin hashes');
  assert.match(await page.locator('[data-step="play"] .state').textContent(), /playing|playlist/);

  // Independently of the page: the coordinator holds receipts signed by the page's key.
  const sessionId = await page.locator('#session-id').textContent();
  const summary = await (await fetch(`${BASE}/dashboard/viewers/${viewerKey}`)).json();
  const session = summary.sessions.find((s) => s.session_id === sessionId);
  assert.ok(session, `coordinator knows session ${sessionId} of viewer ${viewerKey}: ${JSON.stringify(summary)}`);
  assert.ok(session.receipts >= 1 && session.bytes_total > 0, JSON.stringify(session));
  await page.screenshot({ path: join(ARTIFACTS, 'watch.png'), fullPage: true });
  await page.close();
});

test('a node balance proof verifies in the page with BLAKE3', async () => {
  const page = await open('/dashboard');
  await page.locator('#proof-node option').first().waitFor({ state: 'attached', timeout: 60_000 });
  await page.getByLabel('Epoch', { exact: true }).selectOption({ index: 0 });
  await page.getByLabel('Node', { exact: true }).selectOption({ index: 0 });
  await page.getByRole('button', { name: 'Verify proof' }).click();
  await page.locator('#proof-result').waitFor({ timeout: 15_000 });
  assert.match(await page.locator('#proof-result').textContent(), /^Verified/);
  const steps = await page.locator('#proof li').count();
  assert.ok(steps >= 1, 'the proof path is shown');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard-phone.png'), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: join(ARTIFACTS, 'dashboard.png'), fullPage: true });
  await page.close();
  assert.deepEqual(pageErrors, [], 'no page or console errors');
});
