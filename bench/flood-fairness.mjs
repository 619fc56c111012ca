// Fairness under a flood: every write shares one SQLite writer, so one user
// flooding must not delay other users' acks. A normal user sends one message
// every --interval ms to a partner and records each ack's latency, first
// alone, then while --flooders users each keep --window writes in flight as
// fast as acks come back (messages, read receipts, reactions and typing,
// round-robin). Prints the normal user's ack p50/p99/max per phase, and what
// the flooders got through, had refused, and how often the node disconnected
// them for ignoring its refusals (a flooder reconnects at once and goes on).
//   node bench/flood-fairness.mjs [--seconds 15] [--flooders 1,4] [--window 32]
//        [--interval 100] [--unlimited]   (--unlimited lifts the per-user rates,
//        so the flood reaches the writer: the fairness of the store alone)
// NODO_BIN picks the binary (default target/release/nodo).
import { startNode } from '../tests/js/harness.mjs';
import { register, connect, ack, sleep } from '../tests/js/chatlib.mjs';

// Waits for `s` to be disconnected by the node.
const dropped = (s) => new Promise((r) => (s.connected ? s.once('disconnect', r) : r()));

const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? process.argv[i + 1] : d; };
const seconds = Number(arg('seconds', 15));
const flooderCounts = String(arg('flooders', '1,4')).split(',').map(Number);
const windowSize = Number(arg('window', 32));
const interval = Number(arg('interval', 100));
const unlimited = process.argv.includes('--unlimited');

const big = { per_sec: 1e6, burst: 1000000 };
const lift = unlimited ? Object.fromEntries([
  ['NODO_CHAT__RATE_PER_SEC', '1000000'], ['NODO_CHAT__RATE_BURST', '1000000'],
  ...['READ_RATE', 'TYPING_RATE', 'REACTION_RATE'].flatMap((k) => [
    [`NODO_CHAT__${k}__PER_SEC`, String(big.per_sec)], [`NODO_CHAT__${k}__BURST`, String(big.burst)]]),
]) : {};
const node = await startNode([], { RUST_LOG: 'warn', ...lift });

const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const fmt = (x) => x.toFixed(1);

try {
  const maxFlooders = Math.max(0, ...flooderCounts);
  const [me, partner] = [await register(node, 'normal'), await register(node, 'partner')];
  const [sMe, sPartner] = [await connect(node, me), await connect(node, partner)];
  const flooders = [];
  for (let i = 0; i < maxFlooders; i++) {
    const u = await register(node, `flood${i}_`);
    const s = await connect(node, u);
    // Each flooder has a chat with the partner and a message to react to.
    const first = await ack(s, 'sendMessage', { recipientChatPath: partner.id, content: 'hello' });
    flooders.push({ u, s, gone: dropped(s), chatId: first.chatId, msgId: first.id });
  }
  const myChat = (await ack(sMe, 'sendMessage', { recipientChatPath: partner.id, content: 'hi' })).chatId;
  await sleep(2500); // every limiter's burst refilled

  // The normal user's acks for `seconds`; returns their latencies in ms.
  const normal = async () => {
    const lat = [];
    let failed = 0;
    const end = performance.now() + seconds * 1000;
    let n = 0;
    while (performance.now() < end) {
      const t = performance.now();
      const r = await ack(sMe, 'sendMessage', { chatId: myChat, content: `n${n++}` }, 30000).catch(() => null);
      if (r?.ok) lat.push(performance.now() - t); else failed++;
      await sleep(Math.max(0, interval - (performance.now() - t)));
    }
    return { lat, failed };
  };

  const rows = [];
  const phase = async (nFlooders) => {
    let stop = false;
    const counts = { ok: 0, limited: 0, other: 0, kicked: 0 };
    const loops = [];
    for (const f of flooders.slice(0, nFlooders)) {
      for (let w = 0; w < windowSize; w++) {
        loops.push((async () => {
          let i = w;
          while (!stop) {
            if (!f.s.connected) {
              // Kicked: one loop reconnects, the others wait for it.
              if (!f.reconnecting) {
                counts.kicked++;
                f.reconnecting = connect(node, f.u).then((s) => { f.s = s; f.gone = dropped(s); f.reconnecting = null; })
                  .catch(() => { f.reconnecting = null; });
              }
              await f.reconnecting;
              continue;
            }
            const kind = i++ % 4;
            const [event, data] = [
              ['sendMessage', { chatId: f.chatId, content: `flood ${i}` }],
              ['markAsRead', { chatId: f.chatId }],
              [i % 8 < 4 ? 'addReaction' : 'removeReaction', { messageId: f.msgId, emoji: '🔥' }],
              ['typing', { chatId: f.chatId, isTyping: true }],
            ][kind];
            const r = await Promise.race([ack(f.s, event, data, 30000).catch(() => null), f.gone.then(() => null)]);
            if (r?.ok) counts.ok++;
            else if (r?.code === 'rate_limited') counts.limited++;
            else counts.other++;
          }
        })());
      }
    }
    await sleep(nFlooders ? 500 : 0);
    const { lat, failed } = await normal();
    stop = true;
    await Promise.all(loops);
    rows.push({ flooders: nFlooders, acks: lat.length, failed, p50: pct(lat, 50), p99: pct(lat, 99), max: Math.max(...lat), ...counts });
    await sleep(2500);
  };

  await phase(0);
  for (const n of flooderCounts) if (n > 0) await phase(n);
  console.log(`flood fairness, ${unlimited ? 'per-user rates lifted' : 'default per-user rates'}, ` +
    `${seconds} s per phase, normal user every ${interval} ms, ${windowSize} writes in flight per flooder`);
  console.log('flooders | normal acks | failed | p50 ms | p99 ms | max ms | flood ok/s | flood refused/s | flood other | kicked');
  for (const r of rows) {
    console.log(`${r.flooders} | ${r.acks} | ${r.failed} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.max)} | ` +
      `${fmt(r.ok / seconds)} | ${fmt(r.limited / seconds)} | ${r.other} | ${r.kicked}`);
  }
  sMe.close(); sPartner.close();
  for (const f of flooders) f.s.close();
} finally {
  await node.stop();
}
