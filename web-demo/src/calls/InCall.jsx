// The call screen (1:1 calls and meetings): a dark stage with the participant
// grid (video tiles with names, avatars for audio-only, the active speaker
// highlighted, connection quality), a big tile for a shared screen, round
// controls, a device picker, and the states around it (connecting,
// reconnecting, sound blocked, ended).
import { loadLiveKit } from './lk.js';
import { useEffect, useRef, useState } from 'preact/hooks';
import { t, tn } from '../core/i18n.js';
import { people, person } from '../core/people.js';
import { useStore } from '../core/store.js';
import { Avatar, Icon, IconButton, Modal } from '../core/ui.jsx';
import { formatDuration } from './flow.js';
import { useModalLayer } from './overlay.js';
import { activeStage, closeStage, Track } from './session.js';

export function useNow(ms = 1000) {
  const [, set] = useState(0);
  useEffect(() => {
    const i = setInterval(() => set((x) => x + 1), ms);
    return () => clearInterval(i);
  }, [ms]);
}

/** A round control of the call screen; `label` is its accessible name. */
export function RoundButton({ icon, label, tone = '', text, class: cls = '', ...rest }) {
  return (
    <button type="button" class={`round ${tone} ${cls}`} aria-label={text ? undefined : label} title={label} {...rest}>
      <span class="round-ico">
        <Icon name={icon} size={24} />
      </span>
      {text && <span class="round-text">{text}</span>}
    </button>
  );
}

function VideoView({ track, local, screen, identity }) {
  const ref = useRef(null);
  useEffect(() => {
    const el = ref.current;
    if (!el || !track) return undefined;
    track.attach(el);
    return () => track.detach(el);
  }, [track]);
  return (
    <video
      ref={ref}
      class={`vid ${local && !screen ? 'mirror' : ''} ${screen ? 'contain' : ''}`}
      autoPlay
      playsInline
      muted
      data-identity={identity}
      data-source={screen ? 'screen' : 'camera'}
      data-remote={local ? 'false' : 'true'}
    />
  );
}

const BARS = { excellent: 3, good: 2, poor: 1, lost: 0, unknown: 0 };
function Quality({ q = 'unknown' }) {
  const n = BARS[q] ?? 0;
  return (
    <span class={`quality q-${q}`} role="img" aria-label={t(`call.quality.${q}`)} title={t(`call.quality.${q}`)}>
      {[1, 2, 3].map((i) => (
        <i key={i} class={i <= n ? 'on' : ''} />
      ))}
    </span>
  );
}

export function displayName(p) {
  const info = person(p.identity);
  return p.name || info.name || p.identity;
}

function Tile({ p, session, speaking, size = 'md' }) {
  const isLocal = p === session.local;
  const info = person(p.identity);
  const name = displayName(p);
  const label = isLocal ? t('call.you', { name }) : name;
  const cam = p.getTrackPublication(Track.Source.Camera);
  const mic = p.getTrackPublication(Track.Source.Microphone);
  const video = cam && !cam.isMuted && cam.track ? cam.track : null;
  const micOff = !mic || mic.isMuted;
  return (
    <figure class={`tile ${speaking ? 'speaking' : ''} ${video ? '' : 'no-video'}`} role="group" aria-label={label} data-identity={p.identity}>
      {video ? (
        <VideoView track={video} local={isLocal} identity={p.identity} />
      ) : (
        <div class="tile-avatar">
          <Avatar user={{ ...info, name }} size={size === 'sm' ? 44 : size === 'lg' ? 120 : 80} />
        </div>
      )}
      <figcaption class="tile-name">
        {micOff && (
          <span class="tile-mic" role="img" aria-label={t('call.micOff')} title={t('call.micOff')}>
            <Icon name="micOff" size={15} />
          </span>
        )}
        <span class="tile-label">{label}</span>
        {speaking && <span class="sr-only">, {t('call.speaking')}</span>}
      </figcaption>
      <Quality q={p.connectionQuality} />
    </figure>
  );
}

