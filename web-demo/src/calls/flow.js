// One-to-one calls from the page's side: start (REST), ring (socket events
// incomingCall, callAccepted, callRejected, callCancelled, callMissed,
// call.started, call.ended), answer, hang up, and calls opened from a push
// notification (?call=<id>&action=accept|reject).
import { api, me, session as authSession } from '../core/api.js';
import { t } from '../core/i18n.js';
import { notify, pushState } from '../core/notify.js';
import { isOnline, person, remember } from '../core/people.js';
import { route } from '../core/router.js';
import { on } from '../core/socket.js';
import { createStore } from '../core/store.js';
import { describeError, toast } from '../core/ui.jsx';
import { loadLiveKit } from './lk.js';
import { endTone, startTone, stopTone } from './ring.js';
import { activeStage, closeStage, inStage, MediaSession, openStage } from './session.js';

/**
 * phase: 'idle' | 'outgoing' | 'incoming' | 'result'.
 * call: {id, kind, peerId, direction: 'out'|'in'}; status (outgoing): 'starting' | 'ringing' | 'accepting';
 * result: {title, message, retry: bool} once a call attempt is over.
 */
export const callState = createStore({ phase: 'idle', call: null, status: '', result: null, soundBlocked: false, offline: false });

/** Missed calls not yet seen (cleared when the Calls view opens). */
export const callsBadge = createStore({ missed: 0 });
/** Bumped when the history changed (the Calls view reloads). */
export const historyTick = createStore({ n: 0 });
const historyChanged = () => historyTick.set((s) => ({ n: s.n + 1 }));

const seenKey = () => `nodo.calls.seen.${me()?.id}`;
export function markMissedSeen() {
  localStorage.setItem(seenKey(), String(Date.now()));
  callsBadge.set({ missed: 0 });
}

const nameOf = (id) => person(id).name || id;
/** The outgoing call's token while it rings: `{token, url}`. */
let pendingJoin = null;
/** Socket events about a call that came before the REST answer naming it. */
const early = new Map();
let cancelWanted = false;

