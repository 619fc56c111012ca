-- The whole schema on PostgreSQL: the same tables, columns and meanings as
-- the SQLite migrations in ../migrations (0001 to 0009), written once for a
-- fresh database. Times are unix milliseconds (BIGINT); flags are 0/1
-- BIGINTs as on SQLite, so both read the same rows. A later change to the
-- schema gets a migration in each directory.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    avatar        TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    created_at    BIGINT NOT NULL,
    name_key      TEXT
);
CREATE UNIQUE INDEX users_local_name_key ON users(name_key) WHERE password_hash IS NOT NULL;
CREATE INDEX users_name_key ON users(name_key);

CREATE TABLE chats (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    name       TEXT NOT NULL DEFAULT '',
    direct_key TEXT UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE chat_members (
    chat_id   TEXT NOT NULL REFERENCES chats(id),
    user_id   TEXT NOT NULL REFERENCES users(id),
    role      TEXT NOT NULL DEFAULT 'member',
    joined_at BIGINT NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members(user_id);

CREATE TABLE messages (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    chat_id       TEXT NOT NULL REFERENCES chats(id),
    sender_id     TEXT NOT NULL REFERENCES users(id),
    content       TEXT NOT NULL,
    content_type  TEXT NOT NULL DEFAULT 'text',
    reply_to      TEXT,
    attachment_id TEXT,
    created_at    BIGINT NOT NULL,
    edited_at     BIGINT,
    deleted       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX messages_chat_seq ON messages(chat_id, seq);
CREATE INDEX messages_attachment ON messages(attachment_id) WHERE attachment_id IS NOT NULL;
-- Full-text search (SQLite: the messages_fts FTS5 table).
CREATE INDEX messages_fts ON messages USING GIN (to_tsvector('simple', content));

CREATE TABLE message_status (
    message_seq BIGINT NOT NULL REFERENCES messages(seq),
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('sent', 'delivered', 'read')),
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (message_seq, user_id)
);
CREATE INDEX message_status_pending ON message_status(user_id, status);
CREATE INDEX message_status_pending_seq ON message_status(user_id, message_seq) WHERE status = 'sent';

CREATE TABLE reactions (
    message_seq BIGINT NOT NULL REFERENCES messages(seq),
    user_id     TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (message_seq, user_id, emoji)
);

CREATE TABLE attachments (
    id           TEXT PRIMARY KEY,
    chat_id      TEXT NOT NULL REFERENCES chats(id),
    uploader_id  TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    removed_at   BIGINT
);
CREATE INDEX attachments_uploader ON attachments(uploader_id, created_at);

CREATE TABLE calls (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    from_user    TEXT NOT NULL REFERENCES users(id),
    to_user      TEXT NOT NULL REFERENCES users(id),
    call_type    TEXT NOT NULL CHECK (call_type IN ('audio', 'video')),
    status       TEXT NOT NULL,
    room_name    TEXT NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    answered_at  BIGINT,
    connected_at BIGINT,
    ended_at     BIGINT,
    end_reason   TEXT
);
CREATE INDEX calls_from ON calls(from_user, seq);
CREATE INDEX calls_to ON calls(to_user, seq);
CREATE INDEX calls_active ON calls(status);

CREATE TABLE meetings (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    room_name        TEXT NOT NULL UNIQUE,
    created_by       TEXT NOT NULL REFERENCES users(id),
    max_participants BIGINT NOT NULL DEFAULT 0,
    empty_timeout    BIGINT NOT NULL DEFAULT 0,
    metadata         TEXT NOT NULL DEFAULT '',
    is_open          BIGINT NOT NULL DEFAULT 0,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    ended_at         BIGINT
);

CREATE TABLE meeting_members (
    meeting_id TEXT NOT NULL REFERENCES meetings(id),
    user_id    TEXT NOT NULL REFERENCES users(id),
    role       TEXT NOT NULL CHECK (role IN ('moderator', 'member')),
    PRIMARY KEY (meeting_id, user_id)
);

-- `rowid` is SQLite's implicit insertion order, which the queries use to
-- break ties; here it is a column of that name.
CREATE TABLE push_subscriptions (
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
    endpoint   TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    seen_at    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX push_subscriptions_user ON push_subscriptions(user_id);

CREATE TABLE webhook_queue (
    seq             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX webhook_queue_url ON webhook_queue(url, seq);

CREATE TABLE sessions (
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY,
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id, created_at);
