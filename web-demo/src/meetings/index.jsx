// Meetings (placeholder until the meeting screens land).
export function initMeetings() {}
export function MeetingsView() { return <p class="empty">Meetings</p>; }
