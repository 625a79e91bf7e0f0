// The in-browser viewer: a key kept in this browser, a grant from the coordinator, HLS through
// the granted node with hls.js, every segment checked against the origin's BLAKE3 hashes, and
// cumulative receipts signed with WebCrypto Ed25519 in streamr-core's canonical layout. In
// LL-HLS mode every fMP4 part is checked before hls.js gets it, against the origin's signed
// part reports that the node passes on (this page checks the origin's signature, the stream,
// the run and the age itself; the coordinator is asked only when the node serves no reports or
// one did not come in time), and each completed segment against its fMP4 hash; receipts then
// carry the digest of the fMP4 chain.
import {
  el, fetchJson, parseJson, unhex, hex, u64, concat, initBlake3, blake3, formatBytes, shortId,
} from './common.js';

const KEY_STORAGE = 'streamr.viewer.ed25519.jwk';
const RECEIPT_TAG = new TextEncoder().encode('streamr/receipt/v1\0');
const GRANT_TOKEN_VERSION = 1;
const RECEIPT_INTERVAL_MS = 2000;
const SEGMENT_LIST_LIMIT = 100;
/** A segment the origin has not reported after this long is given up on. */
const PENDING_GIVE_UP_MS = 15000;

/**
 * `?ll=1` plays the node's LL-HLS rendition (fMP4 parts, blocking playlist reload) with hls.js
 * in low-latency mode instead of the MPEG-TS playlist.
 */
const LOW_LATENCY = new URLSearchParams(location.search).get('ll') === '1';

const PART_REPORT_TAG = new TextEncoder().encode('streamr/part-report/v1\0');
/** A part report signed further than this from this browser's clock is refused (stale). */
const REPORT_MAX_AGE_MS = 60000;
/** How long a part waits for its report before the coordinator is asked, once. */
const PART_REPORT_WAIT_MS = 3000;
/** The longest wait asked of the node for the next report (a long poll). */
const REPORT_POLL_WAIT_MS = 5000;
/** Parts remembered from the reports; the oldest are forgotten. */
const REPORTED_PARTS = 2048;
/** A part waiting for its segment report asks the coordinator at least this often. */
const SEGMENT_REFRESH_BACKSTOP_MS = 5000;

const $ = (selector) => document.querySelector(selector);
const streamId = decodeURIComponent(location.pathname.split('/').filter(Boolean).pop() || '');

function step(name, text, state = '') {
  const node = document.querySelector(`[data-step="${name}"] .state`);
  node.textContent = text;
  node.className = `state ${state}`;
}

const stats = {
  segments: 0, parts: 0, bytes: 0, unverified: 0, accepted: 0, fatal: 0, recovered: 0,
  // LL-HLS: parts let through by a node-relayed report, by asking the coordinator, and reports
  // refused (forged, altered, another stream's, stale, an older run's).
  partsByReport: 0, partsByCoordinator: 0, reportsRefused: 0,
};
function showStats() {
  $('#s-segments').textContent = LOW_LATENCY ? `${stats.segments} (${stats.parts} parts)` : stats.segments;
  $('#s-bytes').textContent = formatBytes(stats.bytes);
  $('#s-unverified').textContent = stats.unverified;
  $('#s-accepted').textContent = stats.accepted;
  $('#s-errors').textContent = `${stats.fatal} / ${stats.recovered}`;
}

/** The viewer's Ed25519 key, generated once and kept in localStorage as a JWK. */
async function viewerKey() {
  const stored = localStorage.getItem(KEY_STORAGE);
  if (stored) {
    const jwk = JSON.parse(stored);
    const privateKey = await crypto.subtle.importKey('jwk', jwk, { name: 'Ed25519' }, false, ['sign']);
    return { privateKey, publicHex: hex(base64url(jwk.x)), created: false };
  }
  const pair = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const jwk = await crypto.subtle.exportKey('jwk', pair.privateKey);
  localStorage.setItem(KEY_STORAGE, JSON.stringify(jwk));
  return { privateKey: pair.privateKey, publicHex: hex(base64url(jwk.x)), created: true };
}

