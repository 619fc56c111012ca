// One media client for the impairment harness (tests/e2e/impair.py), like
// tests/e2e/impair_client.py but livekit-client in headless Chromium. Run it
// inside a network namespace:
//
//   ip netns exec NS node tests/netns/impair-browser.mjs pub|sub WS_URL TOKEN \
//       [--width W --height H --fps F --max-bitrate B --no-simulcast]
//
// Same protocol as impair_client.py: JSON lines on stdout, `{"event":"ready"}`
// once media flows (pub: camera+mic published; sub: ten remote video frames
// rendered), then commands on stdin: `start` samples the stats and opens the
// window, `stop` samples them again, prints `{"event":"result", ...}` with the
// same keys as impair_client.py (libwebrtc's W3C getStats names mapped to its
// snake_case ones), leaves and exits.
//
// The publisher is Chromium's fake camera (its test pattern, at the requested
// size and rate) and fake microphone (a beep), VP8 with simulcast; audio
// without DTX and RED so concealment shows. The subscriber renders the video
// into a <video> element the size of the frame, without adaptive stream or
// dynacast (the harness measures the server's own adaptation), and counts the
// frames it presents with requestVideoFrameCallback.
import { appendFileSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { launch } from '../js/turnlib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const PAGE_URL = 'http://localhost/impair.html';
const bundle = readFileSync(join(here, '..', 'js', 'node_modules', 'livekit-client', 'dist', 'livekit-client.umd.js'));

function parseArgs(argv) {
  const [role, url, token, ...rest] = argv;
  if (!['pub', 'sub'].includes(role) || !url || !token) {
    process.stderr.write('usage: impair-browser.mjs pub|sub WS_URL TOKEN [--width W --height H --fps F --max-bitrate B --no-simulcast]\n');
    process.exit(2);
  }
  const o = { role, url, token, width: 640, height: 360, fps: 25, maxBitrate: 1_200_000, simulcast: true };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    if (a === '--no-simulcast') o.simulcast = false;
    else if (a === '--width') o.width = Number(rest[++i]);
    else if (a === '--height') o.height = Number(rest[++i]);
    else if (a === '--fps') o.fps = Number(rest[++i]);
    else if (a === '--max-bitrate') o.maxBitrate = Number(rest[++i]);
    else { process.stderr.write(`unknown argument ${a}\n`); process.exit(2); }
  }
  return o;
}

