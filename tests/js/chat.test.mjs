// The chat socket with socket.io-client (npm) and the seed frontends' event
// names, against a real `nodo serve` with a real SQLite file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startNode } from './harness.mjs';
import { api, register, connect, connectError, next, ack, sleep } from './chatlib.mjs';

let node;
before(async () => { node = await startNode([], { NODO_CHAT__TYPING_TIMEOUT_MS: '1500', NODO_CHAT__MAX_ATTACHMENT_BYTES: '262144' }); });
after(async () => { await node?.stop(); });

test('presence, messages with acks, receipts and typing stay private', async () => {
  const alice = await register(node, 'alice');
  const bob = await register(node, 'bob');
  const carol = await register(node, 'carol');
  const a = await connect(node, alice);
  const c = await connect(node, carol);
  const online = await next(a, 'online_users');
  assert.ok(online.includes(alice.id));

  const b1 = await connect(node, bob);
  assert.equal(await next(a, 'contact_online', (id) => id === bob.id), bob.id);
  const b2 = await connect(node, bob); // a second tab

  const sent = await ack(a, 'sendMessage', {
    id: 'm-1-' + alice.id, senderChatPath: alice.id, recipientChatPath: bob.id,
    content: 'hello bob', senderProfile: { name: 'Alice' },
  });
  assert.equal(sent.ok, true);
  assert.equal(sent.id, 'm-1-' + alice.id);
  assert.match(sent.createdAt, /^\d{4}-\d\d-\d\dT/);
  for (const b of [b1, b2]) {
    const got = await next(b, 'receiveMessage', (m) => m.id === sent.id);
    assert.equal(got.content, 'hello bob');
    assert.equal(got.senderChatPath, alice.id);
    assert.equal(got.recipientChatPath, bob.id);
    // The sender's stored profile, not the one the payload claims.
    assert.deepEqual(got.senderProfile, { id: alice.id, name: alice.user.name, avatar: alice.user.avatar ?? '' });
  }
  await next(a, 'messageDelivered', (d) => d.id === sent.id && d.to === bob.id);

  // Read receipt back to the sender.
  assert.equal((await ack(b1, 'markAsRead', { senderChatPath: alice.id, recipientChatPath: bob.id })).ok, true);
  const read = await next(a, 'messagesRead');
  assert.equal(read.senderChatPath, bob.id);
  assert.deepEqual(read.messageIds, [sent.id]);

  // Typing shows, then expires without a refresh.
  await ack(a, 'typing', { recipientChatPath: bob.id, isTyping: true });
  const t1 = await next(b1, 'typing', (t) => t.isTyping === true);
  assert.equal(t1.userId, alice.id);
  await next(b1, 'typing', (t) => t.isTyping === false && t.expired === true, 4000);

  // Presence counts tabs: offline only when the last socket leaves.
  b1.close();
  await sleep(300);
  assert.ok(!a.log.some(([e, d]) => e === 'contact_offline' && d === bob.id));
  b2.close();
  await next(a, 'contact_offline', (id) => id === bob.id);

  // Carol saw presence, but none of alice and bob's private events.
  for (const ev of ['receiveMessage', 'messagesRead', 'typing', 'messageDelivered']) {
    assert.ok(!c.log.some(([e]) => e === ev), `carol received ${ev}`);
  }
  a.close(); c.close();
});

