// The signed-in user's profile: name, picture, notifications, log out.
import { useState } from 'preact/hooks';
import { api, session, setSession } from '../core/api.js';
import { t } from '../core/i18n.js';
import { enableNotifications, pushState, unsubscribePush } from '../core/notify.js';
import { disconnect } from '../core/socket.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, toast } from '../core/ui.jsx';

export async function logOut() {
  await unsubscribePush();
  await api('/api/auth/logout', { method: 'POST' }).catch(() => {});
  disconnect();
  setSession(null);
}

function keepUser(user) {
  const s = session.get().current;
  if (s) setSession({ ...s, user });
}

export function Profile() {
  const { current } = useStore(session);
  const push = useStore(pushState);
  const user = current?.user;
  const [name, setName] = useState(user?.name || '');
  const [error, setError] = useState('');
  const [picError, setPicError] = useState('');
  const [progress, setProgress] = useState(null);

  async function save(ev) {
    ev.preventDefault();
    setError('');
    try {
      const { user } = await api('/api/users/me', { method: 'PATCH', body: { name: name.trim() } });
      keepUser(user);
      toast(t('profile.saved'));
    } catch (e) {
      setError(describeError(e));
    }
  }

  async function upload(ev) {
    const file = ev.currentTarget.files?.[0];
    ev.currentTarget.value = '';
    if (!file) return;
    setPicError('');
    if (file.size > 2 * 1024 * 1024) {
      setPicError(t('profile.avatarTooLarge'));
      return;
    }
    setProgress(0);
    try {
      const { user } = await api('/api/users/me/avatar', { raw: file, onProgress: setProgress });
      keepUser(user);
      toast(t('profile.saved'));
    } catch (e) {
      setPicError(e.status === 400 ? t('profile.avatarNotImage') : e.status === 413 ? t('profile.avatarTooLarge') : describeError(e));
    } finally {
      setProgress(null);
    }
  }

  if (!user) return null;
  const note = {
    granted: push.subscribed ? t('profile.notifyOn') : t('profile.notifyOff'),
    default: t('profile.notifyOff'),
    denied: t('profile.notifyDenied'),
    unsupported: t('profile.notifyUnsupported'),
  }[push.permission];
  return (
    <section class="pane profile" aria-labelledby="profile-h">
      <h1 id="profile-h">{t('profile.title')}</h1>
      <div class="profile-pic">
        <Avatar user={user} size={96} />
        <label class="button">
          {t('profile.avatarChange')}
          <input type="file" accept="image/png,image/jpeg,image/webp,image/gif" class="sr-only" onChange={upload} aria-label={t('profile.avatar')} />
        </label>
        {progress !== null && (
          <progress max="1" value={progress} aria-label={t('profile.uploading', { pct: Math.round(progress * 100) })} />
        )}
        <ErrorNote message={picError} />
      </div>
      <form onSubmit={save} class="stack">
        <label>
          {t('profile.name')}
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} maxLength={64} required autocomplete="name" />
        </label>
        <p class="muted">@{user.username}</p>
        <ErrorNote message={error} />
        <button type="submit" class="primary">
          {t('ui.save')}
        </button>
      </form>
      <h2>{t('profile.notifications')}</h2>
      <p>{note}</p>
      {push.permission !== 'denied' && push.permission !== 'unsupported' && !push.subscribed && (
        <button type="button" onClick={() => enableNotifications()}>
          {t('profile.notifyEnable')}
        </button>
      )}
      <hr />
      <button type="button" class="danger" onClick={logOut}>
        {t('auth.logout')}
      </button>
    </section>
  );
}
