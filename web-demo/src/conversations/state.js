// Chats from the page's side: the list (GET /api/chats), each open chat's
// messages (history pages on the cursors plus live socket events), sending
// with client ids (idempotent: a retry never doubles a message), receipts,
// typing, unread counts, and confirming every received message to the node.
import { api, me, newId } from '../core/api.js';
import { t } from '../core/i18n.js';
import { notify } from '../core/notify.js';
import { person, remember } from '../core/people.js';
import { navigate, route } from '../core/router.js';
import { ask, on, tell } from '../core/socket.js';
import { createStore } from '../core/store.js';
import { toast } from '../core/ui.jsx';

/** list: chat summaries, newest activity first; loaded; error. */
export const chats = createStore({ list: [], loaded: false, error: null });
/** unread: the total, for the nav badge and the title. */
export const chatBadge = createStore({ unread: 0 });

const PAGE = 40;
const convos = new Map(); // chatId -> store {items, nextCursor, hasOlder, loading, error, typing, loaded}

/** The store of one chat's messages (created empty on first use). */
export function convo(chatId) {
  if (!convos.has(chatId)) {
    convos.set(chatId, createStore({ items: [], hasOlder: true, nextCursor: null, loading: false, loaded: false, error: null, typing: {} }));
  }
  return convos.get(chatId);
}

const myId = () => me()?.id;

/** A chat's title: its name, or the other person's for a direct chat. */
export function chatTitle(c) {
  if (!c) return '';
  if (c.type === 'direct') return person(otherOf(c)).name;
  return c.name || t('chat.group');
}
/** The other member of a direct chat. */
export const otherOf = (c) => c?.members?.find((m) => m !== myId()) || c?.members?.[0];

export const chatById = (id) => chats.get().list.find((c) => c.id === id);

function sortList(list) {
  const at = (c) => Date.parse(c.lastMessage?.createdAt || c.createdAt || 0) || 0;
  return [...list].sort((a, b) => at(b) - at(a));
}
function setList(list) {
  const sorted = sortList(list);
  chats.set({ list: sorted, loaded: true, error: null });
  chatBadge.set({ unread: sorted.reduce((s, c) => s + (c.unreadCount || 0), 0) });
}
function patchChat(id, f) {
  const list = chats.get().list;
  if (!list.some((c) => c.id === id)) return false;
  setList(list.map((c) => (c.id === id ? { ...c, ...f(c) } : c)));
  return true;
}

export async function loadChats() {
  try {
    const { chats: list = [] } = await api('/api/chats');
    setList(list);
  } catch (e) {
    chats.set({ error: e, loaded: true });
  }
}

/** Finds or creates the direct chat with `userId` and opens it. */
export async function openDirectChat(userId) {
  const found = chats.get().list.find((c) => c.type === 'direct' && c.members.includes(userId) && (userId !== myId() || c.members.length === 1));
  if (found) return navigate('chats', found.id);
  try {
    const { chat } = await api('/api/chats', { body: { type: 'direct', participants: [userId] } });
    if (!chatById(chat.id)) setList([chat, ...chats.get().list]);
    navigate('chats', chat.id);
  } catch (e) {
    toast(e.message || t('err.unknown'), { kind: 'error' });
  }
}

export async function createGroup(name, members) {
  const { chat } = await api('/api/chats', { body: { type: 'group', name, participants: members } });
  if (!chatById(chat.id)) setList([chat, ...chats.get().list]);
  navigate('chats', chat.id);
  return chat;
}

// ---- history -------------------------------------------------------------------

function merge(items, incoming) {
  const byId = new Map(items.map((m) => [m.id, m]));
  for (const m of incoming) byId.set(m.id, { ...byId.get(m.id), ...m, pending: false, failed: false });
  return [...byId.values()].sort((a, b) => (Date.parse(a.createdAt) || Infinity) - (Date.parse(b.createdAt) || Infinity));
}

