// Chat side by side: Nodo (target/release/nodo, SQLite persistence on) and a
// plain Node.js Socket.IO 4.8 relay with the same event contract, in memory
// (bench/peers/relay; `cd bench/peers/relay && npm ci` first). The same
// workloads run against each, the servers alternating round by round (and
// which goes first alternating too); the table gives each metric's median
// over the rounds, [min–max] after it.
//   node bench/chat-vs.mjs [--rounds 3] [--only nodo|relay] [--clients 50]
//        [--window 4] [--seconds 5] [--idle 1000] [--members 1000]
//        [--fanout-runs 3] [--fanout-client native|node] [--chatgen PATH] [--wait-idle 90] [--server-cpu 0] [--load-cpu 1] [--no-pin]
// Pinning: the script re-executes itself under `taskset -c <load-cpu>` (the
// load: every socket.io-client socket, in this one Node process), and puts
// each server on <server-cpu> (the relay is started under taskset; Nodo is
// started by tests/js/harness.mjs startNode and then moved with `taskset -a -p`,
// every thread). A server started from the pinned script sees one CPU, so
// Nodo's tokio runtime has one worker thread. --no-pin runs unpinned.
// Per round and server, on a freshly started server:
//   1. the pair clients connect (--clients, partners i and i^1);
//   2. idle sockets: VmRSS of the server pid with --idle more authenticated
//      sockets connected minus VmRSS before, over --idle (each reading once
//      the server's CPU is quiet);
//   3. group fan-out: a group of --members (the first idle users; the sender
//      is one of them), one message --fanout-runs times; p99 of send ->
//      each member's receiveMessage, per run. By default the members' sockets
//      are those of target/release/nodo-chatgen (bench/loadgen: a native
//      client on the load CPU that stamps each frame as it reads it; their
//      socket.io-client sockets close for it and reopen after);
//      `--fanout-client node` keeps them in this process, where taking in 999
//      events one after the other bounds the p99 for either server;
//   4. saturation: each pair client keeps --window sends in flight to its
//      partner (as bench/chat-load.mjs), 2 s warm-up, then --seconds
//      measured: receiveMessage events counted in the window; utime and
//      stime of the server pid from /proc/<pid>/stat at the window's ends
//      over the messages delivered in it;
//   5. paced: half the saturated rate, spread over the pair clients evenly
//      (sends not waiting for acks), 1 s warm-up, --seconds measured; p50/p99
//      of send -> receiveMessage.
// Each round first waits (up to --wait-idle 90 s) for the machine to be idle; the
// "other processes" row is what the rest of the machine used during the
// saturation window (a build or another bench running then skews the row
// above it; the rounds' lines say so).
// Clients confirm each receiveMessage (its ack), as Nodo's clients must.
// Nodo's users are registered once (POST /api/auth/register, as
// tests/js/chatlib.mjs does) in a data dir every round reuses (a fresh
// process each round), with its chat, register and connection limits raised
// by env; the relay takes `auth {userId}` unchecked.
import { spawn, spawnSync, execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const flag = (k) => argv.includes(`--${k}`);
const arg = (k, d) => { const i = argv.indexOf(`--${k}`); return i >= 0 ? argv[i + 1] : d; };
const serverCpu = String(arg('server-cpu', 0));
const loadCpu = String(arg('load-cpu', 1));
let pin = !flag('no-pin');

// Re-execute under taskset (the load on its CPU) before doing anything else.
if (pin && !process.env.CHAT_VS_PINNED) {
  if (spawnSync('taskset', ['-c', loadCpu, 'true']).status === 0) {
    const r = spawnSync('taskset', ['-c', loadCpu, process.execPath, ...process.execArgv,
      fileURLToPath(import.meta.url), ...argv], { stdio: 'inherit', env: { ...process.env, CHAT_VS_PINNED: '1' } });
    process.exit(r.status ?? 1);
  }
  console.warn('taskset is not available: running unpinned');
  pin = false;
}

const here = dirname(fileURLToPath(import.meta.url));
const { startNode } = await import('../tests/js/harness.mjs');
const { api, register } = await import('../tests/js/chatlib.mjs');
const req = createRequire(new URL('../tests/js/package.json', import.meta.url));
const { io } = await import(pathToFileURL(req.resolve('socket.io-client')));

const rounds = Number(arg('rounds', 3));
const only = arg('only', null);
const clients = Number(arg('clients', 50)) & ~1;
const windowSize = Number(arg('window', 4));
const seconds = Number(arg('seconds', 5));
const idle = Number(arg('idle', 1000));
const members = Number(arg('members', 1000));
const fanoutRuns = Number(arg('fanout-runs', 3));
const waitIdle = Number(arg('wait-idle', 90));
const fanoutClient = arg('fanout-client', 'native');
const chatgen = arg('chatgen', join(here, '..', 'target', 'release', 'nodo-chatgen'));
if (!['native', 'node'].includes(fanoutClient)) throw new Error('--fanout-client native|node');
if (fanoutClient === 'native' && members > 1 && fanoutRuns > 0 && !existsSync(chatgen)) {
  throw new Error(`${chatgen} is missing: cargo build --release -p nodo-loadgen (or --fanout-client node)`);
}
if (only && !['nodo', 'relay'].includes(only)) throw new Error('--only nodo|relay');
if (clients < 2) throw new Error('--clients must be at least 2');

const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// /proc: utime and stime (clock ticks) of a whole process, and its VmRSS (KiB).
function cpuTicks(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  return { user: Number(f[11]), sys: Number(f[12]) };
}
// Busy ticks of the whole machine (every CPU), from /proc/stat.
function machineBusy() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f.slice(0, 8).reduce((a, b) => a + b, 0) - f[3] - f[4]; // minus idle and iowait
}
// Before a round: waits (at most `max` ms) for the machine to be idle, at
// most 10% of one core busy over a second; says how long it waited.
async function machineQuiet(max = 90000) {
  const t0 = Date.now();
  while (Date.now() - t0 < max) {
    const a = machineBusy();
    await sleep(1000);
    if (machineBusy() - a <= CLK_TCK / 10) return (Date.now() - t0) / 1000;
  }
  return null;
}
function rssKiB(pid) {
  return Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+) kB/)[1]);
}
// Waits until the server used at most 2 ticks in 500 ms (at most `max` ms).
async function quiet(pid, max = 15000) {
  const end = Date.now() + max;
  let a = cpuTicks(pid);
  while (Date.now() < end) {
    await sleep(500);
    const b = cpuTicks(pid);
    if (b.user + b.sys - a.user - a.sys <= 2) return;
    a = b;
  }
}
function pinPid(pid) {
  if (!pin) return;
  execFileSync('taskset', ['-a', '-p', '-c', serverCpu, String(pid)], { stdio: 'ignore' });
}

