-- Webhook deliveries waiting to be made (kept across restarts).
CREATE TABLE webhook_queue (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX webhook_queue_url ON webhook_queue(url, seq);
