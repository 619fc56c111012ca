// #/calls: the call history (incoming, outgoing, missed), newest first, with
// call-back buttons. Opening it marks missed calls as seen.
import { useEffect, useState } from 'preact/hooks';
import { api, me } from '../core/api.js';
import { fullDate, t, when } from '../core/i18n.js';
import { people, person } from '../core/people.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, Icon, IconButton, Spinner } from '../core/ui.jsx';
import { callsBadge, formatDuration, historyTick, markMissedSeen, startCall } from './flow.js';

const ARROWS = {
  in: 'M17 7 7 17M7 9v8h8',
  out: 'M7 17 17 7M9 7h8v8',
  missed: 'M4 7l8 8 8-8M14 7h6v6',
};
function Arrow({ kind }) {
  return (
    <svg class={`icon call-dir ${kind}`} width="16" height="16" viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path d={ARROWS[kind]} />
    </svg>
  );
}

function describe(c, mine) {
  const out = c.fromUserId === mine;
  const missed = !out && (c.status === 'missed' || (c.status === 'cancelled' && !c.answeredAt));
  const dir = missed ? 'missed' : out ? 'out' : 'in';
  let status;
  if (c.duration != null && c.connectedAt) status = formatDuration(c.duration);
  else if (c.status === 'missed') status = out ? t('calls.noAnswerShort') : t('calls.missed');
  else if (c.status === 'rejected') status = t('calls.declined');
  else if (c.status === 'cancelled') status = out ? t('calls.cancelled') : t('calls.missed');
  else if (c.status === 'busy') status = t('calls.busyShort');
  else if (['ringing', 'accepted', 'connected'].includes(c.status)) status = t('calls.ongoing');
  else if (c.endReason === 'not_connected') status = t('calls.notConnected');
  else status = t('calls.ended');
  const dirWord = missed ? t('calls.missedCall') : out ? t('calls.outgoing') : t('calls.incoming');
  return { out, missed, dir, status, dirWord, peerId: out ? c.toUserId : c.fromUserId };
}

export function CallsView() {
  useStore(people);
  const { n } = useStore(historyTick);
  const [calls, setCalls] = useState(null);
  const [next, setNext] = useState(null);
  const [error, setError] = useState(null);
  const [loadingMore, setLoadingMore] = useState(false);
  const mine = me()?.id;

  const load = async () => {
    setError(null);
    try {
      const r = await api('/api/calls?limit=30');
      setCalls(r.calls || []);
      setNext(r.nextCursor || null);
    } catch (e) {
      setError(e);
    }
  };
  const more = async () => {
    setLoadingMore(true);
    try {
      const r = await api(`/api/calls?limit=30&before=${encodeURIComponent(next)}`);
      setCalls((c) => [...(c || []), ...(r.calls || [])]);
      setNext(r.nextCursor || null);
    } catch (e) {
      setError(e);
    } finally {
      setLoadingMore(false);
    }
  };
  useEffect(() => {
    markMissedSeen();
  }, []);
  useEffect(() => {
    load();
    if (callsBadge.get().missed) markMissedSeen();
  }, [n]);

  return (
    <section class="pane calls" aria-labelledby="calls-h">
      <h1 id="calls-h">{t('calls.title')}</h1>
      {!calls && !error && <Spinner />}
      <ErrorNote message={error && describeError(error)} onRetry={load} />
      {calls && calls.length === 0 && <p class="empty">{t('calls.empty')}</p>}
      {calls && calls.length > 0 && (
        <ul class="list call-history" aria-label={t('calls.historyLabel')}>
          {calls.map((c) => {
            const d = describe(c, mine);
            const peer = person(d.peerId);
            return (
              <li key={c.id} class={`row call-row ${d.missed ? 'missed' : ''}`} data-call={c.id}>
                <Avatar user={peer} />
                <span class="grow">
                  <span class="title">{peer.name}</span>
                  <span class="sub">
                    <Arrow kind={d.dir} />
                    <span class="sr-only">{d.dirWord}, </span>
                    <Icon name={c.callType === 'audio' ? 'phone' : 'video'} size={14} />
                    <span class="sr-only">{t(c.callType === 'audio' ? 'calls.audio' : 'calls.video')}, </span>
                    <span class="call-status">{d.status}</span>
                    {' · '}
                    <time dateTime={c.startTime} title={fullDate(c.startTime)}>
                      {when(c.startTime)}
                    </time>
                  </span>
                </span>
                <IconButton icon="phone" label={t('calls.callBack', { name: peer.name })} onClick={() => startCall(d.peerId, 'audio')} />
                <IconButton icon="video" label={t('calls.videoBack', { name: peer.name })} onClick={() => startCall(d.peerId, 'video')} />
              </li>
            );
          })}
        </ul>
      )}
      {next && (
        <p class="more">
          <button type="button" onClick={more} disabled={loadingMore}>
            {loadingMore ? <Spinner /> : t('calls.loadMore')}
          </button>
        </p>
      )}
    </section>
  );
}
