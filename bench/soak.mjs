// Soak: many chat sockets and a few media participants on one node for
// minutes, watching what must stay flat. Not in CI.
//
//   node bench/soak.mjs [--sockets 1000] [--media 20] [--seconds 600]
//                       [--groups 50] [--interval 10] [--sample 10]
//
// - `--sockets` chat users (app-minted session tokens, as an app backend
//   would mint them), each on its own socket.io-client WebSocket, in groups
//   of sockets/groups members. Every user sends one message every
//   `--interval` seconds (spread out), alternating between its group and a
//   direct message to a neighbour; receivers confirm with the ack callback.
// - `--media` LiveKit participants with the Python SDK (one process, two
//   rooms; a quarter of them publish a tone, all subscribe).
// Every `--sample` seconds it prints the node's RSS, open file descriptors,
// threads, WAL and database size, messages acked and received in the
// window, and the acks' p50/p99; at the end, the RSS slope over the second
// half (least squares) and the p99 over the whole run.
// NODO_BIN picks the binary (default target/release/nodo).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import { startNode } from '../tests/js/harness.mjs';
import { connect, ack, api } from '../tests/js/chatlib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
// The test clients' packages (tests/js/node_modules).
const { AccessToken } = createRequire(join(here, '..', 'tests', 'js', 'package.json'))('livekit-server-sdk');
const arg = (k, d) => { const i = process.argv.indexOf(`--${k}`); return i > 0 ? Number(process.argv[i + 1]) : d; };
const SOCKETS = arg('sockets', 1000);
const MEDIA = arg('media', 20);
const SECONDS = arg('seconds', 600);
const GROUPS = arg('groups', 50);
const INTERVAL = arg('interval', 10);
const SAMPLE = arg('sample', 10);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
};
const size = (f) => { try { return statSync(f).size; } catch { return 0; } };

function proc(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k) => Number((status.match(new RegExp(`${k}:\\s+(\\d+)`)) || [0, 0])[1]);
  return { rssKiB: kb('VmRSS'), threads: kb('Threads'), fds: readdirSync(`/proc/${pid}/fd`).length };
}

async function sessionToken(identity) {
  const t = new AccessToken('devkey', 'secret', { identity, name: `Soak ${identity}`, ttl: '2h' });
  return await t.toJwt();
}

