// The dashboard in headless Chromium against the real hub and the real
// demo agents (`telltale-hub demo` on loopback ports): live values, an
// alert raised by a threshold crossing, its acknowledgement seen by another
// watcher, a command that reaches the agent, a hub killed and restarted
// without a gap in the page's readings table, accessibility, and sign-in
// with scopes. Screenshots go to $SCREENSHOTS (target/dashboard-screenshots
// by default) and the measurements to measurements.json there.
//
//   node test/browser.mjs   (after cargo build --workspace --bins; see run.sh)

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '../..');
const HUB = process.env.TELLTALE_HUB || path.join(ROOT, 'target/debug/telltale-hub');
const SHOTS = path.resolve(process.env.SCREENSHOTS || path.join(ROOT, 'target/dashboard-screenshots'));
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const AXE = fs.readFileSync(path.join(here, '../node_modules/axe-core/axe.min.js'), 'utf8');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Polls `f` until it returns something truthy, at most `timeout` ms. */
async function until(what, f, timeout = 15000, every = 100) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await f();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    await sleep(every);
  }
  throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last?.message ?? JSON.stringify(last)})`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Whether any process of the group is alive. */
function alive(group) {
  try {
    process.kill(-group, 0);
    return true;
  } catch {
    return false;
  }
}

/** The real hub on loopback ports, with the demo's agents. */
class Hub {
  async init() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'telltale-dash-'));
    this.data = path.join(this.dir, 'data');
    this.mqtt = await freePort();
    this.http = await freePort();
    this.base = `http://127.0.0.1:${this.http}`;
    this.starts = 0;
    /** process groups started (each hub's pid) */
    this.groups = [];
    // Whatever happens to the test, nothing it started outlives it.
    process.once('exit', () => {
      for (const g of this.groups) {
        try {
          process.kill(-g, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    });
    return this;
  }

  /**
   * `demo` the first time (the hub and its demo agents, in a process group
   * of their own); after that `run` with the demo's settings, so that the
   * agents of the first start, still running, are the only ones.
   * `extraConfig` is appended to the hub's config file.
   */
  async start(extraConfig = '') {
    assert.ok(fs.existsSync(HUB), `${HUB} is missing: cargo build --workspace --bins`);
    this.starts++;
    let args;
    if (this.starts === 1) {
      args = ['demo', '--data-dir', this.data, '--mqtt-port', String(this.mqtt), '--http-port', String(this.http)];
    } else {
      const config = path.join(this.dir, 'hub.toml');
      fs.writeFileSync(
        config,
        [
          `data_dir = ${JSON.stringify(this.data)}`,
          '[broker]',
          `listen = "127.0.0.1:${this.mqtt}"`,
          '[api]',
          `listen = "127.0.0.1:${this.http}"`,
          '[alerts]',
          `rules_file = ${JSON.stringify(path.join(this.data, 'rules.toml'))}`,
          extraConfig,
        ].join('\n'),
      );
      args = ['run', '--config', config];
    }
    const log = fs.openSync(path.join(this.dir, `hub-${this.starts}.log`), 'w');
    this.proc = spawn(HUB, args, {
      detached: true,
      stdio: ['ignore', 'ignore', log],
      env: { ...process.env, RUST_LOG: 'info,rumqttd=warn' },
    });
    fs.closeSync(log);
    this.groups.push(this.proc.pid);
    this.exited = new Promise((r) => this.proc.once('exit', r));
    await until('the hub to be ready', async () => (await fetch(`${this.base}/readyz`)).ok, 30000, 100);
  }

  /** SIGKILL to the hub alone: its agents keep their readings meanwhile. */
  async kill() {
    process.kill(this.proc.pid, 'SIGKILL');
    await this.exited;
  }

  /** Stops the hub, then whatever is left of earlier starts (the agents). */
  async stop() {
    for (const group of this.groups.reverse()) {
      try {
        process.kill(-group, 'SIGTERM');
      } catch {
        continue;
      }
      await until('the processes to stop', () => !alive(group), 10000, 100).catch(() => {
        try {
          process.kill(-group, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      });
    }
  }

  async json(p) {
    const res = await fetch(this.base + p);
    if (!res.ok) throw new Error(`${p}: ${res.status} ${await res.text()}`);
    return res.json();
  }

  publish(device, pack) {
    execFileSync('mosquitto_pub', [
      '-h', '127.0.0.1', '-p', String(this.mqtt),
      '-t', `telltale/v1/devices/${device}/telemetry`, '-m', JSON.stringify(pack),
    ]);
  }

  /** An NDJSON watch of `p` in the background: its events, until closed. */
  watch(p) {
    const ctl = new AbortController();
    const events = [];
    const done = (async () => {
      const res = await fetch(this.base + p, { signal: ctl.signal });
      assert.equal(res.status, 200);
      const dec = new TextDecoder();
      let buf = '';
      for await (const chunk of res.body) {
        buf += dec.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) events.push(JSON.parse(line));
        }
      }
    })().catch((e) => {
      if (e.name !== 'AbortError') throw e;
    });
    return { events, close: () => ctl.abort(), done };
  }
}

/**
 * A TCP relay on loopback between the browser and the hub: `drop()` cuts
 * every connection and refuses new ones until `restore()`, as a network
 * that goes away would.
 */
class Relay {
  async start(port) {
    this.conns = new Set();
    this.down = false;
    this.server = net.createServer((c) => {
      if (this.down) return c.destroy();
      const u = net.connect(port, '127.0.0.1');
      const close = () => {
        c.destroy();
        u.destroy();
        this.conns.delete(c);
      };
      this.conns.add(c);
      c.on('error', close).on('close', close);
      u.on('error', close).on('close', close);
      c.pipe(u);
      u.pipe(c);
    });
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${this.server.address().port}`;
    return this;
  }

  drop() {
    this.down = true;
    for (const c of this.conns) c.destroy();
  }

  restore() {
    this.down = false;
  }

  close() {
    this.drop();
    return new Promise((r) => this.server.close(r));
  }
}

const measured = {};
let hub;
let relay;
let browser;
let page;
const pageErrors = [];
const cspErrors = [];

async function newPage(context) {
  const p = await context.newPage();
  p.on('pageerror', (e) => pageErrors.push(e.message));
  p.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
  });
  return p;
}

/** Screenshots of what the page shows now: wide and phone, light and dark. */
async function shots(name, full = false) {
  for (const [w, h] of [[1280, 800], [360, 740]]) {
    for (const scheme of ['light', 'dark']) {
      await page.setViewportSize({ width: w, height: h });
      await page.emulateMedia({ colorScheme: scheme });
      await page.evaluate(() => scrollTo(0, 0));
      await sleep(400);
      await page.screenshot({ path: path.join(SHOTS, `${name}-${w}x${h}-${scheme}.png`) });
      if (full) await page.screenshot({ path: path.join(SHOTS, `${name}-${w}x${h}-${scheme}-full.png`), fullPage: true });
    }
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });
}

const go = (hash) => page.evaluate((h) => (location.hash = h), hash);
const marker = () => page.evaluate(() => window.__samePage);

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  hub = await new Hub().init();
  await hub.start();
  relay = await new Relay().start(hub.http);
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ARGS });
  await until(
    'readings from both demo devices',
    async () => {
      const l = await hub.json('/v1/latest');
      return new Set(l.items.map((i) => i.device)).size >= 2;
    },
    30000,
    200,
  );
  // An hour of history from a sensor without an agent (times relative to
  // the hub's clock), for the sparklines and the time ranges.
  hub.publish(
    'sensor-hall',
    Array.from({ length: 118 }, (_, i) => ({
      n: 'temp',
      u: 'Cel',
      t: -3540 + i * 30,
      v: Math.round((20 + 3 * Math.sin(i / 9)) * 100) / 100,
    })),
  );
  await until('the hall sensor', async () => (await hub.json('/v1/readings?device=sensor-hall&limit=200')).items.length === 118, 10000);
  // And a busy one: 9,000 readings over the hour (one every 0.4 s), so the
  // page loads a realistic hour of readings while it renders.
  for (let pack = 0; pack < 9; pack++) {
    hub.publish(
      'sensor-busy',
      Array.from({ length: 1000 }, (_, i) => {
        const k = pack * 1000 + i;
        return { n: 'power', u: 'W', t: Math.round((-3598 + k * 0.4) * 10) / 10, v: 400 + (k % 97) };
      }),
    );
  }
  await until('the busy sensor', async () => (await hub.json('/v1/readings?device=sensor-busy&limit=10000')).items.length === 9000, 20000, 250);
});

after(async () => {
  fs.writeFileSync(path.join(SHOTS, 'measurements.json'), `${JSON.stringify(measured, null, 2)}\n`);
  await browser?.close();
  await relay?.close();
  await hub?.stop();
  // The databases go; the hub's logs stay for a look after a failure.
  if (hub?.data) fs.rmSync(hub.data, { recursive: true, force: true });
  if (hub?.dir) console.log(`# hub logs: ${hub.dir}`);
});

test('the device list shows the demo devices with live values that change; the page is small and renders fast', async () => {
  // Cold loads, each in a fresh context (empty cache).
  const renders = [];
  let weight = null;
  for (let i = 0; i < 5; i++) {
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await newPage(ctx);
    const encodings = {};
    p.on('response', (r) => {
      const u = new URL(r.url());
      if (u.pathname === '/' || u.pathname.startsWith('/ui/')) encodings[u.pathname] = r.headers()['content-encoding'] || 'identity';
    });
    await p.goto(`${hub.base}/`);
    await p.waitForSelector('#device-list li[data-key="demo-freezer"] td.val', { timeout: 10000 });
    const t = await p.evaluate(() => performance.getEntriesByName('telltale-first-render')[0]?.startTime);
    assert.ok(t > 0, 'the page marks its first render with data');
    renders.push(t);
    weight = await p.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0];
      const files = performance
        .getEntriesByType('resource')
        .filter((r) => new URL(r.name).pathname.startsWith('/ui/'))
        .map((r) => ({ path: new URL(r.name).pathname, encoded: r.encodedBodySize, decoded: r.decodedBodySize }));
      return { document: { encoded: nav.encodedBodySize, decoded: nav.decodedBodySize }, files };
    });
    weight.encodings = encodings;
    await ctx.close();
  }
  renders.sort((a, b) => a - b);
  const total = weight.document.encoded + weight.files.reduce((s, f) => s + f.encoded, 0);
  const held = await hub.json('/v1/readings?since=1h&limit=10000');
  measured.firstRenderMs = { min: renders[0], median: renders[2], max: renders[4], runs: renders, readingsInTheLastHour: held.items.length };
  measured.pageWeight = { totalEncodedBytes: total, ...weight };
  assert.equal(weight.files.length, 2, 'one script and one stylesheet');
  assert.ok(Object.values(weight.encodings).every((e) => e === 'gzip' || e === 'br'), JSON.stringify(weight.encodings));
  assert.ok(total < 150 * 1024, `page weight ${total} bytes`);

  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  page = await newPage(ctx);
  // The page talks to the hub through the relay, which can drop the network.
  await page.goto(`${relay.base}/`);
  for (const d of ['demo-freezer', 'demo-greenhouse']) {
    const card = page.locator(`#device-list li[data-key="${d}"]`);
    await card.locator('.pill-online').waitFor({ timeout: 10000 });
    assert.match(await card.locator('.seen').textContent(), /last seen/);
    assert.match(await card.locator('.labels').textContent(), /site: demo/);
  }
  const temp = page.locator('#device-list li[data-key="demo-freezer"] tr[data-key="temp"] td.val');
  const first = await temp.textContent();
  assert.match(first, /°C$/);
  await until('the freezer temperature to change on the page', async () => (await temp.textContent()) !== first, 20000);
  await until('the greenhouse humidity to change on the page', async () => {
    const h = page.locator('#device-list li[data-key="demo-greenhouse"] tr[data-key="humidity"] td.val');
    const a = await h.textContent();
    await sleep(2500);
    return (await h.textContent()) !== a;
  }, 20000);
  await until('sparklines', async () => (await page.locator('svg.spark path[d^="M"]').count()) >= 6, 10000);
  // The hall sensor's hour of history spans its sparkline.
  const hall = await page.locator('#device-list li[data-key="sensor-hall"] svg.spark path').getAttribute('d');
  assert.ok(hall.split('L').length > 100, `a sparkline over the hour: ${hall}`);
  assert.equal(await page.locator('#device-list li[data-key="sensor-hall"] .pill').textContent(), 'unknown', 'no status: presence unknown');
  // From here on the page must never reload.
  await page.evaluate(() => (window.__samePage = 'yes'));
  assert.equal(await page.locator('#conn').getAttribute('data-state'), 'live');
  await shots('devices');
});

