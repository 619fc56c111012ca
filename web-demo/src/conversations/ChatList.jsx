// The chat list: newest activity first, unread counts, new chat / new group, message search.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, me } from '../core/api.js';
import { t, tn, when } from '../core/i18n.js';
import { people } from '../core/people.js';
import { navigate } from '../core/router.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, Icon, IconButton, Modal, Spinner } from '../core/ui.jsx';
import { chats, chatTitle, createGroup, loadChats, openDirectChat, otherOf } from './state.js';

export function preview(m) {
  if (!m) return '';
  if (m.deleted) return t('chat.deleted');
  const text = m.contentType === 'image' ? t('chat.sentPhoto') : m.contentType === 'file' ? t('chat.sentFile') : m.content;
  return m.senderChatPath === me()?.id ? `${t('chat.you')}: ${text}` : text;
}

export function ChatList({ activeId }) {
  const { list, loaded, error } = useStore(chats);
  const { online } = useStore(people);
  useStore(people, (s) => s.byId); // names change the titles
  const [dialog, setDialog] = useState(null);
  const [q, setQ] = useState('');
  const [results, setResults] = useState(null);
  const [searchError, setSearchError] = useState('');

  useEffect(() => {
    const needle = q.trim();
    if (!needle) {
      setResults(null);
      return undefined;
    }
    const timer = setTimeout(async () => {
      try {
        const { messages } = await api(`/api/messages/search?q=${encodeURIComponent(needle)}&limit=30`);
        setResults(messages);
        setSearchError('');
      } catch (e) {
        setSearchError(describeError(e));
      }
    }, 250);
    return () => clearTimeout(timer);
  }, [q]);

  return (
    <section class="chatlist" aria-labelledby="chats-h">
      <header class="chatlist-head">
        <h1 id="chats-h">{t('chat.title')}</h1>
        <IconButton icon="plus" label={t('chat.new')} onClick={() => setDialog('direct')} />
        <IconButton icon="people" label={t('chat.newGroup')} onClick={() => setDialog('group')} />
      </header>
      <div class="chatlist-search">
        <input type="search" placeholder={t('chat.search')} aria-label={t('chat.search')} value={q} onInput={(e) => setQ(e.currentTarget.value)} />
      </div>
      <ErrorNote message={searchError} />
      {results ? (
        <SearchResults q={q} results={results} onOpen={() => setQ('')} />
      ) : (
        <>
          {!loaded && <Spinner />}
          <ErrorNote message={error && describeError(error)} onRetry={loadChats} />
          {loaded && !error && list.length === 0 && <p class="empty">{t('chat.none')}</p>}
          <ul class="list" aria-label={t('chat.list')}>
            {list.map((c) => {
              const other = c.type === 'direct' ? otherOf(c) : null;
              const title = chatTitle(c);
              const unread = c.unreadCount || 0;
              return (
                <li key={c.id}>
                  <a
                    href={`#/chats/${encodeURIComponent(c.id)}`}
                    class={`row chat-row ${c.id === activeId ? 'active' : ''} ${unread ? 'unread' : ''}`}
                    aria-current={c.id === activeId ? 'page' : undefined}
                    data-chat={c.id}
                  >
                    <Avatar user={other ? people.get().byId[other] || { id: other, name: title } : { id: c.id, name: title }} online={other ? online.has(other) : undefined} />
                    <span class="grow">
                      <span class="title-line">
                        <span class="title">{title}</span>
                        <span class="time">{c.lastMessage ? when(c.lastMessage.createdAt) : ''}</span>
                      </span>
                      <span class="sub-line">
                        <span class="sub">{preview(c.lastMessage)}</span>
                        {unread > 0 && (
                          <span class="count" aria-label={tn('chat.unread', unread)}>
                            {unread}
                          </span>
                        )}
                      </span>
                    </span>
                  </a>
                </li>
              );
            })}
          </ul>
        </>
      )}
      {dialog === 'direct' && <PickPerson onClose={() => setDialog(null)} />}
      {dialog === 'group' && <NewGroup onClose={() => setDialog(null)} />}
    </section>
  );
}

