// A plain Node.js Socket.IO 4.8 chat relay with Nodo's chat event contract,
// in memory (no database, no accounts): the peer bench/chat-vs.mjs measures
// Nodo against. What it does, as Nodo does it:
//   - auth: the handshake's `auth.userId` (or `auth.token`, or a `userId`
//     query) is taken as the user's id, unchecked; each socket joins its
//     user's room;
//   - `sendMessage {id?, chatId?, recipientChatPath?, content, contentType?, replyTo?}`:
//     `receiveMessage` (with an ack request) to every socket of every member
//     but the sending socket, then the ack `{ok: true, id, chatId, createdAt}`
//     (errors: `{ok: false, error, code}`);
//   - a recipient's client confirms a message by answering that ack; the
//     sender hears `messageDelivered {id, chatId, to, recipients, receipts}`
//     once all recipients confirmed (or 2 s after the first did), batched per
//     sender and turn of the event loop;
//   - groups: `POST /api/chats {type: "group", name, participants}` with
//     `Authorization: Bearer <userId>` answers 201 `{chat: {id, ...}}`, as
//     Nodo does; the socket event `createGroup` with the same body does too
//     (ack `{ok: true, chat}`).
// Not done (Nodo does): persistence, pending messages for offline users,
// presence events, rate limits, reactions/edits/calls.
//   node server.mjs [port]     (or PORT=...; 0 picks one); prints `listening <port>`
import { createServer } from 'node:http';
import { Server } from 'socket.io';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
const ACK_TIMEOUT_MS = 30000;
const RECEIPT_LINGER_MS = 2000;
const MAX_MESSAGE_BYTES = 64 * 1024;
const MAX_GROUP_MEMBERS = 1000;

/** user id -> Set of its sockets */
const sockets = new Map();
/** chat id -> {id, type, name, createdBy, participants: string[], members: Set} */
const groups = new Map();
let seq = 0;

const directId = (a, b) => (a < b ? `d:${a}:${b}` : `d:${b}:${a}`);
const fail = (error, code) => ({ ok: false, error, code });

function createGroup(me, body) {
  if (!body || body.type !== 'group') return [400, fail('type must be "group"', 'invalid')];
  const participants = Array.isArray(body.participants) ? body.participants.map(String) : [];
  const members = new Set([me, ...participants]);
  if (members.size > MAX_GROUP_MEMBERS) return [400, fail(`at most ${MAX_GROUP_MEMBERS} members`, 'invalid')];
  const id = `CH_${(++seq).toString(36)}_${Date.now().toString(36)}`;
  const chat = { id, type: 'group', name: String(body.name ?? ''), createdBy: me, participants: [...members] };
  groups.set(id, { ...chat, members });
  return [201, { ok: true, chat }];
}

// HTTP: group creation (as Nodo's POST /api/chats) and a health check.
const http = createServer((req, res) => {
  const reply = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && req.url === '/health') return reply(200, { ok: true });
  if (req.method !== 'POST' || req.url !== '/api/chats') return reply(404, fail('not found', 'not_found'));
  const me = (req.headers.authorization || '').replace(/^Bearer\s+/i, '');
  if (!me) return reply(401, fail('authentication required', 'unauthenticated'));
  let raw = '';
  req.setEncoding('utf8');
  req.on('data', (c) => { raw += c; });
  req.on('end', () => {
    let body;
    try { body = JSON.parse(raw); } catch { return reply(400, fail('invalid JSON', 'invalid')); }
    const [status, out] = createGroup(me, body);
    reply(status, out);
  });
});

const io = new Server(http, { serveClient: false, maxHttpBufferSize: 1e6 });

io.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const id = auth.userId ?? auth.token ?? socket.handshake.query.userId;
  if (!id) return next(new Error('authentication required: pass auth {userId} or {token}'));
  socket.data.userId = String(id);
  next();
});