const node = await startNode([], {
  RUST_LOG: 'warn',
  // One client address holds every socket here.
  NODO_SERVER__MAX_CONNECTIONS_PER_IP: '0',
});
const db = join(node.dataDir, 'nodo.db');
console.log(`nodo pid ${node.pid}, data ${node.dataDir}`);
let media = null;
try {
  // Users and their sockets, connected 50 at a time.
  const users = [];
  for (let i = 0; i < SOCKETS; i++) users.push({ id: `soak${i}`, token: await sessionToken(`soak${i}`) });
  const sockets = new Array(SOCKETS);
  const received = { n: 0 };
  for (let i = 0; i < SOCKETS; i += 50) {
    await Promise.all(users.slice(i, i + 50).map(async (u, k) => {
      const s = await connect(node, u);
      s.on('receiveMessage', (_m, cb) => { received.n++; if (typeof cb === 'function') cb({ ok: true }); });
      sockets[i + k] = s;
    }));
  }
  const ids = [];
  for (let i = 0; i < SOCKETS; i++) {
    const me = await api(node, 'GET', '/api/users/me', { token: users[i].token });
    ids.push(me.body?.user?.id ?? me.body?.id ?? users[i].id);
  }
  // Groups of SOCKETS/GROUPS members, created by their first member.
  const per = Math.ceil(SOCKETS / GROUPS);
  const groupOf = new Array(SOCKETS);
  for (let g = 0; g < GROUPS; g++) {
    const members = ids.slice(g * per, (g + 1) * per);
    if (members.length < 2) continue;
    const r = await api(node, 'POST', '/api/chats', {
      token: users[g * per].token, body: { type: 'group', name: `soak group ${g}`, participants: members.slice(1) },
    });
    if (r.status !== 201) throw new Error(`group ${g}: ${r.status} ${r.text}`);
    for (let k = g * per; k < Math.min(SOCKETS, (g + 1) * per); k++) groupOf[k] = r.body.chat.id;
  }
  console.log(`${SOCKETS} sockets connected, ${GROUPS} groups of ${per}`);

  // Media participants.
  if (MEDIA > 0) {
    const py = process.env.NODO_PYTHON || join(here, '..', '.venv', 'bin', 'python');
    media = spawn(py, [join(here, 'soak_media.py'), node.url, String(MEDIA), String(SECONDS + 30)], { stdio: ['ignore', 'pipe', 'inherit'] });
    media.lines = [];
    media.stdout.on('data', (b) => media.lines.push(...b.toString().split('\n').filter(Boolean)));
    const t0 = Date.now();
    while (!media.lines.some((l) => l.startsWith('ready')) && Date.now() - t0 < 60000) await sleep(200);
    console.log(media.lines.at(-1) || 'media: no report');
  }

  // Load: every user sends once per INTERVAL, spread over the interval.
  let stop = false;
  const acks = [];
  const window = { acks: [], refused: 0, failed: 0 };
  const loops = sockets.map((s, i) => (async () => {
    await sleep(Math.random() * INTERVAL * 1000);
    let n = 0;
    while (!stop) {
      const toGroup = n++ % 2 === 0 && groupOf[i];
      const payload = toGroup
        ? { chatId: groupOf[i], content: `soak ${i} ${n}` }
        : { recipientChatPath: ids[(i + 1) % SOCKETS], content: `soak ${i} ${n}` };
      const t = performance.now();
      const r = await ack(s, 'sendMessage', payload, 30000).catch(() => null);
      if (r && r.ok) { const ms = performance.now() - t; acks.push(ms); window.acks.push(ms); }
      else if (r) window.refused++;
      else window.failed++;
      await sleep(INTERVAL * 1000);
    }
  })());

  const samples = [];
  const start = Date.now();
  const header = 't_s   rss_MiB  fds  threads  wal_MiB  db_MiB  acked  refused  failed  received  ack_p50  ack_p99';
  console.log(header);
  let lastReceived = 0;
  while ((Date.now() - start) / 1000 < SECONDS) {
    await sleep(SAMPLE * 1000);
    const p = proc(node.pid);
    const t = (Date.now() - start) / 1000;
    const row = {
      t, rss: p.rssKiB / 1024, fds: p.fds, threads: p.threads,
      wal: size(`${db}-wal`) / 1048576, db: size(db) / 1048576,
      acked: window.acks.length, refused: window.refused, failed: window.failed,
      received: received.n - lastReceived,
      p50: pct(window.acks, 50), p99: pct(window.acks, 99),
    };
    lastReceived = received.n;
    samples.push(row);
    console.log([row.t.toFixed(0).padStart(4), row.rss.toFixed(1).padStart(8), String(row.fds).padStart(4),
      String(row.threads).padStart(8), row.wal.toFixed(1).padStart(8), row.db.toFixed(1).padStart(7),
      String(row.acked).padStart(6), String(row.refused).padStart(8), String(row.failed).padStart(7),
      String(row.received).padStart(9), row.p50.toFixed(1).padStart(8), row.p99.toFixed(1).padStart(8)].join(' '));
    window.acks = []; window.refused = 0; window.failed = 0;
  }
  stop = true;
  await Promise.race([Promise.all(loops), sleep(35000)]);

  // RSS slope over the second half, by least squares.
  const half = samples.slice(Math.floor(samples.length / 2));
  const mx = half.reduce((a, r) => a + r.t, 0) / half.length;
  const my = half.reduce((a, r) => a + r.rss, 0) / half.length;
  const slope = half.reduce((a, r) => a + (r.t - mx) * (r.rss - my), 0) /
    Math.max(1e-9, half.reduce((a, r) => a + (r.t - mx) ** 2, 0));
  const fds = samples.map((r) => r.fds);
  console.log('\nsummary');
  console.log(`  duration ${SECONDS} s, ${SOCKETS} chat sockets, ${MEDIA} media participants`);
  console.log(`  RSS first ${samples[0]?.rss.toFixed(1)} MiB, last ${samples.at(-1)?.rss.toFixed(1)} MiB, max ${Math.max(...samples.map((r) => r.rss)).toFixed(1)} MiB`);
  console.log(`  RSS slope over the second half: ${(slope * 60).toFixed(2)} MiB/min`);
  console.log(`  open fds min ${Math.min(...fds)} max ${Math.max(...fds)}`);
  console.log(`  WAL max ${Math.max(...samples.map((r) => r.wal)).toFixed(1)} MiB`);
  console.log(`  acks: ${acks.length}, p50 ${pct(acks, 50).toFixed(1)} ms, p99 ${pct(acks, 99).toFixed(1)} ms, p99.9 ${pct(acks, 99.9).toFixed(1)} ms`);
  if (media) console.log(`  media: ${media.lines.filter((l) => !l.startsWith('ready')).at(-1) || 'no report'}`);
  for (const s of sockets) s.close();
} finally {
  if (media && media.exitCode === null) {
    media.kill('SIGINT');
    await Promise.race([new Promise((r) => media.on('exit', r)), sleep(5000)]);
  }
  await node.stop();
}
