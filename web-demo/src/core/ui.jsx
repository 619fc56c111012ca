// Shared pieces of the interface: icons, avatars, dialogs, toasts.
import { useEffect, useRef } from 'preact/hooks';
import { createStore, useStore } from './store.js';
import { t } from './i18n.js';

const PATHS = {
  chat: 'M4 4h16v12H7l-3 3z',
  people: 'M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zm-7 9c0-3.3 3.1-6 7-6s7 2.7 7 6zm14-9a3 3 0 1 0 0-6M18 14c2.4.5 4 2.6 4 6h-3',
  phone: 'M5 3h4l2 5-3 2a11 11 0 0 0 6 6l2-3 5 2v4a2 2 0 0 1-2 2A18 18 0 0 1 3 5a2 2 0 0 1 2-2z',
  video: 'M3 6h12v12H3zM15 10l6-4v12l-6-4z',
  meet: 'M3 5h18v11H3zM8 20h8M12 16v4',
  user: 'M12 12a5 5 0 1 0 0-10 5 5 0 0 0 0 10zm-8 10c0-4.4 3.6-8 8-8s8 3.6 8 8z',
  search: 'M10 17a7 7 0 1 1 0-14 7 7 0 0 1 0 14zm5-2 6 6',
  send: 'M3 20 21 12 3 4l2 8zM5 12h8',
  attach: 'M21 11l-9 9a5 5 0 0 1-7-7l9-9a3.5 3.5 0 0 1 5 5l-9 9a2 2 0 0 1-3-3l8-8',
  close: 'M5 5l14 14M19 5 5 19',
  back: 'M15 5l-7 7 7 7',
  plus: 'M12 4v16M4 12h16',
  mic: 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  micOff: 'M12 3a3 3 0 0 0-3 3v6a3 3 0 0 0 6 0V6a3 3 0 0 0-3-3zM5 11a7 7 0 0 0 14 0M12 18v3M3 3l18 18',
  cam: 'M3 6h12v12H3zM15 10l6-4v12l-6-4z',
  camOff: 'M3 6h12v12H3zM15 10l6-4v12l-6-4zM2 2l20 20',
  screen: 'M3 4h18v12H3zM8 20h8M12 16v4M9 10l3-3 3 3M12 7v6',
  hangup: 'M3 14c5-5 13-5 18 0l-2 3-4-1v-3a9 9 0 0 0-6 0v3l-4 1z',
  settings: 'M12 15a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM19 12l2-1-2-4-2 1-2-1-1-2H10L9 5 7 6 5 5 3 9l2 1v2l-2 1 2 4 2-1 2 1 1 2h4l1-2 2-1 2 1 2-4-2-1z',
  bell: 'M6 16V11a6 6 0 0 1 12 0v5l2 2H4zM10 21h4',
  more: 'M5 12h.01M12 12h.01M19 12h.01',
  reply: 'M10 9V5l-7 7 7 7v-4c5 0 8 1 11 5-1-6-4-10-11-11z',
  edit: 'M4 20h4L20 8l-4-4L4 16z',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 13h10l1-13',
  smile: 'M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM8 14s1.5 2 4 2 4-2 4-2M9 9h.01M15 9h.01',
  check: 'M4 12l5 5L20 6',
  logout: 'M10 4H4v16h6M15 8l4 4-4 4M19 12H9',
  link: 'M10 14a4 4 0 0 0 6 0l3-3a4 4 0 0 0-6-6l-1 1M14 10a4 4 0 0 0-6 0l-3 3a4 4 0 0 0 6 6l1-1',
};

/** A decorative icon (hidden from assistive tech: the control carries the name). */
export function Icon({ name, size = 20 }) {
  return (
    <svg class="icon" width={size} height={size} viewBox="0 0 24 24" aria-hidden="true" focusable="false">
      <path d={PATHS[name] || PATHS.more} />
    </svg>
  );
}

/** A button with only an icon: `label` is its accessible name and tooltip. */
export function IconButton({ icon, label, class: cls = '', pressed, ...rest }) {
  return (
    <button type="button" class={`icon-btn ${cls}`} aria-label={label} title={label} aria-pressed={pressed} {...rest}>
      <Icon name={icon} />
    </button>
  );
}

