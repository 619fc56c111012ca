// livekit-client (npm) in headless Chromium against a real Nodo process.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { browserSuite, poll, openPage as openPageIn } from './harness.mjs';

const suite = browserSuite(before, after);

const openPage = (identity, room, opts) => openPageIn(suite, identity, room, opts);

test('two pages publish camera+mic and each decodes the other', async () => {
  const a = await openPage('alice', 'browser-room', { publish: true });
  const b = await openPage('bob', 'browser-room', { publish: true });
  assert.equal(a.res.state, 'connected');
  assert.equal(b.res.state, 'connected');
  assert.ok(a.res.sid.startsWith('PA_'));
  const t0 = Date.now();
  for (const [p, other] of [[a, 'bob'], [b, 'alice']]) {
    const s = await poll(async () => {
      const st = await p.page.evaluate((id) => window.nodo.videoStats(id), other);
      return st && st.framesDecoded > 0 && st.playing ? st : null;
    }, { what: `video from ${other}` });
    assert.ok(s.framesDecoded > 0);
    assert.equal(await p.page.evaluate(() => window.nodo.state()), 'connected');
  }
  console.log(`# first remote video frames decoded ${Date.now() - t0} ms after both joined (join took ${a.joinMs}/${b.joinMs} ms)`);

  // A third page with adaptive stream: alice small, bob large.
  const c = await openPage('carol', 'browser-room', {
    publish: false, adaptiveStream: true, sizes: { alice: [160, 90], bob: [1280, 720] },
  });
  assert.equal(c.res.state, 'connected');
  const small = await poll(async () => {
    const st = await c.page.evaluate(() => window.nodo.videoStats('alice'));
    return st && st.framesDecoded > 10 && st.frameWidth > 0 && st.frameWidth <= 320 ? st : null;
  }, { timeout: 45000, what: 'low layer for the small element' });
  let lastLarge = null;
  const large = await poll(async () => {
    const st = await c.page.evaluate(() => window.nodo.videoStats('bob'));
    lastLarge = st;
    return st && st.framesDecoded > 10 && st.frameWidth >= 1280 ? st : null;
  }, { timeout: 45000, what: 'high layer for the large element' }).catch(async (e) => {
    const layers = await b.page.evaluate(() => window.nodo.publisherLayers());
    throw new Error(`${e.message}; large element stats ${JSON.stringify(lastLarge)}; bob publishes ${JSON.stringify(layers)}`);
  });
  console.log(`# small element frameWidth=${small.frameWidth}, large element frameWidth=${large.frameWidth}`);
  for (const p of [a, b, c]) await p.ctx.close();
});

test('v1 (one connection) and v0 pages share a room, and a v1 page resumes after a signal drop', async () => {
  const v1 = await openPage('v1page', 'mixed-room', { publish: true });
  const v0 = await openPage('v0page', 'mixed-room', { publish: true, v0: true });
  const joined = (id) => suite.node.lines.find((l) => l.includes('participant joined') && l.includes(`participant=${id} `));
  assert.match(joined('v1page') || '', /single_pc=true/, 'livekit-client joined over /rtc/v1 by default');
  assert.match(joined('v0page') || '', /single_pc=false/);
  const decoding = async (p, other, more = 0) => poll(async () => {
    const st = await p.page.evaluate((id) => window.nodo.videoStats(id), other);
    return st && st.framesDecoded > more && st.playing ? st : null;
  }, { what: `video from ${other}` });
  await decoding(v1, 'v0page');
  await decoding(v0, 'v1page');
  // The signal socket drops; the client resumes on /rtc/v1 and media goes on.
  await v1.page.evaluate(() => window.nodo.simulate('signal-reconnect'));
  await poll(async () => (await v1.page.evaluate(() => window.nodo.reconnected)) || null, { what: 'Reconnected' });
  assert.ok(suite.node.lines.some((l) => l.includes('signal resumed') && l.includes('v1page')), 'the session resumed');
  const before = await v1.page.evaluate(() => window.nodo.videoStats('v0page'));
  await decoding(v1, 'v0page', before.framesDecoded + 30);
  const seen = await v0.page.evaluate(() => window.nodo.videoStats('v1page'));
  await decoding(v0, 'v1page', seen.framesDecoded + 30);
  // After the resume, a new publisher reaches the v1 page (a new offer).
  const late = await openPage('latepage', 'mixed-room', { publish: true, v0: true });
  await decoding(v1, 'latepage');
  for (const p of [v1, v0, late]) await p.ctx.close();
});

test('v1: a camera unpublished and published again reaches the viewer each time (sections reused)', async () => {
  const pub = await openPage('churner', 'churn-room', { publish: false });
  const view = await openPage('viewer', 'churn-room', {});
  for (let round = 0; round < 5; round++) {
    await pub.page.evaluate(() => window.nodo.publishNewCamera());
    await poll(async () => {
      const st = await view.page.evaluate(() => window.nodo.videoStats('churner'));
      return st && st.framesDecoded > 5 && st.playing ? st : null;
    }, { what: `video of round ${round}` });
    await pub.page.evaluate(() => window.nodo.unpublishCamera());
    await poll(async () => (await view.page.evaluate(() => window.nodo.remoteVideoCount('churner'))) === 0 || null,
      { what: `unpublish of round ${round}` });
  }
  // Five subscriptions came and went through the viewer's sections (its
  // first offer had three for video): freed ones were taken again, and the
  // node never asked it for more.
  const asked = suite.node.lines.filter((l) => l.includes('more media sections') && l.includes(view.sid));
  assert.equal(asked.length, 0, asked.join('\n'));
  for (const p of [pub, view]) await p.ctx.close();
});
