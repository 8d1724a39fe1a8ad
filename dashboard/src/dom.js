// Small DOM helpers: element builder, keyed lists that keep their elements
// (and so the keyboard focus) across updates, and formatting.

export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  add(el, children);
  return el;
}

function add(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
}

/** Replaces the element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  add(el, children);
  return el;
}

/** Sets text only when it changed (no needless layout). */
export function text(el, s) {
  s = String(s);
  if (el.textContent !== s) el.textContent = s;
}

/**
 * Makes `parent`'s children the items, in order, reusing each item's
 * element by key: create(item) makes one, update(el, item) refreshes it.
 */
export function keyed(parent, items, keyOf, create, update) {
  const old = new Map();
  for (const el of parent.children) old.set(el.dataset.key, el);
  let at = parent.firstElementChild;
  for (const item of items) {
    const k = String(keyOf(item));
    let el = old.get(k);
    if (el) old.delete(k);
    else {
      el = create(item);
      el.dataset.key = k;
    }
    // In place first: update() may measure the element.
    if (el !== at) parent.insertBefore(el, at);
    else at = at.nextElementSibling;
    update(el, item);
  }
  for (const el of old.values()) el.remove();
}

// --- formatting ------------------------------------------------------------

const UNITS = { Cel: '°C', '%RH': '% RH', '/': '', K: 'K', Pa: 'Pa', hPa: 'hPa', V: 'V', A: 'A', W: 'W', lx: 'lx' };
const num = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });

export function unit(u) {
  if (!u) return '';
  return UNITS[u] ?? u;
}

export function value(v, u) {
  let s;
  if (typeof v === 'number') s = num.format(v);
  else if (typeof v === 'boolean') s = v ? 'true' : 'false';
  else if (v === null || v === undefined) s = '–';
  else s = String(v);
  const uu = unit(u);
  return uu ? `${s} ${uu}` : s;
}

export function ago(ms, now = Date.now()) {
  if (!ms) return 'never';
  const s = Math.round((now - ms) / 1000);
  if (s < 2) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(ms).toLocaleString();
}

export function clock(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const ms = String(d.getMilliseconds()).padStart(3, '0');
  return `${d.toLocaleTimeString(undefined, { hour12: false })}.${ms}`;
}

export function when(iso) {
  if (!iso) return '–';
  return new Date(iso).toLocaleString(undefined, { hour12: false });
}

// --- sparkline ---------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';
const W = 120;
const H = 28;

/** An SVG sparkline (empty until drawn). */
export function sparkline() {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('class', 'spark');
  svg.setAttribute('role', 'img');
  svg.setAttribute('preserveAspectRatio', 'none');
  const path = document.createElementNS(SVG, 'path');
  path.setAttribute('vector-effect', 'non-scaling-stroke');
  svg.append(path);
  return svg;
}

/**
 * Draws the series' last `span` ms into the sparkline, averaged into at
 * most W buckets; labels it for screen readers.
 */
export function drawSpark(svg, series, span, now, label) {
  const path = svg.firstChild;
  const from = now - span;
  if (!series || series.t.length === 0) {
    path.setAttribute('d', '');
    svg.setAttribute('aria-label', `${label}: no readings in the last hour`);
    return;
  }
  const sums = new Float64Array(W);
  const counts = new Uint32Array(W);
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = series.t.length - 1; i >= 0; i--) {
    const t = series.t[i];
    if (t < from) break;
    const v = series.v[i];
    if (v === null) continue;
    const b = Math.min(W - 1, Math.floor(((t - from) / span) * W));
    sums[b] += v;
    counts[b]++;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  if (lo === Infinity) {
    path.setAttribute('d', '');
    svg.setAttribute('aria-label', `${label}: no readings in the last hour`);
    return;
  }
  const range = hi - lo || 1;
  let d = '';
  let pen = 'M';
  for (let b = 0; b < W; b++) {
    if (!counts[b]) continue;
    const y = H - 2 - ((sums[b] / counts[b] - lo) / range) * (H - 4);
    d += `${pen}${b} ${y.toFixed(1)}`;
    pen = 'L';
  }
  // A lone point is drawn as a dot (round caps on a zero-length line).
  if (d.indexOf('L') < 0) d += `L${d.slice(1)}`;
  path.setAttribute('d', d);
  svg.setAttribute('aria-label', `${label} over the last hour, from ${num.format(lo)} to ${num.format(hi)}`);
}