test('offline delivery, idempotent resend, history and chats list', async () => {
  const alice = await register(node, 'alice');
  const bob = await register(node, 'bob');
  const a = await connect(node, alice);
  const first = await ack(a, 'sendMessage', { id: `o1-${alice.id}`, recipientChatPath: bob.id, content: 'while you were out' });
  const again = await ack(a, 'sendMessage', { id: `o1-${alice.id}`, recipientChatPath: bob.id, content: 'while you were out' });
  assert.equal(again.ok, true);
  assert.equal(again.createdAt, first.createdAt);

  const b = await connect(node, bob);
  const got = await next(b, 'receiveMessage', (m) => m.id === first.id);
  assert.equal(got.content, 'while you were out');
  await next(a, 'messageDelivered', (d) => d.id === first.id);
  await sleep(200);
  assert.equal(b.log.filter(([e]) => e === 'receiveMessage').length, 1, 'resend delivered twice');

  const chats = await api(node, 'GET', '/api/chats', { token: bob.token });
  assert.equal(chats.status, 200);
  const chat = chats.body.chats.find((c) => c.id === first.chatId);
  assert.deepEqual([...chat.members].sort(), [alice.id, bob.id].sort());
  assert.equal(chat.type, 'direct');
  assert.equal(chat.unreadCount, 1);
  assert.equal(chat.lastMessage.id, first.id);
  assert.equal(chat.lastMessage.status[bob.id], 'delivered');

  const h = await api(node, 'GET', `/api/chats/${first.chatId}/messages`, { token: alice.token });
  assert.equal(h.body.messages.length, 1);
  assert.equal(h.body.nextCursor, null);
  a.close(); b.close();
});

test('pagination cursors are stable', async () => {
  const alice = await register(node, 'alice');
  const bob = await register(node, 'bob');
  const a = await connect(node, alice);
  let chatId;
  for (let i = 0; i < 25; i++) {
    const r = await ack(a, "sendMessage", { recipientChatPath: bob.id, content: `n${i}` }).catch((e) => { throw new Error(`send ${i}: ${e.message}`); });
    assert.equal(r.ok, true, JSON.stringify(r));
    chatId = r.chatId;
    if (i >= 15) await sleep(120); // stay under the default rate limit (burst 20, 10/s)
  }
  const seen = [];
  let cursor = '';
  for (let page = 0; page < 5; page++) {
    const r = await api(node, 'GET', `/api/chats/${chatId}/messages?limit=10${cursor ? `&before=${cursor}` : ''}`, { token: bob.token });
    assert.equal(r.status, 200);
    seen.push(...r.body.messages.map((m) => m.content));
    cursor = r.body.nextCursor;
    if (!cursor) break;
  }
  assert.deepEqual(seen, Array.from({ length: 25 }, (_, i) => `n${24 - i}`));
  // `after` pages forward from a cursor.
  const newest = await api(node, 'GET', `/api/chats/${chatId}/messages?limit=5`, { token: bob.token });
  const older = await api(node, 'GET', `/api/chats/${chatId}/messages?limit=5&before=${newest.body.nextCursor}`, { token: bob.token });
  const fwd = await api(node, 'GET', `/api/chats/${chatId}/messages?limit=5&after=${older.body.nextCursor}`, { token: bob.token });
  assert.deepEqual(fwd.body.messages.map((m) => m.content), ['n20', 'n19', 'n18', 'n17', 'n16']);
  const bad = await api(node, 'GET', `/api/chats/${chatId}/messages?before=abc`, { token: bob.token });
  assert.equal(bad.status, 400);
  a.close();
});

