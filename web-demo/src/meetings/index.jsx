// Meetings: #/meetings (the list, a new meeting), #/meetings/<id> (the lobby
// with the join link, a camera preview and the live count, then the call
// stage with the participants panel and moderator controls).
import './strings.js';
import './meetings.css';
import { LK, loadLiveKit } from '../calls/lk.js';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { api, me } from '../core/api.js';
import { t, tn, when } from '../core/i18n.js';
import { people, person } from '../core/people.js';
import { navigate } from '../core/router.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, Icon, IconButton, Modal, Spinner, toast } from '../core/ui.jsx';
import { RoundButton, displayName } from '../calls/InCall.jsx';
import { activeStage, deviceError, Track } from '../calls/session.js';
import {
  createMeeting,
  endMeeting,
  initMeetings,
  joinMeeting,
  known,
  meetingError,
  meetingSession,
  muteParticipant,
  removeParticipant,
} from './state.js';

export { initMeetings };

const linkOf = (id) => `${location.origin}/?meeting=${encodeURIComponent(id)}`;

async function copyLink(id) {
  try {
    await navigator.clipboard.writeText(linkOf(id));
    toast(t('meetings.copied'));
  } catch {
    toast(t('meetings.copyFailed'), { kind: 'error' });
  }
}

/** Live status of meetings: {id: {isActive, participantCount} | {error}}, polled every `ms`. */
function useStatuses(ids, ms) {
  const [map, setMap] = useState({});
  const key = ids.join(',');
  useEffect(() => {
    let alive = true;
    const load = async () => {
      const out = {};
      await Promise.all(
        ids.map(async (id) => {
          try {
            out[id] = await api(`/api/rooms/${encodeURIComponent(id)}/status`);
          } catch (e) {
            out[id] = { error: e };
          }
        }),
      );
      if (alive) setMap(out);
    };
    load();
    const i = setInterval(() => document.visibilityState === 'visible' && load(), ms);
    return () => {
      alive = false;
      clearInterval(i);
    };
  }, [key, ms]);
  return map;
}

function StatusLine({ m, st }) {
  if (m?.endedAt) return <span class="m-status ended">{t('meetings.ended')}</span>;
  if (!st || st.error) return <span class="m-status">{m?.startedAt ? '' : t('meetings.notStarted')}</span>;
  if (st.participantCount > 0)
    return (
      <span class="m-status live">
        <span class="live-dot" aria-hidden="true" /> {t('meetings.live')} · {tn('meetings.inside', st.participantCount)}
      </span>
    );
  return <span class="m-status">{t('meetings.nobody')}</span>;
}

