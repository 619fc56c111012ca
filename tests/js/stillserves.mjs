// `stillServes(node)`: the check every hostile test ends with. After whatever a
// hostile client did, a normal user must still be served: a chat message round
// trip between two accounts (socket.io-client) and a LiveKit join with the
// Python SDK that the room service then lists (livekit-server-sdk).
//
// The two accounts are registered once per node and reused, so that repeated
// checks don't run into the node's registration limits.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { RoomServiceClient } from 'livekit-server-sdk';
import { register, connect, next, ack } from './chatlib.mjs';
import { token } from './harness.mjs';
import { joinRoom } from './pyclient.mjs';

const accounts = new WeakMap();

async function accountsFor(node) {
  if (!accounts.has(node)) accounts.set(node, [await register(node, 'okA'), await register(node, 'okB')]);
  return accounts.get(node);
}

export async function chatRoundTrip(node) {
  const [alice, bob] = await accountsFor(node);
  const a = await connect(node, alice);
  const b = await connect(node, bob);
  try {
    const id = `ok-${randomUUID()}`;
    const sent = await ack(a, 'sendMessage', { id, recipientChatPath: bob.id, content: 'still there?' }, 10000);
    assert.equal(sent.ok, true, `a normal message was refused: ${JSON.stringify(sent)}`);
    const got = await next(b, 'receiveMessage', (m) => m.id === id, 10000);
    assert.equal(got.content, 'still there?');
  } finally {
    a.close();
    b.close();
  }
}

export async function livekitJoin(node) {
  const room = `ok-${randomUUID().slice(0, 8)}`;
  const p = joinRoom(node.url, await token('ok-py', room), { seconds: 20 });
  try {
    await p.waitFor('joined');
    const svc = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
    const people = await svc.listParticipants(room);
    assert.deepEqual(people.map((x) => x.identity), ['ok-py']);
  } finally {
    p.kill();
    await p.exited;
  }
}

export async function stillServes(node) {
  await chatRoundTrip(node);
  await livekitJoin(node);
}
