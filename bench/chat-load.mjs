// Chat throughput and latency with persistence on: N socket.io clients on
// loopback in pairs; each sends messages to its partner as fast as acks come
// back (W in flight). Prints delivered messages/s and p50/p99 latency from
// send to the partner's receiveMessage.
//   node bench/chat-load.mjs [--clients 50] [--seconds 15] [--window 4]
import { startNode } from '../tests/js/harness.mjs';
import { register, connect, ack } from '../tests/js/chatlib.mjs';

const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const clients = arg('clients', 50);
const seconds = arg('seconds', 15);
const windowSize = arg('window', 4);

const node = await startNode([], { NODO_CHAT__RATE_PER_SEC: '1000000', NODO_CHAT__RATE_BURST: '1000000', NODO_ACCOUNTS__REGISTER_RATE__BURST: '100000', RUST_LOG: 'warn' });
try {
  const users = [];
  for (let i = 0; i < clients; i++) users.push(await register(node, `load${i}_`));
  const sockets = [];
  for (const u of users) sockets.push(await connect(node, u));
  const latencies = [];
  let delivered = 0;
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
          const r = await ack(sockets[i], 'sendMessage', { recipientChatPath: partner.id, content: `${performance.now()}:load` }, 30000).catch(() => null);
          if (!r || !r.ok) await new Promise((res) => setTimeout(res, 10));
        }
      })());
    }
  }
  await new Promise((r) => setTimeout(r, 2000)); // warm-up
  measuring = true;
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  stop = true;
  await Promise.allSettled(loops);
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))].toFixed(1);
  console.log(`clients: ${clients} (${clients / 2} pairs), ${windowSize} messages in flight per client, SQLite WAL persistence on`);
  console.log(`delivered: ${delivered} messages in ${elapsed.toFixed(1)} s = ${(delivered / elapsed).toFixed(0)} msg/s`);
  console.log(`latency send -> receiveMessage: p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`);
  for (const s of sockets) s.close();
} finally {
  await node.stop();
}