function ScreenTile({ p, session }) {
  const pub = p.getTrackPublication(Track.Source.ScreenShare);
  const isLocal = p === session.local;
  const label = isLocal ? t('call.yourScreen') : t('call.screenOf', { name: displayName(p) });
  return (
    <figure class="tile screen" role="group" aria-label={label}>
      {pub?.track && <VideoView track={pub.track} local={isLocal} screen identity={p.identity} />}
      <figcaption class="tile-name">
        <Icon name="screen" size={15} />
        <span class="tile-label">{label}</span>
      </figcaption>
    </figure>
  );
}

const speakerSupported = () => typeof HTMLMediaElement !== 'undefined' && 'setSinkId' in HTMLMediaElement.prototype;

function DevicePicker({ session, onClose }) {
  const [lists, setLists] = useState(null);
  const [error, setError] = useState('');
  const [, setTick] = useState(0);
  const kinds = [
    ['audioinput', 'call.mic'],
    ['videoinput', 'call.camera'],
    ...(speakerSupported() ? [['audiooutput', 'call.speaker']] : []),
  ];
  const load = async () => {
    const out = {};
    for (const [k] of kinds) {
      try {
        out[k] = await (await loadLiveKit()).Room.getLocalDevices(k, false);
      } catch {
        out[k] = [];
      }
    }
    setLists(out);
  };
  useEffect(() => {
    load();
    navigator.mediaDevices?.addEventListener?.('devicechange', load);
    return () => navigator.mediaDevices?.removeEventListener?.('devicechange', load);
  }, []);
  const pick = async (kind, id) => {
    setError('');
    try {
      const ok = await session.room.switchActiveDevice(kind, id);
      if (ok === false) setError(t('call.deviceFailed'));
    } catch {
      setError(t('call.deviceFailed'));
    }
    setTick((x) => x + 1);
  };
  return (
    <Modal title={t('call.devicesTitle')} onClose={onClose} class="device-picker">
      <div class="stack">
        {kinds.map(([kind, key]) => {
          const list = lists?.[kind] || [];
          const wanted = session.room.getActiveDevice(kind) || 'default';
          const active = list.some((d) => d.deviceId === wanted) ? wanted : list[0]?.deviceId || 'default';
          return (
            <label key={kind}>
              {t(key)}
              <select value={active} disabled={!lists || list.length === 0} onChange={(e) => pick(kind, e.currentTarget.value)}>
                {list.length === 0 && <option value="default">{lists ? t('call.noDevices') : '…'}</option>}
                {list.map((d, i) => (
                  <option key={d.deviceId} value={d.deviceId}>
                    {d.label || (d.deviceId === 'default' ? t('call.default') : t('call.deviceLabel', { kind: t(key), n: i + 1 }))}
                  </option>
                ))}
              </select>
            </label>
          );
        })}
        {error && (
          <p class="error-note" role="alert">
            {error}
          </p>
        )}
      </div>
      <div class="actions">
        <button type="button" class="primary" onClick={onClose}>
          {t('call.done')}
        </button>
      </div>
    </Modal>
  );
}

function gridShape(n, wide) {
  if (n <= 1) return [1, 1];
  if (!wide) {
    if (n === 2) return [1, 2];
    const cols = 2;
    return [cols, Math.ceil(n / cols)];
  }
  const cols = Math.ceil(Math.sqrt(n));
  return [cols, Math.ceil(n / cols)];
}

function useWide() {
  const q = '(min-width: 721px)';
  const [wide, setWide] = useState(() => window.matchMedia?.(q).matches ?? true);
  useEffect(() => {
    const m = window.matchMedia?.(q);
    if (!m) return undefined;
    const f = () => setWide(m.matches);
    m.addEventListener('change', f);
    return () => m.removeEventListener('change', f);
  }, []);
  return wide;
}

function Ended({ session, ended }) {
  const { Rejoin } = session.extra;
  return (
    <div class="stage-ended" role="alert">
      <h2>{session.kind === 'meeting' ? session.title : t('calls.ended')}</h2>
      {ended.message && <p>{ended.message}</p>}
      <div class="ring-actions">
        {Rejoin && <Rejoin session={session} />}
        <button type="button" class="primary" data-autofocus onClick={() => closeStage(session)}>
          {t('calls.close')}
        </button>
      </div>
    </div>
  );
}

