// Delivery that means delivered (issue 10, item 8), against a real `nodo serve`:
// a 1,000-member group reaches everyone and its sender gets its ack and one
// aggregated receipt; a message counts as delivered only once the recipient's
// client confirms it, and what a client never confirmed (a client that does not
// ack, a half-open socket) comes again on its next connection; a socket dropped
// mid-handshake leaves nobody online; a deleted message's attachment is not
// served and its file is gone; an upload whose message fails leaves no file.
// After each case a normal user is still served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { AccessToken } from 'livekit-server-sdk';
import WebSocket from 'ws';
import { startNode } from './harness.mjs';
import { api, connect, next, ack, sleep } from './chatlib.mjs';
import { stillServes } from './stillserves.mjs';

let node;
before(async () => {
  node = await startNode([], {
    // 1,000 sockets from one test process.
    NODO_SERVER__MAX_CONNECTIONS_PER_IP: '0',
    NODO_CHAT__DELIVERY_ACK_TIMEOUT_SECS: '5',
  });
});
after(async () => { await node?.stop(); });

// A user made by an app-minted token (no registration, no password hashing);
// the node creates it on the token's first use, here or when it connects.
let counter = 0;
async function mint(prefix, n = node) {
  const id = `${prefix}${Date.now().toString(36)}${counter++}`;
  const token = await new AccessToken('devkey', 'secret', { identity: id, name: id, ttl: '1h' }).toJwt();
  const user = { id, token };
  if (n) assert.equal((await api(n, 'GET', '/api/users/me', { token })).status, 200);
  return user;
}

const attachmentFiles = (n) => {
  const dir = join(n.dataDir, 'attachments');
  return existsSync(dir) ? readdirSync(dir).sort() : [];
};

async function statusOf(n, user, chatId, messageId) {
  const h = await api(n, 'GET', `/api/chats/${chatId}/messages?limit=50`, { token: user.token });
  assert.equal(h.status, 200, h.text);
  return h.body.messages.find((m) => m.id === messageId)?.status;
}

// A raw engine.io v4 WebSocket that completes the Socket.IO connect with
// `token` and then does nothing: no pongs, no acks.
function rawSocket(n, token, { connect: doConnect = true } = {}) {
  const ws = new WebSocket(`${n.url}/socket.io/?EIO=4&transport=websocket`);
  const frames = [];
  const connected = new Promise((resolve, reject) => {
    ws.on('message', (data) => {
      const f = data.toString();
      frames.push(f);
      if (f.startsWith('0{') && doConnect) ws.send(`40${JSON.stringify({ token })}`);
      if (f.startsWith('40')) resolve();
      if (f.startsWith('44')) reject(new Error(`connect refused: ${f}`));
    });
    ws.on('error', reject);
  });
  return { ws, frames, connected };
}

test('a 1,000-member group: everyone receives, the sender gets its ack and one aggregated receipt', async () => {
  const started = performance.now();
  const users = await Promise.all(Array.from({ length: 1000 }, () => mint('g', null)));
  const sockets = [];
  for (let i = 0; i < users.length; i += 100) {
    sockets.push(...await Promise.all(users.slice(i, i + 100).map((u) => connect(node, u))));
  }
  const connectedMs = performance.now() - started;
  try {
    const [owner, ...rest] = users;
    const g = await api(node, 'POST', '/api/chats', {
      token: owner.token, body: { type: 'group', name: 'everyone', participants: rest.map((u) => u.id) },
    });
    assert.equal(g.status, 201, g.text);
    const chatId = g.body.chat.id;
    assert.equal(g.body.chat.members.length, 1000);

    const sender = sockets[0];
    const id = `big-${owner.id}`;
    const t0 = performance.now();
    const times = [];
    const everyone = Promise.all(sockets.slice(1).map((s) => next(s, 'receiveMessage', (m) => m.id === id, 30000)
      .then(() => times.push(performance.now() - t0))));
    const receipt = next(sender, 'messageDelivered', (d) => d.id === id, 30000);
    const sent = await ack(sender, 'sendMessage', { id, chatId, content: 'hello, everyone' }, 30000);
    const ackMs = performance.now() - t0;
    assert.equal(sent.ok, true, JSON.stringify(sent));
    await everyone;
    const r = await receipt;
    const receiptMs = performance.now() - t0;
    await sleep(1000);
    const events = sender.log.filter(([e, d]) => e === 'messageDelivered' && (d.receipts || [d]).some((x) => x.id === id));
    assert.equal(events.length, 1, `one receipt event, got ${events.length}`);
    assert.equal(r.recipients.length, 999);
    assert.deepEqual([...r.recipients].sort(), rest.map((u) => u.id).sort());
    assert.equal(r.receipts.length, 1);
    times.sort((a, b) => a - b);
    const pct = (p) => times[Math.min(times.length - 1, Math.floor(times.length * p))].toFixed(1);
    console.log(`# 1,000 members connected in ${connectedMs.toFixed(0)} ms; delivery p50 ${pct(0.5)} ms, `
      + `p99 ${pct(0.99)} ms, last ${times.at(-1).toFixed(1)} ms; sender ack ${ackMs.toFixed(1)} ms; `
      + `receipt ${receiptMs.toFixed(1)} ms`);
    const status = await statusOf(node, owner, chatId, id);
    assert.equal(Object.values(status).filter((s) => s === 'delivered').length, 999);
  } finally {
    for (const s of sockets) s.close();
  }
  await stillServes(node);
});

