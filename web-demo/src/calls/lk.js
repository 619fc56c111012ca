// livekit-client, loaded on first use: it is most of the app's weight, and the
// first screen (sign-in, chats) needs none of it. `loadLiveKit()` before
// anything that touches `LK`; calls start loading it when they start ringing.
export let LK = null;
let loading = null;

export function loadLiveKit() {
  loading ||= import('livekit-client').then(
    (m) => (LK = m),
    (e) => {
      loading = null; // a failed chunk load (network) may be retried
      throw e;
    },
  );
  return loading;
}
