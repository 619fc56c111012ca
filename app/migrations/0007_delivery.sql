-- Delivery that means delivered. A recipient's status stays 'sent' until its
-- client confirms the message (the ack of receiveMessage, or messageReceived);
-- what is still 'sent' is sent again, oldest first, when the recipient
-- connects. This index serves that query (per recipient, in seq order) and
-- holds only the pending rows.
CREATE INDEX message_status_pending_seq ON message_status(user_id, message_seq) WHERE status = 'sent';

-- Attachments live as long as their message: served only while the message
-- that carries them exists and is not deleted, and the file is removed when it
-- is deleted (removed_at, unix ms). Uploads no message refers to are orphans
-- (a send that failed, a crash in between) and are removed after a while.
CREATE INDEX messages_attachment ON messages(attachment_id) WHERE attachment_id IS NOT NULL;
ALTER TABLE attachments ADD COLUMN removed_at INTEGER;
