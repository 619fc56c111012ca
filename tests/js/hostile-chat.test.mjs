// Hostile chat, call and meeting clients (issue 10, items 3, 5 and 7): floods
// of every write are throttled per user (`rate_limited` acks with retryAfter,
// 429 with Retry-After over REST), caps are refused with a clear error, what
// the server relays comes from its store (senderProfile, callerInfo), content
// types come from an allow-list, every field has a size limit on both
// transports, an ended meeting hands out no token and its room is not
// re-created by an old token, an accepted call nobody joins ends, and ringing
// the same person is limited. After each case a normal user is still served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RoomServiceClient } from 'livekit-server-sdk';
import { startNode } from './harness.mjs';
import { joinRoom } from './pyclient.mjs';
import { api, register, connect, next, ack, sleep } from './chatlib.mjs';
import { stillServes } from './stillserves.mjs';

let node;
before(async () => {
  node = await startNode([], {
    NODO_CALLS__CONNECT_TIMEOUT_SECS: '2',
    NODO_CHAT__MAX_GROUP_MEMBERS: '4',
    NODO_CHAT__MAX_REACTION_EMOJIS: '12',
    NODO_CHAT__ATTACHMENT_BYTES_PER_DAY: '4000',
  });
});
after(async () => { await node?.stop(); });

// `n` acks of `event` sent at once.
const flood = (s, event, n, data) => Promise.all(Array.from({ length: n }, (_, i) => ack(s, event, data(i), 10000)));

function assertThrottled(acks, what) {
  const limited = acks.filter((a) => a.code === 'rate_limited');
  assert.ok(limited.length > 0, `${what}: nothing was rate limited: ${JSON.stringify(acks.slice(-2))}`);
  for (const a of limited) {
    assert.equal(a.ok, false);
    assert.ok(a.retryAfter >= 1 && a.retryAfterMs >= 1, JSON.stringify(a));
    assert.match(a.error, /rate limit/);
  }
}

function assert429(responses, what) {
  const limited = responses.filter((r) => r.status === 429);
  assert.ok(limited.length > 0, `${what}: no 429 in ${responses.map((r) => r.status)}`);
  for (const r of limited) {
    assert.equal(r.body.error, 'rate_limited');
    assert.ok(Number(r.headers.get('retry-after')) >= 1, `${what}: Retry-After ${r.headers.get('retry-after')}`);
  }
}

test('every chat write is throttled per user over the socket; other users are not', async () => {
  const [a, b] = [await register(node, 'floodA'), await register(node, 'floodB')];
  const [sa, sb] = [await connect(node, a), await connect(node, b)];
  const first = await ack(sa, 'sendMessage', { recipientChatPath: b.id, content: 'hi' });
  assert.equal(first.ok, true, JSON.stringify(first));
  const chatId = first.chatId;

  assertThrottled(await flood(sa, 'sendMessage', 40, (i) => ({ chatId, content: `m${i}` })), 'sendMessage');
  // Meanwhile the other person sends as usual.
  const other = await ack(sb, 'sendMessage', { chatId, content: 'unaffected' });
  assert.equal(other.ok, true, JSON.stringify(other));

  assertThrottled(await flood(sa, 'markAsRead', 40, () => ({ chatId })), 'markAsRead');
  assertThrottled(await flood(sa, 'typing', 20, (i) => ({ chatId, isTyping: i % 2 === 0 })), 'typing');
  assertThrottled(await flood(sa, 'addReaction', 40, () => ({ messageId: other.id, emoji: '👍' })), 'addReaction');
  assertThrottled(await flood(sa, 'removeReaction', 40, () => ({ messageId: other.id, emoji: '👍' })), 'removeReaction');
  assertThrottled(await flood(sa, 'editMessage', 30, (i) => ({ messageId: first.id, content: `edit ${i}` })), 'editMessage');
  // The other person's budget is their own.
  assert.equal((await ack(sb, 'markAsRead', { chatId })).ok, true);
  assert.equal((await ack(sb, 'addReaction', { messageId: first.id, emoji: '🎉' })).ok, true);
  // Refusals end: after the wait, the flooder is served again.
  await sleep(1200);
  assert.equal((await ack(sa, 'sendMessage', { chatId, content: 'later' })).ok, true);
  sa.close(); sb.close();
  await stillServes(node);
});

