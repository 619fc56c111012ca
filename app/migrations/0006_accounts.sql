-- Accounts that can't be confused, and sessions that can be revoked.

-- A username's key: NFKC + case fold (accounts::names). New users get it from
-- the node; app identities from before this migration get it at start-up
-- (Store::backfill_name_keys), since SQL has no Unicode normalization.
ALTER TABLE users ADD COLUMN name_key TEXT;

-- Local accounts (with a password) so far had ASCII usernames (letters,
-- digits, '_', '.', '-'), whose key is their ASCII lower case. Where two of
-- them differ only in case, the oldest (then the smallest id) keeps the key;
-- the others keep no key and sign in by their exact username only, and their
-- spelling can't be registered again.
UPDATE users SET name_key = lower(username)
 WHERE password_hash IS NOT NULL
   AND NOT EXISTS (
       SELECT 1 FROM users o
        WHERE o.password_hash IS NOT NULL
          AND lower(o.username) = lower(users.username)
          AND (o.created_at < users.created_at
               OR (o.created_at = users.created_at AND o.id < users.id)));

CREATE UNIQUE INDEX users_local_name_key ON users(name_key) WHERE password_hash IS NOT NULL;
CREATE INDEX users_name_key ON users(name_key);

-- Sign-in sessions: a session token names one by its `jti`; signing out or
-- revoking deletes the row, and a token whose row is gone is refused.
CREATE TABLE sessions (
    id         TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,                -- unix ms
    expires_at INTEGER NOT NULL                 -- unix ms
);
CREATE INDEX sessions_user ON sessions(user_id, created_at);
