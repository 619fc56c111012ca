// Calls: ringing (REST + socket + Web Push), the incoming-call screen, the
// in-call screen (livekit-client) and the call history. main.jsx, People and
// the chat view use these exports.
import './strings.js';
import '../meetings/strings.js';
import './calls.css';

export { callsBadge, initCalls, startCall } from './flow.js';
export { CallLayer } from './CallLayer.jsx';
export { CallsView } from './CallsView.jsx';
