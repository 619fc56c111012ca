-- Group meetings: a named media room with members and moderators.
CREATE TABLE meetings (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    room_name        TEXT NOT NULL UNIQUE,
    created_by       TEXT NOT NULL REFERENCES users(id),
    max_participants INTEGER NOT NULL DEFAULT 0,
    empty_timeout    INTEGER NOT NULL DEFAULT 0,
    metadata         TEXT NOT NULL DEFAULT '',
    is_open          INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    ended_at         INTEGER
);

CREATE TABLE meeting_members (
    meeting_id TEXT NOT NULL REFERENCES meetings(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL CHECK (role IN ('moderator', 'member')),
    PRIMARY KEY (meeting_id, user_id)
);
