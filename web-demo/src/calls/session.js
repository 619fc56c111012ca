// One LiveKit room as the call and meeting screens use it: connect, publish
// the microphone and camera (each on its own, so a refused camera leaves an
// audio call), play remote audio, follow speakers, quality and reconnects,
// and say in plain words why it ended.
//
// `activeStage` holds the one session shown by CallLayer (a 1:1 call or a
// meeting); a page has at most one.
import { LK } from './lk.js';
import { t } from '../core/i18n.js';
import { createStore } from '../core/store.js';

/** session: the MediaSession on screen; minimized: the app is shown with a bar to return. */
export const activeStage = createStore({ session: null, minimized: false });

/** Shows a session in the call layer (replacing none: callers check first). */
export function openStage(session) {
  activeStage.set({ session, minimized: false });
}
export function closeStage(session) {
  if (!session || activeStage.get().session === session) activeStage.set({ session: null, minimized: false });
}
export const inStage = () => !!activeStage.get().session;

/** Words for a getUserMedia failure of `what` ('mic' | 'cam'). */
export function deviceError(e, what) {
  if (!LK) return t('call.err.device', { msg: e?.message || String(e) });
  const failure = LK.MediaDeviceFailure.getFailure(e);
  if (!window.isSecureContext) return t('call.err.insecure');
  if (failure === LK.MediaDeviceFailure.PermissionDenied) return t(what === 'mic' ? 'call.err.micBlocked' : 'call.err.camBlocked');
  if (failure === LK.MediaDeviceFailure.NotFound) return t(what === 'mic' ? 'call.err.micMissing' : 'call.err.camMissing');
  if (failure === LK.MediaDeviceFailure.DeviceInUse) return t(what === 'mic' ? 'call.err.micBusy' : 'call.err.camBusy');
  return t('call.err.device', { msg: e?.message || String(e) });
}

function endWords(reason, kind) {
  switch (reason) {
    case LK.DisconnectReason.PARTICIPANT_REMOVED:
      return t('call.end.removed');
    case LK.DisconnectReason.ROOM_DELETED:
    case LK.DisconnectReason.ROOM_CLOSED:
      return kind === 'meeting' ? t('call.end.meetingEnded') : t('call.end.roomDeleted');
    case LK.DisconnectReason.DUPLICATE_IDENTITY:
      return t('call.end.duplicate');
    case LK.DisconnectReason.SERVER_SHUTDOWN:
      return t('call.end.shutdown');
    case LK.DisconnectReason.JOIN_FAILURE:
      return t('call.end.joinFailed');
    default:
      return t('call.end.lost');
  }
}

let seq = 0;

export class MediaSession {
  /**
   * kind: 'call' | 'meeting'; video: publish the camera at start; title: shown on top;
   * extra: what the feature needs (call id, peer, meeting id, moderator…);
   * onLeave(session): the feature's own leaving (end the call through the API).
   */
  constructor({ kind, video, title, extra = {}, onLeave, onEnded }) {
    this.id = ++seq;
    this.kind = kind;
    this.wantVideo = !!video;
    this.title = title;
    this.extra = extra;
    this.onLeave = onLeave;
    this.onEnded = onEnded;
    this.store = createStore({
      status: 'idle', // idle | connecting | connected | reconnecting | ended
      tick: 0,
      startedAt: 0,
      notices: [], // {id, text, kind: 'error'|'info'}
      audioBlocked: false,
      ended: null, // {message, reason}
      announce: '',
    });
    this.selfMuting = false;
    this.audioBox = document.createElement('div');
    this.audioBox.className = 'call-audio';
    this.audioBox.hidden = true;
    document.body.appendChild(this.audioBox);
    const room = new LK.Room({
      adaptiveStream: true,
      dynacast: true,
      videoCaptureDefaults: { resolution: (kind === 'meeting' ? LK.VideoPresets.h360 : LK.VideoPresets.h540).resolution },
      publishDefaults: { simulcast: true, videoCodec: 'vp8', dtx: true, red: true },
      audioCaptureDefaults: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
      disconnectOnPageLeave: true,
    });
    this.room = room;
    const bump = () => this.store.set((s) => ({ tick: s.tick + 1 }));
    for (const ev of [
      LK.RoomEvent.ParticipantConnected,
      LK.RoomEvent.ParticipantDisconnected,
      LK.RoomEvent.TrackPublished,
      LK.RoomEvent.TrackUnpublished,
      LK.RoomEvent.TrackSubscribed,
      LK.RoomEvent.TrackUnsubscribed,
      LK.RoomEvent.TrackMuted,
      LK.RoomEvent.TrackUnmuted,
      LK.RoomEvent.LocalTrackPublished,
      LK.RoomEvent.LocalTrackUnpublished,
      LK.RoomEvent.ActiveSpeakersChanged,
      LK.RoomEvent.ConnectionQualityChanged,
      LK.RoomEvent.ParticipantNameChanged,
      LK.RoomEvent.RoomMetadataChanged,
      LK.RoomEvent.TrackStreamStateChanged,
    ]) {
      room.on(ev, bump);
    }
    room.on(LK.RoomEvent.TrackSubscribed, (track, pub, participant) => {
      if (track.kind !== LK.Track.Kind.Audio) return;
      const el = track.attach();
      el.dataset.identity = participant.identity;
      el.dataset.source = pub.source;
      this.audioBox.appendChild(el);
    });
    room.on(LK.RoomEvent.TrackUnsubscribed, (track) => {
      if (track.kind === LK.Track.Kind.Audio) for (const el of track.detach()) el.remove();
    });
    room.on(LK.RoomEvent.AudioPlaybackStatusChanged, () => this.store.set({ audioBlocked: !room.canPlaybackAudio }));
    room.on(LK.RoomEvent.ParticipantConnected, (p) => {
      if (!this.store.get().startedAt) this.store.set({ startedAt: Date.now() });
      this.say(t('call.joined', { name: p.name || p.identity }));
    });
    room.on(LK.RoomEvent.ParticipantDisconnected, (p) => this.say(t('call.left', { name: p.name || p.identity })));
    room.on(LK.RoomEvent.Reconnecting, () => this.store.set({ status: 'reconnecting' }));
    room.on(LK.RoomEvent.SignalReconnecting, () => this.store.set({ status: 'reconnecting' }));
    room.on(LK.RoomEvent.Reconnected, () => {
      this.store.set({ status: 'connected' });
      this.say(t('call.reconnected'));
    });
    room.on(LK.RoomEvent.MediaDevicesError, (e, kind) => {
      this.notice(deviceError(e, kind === 'audioinput' ? 'mic' : 'cam'), 'error');
    });
    room.on(LK.RoomEvent.TrackMuted, (pub, participant) => {
      if (participant === room.localParticipant && pub.source === LK.Track.Source.Microphone && !this.selfMuting) {
        this.notice(t('call.mutedByModerator'), 'info');
      }
    });
    room.on(LK.RoomEvent.Disconnected, (reason) => {
      if (this.store.get().status === 'ended') return;
      const message = reason === LK.DisconnectReason.CLIENT_INITIATED ? '' : endWords(reason, this.kind);
      this.finish({ message, reason });
    });
  }