test('delivered means the client confirmed it: a client that never acks gets it again on its next connection', async () => {
  const alice = await mint('alice');
  const bob = await mint('bob');
  const a = await connect(node, alice);
  const deaf = await connect(node, bob, { confirm: false });
  const m1 = await ack(a, 'sendMessage', { id: `m1-${alice.id}`, recipientChatPath: bob.id, content: 'did you get this?' });
  assert.equal(m1.ok, true, JSON.stringify(m1));
  await next(deaf, 'receiveMessage', (m) => m.id === m1.id);
  await sleep(1000);
  assert.ok(!a.log.some(([e]) => e === 'messageDelivered'), 'a receipt without a confirmation');
  assert.equal((await statusOf(node, alice, m1.chatId, m1.id))[bob.id], 'sent');

  // A client that confirms late: the receipt comes after its ack, not before.
  let ackedAt = 0;
  const slow = await connect(node, bob, {
    confirm: false,
    on: {
      receiveMessage: (m, cb) => {
        if (m.id === m1.id) setTimeout(() => { ackedAt = performance.now(); cb({ ok: true }); }, 800);
      },
    },
  });
  // The new connection got m1 again (still pending); the receipt follows the ack.
  const r = await next(a, 'messageDelivered', (d) => d.id === m1.id, 10000);
  assert.ok(ackedAt > 0 && performance.now() >= ackedAt, 'receipt before the ack');
  assert.equal(r.to, bob.id);
  assert.deepEqual(r.recipients, [bob.id]);
  assert.equal(r.chatId, m1.chatId);
  assert.equal((await statusOf(node, alice, m1.chatId, m1.id))[bob.id], 'delivered');
  assert.equal(slow.log.filter(([e, m]) => e === 'receiveMessage' && m.id === m1.id).length, 1);

  // Confirmed: a new connection gets nothing again.
  const again = await connect(node, bob);
  await sleep(500);
  assert.ok(!again.log.some(([e]) => e === 'receiveMessage'), 'a confirmed message came again');

  // The explicit confirmation event, for clients that can't answer an ack.
  slow.close(); again.close();
  const m2 = await ack(a, 'sendMessage', { id: `m2-${alice.id}`, recipientChatPath: bob.id, content: 'and this?' });
  await next(deaf, 'receiveMessage', (m) => m.id === m2.id);
  const conf = await ack(deaf, 'messageReceived', { ids: [m2.id, m2.id, 'no-such-message'] });
  assert.deepEqual(conf, { ok: true, confirmed: 1 });
  await next(a, 'messageDelivered', (d) => d.id === m2.id);
  const bad = await ack(deaf, 'messageReceived', { ids: Array.from({ length: 501 }, (_, i) => `x${i}`) });
  assert.equal(bad.ok, false);
  assert.equal((await ack(deaf, 'messageReceived', 'nope')).ok, false);
  for (const s of [a, deaf, slow, again]) s.close();
  await stillServes(node);
});

