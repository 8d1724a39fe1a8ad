// One collection kept live: a snapshot (every page), then an EventSource
// watching from the snapshot's resourceVersion. After a drop it resumes from
// the last resourceVersion it saw (events and bookmarks), so nothing is
// missed or repeated; only when the hub says the cursor expired (410) does
// it load a new snapshot, and it says so.

import { auth, get, HttpError, list, url } from './api.js';
import { report } from './conn.js';

/** Seconds between the hub's heartbeat bookmarks on an idle stream. */
const HEARTBEAT = 10;
/** Longest wait between two attempts to reconnect, ms. */
const MAX_BACKOFF = 4000;

export class Feed {
  /**
   * @param {string} name  the part's name in the connection state
   * @param {string} path  the collection, e.g. '/v1/devices'
   * @param {object} o
   * @param {object} [o.query]      filters for both the snapshot and the watch
   * @param {object} [o.listQuery]  for the snapshot only (since, limit)
   * @param {number} [o.maxPages]   most snapshot pages to read
   * @param {(items: object[], expired: boolean) => void} o.reset
   * @param {(type: string, object: object) => void} o.event
   * @param {(name: string) => void} [o.expired]  the cursor expired: reloaded
   * @param {(err: Error) => void} [o.denied]  the token may not read this
   */
  constructor(name, path, o) {
    this.name = name;
    this.path = path;
    this.o = o;
    this.rv = null;
    this.es = null;
    this.timer = null;
    this.attempt = 0;
    this.stopped = true;
    this.loads = 0;
  }

  start() {
    this.stopped = false;
    report(this.name, 'connecting');
    this.load(false);
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.es) this.es.close();
    this.es = null;
    report(this.name, 'stopped');
  }

  async load(expired) {
    const q = { ...this.o.query, ...this.o.listQuery };
    try {
      const l = await list(this.path, q, this.o.maxPages ?? 20);
      if (this.stopped) return;
      this.loads++;
      this.rv = l.resourceVersion;
      this.o.reset(l.items, expired);
      this.open();
    } catch (e) {
      this.failed(e);
    }
  }

  open() {
    if (this.stopped) return;
    const es = new EventSource(
      url(this.path, {
        ...this.o.query,
        watch: 'true',
        resourceVersion: this.rv,
        heartbeatSeconds: HEARTBEAT,
        access_token: auth.token,
      }),
    );
    this.es = es;
    let opened = false;
    es.onopen = () => {
      opened = true;
      this.attempt = 0;
      report(this.name, 'live');
    };
    const item = (e) => {
      const ev = JSON.parse(e.data);
      this.rv = ev.resourceVersion;
      this.o.event(ev.type, ev.object);
    };
    es.addEventListener('added', item);
    es.addEventListener('modified', item);
    es.addEventListener('deleted', item);
    es.addEventListener('bookmark', (e) => {
      const ev = JSON.parse(e.data);
      this.rv = ev.resourceVersion || ev.object?.resourceVersion || this.rv;
    });
    // Both the hub's ERROR event (with data) and the connection's failure.
    es.addEventListener('error', (e) => {
      if (this.es !== es) return;
      es.close();
      this.es = null;
      if (e.data) {
        const problem = JSON.parse(e.data).object || {};
        if (problem.status === 410) return this.reload();
        return this.retry(true);
      }
      // A stream that never opened was refused: ask why before retrying.
      this.retry(!opened);
    });
  }

  retry(probe) {
    if (this.stopped) return;
    report(this.name, 'reconnecting');
    const base = Math.min(MAX_BACKOFF, 200 * 2 ** this.attempt);
    const delay = this.attempt === 0 ? 50 : base * (0.75 + Math.random() / 2);
    this.attempt++;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      if (this.rv === null) this.load(false);
      else if (probe) this.probe();
      else this.open();
    }, delay);
  }

  /** A one-item read from the cursor: a 410 means it expired. */
  async probe() {
    try {
      await get(this.path, { ...this.o.query, resourceVersion: this.rv, limit: 1 });
      this.open();
    } catch (e) {
      this.failed(e);
    }
  }

  failed(e) {
    if (this.stopped) return;
    if (e instanceof HttpError) {
      if (e.status === 410 || e.code === 'bad_resource_version') return this.reload();
      if (e.status === 401) return this.stop();
      if (e.status === 403) {
        report(this.name, 'denied');
        this.o.denied?.(e);
        return;
      }
    }
    // The hub is unreachable, restarting, or busy (5xx, 429): again later.
    this.retry(true);
  }

  /** The cursor expired: a new snapshot, and the page says so. */
  reload() {
    this.rv = null;
    this.o.expired?.(this.name);
    report(this.name, 'reconnecting');
    this.load(true);
  }
}
