// One device: live plots per metric with a time range, the recent readings
// table, commands (send one, see it move through its lifecycle) and the
// device's alerts.

import uPlot from 'uplot';
import { can, explain, list } from '../api.js';
import { ago, clock, h, keyed, text, unit, value, when } from '../dom.js';
import { alertHistory, HOUR, key, lastSeen, latestOf, model, numeric, openAlerts } from '../model.js';
import { socket } from '../live.js';
import { alertList } from './alerts.js';
import { devicePill, labelList, updatePill } from './devices.js';

const RANGES = [
  ['15m', '15 min', 15 * 60_000],
  ['1h', '1 hour', HOUR],
  ['6h', '6 hours', 6 * HOUR],
  ['24h', '24 hours', 24 * HOUR],
];
/** Rows in the readings table. */
const TABLE_ROWS = 100;
/** Commands shown. */
const COMMANDS = 10;

const ORDER = { queued: 0, sent: 1, delivered: 2, succeeded: 3, failed: 3, expired: 3, timeout: 3 };
const FINAL = ['succeeded', 'failed', 'expired', 'timeout'];

export function deviceView(id) {
  const title = h('h1', { id: 'view-title', tabindex: -1 }, id);
  const pill = devicePill();
  const seen = h('span', {});
  const agent = h('span', {});
  const labels = h('ul', { class: 'labels', 'aria-label': 'Labels' });
  const latestBody = h('tbody');

  // --- plots ---
  let range = RANGES[0];
  const radios = h(
    'fieldset',
    { class: 'ranges' },
    h('legend', null, 'Time range'),
    RANGES.map(([v, label], i) => {
      const input = h('input', { type: 'radio', name: 'range', id: `range-${v}`, value: v, checked: i === 0 });
      input.addEventListener('change', () => {
        range = RANGES.find((r) => r[0] === input.value);
        loadHistory();
        redrawPlots(true);
      });
      return h('span', { class: 'range' }, input, h('label', { for: `range-${v}` }, label));
    }),
  );
  const plots = h('div', { class: 'plots' });
  const plotMsg = h('p', { class: 'muted', role: 'status' });
  /** metric → {u: uPlot, fig} */
  const charts = new Map();
  /** metric → {t, v, seq}: readings older than the live hour (6 h, 24 h) */
  let history = new Map();
  let historyFor = '1h';

  async function loadHistory() {
    if (range[2] <= HOUR) return;
    const want = range[0];
    historyFor = want;
    text(plotMsg, `Loading ${range[1]} of readings…`);
    try {
      const l = await list('/v1/readings', { device: id, since: want, limit: 5000 }, 20);
      if (historyFor !== want) return;
      const m = new Map();
      for (const r of l.items) {
        let s = m.get(r.metric);
        if (!s) m.set(r.metric, (s = { t: [], v: [] }));
        s.t.push(Date.parse(r.time));
        s.v.push(numeric(r.value));
      }
      for (const s of m.values()) sortSeries(s);
      history = m;
      text(plotMsg, l.truncated ? 'Showing the oldest part of the range only partly: too many readings.' : '');
      redrawPlots(true);
    } catch (e) {
      text(plotMsg, `Could not load the history: ${explain(e)}`);
    }
  }

  function data(metric, now) {
    const from = now - range[2];
    const live = model.series.get(key(id, metric)) || { t: [], v: [] };
    const t = [];
    const v = [];
    const hist = range[2] > HOUR ? history.get(metric) : null;
    const liveStart = live.t.length ? live.t[0] : Infinity;
    if (hist) {
      for (let i = 0; i < hist.t.length; i++) {
        if (hist.t[i] >= from && hist.t[i] < liveStart) {
          t.push(hist.t[i] / 1000);
          v.push(hist.v[i]);
        }
      }
    }
    let i = lowerBound(live.t, from);
    for (; i < live.t.length; i++) {
      t.push(live.t[i] / 1000);
      v.push(live.v[i]);
    }
    return [t, v];
  }

  function redrawPlots(rescale) {
    const now = Date.now();
    const metrics = latestOf(id).filter((l) => numeric(l.value) !== null);
    keyed(
      plots,
      metrics,
      (l) => l.metric,
      (l) => h('figure', { class: 'plot' }, h('figcaption', null, `${l.metric}${l.unit ? ` (${unit(l.unit)})` : ''}`)),
      (fig, l) => {
        let c = charts.get(l.metric);
        const d = data(l.metric, now);
        const bool = typeof l.value === 'boolean';
        if (!c || c.fig !== fig) {
          c = { fig, u: makeChart(fig, l.metric, bool, () => range[2], d) };
          charts.set(l.metric, c);
        } else {
          c.u.setData(d, true);
        }
        if (rescale) c.u.redraw(true, true);
        fig.setAttribute('aria-label', `${l.metric}, ${range[1]}: ${d[0].length} readings, newest ${value(l.value, l.unit)}`);
      },
    );
    for (const [m, c] of charts) {
      if (!c.fig.isConnected) {
        c.u.destroy();
        charts.delete(m);
      }
    }
  }

  function resizePlots() {
    for (const c of charts.values()) c.u.setSize(size(c.fig));
  }

  // --- commands ---
  const commands = new Map();
  const cmdList = h('ol', { class: 'commands', 'aria-label': 'Recent commands', 'aria-live': 'polite' });
  const cmdNone = h('p', { class: 'muted' }, 'No commands sent to this device yet.');
  function putCommand(c) {
    const old = commands.get(c.id);
    if (old && ORDER[old.state] > ORDER[c.state]) return;
    commands.set(c.id, c);
    renderCommands();
  }
  function renderCommands() {
    const items = [...commands.values()].sort((a, b) => b.id - a.id).slice(0, COMMANDS);
    cmdNone.hidden = items.length > 0;
    keyed(cmdList, items, (c) => c.id, createCommand, updateCommand);
  }
  const unwatch = socket.watch(
    { resource: 'commands', device: id, sendInitialEvents: true },
    {
      reset: () => {
        commands.clear();
        renderCommands();
      },
      event: (ev) => putCommand(ev.object),
    },
  );

  const form = can('control') ? commandForm(id, putCommand) : null;

  // --- alerts and readings ---
  const openA = alertList(`Open alerts of ${id}`, () => openAlerts(id), 'No open alerts.');
  const pastA = alertList(`Resolved alerts of ${id}`, () => alertHistory(id, 10), 'No resolved alerts.');
  const tbody = h('tbody', { id: 'readings-body' });

  const el = h(
    'section',
    { class: 'device-view', 'aria-labelledby': 'view-title' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/devices' }, '← All devices')),
    h('div', { class: 'dev-head' }, title, pill),
    h('p', { class: 'meta' }, seen, ' · ', agent),
    labels,
    h(
      'table',
      { class: 'metrics latest' },
      h('caption', null, 'Newest values'),
      h('thead', { class: 'sr-only' }, h('tr', null, h('th', { scope: 'col' }, 'Metric'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Time'))),
      latestBody,
    ),
    h('h2', null, 'Plots'),
    radios,
    plotMsg,
    plots,
    h('h2', null, 'Commands'),
    form ? form.el : h('p', { class: 'muted' }, 'Your token can read only: sending commands needs a control token.'),
    cmdNone,
    cmdList,
    h('h2', null, 'Alerts'),
    openA.el,
    h('h3', null, 'Recently resolved'),
    pastA.el,
    h('h2', { id: 'readings-title' }, 'Recent readings'),
    h(
      'div',
      { class: 'scroll', tabindex: 0, role: 'region', 'aria-labelledby': 'readings-title' },
      h(
        'table',
        { class: 'readings', id: 'readings' },
        h('caption', { class: 'sr-only' }, `The newest ${TABLE_ROWS} readings of ${id}, newest first`),
        h(
          'thead',
          null,
          h('tr', null, ['Seq', 'Time', 'Metric', 'Value'].map((c) => h('th', { scope: 'col' }, c))),
        ),
        tbody,
      ),
    ),
  );

  let plotAt = 0;
  const onResize = () => resizePlots();
  addEventListener('resize', onResize);

  return {
    el,
    title: id,
    update(topics) {
      const all = topics.has('all');
      const now = Date.now();
      const d = model.devices.get(id);
      updatePill(pill, d);
      if (!d && model.loaded.devices) text(seen, 'the hub has not heard from a device with this id');
      else text(seen, `last seen ${ago(lastSeen(id), now)}`);
      text(agent, d?.agent || 'no agent reported');
      labelList(labels, d?.labels);
      if (all || topics.has('latest')) {
        keyed(latestBody, latestOf(id), (l) => l.metric, () => {
          const tr = h('tr', null, h('th', { scope: 'row' }), h('td', { class: 'val' }), h('td', { class: 'muted' }));
          return tr;
        }, (tr, l) => {
          text(tr.children[0], l.metric);
          text(tr.children[1], value(l.value, l.unit));
          text(tr.children[2], clock(l.time));
        });
      }
      if (topics.has('theme')) {
        // New colours: the charts are made again.
        for (const c of charts.values()) c.u.destroy();
        charts.clear();
        plots.replaceChildren();
      }
      if (all || topics.has('theme') || topics.has('latest') || (topics.has('readings') && now - plotAt >= 500) || topics.has('tick')) {
        plotAt = now;
        redrawPlots(false);
      }
      if (all || topics.has('readings')) {
        const rows = (model.recent.get(id) || []).slice(-TABLE_ROWS).reverse();
        keyed(tbody, rows, (r) => r.seq, (r) => {
          const tr = h('tr', { dataset: { seq: r.seq, time: r.time, metric: r.metric } },
            h('td', null, r.seq), h('td', null, clock(r.time)), h('td', null, r.metric), h('td', null, value(r.value, r.unit)));
          return tr;
        }, () => {});
      }
      if (all || topics.has('alerts') || topics.has('tick')) {
        openA.update();
        pastA.update();
      }
      if (all || topics.has('tick')) renderCommands();
    },
    destroy() {
      unwatch();
      removeEventListener('resize', onResize);
      for (const c of charts.values()) c.u.destroy();
      charts.clear();
    },
  };
}

function lowerBound(a, x) {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function sortSeries(s) {
  const idx = s.t.map((_, i) => i).sort((a, b) => s.t[a] - s.t[b]);
  s.t = idx.map((i) => s.t[i]);
  s.v = idx.map((i) => s.v[i]);
}

function size(fig) {
  const w = Math.max(200, Math.floor(fig.clientWidth || 300));
  return { width: w, height: w < 500 ? 150 : 200 };
}

function css(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function makeChart(fig, metric, bool, span, d) {
  const fg = css('--muted');
  const grid = css('--line');
  const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
  // Hours and minutes on the 24-hour clock, as in the readings table.
  const hhmm = (u, splits) =>
    splits.map((t) => new Date(t * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }));
  const yAxis = bool
    ? { ...axis, size: 50, splits: () => [0, 1], values: (u, splits) => splits.map((v) => (v ? 'true' : 'false')) }
    : { ...axis, size: 50 };
  const opts = {
    ...size(fig),
    legend: { show: false },
    cursor: { drag: { x: false, y: false } },
    scales: {
      x: {
        time: true,
        range: () => {
          const now = Date.now() / 1000;
          return [now - span() / 1000, now];
        },
      },
      y: bool ? { range: [-0.1, 1.1] } : {},
    },
    axes: [{ ...axis, values: hhmm }, yAxis],
    series: [
      {},
      {
        label: metric,
        stroke: css('--accent'),
        width: 1.5,
        points: { show: false },
        paths: bool ? uPlot.paths.stepped({ align: 1 }) : undefined,
      },
    ],
  };
  return new uPlot(opts, d, fig);
}

// --- the command form and the command items --------------------------

const BUILTINS = [
  ['ping', 'ping: is the agent there?'],
  ['read_now', 'read_now: take readings now'],
  ['get_config', 'get_config: the agent’s settings'],
  ['set_interval', 'set_interval: change the reading interval'],
  ['', 'another command…'],
];

function commandForm(device, putCommand) {
  const name = h('select', { id: 'cmd-name' }, BUILTINS.map(([v, label]) => h('option', { value: v }, label)));
  const seconds = h('input', { id: 'cmd-seconds', type: 'number', min: 1, max: 86400, value: 5, inputmode: 'numeric' });
  const secondsRow = h('div', { class: 'field', hidden: true }, h('label', { for: 'cmd-seconds' }, 'Interval (seconds)'), seconds);
  const custom = h('input', { id: 'cmd-custom', autocomplete: 'off', spellcheck: 'false' });
  const params = h('textarea', { id: 'cmd-params', rows: 2, spellcheck: 'false' }, '{}');
  const customRows = h(
    'div',
    { hidden: true },
    h('div', { class: 'field' }, h('label', { for: 'cmd-custom' }, 'Command name'), custom),
    h('div', { class: 'field' }, h('label', { for: 'cmd-params' }, 'Parameters (a JSON object)'), params),
  );
  const timeout = h('input', { id: 'cmd-timeout', type: 'number', min: 1, max: 86400, value: 30, inputmode: 'numeric' });
  const submit = h('button', { type: 'submit', class: 'primary', id: 'cmd-send' }, 'Send');
  const msg = h('p', { class: 'form-msg', role: 'alert' });
  const show = () => {
    secondsRow.hidden = name.value !== 'set_interval';
    customRows.hidden = name.value !== '';
  };
  name.addEventListener('change', show);
  const el = h(
    'form',
    { class: 'command-form', 'aria-label': `Send a command to ${device}` },
    h('div', { class: 'field' }, h('label', { for: 'cmd-name' }, 'Command'), name),
    secondsRow,
    customRows,
    h('div', { class: 'field' }, h('label', { for: 'cmd-timeout' }, 'Timeout (seconds)'), timeout),
    h('div', { class: 'buttons' }, submit),
    msg,
  );
  el.addEventListener('submit', async (e) => {
    e.preventDefault();
    text(msg, '');
    let cmd = name.value;
    let p = {};
    if (cmd === 'set_interval') p = { seconds: Number(seconds.value) };
    if (cmd === '') {
      cmd = custom.value.trim();
      if (!cmd) return text(msg, 'Give the command a name.');
      try {
        p = JSON.parse(params.value || '{}');
      } catch {
        return text(msg, 'The parameters are not JSON.');
      }
      if (typeof p !== 'object' || p === null || Array.isArray(p)) return text(msg, 'The parameters must be a JSON object.');
    }
    submit.disabled = true;
    try {
      const r = await socket.request(
        {
          type: 'command',
          device,
          name: cmd,
          params: p,
          timeoutSeconds: Number(timeout.value) || 30,
          idempotencyKey: crypto.randomUUID ? crypto.randomUUID() : String(Math.random()),
        },
        (ev) => ev.object && putCommand(ev.object),
      );
      if (r.command) putCommand(r.command);
    } catch (err) {
      text(msg, explain(err));
    } finally {
      submit.disabled = false;
    }
  });
  return { el };
}

function createCommand() {
  const title = h('span', { class: 'cmd-title' });
  const state = h('span', { class: 'cmd-state' });
  const steps = h('ol', { class: 'steps', 'aria-label': 'Lifecycle' });
  const detail = h('p', { class: 'cmd-detail muted' });
  const li = h('li', { class: 'command card' }, h('div', { class: 'cmd-head' }, title, state), steps, detail);
  li._ = { title, state, steps, detail };
  return li;
}

function updateCommand(li, c) {
  const p = li._;
  li.dataset.state = c.state;
  li.dataset.id = String(c.id);
  text(p.title, `#${c.id} ${c.name}${Object.keys(c.params || {}).length ? ` ${JSON.stringify(c.params)}` : ''}`);
  text(p.state, c.state);
  p.state.className = `cmd-state st-${c.state}`;
  const final = FINAL.includes(c.state) ? c.state : 'result';
  const names = ['queued', 'sent', 'delivered', final];
  const times = [c.createdAt, c.sentAt, c.deliveredAt, c.finishedAt];
  const at = ORDER[c.state];
  keyed(p.steps, names.map((n, i) => ({ n, i })), (s) => s.i, () => h('li'), (stepEl, s) => {
    const reached = s.i === at || (s.i < at && !!times[s.i]);
    stepEl.className = reached ? (s.i === at ? 'step now' : 'step done') : 'step';
    text(stepEl, s.n);
    stepEl.title = times[s.i] ? when(times[s.i]) : '';
    if (s.i === at) stepEl.setAttribute('aria-current', 'step');
    else stepEl.removeAttribute('aria-current');
  });
  let d = `created ${ago(Date.parse(c.createdAt))}`;
  if (c.reason) d += ` · ${c.reason}`;
  if (c.output !== null && c.output !== undefined) d += ` · output ${JSON.stringify(c.output).slice(0, 200)}`;
  text(p.detail, d);
}
