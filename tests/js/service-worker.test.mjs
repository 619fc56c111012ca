// The web demo's service worker, run against fake service-worker globals, and
// served by the node with the right headers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import { startNode } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const source = readFileSync(join(here, '..', '..', 'web-demo', 'sw.js'), 'utf8');

function load(navigator) {
  const handlers = {};
  const shown = [];
  const opened = [];
  const self = {
    addEventListener: (type, fn) => { handlers[type] = fn; },
    registration: { showNotification: async (title, options) => { shown.push({ title, options }); } },
    clients: { matchAll: async () => [], openWindow: async (url) => { opened.push(url); } },
  };
  vm.runInNewContext(source, { self, module: undefined, encodeURIComponent, ...(navigator ? { navigator } : {}) });
  return { handlers, shown, opened, self };
}

async function fire(handler, event) {
  const waits = [];
  handler({ ...event, waitUntil: (p) => waits.push(p) });
  await Promise.all(waits);
}

test('an incoming-call push shows a ringing notification; a click opens the call', async () => {
  const sw = load();
  const data = { type: 'incoming_call', callId: 'CA_1', callerId: 'alice', callerName: 'Alice', callType: 'video', roomName: 'call-CA_1' };
  await fire(sw.handlers.push, { data: { json: () => data } });
  assert.equal(sw.shown.length, 1);
  assert.equal(sw.shown[0].title, 'Incoming video call');
  assert.equal(sw.shown[0].options.body, 'Alice');
  assert.equal(sw.shown[0].options.requireInteraction, true);
  assert.deepEqual(Array.from(sw.shown[0].options.actions, (a) => a.action), ['accept', 'reject']);
  let closed = false;
  await fire(sw.handlers.notificationclick, { action: '', notification: { data: sw.shown[0].options.data, close: () => { closed = true; } } });
  assert.ok(closed);
  assert.deepEqual(sw.opened, ['/?call=CA_1']);
  await fire(sw.handlers.notificationclick, { action: 'accept', notification: { data: sw.shown[0].options.data, close() {} } });
  assert.equal(sw.opened[1], '/?call=CA_1&action=accept');
});

test('the notification speaks the browser\'s language; an open tab is told instead of reloaded', async () => {
  const sw = load({ language: 'es-ES', languages: ['es-ES', 'es'] });
  const posted = [];
  let focused = false;
  sw.self.clients.matchAll = async () => [{ url: 'http://x/', focus: async () => { focused = true; }, postMessage: (m) => posted.push(m) }];
  const data = { type: 'incoming_call', callId: 'CA_3', callerId: 'bob', callerName: 'Bob', callType: 'audio' };
  await fire(sw.handlers.push, { data: { json: () => data } });
  assert.equal(sw.shown[0].title, 'Llamada de voz entrante');
  assert.deepEqual(Array.from(sw.shown[0].options.actions, (a) => a.title), ['Aceptar', 'Rechazar']);
  await fire(sw.handlers.notificationclick, { action: 'reject', notification: { data: sw.shown[0].options.data, close() {} } });
  assert.deepEqual(JSON.parse(JSON.stringify(posted)), [{ type: 'nodo-open', url: '/?call=CA_3&action=reject' }]);
  assert.ok(focused);
  assert.deepEqual(sw.opened, []);
});

test('messages, missed calls and undecodable pushes still notify', async () => {
  const sw = load();
  await fire(sw.handlers.push, { data: { json: () => ({ type: 'message', chatId: 'CH_9', senderId: 'bob', preview: 'hi' }) } });
  await fire(sw.handlers.push, { data: { json: () => ({ type: 'missed_call', callId: 'CA_2', callerId: 'bob' }) } });
  await fire(sw.handlers.push, { data: { json: () => { throw new Error('not json'); } } });
  assert.deepEqual(sw.shown.map((s) => s.title), ['New message', 'Missed call', 'Nodo']);
  assert.equal(sw.shown[0].options.body, 'bob: hi');
  assert.equal(sw.shown[0].options.data.url, '/?chat=CH_9');
  assert.equal(sw.shown[1].options.data.url, '/#/calls');
  await fire(sw.handlers.notificationclick, { action: '', notification: { data: sw.shown[1].options.data, close() {} } });
  assert.deepEqual(sw.opened, ['/#/calls']);
});

test('the node serves the demo page and the service worker', async () => {
  // NODO_WEB_DIR: a `web-demo/build.mjs --out` directory instead of the embedded page.
  const node = await startNode([], process.env.NODO_WEB_DIR ? { NODO_SERVER__WEB_DIR: process.env.NODO_WEB_DIR } : {});
  try {
    const page = await fetch(node.httpUrl + '/');
    assert.equal(page.status, 200);
    const script = (await page.text()).match(/<script type="module" src="([^"]+)"/)?.[1];
    assert.ok(script, 'the page loads its bundle');
    assert.match(await (await fetch(node.httpUrl + script)).text(), /serviceWorker\.register\(["']\/sw\.js["']/);
    const sw = await fetch(node.httpUrl + '/sw.js');
    assert.equal(sw.status, 200);
    assert.match(sw.headers.get('content-type'), /javascript/);
    assert.equal(sw.headers.get('service-worker-allowed'), '/');
    assert.equal(await sw.text(), source);
  } finally {
    await node.stop();
  }
});
