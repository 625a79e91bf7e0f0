// The dashboard: polls /dashboard/data.json every few seconds and updates the tables and
// charts in place; verifies payout Merkle proofs in the page with BLAKE3.
import {
  el, svg, fetchJson, unhex, hex, u64, initBlake3, blake3, formatBytes, formatBits,
  formatAmount, shortId, ago,
} from './common.js';

const REFRESH_MS = 3000;
const $ = (selector) => document.querySelector(selector);

/** Replaces a table body's rows, or shows one row saying the table is empty. */
function fillTable(id, rows, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const columns = document.querySelectorAll(`#${id} thead th`).length;
  body.replaceChildren(...(rows.length
    ? rows
    : [el('tr', {}, [el('td', { class: 'empty', colspan: columns, text: emptyText })])]));
}

function idCell(id) {
  return el('td', { title: id }, [el('code', { text: shortId(id) })]);
}

function num(text) {
  return el('td', { class: 'num', text });
}

function renderTotals(data) {
  const t = data.totals;
  $('#t-streams').textContent = t.live_streams;
  $('#t-nodes').textContent = t.active_nodes;
  $('#t-receipts').textContent = t.receipts;
  $('#t-epochs').textContent = t.settled_epochs;
  $('#t-paid').textContent = formatAmount(t.paid_out);
  const served = data.offload.filter((p) => p.viewer_bytes > 0);
  const last = served[served.length - 1];
  $('#t-offload').textContent = last ? `${(last.offload_ppm / 1e4).toFixed(0)} %` : '–';
}

function renderStreams(data) {
  fillTable('streams', data.streams.map((s) => el('tr', {}, [
    el('th', { scope: 'row', text: s.id }),
    el('td', { text: s.title || '—' }),
    num(s.viewers),
    num(s.viewers ? formatBits(s.bitrate_bps) : '—'),
    el('td', {}, [el('a', { href: `/watch/${encodeURIComponent(s.id)}`, text: `Watch ${s.id}` })]),
  ])), 'No live streams');
}

function renderNodes(data) {
  fillTable('nodes', data.nodes.map((n) => {
    const status = n.status;
    const cls = { online: 'status-ok', registered: 'status-warn', silent: 'status-bad', deregistered: 'status-bad' }[status] || '';
    return el('tr', {}, [
      el('th', { scope: 'row', title: n.id }, [el('code', { text: shortId(n.id) })]),
      el('td', { text: n.operator }),
      el('td', {}, n.unreachable
        ? [el('span', { class: cls, text: status }), el('br'), el('span', { class: 'status-bad', title: n.unreachable, text: `unreachable: ${n.unreachable.replace(/^unreachable from outside: /, '')}` })]
        : [el('span', { class: cls, text: status })]),
      el('td', { class: 'wrap' }, [el('span', {
        class: `health health-${n.health}`, title: n.health_reason, text: `${n.health}: ${n.health_reason}`,
      })]),
      num(n.availability_ppm === null ? 'not probed' : `${(n.availability_ppm / 1e4).toFixed(1)} % of ${n.probes}`),
      num(`${n.epoch_verified_viewers} / ${n.viewers}`),
      el('td', { class: 'num' }, [el('a', { href: `/nodes/${encodeURIComponent(n.id)}/report`, text: formatBytes(n.epoch_verified_bytes) })]),
      num(formatBytes(n.epoch_claimed_bytes)),
      num(formatBytes(n.epoch_unattested_bytes)),
      num(formatBytes(n.epoch_probe_bytes)),
      el('td', { text: n.observed_prefixes.join(', ') || '—' }),
      el('td', { text: ago(n.last_heartbeat_ms, data.generated_at_ms) }),
      el('td', { text: n.streams.join(', ') || '—' }),
      el('td', { class: 'num', title: n.earnings ? `pending ${formatAmount(n.earnings.pending)}` : '' }, [
        el('a', { href: `/nodes/${encodeURIComponent(n.id)}/payouts`,
          text: n.earnings
            ? `${formatAmount(n.earnings.unvested)} / ${formatAmount(n.earnings.vested)} / ${formatAmount(n.earnings.paid)}`
            : 'payouts' }),
      ]),
    ]);
  }), 'No nodes registered');
}