test('the theme toggle switches light and dark', async () => {
  const theme = () => page.evaluate(() => document.documentElement.dataset.theme || 'auto');
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(await theme(), 'auto');
  const light = await bg();
  await page.click('#theme');
  assert.equal(await theme(), 'light');
  await page.click('#theme');
  assert.equal(await theme(), 'dark');
  assert.notEqual(await bg(), light);
  await page.click('#theme');
  assert.equal(await theme(), 'auto');
  assert.equal(await bg(), light);
});

test('the time range choice (by keyboard) changes what the plots show, loading older readings when needed', async () => {
  await go('#/device/sensor-hall');
  const fig = page.locator('figure.plot').first();
  await fig.waitFor({ timeout: 10000 });
  const shown = async () => Number((await fig.getAttribute('aria-label')).match(/: (\d+) readings/)[1]);
  await until('the 15 minutes', async () => (await shown()) >= 25 && (await shown()) <= 32, 5000);
  await page.focus('#range-15m');
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'range-1h');
  await until('the hour', async () => (await shown()) >= 115, 5000);
  assert.match(await fig.getAttribute('aria-label'), /1 hour/);
  await page.evaluate(() => scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, 'device-hour-1280x800-light.png') });
  await page.keyboard.press('ArrowRight');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'range-6h');
  await until('six hours (read from the hub)', async () => /6 hours: 118 readings/.test(await fig.getAttribute('aria-label')), 10000);
  await page.keyboard.press('ArrowLeft');
  await page.keyboard.press('ArrowLeft');
  assert.equal(await marker(), 'yes', 'the page did not reload');
});