function base64url(text) {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(text.length / 4) * 4, '=');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/** The grant as the URL token nodes read (streamr_coord::grant_token::encode). */
function grantToken(grant) {
  const body = grant.body;
  return hex(concat(
    new Uint8Array([GRANT_TOKEN_VERSION]),
    unhex(body.session_id, 16), unhex(body.viewer, 32), unhex(body.node_id, 32),
    u64(body.max_bytes), u64(body.expiry_ms), unhex(grant.signature, 64),
    new TextEncoder().encode(body.stream_id),
  ));
}

/** `url` carrying the grant token, unless the coordinator already put one in it. */
function withGrant(url, grant) {
  if (/[?&]grant=/.test(url)) return url;
  return `${url}${url.includes('?') ? '&' : '?'}grant=${grantToken(grant)}`;
}

const ZERO_DIGEST = '0'.repeat(64);

/**
 * The origin's segments by hash and by sequence, refreshed from the coordinator: the MPEG-TS
 * hashes and chain, and the LL-HLS rendition's (fMP4 segment hashes, part hashes, fMP4 chain).
 */
class OriginIndex {
  constructor() {
    this.byHash = new Map(); this.bySeq = new Map(); this.first = null; this.fetching = null;
    this.llByHash = new Map(); this.llBySeq = new Map(); this.byPartHash = new Map();
  }

  refresh() {
    if (!this.fetching) {
      this.fetching = fetchJson(`/streams/${encodeURIComponent(streamId)}/segments?limit=${SEGMENT_LIST_LIMIT}`)
        .then((records) => {
          if (records.length < SEGMENT_LIST_LIMIT && records.length) {
            this.first = Math.min(...records.map((r) => r.sequence));
          }
          for (const r of records) {
            this.byHash.set(r.hash, { sequence: r.sequence, digest: r.digest });
            this.bySeq.set(r.sequence, r.digest);
            if (r.ll) {
              const segment = { sequence: r.sequence, digest: r.ll.digest, hash: r.ll.hash };
              this.llByHash.set(r.ll.hash, segment);
              this.llBySeq.set(r.sequence, r.ll.digest);
              r.ll.part_hashes.forEach((hash, index) => this.byPartHash.set(hash,
                { ...segment, index, count: r.ll.part_hashes.length }));
            }
          }
          return records.length;
        })
        .finally(() => { this.fetching = null; });
    }
    return this.fetching;
  }

  /**
   * The running digest before `sequence` in the TS or the fMP4 chain: the chain a viewer
   * joining there starts from. The fMP4 chain starts over from zero after a segment the origin
   * reported without its LL-HLS rendition, as the coordinator's does.
   */
  anchorFor(sequence, lowLatency) {
    if (sequence === 0) return ZERO_DIGEST;
    const chain = lowLatency ? this.llBySeq : this.bySeq;
    if (chain.has(sequence - 1)) return chain.get(sequence - 1);
    if (lowLatency && this.bySeq.has(sequence - 1)) return ZERO_DIGEST;
    return this.first === sequence ? ZERO_DIGEST : null;
  }

  /** What a received hash is: `{ segment }` (a whole segment), `{ part }` or nothing known. */
  find(hashHex, lowLatency) {
    if (!lowLatency) {
      const segment = this.byHash.get(hashHex);
      return segment && { segment };
    }
    const segment = this.llByHash.get(hashHex);
    if (segment) return { segment };
    const part = this.byPartHash.get(hashHex);
    return part && { part };
  }
}

/** `value` as streamr-core's canonical string: u32 big-endian length, then UTF-8. */
function canonicalStr(value) {
  const bytes = new TextEncoder().encode(value);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, bytes.length);
  return concat(length, bytes);
}

/** streamr-core's canonical bytes of an `OriginPartReport` (what the origin signed). */
function partReportBytes(body) {
  return concat(
    PART_REPORT_TAG, unhex(body.node_id, 32), canonicalStr(body.stream_id), u64(body.run),
    u64(body.timestamp_ms), u64(body.parts.length),
    ...body.parts.flatMap((part) => [
      u64(part.msn), u64(part.index), unhex(part.hash, 32), u64(part.len), u64(part.cut_ms)]),
  );
}

