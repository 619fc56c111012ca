-- Accounts, chats, durable messages with per-recipient status, reactions,
-- attachments and full-text search.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,            -- the identity (LiveKit sub), also the chatPath
    username      TEXT NOT NULL UNIQUE,
    name          TEXT NOT NULL DEFAULT '',
    avatar        TEXT NOT NULL DEFAULT '',
    password_hash TEXT,                        -- NULL for users created by an app-minted token
    created_at    INTEGER NOT NULL             -- unix ms
);

CREATE TABLE chats (
    id         TEXT PRIMARY KEY,
    type       TEXT NOT NULL CHECK (type IN ('direct', 'group')),
    name       TEXT NOT NULL DEFAULT '',
    direct_key TEXT UNIQUE,                    -- "a\nb" (sorted identities) for direct chats
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE chat_members (
    chat_id   TEXT NOT NULL REFERENCES chats(id),
    user_id   TEXT NOT NULL REFERENCES users(id),
    role      TEXT NOT NULL DEFAULT 'member',  -- 'owner' or 'member'
    joined_at INTEGER NOT NULL,
    PRIMARY KEY (chat_id, user_id)
);
CREATE INDEX chat_members_user ON chat_members(user_id);

CREATE TABLE messages (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT, -- stable cursor
    id           TEXT NOT NULL UNIQUE,              -- client-chosen or server-made
    chat_id      TEXT NOT NULL REFERENCES chats(id),
    sender_id    TEXT NOT NULL REFERENCES users(id),
    content      TEXT NOT NULL,
    content_type TEXT NOT NULL DEFAULT 'text',
    reply_to     TEXT,
    attachment_id TEXT,
    created_at   INTEGER NOT NULL,
    edited_at    INTEGER,
    deleted      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_chat_seq ON messages(chat_id, seq);

CREATE TABLE message_status (
    message_seq INTEGER NOT NULL REFERENCES messages(seq),
    user_id     TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('sent', 'delivered', 'read')),
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (message_seq, user_id)
);
CREATE INDEX message_status_pending ON message_status(user_id, status);

CREATE TABLE reactions (
    message_seq INTEGER NOT NULL REFERENCES messages(seq),
    user_id     TEXT NOT NULL,
    emoji       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (message_seq, user_id, emoji)
);

CREATE TABLE attachments (
    id           TEXT PRIMARY KEY,
    chat_id      TEXT NOT NULL REFERENCES chats(id),
    uploader_id  TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL,
    created_at   INTEGER NOT NULL
);

CREATE VIRTUAL TABLE messages_fts USING fts5(content, content='messages', content_rowid='seq');
CREATE TRIGGER messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.seq, new.content);
END;
CREATE TRIGGER messages_au AFTER UPDATE OF content ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.seq, old.content);
    INSERT INTO messages_fts(rowid, content) VALUES (new.seq, new.content);
END;
