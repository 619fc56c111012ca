// Nodo web app service worker: rings for incoming calls and shows missed
// calls and messages while the page is closed; a click opens (or focuses) the
// page on the right call or chat. Push payloads are JSON from the node
// (app/src/push.rs): {type: 'incoming_call', callId, callerId, callerName,
// callType, roomName}, {type: 'missed_call', callId, callerId, callType},
// {type: 'message', chatId, messageId, senderId, preview}.
//
// An incoming call has Accept / Decline actions. Clicking opens
// `/?call=<id>` (the incoming-call screen) or `/?call=<id>&action=accept|reject`;
// an open tab of the app is told instead (postMessage) so a call or meeting
// in it is not reloaded away.
/* eslint-env serviceworker */

const STRINGS = {
  en: {
    incomingVideo: 'Incoming video call',
    incomingAudio: 'Incoming audio call',
    missed: 'Missed call',
    message: 'New message',
    accept: 'Accept',
    decline: 'Decline',
    someone: 'Someone',
  },
  es: {
    incomingVideo: 'Videollamada entrante',
    incomingAudio: 'Llamada de voz entrante',
    missed: 'Llamada perdida',
    message: 'Mensaje nuevo',
    accept: 'Aceptar',
    decline: 'Rechazar',
    someone: 'Alguien',
  },
};

function lang() {
  const langs = typeof navigator !== 'undefined' ? navigator.languages || [navigator.language] : [];
  for (const l of langs) {
    const base = String(l || '').toLowerCase().split('-')[0];
    if (STRINGS[base]) return base;
  }
  return 'en';
}

function describe(data, l = lang()) {
  const s = STRINGS[l] || STRINGS.en;
  const q = encodeURIComponent;
  const who = data.callerName || data.senderName || data.callerId || data.senderId || '';
  let title = 'Nodo';
  let body = who;
  let url = '/';
  if (data.type === 'incoming_call') {
    title = data.callType === 'audio' ? s.incomingAudio : s.incomingVideo;
    body = who || s.someone;
    url = `/?call=${q(data.callId || '')}`;
  } else if (data.type === 'missed_call') {
    title = s.missed;
    url = '/#/calls';
  } else if (data.type === 'message') {
    title = s.message;
    body = `${who}: ${data.preview || ''}`;
    url = `/?chat=${q(data.chatId || '')}`;
  }
  const ringing = data.type === 'incoming_call';
  return {
    title,
    options: {
      body,
      tag: data.callId || data.chatId || data.type,
      renotify: true,
      requireInteraction: ringing,
      vibrate: ringing ? [300, 200, 300, 200, 300] : undefined,
      icon: '/favicon.svg',
      badge: '/favicon.svg',
      data: { ...data, url },
      actions: ringing ? [{ action: 'accept', title: s.accept }, { action: 'reject', title: s.decline }] : [],
    },
  };
}

/** The page a click opens: the notification's url, with the chosen action for a call. */
function target(data, action) {
  const url = data.url || '/';
  if (data.type === 'incoming_call' && (action === 'accept' || action === 'reject')) return `${url}&action=${action}`;
  return url;
}

self.addEventListener('push', (event) => {
  let data = {};
  try {
    data = event.data ? event.data.json() : {};
  } catch {
    data = { type: 'unknown' };
  }
  const { title, options } = describe(data || {});
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const data = event.notification.data || {};
  const url = target(data, event.action);
  event.waitUntil(
    (async () => {
      const windows = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      const app = windows.find((w) => 'focus' in w);
      if (app) {
        // The open app handles the link itself (see calls/flow.js).
        app.postMessage({ type: 'nodo-open', url });
        return app.focus();
      }
      return self.clients.openWindow(url);
    })(),
  );
});

if (typeof module !== 'undefined') module.exports = { describe, target };
