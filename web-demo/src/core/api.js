// The app REST API: JSON with the session's bearer token; errors become
// ApiError {status, code, message} (the node answers `{error, message}`).
import { createStore } from './store.js';

const KEY = 'nodo.session';

function load() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || 'null');
    return s && s.token && s.user ? s : null;
  } catch {
    return null;
  }
}

/** `{token, user}` of the signed-in user, or null. */
export const session = createStore({ current: load() });

export function setSession(s) {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
  session.set({ current: s });
}

export const me = () => session.get().current?.user || null;
export const token = () => session.get().current?.token || null;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || '';
  }
}

/**
 * `api('/api/chats')`, `api('/api/chats', {method: 'POST', body: {...}})`.
 * `form` sends FormData (multipart); `raw` sends a Blob as is.
 * `onProgress(fraction)` uses XHR so uploads report progress.
 */
export async function api(path, { method, body, form, raw, onProgress, signal } = {}) {
  const headers = {};
  const t = token();
  if (t) headers.authorization = `Bearer ${t}`;
  let payload;
  if (form) payload = form;
  else if (raw) {
    payload = raw;
    headers['content-type'] = raw.type || 'application/octet-stream';
  } else if (body !== undefined) {
    payload = JSON.stringify(body);
    headers['content-type'] = 'application/json';
  }
  method = method || (payload ? 'POST' : 'GET');
  let status;
  let text;
  if (onProgress && payload) {
    ({ status, text } = await xhr(method, path, headers, payload, onProgress, signal));
  } else {
    let res;
    try {
      res = await fetch(path, { method, headers, body: payload, signal });
    } catch (e) {
      if (e.name === 'AbortError') throw e;
      throw new ApiError(0, 'network', 'network');
    }
    status = res.status;
    text = await res.text();
  }
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (status < 200 || status >= 300) {
    if (status === 401 && t && path !== '/api/auth/login') onUnauthorized();
    throw new ApiError(status, data?.error, data?.message);
  }
  return data;
}

function xhr(method, path, headers, payload, onProgress, signal) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open(method, path);
    for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
    x.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded / e.total);
    x.onload = () => resolve({ status: x.status, text: x.responseText });
    x.onerror = () => reject(new ApiError(0, 'network', 'network'));
    x.onabort = () => reject(new DOMException('aborted', 'AbortError'));
    signal?.addEventListener('abort', () => x.abort());
    x.send(payload);
  });
}

let unauthorizedHandler = () => setSession(null);
/** What to do when the node says the session is over (default: sign out). */
export function onUnauthorizedDo(f) {
  unauthorizedHandler = f;
}
function onUnauthorized() {
  unauthorizedHandler();
}

const blobCache = new Map();
/**
 * An object URL for a file the API serves only with the bearer token
 * (attachments); kept for the page's life. Public URLs (avatars) come back as is.
 */
export async function authedUrl(path) {
  if (!path || !path.startsWith('/api/attachments/')) return path;
  if (!blobCache.has(path)) {
    blobCache.set(
      path,
      (async () => {
        const res = await fetch(path, { headers: { authorization: `Bearer ${token()}` } });
        if (!res.ok) throw new ApiError(res.status, 'fetch', `HTTP ${res.status}`);
        return URL.createObjectURL(await res.blob());
      })().catch((e) => {
        blobCache.delete(path);
        throw e;
      }),
    );
  }
  return blobCache.get(path);
}

/** A fresh client-side id for messages (idempotent sends). */
export const newId = () =>
  crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
