// Meetings from the page's side: the ones this user is a member of (GET
// /api/rooms, cached on this device, kept current by room.created and
// room.ended), plus open meetings entered by link; joining with a
// room token, moderator actions through the node's Twirp RoomService (the
// moderator's meeting token carries roomAdmin for that room), and invitations
// arriving as room.created / room.joined.
import { api, ApiError, me } from '../core/api.js';
import { t } from '../core/i18n.js';
import { person } from '../core/people.js';
import { navigate, route } from '../core/router.js';
import { on } from '../core/socket.js';
import { createStore } from '../core/store.js';
import { describeError, toast } from '../core/ui.jsx';
import { activeStage, closeStage, inStage, MediaSession, openStage } from '../calls/session.js';
import { LK, loadLiveKit } from '../calls/lk.js';

/** byId: {id: meeting} as the API shows it (name, roomName, moderators, participants, open, createdAt, endedAt). */
export const known = createStore({ byId: {} });

const key = () => `nodo.meetings.${me()?.id}`;
function persist() {
  try {
    localStorage.setItem(key(), JSON.stringify(known.get().byId));
  } catch {
    /* full or private mode: the list lasts for this page */
  }
}
export function rememberMeeting(m) {
  if (!m?.id) return;
  known.set((s) => ({ byId: { ...s.byId, [m.id]: { ...s.byId[m.id], ...m } } }));
  persist();
}

/** The grants of a room token (its payload, not verified: only to show the right controls). */
export function grantOf(token) {
  try {
    const b64 = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      [...atob(b64)].map((c) => '%' + c.charCodeAt(0).toString(16).padStart(2, '0')).join(''),
    );
    return JSON.parse(json).video || {};
  } catch {
    return {};
  }
}

/** Words for a failed meeting request. */
export function meetingError(e) {
  if (e?.status === 403) return t('meetings.err.forbidden');
  if (e?.status === 404) return t('meetings.err.notFound');
  if (e?.status === 409) return t('meetings.err.ended');
  return describeError(e);
}

export async function createMeeting({ name, members, open }) {
  const m = await api('/api/rooms', { body: { name, members, open, metadata: JSON.stringify({ name }) } });
  rememberMeeting(m);
  return m;
}

export const meetingSession = (id) => {
  const s = activeStage.get().session;
  return s?.kind === 'meeting' && s.extra.meetingId === id ? s : null;
};

/** A moderator action through the RoomService with the meeting token. */
async function twirp(session, method, body) {
  const res = await fetch(`/twirp/livekit.RoomService/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${session.extra.token}` },
    body: JSON.stringify({ room: session.extra.roomName, ...body }),
  });
  if (!res.ok) {
    const d = await res.json().catch(() => ({}));
    throw new ApiError(res.status === 404 ? 404 : res.status, d.code, d.msg);
  }
  return res.json().catch(() => ({}));
}

export async function muteParticipant(session, identity, trackSid) {
  await twirp(session, 'MutePublishedTrack', { identity, track_sid: trackSid, muted: true });
}
export async function removeParticipant(session, identity) {
  await twirp(session, 'RemoveParticipant', { identity });
}
export async function endMeeting(session) {
  const id = session.extra.meetingId;
  const r = await api(`/api/rooms/${encodeURIComponent(id)}/end`, { method: 'POST' });
  if (r?.room) rememberMeeting(r.room);
}

/**
 * Joins meeting `id`: a token from the node, then the call stage.
 * `prefs`: {mic, cam}; `components`: the panel and rejoin pieces of the stage.
 */
export async function joinMeeting(id, prefs, components) {
  const existing = meetingSession(id);
  if (existing) {
    activeStage.set({ minimized: false });
    return existing;
  }
  const r = await api(`/api/rooms/${encodeURIComponent(id)}/join`, { method: 'POST' });
  const grant = grantOf(r.token);
  const moderator = !!grant.roomAdmin;
  const m = known.get().byId[id];
  if (moderator && !m?.startedAt) {
    const started = await api(`/api/rooms/${encodeURIComponent(id)}/start`, { method: 'POST' }).catch(() => null);
    if (started) rememberMeeting(started);
  }
  // A call or another meeting in progress ends first.
  if (inStage()) await activeStage.get().session.leave();
  await loadLiveKit();
  const session = new MediaSession({
    kind: 'meeting',
    video: prefs.cam,
    title: m?.name || t('meetings.meeting'),
    extra: {
      meetingId: id,
      roomName: grant.room || m?.roomName,
      token: r.token,
      moderator,
      prefs,
      ...components,
    },
    onEnded: (s, ended) => {
      if (!ended?.message) closeStage(s);
      if (ended?.reason === LK.DisconnectReason.ROOM_DELETED) rememberMeeting({ id, endedAt: new Date().toISOString() });
    },
  });
  openStage(session);
  const ok = await session.connect(r, { mic: prefs.mic, cam: prefs.cam });
  if (ok) {
    // Meetings shared by link: the name travels in the room's metadata.
    try {
      const meta = JSON.parse(session.room.metadata || '{}');
      if (meta.name && !m?.name) {
        session.title = meta.name;
        session.store.set((st) => ({ tick: st.tick + 1 }));
        rememberMeeting({ id, name: meta.name, roomName: grant.room });
      }
    } catch {
      /* metadata set by another client: not ours to read */
    }
    if (!m) rememberMeeting({ id, roomName: grant.room, name: session.title, createdAt: new Date().toISOString() });
  }
  return session;
}

/** The last toast about each meeting: {at}; one invitation at a time is enough. */
const toasted = new Map();
function toastOnce(id, text, ms) {
  const last = toasted.get(id);
  if (last && Date.now() - last < ms) return;
  toasted.set(id, Date.now());
  toast(text, { action: { label: t('meetings.join'), run: () => navigate('meetings', id) }, ms });
}

let inited = false;
export function initMeetings() {
  try {
    known.set({ byId: JSON.parse(localStorage.getItem(key()) || '{}') || {} });
  } catch {
    known.set({ byId: {} });
  }
  // The node's list of this user's meetings (the cache above shows at once).
  api('/api/rooms?limit=100')
    .then(({ rooms } = {}) => (rooms || []).forEach(rememberMeeting))
    .catch(() => {});
  if (inited) return;
  inited = true;
  on('room.ended', ({ data } = {}) => {
    if (data?.id) rememberMeeting(data);
  });
  on('room.created', ({ data } = {}) => {
    if (!data?.id) return;
    rememberMeeting(data);
    if (data.moderatorId === me()?.id) return;
    toastOnce(data.id, t('meetings.invitation', { who: person(data.moderatorId).name, name: data.name }), 20000);
  });
  on('room.joined', ({ data } = {}) => {
    if (!data?.roomId || data.userId === me()?.id) return;
    const id = data.roomId;
    if (meetingSession(id)) return;
    const [section, open] = route.get().parts;
    if (section === 'meetings' && open === id) return;
    const m = known.get().byId[id];
    if (m?.endedAt) return;
    toastOnce(id, t('meetings.joinedNote', { who: person(data.userId).name, name: m?.name || t('meetings.aMeeting') }), 12000);
  });
}
