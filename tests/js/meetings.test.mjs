// Meetings: create, join with per-room tokens, moderators, start with limits
// and metadata, live status from the SFU, end disconnects everyone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode } from './harness.mjs';
import { joinRoom } from './pyclient.mjs';
import { api, register, connect, next, sleep } from './chatlib.mjs';

let node;
before(async () => { node = await startNode(); });
after(async () => { await node?.stop(); });

const grantOf = (jwt) => JSON.parse(Buffer.from(jwt.split('.')[1], 'base64url').toString()).video;


test('meeting lifecycle with moderators and members', async () => {
  const [alice, bob, carol] = await Promise.all(['alice', 'bob', 'carol'].map((p) => register(node, p)));
  const sb = await connect(node, bob);
  const created = await api(node, 'POST', '/rooms', { token: alice.token, body: { name: 'Standup', maxParticipants: 5, metadata: 'agenda:1', members: [bob.id] } });
  assert.equal(created.status, 201, created.text);
  const room = created.body;
  assert.equal(room.moderatorId, alice.id);
  assert.deepEqual([...room.participants].sort(), [alice.id, bob.id].sort());
  assert.equal((await next(sb, 'room.created')).data.id, room.id);

  // Tokens: members only, one room, roomAdmin for moderators.
  assert.equal((await api(node, 'POST', `/rooms/${room.id}/join`, { token: carol.token })).status, 403);
  const bj = await api(node, 'POST', `/rooms/${room.id}/join`, { token: bob.token });
  assert.equal(bj.status, 200, bj.text);
  assert.equal(grantOf(bj.body.token).room, room.roomName);
  assert.ok(!grantOf(bj.body.token).roomAdmin);
  const aj = await api(node, 'POST', `/api/rooms/${room.id}/join`, { token: alice.token });
  assert.equal(grantOf(aj.body.token).roomAdmin, true);
  const viaToken = await api(node, 'POST', '/livekit/token', { token: carol.token, body: { roomName: room.roomName } });
  assert.equal(viaToken.status, 403);

  // Only moderators start and end.
  assert.equal((await api(node, 'POST', `/api/rooms/${room.id}/start`, { token: bob.token })).status, 403);
  assert.equal((await api(node, 'POST', `/api/rooms/${room.id}/start`, { token: alice.token })).status, 200);
  let st = await api(node, 'GET', `/api/rooms/${room.id}/status`, { token: bob.token });
  assert.deepEqual([st.body.isActive, st.body.participantCount], [true, 0]);
  assert.equal((await api(node, 'GET', `/api/rooms/${room.id}/status`, { token: carol.token })).status, 403);

  const pb = joinRoom(bj.body.url, bj.body.token);
  const joined = await pb.waitFor('joined');
  assert.ok(joined.includes('metadata=agenda:1'), joined);
  st = await api(node, 'GET', `/api/rooms/${room.id}/status`, { token: bob.token });
  assert.equal(st.body.participantCount, 1);
  // The member's list of meetings, with live state; one meeting by id; none for outsiders.
  const mine = await api(node, 'GET', '/api/rooms', { token: bob.token });
  const listed = mine.body.rooms.find((r) => r.id === room.id);
  assert.deepEqual([listed.name, listed.isActive, listed.participantCount], ['Standup', true, 1]);
  assert.equal((await api(node, 'GET', '/api/rooms', { token: carol.token })).body.rooms.some((r) => r.id === room.id), false);
  assert.equal((await api(node, 'GET', `/api/rooms/${room.id}`, { token: bob.token })).body.room.name, 'Standup');
  assert.equal((await api(node, 'GET', `/api/rooms/${room.id}`, { token: carol.token })).status, 403);
  assert.equal((await api(node, 'GET', '/api/rooms/MT_nope', { token: bob.token })).status, 404);

  // A member who is not a moderator cannot end it.
  assert.equal((await api(node, 'POST', `/api/rooms/${room.id}/end`, { token: bob.token })).status, 403);
  st = await api(node, 'GET', `/api/rooms/${room.id}/status`, { token: bob.token });
  assert.equal(st.body.participantCount, 1);

  // Promote bob; he may end the meeting; everyone is disconnected.
  assert.equal((await api(node, 'POST', `/api/rooms/${room.id}/moderators`, { token: bob.token, body: { userId: carol.id } })).status, 403);
  const promoted = await api(node, 'POST', `/api/rooms/${room.id}/moderators`, { token: alice.token, body: { userId: bob.id } });
  assert.ok(promoted.body.moderators.includes(bob.id));
  await sleep(1100);
  const endedEvent = next(sb, 'room.ended');
  const ended = await api(node, 'POST', `/api/rooms/${room.id}/end`, { token: bob.token });
  assert.equal(ended.status, 200, ended.text);
  // Members hear it, also those not inside.
  const ev = await endedEvent;
  assert.equal(ev.data.id, room.id);
  assert.ok(ev.data.endedAt);
  assert.ok(ended.body.duration >= 1);
  await pb.waitFor('disconnected');
  st = await api(node, 'GET', `/api/rooms/${room.id}/status`, { token: bob.token });
  assert.equal(st.body.isActive, false);
  assert.equal((await api(node, 'POST', `/rooms/${room.id}/join`, { token: bob.token })).status, 409);
  sb.close();
});

test('open rooms admit anyone; bad input is refused', async () => {
  const [alice, dave] = await Promise.all(['alice', 'dave'].map((p) => register(node, p)));
  const open = await api(node, 'POST', '/api/rooms', { token: alice.token, body: { name: 'Town hall', open: true } });
  const dj = await api(node, 'POST', `/rooms/${open.body.id}/join`, { token: dave.token });
  assert.equal(dj.status, 200, dj.text);
  assert.equal((await api(node, 'POST', '/api/livekit/get-token', { token: dave.token, body: { roomName: open.body.roomName, identity: dave.id } })).status, 200);
  assert.equal((await api(node, 'POST', '/rooms', { token: alice.token, body: { name: '' } })).status, 400);
  assert.equal((await api(node, 'POST', '/rooms', { token: alice.token, body: { name: 'x', members: ['ghost-user'] } })).status, 404);
  assert.equal((await api(node, 'POST', '/rooms/MT_nope/join', { token: alice.token })).status, 404);
  assert.equal((await api(node, 'POST', '/rooms', { body: { name: 'anon' } })).status, 401);
});