/** The node's part-report route beside its MPEG-TS playlist: `/{app}/{stream}/part-reports`. */
function partReportsUrl(url) {
  const parsed = new URL(url);
  parsed.pathname = parsed.pathname.replace(/\.m3u8$/, '/part-reports');
  return parsed;
}

/**
 * The origin's signed part reports as the serving node passes them on, long-polled (one
 * request at a time) and checked here: signed by the stream's origin (its key from the
 * coordinator), for this stream, fresh, and not of a run older than the newest seen. A node
 * cannot forge or alter one; one it withholds leaves its part waiting, then asked at the
 * coordinator.
 */
class PartReports {
  constructor(url, origin) {
    this.url = url; this.origin = origin; this.key = null;
    this.byHash = new Map(); this.run = null; this.newestMsn = null;
    /** `unknown` until the node answers, `yes`, or `no` (an older node: no such route). */
    this.served = 'unknown';
    this.waiters = new Set();
  }

  async start() {
    this.key = await crypto.subtle.importKey('raw', unhex(this.origin, 32), { name: 'Ed25519' }, false, ['verify']);
    this.follow();
  }

  async follow() {
    let after = 0;
    for (;;) {
      const url = new URL(this.url);
      url.searchParams.set('after', String(after));
      url.searchParams.set('wait_ms', String(REPORT_POLL_WAIT_MS));
      let page = null;
      try {
        const response = await fetch(url);
        const text = await response.text();
        // `stream_not_here`: a relay that starts pulling on the playlist request; asked again.
        const notHereYet = response.status === 404 && /"stream_not_here"/.test(text);
        if (response.status >= 400 && response.status < 500 && !notHereYet) {
          this.served = 'no';
          this.wake();
          return;
        }
        if (response.ok) page = parseJson(text);
      } catch (_) {
        page = null;
      }
      if (!page) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      for (const { report } of page.reports) {
        try {
          await this.add(report);
        } catch (error) {
          stats.reportsRefused += 1;
          step('verify', `a part report from the node was refused: ${error.message}`, 'bad');
        }
      }
      after = page.next;
      this.served = 'yes';
      this.wake();
    }
  }

  /** Checks a report and takes its parts; throws saying why it is refused. */
  async add(signed) {
    const body = signed.body;
    if (body.node_id !== this.origin) throw new Error(`signed by ${shortId(body.node_id)}, not the stream's origin`);
    if (body.stream_id !== streamId) throw new Error(`a report of stream ${body.stream_id}`);
    const valid = await crypto.subtle.verify({ name: 'Ed25519' }, this.key,
      unhex(signed.signature, 64), partReportBytes(body));
    if (!valid) throw new Error('not the origin\'s signature (forged or altered)');
    const at = Number(body.timestamp_ms);
    if (Math.abs(Date.now() - at) > REPORT_MAX_AGE_MS) throw new Error(`stale (signed at ${new Date(at).toISOString()})`);
    const run = String(body.run);
    if (this.run && this.run.run !== run) {
      if (at <= this.run.newest) throw new Error(`of run ${run}, older than run ${this.run.run}`);
      this.run = { run, newest: at };
      this.newestMsn = null;
    } else if (this.run) {
      this.run.newest = Math.max(this.run.newest, at);
    } else {
      this.run = { run, newest: at };
    }
    for (const part of body.parts) {
      const msn = Number(part.msn);
      this.byHash.delete(part.hash);
      this.byHash.set(part.hash, { run, msn, index: Number(part.index) });
      this.newestMsn = this.newestMsn === null ? msn : Math.max(this.newestMsn, msn);
    }
    while (this.byHash.size > REPORTED_PARTS) this.byHash.delete(this.byHash.keys().next().value);
  }

  /** The reported part of the newest run whose bytes hash to `hashHex`. */
  find(hashHex) {
    const part = this.byHash.get(hashHex);
    return part && this.run && part.run === this.run.run ? part : null;
  }

  wake() {
    for (const waiter of this.waiters) waiter();
    this.waiters.clear();
  }

