// The web app's chat, through the UI in two browsers: a direct chat opened
// from People, unread badge, typing indicator, sent/delivered/read ticks,
// reply, reaction, edit, delete, an image with progress and preview, search,
// history loaded on scroll, a group, and a node that goes away mid-chat.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { poll } from './harness.mjs';
import { launch, makePng, PHONE, shot, signUp, startWebNode, unnamedControls, userContext, userId } from './webapp.mjs';

let node;
let browser;
const tag = Date.now().toString(36).slice(-5);
before(async () => {
  node = await startWebNode();
  browser = await launch();
});
after(async () => {
  await browser?.close();
  await node?.stop();
});

async function user(name, opts) {
  const u = await userContext(browser, node, opts);
  await signUp(u.page, `${name.toLowerCase()}${tag}`, { name });
  u.id = await userId(u.page);
  u.token = await u.page.evaluate(() => JSON.parse(localStorage.getItem('nodo.session')).token);
  return u;
}

const bubble = (page, text) => page.locator('li.msg').filter({ has: page.locator('p.text', { hasText: text }) });

test('alice and bob chat: badge, typing, ticks, reply, reaction, edit, delete, image, search', async () => {
  const alice = await user('Alice');
  const bob = await user('Bob');

  await alice.page.getByRole('link', { name: 'People' }).click();
  await alice.page.locator('li.person', { hasText: 'Bob' }).getByText('Online').waitFor();
  await alice.page.getByRole('button', { name: 'Message Bob' }).click();
  const composer = alice.page.getByRole('textbox', { name: 'Message' });
  await composer.fill('Hola Bob, ¿cómo estás?');
  await composer.press('Enter');
  const first = bubble(alice.page, 'Hola Bob');
  await first.getByRole('img', { name: /Sent|Delivered/ }).waitFor();

  // Bob is on People: the nav badge counts the unread message, then the chat opens.
  await bob.page.getByRole('link', { name: 'People' }).click();
  await bob.page.getByRole('link', { name: /Chats/ }).locator('.badge').getByText('1').waitFor();
  await first.getByRole('img', { name: 'Delivered' }).waitFor();
  await bob.page.getByRole('link', { name: /Chats/ }).click();
  await bob.page.getByRole('link', { name: /Alice/ }).getByLabel('1 unread message').waitFor();
  await bob.page.getByRole('link', { name: /Alice/ }).click();
  await bubble(bob.page, 'Hola Bob').waitFor();
  await first.getByRole('img', { name: 'Read' }).waitFor();

  // Typing shows on Alice's side while Bob types.
  await bob.page.getByRole('textbox', { name: 'Message' }).pressSequentially('Muy bien', { delay: 40 });
  await alice.page.getByText('Bob is typing…').waitFor();
  await bob.page.getByRole('textbox', { name: 'Message' }).press('Enter');
  await bubble(alice.page, 'Muy bien').waitFor();
  await alice.page.getByText('Bob is typing…').waitFor({ state: 'detached' });

  // Bob replies to Alice's message and reacts to it, by keyboard through the actions menu.
  const onBob = bubble(bob.page, 'Hola Bob');
  await onBob.hover();
  await onBob.getByRole('button', { name: 'Message actions' }).click();
  await bob.page.getByRole('menuitem', { name: 'Reply' }).click();
  await bob.page.getByText('Replying to Alice').waitFor();
  await bob.page.getByRole('textbox', { name: 'Message' }).fill('Esto es una respuesta');
  await bob.page.getByRole('textbox', { name: 'Message' }).press('Enter');
  const replyOnAlice = bubble(alice.page, 'Esto es una respuesta');
  await replyOnAlice.getByRole('button', { name: /Go to the replied message: Hola Bob/ }).waitFor();
  await onBob.hover();
  await onBob.getByRole('button', { name: 'Message actions' }).focus();
  await bob.page.keyboard.press('Enter');
  await bob.page.getByRole('menuitem', { name: 'React' }).click();
  await bob.page.getByRole('menuitem', { name: 'React with 👍' }).click();
  await first.getByRole('button', { name: '👍 1, react' }).waitFor();

  // An image: progress while it uploads, a preview on both sides.
  const chooser = alice.page.waitForEvent('filechooser');
  await alice.page.getByRole('button', { name: 'Attach a file' }).click();
  await (await chooser).setFiles({ name: 'foto.png', mimeType: 'image/png', buffer: makePng(320, 200) });
  for (const p of [alice.page, bob.page]) {
    await poll(() => p.evaluate(() => {
      const img = document.querySelector('img.attachment-image');
      return img && img.complete && img.naturalWidth === 320;
    }), { what: 'the image previewed' });
  }
  await bob.page.getByRole('img', { name: 'Picture foto.png' }).waitFor();

  // A file on a slow uplink (DevTools throttling): a progress bar while it goes, a download link after.
  const cdp = await alice.context.newCDPSession(alice.page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: -1, uploadThroughput: 200 * 1024 });
  const chooser2 = alice.page.waitForEvent('filechooser');
  await alice.page.getByRole('button', { name: 'Attach a file' }).click();
  await (await chooser2).setFiles({ name: 'notas.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(600 * 1024, 7) });
  await alice.page.getByRole('progressbar', { name: /Uploading notas.bin/ }).waitFor();
  await bob.page.getByRole('link', { name: /Download notas.bin \(600 KB\)/ }).waitFor({ timeout: 30000 });
  await alice.page.getByRole('progressbar', { name: /Uploading notas.bin/ }).waitFor({ state: 'detached' });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });

  // Search finds a message and opens its chat.
  await bob.page.getByLabel('Search messages').fill('respuesta');
  await bob.page.getByRole('list', { name: 'Messages found' }).getByRole('link', { name: /Esto es una respuesta/ }).click();
  await bubble(bob.page, 'Esto es una respuesta').waitFor();

  assert.deepEqual(await unnamedControls(alice.page), []);
  await shot(alice.page, 'chat-desktop');

  // Alice edits, then deletes, her message: Bob sees both.
  await first.hover();
  await first.getByRole('button', { name: 'Message actions' }).click();
  await alice.page.getByRole('menuitem', { name: 'Edit' }).click();
  await alice.page.getByText('Editing your message').waitFor();
  await poll(async () => (await composer.inputValue()).startsWith('Hola Bob'), { what: 'the message in the composer' });
  await composer.fill('Hola Bob, editado');
  await composer.press('Enter');
  await bubble(bob.page, 'Hola Bob, editado').getByText('edited').waitFor();
  alice.page.once('dialog', (d) => d.accept());
  const edited = bubble(alice.page, 'Hola Bob, editado');
  await edited.hover();
  await edited.getByRole('button', { name: 'Message actions' }).click();
  await alice.page.getByRole('menuitem', { name: 'Delete' }).click();
  await bob.page.locator('li.msg.deleted', { hasText: 'Message deleted' }).first().waitFor();
  await bob.page.setViewportSize(PHONE);
  await shot(bob.page, 'chat-phone');
  await bob.page.getByRole('button', { name: 'Back' }).click();
  await bob.page.getByRole('list', { name: 'Your chats' }).waitFor();
  await shot(bob.page, 'chatlist-phone');
  const wide = await bob.page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= PHONE.width, `no sideways scrolling at 360 px (${wide})`);
  await alice.context.close();
  await bob.context.close();
});

