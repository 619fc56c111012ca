// Hostile account clients (issue 10, items 2 and 4): password guessing is
// slowed down, then locked out (429 with Retry-After); a flood of password
// checks is bounded by the hash pool; registration floods are refused per
// client address; usernames are one account whatever their case or Unicode
// form; a room token is not a session and a session token joins no room;
// logging out, logging out everywhere and changing the password end
// sessions and disconnect their sockets at once; `[accounts] mode` keeps app
// identities and local accounts apart. After each case a normal user is
// still served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { AccessToken, RoomServiceClient } from 'livekit-server-sdk';
import { startNode, token as roomToken } from './harness.mjs';
import { register, connect, connectError, next, ack, sleep } from './chatlib.mjs';
import { stillServes, livekitJoin } from './stillserves.mjs';

const PASSWORD = 'correct horse battery';
let node;
before(async () => {
  node = await startNode([], {
    NODO_ACCOUNTS__LOGIN_FREE_FAILURES: '3',
    NODO_ACCOUNTS__LOGIN_LOCKOUT_FAILURES: '5',
    NODO_ACCOUNTS__LOCKOUT_SECS: '600',
  });
});
after(async () => { await node?.stop(); });

// A JSON request, with extra headers when asked; the answer's status, body and headers.
async function api(n, method, path, { token, body, headers = {} } = {}) {
  const h = { ...headers };
  if (token) h.authorization = `Bearer ${token}`;
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(n.httpUrl + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, body: json, text, headers: res.headers };
}

const suffix = () => Date.now().toString(36) + Math.floor(Math.random() * 1e6).toString(36);
const login = (n, username, password, headers = {}) => api(n, 'POST', '/api/auth/login', { body: { username, password }, headers });

async function appToken(identity, name = identity) {
  return await new AccessToken('devkey', 'secret', { identity, name, ttl: '1h' }).toJwt();
}

function assertRetryAfter(r, min, max) {
  assert.equal(r.status, 429, r.text);
  assert.equal(r.body.error, 'rate_limited');
  const after = Number(r.headers.get('retry-after'));
  assert.ok(after >= min && after <= max, `Retry-After ${after} not in [${min}, ${max}]`);
  return after;
}

// A socket's disconnect, with its reason.
const disconnected = (s, timeout = 3000) => new Promise((resolve, reject) => {
  if (!s.connected) { resolve('already'); return; }
  const t = setTimeout(() => reject(new Error('the socket stayed connected')), timeout);
  s.once('disconnect', (reason) => { clearTimeout(t); resolve(reason); });
});

test('password guessing backs off, then locks the username, in every spelling of it', async () => {
  const victim = await register(node, 'victim');
  const name = victim.user.username;
  // Three free failures (this node: 3 free, locked at 5), spelled in several cases.
  for (const spelling of [name, name.toUpperCase(), name]) {
    const r = await login(node, spelling, 'wrong password 1');
    assert.equal(r.status, 401, r.text);
    assert.equal(r.body.message, 'wrong username or password');
  }
  // The fourth must wait a second: refused without a hash being computed.
  assertRetryAfter(await login(node, name.toUpperCase(), 'wrong password 2'), 1, 1);
  await sleep(1100);
  assert.equal((await login(node, name, 'wrong password 3')).status, 401);
  // Then two seconds.
  assertRetryAfter(await login(node, name, 'wrong password 4'), 1, 2);
  await sleep(2100);
  assert.equal((await login(node, name, 'wrong password 5')).status, 401);
  // Five failures: locked for lockout_secs, even with the right password.
  const r = await login(node, name, PASSWORD);
  const after = assertRetryAfter(r, 590, 600);
  assert.match(r.body.message, /failed logins for this username/);
  assert.ok(after > 0);
  // The victim's open session is untouched, and another user signs in fine.
  assert.equal((await api(node, 'GET', '/api/users/me', { token: victim.token })).status, 200);
  const other = await register(node, 'other');
  assert.equal((await login(node, other.user.username, PASSWORD)).status, 200);
  // An unknown name costs a guess too (no probing of which names exist).
  const ghost = `ghost${suffix()}`;
  for (let i = 0; i < 3; i++) assert.equal((await login(node, ghost, 'nope nope nope')).status, 401);
  assertRetryAfter(await login(node, ghost, 'nope nope nope'), 1, 1);
  await stillServes(node);
});