// ---- the two servers behind one adapter shape ----
// start() -> {pid, httpUrl, stop()}; users(role, n) -> [{id, token}];
// auth(u) -> the handshake auth; groupToken(u) -> the Bearer for POST /api/chats.

const nodoEnv = {
  RUST_LOG: 'warn',
  NODO_CHAT__RATE_PER_SEC: '1000000', NODO_CHAT__RATE_BURST: '1000000',
  NODO_ACCOUNTS__REGISTER_RATE__PER_SEC: '100000', NODO_ACCOUNTS__REGISTER_RATE__BURST: '100000',
  NODO_SERVER__MAX_CONNECTIONS_PER_IP: '0',
  NODO_CHAT__CHAT_CREATE_RATE: '{per_sec = 1000, burst = 1000}',
};

function nodoAdapter() {
  const dataDir = mkdtempSync(join(tmpdir(), 'nodo-chat-vs-'));
  const registered = {};
  let current = null;
  return {
    name: 'nodo',
    dataDir,
    // Registers every user once, on a node that is stopped before the rounds.
    async setup(need) {
      const node = await startNode([], nodoEnv, dataDir);
      try {
        const t0 = performance.now();
        for (const [role, n] of Object.entries(need)) {
          const list = [];
          for (let i = 0; i < n; i += 8) {
            const batch = [];
            for (let j = i; j < Math.min(n, i + 8); j++) batch.push(register(node, `${role[0]}${j}_`));
            list.push(...await Promise.all(batch));
          }
          registered[role] = list;
        }
        const total = Object.values(need).reduce((a, b) => a + b, 0);
        console.log(`nodo: registered ${total} users in ${((performance.now() - t0) / 1000).toFixed(1)} s (data dir ${dataDir})`);
      } finally {
        await node.stop();
      }
    },
    async start() {
      current = await startNode([], nodoEnv, dataDir);
      pinPid(current.pid);
      return current;
    },
    users: (role, n) => registered[role].slice(0, n),
    auth: (u) => ({ token: u.token }),
    groupToken: (u) => u.token,
    logs: () => current?.lines ?? [],
    cleanup() { rmSync(dataDir, { recursive: true, force: true }); },
  };
}