  /** The part, waiting up to `ms` for its report while the node may serve it; else null. */
  async wait(hashHex, ms) {
    const deadline = Date.now() + ms;
    for (;;) {
      const part = this.find(hashHex);
      if (part) return part;
      const left = deadline - Date.now();
      if (this.served === 'no' || left <= 0) return null;
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.add(() => { clearTimeout(timer); resolve(); });
      });
    }
  }
}

/**
 * Whether an fMP4 part is the origin's, before hls.js gets it: from the node's reports
 * (waited for briefly), else by asking the coordinator once (waiting up to the same time when
 * the node serves no reports at all).
 */
async function originHasPart(reports, hashHex) {
  if (reports) {
    const part = await reports.wait(hashHex, PART_REPORT_WAIT_MS);
    if (part) {
      stats.partsByReport += 1;
      return part;
    }
  }
  const wait = reports && reports.served !== 'no' ? 0 : PART_REPORT_WAIT_MS;
  stats.partsByCoordinator += 1;
  try {
    const part = await fetchJson(`/streams/${encodeURIComponent(streamId)}/parts/${hashHex}?wait_ms=${wait}`);
    return { run: part.run, msn: part.msn, index: part.index };
  } catch (_) {
    return null;
  }
}

/** Segment verification and receipt state of the session (mirrors streamr-core's SegmentChain). */
class Session {
  constructor(grant, key, index, lowLatency) {
    this.grant = grant; this.key = key; this.index = index; this.lowLatency = lowLatency;
    /** fMP4 parts verified so far, per segment sequence number: their bytes by part index. */
    this.partial = new Map();
    this.head = null; this.nextSeq = null; this.lastSegment = 0;
    this.bytesTotal = 0; this.acknowledged = 0; this.receiptSeq = 1;
    this.pending = []; this.sending = false; this.draining = false;
    /** The node's part reports (LL-HLS), when it serves them. */
    this.reports = null; this.refreshedAt = 0;
  }

  /**
   * Whether the coordinator may hold the segment report of a part's segment by now: a report
   * named a part of a later segment (the origin closed this one), or nothing tells, or the
   * last refresh is a while ago.
   */
  segmentReportDue(place) {
    const newest = this.reports?.newestMsn;
    if (!place || newest === null || newest === undefined || newest > place.msn) return true;
    return Date.now() - this.refreshedAt >= SEGMENT_REFRESH_BACKSTOP_MS;
  }

  /**
   * Queues a received segment or LL-HLS part (its hash and length; a part's bytes too, kept
   * until its segment is complete), then checks what can be checked.
   */
  received(hashHex, length, bytes = null, place = null) {
    this.pending.push({ hashHex, length, bytes, place, at: Date.now() });
    this.drain();
  }

  async drain() {
    if (this.draining) return;
    this.draining = true;
    try {
      await this.drainQueue();
    } finally {
      this.draining = false;
    }
  }

  async drainQueue() {
    while (this.pending.length) {
      const segment = this.pending[0];
      let found = this.index.find(segment.hashHex, this.lowLatency);
      if (!found && this.segmentReportDue(segment.place)) {
        this.refreshedAt = Date.now();
        await this.index.refresh().catch(() => 0);
        found = this.index.find(segment.hashHex, this.lowLatency);
      }
      if (!found) {
        if (Date.now() - segment.at < PENDING_GIVE_UP_MS) {
          setTimeout(() => this.drain(), 1000);
          return;
        }
        this.pending.shift();
        stats.unverified += 1;
        step('verify', `segment ${segment.hashHex.slice(0, 12)}… is not an origin segment (stale, altered or partial)`, 'bad');
        showStats();
        continue;
      }
      this.pending.shift();
      if (found.part) this.checkPart(segment, found.part);
      else this.check(segment, found.segment);
    }
  }