function renderOrigins(data) {
  fillTable('origins', data.origins.map((o) => el('tr', {}, [
    el('th', { scope: 'row', title: o.node_id }, [el('code', { text: shortId(o.node_id) })]),
    el('td', {}, [el('span', { class: o.status === 'reporting' ? 'status-ok' : 'status-bad', text: o.status })]),
    el('td', { class: 'wrap', text: o.streams.map((s) => (s.last_sequence === null
      ? `${s.id} (no segment reported)`
      : `${s.id} (segment ${s.last_sequence}, ${ago(s.last_report_ms, data.generated_at_ms)})`)).join(', ') }),
  ])), 'No live stream has an origin yet');
}

const FLAGS_SHOWN = 15;

/** The evidence's inputs and verdict as `name=value` pairs (the raw JSON in the title). */
function evidenceText(detail) {
  try {
    const evidence = JSON.parse(detail);
    const pairs = Object.entries(evidence.inputs || {}).map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`);
    const verdict = evidence.verdict ? Object.entries(evidence.verdict).map(([k, v]) => `${k}=${v}`) : [];
    return [...pairs, ...verdict].join(', ');
  } catch {
    return detail;
  }
}

function renderFlags(data) {
  const shown = data.flags.slice(0, FLAGS_SHOWN);
  fillTable('flags', shown.map((f) => el('tr', {}, [
    num(f.epoch), idCell(f.node_id), el('td', { text: f.rule }),
    el('td', { class: 'wrap', title: f.detail }, [el('code', { text: evidenceText(f.detail) })]),
  ])), 'No flags in the settled epochs shown');
  $('#flags caption').textContent = data.flags.length > shown.length
    ? `Rules that fired at settlement and their evidence: the newest ${shown.length} of ${data.flags.length} in the epochs shown`
    : 'Rules that fired at settlement and the evidence they recorded';
}

function renderEpochs(data) {
  fillTable('epochs', data.epochs.map((e) => el('tr', {}, [
    el('th', { scope: 'row', text: e.epoch }),
    num(formatAmount(e.pool)), num(formatAmount(e.distributed)), num(formatAmount(e.penalties)),
    el('td', { title: e.merkle_root }, [el('code', { text: shortId(e.merkle_root) })]),
  ])), 'No epoch settled yet');
}

function renderPayouts(data) {
  fillTable('payouts', data.payouts.map((p) => {
    const button = el('button', {
      type: 'button', text: 'Verify',
      'aria-label': `Verify the Merkle proof of node ${shortId(p.node_id)} in epoch ${p.epoch}`,
    });
    button.addEventListener('click', () => verifyProof(p.epoch, p.node_id));
    return el('tr', {}, [
      num(p.epoch), idCell(p.node_id), num(formatAmount(p.net)), num(formatAmount(p.cumulative_net)),
      el('td', { text: p.status }), el('td', {}, [button]),
    ]);
  }), 'No payouts yet');
}

/** Replaces a select's options when they changed, keeping the chosen value when it remains. */
function setOptions(select, options) {
  const wanted = options.map(([value, label]) => `${value}=${label}`).join('|');
  if (select.dataset.options === wanted) return;
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, label]) => el('option', { value, text: label })));
  if (options.some(([value]) => String(value) === chosen)) select.value = chosen;
  select.dataset.options = wanted;
}

let latest = null;

function renderProofForm(data) {
  setOptions($('#proof-epoch'), data.epochs.map((e) => [String(e.epoch), `epoch ${e.epoch}`]));
  const epoch = data.epochs.find((e) => String(e.epoch) === $('#proof-epoch').value);
  const nodes = epoch ? epoch.leaves : [];
  setOptions($('#proof-node'), nodes.map((id) => [id, shortId(id)]));
}

/** Stable colour index per node across refreshes. */
const nodeColours = new Map();
function colourOf(node) {
  if (!nodeColours.has(node)) nodeColours.set(node, nodeColours.size % 6);
  return nodeColours.get(node);
}

function renderEarningsChart(data) {
  const chart = $('#earnings-chart');
  const epochs = [...data.epochs].reverse();
  const width = 600; const height = 220; const left = 60; const bottom = 24; const top = 10;
  const totals = epochs.map((e) => Object.values(e.earnings).reduce((a, v) => a + Math.max(0, Number(v)), 0));
  const max = Math.max(1, ...totals);
  const children = [
    svg('line', { class: 'axis', x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    Object.assign(svg('text', { x: 0, y: top + 8 }), { textContent: Number(max).toLocaleString('en-US') }),
    Object.assign(svg('text', { x: 0, y: height - bottom }), { textContent: '0' }),
  ];
  const slot = (width - left) / Math.max(1, epochs.length);
  epochs.forEach((e, i) => {
    let y = height - bottom;
    for (const [node, amount] of Object.entries(e.earnings)) {
      const h = (Math.max(0, Number(amount)) / max) * (height - bottom - top);
      y -= h;
      const rect = svg('rect', {
        class: `bar-${colourOf(node)}`, x: left + i * slot + slot * 0.15, y, width: slot * 0.7, height: h,
      });
      rect.append(Object.assign(svg('title'), { textContent: `epoch ${e.epoch}, node ${shortId(node)}: ${amount}` }));
      children.push(rect);
    }
    // Penalty epochs: a red mark per penalised node above the epoch's bar.
    Object.entries(e.penalised || {}).forEach(([node, amount], k) => {
      const mark = svg('circle', {
        class: `penalty-mark penalty-${colourOf(node)}`, cx: left + i * slot + slot * 0.5, cy: top + 6 + k * 12, r: 5,
      });
      mark.append(Object.assign(svg('title'), { textContent: `epoch ${e.epoch}: node ${shortId(node)} penalised ${amount}` }));
      children.push(mark);
    });
    // Epoch numbers are long; label with their last digits (the full number is in the table).
    const label = Object.assign(svg('text', { x: left + i * slot + slot * 0.5, y: height - 6, 'text-anchor': 'middle' }), { textContent: `…${String(e.epoch).slice(-3)}` });
    label.append(Object.assign(svg('title'), { textContent: `epoch ${e.epoch}` }));
    children.push(label);
  });
  chart.replaceChildren(...children);
  const legend = $('#earnings-legend');
  legend.replaceChildren(...[...nodeColours.keys()].map((node) => el('li', {}, [
    el('span', { class: `swatch swatch-${colourOf(node)}`, 'aria-hidden': 'true' }), el('code', { text: shortId(node) }),
  ])));
  $('#earnings-cap').textContent = epochs.length
    ? `Rewards less penalties per node in the last ${epochs.length} settled epochs (micro-units); largest epoch total ${max.toLocaleString('en-US')}. Red dots mark epochs where a node was penalised (${epochs.filter((e) => Object.keys(e.penalised || {}).length).length} shown).`
    : 'No epoch settled yet.';
}

function renderOffloadChart(data) {
  const chart = $('#offload-chart');
  const points = data.offload;
  const width = 600; const height = 200; const left = 40; const bottom = 20; const top = 10;
  const x = (i) => left + (i / Math.max(1, points.length - 1)) * (width - left - 5);
  const y = (ppm) => height - bottom - (ppm / 1e6) * (height - bottom - top);
  const line = points.map((p, i) => `${x(i).toFixed(1)},${y(p.offload_ppm).toFixed(1)}`).join(' ');
  const children = [
    svg('line', { class: 'axis', x1: left, y1: height - bottom, x2: width, y2: height - bottom }),
    svg('line', { class: 'axis', x1: left, y1: top, x2: width, y2: top }),
    Object.assign(svg('text', { x: 0, y: top + 4 }), { textContent: '100 %' }),
    Object.assign(svg('text', { x: 0, y: height - bottom }), { textContent: '0 %' }),
    Object.assign(svg('text', { x: left, y: height - 4 }), { textContent: '5 min ago' }),
    Object.assign(svg('text', { x: width - 5, y: height - 4, 'text-anchor': 'end' }), { textContent: 'now' }),
  ];
  if (points.length > 1) {
    children.push(svg('polygon', { class: 'area', points: `${x(0)},${height - bottom} ${line} ${x(points.length - 1)},${height - bottom}` }));
    children.push(svg('polyline', { class: 'line', points: line }));
  }
  chart.replaceChildren(...children);
  const served = points.filter((p) => p.viewer_bytes > 0);
  const last = served[served.length - 1];
  $('#offload-cap').textContent = last
    ? `Share of viewer traffic the origin did not send, per 10 s over the last 5 minutes; latest ${(last.offload_ppm / 1e4).toFixed(0)} % (${formatBytes(last.viewer_bytes)} to viewers, about ${formatBytes(last.origin_bytes)} from the origin).`
    : 'Share of viewer traffic the origin did not send, per 10 s over the last 5 minutes: no verified viewer traffic yet.';
}

/** Fetches a node's proof for an epoch and recomputes the Merkle root with BLAKE3. */
async function verifyProof(epoch, nodeId) {
  const out = $('#proof');
  out.replaceChildren(el('p', { text: `Fetching the proof of node ${shortId(nodeId)} in epoch ${epoch}…` }));
  try {
    await initBlake3();
    const proof = await fetchJson(`/epochs/${epoch}/proofs/${nodeId}`);
    const leaf = proof.leaf;
    let acc = blake3(new Uint8Array([0]), unhex(leaf.node_id, 32), u64(leaf.cumulative_earned), u64(leaf.cumulative_vested));
    const steps = [el('li', {}, ['leaf hash ', el('code', { text: hex(acc) })])];
    for (const [side, siblingHex] of proof.proof.siblings) {
      const sibling = unhex(siblingHex, 32);
      acc = side === 'Left'
        ? blake3(new Uint8Array([1]), sibling, acc)
        : blake3(new Uint8Array([1]), acc, sibling);
      steps.push(el('li', {}, [`with ${side.toLowerCase()} sibling `, el('code', { text: siblingHex }), ' → ', el('code', { text: hex(acc) })]));
    }
    const ok = hex(acc) === proof.merkle_root;
    out.replaceChildren(
      el('h3', { text: `Proof for node ${shortId(nodeId)}, epoch ${epoch}` }),
      el('p', {}, [`Leaf: cumulative earned ${formatAmount(leaf.cumulative_earned)}, vested ${formatAmount(leaf.cumulative_vested)}.`]),
      el('ol', {}, steps),
      el('p', {}, ['Statement root ', el('code', { text: proof.merkle_root })]),
      el('p', { class: ok ? 'status-ok' : 'status-bad', id: 'proof-result',
        text: ok ? 'Verified: the proof leads to the statement root.' : 'Mismatch: the proof does not lead to the statement root.' }),
    );
  } catch (error) {
    out.replaceChildren(el('p', { class: 'status-bad', text: `Could not verify: ${error.message}` }));
  }
}

async function refresh() {
  try {
    const data = await fetchJson('/dashboard/data.json');
    renderTotals(data);
    renderStreams(data);
    renderNodes(data);
    renderOrigins(data);
    renderOffloadChart(data);
    renderEpochs(data);
    renderEarningsChart(data);
    renderFlags(data);
    renderPayouts(data);
    renderProofForm(data);
    latest = data;
    // Only changes are announced; the time of the last update is not.
    const summary = `${data.streams.length} live, ${data.nodes.filter((n) => n.status === 'online').length} of ${data.nodes.length} nodes online, ${data.epochs.length} epochs shown`;
    if ($('#updated').textContent !== summary) $('#updated').textContent = summary;
    $('#updated-at').textContent = `· updated ${new Date(data.generated_at_ms).toLocaleTimeString()}`;
  } catch (error) {
    $('#updated').textContent = `Update failed: ${error.message}`;
  }
}

$('#proof-epoch').addEventListener('change', () => latest && renderProofForm(latest));
$('#proof-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const epoch = $('#proof-epoch').value;
  const node = $('#proof-node').value;
  if (epoch && node) verifyProof(epoch, node);
});

refresh();
setInterval(refresh, REFRESH_MS);