let alertId;

test('a rule added in the page and a threshold crossing make an alert appear without a reload', async () => {
  await go('#/rules');
  await page.locator('li.rule[data-key="freezer-warm"]').waitFor({ timeout: 10000 });
  await page.click('#rule-new');
  const rule = {
    name: 'hand-hot',
    device: 'hand-*',
    metric: 'temp',
    condition: { above: 50 },
    severity: 'critical',
    summary: '{device} is at {value}{unit}',
  };
  await page.fill('#rule-json-new', JSON.stringify(rule, null, 2));
  await page.click('form.rule-editor button[type="submit"]');
  await page.locator('li.rule[data-key="hand-hot"]').waitFor({ timeout: 10000 });
  const rules = await hub.json('/v1/rules');
  assert.ok(rules.items.some((r) => r.name === 'hand-hot'), 'the hub has the rule');

  await go('#/alerts');
  await page.locator('h1', { hasText: 'Alerts' }).waitFor();
  hub.publish('hand-1', [{ n: 'temp', u: 'Cel', v: 99 }]);
  const li = page.locator('ul[aria-label="Open alerts"] li.alert[data-state="firing"]', { hasText: 'hand-1' });
  await li.waitFor({ timeout: 15000 });
  alertId = await li.getAttribute('data-key');
  // Critical and firing: first in the list.
  assert.equal(await page.locator('ul[aria-label="Open alerts"] li.alert').first().getAttribute('data-key'), alertId);
  assert.match(await li.locator('.sev').textContent(), /critical/);
  assert.equal(await page.locator('#alert-count').textContent() !== '', true, 'the nav counts firing alerts');
  assert.equal(await marker(), 'yes', 'the page did not reload');
  await shots('alerts');
});