function SearchResults({ q, results, onOpen }) {
  if (!results.length) return <p class="empty">{t('chat.noResults', { q: q.trim() })}</p>;
  return (
    <ul class="list" aria-label={t('chat.searchResults')}>
      {results.map((m) => {
        const c = chats.get().list.find((x) => x.id === m.chatId);
        return (
          <li key={m.id}>
            <a
              class="row"
              href={`#/chats/${encodeURIComponent(m.chatId)}`}
              onClick={(e) => {
                e.preventDefault();
                onOpen();
                sessionStorage.setItem('nodo.highlight', m.id);
                navigate('chats', m.chatId);
              }}
            >
              <Icon name="search" />
              <span class="grow">
                <span class="title">{c ? chatTitle(c) : t('chat.group')}</span>
                <span class="sub">{m.content}</span>
              </span>
              <span class="time">{when(m.createdAt)}</span>
            </a>
          </li>
        );
      })}
    </ul>
  );
}

function useOthers(filter) {
  const { byId } = useStore(people);
  const self = me()?.id;
  return useMemo(() => {
    const needle = filter.trim().toLowerCase();
    return Object.values(byId)
      .filter((u) => u.id !== self && (!needle || `${u.name} ${u.username}`.toLowerCase().includes(needle)))
      .sort((a, b) => String(a.name).localeCompare(String(b.name)));
  }, [byId, filter, self]);
}

function PickPerson({ onClose }) {
  const [filter, setFilter] = useState('');
  const list = useOthers(filter);
  return (
    <Modal title={t('chat.new')} onClose={onClose}>
      <input type="search" aria-label={t('people.search')} placeholder={t('people.search')} value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
      <ul class="list pick" aria-label={t('chat.pickPerson')}>
        {list.map((u) => (
          <li key={u.id}>
            <button
              type="button"
              class="row pick-row"
              onClick={() => {
                onClose();
                openDirectChat(u.id);
              }}
            >
              <Avatar user={u} size={32} />
              <span class="grow title">{u.name}</span>
            </button>
          </li>
        ))}
      </ul>
    </Modal>
  );
}

function NewGroup({ onClose }) {
  const [name, setName] = useState('');
  const [picked, setPicked] = useState(new Set());
  const [filter, setFilter] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const list = useOthers(filter);
  const toggle = (id) =>
    setPicked((s) => {
      const n = new Set(s);
      if (n.has(id)) n.delete(id);
      else n.add(id);
      return n;
    });
  async function submit(e) {
    e.preventDefault();
    setBusy(true);
    setError('');
    try {
      await createGroup(name.trim(), [...picked]);
      onClose();
    } catch (err) {
      setError(err.status === 400 || err.status === 413 ? err.message : describeError(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <Modal title={t('chat.newGroup')} onClose={onClose}>
      <form onSubmit={submit}>
        <label>
          {t('chat.groupName')}
          <input value={name} onInput={(e) => setName(e.currentTarget.value)} required maxLength={100} />
        </label>
        <fieldset class="pick-people">
          <legend>{t('chat.pickPeople')}</legend>
          <input type="search" aria-label={t('people.search')} placeholder={t('people.search')} value={filter} onInput={(e) => setFilter(e.currentTarget.value)} />
          <ul class="list pick">
            {list.map((u) => (
              <li key={u.id}>
                <label class="row pick-row">
                  <input type="checkbox" checked={picked.has(u.id)} onChange={() => toggle(u.id)} />
                  <Avatar user={u} size={28} />
                  <span class="grow title">{u.name}</span>
                </label>
              </li>
            ))}
          </ul>
        </fieldset>
        <ErrorNote message={error} />
        <div class="actions">
          <button type="button" onClick={onClose}>
            {t('ui.cancel')}
          </button>
          <button type="submit" class="primary" disabled={busy || !name.trim() || picked.size === 0}>
            {t('chat.create')}
          </button>
        </div>
      </form>
    </Modal>
  );
}
