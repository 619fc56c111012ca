// Notifications: the service worker (/sw.js) is registered at sign-in; with
// the user's permission the browser is subscribed to Web Push, so calls ring
// and messages arrive while the page is closed. While the page is open but
// hidden, `notify()` shows a system notification; while it is visible, the
// features show their own in-page signs.
import { api } from './api.js';
import { createStore } from './store.js';

/** permission: 'default' | 'granted' | 'denied' | 'unsupported'; subscribed: bool. */
export const pushState = createStore({
  permission: 'Notification' in window ? Notification.permission : 'unsupported',
  subscribed: false,
  error: null,
});

let registration = null;

export async function registerWorker() {
  if (!('serviceWorker' in navigator)) return null;
  try {
    registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
    if (pushState.get().permission === 'granted') await subscribePush();
  } catch (e) {
    pushState.set({ error: e });
  }
  return registration;
}

const b64ToBytes = (s) => {
  const pad = '='.repeat((4 - (s.length % 4)) % 4);
  const bin = atob((s + pad).replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
};

/** Asks for permission (call it from a click) and subscribes to push. */
export async function enableNotifications() {
  if (!('Notification' in window)) {
    pushState.set({ permission: 'unsupported' });
    return false;
  }
  const permission = await Notification.requestPermission();
  pushState.set({ permission });
  if (permission !== 'granted') return false;
  return subscribePush();
}

export async function subscribePush() {
  try {
    const reg = registration || (await navigator.serviceWorker?.ready);
    if (!reg?.pushManager) return false;
    let sub = await reg.pushManager.getSubscription();
    if (!sub) {
      const { publicKey } = await api('/api/push/vapid-public-key');
      sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: b64ToBytes(publicKey) });
    }
    await api('/api/push/subscribe', { body: sub.toJSON() });
    pushState.set({ subscribed: true, error: null });
    return true;
  } catch (e) {
    pushState.set({ subscribed: false, error: e });
    return false;
  }
}

/** Unsubscribes this browser (at sign-out), so the next user of it gets no pushes for this one. */
export async function unsubscribePush() {
  try {
    const reg = registration || (await navigator.serviceWorker?.getRegistration());
    const sub = await reg?.pushManager?.getSubscription();
    if (sub) {
      await api('/api/push/subscribe', { method: 'DELETE', body: { endpoint: sub.endpoint } }).catch(() => {});
      await sub.unsubscribe();
    }
  } catch {
    /* nothing to undo */
  }
  pushState.set({ subscribed: false });
}

/**
 * A system notification while the page is hidden (nothing when it is
 * visible, or without permission). `data.url` is opened on click.
 */
export async function notify(title, { body, tag, data } = {}) {
  if (document.visibilityState === 'visible') return;
  if (pushState.get().permission !== 'granted') return;
  const reg = registration || (await navigator.serviceWorker?.getRegistration());
  reg?.showNotification(title, { body, tag, data: { url: '/', ...data }, icon: '/favicon.svg' });
}