test('a client that keeps flooding past its refusals is disconnected', async () => {
  const [a, b] = [await register(node, 'kickA'), await register(node, 'kickB')];
  const sa = await connect(node, a);
  const first = await ack(sa, 'sendMessage', { recipientChatPath: b.id, content: 'hi' });
  const gone = new Promise((r) => sa.once('disconnect', r));
  // chat.refusal_rate allows a burst of 200 refusals; 400 events at once go past it.
  for (let i = 0; i < 400; i++) sa.emit('markAsRead', { chatId: first.chatId });
  const reason = await Promise.race([gone, sleep(10000).then(() => 'still connected')]);
  assert.equal(reason, 'io server disconnect');
  await stillServes(node);
});

test('REST writes are throttled with 429 and Retry-After', async () => {
  const [c, d] = [await register(node, 'restC'), await register(node, 'restD')];
  const g = await api(node, 'POST', '/api/chats', { token: c.token, body: { type: 'group', name: 'g', participants: [d.id] } });
  assert.equal(g.status, 201, g.text);
  const chatId = g.body.chat.id;
  const many = (n, f) => Promise.all(Array.from({ length: n }, (_, i) => f(i)));
  assert429(await many(40, (i) => api(node, 'POST', `/api/chats/${chatId}/messages`, { token: c.token, body: { content: `r${i}` } })), 'messages');
  assert429(await many(40, () => api(node, 'POST', `/api/chats/${chatId}/read`, { token: c.token })), 'read');
  assert429(await many(15, (i) => api(node, 'POST', '/api/chats', { token: c.token, body: { type: 'group', name: `g${i}`, participants: [d.id] } })), 'chat creation');
  assert429(await many(15, () => api(node, 'POST', `/api/chats/${chatId}/members`, { token: d.token, body: { userIds: [c.id] } })), 'member adds');
  const rooms = await many(15, (i) => api(node, 'POST', '/api/rooms', { token: c.token, body: { name: `m${i}` } }));
  assert429(rooms, 'meeting creation');
  const mt = rooms.find((r) => r.status === 201).body;
  assert429(await many(15, () => api(node, 'POST', `/rooms/${mt.id}/join`, { token: c.token })), 'meeting joins');
  assert429(await many(15, () => api(node, 'POST', '/livekit/token', { token: d.token, body: { roomName: mt.roomName } })), 'room tokens');
  await stillServes(node);
});

test('caps: group size, reactions per message, attachment bytes per day', async () => {
  const users = [];
  for (let i = 0; i < 5; i++) users.push(await register(node, `cap${i}`));
  const [owner, ...rest] = users;
  // max_group_members is 4 here: the creator and four others are five.
  const big = await api(node, 'POST', '/api/chats', { token: owner.token, body: { type: 'group', name: 'big', participants: rest.map((u) => u.id) } });
  assert.equal(big.status, 413, big.text);
  assert.match(big.body.message, /at most 4 members/);
  const g = await api(node, 'POST', '/api/chats', { token: owner.token, body: { type: 'group', name: 'ok', participants: rest.slice(0, 3).map((u) => u.id) } });
  assert.equal(g.status, 201, g.text);
  const add = await api(node, 'POST', `/api/chats/${g.body.chat.id}/members`, { token: owner.token, body: { userIds: [rest[3].id] } });
  assert.equal(add.status, 413, add.text);
  assert.match(add.body.message, /at most 4 members/);

  // Reactions: 10 per person on a message, 12 different emoji here.
  const so = await connect(node, owner);
  const s1 = await connect(node, rest[0]);
  const m = await ack(so, 'sendMessage', { chatId: g.body.chat.id, content: 'react to me' });
  const emoji = Array.from({ length: 14 }, (_, i) => String.fromCodePoint(0x1f600 + i));
  for (let i = 0; i < 10; i++) {
    const r = await ack(so, 'addReaction', { messageId: m.id, emoji: emoji[i] });
    assert.equal(r.ok, true, JSON.stringify(r));
  }
  const eleventh = await ack(so, 'addReaction', { messageId: m.id, emoji: emoji[10] });
  assert.equal(eleventh.code, 'conflict', JSON.stringify(eleventh));
  assert.match(eleventh.error, /at most 10 reactions per person/);
  assert.equal((await ack(s1, 'addReaction', { messageId: m.id, emoji: emoji[10] })).ok, true);
  assert.equal((await ack(s1, 'addReaction', { messageId: m.id, emoji: emoji[11] })).ok, true);
  const thirteenth = await ack(s1, 'addReaction', { messageId: m.id, emoji: emoji[12] });
  assert.equal(thirteenth.code, 'conflict', JSON.stringify(thirteenth));
  assert.match(thirteenth.error, /at most 12 different emoji/);
  // An emoji already there can still be added by someone else.
  assert.equal((await ack(s1, 'addReaction', { messageId: m.id, emoji: emoji[0] })).ok, true);

  // Attachments: 4000 bytes a day here.
  const upload = (bytes) => {
    const form = new FormData();
    form.append('file', new Blob([Buffer.alloc(bytes, 0x61)]), 'a.txt');
    return api(node, 'POST', `/api/chats/${g.body.chat.id}/messages`, { token: owner.token, form });
  };
  assert.equal((await upload(3000)).status, 201);
  const over = await upload(2000);
  assert.equal(over.status, 413, over.text);
  assert.match(over.body.message, /per day/);
  so.close(); s1.close();
  await stillServes(node);
});

