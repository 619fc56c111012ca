// Chat: the list, the conversation, and the state behind them.
import './strings.js';
import './conversations.css';

export { ChatList } from './ChatList.jsx';
export { ChatView } from './ChatView.jsx';
export { chatBadge, initChat, openDirectChat } from './state.js';
