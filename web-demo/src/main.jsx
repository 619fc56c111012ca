// The Nodo web app: the page the node serves at `/`.
import { render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import './styles.css';
import './core/strings.js';
import { api, onUnauthorizedDo, session, setSession } from './core/api.js';
import { t } from './core/i18n.js';
import { enableNotifications, pushState, registerWorker } from './core/notify.js';
import { loadPeople } from './core/people.js';
import { navigate, route } from './core/router.js';
import { connect, connection, disconnect, on } from './core/socket.js';
import { useStore } from './core/store.js';
import { Avatar, Icon, toast, Toasts } from './core/ui.jsx';
import { Auth } from './auth/Auth.jsx';
import { Profile } from './auth/Profile.jsx';
import { People } from './people/People.jsx';
import { ChatList, ChatView, chatBadge, initChat } from './conversations/index.jsx';
import { CallLayer, CallsView, callsBadge, initCalls } from './calls/index.jsx';
import { MeetingsView, initMeetings } from './meetings/index.jsx';

let expiredNotice = '';
onUnauthorizedDo(() => {
  expiredNotice = t('auth.expired');
  disconnect();
  setSession(null);
});
on('refused', () => {
  expiredNotice = t('auth.expired');
  disconnect();
  setSession(null);
});

// Links from notifications and invitations: ?chat=, ?meeting=, ?call=&action=
// (the calls feature reads ?call= itself, see initCalls).
const query = new URLSearchParams(location.search);
export const startQuery = Object.fromEntries(query.entries());
if (query.get('chat')) location.hash = `#/chats/${encodeURIComponent(query.get('chat'))}`;
if (query.get('meeting')) location.hash = `#/meetings/${encodeURIComponent(query.get('meeting'))}`;
// The hash just set reaches the route store now, not at the later hashchange
// (by then the shell would have sent an empty route to #/chats).
if (query.get('chat') || query.get('meeting')) {
  route.set({ parts: location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent) });
}

let started = false;
/** Once per sign-in: the socket, the directory, every feature's listeners. */
function start(current) {
  if (started) return;
  started = true;
  initChat();
  initCalls(startQuery);
  initMeetings();
  connect(current.token);
  loadPeople().catch(() => {});
  registerWorker();
  // The stored profile may be stale (changed in another tab).
  api('/api/users/me')
    .then(({ user }) => session.get().current && setSession({ ...session.get().current, user }))
    .catch(() => {});
  if (startQuery.chat || startQuery.meeting || startQuery.call) history.replaceState(null, '', `/${location.hash}`);
}

function App() {
  const { current } = useStore(session);
  if (!current) {
    started = false;
    const notice = expiredNotice;
    expiredNotice = '';
    return (
      <>
        <Auth notice={notice} />
        <Toasts />
      </>
    );
  }
  start(current);
  return <Shell />;
}

function NavLink({ to, icon, label, badge, active }) {
  return (
    <a href={`#/${to}`} class={`nav-link ${active ? 'active' : ''}`} aria-current={active ? 'page' : undefined}>
      <Icon name={icon} />
      <span class="nav-label">{label}</span>
      {badge > 0 && (
        <span class="badge" aria-label={`(${badge})`}>
          {badge > 99 ? '99+' : badge}
        </span>
      )}
    </a>
  );
}

function ConnectionBanner() {
  const { state } = useStore(connection);
  const was = useRef(state);
  useEffect(() => {
    if (was.current === 'reconnecting' && state === 'online') toast(t('conn.back'));
    was.current = state;
  }, [state]);
  if (state !== 'reconnecting') return null;
  return (
    <div class="conn-banner" role="alert">
      {t('conn.reconnecting')}
    </div>
  );
}

/** Asks once per browser to turn notifications on (calls ring through push while the page is closed). */
function NotifyPrompt() {
  const { permission } = useStore(pushState);
  const [hidden, setHidden] = useState(() => localStorage.getItem('nodo.notifyPrompt') === 'no');
  if (permission !== 'default' || hidden) return null;
  const later = () => {
    localStorage.setItem('nodo.notifyPrompt', 'no');
    setHidden(true);
  };
  return (
    <div class="notify-prompt" role="region" aria-label={t('profile.notifications')}>
      <Icon name="bell" />
      <span>{t('notify.prompt')}</span>
      <button type="button" class="primary" onClick={() => enableNotifications().finally(later)}>
        {t('profile.notifyEnable')}
      </button>
      <button type="button" class="link" onClick={later}>
        {t('notify.later')}
      </button>
    </div>
  );
}

function Shell() {
  const { parts } = useStore(route);
  const { unread } = useStore(chatBadge);
  const { missed } = useStore(callsBadge);
  const user = useStore(session, (s) => s.current?.user);
  const [section, id] = parts;
  const view = section || 'chats';
  useEffect(() => {
    if (!section) navigate('chats');
  }, [section]);
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) ${t('app.name')}` : t('app.name');
  }, [unread]);

  let content;
  if (view === 'chats') {
    content = (
      <div class={`split ${id ? 'has-active' : ''}`}>
        <div class="split-list">
          <ChatList activeId={id} />
        </div>
        <div class="split-main">
          <ChatView chatId={id} key={id || 'none'} />
        </div>
      </div>
    );
  } else if (view === 'people') content = <People />;
  else if (view === 'calls') content = <CallsView />;
  else if (view === 'meetings') content = <MeetingsView id={id} key={id || 'list'} />;
  else if (view === 'profile') content = <Profile />;
  else content = <p class="empty">{t('err.notFound')}</p>;

  return (
    <>
      <a class="skip" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus(); }}>
        {t('nav.skip')}
      </a>
      <ConnectionBanner />
      <div class="shell">
        <nav class="rail" aria-label={t('nav.main')}>
          <span class="rail-brand" aria-hidden="true">
            <img src="/favicon.svg" alt="" width="32" height="32" />
          </span>
          <NavLink to="chats" icon="chat" label={t('nav.chats')} badge={unread} active={view === 'chats'} />
          <NavLink to="people" icon="people" label={t('nav.people')} active={view === 'people'} />
          <NavLink to="calls" icon="phone" label={t('nav.calls')} badge={missed} active={view === 'calls'} />
          <NavLink to="meetings" icon="meet" label={t('nav.meetings')} active={view === 'meetings'} />
          <a href="#/profile" class={`nav-link me ${view === 'profile' ? 'active' : ''}`} aria-current={view === 'profile' ? 'page' : undefined}>
            <Avatar user={user} size={28} />
            <span class="nav-label">{t('nav.profile')}</span>
          </a>
        </nav>
        <main id="main" class="content" tabIndex={-1}>
          <NotifyPrompt />
          {content}
        </main>
      </div>
      <CallLayer />
      <Toasts />
    </>
  );
}

const root = document.getElementById('app');
root.textContent = '';
render(<App />, root);