  /**
   * A part that matches the origin's part hash. Once every part of its segment is here, their
   * concatenation is checked against the fMP4 segment hash and the segment joins the chain.
   */
  checkPart(received, part) {
    let entry = this.partial.get(part.sequence);
    if (!entry) {
      entry = { bytes: new Array(part.count), have: 0 };
      this.partial.set(part.sequence, entry);
      // Parts of a segment this viewer joined in the middle of never complete: forget them.
      for (const sequence of this.partial.keys()) {
        if (sequence < part.sequence - 2) this.partial.delete(sequence);
      }
    }
    if (entry.bytes[part.index]) return;
    entry.bytes[part.index] = received.bytes;
    entry.have += 1;
    stats.parts += 1;
    showStats();
    if (entry.have < part.count) return;
    this.partial.delete(part.sequence);
    const hashHex = hex(blake3(...entry.bytes));
    const length = entry.bytes.reduce((sum, bytes) => sum + bytes.length, 0);
    if (hashHex !== part.hash) {
      stats.unverified += 1;
      step('verify', `the parts of origin segment ${part.sequence} do not make its fMP4 segment`, 'bad');
      showStats();
      return;
    }
    this.check({ hashHex, length }, part);
  }

  check(segment, origin) {
    // A segment fetched again (whole after its parts, or retried) is not counted twice.
    if (this.head !== null && origin.sequence < this.nextSeq) return;
    if (this.head === null || this.nextSeq !== origin.sequence) {
      const anchor = this.index.anchorFor(origin.sequence, this.lowLatency);
      if (anchor === null) {
        stats.unverified += 1;
        showStats();
        return;
      }
      this.head = unhex(anchor, 32);
      this.nextSeq = origin.sequence;
    }
    const next = blake3(this.head, u64(this.nextSeq), unhex(segment.hashHex, 32));
    if (hex(next) !== origin.digest) {
      this.head = null;
      stats.unverified += 1;
      step('verify', `chain mismatch at origin segment ${origin.sequence}`, 'bad');
      showStats();
      return;
    }
    this.head = next;
    this.nextSeq = origin.sequence + 1;
    this.lastSegment = origin.sequence;
    this.bytesTotal += segment.length;
    stats.segments += 1;
    stats.bytes = this.bytesTotal;
    step('verify', `origin segment ${origin.sequence} matches the origin's ${this.lowLatency ? 'fMP4 ' : ''}hash chain`, 'ok');
    showStats();
  }

  /** Shows what the coordinator credited to this viewer key's session. */
  async showCredited() {
    const summary = await fetchJson(`/dashboard/viewers/${this.key.publicHex}`);
    const mine = summary.sessions.find((s) => s.session_id === this.grant.body.session_id);
    $('#s-credited').textContent = mine
      ? `${formatBytes(mine.bytes_total)} in ${mine.receipts} receipts`
      : 'nothing yet';
  }

  /** Signs and posts a cumulative receipt when something new was verified. */
  async sendReceipt() {
    if (this.sending || this.head === null || this.bytesTotal === this.acknowledged) return;
    this.sending = true;
    try {
      const body = {
        session_id: this.grant.body.session_id,
        seq: this.receiptSeq,
        bytes_total: this.bytesTotal,
        last_segment_seq: this.lastSegment,
        segments_digest: hex(this.head),
        t_ms: Date.now(),
      };
      const message = concat(
        RECEIPT_TAG, unhex(body.session_id, 16), u64(body.seq), u64(body.bytes_total),
        u64(body.last_segment_seq), unhex(body.segments_digest, 32), u64(body.t_ms),
      );
      const signature = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, this.key.privateKey, message));
      this.receiptSeq += 1;
      const outcome = await fetchJson('/receipts', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ receipts: [{ body, signature: hex(signature) }] }),
      });
      this.acknowledged = body.bytes_total;
      stats.accepted += Number(outcome.accepted);
      if (outcome.rejected.length) {
        step('receipts', `receipt ${body.seq} rejected: ${outcome.rejected.join('; ')}`, 'bad');
      } else {
        step('receipts', `receipt ${body.seq} accepted: ${formatBytes(body.bytes_total)} up to origin segment ${body.last_segment_seq}`, 'ok');
      }
      showStats();
      await this.showCredited();
    } catch (error) {
      step('receipts', `could not send a receipt: ${error.message}`, 'bad');
    } finally {
      this.sending = false;
    }
  }
}