test('groups, replies, reactions, edits, deletes, search and attachments', async () => {
  const [alice, bob, carol, dave] = await Promise.all(['alice', 'bob', 'carol', 'dave'].map((p) => register(node, p)));
  const a = await connect(node, alice);
  const b = await connect(node, bob);
  const d = await connect(node, dave);
  const g = await api(node, 'POST', '/api/chats', { token: alice.token, body: { type: 'group', name: 'Project', participants: [bob.id] } });
  assert.equal(g.status, 201, g.text);
  const chatId = g.body.chat.id;
  assert.deepEqual([...g.body.chat.members].sort(), [alice.id, bob.id].sort());

  const m1 = await ack(a, 'sendMessage', { chatId, content: 'kickoff at noon, bring the zebra slides' });
  assert.equal(m1.ok, true);
  await next(b, 'receiveMessage', (m) => m.id === m1.id);
  const m2 = await ack(b, 'sendMessage', { chatId, content: 'ok', replyTo: m1.id });
  const reply = await next(a, 'receiveMessage', (m) => m.id === m2.id);
  assert.equal(reply.replyTo, m1.id);

  // Add carol; she receives the next message live.
  const add = await api(node, 'POST', `/api/chats/${chatId}/members`, { token: bob.token, body: { userIds: [carol.id] } });
  assert.equal(add.status, 200, add.text);
  const c = await connect(node, carol);
  const m3 = await ack(a, 'sendMessage', { chatId, content: 'welcome carol' });
  await next(c, 'receiveMessage', (m) => m.id === m3.id);

  // Reactions add and remove, relayed live.
  const r1 = await ack(b, 'addReaction', { messageId: m1.id, emoji: '👍' });
  assert.deepEqual(r1.reactions, [{ emoji: '👍', userId: bob.id }]);
  const live = await next(a, 'messageReaction', (x) => x.messageId === m1.id && x.added);
  assert.equal(live.emoji, '👍');
  await ack(b, 'removeReaction', { messageId: m1.id, emoji: '👍' });
  await next(c, 'messageReaction', (x) => x.messageId === m1.id && !x.added);

  // Edit and delete by the sender only.
  const e = await ack(a, 'editMessage', { messageId: m1.id, content: 'kickoff at one, bring the zebra slides' });
  assert.equal(e.ok, true);
  const edited = await next(b, 'messageEdited', (m) => m.id === m1.id);
  assert.ok(edited.editedAt);
  const notMine = await ack(b, 'editMessage', { messageId: m1.id, content: 'hijack' });
  assert.equal(notMine.ok, false);
  assert.equal((await ack(a, 'deleteMessage', { messageId: m3.id })).ok, true);
  await next(c, 'messageDeleted', (m) => m.id === m3.id && m.deleted === true);

  const h = await api(node, 'GET', `/api/chats/${chatId}/messages`, { token: carol.token });
  const byId = Object.fromEntries(h.body.messages.map((m) => [m.id, m]));
  assert.equal(byId[m1.id].content, 'kickoff at one, bring the zebra slides');
  assert.equal(byId[m2.id].replyTo, m1.id);
  assert.equal(byId[m3.id].deleted, true);
  assert.equal(byId[m3.id].content, '');

  // Search covers the user's own chats only.
  const s1 = await api(node, 'GET', '/api/messages/search?q=zebra', { token: carol.token });
  assert.deepEqual(s1.body.messages.map((m) => m.id), [m1.id]);
  const s2 = await api(node, 'GET', '/api/messages/search?q=zebra', { token: dave.token });
  assert.deepEqual(s2.body.messages, []);
  const s3 = await api(node, 'GET', '/api/messages/search?q=' + encodeURIComponent('"unbalanced AND ('), { token: carol.token });
  assert.equal(s3.status, 200);

  // Attachments: stored, typed by content, served to members only.
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(100, 7)]);
  const form = new FormData();
  form.append('content', 'the diagram');
  form.append('file', new Blob([png], { type: 'text/plain' }), 'diagram.png');
  const up = await api(node, 'POST', `/api/chats/${chatId}/messages`, { token: bob.token, form });
  assert.equal(up.status, 201, up.text);
  const att = up.body.message.attachment;
  assert.equal(att.contentType, 'image/png');
  assert.equal(att.size, png.length);
  await next(a, 'receiveMessage', (m) => m.id === up.body.message.id);
  const dl = await fetch(`${node.httpUrl}/api/attachments/${att.id}`, { headers: { authorization: `Bearer ${carol.token}` } });
  assert.equal(dl.status, 200);
  assert.deepEqual(Buffer.from(await dl.arrayBuffer()), png);
  const denied = await api(node, 'GET', `/api/attachments/${att.id}`, { token: dave.token });
  assert.equal(denied.status, 403);
  const big = new FormData();
  big.append('file', new Blob([Buffer.alloc(300 * 1024)]), 'big.bin');
  const tooBig = await api(node, 'POST', `/api/chats/${chatId}/messages`, { token: bob.token, form: big });
  assert.equal(tooBig.status, 413);

  // Leaving: carol leaves, stops receiving, can no longer read.
  assert.equal((await api(node, 'POST', `/api/chats/${chatId}/leave`, { token: carol.token })).status, 200);
  const m4 = await ack(a, 'sendMessage', { chatId, content: 'after carol left' });
  await next(b, 'receiveMessage', (m) => m.id === m4.id);
  await sleep(200);
  assert.ok(!c.log.some(([ev, m]) => ev === 'receiveMessage' && m.id === m4.id));
  assert.equal((await api(node, 'GET', `/api/chats/${chatId}/messages`, { token: carol.token })).status, 403);
  // Only the owner removes others.
  assert.equal((await api(node, 'DELETE', `/api/chats/${chatId}/members/${alice.id}`, { token: bob.token })).status, 403);
  for (const s of [a, b, c, d]) s.close();
});

