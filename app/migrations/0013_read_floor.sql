-- Statuses without an index by user. message_status_pending (user_id, status)
-- held every status row ever written, one entry per recipient of every
-- message: a message to a 1,000-member group added 999 entries scattered over
-- as many of its pages, so every such send dirtied ~1,000 pages (4 MB of WAL
-- at commit) and tripled the time to store it. It served two reads only: a
-- member's unread messages in a chat (mark read, the unread count). These now
-- walk the chat's messages above the member's read floor through the status
-- table's primary key (message_seq, user_id). Below the floor, every message
-- of the chat addressed to the member has been read (mark read raises it to
-- the newest message stored more than ten minutes before). Pending
-- deliveries keep their small partial index (message_status_pending_seq:
-- only rows still 'sent').
ALTER TABLE chat_members ADD COLUMN read_floor INTEGER NOT NULL DEFAULT 0;
DROP INDEX IF EXISTS message_status_pending;
