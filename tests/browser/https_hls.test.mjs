// Chromium plays HLS from a node serving HTTPS: a standalone `streamr-node` with a certificate
// issued by a test CA (made here with openssl), ffmpeg publishing the sample over RTMP, and a page
// on an HTTPS origin that plays the node's https:// playlist with hls.js (a page served over
// HTTPS may not load http:// media). Chromium trusts the node's key alone
// (--ignore-certificate-errors-spki-list), so any other certificate would still be refused.
//
// The page is put on the node's own origin by the test (the node serves only media): Chromium's
// local network access rules keep a page from elsewhere from reaching a loopback address at all.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, mkdirSync } from 'node:fs';
import { get } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { Processes, freePort, startNode } from './support.mjs';

const NODE_BIN = process.env.STREAMR_NODE_BIN;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const SAMPLE = new URL('../../samples/sample.flv', import.meta.url).pathname;
const HLS_JS = new URL('./node_modules/hls.js/dist/hls.min.js', import.meta.url).pathname;
const ARTIFACTS = new URL('./artifacts/', import.meta.url).pathname;

let dir;
let context;
const processes = new Processes();

function openssl(...args) {
  return execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A test CA and a certificate for 127.0.0.1 issued by it; the SPKI pin of the node's key. */
function makeCertificates() {
  openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=streamr browser test CA');
  openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', 'node.key', '-out', 'node.csr', '-subj', '/CN=127.0.0.1');
  openssl('x509', '-req', '-in', 'node.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key',
    '-CAcreateserial', '-out', 'node.pem', '-days', '2', '-extfile', 'leaf.ext');
  const publicKey = openssl('x509', '-in', 'node.pem', '-pubkey', '-noout');
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: publicKey });
  return execFileSync('openssl', ['dgst', '-sha256', '-binary'], { input: der }).toString('base64');
}

/** GET over HTTPS, verifying the node's certificate against the test CA. */
function fetchVerified(url, ca) {
  return new Promise((resolve, reject) => {
    const request = get(url, { ca, timeout: 2000 }, (response) => {
      let body = '';
      response.on('data', (chunk) => { body += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, body }));
    });
    request.on('error', reject);
    request.on('timeout', () => request.destroy(new Error('timeout')));
  });
}

let playlistUrl;
let page_url;
let spki;

before(async () => {
  assert.ok(NODE_BIN, 'STREAMR_NODE_BIN must name the streamr-node binary (run.sh sets it)');
  mkdirSync(ARTIFACTS, { recursive: true });
  dir = mkdtempSync(join(tmpdir(), 'streamr-https-hls-'));
  execFileSync('sh', ['-c', 'printf "subjectAltName=IP:127.0.0.1\\nextendedKeyUsage=serverAuth\\n" > leaf.ext'], { cwd: dir });
  spki = makeCertificates();
  const ca = readFileSync(join(dir, 'ca.pem'));
  const https = await freePort();
  // The node has 10 s to start, and what waits on it below counts from here too.
  const deadline = Date.now() + 10_000;
  const { rtmp } = await startNode(processes, NODE_BIN, dir, ['--https-listen', `127.0.0.1:${https}`,
    '--tls-cert', join(dir, 'node.pem'), '--tls-key', join(dir, 'node.key')]);
  processes.start('ffmpeg', ['-hide_banner', '-loglevel', 'error', '-re', '-stream_loop', '-1', '-i', SAMPLE,
    '-c', 'copy', '-f', 'flv', `rtmp://127.0.0.1:${rtmp}/live/tls-show`], 'ffmpeg');
  playlistUrl = `https://127.0.0.1:${https}/live/tls-show.m3u8`;
  page_url = `https://127.0.0.1:${https}/player/`;
  // The playlist lists a segment, over HTTPS with the certificate checked against the test CA.
  for (;;) {
    const answer = await fetchVerified(playlistUrl, ca).catch(() => null);
    if (answer?.status === 200 && answer.body.includes('#EXTINF')) break;
    assert.ok(Date.now() < deadline + 10_000, 'the node listed no HLS segment over HTTPS');
    await new Promise((r) => setTimeout(r, 200));
  }
  context = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--no-first-run', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      `--ignore-certificate-errors-spki-list=${spki}`],
  });
});

after(async () => {
  await context?.close();
  processes.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('chromium plays HLS from a node over HTTPS', async () => {
  // The player page, on the node's HTTPS origin: http:// media would be blocked there.
  await context.route(`${page_url}**`, (route) => {
    const url = new URL(route.request().url());
    if (url.pathname.endsWith('/hls.js')) {
      return route.fulfill({ contentType: 'text/javascript', body: readFileSync(HLS_JS) });
    }
    return route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><title>HTTPS HLS</title><video id="v" muted playsinline></video>
<script src="hls.js"></script>
<script>
  window.errors = [];
  const video = document.getElementById('v');
  const hls = new Hls();
  hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) window.errors.push(data.details); });
  hls.loadSource(${JSON.stringify(playlistUrl)});
  hls.attachMedia(video);
  hls.on(Hls.Events.MANIFEST_PARSED, () => video.play());
</script>`,
    });
  });
  const page = await context.newPage();
  const insecure = [];
  page.on('request', (request) => {
    if (request.url().startsWith('http:')) insecure.push(request.url());
  });
  await page.goto(page_url);
  assert.equal(await page.evaluate(() => window.isSecureContext), true);
  await page.waitForFunction(() => document.getElementById('v').currentTime > 1 || window.errors.length,
    null, { timeout: 15_000 });
  assert.deepEqual(await page.evaluate(() => window.errors), [], 'hls.js reported no fatal error');
  const first = await page.evaluate(() => document.getElementById('v').currentTime);
  await page.waitForTimeout(1500);
  const later = await page.evaluate(() => document.getElementById('v').currentTime);
  assert.ok(later > first, `playback advances (${first} -> ${later})`);
  assert.deepEqual(insecure, [], 'nothing was loaded over plain http');
  await page.screenshot({ path: join(ARTIFACTS, 'https-hls.png') });
  await page.close();
});