test('senderProfile and callerInfo come from the store, not the payload', async () => {
  const [a, b] = [await register(node, 'spoofA'), await register(node, 'spoofB')];
  const [sa, sb] = [await connect(node, a), await connect(node, b)];
  const sent = await ack(sa, 'sendMessage', {
    recipientChatPath: b.id, content: 'trust me',
    senderProfile: { id: 'admin', name: 'Administrator', avatar: 'https://evil.example/a.png' },
  });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const got = await next(sb, 'receiveMessage', (x) => x.id === sent.id);
  assert.deepEqual(got.senderProfile, { id: a.id, name: a.user.name, avatar: a.user.avatar ?? '' });

  const c = await ack(sa, 'initiateCall', { recipientId: b.id, callType: 'audio', callerInfo: { id: 'bank', name: 'Your Bank' } });
  assert.equal(c.ok, true, JSON.stringify(c));
  const inc = await next(sb, 'incomingCall', (x) => x.callId === c.call.id);
  assert.equal(inc.callerInfo.name, a.user.name);
  assert.equal(inc.callerInfo.id, a.id);
  await api(node, 'POST', `/api/calls/${c.call.id}/cancel`, { token: a.token });
  const r = await api(node, 'POST', '/api/calls/initiate', { token: a.token, body: { recipientId: b.id, callerInfo: { name: 'Your Bank' } } });
  assert.equal(r.status, 200, r.text);
  const inc2 = await next(sb, 'incomingCall', (x) => x.callId === r.body.call.id);
  assert.equal(inc2.callerInfo.name, a.user.name);
  await api(node, 'POST', `/api/calls/${r.body.call.id}/cancel`, { token: a.token });
  sa.close(); sb.close();
  await stillServes(node);
});

