-- One-to-one calls and their history.
CREATE TABLE calls (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,  -- history cursor
    id           TEXT NOT NULL UNIQUE,
    from_user    TEXT NOT NULL REFERENCES users(id),
    to_user      TEXT NOT NULL REFERENCES users(id),
    call_type    TEXT NOT NULL CHECK (call_type IN ('audio', 'video')),
    status       TEXT NOT NULL,
    room_name    TEXT NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    answered_at  INTEGER,
    connected_at INTEGER,
    ended_at     INTEGER,
    end_reason   TEXT
);
CREATE INDEX calls_from ON calls(from_user, seq);
CREATE INDEX calls_to ON calls(to_user, seq);
CREATE INDEX calls_active ON calls(status);
