-- Statuses without an index by user (as SQLite's 0013_read_floor.sql says):
-- unread messages are found through the chat's messages above the member's
-- read floor and the status table's primary key.
ALTER TABLE chat_members ADD COLUMN read_floor BIGINT NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS message_status_pending;
