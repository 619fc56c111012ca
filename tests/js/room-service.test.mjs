// Twirp RoomService with livekit-server-sdk (JSON) while a Python SDK client
// (tests/e2e/join_room.py) is connected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { RoomServiceClient, AccessToken } from 'livekit-server-sdk';
import { startNode } from './harness.mjs';
import { joinRoom } from './pyclient.mjs';

let node;
before(async () => { node = await startNode(); });
after(async () => { await node?.stop(); });

test('rooms and participants over JSON with livekit-server-sdk', async () => {
  const svc = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
  const room = await svc.createRoom({ name: 'json-room', metadata: 'hello', emptyTimeout: 120 });
  assert.equal(room.name, 'json-room');
  assert.ok(room.sid.startsWith('RM_'));
  assert.deepEqual((await svc.listRooms()).map((r) => r.name), ['json-room']);
  assert.deepEqual((await svc.listRooms(['nope'])).length, 0);

  const t = new AccessToken('devkey', 'secret', { identity: 'py-client' });
  t.addGrant({ roomJoin: true, room: 'json-room' });
  const p = joinRoom(node.url, await t.toJwt());
  assert.match(await p.waitFor('joined'), /joined json-room metadata=hello/);

  const parts = await svc.listParticipants('json-room');
  assert.deepEqual(parts.map((x) => x.identity), ['py-client']);
  const updated = await svc.updateParticipant('json-room', 'py-client', { metadata: 'from-json' });
  assert.equal(updated.metadata, 'from-json');
  assert.equal((await svc.getParticipant('json-room', 'py-client')).metadata, 'from-json');
  const roomUpd = await svc.updateRoomMetadata('json-room', 'meta-2');
  assert.equal(roomUpd.metadata, 'meta-2');
  await svc.sendData('json-room', new TextEncoder().encode('ping'), 0, { destinationIdentities: ['py-client'] });

  await svc.removeParticipant('json-room', 'py-client');
  await p.waitFor('disconnected');
  await assert.rejects(svc.getParticipant('json-room', 'py-client'), /not in the room|not_found/);

  await svc.deleteRoom('json-room');
  assert.deepEqual(await svc.listRooms(), []);
  await assert.rejects(svc.deleteRoom('json-room'), /does not exist|not_found/);
  p.kill();
});

test('calls without the right grant are refused', async () => {
  const wrong = new RoomServiceClient(node.httpUrl, 'devkey', 'not-the-secret');
  await assert.rejects(wrong.listRooms(), (e) => /unauthenticated|signature/.test(String(e.message) + String(e.code)));
  const unknownKey = new RoomServiceClient(node.httpUrl, 'nokey', 'secret');
  await assert.rejects(unknownKey.createRoom({ name: 'x' }), /unauthenticated|API key/);
});