test('a flood of password checks is bounded by the hash pool, not queued without end', async () => {
  const pool = await startNode([], {
    NODO_ACCOUNTS__HASH_CONCURRENCY: '1',
    NODO_ACCOUNTS__HASH_QUEUE: '4',
    NODO_ACCOUNTS__IP_FREE_FAILURES: '1000',
    NODO_ACCOUNTS__IP_LOCKOUT_FAILURES: '2000',
  });
  try {
    const user = await register(pool, 'pool');
    const started = Date.now();
    // 120 guesses at once, each for another name (no per-name backoff).
    const answers = await Promise.all(Array.from({ length: 120 }, (_, i) => login(pool, `flood${i}x${suffix()}`, 'wrong password')));
    const elapsed = Date.now() - started;
    const statuses = answers.map((a) => a.status);
    const busy = answers.filter((a) => a.status === 429);
    const checked = statuses.filter((s) => s === 401).length;
    assert.ok(statuses.every((s) => s === 401 || s === 429), `unexpected: ${[...new Set(statuses)]}`);
    // One hasher and four waiting: most are refused at once instead of queueing.
    assert.ok(busy.length >= 80, `only ${busy.length} of 120 refused; ${checked} checked`);
    for (const b of busy) {
      assert.match(b.body.message, /password checks at once/);
      assert.equal(b.headers.get('retry-after'), '1');
    }
    console.log(`# hash pool: 120 concurrent logins, ${checked} checked, ${busy.length} refused with 429 in ${elapsed} ms`);
    // Right after, a real login is served.
    await sleep(500);
    assert.equal((await login(pool, user.user.username, PASSWORD)).status, 200);
    await stillServes(pool);
  } finally {
    await pool.stop();
  }
});

test('registration floods are refused per client address; X-Forwarded-For only from a trusted proxy', async () => {
  const reg = await startNode([], {
    NODO_ACCOUNTS__REGISTER_RATE__BURST: '5',
    NODO_ACCOUNTS__TRUSTED_PROXIES: '127.0.0.1',
  });
  try {
    const signup = (username, xff) => api(reg, 'POST', '/api/auth/register', {
      body: { username, password: PASSWORD }, headers: xff ? { 'x-forwarded-for': xff } : {},
    });
    // One client behind the (trusted) proxy: five accounts, then 429.
    const answers = [];
    for (let i = 0; i < 8; i++) answers.push(await signup(`flood${i}${suffix()}`, '198.51.100.7'));
    assert.deepEqual(answers.map((a) => a.status), [201, 201, 201, 201, 201, 429, 429, 429]);
    assertRetryAfter(answers[5], 60, 100);
    assert.match(answers[5].body.message, /registrations from this address/);
    // What the client itself puts left of the proxy's entry changes nothing.
    assert.equal((await signup(`spoof${suffix()}`, '203.0.113.9, 198.51.100.7')).status, 429);
    // Another client behind the proxy has its own budget.
    assert.equal((await signup(`other${suffix()}`, '198.51.100.8')).status, 201);
    await stillServes(reg);
  } finally {
    await reg.stop();
  }
  // Without trusted proxies the header is ignored: spoofing it buys no new budget.
  const direct = await startNode([], { NODO_ACCOUNTS__REGISTER_RATE__BURST: '4' });
  try {
    await stillServes(direct); // registers its two accounts: 2 of the 4
    const statuses = [];
    for (let i = 0; i < 4; i++) {
      const r = await api(direct, 'POST', '/api/auth/register', {
        body: { username: `spoof${i}${suffix()}`, password: PASSWORD }, headers: { 'x-forwarded-for': `198.51.100.${i + 20}` },
      });
      statuses.push(r.status);
    }
    assert.deepEqual(statuses, [201, 201, 429, 429]);
    await stillServes(direct);
  } finally {
    await direct.stop();
  }
});