// Confirmations: per message until all its recipients confirmed (or the
// linger passed), then queued per sender and told once per event-loop turn.
const receiptQueue = new Map(); // sender -> receipts[]
let flushScheduled = false;
function flushReceipts() {
  flushScheduled = false;
  for (const [sender, receipts] of receiptQueue) {
    io.to(sender).emit('messageDelivered', { ...receipts[0], receipts });
  }
  receiptQueue.clear();
}
function settle(rec) {
  if (rec.timer) { clearTimeout(rec.timer); rec.timer = null; }
  if (!rec.confirmed.length) return;
  const recipients = rec.confirmed.sort();
  rec.confirmed = [];
  const receipt = { id: rec.id, chatId: rec.chatId, to: recipients[0], recipients };
  const q = receiptQueue.get(rec.sender);
  if (q) q.push(receipt); else receiptQueue.set(rec.sender, [receipt]);
  if (!flushScheduled) { flushScheduled = true; setImmediate(flushReceipts); }
}
function confirm(rec, member) {
  if (!rec.waiting.delete(member)) return;
  rec.confirmed.push(member);
  if (rec.waiting.size === 0) settle(rec);
  else if (!rec.timer) rec.timer = setTimeout(() => settle(rec), RECEIPT_LINGER_MS);
}

function deliver(m, members, exceptSid) {
  const rec = { id: m.id, chatId: m.chatId, sender: m.senderChatPath, waiting: new Set(), confirmed: [], timer: null };
  for (const member of members) {
    const set = sockets.get(member);
    if (!set) continue; // offline: nothing kept (Nodo keeps it pending)
    const recipient = member !== m.senderChatPath;
    for (const s of set) {
      if (s.id === exceptSid) continue;
      if (recipient) {
        rec.waiting.add(member);
        s.timeout(ACK_TIMEOUT_MS).emit('receiveMessage', m, (err) => { if (!err) confirm(rec, member); });
      } else {
        // The sender's other tabs: same shape, their answer confirms nothing.
        s.timeout(ACK_TIMEOUT_MS).emit('receiveMessage', m, () => {});
      }
    }
  }
}

function sendMessage(socket, d) {
  const me = socket.data.userId;
  if (!d || typeof d !== 'object') return fail('invalid payload', 'invalid');
  if (JSON.stringify(d).length > MAX_MESSAGE_BYTES) return fail('message too large', 'too_large');
  if (d.senderChatPath && d.senderChatPath !== me) return fail('cannot send as someone else', 'forbidden');
  if (typeof d.content !== 'string' || !d.content.trim()) return fail('content is empty', 'invalid');
  if (d.id !== undefined && (typeof d.id !== 'string' || !d.id || d.id.length > 128)) return fail('id must be 1..128 characters', 'invalid');
  let chatId;
  let members;
  let recipient;
  if (d.chatId && !String(d.chatId).startsWith('d:')) {
    const g = groups.get(String(d.chatId));
    if (!g) return fail('no such chat', 'not_found');
    if (!g.members.has(me)) return fail('not a member of this chat', 'forbidden');
    chatId = g.id;
    members = g.members;
  } else {
    recipient = d.recipientChatPath ? String(d.recipientChatPath) : null;
    if (!recipient && d.chatId) recipient = String(d.chatId).split(':').slice(1).find((u) => u !== me) ?? me;
    if (!recipient) return fail('chatId or recipientChatPath is required', 'invalid');
    chatId = directId(me, recipient);
    members = [me, recipient];
  }
  const m = {
    id: d.id || `MS_${(++seq).toString(36)}${Math.random().toString(36).slice(2, 10)}`,
    chatId,
    senderChatPath: me,
    ...(recipient ? { recipientChatPath: recipient } : {}),
    content: d.content,
    contentType: d.contentType || 'text',
    createdAt: new Date().toISOString(),
    replyTo: d.replyTo ?? null,
    reactions: [],
    editedAt: null,
    deleted: false,
    ...(recipient ? { status: { [recipient]: 'sent' } } : {}),
    senderProfile: { id: me, name: me, avatar: null },
  };
  deliver(m, members, socket.id);
  return { ok: true, id: m.id, chatId: m.chatId, createdAt: m.createdAt };
}

io.on('connection', (socket) => {
  const me = socket.data.userId;
  let set = sockets.get(me);
  if (!set) sockets.set(me, (set = new Set()));
  set.add(socket);
  socket.join(me);
  socket.on('disconnect', () => {
    set.delete(socket);
    if (!set.size && sockets.get(me) === set) sockets.delete(me);
  });
  socket.on('sendMessage', (d, ack) => {
    const out = sendMessage(socket, d);
    if (typeof ack === 'function') ack(out);
  });
  socket.on('createGroup', (d, ack) => {
    const [, out] = createGroup(me, d);
    if (typeof ack === 'function') ack(out);
  });
});

http.listen(port, '127.0.0.1', () => {
  console.log(`listening ${http.address().port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { io.close(); process.exit(0); });
