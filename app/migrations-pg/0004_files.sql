-- See ../migrations/0012_files.sql.
CREATE TABLE files (
    kind       TEXT NOT NULL,
    id         TEXT NOT NULL,
    data       BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX files_age ON files(kind, created_at);
