// The chat socket (socket.io-client). One connection per signed-in tab;
// features register their event handlers with `on()` and emit with `ask()`.
import { io } from 'socket.io-client';
import { createStore } from './store.js';

/** `state`: 'idle' | 'connecting' | 'online' | 'reconnecting' | 'refused'; `reason` when refused. */
export const connection = createStore({ state: 'idle', reason: '' });

let socket = null;
const handlers = new Map(); // event -> Set(handler)

/** Subscribes to a server event for the page's life; returns an unsubscribe function. */
export function on(event, handler) {
  if (!handlers.has(event)) {
    handlers.set(event, new Set());
    if (socket) socket.on(event, (...a) => dispatch(event, a));
  }
  handlers.get(event).add(handler);
  return () => handlers.get(event)?.delete(handler);
}

function dispatch(event, args) {
  for (const h of handlers.get(event) || []) {
    try {
      h(...args);
    } catch (e) {
      console.error(`handler of ${event}`, e);
    }
  }
}

export function connect(token) {
  disconnect();
  connection.set({ state: 'connecting', reason: '' });
  socket = io({ auth: { token }, transports: ['websocket', 'polling'] });
  for (const event of handlers.keys()) socket.on(event, (...a) => dispatch(event, a));
  socket.on('connect', () => {
    connection.set({ state: 'online', reason: '' });
    dispatch('connect', []);
  });
  socket.on('disconnect', (reason) => {
    // 'io server disconnect': the server closed it (a full queue, an ended
    // session); socket.io does not retry that by itself.
    connection.set({ state: 'reconnecting', reason });
    if (reason === 'io server disconnect') setTimeout(() => socket?.connect(), 1000);
  });
  socket.on('connect_error', (err) => {
    const msg = String(err?.message || '');
    if (/auth|token|session|unauth/i.test(msg)) {
      connection.set({ state: 'refused', reason: msg });
      dispatch('refused', [msg]);
    } else {
      connection.set({ state: 'reconnecting', reason: msg });
    }
  });
}

export function disconnect() {
  if (socket) {
    socket.removeAllListeners();
    socket.disconnect();
    socket = null;
  }
  connection.set({ state: 'idle', reason: '' });
}

/**
 * Emits `event` and resolves with the server's ack (`{ok: false, error, code}`
 * on refusal). Rejects with Error('timeout') when no ack comes in `ms`.
 */
export function ask(event, payload, ms = 10000) {
  return new Promise((resolve, reject) => {
    if (!socket) return reject(new Error('offline'));
    socket.timeout(ms).emit(event, payload, (err, ack) => (err ? reject(new Error('timeout')) : resolve(ack)));
  });
}

/** Emits without waiting for an answer (typing). */
export function tell(event, payload) {
  socket?.emit(event, payload);
}

export const socketId = () => socket?.id || null;