test('acknowledging the alert in the page (by keyboard) is seen by a separate watcher on /v1/alerts', async () => {
  const rv = (await hub.json('/v1/alerts?limit=1')).resourceVersion;
  const watcher = hub.watch(`/v1/alerts?watch=true&resourceVersion=${encodeURIComponent(rv)}`);
  const note = 'checked by the browser test';
  try {
    await page.focus(`li.alert[data-key="${alertId}"] button.ack`);
    await page.keyboard.press('Enter');
    await page.locator('#ack-dialog[open]').waitFor({ timeout: 5000 });
    assert.equal(await page.evaluate(() => document.activeElement.id), 'ack-note', 'focus moves into the dialog');
    await page.keyboard.type(note);
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Acknowledge');
    await page.keyboard.press('Enter');
    const seen = await until(
      'the acknowledgement on the separate watch',
      () =>
        watcher.events.find(
          (e) => e.type === 'MODIFIED' && String(e.object.id) === alertId && e.object.acknowledged && e.object.ack?.note === note,
        ),
      10000,
    );
    assert.equal(seen.object.ack.by, 'dashboard');
  } finally {
    watcher.close();
  }
  await page.locator(`li.alert[data-key="${alertId}"][data-acknowledged="true"]`).waitFor({ timeout: 5000 });
  assert.match(await page.locator(`li.alert[data-key="${alertId}"] .ack-text`).textContent(), /checked by the browser test/);
  assert.equal(await page.locator('#ack-dialog[open]').count(), 0, 'the dialog closed');
  assert.equal(await page.locator(`li.alert[data-key="${alertId}"] button.ack`).isVisible(), false);
  assert.equal(await marker(), 'yes', 'the page did not reload');
});

