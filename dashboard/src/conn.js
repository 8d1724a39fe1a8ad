// The connection state the header shows: every live part (a stream per
// collection, the WebSocket) reports its own; the page shows the worst.

const parts = new Map();
let listener = () => {};

/** 'connecting' | 'live' | 'reconnecting' | 'denied' | 'stopped' */
export function report(part, state) {
  if (parts.get(part) === state) return;
  parts.set(part, state);
  listener(overall());
}

export function forget(part) {
  parts.delete(part);
  listener(overall());
}

export function onChange(f) {
  listener = f;
}

export function overall() {
  const states = [...parts.values()].filter((s) => s !== 'stopped');
  if (states.length === 0) return 'connecting';
  if (states.includes('reconnecting')) return 'reconnecting';
  if (states.includes('connecting')) return 'connecting';
  if (states.includes('denied')) return 'denied';
  return 'live';
}