function relayAdapter() {
  const script = join(here, 'peers', 'relay', 'server.mjs');
  if (!existsSync(join(here, 'peers', 'relay', 'node_modules', 'socket.io'))) {
    throw new Error('bench/peers/relay: run `npm ci` there first');
  }
  let lines = [];
  return {
    name: 'relay',
    async setup() {},
    async start() {
      const cmd = pin ? ['taskset', '-c', serverCpu, process.execPath, script, '0'] : [process.execPath, script, '0'];
      const proc = spawn(cmd[0], cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      lines = [];
      const port = await new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('relay did not start:\n' + lines.join(''))), 15000);
        const onData = (b) => {
          for (const l of b.toString().split('\n')) {
            if (!l) continue;
            lines.push(l + '\n');
            const m = l.match(/^listening (\d+)/);
            if (m) { clearTimeout(t); resolve(m[1]); }
          }
        };
        proc.stdout.on('data', onData);
        proc.stderr.on('data', onData);
        proc.on('exit', (c) => reject(new Error(`relay exited ${c}:\n` + lines.join(''))));
      });
      pinPid(proc.pid); // taskset exec'd node: same pid; its threads are on serverCpu already
      return {
        pid: proc.pid,
        httpUrl: `http://127.0.0.1:${port}`,
        stop: () => new Promise((r) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return r();
          proc.on('exit', r);
          proc.kill('SIGTERM');
        }),
      };
    },
    users: (role, n) => Array.from({ length: n }, (_, i) => ({ id: `${role}${i}`, token: `${role}${i}` })),
    auth: (u) => ({ userId: u.id }),
    groupToken: (u) => u.id,
    logs: () => lines,
    cleanup() {},
  };
}

// ---- one client: the same code for both servers ----
let onReceive = () => {};
function open(server, auth) {
  const s = io(server.httpUrl, { auth, transports: ['websocket'], reconnection: false, forceNew: true });
  s.on('receiveMessage', (m, cb) => {
    if (typeof cb === 'function') cb({ ok: true });
    onReceive(m, s);
  });
  return new Promise((resolve, reject) => {
    s.once('connect', () => resolve(s));
    s.once('connect_error', (e) => { s.close(); reject(e); });
  });
}
async function openAll(server, adapter, users) {
  const out = [];
  for (let i = 0; i < users.length; i += 50) {
    out.push(...await Promise.all(users.slice(i, i + 50).map((u) => open(server, adapter.auth(u)))));
  }
  return out;
}

const pct = (xs, p) => (xs.length ? xs[Math.min(xs.length - 1, Math.floor(xs.length * p))] : NaN);
const median = (xs) => { const v = xs.filter(Number.isFinite).sort((a, b) => a - b); return v.length ? v[Math.floor((v.length - 1) / 2)] : NaN; };

// The group's members as nodo-chatgen's sockets: theirs here close first (each
// user keeps one socket, as in the node-client run) and reopen after.
async function nativeFanout(server, adapter, users, idleSockets, chatId, r) {
  for (const s of idleSockets.slice(0, users.length)) s.close();
  await quiet(server.pid, 5000);
  const dir = mkdtempSync(join(tmpdir(), 'chat-vs-fanout-'));
  const authFile = join(dir, 'auth.json');
  writeFileSync(authFile, JSON.stringify(users.map((u) => adapter.auth(u))));
  // --server-pid: chatgen waits for the server to be quiet after its
  // members' connects (presence to everyone) before the first message.
  const cmd = [chatgen, '--url', server.httpUrl, '--auth-file', authFile,
    '--chat-id', JSON.stringify(chatId), '--runs', String(fanoutRuns), '--server-pid', String(server.pid)];
  const full = pin ? ['taskset', '-c', loadCpu, ...cmd] : cmd;
  try {
    const out = await new Promise((resolve, reject) => {
      const p = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (b) => { stdout += b; });
      p.stderr.on('data', (b) => { stderr += b; });
      p.on('error', reject);
      p.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`nodo-chatgen exited ${code}: ${stderr.trim()}`))));
    });
    const report = JSON.parse(out.trim().split('\n').pop());
    for (const run of report.runs) {
      r.fanoutP99.push(run.p99_ms ?? NaN);
      r.fanoutMissing += run.missing;
      if (!run.ack || run.ack.ok !== true) r.notes.push(`fan-out: ack ${JSON.stringify(run.ack)}`);
    }
    r.fanoutDetail = report.runs.map((x) => `p50 ${x.p50_ms?.toFixed(1)} / p99 ${x.p99_ms?.toFixed(1)} / max ${x.max_ms?.toFixed(1)} ms, ack ${x.ack_ms?.toFixed(1)} ms`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const reopened = await openAll(server, adapter, users);
  idleSockets.splice(0, users.length, ...reopened);
  // chatgen's sockets left and these came back: the presence events of both
  // (Nodo tells everyone) drain before anything else is measured.
  await quiet(server.pid);
  return reopened;
}

