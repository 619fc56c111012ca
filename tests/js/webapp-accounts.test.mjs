// The bundled web app, first five minutes: the page loads from the node with
// nothing else installed, sign-up and log-in (with their failures in plain
// words), live presence between two users, the profile (name, picture),
// Spanish for a Spanish browser, keyboard reach and accessible names.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { poll } from './harness.mjs';
import { DESKTOP, launch, makePng, PHONE, shot, signUp, startWebNode, unnamedControls, userContext, userId } from './webapp.mjs';

const PNG = makePng(48, 48);

let node;
let browser;
before(async () => {
  node = await startWebNode();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await node?.stop();
});

test('the page is served from the binary: gzip, hashed assets cached, nothing from other origins', async () => {
  const res = await fetch(node.httpUrl + '/', { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-encoding'), 'gzip');
  assert.match(res.headers.get('content-security-policy'), /script-src 'self'/);
  const html = await res.text();
  const assets = [...html.matchAll(/"(\/assets\/[^"]+)"/g)].map((m) => m[1]);
  assert.ok(assets.some((a) => a.endsWith('.js')), html);
  for (const a of assets) {
    const r = await fetch(node.httpUrl + a);
    assert.equal(r.status, 200, a);
    assert.match(r.headers.get('cache-control'), /immutable/);
  }
  assert.equal((await fetch(node.httpUrl + '/assets/../../etc/passwd')).status, 404);
  const sw = await fetch(node.httpUrl + '/sw.js');
  assert.equal(sw.headers.get('service-worker-allowed'), '/');

  // A page load asks nothing of any other origin (no CDN, no fonts).
  const { context, page } = await userContext(browser, node);
  const foreign = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(node.httpUrl) && !r.url().startsWith('data:') && !r.url().startsWith('blob:')) foreign.push(r.url());
  });
  const t0 = Date.now();
  await page.goto('/');
  await page.getByRole('button', { name: 'Log in' }).waitFor();
  const interactive = Date.now() - t0;
  const timing = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { domInteractive: Math.round(n.domInteractive), load: Math.round(n.loadEventEnd) };
  });
  const bytes = await page.evaluate(() =>
    performance.getEntriesByType('resource').reduce((s, r) => s + (r.transferSize || 0), 0) +
    performance.getEntriesByType('navigation')[0].transferSize);
  console.log(`# web app: interactive (login form shown) ${interactive} ms after navigation; ` +
    `domInteractive ${timing.domInteractive} ms, load ${timing.load} ms; ${bytes} bytes transferred`);
  assert.deepEqual(foreign, []);
  await shot(page, 'login-desktop');
  await context.close();
});