test('contentType allow-list and field sizes, over the socket and REST', async () => {
  const [a, b] = [await register(node, 'fieldA'), await register(node, 'fieldB')];
  const sa = await connect(node, a);
  const first = await ack(sa, 'sendMessage', { recipientChatPath: b.id, content: 'x' });
  const chatId = first.chatId;
  for (const contentType of ['text/html', 'application/javascript', 'image/svg+xml;x=<script>', 'x'.repeat(300)]) {
    const r = await ack(sa, 'sendMessage', { chatId, content: 'x', contentType });
    assert.equal(r.code, 'bad_request', `${contentType}: ${JSON.stringify(r)}`);
    assert.match(r.error, /contentType/);
  }
  for (const contentType of ['text', 'text/markdown', 'image/png', 'audio/ogg', 'application/pdf']) {
    const r = await ack(sa, 'sendMessage', { chatId, content: 'x', contentType });
    assert.equal(r.ok, true, `${contentType}: ${JSON.stringify(r)}`);
  }
  const long = 'i'.repeat(200);
  assert.equal((await ack(sa, 'sendMessage', { chatId, content: 'x', id: long })).code, 'bad_request');
  const rt = await ack(sa, 'sendMessage', { chatId, content: 'x', replyTo: long });
  assert.equal(rt.code, 'bad_request', JSON.stringify(rt));
  assert.match(rt.error, /replyTo/);
  assert.equal((await ack(sa, 'addReaction', { messageId: long, emoji: '👍' })).code, 'bad_request');
  assert.equal((await ack(sa, 'editMessage', { messageId: long, content: 'y' })).code, 'bad_request');
  // The same limits over REST.
  const post = (body) => api(node, 'POST', `/api/chats/${chatId}/messages`, { token: a.token, body });
  assert.equal((await post({ content: 'x', id: long })).status, 400);
  const rr = await post({ content: 'x', replyTo: long });
  assert.equal(rr.status, 400, rr.text);
  assert.match(rr.body.message, /replyTo/);
  const bigName = await api(node, 'POST', '/api/chats', { token: a.token, body: { type: 'group', name: 'n'.repeat(101), participants: [b.id] } });
  assert.equal(bigName.status, 400, bigName.text);
  assert.equal((await api(node, 'POST', '/api/rooms', { token: a.token, body: { name: 't'.repeat(101) } })).status, 400);
  const meta = await api(node, 'POST', '/api/rooms', { token: a.token, body: { name: 'meta', metadata: 'm'.repeat(65 * 1024) } });
  assert.equal(meta.status, 413, meta.text);
  sa.close();
  await stillServes(node);
});

test('an ended meeting hands out no token and an old token cannot re-create its room', async () => {
  const [mod, guest] = [await register(node, 'mod'), await register(node, 'guest')];
  const m = await api(node, 'POST', '/api/rooms', { token: mod.token, body: { name: 'standup', members: [guest.id] } });
  assert.equal(m.status, 201, m.text);
  const room = m.body;
  const early = await api(node, 'POST', `/rooms/${room.id}/join`, { token: guest.token });
  assert.equal(early.status, 200, early.text);
  assert.equal((await api(node, 'POST', `/api/rooms/${room.id}/start`, { token: mod.token })).status, 200);
  const end = await api(node, 'POST', `/api/rooms/${room.id}/end`, { token: mod.token });
  assert.equal(end.status, 200, end.text);

  assert.equal((await api(node, 'POST', `/rooms/${room.id}/join`, { token: guest.token })).status, 409);
  const byName = await api(node, 'POST', '/livekit/token', { token: guest.token, body: { roomName: room.roomName } });
  assert.equal(byName.status, 409, byName.text);
  assert.match(byName.body.message, /ended/);
  assert.equal((await api(node, 'POST', `/api/rooms/${room.id}/start`, { token: mod.token })).status, 409);
  // The token minted before the end does not bring the room back.
  const p = joinRoom(early.body.url, early.body.token, { seconds: 5 });
  await p.exited;
  assert.ok(!p.lines.some((l) => l.startsWith('joined')), p.lines.join(' | '));
  const svc = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
  assert.ok(!(await svc.listRooms()).some((r) => r.name === room.roomName));
  await stillServes(node);
});

test("a meeting's limits hold from its creation, before any start", async () => {
  const [mod, x, y] = [await register(node, 'lmod'), await register(node, 'lx'), await register(node, 'ly')];
  const m = await api(node, 'POST', '/api/rooms', { token: mod.token, body: { name: 'small', maxParticipants: 1, members: [x.id, y.id] } });
  assert.equal(m.status, 201, m.text);
  const tx = await api(node, 'POST', `/rooms/${m.body.id}/join`, { token: x.token });
  const ty = await api(node, 'POST', `/rooms/${m.body.id}/join`, { token: y.token });
  const px = joinRoom(tx.body.url, tx.body.token, { seconds: 20 });
  await px.waitFor('joined');
  const py = joinRoom(ty.body.url, ty.body.token, { seconds: 5 });
  await py.exited;
  assert.ok(!py.lines.some((l) => l.startsWith('joined')), py.lines.join(' | '));
  const svc = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
  const info = (await svc.listRooms([m.body.roomName]))[0];
  assert.equal(info.maxParticipants, 1);
  px.kill(); await px.exited;
  await stillServes(node);
});

