// Drives the Strata web console in Debian's Chromium (headless) with playwright-core.
// Run by tests/tests/console.rs against the real binary with loaded data. Environment:
//   STRATA_URL          http://127.0.0.1:PORT
//   STRATA_ADMIN_TOKEN  an admin token; STRATA_READ_TOKEN a read-only token
//   STRATA_DEVICE       a registered device with telemetry in stream STRATA_STREAM, a desired twin
//                       property, a queued command and a firing alert (rule engine-hot)
//   STRATA_DAY_DEVICE   a device with one day of 10 s data, 4 fields (the chart timing figure)
//   STRATA_SHOTS        directory for screenshots (optional)
// Prints one line per check and "N passed, M failed"; exits 1 when any check failed.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';

const URL = process.env.STRATA_URL;
const ADMIN = process.env.STRATA_ADMIN_TOKEN;
const READER = process.env.STRATA_READ_TOKEN;
const DEVICE = process.env.STRATA_DEVICE;
const STREAM = process.env.STRATA_STREAM;
const SHOTS = process.env.STRATA_SHOTS;
const DAY_DEVICE = process.env.STRATA_DAY_DEVICE;
let passed = 0;
let failed = 0;

function check(name, ok, detail = '') {
  if (ok) { passed++; console.log(`ok ${name}`); } else { failed++; console.log(`FAIL ${name}: ${detail}`); }
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function sqlOverHttp(sql) {
  const r = await fetch(`${URL}/api/v1/query`, { method: 'POST', body: sql, headers: { Authorization: `Bearer ${ADMIN}` } });
  if (!r.ok) throw new Error(`${r.status} ${await r.text()}`);
  return r.json();
}

async function signIn(page, token) {
  await page.goto(URL + '/');
  await page.fill('#token', token);
  await page.click('#signin button[type=submit]');
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  // First load: bytes transferred (gzip) for the page and everything it loads.
  {
    const context = await browser.newContext();
    const page = await context.newPage();
    // Transferred bytes (headers + encoded body) of every request of the first load, summed
    // once the network is idle (each size is awaited, none is missed).
    const sizes = [];
    page.on('requestfinished', (req) => sizes.push(req.sizes()
      .then((z) => z.responseHeadersSize + z.responseBodySize).catch(() => 0)));
    const t0 = Date.now();
    await page.goto(URL + '/', { waitUntil: 'load' });
    const loadMs = Date.now() - t0;
    await page.waitForLoadState('networkidle');
    const bytes = (await Promise.all(sizes)).reduce((a, b) => a + b, 0);
    check('first load under 300 KiB transferred', bytes > 0 && bytes <= 300 * 1024, `${bytes} bytes`);
    console.log(`first-load transfer: ${bytes} bytes, load event after ${loadMs} ms`);
    // A wrong token is refused and nothing else is shown.
    await page.fill('#token', 'strata_not_a_token');
    await page.click('#signin button[type=submit]');
    await page.waitForFunction(() => document.querySelector('#signin-error')?.textContent.length > 0);
    const err = await page.textContent('#signin-error');
    check('a wrong token is refused', /refused/i.test(err) && await page.isHidden('#top'), err);
    const stored = await page.evaluate(() => sessionStorage.getItem('strata.token'));
    check('a refused token is not kept', stored === null, String(stored));
    await shot(page, 'signin');
    await context.close();
  }

  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const consoleErrors = [];
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await signIn(page, ADMIN);
  await page.waitForSelector('#top:not([hidden])');
  check('signed in; the token is in sessionStorage, not in the URL',
    (await page.evaluate(() => sessionStorage.getItem('strata.token'))) === ADMIN && !page.url().includes(ADMIN), page.url());

  // Overview: live metrics.
  await page.waitForSelector('.tile');
  await page.waitForSelector('tr[data-protocol="http"]');
  const tiles = await page.textContent('.tiles');
  check('overview shows status and connected devices', tiles.includes('Status') && tiles.includes('Connected devices'), tiles);
  await page.waitForSelector('#overview-tiers tr[data-tier="hot"]');
  await page.waitForSelector('#overview-alerts tr[data-state="firing"]');
  const alertText = await page.textContent('#overview-alerts');
  check('overview shows storage per tier and the firing alert', alertText.includes('engine-hot'), alertText);
  await shot(page, 'overview');

  // Devices: search finds the device.
  await page.click('a[data-page=devices]');
  await page.waitForSelector('#devices tbody tr');
  await page.fill('#device-search', DEVICE);
  const rows = await page.$$eval('#devices tbody tr', (trs) => trs.map((t) => t.textContent));
  check('device search finds the device', rows.length === 1 && rows[0].includes(DEVICE), JSON.stringify(rows));
  const lastCell = await page.textContent('#devices tbody tr td.last-values');
  check('device list shows last values', /temp=\d/.test(lastCell), lastCell);
  await shot(page, 'devices');
  // Filter by model and by status (gate-1 is the only disabled device, of model gateway).
  await page.fill('#device-search', '');
  const listed = async () => page.$$eval('#devices tbody tr td:first-child', (tds) => tds.map((t) => t.textContent).sort());
  const all = await listed();
  await page.selectOption('#device-model', 'gateway');
  const gateways = await listed();
  check('device list filters by model', all.length >= 3 && JSON.stringify(gateways) === '["gate-1"]', `${JSON.stringify(all)} -> ${JSON.stringify(gateways)}`);
  await page.selectOption('#device-model', '');
  await page.selectOption('#device-status', 'on');
  const enabled = await listed();
  check('device list filters by status', enabled.length === all.length - 1 && !enabled.includes('gate-1'), JSON.stringify(enabled));
  await page.selectOption('#device-status', '');
  // Filter by entity: only what is under the site.
  await page.selectOption('#device-entity', 'site-1');
  await page.waitForFunction(() => location.hash === '#/devices/site-1' && document.querySelectorAll('#devices tbody tr').length > 0);
  const under = await page.$$eval('#devices tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
  check('device list filters by entity', under.length === 1 && under[0] === DEVICE, JSON.stringify(under));
  await page.goto(`${URL}/#/devices`);
  await page.waitForSelector('#devices tbody tr');
  await page.fill('#device-search', DEVICE);

  // Device page: the chart plots exactly what SQL returns for the range.
  await page.click(`#devices a[href="#/device/${encodeURIComponent(DEVICE)}"]`);
  await page.waitForFunction(() => (window.strataCharts || []).length > 0, null, { timeout: 15000 });
  const plotted = await page.evaluate(() => {
    const u = window.strataCharts[0];
    return { labels: u.series.map((s) => s.label), data: u.data.map((d) => Array.from(d)), rows: u.strataRows };
  });
  const expected = await sqlOverHttp(`SELECT * FROM "${STREAM}" WHERE device = '${DEVICE}' AND time >= (SELECT max(time) FROM "${STREAM}" WHERE device = '${DEVICE}') - INTERVAL '1 day' ORDER BY time`);
  const fields = plotted.labels.slice(1);
  let same = plotted.data[0].length === expected.length && fields.length > 1;
  for (let i = 0; same && i < expected.length; i++) {
    if (Math.abs(plotted.data[0][i] - Date.parse(expected[i].time) / 1000) > 1e-3) same = false;
    fields.forEach((f, j) => {
      const want = expected[i][f] == null ? null : Number(expected[i][f]);
      if (plotted.data[j + 1][i] !== want) same = false;
    });
  }
  check('device chart points match SQL (time and every field)', same,
    `plotted ${plotted.data[0].length} points of ${fields}, SQL ${expected.length} rows`);
  check('several fields overlaid', fields.length >= 2, fields.join(','));
  await shot(page, 'device');

  // Drag zoom narrows the x scale.
  const box = await page.locator('#device-chart .u-over').boundingBox();
  const before = await page.evaluate(() => { const s = window.strataCharts[0].scales.x; return s.max - s.min; });
  await page.mouse.move(box.x + box.width * 0.3, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.6, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  const after = await page.evaluate(() => { const s = window.strataCharts[0].scales.x; return s.max - s.min; });
  check('drag zooms the chart', after < before * 0.5, `${before} -> ${after}`);

  // Key rotation shows the new key once.
  page.once('dialog', (d) => d.accept());
  await page.click('#device-rotate');
  await page.waitForSelector('#device-secret');
  const key = await page.textContent('#device-secret');
  check('key rotation shows the new key', key.length >= 16, key);

  // The device plane on the device page: twin, commands (and sending one), the device's alerts.
  const desired = await page.textContent('#twin-desired');
  check('device page shows the desired twin', desired.includes('"interval": 30'), desired);
  check('device page shows what is not yet reported', (await page.textContent('#twin-delta')).includes('interval'), await page.textContent('#twin-delta'));
  const queued = await page.$$eval('#device-commands tr[data-command]', (trs) => trs.map((t) => t.textContent));
  check('device page lists the queued command', queued.length === 1 && queued[0].includes('reboot'), JSON.stringify(queued));
  await page.fill('#command-name', 'ping');
  await page.fill('#command-payload', '{"n": 1}');
  await page.click('#command-send');
  await page.waitForFunction(() => document.querySelectorAll('#device-commands tr[data-command]').length === 2);
  const inbox = await (await fetch(`${URL}/api/v1/devices/${DEVICE}/commands`, { headers: { Authorization: `Bearer ${ADMIN}` } })).json();
  check('a command sent from the console is in the inbox', inbox.commands.some((c) => c.name === 'ping' && c.payload.n === 1), JSON.stringify(inbox));
  const devAlerts = await page.textContent('#device-alerts');
  check('device page shows its alerts', devAlerts.includes('engine-hot') && devAlerts.includes('firing'), devAlerts);
  await shot(page, 'device-plane');

  // A day of 10 s data with 4 fields: how long the chart takes to draw once the rows arrived.
  await page.goto(`${URL}/#/device/${encodeURIComponent(DAY_DEVICE)}`);
  await page.waitForFunction(() => /8640 rows × 4 fields, drawn in \d+ ms/.test(document.querySelector('#chart-info')?.textContent || ''), null, { timeout: 20000 });
  const info = await page.textContent('#chart-info');
  check('a day of 10 s data is charted', info.startsWith('8640 rows × 4 fields'), info);
  console.log(`day chart: ${info}`);

  // SQL page: run, time shown, table, chart, CSV download.
  await page.click('a[data-page=sql]');
  await page.waitForSelector('#sql');
  const query = `SELECT time, temp, hum FROM "${STREAM}" WHERE device = '${DEVICE}' ORDER BY time`;
  await page.fill('#sql', query);
  await page.click('#sql-run');
  await page.waitForFunction(() => /rows in \d+ ms/.test(document.querySelector('#sql-status').textContent));
  const status = await page.textContent('#sql-status');
  const sqlRows = await sqlOverHttp(query);
  check('SQL page shows row count and query time', status.startsWith(`${sqlRows.length} rows in`), status);
  const cells = await page.$$eval('#sql-result tbody tr', (trs) => trs.length);
  check('SQL result table', cells === sqlRows.length, `${cells} vs ${sqlRows.length}`);
  check('SQL time-indexed result is charted', await page.evaluate(() => (window.strataCharts || []).length === 1), '');
  await shot(page, 'sql');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#sql-csv')]);
  const csv = fs.readFileSync(await download.path(), 'utf8');
  const httpCsv = await (await fetch(`${URL}/api/v1/query`, { method: 'POST', body: query, headers: { Authorization: `Bearer ${ADMIN}`, Accept: 'text/csv' } })).text();
  check('CSV download equals the HTTP CSV answer', csv === httpCsv && csv.split('\n')[0] === 'time,temp,hum', csv.slice(0, 80));
  const history = await page.evaluate(() => JSON.parse(localStorage.getItem('strata.sqlHistory') || '[]'));
  check('query history kept', history[0] === query, JSON.stringify(history));

  // Lifecycle page: the database's policy, tiers, the rollup, maintenance on demand.
  await page.click('a[data-page=lifecycle]');
  await page.waitForSelector('div[data-database="default"] tr[data-tier="hot"]');
  const rollupRows = await page.$$eval('#rollups tbody tr', (trs) => trs.map((t) => t.textContent));
  check('lifecycle page shows the rollup and its lag', rollupRows.some((r) => r.includes(STREAM) && r.includes('1m')), JSON.stringify(rollupRows));
  const policyRollups = await page.inputValue('div[data-database="default"] input[name=rollups]');
  check('lifecycle page shows the policy', policyRollups === '1m', policyRollups);
  await page.click('#lifecycle-run');
  await page.waitForFunction(() => (document.querySelector('#lifecycle-run-result')?.textContent || '').length > 0);
  const ran = await page.textContent('#lifecycle-run-result');
  check('maintenance runs from the console', /^Done in \d+ ms: \d+ segments dropped, \d+ moved, 0 errors\.$/.test(ran), ran);
  await shot(page, 'lifecycle');

  // Rules page: the rule with its counters, the alert, disabling it.
  await page.click('a[data-page=rules]');
  await page.waitForSelector('#rules tr[data-rule="engine-hot"]');
  const ruleRow = await page.textContent('#rules tr[data-rule="engine-hot"]');
  check('rules page lists the rule enabled', ruleRow.includes('query') && ruleRow.includes('enabled'), ruleRow);
  check('rules page lists the firing alert', (await page.textContent('#alerts')).includes('firing'), await page.textContent('#alerts'));
  await shot(page, 'rules');
  await page.click('#rules button[data-rule="engine-hot"]');
  await page.waitForFunction(() => document.querySelector('#rules tr[data-rule="engine-hot"]')?.textContent.includes('disabled'));
  const rule = await (await fetch(`${URL}/api/v1/rules/engine-hot`, { headers: { Authorization: `Bearer ${ADMIN}` } })).json();
  check('disabling a rule from the console disables it', rule.enabled === false, JSON.stringify(rule));

  // Entities page renders the tree.
  await page.click('a[data-page=entities]');
  await page.waitForSelector('#entity-tree');
  const tree = await page.textContent('#entity-tree');
  const siteDevices = await page.$$eval('details[data-entity="site-1"] .node a', (as) => as.map((a) => a.textContent));
  check('entities tree shows the site and its device', siteDevices.includes(DEVICE), `${tree} / ${JSON.stringify(siteDevices)}`);
  await shot(page, 'entities');
  await page.click('details[data-entity="site-1"] > summary a.under');
  await page.waitForFunction(() => location.hash === '#/devices/site-1' && document.querySelectorAll('#devices tbody tr').length > 0);
  const fromTree = await page.$$eval('#devices tbody tr td:first-child', (tds) => tds.map((t) => t.textContent));
  check('an entity node opens everything under it', JSON.stringify(fromTree) === JSON.stringify([DEVICE]), JSON.stringify(fromTree));
  check('no script errors', consoleErrors.length === 0, consoleErrors.join('; '));
  await context.close();

  // A read-only token cannot disable a device.
  {
    const ctx = await browser.newContext();
    const p = await ctx.newPage();
    await signIn(p, READER);
    await p.waitForSelector('#top:not([hidden])');
    await p.goto(`${URL}/#/device/${encodeURIComponent(DEVICE)}`);
    await p.waitForSelector('#device-toggle');
    await p.click('#device-toggle');
    await p.waitForFunction(() => document.querySelector('#device-message')?.textContent.length > 0);
    const msg = await p.textContent('#device-message');
    const dev = await (await fetch(`${URL}/api/v1/devices/${DEVICE}`, { headers: { Authorization: `Bearer ${ADMIN}` } })).json();
    check('a read-only token cannot disable a device', msg.startsWith('403') && dev.enabled === true, `${msg}; enabled=${dev.enabled}`);
    await ctx.close();
  }
} catch (e) {
  check('console run', false, e.stack || String(e));
} finally {
  await browser.close();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