/** The LL-HLS playlist beside a node's MPEG-TS playlist: `/{app}/{stream}/ll.m3u8`. */
function lowLatencyUrl(url) {
  const parsed = new URL(url);
  parsed.pathname = parsed.pathname.replace(/\.m3u8$/, '/ll.m3u8');
  return parsed.toString();
}

/** The multivariant playlist beside a node's MPEG-TS playlist: `/{app}/{stream}/master.m3u8`. */
function multivariantUrl(url) {
  const parsed = new URL(url);
  parsed.pathname = parsed.pathname.replace(/\.m3u8$/, '/master.m3u8');
  return parsed.toString();
}

/**
 * What hls.js opens in low-latency mode: the node's multivariant playlist when it lists more
 * than one rendition (the player keeps to the LL-HLS one, see `keepToLowLatency`), else
 * `ll.m3u8` (a node that lists nothing yet, or a stream with one rendition).
 */
async function lowLatencySource(source) {
  const master = multivariantUrl(source);
  try {
    const response = await fetch(master);
    if (response.ok) {
      const variants = ((await response.text()).match(/#EXT-X-STREAM-INF:/g) || []).length;
      if (variants > 1) return master;
    }
  } catch (_) {
    // Not served: the LL-HLS playlist directly.
  }
  return lowLatencyUrl(source);
}

/** The index of hls.js's level whose playlist is `ll.m3u8`, or -1. */
function lowLatencyLevel(levels) {
  return levels.findIndex((level) => [].concat(level.url ?? [], level.uri ?? [])
    .some((url) => /\/ll\.m3u8(\?|$)/.test(url)));
}

/**
 * hls.js's loader, hashing every media segment before hls.js takes the bytes. `onSegment` may
 * return a promise: hls.js gets the bytes once it resolves true, and a load error when false
 * (an LL-HLS part the origin did not report is never played).
 */
function hashingLoader(onSegment) {
  const Base = Hls.DefaultConfig.loader;
  return class HashingLoader extends Base {
    load(context, config, callbacks) {
      const onSuccess = callbacks.onSuccess;
      super.load(context, config, {
        ...callbacks,
        onSuccess: (response, loadStats, ctx, details) => {
          if (!(response.data instanceof ArrayBuffer)) {
            onSuccess(response, loadStats, ctx, details);
            return;
          }
          const verdict = onSegment(new Uint8Array(response.data), context);
          if (!(verdict instanceof Promise)) {
            onSuccess(response, loadStats, ctx, details);
            return;
          }
          verdict.then((ok) => {
            if (ok) onSuccess(response, loadStats, ctx, details);
            else callbacks.onError({ code: 0, text: 'part not reported by the origin' }, ctx, null, loadStats);
          });
        },
      });
    }
  };
}

async function main() {
  $('#title').textContent = `Watching ${streamId}`;
  document.title = `${streamId} · StreamrP2P`;
  let key;
  try {
    await initBlake3();
    key = await viewerKey();
    $('#viewer-key').textContent = key.publicHex;
    step('key', `${key.created ? 'created' : 'loaded'} Ed25519 key ${shortId(key.publicHex)} (kept in this browser)`, 'ok');
  } catch (error) {
    step('key', `this browser cannot make an Ed25519 key: ${error.message}`, 'bad');
    return;
  }

  let play;
  try {
    play = await fetchJson(`/streams/${encodeURIComponent(streamId)}/play?viewer=${key.publicHex}`);
    $('#session-id').textContent = play.grant.body.session_id;
    $('#node-id').textContent = play.node_id;
    step('grant', `node ${shortId(play.node_id)} granted session ${shortId(play.grant.body.session_id)}, valid until ${new Date(play.grant.body.expiry_ms).toLocaleTimeString()}`, 'ok');
  } catch (error) {
    step('grant', `no grant: ${error.message}`, 'bad');
    return;
  }

  const index = new OriginIndex();
  try {
    const count = await index.refresh();
    step('hashes', `${count} recent origin segment hashes loaded`, 'ok');
  } catch (error) {
    step('hashes', `could not load the origin's hashes: ${error.message}`, 'bad');
  }

  const session = new Session(play.grant, key, index, LOW_LATENCY);
  if (LOW_LATENCY) {
    // The origin's key from the coordinator's stream record: reports the node passes on are
    // checked against it here.
    try {
      const stream = await fetchJson(`/streams/${encodeURIComponent(streamId)}`);
      if (stream.origin_node) {
        session.reports = new PartReports(partReportsUrl(withGrant(play.hls_url, play.grant)), stream.origin_node);
        await session.reports.start();
      }
    } catch (error) {
      session.reports = null;
      step('verify', `parts are checked at the coordinator: ${error.message}`);
    }
  }
  if (!globalThis.Hls || !Hls.isSupported()) {
    step('play', 'this browser has no Media Source Extensions for HLS', 'bad');
    return;
  }
  // Timings the browser test reads: page start to first frame, and the player.
  const timing = { firstPlayingMs: null, parts: 0, bytes: 0 };
  const onBytes = LOW_LATENCY
    // fMP4 parts (and whole segments hls.js fetches behind the live edge) are checked against
    // the origin's fMP4 hashes; the init segment is named by its hash and carries no media.
    ? (bytes, context) => {
      if (context?.frag?.sn === 'initSegment') return true;
      const hashHex = hex(blake3(bytes));
      // A copy: hls.js hands the buffer to its transmuxing worker, which detaches it.
      const copy = bytes.slice();
      const take = (place) => {
        timing.parts += 1;
        timing.bytes += bytes.length;
        session.received(hashHex, bytes.length, copy, place);
      };
      // A whole segment (behind the live edge) is checked against the segment reports.
      if (!context?.part) {
        take(null);
        return true;
      }
      return originHasPart(session.reports, hashHex).then((place) => {
        if (!place) {
          stats.unverified += 1;
          step('verify', `part ${hashHex.slice(0, 12)}… was not reported by the origin: not played`, 'bad');
          showStats();
          return false;
        }
        take(place);
        return true;
      });
    }
    : (bytes) => session.received(hex(blake3(bytes)), bytes.length);
  const hls = new Hls({
    fLoader: hashingLoader(onBytes),
    lowLatencyMode: LOW_LATENCY,
    backBufferLength: 30,
  });
  globalThis.streamrPlayer = { hls, timing, stats, lowLatency: LOW_LATENCY };
  const video = $('#video');
  hls.on(Hls.Events.MANIFEST_PARSED, (_event, data) => {
    // From a multivariant playlist: the LL-HLS rendition only (its parts are what is checked;
    // switching to the MPEG-TS one would leave low latency).
    const level = LOW_LATENCY ? lowLatencyLevel(data.levels) : -1;
    if (level >= 0 && data.levels.length > 1) {
      hls.startLevel = level;
      hls.loadLevel = level;
    }
    step('play', `playlist loaded from ${new URL(play.hls_url).host}`, 'ok');
    video.play().catch((error) => step('play', `press play to start (${error.message})`));
  });
  hls.on(Hls.Events.ERROR, (_event, data) => {
    // A segment listed with EXT-X-GAP (a relay that lost frames across a failover): hls.js
    // (1.7.4 vendored, GAP-aware since 1.4) never loads it and plays on after it; not an error.
    if (data.details === Hls.ErrorDetails.FRAG_GAP) return;
    if (!data.fatal) { stats.recovered += 1; showStats(); return; }
    stats.fatal += 1;
    showStats();
    step('play', `player error: ${data.type} ${data.details}`, 'bad');
    if (data.type === Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
    else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) hls.recoverMediaError();
  });
  video.addEventListener('playing', () => {
    timing.firstPlayingMs ??= performance.now();
    step('play', `playing${LOW_LATENCY ? ' LL-HLS' : ''} from node ${shortId(play.node_id)}`, 'ok');
  });
  const source = withGrant(play.hls_url, play.grant);
  hls.loadSource(LOW_LATENCY ? await lowLatencySource(source) : source);
  hls.attachMedia(video);
  setInterval(() => session.sendReceipt(), RECEIPT_INTERVAL_MS);
}

main();