  /** Announces `text` to screen readers (the stage's live region). */
  say(text) {
    this.store.set({ announce: text });
  }

  notice(text, kind = 'info') {
    const id = `${Date.now()}-${Math.random()}`;
    // Shown in a status (or alert) region of its own: no second announcement.
    this.store.set((s) => ({ notices: [...s.notices.filter((n) => n.text !== text).slice(-2), { id, text, kind }] }));
    if (kind === 'info') setTimeout(() => this.dismiss(id), 8000);
  }

  dismiss(id) {
    this.store.set((s) => ({ notices: s.notices.filter((n) => n.id !== id) }));
  }

  /** Connects with `{url, token}` and publishes the microphone (and camera). */
  async connect({ url, token }, { mic = true, cam = this.wantVideo } = {}) {
    this.store.set({ status: 'connecting' });
    try {
      await this.room.connect(url, token);
    } catch (e) {
      if (this.store.get().status === 'ended') return false;
      const msg = /401|403|token|permission|not allowed/i.test(String(e?.message)) ? t('call.err.token', { msg: e.message }) : t('call.err.connect');
      this.finish({ message: msg, reason: 'connect' });
      return false;
    }
    if (this.store.get().status === 'ended') return false;
    this.store.set({ status: 'connected', audioBlocked: !this.room.canPlaybackAudio });
    if (this.room.remoteParticipants.size > 0 || this.kind === 'meeting') this.store.set({ startedAt: Date.now() });
    // One after the other: a refused camera must not take the microphone along.
    if (mic) await this.setMic(true);
    if (cam) await this.setCam(true);
    return true;
  }

  get local() {
    return this.room.localParticipant;
  }

  async setMic(on) {
    this.selfMuting = true;
    try {
      await this.local.setMicrophoneEnabled(on);
    } catch (e) {
      this.notice(deviceError(e, 'mic'), 'error');
    } finally {
      this.selfMuting = false;
      this.store.set((s) => ({ tick: s.tick + 1 }));
    }
  }

  async setCam(on) {
    try {
      await this.local.setCameraEnabled(on);
    } catch (e) {
      this.notice(deviceError(e, 'cam'), 'error');
    } finally {
      this.store.set((s) => ({ tick: s.tick + 1 }));
    }
  }

  async setScreen(on) {
    try {
      await this.local.setScreenShareEnabled(on, { audio: false, selfBrowserSurface: 'exclude' });
    } catch (e) {
      // Cancelling the browser's picker is a choice, not a failure.
      if (e?.name !== 'NotAllowedError' && e?.name !== 'AbortError') this.notice(t('call.err.share'), 'error');
    } finally {
      this.store.set((s) => ({ tick: s.tick + 1 }));
    }
  }

  get micOn() {
    return this.local.isMicrophoneEnabled;
  }
  get camOn() {
    return this.local.isCameraEnabled;
  }
  get screenOn() {
    return this.local.isScreenShareEnabled;
  }

  async startAudio() {
    try {
      await this.room.startAudio();
    } finally {
      this.store.set({ audioBlocked: !this.room.canPlaybackAudio });
    }
  }

  /** The user leaves (the feature's onLeave may end the call for both). */
  async leave() {
    if (this.store.get().status === 'ended') return;
    this.finish({ message: '', reason: 'left' });
    try {
      await this.onLeave?.(this);
    } catch {
      /* the room is left either way */
    }
  }

  /** Ends the session: disconnects, stops the devices, drops the audio elements. */
  finish(ended) {
    if (this.store.get().status === 'ended') return;
    this.store.set({ status: 'ended', ended });
    this.room.disconnect(true).catch(() => {});
    for (const el of this.audioBox.querySelectorAll('audio')) el.srcObject = null;
    this.audioBox.remove();
    this.onEnded?.(this, ended);
  }

  /** Everyone in the room, the local participant first. */
  participants() {
    return [this.local, ...this.room.remoteParticipants.values()];
  }
}

/** livekit-client's `Track` (its enums), once loaded. */
export const Track = new Proxy({}, { get: (_, k) => LK.Track[k] });
