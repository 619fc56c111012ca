-- When the subscriber last (re)sent each subscription: a user over the cap
-- loses the one unseen the longest.
ALTER TABLE push_subscriptions ADD COLUMN seen_at INTEGER NOT NULL DEFAULT 0;
UPDATE push_subscriptions SET seen_at = created_at;
