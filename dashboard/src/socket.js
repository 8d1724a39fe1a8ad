// The WebSocket (/v1/ws) for commands, acknowledgements and the watches
// that go with them. Requests are answered by id; watches are sent again
// after a reconnect from the last resourceVersion they saw.

import { auth, HttpError } from './api.js';
import { report } from './conn.js';

const PART = 'socket';
const MAX_BACKOFF = 4000;

export class Socket {
  constructor() {
    this.ws = null;
    this.ready = false;
    this.nextId = 1;
    /** id → {resolve, reject, onEvent} of requests in flight */
    this.pending = new Map();
    /** id of the message → handler of its events (watches, commands) */
    this.handlers = new Map();
    /** open watches, sent again after a reconnect */
    this.watches = new Set();
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.readyListeners = new Set();
    this.onUnauthorized = () => {};
  }

  start() {
    this.stopped = false;
    report(PART, 'connecting');
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.ws = null;
    this.ready = false;
    for (const p of this.pending.values()) p.reject(new Error('signed out'));
    this.pending.clear();
    this.handlers.clear();
    report(PART, 'stopped');
  }

  connect() {
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    const ws = new WebSocket(`${scheme}://${location.host}/v1/ws`);
    this.ws = ws;
    ws.onopen = () => {
      if (auth.token) ws.send(JSON.stringify({ type: 'auth', token: auth.token }));
      else this.opened();
    };
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      this.message(msg);
    };
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.lost();
    };
  }

  message(msg) {
    if (msg.type === 'auth_ok') return this.opened();
    if (!this.ready && msg.type === 'result' && msg.success === false) {
      // The token was refused at the door.
      if (msg.error?.status === 401) {
        this.stop();
        this.onUnauthorized(new HttpError(401, msg.error));
      }
      return;
    }
    if (msg.type === 'result') {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.success) p.resolve(msg);
      else p.reject(new HttpError(msg.error?.status || 400, msg.error));
      return;
    }
    if (msg.type === 'event') this.handlers.get(msg.id)?.(msg.event);
  }

  opened() {
    this.ready = true;
    this.attempt = 0;
    report(PART, 'live');
    for (const w of this.watches) this.sendWatch(w);
    for (const f of this.readyListeners) f();
  }

  lost() {
    this.ready = false;
    for (const p of this.pending.values()) p.reject(new Error('the connection to the hub was lost'));
    this.pending.clear();
    this.handlers.clear();
    if (this.stopped) return;
    report(PART, 'reconnecting');
    const base = Math.min(MAX_BACKOFF, 200 * 2 ** this.attempt);
    const delay = this.attempt === 0 ? 50 : base * (0.75 + Math.random() / 2);
    this.attempt++;
    this.timer = setTimeout(() => this.connect(), delay);
  }

  /** Calls `f` each time the socket is (again) ready. */
  onReady(f) {
    this.readyListeners.add(f);
    return () => this.readyListeners.delete(f);
  }

  /** Sends a message; resolves with its result, or rejects (HttpError). */
  request(msg, onEvent) {
    if (!this.ready || !this.ws) {
      return Promise.reject(new Error('not connected to the hub; try again when the page is live'));
    }
    const id = this.nextId++;
    if (onEvent) this.handlers.set(id, onEvent);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ ...msg, id }));
    });
  }

  /**
   * A watch over the socket. `reset()` is called when it starts afresh
   * (first time, or after its cursor expired), `event(ev)` per event.
   */
  watch(params, { reset, event, expired }) {
    const w = { params, reset, event, expired, rv: null, id: null, closed: false };
    this.watches.add(w);
    if (this.ready) this.sendWatch(w);
    return () => {
      w.closed = true;
      this.watches.delete(w);
      if (w.id !== null && this.ready) {
        this.handlers.delete(w.id);
        this.request({ type: 'unwatch', watch: w.id }).catch(() => {});
      }
    };
  }

  sendWatch(w) {
    const msg = { type: 'watch', ...w.params };
    if (w.rv) {
      msg.resourceVersion = w.rv;
      delete msg.sendInitialEvents;
    } else {
      w.reset?.();
    }
    const handler = (ev) => {
      if (w.closed) return;
      if (ev.type === 'ERROR') {
        if (ev.object?.status === 410) this.restartWatch(w);
        return;
      }
      if (ev.resourceVersion) w.rv = ev.resourceVersion;
      if (ev.type === 'BOOKMARK') {
        w.rv = ev.object?.resourceVersion || w.rv;
        return;
      }
      w.event(ev);
    };
    const p = this.request(msg, handler);
    // The id is known once request() returns.
    w.id = this.nextId - 1;
    p.catch((e) => {
      if (w.closed) return;
      if (e instanceof HttpError && e.status === 410) this.restartWatch(w);
    });
  }

  restartWatch(w) {
    if (w.id !== null) {
      this.handlers.delete(w.id);
      this.request({ type: 'unwatch', watch: w.id }).catch(() => {});
    }
    w.rv = null;
    w.expired?.();
    if (this.ready) this.sendWatch(w);
  }
}
