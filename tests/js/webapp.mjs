// Harness for the bundled web app's end-to-end tests: a real `nodo serve`
// serving its embedded page (or NODO_WEB_DIR, a `web-demo/build.mjs --out`
// directory), headless Chromium with fake camera and microphone, one browser
// context per user (English, notifications and media allowed), and helpers that
// act through the UI by role and accessible name.
import { mkdirSync } from 'node:fs';
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
