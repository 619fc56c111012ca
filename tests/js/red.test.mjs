// RED for Opus: a browser publishes its microphone in RED (livekit-client's
// default); a RED-capable browser and the Python SDK receive RED, a client
// without RED (Chromium whose answers lose audio/red) the primary Opus, and
// all of them hear it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { browserSuite, token, poll, openPage as openPageIn } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const python = process.env.NODO_PYTHON || join(here, '..', '..', '.venv', 'bin', 'python');
const env = browserSuite(before, after, { RUST_LOG: 'info,nodo_sfu::room=debug' });

async function openPage(identity, room, opts) {
  const p = await openPageIn(env, identity, room, opts);
  assert.equal(p.res.state, 'connected');
  return p;
}

function listen(identity, room, sender) {
  return token(identity, room).then((t) => new Promise((resolve, reject) => {
    const p = spawn(python, [join(here, '..', 'e2e', 'listen.py'), env.node.url, t, sender], { cwd: join(here, '..', 'e2e') });
    let out = '';
    p.stdout.on('data', (b) => { out += b; });
    p.stderr.on('data', (b) => { out += b; });
    p.on('exit', () => {
      const m = out.match(/audible (True|False)/);
      if (m) resolve(m[1] === 'True'); else reject(new Error(`listen.py: ${out}`));
    });
  }));
}

/// How the node mapped the publisher's audio for each subscriber, from its log.
function mappings() {
  return env.node.lines.filter((l) => l.includes('payload type mapped'));
}

test('a RED browser and a non-RED client both hear a browser publishing in RED', async () => {
  const alice = await openPage('alice', 'red-room', { publish: true });
  const bob = await openPage('bob', 'red-room', {});
  const stats = await poll(async () => {
    const s = await bob.page.evaluate(() => window.nodo.audioStats('alice'));
    return s && s.samples > 48000 && s.energy > 0 ? s : null;
  }, { timeout: 30000, what: 'bob hears alice' });
  // Chromium reports the codec inside RED (opus) for a RED stream: which
  // one bob got is read from the node's log below.
  assert.equal(stats.mime, 'audio/opus', JSON.stringify(stats));
  const dave = await openPage('dave', 'red-room', { noRed: true });
  const plain = await poll(async () => {
    const s = await dave.page.evaluate(() => window.nodo.audioStats('alice'));
    return s && s.samples > 48000 && s.energy > 0 ? s : null;
  }, { timeout: 30000, what: 'dave (no RED) hears alice' });
  assert.equal(plain.mime, 'audio/opus');
  assert.equal(plain.packetsLost, 0, JSON.stringify(plain));
  assert.ok(plain.concealed < plain.samples / 20, `dave's audio decodes cleanly: ${JSON.stringify(plain)}`);
  const heard = await listen('carol', 'red-room', 'alice');
  assert.equal(heard, true, 'the Python SDK hears alice');
  const log = mappings();
  // How each subscriber got alice's audio (her video maps Plain).
  const got = (sid) => log.filter((l) => l.includes(`subscriber=${sid}`)).map((l) => (l.match(/to=(Red|Unred) /) || [])[1]).filter(Boolean);
  assert.deepEqual(got(bob.sid), ['Red'], `bob gets RED: ${log.join('\n')}`);
  assert.deepEqual(got(dave.sid), ['Unred'], `dave gets the primary Opus: ${log.join('\n')}`);
  for (const p of [alice, bob, dave]) await p.ctx.close();
});