// ---- one round against one server ----
async function round(adapter) {
  const r = { notes: [] };
  const server = await adapter.start();
  const pid = server.pid;
  const sockets = [];
  try {
    // 1. pair clients
    const pairUsers = adapter.users('pair', clients);
    const pair = await openAll(server, adapter, pairUsers);
    sockets.push(...pair);

    // 2. idle sockets
    const idleUsers = adapter.users('idle', Math.max(idle, members));
    let idleSockets = [];
    if (idle > 0) {
      await quiet(pid);
      const before = rssKiB(pid);
      const tc = performance.now();
      idleSockets = await openAll(server, adapter, idleUsers.slice(0, idle));
      sockets.push(...idleSockets);
      const connectS = (performance.now() - tc) / 1000;
      await quiet(pid);
      const after = rssKiB(pid);
      r.kibPerSocket = (after - before) / idle;
      r.connectS = connectS;
    }
    if (members > idle) {
      const extra = await openAll(server, adapter, idleUsers.slice(idle, members));
      sockets.push(...extra);
      idleSockets.push(...extra);
    }

    // 3. group fan-out
    if (members > 1 && fanoutRuns > 0) {
      const [sender, ...rest] = idleUsers.slice(0, members);
      const g = await api(server, 'POST', '/api/chats', {
        token: adapter.groupToken(sender), body: { type: 'group', name: 'fan-out', participants: rest.map((u) => u.id) },
      });
      if (g.status !== 201) throw new Error(`${adapter.name}: group: ${g.status} ${g.text}`);
      const chatId = g.body.chat.id;
      await quiet(pid, 5000);
      r.fanoutP99 = [];
      r.fanoutMissing = 0;
      if (fanoutClient === 'native') {
        sockets.push(...await nativeFanout(server, adapter, idleUsers.slice(0, members), idleSockets, chatId, r));
      }
      const s0 = idleSockets[0];
      for (let run = 0; fanoutClient === 'node' && run < fanoutRuns; run++) {
        const id = `fan-${Date.now().toString(36)}-${run}`;
        const got = [];
        let t0;
        let done;
        const all = new Promise((res) => { done = res; });
        onReceive = (m) => {
          if (m.id !== id) return;
          got.push(performance.now() - t0);
          if (got.length === members - 1) done();
        };
        t0 = performance.now();
        const ackP = s0.timeout(30000).emitWithAck('sendMessage', { id, chatId, content: `fan-out ${run}` }).catch((e) => ({ ok: false, error: e.message }));
        await Promise.race([all, sleep(20000)]);
        const a = await ackP;
        if (!a.ok) r.notes.push(`fan-out run ${run}: ack ${JSON.stringify(a)}`);
        got.sort((x, y) => x - y);
        r.fanoutP99.push(pct(got, 0.99));
        r.fanoutMissing += members - 1 - got.length;
        onReceive = () => {};
        await quiet(pid, 5000); // the confirmations are stored and the receipt sent
      }
    }

    // 4. saturation
    let measuring = false;
    let delivered = 0;
    let received = 0;
    let refused = 0;
    const refusals = {};
    let acked = 0;
    onReceive = (m) => { received++; if (measuring) delivered++; };
    let stop = false;
    const loops = [];
    for (let i = 0; i < clients; i++) {
      const partner = pairUsers[i ^ 1];
      for (let w = 0; w < windowSize; w++) {
        loops.push((async () => {
          while (!stop) {
            const a = await pair[i].timeout(30000).emitWithAck('sendMessage',
              { recipientChatPath: partner.id, content: `${performance.now()}:load` }).catch((e) => ({ ok: false, code: e.message }));
            if (a.ok) acked++;
            else {
              refused++;
              refusals[a.code || a.error] = (refusals[a.code || a.error] || 0) + 1;
              await sleep(10);
            }
          }
        })());
      }
    }
    await sleep(2000);
    const c0 = cpuTicks(pid);
    const u0 = process.cpuUsage();
    const m0 = machineBusy();
    const l0 = cpuTicks(process.pid);
    const t0 = performance.now();
    measuring = true;
    await sleep(seconds * 1000);
    measuring = false;
    const c1 = cpuTicks(pid);
    const u1 = process.cpuUsage(u0);
    const m1 = machineBusy();
    const l1 = cpuTicks(process.pid);
    const elapsed = (performance.now() - t0) / 1000;
    stop = true;
    await Promise.allSettled(loops);
    await sleep(500);
    r.rate = delivered / elapsed;
    r.userUs = ((c1.user - c0.user) / CLK_TCK) * 1e6 / delivered;
    r.sysUs = ((c1.sys - c0.sys) / CLK_TCK) * 1e6 / delivered;
    r.serverCpu = (((c1.user - c0.user) + (c1.sys - c0.sys)) / CLK_TCK) / elapsed * 100;
    r.loadCpu = ((u1.user + u1.system) / 1e6) / elapsed * 100;
    // Everything else the machine did in the window (another build would skew the figures).
    r.otherCpu = ((m1 - m0) - (c1.user + c1.sys - c0.user - c0.sys) - (l1.user + l1.sys - l0.user - l0.sys)) / CLK_TCK / elapsed * 100;
    if (r.otherCpu > 10) r.notes.push(`other processes used ${r.otherCpu.toFixed(0)}% of a core during the saturation window`);
    if (refused) r.notes.push(`saturation: ${refused} sends refused ${JSON.stringify(refusals)}`);
    if (acked !== received) r.notes.push(`saturation: ${acked} acked, ${received} receiveMessage seen`);

    // 5. paced at half the saturated rate
    const rate = r.rate / 2;
    r.pacedRate = rate;
    const lat = [];
    let window0 = Infinity;
    let window1 = Infinity;
    let sent = 0;
    let pacedAcked = 0;
    let pacedRefused = 0;
    let got = 0;
    onReceive = (m) => {
      got++;
      const t = Number(m.content.split(':')[0]);
      if (t >= window0 && t < window1) lat.push(performance.now() - t);
    };
    const start = performance.now();
    window0 = start + 1000;
    window1 = window0 + seconds * 1000;
    let k = 0;
    while (performance.now() < window1) {
      const due = Math.floor(((performance.now() - start) / 1000) * rate) - sent;
      for (let j = 0; j < due; j++) {
        const i = k++ % clients;
        sent++;
        pair[i].timeout(30000).emitWithAck('sendMessage',
          { recipientChatPath: pairUsers[i ^ 1].id, content: `${performance.now()}:paced` })
          .then((a) => { if (a.ok) pacedAcked++; else pacedRefused++; }, () => { pacedRefused++; });
      }
      await sleep(1);
    }
    await sleep(1500);
    lat.sort((a, b) => a - b);
    r.p50 = pct(lat, 0.5);
    r.p99 = pct(lat, 0.99);
    if (pacedRefused) r.notes.push(`paced: ${pacedRefused} sends refused or timed out`);
    if (got < sent) r.notes.push(`paced: ${sent} sent, ${got} received after 1.5 s`);
  } finally {
    onReceive = () => {};
    await server.stop();
    for (const s of sockets) s.close();
  }
  const errs = adapter.logs().filter((l) => /ERROR|WARN|panick/i.test(l) && !/development mode/.test(l));
  if (errs.length) r.notes.push(`${errs.length} log lines at WARN/ERROR, first: ${errs[0].trim().slice(0, 300)}`);
  return r;
}