test('a half-open socket: the message it never confirmed waits for the next connection', async () => {
  const quick = await startNode([], { NODO_CHAT__PING_INTERVAL_SECS: '1', NODO_CHAT__PING_TIMEOUT_SECS: '1' });
  try {
    const alice = await mint('alice', quick);
    const bob = await mint('bob', quick);
    const a = await connect(quick, alice);
    const raw = rawSocket(quick, bob.token);
    await raw.connected;
    await next(a, 'contact_online', (id) => id === bob.id);
    raw.ws._socket.pause(); // stops reading: no pong, no ack, nothing read
    const m = await ack(a, 'sendMessage', { id: `ho-${alice.id}`, recipientChatPath: bob.id, content: 'are you there?' });
    assert.equal(m.ok, true, JSON.stringify(m));
    // The heartbeat notices the dead socket.
    await next(a, 'contact_offline', (id) => id === bob.id, 10000);
    assert.ok(!a.log.some(([e]) => e === 'messageDelivered'));
    assert.equal((await statusOf(quick, alice, m.chatId, m.id))[bob.id], 'sent');
    raw.ws.terminate();

    const b = await connect(quick, bob);
    const got = await next(b, 'receiveMessage', (x) => x.id === m.id);
    assert.equal(got.content, 'are you there?');
    await next(a, 'messageDelivered', (d) => d.id === m.id);
    assert.equal((await statusOf(quick, alice, m.chatId, m.id))[bob.id], 'delivered');
    a.close(); b.close();
    await stillServes(quick);
  } finally {
    await quick.stop();
  }
});

test('a slow consumer whose queue fills up is disconnected and loses nothing', async () => {
  const slowNode = await startNode([], {
    NODO_CHAT__SOCKET_BUFFER_PACKETS: '16',
    NODO_CHAT__PING_INTERVAL_SECS: '2',
    NODO_CHAT__PING_TIMEOUT_SECS: '2',
    NODO_CHAT__RATE_PER_SEC: '100000',
    NODO_CHAT__RATE_BURST: '100000',
  });
  try {
    const alice = await mint('alice', slowNode);
    const bob = await mint('bob', slowNode);
    const a = await connect(slowNode, alice);
    const raw = rawSocket(slowNode, bob.token);
    await raw.connected;
    raw.ws._socket.pause(); // reads nothing more: the kernel buffers fill, then its queue
    // ~10 MB, more than loopback's socket buffers hold.
    const filler = 'x'.repeat(12 * 1024);
    const ids = [];
    for (let i = 0; i < 900; i += 30) {
      const acks = await Promise.all(Array.from({ length: 30 }, (_, j) => ack(a, 'sendMessage',
        { id: `slow-${i + j}-${alice.id}`, recipientChatPath: bob.id, content: `${i + j} ${filler}` }, 30000)));
      for (const r of acks) {
        assert.equal(r.ok, true, JSON.stringify(r));
        ids.push(r.id);
      }
    }
    await next(a, 'contact_offline', (id) => id === bob.id, 20000);
    raw.ws.terminate();
    assert.ok(!a.log.some(([e]) => e === 'messageDelivered'));
    // Every acknowledged message comes on the next connection, once.
    const b = await connect(slowNode, bob);
    const got = () => b.log.filter(([e]) => e === 'receiveMessage').map(([, m]) => m.id);
    for (let i = 0; i < 300 && got().length < ids.length; i++) await sleep(100);
    assert.deepEqual(got().sort(), [...ids].sort());
    a.close(); b.close();
    await stillServes(slowNode);
  } finally {
    await slowNode.stop();
  }
});