test('bad input is refused with a clear error and changes nothing', async () => {
  const alice = await register(node, 'alice');
  const bob = await register(node, 'bob');
  const eve = await register(node, 'eve');

  assert.match(await connectError(node, {}), /authentication required/);
  const forged = alice.token.slice(0, -4) + (alice.token.endsWith('AAAA') ? 'BBBB' : 'AAAA');
  assert.match(await connectError(node, { token: forged }), /signature|invalid token/);
  assert.match(await connectError(node, { token: alice.token }, { userId: bob.id }), /userId/);

  const a = await connect(node, alice);
  const e = await connect(node, eve);
  const ok = await ack(a, 'sendMessage', { recipientChatPath: bob.id, content: 'private' });
  const chatId = ok.chatId;
  // Eve writes into a chat she is not in, and sends as alice.
  const intrude = await ack(e, 'sendMessage', { chatId, content: 'let me in' });
  assert.equal(intrude.ok, false);
  assert.match(intrude.error, /not a member/);
  const spoof = await ack(e, 'sendMessage', { senderChatPath: alice.id, recipientChatPath: bob.id, content: 'I am alice' });
  assert.equal(spoof.ok, false);
  assert.match(spoof.error, /someone else/);
  assert.equal((await api(node, 'GET', `/api/chats/${chatId}/messages`, { token: eve.token })).status, 403);
  // Unknown recipient, empty and oversized content, garbage payloads.
  assert.match((await ack(a, 'sendMessage', { recipientChatPath: 'nobody-here', content: 'x' })).error, /no user/);
  assert.match((await ack(a, 'sendMessage', { recipientChatPath: bob.id, content: '   ' })).error, /empty/);
  const huge = await ack(a, 'sendMessage', { recipientChatPath: bob.id, content: 'x'.repeat(20000) });
  assert.equal(huge.ok, false);
  assert.equal(huge.code, 'too_large');
  const junk = await ack(a, 'sendMessage', { recipientChatPath: 42, content: ['not', 'text'] });
  assert.equal(junk.ok, false);

  // A flood past the rate limit: refused with rate_limited; accepted ones are stored.
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => ack(a, 'sendMessage', { recipientChatPath: bob.id, content: `flood ${i}` })));
  const accepted = results.filter((r) => r.ok);
  const limited = results.filter((r) => !r.ok);
  assert.ok(limited.length > 0, 'no message was rate limited');
  assert.ok(limited.every((r) => r.code === 'rate_limited'));
  const h = await api(node, 'GET', `/api/chats/${chatId}/messages?limit=200`, { token: bob.token });
  assert.equal(h.body.messages.length, 1 + accepted.length);

  // REST refusals.
  assert.equal((await api(node, 'GET', '/api/chats')).status, 401);
  const badLogin = await api(node, 'POST', '/api/auth/login', { body: { username: alice.user.username, password: 'wrong password' } });
  assert.equal(badLogin.status, 401);
  assert.deepEqual(Object.keys(badLogin.body).sort(), ['error', 'message']);
  const dup = await api(node, 'POST', '/api/auth/register', { body: { username: alice.user.username, password: 'another password' } });
  assert.equal(dup.status, 409);
  assert.equal((await api(node, 'POST', '/api/auth/register', { body: { username: 'x', password: 'short' } })).status, 400);
  const notJson = await fetch(`${node.httpUrl}/api/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{nope' });
  assert.equal(notJson.status, 400);
  a.close(); e.close();
});

test('accounts: login, profile, directory, app-minted tokens and POST /users', async () => {
  const alice = await register(node, 'alice');
  const login = await api(node, 'POST', '/api/auth/login', { body: { username: alice.user.username, password: 'correct horse battery' } });
  assert.equal(login.status, 200);
  assert.equal(login.body.user.id, alice.id);
  const me = await api(node, 'PATCH', '/api/users/me', { token: login.body.token, body: { name: 'Alice Liddell', avatar: 'https://example.test/a.png' } });
  assert.equal(me.body.user.name, 'Alice Liddell');
  const a = await connect(node, alice);
  const dir = await api(node, 'GET', '/api/users', { token: alice.token });
  const entry = dir.body.users.find((u) => u.id === alice.id);
  assert.equal(entry.online, true);
  assert.equal(entry.name, 'Alice Liddell');

  // An app backend mints a LiveKit-format token for an unknown identity: the user appears.
  const { AccessToken } = await import('livekit-server-sdk');
  const t = new AccessToken('devkey', 'secret', { identity: 'app-user-' + Date.now(), name: 'App User', ttl: '1h' });
  const appToken = await t.toJwt();
  const registered = next(a, 'user.registered', (x) => x.data.name === 'App User');
  const mine = await api(node, 'GET', '/api/users/me', { token: appToken });
  assert.equal(mine.status, 200);
  assert.equal(mine.body.user.name, 'App User');
  await registered;
  // POST /users (seed path) registers with a password.
  const seed = await api(node, 'POST', '/users', { body: { chatPath: 'seed' + Date.now(), name: 'Seed', password: 'long enough pw' } });
  assert.equal(seed.status, 201, seed.text);
  assert.ok(seed.body.token);
  a.close();
});

test('profile pictures: uploaded as images only, served by their link, the old one removed', async () => {
  const alice = await register(node, 'alice');
  const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360f8cfc0f01f0005000201a5a1e7b10000000049454e44ae426082', 'hex');
  const up = (body, token = alice.token) => fetch(node.httpUrl + '/api/users/me/avatar', {
    method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'image/png' }, body,
  });
  assert.equal((await up(png, 'not-a-token')).status, 401);
  const first = await up(png);
  assert.equal(first.status, 200);
  const url = (await first.json()).user.avatar;
  assert.match(url, /^\/api\/avatars\/AV_\w+$/);
  // Anyone with the link gets the picture (a directory shows it to every user), typed by its bytes.
  const got = await fetch(node.httpUrl + url);
  assert.equal(got.status, 200);
  assert.equal(got.headers.get('content-type'), 'image/png');
  assert.equal(got.headers.get('x-content-type-options'), 'nosniff');
  assert.deepEqual(Buffer.from(await got.arrayBuffer()), png);
  const dir = await api(node, 'GET', '/api/users', { token: alice.token });
  assert.equal(dir.body.users.find((u) => u.id === alice.id).avatar, url);
  // Not an image (an SVG with script, HTML claiming to be a PNG): refused, the profile unchanged.
  for (const bad of ['<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', '<html><script>x</script>']) {
    const r = await up(Buffer.from(bad));
    assert.equal(r.status, 400);
    assert.match((await r.json()).message, /PNG, JPEG, GIF or WebP/);
  }
  // Too large: 413 with the limit in words.
  const big = await up(Buffer.concat([png, Buffer.alloc(3 * 1024 * 1024)]));
  assert.equal(big.status, 413);
  assert.equal((await big.json()).error !== undefined, true);
  // A new picture replaces the old one, whose link stops working.
  const second = await up(png);
  const url2 = (await second.json()).user.avatar;
  assert.notEqual(url2, url);
  assert.equal((await fetch(node.httpUrl + url)).status, 404);
  assert.equal((await fetch(node.httpUrl + '/api/avatars/..%2Fnodo.db')).status, 404);
});

test('malformed event payloads get an error ack', async () => {
  const alice = await register(node, 'alice');
  const a = await connect(node, alice);
  for (const [event, data] of [
    ['sendMessage', 'just a string'],
    ['markAsRead', 17],
    ['typing', 'x'],
    ['addReaction', { messageId: 5 }],
    ['editMessage', null],
    ['deleteMessage', []],
    ['initiateCall', { callerId: alice.id }],
  ]) {
    const r = await ack(a, event, data);
    assert.equal(r.ok, false, `${event} accepted ${JSON.stringify(data)}`);
    assert.ok(r.error, `${event} gave no reason`);
  }
  a.close();
});
