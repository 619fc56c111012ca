// A group's members: presence, add people, leave.
import { useState } from 'preact/hooks';
import { api, me } from '../core/api.js';
import { t } from '../core/i18n.js';
import { people, person } from '../core/people.js';
import { navigate } from '../core/router.js';
import { useStore } from '../core/store.js';
import { Avatar, describeError, ErrorNote, IconButton } from '../core/ui.jsx';
import { loadChats } from './state.js';

export function Members({ chat, onClose }) {
  const { byId, online } = useStore(people);
  const [adding, setAdding] = useState('');
  const [error, setError] = useState('');
  const others = Object.values(byId).filter((u) => !chat.members.includes(u.id));

  async function add(e) {
    e.preventDefault();
    if (!adding) return;
    try {
      await api(`/api/chats/${encodeURIComponent(chat.id)}/members`, { body: { userIds: [adding] } });
      setAdding('');
      await loadChats();
    } catch (err) {
      setError(describeError(err));
    }
  }
  async function leave() {
    if (!window.confirm(t('chat.leaveConfirm'))) return;
    try {
      await api(`/api/chats/${encodeURIComponent(chat.id)}/leave`, { method: 'POST' });
      await loadChats();
      navigate('chats');
    } catch (err) {
      setError(describeError(err));
    }
  }
  return (
    <aside class="members" aria-label={t('chat.membersPanel')}>
      <header class="members-head">
        <h3>{t('chat.membersPanel')}</h3>
        <IconButton icon="close" label={t('ui.close')} onClick={onClose} />
      </header>
      <ul class="list">
        {chat.members.map((id) => (
          <li key={id} class="row">
            <Avatar user={person(id)} size={28} online={online.has(id)} />
            <span class="grow title">{id === me()?.id ? `${person(id).name} (${t('chat.you')})` : person(id).name}</span>
          </li>
        ))}
      </ul>
      {others.length > 0 && (
        <form class="add-member" onSubmit={add}>
          <label>
            {t('chat.addMember')}
            <select value={adding} onChange={(e) => setAdding(e.currentTarget.value)}>
              <option value="">—</option>
              {others.map((u) => (
                <option key={u.id} value={u.id}>
                  {u.name}
                </option>
              ))}
            </select>
          </label>
          <button type="submit" disabled={!adding}>
            {t('chat.add')}
          </button>
        </form>
      )}
      <ErrorNote message={error} />
      <button type="button" class="danger" onClick={leave}>
        {t('chat.leave')}
      </button>
    </aside>
  );
}