test('a command sent from the page (by keyboard) reaches the agent and the page shows it succeeded', async () => {
  await go('#/device/demo-freezer');
  await page.locator('#cmd-name').waitFor({ timeout: 10000 });
  await until('the socket', async () => (await page.locator('#conn').getAttribute('data-state')) === 'live', 10000);
  await page.focus('#cmd-name');
  assert.equal(await page.locator('#cmd-name').inputValue(), 'ping');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'cmd-send');
  await page.keyboard.press('Enter');
  const item = page.locator('ol.commands li.command').first();
  const states = new Set();
  await until(
    'the command to succeed on the page',
    async () => {
      const s = await item.getAttribute('data-state', { timeout: 1000 });
      states.add(s);
      return s === 'succeeded';
    },
    15000,
    20,
  );
  const id = await item.getAttribute('data-id');
  const cmd = await hub.json(`/v1/commands/${id}`);
  assert.equal(cmd.state, 'succeeded');
  assert.equal(cmd.name, 'ping');
  assert.equal(cmd.output?.pong, true, 'the agent answered');
  assert.ok(cmd.sentAt && cmd.deliveredAt && cmd.finishedAt);
  const steps = await item.locator('li.step').evaluateAll((els) => els.map((e) => [e.textContent, e.className]));
  assert.deepEqual(steps.map((s) => s[0]), ['queued', 'sent', 'delivered', 'succeeded']);
  assert.ok(steps.every((s) => /done|now/.test(s[1])), JSON.stringify(steps));
  measured.commandStatesSeen = [...states];
  assert.equal(await marker(), 'yes', 'the page did not reload');
  await shots('device', true);
});

/**
 * The device page's readings table against what the hub holds: the same
 * readings, seq for seq, over the seqs the table spans; it must reach back
 * before `from` and hold readings taken between `from` and `to`. With
 * `lostCursor` (the hub was killed), the page may have had to reload the
 * readings, because it had seen readings the hub never committed.
 */
