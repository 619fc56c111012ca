-- See ../migrations/0011_shared_settings.sql.
CREATE TABLE shared_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
