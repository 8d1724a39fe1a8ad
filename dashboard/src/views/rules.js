// The rules view: the alert rules in force; an admin token may add, edit
// and delete them (as JSON, the same keys as the rules file).

import { can, explain, request } from '../api.js';
import { h, keyed, text } from '../dom.js';

const TEMPLATE = {
  name: 'new-rule',
  device: 'sensor-*',
  metric: 'temp',
  condition: { above: 30 },
  severity: 'warning',
  summary: '{device} is at {value}{unit} (limit {threshold})',
};

export function rulesView() {
  const ul = h('ul', { class: 'rules', 'aria-label': 'Rules' });
  const msg = h('p', { class: 'muted', role: 'status' }, 'Loading rules…');
  const admin = can('admin');
  const addBtn = admin ? h('button', { type: 'button', id: 'rule-new' }, 'New rule') : null;
  const addSlot = h('div');
  let rules = [];

  async function load() {
    try {
      const r = await request('GET', '/v1/rules');
      rules = r.items;
      text(msg, rules.length ? '' : 'No rules: the hub raises no alerts.');
      keyed(ul, rules, (x) => x.name, createRule, updateRule);
    } catch (e) {
      text(msg, `Could not load the rules: ${explain(e)}`);
    }
  }

  function editor(rule, isNew, done) {
    const id = `rule-json-${isNew ? 'new' : rule.name}`;
    const area = h('textarea', { id, rows: 10, spellcheck: 'false', class: 'code' }, JSON.stringify(rule, null, 2));
    const err = h('p', { class: 'form-msg', role: 'alert' });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save');
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h(
      'form',
      { class: 'rule-editor' },
      h('label', { for: id }, isNew ? 'New rule (JSON)' : `Rule ${rule.name} (JSON)`),
      area,
      err,
      h('div', { class: 'buttons' }, save, cancel),
    );
    cancel.addEventListener('click', () => done(false));
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let body;
      try {
        body = JSON.parse(area.value);
      } catch (x) {
        return text(err, `Not JSON: ${x.message}`);
      }
      save.disabled = true;
      try {
        if (isNew) await request('POST', '/v1/rules', { body });
        else await request('PUT', `/v1/rules/${encodeURIComponent(rule.name)}`, { body });
        done(true);
      } catch (x) {
        text(err, explain(x));
      } finally {
        save.disabled = false;
      }
    });
    setTimeout(() => area.focus());
    return form;
  }

  function createRule(r) {
    const name = h('h2', { class: 'rule-name' });
    const sev = h('span', { class: 'sev' });
    const dl = h('dl', { class: 'rule-fields' });
    const slot = h('div');
    const li = h('li', { class: 'rule card' }, h('div', { class: 'alert-head' }, name, sev), dl, slot);
    li._ = { name, sev, dl, slot };
    if (admin) {
      const edit = h('button', { type: 'button' }, 'Edit');
      const del = h('button', { type: 'button', class: 'danger' }, 'Delete');
      const buttons = h('div', { class: 'buttons' }, edit, del);
      li.append(buttons);
      edit.addEventListener('click', () => {
        const rule = rules.find((x) => x.name === li.dataset.key);
        buttons.hidden = true;
        slot.replaceChildren(
          editor(rule, false, (saved) => {
            slot.replaceChildren();
            buttons.hidden = false;
            if (saved) load();
            edit.focus();
          }),
        );
      });
      del.addEventListener('click', async () => {
        const n = li.dataset.key;
        if (!confirm(`Delete the rule ${n}? Its open alerts resolve.`)) return;
        try {
          await request('DELETE', `/v1/rules/${encodeURIComponent(n)}`);
          load();
        } catch (x) {
          text(msg, explain(x));
        }
      });
    }
    return li;
  }

  function updateRule(li, r) {
    const p = li._;
    text(p.name, r.name);
    text(p.sev, r.severity);
    p.sev.className = `sev sev-${r.severity}`;
    const fields = [
      ['Devices', r.device || 'any'],
      ['Metrics', r.metric || 'any'],
      ['Filter', r.filter],
      ['Condition', JSON.stringify(r.condition)],
      ['For', r.for],
      ['Keep firing for', r.keep_firing_for],
      ['Summary', r.summary],
      ['Notify', r.notify?.length ? r.notify.join(', ') : null],
      ['Repeat every', r.repeat_every],
    ].filter(([, v]) => v !== undefined && v !== null && v !== '');
    p.dl.replaceChildren(...fields.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
  }

  if (addBtn) {
    addBtn.addEventListener('click', () => {
      addBtn.hidden = true;
      addSlot.replaceChildren(
        editor(TEMPLATE, true, (saved) => {
          addSlot.replaceChildren();
          addBtn.hidden = false;
          addBtn.focus();
          if (saved) load();
        }),
      );
    });
  }

  const el = h(
    'section',
    { 'aria-labelledby': 'view-title' },
    h('h1', { id: 'view-title', tabindex: -1 }, 'Rules'),
    h(
      'p',
      { class: 'muted' },
      admin ? 'The alert rules in force. Changes are checked, written to the rules file and put in force at once.' : 'The alert rules in force (editing them needs an admin token).',
    ),
    addBtn,
    addSlot,
    msg,
    ul,
  );
  load();
  return { el, title: 'Rules', update() {} };
}