test('presence: sockets dropped mid-handshake leave nobody online', async () => {
  const carol = await mint('carol');
  const dave = await mint('dave');
  // The Socket.IO connect is sent and the TCP connection dropped at once,
  // while the node is still checking the token.
  for (let i = 0; i < 30; i++) {
    const ws = new WebSocket(`${node.url}/socket.io/?EIO=4&transport=websocket`);
    await new Promise((resolve) => {
      ws.on('message', (data) => {
        if (data.toString().startsWith('0{')) {
          ws.send(`40${JSON.stringify({ token: carol.token })}`);
          ws.terminate();
          resolve();
        }
      });
      ws.on('error', resolve);
      ws.on('close', resolve);
    });
    if (i % 3 === 0) await sleep(5);
  }
  // And some that get connected and then vanish without a close.
  for (let i = 0; i < 5; i++) {
    const raw = rawSocket(node, carol.token);
    await raw.connected;
    raw.ws.terminate();
  }
  await sleep(1000);
  const d = await connect(node, dave);
  const online = await next(d, 'online_users');
  assert.ok(!online.includes(carol.id), 'carol stays online with no socket');
  const dir = await api(node, 'GET', '/api/users', { token: dave.token });
  assert.equal(dir.body.users.find((u) => u.id === carol.id).online, false);

  // A normal connection still counts, and goes away with its socket.
  const c = await connect(node, carol);
  await next(d, 'contact_online', (id) => id === carol.id);
  c.close();
  await next(d, 'contact_offline', (id) => id === carol.id);
  d.close();
  await stillServes(node);
});

test('a deleted message\'s attachment is not served and its file is removed', async () => {
  const alice = await mint('alice');
  const bob = await mint('bob');
  const a = await connect(node, alice);
  const first = await ack(a, 'sendMessage', { recipientChatPath: bob.id, content: 'a file follows' });
  assert.equal(first.ok, true, JSON.stringify(first));
  const before = attachmentFiles(node);
  const form = new FormData();
  form.append('content', 'the plan');
  form.append('file', new Blob([Buffer.from('%PDF-1.7 secret plan')]), 'plan.pdf');
  const up = await api(node, 'POST', `/api/chats/${first.chatId}/messages`, { token: alice.token, form });
  assert.equal(up.status, 201, up.text);
  const att = up.body.message.attachment;
  const dl = await api(node, 'GET', `/api/attachments/${att.id}`, { token: bob.token });
  assert.equal(dl.status, 200);
  assert.deepEqual(attachmentFiles(node), [...before, att.id].sort());

  assert.equal((await ack(a, 'deleteMessage', { messageId: up.body.message.id })).ok, true);
  for (const who of [alice, bob]) {
    const gone = await api(node, 'GET', `/api/attachments/${att.id}`, { token: who.token });
    assert.equal(gone.status, 404, gone.text);
    assert.equal(gone.body.error, 'not_found');
  }
  assert.ok(!attachmentFiles(node).includes(att.id), 'the file is still on disk');
  const h = await api(node, 'GET', `/api/chats/${first.chatId}/messages`, { token: bob.token });
  const m = h.body.messages.find((x) => x.id === up.body.message.id);
  assert.equal(m.deleted, true);
  assert.equal(m.attachment, undefined);
  a.close();
  await stillServes(node);
});

test('an upload whose message is not stored leaves no file', async () => {
  const alice = await mint('alice');
  const bob = await mint('bob');
  const [a, b] = [await connect(node, alice), await connect(node, bob)];
  const taken = await ack(b, 'sendMessage', { id: `taken-${bob.id}`, recipientChatPath: alice.id, content: 'mine' });
  assert.equal(taken.ok, true, JSON.stringify(taken));
  const before = attachmentFiles(node);
  const upload = (id) => {
    const form = new FormData();
    form.append('id', id);
    form.append('file', new Blob([Buffer.from('GIF89a tiny')]), 'x.gif');
    return api(node, 'POST', `/api/chats/${taken.chatId}/messages`, { token: alice.token, form });
  };
  // The message id belongs to bob's message: refused, and the upload is gone.
  const refused = await upload(taken.id);
  assert.equal(refused.status, 409, refused.text);
  assert.deepEqual(attachmentFiles(node), before);
  // A resend of a stored message keeps the first file only.
  const one = await upload(`pic-${alice.id}`);
  assert.equal(one.status, 201, one.text);
  const resend = await upload(`pic-${alice.id}`);
  assert.equal(resend.status, 200, resend.text);
  assert.equal(resend.body.message.attachment.id, one.body.message.attachment.id);
  assert.deepEqual(attachmentFiles(node), [...before, one.body.message.attachment.id].sort());
  a.close(); b.close();
  await stillServes(node);
});
