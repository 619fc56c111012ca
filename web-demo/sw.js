// Nodo web demo service worker: rings for incoming calls and shows missed
// calls and messages while the page is closed; a click opens (or focuses)
// the page on the right call or chat.
/* eslint-env serviceworker */

const TITLES = {
  incoming_call: (d) => `Incoming ${d.callType === 'audio' ? 'audio' : 'video'} call`,
  missed_call: () => 'Missed call',
  message: () => 'New message',
};

function describe(data) {
  const title = (TITLES[data.type] || (() => 'Nodo'))(data);
  const who = data.callerName || data.callerId || data.senderId || '';
  const body = data.type === 'message' ? `${who}: ${data.preview || ''}` : who;
  const url = data.type === 'message' ? `/?chat=${encodeURIComponent(data.chatId || '')}` : `/?call=${encodeURIComponent(data.callId || '')}`;
  return {
    title,
    options: {
      body,
      tag: data.callId || data.chatId || data.type,
      renotify: true,
      requireInteraction: data.type === 'incoming_call',
      vibrate: data.type === 'incoming_call' ? [300, 200, 300, 200, 300] : undefined,
      data: { ...data, url },
      actions: data.type === 'incoming_call' ? [{ action: 'accept', title: 'Answer' }, { action: 'reject', title: 'Decline' }] : [],
    },
  };
}

self.addEventListener('push', (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch { data = { type: 'unknown' }; }
  const { title, options } = describe(data);
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = event.action ? `${data.url}&action=${event.action}` : data.url || '/';
  event.waitUntil((async () => {
    const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const w of windows) {
      if ('focus' in w) {
        await w.navigate(url).catch(() => {});
        return w.focus();
      }
    }
    return self.clients.openWindow(url);
  })());
});

if (typeof module !== 'undefined') module.exports = { describe };
