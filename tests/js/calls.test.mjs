// Calls: REST and socket flows with socket.io-client; media joins with the
// Python LiveKit SDK (tests/e2e/join_room.py) using the tokens handed out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode } from './harness.mjs';
import { joinRoom } from './pyclient.mjs';
import { api, register, connect, next, ack, sleep } from './chatlib.mjs';

let node;
before(async () => { node = await startNode([], { NODO_CALLS__RING_TIMEOUT_SECS: '2' }); });
after(async () => { await node?.stop(); });


async function pair() {
  const a = await register(node, 'caller');
  const b = await register(node, 'callee');
  return [a, b, await connect(node, a), await connect(node, b)];
}

test('REST call: ring, accept, both join, connected, end closes the room', async () => {
  const [alice, bob, sa, sb] = await pair();
  const r = await api(node, 'POST', '/calls', { token: alice.token, body: { toUserId: bob.id, callType: 'video' } });
  assert.equal(r.status, 200, r.text);
  const call = r.body.call;
  assert.equal(call.status, 'ringing');
  assert.equal(call.callId, call.id);
  assert.ok(r.body.token && r.body.url.startsWith('ws://'));
  const inc = await next(sb, 'incomingCall');
  assert.equal(inc.callId, call.id);
  assert.equal(inc.callerId, alice.id);
  assert.equal(inc.roomName, call.roomName);

  const answered = next(sb, 'call.answered', (x) => x.callId === call.id);
  const acc = await api(node, 'POST', `/api/calls/${call.id}/accept`, { token: bob.token });
  await answered; // the callee's other tabs stop ringing
  assert.equal(acc.status, 200, acc.text);
  assert.equal(acc.body.call.status, 'accepted');
  await next(sa, 'callAccepted', (x) => x.callId === call.id);

  // Both join the media room with the tokens they were given.
  const pa = joinRoom(r.body.url, r.body.token);
  const pb = joinRoom(acc.body.url, acc.body.token);
  await pa.waitFor('joined');
  await pb.waitFor('joined');
  const started = await next(sa, 'call.started', (x) => x.data.id === call.id, 15000);
  assert.equal(started.data.status, 'connected');
  await next(sb, 'call.started', (x) => x.data.id === call.id);

  await sleep(1100);
  const end = await api(node, 'POST', `/calls/${call.id}/end`, { token: bob.token });
  assert.equal(end.status, 200, end.text);
  assert.equal(end.body.call.status, 'ended');
  assert.ok(end.body.call.duration >= 1);
  const ended = await next(sa, 'call.ended', (x) => x.data.id === call.id);
  assert.equal(ended.data.endReason, 'callee_hangup');
  await pa.waitFor('disconnected');
  await pb.waitFor('disconnected');

  const hist = await api(node, 'GET', '/api/calls', { token: alice.token });
  assert.equal(hist.body.calls[0].id, call.id);
  assert.equal(hist.body.calls[0].status, 'ended');
  // One call by id, to the two people in it only.
  const one = await api(node, 'GET', `/api/calls/${call.id}`, { token: bob.token });
  assert.deepEqual([one.status, one.body.call.status], [200, 'ended']);
  const [carol] = await Promise.all([register(node, 'carol')]);
  assert.equal((await api(node, 'GET', `/api/calls/${call.id}`, { token: carol.token })).status, 404);
  // An ended call hands out no more tokens.
  const late = await api(node, 'POST', '/livekit/token', { token: alice.token, body: { callId: call.id } });
  assert.equal(late.status, 403);
  sa.close(); sb.close();
});

test('socket call: reject, cancel, busy and missed reach the right end states', async () => {
  const [alice, bob, sa, sb] = await pair();
  // Over the socket, as the seed frontends do.
  const c1 = await ack(sa, 'initiateCall', { recipientId: bob.id, callerId: alice.id, callerInfo: { name: 'A' }, callType: 'audio' });
  assert.equal(c1.ok, true, JSON.stringify(c1));
  assert.ok(c1.token);
  await next(sb, 'incomingCall', (x) => x.callId === c1.call.id);
  const rj = await ack(sb, 'rejectCall', { callerId: alice.id, recipientId: bob.id });
  assert.equal(rj.call.status, 'rejected');
  assert.equal((await next(sa, 'callRejected', (x) => x.callId === c1.call.id)).recipientId, bob.id);
  assert.equal((await next(sa, 'call.ended', (x) => x.data.id === c1.call.id)).data.endReason, 'rejected');

  // Cancel by the caller.
  const c2 = await api(node, 'POST', '/api/calls/initiate', { token: alice.token, body: { recipientId: bob.id } });
  const cancel = await api(node, 'POST', `/api/calls/${c2.body.call.id}/cancel`, { token: alice.token });
  assert.equal(cancel.body.call.status, 'cancelled');
  await next(sb, 'callCancelled', (x) => x.callId === c2.body.call.id);
  // The callee cannot cancel, the caller cannot accept, nobody else can touch it.
  const c3 = await ack(sa, 'initiateCall', { recipientId: bob.id, callType: 'video' });
  assert.equal((await api(node, 'POST', `/api/calls/${c3.call.id}/cancel`, { token: bob.token })).status, 409);
  assert.equal((await api(node, 'POST', `/api/calls/${c3.call.id}/accept`, { token: alice.token })).status, 409);
  const carol = await register(node, 'carol');
  assert.equal((await api(node, 'POST', `/api/calls/${c3.call.id}/end`, { token: carol.token })).status, 403);
  assert.equal((await api(node, 'POST', '/livekit/token', { token: carol.token, body: { callId: c3.call.id } })).status, 403);
  assert.equal((await api(node, 'POST', '/api/livekit/get-token', { token: alice.token, body: { roomName: c3.call.roomName, identity: bob.id } })).status, 403);
  const own = await api(node, 'POST', '/api/livekit/get-token', { token: alice.token, body: { roomName: c3.call.roomName, identity: alice.id } });
  assert.equal(own.status, 200);

  // Busy: carol calls bob while c3 rings.
  const busy = await api(node, 'POST', '/calls', { token: carol.token, body: { toUserId: bob.id } });
  assert.equal(busy.body.call.status, 'busy');
  assert.equal(busy.body.token, undefined);

  // Missed: nobody answers c3 within the ring timeout (2 s here).
  const missed = await next(sb, 'callMissed', (x) => x.callId === c3.call.id, 6000);
  assert.equal(missed.callerId, alice.id);
  assert.equal((await next(sa, 'call.ended', (x) => x.data.id === c3.call.id)).data.status, 'missed');
  const acceptLate = await ack(sb, 'acceptCall', { callId: c3.call.id });
  assert.equal(acceptLate.ok, false);
  assert.match(acceptLate.error, /already missed/);

  // Bad input.
  assert.equal((await api(node, 'POST', '/calls', { token: alice.token, body: { toUserId: 'nobody-at-all' } })).status, 404);
  assert.equal((await api(node, 'POST', '/calls', { token: alice.token, body: { toUserId: alice.id } })).status, 400);
  assert.equal((await api(node, 'POST', '/calls', { token: alice.token, body: { toUserId: bob.id, callType: 'hologram' } })).status, 400);
  assert.equal((await api(node, 'POST', '/calls', { body: { toUserId: bob.id } })).status, 401);
  assert.equal((await ack(sa, 'initiateCall', { recipientId: bob.id, callerId: bob.id })).ok, false);
  sa.close(); sb.close();
});