/** The call screen for `session` (a MediaSession). */
export function Stage({ session }) {
  const s = useStore(session.store);
  useStore(people);
  useNow(1000);
  const wide = useWide();
  const ref = useRef(null);
  useModalLayer(ref, '[data-autofocus]');
  const [devices, setDevices] = useState(false);
  const [panel, setPanel] = useState(false);
  const { Panel, Controls } = session.extra;

  const parts = session.participants();
  const remotes = parts.filter((p) => p !== session.local);
  const speakers = new Set(session.room.activeSpeakers.map((p) => p.identity));
  const screens = parts.filter((p) => p.getTrackPublication(Track.Source.ScreenShare)?.track);
  const micOn = session.micOn;
  const camOn = session.camOn;
  const screenOn = session.screenOn;
  const canShare = !!navigator.mediaDevices?.getDisplayMedia;
  const isCall = session.kind === 'call';
  const peerName = isCall ? person(session.extra.peerId).name : '';

  let sub;
  if (s.status === 'ended') sub = ' ';
  else if (s.status === 'connecting' || s.status === 'idle') sub = t('calls.connecting');
  else if (isCall && remotes.length === 0) sub = t('call.waiting', { name: peerName });
  else if (s.startedAt) sub = null;
  const onKey = (e) => {
    if (e.key === 'Escape' && !devices && s.status !== 'ended') {
      e.stopPropagation();
      activeStage.set({ minimized: true });
    }
  };

  let body;
  if (s.status === 'ended') {
    body = <Ended session={session} ended={s.ended || {}} />;
  } else if (screens.length) {
    body = (
      <div class="stage-present">
        <ScreenTile p={screens[0]} session={session} />
        <div class="stage-strip">
          {parts.map((p) => (
            <Tile key={p.identity} p={p} session={session} speaking={speakers.has(p.identity)} size="sm" />
          ))}
        </div>
      </div>
    );
  } else if (isCall && remotes.length === 1) {
    body = (
      <div class="stage-duo">
        <Tile p={remotes[0]} session={session} speaking={speakers.has(remotes[0].identity)} size="lg" />
        <div class="pip">
          <Tile p={session.local} session={session} speaking={speakers.has(session.local.identity)} size="sm" />
        </div>
      </div>
    );
  } else {
    const [cols, rows] = gridShape(parts.length, wide);
    body = (
      <div class="stage-grid" style={{ '--cols': cols, '--rows': rows }}>
        {parts.map((p) => (
          <Tile key={p.identity} p={p} session={session} speaking={speakers.has(p.identity)} size={parts.length > 4 ? 'sm' : 'md'} />
        ))}
        {isCall && remotes.length === 0 && s.status !== 'ended' && (
          <figure class="tile waiting no-video" role="group" aria-label={peerName}>
            <div class="tile-avatar pulse">
              <Avatar user={person(session.extra.peerId)} size={80} />
            </div>
            <figcaption class="tile-name">
              <span class="tile-label">{peerName}</span>
            </figcaption>
          </figure>
        )}
      </div>
    );
  }

  return (
    <div
      class={`stage ${panel && Panel ? 'with-panel' : ''}`}
      ref={ref}
      role="dialog"
      aria-modal="true"
      aria-labelledby="stage-title"
      tabIndex={-1}
      onKeyDown={onKey}
      data-status={s.status}
    >
      <header class="stage-top">
        <IconButton icon="back" label={t('call.minimize')} class="stage-min" onClick={() => activeStage.set({ minimized: true })} />
        <div class="stage-heading">
          <h2 id="stage-title">{session.title}</h2>
          <p class="stage-sub">
            {sub ||
              (s.startedAt ? (
                <span role="timer" aria-label={t('call.timer')}>
                  {formatDuration((Date.now() - s.startedAt) / 1000)}
                </span>
              ) : null)}
            {!isCall && s.status === 'connected' && <span class="stage-count"> · {tn('meetings.people', parts.length)}</span>}
          </p>
        </div>
        {s.status !== 'ended' && <Quality q={session.local.connectionQuality} />}
      </header>
      {s.status === 'reconnecting' && (
        <div class="stage-banner warn" role="alert">
          {t('call.reconnecting')}
        </div>
      )}
      {s.audioBlocked && s.status !== 'ended' && (
        <div class="stage-banner" role="alert">
          <span>{t('call.soundBlocked')}</span>
          <button type="button" class="primary" onClick={() => session.startAudio()}>
            {t('call.enableSound')}
          </button>
        </div>
      )}
      {s.notices.length > 0 && s.status !== 'ended' && (
        <ul class="stage-notices">
          {s.notices.map((n) => (
            <li key={n.id} class={`stage-notice ${n.kind}`} role={n.kind === 'error' ? 'alert' : 'status'}>
              <span>{n.text}</span>
              <IconButton icon="close" label={t('ui.dismiss')} onClick={() => session.dismiss(n.id)} />
            </li>
          ))}
        </ul>
      )}
      <div class="stage-body">
        <section class="stage-media" aria-label={t('call.grid')}>
          {body}
        </section>
        {panel && Panel && s.status !== 'ended' && (
          <aside class="stage-panel" aria-label={t('call.participants')}>
            <Panel session={session} onClose={() => setPanel(false)} />
          </aside>
        )}
      </div>
      {s.status !== 'ended' && (
        <div class="stage-controls" role="group" aria-label={t('call.controls')}>
          <RoundButton
            icon={micOn ? 'mic' : 'micOff'}
            tone={micOn ? '' : 'off'}
            label={micOn ? t('call.muteMic') : t('call.unmuteMic')}
            onClick={() => session.setMic(!micOn)}
            disabled={s.status === 'connecting'}
            data-autofocus
          />
          <RoundButton
            icon={camOn ? 'cam' : 'camOff'}
            tone={camOn ? '' : 'off'}
            label={camOn ? t('call.camOff') : t('call.camOn')}
            onClick={() => session.setCam(!camOn)}
            disabled={s.status === 'connecting'}
          />
          {canShare && (
            <RoundButton
              icon="screen"
              tone={screenOn ? 'active' : ''}
              class="share"
              label={screenOn ? t('call.stopShare') : t('call.share')}
              onClick={() => session.setScreen(!screenOn)}
              disabled={s.status === 'connecting'}
            />
          )}
          <RoundButton icon="settings" label={t('call.devices')} onClick={() => setDevices(true)} />
          {Panel && (
            <RoundButton icon="people" tone={panel ? 'active' : ''} label={t('call.participants')} aria-expanded={panel} onClick={() => setPanel(!panel)} />
          )}
          {Controls && <Controls session={session} />}
          <RoundButton icon="hangup" tone="leave" label={isCall ? t('call.leave') : t('meetings.leave')} onClick={() => session.leave()} />
        </div>
      )}
      <div class="sr-only" aria-live="polite">
        {s.announce}
      </div>
      {devices && <DevicePicker session={session} onClose={() => setDevices(false)} />}
    </div>
  );
}

/** The bar shown over the app while a call is minimized. */
export function MiniBar({ session }) {
  const s = useStore(session.store);
  useNow(1000);
  const label = session.kind === 'call' ? t('call.inCallWith', { name: session.title }) : t('call.inMeeting', { name: session.title });
  return (
    <div class="call-mini" role="region" aria-label={label}>
      <span class="call-mini-dot" aria-hidden="true" />
      <span class="call-mini-text">
        <strong>{label}</strong>
        {s.startedAt > 0 && <span> · {formatDuration((Date.now() - s.startedAt) / 1000)}</span>}
      </span>
      <button type="button" class="primary" onClick={() => activeStage.set({ minimized: false })}>
        {session.kind === 'call' ? t('call.return') : t('meetings.return')}
      </button>
      <IconButton icon="hangup" class="call-mini-leave" label={session.kind === 'call' ? t('call.leave') : t('meetings.leave')} onClick={() => session.leave()} />
    </div>
  );
}
