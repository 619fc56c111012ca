// Calls (placeholder until the call screens land).
import { createStore } from '../core/store.js';
export const callsBadge = createStore({ missed: 0 });
export function initCalls() {}
export function CallLayer() { return null; }
export function CallsView() { return <p class="empty">Calls</p>; }
export function startCall() {}
