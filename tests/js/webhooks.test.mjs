// Webhooks validated by livekit-server-sdk's WebhookReceiver: a full room
// life, a tampered body, and deliveries that wait for a receiver that is down,
// across a node restart.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { AccessToken, RoomServiceClient, WebhookReceiver } from 'livekit-server-sdk';
import { startNode } from './harness.mjs';
import { joinRoom } from './pyclient.mjs';
import { sleep } from './chatlib.mjs';

const receiver = new WebhookReceiver('devkey', 'secret');

async function startReceiver(port = 0) {
  const got = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', async () => {
      try {
        const ev = await receiver.receive(body, req.headers.authorization);
        got.push({ ev, body, auth: req.headers.authorization, type: req.headers['content-type'] });
        res.writeHead(200); res.end();
      } catch (e) {
        res.writeHead(401); res.end(String(e));
      }
    });
  });
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  return { got, port: server.address().port, close: () => new Promise((r) => server.close(r)) };
}

async function until(pred, what, timeout = 20000) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) { if (pred()) return; await sleep(50); }
  throw new Error(`timed out waiting for ${what}`);
}

test('a full room life arrives signed, in order', async () => {
  const rec = await startReceiver();
  const node = await startNode(['--webhook-url', `http://127.0.0.1:${rec.port}/hook`], { NODO_ROOM__DEPARTURE_TIMEOUT: '1' });
  try {
    const t = new AccessToken('devkey', 'secret', { identity: 'hooked-user' });
    t.addGrant({ roomJoin: true, room: 'hooked' });
    const p = joinRoom(node.url, await t.toJwt(), { seconds: 4, publish: true });
    await p.exited;
    await until(() => rec.got.some((g) => g.ev.event === 'room_finished'), 'room_finished');
    const names = rec.got.map((g) => g.ev.event);
    assert.deepEqual(names, ['room_started', 'participant_joined', 'track_published', 'track_unpublished', 'participant_left', 'room_finished']);
    for (const g of rec.got) {
      assert.equal(g.type, 'application/webhook+json');
      assert.equal(g.ev.room.name, 'hooked');
      assert.ok(g.ev.id.startsWith('EV_'));
    }
    assert.equal(rec.got[1].ev.participant.identity, 'hooked-user');
    assert.equal(rec.got[2].ev.track.type, 0 /* AUDIO */);
    // A tampered body fails validation against the same signature.
    const first = rec.got[0];
    await assert.rejects(receiver.receive(first.body.replace('hooked', 'hacked'), first.auth));
    await assert.rejects(receiver.receive(first.body, undefined));
  } finally {
    await node.stop();
    await rec.close();
  }
});

test('deliveries wait for a receiver that is down, across a restart', async () => {
  // A port with nobody listening.
  const probe = await startReceiver();
  const port = probe.port;
  await probe.close();
  let node = await startNode(['--webhook-url', `http://127.0.0.1:${port}/hook`]);
  const dataDir = node.dataDir;
  const svc = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
  await svc.createRoom({ name: 'queued-room' });
  await svc.deleteRoom('queued-room');
  await sleep(500);
  await node.stop();

  const rec = await startReceiver(port);
  node = await startNode(['--webhook-url', `http://127.0.0.1:${port}/hook`], {}, dataDir);
  try {
    await until(() => rec.got.filter((g) => g.ev.room?.name === 'queued-room').length >= 2, 'queued events after the restart', 40000);
    const names = rec.got.filter((g) => g.ev.room?.name === 'queued-room').map((g) => g.ev.event);
    assert.deepEqual(names, ['room_started', 'room_finished']);
  } finally {
    await node.stop();
    await rec.close();
  }
});

test('app events go through the same signed queue when enabled', async () => {
  const { register, connect, ack } = await import('./chatlib.mjs');
  const rec = await startReceiver();
  const node = await startNode(['--webhook-url', `http://127.0.0.1:${rec.port}/hook`], { NODO_WEBHOOK__APP_EVENTS: 'true' });
  try {
    const alice = await register(node, 'alice');
    const bob = await register(node, 'bob');
    const a = await connect(node, alice);
    const sent = await ack(a, 'sendMessage', { recipientChatPath: bob.id, content: 'hooked message' });
    await until(() => rec.got.some((g) => g.ev.event === 'message_sent'), 'message_sent');
    const names = rec.got.map((g) => g.ev.event);
    assert.deepEqual(names.filter((n) => n === 'user_registered').length, 2);
    const msg = JSON.parse(rec.got.find((g) => g.ev.event === 'message_sent').body);
    assert.equal(msg.data.message.id, sent.id);
    assert.equal(msg.data.message.content, 'hooked message');
    a.close();
  } finally {
    await node.stop();
    await rec.close();
  }
});
