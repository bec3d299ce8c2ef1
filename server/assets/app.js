// Strata web console: a plain ES module, no build step. Every call goes through the scoped HTTP
// API with the API token the user signed in with (kept in sessionStorage, never in a URL), so a
// read-only token sees a read-only console. Pages are registered in PAGES: a new page is one more
// entry there and one more link in index.html.

const TOKEN_KEY = 'strata.token';
const HISTORY_KEY = 'strata.sqlHistory';
const $ = (sel, el = document) => el.querySelector(sel);

/** Element builder: attributes (on* are listeners) and children (strings become text). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c != null) el.append(c instanceof Node ? c : String(c));
  return el;
}

const token = () => sessionStorage.getItem(TOKEN_KEY);

class ApiError extends Error {
  constructor(status, message) { super(`${status}: ${message}`); this.status = status; }
}

/** Calls the HTTP API; JSON unless `accept` says otherwise. 401 signs out. */
async function api(path, { method = 'GET', body, accept = 'application/json', raw = false } = {}) {
  const headers = { Authorization: `Bearer ${token()}`, Accept: accept };
  if (body !== undefined) headers['Content-Type'] = typeof body === 'string' ? 'text/plain' : 'application/json';
  const r = await fetch(path, { method, headers, body: body === undefined || typeof body === 'string' ? body : JSON.stringify(body) });
  if (!r.ok) {
    let msg = await r.text();
    try { msg = JSON.parse(msg).error || msg; } catch { /* plain text */ }
    if (r.status === 401) { signOut(`Signed out: ${msg}`); }
    throw new ApiError(r.status, msg);
  }
  if (raw) return r;
  if (r.status === 204) return null;
  return accept === 'application/json' ? r.json() : r.text();
}

/** Runs SQL over POST /api/v1/query; rows as objects. */
const sql = (text) => api('/api/v1/query', { method: 'POST', body: text });
const quoteLiteral = (s) => `'${String(s).replaceAll("'", "''")}'`;
const quoteIdent = (s) => `"${String(s).replaceAll('"', '""')}"`;

// ---------------------------------------------------------------- sign-in and routing

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  stopTimers();
  $('#top').hidden = true;
  const main = $('#main');
  main.replaceChildren(signinForm());
  if (message) $('#signin-error').textContent = message;
}

function signinForm() {
  const form = h('form', { id: 'signin', class: 'card' },
    h('h1', {}, 'Strata console'),
    h('p', {}, "Sign in with an API token. It is kept in this tab's session storage only."),
    h('label', {}, 'API token ', h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true })),
    h('button', { type: 'submit' }, 'Sign in'),
    h('p', { id: 'signin-error', class: 'error', role: 'alert' }));
  form.addEventListener('submit', onSignin);
  return form;
}

async function onSignin(ev) {
  ev.preventDefault();
  const value = $('#token').value.trim();
  sessionStorage.setItem(TOKEN_KEY, value);
  try {
    await api('/api/v1/health');
    if (!location.hash || location.hash === '#/') location.hash = '#/overview';
    start();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    $('#signin-error').textContent = e.status === 401 || e.status === 403
      ? `Sign-in refused: ${e.message}` : `Cannot reach the server: ${e.message}`;
  }
}

let timers = [];
function every(ms, fn) { fn(); timers.push(setInterval(fn, ms)); }
function stopTimers() { timers.forEach(clearInterval); timers = []; window.strataCharts = []; }

/** Pages by route name: render(main, arg). */
const PAGES = { overview: overviewPage, devices: devicesPage, device: devicePage, entities: entitiesPage, sql: sqlPage, lifecycle: lifecyclePage, rules: rulesPage };