function NewMeeting({ onClose }) {
  const { byId } = useStore(people);
  const [name, setName] = useState('');
  const [q, setQ] = useState('');
  const [picked, setPicked] = useState(new Set());
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const self = me()?.id;
  const list = useMemo(() => {
    const needle = q.trim().toLowerCase();
    return Object.values(byId)
      .filter((u) => u.id !== self)
      .filter((u) => !needle || `${u.name} ${u.username}`.toLowerCase().includes(needle))
      .sort((a, b) => String(a.name).localeCompare(String(b.name)));
  }, [byId, q, self]);
  const toggle = (id) =>
    setPicked((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  const submit = async (e) => {
    e.preventDefault();
    const n = name.trim();
    if (!n || n.length > 100) return setError(t('meetings.nameRequired'));
    setBusy(true);
    setError('');
    try {
      const m = await createMeeting({ name: n, members: [...picked], open });
      onClose();
      navigate('meetings', m.id);
    } catch (err) {
      setError(describeError(err));
      setBusy(false);
    }
  };
  return (
    <Modal title={t('meetings.new')} onClose={onClose} class="new-meeting">
      <form onSubmit={submit}>
        <label>
          {t('meetings.name')}
          <input value={name} maxLength={100} required placeholder={t('meetings.namePlaceholder')} onInput={(e) => setName(e.currentTarget.value)} autoFocus />
        </label>
        <fieldset class="invite">
          <legend>{t('meetings.invite')}</legend>
          {Object.keys(byId).length > 1 ? (
            <>
              <input type="search" aria-label={t('meetings.searchPeople')} placeholder={t('meetings.searchPeople')} value={q} onInput={(e) => setQ(e.currentTarget.value)} />
              <ul class="list invite-list">
                {list.map((u) => (
                  <li key={u.id}>
                    <label class="row">
                      <input type="checkbox" checked={picked.has(u.id)} onChange={() => toggle(u.id)} />
                      <Avatar user={u} size={32} />
                      <span class="grow">
                        <span class="title">{u.name}</span>
                        <span class="sub">@{u.username}</span>
                      </span>
                    </label>
                  </li>
                ))}
              </ul>
              <p class="hint" aria-live="polite">
                {tn('meetings.invited', picked.size)}
              </p>
            </>
          ) : (
            <p class="hint">{t('meetings.noPeople')}</p>
          )}
        </fieldset>
        <label class="check">
          <input type="checkbox" checked={open} onChange={(e) => setOpen(e.currentTarget.checked)} />
          <span>
            {t('meetings.open')}
            <span class="hint block">{t('meetings.openHint')}</span>
          </span>
        </label>
        {error && <ErrorNote message={error} />}
        <div class="actions">
          <button type="button" onClick={onClose}>
            {t('meetings.keep')}
          </button>
          <button type="submit" class="primary" disabled={busy}>
            {busy ? t('meetings.creating') : t('meetings.create')}
          </button>
        </div>
      </form>
    </Modal>
  );
}

function MeetingList() {
  const { byId } = useStore(known);
  const [creating, setCreating] = useState(false);
  const list = Object.values(byId)
    .filter((m) => m.name)
    .sort((a, b) => String(b.createdAt || '').localeCompare(String(a.createdAt || '')))
    .slice(0, 30);
  const statuses = useStatuses(
    list.filter((m) => !m.endedAt).map((m) => m.id),
    8000,
  );
  return (
    <section class="pane meetings" aria-labelledby="meetings-h">
      <div class="pane-head">
        <h1 id="meetings-h">{t('meetings.title')}</h1>
        <button type="button" class="primary" onClick={() => setCreating(true)}>
          <Icon name="plus" /> {t('meetings.new')}
        </button>
      </div>
      {list.length === 0 ? (
        <p class="empty">{t('meetings.empty')}</p>
      ) : (
        <>
          <ul class="list meeting-list" aria-label={t('meetings.title')}>
            {list.map((m) => (
              <li key={m.id}>
                <a class="row" href={`#/meetings/${encodeURIComponent(m.id)}`}>
                  <span class="m-icon" aria-hidden="true">
                    <Icon name="meet" />
                  </span>
                  <span class="grow">
                    <span class="title">{m.name}</span>
                    <span class="sub">
                      <StatusLine m={m} st={statuses[m.id]} />
                      {m.createdAt && <span> · {when(m.createdAt)}</span>}
                      {m.moderatorId && m.moderatorId !== me()?.id && <span> · {person(m.moderatorId).name}</span>}
                    </span>
                  </span>
                </a>
              </li>
            ))}
          </ul>
          <p class="hint">{t('meetings.onlyHere')}</p>
        </>
      )}
      {creating && <NewMeeting onClose={() => setCreating(false)} />}
    </section>
  );
}

function Preview({ cam }) {
  const ref = useRef(null);
  const [error, setError] = useState('');
  useEffect(() => {
    if (!cam) return undefined;
    let track = null;
    let alive = true;
    setError('');
    loadLiveKit()
      .then((lk) => lk.createLocalVideoTrack({ resolution: { width: 640, height: 360 } }))
      .then((tr) => {
        if (!alive) return tr.stop();
        track = tr;
        if (ref.current) tr.attach(ref.current);
      })
      .catch((e) => alive && setError(deviceError(e, 'cam')));
    return () => {
      alive = false;
      if (track) {
        track.detach();
        track.stop();
      }
    };
  }, [cam]);
  return (
    <div class="preview" role="img" aria-label={cam && !error ? t('meetings.preview') : t('meetings.camOffPreview')}>
      {cam && !error ? <video ref={ref} class="vid mirror" autoPlay playsInline muted /> : <Avatar user={me()} size={88} />}
      {error && (
        <p class="preview-error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}

function Lobby({ id }) {
  const m = useStore(known, (s) => s.byId[id]);
  const { session } = useStore(activeStage);
  const inside = session?.kind === 'meeting' && session.extra.meetingId === id ? session : null;
  const statuses = useStatuses([id], 3000);
  const st = statuses[id];
  const [mic, setMic] = useState(true);
  const [cam, setCam] = useState(true);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState('');
  const ended = !!m?.endedAt;
  const statusError = st?.error && st.error.status !== 0 ? meetingError(st.error) : '';
  const join = async () => {
    setBusy(true);
    setError('');
    try {
      await joinMeeting(id, { mic, cam }, { Panel: MeetingPanel, Rejoin });
    } catch (e) {
      setError(meetingError(e));
    } finally {
      setBusy(false);
    }
  };
  const title = m?.name || t('meetings.meeting');
  return (
    <section class="pane lobby" aria-labelledby="lobby-h">
      <a class="back-link" href="#/meetings">
        <Icon name="back" size={16} /> {t('meetings.back')}
      </a>
      <h1 id="lobby-h">{title}</h1>
      <p class="lobby-count" role="status">
        {ended ? t('meetings.endedLong') : st && !st.error ? (st.participantCount > 0 ? tn('meetings.inside', st.participantCount) : t('meetings.nobody')) : ''}
      </p>
      <div class="link-box">
        <label for="meeting-link">{t('meetings.link')}</label>
        <div class="link-row">
          <input id="meeting-link" readOnly value={linkOf(id)} onFocus={(e) => e.currentTarget.select()} />
          <button type="button" onClick={() => copyLink(id)}>
            <Icon name="link" /> {t('meetings.copy')}
          </button>
        </div>
      </div>
      {inside ? (
        <div class="lobby-in">
          <p>{t('meetings.youAreIn')}</p>
          <button type="button" class="primary" onClick={() => activeStage.set({ minimized: false })}>
            {t('meetings.return')}
          </button>
        </div>
      ) : (
        !ended && (
          <div class="lobby-card">
            {!statusError && (
              <>
                {!busy && <Preview cam={cam} />}
                {busy && (
                  <div class="preview">
                    <Spinner label={t('meetings.joining')} />
                  </div>
                )}
                <div class="lobby-controls" role="group" aria-label={t('meetings.ready')}>
                  <RoundButton icon={mic ? 'mic' : 'micOff'} tone={mic ? '' : 'off'} label={mic ? t('call.muteMic') : t('call.unmuteMic')} onClick={() => setMic(!mic)} />
                  <RoundButton icon={cam ? 'cam' : 'camOff'} tone={cam ? '' : 'off'} label={cam ? t('call.camOff') : t('call.camOn')} onClick={() => setCam(!cam)} />
                </div>
              </>
            )}
            {statusError && <ErrorNote message={statusError} />}
            <ErrorNote message={error} />
            {!statusError && (
              <button type="button" class="primary join" onClick={join} disabled={busy}>
                {busy ? t('meetings.joining') : t('meetings.joinNow')}
              </button>
            )}
          </div>
        )
      )}
    </section>
  );
}

function ConfirmDialog({ title, body, confirm, onConfirm, onClose }) {
  const [busy, setBusy] = useState(false);
  return (
    <Modal title={title} onClose={onClose}>
      <p>{body}</p>
      <div class="actions">
        <button type="button" onClick={onClose}>
          {t('meetings.keep')}
        </button>
        <button
          type="button"
          class="danger solid"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            await onConfirm();
            onClose();
          }}
        >
          {confirm}
        </button>
      </div>
    </Modal>
  );
}

/** The participants panel of the meeting stage; moderators mute, remove and end. */
function MeetingPanel({ session, onClose }) {
  useStore(session.store);
  useStore(people);
  const [confirm, setConfirm] = useState(null);
  const [error, setError] = useState('');
  const moderator = session.extra.moderator;
  const parts = session.participants();
  const act = async (f, name, done) => {
    setError('');
    try {
      await f();
      if (done) session.say(done);
    } catch (e) {
      setError(e.status === 404 ? t('meetings.err.gone', { name }) : e.status === 401 || e.status === 403 ? t('meetings.err.mod') : describeError(e));
    }
  };
  return (
    <div class="meeting-panel">
      <div class="panel-head">
        <h3>
          {t('call.participants')} ({parts.length})
        </h3>
        <IconButton icon="close" label={t('ui.close')} onClick={onClose} />
      </div>
      <ul class="list">
        {parts.map((p) => {
          const name = displayName(p);
          const isLocal = p === session.local;
          const mic = p.getTrackPublication(Track.Source.Microphone);
          const micOff = !mic || mic.isMuted;
          const isMod = !!known.get().byId[session.extra.meetingId]?.moderators?.includes(p.identity);
          return (
            <li key={p.identity} class="row" data-identity={p.identity}>
              <Avatar user={{ ...person(p.identity), name }} size={32} />
              <span class="grow">
                <span class="title">
                  {name}
                  {isLocal && <span class="sub"> ({t('meetings.you')})</span>}
                  {isMod && <span class="sub"> · {t('meetings.moderator')}</span>}
                </span>
              </span>
              {micOff ? (
                <span class="tile-mic" role="img" aria-label={`${name}: ${t('call.micOff')}`}>
                  <Icon name="micOff" size={18} />
                </span>
              ) : null}
              {moderator && !isLocal && (
                <>
                  <IconButton
                    icon="micOff"
                    label={t('meetings.muteUser', { name })}
                    disabled={micOff}
                    onClick={() => act(() => muteParticipant(session, p.identity, mic.trackSid), name, t('meetings.muted', { name }))}
                  />
                  <IconButton
                    icon="logout"
                    label={t('meetings.removeUser', { name })}
                    onClick={() =>
                      setConfirm({
                        title: t('meetings.removeTitle', { name }),
                        body: t('meetings.removeBody', { name }),
                        confirm: t('meetings.remove'),
                        run: () => act(() => removeParticipant(session, p.identity), name, t('meetings.removed', { name })),
                      })
                    }
                  />
                </>
              )}
            </li>
          );
        })}
      </ul>
      <ErrorNote message={error} />
      <div class="panel-foot">
        <button type="button" onClick={() => copyLink(session.extra.meetingId)}>
          <Icon name="link" /> {t('meetings.copy')}
        </button>
        {moderator && (
          <button
            type="button"
            class="danger solid"
            onClick={() =>
              setConfirm({
                title: t('meetings.endTitle'),
                body: t('meetings.endBody'),
                confirm: t('meetings.end'),
                run: () => act(() => endMeeting(session), ''),
              })
            }
          >
            {t('meetings.endAll')}
          </button>
        )}
      </div>
      {confirm && <ConfirmDialog {...confirm} onConfirm={confirm.run} onClose={() => setConfirm(null)} />}
    </div>
  );
}

/** On the ended card of a meeting whose connection dropped: join again. */
function Rejoin({ session }) {
  const { ended } = useStore(session.store);
  if (LK && [LK.DisconnectReason.PARTICIPANT_REMOVED, LK.DisconnectReason.ROOM_DELETED, LK.DisconnectReason.ROOM_CLOSED].includes(ended?.reason)) return null;
  return (
    <button
      type="button"
      onClick={async () => {
        const id = session.extra.meetingId;
        activeStage.set({ session: null });
        try {
          await joinMeeting(id, session.extra.prefs, { Panel: MeetingPanel, Rejoin });
        } catch (e) {
          toast(meetingError(e), { kind: 'error' });
        }
      }}
    >
      {t('meetings.rejoin')}
    </button>
  );
}

export function MeetingsView({ id }) {
  return id ? <Lobby id={id} /> : <MeetingList />;
}

export { meetingSession };