test('usernames are one account whatever their case or Unicode form; look-alikes are refused', async () => {
  const s = suffix();
  const first = await api(node, 'POST', '/api/auth/register', { body: { username: `Ana${s}`, password: PASSWORD } });
  assert.equal(first.status, 201, first.text);
  const fullwidth = [...`ana${s}`].map((c) => String.fromCodePoint(c.codePointAt(0) + 0xfee0)).join('');
  for (const variant of [`ana${s}`, `ANA${s}`, `aNa${s}`, fullwidth]) {
    const r = await api(node, 'POST', '/api/auth/register', { body: { username: variant, password: PASSWORD } });
    assert.equal(r.status, 409, `${variant}: ${r.text}`);
    assert.equal(r.body.message, 'username is already taken');
  }
  for (const bad of [`ana${s}\u200b`, `a\u200dna${s}`, `\u0430na${s}`, `ana${s}\u202e`, `ana ${s}`, `ana\u3000${s}`, `ana\u0007${s}`]) {
    const r = await api(node, 'POST', '/api/auth/register', { body: { username: bad, password: PASSWORD } });
    assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
    assert.match(r.body.message, /username must be/);
  }
  // Names in other scripts are fine, and keep their spelling.
  const maria = await api(node, 'POST', '/api/auth/register', { body: { username: `María${s}`, password: PASSWORD } });
  assert.equal(maria.status, 201, maria.text);
  assert.equal(maria.body.user.username, `María${s}`);
  // Any spelling signs in to the one account.
  const r = await login(node, `ANA${s}`, PASSWORD);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.user.id, first.body.user.id);
  await stillServes(node);
});

test('a room token is not a session, and a session token joins no room', async () => {
  const ana = await register(node, 'tok');
  // A room token the app minted (as in /rtc?access_token= URLs proxies log).
  const room = await roomToken(ana.id, `r-${suffix()}`);
  let r = await api(node, 'GET', '/api/users/me', { token: room });
  assert.equal(r.status, 401);
  assert.match(r.body.message, /not a session/);
  assert.match(await connectError(node, { token: room }), /not a session/);
  // One the node handed out for a meeting.
  const meeting = await api(node, 'POST', '/api/rooms', { token: ana.token, body: { name: 'm' } });
  assert.ok(meeting.status < 300, meeting.text);
  const join = await api(node, 'POST', `/api/rooms/${meeting.body.id}/join`, { token: ana.token });
  assert.equal(join.status, 200, join.text);
  assert.equal((await api(node, 'GET', '/api/chats', { token: join.body.token })).status, 401);
  assert.match(await connectError(node, { token: join.body.token }), /not a session/);
  // The session token on the LiveKit side: /rtc and Twirp refuse it.
  r = await api(node, 'GET', `/rtc/validate?access_token=${ana.token}`);
  assert.equal(r.status, 401);
  assert.match(r.text, /session token/);
  r = await api(node, 'POST', '/twirp/livekit.RoomService/ListRooms', { token: ana.token, body: {} });
  assert.equal(r.status, 401, r.text);
  // An API token still works there, as in LiveKit.
  const svc = new RoomServiceClient(node.httpUrl, 'devkey', 'secret');
  assert.ok(Array.isArray(await svc.listRooms()));
  await stillServes(node);
});

