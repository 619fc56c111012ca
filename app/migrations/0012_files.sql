-- Uploaded bytes (attachments, profile pictures) kept in the database. A node
-- on its own SQLite keeps them as files in the data dir and leaves this table
-- empty; nodes sharing PostgreSQL keep them here, so every node serves what
-- any node received. `kind` is `attachment` or `avatar`.
CREATE TABLE files (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    data       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
