// The directory: everyone on this node, online first, with live presence dots and search.
import { useMemo, useState } from 'preact/hooks';
import { me } from '../core/api.js';
import { t } from '../core/i18n.js';
import { loadPeople, people } from '../core/people.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, IconButton, Spinner } from '../core/ui.jsx';
import { startCall } from '../calls/index.jsx';
import { openDirectChat } from '../conversations/index.jsx';

export function People() {
  const { byId, online, loaded, error } = useStore(people);
  const [q, setQ] = useState('');
  const self = me()?.id;
  const list = useMemo(() => {
    const needle = q.trim().toLowerCase();
    return Object.values(byId)
      .filter((u) => u.id !== self)
      .filter((u) => !needle || `${u.name} ${u.username}`.toLowerCase().includes(needle))
      .sort((a, b) => online.has(b.id) - online.has(a.id) || String(a.name).localeCompare(String(b.name)));
  }, [byId, online, q, self]);

  return (
    <section class="pane people" aria-labelledby="people-h">
      <h1 id="people-h">{t('people.title')}</h1>
      <input type="search" class="search" placeholder={t('people.search')} aria-label={t('people.search')} value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      {!loaded && !error && <Spinner />}
      <ErrorNote message={error && describeError(error)} onRetry={() => loadPeople().catch(() => {})} />
      {loaded && list.length === 0 && <p class="empty">{q ? t('people.none', { q }) : t('people.empty')}</p>}
      <ul class="list" aria-label={t('people.title')}>
        {list.map((u) => {
          const on = online.has(u.id);
          return (
            <li key={u.id} class="row person" data-user={u.id}>
              <Avatar user={u} online={on} />
              <span class="grow">
                <span class="title">{u.name}</span>
                <span class="sub">
                  @{u.username} · <span class={on ? 'online' : 'offline'}>{on ? t('people.online') : t('people.offline')}</span>
                </span>
              </span>
              <IconButton icon="chat" label={t('people.message', { name: u.name })} onClick={() => openDirectChat(u.id)} />
              <IconButton icon="phone" label={t('people.audioCall', { name: u.name })} onClick={() => startCall(u.id, 'audio')} />
              <IconButton icon="video" label={t('people.videoCall', { name: u.name })} onClick={() => startCall(u.id, 'video')} />
            </li>
          );
        })}
      </ul>
    </section>
  );
}