test('an accepted call nobody joins ends; ringing the same person is limited', async () => {
  const [a, b] = [await register(node, 'ringA'), await register(node, 'ringB')];
  const [sa, sb] = [await connect(node, a), await connect(node, b)];
  const c = await ack(sa, 'initiateCall', { recipientId: b.id, callType: 'video' });
  assert.equal(c.ok, true, JSON.stringify(c));
  const acc = await ack(sb, 'acceptCall', { callId: c.call.id });
  assert.equal(acc.ok, true, JSON.stringify(acc));
  // connect_timeout_secs is 2 here; nobody joins the media room.
  const ended = await next(sa, 'call.ended', (x) => x.data.id === c.call.id, 8000);
  assert.equal(ended.data.status, 'ended');
  assert.equal(ended.data.endReason, 'not_connected');
  await next(sb, 'call.ended', (x) => x.data.id === c.call.id);
  // Nobody is busy: b can call a at once.
  const back = await api(node, 'POST', '/calls', { token: b.token, body: { toUserId: a.id } });
  assert.equal(back.body.call.status, 'ringing', back.text);
  await api(node, 'POST', `/api/calls/${back.body.call.id}/cancel`, { token: b.token });

  // Three calls a minute from a to b (the first was one of them).
  for (let i = 0; i < 2; i++) {
    const r = await api(node, 'POST', '/calls', { token: a.token, body: { toUserId: b.id } });
    assert.equal(r.status, 200, r.text);
    await api(node, 'POST', `/api/calls/${r.body.call.id}/cancel`, { token: a.token });
  }
  const spam = await api(node, 'POST', '/calls', { token: a.token, body: { toUserId: b.id } });
  assert.equal(spam.status, 429, spam.text);
  assert.ok(Number(spam.headers.get('retry-after')) >= 10);
  const spamSocket = await ack(sa, 'initiateCall', { recipientId: b.id });
  assert.equal(spamSocket.code, 'rate_limited', JSON.stringify(spamSocket));
  // Someone else may still call b.
  const other = await register(node, 'ringC');
  const oc = await api(node, 'POST', '/calls', { token: other.token, body: { toUserId: b.id } });
  assert.equal(oc.body.call.status, 'ringing', oc.text);
  await api(node, 'POST', `/api/calls/${oc.body.call.id}/cancel`, { token: other.token });
  sa.close(); sb.close();
  await stillServes(node);
});

test('calls a killed node left ringing or accepted keep nobody busy after a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nodo-calls-'));
  let n = await startNode([], {}, dir);
  try {
    const [a, b, c] = [await register(n, 'rsA'), await register(n, 'rsB'), await register(n, 'rsC')];
    const accepted = await api(n, 'POST', '/calls', { token: a.token, body: { toUserId: b.id } });
    assert.equal((await api(n, 'POST', `/api/calls/${accepted.body.call.id}/accept`, { token: b.token })).status, 200);
    const ringing = await api(n, 'POST', '/calls', { token: c.token, body: { toUserId: a.id } });
    assert.equal(ringing.body.call.status, 'busy');
    const ringing2 = await api(n, 'POST', '/calls', { token: c.token, body: { toUserId: (await register(n, 'rsD')).id } });
    assert.equal(ringing2.body.call.status, 'ringing');
    await n.kill();
    n = await startNode([], {}, dir);
    let calls = [];
    for (let i = 0; i < 50; i++) {
      calls = (await api(n, 'GET', '/api/calls', { token: c.token })).body.calls;
      if (calls.every((x) => !['ringing', 'accepted', 'connected'].includes(x.status))) break;
      await sleep(100);
    }
    const byId = (id) => calls.find((x) => x.id === id);
    assert.equal(byId(ringing2.body.call.id).status, 'missed');
    assert.equal(byId(ringing2.body.call.id).endReason, 'node_restarted');
    const hist = (await api(n, 'GET', '/api/calls', { token: a.token })).body.calls;
    assert.equal(hist.find((x) => x.id === accepted.body.call.id).status, 'ended');
    // Nobody is busy: c reaches a now.
    const again = await api(n, 'POST', '/calls', { token: c.token, body: { toUserId: a.id } });
    assert.equal(again.body.call.status, 'ringing', again.text);
    await stillServes(n);
  } finally {
    await n.stop();
  }
});
