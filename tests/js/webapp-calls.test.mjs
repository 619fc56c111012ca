// The web app's calls, through the UI in two browser contexts: alice calls bob
// (ringing, incoming screen, both see and hear each other, hang up), the
// declined and the missed paths (history and badge), and a call that reaches
// bob's closed tab as a push through the Chrome DevTools Protocol.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { poll } from './harness.mjs';
import { DESKTOP, launch, PHONE, shot, signUp, startWebNode, unnamedControls, userContext } from './webapp.mjs';

const RING_SECS = 8;
let node;
let browser;
let alice;
let bob;
const tag = Date.now().toString(36).slice(-5);

// Every RTCPeerConnection the page makes, to read its inbound-rtp stats.
const trackPeerConnections = () => {
  const Original = window.RTCPeerConnection;
  window.__pcs = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  };
};

async function user(name, viewport, init) {
  const u = await userContext(browser, node, { viewport });
  await u.context.addInitScript(trackPeerConnections);
  if (init) await u.context.addInitScript(init);
  await signUp(u.page, `${name.toLowerCase()}${tag}`, { name });
  return u;
}

/** Frames the page's remote video elements decoded. */
const remoteFrames = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('video[data-remote="true"]')].reduce((n, v) => n + (v.getVideoPlaybackQuality?.().totalVideoFrames || 0), 0),
  );

/** Audio bytes received over every peer connection of the page. */
const audioBytes = (page) =>
  page.evaluate(async () => {
    let n = 0;
    for (const pc of window.__pcs || []) {
      if (pc.connectionState === 'closed') continue;
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.bytesReceived || 0;
      });
    }
    return n;
  });

async function seesAndHears(page, who) {
  await poll(async () => (await remoteFrames(page)) > 0, { timeout: 30000, what: `${who} decodes video frames` });
  const first = await poll(async () => (await audioBytes(page)) || false, { timeout: 20000, what: `${who} receives audio` });
  await poll(async () => (await audioBytes(page)) > first + 1000, { timeout: 15000, what: `${who}'s received audio grows` });
}

const stage = (page) => page.locator('.stage');

before(async () => {
  node = await startWebNode([], { NODO_CALLS__RING_TIMEOUT_SECS: String(RING_SECS), NODO_CALLS__RINGS_PER_MINUTE_PER_CALLEE: '30' });
  browser = await launch();
  alice = await user('Alice', DESKTOP);
  bob = await user('Bob', PHONE);
  // Both see each other online before calling.
  for (const [u, other] of [[alice, 'Bob'], [bob, 'Alice']]) {
    await u.page.goto('/#/people');
    await u.page.getByRole('listitem').filter({ hasText: other }).filter({ hasText: 'Online' }).waitFor();
  }
});

after(async () => {
  await browser?.close();
  await node?.stop();
});

