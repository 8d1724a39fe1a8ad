// The dashboard: sign-in, routing between the views, the header (views,
// connection state, theme) and the live parts.

import { auth, explain, HttpError, onUnauthorized, setToken, whoami } from './api.js';
import { onChange } from './conn.js';
import { h, text } from './dom.js';
import { changed, subscribe } from './model.js';
import * as live from './live.js';
import { openAlerts } from './model.js';
import { alertsView } from './views/alerts.js';
import { deviceView } from './views/device.js';
import { devicesView } from './views/devices.js';
import { loginView } from './views/login.js';
import { rulesView } from './views/rules.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const conn = document.getElementById('conn');
const who = document.getElementById('who');
const logout = document.getElementById('logout');
const notice = document.getElementById('notice');
const alertCount = document.getElementById('alert-count');

let view = null;
let signedIn = false;

// --- theme: follows the system unless chosen ----------------------------

const THEMES = ['auto', 'light', 'dark'];
const themeBtn = document.getElementById('theme');
function showTheme() {
  const t = document.documentElement.dataset.theme || 'auto';
  text(themeBtn, t === 'auto' ? 'Theme: auto' : t === 'light' ? 'Theme: light' : 'Theme: dark');
}
themeBtn.addEventListener('click', () => {
  const t = document.documentElement.dataset.theme || 'auto';
  const next = THEMES[(THEMES.indexOf(t) + 1) % THEMES.length];
  if (next === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = next;
  try {
    localStorage.setItem('telltale.theme', next === 'auto' ? '' : next);
  } catch {
    // not kept
  }
  showTheme();
  changed('theme');
});
matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => changed('theme'));
showTheme();

// --- connection state and notices --------------------------------------------

const CONN_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  denied: 'Not allowed',
};
onChange((s) => {
  conn.dataset.state = s;
  text(conn, CONN_TEXT[s] || s);
});

function showNotice(kind, message) {
  notice.dataset.kind = kind;
  notice.replaceChildren(
    h('p', null, message),
    h('button', { type: 'button', onclick: () => notice.replaceChildren(), 'aria-label': 'Dismiss this notice' }, 'Dismiss'),
  );
}

function expired(name) {
  showNotice(
    'expired',
    `The live ${name} could not resume where they left off (the hub no longer holds that point: the cursor expired), so they were reloaded from a fresh snapshot. Readings from the gap may be missing from the table.`,
  );
}

function denied(err) {
  showNotice('denied', explain(err));
}

// --- routing ----------------------------------------------------------------

function route() {
  if (!signedIn) return;
  const hash = decodeURIComponent(location.hash.slice(1));
  let next;
  let tab = 'devices';
  if (hash.startsWith('/device/')) next = deviceView(hash.slice('/device/'.length));
  else if (hash === '/alerts') {
    next = alertsView();
    tab = 'alerts';
  } else if (hash === '/rules') {
    next = rulesView();
    tab = 'rules';
  } else next = devicesView();
  mount(next);
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function mount(next, focus = true) {
  view?.destroy?.();
  view = next;
  main.replaceChildren(view.el);
  document.title = `${view.title} · Telltale`;
  view.mounted?.();
  view.update(new Set(['all']));
  if (focus) main.querySelector('h1')?.focus({ preventScroll: true });
}

subscribe((topics) => {
  view?.update(topics);
  if (topics.has('alerts') || topics.has('all')) {
    const n = openAlerts().filter((a) => a.state === 'firing').length;
    text(alertCount, n ? String(n) : '');
    alertCount.setAttribute('aria-label', n ? `${n} firing` : '');
  }
});
setInterval(() => changed('tick'), 1000);
addEventListener('hashchange', route);

// --- signing in ------------------------------------------------------------

function showWho() {
  if (auth.open) text(who, 'open mode');
  else text(who, `${auth.name || 'token'} · ${auth.scope}`);
  logout.hidden = auth.open;
}

function signedOut(message) {
  signedIn = false;
  live.stop();
  nav.hidden = true;
  conn.hidden = true;
  who.replaceChildren();
  logout.hidden = true;
  mount(
    loginView(message, async (token) => {
      if (!token) return 'Enter a token.';
      setToken(token);
      try {
        await enter();
        return null;
      } catch (e) {
        setToken(null);
        if (e instanceof HttpError && e.status === 401) return 'That token was not accepted.';
        return explain(e);
      }
    }),
    false,
  );
}

/** Asks who we are, then starts the live parts and shows the view. */
async function enter() {
  const w = await whoami();
  auth.scope = w.scope;
  auth.open = !!w.open;
  auth.name = w.token?.name || null;
  signedIn = true;
  nav.hidden = false;
  conn.hidden = false;
  showWho();
  live.start({ expired, denied });
  route();
}

onUnauthorized(() => {
  if (!signedIn) return;
  setToken(null);
  signedOut('Your token is no longer accepted (revoked, or the hub changed). Sign in again.');
});
live.socket.onUnauthorized = () => {
  setToken(null);
  signedOut('Your token is no longer accepted. Sign in again.');
};

logout.addEventListener('click', () => {
  setToken(null);
  signedOut('Signed out.');
});

async function boot(attempt = 0) {
  try {
    await enter();
  } catch (e) {
    if (e instanceof HttpError && e.status === 401) {
      setToken(null);
      signedOut(auth.token ? 'Your token was not accepted. Sign in again.' : '');
      return;
    }
    // The hub is not there (yet): say so and try again.
    conn.dataset.state = 'reconnecting';
    text(conn, CONN_TEXT.reconnecting);
    main.replaceChildren(h('p', { class: 'muted' }, `Cannot reach the hub (${explain(e)}); trying again…`));
    setTimeout(() => boot(attempt + 1), Math.min(5000, 500 * 2 ** attempt));
  }
}

// For the browser test and the curious.
window.telltale = { feeds: live.feedsInfo };

boot();
