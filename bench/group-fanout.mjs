// Group fan-out: one group of N members, all connected (socket.io-client, one
// Node process), one member sends; measures the time from send to each
// member's receiveMessage, to the sender's ack and to its receipt.
//   node bench/group-fanout.mjs [--members 1000] [--runs 5] [--no-ack] [--offline]
// --no-ack: members do not confirm receiveMessage (clients written before
// the ack contract). --offline: only the sender connects (the others exist but
// have no socket), so the ack time is the node's alone: the commit of the
// message and its pending statuses, and the hand-off. NODO_URL=http://host:port uses a running node instead of
// starting one (it must accept the devkey/secret tokens minted here).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { startNode } from '../tests/js/harness.mjs';
import { api } from '../tests/js/chatlib.mjs';

// The test suite's packages (tests/js/node_modules).
const req = createRequire(new URL('../tests/js/package.json', import.meta.url));
const { AccessToken } = await import(pathToFileURL(req.resolve('livekit-server-sdk')));
const { io } = await import(pathToFileURL(req.resolve('socket.io-client')));

const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const members = arg('members', 1000);
const runs = arg('runs', 5);
const acking = !process.argv.includes('--no-ack');
const offline = process.argv.includes('--offline');

const own = !process.env.NODO_URL;
const node = own
  ? await startNode([], {
    RUST_LOG: 'warn',
    NODO_SERVER__MAX_CONNECTIONS_PER_IP: '0',
    NODO_CHAT__RATE_PER_SEC: '1000', NODO_CHAT__RATE_BURST: '1000',
    NODO_CHAT__CHAT_CREATE_RATE: '{per_sec = 100, burst = 100}',
  })
  : { httpUrl: process.env.NODO_URL, stop: async () => {} };

const mint = async (identity) => new AccessToken('devkey', 'secret', { identity, name: identity, ttl: '1h' }).toJwt();

function open(token) {
  const s = io(node.httpUrl, { auth: { token }, transports: ['websocket'], reconnection: false, forceNew: true });
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))];
try {
  const tag = Date.now().toString(36);
  const users = await Promise.all(Array.from({ length: members }, async (_, i) => {
    const id = `fan${tag}_${i}`;
    return { id, token: await mint(id) };
  }));
  const sockets = [];
  for (let i = 0; i < users.length; i += 50) {
    const batch = users.slice(i, i + 50);
    if (offline) {
      // The others exist (a token's first use creates its user) but stay offline.
      if (i === 0) sockets.push(await open(batch.shift().token));
      await Promise.all(batch.map((u) => api(node, 'GET', '/api/users/me', { token: u.token })));
    } else {
      sockets.push(...await Promise.all(batch.map((u) => open(u.token))));
    }
  }
  const [sender, ...rest] = users;
  const g = await api(node, 'POST', '/api/chats', {
    token: sender.token, body: { type: 'group', name: 'fan-out', participants: rest.map((u) => u.id) },
  });
  if (g.status !== 201) throw new Error(`group: ${g.status} ${g.text}`);
  const chatId = g.body.chat.id;
  const s0 = sockets[0];
  console.log(offline ? `${members} members, only the sender connected`
    : `${members} members connected; members ${acking ? 'confirm' : 'do not confirm'} receiveMessage`);

  const all = [];
  for (let run = 0; run < runs; run++) {
    const id = `fan-${tag}-${run}`;
    const got = [];
    let receipts = 0;
    let receiptAt = null;
    let confirmed = 0;
    const t0 = performance.now();
    const done = new Promise((resolve) => {
      sockets.slice(1).forEach((s) => {
        const h = (m, cb) => {
          if (m.id !== id) return;
          got.push(performance.now() - t0);
          if (acking && typeof cb === 'function') cb({ ok: true });
          s.off('receiveMessage', h);
          if (got.length === members - 1) resolve();
        };
        s.on('receiveMessage', h);
      });
    });
    const onReceipt = (d) => {
      const r = d.receipts || [d];
      for (const x of r) if (x.id === id) { receipts++; confirmed += (x.recipients || [x.to]).length; receiptAt = performance.now() - t0; }
    };
    s0.on('messageDelivered', onReceipt);
    const ackP = s0.timeout(30000).emitWithAck('sendMessage', { id, chatId, content: `run ${run}` })
      .then((a) => ({ a, t: performance.now() - t0 }), (e) => ({ e, t: performance.now() - t0 }));
    const timeout = new Promise((r) => setTimeout(() => r('timeout'), 30000));
    const outcome = offline ? 'offline' : await Promise.race([done.then(() => 'all'), timeout]);
    const ackR = await ackP;
    await new Promise((r) => setTimeout(r, acking ? 1500 : 200));
    s0.off('messageDelivered', onReceipt);
    got.sort((a, b) => a - b);
    all.push(...got);
    console.log(`run ${run}: ${got.length}/${members - 1} received (${outcome}); delivery p50 ${pct(got, 0.5)?.toFixed(1)} ms, p99 ${pct(got, 0.99)?.toFixed(1)} ms, last ${got.at(-1)?.toFixed(1)} ms; `
      + `sender ack ${ackR.e ? 'NONE (' + ackR.e.message + ')' : (ackR.a.ok ? 'ok' : JSON.stringify(ackR.a))} at ${ackR.t.toFixed(1)} ms; `
      + `receipt events ${receipts} naming ${confirmed} recipients${receiptAt ? ` (last at ${receiptAt.toFixed(1)} ms)` : ''}`);
    await new Promise((r) => setTimeout(r, 300));
  }
  all.sort((a, b) => a - b);
  console.log(`all runs: ${all.length} deliveries, p50 ${pct(all, 0.5)?.toFixed(1)} ms, p99 ${pct(all, 0.99)?.toFixed(1)} ms`);
  for (const s of sockets) s.close();
} finally {
  await node.stop();
}
