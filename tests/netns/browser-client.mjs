// livekit-client in headless Chromium, meant to run inside the strict
// namespace (`ip netns exec NS node browser-client.mjs …`): joins with the
// node's own ICE servers and default policy, publishes camera+mic, waits for
// the remote participant's audio and video, and prints one JSON line with
// what it received and which candidates ICE selected. Stays in the call
// until stdin closes or says "bye".
//
//   node browser-client.mjs WSS_URL TOKEN FROM_IDENTITY CA_PEM WORK_DIR
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { launch, openPage, trustingHome } from '../js/turnlib.mjs';

const [url, token, from, ca, dir] = process.argv.slice(2);
const out = (x) => process.stdout.write(JSON.stringify(x) + '\n');
const stdin = createInterface({ input: process.stdin });
const bye = new Promise((r) => { stdin.on('line', (l) => l.trim() === 'bye' && r()); stdin.on('close', r); });

const browser = await launch({ env: { HOME: trustingHome(join(dir, 'home'), ca) } });
try {
  const p = await openPage(browser, 'strict');
  const t0 = Date.now();
  const joined = await p.page.evaluate(([u, t]) => window.turn.join(u, t, { publish: true }), [url, token]);
  out({ event: 'joined', ...joined, ms: Date.now() - t0 });
  let inbound = null;
  const deadline = Date.now() + 40000;
  while (Date.now() < deadline) {
    inbound = await p.page.evaluate((id) => window.turn.inbound(id), from);
    if (inbound.video?.frames > 5 && inbound.audio?.packets > 20) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  const selected = await p.page.evaluate(() => window.turn.selected());
  const firstFrameMs = await p.page.evaluate((id) => window.turn.firstFrameMs(id), from);
  out({ event: 'media', inbound, selected, firstFrameMs });
  let timer;
  await Promise.race([bye, new Promise((r) => { timer = setTimeout(r, 60000); })]);
  clearTimeout(timer);
} catch (e) {
  out({ event: 'error', message: String(e?.message || e) });
} finally {
  await browser.close();
  stdin.close();
}
