// Test harness: a real `nodo serve` process, a static server for the test
// page, and headless Debian Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { readFileSync, mkdtempSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { AccessToken } from 'livekit-server-sdk';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');

// Data directories this harness made; removed when the test file's process
// exits (a test may restart a node on the same directory, so not at stop).
const madeDirs = new Set();
process.on('exit', () => {
  for (const d of madeDirs) rmSync(d, { recursive: true, force: true });
});

export async function startNode(extraArgs = [], env = {}, dataDir = undefined) {
  if (dataDir === undefined) {
    dataDir = mkdtempSync(join(tmpdir(), 'nodo-test-'));
    madeDirs.add(dataDir);
  }
  const bin = process.env.NODO_BIN || join(root, 'target', 'release', 'nodo');
  if (!existsSync(bin)) throw new Error(`${bin} not found: run cargo build --release`);
  // An ephemeral HTTP port unless the caller names one (a cluster node's URL carries it).
  const httpPort = extraArgs.includes('--http-port') ? [] : ['--http-port', '0'];
  const proc = spawn(bin, ['serve', '--dev', ...httpPort, '--rtc-udp-port', '0',
    '--rtc-tcp-port', '0', '--turn-udp-port', '0', '--turn-tls-port', '0',
    '--data-dir', dataDir, ...extraArgs], {
    env: { ...process.env, RUST_LOG: process.env.NODO_TEST_LOG || 'info', NO_COLOR: '1', ...env },
  });
  const lines = [];
  let exited = false;
  const started = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('nodo did not start:\n' + lines.join(''))), 30000);
    const onData = (buf) => {
      for (const line of buf.toString().split('\n')) {
        if (!line) continue;
        lines.push(line + '\n');
        if (process.env.NODO_TEST_ECHO) console.log('[nodo]', line);
        const m = line.match(/nodo listening http=(\S+)/);
        if (m) { clearTimeout(timer); resolve(m[1]); }
      }
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => reject(new Error(`nodo exited ${code}:\n` + lines.join(''))));
    proc.on('exit', () => { exited = true; });
  });
  const http = await started;
  return {
    pid: proc.pid,
    dataDir,
    kill() {
      proc.kill('SIGKILL');
      return new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r() : proc.on('exit', r)));
    },
    url: `ws://${http}`,
    httpUrl: `http://${http}`,
    lines,
    async stop() {
      if (exited || proc.exitCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      return await new Promise((r) => proc.on('exit', r));
    },
  };
}

export async function token(identity, room, grants = {}) {
  const t = new AccessToken('devkey', 'secret', { identity, ttl: '1h' });
  t.addGrant({ roomJoin: true, room, ...grants });
  return await t.toJwt();
}

// Serves the test page and the livekit-client UMD bundle.
export async function startPageServer() {
  const files = {
    '/': ['text/html', readFileSync(join(here, 'page.html'))],
    '/livekit-client.umd.js': ['text/javascript',
      readFileSync(join(here, 'node_modules', 'livekit-client', 'dist', 'livekit-client.umd.js'))],
  };
  const server = createServer((req, res) => {
    const f = files[req.url.split('?')[0]];
    if (!f) { res.writeHead(404); res.end(); return; }
    res.writeHead(200, { 'content-type': f[0] });
    res.end(f[1]);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

// Headless Debian Chromium with fake media devices; `extraArgs` and `env`
// (e.g. a HOME with an NSS database that trusts a test CA) add to the defaults.
export async function launchBrowser(extraArgs = [], env = {}) {
  return await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    env: { ...process.env, ...env },
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream',
      '--allow-loopback-in-peer-connection', '--autoplay-policy=no-user-gesture-required',
      ...extraArgs,
    ],
  });
}

export async function poll(fn, { timeout = 30000, interval = 250, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, interval));
  }
  throw new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(last)}`);
}

// Opens page.html in a new browser context of `env` (a `browserSuite`, or
// any {node, pages, browser}) and joins `room` as `identity` with livekit-client.
export async function openPage(env, identity, room, opts = {}) {
  const ctx = await env.browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (process.env.NODO_TEST_ECHO) console.log(`[${identity}]`, m.text()); });
  await page.goto(env.pages.url);
  if (opts.sizes) await page.evaluate((s) => { window.nodo.sizes = s; }, opts.sizes);
  const t0 = Date.now();
  const res = await page.evaluate(([u, t, o]) => window.nodo.join(u, t, o), [env.node.url, await token(identity, room), opts]);
  return { page, ctx, res, sid: res.sid, joinMs: Date.now() - t0 };
}

// A node, the page server and Chromium for one test file, started in
// `before` and stopped in `after`; read the fields inside tests.
export function browserSuite(before, after, nodeEnv = {}) {
  const env = {};
  before(async () => {
    env.node = await startNode([], nodeEnv);
    env.pages = await startPageServer();
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    env.pages?.close();
    await env.node?.stop();
  });
  return env;
}