// Everything that runs in the page: joins, publishes or renders, samples stats.
const html = `<!doctype html><html><head><meta charset="utf-8"><title>nodo impairment client</title>
<script src="/livekit-client.umd.js"></script>
<style>body{margin:0} video{display:block;background:#000}</style></head><body><div id="v"></div><script>
const LK = window.LivekitClient;
// W3C getStats names -> impair_client.py's names.
const INBOUND_VIDEO = { framesDecoded: 'frames_decoded', keyFramesDecoded: 'key_frames_decoded',
  freezeCount: 'freeze_count', totalFreezesDuration: 'total_freeze_duration', nackCount: 'nack_count',
  pliCount: 'pli_count', firCount: 'fir_count', retransmittedPacketsReceived: 'retransmitted_packets_received',
  framesDropped: 'frames_dropped', packetsLost: 'packets_lost', packetsReceived: 'packets_received' };
const INBOUND_AUDIO = { concealedSamples: 'concealed_samples', silentConcealedSamples: 'silent_concealed_samples',
  totalSamplesReceived: 'total_samples_received', concealmentEvents: 'concealment_events',
  packetsLost: 'packets_lost', packetsReceived: 'packets_received' };
const OUTBOUND_VIDEO = { nackCount: 'nack_count', pliCount: 'pli_count', firCount: 'fir_count',
  retransmittedPacketsSent: 'retransmitted_packets_sent', framesEncoded: 'frames_encoded',
  keyFramesEncoded: 'key_frames_encoded', packetsSent: 'packets_sent', bytesSent: 'bytes_sent' };
const OUTBOUND_AUDIO = { nackCount: 'nack_count', packetsSent: 'packets_sent', bytesSent: 'bytes_sent' };

function sum(report, type, kind, names) {
  const out = Object.fromEntries(Object.values(names).map((n) => [n, 0]));
  report.forEach((s) => {
    if (s.type !== type || s.kind !== kind) return;
    for (const [w3c, n] of Object.entries(names)) out[n] += s[w3c] || 0;
  });
  return out;
}
function delta(a, b) {
  const out = {};
  for (const k of Object.keys(b)) out[k] = Math.round(((b[k] || 0) - ((a && a[k]) || 0)) * 1000) / 1000;
  return out;
}
const now = () => performance.now() / 1000;

window.impair = {
  room: null, tracks: {}, frames: [], missing: new Set(),
  async connect(url, token) {
    const room = new LK.Room({ adaptiveStream: false, dynacast: false });
    this.room = room;
    room.on(LK.RoomEvent.TrackSubscribed, (track) => this.subscribed(track));
    await room.connect(url, token, { autoSubscribe: true });
  },
  subscribed(track) {
    this.tracks[track.kind] = track;
    if (track.kind === 'audio') {
      // Played, so the jitter buffer is pulled (and conceals).
      const el = track.attach();
      document.getElementById('v').appendChild(el);
      return;
    }
    const el = document.createElement('video');
    el.autoplay = true; el.muted = true; el.playsInline = true;
    document.getElementById('v').appendChild(el);
    track.attach(el);
    // The element follows the frame's size, so nothing downstream prefers a layer.
    el.addEventListener('resize', () => { el.style.width = el.videoWidth + 'px'; el.style.height = el.videoHeight + 'px'; });
    const seen = (t, meta) => {
      this.frames.push([meta.presentationTime / 1000, meta.width]);
      if (this.frames.length > 20000) this.frames.splice(0, 10000);
      el.requestVideoFrameCallback(seen);
    };
    el.requestVideoFrameCallback(seen);
  },
  async publish(o) {
    const [audio, video] = await Promise.all([
      LK.createLocalAudioTrack({ echoCancellation: false, noiseSuppression: false, autoGainControl: false }),
      LK.createLocalVideoTrack({ resolution: { width: o.width, height: o.height, frameRate: o.fps } }),
    ]);
    this.tracks.video = video;
    this.tracks.audio = audio;
    await this.room.localParticipant.publishTrack(video, {
      source: LK.Track.Source.Camera, videoCodec: 'vp8', backupCodec: false, simulcast: o.simulcast,
      videoEncoding: { maxBitrate: o.maxBitrate, maxFramerate: o.fps },
    });
    await this.room.localParticipant.publishTrack(audio, {
      source: LK.Track.Source.Microphone, dtx: false, red: false,
    });
    const s = video.mediaStreamTrack.getSettings();
    return { width: s.width, height: s.height, frameRate: s.frameRate,
      codecs: video.sender.getParameters().codecs.map((c) => c.mimeType) };
  },
  async pubStats() {
    const vr = await this.tracks.video.sender.getStats();
    const ar = await this.tracks.audio.sender.getStats();
    const layers = [], perLayer = {};
    vr.forEach((s) => {
      if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
      layers.push([s.rid || '', s.frameWidth || 0]);
      perLayer[s.rid || '-'] = { frames_encoded: s.framesEncoded || 0, bytes_sent: s.bytesSent || 0,
        target_bitrate: s.targetBitrate || 0, limited_by: s.qualityLimitationReason || '' };
    });
    layers.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
    return { video: sum(vr, 'outbound-rtp', 'video', OUTBOUND_VIDEO),
      audio: sum(ar, 'outbound-rtp', 'audio', OUTBOUND_AUDIO), layers, per_layer: perLayer };
  },
  async subStats() {
    const out = { video: {}, audio: {} };
    if (this.tracks.video) out.video = sum(await this.tracks.video.receiver.getStats(), 'inbound-rtp', 'video', INBOUND_VIDEO);
    if (this.tracks.audio) out.audio = sum(await this.tracks.audio.receiver.getStats(), 'inbound-rtp', 'audio', INBOUND_AUDIO);
    return out;
  },
  async start() {
    if (this.role === 'pub') { this.before = await this.pubStats(); return; }
    this.t0 = now();
    this.before = await this.subStats();
  },
  async stop() {
    if (this.role === 'pub') {
      const a = await this.pubStats(), b = this.before;
      const per = {};
      for (const [rid, v] of Object.entries(a.per_layer)) {
        per[rid] = { ...(b ? delta(b.per_layer[rid] || {}, { frames_encoded: v.frames_encoded, bytes_sent: v.bytes_sent })
          : { frames_encoded: v.frames_encoded, bytes_sent: v.bytes_sent }),
          target_bitrate: v.target_bitrate, limited_by: v.limited_by };
      }
      return { event: 'result', role: 'pub', video: b ? delta(b.video, a.video) : a.video,
        audio: b ? delta(b.audio, a.audio) : a.audio, layers: a.layers, per_layer: per };
    }
    const end = now();
    const after = await this.subStats();
    const start = this.t0 ?? end;
    const frames = this.frames.filter(([t]) => t >= start && t <= end)
      .map(([t, w]) => [Math.round((t - start) * 10000) / 10000, w]);
    return { event: 'result', role: 'sub', seconds: Math.round((end - start) * 1000) / 1000, frames,
      video: delta(this.before?.video, after.video), audio: delta(this.before?.audio, after.audio) };
  },
  // For stderr: the publisher's view of the node's receiver reports, per layer.
  async remoteInbound() {
    const out = [];
    for (const kind of ['video', 'audio']) {
      const t = this.tracks[kind];
      if (!t || !t.sender) continue;
      const r = await t.sender.getStats();
      r.forEach((s) => {
        if (s.type !== 'remote-inbound-rtp') return;
        const local = r.get(s.localId);
        out.push({ kind, rid: local?.rid, packetsLost: s.packetsLost, fractionLost: s.fractionLost, rtt: s.roundTripTime });
      });
      r.forEach((s) => {
        if (s.type === 'outbound-rtp') out.push({ kind, rid: s.rid, codec: r.get(s.codecId)?.mimeType, packetsSent: s.packetsSent, rtx: s.retransmittedPacketsSent, nacks: s.nackCount });
        if (s.type === 'candidate-pair' && s.nominated) out.push({ pair: s.state, packetsSent: s.packetsSent, packetsReceived: s.packetsReceived, local: r.get(s.localCandidateId)?.protocol });
      });
    }
    return out;
  },
  async leave() { if (this.room) await this.room.disconnect(); },
};
</script></body></html>`;

