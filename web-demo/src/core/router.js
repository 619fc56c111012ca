// Hash routes: #/chats, #/chats/<id>, #/people, #/calls, #/meetings,
// #/meetings/<id>, #/profile. `route.get().parts` is the path split on '/'.
import { createStore } from './store.js';

const parse = () => location.hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);

export const route = createStore({ parts: parse() });
window.addEventListener('hashchange', () => route.set({ parts: parse() }));

/** navigate('chats', id) */
export function navigate(...parts) {
  const hash = '#/' + parts.map(encodeURIComponent).join('/');
  if (location.hash !== hash) location.hash = hash;
  else route.set({ parts: parse() });
}
