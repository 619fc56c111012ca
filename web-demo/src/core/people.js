// Everyone the signed-in user can see, with live presence: the directory
// (`GET /api/users`) kept current by the socket's online_users,
// contact_online and contact_offline.
import { api } from './api.js';
import { on } from './socket.js';
import { createStore } from './store.js';

/** byId: {id: user}; online: Set of ids; loaded: bool. */
export const people = createStore({ byId: {}, online: new Set(), loaded: false, error: null });

export async function loadPeople(q) {
  try {
    const path = q ? `/api/users?q=${encodeURIComponent(q)}` : '/api/users';
    const data = await api(path);
    const list = data?.users || [];
    people.set((s) => {
      const byId = { ...s.byId };
      const online = new Set(s.online);
      for (const u of list) {
        byId[u.id] = { ...byId[u.id], ...u };
        if (u.online) online.add(u.id);
      }
      return { byId, online, loaded: true, error: null };
    });
    return list;
  } catch (e) {
    people.set({ error: e });
    throw e;
  }
}

/** A user by id: from the directory, or a stand-in with the id as name. */
export function person(id) {
  return people.get().byId[id] || { id, name: id, username: id, avatar: '' };
}

export const isOnline = (id) => people.get().online.has(id);

/** Adds users seen elsewhere (a message's senderProfile, a call's callerInfo). */
export function remember(user) {
  if (!user?.id) return;
  people.set((s) => ({ byId: { ...s.byId, [user.id]: { ...s.byId[user.id], ...user } } }));
}

on('online_users', (ids) => {
  people.set({ online: new Set(Array.isArray(ids) ? ids : []) });
});
on('contact_online', (id) => {
  people.set((s) => ({ online: new Set(s.online).add(id) }));
  if (!people.get().byId[id]) loadPeople().catch(() => {});
});
on('contact_offline', (id) => {
  people.set((s) => {
    const online = new Set(s.online);
    online.delete(id);
    return { online };
  });
});
on('user.registered', () => loadPeople().catch(() => {}));
