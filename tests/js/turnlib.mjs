// Helpers for the TURN tests: a test CA (openssl), an NSS database that makes
// Chromium trust it (certutil, Debian's libnss3-tools), Chromium launched with
// that profile, and a page (served by Playwright itself, at http://localhost,
// a secure context) that joins with livekit-client and reports what ICE chose.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const PAGE_URL = 'http://localhost/turn.html';

// A CA and a server certificate for `names`, in `dir`.
export function makeCa(dir, names = ['nodo.test']) {
  mkdirSync(dir, { recursive: true });
  const f = (n) => join(dir, n);
  const ssl = (...a) => execFileSync('openssl', a, { stdio: 'pipe' });
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=Nodo Test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f('server.key'), '-out', f('server.csr'), '-subj', `/CN=${names[0]}`);
  writeFileSync(f('ext.cnf'), `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}\n`
    + 'extendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n');
  ssl('x509', '-req', '-in', f('server.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'),
    '-CAcreateserial', '-out', f('server.pem'), '-days', '2', '-extfile', f('ext.cnf'));
  return { ca: f('ca.pem'), cert: f('server.pem'), key: f('server.key') };
}

// A fresh HOME whose NSS database trusts `caPem` for TLS servers: Chromium on
// Linux reads $HOME/.pki/nssdb for locally added roots, and uses it for
// HTTPS, WSS and TURN/TLS alike.
export function trustingHome(dir, caPem) {
  const db = join(dir, '.pki', 'nssdb');
  mkdirSync(db, { recursive: true });
  try {
    execFileSync('certutil', ['-H'], { stdio: 'ignore' });
  } catch (e) {
    if (e.code === 'ENOENT') throw new Error('certutil not found: install Debian\'s libnss3-tools');
  }
  execFileSync('certutil', ['-d', `sql:${db}`, '-N', '--empty-password'], { stdio: 'pipe' });
  execFileSync('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'nodo-test', '-i', caPem], { stdio: 'pipe' });
  return dir;
}

// The harness's Chromium plus `args` and `env` (HOME for the NSS db). The
// page is served by Playwright (no address of its own, so "public"): let it
// reach the node on loopback or a private address.
export async function launch({ args = [], env = {} } = {}) {
  return await launchBrowser(['--disable-features=LocalNetworkAccessChecks', ...args], env);
}

const bundle = readFileSync(join(here, 'node_modules', 'livekit-client', 'dist', 'livekit-client.umd.js'));

const html = `<!doctype html><html><head><meta charset="utf-8"><title>nodo turn test</title>
<script src="/livekit-client.umd.js"></script></head><body><div id="v"></div><script>
const LK = window.LivekitClient;
// Keeps only the ICE server URLs matching a pattern, so a client uses exactly
// the TURN server (and credentials) handed out in the join answer, minus
// the transports a test rules out. livekit-client builds its
// RTCPeerConnections from the global at connect time.
function onlyUrls(pattern) {
  const re = new RegExp(pattern);
  const filter = (cfg) => cfg && cfg.iceServers ? { ...cfg, iceServers: cfg.iceServers
    .map((s) => ({ ...s, urls: [].concat(s.urls).filter((u) => re.test(u)) }))
    .filter((s) => s.urls.length) } : cfg;
  const Base = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Base {
    constructor(cfg, ...rest) { super(filter(cfg), ...rest); }
    setConfiguration(cfg) { return super.setConfiguration(filter(cfg)); }
  };
}
window.turn = {
  room: null, t0: 0, firstFrame: {}, elements: {}, pcs: [],
  async join(url, token, opts = {}) {
    if (opts.onlyUrls) onlyUrls(opts.onlyUrls);
    const Base = window.RTCPeerConnection, pcs = this.pcs;
    window.RTCPeerConnection = class extends Base {
      constructor(...a) { super(...a); pcs.push(this); }
    };
    const room = new LK.Room({ adaptiveStream: false, dynacast: false });
    this.room = room;
    room.on(LK.RoomEvent.TrackSubscribed, (track, pub, p) => {
      const el = track.attach();
      el.muted = true;
      document.getElementById('v').appendChild(el);
      this.elements[p.identity + ':' + track.kind] = { el, track };
      if (track.kind === 'video') {
        const mark = () => { this.firstFrame[p.identity] ??= performance.now(); };
        el.requestVideoFrameCallback(mark);
      }
    });
    this.t0 = performance.now();
    await room.connect(url, token, opts.policy ? { rtcConfig: { iceTransportPolicy: opts.policy } } : {});
    if (opts.publish) await room.localParticipant.enableCameraAndMicrophone();
    return { state: room.state, sid: room.localParticipant.sid };
  },
  // ms from the start of room.connect() to the first decoded frame from identity.
  firstFrameMs(identity) {
    const t = this.firstFrame[identity];
    return t === undefined ? null : Math.round(t - this.t0);
  },
  async inbound(identity) {
    const out = {};
    for (const kind of ['audio', 'video']) {
      const e = this.elements[identity + ':' + kind];
      if (!e) continue;
      (await e.track.receiver.getStats()).forEach((s) => {
        if (s.type === 'inbound-rtp') out[kind] = { packets: s.packetsReceived || 0, frames: s.framesDecoded || 0, energy: s.totalAudioEnergy || 0 };
      });
    }
    return out;
  },
  // For each peer connection with a selected pair: its local candidate.
  async selected() {
    const out = [];
    for (const pc of this.pcs) {
      if (pc.connectionState === 'closed') continue;
      const r = await pc.getStats();
      r.forEach((s) => {
        if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
        const pair = r.get(s.selectedCandidatePairId);
        const local = r.get(pair.localCandidateId), remote = r.get(pair.remoteCandidateId);
        out.push({ type: local.candidateType, relayProtocol: local.relayProtocol || null, url: local.url || null,
          protocol: local.protocol, remote: remote.address + ':' + remote.port, bytesReceived: pair.bytesReceived });
      });
    }
    return out;
  },
  iceServers() {
    return this.pcs.map((pc) => pc.getConfiguration().iceServers.map((s) => [].concat(s.urls)).flat());
  },
};
</script></body></html>`;

// A page (in its own browser context) ready to join.
export async function openPage(browser, label = 'page') {
  const ctx = await browser.newContext();
  await ctx.route('http://localhost/**', (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/turn.html') return route.fulfill({ contentType: 'text/html', body: html });
    if (path === '/livekit-client.umd.js') return route.fulfill({ contentType: 'text/javascript', body: bundle });
    return route.fulfill({ status: 404, body: '' });
  });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (process.env.NODO_TEST_ECHO) console.log(`[${label}]`, m.text()); });
  await page.goto(PAGE_URL);
  return { page, ctx, close: () => ctx.close() };
}

// The `name=addr` pairs of the node's listening line.
export function listeners(node) {
  const line = node.lines.find((l) => l.includes('nodo listening'));
  return Object.fromEntries([...line.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
}

export const port = (addr) => Number(addr.split(':').pop());
export const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