test('logging out ends the session and disconnects its sockets; logout-all ends every session', async () => {
  const bob = await register(node, 'bob');
  const t1 = (await login(node, bob.user.username, PASSWORD)).body.token;
  const t2 = (await login(node, bob.user.username, PASSWORD)).body.token;
  const s1 = await connect(node, { token: t1 });
  const s1b = await connect(node, { token: t1 });
  const s2 = await connect(node, { token: t2 });
  const gone1 = Promise.all([disconnected(s1), disconnected(s1b)]);
  let r = await api(node, 'POST', '/api/auth/logout', { token: t1 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(await gone1, ['io server disconnect', 'io server disconnect']);
  assert.ok(s2.connected, 'another session was disconnected');
  r = await api(node, 'GET', '/api/users/me', { token: t1 });
  assert.equal(r.status, 401);
  assert.match(r.body.message, /session has ended/);
  assert.match(await connectError(node, { token: t1 }), /session has ended/);
  // The other session still works over the socket.
  await sleep(200);
  assert.ok(s2.connected, 'another session was disconnected');
  // Everywhere: the remaining sessions (t2, and the registration's) end.
  const gone2 = disconnected(s2);
  r = await api(node, 'POST', '/api/auth/logout-all', { token: t2 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.ended, 2);
  assert.equal(await gone2, 'io server disconnect');
  for (const t of [t2, bob.token]) assert.equal((await api(node, 'GET', '/api/users/me', { token: t })).status, 401);
  // Signing in again works.
  assert.equal((await login(node, bob.user.username, PASSWORD)).status, 200);
  await stillServes(node);
});

test('changing the password needs the current one and ends the other sessions', async () => {
  const carol = await register(node, 'carol');
  const other = (await login(node, carol.user.username, PASSWORD)).body.token;
  const s = await connect(node, { token: other });
  let r = await api(node, 'POST', '/api/auth/password', { token: carol.token, body: { currentPassword: 'not it at all', newPassword: 'a new long password' } });
  assert.equal(r.status, 401, r.text);
  assert.ok(s.connected);
  const gone = disconnected(s);
  r = await api(node, 'POST', '/api/auth/password', { token: carol.token, body: { currentPassword: PASSWORD, newPassword: 'a new long password' } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.ended, 1);
  assert.equal(await gone, 'io server disconnect');
  assert.equal((await api(node, 'GET', '/api/users/me', { token: other })).status, 401);
  assert.equal((await api(node, 'GET', '/api/users/me', { token: carol.token })).status, 200);
  assert.equal((await login(node, carol.user.username, PASSWORD)).status, 401);
  assert.equal((await login(node, carol.user.username, 'a new long password')).status, 200);
  // An app-minted token has no session to end here.
  r = await api(node, 'POST', '/api/auth/logout', { token: await appToken(`app${suffix()}`) });
  assert.equal(r.status, 403, r.text);
  await stillServes(node);
});

test('mode both: an app token for a local name is refused, and an app identity\'s name cannot be registered', async () => {
  const dave = await register(node, 'dave');
  for (const identity of [dave.id, dave.id.toUpperCase()]) {
    const t = await appToken(identity, 'Mallory');
    const r = await api(node, 'GET', '/api/users/me', { token: t });
    assert.equal(r.status, 409, `${identity}: ${r.text}`);
    assert.match(r.body.message, /identity collides/);
    assert.match(await connectError(node, { token: t }), /identity collides/);
  }
  // The local account is untouched.
  const me = await api(node, 'GET', '/api/users/me', { token: dave.token });
  assert.equal(me.body.user.name, 'dave name');
  // An app identity first: its name (any case) can't be registered.
  const appId = `AppUser${suffix()}`;
  const mine = await api(node, 'GET', '/api/users/me', { token: await appToken(appId) });
  assert.equal(mine.status, 200, mine.text);
  for (const u of [appId, appId.toLowerCase()]) {
    const r = await api(node, 'POST', '/api/auth/register', { body: { username: u, password: PASSWORD } });
    assert.equal(r.status, 409, `${u}: ${r.text}`);
  }
  await stillServes(node);
});

test('mode app: no registration or login, app tokens are the identities', async () => {
  const app = await startNode([], { NODO_ACCOUNTS__MODE: 'app' });
  try {
    for (const [path, body] of [
      ['/api/auth/register', { username: `x${suffix()}`, password: PASSWORD }],
      ['/api/auth/login', { username: 'x', password: PASSWORD }],
      ['/users', { chatPath: `x${suffix()}`, password: PASSWORD }],
    ]) {
      const r = await api(app, 'POST', path, { body });
      assert.equal(r.status, 403, `${path}: ${r.text}`);
      assert.equal(r.body.error, 'forbidden');
      assert.match(r.body.message, /registration and login are off/);
    }
    // App identities chat with each other.
    const a = { id: `a${suffix()}` };
    const b = { id: `b${suffix()}` };
    a.token = await appToken(a.id);
    b.token = await appToken(b.id);
    const sa = await connect(app, a);
    const sb = await connect(app, b);
    const sent = await ack(sa, 'sendMessage', { id: `m-${suffix()}`, recipientChatPath: b.id, content: 'hi' });
    assert.equal(sent.ok, true, JSON.stringify(sent));
    assert.equal((await next(sb, 'receiveMessage')).content, 'hi');
    sa.close();
    sb.close();
    // A room token is still not a session.
    assert.equal((await api(app, 'GET', '/api/users/me', { token: await roomToken(a.id, 'r') })).status, 401);
    await livekitJoin(app);
  } finally {
    await app.stop();
  }
});

test('mode local: app-minted tokens open no session', async () => {
  const local = await startNode([], { NODO_ACCOUNTS__MODE: 'local' });
  try {
    const t = await appToken(`app${suffix()}`);
    const r = await api(local, 'GET', '/api/users/me', { token: t });
    assert.equal(r.status, 401);
    assert.match(r.body.message, /only its own sessions/);
    assert.match(await connectError(local, { token: t }), /only its own sessions/);
    // The app's room tokens still join rooms (the LiveKit side is unchanged).
    await stillServes(local);
  } finally {
    await local.stop();
  }
});
