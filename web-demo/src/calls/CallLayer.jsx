// The layer over the whole app: the caller's ringing screen, the callee's
// incoming-call screen, the end of a call attempt, and the call itself (or
// the bar to return to it when minimized).
import { useRef } from 'preact/hooks';
import { t } from '../core/i18n.js';
import { people, person } from '../core/people.js';
import { useStore } from '../core/store.js';
import { Avatar, Icon, Spinner } from '../core/ui.jsx';
import { acceptCall, callState, cancelCall, declineCall, dismissResult, retryCall } from './flow.js';
import { MiniBar, RoundButton, Stage } from './InCall.jsx';
import { useModalLayer } from './overlay.js';
import { activeStage } from './session.js';

function Outgoing({ cs }) {
  useStore(people);
  const ref = useRef(null);
  useModalLayer(ref, '[data-autofocus]');
  const peer = person(cs.call.peerId);
  const onKey = (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      cancelCall();
    }
  };
  return (
    <div class="call-layer ringing" ref={ref} role="dialog" aria-modal="true" aria-labelledby="ring-title" tabIndex={-1} onKeyDown={onKey}>
      <div class="ring-card">
        <div class="ring-avatar pulse">
          <Avatar user={peer} size={112} />
        </div>
        <h2 id="ring-title">{t('calls.calling', { name: peer.name })}</h2>
        <p class="ring-kind">
          <Icon name={cs.call.kind === 'audio' ? 'phone' : 'video'} size={16} /> {t(cs.call.kind === 'audio' ? 'calls.audio' : 'calls.video')}
        </p>
        <p class="ring-status" role="status" aria-live="polite">
          {cs.status === 'starting' ? t('calls.starting') : t('calls.ringing')}
        </p>
        {cs.offline && <p class="ring-note">{t('calls.calleeOffline', { name: peer.name })}</p>}
        <div class="ring-actions">
          <RoundButton icon="hangup" tone="leave big" label={t('calls.cancel')} text={t('calls.cancel')} onClick={cancelCall} data-autofocus />
        </div>
      </div>
    </div>
  );
}

function Result({ cs }) {
  useStore(people);
  const ref = useRef(null);
  useModalLayer(ref, '[data-autofocus]');
  const peer = cs.call ? person(cs.call.peerId) : null;
  const onKey = (e) => {
    if (e.key === 'Escape') {
      e.stopPropagation();
      dismissResult();
    }
  };
  return (
    <div class="call-layer ringing result" ref={ref} role="dialog" aria-modal="true" aria-labelledby="ring-title" tabIndex={-1} onKeyDown={onKey}>
      <div class="ring-card">
        {peer && (
          <div class="ring-avatar">
            <Avatar user={peer} size={112} />
          </div>
        )}
        <h2 id="ring-title">{cs.result.title}</h2>
        <p class="ring-status" role="alert">
          {cs.result.message}
        </p>
        <div class="ring-actions">
          {cs.result.retry && peer && (
            <RoundButton
              icon={cs.call.kind === 'audio' ? 'phone' : 'video'}
              tone="accept big"
              label={t('calls.callAgain')}
              text={t('calls.callAgain')}
              onClick={retryCall}
            />
          )}
          <RoundButton icon="close" tone="big" label={t('calls.close')} text={t('calls.close')} onClick={dismissResult} data-autofocus />
        </div>
      </div>
    </div>
  );
}

function Incoming({ cs }) {
  useStore(people);
  const ref = useRef(null);
  useModalLayer(ref, '[data-autofocus]');
  const peer = person(cs.call.peerId);
  const video = cs.call.kind !== 'audio';
  const title = t(video ? 'calls.incomingVideo' : 'calls.incomingAudio', { name: peer.name });
  const busy = cs.status === 'accepting';
  const onKey = (e) => {
    if (e.key === 'Escape' && !busy) {
      e.stopPropagation();
      declineCall();
    }
  };
  return (
    <div class="call-layer incoming" ref={ref} role="alertdialog" aria-modal="true" aria-label={title} aria-describedby="ring-desc" tabIndex={-1} onKeyDown={onKey}>
      <div class="ring-card">
        <div class="ring-avatar pulse">
          <Avatar user={peer} size={112} />
        </div>
        <h2 aria-hidden="true">{peer.name}</h2>
        <p class="ring-kind" id="ring-desc">
          <Icon name={video ? 'video' : 'phone'} size={16} /> {title}
        </p>
        {cs.soundBlocked && <p class="ring-note">{t('calls.tapForSound')}</p>}
        {busy ? (
          <p class="ring-status">
            <Spinner label={t('calls.connecting')} /> {t('calls.connecting')}
          </p>
        ) : (
          <div class="ring-actions">
            <RoundButton icon="hangup" tone="leave big" label={t('calls.decline')} text={t('calls.decline')} onClick={declineCall} />
            <RoundButton icon={video ? 'video' : 'phone'} tone="accept big" label={t('calls.accept')} text={t('calls.accept')} onClick={acceptCall} data-autofocus />
          </div>
        )}
      </div>
    </div>
  );
}

/** Rendered once by the shell, always. */
export function CallLayer() {
  const cs = useStore(callState);
  const { session, minimized } = useStore(activeStage);
  return (
    <>
      {session && !minimized && <Stage session={session} key={session.id} />}
      {session && minimized && <MiniBar session={session} />}
      {cs.phase === 'outgoing' && <Outgoing cs={cs} />}
      {cs.phase === 'incoming' && <Incoming cs={cs} />}
      {cs.phase === 'result' && cs.result && <Result cs={cs} />}
    </>
  );
}