async function tableMatchesHub(from, to, lostCursor = false) {
  const table = await page.locator('#readings-body tr').evaluateAll((trs) =>
    trs.map((tr) => ({ seq: Number(tr.dataset.seq), time: tr.dataset.time, metric: tr.dataset.metric })),
  );
  const seqs = table.map((r) => r.seq);
  const lo = Math.min(...seqs);
  const hi = Math.max(...seqs);
  const oldest = Math.min(...table.map((r) => Date.parse(r.time)));
  assert.ok(oldest < from, 'the table reaches back before the outage');
  const during = table.filter((r) => Date.parse(r.time) > from + 500 && Date.parse(r.time) < to);
  assert.ok(during.length >= 2, `readings taken during the outage are in the table: ${during.length}`);
  // Every reading the hub holds of the device (not `since`: the hall
  // sensor's back-dated readings put the log out of time order).
  // The page shows readings before their group commit; the hub's lists
  // hold only committed ones, so wait (bounded) for the commit of the
  // newest rows the page shows.
  let held;
  for (let i = 0; i < 20; i++) {
    held = await hub.json('/v1/readings?device=demo-freezer&limit=10000');
    if (held.items.some((r) => r.seq >= hi)) break;
    await sleep(250);
  }
  assert.equal(held.continue, undefined, 'one page holds them all');
  const want = held.items.filter((r) => r.seq >= lo && r.seq <= hi);
  const got = new Map(table.map((r) => [r.seq, r]));
  const missing = want.filter((r) => !got.has(r.seq));
  const extra = seqs.filter((q) => !want.some((r) => r.seq === q));
  assert.deepEqual(missing, [], 'readings the hub holds that the table lacks');
  assert.deepEqual(extra, [], 'readings in the table that the hub does not hold');
  for (const r of want) assert.equal(got.get(r.seq).time, r.time, `seq ${r.seq}`);
  const notices = await page.locator('#notice[data-kind="expired"]').count();
  const loads = await page.evaluate(() => window.telltale.feeds().map((f) => [f.name, f.loads]));
  if (lostCursor && notices > 0) {
    // The page had been shown readings that the killed hub never
    // committed: the restarted hub answers its cursor with 410, and the
    // page reloads the readings (and says so) instead of keeping them.
    assert.ok(
      loads.every(([name, n]) => n === (name === 'readings' ? 2 : 1)),
      `only the readings were loaded again: ${JSON.stringify(loads)}`,
    );
  } else {
    assert.equal(notices, 0, 'no reload notice: the cursor was still good');
    assert.ok(loads.every(([, n]) => n === 1), `each feed loaded its snapshot once: ${JSON.stringify(loads)}`);
  }
  assert.equal(await marker(), 'yes', 'the page did not reload');
  return { tableRows: table.length, seqs: [lo, hi], readingsFromTheOutage: during.length };
}

/** Waits until the newest row of the readings table was taken after `t`. */
async function tableReaches(t) {
  await until(
    'readings taken after the outage in the table',
    async () => Date.parse(await page.locator('#readings-body tr').first().getAttribute('data-time')) > t,
    30000,
    200,
  );
  // Let what is in flight land.
  await sleep(1500);
}

/** Waits until the hub holds a reading of the freezer taken after `t`. */
async function hubReaches(t) {
  await until(
    'the hub to store new readings',
    async () => {
      const l = await hub.json(`/v1/readings?device=demo-freezer&since=${encodeURIComponent(new Date(t).toISOString())}&limit=1`);
      return l.items.length > 0;
    },
    30000,
    200,
  );
}

test('after a network drop the page shows reconnecting, resumes, and its readings table has no gap', async () => {
  await go('#/device/demo-freezer');
  await until('the readings table', async () => (await page.locator('#readings-body tr').count()) >= 10, 15000);
  const conn = page.locator('#conn');
  const from = Date.now();
  relay.drop();
  await until('"reconnecting"', async () => (await conn.getAttribute('data-state')) === 'reconnecting', 15000, 50);
  // The hub goes on storing readings that the page does not see.
  await sleep(3000);
  await hubReaches(Date.now() - 500);
  const to = Date.now();
  relay.restore();
  await until('"live" again', async () => (await conn.getAttribute('data-state')) === 'live', 20000, 100);
  await tableReaches(to + 1000);
  measured.networkDrop = await tableMatchesHub(from, to);
});

test('after the hub is killed and restarted the page shows reconnecting, goes on, and its readings table has no gap', async () => {
  await go('#/device/demo-freezer');
  await until('the readings table', async () => (await page.locator('#readings-body tr').count()) >= 10, 15000);
  const from = Date.now();
  await hub.kill();
  const conn = page.locator('#conn');
  await until('"reconnecting"', async () => (await conn.getAttribute('data-state')) === 'reconnecting', 10000, 50);
  assert.match(await conn.textContent(), /reconnecting/i);
  await page.evaluate(() => scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, 'reconnecting-1280x800-light.png') });
  // The agents go on reading into their outboxes while the hub is down.
  await sleep(5000);
  assert.equal(await conn.getAttribute('data-state'), 'reconnecting', 'still reconnecting while the hub is down');
  // The page stays away (offline) until the agents have delivered to the
  // new hub, so it must catch up from where it was.
  relay.drop();
  const restartedAt = Date.now();
  await hub.start();
  await hubReaches(restartedAt + 1000);
  relay.restore();
  const back = Date.now();
  await until('"live" again', async () => (await conn.getAttribute('data-state')) === 'live', 30000, 100);
  measured.reconnectMs = Date.now() - back;
  await tableReaches(restartedAt + 2000);
  measured.restart = await tableMatchesHub(from, restartedAt, true);
});