const hue = (s) => [...(s || '?')].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 360, 7);

/** The user's picture, or their initials on a colour of their own; a presence dot when `online` is given. */
export function Avatar({ user, size = 40, online }) {
  const name = user?.name || user?.username || user?.id || '?';
  const initials = name.split(/\s+/).filter(Boolean).slice(0, 2).map((w) => [...w][0]).join('').toUpperCase();
  return (
    <span class="avatar" style={{ width: `${size}px`, height: `${size}px`, '--hue': hue(user?.id || name) }} aria-hidden="true">
      {user?.avatar ? <img src={user.avatar} alt="" loading="lazy" /> : <span class="initials">{initials}</span>}
      {online !== undefined && <span class={`dot ${online ? 'on' : 'off'}`} />}
    </span>
  );
}

/**
 * A modal dialog (the native <dialog>: focus stays inside, Escape closes).
 * `onClose` is called when the user dismisses it.
 */
export function Modal({ title, onClose, children, class: cls = '', labelledBy }) {
  const ref = useRef(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    const cancel = (e) => {
      e.preventDefault();
      onClose?.();
    };
    d?.addEventListener('cancel', cancel);
    return () => d?.removeEventListener('cancel', cancel);
  }, [onClose]);
  return (
    <dialog ref={ref} class={`modal ${cls}`} aria-label={labelledBy ? undefined : title} aria-labelledby={labelledBy}>
      {title && (
        <header class="modal-head">
          <h2>{title}</h2>
          {onClose && <IconButton icon="close" label={t('ui.close')} onClick={onClose} />}
        </header>
      )}
      {children}
    </dialog>
  );
}

export function Spinner({ label }) {
  return (
    <span class="spinner" role="status">
      <span class="spin" aria-hidden="true" />
      <span class="sr-only">{label || t('ui.loading')}</span>
    </span>
  );
}

/** An error in plain words, with an optional retry. */
export function ErrorNote({ message, onRetry }) {
  if (!message) return null;
  return (
    <div class="error-note" role="alert">
      <span>{message}</span>
      {onRetry && (
        <button type="button" class="link" onClick={onRetry}>
          {t('ui.retry')}
        </button>
      )}
    </div>
  );
}

// ---- toasts ------------------------------------------------------------------

const toastStore = createStore({ list: [] });
let toastSeq = 0;

/**
 * Shows a message at the bottom of the page for a few seconds.
 * `kind`: 'info' | 'error'; `action`: {label, run} for a button in it.
 */
export function toast(text, { kind = 'info', action, ms = 5000 } = {}) {
  const id = ++toastSeq;
  toastStore.set((s) => ({ list: [...s.list.slice(-3), { id, text, kind, action }] }));
  setTimeout(() => dismissToast(id), ms);
  return id;
}
export function dismissToast(id) {
  toastStore.set((s) => ({ list: s.list.filter((x) => x.id !== id) }));
}

export function Toasts() {
  const { list } = useStore(toastStore);
  return (
    <div class="toasts" role="status" aria-live="polite">
      {list.map((x) => (
        <div key={x.id} class={`toast ${x.kind}`}>
          <span>{x.text}</span>
          {x.action && (
            <button
              type="button"
              class="link"
              onClick={() => {
                dismissToast(x.id);
                x.action.run();
              }}
            >
              {x.action.label}
            </button>
          )}
          <IconButton icon="close" label={t('ui.dismiss')} onClick={() => dismissToast(x.id)} />
        </div>
      ))}
    </div>
  );
}

/** Human words for an ApiError or Error (the messages every feature shares). */
export function describeError(e) {
  if (!e) return '';
  if (e.status === 0 || e.code === 'network' || e.message === 'offline') return t('err.network');
  if (e.message === 'timeout') return t('err.timeout');
  if (e.status === 429 || e.code === 'rate_limited') return t('err.rateLimited');
  if (e.status === 413) return t('err.tooLarge');
  if (e.status === 403) return t('err.forbidden');
  if (e.status === 404) return t('err.notFound');
  if (e.status >= 500) return t('err.server');
  return e.message || t('err.unknown');
}
