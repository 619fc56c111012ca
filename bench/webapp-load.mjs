// How fast the bundled web app becomes usable: the time from navigation to an
// interactive login form (the button found by its name and enabled), and to
// the signed-in shell with the chat list, on loopback and on throttled links
// (Chrome DevTools network emulation), median of N cold loads each (a new
// browser context per load: empty cache). Also the bytes each page moved.
//
//   node bench/webapp-load.mjs [--runs 7]
//
// Needs `cargo build --release` and tests/js's node_modules (scripts/setup-test-deps).
import { launch, signUp, startWebNode } from '../tests/js/webapp.mjs';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : dflt;
};
const runs = arg('runs', 7);

// Throughput in bytes/s, latency in ms (as Chrome's presets name them).
const links = [
  { name: 'loopback', conditions: null },
  { name: '4G (9 Mbit/s, 85 ms)', conditions: { latency: 85, downloadThroughput: 9e6 / 8, uploadThroughput: 9e6 / 8 } },
  { name: 'fast 3G (1.6 Mbit/s, 150 ms)', conditions: { latency: 150, downloadThroughput: 1.6e6 / 8, uploadThroughput: 750e3 / 8 } },
];

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

const node = await startWebNode();
const browser = await launch();
try {
  // One user to sign in as (the shell's load is measured with a stored session).
  const first = await browser.newContext({ baseURL: node.httpUrl });
  const p0 = await first.newPage();
  await signUp(p0, 'bench');
  const session = await p0.evaluate(() => localStorage.getItem('nodo.session'));
  await first.close();

  console.log(`web app load, median of ${runs} cold loads (new context each)\n`);
  console.log('| link | login form interactive | signed-in shell | bytes (login page) |');
  console.log('|---|---|---|---|');
  for (const link of links) {
    const login = [];
    const shell = [];
    let bytes = 0;
    for (let i = 0; i < runs; i++) {
      for (const signedIn of [false, true]) {
        const ctx = await browser.newContext({ baseURL: node.httpUrl });
        if (signedIn) await ctx.addInitScript((s) => localStorage.setItem('nodo.session', s), session);
        const page = await ctx.newPage();
        if (link.conditions) {
          const cdp = await ctx.newCDPSession(page);
          await cdp.send('Network.enable');
          await cdp.send('Network.emulateNetworkConditions', { offline: false, ...link.conditions });
        }
        const t0 = Date.now();
        await page.goto('/');
        if (signedIn) {
          await page.getByRole('navigation', { name: 'Main' }).waitFor({ timeout: 60000 });
          shell.push(Date.now() - t0);
        } else {
          await page.getByRole('button', { name: 'Log in' }).waitFor({ timeout: 60000 });
          login.push(Date.now() - t0);
          bytes = await page.evaluate(
            () =>
              performance.getEntriesByType('resource').reduce((s, r) => s + (r.transferSize || 0), 0) +
              performance.getEntriesByType('navigation')[0].transferSize,
          );
        }
        await ctx.close();
      }
    }
    console.log(`| ${link.name} | ${median(login)} ms | ${median(shell)} ms | ${bytes} |`);
  }
} finally {
  await browser.close();
  await node.stop();
}
