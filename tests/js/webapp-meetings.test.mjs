// The web app's meetings, through the UI in three browser contexts: alice
// creates a meeting inviting bob and carol, bob joins from the invitation and
// carol from the link, the counts show three, then alice (the moderator) mutes
// bob, removes carol and ends the meeting.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { poll } from './harness.mjs';
import { DESKTOP, launch, logIn, PHONE, shot, signUp, startWebNode, unnamedControls, userContext } from './webapp.mjs';

let node;
let browser;
const tag = Date.now().toString(36).slice(-5);

async function user(name, viewport) {
  const u = await userContext(browser, node, { viewport });
  await signUp(u.page, `${name.toLowerCase()}${tag}`, { name });
  return u;
}

const remoteFrames = (page) =>
  page.evaluate(() =>
    [...document.querySelectorAll('video[data-remote="true"]')].map((v) => v.getVideoPlaybackQuality?.().totalVideoFrames || 0),
  );

before(async () => {
  node = await startWebNode();
  browser = await launch();
});

after(async () => {
  await browser?.close();
  await node?.stop();
});

test('a three-person meeting: invitations, link, live count, moderator mutes, removes and ends', async () => {
  const alice = await user('Alice', DESKTOP);
  const bob = await user('Bob', DESKTOP);
  const carol = await user('Carol', PHONE);

  // Alice creates it, inviting bob and carol from the directory.
  await alice.page.goto('/#/meetings');
  await alice.page.getByRole('button', { name: 'New meeting' }).click();
  const dialog = alice.page.getByRole('dialog', { name: 'New meeting' });
  await dialog.getByLabel('Meeting name').fill('Standup');
  await dialog.getByRole('checkbox', { name: /Bob/ }).check();
  await dialog.getByRole('checkbox', { name: /Carol/ }).check();
  await dialog.getByText('2 people invited').waitFor();
  await dialog.getByRole('button', { name: 'Create meeting' }).click();
  await alice.page.getByRole('heading', { name: 'Standup', level: 1 }).waitFor();
  const link = await alice.page.getByLabel('Join link').inputValue();
  assert.match(link, new RegExp(`^${node.httpUrl}/\\?meeting=MT_`));
  const id = new URL(link).searchParams.get('meeting');
  assert.match(alice.page.url(), new RegExp(`#/meetings/${id}$`));
  await alice.page.getByText('Nobody is in the meeting yet.').waitFor();
  await alice.page.getByRole('button', { name: 'Join meeting' }).click();
  const aliceStage = alice.page.getByRole('dialog', { name: 'Standup' });
  await aliceStage.waitFor();
  await aliceStage.getByText('1 person').waitFor();

  // Bob joins from the invitation toast; carol opens the link.
  await bob.page.getByText('Alice invited you to “Standup”.').waitFor();
  await bob.page.getByRole('status').getByRole('button', { name: 'Join' }).click();
  await bob.page.getByRole('heading', { name: 'Standup', level: 1 }).waitFor();
  await bob.page.getByText('1 person is in the meeting').waitFor();
  await bob.page.getByRole('button', { name: 'Join meeting' }).click();
  await carol.page.goto(link);
  await carol.page.getByRole('heading', { name: 'Standup', level: 1 }).waitFor();
  assert.match(carol.page.url(), new RegExp(`/#/meetings/${id}$`));
  await carol.page.getByText('2 people are in the meeting').waitFor();
  await carol.page.getByRole('button', { name: 'Join meeting' }).click();

  const stages = [alice, bob, carol].map((u) => u.page.getByRole('dialog', { name: 'Standup' }));
  for (const s of stages) await s.getByText('3 people').waitFor({ timeout: 20000 });
  // Everyone sees the two others' video.
  for (const u of [alice, bob, carol]) {
    await poll(async () => {
      const f = await remoteFrames(u.page);
      return f.length === 2 && f.every((n) => n > 0);
    }, { what: 'two remote videos playing', timeout: 40000 });
  }
  // The list of meetings shows it live.
  assert.deepEqual(await unnamedControls(alice.page), []);
  await shot(alice.page, 'meeting-desktop');
  await shot(carol.page, 'meeting-phone');

  // The moderator's panel.
  await stages[0].getByRole('button', { name: 'Participants' }).click();
  const panel = stages[0].getByRole('complementary', { name: 'Participants' });
  await panel.getByText('Participants (3)').waitFor();
  assert.equal(await stages[1].getByRole('button', { name: 'Mute Alice' }).count(), 0, 'only moderators get the controls');

  // Alice mutes bob: his microphone shows off everywhere, and he is told.
  await panel.getByRole('button', { name: 'Mute Bob' }).click();
  for (const s of stages.slice(0, 2)) {
    await s.getByRole('group', { name: /^Bob( \(you\))?$/ }).getByRole('img', { name: 'Microphone off' }).waitFor();
  }
  await stages[2].getByRole('group', { name: 'Bob' }).getByRole('img', { name: 'Microphone off' }).waitFor();
  await stages[1].getByText('A moderator muted your microphone.', { exact: false }).waitFor();
  await stages[1].getByRole('button', { name: 'Unmute microphone' }).waitFor();
  await panel.getByRole('img', { name: 'Bob: Microphone off' }).waitFor();

  // Alice removes carol: carol is told in plain words; the count drops.
  await panel.getByRole('button', { name: 'Remove Carol' }).click();
  await alice.page.getByRole('dialog', { name: 'Remove Carol?' }).getByRole('button', { name: 'Remove' }).click();
  await carol.page.getByText('A moderator removed you from the meeting.').waitFor();
  for (const s of stages.slice(0, 2)) await s.getByText('2 people').waitFor();

  // Alice ends it for everyone.
  await panel.getByRole('button', { name: 'End meeting for everyone' }).click();
  await alice.page.getByRole('dialog', { name: 'End the meeting?' }).getByRole('button', { name: 'End meeting' }).click();
  await bob.page.getByText('The meeting has ended.').waitFor();
  await bob.page.getByRole('button', { name: 'Close' }).click();
  await bob.page.getByRole('heading', { name: 'Standup', level: 1 }).waitFor();
  await alice.page.getByText('The meeting has ended.').first().waitFor();
  await alice.page.getByRole('button', { name: 'Close' }).click();
  await alice.page.goto('/#/meetings');
  await alice.page.getByRole('link', { name: /Standup/ }).getByText('Ended').waitFor();
  // Carol (removed, still a member) heard it ended: her lobby says so and offers no way in.
  await carol.page.getByRole('button', { name: 'Close' }).click();
  await carol.page.getByText('This meeting has ended.').waitFor();
  assert.equal(await carol.page.getByRole('button', { name: 'Join meeting' }).count(), 0);
  // On another device (nothing cached), bob's list of meetings comes from the node.
  const other = await userContext(browser, node);
  await logIn(other.page, `bob${tag}`);
  await other.page.goto('/#/meetings');
  await other.page.getByRole('link', { name: /Standup/ }).getByText('Ended').waitFor();
  await other.context.close();
});
