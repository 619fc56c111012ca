// Helpers for the chat tests: accounts over REST, sockets with socket.io-client.
import { io } from 'socket.io-client';

export async function api(node, method, path, { token, body, form } = {}) {
  const headers = {};
  if (token) headers.authorization = `Bearer ${token}`;
  let payload;
  if (form) payload = form;
  else if (body !== undefined) {
    headers['content-type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(node.httpUrl + path, { method, headers, body: payload });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

let counter = 0;
export async function register(node, prefix) {
  const username = `${prefix}${Date.now().toString(36)}${counter++}`;
  const r = await api(node, 'POST', '/api/auth/register', {
    body: { username, name: `${prefix} name`, password: 'correct horse battery' },
  });
  if (r.status !== 201) throw new Error(`register ${username}: ${r.status} ${r.text}`);
  return { id: r.body.user.id, token: r.body.token, user: r.body.user };
}

// A connected socket with an event log; `next(event, pred)` awaits an event.
// It confirms each receiveMessage (the ack callback), as a client must for the
// message to count as delivered; `opts.confirm === false` makes one that never
// does. `opts.on` adds handlers before it connects.
export async function connect(node, user, opts = {}) {
  const s = io(node.httpUrl, {
    auth: user.token ? { token: user.token } : {},
    transports: opts.transports || ['websocket'],
    query: opts.query || {},
    reconnection: false,
    forceNew: true,
  });
  s.log = [];
  s.onAny((event, ...args) => {
    s.log.push([event, args[0]]);
    const cb = args[args.length - 1];
    if (event === 'receiveMessage' && opts.confirm !== false && typeof cb === 'function') cb({ ok: true });
  });
  for (const [event, handler] of Object.entries(opts.on || {})) s.on(event, handler);
  await new Promise((resolve, reject) => {
    s.once('connect', resolve);
    s.once('connect_error', (e) => reject(e));
  });
  return s;
}

export function connectError(node, auth, query = {}) {
  const s = io(node.httpUrl, { auth, query, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once('connect', () => { s.close(); reject(new Error('connected, expected a refusal')); });
    s.once('connect_error', (e) => { s.close(); resolve(e.message); });
  });
}

export function next(s, event, pred = () => true, timeout = 5000) {
  const seen = s.log.find(([e, d]) => e === event && pred(d));
  if (seen) return Promise.resolve(seen[1]);
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { s.off(event, h); reject(new Error(`no ${event} within ${timeout} ms`)); }, timeout);
    const h = (d) => { if (pred(d)) { clearTimeout(t); s.off(event, h); resolve(d); } };
    s.on(event, h);
  });
}

export function ack(s, event, data, timeout = 5000) {
  return s.timeout(timeout).emitWithAck(event, data);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
