// One conversation: header, history (older pages on scroll up), bubbles with
// ticks, replies, reactions, edit and delete, attachments, and the composer.
import { useEffect, useLayoutEffect, useRef, useState } from 'preact/hooks';
import { authedUrl, me } from '../core/api.js';
import { fullDate, t, tn, when } from '../core/i18n.js';
import { people, person } from '../core/people.js';
import { navigate } from '../core/router.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, Icon, IconButton, Spinner } from '../core/ui.jsx';
import { startCall } from '../calls/index.jsx';
import { Composer } from './Composer.jsx';
import { Members } from './Members.jsx';
import { chats, chatTitle, convo, loadNewest, loadOlder, markRead, otherOf, react, remove, retry } from './state.js';

export const EMOJI = ['👍', '❤️', '😂', '😮', '😢', '🙏'];

export function ChatView({ chatId }) {
  const chat = useStore(chats, (s) => s.list.find((c) => c.id === chatId));
  const loaded = useStore(chats, (s) => s.loaded);
  const [reply, setReply] = useState(null);
  const [editing, setEditing] = useState(null);
  const [showMembers, setShowMembers] = useState(false);
  if (!chatId) {
    return (
      <div class="chat-empty">
        <Icon name="chat" size={48} />
        <p>{t('chat.select')}</p>
      </div>
    );
  }
  if (!chat) return loaded ? <p class="empty">{t('err.notFound')}</p> : <Spinner />;
  return (
    <section class="chat" aria-label={chatTitle(chat)}>
      <Header chat={chat} onMembers={() => setShowMembers((v) => !v)} />
      <div class="chat-body">
        <History chat={chat} onReply={setReply} onEdit={setEditing} />
        {showMembers && chat.type === 'group' && <Members chat={chat} onClose={() => setShowMembers(false)} />}
      </div>
      <Composer chat={chat} reply={reply} onReplyDone={() => setReply(null)} editing={editing} onEditDone={() => setEditing(null)} />
    </section>
  );
}

function Header({ chat, onMembers }) {
  const { online } = useStore(people);
  const { typing } = useStore(convo(chat.id));
  const other = chat.type === 'direct' ? otherOf(chat) : null;
  const typers = Object.keys(typing);
  let line;
  if (typers.length === 1) line = t('chat.typing', { name: person(typers[0]).name });
  else if (typers.length > 1) line = t('chat.typingMany');
  else if (other) line = online.has(other) ? t('chat.online') : t('chat.offline');
  else line = tn('chat.members', chat.members.length);
  return (
    <header class="chat-head">
      <IconButton icon="back" label={t('ui.back')} class="phone-only" onClick={() => navigate('chats')} />
      <Avatar user={other ? person(other) : { id: chat.id, name: chatTitle(chat) }} size={36} online={other ? online.has(other) : undefined} />
      <div class="grow">
        <h2 class="chat-title">{chatTitle(chat)}</h2>
        <p class={`chat-sub ${typers.length ? 'typing' : ''}`} aria-live="polite">
          {line}
        </p>
      </div>
      {other && (
        <>
          <IconButton icon="phone" label={t('chat.audioCall')} onClick={() => startCall(other, 'audio')} />
          <IconButton icon="video" label={t('chat.videoCall')} onClick={() => startCall(other, 'video')} />
        </>
      )}
      {chat.type === 'group' && <IconButton icon="people" label={t('chat.membersPanel')} onClick={onMembers} />}
    </header>
  );
}

const dayOf = (at) => new Date(at).toDateString();