test('alice video-calls bob: ringing, incoming screen, both see and hear each other, hang up', async () => {
  await alice.page.getByRole('button', { name: 'Video call Bob' }).click();
  const ringing = alice.page.getByRole('dialog', { name: 'Calling Bob' });
  await ringing.waitFor();
  await ringing.getByRole('status').filter({ hasText: 'Ringing…' }).waitFor();
  await shot(alice.page, 'call-ringing-desktop');

  const incoming = bob.page.getByRole('alertdialog', { name: 'Incoming video call from Alice' });
  await incoming.waitFor();
  const accept = incoming.getByRole('button', { name: 'Accept' });
  await poll(() => accept.evaluate((b) => document.activeElement === b), { what: 'Accept is focused' });
  await shot(bob.page, 'call-incoming-phone');
  await accept.click();

  await alice.page.getByRole('dialog', { name: 'Bob' }).waitFor();
  await bob.page.getByRole('dialog', { name: 'Alice' }).waitFor();
  await ringing.waitFor({ state: 'detached' });
  await Promise.all([seesAndHears(alice.page, 'alice'), seesAndHears(bob.page, 'bob')]);
  for (const { page } of [alice, bob]) {
    assert.deepEqual(await unnamedControls(page), []);
    for (const name of ['Mute microphone', 'Turn camera off', 'Choose devices', 'Leave call']) {
      await page.getByRole('button', { name }).waitFor();
    }
    await page.locator('.tile .quality[aria-label^="Connection:"]').first().waitFor();
  }
  // The timer runs.
  await alice.page.getByRole('timer').filter({ hasText: /^0:0[1-9]|^0:[1-5]\d/ }).waitFor();
  await shot(alice.page, 'call-grid-desktop');
  await shot(bob.page, 'call-grid-phone');

  // Muting shows on the other side.
  await alice.page.getByRole('button', { name: 'Mute microphone' }).click();
  await alice.page.getByRole('button', { name: 'Unmute microphone' }).waitFor();
  await bob.page.getByRole('group', { name: 'Alice', exact: true }).getByRole('img', { name: 'Microphone off' }).waitFor();
  await alice.page.getByRole('button', { name: 'Unmute microphone' }).click();
  await bob.page.getByRole('group', { name: 'Alice', exact: true }).getByRole('img', { name: 'Microphone off' }).waitFor({ state: 'detached' });

  // The device picker lists the fake devices.
  await bob.page.getByRole('button', { name: 'Choose devices' }).click();
  const devices = bob.page.getByRole('dialog', { name: 'Devices' });
  await devices.getByLabel('Camera').waitFor();
  await poll(async () => (await devices.getByLabel('Camera').locator('option').count()) > 0, { what: 'cameras listed' });
  await devices.getByRole('button', { name: 'Done' }).click();

  // Alice hangs up: both return where they were.
  await alice.page.getByRole('button', { name: 'Leave call' }).click();
  await stage(alice.page).waitFor({ state: 'detached' });
  assert.match(alice.page.url(), /#\/people$/);
  await bob.page.getByText('Alice hung up.').waitFor();
  await stage(bob.page).waitFor({ state: 'detached', timeout: 10000 });
  await bob.page.getByRole('heading', { name: 'People' }).waitFor();
});

test('bob declines: alice is told', async () => {
  await alice.page.getByRole('button', { name: 'Audio call Bob' }).click();
  await alice.page.getByRole('dialog', { name: 'Calling Bob' }).waitFor();
  const incoming = bob.page.getByRole('alertdialog', { name: 'Incoming audio call from Alice' });
  await incoming.getByRole('button', { name: 'Decline' }).click();
  await incoming.waitFor({ state: 'detached' });
  await alice.page.getByRole('heading', { name: 'Declined' }).waitFor();
  await alice.page.getByRole('alert').filter({ hasText: 'Bob declined the call.' }).waitFor();
  await alice.page.getByRole('button', { name: 'Close' }).click();
  await alice.page.getByRole('heading', { name: 'Declined' }).waitFor({ state: 'detached' });
});

test('bob has two tabs: both ring, he answers in one, the other stops ringing and says so', async () => {
  const second = await bob.context.newPage();
  await second.goto('/#/people');
  await second.getByRole('navigation', { name: 'Main' }).waitFor();
  await alice.page.getByRole('button', { name: 'Audio call Bob' }).click();
  const name = 'Incoming audio call from Alice';
  const here = bob.page.getByRole('alertdialog', { name });
  const there = second.getByRole('alertdialog', { name });
  await here.waitFor();
  await there.waitFor();
  await here.getByRole('button', { name: 'Accept' }).click();
  await there.waitFor({ state: 'detached' });
  await second.getByText('Answered on another device.').waitFor();
  await second.close();
  await stage(alice.page).waitFor();
  await stage(bob.page).waitFor();
  await alice.page.getByRole('button', { name: 'Leave call' }).click();
  await stage(alice.page).waitFor({ state: 'detached' });
  await bob.page.getByText('Alice hung up.').waitFor();
  await stage(bob.page).waitFor({ state: 'detached', timeout: 10000 });
});

test('nobody answers: alice sees "No answer", bob gets a missed call in the history and the badge', async () => {
  await alice.page.getByRole('button', { name: 'Video call Bob' }).click();
  await bob.page.getByRole('alertdialog', { name: 'Incoming video call from Alice' }).waitFor();
  await alice.page.getByRole('heading', { name: 'No answer' }).waitFor({ timeout: (RING_SECS + 10) * 1000 });
  await alice.page.getByText('Bob did not answer.').waitFor();
  await bob.page.getByRole('alertdialog').waitFor({ state: 'detached' });
  await bob.page.getByRole('link', { name: 'Calls (1)' }).waitFor();
  await alice.page.getByRole('button', { name: 'Close' }).click();

  await bob.page.setViewportSize(DESKTOP);
  await bob.page.getByRole('link', { name: 'Calls (1)' }).click();
  const history = bob.page.getByRole('list', { name: 'Call history' });
  const missed = history.locator('li.missed').first();
  await missed.waitFor();
  assert.match(await missed.innerText(), /Alice[\s\S]*Missed/);
  await missed.getByRole('button', { name: 'Video call Alice back' }).waitFor();
  // Earlier calls: two answered (with a duration) and the declined one.
  assert.equal(await history.getByRole('listitem').count(), 4);
  await history.getByText('Declined').waitFor();
  assert.equal(await history.getByText(/^\d+:\d\d$/).count(), 2);
  await bob.page.getByRole('link', { name: 'Calls', exact: true }).waitFor();
  assert.deepEqual(await unnamedControls(bob.page), []);
  await shot(bob.page, 'calls-history-desktop');
  await bob.page.setViewportSize(PHONE);
  await bob.page.goto('/#/people');
});

test('a push reaches bob\'s closed tab: the notification rings and its Accept action opens the call', async () => {
  // Bob closes the app: only a page of the same origin that is not the app stays.
  const other = await bob.context.newPage();
  await other.goto('/favicon.svg');
  await bob.page.close();
  // Bob's service worker (registered at sign-in), seen through the DevTools Protocol.
  const cdp = await bob.context.newCDPSession(other);
  const registrations = [];
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => registrations.push(...e.registrations));
  await cdp.send('ServiceWorker.enable');
  const reg = await poll(() => registrations.find((r) => !r.isDeleted && r.scopeURL.startsWith(node.httpUrl)), { what: 'the service worker registration' });
  await alice.page.getByRole('listitem').filter({ hasText: 'Bob' }).filter({ hasText: 'Offline' }).waitFor();

  await alice.page.getByRole('button', { name: 'Video call Bob' }).click();
  const ringing = alice.page.getByRole('dialog', { name: 'Calling Bob' });
  await ringing.getByText('Bob is offline — ringing their devices through notifications.').waitFor();

  // The node's push payload for this ringing call, delivered to bob's worker.
  const token = await other.evaluate(() => JSON.parse(localStorage.getItem('nodo.session')).token);
  const calls = await (await fetch(`${node.httpUrl}/api/calls?limit=1`, { headers: { authorization: `Bearer ${token}` } })).json();
  const call = calls.calls[0];
  assert.equal(call.status, 'ringing');
  const payload = { type: 'incoming_call', callId: call.id, callerId: call.fromUserId, callerName: 'Alice', callType: 'video', roomName: call.roomName };
  await cdp.send('ServiceWorker.deliverPushMessage', { origin: new URL(reg.scopeURL).origin, registrationId: reg.registrationId, data: JSON.stringify(payload) });
  const shown = await poll(
    () =>
      other.evaluate(async () =>
        (await (await navigator.serviceWorker.getRegistration()).getNotifications()).map((n) => ({
          title: n.title,
          body: n.body,
          tag: n.tag,
          actions: n.actions.map((a) => [a.action, a.title]),
          data: n.data,
        })),
      ).then((l) => l.length && l),
    { what: 'the notification' },
  );
  assert.equal(shown.length, 1);
  assert.equal(shown[0].title, 'Incoming video call');
  assert.equal(shown[0].body, 'Alice');
  assert.deepEqual(shown[0].actions, [['accept', 'Accept'], ['reject', 'Decline']]);
  assert.equal(shown[0].data.url, `/?call=${call.id}`);

  // Accept: with no app tab open, the worker opens data.url + '&action=accept'
  // (sw.js target(); notificationclick cannot be fired through CDP), so the
  // test opens that address in bob's browser.
  await other.goto(`${shown[0].data.url}&action=accept`);
  bob.page = other;
  await bob.page.getByRole('dialog', { name: 'Alice' }).waitFor();
  await alice.page.getByRole('dialog', { name: 'Bob' }).waitFor();
  await Promise.all([seesAndHears(alice.page, 'alice'), seesAndHears(bob.page, 'bob')]);
  // The app closed the ringing notification once answered.
  await poll(async () => (await other.evaluate(async () => (await (await navigator.serviceWorker.getRegistration()).getNotifications()).length)) === 0, { what: 'the notification closed' });
  // The address bar is clean again (no call link left to reload).
  assert.doesNotMatch(bob.page.url(), /call=/);

  await bob.page.getByRole('button', { name: 'Leave call' }).click();
  await stage(bob.page).waitFor({ state: 'detached' });
  await alice.page.getByText('Bob hung up.').waitFor();

  // The same link again: the call is over, in plain words.
  await bob.page.goto(`/?call=${call.id}&action=accept`);
  await bob.page.getByRole('heading', { name: 'That call is no longer ringing.' }).waitFor();
  await bob.page.getByRole('button', { name: 'Close' }).click();
  await cdp.detach().catch(() => {});
});

