// Chat throughput and latency with persistence on: N socket.io clients on
// loopback in pairs; each sends messages to its partner as fast as acks come
// back (W in flight). Prints delivered messages/s, p50/p99 latency from send
// to the partner's receiveMessage and from send to the sender's ack, and the
// store's files: the largest nodo.db-wal seen (sampled every 100 ms), the
// database's size, and what is left of the WAL after a clean shutdown.
//   node bench/chat-load.mjs [--clients 50] [--seconds 15] [--window 4]
//        [--wal-log FILE]   one CSV line a second: t_s,wal_bytes,db_bytes,delivered
//        [--max-wal-mb N]   stop early once the WAL passes N MiB (keeps an
//                           unbounded build from filling the disk)
//        [--database-url postgres://...]  the store on PostgreSQL
//        [--redis-url redis://...]  two nodes in a cluster (with --database-url):
//                           each pair's two clients on different nodes, so
//                           every message crosses from one node to the other
//        [--two-nodes]      two nodes on the database alone (with
//                           --database-url, no Redis): the same split, the
//                           bus over PostgreSQL LISTEN/NOTIFY
// chat-cluster.sh starts Redis and PostgreSQL and runs the three set-ups.
// NODO_BIN picks the binary (default target/release/nodo).
import { statSync, rmSync, writeFileSync, appendFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { startNode } from '../tests/js/harness.mjs';
import { register, connect, ack } from '../tests/js/chatlib.mjs';

const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };
const clients = Number(arg('clients', 50));
const seconds = Number(arg('seconds', 15));
const windowSize = Number(arg('window', 4));
const walLog = arg('wal-log', null);
const maxWalMb = Number(arg('max-wal-mb', 0));
const databaseUrl = arg('database-url', null);
const redisUrl = arg('redis-url', null);
const twoNodes = process.argv.includes('--two-nodes');
if ((redisUrl || twoNodes) && !databaseUrl) throw new Error('two nodes need --database-url (the nodes share the store)');

const size = (f) => { try { return statSync(f).size; } catch { return 0; } };
const mib = (b) => (b / 1048576).toFixed(1);

const freePort = () => new Promise((resolve) => {
  const srv = createServer();
  srv.listen(0, '127.0.0.1', () => { const { port } = srv.address(); srv.close(() => resolve(port)); });
});
const env = { NODO_CHAT__RATE_PER_SEC: '1000000', NODO_CHAT__RATE_BURST: '1000000', NODO_ACCOUNTS__REGISTER_RATE__BURST: '100000', RUST_LOG: 'warn' };
const store = databaseUrl ? ['--database-url', databaseUrl] : [];
const nodes = [];
if (redisUrl) {
  for (const id of ['load-a', 'load-b']) {
    const port = await freePort();
    nodes.push(await startNode([...store, '--http-port', String(port), '--redis-url', redisUrl,
      '--node-id', id, '--node-url', `http://127.0.0.1:${port}`], env));
  }
} else if (twoNodes) {
  for (const id of ['load-a', 'load-b']) nodes.push(await startNode([...store, '--node-id', id], env));
} else {
  nodes.push(await startNode(store, env));
}
const node = nodes[0];
const on = (i) => nodes[i % nodes.length];
const db = join(node.dataDir, 'nodo.db');
const wal = `${db}-wal`;
let stopped = false;
try {
  const users = [];
  for (let i = 0; i < clients; i++) users.push(await register(on(i), `load${i}_`));
  const sockets = [];
  for (let i = 0; i < clients; i++) sockets.push(await connect(on(i), users[i]));
  const latencies = [];
  const ackLatencies = [];
  let delivered = 0;
  let refused = 0;
  let measuring = false;
  for (const s of sockets) {
    s.on('receiveMessage', (m) => {
      if (!measuring) return;
      delivered++;
      latencies.push(performance.now() - Number(m.content.split(':')[0]));
    });
  }
  let stop = false;
  const loops = [];
  for (let i = 0; i < clients; i++) {
    const partner = users[i ^ 1] || users[0];
    for (let w = 0; w < windowSize; w++) {
      loops.push((async () => {
        while (!stop) {
          const t = performance.now();
          const r = await ack(sockets[i], 'sendMessage', { recipientChatPath: partner.id, content: `${t}:load` }, 30000).catch(() => null);
          if (r && r.ok) {
            if (measuring) ackLatencies.push(performance.now() - t);
          } else {
            if (measuring) refused++;
            await new Promise((res) => setTimeout(res, 10));
          }
        }
      })());
    }
  }
  await new Promise((r) => setTimeout(r, 2000)); // warm-up
  measuring = true;
  const t0 = performance.now();
  let maxWal = 0;
  if (walLog) writeFileSync(walLog, 't_s,wal_bytes,db_bytes,delivered\n');
  await new Promise((resolve) => {
    const end = setTimeout(() => { clearInterval(sampler); resolve(); }, seconds * 1000);
    let ticks = 0;
    const sampler = setInterval(() => {
      const w = size(wal);
      maxWal = Math.max(maxWal, w);
      if (walLog && ++ticks % 10 === 0) appendFileSync(walLog, `${ticks / 10},${w},${size(db)},${delivered}\n`);
      if (maxWalMb && w > maxWalMb * 1048576) {
        console.log(`stopping early: the WAL passed ${maxWalMb} MiB`);
        clearTimeout(end);
        clearInterval(sampler);
        resolve();
      }
    }, 100);
  });
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.allSettled(loops);
  const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(xs.length * p))].toFixed(1);
  latencies.sort((a, b) => a - b);
  ackLatencies.sort((a, b) => a - b);
  const where = redisUrl ? 'two nodes on Redis + PostgreSQL, every pair split across them'
    : twoNodes ? 'two nodes on PostgreSQL alone, every pair split across them'
    : databaseUrl ? 'one node, PostgreSQL' : 'one node, SQLite WAL';
  console.log(`clients: ${clients} (${clients / 2} pairs), ${windowSize} messages in flight per client, ${where}`);
  console.log(`delivered: ${delivered} messages in ${elapsed.toFixed(1)} s = ${(delivered / elapsed).toFixed(0)} msg/s${refused ? ` (${refused} sends refused)` : ''}`);
  console.log(`latency send -> receiveMessage: p50 ${pct(latencies, 0.5)} ms, p99 ${pct(latencies, 0.99)} ms`);
  console.log(`latency send -> ack: p50 ${pct(ackLatencies, 0.5)} ms, p99 ${pct(ackLatencies, 0.99)} ms`);
  if (!databaseUrl) console.log(`nodo.db-wal: max ${mib(maxWal)} MiB (sampled every 100 ms); nodo.db ${mib(size(db))} MiB`);
  for (const s of sockets) s.close();
  for (const n of nodes) await n.stop();
  stopped = true;
  if (!databaseUrl) console.log(`after a clean shutdown: nodo.db-wal ${existsSync(wal) ? `${mib(size(wal))} MiB` : 'removed'}, nodo.db ${mib(size(db))} MiB`);
} finally {
  for (const n of nodes) {
    if (!stopped) await n.stop();
    rmSync(n.dataDir, { recursive: true, force: true });
  }
}