test('when its cursor expired the page says so and reloads the readings, without a page reload', async () => {
  await go('#/device/demo-freezer');
  await until('the readings table', async () => (await page.locator('#readings-body tr').count()) >= 10, 15000);
  const conn = page.locator('#conn');
  relay.drop();
  await until('"reconnecting"', async () => (await conn.getAttribute('data-state')) === 'reconnecting', 15000, 50);
  // A hub whose ring holds 5 readings: the page's cursor falls out of it.
  await hub.kill();
  await hub.start('[store.retention]\nmax_rows = 5\n');
  const rv = await page.evaluate(() => window.telltale.feeds().find((f) => f.name === 'readings').rv);
  await until(
    "the ring to move past the page's cursor",
    async () => (await fetch(`${hub.base}/v1/readings?resourceVersion=${encodeURIComponent(rv)}&limit=1`)).status === 410,
    30000,
    300,
  );
  relay.restore();
  await until('"live" again', async () => (await conn.getAttribute('data-state')) === 'live', 30000, 100);
  const notice = page.locator('#notice[data-kind="expired"]');
  await notice.waitFor({ timeout: 10000 });
  assert.match(await notice.textContent(), /cursor expired/);
  assert.match(await notice.textContent(), /fresh snapshot/);
  const loads = Object.fromEntries(await page.evaluate(() => window.telltale.feeds().map((f) => [f.name, f.loads])));
  // With a 5-reading ring the fresh snapshot's cursor can expire again
  // before its stream starts: the readings load at least twice, the others once.
  assert.ok(loads.readings >= 2, `the readings were loaded again: ${loads.readings}`);
  assert.deepEqual({ ...loads, readings: 2 }, { devices: 1, latest: 1, alerts: 1, readings: 2 });
  await tableReaches(Date.now());
  assert.equal(await marker(), 'yes', 'the page did not reload');
  await page.evaluate(() => scrollTo(0, 0));
  await page.screenshot({ path: path.join(SHOTS, 'expired-1280x800-light.png') });
  // The notice can be dismissed.
  await notice.getByRole('button', { name: /dismiss/i }).click();
  assert.equal(await page.locator('#notice').textContent(), '');
});

test('the views pass axe (WCAG 2 A and AA, contrast included) in light and dark, at 360 px', async () => {
  const found = [];
  await page.setViewportSize({ width: 360, height: 740 });
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    for (const view of ['#/devices', '#/device/demo-freezer', '#/alerts', '#/rules']) {
      await go(view);
      await page.locator('#view-title').waitFor();
      await sleep(800);
      if (!(await page.evaluate(() => !!window.axe))) await page.evaluate(AXE);
      const r = await page.evaluate(() => axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }));
      assert.ok(r.passes.some((p) => p.id === 'color-contrast'), `axe checked contrast on ${view}`);
      for (const v of r.violations) {
        found.push(`${scheme} ${view}: ${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`);
      }
    }
    // Nothing wider than the phone's screen.
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 360, `the page is ${wide} px wide at 360`);
  }
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'light' });
  assert.deepEqual(found, []);
});