test('carol refused her camera: the call goes on with audio only, and she is told in plain words', async () => {
  // What a browser does when the user blocked the camera for the site.
  const denyCamera = () => {
    const md = navigator.mediaDevices;
    const original = md.getUserMedia.bind(md);
    md.getUserMedia = (c) => (c?.video ? Promise.reject(new DOMException('Permission denied', 'NotAllowedError')) : original(c));
  };
  const carol = await user('Carol', DESKTOP, denyCamera);
  await alice.page.getByRole('listitem').filter({ hasText: 'Carol' }).filter({ hasText: 'Online' }).waitFor();
  await alice.page.getByRole('button', { name: 'Video call Carol' }).click();
  await carol.page.getByRole('alertdialog', { name: 'Incoming video call from Alice' }).getByRole('button', { name: 'Accept' }).click();
  const carolStage = carol.page.getByRole('dialog', { name: 'Alice' });
  await carolStage.getByRole('alert').filter({ hasText: 'Your camera is blocked, so the call goes on with audio only.' }).waitFor();
  await carolStage.getByRole('button', { name: 'Turn camera on' }).waitFor();
  await carolStage.getByRole('button', { name: 'Mute microphone' }).waitFor();
  // Alice sees carol's picture instead of video, hears her, and carol sees alice.
  const tile = alice.page.getByRole('dialog', { name: 'Carol' }).getByRole('group', { name: 'Carol', exact: true });
  await tile.waitFor();
  assert.equal(await tile.locator('video').count(), 0);
  const first = await poll(async () => (await audioBytes(alice.page)) || false, { what: 'alice receives carol\'s audio' });
  await poll(async () => (await audioBytes(alice.page)) > first + 1000, { what: 'alice keeps receiving audio' });
  await poll(async () => (await remoteFrames(carol.page)) > 0, { what: 'carol sees alice' });
  await carolStage.getByRole('button', { name: 'Leave call' }).click();
  await alice.page.getByText('Carol hung up.').waitFor();
  await carol.context.close();
});
