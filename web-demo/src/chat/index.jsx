// Chat (placeholder until the chat screens land).
import { createStore } from '../core/store.js';
export const chatBadge = createStore({ unread: 0 });
export function initChat() {}
export function ChatList() { return <p class="empty">Chats</p>; }
export function ChatView() { return <p class="empty">Select a chat</p>; }
export function openDirectChat() {}