export function formatDuration(sec) {
  sec = Math.max(0, Math.round(sec || 0));
  const h = Math.floor(sec / 3600);
  const m = Math.floor((sec % 3600) / 60);
  const s = String(sec % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${s}` : `${m}:${s}`;
}

function result(title, message, { retry = false } = {}) {
  stopTone();
  pendingJoin = null;
  callState.set((s) => ({ phase: 'result', status: '', result: { title, message, retry }, call: s.call }));
}

export function dismissResult() {
  callState.set({ phase: 'idle', call: null, result: null, status: '' });
}

async function closeNotifications(callId) {
  try {
    const reg = await navigator.serviceWorker?.getRegistration();
    for (const n of (await reg?.getNotifications({ tag: callId })) || []) n.close();
  } catch {
    /* no worker */
  }
}

const isCurrent = (id) => callState.get().call?.id === id;
const stageCall = () => {
  const s = activeStage.get().session;
  return s?.kind === 'call' ? s : null;
};

// ---- caller ------------------------------------------------------------------

/** Calls `userId` ('audio' | 'video'): the caller's ringing screen, then the call. */
export async function startCall(userId, kind = 'video') {
  loadLiveKit().catch(() => {});
  if (!userId) return;
  // The end card of the last call gives way to the next one.
  const last = stageCall();
  if (last?.store.get().status === 'ended') closeStage(last);
  if (userId === me()?.id) return toast(t('calls.self'), { kind: 'error' });
  if (callState.get().phase === 'outgoing' || callState.get().phase === 'incoming' || stageCall()) {
    return toast(t('calls.alreadyInCall'), { kind: 'error' });
  }
  // Leaving a meeting to make a call.
  if (inStage()) await activeStage.get().session.leave();
  cancelWanted = false;
  early.clear();
  callState.set({
    phase: 'outgoing',
    status: 'starting',
    call: { id: null, kind, peerId: userId, direction: 'out' },
    result: null,
    offline: !isOnline(userId),
  });
  let r;
  try {
    r = await api('/api/calls/initiate', { body: { recipientId: userId, callType: kind } });
  } catch (e) {
    if (cancelWanted) return dismissResult();
    const msg = e.status === 409 ? t('calls.youAreBusy') : describeError(e);
    return result(t('calls.failed'), msg, { retry: e.status !== 409 });
  }
  const call = r.call;
  callState.set((s) => ({ call: { ...s.call, id: call.id } }));
  historyChanged();
  if (call.status === 'busy') return result(t('calls.busy'), t('calls.busyLong', { name: nameOf(userId) }), { retry: true });
  pendingJoin = { token: r.token, url: r.url };
  if (cancelWanted) return cancelCall();
  const ev = early.get(call.id);
  early.clear();
  if (ev) return ev();
  callState.set({ status: 'ringing' });
  startTone('ringback');
}

/** The caller gives up while it rings. */
export async function cancelCall() {
  const { call, status } = callState.get();
  stopTone();
  if (!call?.id && status === 'starting') {
    cancelWanted = true;
    dismissResult();
    return;
  }
  pendingJoin = null;
  dismissResult();
  if (call?.id) await api(`/api/calls/${encodeURIComponent(call.id)}/cancel`, { method: 'POST' }).catch(() => {});
  historyChanged();
}

/** Calls the same person again from a result screen. */
export function retryCall() {
  const { call } = callState.get();
  dismissResult();
  if (call) startCall(call.peerId, call.kind);
}

on('callAccepted', ({ callId } = {}) => {
  const { phase, call, status } = callState.get();
  if (phase !== 'outgoing' || call?.direction !== 'out') return;
  if (!call.id && status === 'starting') {
    early.set(callId, () => joinOutgoing(callId));
    return;
  }
  if (call.id === callId) joinOutgoing(callId);
});

function joinOutgoing(callId) {
  const { call } = callState.get();
  const creds = pendingJoin;
  pendingJoin = null;
  stopTone();
  callState.set({ phase: 'idle', status: '', result: null, call: null });
  if (creds) joinCall({ ...call, id: callId }, creds);
}

function outgoingEnded(callId, make) {
  const { phase, call, status } = callState.get();
  if (phase !== 'outgoing') return false;
  if (!call?.id && status === 'starting') {
    early.set(callId, make);
    return true;
  }
  if (call?.id !== callId) return false;
  make();
  return true;
}

on('callRejected', ({ callId } = {}) => {
  const { call } = callState.get();
  outgoingEnded(callId, () => result(t('calls.declined'), t('calls.declinedLong', { name: nameOf(call?.peerId) }), { retry: true }));
  historyChanged();
});

on('callMissed', ({ callId, callerId } = {}) => {
  historyChanged();
  if (callerId === me()?.id) {
    const { call } = callState.get();
    outgoingEnded(callId, () => result(t('calls.noAnswer'), t('calls.noAnswerLong', { name: nameOf(call?.peerId) }), { retry: true }));
    return;
  }
  // I was called and did not answer.
  const kind = isCurrent(callId) ? callState.get().call.kind : 'audio';
  if (isCurrent(callId) && callState.get().phase === 'incoming') {
    stopTone();
    dismissResult();
  }
  closeNotifications(callId);
  const onCalls = route.get().parts[0] === 'calls';
  if (!onCalls || document.visibilityState !== 'visible') callsBadge.set((s) => ({ missed: s.missed + 1 }));
  else markMissedSeen();
  toast(t('calls.missedFrom', { name: nameOf(callerId) }), {
    kind: 'info',
    ms: 10000,
    action: { label: t('calls.callBackShort'), run: () => startCall(callerId, kind) },
  });
});

// ---- callee ------------------------------------------------------------------

function ringIncoming(call) {
  loadLiveKit().catch(() => {});
  callState.set({ phase: 'incoming', status: '', result: null, call, soundBlocked: false });
  startTone('ring', (blocked) => callState.set({ soundBlocked: blocked }));
}

on('incomingCall', (d = {}) => {
  if (!d.callId) return;
  if (d.callerInfo) remember(d.callerInfo);
  const { phase } = callState.get();
  if (phase === 'outgoing' || phase === 'incoming' || stageCall()) return;
  ringIncoming({ id: d.callId, kind: d.callType === 'audio' ? 'audio' : 'video', peerId: d.callerId, direction: 'in' });
  if (!pushState.get().subscribed) {
    const title = t(d.callType === 'audio' ? 'calls.incomingAudio' : 'calls.incomingVideo', { name: nameOf(d.callerId) });
    notify(title, { tag: d.callId, data: { url: `/?call=${encodeURIComponent(d.callId)}` } });
  }
});

on('callCancelled', ({ callId, callerId } = {}) => {
  historyChanged();
  if (!isCurrent(callId) || callState.get().phase !== 'incoming') return;
  stopTone();
  dismissResult();
  closeNotifications(callId);
  toast(t('calls.cancelledBy', { name: nameOf(callerId) }));
});

/** The callee answers: the call screen opens. */
export async function acceptCall() {
  const { call, phase } = callState.get();
  if (phase !== 'incoming' || !call) return;
  stopTone();
  callState.set({ status: 'accepting' });
  closeNotifications(call.id);
  let r;
  try {
    r = await api(`/api/calls/${encodeURIComponent(call.id)}/accept`, { method: 'POST' });
  } catch (e) {
    const over = e.status === 403 || e.status === 409 || e.status === 404;
    return result(over ? t('calls.notRinging') : t('calls.failed'), over ? t('calls.callNotFound') : describeError(e));
  }
  if (inStage()) await activeStage.get().session.leave();
  callState.set({ phase: 'idle', call: null, status: '' });
  joinCall({ ...call, kind: r.call?.callType === 'audio' ? 'audio' : call.kind }, r);
}

/** The callee declines. */
export async function declineCall() {
  const { call, phase } = callState.get();
  if (phase !== 'incoming' || !call) return;
  stopTone();
  dismissResult();
  closeNotifications(call.id);
  try {
    await api(`/api/calls/${encodeURIComponent(call.id)}/reject`, { method: 'POST' });
  } catch (e) {
    if (![403, 404, 409].includes(e.status)) toast(describeError(e), { kind: 'error' });
  }
  historyChanged();
}

on('call.answered', ({ callId } = {}) => {
  // Answered in another tab or on another device (this tab, while accepting, ignores it).
  const st = callState.get();
  if (!isCurrent(callId) || st.phase !== 'incoming' || st.status === 'accepting') return;
  stopTone();
  closeNotifications(callId);
  callState.set({ phase: 'idle', call: null, status: '' });
  toast(t('calls.answeredElsewhere'));
});

// ---- both --------------------------------------------------------------------

on('call.started', ({ data } = {}) => {
  if (!data?.id) return;
  if (isCurrent(data.id) && callState.get().phase === 'incoming') {
    // Answered in another tab or on another device.
    stopTone();
    dismissResult();
    toast(t('calls.answeredElsewhere'));
  }
  const s = stageCall();
  if (s?.extra.callId === data.id && !s.store.get().startedAt) s.store.set({ startedAt: Date.now() });
});

on('call.ended', ({ data, by } = {}) => {
  if (!data?.id) return;
  historyChanged();
  const mine = me()?.id;
  if (isCurrent(data.id)) {
    const { phase, call } = callState.get();
    if (phase === 'incoming') {
      stopTone();
      dismissResult();
      closeNotifications(data.id);
    } else if (phase === 'outgoing') {
      if (data.status === 'rejected') result(t('calls.declined'), t('calls.declinedLong', { name: nameOf(call.peerId) }), { retry: true });
      else if (data.status === 'missed') result(t('calls.noAnswer'), t('calls.noAnswerLong', { name: nameOf(call.peerId) }), { retry: true });
      else if (data.status === 'ended') result(t('calls.ended'), t('calls.notConnectedLong'), { retry: true });
    }
  }
  const s = stageCall();
  if (s?.extra.callId !== data.id) return;
  const other = data.fromUserId === mine ? data.toUserId : data.fromUserId;
  const otherRole = data.fromUserId === mine ? 'callee' : 'caller';
  let message;
  if (data.endReason === 'not_connected') message = t('calls.notConnectedLong');
  else if (by === otherRole) message = t('calls.endedBy', { name: nameOf(other) });
  else message = t('calls.roomClosed');
  if (data.duration) message += ' ' + t('calls.endedAfter', { time: formatDuration(data.duration) });
  const st = s.store.get();
  if (st.status !== 'ended') s.finish({ message, reason: 'call-ended' });
  else if (st.ended?.message) s.store.set({ ended: { ...st.ended, message } });
});

/** Opens the call screen and joins the call's media room with `{token, url}`. */
export async function joinCall(call, creds) {
  try {
    await loadLiveKit();
  } catch (e) {
    toast(describeError(e), { kind: 'error' });
    return null;
  }
  const peer = person(call.peerId);
  const session = new MediaSession({
    kind: 'call',
    video: call.kind === 'video',
    title: peer.name,
    extra: { callId: call.id, peerId: call.peerId, callKind: call.kind },
    onLeave: () => api(`/api/calls/${encodeURIComponent(call.id)}/end`, { method: 'POST' }),
    onEnded: (s, ended) => {
      endTone();
      historyChanged();
      // Hanging up yourself returns at once; otherwise the reason shows a moment.
      if (!ended?.message) closeStage(s);
      else setTimeout(() => closeStage(s), 4000);
    },
  });
  openStage(session);
  session.connect(creds);
  return session;
}

// ---- start-up: missed calls, ringing calls, push links ------------------------

let startQuery = null;
let firstConnect = true;

const STATUS_WORDS = {
  missed: 'calls.missed',
  cancelled: 'calls.cancelled',
  rejected: 'calls.declined',
  ended: 'calls.ended',
  busy: 'calls.busyShort',
};

async function onConnect() {
  const first = firstConnect;
  firstConnect = false;
  let calls = [];
  try {
    ({ calls = [] } = (await api('/api/calls?limit=30')) || {});
  } catch {
    return;
  }
  const mine = me()?.id;
  if (first) {
    const seen = Number(localStorage.getItem(seenKey()) || 0);
    const missed = calls.filter((c) => c.status === 'missed' && c.toUserId === mine && Date.parse(c.startTime) > seen).length;
    if (route.get().parts[0] === 'calls') markMissedSeen();
    else callsBadge.set({ missed });
  }
  const q = startQuery;
  startQuery = null;
  if (q?.call) return openFromLink(q);
  // A call ringing for me that this page has not shown (opened meanwhile, or a reconnect).
  const ringing = calls.find((c) => c.status === 'ringing' && c.toUserId === mine);
  if (ringing && callState.get().phase === 'idle' && !stageCall()) {
    ringIncoming({ id: ringing.id, kind: ringing.callType === 'audio' ? 'audio' : 'video', peerId: ringing.fromUserId, direction: 'in' });
    return;
  }
  // A call still going on without this page (reloaded, or the tab was closed in the call).
  const going = first && calls.find((c) => c.status === 'connected' || c.status === 'accepted');
  if (going && !stageCall() && callState.get().phase === 'idle') {
    const peerId = going.fromUserId === mine ? going.toUserId : going.fromUserId;
    toast(t('calls.stillGoing', { name: nameOf(peerId) }), {
      ms: 20000,
      action: { label: t('calls.rejoin'), run: () => rejoinCall(going, peerId) },
    });
  }
}


/** Back into a call this page left without hanging up. */
async function rejoinCall(c, peerId) {
  if (stageCall()) return;
  try {
    const creds = await api('/livekit/token', { body: { callId: c.id } });
    joinCall({ id: c.id, kind: c.callType === 'audio' ? 'audio' : 'video', peerId, direction: c.fromUserId === peerId ? 'in' : 'out' }, creds);
  } catch (e) {
    toast(e.status === 403 ? t('calls.roomClosed') : describeError(e), { kind: 'error' });
  }
}

/**
 * A call link from a notification (`{call, action}`): the incoming screen, or
 * the answer chosen in the notification; a call that no longer rings is said so.
 */
async function openFromLink(q) {
  const mine = me()?.id;
  let c = null;
  try {
    ({ call: c } = (await api(`/api/calls/${encodeURIComponent(q.call)}`)) || {});
  } catch (e) {
    if (e.status !== 404) return result(t('calls.failed'), describeError(e));
  }
  if (!c || c.toUserId !== mine) return result(t('calls.notRinging'), t('calls.callNotFound'));
  if (c.status === 'accepted' || c.status === 'connected') {
    if (stageCall()?.extra.callId === c.id) return undefined;
    return result(t('calls.notRinging'), t('calls.answeredElsewhere'));
  }
  if (c.status !== 'ringing') {
    return result(
      t('calls.notRinging'),
      t('calls.notRingingWhy', { name: nameOf(c.fromUserId), status: t(STATUS_WORDS[c.status] || 'calls.ended').toLowerCase() }),
    );
  }
  if (stageCall()?.extra.callId === c.id) return;
  const call = { id: c.id, kind: c.callType === 'audio' ? 'audio' : 'video', peerId: c.fromUserId, direction: 'in' };
  if (q.action === 'reject') {
    callState.set({ phase: 'incoming', call, status: '' });
    await declineCall();
    toast(t('calls.declinedToast'));
  } else if (q.action === 'accept') {
    callState.set({ phase: 'incoming', call, status: 'accepting' });
    await acceptCall();
  } else if (!(isCurrent(c.id) && callState.get().phase === 'incoming')) {
    ringIncoming(call);
  }
}

// A click on a notification while the app is open: the worker posts the link here.
navigator.serviceWorker?.addEventListener('message', (e) => {
  const d = e.data;
  if (d?.type !== 'nodo-open' || typeof d.url !== 'string') return;
  const u = new URL(d.url, location.origin);
  if (u.origin !== location.origin) return;
  if (!me()) {
    location.href = u.href;
    return;
  }
  const call = u.searchParams.get('call');
  const chat = u.searchParams.get('chat');
  if (call) openFromLink({ call, action: u.searchParams.get('action') });
  else if (chat) location.hash = `#/chats/${encodeURIComponent(chat)}`;
  else if (u.hash) location.hash = u.hash;
});

let inited = false;
/** Once per sign-in, before the socket connects. */
export function initCalls(query = {}) {
  startQuery = query.call ? { call: query.call, action: query.action } : null;
  firstConnect = true;
  callsBadge.set({ missed: 0 });
  if (inited) return;
  inited = true;
  on('connect', () => {
    onConnect();
  });
}

// Signing out ends whatever call or ringing this page has.
authSession.subscribe((s) => {
  if (s.current) return;
  stopTone();
  pendingJoin = null;
  callState.set({ phase: 'idle', call: null, status: '', result: null });
  const st = activeStage.get().session;
  if (st) {
    st.leave();
    closeStage(st);
  }
});