const o = parseArgs(process.argv.slice(2));
const emit = (x) => process.stdout.write(JSON.stringify(x) + '\n');
const log = (...a) => {
  const line = a.join(' ') + '\n';
  process.stderr.write(line);
  if (process.env.IMPAIR_BROWSER_LOG) appendFileSync(process.env.IMPAIR_BROWSER_LOG, `[${o.role}] ${line}`);
};

// Chromium's fake camera runs at 20 fps unless told; it serves any size asked for.
const browser = await launch({ args: [`--use-fake-device-for-media-stream=fps=${o.fps}`] });
let code = 0;
try {
  const ctx = await browser.newContext({ viewport: { width: Math.max(1280, o.width), height: Math.max(720, o.height) } });
  await ctx.route('http://localhost/**', (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/impair.html') return route.fulfill({ contentType: 'text/html', body: html });
    if (path === '/livekit-client.umd.js') return route.fulfill({ contentType: 'text/javascript', body: bundle });
    return route.fulfill({ status: 404, body: '' });
  });
  const page = await ctx.newPage();
  page.on('console', (m) => { if (m.type() === 'error' || process.env.NODO_TEST_ECHO) log(`[page ${m.type()}]`, m.text()); });
  page.on('pageerror', (e) => log('[page error]', e.message));
  if (o.role === 'sub' && process.env.IMPAIR_BROWSER_NO_RED) {
    // A subscriber without RED: its answers lose the audio/red payload types.
    await page.addInitScript(() => {
      const create = RTCPeerConnection.prototype.createAnswer;
      RTCPeerConnection.prototype.createAnswer = async function (...args) {
        const a = await create.apply(this, args);
        const sdp = a.sdp.split('\r\nm=').map((sec, i) => {
          if (i === 0 || !sec.startsWith('audio')) return sec;
          const lines = sec.split('\r\n');
          const red = lines.filter((l) => /^a=rtpmap:\d+ red\//i.test(l)).map((l) => l.split(/[: ]/)[1]);
          const m = lines[0].split(' ');
          lines[0] = [...m.slice(0, 3), ...m.slice(3).filter((pt) => !red.includes(pt))].join(' ');
          return lines.filter((l) => !red.some((pt) => l.startsWith(`a=rtpmap:${pt} `) || l.startsWith(`a=fmtp:${pt} `) || l.startsWith(`a=rtcp-fb:${pt} `))).join('\r\n');
        }).join('\r\nm=');
        return { type: a.type, sdp };
      };
    });
  }
  await page.goto(PAGE_URL);
  await page.evaluate((role) => { window.impair.role = role; }, o.role);
  await page.evaluate(([u, t]) => window.impair.connect(u, t), [o.url, o.token]);
  if (o.role === 'pub') {
    const got = await page.evaluate((opts) => window.impair.publish(opts), o);
    log('camera settings', JSON.stringify(got));
  } else {
    await page.waitForFunction(() => window.impair.frames.length >= 10, null, { timeout: 40000, polling: 100 });
  }
  emit({ event: 'ready', role: o.role });

  const stdin = createInterface({ input: process.stdin });
  for await (const raw of stdin) {
    const line = raw.trim();
    if (line === 'start') await page.evaluate(() => window.impair.start());
    else if (line === 'stop') {
      emit(await page.evaluate(() => window.impair.stop()));
      if (o.role === 'pub') log('remote-inbound-rtp', JSON.stringify(await page.evaluate(() => window.impair.remoteInbound())));
      break;
    }
  }
  stdin.close();
  await page.evaluate(() => window.impair.leave()).catch(() => {});
} catch (e) {
  log('impair-browser:', e?.stack || e);
  code = 1;
} finally {
  await browser.close().catch(() => {});
}
process.exit(code);
