// A call outlives its join token (issue 14, "Refresh"): two livekit-client
// pages in Chromium join with 60-second tokens and talk for over two minutes;
// then each one's signal connection is dropped (livekit-client's own
// 'signal-reconnect' scenario) and it resumes, with the token Nodo refreshed
// (`refresh_token`), its join token long expired. Not in CI: it takes ~2.5 min.
//
//   node bench/refresh-demo.mjs [--seconds 130]
import { createRequire } from 'node:module';
import { startNode, startPageServer, launchBrowser, poll } from '../tests/js/harness.mjs';

const require = createRequire(new URL('../tests/js/package.json', import.meta.url));
const { AccessToken } = require('livekit-server-sdk');

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 130;
const TTL = 60;

async function shortToken(identity) {
  const t = new AccessToken('devkey', 'secret', { identity, ttl: TTL });
  t.addGrant({ roomJoin: true, room: 'refresh-demo' });
  return await t.toJwt();
}

const node = await startNode();
const pages = await startPageServer();
const browser = await launchBrowser();
const open = async (identity) => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(pages.url);
  await page.evaluate(() => {
    // Counts signal resumes and token refreshes the client saw.
    window.nodoEvents = [];
  });
  const res = await page.evaluate(([u, t]) => window.nodo.join(u, t, { publish: true }), [node.url, await shortToken(identity)]);
  if (res.state !== 'connected') throw new Error(`${identity} did not join: ${JSON.stringify(res)}`);
  await page.evaluate(() => {
    const LK = window.LivekitClient;
    const room = window.nodo.room;
    room.on(LK.RoomEvent.Reconnecting, () => window.nodoEvents.push('reconnecting'));
    room.on(LK.RoomEvent.Reconnected, () => window.nodoEvents.push('reconnected'));
    room.on(LK.RoomEvent.SignalReconnecting, () => window.nodoEvents.push('signal-reconnecting'));
    room.on(LK.RoomEvent.Disconnected, (r) => window.nodoEvents.push(`disconnected ${r}`));
  });
  return page;
};
const decoding = (page, other) => poll(async () => {
  const st = await page.evaluate((id) => window.nodo.videoStats(id), other);
  return st && st.framesDecoded > 0 ? st.framesDecoded : null;
}, { what: `video from ${other}` });

const t0 = Date.now();
const alice = await open('alice');
const bob = await open('bob');
await decoding(alice, 'bob');
await decoding(bob, 'alice');
console.log(`# joined with ${TTL} s tokens; waiting ${seconds} s`);
await new Promise((r) => setTimeout(r, seconds * 1000));
const before = await decoding(alice, 'bob');
console.log(`# ${Math.round((Date.now() - t0) / 1000)} s in: alice has decoded ${before} frames of bob; dropping both signal connections`);
for (const p of [alice, bob]) await p.evaluate(() => window.nodo.room.simulateScenario('signal-reconnect'));
await new Promise((r) => setTimeout(r, 5000));
const after = await decoding(alice, 'bob');
let failed = false;
for (const [name, p] of [['alice', alice], ['bob', bob]]) {
  const state = await p.evaluate(() => window.nodo.state());
  const events = await p.evaluate(() => window.nodoEvents);
  console.log(`# ${name}: state ${state}, events ${JSON.stringify(events)}`);
  if (state !== 'connected' || events.some((e) => e.startsWith('disconnected'))) failed = true;
}
const resumes = node.lines.filter((l) => /resum|reconnect/i.test(l)).length;
console.log(`# after the drop alice has decoded ${after} frames of bob (was ${before}); node log lines about resumes: ${resumes}`);
if (after <= before) failed = true;
console.log(failed ? 'FAILED' : `ok: the call went on ${Math.round((Date.now() - t0) / 1000)} s with ${TTL} s tokens and resumed after a signal drop`);
await browser.close();
pages.close();
await node.stop();
process.exit(failed ? 1 : 0);