test('sign up, log out, log in; a wrong password and a taken username are said in plain words', async () => {
  const { context, page } = await userContext(browser, node);
  await signUp(page, 'carmen', { name: 'Carmen' });
  // Log out from the profile.
  await page.getByRole('link', { name: 'Profile' }).click();
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.getByRole('button', { name: 'Log in' }).waitFor();

  await page.getByLabel('Username').fill('carmen');
  await page.getByLabel('Password').fill('not the password');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('alert').filter({ hasText: 'Wrong username or password.' }).waitFor();

  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByLabel('Username').fill('Carmen');
  await page.getByLabel('Your name').fill('Another Carmen');
  await page.getByLabel('Password').fill('a long password 123');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('alert').filter({ hasText: 'That username is taken' }).waitFor();

  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByLabel('Username').fill('carmen');
  await page.getByLabel('Password').fill('a long password 123');
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();

  // A session the server ended (logged out elsewhere) sends the page back to the login form, with a reason.
  const token = await page.evaluate(() => JSON.parse(localStorage.getItem('nodo.session')).token);
  const r = await fetch(node.httpUrl + '/api/auth/logout-all', { method: 'POST', headers: { authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200);
  await page.getByText('Your session has ended. Please log in again.').waitFor({ timeout: 15000 });
  await context.close();
});

test('two users see each other come online and go offline; the directory searches', async () => {
  const a = await userContext(browser, node);
  const b = await userContext(browser, node);
  await signUp(a.page, 'alice', { name: 'Alice' });
  await a.page.getByRole('link', { name: 'People' }).click();
  await signUp(b.page, 'bob', { name: 'Bob' });
  await b.page.getByRole('link', { name: 'People' }).click();

  const bobRow = a.page.locator('li.person', { hasText: 'Bob' });
  await bobRow.getByText('Online').waitFor();
  await b.page.locator('li.person', { hasText: 'Alice' }).getByText('Online').waitFor();
  await a.page.getByRole('button', { name: 'Message Bob' }).waitFor();
  await a.page.getByRole('button', { name: 'Video call Bob' }).waitFor();

  await a.page.getByLabel('Search people').fill('zzz');
  await a.page.getByText('Nobody matches “zzz”.').waitFor();
  await a.page.getByLabel('Search people').fill('bo');
  await bobRow.waitFor();
  await a.page.getByLabel('Search people').fill('');
  await shot(a.page, 'people-desktop');
  assert.deepEqual(await unnamedControls(a.page), []);

  // Bob closes his page: Alice sees him go offline, then online again when he comes back.
  const bobPage = b.page;
  await bobPage.close();
  await bobRow.getByText('Offline').waitFor({ timeout: 15000 });
  const again = await b.context.newPage();
  await again.goto(node.httpUrl + '/#/people');
  await bobRow.getByText('Online').waitFor({ timeout: 15000 });

  // Phone width: the rail becomes a bottom bar; the same directory.
  await a.page.setViewportSize(PHONE);
  await shot(a.page, 'people-phone');
  const bar = await a.page.getByRole('navigation', { name: 'Main' }).boundingBox();
  assert.ok(bar.y > PHONE.height / 2 && bar.y + bar.height <= PHONE.height + 1, `the nav is at the bottom of the screen on a phone: ${JSON.stringify(bar)}`);
  const wide = await a.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= PHONE.width, `no sideways scrolling at 360 px (${wide})`);
  await a.page.setViewportSize(DESKTOP);
  await a.context.close();
  await b.context.close();
});

test('profile: a new name and picture show in the directory of others', async () => {
  const a = await userContext(browser, node);
  const b = await userContext(browser, node);
  await signUp(a.page, 'dora', { name: 'Dora' });
  await signUp(b.page, 'emil', { name: 'Emil' });
  const doraId = await userId(a.page);

  await a.page.getByRole('link', { name: 'Profile' }).click();
  await a.page.getByLabel('Display name').fill('Dora Maar');
  await a.page.getByRole('button', { name: 'Save' }).click();
  await a.page.getByText('Profile saved.').first().waitFor();
  await a.page.getByLabel('Profile picture').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: PNG });
  await poll(() => a.page.evaluate(() => {
    const img = document.querySelector('.profile-pic .avatar img');
    return img && img.complete && img.naturalWidth > 0;
  }), { what: 'the new picture shown in the profile' });
  // Not an image: the node's reason, in the page.
  await a.page.getByLabel('Profile picture').setInputFiles({ name: 'x.png', mimeType: 'image/png', buffer: Buffer.from('<svg/>') });
  await a.page.getByRole('alert').filter({ hasText: 'That file is not a picture.' }).waitFor();
  assert.deepEqual(await unnamedControls(a.page), []);
  await shot(a.page, 'profile-desktop');

  await b.page.getByRole('link', { name: 'People' }).click();
  await b.page.reload();
  const row = b.page.locator(`li.person[data-user="${doraId}"]`);
  await row.getByText('Dora Maar').waitFor();
  await poll(() => row.evaluate((el) => {
    const img = el.querySelector('.avatar img');
    return img && img.complete && img.naturalWidth > 0;
  }), { what: "Dora's picture in Emil's directory" });
  await a.context.close();
  await b.context.close();
});

test('a Spanish browser gets the page in Spanish; the sign-up form works by keyboard alone', async () => {
  const { context, page } = await userContext(browser, node, { locale: 'es-ES' });
  await page.goto('/');
  await page.getByRole('button', { name: 'Entrar' }).waitFor();
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'es');
  await page.getByRole('button', { name: 'Crear cuenta' }).focus();
  await page.keyboard.press('Enter');
  // Username, name, password, submit: reached with Tab, filled by typing.
  await page.getByLabel('Usuario').focus();
  await page.keyboard.type('lucia');
  await page.keyboard.press('Tab');
  await page.keyboard.type('Lucía');
  await page.keyboard.press('Tab');
  await page.keyboard.type('una contraseña larga');
  await page.keyboard.press('Enter');
  await page.getByRole('navigation', { name: 'Principal' }).waitFor();
  await page.getByRole('link', { name: 'Personas' }).waitFor();
  await shot(page, 'chats-empty-es-desktop');
  await context.close();
});

test('phone width: sign-up screen fits 360 px', async () => {
  const { context, page } = await userContext(browser, node, { viewport: PHONE });
  await page.goto('/');
  await page.getByRole('button', { name: 'Log in' }).waitFor();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= PHONE.width, `no sideways scrolling at 360 px (${wide})`);
  assert.deepEqual(await unnamedControls(page), []);
  await shot(page, 'login-phone');
  await context.close();
});
