// SFU load figures with real clients: 2 publishers (720p fake camera with
// simulcast, microphone) and 3 subscribers in headless Chromium against a
// real `nodo serve`. Prints:
//   - time from signal WebSocket open to the first rendered remote video frame,
//   - CPU of the nodo process (share of one core) over a steady window,
//   - resident memory per participant.
// Run after `cargo build --release` and `scripts/setup-test-deps`:
//   node bench/sfu-load.mjs [--seconds 30]
import { readFileSync } from 'node:fs';
import { startNode, startPageServer, launchBrowser, token, poll } from '../tests/js/harness.mjs';

const seconds = Number(process.argv[process.argv.indexOf('--seconds') + 1]) || 30;
const TICK = 100; // clock ticks per second (Linux USER_HZ)

function cpuTicks(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime
}
function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return Number(m[1]);
}

const node = await startNode();
const pages = await startPageServer();
const browser = await launchBrowser();
const room = 'bench';
const rssBase = rssKiB(node.pid);

async function open(identity, publish) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await ctx.newPage();
  await page.goto(pages.url);
  await page.evaluate((s) => { window.nodo.sizes = s; }, { pub0: [1280, 720], pub1: [1280, 720] });
  await page.evaluate(([u, t, o]) => window.nodo.join(u, t, o), [node.url, await token(identity, room), { publish }]);
  return page;
}

try {
  const pubs = [await open('pub0', true), await open('pub1', true)];
  const subs = [];
  for (let i = 0; i < 3; i++) subs.push(await open(`sub${i}`, false));
  const firstFrameMs = [];
  for (const p of subs) {
    const t = await poll(() => p.evaluate(() => {
      const tm = window.nodo.timing;
      return tm.firstFrame.pub0 && tm.firstFrame.pub1 ? tm : null;
    }), { what: 'first frames' });
    firstFrameMs.push(Math.max(t.firstFrame.pub0, t.firstFrame.pub1) - t.signalConnected);
  }
  // Let the publishers' bandwidth estimates ramp up to the top layer.
  await new Promise((r) => setTimeout(r, 10000));
  const c0 = cpuTicks(node.pid);
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const cpu = (cpuTicks(node.pid) - c0) / TICK / ((Date.now() - t0) / 1000);
  const rss = rssKiB(node.pid);
  const widths = [];
  for (const p of subs) {
    for (const id of ['pub0', 'pub1']) {
      const st = await p.evaluate((i) => window.nodo.videoStats(i), id);
      widths.push(st ? st.frameWidth : 0);
    }
  }
  const layers = await pubs[0].evaluate(() => window.nodo.publisherLayers());
  const kbps = layers.map((l) => `${l.rid}:${l.w}px`).join(' ');
  console.log(`participants: 2 publishers (720p simulcast + audio), 3 subscribers`);
  console.log(`publisher layers: ${kbps}; subscriber frame widths: ${widths.join(',')}`);
  console.log(`signal open -> first remote video frame (both publishers), per subscriber: ${firstFrameMs.map((x) => x.toFixed(0)).join(', ')} ms`);
  console.log(`nodo CPU over ${seconds}s: ${(cpu * 100).toFixed(1)}% of one core`);
  console.log(`nodo RSS: base ${(rssBase / 1024).toFixed(1)} MiB, loaded ${(rss / 1024).toFixed(1)} MiB, ${((rss - rssBase) / 5).toFixed(0)} KiB per participant`);
} finally {
  await browser.close();
  pages.close();
  await node.stop();
}
