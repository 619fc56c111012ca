// The embedded TURN server with livekit-client in headless Chromium: pages
// forced relay-only publish camera+mic and receive each other's through
// TURN/UDP and through TURN/TLS on the HTTPS port (a test CA, trusted by
// Chromium through an NSS database in a fresh HOME), and how long a join
// takes to its first remote video frame on each path.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join as path } from 'node:path';
import { startNode, token, poll } from './harness.mjs';
import { makeCa, trustingHome, launch, openPage, listeners, port, median } from './turnlib.mjs';

const env = {};
before(async () => {
  env.dir = mkdtempSync(path(tmpdir(), 'nodo-turn-'));
  env.pki = makeCa(path(env.dir, 'pki'), ['nodo.test']);
  env.node = await startNode(['--tls-cert', env.pki.cert, '--tls-key', env.pki.key,
    '--https-port', '0', '--http-redirect-port', '0']);
  env.ports = listeners(env.node);
  env.wss = `wss://nodo.test:${port(env.ports.https)}`;
  env.browser = await launch({
    env: { HOME: trustingHome(path(env.dir, 'home'), env.pki.ca) },
    args: ['--host-resolver-rules=MAP nodo.test 127.0.0.1'],
  });
});
after(async () => {
  await env.browser?.close();
  await env.node?.stop();
  if (env.dir) rmSync(env.dir, { recursive: true, force: true });
});

// How each path is forced: the ICE servers of the join answer, filtered.
const MODES = {
  direct: {},
  'turn-udp': { policy: 'relay', onlyUrls: '^turn:' },
  'turn-tls': { policy: 'relay', onlyUrls: '^turns:' },
};

async function join(identity, room, mode, publish) {
  const p = await openPage(env.browser, identity);
  const res = await p.page.evaluate(([u, t, o]) => window.turn.join(u, t, o),
    [env.wss, await token(identity, room), { ...MODES[mode], publish }]);
  assert.equal(res.state, 'connected');
  return p;
}

async function receives(p, from) {
  return await poll(async () => {
    const s = await p.page.evaluate((id) => window.turn.inbound(id), from);
    return s.video?.frames > 5 && s.audio?.packets > 20 ? s : null;
  }, { timeout: 30000, what: `camera+mic from ${from}` });
}

async function callThrough(mode, relayProtocol, urlPrefix) {
  const room = `turn-${mode}`;
  const a = await join('alice', room, mode, true);
  const b = await join('bob', room, mode, true);
  try {
    await receives(b, 'alice');
    await receives(a, 'bob');
    for (const p of [a, b]) {
      const servers = (await p.page.evaluate(() => window.turn.iceServers())).flat();
      assert.ok(servers.length > 0 && servers.every((u) => u.startsWith(urlPrefix)), JSON.stringify(servers));
      const sel = await p.page.evaluate(() => window.turn.selected());
      // One connection on signaling v1 (livekit-client's default), two on v0.
      assert.ok(sel.length >= 1 && sel.length <= 2, `selected transports: ${JSON.stringify(sel)}`);
      for (const s of sel) {
        assert.equal(s.type, 'relay', JSON.stringify(sel));
        assert.equal(s.relayProtocol, relayProtocol, JSON.stringify(sel));
        assert.ok(s.url.startsWith(urlPrefix), s.url);
      }
    }
  } finally {
    await a.close();
    await b.close();
  }
}

test('TURN/UDP: relay-only pages exchange camera and microphone', async () => {
  await callThrough('turn-udp', 'udp', `turn:127.0.0.1:${port(env.ports.turn_udp)}?transport=udp`);
});

test('TURN/TLS on the HTTPS port: relay-only pages exchange camera and microphone', async () => {
  // The join answer names the certificate's host and the HTTPS port.
  await callThrough('turn-tls', 'tls', `turns:nodo.test:${port(env.ports.https)}?transport=tcp`);
});

test('time from room.connect() to the first remote video frame: direct, TURN/UDP, TURN/TLS', async () => {
  const REPS = 3;
  const times = { direct: [], 'turn-udp': [], 'turn-tls': [] };
  for (let rep = 0; rep < REPS; rep++) {
    for (const mode of Object.keys(times)) {
      const room = `timing-${mode}-${rep}`;
      const pub = await join('pub', room, mode, true);
      // The publisher is up before the subscriber starts its clock.
      await poll(() => pub.page.evaluate(() => window.turn.selected().then((s) => s.length > 0)),
        { timeout: 15000, what: 'publisher transport' });
      const sub = await openPage(env.browser, 'sub');
      try {
        await sub.page.evaluate(([u, t, o]) => window.turn.join(u, t, o),
          [env.wss, await token('sub', room), { ...MODES[mode], publish: false }]);
        const ms = await poll(() => sub.page.evaluate(() => window.turn.firstFrameMs('pub')),
          { timeout: 20000, interval: 50, what: `first frame (${mode})` });
        const sel = await sub.page.evaluate(() => window.turn.selected());
        const want = { direct: [null, 'host'], 'turn-udp': ['udp', 'relay'], 'turn-tls': ['tls', 'relay'] }[mode];
        assert.ok(sel.length > 0 && sel.every((s) => s.relayProtocol === want[0] && s.type === want[1]),
          `${mode}: ${JSON.stringify(sel)}`);
        times[mode].push(ms);
      } finally {
        await sub.close();
        await pub.close();
      }
    }
  }
  const summary = Object.entries(times).map(([m, xs]) => `${m} ${median(xs)} ms [${xs.join(', ')}]`);
  console.log(`# room.connect() to first remote video frame, median of ${REPS}: ${summary.join('; ')}`);
});
