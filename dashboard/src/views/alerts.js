// The alerts view (open alerts, firing first and by severity; history),
// the alert item shared with the device view, and the acknowledge dialog.

import { auth, can, explain } from '../api.js';
import { ago, h, keyed, text, value, when } from '../dom.js';
import { alertHistory, model, openAlerts, putAlert } from '../model.js';
import { socket } from '../live.js';

/** A list of alerts kept current: `items()` says which, in order. */
export function alertList(label, items, empty) {
  const ul = h('ul', { class: 'alerts', 'aria-label': label });
  const none = h('p', { class: 'muted' }, empty);
  const el = h('div', null, none, ul);
  return {
    el,
    update() {
      const list = items();
      none.hidden = list.length > 0;
      keyed(ul, list, (a) => a.id, createAlert, updateAlert);
    },
  };
}

function createAlert(a) {
  const sev = h('span', { class: 'sev' });
  const state = h('span', { class: 'state' });
  const summary = h('span', { class: 'summary' });
  const device = h('a', {});
  const meta = h('span', {});
  const ackText = h('span', { class: 'ack-text' });
  const ackBtn = h('button', { type: 'button', class: 'ack' }, 'Acknowledge');
  ackBtn.addEventListener('click', () => openAck(el.dataset.key));
  const el = h(
    'li',
    { class: 'alert card' },
    h('div', { class: 'alert-head' }, sev, state, summary),
    h('p', { class: 'meta' }, device, ' · ', meta),
    h('p', { class: 'ack-line' }, ackText, ackBtn),
  );
  el._ = { sev, state, summary, device, meta, ackText, ackBtn };
  return el;
}

function updateAlert(el, a) {
  const p = el._;
  el.dataset.state = a.state;
  el.dataset.severity = a.severity;
  el.dataset.acknowledged = String(a.acknowledged);
  text(p.sev, a.severity);
  p.sev.className = `sev sev-${a.severity}`;
  text(p.state, a.state);
  p.state.className = `state state-${a.state}`;
  text(p.summary, a.summary || `${a.rule} on ${a.device}/${a.metric}`);
  text(p.device, a.device);
  p.device.setAttribute('href', `#/device/${encodeURIComponent(a.device)}`);
  const since =
    a.state === 'resolved'
      ? `resolved ${when(a.resolvedAt)}`
      : a.state === 'firing'
        ? `firing since ${when(a.firedAt)}`
        : `pending since ${when(a.startedAt)}`;
  text(p.meta, `${a.rule} · ${a.metric} = ${value(a.value)} · ${since}`);
  if (a.acknowledged) {
    const by = a.ack?.by ? ` by ${a.ack.by}` : '';
    const at = a.ack?.at ? ` ${ago(Date.parse(a.ack.at))}` : '';
    text(p.ackText, `Acknowledged${by}${at}${a.ack?.note ? `: “${a.ack.note}”` : ''}`);
  } else {
    text(p.ackText, a.state === 'resolved' ? 'Not acknowledged' : 'Not acknowledged yet');
  }
  p.ackBtn.hidden = !(can('control') && a.state !== 'resolved' && !a.acknowledged);
  p.ackBtn.setAttribute('aria-label', `Acknowledge alert ${a.id}: ${a.summary || a.rule}`);
}

// --- the acknowledge dialog ---------------------------------------------

let dialog = null;

function ackDialog() {
  if (dialog) return dialog;
  const title = h('h2', { id: 'ack-title' });
  const what = h('p', { class: 'muted' });
  const note = h('textarea', { id: 'ack-note', rows: 3, maxlength: 2000 });
  const msg = h('p', { class: 'form-msg', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Acknowledge');
  const cancel = h('button', { type: 'button' }, 'Cancel');
  const form = h(
    'form',
    { method: 'dialog' },
    title,
    what,
    h('label', { for: 'ack-note' }, 'Note (what is being done)'),
    note,
    msg,
    h('div', { class: 'buttons' }, submit, cancel),
  );
  const d = h('dialog', { id: 'ack-dialog', 'aria-labelledby': 'ack-title' }, form);
  cancel.addEventListener('click', () => d.close());
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const id = Number(d.dataset.alert);
    submit.disabled = true;
    text(msg, '');
    try {
      const r = await socket.request({
        type: 'ack_alert',
        alert: id,
        by: auth.name || 'dashboard',
        note: note.value.trim() || undefined,
      });
      if (r.alert) putAlert(r.alert);
      d.close();
    } catch (err) {
      text(msg, explain(err));
    } finally {
      submit.disabled = false;
    }
  });
  document.body.append(d);
  dialog = { d, title, what, note, msg };
  return dialog;
}

function openAck(id) {
  const a = model.alerts.get(Number(id));
  if (!a) return;
  const x = ackDialog();
  x.d.dataset.alert = String(a.id);
  text(x.title, `Acknowledge alert ${a.id}`);
  text(x.what, a.summary || `${a.rule} on ${a.device}`);
  x.note.value = '';
  text(x.msg, '');
  x.d.showModal();
  x.note.focus();
}

// --- the view --------------------------------------------------------------

export function alertsView() {
  const open = alertList('Open alerts', () => openAlerts(), 'No open alerts.');
  const history = alertList('Resolved alerts', () => alertHistory(), 'No resolved alerts.');
  const el = h(
    'section',
    { 'aria-labelledby': 'view-title' },
    h('h1', { id: 'view-title', tabindex: -1 }, 'Alerts'),
    h('h2', null, 'Open'),
    open.el,
    h('h2', null, 'History'),
    history.el,
  );
  return {
    el,
    title: 'Alerts',
    update(topics) {
      if (!topics.has('alerts') && !topics.has('all') && !topics.has('tick')) return;
      open.update();
      history.update();
    },
  };
}
