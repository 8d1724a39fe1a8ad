// The devices view: each device with its presence, last seen, labels, and
// per metric its newest value and a sparkline of the last hour.

import { ago, drawSpark, h, keyed, sparkline, text, value } from '../dom.js';
import { HOUR, key, lastSeen, latestOf, model } from '../model.js';

let firstRender = false;

export function devicePill() {
  return h('span', { class: 'pill' });
}

export function updatePill(pill, d) {
  const s = d?.online === true ? 'online' : d?.online === false ? 'offline' : 'unknown';
  text(pill, s);
  pill.className = `pill pill-${s}`;
}

export function labelList(ul, labels) {
  const entries = Object.entries(labels || {}).sort();
  keyed(
    ul,
    entries,
    ([k]) => k,
    () => h('li', { class: 'label' }),
    (li, [k, v]) => text(li, `${k}: ${v}`),
  );
}

function createCard(d) {
  const name = h('a', { class: 'dev-name', href: `#/device/${encodeURIComponent(d.id)}` }, d.id);
  const pill = devicePill();
  const seen = h('span', { class: 'seen' });
  const labels = h('ul', { class: 'labels', 'aria-label': `Labels of ${d.id}` });
  const rows = h('tbody');
  const table = h(
    'table',
    { class: 'metrics' },
    h('caption', { class: 'sr-only' }, `Newest values of ${d.id}`),
    h(
      'thead',
      { class: 'sr-only' },
      h('tr', null, h('th', { scope: 'col' }, 'Metric'), h('th', { scope: 'col' }, 'Value'), h('th', { scope: 'col' }, 'Last hour')),
    ),
    rows,
  );
  const el = h(
    'li',
    { class: 'device card' },
    h('div', { class: 'dev-head' }, name, pill),
    h('p', { class: 'meta' }, seen),
    labels,
    table,
  );
  el._ = { pill, seen, labels, rows, device: d.id };
  return el;
}

function createRow(l) {
  const val = h('td', { class: 'val' });
  const spark = sparkline();
  const tr = h('tr', null, h('th', { scope: 'row' }, l.metric), val, h('td', { class: 'spark-cell' }, spark));
  tr._ = { val, spark };
  return tr;
}

export function devicesView() {
  const list = h('ul', { class: 'devices', id: 'device-list', 'aria-label': 'Devices' });
  const empty = h('p', { class: 'muted' });
  const el = h(
    'section',
    { 'aria-labelledby': 'view-title' },
    h('h1', { id: 'view-title', tabindex: -1 }, 'Devices'),
    empty,
    list,
  );
  let sparkAt = 0;

  return {
    el,
    title: 'Devices',
    update(topics) {
      const all = topics.has('all');
      const now = Date.now();
      // Sparklines are redrawn at most once a second.
      const drawSparks = all || topics.has('theme') || (topics.has('readings') && now - sparkAt >= 1000) || topics.has('tick');
      if (drawSparks) sparkAt = now;
      const devices = [...model.devices.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
      empty.hidden = devices.length > 0;
      text(empty, model.loaded.devices ? 'No devices have reported yet.' : 'Loading devices…');
      keyed(list, devices, (d) => d.id, createCard, (card, d) => {
        const p = card._;
        updatePill(p.pill, d);
        text(p.seen, `last seen ${ago(lastSeen(d.id), now)}`);
        labelList(p.labels, d.labels);
        keyed(p.rows, latestOf(d.id), (l) => l.metric, createRow, (tr, l) => {
          text(tr._.val, value(l.value, l.unit));
          if (drawSparks) drawSpark(tr._.spark, model.series.get(key(d.id, l.metric)), HOUR, now, l.metric);
        });
      });
      if (!firstRender && model.latest.size > 0 && list.querySelector('td.val')) {
        firstRender = true;
        performance.mark('telltale-first-render');
      }
    },
  };
}
