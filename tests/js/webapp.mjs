// Harness for the bundled web app's end-to-end tests: a real `nodo serve`
// serving its embedded page (or NODO_WEB_DIR, a `web-demo/build.mjs --out`
// directory), headless Chromium with fake camera and microphone, one browser
// context per user (English, notifications and media allowed), and helpers that
// act through the UI by role and accessible name.
import { mkdirSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launchBrowser, startNode } from './harness.mjs';

const here = dirname(fileURLToPath(import.meta.url));
/** Screenshots land here (README shows a few, committed under docs/screens/). */
export const shotsDir = process.env.NODO_SHOTS_DIR || join(here, '..', '..', 'target', 'screens');

export const PHONE = { width: 360, height: 740 };
export const DESKTOP = { width: 1280, height: 800 };

/** A node for the web app; `env.NODO_SERVER__WEB_DIR` is passed through when NODO_WEB_DIR is set. */
export async function startWebNode(args = [], env = {}) {
  const web = process.env.NODO_WEB_DIR ? { NODO_SERVER__WEB_DIR: process.env.NODO_WEB_DIR } : {};
  return await startNode(args, { ...web, ...env });
}

export async function launch() {
  return await launchBrowser(['--disable-features=LocalNetworkAccessChecks']);
}

/**
 * A new user's browser: its own context (storage, service worker), English,
 * camera, microphone and notifications allowed. `viewport` defaults to desktop.
 */
export async function userContext(browser, node, { viewport = DESKTOP, locale = 'en-US' } = {}) {
  const context = await browser.newContext({
    viewport,
    locale,
    baseURL: node.httpUrl,
    permissions: ['camera', 'microphone', 'notifications'],
  });
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`));
  return { context, page };
}

/** Signs a new user up through the form; resolves once the app shell is shown. */
export async function signUp(page, username, { name = username, password = 'a long password 123' } = {}) {
  await page.goto('/');
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Your name').fill(name);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign up' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}

/** The user's id (identity) as the page stored it at sign-in. */
export async function userId(page) {
  return await page.evaluate(() => JSON.parse(localStorage.getItem('nodo.session')).user.id);
}

/** Saves `<name>.png` in shotsDir. */
export async function shot(page, name) {
  mkdirSync(shotsDir, { recursive: true });
  await page.screenshot({ path: join(shotsDir, `${name}.png`) });
}

/**
 * Controls (buttons, links, form fields) on the page with no accessible name:
 * a rough check of aria-label, aria-labelledby, a <label>, title, alt and
 * visible text. Returns short descriptions of the offenders.
 */
export async function unnamedControls(page) {
  return await page.evaluate(() => {
    const named = (el) => {
      if (el.getAttribute('aria-label')?.trim()) return true;
      const by = el.getAttribute('aria-labelledby');
      if (by && by.split(/\s+/).some((id) => document.getElementById(id)?.textContent.trim())) return true;
      if (el.labels && [...el.labels].some((l) => l.textContent.trim())) return true;
      if (el.getAttribute('title')?.trim()) return true;
      if (el.tagName === 'INPUT' && ['submit', 'button'].includes(el.type) && el.value) return true;
      if (el.textContent.trim()) return true;
      return [...el.querySelectorAll('img[alt]')].some((i) => i.alt.trim());
    };
    const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
    return [...document.querySelectorAll('button, a[href], input:not([type=hidden]), select, textarea, [role=button]')]
      .filter((el) => visible(el) || (el.tagName === 'INPUT' && el.type === 'file'))
      .filter((el) => !named(el))
      .map((el) => el.outerHTML.slice(0, 120));
  });
}

/** A valid `w`×`h` PNG of one colour (for uploads in tests). */
export function makePng(w = 32, h = 32, [r, g, b] = [15, 118, 110]) {
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (buf) => {
    let c = 0xffffffff;
    for (const x of buf) c = crcTable[(c ^ x) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: w }, () => [r, g, b]).flat())]);
  const raw = Buffer.concat(Array.from({ length: h }, () => row));
  return Buffer.concat([
    Buffer.from('89504e470d0a1a0a', 'hex'),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Logs an existing user in through the form; resolves once the app shell is shown. */
export async function logIn(page, username, password = 'a long password 123') {
  await page.goto('/');
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.getByRole('navigation', { name: 'Main' }).waitFor();
}
