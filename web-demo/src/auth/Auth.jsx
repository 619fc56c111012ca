// Log in and sign up.
import { useState } from 'preact/hooks';
import { api, setSession } from '../core/api.js';
import { t } from '../core/i18n.js';
import { describeError, ErrorNote, Spinner } from '../core/ui.jsx';

function explain(e, mode) {
  if (mode === 'login' && (e.status === 401 || e.status === 400)) return t('auth.wrongPassword');
  if (e.status === 409) return t('auth.taken');
  if (e.status === 429) return t('auth.tooMany');
  if (e.status === 403 && mode === 'signup') return t('auth.closed');
  // The node's own words explain a refused username or password (length, characters).
  if (e.status === 400 || e.status === 422) return e.message;
  return describeError(e);
}

export function Auth({ notice }) {
  const [mode, setMode] = useState('login');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(notice || '');
  const signup = mode === 'signup';

  async function submit(ev) {
    ev.preventDefault();
    const f = new FormData(ev.currentTarget);
    const body = { username: String(f.get('username')).trim(), password: String(f.get('password')) };
    if (signup) body.name = String(f.get('name') || '').trim() || body.username;
    setBusy(true);
    setError('');
    try {
      const data = await api(signup ? '/api/auth/register' : '/api/auth/login', { body });
      setSession({ token: data.token, user: data.user });
    } catch (e) {
      setError(explain(e, mode));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main class="auth" id="main">
      <div class="auth-card">
        <h1 class="brand">
          <img src="/favicon.svg" alt="" width="40" height="40" /> {t('app.name')}
        </h1>
        <p class="muted">{t('auth.welcome')}</p>
        <h2>{signup ? t('auth.signup') : t('auth.login')}</h2>
        <form onSubmit={submit} aria-busy={busy}>
          <label>
            {t('auth.username')}
            <input name="username" autocomplete="username" required maxLength={32} autocapitalize="none" spellcheck={false} />
          </label>
          {signup && (
            <label>
              {t('auth.name')}
              <input name="name" autocomplete="name" maxLength={64} />
            </label>
          )}
          <label>
            {t('auth.password')}
            <input
              name="password"
              type="password"
              required
              minLength={signup ? 8 : undefined}
              autocomplete={signup ? 'new-password' : 'current-password'}
              aria-describedby={signup ? 'pw-hint' : undefined}
            />
          </label>
          {signup && (
            <p id="pw-hint" class="hint">
              {t('auth.passwordHint')}
            </p>
          )}
          <ErrorNote message={error} />
          <button type="submit" class="primary" disabled={busy}>
            {busy ? <Spinner /> : signup ? t('auth.signup') : t('auth.login')}
          </button>
        </form>
        <p class="switch">
          {signup ? t('auth.haveAccount') : t('auth.noAccount')}{' '}
          <button
            type="button"
            class="link"
            onClick={() => {
              setMode(signup ? 'login' : 'signup');
              setError('');
            }}
          >
            {signup ? t('auth.login') : t('auth.signup')}
          </button>
        </p>
      </div>
    </main>
  );
}
