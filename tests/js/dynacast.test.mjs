// Dynacast and stream states with livekit-client in Chromium: the
// publisher pauses the layers nobody watches and resumes them when a
// viewer needs them; a subscriber is told when a stream stops and flows.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { browserSuite, poll, openPage as openPageIn } from './harness.mjs';

const suite = browserSuite(before, after);

async function openPage(identity, room, opts) {
  const p = await openPageIn(suite, identity, room, opts);
  assert.equal(p.res.state, 'connected');
  return p;
}

const layers = (p) => p.page.evaluate(() => window.nodo.publisherLayers());
const activeRids = (ls) => ls.filter((l) => l.active).map((l) => l.rid).sort().join('');

test('dynacast: the high layer pauses while only a small viewer watches and resumes for a large one', async () => {
  const alice = await openPage('alice', 'dynacast-room', { publish: true, dynacast: true });
  // All three layers go out at first.
  await poll(async () => {
    const ls = await layers(alice);
    return ls.length === 3 && activeRids(ls) === 'fhq' ? ls : null;
  }, { what: 'three active layers' });

  const carol = await openPage('carol', 'dynacast-room', { adaptiveStream: true, sizes: { alice: [160, 90] } });
  await poll(async () => {
    const st = await carol.page.evaluate(() => window.nodo.videoStats('alice'));
    return st && st.framesDecoded > 10 ? st : null;
  }, { what: 'carol decodes alice' });
  let last;
  await poll(async () => {
    last = await layers(alice);
    return activeRids(last) === 'q' ? last : null;
  }, { timeout: 20000, what: 'only the low layer active' }).catch((e) => {
    throw new Error(`${e.message}: ${JSON.stringify(last)}`);
  });
  // Carol still sees alice, on the low layer.
  const before = (await carol.page.evaluate(() => window.nodo.videoStats('alice'))).framesDecoded;
  await new Promise((r) => setTimeout(r, 1500));
  const small = await carol.page.evaluate(() => window.nodo.videoStats('alice'));
  assert.ok(small.framesDecoded > before + 10, `carol's video goes on: ${before} -> ${small.framesDecoded}`);
  assert.ok(small.frameWidth <= 320, `low layer: ${small.frameWidth}`);
  assert.equal(await carol.page.evaluate(() => window.nodo.streamState('alice')), 'active');

  // A large viewer: the high layer comes back and reaches it.
  const t0 = Date.now();
  const dave = await openPage('dave', 'dynacast-room', { adaptiveStream: true, sizes: { alice: [1280, 720] } });
  await poll(async () => {
    last = await layers(alice);
    return activeRids(last) === 'fhq' ? last : null;
  }, { timeout: 15000, what: 'all layers active again' });
  const large = await poll(async () => {
    const st = await dave.page.evaluate(() => window.nodo.videoStats('alice'));
    return st && st.framesDecoded > 10 && st.frameWidth >= 1280 ? st : null;
  }, { timeout: 30000, what: 'the high layer for the large viewer' });
  console.log(`# high layer paused for the small viewer; back at ${large.frameWidth}px ${Date.now() - t0} ms after the large viewer joined`);
  for (const p of [alice, carol, dave]) await p.ctx.close();
});

test('stream states: a subscriber is told when a stream stops and when it flows again', async () => {
  const alice = await openPage('alice2', 'stream-state-room', { publish: true });
  const bob = await openPage('bob2', 'stream-state-room', {});
  await poll(async () => {
    const st = await bob.page.evaluate(() => window.nodo.videoStats('alice2'));
    return st && st.framesDecoded > 10 ? st : null;
  }, { what: 'bob decodes alice' });
  assert.equal(await bob.page.evaluate(() => window.nodo.streamState('alice2')), 'active');

  await alice.page.evaluate(() => window.nodo.setSending(false));
  await poll(async () => (await bob.page.evaluate(() => window.nodo.streamState('alice2'))) === 'paused',
    { timeout: 10000, what: 'the stream paused at bob' });
  await alice.page.evaluate(() => window.nodo.setSending(true));
  await poll(async () => (await bob.page.evaluate(() => window.nodo.streamState('alice2'))) === 'active',
    { timeout: 10000, what: 'the stream active again at bob' });
  const events = await bob.page.evaluate(() => window.nodo.streamStates);
  assert.deepEqual(events.map((e) => `${e.who}:${e.kind}:${e.state}`), ['alice2:video:paused', 'alice2:video:active']);
  for (const p of [alice, bob]) await p.ctx.close();
});