test('a long history loads older pages on scroll; a group chat reaches every member', async () => {
  const carol = await user('Carol');
  const dan = await user('Dan');
  const erin = await user('Erin');
  // 120 messages from Dan to Carol, through the API.
  const { chat } = await (await fetch(`${node.httpUrl}/api/chats`, {
    method: 'POST', headers: { authorization: `Bearer ${dan.token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'direct', participants: [carol.id] }),
  })).json();
  for (let i = 1; i <= 120; i++) {
    for (;;) {
      const r = await fetch(`${node.httpUrl}/api/chats/${chat.id}/messages`, {
        method: 'POST', headers: { authorization: `Bearer ${dan.token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ id: `seed-${tag}-${i}`, content: `mensaje número ${i}` }),
      });
      if (r.status === 429) {
        const wait = 1000 * ((await r.json()).retryAfter || 1);
        await new Promise((ok) => setTimeout(ok, wait));
        continue;
      }
      assert.ok(r.status === 200 || r.status === 201, await r.text());
      break;
    }
  }
  // A fresh page load (Carol's open page received them live as they came).
  await carol.page.goto(`/#/chats/${chat.id}`);
  await carol.page.reload();
  await bubble(carol.page, 'mensaje número 120').waitFor();
  assert.equal(await carol.page.locator('li.msg p.text', { hasText: /^mensaje número 1$/ }).count(), 0, 'the oldest page is not loaded yet');
  // Scroll to the top until the first message is there.
  await poll(async () => {
    await carol.page.locator('.history').evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
    return (await carol.page.getByText('This is the start of your conversation.').count()) > 0;
  }, { what: 'the start of the chat', timeout: 20000 });
  await carol.page.locator('li.msg p.text', { hasText: /^mensaje número 1$/ }).waitFor();
  const count = await carol.page.locator('li.msg').count();
  assert.equal(count, 120);

  // A group with all three.
  await carol.page.getByRole('link', { name: /Chats/ }).click();
  await carol.page.getByRole('button', { name: 'New group' }).click();
  const dlg = carol.page.getByRole('dialog', { name: 'New group' });
  await dlg.getByLabel('Group name').fill('Familia');
  await dlg.getByRole('checkbox', { name: 'Dan' }).check();
  await dlg.getByRole('checkbox', { name: 'Erin' }).check();
  await dlg.getByRole('button', { name: 'Create group' }).click();
  await carol.page.getByRole('heading', { name: 'Familia' }).waitFor();
  await carol.page.getByRole('textbox', { name: 'Message' }).fill('¡Hola a todos!');
  await carol.page.getByRole('textbox', { name: 'Message' }).press('Enter');
  for (const u of [dan, erin]) {
    await u.page.getByRole('link', { name: /Chats/ }).click();
    await u.page.getByRole('link', { name: /Familia/ }).click();
    await bubble(u.page, '¡Hola a todos!').waitFor();
  }
  await bubble(carol.page, '¡Hola a todos!').getByRole('img', { name: 'Read' }).waitFor();
  for (const u of [carol, dan, erin]) await u.context.close();
});

test('the node goes away mid-chat: the page says so, a message sent meanwhile is marked not sent, the app stays', async () => {
  const own = await startWebNode();
  try {
    const mk = async (name) => {
      const u = await userContext(browser, own);
      await signUp(u.page, `${name.toLowerCase()}${tag}`, { name });
      return u;
    };
    const fay = await mk('Fay');
    await mk('Gus');
    await fay.page.getByRole('link', { name: 'People' }).click();
    await fay.page.getByRole('button', { name: 'Message Gus' }).click();
    const box = fay.page.getByRole('textbox', { name: 'Message' });
    await box.fill('antes');
    await box.press('Enter');
    await bubble(fay.page, 'antes').getByRole('img', { name: /Sent|Delivered|Read/ }).waitFor();
    await own.kill();
    await fay.page.getByRole('alert').filter({ hasText: 'Connection lost. Reconnecting…' }).waitFor({ timeout: 30000 });
    await box.fill('durante');
    await box.press('Enter');
    await bubble(fay.page, 'durante').getByText('Not sent').waitFor({ timeout: 30000 });
    assert.ok(await fay.page.getByRole('navigation', { name: 'Main' }).isVisible(), 'the app is still there');
  } finally {
    await own.kill();
  }
});
