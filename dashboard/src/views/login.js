// The sign-in form: an API token, kept in the browser's session storage.

import { h, text } from '../dom.js';

export function loginView(message, submit) {
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'off',
    spellcheck: 'false',
    required: true,
    'aria-describedby': 'token-help',
  });
  const msg = h('p', { class: 'form-msg', role: 'alert', id: 'login-msg' }, message || '');
  const button = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'login card' },
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { class: 'muted', id: 'token-help' }, 'A token starts with tlt_. The operator makes one with: telltale-hub token create --name NAME --scope read'),
    msg,
    h('div', { class: 'buttons' }, button),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    button.disabled = true;
    text(msg, '');
    try {
      const err = await submit(input.value.trim());
      if (err) text(msg, err);
    } finally {
      button.disabled = false;
    }
  });
  const el = h(
    'section',
    { class: 'login-view', 'aria-labelledby': 'view-title' },
    h('h1', { id: 'view-title', tabindex: -1 }, 'Sign in'),
    h('p', null, 'This hub needs an API token.'),
    form,
  );
  return { el, title: 'Sign in', update() {}, mounted: () => input.focus() };
}