/** The newest page (first open, and after a reconnect: what was missed). */
export async function loadNewest(chatId) {
  const s = convo(chatId);
  s.set({ loading: true, error: null });
  try {
    const page = await api(`/api/chats/${encodeURIComponent(chatId)}/messages?limit=${PAGE}`);
    const first = !s.get().loaded;
    s.set((st) => ({
      items: merge(st.items, page.messages.slice().reverse()),
      nextCursor: first ? page.nextCursor : st.nextCursor,
      hasOlder: first ? !!page.nextCursor : st.hasOlder,
      loading: false,
      loaded: true,
    }));
  } catch (e) {
    s.set({ loading: false, error: e });
  }
}

/** The next older page; resolves false when the start of the chat is reached. */
export async function loadOlder(chatId) {
  const s = convo(chatId);
  const st = s.get();
  if (st.loading || !st.hasOlder || !st.nextCursor) return false;
  s.set({ loading: true, error: null });
  try {
    const page = await api(`/api/chats/${encodeURIComponent(chatId)}/messages?limit=${PAGE}&before=${encodeURIComponent(st.nextCursor)}`);
    s.set((x) => ({ items: merge(x.items, page.messages.slice().reverse()), nextCursor: page.nextCursor, hasOlder: !!page.nextCursor, loading: false }));
    return true;
  } catch (e) {
    s.set({ loading: false, error: e });
    return false;
  }
}

function upsert(chatId, msg) {
  convo(chatId).set((st) => ({ items: merge(st.items, [msg]) }));
}
function patchMessage(chatId, id, f) {
  const s = convo(chatId);
  if (!s.get().items.some((m) => m.id === id)) return;
  s.set((st) => ({ items: st.items.map((m) => (m.id === id ? { ...m, ...f(m) } : m)) }));
}

// ---- sending ------------------------------------------------------------------

/** Sends text (optionally a reply); shows it at once as "sending". */
export async function sendText(chatId, content, replyTo) {
  const id = newId();
  const c = chatById(chatId);
  const status = Object.fromEntries((c?.members || []).filter((m) => m !== myId()).map((m) => [m, 'sent']));
  convo(chatId).set((st) => ({
    items: [...st.items, { id, chatId, senderChatPath: myId(), content, contentType: 'text', createdAt: new Date().toISOString(), replyTo: replyTo || null, reactions: [], status, pending: true }],
  }));
  await deliver(chatId, id, content, replyTo);
}

async function deliver(chatId, id, content, replyTo) {
  try {
    const ack = await ask('sendMessage', { id, chatId, content, replyTo: replyTo || undefined }, 15000);
    if (ack?.ok) {
      patchMessage(chatId, id, () => ({ pending: false, failed: false, createdAt: ack.createdAt || new Date().toISOString() }));
      patchChat(chatId, () => ({ lastMessage: convo(chatId).get().items.find((m) => m.id === id) }));
    } else {
      patchMessage(chatId, id, () => ({ pending: false, failed: true, error: ack?.error || '' }));
    }
  } catch (e) {
    patchMessage(chatId, id, () => ({ pending: false, failed: true, error: e.message }));
  }
}

/** Sends a failed message again, with the same id (the node keeps one copy). */
export function retry(chatId, m) {
  patchMessage(chatId, m.id, () => ({ pending: true, failed: false }));
  return deliver(chatId, m.id, m.content, m.replyTo);
}

/** uploads: chatId -> [{id, name, progress, abort}] */
export const uploads = createStore({ byChat: {} });