function route() {
  if (!token()) return signOut();
  stopTimers();
  const [name, ...rest] = location.hash.replace(/^#\//, '').split('/');
  const page = PAGES[name] ? name : 'overview';
  document.querySelectorAll('header nav a').forEach((a) => a.classList.toggle('active', a.dataset.page === (page === 'device' ? 'devices' : page)));
  const main = $('#main');
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  PAGES[page](main, decodeURIComponent(rest.join('/'))).catch((e) => {
    if (e.status !== 401) main.replaceChildren(h('p', { class: 'error' }, e.message));
  });
}

function start() {
  $('#top').hidden = false;
  $('#who').textContent = 'signed in with a token';
  route();
}

// ---------------------------------------------------------------- overview

/** Prometheus text → [{name, labels, value}]. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

async function overviewPage(main) {
  const tiles = h('div', { class: 'tiles' });
  const rates = h('tbody');
  const errors = h('tbody');
  const storage = h('tbody');
  const tiersBody = h('tbody');
  const alertsBody = h('tbody');
  const stamp = h('span', { class: 'muted' });
  main.replaceChildren(
    h('div', { class: 'row' }, h('h2', {}, 'Overview'), stamp),
    tiles,
    h('div', { class: 'card' }, h('h3', {}, 'Ingest by protocol'), h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'protocol'), h('th', {}, 'messages/s'), h('th', {}, 'bytes/s'), h('th', {}, 'open connections'), h('th', {}, 'messages total'))), rates)),
    h('div', { class: 'card' }, h('h3', {}, 'Storage'), h('table', {}, storage)),
    h('div', { class: 'card' }, h('h3', {}, 'Storage by tier'), h('table', { id: 'overview-tiers' }, h('thead', {}, h('tr', {}, ['tier', 'streams', 'rows', 'bytes'].map((c) => h('th', {}, c)))), tiersBody)),
    h('div', { class: 'card' }, h('h3', {}, 'Alerts'), h('table', { id: 'overview-alerts' }, h('thead', {}, h('tr', {}, ['rule', 'key', 'state', 'since', 'value'].map((c) => h('th', {}, c)))), alertsBody)),
    h('div', { class: 'card' }, h('h3', {}, 'Recent errors'), h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'source'), h('th', {}, 'reason'), h('th', {}, 'detail'), h('th', {}, 'count'))), errors)));
  let previous = null;
  every(5000, async () => {
    const [text, health] = await Promise.all([api('/metrics', { accept: 'text/plain' }), api('/api/v1/health')]);
    const metrics = parseMetrics(text);
    const now = performance.now();
    const sum = (name, pred = () => true) => metrics.filter((m) => m.name === name && pred(m)).reduce((a, m) => a + m.value, 0);
    const protocols = [...new Set(metrics.filter((m) => m.name === 'strata_ingest_messages_total').map((m) => m.labels.protocol))];
    const per = (name, p) => sum(name, (m) => m.labels.protocol === p);
    const dt = previous ? (now - previous.at) / 1000 : 0;
    rates.replaceChildren(...protocols.map((p) => {
      const msgs = per('strata_ingest_messages_total', p);
      const bytes = per('strata_ingest_received_bytes_total', p);
      const rate = (v, k) => (previous && dt > 0 ? ((v - (previous[k + p] || 0)) / dt).toFixed(1) : '…');
      return h('tr', { 'data-protocol': p }, h('td', {}, p), h('td', {}, rate(msgs, 'm')), h('td', {}, rate(bytes, 'b')), h('td', {}, per('strata_ingest_connections_open', p)), h('td', {}, msgs));
    }));
    const snapshot = { at: now };
    for (const p of protocols) { snapshot['m' + p] = per('strata_ingest_messages_total', p); snapshot['b' + p] = per('strata_ingest_received_bytes_total', p); }
    previous = snapshot;
    const devicesOnline = sum('strata_mqtt_sessions_open');
    tiles.replaceChildren(
      tile('Status', health.status),
      tile('Connected devices (MQTT)', devicesOnline),
      tile('Rows written (HTTP)', sum('strata_http_rows_written_total')),
      tile('Uptime', `${Math.round(health.uptime_seconds)} s`));
    storage.replaceChildren(...Object.entries(health.engine || {}).filter(([, v]) => typeof v !== 'object').map(([k, v]) => h('tr', {}, h('th', {}, k.replaceAll('_', ' ')), h('td', {}, v))));
    const rejects = metrics.filter((m) => m.name === 'strata_ingest_rejects_total' && m.value > 0);
    const recovery = [...(health.recovery?.wal_warnings || []), ...(health.recovery?.segment_errors || [])];
    errors.replaceChildren(
      ...rejects.map((m) => h('tr', {}, h('td', {}, m.labels.protocol), h('td', {}, m.labels.reason), h('td', {}, m.labels.detail), h('td', {}, m.value))),
      ...recovery.map((w) => h('tr', {}, h('td', {}, 'recovery'), h('td', {}, 'damage'), h('td', {}, typeof w === 'string' ? w : JSON.stringify(w)), h('td', {}, 1))));
    if (!rejects.length && !recovery.length) errors.replaceChildren(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No errors.')));
    const [tiers, alerts] = await Promise.all([
      sql('SELECT tier, count(DISTINCT stream) AS streams, sum(rows) AS rows, sum(bytes) AS bytes FROM storage_tiers GROUP BY tier ORDER BY tier').catch(() => []),
      sql("SELECT rule, key, state, coalesce(fired, started) AS since, value FROM alerts WHERE state <> 'resolved' ORDER BY since DESC LIMIT 20").catch(() => []),
    ]);
    tiersBody.replaceChildren(...(tiers.length ? tiers.map((t) => h('tr', { 'data-tier': t.tier }, h('td', {}, t.tier), h('td', {}, t.streams), h('td', {}, t.rows), h('td', {}, bytes(t.bytes))))
      : [h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No data stored yet.'))]));
    alertsBody.replaceChildren(...(alerts.length ? alerts.map(alertRow) : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No pending or firing alerts.'))]));
    tiles.append(tile('Alerts firing', alerts.filter((a) => a.state === 'firing').length));
    stamp.textContent = `updated ${new Date().toLocaleTimeString()}`;
  });
}

const bytes = (n) => (n == null ? '' : n < 1e3 ? `${n} B` : n < 1e6 ? `${(n / 1e3).toFixed(1)} kB` : n < 1e9 ? `${(n / 1e6).toFixed(1)} MB` : `${(n / 1e9).toFixed(2)} GB`);
const alertRow = (a) => h('tr', { 'data-state': a.state }, h('td', {}, a.rule), h('td', {}, a.key), h('td', {}, h('span', { class: `badge ${a.state === 'firing' ? 'off' : 'on'}` }, a.state)), h('td', {}, a.since || ''), h('td', {}, a.value == null ? '' : a.value));

const tile = (label, value) => h('div', { class: 'card tile' }, h('div', { class: 'muted' }, label), h('div', { class: 'v' }, value));

// ---------------------------------------------------------------- devices

function ago(ns) {
  if (ns == null) return 'never';
  const s = (Date.now() - ns / 1e6) / 1000;
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

async function devicesPage(main, under) {
  const [page, entities, streams] = await Promise.all([
    api(`/api/v1/devices?limit=1000${under ? `&under=${encodeURIComponent(under)}` : ''}`),
    api('/api/v1/entities?limit=1000').catch(() => ({ items: [] })),
    api('/api/v1/streams').catch(() => ({ streams: [] })),
  ]);
  const devices = page.items;
  // Last values: one last-value query per telemetry stream (the fast path), newest per device.
  const last = new Map();
  for (const s of (streams.streams || []).filter((x) => !x.name.startsWith('_rollup_') && x.name !== 'alert_history')) {
    const rows = await sql(`SELECT * FROM last_values(${quoteLiteral(s.name)})`).catch(() => []);
    for (const r of rows) {
      const prev = last.get(r.device);
      if (!prev || Date.parse(r.time) > Date.parse(prev.time)) last.set(r.device, { ...r, stream: s.name });
    }
  }
  const lastText = (id) => {
    const r = last.get(id);
    if (!r) return '';
    return Object.entries(r).filter(([k, v]) => !['device', 'time', 'stream'].includes(k) && typeof v === 'number').slice(0, 4).map(([k, v]) => `${k}=${Number.isInteger(v) ? v : v.toFixed(2)}`).join(' ');
  };
  const entity = h('select', { id: 'device-entity' }, h('option', { value: '' }, 'anywhere'),
    (entities.items || []).map((e) => h('option', { value: e.id, selected: e.id === under }, `under ${e.name || e.id}`)));
  entity.addEventListener('change', () => { location.hash = entity.value ? `#/devices/${encodeURIComponent(entity.value)}` : '#/devices'; });
  const search = h('input', { id: 'device-search', type: 'search', placeholder: 'Search id, model, tag, location…' });
  const models = [...new Set(devices.map((d) => d.model).filter(Boolean))].sort();
  const model = h('select', { id: 'device-model' }, h('option', { value: '' }, 'any model'), models.map((m) => h('option', { value: m }, m)));
  const status = h('select', { id: 'device-status' }, h('option', { value: '' }, 'any status'), h('option', { value: 'on' }, 'enabled'), h('option', { value: 'off' }, 'disabled'));
  const body = h('tbody');
  const count = h('span', { class: 'muted' });
  const render = () => {
    const q = search.value.trim().toLowerCase();
    const shown = devices.filter((d) => (!model.value || d.model === model.value)
      && (!status.value || (status.value === 'on') === d.enabled)
      && (!q || [d.id, d.model, d.location, ...(d.tags || [])].some((x) => x && String(x).toLowerCase().includes(q))));
    count.textContent = `${shown.length} of ${devices.length}${page.next_after ? '+' : ''} devices`;
    body.replaceChildren(...shown.map((d) => h('tr', {},
      h('td', {}, h('a', { href: `#/device/${encodeURIComponent(d.id)}` }, d.id)),
      h('td', {}, d.model || ''),
      h('td', {}, h('span', { class: `badge ${d.enabled ? 'on' : 'off'}` }, d.enabled ? 'enabled' : 'disabled')),
      h('td', {}, ago(d.last_seen_ns)),
      h('td', {}, (d.tags || []).join(', ')),
      h('td', {}, d.location || ''),
      h('td', { class: 'last-values' }, lastText(d.id)))));
  };
  [search, model, status].forEach((el) => el.addEventListener('input', render));
  main.replaceChildren(h('h2', {}, 'Devices'), h('div', { class: 'row' }, search, model, status, entity, count),
    h('div', { class: 'card scroll' }, h('table', { id: 'devices' }, h('thead', {}, h('tr', {}, ['id', 'model', 'status', 'last seen', 'tags', 'location', 'last values'].map((c) => h('th', {}, c)))), body)));
  render();
}

const RANGES = { '1h': 3600e3, '6h': 6 * 3600e3, '24h': 86400e3, '7d': 7 * 86400e3, '30d': 30 * 86400e3 };

async function devicePage(main, id) {
  const device = await api(`/api/v1/devices/${encodeURIComponent(id)}`);
  const { streams } = await api('/api/v1/streams');
  const message = h('p', { id: 'device-message', role: 'status' });
  const toggle = h('button', { id: 'device-toggle', type: 'button' }, device.enabled ? 'Disable' : 'Enable');
  toggle.addEventListener('click', async () => {
    try {
      await api(`/api/v1/devices/${encodeURIComponent(id)}/${device.enabled ? 'disable' : 'enable'}`, { method: 'POST' });
      route();
    } catch (e) { message.className = 'error'; message.textContent = e.message; }
  });
  const rotate = h('button', { id: 'device-rotate', type: 'button', class: 'secondary' }, 'Rotate key');
  rotate.addEventListener('click', async () => {
    if (!confirm(`Rotate the key of ${id}? The old key stops working.`)) return;
    try {
      const r = await api(`/api/v1/devices/${encodeURIComponent(id)}/rotate-keys`, { method: 'POST', body: {} });
      const key = r.primary_key || r.key || JSON.stringify(r);
      message.className = '';
      message.replaceChildren('New key (shown once, copy it now): ', h('div', { class: 'secret', id: 'device-secret' }, key));
    } catch (e) { message.className = 'error'; message.textContent = e.message; }
  });
  // Which streams hold this device's data, and its newest row in each: telemetry first, the
  // alert history after it; rollup tables (`_rollup_*`) are derived, not the device's own.
  const telemetry = streams.filter((s) => !s.name.startsWith('_rollup_'))
    .sort((a, b) => (a.name === 'alert_history') - (b.name === 'alert_history'));
  const latest = [];
  for (const s of telemetry) {
    const rows = await sql(`SELECT * FROM ${quoteIdent(s.name)} WHERE device = ${quoteLiteral(id)} ORDER BY time DESC LIMIT 1`).catch(() => []);
    if (rows.length) latest.push({ stream: s, row: rows[0] });
  }
  const lastValues = h('tbody', {}, latest.flatMap(({ stream, row }) => Object.entries(row).filter(([k]) => k !== 'device').map(([k, v]) => h('tr', {}, h('td', {}, stream.name), h('td', {}, k), h('td', {}, v == null ? '' : v)))));
  const streamSel = h('select', { id: 'chart-stream' }, latest.map(({ stream }) => h('option', { value: stream.name }, stream.name)));
  const rangeSel = h('select', { id: 'chart-range' }, Object.keys(RANGES).map((r) => h('option', { value: r, selected: r === '24h' }, `last ${r} of data`)));
  const chartBox = h('div', { id: 'device-chart', class: 'chart' });
  const chartInfo = h('p', { class: 'muted', id: 'chart-info' });
  const draw = async () => {
    const pick = latest.find((l) => l.stream.name === streamSel.value);
    if (!pick) { chartBox.replaceChildren(h('p', { class: 'muted' }, 'No telemetry for this device.')); return; }
    const end = Date.parse(pick.row.time) + 1;
    const start = end - RANGES[rangeSel.value];
    const rows = await sql(`SELECT * FROM ${quoteIdent(pick.stream.name)} WHERE device = ${quoteLiteral(id)} AND time >= ${quoteLiteral(new Date(start).toISOString())} AND time < ${quoteLiteral(new Date(end).toISOString())} ORDER BY time`);
    const numeric = pick.stream.fields.filter((f) => ['float', 'integer', 'f64', 'i64', 'Float', 'Integer'].includes(f.type) || rows.some((r) => typeof r[f.name] === 'number')).map((f) => f.name);
    const t0 = performance.now();
    plot(chartBox, rows, 'time', numeric);
    chartInfo.textContent = `${rows.length} rows × ${numeric.length} fields, drawn in ${(performance.now() - t0).toFixed(0)} ms. Drag to zoom, double-click to reset.`;
  };
  streamSel.addEventListener('change', draw);
  rangeSel.addEventListener('change', draw);
  main.replaceChildren(
    h('p', {}, h('a', { href: '#/devices' }, '← Devices')),
    h('h2', {}, device.id, ' ', h('span', { class: `badge ${device.enabled ? 'on' : 'off'}`, id: 'device-status-badge' }, device.enabled ? 'enabled' : 'disabled')),
    h('div', { class: 'card' },
      h('p', {}, `Model: ${device.model || '—'} · Tags: ${(device.tags || []).join(', ') || '—'} · Location: ${device.location || '—'} · Last seen: ${ago(device.last_seen_ns)}`),
      h('div', { class: 'row' }, toggle, rotate), message),
    h('div', { class: 'card' }, h('h3', {}, 'Telemetry'), h('div', { class: 'row' }, streamSel, rangeSel), chartBox, chartInfo),
    h('div', { class: 'card' }, h('h3', {}, 'Last values'), h('table', { id: 'last-values' }, lastValues)),
    h('div', { class: 'card' }, h('h3', {}, 'Attributes'), h('pre', {}, JSON.stringify(device.attributes, null, 2))),
    await twinCard(id),
    await commandsCard(id),
    await deviceAlertsCard(id));
  await draw();
}

/** The device twin: desired and reported with versions, and what the device has not reported yet. */
async function twinCard(id) {
  const card = h('div', { class: 'card', id: 'device-twin' }, h('h3', {}, 'Twin'));
  try {
    const twin = await api(`/api/v1/devices/${encodeURIComponent(id)}/twin`);
    const rows = await sql(`SELECT delta FROM twins WHERE device = ${quoteLiteral(id)}`).catch(() => []);
    const delta = rows[0]?.delta;
    card.append(h('div', { class: 'row twin' },
      h('div', {}, h('h4', {}, `desired (v${twin.desired?.$version ?? 0})`), h('pre', { id: 'twin-desired' }, JSON.stringify(twin.desired, null, 2))),
      h('div', {}, h('h4', {}, `reported (v${twin.reported?.$version ?? 0})`), h('pre', { id: 'twin-reported' }, JSON.stringify(twin.reported, null, 2)))),
    h('p', { class: 'muted', id: 'twin-delta' }, delta && delta !== '{}' ? `Not yet reported by the device: ${typeof delta === 'string' ? delta : JSON.stringify(delta)}` : 'The device has reported every desired property.'));
  } catch (e) { card.append(h('p', { class: 'muted' }, `No twin: ${e.message}`)); }
  return card;
}

/** The device's command inbox, newest first, and a form to send one. */
async function commandsCard(id) {
  const body = h('tbody');
  const message = h('p', { role: 'status', id: 'command-message' });
  const load = async () => {
    const r = await api(`/api/v1/devices/${encodeURIComponent(id)}/commands`).catch(() => ({ commands: [] }));
    const list = [...(r.commands || [])].sort((a, b) => b.created_ns - a.created_ns).slice(0, 20);
    body.replaceChildren(...(list.length ? list.map((c) => h('tr', { 'data-command': c.id }, h('td', {}, c.name), h('td', {}, h('span', { class: 'badge' }, typeof c.status === 'string' ? c.status : JSON.stringify(c.status))),
      h('td', {}, ago(c.created_ns)), h('td', {}, JSON.stringify(c.payload)), h('td', {}, c.result == null ? '' : JSON.stringify(c.result))))
      : [h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No commands.'))]));
  };
  const name = h('input', { id: 'command-name', placeholder: 'command name', required: true });
  const payload = h('input', { id: 'command-payload', placeholder: '{"json": "payload"}' });
  const send = h('button', { type: 'submit', id: 'command-send' }, 'Send command');
  const form = h('form', { class: 'row' }, name, payload, send);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const p = payload.value.trim() ? JSON.parse(payload.value) : {};
      const r = await api(`/api/v1/devices/${encodeURIComponent(id)}/commands`, { method: 'POST', body: { name: name.value.trim(), payload: p, ttl: '1h' } });
      message.className = ''; message.textContent = `Queued command ${r.id}.`;
      await load();
    } catch (e) { message.className = 'error'; message.textContent = e.message; }
  });
  await load();
  return h('div', { class: 'card', id: 'device-commands' }, h('h3', {}, 'Commands'), form, message,
    h('table', {}, h('thead', {}, h('tr', {}, ['name', 'status', 'created', 'payload', 'result'].map((c) => h('th', {}, c)))), body));
}

/** Alerts whose key names this device. */
async function deviceAlertsCard(id) {
  const rows = await sql(`SELECT rule, key, state, coalesce(fired, started) AS since, value FROM alerts WHERE device = ${quoteLiteral(id)} ORDER BY since DESC LIMIT 20`).catch(() => []);
  return h('div', { class: 'card', id: 'device-alerts' }, h('h3', {}, 'Recent alerts'),
    h('table', {}, h('thead', {}, h('tr', {}, ['rule', 'key', 'state', 'since', 'value'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows.map(alertRow) : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No alerts for this device.')))));
}

// ---------------------------------------------------------------- charts

/**
 * Keeps the first and last point and, per pixel column, the min and max of each series, so a
 * chart of many points draws as fast as one of 2 × width points and still shows every spike.
 */
function downsample(xs, ys, width) {
  const n = xs.length;
  if (n <= 2 * width) return [xs, ...ys];
  const x0 = xs[0];
  const span = xs[n - 1] - x0 || 1;
  const keep = new Set([0, n - 1]);
  let bucketStart = 0;
  const flush = (from, to) => {
    for (const y of ys) {
      let lo = -1; let hi = -1;
      for (let i = from; i < to; i++) {
        if (y[i] == null) continue;
        if (lo < 0 || y[i] < y[lo]) lo = i;
        if (hi < 0 || y[i] > y[hi]) hi = i;
      }
      if (lo >= 0) { keep.add(lo); keep.add(hi); }
    }
  };
  let bucket = 0;
  for (let i = 0; i < n; i++) {
    const b = Math.min(width - 1, Math.floor(((xs[i] - x0) / span) * width));
    if (b !== bucket) { flush(bucketStart, i); bucketStart = i; bucket = b; }
  }
  flush(bucketStart, n);
  const idx = [...keep].sort((a, b) => a - b);
  return [idx.map((i) => xs[i]), ...ys.map((y) => idx.map((i) => y[i]))];
}

const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#4b5563'];

/** Draws rows (objects) as lines: x = timeColumn (RFC 3339), one series per field. */
function plot(box, rows, timeColumn, fields) {
  box.replaceChildren();
  if (!rows.length || !fields.length) { box.append(h('p', { class: 'muted' }, 'Nothing to plot in this range.')); return null; }
  const xs = rows.map((r) => Date.parse(r[timeColumn]) / 1000);
  const ys = fields.map((f) => rows.map((r) => (r[f] == null ? null : Number(r[f]))));
  const width = Math.max(300, box.clientWidth || 900);
  const data = downsample(xs, ys, width);
  const opts = {
    width, height: 300,
    cursor: { drag: { x: true, y: false } },
    series: [{ label: 'time', value: (u, v) => (v == null ? '' : new Date(v * 1000).toISOString()) },
      ...fields.map((f, i) => ({ label: f, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true }))],
    axes: [{}, {}],
  };
  const chart = new uPlot(opts, data, box);
  chart.strataRows = rows.length;
  (window.strataCharts = window.strataCharts || []).push(chart);
  return chart;
}

// ---------------------------------------------------------------- entities

function nodeOf(x) {
  if (typeof x === 'string') return { kind: 'entity', id: x };
  if (x.entity || x.Entity) return { kind: 'entity', id: x.entity || x.Entity };
  if (x.device || x.Device) return { kind: 'device', id: x.device || x.Device };
  return { kind: String(x.type || x.kind || 'entity').toLowerCase(), id: x.id };
}

async function entitiesPage(main) {
  const [entities, rels] = await Promise.all([api('/api/v1/entities?limit=1000'), api('/api/v1/relationships')]);
  const list = entities.items || entities;
  const relList = rels.items || rels.relationships || rels;
  const byId = new Map(list.map((e) => [e.id, e]));
  const children = new Map();
  const hasParent = new Set();
  for (const r of relList) {
    const kind = typeof r.kind === 'string' ? r.kind : JSON.stringify(r.kind);
    let parent = nodeOf(r.source); let child = nodeOf(r.target);
    if (kind === 'member_of') [parent, child] = [child, parent];
    else if (kind !== 'contains') continue;
    const key = `${parent.kind}:${parent.id}`;
    if (!children.has(key)) children.set(key, []);
    children.get(key).push(child);
    hasParent.add(`${child.kind}:${child.id}`);
  }
  const render = (node, seen) => {
    const key = `${node.kind}:${node.id}`;
    if (node.kind === 'device') return h('div', { class: 'node' }, h('span', { class: 'muted' }, 'device '), h('a', { href: `#/device/${encodeURIComponent(node.id)}` }, node.id));
    const e = byId.get(node.id);
    const kids = seen.has(key) ? [] : (children.get(key) || []);
    const next = new Set(seen).add(key);
    return h('details', { class: 'node', open: true, 'data-entity': node.id },
      h('summary', {}, `${e ? e.name || e.id : node.id} `, h('span', { class: 'muted' }, e ? `(${e.kind}) ` : ''),
        h('a', { class: 'under', href: `#/devices/${encodeURIComponent(node.id)}` }, 'everything under it')),
      kids.map((k) => render(k, next)));
  };
  const roots = list.filter((e) => !hasParent.has(`entity:${e.id}`)).map((e) => ({ kind: 'entity', id: e.id }));
  main.replaceChildren(h('h2', {}, 'Entities'), h('div', { class: 'card', id: 'entity-tree' },
    roots.length ? roots.map((r) => render(r, new Set())) : h('p', { class: 'muted' }, 'No entities yet.')));
}

// ---------------------------------------------------------------- lifecycle

async function lifecyclePage(main) {
  const { databases } = await api('/api/v1/databases');
  const names = databases || [];
  const run = h('button', { id: 'lifecycle-run', type: 'button', class: 'secondary' }, 'Run maintenance now');
  const runResult = h('p', { id: 'lifecycle-run-result', role: 'status' });
  run.addEventListener('click', async () => {
    run.disabled = true;
    try {
      const r = await api('/api/v1/lifecycle/run', { method: 'POST' });
      runResult.className = '';
      runResult.textContent = `Done in ${r.duration_ms ?? '?'} ms: ${(r.dropped || []).length} segments dropped, ${(r.moved || []).length} moved, ${(r.errors || []).length} errors.`;
      setTimeout(route, 1500);
    } catch (e) { runResult.className = 'error'; runResult.textContent = e.message; } finally { run.disabled = false; }
  });
  const metrics = parseMetrics(await api('/metrics', { accept: 'text/plain' }).catch(() => ''));
  const rollups = metrics.filter((m) => m.name === 'strata_rollup_pending_windows');
  const lag = (m) => metrics.find((x) => x.name === 'strata_rollup_lag_seconds' && x.labels.database === m.labels.database && x.labels.stream === m.labels.stream && x.labels.every === m.labels.every)?.value;
  const cards = [];
  for (const db of names) cards.push(await databaseCard(db));
  main.replaceChildren(h('div', { class: 'row' }, h('h2', {}, 'Lifecycle'), run), runResult,
    ...(cards.length ? cards : [h('p', { class: 'muted' }, 'No databases yet.')]),
    h('div', { class: 'card' }, h('h3', {}, 'Rollups'), h('table', { id: 'rollups' }, h('thead', {}, h('tr', {}, ['database', 'stream', 'every', 'pending windows', 'lag'].map((c) => h('th', {}, c)))),
      h('tbody', {}, rollups.length ? rollups.map((m) => h('tr', {}, h('td', {}, m.labels.database), h('td', {}, m.labels.stream), h('td', {}, m.labels.every), h('td', {}, m.value), h('td', {}, `${(lag(m) ?? 0).toFixed(1)} s`)))
        : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No rollups configured.'))))));
}

/** One database: its policy (editable), stream overrides and per-tier status. */
async function databaseCard(db) {
  const doc = await api(`/api/v1/databases/${encodeURIComponent(db)}/lifecycle`);
  const p = doc.policy || {};
  const hot = h('input', { name: 'hot', placeholder: 'forever', value: p.hot || '', size: 8 });
  const retention = h('input', { name: 'retention', placeholder: 'forever', value: p.retention || '', size: 8 });
  const rollups = h('input', { name: 'rollups', placeholder: 'e.g. 1m:90d, 1h', value: (p.rollups || []).map((r) => (r.keep ? `${r.every}:${r.keep}` : r.every)).join(', '), size: 24 });
  const message = h('p', { role: 'status' });
  const form = h('form', { class: 'row', 'data-database': db }, h('label', {}, 'hot ', hot), h('label', {}, 'retention ', retention), h('label', {}, 'rollups ', rollups), h('button', { type: 'submit' }, 'Save policy'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = {
      hot: hot.value.trim() || null,
      retention: retention.value.trim() || null,
      rollups: rollups.value.split(',').map((x) => x.trim()).filter(Boolean).map((x) => { const [every, keep] = x.split(':'); return { every, keep: keep || null }; }),
    };
    try {
      await api(`/api/v1/databases/${encodeURIComponent(db)}/lifecycle`, { method: 'PUT', body });
      message.className = ''; message.textContent = 'Saved; it applies to existing data from now on.';
    } catch (e) { message.className = 'error'; message.textContent = e.message; }
  });
  const when = (ns) => (ns ? new Date(ns / 1e6).toISOString() : '');
  const tiers = (doc.tiers || []).map((t) => h('tr', { 'data-stream': t.stream, 'data-tier': t.tier }, h('td', {}, t.stream), h('td', {}, t.tier), h('td', {}, t.files), h('td', {}, t.rows),
    h('td', {}, bytes(t.bytes)), h('td', {}, when(t.oldest_ns)), h('td', {}, when(t.newest_ns)), h('td', {}, t.pending_moves)));
  const overrides = Object.entries(doc.overrides || {}).map(([s, o]) => h('li', {}, `${s}: hot ${o.hot || 'forever'}, retention ${o.retention || 'forever'}, rollups ${(o.rollups || []).map((r) => r.every).join(', ') || 'none'}`));
  return h('div', { class: 'card', 'data-database': db }, h('h3', {}, `Database ${db}`), form, message,
    overrides.length ? h('div', {}, h('h4', {}, 'Stream overrides'), h('ul', {}, overrides)) : null,
    h('table', { class: 'tiers' }, h('thead', {}, h('tr', {}, ['stream', 'tier', 'files', 'rows', 'bytes', 'oldest', 'newest', 'pending moves'].map((c) => h('th', {}, c)))),
      h('tbody', {}, tiers.length ? tiers : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No data.')))),
    doc.last_run ? h('p', { class: 'muted' }, `Last maintenance: ${JSON.stringify(doc.last_run).slice(0, 300)}`) : null);
}

// ---------------------------------------------------------------- rules

async function rulesPage(main) {
  const [{ items }, stats, alerts] = await Promise.all([
    api('/api/v1/rules'),
    sql('SELECT name, evaluations, matches, errors, last_error, lag_ms FROM rules').catch(() => []),
    sql('SELECT rule, key, state, coalesce(fired, started) AS since, value FROM alerts ORDER BY since DESC LIMIT 100').catch(() => []),
  ]);
  const byName = new Map(stats.map((r) => [r.name, r]));
  const message = h('p', { role: 'status', id: 'rules-message' });
  const toggle = (rule) => {
    const b = h('button', { type: 'button', class: 'secondary', 'data-rule': rule.name }, rule.enabled === false ? 'Enable' : 'Disable');
    b.addEventListener('click', async () => {
      try { await api(`/api/v1/rules/${encodeURIComponent(rule.name)}/${rule.enabled === false ? 'enable' : 'disable'}`, { method: 'POST' }); route(); } catch (e) { message.className = 'error'; message.textContent = e.message; }
    });
    return b;
  };
  const rows = (items || []).map((r) => {
    const st = byName.get(r.name) || {};
    return h('tr', { 'data-rule': r.name }, h('td', {}, r.name), h('td', {}, r.kind), h('td', {}, h('span', { class: `badge ${r.enabled === false ? 'off' : 'on'}` }, r.enabled === false ? 'disabled' : 'enabled')),
      h('td', {}, st.evaluations ?? ''), h('td', {}, st.matches ?? ''), h('td', {}, st.errors ?? ''), h('td', { class: st.last_error ? 'error' : '' }, st.last_error || ''), h('td', {}, toggle(r)));
  });
  main.replaceChildren(h('h2', {}, 'Rules'), message,
    h('div', { class: 'card scroll' }, h('table', { id: 'rules' }, h('thead', {}, h('tr', {}, ['name', 'kind', 'status', 'evaluations', 'matches', 'errors', 'last error', ''].map((c) => h('th', {}, c)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No rules. Create one with POST /api/v1/rules (docs/rules.md).'))))),
    h('div', { class: 'card scroll' }, h('h3', {}, 'Alerts'), h('table', { id: 'alerts' }, h('thead', {}, h('tr', {}, ['rule', 'key', 'state', 'since', 'value'].map((c) => h('th', {}, c)))),
      h('tbody', {}, alerts.length ? alerts.map(alertRow) : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No alerts.'))))));
}

// ---------------------------------------------------------------- SQL

async function sqlPage(main) {
  const history = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
  const editor = h('textarea', { id: 'sql', spellcheck: 'false' }, history[0] || 'SELECT * FROM registry.devices LIMIT 10');
  const run = h('button', { id: 'sql-run', type: 'button' }, 'Run (Ctrl+Enter)');
  const csv = h('button', { id: 'sql-csv', type: 'button', class: 'secondary' }, 'Download CSV');
  const hist = h('select', { id: 'sql-history' }, h('option', { value: '' }, `history (${history.length})`), history.map((q) => h('option', { value: q }, q.slice(0, 80))));
  const status = h('p', { id: 'sql-status', class: 'muted' });
  const chartBox = h('div', { id: 'sql-chart' });
  const table = h('div', { class: 'scroll', id: 'sql-result' });
  hist.addEventListener('change', () => { if (hist.value) editor.value = hist.value; });
  const remember = (q) => {
    const next = [q, ...history.filter((x) => x !== q)].slice(0, 50);
    localStorage.setItem(HISTORY_KEY, JSON.stringify(next));
  };
  const execute = async () => {
    const q = editor.value.trim();
    if (!q) return;
    run.disabled = true;
    status.className = 'muted';
    status.textContent = 'Running…';
    const t0 = performance.now();
    try {
      const rows = await sql(q);
      const ms = performance.now() - t0;
      remember(q);
      status.textContent = `${rows.length} rows in ${ms.toFixed(0)} ms`;
      showRows(rows, table, chartBox);
    } catch (e) {
      status.className = 'error';
      status.textContent = e.message;
      table.replaceChildren();
      chartBox.replaceChildren();
    } finally { run.disabled = false; }
  };
  run.addEventListener('click', execute);
  editor.addEventListener('keydown', (e) => { if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); execute(); } });
  csv.addEventListener('click', async () => {
    try {
      const r = await api('/api/v1/query', { method: 'POST', body: editor.value, accept: 'text/csv', raw: true });
      const url = URL.createObjectURL(await r.blob());
      const a = h('a', { href: url, download: 'strata-query.csv' });
      document.body.append(a); a.click(); a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) { status.className = 'error'; status.textContent = e.message; }
  });
  main.replaceChildren(h('h2', {}, 'SQL'), h('div', { class: 'card' }, editor, h('div', { class: 'row' }, run, csv, hist), status), h('div', { class: 'card' }, chartBox), h('div', { class: 'card' }, table));
}

const isTime = (v) => typeof v === 'string' && /^\d{4}-\d\d-\d\dT\d\d:\d\d/.test(v);

/** A result as a table (first 1000 rows) and, when time-indexed, a line chart. */
function showRows(rows, table, chartBox) {
  const cols = rows.length ? Object.keys(rows[0]) : [];
  const shown = rows.slice(0, 1000);
  table.replaceChildren(h('table', {}, h('thead', {}, h('tr', {}, cols.map((c) => h('th', {}, c)))),
    h('tbody', {}, shown.map((r) => h('tr', {}, cols.map((c) => h('td', {}, r[c] == null ? '' : typeof r[c] === 'object' ? JSON.stringify(r[c]) : r[c])))))),
  rows.length > shown.length ? h('p', { class: 'muted' }, `showing 1000 of ${rows.length} rows`) : null);
  const timeCol = cols.find((c) => rows.every((r) => r[c] == null || isTime(r[c])) && rows.some((r) => isTime(r[c])));
  const numeric = cols.filter((c) => c !== timeCol && rows.some((r) => typeof r[c] === 'number'));
  chartBox.replaceChildren();
  window.strataCharts = [];
  if (timeCol && numeric.length) {
    const sorted = [...rows].sort((a, b) => Date.parse(a[timeCol]) - Date.parse(b[timeCol]));
    plot(chartBox, sorted, timeCol, numeric);
  }
}

// ---------------------------------------------------------------- boot

window.addEventListener('hashchange', () => { if (token()) route(); });
// Module scripts run once the document is parsed, so the elements exist.
$('#signin')?.addEventListener('submit', onSignin);
$('#signout').addEventListener('click', () => signOut('Signed out.'));
if (token()) start();
