// Helpers shared by the dashboard and the player: DOM building, formatting, hex, BLAKE3 and
// big-endian encoding in the layout streamr-core signs and hashes.

/** Creates an element with text or child nodes; attributes are set as given. */
export function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === 'class') node.className = value;
    else if (name === 'text') node.textContent = value;
    else node.setAttribute(name, value);
  }
  for (const child of [].concat(children)) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Creates an SVG element. */
export function svg(tag, attrs = {}) {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
  return node;
}

/** Parses JSON keeping integers beyond 2^53 exact (as BigInt) where the browser allows. */
export function parseJson(text) {
  return JSON.parse(text, (_key, value, context) => {
    if (typeof value === 'number' && !Number.isSafeInteger(value) && context && context.source
        && /^-?\d+$/.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  });
}

/** Fetches JSON, throwing an Error with the API's message on a non-2xx answer. */
export async function fetchJson(url, init) {
  const response = await fetch(url, init);
  const text = await response.text();
  let body;
  try { body = text ? parseJson(text) : null; } catch { body = null; }
  if (!response.ok) {
    const message = body && (body.message || body.error) ? (body.message || body.error) : text;
    throw new Error(`${response.status} from ${url}: ${message}`);
  }
  return body;
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Decodes `expected` bytes of hex, or throws. */
export function unhex(text, expected) {
  if (typeof text !== 'string' || text.length !== expected * 2 || !/^[0-9a-f]*$/i.test(text)) {
    throw new Error(`expected ${expected} bytes of hex`);
  }
  const out = new Uint8Array(expected);
  for (let i = 0; i < expected; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Big-endian u64. */
export function u64(value) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(value));
  return out;
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) { out.set(part, at); at += part.length; }
  return out;
}

let hasher = null;

/** Loads the BLAKE3 WebAssembly once; afterwards `blake3` is synchronous. */
export async function initBlake3() {
  if (!hasher) hasher = await globalThis.hashwasm.createBLAKE3();
}

/** BLAKE3 (32 bytes) of the concatenated parts. Call `initBlake3` first. */
export function blake3(...parts) {
  hasher.init();
  for (const part of parts) hasher.update(part);
  return hasher.digest('binary');
}

export function formatBytes(n) {
  const value = Number(n);
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let i = 0; let v = value;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatBits(bps) {
  const value = Number(bps);
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)} Mbit/s`;
  return `${(value / 1e3).toFixed(0)} kbit/s`;
}

export function formatAmount(n) {
  return `${BigInt(n).toLocaleString('en-US')} µ`;
}

export function shortId(id) {
  return id && id.length > 14 ? `${id.slice(0, 8)}…${id.slice(-4)}` : String(id);
}

export function ago(ms, now) {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  return s < 90 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}