/** Uploads a file as a message, with progress; `abort()` cancels it. */
export async function sendFile(chatId, file, caption = '') {
  const id = newId();
  const ctl = new AbortController();
  const entry = { id, name: file.name, progress: 0, abort: () => ctl.abort() };
  const put = (f) => uploads.set((s) => ({ byChat: { ...s.byChat, [chatId]: f(s.byChat[chatId] || []) } }));
  put((l) => [...l, entry]);
  const form = new FormData();
  form.append('id', id);
  if (caption) form.append('content', caption);
  form.append('file', file, file.name);
  try {
    const { message } = await api(`/api/chats/${encodeURIComponent(chatId)}/messages`, {
      form,
      signal: ctl.signal,
      onProgress: (p) => put((l) => l.map((u) => (u.id === id ? { ...u, progress: p } : u))),
    });
    upsert(chatId, message);
    patchChat(chatId, () => ({ lastMessage: message }));
  } catch (e) {
    if (e.name !== 'AbortError') {
      toast(e.status === 413 ? t('chat.fileTooLarge', { name: file.name }) : t('chat.uploadFailed', { name: file.name }), { kind: 'error' });
    }
  } finally {
    put((l) => l.filter((u) => u.id !== id));
  }
}

export async function react(m, emoji) {
  const mine = m.reactions?.some((r) => r.emoji === emoji && r.userId === myId());
  const ack = await ask(mine ? 'removeReaction' : 'addReaction', { messageId: m.id, emoji }).catch(() => null);
  if (ack?.ok) patchMessage(m.chatId, m.id, () => ({ reactions: ack.reactions }));
  else toast(ack?.error || t('err.network'), { kind: 'error' });
}

export async function edit(m, content) {
  const ack = await ask('editMessage', { messageId: m.id, content }).catch(() => null);
  if (ack?.ok) patchMessage(m.chatId, m.id, () => ({ content, editedAt: ack.editedAt }));
  else toast(ack?.error || t('err.network'), { kind: 'error' });
}

export async function remove(m) {
  const ack = await ask('deleteMessage', { messageId: m.id }).catch(() => null);
  if (ack?.ok) patchMessage(m.chatId, m.id, () => ({ deleted: true, content: '', attachment: null }));
  else toast(ack?.error || t('err.network'), { kind: 'error' });
}

// ---- reading and typing ---------------------------------------------------------

/** The chat on screen (while the page is visible, its messages count as read). */
export const activeChat = () => (route.get().parts[0] === 'chats' ? route.get().parts[1] : null);

const readPending = new Set();
const readUpTo = new Map(); // chatId -> the newest message from others this page marked read
export function markRead(chatId) {
  const c = chatById(chatId);
  if (!c || document.visibilityState !== 'visible' || readPending.has(chatId)) return;
  const newest = [...convo(chatId).get().items].reverse().find((m) => m.senderChatPath !== myId());
  if (!c.unreadCount) {
    // Nothing counted unread here, but the newest message may still show unread to its sender.
    if (!newest || readUpTo.get(chatId) === newest.id || newest.status?.[myId()] === 'read') return;
  }
  if (newest) readUpTo.set(chatId, newest.id);
  readPending.add(chatId);
  patchChat(chatId, () => ({ unreadCount: 0 }));
  convo(chatId).set((st) => ({
    items: st.items.map((m) => (m.senderChatPath !== myId() && m.status ? { ...m, status: { ...m.status, [myId()]: 'read' } } : m)),
  }));
  api(`/api/chats/${encodeURIComponent(chatId)}/read`, { method: 'POST' })
    .catch(() => {})
    .finally(() => readPending.delete(chatId));
}

let typingSent = 0;
let typingStop = null;
/** Call on every keystroke in the composer: tells the others at most every 2 s. */
export function typingNow(chatId) {
  const now = Date.now();
  if (now - typingSent > 2000) {
    typingSent = now;
    tell('typing', { chatId, isTyping: true });
  }
  clearTimeout(typingStop);
  typingStop = setTimeout(() => typingDone(chatId), 3000);
}
export function typingDone(chatId) {
  clearTimeout(typingStop);
  if (typingSent) tell('typing', { chatId, isTyping: false });
  typingSent = 0;
}

function setTyping(chatId, userId, on) {
  const s = convo(chatId);
  s.set((st) => {
    const typing = { ...st.typing };
    if (on) typing[userId] = Date.now() + 6000;
    else delete typing[userId];
    return { typing };
  });
  if (on) setTimeout(() => s.set((st) => {
    const typing = { ...st.typing };
    if (typing[userId] && typing[userId] <= Date.now()) delete typing[userId];
    return { typing };
  }), 6100);
}

