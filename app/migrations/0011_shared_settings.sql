-- Settings every node of a shared database must agree on (the VAPID key that
-- browsers' push subscriptions are bound to). The first node to write one
-- wins; the others read it.
CREATE TABLE shared_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
