// What the page knows, kept live by the feeds: devices, the newest value
// of each metric, the readings of the last hour (for sparklines, plots and
// the readings table) and alerts. Views subscribe to topics; changes are
// delivered at most once per animation frame.

/** How far back the readings feed reaches, ms. */
export const HOUR = 3600 * 1000;
/** Readings kept per device for the readings table, newest last. */
export const RECENT = 200;

export const model = {
  /** id → Device */
  devices: new Map(),
  /** "device\u0000metric" → Latest */
  latest: new Map(),
  /** id → Alert */
  alerts: new Map(),
  /** "device\u0000metric" → {t: number[], v: (number|null)[], seq: number[]} by time */
  series: new Map(),
  /** device → Reading[] in arrival (seq) order, at most RECENT */
  recent: new Map(),
  /** which snapshots have arrived */
  loaded: { devices: false, latest: false, readings: false, alerts: false },
};

export const key = (device, metric) => `${device}\u0000${metric}`;

// --- change notification ---------------------------------------------

const subscribers = new Set();
const dirty = new Set();
let scheduled = false;

export function subscribe(f) {
  subscribers.add(f);
  return () => subscribers.delete(f);
}

export function changed(topic) {
  dirty.add(topic);
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(flush);
}

function flush() {
  scheduled = false;
  const topics = new Set(dirty);
  dirty.clear();
  for (const f of [...subscribers]) f(topics);
}

// --- devices and latest ------------------------------------------------

export function resetDevices(items) {
  model.devices.clear();
  for (const d of items) model.devices.set(d.id, d);
  model.loaded.devices = true;
  changed('devices');
}

export function putDevice(d) {
  model.devices.set(d.id, d);
  changed('devices');
}

export function resetLatest(items) {
  model.latest.clear();
  for (const l of items) model.latest.set(key(l.device, l.metric), l);
  model.loaded.latest = true;
  changed('latest');
}

export function putLatest(l) {
  model.latest.set(key(l.device, l.metric), l);
  changed('latest');
}

/** The device's metrics with their newest values, by name. */
export function latestOf(device) {
  const out = [];
  for (const l of model.latest.values()) if (l.device === device) out.push(l);
  return out.sort((a, b) => (a.metric < b.metric ? -1 : 1));
}

/**
 * When the hub last heard from the device, ms: its lastSeen, or the time
 * of a newer reading (devices events carry lastSeen at most every 10 s).
 */
export function lastSeen(device) {
  const d = model.devices.get(device);
  let t = d?.lastSeen ? Date.parse(d.lastSeen) : 0;
  const recent = model.recent.get(device);
  const r = recent?.[recent.length - 1];
  if (r) t = Math.max(t, Date.parse(r.time));
  return t || null;
}

// --- readings ------------------------------------------------------------

/** A reading value as a number for plots (booleans as 0/1), or null. */
export function numeric(v) {
  if (typeof v === 'number') return v;
  if (typeof v === 'boolean') return v ? 1 : 0;
  return null;
}

export function resetReadings(items) {
  model.series.clear();
  model.recent.clear();
  for (const r of items) addReading(r, false);
  model.loaded.readings = true;
  changed('readings');
}

/**
 * Adds a reading. One the page already holds under another seq (same
 * device, metric and time: a batch its agent sent again after the hub lost
 * it before its commit) replaces the old one.
 */
export function addReading(r, notify = true) {
  const t = Date.parse(r.time);
  let recent = model.recent.get(r.device);
  if (!recent) model.recent.set(r.device, (recent = []));
  const dup = recent.findIndex((x) => x.metric === r.metric && x.time === r.time);
  if (dup >= 0) recent.splice(dup, 1);
  recent.push(r);
  if (recent.length > RECENT) recent.splice(0, recent.length - RECENT);

  const k = key(r.device, r.metric);
  let s = model.series.get(k);
  if (!s) model.series.set(k, (s = { t: [], v: [], seq: [] }));
  const v = numeric(r.value);
  const n = s.t.length;
  if (n === 0 || t > s.t[n - 1]) {
    s.t.push(t);
    s.v.push(v);
    s.seq.push(r.seq);
  } else {
    // Late (an agent's outbox after an outage) or the same time again.
    let i = n;
    while (i > 0 && s.t[i - 1] > t) i--;
    if (i > 0 && s.t[i - 1] === t) {
      s.v[i - 1] = v;
      s.seq[i - 1] = r.seq;
    } else {
      s.t.splice(i, 0, t);
      s.v.splice(i, 0, v);
      s.seq.splice(i, 0, r.seq);
    }
  }
  if (notify) changed('readings');
}

/** Drops points older than an hour (and a minute), from every series. */
export function prune(now = Date.now()) {
  const cut = now - HOUR - 60_000;
  for (const s of model.series.values()) {
    let i = 0;
    while (i < s.t.length && s.t[i] < cut) i++;
    if (i > 0) {
      s.t.splice(0, i);
      s.v.splice(0, i);
      s.seq.splice(0, i);
    }
  }
}

// --- alerts -------------------------------------------------------------

export function resetAlerts(items) {
  model.alerts.clear();
  for (const a of items) model.alerts.set(a.id, a);
  model.loaded.alerts = true;
  changed('alerts');
}

export function putAlert(a) {
  model.alerts.set(a.id, a);
  changed('alerts');
}

export const SEVERITIES = ['critical', 'major', 'minor', 'warning', 'info'];
const STATE_ORDER = { firing: 0, pending: 1, resolved: 2 };

/** Open alerts: firing before pending, then by severity, newest first. */
export function openAlerts(device) {
  return [...model.alerts.values()]
    .filter((a) => a.state !== 'resolved' && (!device || a.device === device))
    .sort(
      (a, b) =>
        STATE_ORDER[a.state] - STATE_ORDER[b.state] ||
        SEVERITIES.indexOf(a.severity) - SEVERITIES.indexOf(b.severity) ||
        b.id - a.id,
    );
}

/** Resolved alerts, newest first. */
export function alertHistory(device, max = 100) {
  return [...model.alerts.values()]
    .filter((a) => a.state === 'resolved' && (!device || a.device === device))
    .sort((a, b) => b.id - a.id)
    .slice(0, max);
}