function History({ chat, onReply, onEdit }) {
  const store = convo(chat.id);
  const { items, loading, loaded, hasOlder, error } = useStore(store);
  const box = useRef(null);
  const atBottom = useRef(true);
  const anchor = useRef(null); // {height, top} before an older page is added
  const [newBelow, setNewBelow] = useState(0);
  const lastCount = useRef(0);

  useEffect(() => {
    if (!store.get().loaded) loadNewest(chat.id);
    markRead(chat.id);
  }, [chat.id]);
  useEffect(() => {
    if (loaded) markRead(chat.id);
  }, [loaded, items.length, chat.unreadCount]);

  // Keep the view where the reader is: at the bottom for new messages, or
  // still on the same message when an older page is put above.
  useLayoutEffect(() => {
    const el = box.current;
    if (!el) return;
    if (anchor.current) {
      el.scrollTop = el.scrollHeight - anchor.current.height + anchor.current.top;
      anchor.current = null;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    } else if (items.length > lastCount.current) {
      setNewBelow((n) => n + items.length - lastCount.current);
    }
    lastCount.current = items.length;
    const target = sessionStorage.getItem('nodo.highlight');
    if (target && items.some((m) => m.id === target)) {
      sessionStorage.removeItem('nodo.highlight');
      jumpTo(target);
    }
  }, [items]);

  async function older() {
    const el = box.current;
    anchor.current = { height: el.scrollHeight, top: el.scrollTop };
    const more = await loadOlder(chat.id);
    if (!more) anchor.current = null;
  }

  function onScroll() {
    const el = box.current;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    if (atBottom.current) setNewBelow(0);
    if (el.scrollTop < 200 && hasOlder && !loading && loaded) older();
  }

  const title = chatTitle(chat);
  let lastDay = '';
  return (
    <div class="history" ref={box} onScroll={onScroll}>
      <ErrorNote message={error && `${t('chat.loadFailed')} ${describeError(error)}`} onRetry={() => (loaded ? older() : loadNewest(chat.id))} />
      {loading && <p class="history-note"><Spinner label={t('chat.loadingOlder')} /></p>}
      {loaded && !hasOlder && <p class="history-note">{t('chat.start')}</p>}
      <ol class="messages" role="log" aria-label={t('chat.history', { name: title })} aria-live="polite">
        {items.map((m) => {
          const day = dayOf(m.createdAt);
          const sep = day !== lastDay;
          lastDay = day;
          return (
            <>
              {sep && (
                <li class="day" key={`d${day}`} role="separator">
                  <span>{new Date(m.createdAt).toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long' })}</span>
                </li>
              )}
              <Bubble key={m.id} m={m} chat={chat} all={items} onReply={onReply} onEdit={onEdit} />
            </>
          );
        })}
      </ol>
      {newBelow > 0 && (
        <button
          type="button"
          class="jump primary"
          onClick={() => {
            box.current.scrollTop = box.current.scrollHeight;
            setNewBelow(0);
          }}
        >
          {t('chat.newMessages')} ({newBelow})
        </button>
      )}
    </div>
  );
}

function jumpTo(id) {
  const el = document.getElementById(`msg-${id}`);
  if (!el) return;
  el.scrollIntoView({ block: 'center' });
  el.classList.add('flash');
  el.querySelector('.bubble')?.focus();
  setTimeout(() => el.classList.remove('flash'), 2000);
}

/** The tick of an own message: the lowest state among its recipients. */
function tick(m, chat) {
  if (m.failed) return null;
  if (m.pending) return { state: 'sending', label: t('chat.sending') };
  const others = chat.members.filter((x) => x !== me()?.id);
  const states = others.map((o) => m.status?.[o] || 'sent');
  const state = states.every((s) => s === 'read') ? 'read' : states.every((s) => s !== 'sent') ? 'delivered' : 'sent';
  return { state, label: t(`chat.${state}`) };
}

function Bubble({ m, chat, all, onReply, onEdit }) {
  const mine = m.senderChatPath === me()?.id;
  const [menu, setMenu] = useState(false);
  const [picker, setPicker] = useState(false);
  const replied = m.replyTo ? all.find((x) => x.id === m.replyTo) : null;
  const sender = person(m.senderChatPath);
  const tk = mine ? tick(m, chat) : null;
  const counts = {};
  for (const r of m.reactions || []) counts[r.emoji] = (counts[r.emoji] || 0) + 1;
  const close = () => {
    setMenu(false);
    setPicker(false);
  };
  return (
    <li id={`msg-${m.id}`} class={`msg ${mine ? 'mine' : 'theirs'} ${m.deleted ? 'deleted' : ''}`} data-id={m.id}>
      {!mine && chat.type === 'group' && <Avatar user={sender} size={28} />}
      <div class="bubble" tabIndex={-1}>
        {!mine && chat.type === 'group' && <span class="who">{sender.name}</span>}
        {m.replyTo && !m.deleted && (
          <button type="button" class="quote" onClick={() => jumpTo(m.replyTo)} aria-label={`${t('chat.jumpTo')}: ${replied ? replied.content : ''}`}>
            <span class="who">{replied ? person(replied.senderChatPath).name : ''}</span>
            <span class="text">{replied ? (replied.deleted ? t('chat.deleted') : replied.content || t('chat.sentFile')) : '…'}</span>
          </button>
        )}
        {m.deleted ? (
          <p class="text muted">{t('chat.deleted')}</p>
        ) : (
          <>
            {m.attachment && <AttachmentView a={m.attachment} image={m.contentType === 'image'} />}
            {m.content && <p class="text">{m.content}</p>}
          </>
        )}
        <span class="meta">
          {m.editedAt && !m.deleted && <span class="edited">{t('chat.edited')}</span>}
          <time datetime={m.createdAt} title={fullDate(m.createdAt)}>
            {when(m.createdAt)}
          </time>
          {tk && (
            <span class={`tick ${tk.state}`} role="img" aria-label={tk.label} title={tk.label}>
              {tk.state === 'sending' ? '🕓' : tk.state === 'sent' ? '✓' : '✓✓'}
            </span>
          )}
        </span>
        {m.failed && (
          <span class="failed" role="alert">
            {t('chat.notSent')}{' '}
            <button type="button" class="link" onClick={() => retry(chat.id, m)}>
              {t('chat.retry')}
            </button>
          </span>
        )}
        {!m.deleted && Object.keys(counts).length > 0 && (
          <span class="reactions" role="group" aria-label={t('chat.reactions')}>
            {Object.entries(counts).map(([emoji, n]) => (
              <button
                type="button"
                key={emoji}
                class={`reaction ${m.reactions.some((r) => r.emoji === emoji && r.userId === me()?.id) ? 'own' : ''}`}
                aria-label={t('chat.reactionCount', { emoji, n })}
                onClick={() => react(m, emoji)}
              >
                {emoji} {n}
              </button>
            ))}
          </span>
        )}
      </div>
      {!m.deleted && !m.pending && !m.failed && (
        <div class="msg-actions" onKeyDown={(e) => e.key === 'Escape' && close()}>
          <IconButton icon="more" label={t('chat.actions')} aria-haspopup="menu" aria-expanded={menu} onClick={() => setMenu((v) => !v)} />
          {menu && (
            <div class="menu" role="menu" aria-label={t('chat.actions')}>
              <button type="button" role="menuitem" autoFocus onClick={() => { close(); onReply(m); }}>
                <Icon name="reply" /> {t('chat.reply')}
              </button>
              <button type="button" role="menuitem" onClick={() => setPicker((v) => !v)}>
                <Icon name="smile" /> {t('chat.react')}
              </button>
              {picker && (
                <span class="emoji-row">
                  {EMOJI.map((e) => (
                    <button type="button" role="menuitem" key={e} aria-label={t('chat.reactWith', { emoji: e })} onClick={() => { close(); react(m, e); }}>
                      {e}
                    </button>
                  ))}
                </span>
              )}
              {mine && m.contentType === 'text' && (
                <button type="button" role="menuitem" onClick={() => { close(); onEdit(m); }}>
                  <Icon name="edit" /> {t('chat.edit')}
                </button>
              )}
              {mine && (
                <button
                  type="button"
                  role="menuitem"
                  class="danger-text"
                  onClick={() => {
                    close();
                    if (window.confirm(t('chat.deleteConfirm'))) remove(m);
                  }}
                >
                  <Icon name="trash" /> {t('chat.delete')}
                </button>
              )}
            </div>
          )}
        </div>
      )}
    </li>
  );
}

const size = (n) => (n > 1048576 ? `${(n / 1048576).toFixed(1)} MB` : n > 1024 ? `${Math.round(n / 1024)} KB` : `${n} B`);

function AttachmentView({ a, image }) {
  const [url, setUrl] = useState(null);
  const [failed, setFailed] = useState(false);
  useEffect(() => {
    let live = true;
    authedUrl(`/api/attachments/${encodeURIComponent(a.id)}`)
      .then((u) => live && setUrl(u))
      .catch(() => live && setFailed(true));
    return () => {
      live = false;
    };
  }, [a.id]);
  if (failed) return <p class="muted">{t('err.notFound')}</p>;
  if (image) {
    return url ? (
      <a href={url} target="_blank" rel="noopener" class="image-link">
        <img class="attachment-image" src={url} alt={t('chat.image', { name: a.fileName })} />
      </a>
    ) : (
      <span class="attachment-image placeholder"><Spinner /></span>
    );
  }
  return (
    <a class="file" href={url || '#'} download={a.fileName} aria-label={t('chat.download', { name: a.fileName, size: size(a.size) })}>
      <Icon name="attach" /> <span>{a.fileName}</span> <span class="muted">{size(a.size)}</span>
    </a>
  );
}