// ---- main ----
const adapters = [];
if (only !== 'relay') adapters.push(nodoAdapter());
if (only !== 'nodo') adapters.push(relayAdapter());
const results = Object.fromEntries(adapters.map((a) => [a.name, []]));
console.log(`chat-vs: ${rounds} rounds; ${clients} clients (${clients / 2} pairs), ${windowSize} in flight each, ${seconds} s windows; `
  + `${idle} idle sockets; ${members}-member group x ${fanoutRuns} runs; `
  + (pin ? `servers on CPU ${serverCpu}, load on CPU ${loadCpu}` : 'unpinned') + `; CLK_TCK ${CLK_TCK}`);
try {
  for (const a of adapters) await a.setup({ pair: clients, idle: Math.max(idle, members) });
  for (let i = 0; i < rounds; i++) {
    const order = i % 2 === 0 ? adapters : [...adapters].reverse();
    for (const a of order) {
      const waited = await machineQuiet(waitIdle * 1000);
      if (waited === null) console.log(`round ${i + 1} ${a.name}: the machine stayed busy (another process); running anyway`);
      else if (waited > 1.5) console.log(`round ${i + 1} ${a.name}: waited ${waited.toFixed(0)} s for the machine to be idle`);
      const r = await round(a);
      results[a.name].push(r);
      const f = (x, d = 0) => (Number.isFinite(x) ? x.toFixed(d) : '-');
      console.log(`round ${i + 1} ${a.name}: ${f(r.rate)} msg/s (server CPU ${f(r.serverCpu)}%, load ${f(r.loadCpu)}%), `
        + `${f(r.userUs, 1)}+${f(r.sysUs, 1)} µs/msg user+sys; ${f(r.kibPerSocket, 1)} KiB/idle socket (connected in ${f(r.connectS, 1)} s); `
        + `paced ${f(r.pacedRate)} msg/s p50 ${f(r.p50, 2)} p99 ${f(r.p99, 2)} ms; `
        + `fan-out p99 ${(r.fanoutP99 || []).map((x) => f(x, 1)).join('/')} ms${r.fanoutMissing ? ` (${r.fanoutMissing} not received)` : ''}`);
      for (const d of r.fanoutDetail || []) console.log(`  ${a.name}: fan-out (native client): ${d}`);
      for (const n of r.notes) console.log(`  ${a.name}: ${n}`);
    }
  }
} finally {
  for (const a of adapters) a.cleanup();
}