test('sign-in with a token, kept in session storage, and a read token sees no controls (the auth contract, answered by the test)', async () => {
  // This hub has no tokens yet: the test answers /v1/whoami and the
  // WebSocket's auth message as the contract says, checks that every other
  // request carries the token, and passes them on to the real hub without
  // it.
  const TOKEN = 'tlt_t1_secretsecret';
  const ctx = await browser.newContext({ viewport: { width: 360, height: 740 } });
  const p = await newPage(ctx);
  const unauthenticated = [];
  await p.route('**/v1/**', async (route) => {
    const req = route.request();
    const u = new URL(req.url());
    const bearer = req.headers().authorization === `Bearer ${TOKEN}`;
    const query = u.searchParams.get('access_token') === TOKEN;
    if (u.pathname === '/v1/whoami') {
      if (!bearer) {
        return route.fulfill({
          status: 401,
          headers: { 'content-type': 'application/problem+json', 'www-authenticate': 'Bearer' },
          body: JSON.stringify({ status: 401, code: 'unauthorized', title: 'Unauthorized', detail: 'a token is needed' }),
        });
      }
      return route.fulfill({
        status: 200,
        contentType: 'application/json',
        body: JSON.stringify({ scope: 'read', token: { id: 't1', name: 'viewer' }, open: false }),
      });
    }
    if (!bearer && !query) unauthenticated.push(u.pathname + u.search);
    u.searchParams.delete('access_token');
    const headers = { ...req.headers() };
    delete headers.authorization;
    return route.continue({ url: u.toString(), headers });
  });
  const wsAuth = [];
  await p.routeWebSocket(/\/v1\/ws$/, (ws) => {
    let server = null;
    ws.onMessage((m) => {
      if (!server) {
        const msg = JSON.parse(m);
        wsAuth.push(msg);
        if (msg.type === 'auth' && msg.token === TOKEN) {
          server = ws.connectToServer();
          ws.send(JSON.stringify({ type: 'auth_ok', scope: 'read' }));
        } else {
          ws.send(JSON.stringify({ type: 'result', success: false, error: { status: 401, code: 'unauthorized' } }));
          ws.close();
        }
        return;
      }
      server.send(m);
    });
  });

  await p.goto(`${hub.base}/`);
  await p.locator('#token').waitFor({ timeout: 10000 });
  assert.equal(await p.evaluate(() => document.activeElement.id), 'token', 'the token field has the focus');
  assert.equal(await p.locator('#conn').isVisible(), false, 'no connection state before signing in');
  await p.screenshot({ path: path.join(SHOTS, 'login-360x740-light.png') });
  await p.fill('#token', 'tlt_wrong_token');
  await p.keyboard.press('Enter');
  await until('the refusal', async () => /not accepted/.test(await p.locator('#login-msg').textContent()), 5000);
  assert.equal(await p.evaluate(() => sessionStorage.getItem('telltale.token')), null);
  await p.fill('#token', TOKEN);
  await p.keyboard.press('Enter');
  await p.locator('#device-list li[data-key="demo-freezer"] td.val').first().waitFor({ timeout: 10000 });
  assert.equal(await p.evaluate(() => sessionStorage.getItem('telltale.token')), TOKEN);
  assert.match(await p.locator('#who').textContent(), /viewer · read/);
  await until('live', async () => (await p.locator('#conn').getAttribute('data-state')) === 'live', 10000);
  assert.deepEqual(wsAuth, [{ type: 'auth', token: TOKEN }], 'the socket signs in with its first message');

  // A read token: no command form, no acknowledge buttons, no rule edits.
  await p.evaluate(() => (location.hash = '#/device/demo-freezer'));
  await p.locator('#readings-body tr').first().waitFor({ timeout: 10000 });
  assert.equal(await p.locator('#cmd-send').count(), 0);
  assert.match(await p.locator('.device-view').textContent(), /needs a control token/);
  await p.evaluate(() => (location.hash = '#/alerts'));
  await p.locator('ul[aria-label="Open alerts"] li.alert').first().waitFor({ timeout: 10000 });
  assert.equal(await p.locator('button.ack:visible').count(), 0);
  await p.evaluate(() => (location.hash = '#/rules'));
  await p.locator('li.rule').first().waitFor({ timeout: 10000 });
  assert.equal(await p.locator('#rule-new').count(), 0);
  assert.equal(await p.locator('li.rule button').count(), 0);

  // A reload keeps the sign-in (session storage); signing out forgets it.
  await p.reload();
  await p.locator('#nav:not([hidden])').waitFor({ timeout: 10000 });
  await p.click('#logout');
  await p.locator('#token').waitFor();
  assert.equal(await p.evaluate(() => sessionStorage.getItem('telltale.token')), null);
  assert.deepEqual(unauthenticated, [], 'every API request carried the token');
  await ctx.close();
});

test('no script errors and no Content-Security-Policy violations', () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspErrors, []);
});
