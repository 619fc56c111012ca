// livekit-client in headless Chromium over wss://: the node serves HTTPS from
// certificate files made here with openssl (a test CA and a leaf for
// localhost); Chromium trusts the leaf through
// --ignore-certificate-errors-spki-list (no CA installed anywhere).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBrowser, startNode, startPageServer, token, poll } from './harness.mjs';

const env = {};

// A CA and a localhost leaf signed by it, with the openssl CLI.
function makeCerts(dir) {
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '30', '-subj', '/CN=Nodo JS Test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ssl('req', ...ec, '-keyout', 'leaf.key', '-out', 'leaf.csr', '-subj', '/CN=localhost');
  writeFileSync(join(dir, 'leaf.ext'), [
    'subjectAltName=DNS:localhost,IP:127.0.0.1', 'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature', 'extendedKeyUsage=serverAuth', '',
  ].join('\n'));
  ssl('x509', '-req', '-in', 'leaf.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '20',
    '-extfile', 'leaf.ext', '-out', 'leaf.pem');
  // base64(sha256(SubjectPublicKeyInfo)) of the leaf, as Chromium's flag takes it.
  const spkiDer = ssl('x509', '-in', 'leaf.pem', '-noout', '-pubkey');
  const der = execFileSync('openssl', ['pkey', '-pubin', '-outform', 'der'], { input: spkiDer });
  const spki = createHash('sha256').update(der).digest('base64');
  const fromNode = createHash('sha256')
    .update(new X509Certificate(readFileSync(join(dir, 'leaf.pem'))).publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  assert.equal(spki, fromNode);
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'leaf.pem'), key: join(dir, 'leaf.key'), spki };
}

function httpsGet(url, ca) {
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, servername: 'localhost' }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'nodo-tls-'));
  env.certs = makeCerts(dir);
  env.node = await startNode(['--tls-cert', env.certs.cert, '--tls-key', env.certs.key,
    '--https-port', '0', '--http-redirect-port', '0']);
  const line = env.node.lines.find((l) => l.includes('nodo listening'));
  env.httpsPort = Number(line.match(/ https=\S+:(\d+)/)[1]);
  env.wss = `wss://localhost:${env.httpsPort}`;
  env.pages = await startPageServer();
  // Chromium trusts the test leaf by its SPKI pin.
  env.browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${env.certs.spki}`]);
});

after(async () => {
  await env.browser?.close();
  env.pages?.close();
  await env.node?.stop();
});

async function openPage(identity, room, publish) {
  const ctx = await env.browser.newContext({ viewport: { width: 800, height: 600 } });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (process.env.NODO_TEST_ECHO) console.log(`[${identity}]`, m.text()); });
  await page.goto(env.pages.url);
  const res = await page.evaluate(([u, t, p]) => window.nodo.join(u, t, { publish: p }),
    [env.wss, await token(identity, room), publish]);
  return { page, ctx, res };
}

test('livekit-client joins over wss:// and a second page decodes camera video', async () => {
  // The node's certificate verifies against the test CA (Node's TLS, not Chromium).
  const health = await httpsGet(`https://localhost:${env.httpsPort}/healthz`, readFileSync(env.certs.ca));
  assert.equal(health.status, 200);
  assert.match(health.headers['strict-transport-security'], /max-age=/);

  const a = await openPage('alice', 'tls-room', true);
  const b = await openPage('bob', 'tls-room', false);
  assert.equal(a.res.state, 'connected');
  assert.equal(b.res.state, 'connected');
  const t0 = Date.now();
  const s = await poll(async () => {
    const st = await b.page.evaluate(() => window.nodo.videoStats('alice'));
    return st && st.framesDecoded > 5 && st.playing ? st : null;
  }, { what: 'video from alice over wss' });
  console.log(`# bob decoded ${s.framesDecoded} frames (${s.frameWidth}x${s.frameHeight}) ${Date.now() - t0} ms after joining`);
  assert.equal(await a.page.evaluate(() => window.nodo.state()), 'connected');
  for (const p of [a, b]) await p.ctx.close();
});
