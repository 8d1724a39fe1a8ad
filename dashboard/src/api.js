// The hub's HTTP API as the page uses it: the token (session storage),
// whoami, JSON requests, and problem+json errors.

const KEY = 'telltale.token';

/** Who the page is: the token (or null in open mode) and its scope. */
export const auth = {
  token: readToken(),
  /** 'read' | 'control' | 'admin' */
  scope: 'read',
  /** The hub runs without tokens (loopback only). */
  open: false,
  /** The token's name, for "acknowledged by". */
  name: null,
};

function readToken() {
  try {
    return sessionStorage.getItem(KEY);
  } catch {
    return null;
  }
}

export function setToken(token) {
  auth.token = token;
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage refused (private mode): the token lives until the page closes.
  }
}

const RANK = { read: 0, control: 1, admin: 2 };

/** Whether the token's scope includes `scope`. */
export function can(scope) {
  return (RANK[auth.scope] ?? -1) >= RANK[scope];
}

/** An answer that was not 2xx, with its problem body when there is one. */
export class HttpError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `the hub answered ${status}`);
    this.status = status;
    this.problem = problem || null;
  }
  get code() {
    return this.problem?.code || null;
  }
}

/** Called on any 401: the token is gone or was never good. */
let unauthorized = () => {};
export function onUnauthorized(f) {
  unauthorized = f;
}

export function authHeaders() {
  return auth.token ? { Authorization: `Bearer ${auth.token}` } : {};
}

/** A URL on the hub with query parameters (null and undefined left out). */
export function url(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== null && v !== undefined && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

async function failure(res) {
  let problem = null;
  try {
    problem = await res.json();
  } catch {
    // Not JSON: the status says enough.
  }
  const err = new HttpError(res.status, problem);
  if (res.status === 401) unauthorized(err);
  return err;
}

/** A request that answers JSON (or nothing, for 204). */
export async function request(method, path, { query, body, headers, signal } = {}) {
  const init = {
    method,
    headers: { Accept: 'application/json', ...authHeaders(), ...headers },
    signal,
    cache: 'no-store',
  };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(url(path, query), init);
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return null;
  return res.json();
}

export const get = (path, query, signal) => request('GET', path, { query, signal });

/** A list with every page (`continue`), at most `maxPages` of them. */
export async function list(path, query, maxPages = 20) {
  const first = await get(path, query);
  const items = first.items;
  let next = first.continue;
  for (let page = 1; next && page < maxPages; page++) {
    const more = await get(path, { ...query, continue: next });
    items.push(...more.items);
    next = more.continue;
  }
  return { resourceVersion: first.resourceVersion, items, truncated: !!next };
}

/**
 * Asks the hub who the token is. A hub without the route (404) has no
 * tokens: open mode, everything allowed.
 */
export async function whoami() {
  const res = await fetch('/v1/whoami', {
    headers: { Accept: 'application/json', ...authHeaders() },
    cache: 'no-store',
  });
  if (res.status === 404) return { scope: 'admin', token: null, open: true };
  if (!res.ok) {
    let problem = null;
    try {
      problem = await res.json();
    } catch {
      // the status says enough
    }
    throw new HttpError(res.status, problem);
  }
  return res.json();
}

/** What to say about an error, for a person. */
export function explain(err) {
  if (err instanceof HttpError) {
    if (err.status === 403) {
      return `Your token's scope (${auth.scope}) does not allow this.`;
    }
    if (err.status === 401) return 'Your token was not accepted. Sign in again.';
    const field = err.problem?.field || err.problem?.param;
    return field ? `${err.message} (${field})` : err.message;
  }
  if (err?.name === 'TypeError') return 'The hub cannot be reached.';
  return String(err?.message || err);
}
