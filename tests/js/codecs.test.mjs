// Each video codec the browser can encode is forwarded as-is: VP8, H.264, VP9 (SVC), AV1 (SVC).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { browserSuite, token, poll } from './harness.mjs';

const suite = browserSuite(before, after);

async function page(identity, room) {
  const ctx = await suite.browser.newContext({ viewport: { width: 1400, height: 900 } });
  const p = await ctx.newPage();
  await p.goto(suite.pages.url);
  await p.evaluate(([u, t]) => window.nodo.join(u, t, {}), [suite.node.url, await token(identity, room)]);
  return { p, ctx };
}

for (const codec of ['vp8', 'h264', 'vp9', 'av1']) {
  test(`${codec} is forwarded and decoded`, async (t) => {
    const pub = await page(`pub-${codec}`, `codec-${codec}`);
    if (!(await pub.p.evaluate((c) => window.nodo.canEncode(c), codec))) {
      await pub.ctx.close();
      t.skip(`this Chromium cannot encode ${codec}`);
      return;
    }
    await pub.p.evaluate((c) => window.nodo.publishCamera(c), codec);
    const sub = await page(`sub-${codec}`, `codec-${codec}`);
    const st = await poll(async () => {
      const s = await sub.p.evaluate((id) => window.nodo.inboundCodec(id), `pub-${codec}`);
      return s && s.framesDecoded > 5 ? s : null;
    }, { what: `${codec} frames decoded` });
    assert.equal(st.mime.toLowerCase(), `video/${codec}`);
    await pub.ctx.close();
    await sub.ctx.close();
  });
}