const cell = (name, get, d) => {
  const xs = results[name].flatMap((r) => { const v = get(r); return Array.isArray(v) ? v : [v]; }).filter(Number.isFinite);
  if (!xs.length) return '-';
  const m = median(xs).toFixed(d);
  return xs.length > 1 ? `${m} [${Math.min(...xs).toFixed(d)}–${Math.max(...xs).toFixed(d)}]` : m;
};
const names = adapters.map((a) => a.name);
const head = { nodo: 'Nodo (SQLite on)', relay: 'Node.js socket.io relay (memory)' };
const rows = [
  [`messages/s at saturation (${clients / 2} pairs, ${windowSize} in flight each)`, (r) => r.rate, 0],
  ['server CPU µs per delivered message, user', (r) => r.userUs, 1],
  ['server CPU µs per delivered message, sys', (r) => r.sysUs, 1],
  ['server CPU during saturation, % of one core', (r) => r.serverCpu, 0],
  ['load process CPU during saturation, % of one core', (r) => r.loadCpu, 0],
  ['other processes during saturation, % of one core', (r) => r.otherCpu, 0],
  [`KiB per idle socket (${idle} authenticated sockets)`, (r) => r.kibPerSocket, 1],
  ['latency send → receiveMessage at half the saturated rate, p50 ms', (r) => r.p50, 2],
  ['latency send → receiveMessage at half the saturated rate, p99 ms', (r) => r.p99, 2],
  [`group fan-out to ${members} members, p99 send → receiveMessage, ms (per run)`, (r) => r.fanoutP99, 1],
];
console.log(`\nmedian over ${rounds} round(s) [min–max]\n`);
console.log(`| metric | ${names.map((n) => head[n]).join(' | ')} |`);
console.log(`|---|${names.map(() => '---:').join('|')}|`);
for (const [label, get, d] of rows) console.log(`| ${label} | ${names.map((n) => cell(n, get, d)).join(' | ')} |`);