// ---- live events --------------------------------------------------------------

function received(m, confirm) {
  try {
    confirm?.(true);
  } catch {
    /* the ack is best effort */
  }
  if (!m?.id || !m.chatId) return;
  if (m.senderProfile) remember(m.senderProfile);
  const s = convo(m.chatId);
  const seen = s.get().items.some((x) => x.id === m.id && !x.pending);
  upsert(m.chatId, m);
  if (seen) return; // a redelivery after a reconnect
  const mine = m.senderChatPath === myId();
  const here = activeChat() === m.chatId && document.visibilityState === 'visible';
  const known = patchChat(m.chatId, (c) => ({ lastMessage: m, unreadCount: mine || here ? c.unreadCount || 0 : (c.unreadCount || 0) + 1 }));
  if (!known) loadChats();
  if (mine) return;
  setTyping(m.chatId, m.senderChatPath, false);
  if (here) markRead(m.chatId);
  const who = person(m.senderChatPath).name;
  const text = m.contentType === 'image' ? t('chat.sentPhoto') : m.contentType === 'file' ? t('chat.sentFile') : m.content;
  if (document.visibilityState !== 'visible') {
    notify(who, { body: text, tag: m.chatId, data: { url: `/?chat=${encodeURIComponent(m.chatId)}` } });
  } else if (!here) {
    toast(t('chat.newFrom', { name: who, text: text.slice(0, 80) }), { action: { label: t('chat.open'), run: () => navigate('chats', m.chatId) } });
  }
}

const RANK = { sent: 0, delivered: 1, read: 2 };
function setStatus(chatId, ids, who, status) {
  const s = convo(chatId);
  const set = new Set(ids);
  s.set((st) => ({
    items: st.items.map((m) =>
      set.has(m.id) && (RANK[m.status?.[who]] ?? -1) < RANK[status] ? { ...m, status: { ...m.status, [who]: status } } : m,
    ),
  }));
}

let inited = false;
export function initChat() {
  convos.clear();
  chats.set({ list: [], loaded: false, error: null });
  chatBadge.set({ unread: 0 });
  if (inited) return;
  inited = true;
  on('receiveMessage', received);
  on('messageDelivered', (e) => {
    for (const r of e?.receipts || [e]) {
      for (const who of r.recipients || [r.to]) if (r.chatId && who) setStatus(r.chatId, [r.id], who, 'delivered');
    }
  });
  on('messagesRead', (e) => {
    if (e?.chatId) setStatus(e.chatId, e.messageIds || [], e.readerChatPath || e.senderChatPath, 'read');
  });
  on('typing', (e) => {
    if (e?.chatId && e.userId !== myId()) setTyping(e.chatId, e.userId, !!e.isTyping);
  });
  on('messageReaction', (e) => e?.chatId && patchMessage(e.chatId, e.messageId, () => ({ reactions: e.reactions })));
  on('messageEdited', (m) => m?.chatId && patchMessage(m.chatId, m.id, () => ({ content: m.content, editedAt: m.editedAt })));
  on('messageDeleted', (m) => {
    if (!m?.chatId) return;
    patchMessage(m.chatId, m.id, () => ({ deleted: true, content: '', attachment: null }));
    patchChat(m.chatId, (c) => (c.lastMessage?.id === m.id ? { lastMessage: { ...c.lastMessage, deleted: true, content: '' } } : {}));
  });
  on('chatMembersChanged', () => loadChats());
  on('connect', () => {
    loadChats();
    // What arrived while the socket was down, for the chat on screen.
    const open = activeChat();
    if (open && convo(open).get().loaded) loadNewest(open);
  });
  document.addEventListener('visibilitychange', () => {
    const open = activeChat();
    if (open) markRead(open);
  });
}
