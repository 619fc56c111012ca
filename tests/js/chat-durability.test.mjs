// Durability across SIGKILL, the polling transport, CORS, and the call relay events.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startNode } from './harness.mjs';
import { api, register, connect, next, ack, sleep } from './chatlib.mjs';

test('every acknowledged message survives SIGKILL, none twice', async () => {
  let node = await startNode([], { NODO_CHAT__RATE_PER_SEC: '100000', NODO_CHAT__RATE_BURST: '100000' });
  const dataDir = node.dataDir;
  const alice = await register(node, 'alice');
  const bob = await register(node, 'bob');
  const a = await connect(node, alice);
  const acked = [];
  let chatId;
  // A burst of concurrent sends; kill the node while later ones are in flight.
  const sends = Array.from({ length: 300 }, (_, i) =>
    ack(a, 'sendMessage', { id: `burst-${i}-${alice.id}`, recipientChatPath: bob.id, content: `burst ${i}` }, 10000)
      .then((r) => { if (r.ok) { acked.push(r.id); chatId = r.chatId; } })
      .catch(() => { /* killed before the ack */ }));
  for (let i = 0; i < 500 && acked.length < 100; i++) await sleep(5);
  await node.kill();
  await Promise.allSettled(sends);
  a.close();
  assert.ok(acked.length > 0, 'no message was acknowledged before the kill');

  node = await startNode([], {}, dataDir);
  try {
    const ids = [];
    let cursor = '';
    for (;;) {
      const r = await api(node, 'GET', `/api/chats/${chatId}/messages?limit=200${cursor ? `&before=${cursor}` : ''}`, { token: bob.token });
      assert.equal(r.status, 200, r.text);
      ids.push(...r.body.messages.map((m) => m.id));
      cursor = r.body.nextCursor;
      if (!cursor) break;
    }
    const stored = new Set(ids);
    assert.equal(stored.size, ids.length, 'a message is stored twice');
    for (const id of acked) assert.ok(stored.has(id), `acknowledged ${id} is missing after the restart`);
    console.log(`# ${acked.length} acknowledged before SIGKILL, ${ids.length} stored after restart`);
    // Bob was offline for all of it: he gets every stored message on connect, in stored order.
    const b = await connect(node, bob);
    const oldestFirst = [...ids].reverse();
    await next(b, 'receiveMessage', (m) => m.id === oldestFirst[oldestFirst.length - 1], 10000);
    const got = b.log.filter(([e]) => e === 'receiveMessage').map(([, m]) => m.id);
    assert.deepEqual(got, oldestFirst);
    b.close();
  } finally {
    await node.stop();
  }
});

test('polling transport, CORS, and a call ringing over polling', async () => {
  const node = await startNode([], {}, undefined);
  try {
    const alice = await register(node, 'alice');
    const bob = await register(node, 'bob');
    const eve = await register(node, 'eve');
    const a = await connect(node, alice, { transports: ['polling'] });
    const b = await connect(node, bob);
    const e = await connect(node, eve);
    const m = await ack(a, 'sendMessage', { recipientChatPath: bob.id, content: 'over polling' });
    assert.equal(m.ok, true);
    await next(b, 'receiveMessage', (x) => x.id === m.id);

    // Calls over the polling socket: the ring reaches only the callee.
    const call = await ack(a, 'initiateCall', { recipientId: bob.id, callerId: alice.id, callerInfo: { name: 'Alice' } });
    assert.equal(call.ok, true, JSON.stringify(call));
    const inc = await next(b, 'incomingCall');
    assert.equal(inc.callerId, alice.id);
    // Who calls comes from the caller's stored profile, not the payload's callerInfo.
    assert.deepEqual(inc.callerInfo, { id: alice.id, name: alice.user.name, avatar: alice.user.avatar ?? '' });
    assert.equal(inc.roomName, call.call.roomName);
    const spoof = await ack(e, 'initiateCall', { recipientId: bob.id, callerId: alice.id });
    assert.equal(spoof.ok, false);
    await sleep(200);
    assert.ok(!e.log.some(([ev]) => ['incomingCall', 'callAccepted', 'callRejected'].includes(ev)));
    assert.equal(b.log.filter(([ev]) => ev === 'incomingCall').length, 1);

    // CORS: dev mode answers any origin for the API; /rtc/validate always.
    const pre = await fetch(`${node.httpUrl}/api/chats`, { method: 'OPTIONS', headers: { origin: 'http://app.test', 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
    assert.equal(pre.headers.get('access-control-allow-origin'), 'http://app.test');
    for (const s of [a, b, e]) s.close();
  } finally {
    await node.stop();
  }
  // Without dev-mode defaults, only configured origins get CORS on the chat API.
  const strict = await startNode([], { NODO_CHAT__CORS_ORIGINS: 'http://allowed.test' });
  try {
    const ask = (origin, path) => fetch(`${strict.httpUrl}${path}`, { method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'GET' } });
    assert.equal((await ask('http://allowed.test', '/api/chats')).headers.get('access-control-allow-origin'), 'http://allowed.test');
    assert.equal((await ask('http://evil.test', '/api/chats')).headers.get('access-control-allow-origin'), null);
    assert.equal((await ask('http://evil.test', '/rtc/validate')).headers.get('access-control-allow-origin'), 'http://evil.test');
  } finally {
    await strict.stop();
  }
});
